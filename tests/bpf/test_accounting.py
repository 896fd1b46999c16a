"""Source tracking, the doorkeeper, the insert budget and feature histograms,
observed through the pinned maps after BPF_PROG_TEST_RUN."""

from __future__ import annotations

import ipaddress
import time

import pytest
from scapy.packet import Raw

from seawall.control.datapath import abi
from seawall.control.datapath.abi import Event, Feature, Reason

from frames import XDP_DROP, XDP_PASS, eth, icmp4, icmp6, ip4, ip6, tcp, udp

# tunables.h defaults the program is compiled with here
ADMIT_RATE = 4096  # tokens per second, per CPU
ADMIT_BURST = 1024  # tokens


def src_bucket_v4(addr: str) -> int:
    """The program's source-histogram bucket: (hash >> 16) & (SRC_BUCKETS-1)
    with hash_v4 = address (network order, loaded as a little-endian u32)
    times 2654435761."""
    a = int.from_bytes(ipaddress.ip_address(addr).packed, "little")
    h = (a * 2654435761) & 0xFFFFFFFF
    return (h >> 16) & (abi.SRC_BUCKETS - 1)


def src_bucket_v6(addr: str) -> int:
    p = ipaddress.ip_address(addr).packed
    w = [int.from_bytes(p[i:i + 4], "little") for i in range(0, 16, 4)]
    m = 0xFFFFFFFF
    x = (w[0] ^ ((w[1] * 0x9E3779B1) & m) ^ ((w[2] * 0x85EBCA77) & m) ^ ((w[3] * 0xC2B2AE3D) & m)) & m
    h = (x * 2654435761) & m
    return (h >> 16) & (abi.SRC_BUCKETS - 1)


def v4_hosts(net: str, n: int) -> list:
    hosts = ipaddress.ip_network(net).hosts()
    return [str(next(hosts)) for _ in range(n)]


# --- tracking a source ------------------------------------------------------


@pytest.mark.parametrize("version", [4, 6])
def test_source_admitted_on_second_packet_and_counted(datapath, version):
    src = "198.18.9.1" if version == 4 else "2001:2:0:9::1"
    l3 = (lambda **kw: ip4(src, **kw)) if version == 4 else (lambda **kw: ip6(src, **kw))
    syn = bytes(eth() / l3() / tcp(flags="S"))
    synack = bytes(eth() / l3() / tcp(flags="SA"))
    ack = bytes(eth() / l3() / tcp(flags="A") / Raw(b"d" * 100))

    first = datapath.run_counted(syn)
    assert (first.retval, first.reason) == (XDP_PASS, Reason.PASS_CLEAN)
    assert first.event(Event.SRC_DEFERRED) == 1 and first.event(Event.SRC_INSERT) == 0
    assert datapath.source(src) is None, "a first sighting must not take an LRU slot"

    second = datapath.run_counted(syn)
    assert second.event(Event.SRC_INSERT) == 1 and second.event(Event.SRC_DEFERRED) == 0
    s = datapath.source(src)
    assert s is not None, "the second sighting must be admitted"
    assert (s.packets, s.bytes, s.syns) == (1, len(syn), 1)

    third = datapath.run_counted(synack)
    assert third.event(Event.SRC_HIT) == 1 and third.event(Event.SRC_INSERT) == 0
    s = datapath.source(src)
    assert (s.packets, s.bytes, s.syns) == (2, len(syn) + len(synack), 1), "SYN-ACK is not a SYN"

    datapath.run(ack)
    datapath.run(syn)
    s = datapath.source(src)
    assert (s.packets, s.bytes, s.syns) == (4, 2 * len(syn) + len(synack) + len(ack), 2)
    assert datapath.tracked(version) == 1


