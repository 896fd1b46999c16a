"""The state directory's locks (no root)."""

from __future__ import annotations

import errno
import os

import pytest

from seawall.control.errors import SeawallError
from seawall.control.state import Paths, claim_daemon


def test_one_daemon_per_state_directory_and_the_lock_dies_with_its_fd(tmp_path):
    paths = Paths(str(tmp_path / "bpf"), str(tmp_path / "state"))
    fd = claim_daemon(paths)
    assert fd is not None
    with open(paths.daemon_lock) as f:
        assert f.read().strip() == str(os.getpid())
    with pytest.raises(SeawallError, match=rf"another seawall run \(pid {os.getpid()}\) is running on"):
        claim_daemon(paths)  # another open file description: flock refuses it as it would another process
    os.close(fd)
    fd = claim_daemon(paths)
    os.close(fd)


def test_an_unwritable_state_directory_without_a_lock_file_is_no_reason_to_stop(tmp_path, monkeypatch):
    paths = Paths(str(tmp_path / "bpf"), str(tmp_path / "state"))
    paths.ensure_state_dir()
    real_open = os.open

    def read_only_fs(path, flags, *a):
        if flags & os.O_CREAT:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), path)
        return real_open(path, flags, *a)

    monkeypatch.setattr(os, "open", read_only_fs)
    assert claim_daemon(paths) is None  # nothing to lock: the daemon goes on, as without a journal
    monkeypatch.setattr(os, "open", real_open)
    os.close(claim_daemon(paths))  # now there is a lock file: on a read-only fs it is locked read-only
    monkeypatch.setattr(os, "open", read_only_fs)
    fd = claim_daemon(paths)
    assert fd is not None
    with pytest.raises(SeawallError, match="another seawall run"):
        claim_daemon(paths)
    os.close(fd)
