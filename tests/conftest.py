"""Shared fixtures. Root-only tiers (bpf, netns) need root, bpffs and BPF;
CI runs everything as root, so they are never skipped there: a root test
that cannot run fails loudly instead (see pytest_collection_modifyitems)."""

from __future__ import annotations

import os
import shutil
import uuid

import pytest

from seawall.control.state import Paths

ROOT = os.geteuid() == 0
IN_CI = bool(os.environ.get("CI"))


def pytest_collection_modifyitems(config, items):
    for item in items:
        path = str(item.fspath)
        if f"{os.sep}bpf{os.sep}" in path or f"{os.sep}netns{os.sep}" in path:
            item.add_marker(pytest.mark.root)
            if not ROOT:
                if IN_CI:
                    item.add_marker(pytest.mark.xfail(reason="CI must run as root", strict=True, run=False))
                else:
                    item.add_marker(pytest.mark.skip(reason="needs root (sudo scripts/test)"))


@pytest.fixture(scope="session", autouse=True)
def _session_object_cache(tmp_path_factory):
    """The compiled-object cache of every CLI and daemon the tests start
    (default /var/cache/seawall) in a folder of the session's, so that no
    test writes a real installation's; shared by the session, so they
    load the program from it after the first compile, as an installed
    host does."""
    if "SEAWALL_CACHE_DIR" not in os.environ:
        os.environ["SEAWALL_CACHE_DIR"] = str(tmp_path_factory.mktemp("objcache"))
    yield


@pytest.fixture
def paths(tmp_path):
    """An isolated bpffs folder and state directory, removed afterwards."""
    pin_root = f"/sys/fs/bpf/seawall-test-{uuid.uuid4().hex[:10]}"
    p = Paths(pin_root=pin_root, state_dir=str(tmp_path / "state"))
    yield p
    shutil.rmtree(pin_root, ignore_errors=True)


@pytest.fixture
def seawall_env(paths, monkeypatch):
    """Point the CLI (and subprocesses) at the isolated paths."""
    monkeypatch.setenv("SEAWALL_BPFFS", paths.pin_root)
    monkeypatch.setenv("SEAWALL_STATE_DIR", paths.state_dir)
    return paths
