"""Differential fuzzing: the compiled program against the reference model.

Hypothesis draws a table set (allow and block prefixes around a small pool
of source addresses, with live, expired and never-expiring entries nested
in each other; signature rules cut from the example's own frames; monitor
on or off; the list summaries off, freshly built or stale; the blocked-host
mirrors in step or behind)
and a batch of frames from those sources: valid stacks with random fields,
0-4 VLAN tags, IPv4 options and bogus IHL / total length / fragment fields,
IPv6 chains of 0-10 extension headers with random lengths, L4 headers cut
short, whole frames truncated at random points, and random garbage. Each
frame runs through the real program (BPF_PROG_TEST_RUN) and through
tests/bpf/refmodel.py, and the two must agree on the verdict, the reason
counted, every parsing and list event counted, whether the packet was
accounted (one admission event), and the protocol, ports, TCP flags,
length class, fragment class and destination bucket it was accounted under
(read back from the histograms).

    sudo scripts/test tests/bpf/test_fuzz.py -s         # CI: EXAMPLES (3,000) draws
    SEAWALL_FUZZ_EXAMPLES=1000000 sudo -E scripts/test tests/bpf/test_fuzz.py -s
    sudo scripts/fuzz 1000000                           # the same at nice 19, summary kept

SEAWALL_FUZZ_SUMMARY_LOG2 sets the size the list summaries are compiled
with (default 16; the program's own default, 24, is 15 times slower here).
SEAWALL_FUZZ_SEED fixes hypothesis's seed (otherwise random; a failure
prints the packet in hex, both answers, and hypothesis's reproduction
blob). Draws are run in batches of BATCH, each with its own seed, so a
million-example run keeps hypothesis's memory flat.
"""

from __future__ import annotations

import ipaddress
import os
import random
import struct
import time
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

import refmodel
from seawall.control.datapath import abi, bpf, counters, loader, summary, synports, tries
from seawall.control.datapath.abi import Event, Feature, Reason
from refmodel import Block, Rule, Tables

from conftest import Datapath

EXAMPLES = int(os.environ.get("SEAWALL_FUZZ_EXAMPLES", "3000"))
SEED = os.environ.get("SEAWALL_FUZZ_SEED")
BATCH = 20000  # examples per hypothesis run
MAX_FRAMES = 12  # frames per example (one table draw)
#: list summary size, as a power of two (tunables.h's LIST_SUMMARY_LOG2;
#: the fuzz builds its own, smaller, see the fuzz fixture)
SUMMARY_LOG2 = int(os.environ.get("SEAWALL_FUZZ_SUMMARY_LOG2", "16"))
SEC = 1_000_000_000

#: BPF_PROG_TEST_RUN puts at most a page minus XDP_PACKET_HEADROOM (256)
#: minus the aligned skb_shared_info (320) in the linear buffer, and the
#: rest of a longer frame in fragments the program does not see: its
#: data_end (and the length it counts) stops there. On a real interface a
#: program without frags support only ever gets linear frames, so the
#: model is given what the program sees.
TEST_RUN_LINEAR = 4096 - 256 - 320

ADMISSION = (Event.SRC_HIT, Event.SRC_INSERT, Event.SRC_DEFERRED, Event.SRC_BUDGET)

# --- strategies -----------------------------------------------------------------------
# Every strategy object is built once, at import: hypothesis validates each
# new strategy it meets, which made building them inside draws cost more
# than the whole kernel run. Choices from a list go through pick().

U8, U16, U32 = st.integers(0, 0xFF), st.integers(0, 0xFFFF), st.integers(0, 2**32 - 1)
U64 = st.integers(0, 2**64 - 1)
INDEX = st.integers(0, 2**16 - 1)
BLOB16 = st.binary(max_size=16)
BLOB24 = st.binary(max_size=24)
BLOB40 = st.binary(min_size=40, max_size=40)
BLOB64 = st.binary(max_size=64)
GARBAGE = st.binary(min_size=14, max_size=160)
_ONE_IN = {n: st.integers(0, n - 1) for n in (2, 3, 4, 5, 6, 10, 16)}
BOOL = st.booleans()
TO = {n: st.integers(0, n) for n in (40, 63, 300, 400, 8191)}


def pick(draw, seq):
    """One element of seq (a plain list, which may differ per draw)."""
    return seq[draw(INDEX) % len(seq)]


def one_in(draw, n: int) -> bool:
    return draw(_ONE_IN[n]) == 0


