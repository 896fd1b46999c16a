"""Tier 2: the compiled XDP program run on crafted frames (BPF_PROG_TEST_RUN).

One compile per test module (about 1 s): the `datapath` fixture loads
xdp/seawall.c with loader.load into a private bpffs folder and hands each
test a `Datapath` whose lists, config, tracked sources and doorkeeper were
reset, so tests do not see each other's state. Counters (reasons, events,
features) are cumulative and never reset: tests compare deltas.

The process is pinned to one CPU for the module: BPF_PROG_TEST_RUN runs the
program on the calling CPU, and the doorkeeper and insert budget are
per-CPU, so "the second packet of a source is admitted" only holds when both
packets run on the same CPU (as one flow does under RSS on a real NIC).
"""

from __future__ import annotations

import os
import shutil
import uuid
from dataclasses import dataclass
from typing import Optional

import numpy as np
import pytest

from seawall.control.addr import Prefix
from seawall.control.datapath import abi, bpf, counters, loader, synports, tries
from seawall.control.lists.store import ListStore
from seawall.control.state import Clock, Paths


@dataclass(frozen=True)
class Outcome:
    """What one test run did: the verdict and every counter that moved."""

    retval: int
    reasons: np.ndarray  # per-reason packet deltas (REASON_MAX)
    events: np.ndarray  # per-event deltas (EVENT_MAX)

    @property
    def reason(self) -> abi.Reason:
        """The one reason counted; fails when not exactly one moved."""
        moved = np.flatnonzero(self.reasons)
        assert len(moved) == 1 and self.reasons[moved[0]] == 1, (
            f"expected exactly one reason counter to move by 1, got {self.reasons.tolist()}")
        return abi.Reason(int(moved[0]))

    def event(self, ev: abi.Event) -> int:
        return int(self.events[ev])


