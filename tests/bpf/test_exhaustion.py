"""Exhaustion: a random-spoofed flood of many distinct sources.

Through BPF_PROG_TEST_RUN, a flood of a few hundred thousand frames, each
from a source not seen before (v4 from 198.18.0.0/15, v6 from 2001:2::/48),
then one where every spoofed source is sent twice (to get past the
doorkeeper), must:

- leave every blocklist and allowlist entry as it was (same keys, same
  expiry, same flags): a blocked source still drops, an allowed one passes;
- keep the per-source tables within their size (MAX_SOURCES_V4/V6, here
  compiled small so the flood can fill them), the first flood inserting
  next to nothing (SRC_DEFERRED: the doorkeeper), the second capped by the
  insert budget (SRC_BUDGET);
- keep a steady real source tracked through the flood.

Then detection: a synthetic capture of a random-spoofed UDP flood (every
packet a new source) replayed through the real program and engine
(control/replay.py) raises the alarm and derives a signature rule that
drops the flood, with no background packet dropped.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import struct
import time
import uuid

import numpy as np
import pytest

from seawall.control.datapath import abi, bpf, counters, loader, tries
from seawall.control.addr import Prefix
from seawall.control.config import Config
from seawall.control.datapath.abi import Event, Reason
from seawall.control.lists.store import ListStore
from seawall.control.tools.replay import replay
from seawall.control.state import Paths

from frames import XDP_DROP, XDP_PASS

# compiled small, so that the flood can fill the tables within seconds
MAX_SOURCES_V4 = 512
MAX_SOURCES_V6 = 256
ADMIT_RATE = 4096  # tunables.h defaults: inserts per second and burst, per CPU
ADMIT_BURST = 1024

V4_FLOOD = 120_000  # distinct v4 sources (of 131,072 in 198.18.0.0/15)
V6_FLOOD = 200_000
TWICE = 30_000  # sources sent twice each, v4 and v6 alike

MACS = bytes.fromhex("020000000002" "020000000001")
DST4 = ipaddress.ip_address("198.18.0.1").packed
DST6 = ipaddress.ip_address("2001:2::1").packed


def udp4(src: bytes, dport: int = 9999) -> bytes:
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40, 0, 0, 64, 17, 0, src, DST4)
    return MACS + b"\x08\x00" + ip + struct.pack("!HHHH", 40000, dport, 20, 0) + b"x" * 12


def udp6(src: bytes, dport: int = 9999) -> bytes:
    ip = struct.pack("!IHBB16s16s", 0x60000000, 20, 17, 64, src, DST6)
    return MACS + b"\x86\xdd" + ip + struct.pack("!HHHH", 40000, dport, 20, 0) + b"x" * 12


def v4_sources(rng, n: int) -> list:
    base = int(ipaddress.ip_address("198.18.0.0"))
    return [(base + int(x)).to_bytes(4, "big") for x in rng.choice(1 << 17, n, replace=False)]


def v6_sources(rng, n: int) -> list:
    base = int(ipaddress.ip_address("2001:2::"))
    lo = rng.integers(0, 2**63, n, dtype=np.int64)
    hi = rng.integers(0, 2**16, n)
    out = {(base + (int(h) << 64) + int(l)).to_bytes(16, "big") for h, l in zip(hi, lo)}
    return list(out)


class Lab:
    def __init__(self, paths: Paths, loaded):
        self.paths = paths
        self.loaded = loaded
        self.counts = counters.IfaceCounters(loader.iface_dir(paths.pin_root, "flood"))
        self.lists = ListStore(paths, create=False)

    def run(self, frame: bytes) -> int:
        return bpf.prog_test_run(self.loaded.prog_fd, frame).retval

    def counters(self, name: str) -> np.ndarray:
        """Packets per reason ("stats") or count per event ("events")."""
        rows = self.counts.read_stats()[:, 0] if name == "stats" else self.counts.read_events()
        return rows.astype(np.int64)

    def tracked(self, version: int) -> int:
        keys, _ = self.counts.sources[version].lookup_batch()
        return len(keys)

    def list_state(self) -> dict:
        """Every list entry, raw key -> raw value minus the last-hit stamp
        (the one field the datapath writes)."""
        out = {}
        for (lst, version), spec in tries.TRIES.items():
            for k, v in self.lists.maps.trie(lst, version).items():
                if lst == "block":
                    b = abi.SwBlock.from_buffer_copy(v)
                    v = (b.expires_ns, b.prefixlen, b.flags)
                out[(spec.name, k)] = v
        return out

    def close(self):
        self.counts.close()
        self.lists.close()
        self.loaded.close()


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    cpu = min(os.sched_getaffinity(0))
    old = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {cpu})  # one flow, one CPU: the doorkeeper and budget are per-CPU
    pin_root = f"/sys/fs/bpf/seawall-test-{uuid.uuid4().hex[:10]}"
    paths = Paths(pin_root, str(tmp_path_factory.mktemp("state")))
    loaded = loader.load(pin_root, loader.iface_dir(pin_root, "flood"),
                         {"MAX_SOURCES_V4": MAX_SOURCES_V4, "MAX_SOURCES_V6": MAX_SOURCES_V6})
    lab = Lab(paths, loaded)
    try:
        yield lab
    finally:
        lab.close()
        shutil.rmtree(pin_root, ignore_errors=True)
        os.sched_setaffinity(0, old)


BLOCKED = ["198.18.66.0/24", "198.19.7.7/32", "2001:2:0:66::/64", "2001:2:0:77::7/128"]
ALLOWED = ["198.18.9.0/24", "2001:2:0:9::/64"]
PROBES = [  # (frame, verdict, reason) that must hold before and after
    (udp4(bytes([198, 18, 66, 1])), XDP_DROP, Reason.DROP_BLOCK),
    (udp4(bytes([198, 19, 7, 7])), XDP_DROP, Reason.DROP_BLOCK),
    (udp6(ipaddress.ip_address("2001:2:0:66::1").packed), XDP_DROP, Reason.DROP_BLOCK),
    (udp6(ipaddress.ip_address("2001:2:0:77::7").packed), XDP_DROP, Reason.DROP_BLOCK),
    (udp4(bytes([198, 18, 9, 5])), XDP_PASS, Reason.PASS_ALLOW),
    (udp6(ipaddress.ip_address("2001:2:0:9::5").packed), XDP_PASS, Reason.PASS_ALLOW),
]


def probe(lab: Lab) -> list:
    out = []
    for frame, _, _ in PROBES:
        r0 = lab.counters("stats")
        v = lab.run(frame)
        moved = np.flatnonzero(lab.counters("stats") - r0)
        out.append((v, Reason(int(moved[0]))))
    return out


def test_spoofed_flood_leaves_lists_alone_and_tables_bounded(lab):
    rng = np.random.default_rng(20261123)
    for cidr in BLOCKED:
        lab.lists.block_add([Prefix.parse(cidr)], 3600 if "/32" in cidr else None, "before the flood")
    for cidr in ALLOWED:
        lab.lists.allow_add([Prefix.parse(cidr)], "before the flood")
    before = lab.list_state()
    assert len(before) == len(BLOCKED) + len(ALLOWED)
    assert probe(lab) == [(v, r) for _, v, r in PROBES]

    # a real source, tracked before the flood and sending throughout it
    steady = udp4(bytes([198, 18, 200, 1]), dport=443)
    for _ in range(3):
        lab.run(steady)
    assert lab.counts.sources[4].lookup(bytes([198, 18, 200, 1])) is not None

    # 1. every frame from a new source
    srcs4, srcs6 = v4_sources(rng, V4_FLOOD), v6_sources(rng, V6_FLOOD)
    assert len(set(srcs4)) == V4_FLOOD and len(srcs6) >= V6_FLOOD - 1
    flood_frames = [udp4(s) for s in srcs4] + [udp6(s) for s in srcs6]
    rng.shuffle(flood_frames)
    e0, r0 = lab.counters("events"), lab.counters("stats")
    t0 = time.monotonic()
    for i, f in enumerate(flood_frames):
        lab.run(f)
        if i % 200 == 0:
            lab.run(steady)
    spoof_s = time.monotonic() - t0
    ev, rs = lab.counters("events") - e0, lab.counters("stats") - r0
    flood = len(flood_frames)
    steady_n = (flood + 199) // 200
    # (some spoofed sources fall in the blocked and allowed prefixes)
    assert rs.sum() == flood + steady_n
    assert ev[Event.SRC_DEFERRED] >= 0.99 * (rs[Reason.PASS_CLEAN] - steady_n), ev.tolist()
    assert ev[Event.SRC_INSERT] <= 0.001 * flood, ev.tolist()  # doorkeeper tag collisions only
    assert lab.tracked(4) <= MAX_SOURCES_V4 and lab.tracked(6) <= MAX_SOURCES_V6
    print(f"\nspoofed flood: {flood} frames from distinct sources in {spoof_s:.1f} s; "
          f"deferred {ev[Event.SRC_DEFERRED]}, inserted {ev[Event.SRC_INSERT]}, "
          f"tracked v4 {lab.tracked(4)} v6 {lab.tracked(6)}")

    # 2. every spoofed source twice in a row: past the doorkeeper, into the budget
    twice4, twice6 = v4_sources(rng, TWICE), v6_sources(rng, TWICE)
    e0 = lab.counters("events")
    t0 = time.monotonic()
    for i, (s4, s6) in enumerate(zip(twice4, twice6)):
        f4, f6 = udp4(s4), udp6(s6)
        lab.run(f4), lab.run(f4), lab.run(f6), lab.run(f6)
        if i % 25 == 0:
            lab.run(steady)
    twice_s = time.monotonic() - t0
    ev = lab.counters("events") - e0
    inserts, refused = int(ev[Event.SRC_INSERT]), int(ev[Event.SRC_BUDGET])
    assert refused > 0, "the insert budget never refused anything"
    assert inserts <= ADMIT_BURST + ADMIT_RATE * (twice_s + 1), (inserts, twice_s)
    assert inserts > MAX_SOURCES_V4, "the flood did not fill the table: the bound was not tested"
    assert lab.tracked(4) <= MAX_SOURCES_V4 and lab.tracked(6) <= MAX_SOURCES_V6
    print(f"twice-each flood: {4 * len(twice4)} frames in {twice_s:.1f} s; inserted {inserts}, "
          f"refused by the budget {refused}; tracked v4 {lab.tracked(4)}/{MAX_SOURCES_V4} "
          f"v6 {lab.tracked(6)}/{MAX_SOURCES_V6}")

    # the lists are as they were, and still enforced
    assert lab.list_state() == before
    assert probe(lab) == [(v, r) for _, v, r in PROBES]
    s = lab.counts.sources[4].lookup(bytes([198, 18, 200, 1]))
    assert s is not None, "the steady real source was evicted by the spoofed flood"


# --- millions: the bench's rotating wrapper -----------------------------------------------

MILLION_RUNS = 4  # BPF_PROG_TEST_RUN calls of 1,000,000 repeats: 4,000,000 distinct sources
EXTRA_BLOCK, EXTRA_ALLOW = "198.18.0.0/15", "198.19.128.0/17"  # so that some of the millions land on a list


def lcg_sources(x0: int, n: int) -> np.ndarray:
    """The n sources xdp/bench/rotate.c writes after x0 (host order): the
    wrapper steps the address before each tail call. Built by doubling:
    the next block is the previous one pushed through f^len."""
    from seawall.control.tools.bench.datapath import LCG_A, LCG_C

    mask = np.uint64(0xFFFFFFFF)
    out = np.empty(n, np.uint64)
    out[0] = (LCG_A * x0 + LCG_C) & 0xFFFFFFFF
    have, a, c = 1, LCG_A, LCG_C  # (a, c): f^have
    while have < n:
        take = min(have, n - have)
        out[have:have + take] = (np.uint64(a) * out[:take] + np.uint64(c)) & mask
        a, c = (a * a) & 0xFFFFFFFF, (a * c + c) & 0xFFFFFFFF
        have += take
    return out


def inside(srcs: np.ndarray, cidr: str) -> np.ndarray:
    p = Prefix.parse(cidr)
    net = int.from_bytes(p.packed, "big")
    return (srcs >> np.uint64(32 - p.prefixlen)) == np.uint64(net >> (32 - p.prefixlen))


def test_four_million_spoofed_sources_are_judged_one_by_one_and_leave_the_lists_alone(lab):
    """The bench's wrapper (xdp/bench/rotate.c) gives every repeat of a test
    run a source never seen before, so millions of distinct sources cost
    seconds. Every one is judged against the lists exactly (the drops and
    allows counted equal what the same sequence, computed here, says),
    the per-source tables stay within their size, and the lists are as
    before."""
    rng = np.random.default_rng(4_000_000)
    for cidr in BLOCKED:
        lab.lists.block_add([Prefix.parse(cidr)], None, "before the flood")
    for cidr in ALLOWED:
        lab.lists.allow_add([Prefix.parse(cidr)], "before the flood")
    before = lab.list_state()
    lab.lists.block_add([Prefix.parse(EXTRA_BLOCK)], None, "millions")
    lab.lists.allow_add([Prefix.parse(EXTRA_ALLOW)], "millions")
    steady = udp4(bytes([198, 18, 200, 1]), dport=443)  # inside EXTRA_BLOCK: allow it
    lab.lists.allow_add([Prefix.parse("198.18.200.1/32")], "the steady source")
    rotate = loader.load(lab.paths.pin_root, loader.iface_dir(lab.paths.pin_root, "rotate"),
                         source="bench/rotate.c", func="xdp_rotate")
    try:
        import ctypes

        rotate.bpf[b"bench_next"][ctypes.c_int(0)] = ctypes.c_int(lab.loaded.prog_fd)
        e0, r0 = lab.counters("events"), lab.counters("stats")
        want_drop = want_allow = 0
        t0 = time.monotonic()
        for _ in range(MILLION_RUNS):
            x0 = int(rng.integers(0, 2**32))
            frame = udp4(x0.to_bytes(4, "big"))
            r = bpf.prog_test_run(rotate.prog_fd, frame, 1_000_000)
            srcs = lcg_sources(x0, 1_000_000)
            assert int.from_bytes(r.data_out[26:30], "big") == int(srcs[-1]), "one new source per repeat"
            allowed = np.zeros(len(srcs), bool)
            for cidr in ALLOWED[:1] + [EXTRA_ALLOW]:
                allowed |= inside(srcs, cidr)
            blocked = np.zeros(len(srcs), bool)
            for cidr in [c for c in BLOCKED if ":" not in c] + [EXTRA_BLOCK]:
                blocked |= inside(srcs, cidr)
            want_allow += int(allowed.sum())
            want_drop += int((blocked & ~allowed).sum())
            lab.run(steady)
        took = time.monotonic() - t0
        ev, rs = lab.counters("events") - e0, lab.counters("stats") - r0
        n = MILLION_RUNS * 1_000_000
        assert rs.sum() == n + MILLION_RUNS
        assert rs[Reason.DROP_BLOCK] == want_drop and rs[Reason.PASS_ALLOW] == want_allow + MILLION_RUNS, \
            (rs[Reason.DROP_BLOCK], want_drop, rs[Reason.PASS_ALLOW], want_allow)
        assert want_drop > 40 and want_allow > 15, "the sequence must reach the lists for this to test them"
        clean = int(rs[Reason.PASS_CLEAN])
        assert clean == n - want_drop - want_allow
        assert ev[Event.SRC_DEFERRED] >= 0.999 * clean, ev.tolist()
        assert lab.tracked(4) <= MAX_SOURCES_V4 and lab.tracked(6) <= MAX_SOURCES_V6
        print(f"\n{n:,} distinct sources in {took:.1f} s: drop_block {want_drop}, pass_allow {want_allow} "
              f"(as computed), deferred {ev[Event.SRC_DEFERRED]}, inserted {ev[Event.SRC_INSERT]}, "
              f"tracked v4 {lab.tracked(4)}")
    finally:
        rotate.close()
    for cidr in (EXTRA_BLOCK,):
        lab.lists.block_del([Prefix.parse(cidr)])
    for cidr in (EXTRA_ALLOW, "198.18.200.1/32"):
        lab.lists.allow_del([Prefix.parse(cidr)])
    assert lab.list_state() == before
    assert probe(lab) == [(v, r) for _, v, r in PROBES]


# --- detection under a spoofed flood ---------------------------------------------------


def write_pcap(path: str, frames: list) -> None:
    """A classic little-endian microsecond pcap of (timestamp, frame)."""
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for ts, fr in frames:
            sec = int(ts)
            f.write(struct.pack("<IIII", sec, int(round((ts - sec) * 1e6)), len(fr), len(fr)))
            f.write(fr)


def test_spoofed_flood_capture_is_detected_and_cut_by_a_signature(tmp_path):
    """60k pps of UDP to port 9999 for 1.5 s, every packet from a new v4 or
    v6 source: nothing to block per source, so the engine must find the
    signature, and the program must then drop the rest of the flood."""
    rng = np.random.default_rng(7)
    n = 90_000
    base = 1_700_000_000.0
    srcs4 = v4_sources(rng, n // 2)
    srcs6 = v6_sources(rng, n // 2)
    frames = []
    for i in range(min(len(srcs4), len(srcs6))):
        frames.append((base + (2 * i) / 60_000, udp4(srcs4[i])))
        frames.append((base + (2 * i + 1) / 60_000, udp6(srcs6[i])))
    cap = tmp_path / "spoofed-udp.pcap"
    write_pcap(str(cap), frames)

    t0 = time.monotonic()
    r = replay(str(cap), Config(), interval=0.1, background_pps=1000, warmup=15)
    took = time.monotonic() - t0
    assert r.packets == len(frames)
    assert r.detected_at is not None and r.detected_at <= 0.3, r.detected_at
    sigs = [d["what"] for d in r.decisions if d["action"] == "signature"]
    assert any("udp" in s and "dport 9999" in s for s in sigs), r.decisions
    assert not [d for d in r.decisions if d["action"] == "block"], "spoofed sources must not be blocked one by one"
    assert r.dropped_after_action >= 0.99, r.dropped_after_action
    assert r.background_dropped == 0
    print(f"\nspoofed capture: {r.packets} packets from {r.packets} sources replayed in {took:.0f} s; "
          f"alarm at {r.detected_at} s, first decision at {r.first_action_at} s ({sigs[0]}); "
          f"{r.dropped / r.packets:.1%} dropped, {r.dropped_after_action:.1%} after the decision")