def mixed(draw, favourites, uniform):
    """Half the time one of the favourite values, else uniform's draw."""
    return pick(draw, favourites) if draw(BOOL) else draw(uniform)


# --- addresses --------------------------------------------------------------------
# Sources come from a small per-example pool so that list entries (drawn
# around the same pool) cover them often. All inside the benchmarking
# ranges; the frames never leave BPF_PROG_TEST_RUN anyway.

V4_BASE = int(ipaddress.ip_address("198.18.0.0"))
V6_BASE = int(ipaddress.ip_address("2001:2::"))


def v4_addr(draw) -> bytes:
    hi = pick(draw, [0, 0, 1])  # 198.18 or 198.19
    third = mixed(draw, [0, 1, 7, 255], U8)
    fourth = mixed(draw, [0, 1, 66, 255], U8)
    return (V4_BASE + (hi << 16) + (third << 8) + fourth).to_bytes(4, "big")


def v6_addr(draw) -> bytes:
    subnet = mixed(draw, [0, 0x66, 0xFFFF], U16)
    iid = mixed(draw, [0, 1, 0x66, 2**64 - 1], U64)
    return (V6_BASE + (subnet << 64) + iid).to_bytes(16, "big")


def source(draw, version: int, pool: list) -> bytes:
    """Mostly one of the example's pool, sometimes a fresh address."""
    if one_in(draw, 4):
        return v4_addr(draw) if version == 4 else v6_addr(draw)
    return pick(draw, pool)


# --- tables -------------------------------------------------------------------------

EXPIRY_KINDS = ["never", "never", "live", "expired", "expired"]


def _expires(kind: str, now: int) -> int:
    return {"never": 0, "live": now + 3600 * SEC, "expired": now - 5 * SEC}[kind]


PLEN4 = ([32, 32, 31, 30, 29, 28, 24, 24, 23, 16, 15, 8, 1, 0], st.integers(0, 32))
PLEN6 = ([128, 128, 127, 126, 125, 124, 64, 64, 63, 48, 47, 16, 1, 0], st.integers(0, 128))
PORTS = ([0, 53, 80, 161, 443, 65535], U16)
PROTOS = ([6, 6, 17, 17, 1, 58, 47, 50, 59, 0, 43, 44, 60, 51], U8)


@dataclass
class TableSpec:
    """Tables with expiries as kinds; bound to a clock by at()."""

    allow: list  # (version, plen, addr)
    block: list  # (version, plen, addr, expiry kind)
    sigs: dict  # slot -> (Rule without expiry, expiry kind)
    sig_used: int
    monitor: bool
    summaries: str = "off"  # list summaries, where the program has them: off, fresh or stale
    hosts: str = "mirrored"  # the blocked-host mirrors: mirrored (as ListStore writes) or behind (empty)
    syn: dict = field(default_factory=dict)  # TCP port under SYN protection -> expiry kind

    def at(self, now: int) -> Tables:
        t = Tables(monitor=self.monitor, sig_used=self.sig_used)
        for v, plen, addr in self.allow:
            (t.allow_v4 if v == 4 else t.allow_v6).add((plen, refmodel.mask(addr, plen)))
        for v, plen, addr, kind in self.block:
            (t.block_v4 if v == 4 else t.block_v6)[(plen, refmodel.mask(addr, plen))] = \
                Block(_expires(kind, now), plen)
        t.sigs = [Rule() for _ in range(abi.MAX_SIGNATURES)]
        for slot, (r, kind) in self.sigs.items():
            t.sigs[slot] = Rule(r.proto, r.match, r.tcp_flags, r.dport, r.sport, r.len_min, r.len_max,
                                r.rate_pps, _expires(kind, now))
        t.syn_ports = {port: _expires(kind, now) for port, kind in self.syn.items()}
        return t


L4_BITS = abi.SigMatch.DPORT | abi.SigMatch.SPORT | abi.SigMatch.FLAGS


