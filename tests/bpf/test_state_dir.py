"""A state directory that cannot be written (immutable, read-only, full):
a non-durable change (the daemon's) still reaches the kernel and reports
the journal's error, a durable one (the command line's) changes nothing,
and writers still exclude each other. The daemon's side (it logs
state_unwritable and keeps filtering under a real flood) is
tests/netns/test_faults.py."""

from __future__ import annotations

import errno
import os
import subprocess
from contextlib import contextmanager, nullcontext

import pytest

from seawall.control.datapath import tries
from seawall.control.addr import Prefix
from seawall.control.errors import SeawallError
from seawall.control.lists.store import ListStore, NotDurable
from seawall.control.state import locked


@contextmanager
def immutable(path: str):
    """chattr +i: no file can be created, renamed or removed in path."""
    subprocess.run(["chattr", "+i", path], check=True)
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", path], check=True)


@pytest.mark.parametrize("with_lock_file", [False, True], ids=["no-lock-file-yet", "lock-file-immutable-too"])
def test_unwritable_state_dir_still_changes_the_kernel(paths, with_lock_file):
    store = ListStore(paths)  # creates the maps (restores from an empty journal, taking the lock)
    if not with_lock_file:
        os.unlink(paths.lock)
    p = Prefix.parse("198.18.5.0/24")
    try:
        with immutable(paths.state_dir), immutable(paths.lock) if with_lock_file else nullcontext():
            with pytest.raises(SeawallError, match="nothing was changed"):
                store.block_add([p], 600, "while the disk is read-only")
            assert store.maps.trie("block", 4).lookup(tries.key(p)) is None, "a durable write left its entry"
            with pytest.raises(NotDurable) as ei:
                store.block_add([p], 600, "while the disk is read-only", durable=False)
            assert ei.value.error.errno == errno.EPERM
            assert store.maps.trie("block", 4).lookup(tries.key(p)) is not None, "the kernel entry was not written"
            assert [e.prefix for e in store.block_list()] == [p]
            assert not os.path.exists(paths.journal)
    finally:
        store.close()


def test_fallback_lock_still_excludes(paths):
    os.makedirs(paths.state_dir, mode=0o700)
    with immutable(paths.state_dir):
        with locked(paths):
            with pytest.raises(SeawallError, match="locked by another seawall"):
                with locked(paths, timeout=0.2):
                    pass
        with locked(paths, timeout=0.2):  # released
            pass