class Datapath:
    """The loaded program plus readers and writers of its pinned maps."""

    def __init__(self, paths: Paths, iface_dir: str, loaded: loader.Loaded):
        self.paths = paths
        self.iface_dir = iface_dir
        self.loaded = loaded
        self.prog_fd = loaded.prog_fd
        self.lists = ListStore(paths, create=False)
        self.clock = Clock()
        self.counters = counters.IfaceCounters(iface_dir)
        # Scratch maps are not pinned: borrow bcc's fds (dup'd, since Map
        # closes its fd) so tests can zero the doorkeeper and the budget.
        self._scratch = {spec.name: bpf.Map(os.dup(loaded.bpf[spec.name.encode()].map_fd), spec.name)
                         for spec in (counters.ADMIT_TAGS, counters.ADMIT_BUDGET)}
        self.offsets = abi.feature_offsets()
        self.synports = synports.SynPortTable(paths.pin_root)

    def close(self) -> None:
        self.synports.close()
        self.lists.close()
        self.counters.close()
        for m in self._scratch.values():
            m.close()
        self.loaded.close()

    # --- running packets -------------------------------------------------

    def run(self, frame: bytes, repeat: int = 1) -> int:
        """XDP verdict of one frame (XDP_PASS=2, XDP_DROP=1)."""
        return bpf.prog_test_run(self.prog_fd, bytes(frame), repeat).retval

    def run_counted(self, frame: bytes) -> Outcome:
        """Run one frame and report which reason and events it counted."""
        r0, e0 = self.reasons(), self.events()
        retval = self.run(frame)
        return Outcome(retval, self.reasons() - r0, self.events() - e0)

    # --- counters ----------------------------------------------------------

    def reasons(self) -> np.ndarray:
        """Packets per reason, summed over CPUs (signed, for deltas)."""
        return self.counters.read_stats()[:, 0].astype(np.int64)

    def reason_bytes(self) -> np.ndarray:
        return self.counters.read_stats()[:, 1].astype(np.int64)

    def events(self) -> np.ndarray:
        return self.counters.read_events().astype(np.int64)

    def feature(self, feat: abi.Feature, bucket: int) -> int:
        assert 0 <= bucket < abi.FEATURE_SIZES[feat]
        return int(self.counters.read_features()[self.offsets[feat] + bucket])

    def features(self, wanted: dict) -> dict:
        """{(feature, bucket): count} for the (feature, bucket) pairs given."""
        return {k: self.feature(*k) for k in wanted}

    def source(self, addr: str) -> Optional[abi.SwSource]:
        """Tracked-source counters for one address, summed over CPUs."""
        return self._summed(self.counters.sources, addr)

    def hot(self, addr: str) -> Optional[abi.SwSource]:
        """The hot table's counters for one address, summed over CPUs."""
        return self._summed(self.counters.hot, addr)

    @staticmethod
    def _summed(tables: dict, addr: str) -> Optional[abi.SwSource]:
        p = Prefix.parse(addr)
        m = tables[p.version]
        raw = m.lookup(p.packed)
        if raw is None:
            return None
        s = m.cpu_sum(raw, 3)
        return abi.SwSource(packets=int(s[0]), bytes=int(s[1]), syns=int(s[2]))

    def tracked(self, version: int) -> int:
        """Number of tracked sources of one family."""
        return sum(1 for _ in self.counters.sources[version].keys())

    # --- lists and config ----------------------------------------------------

    def block(self, cidr: str, ttl: Optional[int] = None) -> None:
        self.lists.block_add([Prefix.parse(cidr)], ttl=ttl, reason="test")

    def allow(self, cidr: str) -> None:
        self.lists.allow_add([Prefix.parse(cidr)], reason="test")

    def trie(self, lst: str, version: int) -> tries.Trie:
        return self.lists.maps.trie(lst, version)

    def block_raw(self, cidr: str, expires_ns: int) -> None:
        """Write a blocklist entry straight into the pinned trie (and its
        derived maps), with any expiry stamp (CLOCK_BOOTTIME ns), bypassing
        ListStore and its journal."""
        p = Prefix.parse(cidr)
        v = abi.SwBlock(expires_ns=expires_ns, last_hit_ns=0, prefixlen=p.prefixlen, flags=0)
        self.trie("block", p.version).update(tries.key(p), bytes(v))

    def block_entry(self, cidr: str) -> Optional[abi.SwBlock]:
        """The trie's entry, with the last-hit stamp the datapath left on
        its host mirror (a /32 or /128 is hit there), as `block list` shows."""
        p = Prefix.parse(cidr)
        raw = self.trie("block", p.version).lookup(tries.key(p))
        if raw is None:
            return None
        b = abi.SwBlock.from_buffer_copy(raw)
        mirror = self.host_entry(cidr)
        if mirror is not None:
            b.last_hit_ns = max(b.last_hit_ns, mirror.last_hit_ns)
        return b

    def host_entry(self, cidr: str) -> Optional[abi.SwBlock]:
        """The blocklist's host mirror entry for a /32 or /128, if any."""
        p = Prefix.parse(cidr)
        m = self.lists.maps.mirrors[p.version].map()
        raw = None if m is None or not p.is_host else m.lookup(p.packed)
        return None if raw is None else abi.SwBlock.from_buffer_copy(raw)

    def set_config(self, flags: int) -> None:
        counters.write_flags(self.iface_dir, flags)

    def protect(self, port: int, expires_ns: int = 0, wscale: int = 7, mss4: int = synports.MSS4,
                mss6: int = synports.MSS6) -> None:
        """Put a TCP port under SYN protection (its syn_ports slot only)."""
        self.synports.put(synports.SynPort(port, expires_ns, False, wscale, mss4, mss6))

    # --- isolation -----------------------------------------------------------

    @staticmethod
    def _empty(m: bpf.Map) -> None:
        for k in list(m.keys()):
            m.delete(k)

    def _zero_array(self, m: bpf.Map) -> None:
        keys = np.arange(m.max_entries, dtype=np.uint32).view(np.uint8).reshape(-1, 4)
        m.update_batch(keys, np.zeros((m.max_entries, m.buf_size), np.uint8))

    def reset(self) -> None:
        """Empty lists and tracked sources, monitor off, doorkeeper and
        insert budget as after load (a zeroed bucket refills to full)."""
        for lst in ("block", "allow"):
            for v in (4, 6):
                self._empty(self.trie(lst, v))
        for m in (*self.counters.sources.values(), *self.counters.hot.values()):
            self._empty(m)
        self.set_config(0)
        self.counters.write_epoch(0, 0)
        for p in self.synports.active():
            self.synports.clear(p.port)
        for m in self._scratch.values():
            self._zero_array(m)


@pytest.fixture(scope="module")
def bpf_paths(tmp_path_factory):
    """Module-wide isolated bpffs folder and state directory."""
    pin_root = f"/sys/fs/bpf/seawall-test-{uuid.uuid4().hex[:10]}"
    p = Paths(pin_root=pin_root, state_dir=str(tmp_path_factory.mktemp("state")))
    yield p
    shutil.rmtree(pin_root, ignore_errors=True)


@pytest.fixture(scope="module")
def _datapath(bpf_paths):
    cpu = min(os.sched_getaffinity(0))
    old_affinity = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {cpu})
    iface_dir = loader.iface_dir(bpf_paths.pin_root, "test")
    loaded = loader.load(bpf_paths.pin_root, iface_dir)
    dp = Datapath(bpf_paths, iface_dir, loaded)
    try:
        yield dp
    finally:
        dp.close()
        os.sched_setaffinity(0, old_affinity)


@pytest.fixture
def datapath(_datapath):
    """The module's loaded program, with its state reset for this test."""
    _datapath.reset()
    yield _datapath
    _datapath.reset()