def rule(draw, frames: list) -> Rule:
    """A signature rule; most are cut from one of the example's frames (as
    the engine cuts them from a flood), with some fields changed. A rule
    cut from a non-first fragment mostly has the fragment bit and no L4
    field, as the control plane writes it; sometimes both (the kernel must
    then match nothing), and other rules sometimes the bit alone."""
    match = 0 if one_in(draw, 10) else abi.SigMatch.ACTIVE
    for bit in (abi.SigMatch.DPORT, abi.SigMatch.SPORT, abi.SigMatch.LEN, abi.SigMatch.FLAGS):
        if one_in(draw, 2):
            match |= bit
    if one_in(draw, 6):
        match |= abi.SigMatch.FRAG
    r = dict(proto=mixed(draw, *PROTOS), tcp_flags=mixed(draw, [2, 0x12, 0x10, 0], TO[63]),
             dport=mixed(draw, *PORTS), sport=mixed(draw, *PORTS),
             len_min=mixed(draw, [0, 0, 60, 64, 100], TO[300]),
             len_max=mixed(draw, [65535, 128, 200], TO[400]))
    if not one_in(draw, 4):
        f = pick(draw, frames)[:TEST_RUN_LINEAR]
        d = refmodel.classify(f, Tables(), 0)
        if d.proto is not None:
            seen = dict(proto=d.proto, tcp_flags=d.tcp_flags, dport=d.dport, sport=d.sport,
                        len_min=pick(draw, [len(f), len(f), 0, len(f) + 1]),
                        len_max=pick(draw, [len(f) + 1, 65535, 65535, len(f)]))
            for k, v in seen.items():
                if not one_in(draw, 10):  # mostly kept
                    r[k] = v
            if d.frag == abi.FragClass.LATER and not one_in(draw, 5):
                match = (match | abi.SigMatch.FRAG) & ~L4_BITS if not one_in(draw, 4) else match | abi.SigMatch.FRAG
    return Rule(match=match, rate_pps=pick(draw, [0, 0, 0, 1, 1000, 2**32 - 1]), **r)


def table_spec(draw, pool4: list, pool6: list, frames: list) -> TableSpec:
    def entries(n_max):
        out = []
        for _ in range(draw(INDEX) % (n_max + 1)):
            v = pick(draw, [4, 6])
            out.append((v, mixed(draw, *(PLEN4 if v == 4 else PLEN6)), source(draw, v, pool4 if v == 4 else pool6)))
        return out

    allow = entries(2) if one_in(draw, 4) else []
    block = [(*e, pick(draw, EXPIRY_KINDS)) for e in entries(8)]
    sigs = {}
    for _ in range(pick(draw, [0, 1, 2, 3, 4, 6])):
        slot = draw(INDEX) % (6 if one_in(draw, 2) else abi.MAX_SIGNATURES)
        sigs[slot] = (rule(draw, frames), pick(draw, EXPIRY_KINDS))
    top = max(sigs) + 1 if sigs else 0
    used = mixed(draw, [top, top, top, 0, abi.MAX_SIGNATURES], U32)
    syn = {}
    if not one_in(draw, 3):  # ports under SYN protection: mostly a TCP frame's own
        tcp = [d.dport for d in (refmodel.classify(f[:TEST_RUN_LINEAR], Tables(), 0) for f in frames)
               if d.proto == 6 and d.dport]
        for _ in range(1 + draw(INDEX) % 2):
            port = pick(draw, tcp) if tcp and not one_in(draw, 5) else mixed(draw, *PORTS)
            if port:
                syn[port] = pick(draw, EXPIRY_KINDS)
    return TableSpec(allow, block, sigs, used, one_in(draw, 3), pick(draw, ["off", "off", "fresh", "stale", "stale",
                                                                           "stale"]),
                     pick(draw, ["mirrored", "mirrored", "mirrored", "behind"]), syn)


# --- frames ---------------------------------------------------------------------------

MACS = bytes.fromhex("020000000002" "020000000001")


def l4(draw, proto: int) -> bytes:
    """An L4 header for proto (random fields, ports from a small pool)."""
    if proto == 6:
        flags = mixed(draw, [0x02, 0x12, 0x10, 0x18, 0x04, 0x01, 0x3F, 0xFF], U8)
        doff = pick(draw, [5, 5, 8, 15, 0])
        hdr = struct.pack("!HHIIBBHHH", mixed(draw, *PORTS), mixed(draw, *PORTS), draw(U32), 0,
                          doff << 4, flags, 65535, 0, 0)
    elif proto == 17:
        hdr = struct.pack("!HHHH", mixed(draw, *PORTS), mixed(draw, *PORTS), draw(U16), 0)
    elif proto in (1, 58):
        hdr = struct.pack("!BBH", mixed(draw, [0, 3, 8, 11, 128, 129], U8), draw(U8), 0) + b"\0\0\0\0"
    else:
        hdr = b""
    return hdr + draw(BLOB24)