@pytest.mark.parametrize("version", [4, 6])
def test_interleaved_sources_of_one_prefix_are_all_admitted(datapath, version):
    """Sources seen twice each, round-robin, all get tracked: the doorkeeper
    must spread nearby addresses (one /24, one /64) over its slots rather
    than let them overwrite each other's first sighting."""
    if version == 4:
        srcs = v4_hosts("198.18.7.0/24", 16)
        frames = [bytes(eth() / ip4(s) / udp()) for s in srcs]
    else:
        srcs = [f"2001:2:0:7::{i:x}" for i in range(1, 17)]
        frames = [bytes(eth() / ip6(s) / udp()) for s in srcs]
    e0 = datapath.events()
    for _ in range(2):
        for f in frames:
            assert datapath.run(f) == XDP_PASS
    ev = datapath.events() - e0
    missing = [s for s in srcs if datapath.source(s) is None]
    assert missing == [], f"never admitted: {missing}"
    assert (ev[Event.SRC_DEFERRED], ev[Event.SRC_INSERT]) == (len(srcs), len(srcs))


@pytest.mark.parametrize("version,count", [(4, 5000), (6, 2000)])
def test_spoofed_stream_inserts_nothing(datapath, version, count):
    """Every packet from a new source (a random-spoofed flood): the
    doorkeeper defers each one and the LRU stays empty."""
    if version == 4:
        frames = [bytes(eth() / ip4(s) / udp()) for s in v4_hosts("198.19.0.0/18", count)]
    else:
        frames = [bytes(eth() / ip6(f"2001:2:0:99::{i:x}:{i * 7919 % 65536:x}") / udp())
                  for i in range(1, count + 1)]
    assert len(set(frames)) == count
    e0, r0 = datapath.events(), datapath.reasons()
    for f in frames:
        datapath.run(f)
    ev, rs = datapath.events() - e0, datapath.reasons() - r0
    assert rs[Reason.PASS_CLEAN] == count
    assert ev[Event.SRC_DEFERRED] == count
    assert ev[Event.SRC_INSERT] == 0
    assert datapath.tracked(version) == 0


def test_insert_budget_caps_admissions(datapath):
    """Each source sent twice in a row passes the doorkeeper; the per-CPU
    token bucket (ADMIT_BURST, refilled at ADMIT_RATE/s) still caps the
    inserts, and refusals count SRC_BUDGET. The bucket starts full (the
    fixture zeroes it, and a zeroed bucket refills to the burst)."""
    n = ADMIT_BURST + 500
    frames = [bytes(eth() / ip4(s) / udp()) for s in v4_hosts("198.19.64.0/18", n)]
    e0 = datapath.events()
    t0 = time.monotonic()
    for f in frames:
        datapath.run(f)
        datapath.run(f)
    elapsed = time.monotonic() - t0
    ev = datapath.events() - e0
    inserts, refused = int(ev[Event.SRC_INSERT]), int(ev[Event.SRC_BUDGET])
    refill = int(elapsed * ADMIT_RATE) + 1
    assert ADMIT_BURST <= inserts <= ADMIT_BURST + refill, (inserts, elapsed)
    assert inserts + refused == n
    assert ev[Event.SRC_DEFERRED] == n
    assert datapath.tracked(4) == inserts


def test_dropped_and_allowed_sources_are_not_tracked(datapath):
    datapath.block("198.18.10.1/32")
    datapath.allow("198.18.10.2/32")
    dropped = bytes(eth() / ip4("198.18.10.1") / tcp())
    allowed = bytes(eth() / ip4("198.18.10.2") / tcp())
    e0 = datapath.events()
    for _ in range(3):
        assert datapath.run(dropped) == XDP_DROP
        assert datapath.run(allowed) == XDP_PASS
    ev = datapath.events() - e0
    assert datapath.source("198.18.10.1") is None
    assert datapath.source("198.18.10.2") is None
    assert ev[Event.SRC_DEFERRED] == ev[Event.SRC_INSERT] == ev[Event.SRC_HIT] == 0


