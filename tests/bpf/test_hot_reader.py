"""The daemon's reader of a large source table (control/service/sources.py)
against the real program: hot sources counted exactly each cycle from the
hot table, the others seen through slices of the table, and a table read
round once before its cycles say they know every active source."""

from __future__ import annotations

import os
import shutil
import uuid

import numpy as np
import pytest
from scapy.packet import Raw

from seawall.control.addr import Prefix, Sources
from seawall.control.datapath import bpf, counters, loader
from seawall.control.detect.observe import observe
from seawall.control.service import sources as srcmod

from frames import eth, ip4, udp

MAX_V4 = 131072  # with the default 16,384 IPv6 slots: over FULL_READ_MAX


@pytest.fixture(scope="module")
def big():
    pin_root = f"/sys/fs/bpf/seawall-test-{uuid.uuid4().hex[:10]}"
    iface_dir = loader.iface_dir(pin_root, "big")
    old = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(old)})  # one CPU: per-CPU counts land in one slot
    loaded = loader.load(pin_root, iface_dir, {"MAX_SOURCES_V4": MAX_V4})
    c = counters.IfaceCounters(iface_dir)
    try:
        yield loaded, c
    finally:
        c.close()
        loaded.close()
        os.sched_setaffinity(0, old)
        shutil.rmtree(pin_root, ignore_errors=True)


def send(loaded, src: str, n: int) -> None:
    frame = bytes(eth() / ip4(src) / udp(dport=53) / Raw(b"q" * 40))
    bpf.prog_test_run(loaded.prog_fd, frame, n)


def row(s: Sources, addr: str):
    i = Sources.of_prefixes([Prefix.parse(addr)]).find(s)[0]
    return None if i < 0 else int(s.packets[i])


def test_the_default_table_is_read_whole():
    assert abi_capacity() <= srcmod.FULL_READ_MAX


def abi_capacity() -> int:
    from seawall.control.datapath import abi

    return abi.MAX_SOURCES_V4 + abi.MAX_SOURCES_V6


def fill(c, n: int) -> None:
    """n quiet sources in the table (198.19.0.0/16 and up), as the program
    would have admitted them before the hot marks began (epoch 0)."""
    keys = (np.arange(n, dtype=np.uint32) + np.uint32(0xC6130000)).astype(">u4").view(np.uint8).reshape(-1, 4)
    m = c.sources[4]
    vals = np.zeros((n, m.ncpu, m.stride // 8), np.uint64)
    vals[:, 0, 0] = 1
    m.update_batch(keys, vals.view(np.uint8).reshape(n, -1))


def test_hot_sources_exact_the_rest_seen_and_complete_after_a_lap(big):
    loaded, c = big
    fill(c, srcmod.SLICE + 100)  # the v4 table takes two slices, v6 one: a lap is 3 reads
    ncpu = c.sources[4].ncpu
    r = srcmod.SourceReader(c, interval=0.25, min_pps=20.0)
    assert r.partial and r.hot_pkts == srcmod.hot_threshold(20.0, 0.25, ncpu)
    # tunables.h sizes the hot table for a table too large to read whole
    assert (c.hot[4].max_entries, c.hot[6].max_entries) == (32768, 8192)
    assert srcmod.FULL_READ_MAX == 131072, "tunables.h's SW_HOT_*_DEFAULT switch says 131072 too"
    hot_at = r.hot_pkts
    prev = {"big": r.read()}
    send(loaded, "198.18.7.1", 1 + 30)  # the doorkeeper takes the first: 30 counted
    send(loaded, "198.18.7.2", 2)  # one counted: tracked, never hot (threshold >= 2 here)
    seen_quiet, known = [], []
    for cycle in range(7):
        cur = {"big": r.read()}
        obs = observe(float(cycle), 0.25, cur, prev)
        prev = cur
        known.append(obs.members_known)
        if cycle == 0:
            # the heavy one: every packet from its hot_at-th on, this cycle
            assert row(obs.sources, "198.18.7.1") == 30 - (hot_at - 1)
        else:
            assert row(obs.sources, "198.18.7.1") is None, "a quiet hot source is not active"
        got = row(obs.sources, "198.18.7.2")
        if got is not None:
            assert got == 1
            seen_quiet.append(cycle)
        assert obs.packets == 0 or cycle == 0
        # the filler sources, from before the marks, are never active
        assert len(obs.sources) <= 2
    assert known == [False, True, True, True, True, True, True], known
    assert 1 <= len(seen_quiet) <= 2 and seen_quiet[0] <= 2, seen_quiet
    assert seen_quiet[-1] <= 5, "not seen two laps after its last packet"
    r.close()
    cfg = counters.abi.SwConfig.from_buffer_copy(c.config.lookup(b"\0" * 4))
    assert cfg.hot_pkts == 0, "a closed reader turns the hot marks off"