def ipv4(draw, pool4: list) -> bytes:
    src = source(draw, 4, pool4)
    proto = mixed(draw, *PROTOS)
    n_opt = mixed(draw, [0, 0, 0, 4, 40], TO[40])
    opts = draw(BLOB40)[:n_opt]
    ihl = (20 + len(opts) + 3) // 4
    opts += b"\0" * (ihl * 4 - 20 - len(opts))
    if one_in(draw, 5):
        ihl = draw(INDEX) % 16  # bogus: too small, or past the header
    frag = mixed(draw, [0, 0, 0x4000, 0x2000, 0x2000 | 185, 370, 1], U16)
    payload = l4(draw, proto)
    total = 20 + len(opts) + len(payload)
    if one_in(draw, 5):
        total = mixed(draw, [0, 10, 20, 65535], U16)  # bogus total length
    version = pick(draw, [0, 6, 15]) if one_in(draw, 10) else 4
    dst = (V4_BASE + 1).to_bytes(4, "big")
    hdr = struct.pack("!BBHHHBBH4s4s", (version << 4) | ihl, 0, total, draw(U16), frag,
                      64, proto, 0, src, dst)
    return hdr + opts + payload


EXT_TYPES = [0, 43, 60, 60, 51, 44]


def ipv6(draw, pool6: list) -> bytes:
    src = source(draw, 6, pool6)
    if one_in(draw, 6):  # long chains around IPV6_EXT_MAX_CHAIN
        chain = [60] * (7 + draw(INDEX) % 4)
    else:
        chain = [pick(draw, EXT_TYPES) for _ in range(draw(INDEX) % 11)]
    final = mixed(draw, *PROTOS)
    types = chain + [final]
    body = b""
    for i, t in enumerate(chain):
        nh = types[i + 1]
        if t == 44:  # fragment: first (offset 0) or not, M flag either way
            off = mixed(draw, [0, 0, 1, 100, 8191], TO[8191])
            body += struct.pack("!BBHI", nh, 0, (off << 3) | draw(INDEX) % 8, 0x1234)
            continue
        hdrlen = mixed(draw, [0, 0, 1, 2, 4], U8)
        size = (hdrlen + 2) * 4 if t == 51 else (hdrlen + 1) * 8
        if one_in(draw, 10):  # the header stops short of its own length
            size = 2 + draw(INDEX) % (size - 1)
        fill = draw(BLOB16)[:size - 2]
        body += bytes([nh, hdrlen]) + fill + bytes(size - 2 - len(fill))
    body += l4(draw, final)
    plen = len(body)
    if one_in(draw, 5):
        plen = mixed(draw, [0, 8, 65535], U16)  # bogus payload length
    dst = (V6_BASE + 1).to_bytes(16, "big")
    hdr = struct.pack("!IHBB16s16s", 0x60000000 | draw(U16), plen, types[0], 64, src, dst)
    return hdr + body


TAGS = [[]] * 8 + [[0x8100], [0x8100], [0x88A8], [0x88A8, 0x8100], [0x8100, 0x8100],
                   [0x88A8, 0x8100, 0x8100], [0x8100] * 4]


def frame(draw, pool4: list, pool6: list) -> bytes:
    kind = pick(draw, ["v4"] * 7 + ["v6"] * 7 + ["garbage", "other"])
    if kind == "garbage":
        g = draw(GARBAGE)
        if one_in(draw, 2):  # garbage that claims to be IP or tagged
            g = g[:12] + struct.pack("!H", pick(draw, [0x0800, 0x86DD, 0x8100, 0x88A8])) + g[14:]
        return g
    if one_in(draw, 16):
        tags = [pick(draw, [0x8100, 0x88A8]) for _ in range(draw(INDEX) % 5)]
    else:
        tags = pick(draw, TAGS)
    if kind == "v4":
        et, l3 = 0x0800, ipv4(draw, pool4)
    elif kind == "v6":
        et, l3 = 0x86DD, ipv6(draw, pool6)
    else:
        et = mixed(draw, [0x0806, 0x88CC, 0x8100, 0x88A8, 0x0000, 0xFFFF], U16)
        l3 = draw(BLOB64)
    types = tags + [et]
    f = MACS + struct.pack("!H", types[0])
    for i in range(len(tags)):
        f += struct.pack("!HH", draw(U16), types[i + 1])
    f += l3
    if one_in(draw, 4):  # truncated somewhere
        f = f[:14 + draw(INDEX) % (len(f) - 13)]
    return f


