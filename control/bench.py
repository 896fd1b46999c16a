"""`seawall bench`: how fast seawall is, measured side by side in one run.

1. **Datapath.** The real program runs under BPF_PROG_TEST_RUN (`repeat`
   times per run, the median of `runs` runs) on one frame per case: pass
   (a source on no list), drop (a blocked source), signature drop, IPv6,
   VLAN-tagged, and a random-spoofed mix where every packet has a source
   never seen before. The lists hold 100k blocked addresses and 10k allowed
   /24s. Beside it run the floor (an empty `return XDP_DROP;` compiled by
   bcc the same way) and xdp-filter's own object from xdp-tools, loaded
   through libbpf with the same addresses. Each figure is also given as a
   ratio to the floor, and seawall's as a ratio to xdp-filter's.
2. **Control plane.** One daemon scoring cycle (map reads, deltas, engine
   step; `Daemon.cycle`, per stage) over 10k and 100k tracked sources, 1M
   with `full`; the bulk install of 100k blocklist entries; the resident
   memory of the cycle's process.
3. **End to end** on veth pairs in namespaces of its own: legitimate HTTP
   requests during a trafgen flood with no protection, with seawall (the
   attacker blocked beforehand, the daemon running) and with an nftables
   netdev ingress drop rule given the same address list.

Everything runs in scratch maps (a private bpffs folder) and scratch
namespaces, removed afterwards; the host's own lists are never touched.
BENCHMARKS.md explains the method and holds the latest figures.
"""

from __future__ import annotations

import ctypes
import glob
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass, field, replace
from typing import Callable, Optional

import numpy as np

from . import bpfsys, const, kernel, vethlab
from .addr import Prefix
from .errors import SeawallError
from .vethlab import ATTACKER, ATTACKER_MAC, CLIENTS, HTTP_PORT, SERVER, SERVER_MAC_A

XDP_ABORTED, XDP_DROP, XDP_PASS = 0, 1, 2
VERDICTS = {XDP_ABORTED: "aborted", XDP_DROP: "drop", XDP_PASS: "pass"}

# Frames carry benchmarking addresses only (RFC 2544, RFC 5180).
DST4, DST6 = "198.18.0.1", "2001:2::1"
PASS_SRC = "198.19.128.10"  # a customer: on no list, and no entry in its /24
NEAR_SRC = "198.18.16.10"  # a customer on no list whose /24 holds entries of both lists:
NEAR_BLOCKED, NEAR_ALLOWED = "198.18.16.66", "198.18.16.128"  # ... these two (/32, /25)
BLOCKED_SRC = "198.18.1.66"  # the attacker: on the blocklist, with a TTL as the daemon's blocks
PERMANENT_SRC = "198.18.2.66"  # blocked by hand, until removed
SIG_SRC = "198.19.128.12"  # a reflector: on no list, matches a drop rule
PASS_SRC6 = "2001:2::10"
BENCH_NET4 = (0xC6120000, 0xFFFE0000)  # 198.18.0.0/15
BENCH_NET6 = bytes.fromhex("200100020000")  # 2001:2::/48

# xdp/bench_rotate.c's linear congruential step (period 2^32)
LCG_A, LCG_C = 1664525, 1013904223

# the spoofed mix runs this many times more runs than the other cases
SPOOFED_RUNS_FACTOR = 3

# bit masks of xdp/bench.h (SW_BENCH_SKIP)
PROFILE_PARTS = (
    ("allowlist lookup", 1 << 0),
    ("blocklist lookup", 1 << 1),
    ("boot clock", 1 << 2),
    ("source accounting (LRU, doorkeeper)", 1 << 3),
    ("feature histograms", 1 << 4),
    ("signature table", 1 << 5),
    ("event counters", 1 << 6),
)
PROFILE_ALL = (1 << 7) - 1


# --- parameters and results ------------------------------------------------------

@dataclass(frozen=True)
class Params:
    repeat: int = 1_000_000  # BPF_PROG_TEST_RUN repeats per run
    runs: int = 5  # runs per case; the median is reported
    block_entries: int = 100_000  # IPv4 blocklist (/32s)
    allow_entries: int = 10_000  # IPv4 allowlist (/24s)
    block6_entries: int = 10_000  # IPv6 blocklist (/128s)
    allow6_entries: int = 1_000  # IPv6 allowlist (/48s)
    signature_rules: int = 8  # the daemon's own limit on automatic rules
    sources: tuple = (10_000, 100_000)  # tracked sources per scoring-cycle case
    bulk_entries: int = 100_000
    single_adds: int = 200  # block_add() calls timed for comparison with the bulk write
    rss_sources: int = 100_000
    e2e: bool = True
    e2e_seconds: float = 8.0
    e2e_rate: float = 100.0  # legitimate requests per second
    profile: bool = False
    seed: int = 1
    quick: bool = False
    full: bool = False

    @classmethod
    def make(cls, quick: bool = False, full: bool = False, **overrides) -> "Params":
        p = cls()
        if quick:
            p = replace(p, repeat=20_000, runs=3, block_entries=1_000, allow_entries=100, block6_entries=100,
                        allow6_entries=10, sources=(2_000,), bulk_entries=2_000, single_adds=20,
                        rss_sources=2_000, e2e=False, e2e_seconds=3.0, quick=True)
        if full:
            p = replace(p, sources=tuple(p.sources) + (1_000_000,), full=True)
        return replace(p, **{k: v for k, v in overrides.items() if v is not None})


@dataclass
class Case:
    """One measured figure. ns_per_packet for the datapath, seconds for
    the control plane; target and met are None where no target is set."""

    name: str
    part: str  # datapath | control
    what: str
    ns_per_packet: Optional[float] = None
    seconds: Optional[float] = None
    ratio_to_floor: Optional[float] = None
    target: Optional[str] = None
    met: Optional[bool] = None
    detail: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        out = {"name": self.name, "part": self.part, "what": self.what}
        if self.ns_per_packet is not None:
            out["ns_per_packet"] = self.ns_per_packet
        if self.seconds is not None:
            out["seconds"] = self.seconds
        if self.ratio_to_floor is not None:
            out["ratio_to_floor"] = self.ratio_to_floor
        out["target"] = self.target
        out["met"] = self.met
        out.update(self.detail)
        return out


@dataclass
class Report:
    params: Params
    machine: dict
    cases: list = field(default_factory=list)
    profile: list = field(default_factory=list)  # datapath: one row per part compiled out
    control_stages: dict = field(default_factory=dict)  # sources -> stage -> seconds
    memory: dict = field(default_factory=dict)
    e2e: Optional[dict] = None
    notes: list = field(default_factory=list)
    command: str = ""

    def case(self, name: str) -> Optional[Case]:
        return next((c for c in self.cases if c.name == name), None)

    def to_json(self) -> dict:
        return {
            "command": self.command,
            "params": {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self.params).items()},
            "machine": self.machine,
            "cases": [c.to_json() for c in self.cases],
            "profile": self.profile,
            "control_stages": self.control_stages,
            "memory": self.memory,
            "e2e": self.e2e,
            "notes": self.notes,
        }


def _ratio(a: float, b: float) -> float:
    return round(a / b, 2) if b else float("nan")


# --- frames -----------------------------------------------------------------------

def _csum(b: bytes) -> int:
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack(f"!{len(b) // 2}H", b))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def frame(src: str, dst: str, proto: str = "tcp", sport: int = 40000, dport: int = 443, flags: int = 0x10,
          payload: int = 0, vlan: Optional[int] = None) -> bytes:
    """An Ethernet frame (one 802.1Q tag if `vlan`), IPv4 or IPv6 by the
    addresses, TCP (`flags`, ACK by default) or UDP; padded to 60 bytes."""
    import ipaddress

    s, d = ipaddress.ip_address(src), ipaddress.ip_address(dst)
    if proto == "tcp":
        l4 = struct.pack("!HHIIBBHHH", sport, dport, 1, 1, 5 << 4, flags, 65535, 0, 0) + b"\0" * payload
        pnum = 6
    else:
        l4 = struct.pack("!HHHH", sport, dport, 8 + payload, 0) + b"\0" * payload
        pnum = 17
    if s.version == 4:
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(l4), 1, 0, 64, pnum, 0, s.packed, d.packed)
        ip = ip[:10] + struct.pack("!H", _csum(ip)) + ip[12:]
        etype = 0x0800
    else:
        ip = struct.pack("!IHBB16s16s", 6 << 28, len(l4), pnum, 64, s.packed, d.packed)
        etype = 0x86DD
    eth = bytes.fromhex("020000000002" "020000000001")
    if vlan is not None:
        eth += struct.pack("!HH", 0x8100, vlan)
    out = eth + struct.pack("!H", etype) + ip + l4
    return out + b"\0" * max(0, 60 - len(out))