def test_monitor_mode_still_tracks_would_be_dropped_source(datapath):
    datapath.block("198.18.10.1/32")
    datapath.set_config(abi.CfgFlag.MONITOR)
    f = bytes(eth() / ip4("198.18.10.1") / tcp())
    for _ in range(3):
        assert datapath.run(f) == XDP_PASS
    s = datapath.source("198.18.10.1")
    assert s is not None and s.packets == 2  # first sighting deferred


# --- feature histograms ---------------------------------------------------------


def _len_class(n: int) -> int:
    return min(n // abi.LEN_CLASS_WIDTH, abi.LEN_CLASSES - 1)


FEATURE_CASES = [
    # (id, frame, {feature: bucket} it must bump once each)
    ("v4-tcp-syn-443", eth() / ip4("198.18.11.1") / tcp(sport=41000, dport=443),
     {Feature.PROTO: 6, Feature.SPORT: 41000, Feature.DPORT: 443, Feature.SRC: src_bucket_v4("198.18.11.1")}),
    ("v4-udp-dns-reflection", eth() / ip4("198.18.11.2") / udp(sport=53, dport=33333),
     {Feature.PROTO: 17, Feature.SPORT: 53, Feature.DPORT: 33333, Feature.SRC: src_bucket_v4("198.18.11.2")}),
    ("v4-icmp-ttl-exceeded", eth() / ip4("198.18.11.3") / icmp4(11, 1),
     {Feature.PROTO: 1, Feature.SPORT: 11, Feature.DPORT: 1, Feature.SRC: src_bucket_v4("198.18.11.3")}),
    ("v4-udp-1000-bytes", eth() / ip4("198.18.11.4") / udp(sport=5000, dport=6000) / Raw(b"x" * 930),
     {Feature.PROTO: 17, Feature.DPORT: 6000}),
    ("v4-udp-3000-bytes-capped-len", eth() / ip4("198.18.11.5") / udp(sport=5001, dport=6001) / Raw(b"x" * 2930),
     {Feature.PROTO: 17, Feature.DPORT: 6001}),
    ("v4-frag-middle-no-ports", eth() / ip4("198.18.11.6", frag=10, proto=17) / Raw(b"f" * 40),
     {Feature.PROTO: 17, Feature.SPORT: 0, Feature.DPORT: 0}),
    ("v6-tcp-22", eth() / ip6("2001:2:0:11::1") / tcp(sport=42000, dport=22),
     {Feature.PROTO: 6, Feature.SPORT: 42000, Feature.DPORT: 22, Feature.SRC: src_bucket_v6("2001:2:0:11::1")}),
    ("v6-icmp6-echo", eth() / ip6("2001:2:0:11::2") / icmp6(),
     {Feature.PROTO: 58, Feature.SPORT: 128, Feature.DPORT: 0, Feature.SRC: src_bucket_v6("2001:2:0:11::2")}),
]


@pytest.mark.parametrize("fid,pkt,buckets", FEATURE_CASES, ids=[c[0] for c in FEATURE_CASES])
def test_feature_histograms(datapath, fid, pkt, buckets):
    frame = bytes(pkt)
    want = dict(buckets)
    want[Feature.LEN] = _len_class(len(frame))
    keys = [(f, b) for f, b in want.items()]
    f0 = datapath.features(keys)
    assert datapath.run(frame) == XDP_PASS
    moved = {k: v - f0[k] for k, v in datapath.features(keys).items()}
    assert moved == {k: 1 for k in keys}, fid


def test_length_class_boundaries(datapath):
    """Frame length / LEN_CLASS_WIDTH, capped at the last class."""
    w = abi.LEN_CLASS_WIDTH
    base = eth() / ip4("198.18.12.1") / udp()
    hdr = len(bytes(base))
    for total, cls in [(w - 1, 0), (w, 1), (7 * w + 5, 7), (15 * w, 15), (3000, 15)]:
        frame = bytes(base / Raw(b"z" * (total - hdr)))
        assert len(frame) == total
        before = [datapath.feature(Feature.LEN, c) for c in range(abi.LEN_CLASSES)]
        datapath.run(frame)
        after = [datapath.feature(Feature.LEN, c) for c in range(abi.LEN_CLASSES)]
        assert [a - b for a, b in zip(after, before)] == [int(c == cls) for c in range(abi.LEN_CLASSES)], total


def test_dropped_packets_leave_histograms_alone(datapath):
    datapath.block("198.18.11.0/24")
    frame = bytes(eth() / ip4("198.18.11.1") / tcp(sport=41000, dport=443))
    keys = [(Feature.PROTO, 6), (Feature.SPORT, 41000), (Feature.DPORT, 443),
            (Feature.SRC, src_bucket_v4("198.18.11.1")), (Feature.LEN, _len_class(len(frame)))]
    f0 = datapath.features(keys)
    assert datapath.run(frame) == XDP_DROP
    assert datapath.features(keys) == f0


# --- hot marks (a large table's per-cycle view) ------------------------------


@pytest.mark.parametrize("version", [4, 6])
def test_a_source_turns_hot_at_the_threshold_and_stays_hot_one_epoch(datapath, version):
    src = "198.18.9.7" if version == 4 else "2001:2:0:9::7"
    l3 = ip4(src) if version == 4 else ip6(src)
    frame = bytes(eth() / l3 / udp(dport=53) / Raw(b"q" * 40))
    datapath.run(frame)  # the doorkeeper's first sighting: not tracked yet
    datapath.counters.write_epoch(5, 3)
    datapath.run(frame)  # admitted: 1 packet in epoch 5
    datapath.run(frame)
    assert datapath.hot(src) is None, "2 packets of 3 needed: not hot yet"
    datapath.run(frame)  # the third: hot from this packet on
    assert datapath.hot(src).packets == 1
    datapath.run(frame, repeat=4)
    h = datapath.hot(src)
    assert (h.packets, h.bytes) == (5, 5 * len(frame))
    assert datapath.source(src).packets == 7, "the source table counts every packet"

    datapath.counters.write_epoch(6, 3)  # next epoch: hot in the last one, so hot at once
    datapath.run(frame)
    assert datapath.hot(src).packets == 6
    datapath.counters.write_epoch(8, 3)  # an epoch skipped: it has to earn it again
    datapath.run(frame, repeat=2)
    assert datapath.hot(src).packets == 6
    datapath.run(frame)
    assert datapath.hot(src).packets == 7
    sl, last, _ = datapath.counters.read_slice(version, None, 1024)
    assert len(sl) == 1 and int(last[0]) == 8, "the table keeps the source's last epoch"


def test_no_hot_marks_while_the_threshold_is_zero(datapath):
    frame = bytes(eth() / ip4("198.18.9.8") / udp(dport=53))
    datapath.counters.write_epoch(3, 0)
    datapath.run(frame, repeat=50)
    assert datapath.source("198.18.9.8").packets == 49
    assert datapath.hot("198.18.9.8") is None
    sl, last, _ = datapath.counters.read_slice(4, None, 1024)
    assert int(last[0]) == 0, "no epoch is kept without hot marks"


def test_monitor_flag_and_hot_marks_share_the_config_slot(datapath):
    datapath.counters.write_epoch(9, 2)
    datapath.set_config(abi.CfgFlag.MONITOR)
    cfg = abi.SwConfig.from_buffer_copy(datapath.counters.config.lookup(b"\0" * 4))
    assert (cfg.flags, cfg.epoch, cfg.hot_pkts) == (abi.CfgFlag.MONITOR, 9, 2)
    datapath.counters.write_epoch(10, 2)
    assert abi.SwConfig.from_buffer_copy(datapath.counters.config.lookup(b"\0" * 4)).flags == abi.CfgFlag.MONITOR