SYN_OPTIONS = [
    bytes.fromhex("020405b40402080a0001e2400000000001030307"),  # Linux: MSS, SACK, TS, NOP, WS
    bytes.fromhex("020405b4010303080101040200000000"),  # Windows, padded to 16
    bytes.fromhex("020405b4010303060101080a0000030900000000040200"),  # macOS, ends in EOL
    b"",
]


def syn_frame(draw, pool4: list, pool6: list) -> bytes:
    """A TCP segment that SYN protection judges, well formed but for its
    options, flags and length: a plain SYN mostly, with real stacks'
    options or random bytes, maybe tagged, IPv4 or IPv6."""
    v = pick(draw, [4, 6])
    opts = pick(draw, SYN_OPTIONS) if not one_in(draw, 4) else draw(BLOB40)[:4 * (draw(INDEX) % 11)]
    opts += b"\0" * (-len(opts) % 4)
    doff = 5 + len(opts) // 4 if not one_in(draw, 6) else draw(INDEX) % 16
    flags = mixed(draw, [0x02, 0x02, 0x02, 0xC2, 0x12, 0x10, 0x14, 0x11], U8)
    tcp = struct.pack("!HHIIBBHHH", mixed(draw, *PORTS), pick(draw, [80, 443, 8443]), draw(U32), draw(U32),
                      doff << 4, flags, 65535, 0, 0) + opts
    if v == 4:
        l3 = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 0, mixed(draw, [0, 0x4000, 0x2000], U16), 64, 6,
                         0, source(draw, 4, pool4), (V4_BASE + 1).to_bytes(4, "big"))
    else:
        l3 = struct.pack("!IHBB16s16s", 0x60000000, len(tcp), 6, 64, source(draw, 6, pool6),
                         (V6_BASE + 1).to_bytes(16, "big"))
    tags = pick(draw, [[], [], [0x8100], [0x88A8, 0x8100]])
    types = tags + [0x0800 if v == 4 else 0x86DD]
    f = MACS + struct.pack("!H", types[0])
    for i in range(len(tags)):
        f += struct.pack("!HH", draw(U16), types[i + 1])
    f += l3 + tcp
    if one_in(draw, 6):  # cut short in its options
        f = f[:len(f) - 1 - draw(INDEX) % max(1, len(opts))]
    return f


@dataclass
class Example:
    spec: TableSpec
    frames: list


@st.composite
def examples(draw):
    pool4 = [v4_addr(draw) for _ in range(1 + draw(INDEX) % 4)]
    pool6 = [v6_addr(draw) for _ in range(1 + draw(INDEX) % 4)]
    fs = [frame(draw, pool4, pool6) for _ in range(1 + draw(INDEX) % MAX_FRAMES)]
    if one_in(draw, 3):
        fs += [syn_frame(draw, pool4, pool6) for _ in range(1 + draw(INDEX) % 3)]
    return Example(table_spec(draw, pool4, pool6, fs), fs)


# --- the harness ------------------------------------------------------------------------


@dataclass
class Tally:
    examples: int = 0
    frames: int = 0
    reasons: Counter = field(default_factory=Counter)
    events: Counter = field(default_factory=Counter)
    rate_limited: int = 0
    fragment_rule: int = 0  # non-first fragments a fragment rule decided
    seconds: float = 0.0

    def line(self) -> str:
        r = ", ".join(f"{k.name.lower()}={v}" for k, v in sorted(self.reasons.items()))
        e = ", ".join(f"{k.name.lower()}={v}" for k, v in sorted(self.events.items()))
        return (f"fuzz: {self.examples} examples, {self.frames} frames in {self.seconds:.0f} s, "
                f"0 disagreements; reasons: {r}; events: {e}; rate-limited matches: {self.rate_limited}; "
                f"fragment-rule matches: {self.fragment_rule}")