def lcg_advance(x: int, n: int) -> int:
    """The source bench_rotate.c leaves after n steps from x (host order)."""
    a, c = 1, 0  # f^0
    ma, mc = LCG_A, LCG_C  # f^(2^k)
    while n:
        if n & 1:
            a, c = (ma * a) & 0xFFFFFFFF, (ma * c + mc) & 0xFFFFFFFF
        ma, mc = (ma * ma) & 0xFFFFFFFF, (ma * mc + mc) & 0xFFFFFFFF
        n >>= 1
    return (a * x + c) & 0xFFFFFFFF


# --- the address lists ----------------------------------------------------------------

@dataclass
class Lists:
    """What both filters hold. IPv4 blocks are /32s (xdp-filter matches
    exact addresses only), spread over the whole address space as a real
    list is: an LPM trie walks deeper for spread keys than for a dense
    block, so a dense list would flatter seawall."""

    block4: np.ndarray  # uint32, host order (blocked with a TTL)
    allow4: np.ndarray  # uint32 network addresses, /24 but for NEAR_ALLOWED (/25)
    block6: np.ndarray  # (n, 16) uint8
    allow6: np.ndarray  # (n, 16) uint8, /48 networks
    permanent4: np.ndarray = field(default_factory=lambda: np.array(
        [int.from_bytes(socket.inet_aton(PERMANENT_SRC), "big")], np.uint32))  # blocked until removed

    @classmethod
    def make(cls, p: Params) -> "Lists":
        rng = np.random.default_rng(p.seed)
        net, mask = BENCH_NET4

        def draw4(n: int, keep) -> np.ndarray:
            out = np.zeros(0, np.uint32)
            while len(out) < n:
                a = rng.integers(0, 2**32, 2 * n + 64, dtype=np.uint64).astype(np.uint32)
                a = a[keep(a)]
                out = np.unique(np.concatenate([out, a]))
            return rng.permutation(out)[:n]

        allow4 = draw4(p.allow_entries, lambda a: (a & np.uint32(mask)) != net) & np.uint32(0xFFFFFF00)
        allow4 = np.unique(allow4)
        while len(allow4) < p.allow_entries:  # /24 collisions: draw again
            more = draw4(p.allow_entries, lambda a: (a & np.uint32(mask)) != net) & np.uint32(0xFFFFFF00)
            allow4 = np.unique(np.concatenate([allow4, more]))[:p.allow_entries]
        allowed24 = set((allow4 >> np.uint32(8)).tolist())
        block4 = draw4(p.block_entries - 2, lambda a: ((a & np.uint32(mask)) != net)
                       & ~np.isin(a >> np.uint32(8), list(allowed24)))

        def ip(text: str) -> int:
            return int.from_bytes(socket.inet_aton(text), "big")

        # the bench's own entries inside 198.18.0.0/15, which the draws avoid
        block4 = np.concatenate([np.array([ip(BLOCKED_SRC), ip(NEAR_BLOCKED)], np.uint32), block4])
        allow4 = np.concatenate([np.array([ip(NEAR_ALLOWED)], np.uint32), allow4[:p.allow_entries - 1]])

        def draw6(n: int, plen: int) -> np.ndarray:
            a = rng.integers(0, 256, (n * 2 + 16, 16), dtype=np.uint8)
            a[:, 0] = (a[:, 0] & 0x1F) | 0x20  # 2000::/3
            a[:, plen // 8:] = 0
            a = a[(a[:, :6] != np.frombuffer(BENCH_NET6, np.uint8)).any(axis=1)]
            return np.unique(a, axis=0)[:n]

        return cls(block4, allow4, draw6(p.block6_entries, 128), draw6(p.allow6_entries, 48))

    def block_prefixes(self) -> list:
        return [Prefix(4, int(a).to_bytes(4, "big"), 32) for a in self.block4.tolist()]

    def block6_prefixes(self) -> list:
        return [Prefix(6, bytes(a), 128) for a in self.block6]

    def allow_prefixes(self) -> list:
        near = int.from_bytes(socket.inet_aton(NEAR_ALLOWED), "big")
        return ([Prefix(4, int(a).to_bytes(4, "big"), 25 if a == near else 24) for a in self.allow4.tolist()]
                + [Prefix(6, bytes(a), 48) for a in self.allow6])

    def permanent_prefixes(self) -> list:
        return [Prefix(4, int(a).to_bytes(4, "big"), 32) for a in self.permanent4.tolist()]

    def block4_packed(self) -> np.ndarray:
        """(n, 4) uint8 addresses in network order, every blocked one."""
        return np.concatenate([self.block4, self.permanent4]).astype(">u4").view(np.uint8).reshape(-1, 4)


# --- xdp-filter through libbpf ------------------------------------------------------------

class XdpFilter:
    """xdp-filter's own BPF object, as Debian's xdp-tools ships it, loaded
    with Debian's libbpf.so.1 through ctypes.

    The variant is xdpfilt_alw_ip: what `xdp-filter load --features
    ipv4,ipv6` picks (addresses only, default policy allow: a listed
    address is dropped). Its maps are per-CPU hashes keyed by exact
    address; `xdp-filter ip ADDR --mode src` sets the value to MAP_FLAG_SRC
    on every CPU, and so does fill(). Per packet it looks up the
    destination, then the source (xdp-filter/xdpfilt_prog.h). Three
    changes, none to its code: the maps are resized to hold the bench's
    lists (10,000 entries as shipped), they are not pinned, and the
    program's expected attach type is 0, as bcc loads seawall, so that the
    spoofed-mix wrapper may tail-call it (it only matters for attaching).
    """

    OBJECT = "xdpfilt_alw_ip.o"
    PROGRAM = "xdpfilt_alw_ip"
    MAP_FLAG_SRC = 1 << 0  # xdp-filter/common_kern_user.h

    @staticmethod
    def find() -> Optional[str]:
        dirs = [os.environ.get("LIBXDP_OBJECT_PATH", ""), "/usr/lib/bpf", "/usr/local/lib/bpf",
                *glob.glob("/usr/lib/*/bpf"), *glob.glob("/usr/local/lib/*/bpf")]
        for d in dirs:
            if d and os.path.exists(os.path.join(d, XdpFilter.OBJECT)):
                return os.path.join(d, XdpFilter.OBJECT)
        return None

    def __init__(self, path: str, v4_entries: int, v6_entries: int):
        lib = ctypes.CDLL("libbpf.so.1", use_errno=True)
        vp, cp, u32 = ctypes.c_void_p, ctypes.c_char_p, ctypes.c_uint32
        for name, res, args in (
            ("bpf_object__open_file", vp, [cp, vp]),
            ("libbpf_get_error", ctypes.c_long, [vp]),
            ("bpf_object__next_map", vp, [vp, vp]),
            ("bpf_map__name", cp, [vp]),
            ("bpf_map__set_pin_path", ctypes.c_int, [vp, cp]),
            ("bpf_map__set_max_entries", ctypes.c_int, [vp, u32]),
            ("bpf_object__find_program_by_name", vp, [vp, cp]),
            ("bpf_program__set_expected_attach_type", ctypes.c_int, [vp, ctypes.c_int]),
            ("bpf_object__load", ctypes.c_int, [vp]),
            ("bpf_program__fd", ctypes.c_int, [vp]),
            ("bpf_object__find_map_fd_by_name", ctypes.c_int, [vp, cp]),
            ("bpf_object__close", None, [vp]),
            ("libbpf_set_print", vp, [vp]),
        ):
            fn = getattr(lib, name)
            fn.restype, fn.argtypes = res, args
        self.lib = lib
        lib.libbpf_set_print(None)  # its notes on sections it skips are not ours to print
        obj = lib.bpf_object__open_file(path.encode(), None)
        if not obj or lib.libbpf_get_error(obj):
            raise SeawallError(f"libbpf cannot open {path}")
        self.obj = obj
        sizes = {b"filter_ipv4": max(10_000, v4_entries + 1), b"filter_ipv6": max(10_000, v6_entries + 1)}
        m = None
        while True:
            m = lib.bpf_object__next_map(obj, m)
            if not m:
                break
            lib.bpf_map__set_pin_path(m, None)  # no pins: xdp-filter's would go to /sys/fs/bpf/xdp-filter
            name = lib.bpf_map__name(m)
            if name in sizes:
                lib.bpf_map__set_max_entries(m, sizes[name])
        prog = lib.bpf_object__find_program_by_name(obj, self.PROGRAM.encode())
        if not prog:
            self.close()
            raise SeawallError(f"{path} has no program {self.PROGRAM}")
        lib.bpf_program__set_expected_attach_type(prog, 0)
        err = lib.bpf_object__load(obj)
        if err:
            self.close()
            raise SeawallError(f"libbpf cannot load {path}: {os.strerror(-err)}")
        self.prog_fd = lib.bpf_program__fd(prog)
        self.path = path

    def fill(self, map_name: str, keys: np.ndarray) -> None:
        fd = self.lib.bpf_object__find_map_fd_by_name(self.obj, map_name.encode())
        m = bpfsys.Map(os.dup(fd), map_name)
        try:
            vals = np.full((len(keys), m.buf_size // 8), self.MAP_FLAG_SRC, np.uint64).view(np.uint8)
            m.update_batch(np.ascontiguousarray(keys, np.uint8), vals)
        finally:
            m.close()

    def close(self) -> None:
        if self.obj:
            self.lib.bpf_object__close(self.obj)
            self.obj = None


# --- part 1: the datapath ----------------------------------------------------------------------

def test_run(prog_fd: int, pkt: bytes, repeat: int, runs: int, expect: Optional[int] = None) -> tuple:
    """(median ns per packet, every run's figure). Each run is one
    BPF_PROG_TEST_RUN; the kernel times it and divides by `repeat`."""
    ds = []
    for _ in range(runs):
        r = bpfsys.prog_test_run(prog_fd, pkt, repeat)
        if expect is not None and r.retval != expect:
            raise SeawallError(f"bench frame got verdict {VERDICTS.get(r.retval, r.retval)}, "
                               f"expected {VERDICTS[expect]}: the bench measured the wrong path")
        ds.append(int(r.duration_ns))
    return float(statistics.median(ds)), ds


class Datapath:
    """Scratch maps, the programs under test, and their measurements."""

    def __init__(self, p: Params, lists: Lists, pin_root: str, state_dir: str, say: Callable):
        from .lists import ListStore
        from .state import Paths

        self.p, self.lists, self.say = p, lists, say
        self.paths = Paths(pin_root, state_dir)
        self.loaded: list = []
        self.xf: Optional[XdpFilter] = None
        say("compiling seawall, the floor and the spoofed-mix wrapper with bcc")
        # production tunables: only the list capacities must fit the lists
        self.defines = {"MAX_BLOCK_ENTRIES": max(131072, p.block_entries + 1),
                        "MAX_ALLOW_ENTRIES": max(16384, p.allow_entries)}
        self.seawall = self._load("bench", self.defines)
        self.floor = self._load("floor", None, "bench_floor.c", "xdp_floor")
        self.rotate = self._load("rotate", None, "bench_rotate.c", "xdp_rotate")
        self.store = ListStore(self.paths, create=False)

    def _load(self, iface: str, defines, source: str = "seawall.c", func: str = kernel.PROG_NAME):
        loaded = kernel.load(self.paths.pin_root, kernel.iface_pin_dir(self.paths.pin_root, iface), defines,
                             source=source, func=func)
        self.loaded.append(loaded)
        return loaded

    def close(self) -> None:
        self.store.close()
        for l in self.loaded:
            l.close()
        if self.xf is not None:
            self.xf.close()

    # -- state --------------------------------------------------------------

    def fill_lists(self, report: Report) -> None:
        p, lists = self.p, self.lists
        self.say(f"bulk-installing {p.block_entries:,} blocklist entries")
        prefixes = lists.block_prefixes()
        t = time.perf_counter()
        n = self.store.block_add_many(prefixes, ttl=3600, reason="bench", source="auto")
        secs = time.perf_counter() - t
        if n != len(prefixes):
            raise SeawallError(f"bulk install wrote {n} of {len(prefixes)} entries")
        # the same, one block_add() (one lock, lookup, update and fsync) at a time
        singles = [Prefix(4, int(0x0A000000 + i).to_bytes(4, "big"), 32) for i in range(p.single_adds)]
        t = time.perf_counter()
        for q in singles:
            self.store.block_add(q, ttl=3600, reason="bench", source="auto")
        single = (time.perf_counter() - t) / max(1, len(singles))
        for q in singles:
            self.store.block_del(q)
        report.cases.append(Case(
            f"bulk install, {p.block_entries // 1000}k blocklist entries", "control",
            "ListStore.block_add_many: one lock, BPF_MAP_UPDATE_BATCH into the LPM trie, one journal append",
            seconds=round(secs, 3), target="<= 1 s" if p.block_entries >= 100_000 else None,
            met=(secs <= 1.0) if p.block_entries >= 100_000 else None,
            detail={"entries": n, "entries_per_second": round(n / secs),
                    "single_add_seconds": round(single, 5),
                    "single_adds_would_take_seconds": round(single * n, 1)}))
        self.store.block_add_many(lists.block6_prefixes(), ttl=3600, reason="bench", source="auto")
        self.store.block_add_many(lists.permanent_prefixes(), reason="bench")
        self.store.allow_add_many(lists.allow_prefixes(), reason="bench")

    def load_xdp_filter(self, report: Report) -> bool:
        path = XdpFilter.find()
        if path is None:
            report.notes.append("xdp-filter's objects (xdp-tools) were not found: its columns are empty. "
                                "scripts/setup installs xdp-tools.")
            return False
        try:
            self.xf = XdpFilter(path, len(self.lists.block4), len(self.lists.block6))
        except (SeawallError, OSError) as e:
            report.notes.append(f"xdp-filter did not load ({e}): its columns are empty")
            return False
        self.xf.fill("filter_ipv4", self.lists.block4_packed())
        self.xf.fill("filter_ipv6", self.lists.block6)
        return True

    def _sig_rules(self, on: bool) -> None:
        from .signature import Signature

        self.store.sig_flush()
        if on:
            # rules that do not match first, the matching one last: the scan is paid in full
            for i in range(self.p.signature_rules - 1):
                self.store.sig_add(Signature(proto=17, dport=20000 + i), ttl=3600, reason="bench", source="auto")
            self.store.sig_add(Signature(proto=17, sport=161), ttl=3600, reason="bench", source="auto")

    def counters(self) -> dict:
        from .ifaces import Interfaces

        return Interfaces(self.paths).counters("bench")

    # -- cases ----------------------------------------------------------------------

    def run(self, report: Report) -> None:
        p = self.p
        cpu = min(os.sched_getaffinity(0))
        old = os.sched_getaffinity(0)
        os.sched_setaffinity(0, {cpu})  # a test run runs on the calling CPU; per-CPU state stays put
        try:
            self._run(report)
        finally:
            os.sched_setaffinity(0, old)

    def _run(self, report: Report) -> None:
        p = self.p
        have_xf = self.load_xdp_filter(report)
        frames = {
            "pass": frame(PASS_SRC, DST4),
            "pass_listed_24": frame(NEAR_SRC, DST4),
            "drop_block": frame(BLOCKED_SRC, DST4, "udp", 40000, 9, payload=18),
            "drop_block_permanent": frame(PERMANENT_SRC, DST4, "udp", 40000, 9, payload=18),
            "drop_signature": frame(SIG_SRC, DST4, "udp", 161, 40000, payload=18),
            "ipv6_pass": frame(PASS_SRC6, DST6),
            "vlan_pass": frame(PASS_SRC, DST4, vlan=100),
        }
        cases = (
            ("pass", "a tracked source on no list, in a /24 with no list entry (so its summary bits are "
                     "clear), accounted", XDP_PASS, "pass_clean", True),
            ("pass_listed_24", "the same, but its /24 holds an allowed /25 and a blocked /32: both tries "
                               "are walked", XDP_PASS, "pass_clean", True),
            ("drop_block", "blocked source (an automatic block with a TTL)", XDP_DROP, "drop_block", True),
            ("drop_block_permanent", "blocked source (a manual block, until removed)", XDP_DROP, "drop_block",
             True),
            ("drop_signature", f"UDP sport 161 from a source on no list, matching the last of "
                               f"{p.signature_rules} signature rules", XDP_DROP, "drop_sig", False),
            ("ipv6_pass", "IPv6 source on no list", XDP_PASS, "pass_clean", True),
            ("vlan_pass", "802.1Q-tagged IPv4, source on no list", XDP_PASS, "pass_clean", True),
        )
        self.say(f"datapath: {p.runs} runs of {p.repeat:,} repeats per case")
        floor_ns, floor_runs = test_run(self.floor.prog_fd, frames["pass"], p.repeat, p.runs, XDP_DROP)
        report.cases.append(Case("floor", "datapath", "bcc-compiled `return XDP_DROP;`", ns_per_packet=floor_ns,
                                 ratio_to_floor=1.0, detail={"runs_ns": floor_runs}))
        xf_ns: dict = {}
        for name, what, verdict, reason, xf_too in cases:
            self._sig_rules(name == "drop_signature")
            before = self.counters()["reasons"][reason]["packets"]
            ns, runs = test_run(self.seawall.prog_fd, frames[name], p.repeat, p.runs, verdict)
            moved = self.counters()["reasons"][reason]["packets"] - before
            if moved != p.repeat * p.runs:
                raise SeawallError(f"{name}: {moved} of {p.repeat * p.runs} packets counted as {reason}")
            detail = {"runs_ns": runs, "verdict": VERDICTS[verdict], "reason": reason}
            if have_xf and xf_too:
                xns, xruns = test_run(self.xf.prog_fd, frames[name], p.repeat, p.runs, verdict)
                xf_ns[name] = xns
                report.cases.append(Case(f"xdp-filter {name}", "datapath", f"xdp-filter, {what}",
                                         ns_per_packet=xns, ratio_to_floor=_ratio(xns, floor_ns),
                                         detail={"runs_ns": xruns, "verdict": VERDICTS[verdict]}))
                detail["ratio_to_xdp_filter"] = _ratio(ns, xns)
            target = {"pass": 3, "pass_listed_24": 3, "ipv6_pass": 3, "vlan_pass": 3, "drop_block": 2,
                      "drop_block_permanent": 2}.get(name)
            ratio = _ratio(ns, floor_ns)
            report.cases.append(Case(name, "datapath", what, ns_per_packet=ns, ratio_to_floor=ratio,
                                     target=f"<= {target}x floor" if target else None,
                                     met=(ratio <= target) if target else None, detail=detail))
        self._sig_rules(False)
        for name in ("pass", "drop_block", "drop_block_permanent"):
            if name in xf_ns:
                ns = report.case(name).ns_per_packet
                r = _ratio(ns, xf_ns[name])
                report.cases.append(Case(f"{name} vs xdp-filter", "datapath",
                                         f"seawall's {name} over xdp-filter's, the same frame and addresses",
                                         ns_per_packet=ns, target="<= 1x xdp-filter", met=r <= 1.0,
                                         detail={"xdp_filter_ns_per_packet": xf_ns[name], "ratio_to_xdp_filter": r}))
        self._spoofed(report, have_xf)

    def spoofed_run(self, target_fd: int, start: int) -> tuple:
        """One run of the spoofed mix into target_fd; checks that the frame
        advanced exactly `repeat` sources. Returns (ns, retval)."""
        self.rotate.bpf[b"bench_next"][ctypes.c_int(0)] = ctypes.c_int(target_fd)
        pkt = frame(socket.inet_ntoa(start.to_bytes(4, "big")), DST4, flags=0x02, dport=443)
        r = bpfsys.prog_test_run(self.rotate.prog_fd, pkt, self.p.repeat)
        if r.retval == XDP_ABORTED:
            raise SeawallError("spoofed mix: the tail call failed (the wrapper returned XDP_ABORTED)")
        got = int.from_bytes(r.data_out[26:30], "big")
        want = lcg_advance(start, self.p.repeat)
        if got != want:
            raise SeawallError(f"spoofed mix: the frame's source did not advance once per repeat "
                               f"({got:#010x}, expected {want:#010x}): the test run did not keep "
                               f"the program's writes between repeats")
        return int(r.duration_ns), r.retval

    def spoofed_median(self, target_fd: int, salt: int) -> tuple:
        """Median ns over SPOOFED_RUNS_FACTOR x runs (a random source misses
        the caches, and the spread between runs is wide), each run from a
        fresh random start: runs never replay each other's sources."""
        rng = np.random.default_rng(self.p.seed * 1000 + salt)
        ds = [self.spoofed_run(target_fd, int(rng.integers(0, 2**32)))[0]
              for _ in range(SPOOFED_RUNS_FACTOR * self.p.runs)]
        return float(statistics.median(ds)), ds

    def _spoofed(self, report: Report, have_xf: bool) -> None:
        p = self.p
        self.say("datapath: random-spoofed mix (a new source every packet)")
        fl_ns, fl_runs = self.spoofed_median(self.floor.prog_fd, 1)
        report.cases.append(Case("floor, spoofed wrapper", "datapath",
                                 "rotation prologue + tail call into `return XDP_DROP;`", ns_per_packet=fl_ns,
                                 ratio_to_floor=1.0, detail={"runs_ns": fl_runs}))
        before = self.counters()
        ns, runs = self.spoofed_median(self.seawall.prog_fd, 2)
        after = self.counters()
        total = p.repeat * p.runs * SPOOFED_RUNS_FACTOR

        mix = {r: after["reasons"][r]["packets"] - before["reasons"][r]["packets"]
               for r in ("pass_clean", "pass_allow", "drop_block")}
        events = {e: after["events"][e] - before["events"][e]
                  for e in ("src_deferred", "src_insert", "src_budget", "src_hit")}
        if sum(mix.values()) != total:
            raise SeawallError(f"spoofed mix: {sum(mix.values())} of {total} packets counted")
        detail = {"runs_ns": runs, "verdicts": mix, "events": events,
                  "method": "bench_rotate.c rewrites the IPv4 source (full-period LCG) and tail-calls the "
                            "unmodified program; checked: the source advanced exactly once per repeat"}
        ratio = _ratio(ns, fl_ns)
        if have_xf:
            xns, xruns = self.spoofed_median(self.xf.prog_fd, 3)
            report.cases.append(Case("xdp-filter spoofed_mix", "datapath",
                                     "xdp-filter, a new IPv4 source every packet (same wrapper)",
                                     ns_per_packet=xns, ratio_to_floor=_ratio(xns, fl_ns), detail={"runs_ns": xruns}))
            detail["ratio_to_xdp_filter"] = _ratio(ns, xns)
        report.cases.append(Case("spoofed_mix", "datapath",
                                 "a new IPv4 source every packet (random over the whole space), SYN to 443",
                                 ns_per_packet=ns, ratio_to_floor=ratio, target="<= 4x floor (spoofed wrapper)",
                                 met=ratio <= 4, detail=detail))

    # -- profile ------------------------------------------------------------------------------

    def profile(self, report: Report) -> None:
        """Seawall with one part compiled out at a time (xdp/bench.h): the
        difference to the full program is what that part costs."""
        p = self.p
        frames = {"pass": frame(PASS_SRC, DST4), "drop_block": frame(BLOCKED_SRC, DST4, "udp", 40000, 9, payload=18)}
        old = os.sched_getaffinity(0)
        os.sched_setaffinity(0, {min(old)})
        try:
            def measure(loaded) -> dict:
                row = {name: test_run(loaded.prog_fd, fr, p.repeat, p.runs)[0] for name, fr in frames.items()}
                row["spoofed_mix"] = self.spoofed_median(loaded.prog_fd, 2)[0]
                return row

            full = measure(self.seawall)
            report.profile.append({"build": "full program", "skip_mask": 0, **full})
            for i, (part, bit) in enumerate(PROFILE_PARTS + (("everything but parsing", PROFILE_ALL),)):
                self.say(f"profile: without {part}")
                try:
                    loaded = self._load(f"profile{i}", {**self.defines, "SW_BENCH_SKIP": bit})
                except SeawallError as e:  # a build the verifier refuses is reported, not fatal
                    report.profile.append({"build": f"without {part}", "skip_mask": bit, "error": str(e)[-200:]})
                    continue
                row = measure(loaded)
                row["cost_ns"] = {k: round(full[k] - row[k], 1) for k in full}
                report.profile.append({"build": f"without {part}", "skip_mask": bit, **row})
                loaded.close()
                self.loaded.remove(loaded)
        finally:
            os.sched_setaffinity(0, old)


# --- part 2: the control plane ---------------------------------------------------------------------

class CycleSim:
    """A daemon (control/daemon.py's Daemon, its real cycle) watching one
    scratch interface whose tracked-source table holds n sources, every one
    of them active in every cycle (the worst case for a cycle). Between
    cycles, step() writes the next cumulative counters into the kernel maps
    as the datapath would; that write is not timed."""

    def __init__(self, pin_root: str, state_dir: str, iface: str, n: int, seed: int):
        from .config import Config, DetectionConfig, MetricsConfig
        from .daemon import Daemon
        from .engine import Engine
        from .kview import IfaceView
        from .lists import ListStore
        from .state import Paths

        self.n = n
        self.rng = np.random.default_rng(seed)
        paths = Paths(pin_root, state_dir)
        # warm-up 0: the engine scores from its fourth cycle on
        cfg = Config(detection=DetectionConfig(warmup=0.0), metrics=MetricsConfig(enabled=False))
        d = Daemon(cfg, paths)
        d.store = ListStore(paths, create=False)
        d.views = {iface: IfaceView(pin_root, iface)}
        d.engine = Engine(cfg, d._allowed)
        self.d = d
        self.view = d.views[iface]
        m = self.view.src4
        self.ncpu, self.stride = m.ncpu, m.stride
        self.addrs = self.rng.choice(2**32 - 1, size=n, replace=False).astype(np.uint32) + np.uint32(1)
        self.keys = self.addrs.astype(">u4").view(np.uint8).reshape(-1, 4)
        self.cum = np.zeros((n, 3), np.uint64)  # packets, bytes, syns
        self.feat = np.zeros(self.view.features.max_entries, np.uint64)
        self.offsets = const.feature_offsets()
        self.step(attack=False)
        d.prev_feat[iface] = self.view.read_features()
        d.prev_src[iface] = self.view.read_sources()

    def step(self, attack: bool) -> None:
        """One cycle's traffic: every source 1 + Poisson(2) packets of a
        web mix; under attack, 1% of them send 5,000 UDP packets each."""
        n, rng = self.n, self.rng
        pk = 1 + rng.poisson(2.0, n).astype(np.uint64)
        heavy = np.zeros(n, bool)
        if attack:
            heavy[rng.choice(n, max(1, n // 100), replace=False)] = True
            pk[heavy] += np.uint64(5000)
        self.cum[:, 0] += pk
        self.cum[:, 1] += pk * np.uint64(600)
        self.cum[:, 2] += (pk // np.uint64(8))
        vals = np.zeros((n, self.ncpu, self.stride // 8), np.uint64)
        vals[:, 0, :3] = self.cum
        self.view.src4.update_batch(self.keys, vals.view(np.uint8).reshape(n, -1))
        # the feature histograms of the same packets
        total = int(pk.sum())
        legit = int(pk[~heavy].sum())
        F, off = const.Feature, self.offsets
        h = self.feat
        h[off[F.SRC] + rng.integers(0, const.FEATURE_SIZES[F.SRC], min(total, 1_000_000))] += np.uint64(
            max(1, total // min(total, 1_000_000)))
        for feat, buckets, probs in ((F.DPORT, (443, 80, 53), (0.8, 0.15, 0.05)),
                                     (F.PROTO, (6, 17), (0.9, 0.1)),
                                     (F.LEN, (0, 1, 11), (0.5, 0.2, 0.3)),
                                     (F.FLAGS, (0x10, 0x18, 0x02), (0.7, 0.2, 0.1))):
            counts = rng.multinomial(legit, probs)
            for b, c in zip(buckets, counts):
                h[off[feat] + b] += np.uint64(c)
        h[off[F.SPORT] + rng.integers(32768, 61000, 4096)] += np.uint64(max(1, legit // 4096))
        if attack:
            flood = total - legit
            for feat, b in ((F.DPORT, 9), (F.PROTO, 17), (F.LEN, 0), (F.FLAGS, 0), (F.SPORT, 40000)):
                h[off[feat] + b] += np.uint64(flood)
        fm = self.view.features
        keys = np.arange(fm.max_entries, dtype=np.uint32).view(np.uint8).reshape(-1, 4)
        fv = np.zeros((fm.max_entries, fm.ncpu, fm.stride // 8), np.uint64)
        fv[:, 0, 0] = h
        fm.update_batch(keys, fv.view(np.uint8).reshape(fm.max_entries, -1))

    def cycle(self, attack: bool = False) -> tuple:
        """(seconds, per-stage seconds, report) of one Daemon.cycle after
        one step() of traffic."""
        self.step(attack)
        t = time.perf_counter()
        rep = self.d.cycle(1.0)
        return time.perf_counter() - t, dict(self.d.stage_seconds), rep

    def close(self) -> None:
        for v in self.d.views.values():
            v.close()
        self.d.store.close()


def _pure_part(sim: CycleSim, cycles: int = 3) -> float:
    """The pure part alone: delta and engine step on snapshots already in
    memory, median seconds over `cycles` (fresh engines, same baseline)."""
    from .engine import Observation
    from .kview import hist_delta, split_features
    from .sources import delta

    v = sim.view
    out = []
    for _ in range(cycles):
        f0, s0 = v.read_features(), v.read_sources()
        sim.step(attack=False)
        f1, s1 = v.read_features(), v.read_sources()
        eng = sim.d.engine
        t = time.perf_counter()
        d = delta(s1, s0)
        d = d.take(d.packets > 0)
        eng.step(Observation(time.monotonic(), 1.0, split_features(hist_delta(f1, f0)), d))
        out.append(time.perf_counter() - t)
    return float(statistics.median(out))


def control_plane(p: Params, pin_root: str, state_dir: str, report: Report, say: Callable) -> None:
    for n in p.sources:
        iface = f"cp{n}"
        say(f"control plane: scoring cycles over {n:,} tracked sources")
        # a build whose table holds n sources; the default holds 65,536
        loaded = kernel.load(pin_root, kernel.iface_pin_dir(pin_root, iface),
                             {"MAX_SOURCES_V4": n + n // 8, "MAX_BLOCK_ENTRIES": max(131072, p.block_entries + 1)})
        loaded.close()  # the pinned maps stay
        sim = CycleSim(pin_root, state_dir, iface, n, p.seed)
        try:
            calm = [sim.cycle() for _ in range(6)][3:]  # three to learn, then three scored
            tracked = len(sim.d.prev_src[iface])
            secs = statistics.median(c[0] for c in calm)
            stages = {k: round(statistics.median(c[1][k] for c in calm), 4) for k in calm[0][1]}
            pure = _pure_part(sim)
            att_secs, att_stages, att_rep = sim.cycle(attack=True)
        finally:
            sim.close()
        label = f"{n // 1000}k" if n < 1_000_000 else f"{n // 1_000_000}M"
        target = n >= 1_000_000
        report.cases.append(Case(
            f"scoring cycle, {label} sources", "control",
            "Daemon.cycle: allowlist refresh, map reads, deltas, engine step, decisions (all sources active)",
            seconds=round(secs, 4), target="<= 0.1 s" if target else None, met=(secs <= 0.1) if target else None,
            detail={"sources": tracked, "stages_seconds": stages}))
        report.cases.append(Case(
            f"scoring cycle, {label} sources, pure part", "control",
            "deltas and engine step on snapshots already read (no I/O)", seconds=round(pure, 4)))
        report.cases.append(Case(
            f"scoring cycle under attack, {label} sources", "control",
            "the same cycle when 1% of the sources flood: alarm, attribution, blocks written and journalled",
            seconds=round(att_secs, 4), target="<= 0.1 s" if target else None,
            met=(att_secs <= 0.1) if target else None,
            detail={"stages_seconds": {k: round(v, 4) for k, v in att_stages.items()},
                    "alarm": att_rep.alarm, "blocks": sum(1 for a in att_rep.actions if hasattr(a, "prefix"))}))
        report.control_stages[label] = {"calm": stages, "attack": {k: round(v, 4) for k, v in att_stages.items()}}
    _memory(p, pin_root, state_dir, report, say)


def _memory(p: Params, pin_root: str, state_dir: str, report: Report, say: Callable) -> None:
    """Resident memory of a fresh process running the daemon's cycle over
    rss_sources tracked sources (no bcc imported, as a daemon watching
    interfaces attached beforehand)."""
    n = p.rss_sources
    iface = f"cp{n}"
    if not os.path.isdir(kernel.iface_pin_dir(pin_root, iface)):
        loaded = kernel.load(pin_root, kernel.iface_pin_dir(pin_root, iface), {"MAX_SOURCES_V4": n + n // 8})
        loaded.close()
    say(f"control plane: resident memory of the cycle over {n:,} sources (a fresh process)")
    arg = json.dumps({"pin_root": pin_root, "state_dir": state_dir, "iface": iface, "n": n, "seed": p.seed})
    out = subprocess.run([sys.executable, "-m", "seawall.control.bench", "--rss-child", arg],
                         capture_output=True, text=True, timeout=600)
    if out.returncode:
        raise SeawallError(f"the memory probe failed: {out.stderr.strip()[-300:]}")
    r = json.loads(out.stdout.strip().splitlines()[-1])
    report.memory["cycle_process"] = {
        "what": f"a fresh Python process running Daemon.cycle over {n:,} tracked sources for "
                f"{r['cycles']} cycles, with the lists in place (no bcc loaded)",
        "sources": n, "rss_mib": round(r["rss_kib"] / 1024, 1), "peak_rss_mib": round(r["hwm_kib"] / 1024, 1)}


def _proc_kib(pid: int, key: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def _rss_child(arg: str) -> None:
    a = json.loads(arg)
    sim = CycleSim(a["pin_root"], a["state_dir"], a["iface"], a["n"], a["seed"])
    cycles = 5
    for _ in range(cycles):
        sim.cycle()
    print(json.dumps({"cycles": cycles, "rss_kib": _proc_kib(os.getpid(), "VmRSS"),
                      "hwm_kib": _proc_kib(os.getpid(), "VmHWM")}))


# --- part 3: end to end on veth -------------------------------------------------------------------

FLOOD_CPUS = 2  # trafgen processes, one per CPU: the flood's receive work lands on every core


def _sh(*cmd, check: bool = True, timeout: float = 120, **kw) -> subprocess.CompletedProcess:
    p = subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout, **kw)
    if check and p.returncode:
        raise SeawallError(f"{' '.join(cmd[:6])}...: exit {p.returncode}: {p.stderr.strip()[-300:]}")
    return p


class Lab:
    """The three namespaces of vethlab.py (as tests/netns/daemonlab.py uses
    them too). Names start with swt-bench-; everything is removed on exit."""

    def __init__(self, tag: str, env: dict):
        self.c, self.a, self.s = (f"swt-bench-{tag}-{x}" for x in "cas")
        self.env = env
        self.procs: list = []
        self.seawall_bin = os.path.join(os.path.dirname(sys.executable), "seawall")

    def ns(self, name: str) -> list:
        return ["nsenter", f"--net=/run/netns/{name}"]

    def build(self) -> None:
        vethlab.build(self.c, self.a, self.s)

    def start(self, ns: str, *cmd, quiet: bool = False, group: bool = False, **kw) -> subprocess.Popen:
        """Start cmd in namespace ns. quiet: discard its output. A process
        that writes a line per request (http.server) must be quiet, or it
        blocks once the unread pipe fills (64 KiB, some 900 requests).
        group: its own process group, signalled whole by stop() (trafgen
        forks a sender per CPU)."""
        out = subprocess.DEVNULL if quiet else subprocess.PIPE
        p = subprocess.Popen([*self.ns(ns), *cmd], stdout=out, stderr=out, text=True, start_new_session=group, **kw)
        p.group = group
        self.procs.append(p)
        return p

    def seawall(self, *args) -> subprocess.CompletedProcess:
        return _sh(*self.ns(self.s), self.seawall_bin, *args, env=self.env)

    def arrived(self) -> int:
        """Frames that reached the server's flooded interface, whoever then
        dropped them: seawall's own counters while it is attached (the
        frames its XDP drops never reach the interface's rx counter), the
        rx counter otherwise (nftables' ingress hook runs after it)."""
        st = _sh(*self.ns(self.s), self.seawall_bin, "stats", "-i", "swa0", "--json", check=False, env=self.env)
        if st.returncode == 0:
            reasons = json.loads(st.stdout)["interfaces"]["swa0"]["reasons"]
            return sum(r["packets"] for r in reasons.values())
        out = _sh(*self.ns(self.s), "ip", "-s", "-j", "link", "show", "swa0").stdout
        return int(json.loads(out)[0]["stats64"]["rx"]["packets"])

    def stop(self, p: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
        def send(s: int) -> None:
            try:
                if getattr(p, "group", False):
                    os.killpg(p.pid, s)
                else:
                    p.send_signal(s)
            except ProcessLookupError:
                pass

        if p.poll() is None or getattr(p, "group", False):
            send(sig)
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                send(signal.SIGKILL)
                p.wait(5)
            if getattr(p, "group", False):
                send(signal.SIGKILL)  # a sender the signal left behind

    def teardown(self) -> None:
        for p in self.procs:
            self.stop(p)
        for ns in (self.c, self.a, self.s):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def _softnet_drops() -> int:
    """Packets dropped because a CPU's input backlog was full, host-wide
    (/proc/net/softnet_stat, second column). Without XDP, veth hands every
    frame to the receiving CPU's backlog, which the flood then shares with
    the customers' packets on that CPU."""
    total = 0
    try:
        with open("/proc/net/softnet_stat") as f:
            for line in f:
                total += int(line.split()[1], 16)
    except (OSError, IndexError, ValueError):
        return 0
    return total


def _trafgen_conf(path: str) -> None:
    """One 64-byte UDP frame from the attacker to the server's port 9."""
    with open(path, "w") as f:
        f.write("{\n"
                f"  eth(da={SERVER_MAC_A}, sa={ATTACKER_MAC}, type=0x0800),\n"
                f"  ipv4(saddr={ATTACKER}, daddr=198.18.1.1, proto=17, ttl=64),\n"
                "  udp(sp=40000, dp=9),\n"
                "  fill(0x41, 18)\n"
                "}\n")


def e2e(p: Params, lists: Lists, report: Report, say: Callable) -> None:
    for tool in ("trafgen", "nft", "nsenter"):
        if shutil.which(tool) is None:
            report.notes.append(f"end to end skipped: {tool} is not installed (scripts/setup installs it)")
            return
    tag = uuid.uuid4().hex[:6]
    pin_root = f"/sys/fs/bpf/seawall-bench-{tag}-lab"
    state_dir = tempfile.mkdtemp(prefix="seawall-bench-lab-")
    env = dict(os.environ, SEAWALL_BPFFS=pin_root, SEAWALL_STATE_DIR=state_dir)
    lab = Lab(tag, env)
    work = tempfile.mkdtemp(prefix="seawall-bench-e2e-")
    conf = os.path.join(work, "flood.cfg")
    _trafgen_conf(conf)
    attackers = [ATTACKER] + [socket.inet_ntoa(int(a).to_bytes(4, "big")) for a in lists.block4[1:].tolist()]
    phases = []
    try:
        say("end to end: building the namespaces")
        lab.build()
        lab.start(lab.s, sys.executable, "-m", "http.server", str(HTTP_PORT), "--bind", SERVER,
                  "--directory", work, quiet=True)
        time.sleep(0.7)
        secs = p.e2e_seconds

        cpus = sorted(os.sched_getaffinity(0))
        halves = [CLIENTS[i::len(cpus)] for i in range(len(cpus))]

        def phase(name: str, what: str, flood: bool, during: Optional[Callable] = None) -> dict:
            say(f"end to end: {name}")
            drops0 = _softnet_drops()
            fl = None
            if flood:
                # bounded in count and time; as fast as the senders go
                fl = lab.start(lab.a, "timeout", str(int(secs) + 10), "trafgen", "--dev", "swa1", "--conf", conf,
                               "--cpus", str(FLOOD_CPUS), "--num", str(int(3_000_000 * secs)), "-Q", "-C",
                               group=True)
                time.sleep(0.5)  # at full rate before the customers start
            arrived0, t0 = lab.arrived(), time.monotonic()
            # one customer process per CPU, so that some customers always
            # share a core with the flood, as RSS spreads them on a NIC
            clients = [lab.start(lab.c, "taskset", "-c", str(cpu), sys.executable, "-m", "seawall.control.vethlab",
                                 ",".join(half), SERVER, str(HTTP_PORT), str(secs), str(p.e2e_rate / len(cpus)),
                                 "--latencies")
                       for cpu, half in zip(cpus, halves)]
            extra = during() if during else {}
            ok = fail = 0
            lat: list = []
            why: list = []
            for c in clients:
                out, err = c.communicate(timeout=secs + 60)
                try:
                    r = json.loads(out.strip().splitlines()[-1])
                except (ValueError, IndexError):
                    raise SeawallError(f"the client load died: {err.strip()[-300:]}") from None
                ok, fail, lat = ok + r["ok"], fail + r["fail"], lat + r["lat_ms"]
                why += [f"{src}: {msg}" for _, src, msg in r["failures"]]
            arrived = lab.arrived() - arrived0
            elapsed = time.monotonic() - t0
            if fl is not None:
                lab.stop(fl, signal.SIGINT)
            lat.sort()

            def pct(q: float):
                return round(lat[min(len(lat) - 1, int(len(lat) * q))], 2) if lat else None

            total = ok + fail
            row = {"name": name, "what": what, "requests": total, "ok": ok,
                   "success_rate": round(ok / total, 4) if total else None,
                   "p50_ms": pct(0.5), "p99_ms": pct(0.99), "max_ms": lat[-1] if lat else None,
                   "flood_packets": arrived if flood else 0,
                   "flood_pps": round(arrived / elapsed) if flood else 0,
                   "backlog_drops": _softnet_drops() - drops0, "failures": why[:4]}
            row.update(extra)
            phases.append(row)
            return row

        phase("no flood", "customers only, nothing in the way", False)
        phase("flood, no protection", "the flood reaches the server's stack", True)

        # nftables: the same addresses in a set, dropped at netdev ingress
        nft = os.path.join(work, "bench.nft")
        with open(nft, "w") as f:
            f.write("table netdev swbench {\n  set attackers {\n    type ipv4_addr\n    elements = { "
                    + ", ".join(attackers) + " }\n  }\n"
                    "  chain c {\n    type filter hook ingress device swa0 priority 0;\n"
                    "    ip saddr @attackers counter drop\n  }\n}\n")
        _sh(*lab.ns(lab.s), "nft", "-f", nft, timeout=300)
        row = phase("flood, nftables", f"nft netdev ingress on swa0: `ip saddr @set drop`, the same "
                                       f"{len(attackers):,} addresses", True)
        _sh(*lab.ns(lab.s), "nft", "delete", "table", "netdev", "swbench")

        # seawall: the attacker and the bench's whole list blocked beforehand,
        # the daemon attaching both interfaces itself and running throughout
        from .lists import ListStore
        from .state import Paths

        kernel.ensure_global_maps(pin_root)
        store = ListStore(Paths(pin_root, state_dir))
        store.block_add_many(lists.block_prefixes(), ttl=3600, reason="bench", source="manual")
        store.close()

        # seawall alone: attached by the CLI, no daemon
        lab.seawall("attach", "sws0")
        lab.seawall("attach", "swa0")
        row = phase("flood, seawall", f"`seawall attach` on both server interfaces, {len(attackers):,} addresses "
                                      f"blocked beforehand (the attacker among them), no daemon", True)
        stats = json.loads(lab.seawall("stats", "--json").stdout)["interfaces"]
        row["dropped_by_seawall"] = stats["swa0"]["reasons"]["drop_block"]["packets"]
        lab.seawall("detach", "sws0")
        lab.seawall("detach", "swa0")

        # and with the daemon, which attaches both interfaces itself
        daemon_log = open(os.path.join(work, "daemon.log"), "w+")
        daemon = subprocess.Popen([*lab.ns(lab.s), lab.seawall_bin, "run", "-i", "sws0", "-i", "swa0",
                                   "--interval", "1s"], stdout=daemon_log, stderr=daemon_log, env=env)
        lab.procs.append(daemon)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            st = json.loads(lab.seawall("status", "--json").stdout)
            if sum(i["state"] == "attached" for i in st["interfaces"]) == 2:
                break
            if daemon.poll() is not None:
                daemon_log.seek(0)
                raise SeawallError(f"seawall run exited: {daemon_log.read()[-300:]}")
            time.sleep(0.2)
        time.sleep(2.5)  # a few cycles

        def daemon_rss() -> dict:
            time.sleep(secs * 0.8)
            return {"daemon_rss_mib": round(_proc_kib(daemon.pid, "VmRSS") / 1024, 1)}

        row = phase("flood, seawall + daemon", "the same, attached by `seawall run`, which watches "
                                               "throughout (1 s cycles)", True, daemon_rss)
        stats = json.loads(lab.seawall("stats", "--json").stdout)["interfaces"]
        row["dropped_by_seawall"] = stats["swa0"]["reasons"]["drop_block"]["packets"]
        lab.stop(daemon)
        daemon_log.seek(0)
        events = [json.loads(line) for line in daemon_log if line.startswith("{")]
        row["daemon_decisions"] = sum(1 for e in events if e.get("event") in ("block", "signature"))
        daemon_log.close()
        report.memory["seawall_run"] = {
            "what": "RSS of the real `seawall run` process in the lab after a few cycles (it attached both "
                    "interfaces itself, so bcc and LLVM are loaded; about 50 tracked sources)",
            "rss_mib": row.pop("daemon_rss_mib")}
        lab.seawall("detach", "sws0")
        lab.seawall("detach", "swa0")

    finally:
        lab.teardown()
        shutil.rmtree(pin_root, ignore_errors=True)
        shutil.rmtree(state_dir, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)
    report.e2e = {
        "phases": phases,
        "seconds_per_phase": p.e2e_seconds,
        "request_rate": p.e2e_rate,
        "note": "veth: the receiver's XDP and nftables run on the sender's core, so flood_pps is what the "
                "sender and the filter sustain together; the clients, the HTTP server, trafgen and the "
                "daemon share the machine's two cores",
    }


# --- the run ---------------------------------------------------------------------------------------

def machine() -> dict:
    def read(path: str) -> str:
        try:
            with open(path) as f:
                return f.read().strip()
        except OSError:
            return ""

    cpu = ""
    for line in read("/proc/cpuinfo").splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    vul = "/sys/devices/system/cpu/vulnerabilities/"
    return {
        "kernel": platform.release(),
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "clocksource": read("/sys/devices/system/clocksource/clocksource0/current_clocksource"),
        "spectre_v2": read(vul + "spectre_v2"),
        "spec_rstack_overflow": read(vul + "spec_rstack_overflow"),
        "bpf_jit_harden": read("/proc/sys/net/core/bpf_jit_harden"),
    }


def run(p: Params, say: Callable = lambda msg: None, command: str = "seawall bench") -> Report:
    """Run the whole bench; every scratch object is removed afterwards."""
    if os.geteuid() != 0:
        raise SeawallError("`seawall bench` needs root (BPF, bpffs and network namespaces)")
    report = Report(p, machine(), command=command)
    tag = uuid.uuid4().hex[:10]
    pin_root = f"/sys/fs/bpf/seawall-bench-{tag}"
    state_dir = tempfile.mkdtemp(prefix="seawall-bench-")
    lists = Lists.make(p)
    dp = None
    try:
        kernel.ensure_bpffs(pin_root)
        dp = Datapath(p, lists, pin_root, state_dir, say)
        dp.fill_lists(report)
        dp.run(report)
        if p.profile:
            dp.profile(report)
        dp.close()
        dp = None
        control_plane(p, pin_root, state_dir, report, say)
    finally:
        if dp is not None:
            dp.close()
        shutil.rmtree(pin_root, ignore_errors=True)
        shutil.rmtree(state_dir, ignore_errors=True)
    if p.e2e:
        e2e(p, lists, report, say)
    return report


# --- output ------------------------------------------------------------------------------------------

def _fmt_met(c: Case) -> str:
    return "-" if c.met is None else ("met" if c.met else "MISSED")


def render_text(r: Report) -> str:
    """The report as tables, for people."""
    lines = []
    p = r.params
    m = r.machine
    lines.append(f"seawall bench: {m['cpus']} CPUs ({m['cpu']}), kernel {m['kernel']}")
    lines.append(f"datapath: BPF_PROG_TEST_RUN, median of {p.runs} runs x {p.repeat:,} repeats; lists: "
                 f"{p.block_entries:,} blocked /32 + {p.allow_entries:,} allowed /24 (IPv6: "
                 f"{p.block6_entries:,} + {p.allow6_entries:,})")
    lines.append("")
    lines.append(f"{'case':28s} {'ns/pkt':>8s} {'x floor':>8s} {'xdp-filter':>11s} {'x xdpf':>7s}  target")
    for c in r.cases:
        if c.part != "datapath" or c.name.startswith("xdp-filter") or " vs " in c.name:
            continue
        xf = r.case(f"xdp-filter {c.name}")
        xf_s = f"{xf.ns_per_packet:>11.0f}" if xf else f"{'-':>11s}"
        rx = c.detail.get("ratio_to_xdp_filter")
        rx_s = f"{rx:>7.2f}" if rx is not None else f"{'-':>7s}"
        tgt = f"{c.target}: {_fmt_met(c)}" if c.target else ""
        lines.append(f"{c.name:28s} {c.ns_per_packet:>8.0f} {c.ratio_to_floor:>8.2f} {xf_s} {rx_s}  {tgt}")
    for c in r.cases:
        if " vs " in c.name:
            lines.append(f"{c.name:28s} {c.detail['ratio_to_xdp_filter']:>8.2f}x  {c.target}: {_fmt_met(c)}")
    if r.profile:
        lines.append("")
        lines.append("profile (ns/packet; the part's cost = full program minus the build without it):")
        lines.append(f"  {'build':44s} {'pass':>6s} {'drop':>6s} {'spoofed':>8s}")
        for row in r.profile:
            if "error" in row:
                lines.append(f"  {row['build']:44s} not measured: {row['error']}")
                continue
            cost = row.get("cost_ns")
            tail = (f"   cost {cost['pass']:>5.0f} {cost['drop_block']:>5.0f} {cost['spoofed_mix']:>5.0f}"
                    if cost else "")
            lines.append(f"  {row['build']:44s} {row['pass']:>6.0f} {row['drop_block']:>6.0f} "
                         f"{row['spoofed_mix']:>8.0f}{tail}")
    lines.append("")
    lines.append(f"{'control plane':52s} {'seconds':>9s}  target")
    for c in r.cases:
        if c.part == "control":
            tgt = f"{c.target}: {_fmt_met(c)}" if c.target else ""
            lines.append(f"{c.name:52s} {c.seconds:>9.4f}  {tgt}")
    for label, st in r.control_stages.items():
        lines.append(f"  stages, {label}: " + ", ".join(f"{k} {v * 1000:.1f} ms" for k, v in st["calm"].items()))
        lines.append(f"  stages, {label}, attack: " + ", ".join(f"{k} {v * 1000:.1f} ms"
                                                                for k, v in st["attack"].items()))
    for key, mem in r.memory.items():
        lines.append(f"memory ({key}): {mem['rss_mib']} MiB RSS - {mem['what']}")
    if r.e2e:
        lines.append("")
        lines.append(f"end to end on veth ({r.e2e['seconds_per_phase']:g} s per phase, "
                     f"{r.e2e['request_rate']:g} requests/s):")
        lines.append(f"  {'phase':24s} {'success':>8s} {'p50 ms':>8s} {'p99 ms':>8s} {'max ms':>8s} "
                     f"{'flood pps':>10s} {'backlog drops':>14s}")
        for ph in r.e2e["phases"]:
            sr = f"{100 * ph['success_rate']:.1f}%" if ph["success_rate"] is not None else "-"
            lines.append(f"  {ph['name']:24s} {sr:>8s} {ph['p50_ms'] or '-':>8} {ph['p99_ms'] or '-':>8} "
                         f"{ph['max_ms'] or '-':>8} {ph['flood_pps']:>10,} {ph['backlog_drops']:>14,}")
        lines.append("  " + r.e2e["note"])
    for n in r.notes:
        lines.append("note: " + n)
    return "\n".join(lines)


def plot(r: Report, path: str) -> None:
    """A grouped bar chart of ns per packet by case: floor, xdp-filter, seawall."""
    from . import plot as plotmod

    groups = []
    labels = {"pass": "pass", "pass_listed_24": "pass near", "drop_block": "drop TTL",
              "drop_block_permanent": "drop perm", "drop_signature": "signature", "ipv6_pass": "IPv6 pass",
              "vlan_pass": "VLAN pass", "spoofed_mix": "spoofed"}
    for name, label in labels.items():
        c = r.case(name)
        if c is None:
            continue
        fl = r.case("floor, spoofed wrapper" if name == "spoofed_mix" else "floor")
        xf = r.case(f"xdp-filter {name}")
        groups.append((label, [fl.ns_per_packet if fl else None, xf.ns_per_packet if xf else None,
                               c.ns_per_packet]))
    img = plotmod.render_bars(
        groups, [("floor (empty program)", (150, 150, 150)), ("xdp-filter", (230, 159, 0)),
                 ("seawall", (0, 114, 178))],
        title="ns per packet, BPF_PROG_TEST_RUN (median)",
        subtitle=f"{r.params.repeat:,} repeats x {r.params.runs} runs; {r.machine['cpu']}, "
                 f"kernel {r.machine['kernel']}")
    plotmod.write_png(path, img)


def main(argv: list) -> int:
    """`python -m seawall.control.bench --rss-child ...`: the helper
    process of the memory part (vethlab.py is the end-to-end part's)."""
    if argv[:1] == ["--rss-child"] and len(argv) == 2:
        _rss_child(argv[1])
        return 0
    print("usage: seawall bench (this module's own entry is for its helper processes)", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