class Fuzz:
    """The loaded program, with writers for exactly the map entries an
    example sets (and removes afterwards) and fast counter reads."""

    def __init__(self, dp):
        self.dp = dp
        self.maps = {f"{lst}_v{v}": dp.lists.maps.trie(lst, v) for lst, v in tries.TRIES}
        self.maps["sigs"], self.maps["sig_meta"] = dp.lists.sigs.sigs, dp.lists.sigs.meta
        self.offsets = abi.feature_offsets()

    def counters(self):
        c = self.dp.counters
        return c.read_stats()[:, 0].astype(np.int64), c.read_events().astype(np.int64)

    def feature_slots(self, d: refmodel.Decision, length: int) -> list:
        o = self.offsets
        cls = min(length // abi.LEN_CLASS_WIDTH, abi.LEN_CLASSES - 1)
        return [o[Feature.PROTO] + (d.proto & 0xFF), o[Feature.SPORT] + d.sport, o[Feature.DPORT] + d.dport,
                o[Feature.FLAGS] + (d.tcp_flags & 0x3F), o[Feature.LEN] + cls, o[Feature.FRAG] + d.frag,
                o[Feature.DST] + d.dst]

    def read_features(self, slots: list) -> Counter:
        h = self.dp.counters.read_features()
        return Counter({s: int(h[s]) for s in set(slots)})

    def summaries(self, how: str) -> None:
        """Where the program has list summaries (datapath/summary.py):
        "fresh", rebuilt from the (empty) tries, so that the bits set are
        exactly those the list store marks as it writes this example's
        entries, and a source outside them skips the trie walk; "stale",
        in use with the bits earlier examples left set (a rebuild costs
        15 ms); "off", every check walks its trie. The model knows nothing
        of them: they must never change a verdict."""
        if not summary.pinned(self.dp.paths.pin_root):
            return
        if how == "fresh" or (how == "stale" and not self.dp.lists.maps.summaries.summarised()):
            self.dp.lists.rebuild_derived()
        elif how == "off":
            self.dp.lists.maps.summaries.set_flags(0)

    def install(self, spec: TableSpec, now: int) -> list:
        self.summaries(spec.summaries)
        written = []
        for v, plen, addr in spec.allow:
            key = struct.pack("=I", plen) + refmodel.mask(addr, plen)
            self.maps[f"allow_v{v}"].update(key, bytes(abi.SwAllow(prefixlen=plen)))
            written.append((f"allow_v{v}", key))
        for v, plen, addr, kind in spec.block:
            key = struct.pack("=I", plen) + refmodel.mask(addr, plen)
            self.maps[f"block_v{v}"].update(key, bytes(abi.SwBlock(expires_ns=_expires(kind, now),
                                                                     prefixlen=plen)))
            written.append((f"block_v{v}", key))
            if spec.hosts == "behind" and plen == (32 if v == 4 else 128):
                self.dp.lists.maps.mirrors[v].map().delete(refmodel.mask(addr, plen))  # a trie walk instead
        t = spec.at(now)
        for slot, r in enumerate(t.sigs):
            self.maps["sigs"].update(slot.to_bytes(4, "little"), bytes(r.to_kernel()))
        self.maps["sig_meta"].update(b"\0" * 4, bytes(abi.SwSigMeta(used=spec.sig_used)))
        for port, expires_ns in t.syn_ports.items():
            self.dp.synports.put(synports.SynPort(port, expires_ns, False, 7, synports.MSS4, synports.MSS6))
            written.append(("syn_ports", port))
        counters.write_flags(self.dp.iface_dir, abi.CfgFlag.MONITOR if spec.monitor else 0)
        return written

    def remove(self, written: list) -> None:
        for name, key in written:
            if name == "syn_ports":
                self.dp.synports.clear(key)
            else:
                self.maps[name].delete(key)
        self.maps["sig_meta"].update(b"\0" * 4, bytes(abi.SwSigMeta(used=0)))
        counters.write_flags(self.dp.iface_dir, 0)

    def check(self, frame: bytes, tables: Tables, now: int):
        """Run one frame through both; returns (disagreement text or None,
        the model's decision)."""
        slots0 = None
        seen = frame[:TEST_RUN_LINEAR]
        want = refmodel.classify(seen, tables, now)
        alts = [want]
        if want.rate_slot is not None:
            alts.append(refmodel.classify(seen, tables, now, rate_ok=lambda s: True))
        accounted = [a for a in alts if a.accounted]
        if accounted:
            slots = self.feature_slots(accounted[0], len(seen))
            slots0 = self.read_features(slots)
        r0, e0 = self.counters()
        retval = bpf.prog_test_run(self.dp.prog_fd, frame).retval
        r1, e1 = self.counters()
        dr, de = r1 - r0, e1 - e0
        moved = np.flatnonzero(dr)
        got_reason = Reason(int(moved[0])) if len(moved) == 1 and dr[moved[0]] == 1 else None
        got_events = Counter({Event(i): int(n) for i, n in enumerate(de) if n and Event(i) not in ADMISSION})
        admitted = int(sum(de[e] for e in ADMISSION))
        problems = []
        for d in alts:
            p = []
            if retval != d.verdict:
                p.append(f"verdict {retval} != {d.verdict}")
            if got_reason != d.reason:
                p.append(f"reason {got_reason and got_reason.name} (counters {dr.tolist()}) != {d.reason.name}")
            if got_events != +d.events:
                p.append(f"events {dict(got_events)} != {dict(+d.events)}")
            if admitted != int(d.accounted):
                p.append(f"admission events {admitted} != {int(d.accounted)}")
            if not p and d.accounted:
                moved_f = self.read_features(slots) - slots0
                want_f = Counter(slots)
                if moved_f != want_f:
                    p.append(f"feature slots moved {dict(moved_f)} != {dict(want_f)} "
                             f"(proto/sport/dport/flags/len/frag/dst)")
            if not p:
                return None, d
            problems.append(f"model {d}: " + "; ".join(p))
        return (f"frame {frame.hex()} ({len(frame)} bytes): kernel {retval}/"
                f"{got_reason and got_reason.name} events {dict(got_events)}; " + " | ".join(problems)), want


@pytest.fixture(scope="module")
def fuzz(bpf_paths):
    """The program compiled for this module, as conftest's _datapath does,
    but with list summaries of 2^SUMMARY_LOG2 bits: the summary code is the
    same at any size, and at the default size (2 MiB a list) a rebuild
    takes a quarter of a second, most of an example's time."""
    cpu = min(os.sched_getaffinity(0))
    old_affinity = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {cpu})  # per-CPU state: one CPU, as one flow has
    iface_dir = loader.iface_dir(bpf_paths.pin_root, "fuzz")
    loaded = loader.load(bpf_paths.pin_root, iface_dir, {"LIST_SUMMARY_LOG2": SUMMARY_LOG2})
    dp = Datapath(bpf_paths, iface_dir, loaded)
    try:
        dp.reset()
        yield Fuzz(dp)
    finally:
        dp.close()
        os.sched_setaffinity(0, old_affinity)


def run_examples(fz: Fuzz, n: int, tally: Tally, seed_value=None) -> None:
    @settings(max_examples=n, deadline=None, database=None, print_blob=True,
              suppress_health_check=list(HealthCheck))
    @given(ex=examples())
    def one(ex: Example):
        now = fz.dp.clock.boot_ns()
        written = fz.install(ex.spec, now)
        try:
            tables = ex.spec.at(now)
            for frame in ex.frames:
                err, d = fz.check(frame, tables, fz.dp.clock.boot_ns())
                assert err is None, f"{err}\ntables: {tables}"
                tally.frames += 1
                tally.reasons[d.reason] += 1
                tally.events.update(+d.events)
                tally.rate_limited += d.rate_slot is not None
                tally.fragment_rule += (d.frag == abi.FragClass.LATER
                                        and d.reason in (Reason.DROP_SIG, Reason.MON_SIG))
        finally:
            fz.remove(written)
        tally.examples += 1

    if seed_value is not None:
        one = seed(seed_value)(one)
    one()


def test_program_agrees_with_reference_model(fuzz):
    """EXAMPLES table draws, up to MAX_FRAMES frames each, zero
    disagreements; and the draws reach every reason and every parsing
    event (else the generator, not the program, would be what passes)."""
    tally = Tally()
    t0 = time.monotonic()
    rng = random.Random(int(SEED) if SEED else None)
    left = EXAMPLES
    while left > 0:
        n = min(BATCH, left)
        run_examples(fuzz, n, tally, rng.getrandbits(64))
        left -= n
        if EXAMPLES > BATCH:  # a long run: say how far it got
            print(f"\n[{time.monotonic() - t0:.0f} s] {tally.examples} examples, {tally.frames} frames", flush=True)
    tally.seconds = time.monotonic() - t0
    print("\n" + tally.line())
    out = os.environ.get("SEAWALL_FUZZ_REPORT")
    if out:
        with open(out, "a") as f:
            f.write(tally.line() + "\n")
    # a socket or a valid cookie is what the fuzz's random frames never carry
    # (tests/bpf/test_syncookie_xdp.py has both, in a namespace of its own)
    assert set(tally.reasons) == set(Reason) - {Reason.PASS_SOCKET, Reason.PASS_SYNCOOKIE}, tally.line()
    want_events = {Event.VLAN, Event.IP_OPTIONS, Event.IPV6_EXT, Event.FRAGMENT, Event.L4_UNPARSED,
                   Event.BLOCK_EXPIRED}
    assert want_events <= set(tally.events), tally.line()
    assert tally.rate_limited > 0, tally.line()
    assert tally.fragment_rule > 0, tally.line()


# --- the harness itself must be able to fail ----------------------------------------------


def test_harness_reports_a_wrong_model(fuzz):
    """The comparison is not vacuous: a model told a different table, or a
    different monitor flag, is caught on the same frame."""
    src = bytes([198, 18, 1, 66])
    frame = (MACS + b"\x08\x00" + struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40, 0, 0, 64, 6, 0, src,
                                              (V4_BASE + 1).to_bytes(4, "big"))
             + struct.pack("!HHIIBBHHH", 40000, 443, 0, 0, 0x50, 0x02, 65535, 0, 0))
    spec = TableSpec([], [(4, 24, src, "never")], {}, 0, False)
    now = fuzz.dp.clock.boot_ns()
    written = fuzz.install(spec, now)
    try:
        assert fuzz.check(frame, spec.at(now), now)[0] is None
        err, _ = fuzz.check(frame, Tables(), now)  # the model does not know the block
        assert err is not None and "verdict 1 != 2" in err, err
        wrong = spec.at(now)
        wrong.monitor = True
        err, _ = fuzz.check(frame, wrong, now)
        assert err is not None and "MON_BLOCK" in err, err
    finally:
        fuzz.remove(written)


def test_harness_catches_misparsed_ports(fuzz, monkeypatch):
    """A model that swaps the ports agrees on the verdict but is caught
    through the histogram buckets the packet is accounted under."""
    src = bytes([198, 18, 2, 10])
    frame = (MACS + b"\x08\x00" + struct.pack("!BBHHHBBH4s4s", 0x45, 0, 28, 0, 0, 64, 17, 0, src,
                                              (V4_BASE + 1).to_bytes(4, "big"))
             + struct.pack("!HHHH", 5353, 53, 8, 0))
    now = fuzz.dp.clock.boot_ns()
    assert fuzz.check(frame, Tables(), now)[0] is None
    real = refmodel._parse_l4
    monkeypatch.setattr(refmodel, "_parse_l4", lambda f, pos, proto: (lambda r: (r[1], r[0], *r[2:]))(
        real(f, pos, proto)))
    err, _ = fuzz.check(frame, Tables(), now)
    assert err is not None and "feature slots" in err, err


def test_harness_catches_a_wrong_fragment_class_or_destination_bucket(fuzz, monkeypatch):
    """The fragment and destination histograms are compared too: a model
    that takes a first fragment for a whole packet, or that buckets the
    destination otherwise than the kernel, is caught."""
    src, dst = bytes([198, 18, 2, 11]), (V4_BASE + 7).to_bytes(4, "big")
    frame = (MACS + b"\x08\x00" + struct.pack("!BBHHHBBH4s4s", 0x45, 0, 28, 0, 0x2000, 64, 17, 0, src, dst)
             + struct.pack("!HHHH", 53, 33333, 8, 0))  # a first fragment (MF, offset 0)
    now = fuzz.dp.clock.boot_ns()
    ok, d = fuzz.check(frame, Tables(), now)
    assert ok is None and d.frag == abi.FragClass.FIRST and d.dst == abi.dst_bucket(dst)
    real_v4 = refmodel._parse_ipv4

    def whole(f, pos):
        l3 = real_v4(f, pos)
        l3.frag = abi.FragClass.NONE
        return l3

    monkeypatch.setattr(refmodel, "_parse_ipv4", whole)
    err, _ = fuzz.check(frame, Tables(), now)
    assert err is not None and "feature slots" in err, err
    monkeypatch.setattr(refmodel, "_parse_ipv4", real_v4)
    real_dst = abi.dst_bucket
    monkeypatch.setattr(refmodel.abi, "dst_bucket", lambda a: (real_dst(a) + 1) % abi.DST_BUCKETS)
    err, _ = fuzz.check(frame, Tables(), now)
    assert err is not None and "feature slots" in err, err
