"""The bench's datapath part: the real program, the empty program and
xdp-filter, timed side by side under BPF_PROG_TEST_RUN on one frame per
case, with the same address lists in scratch maps.

The spoofed mix runs each program behind xdp/bench/rotate.c, which gives
every repeat a new source; the profile times seawall built without one
part at a time (xdp/bench/profile.h). The program under test is always the
unmodified xdp/seawall.c, loaded by the product's own loader.
"""

from __future__ import annotations

import ctypes
import os
import socket
import statistics
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np

from seawall.control.addr import Prefix
from seawall.control.datapath import bpf, loader
from seawall.control.datapath.abi import XdpAction
from seawall.control.datapath.interfaces import Interfaces
from seawall.control.errors import SeawallError
from seawall.control.lists.store import ListStore
from seawall.control.signature import Signature
from seawall.control.state import Paths
from seawall.control.tools.bench.peers import XdpFilter
from seawall.control.tools.bench.report import Case, Params, Report
from seawall.control.tools.bench.report import ratio as _ratio
from seawall.control.tools.frames import frame

VERDICTS = {XdpAction.ABORTED: "aborted", XdpAction.DROP: "drop", XdpAction.PASS: "pass"}

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

# xdp/bench/rotate.c's linear congruential step (period 2^32)
LCG_A, LCG_C = 1664525, 1013904223

# the spoofed mix runs this many times more runs than the other cases
SPOOFED_RUNS_FACTOR = 3

# the parts xdp/bench/profile.h can compile out, by their bit in PROFILE_SKIP
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


def lcg_advance(x: int, n: int) -> int:
    """The source xdp/bench/rotate.c leaves after n steps from x (host order)."""
    a, c = 1, 0  # f^0
    ma, mc = LCG_A, LCG_C  # f^(2^k)
    while n:
        if n & 1:
            a, c = (ma * a) & 0xFFFFFFFF, (ma * c + mc) & 0xFFFFFFFF
        ma, mc = (ma * ma) & 0xFFFFFFFF, (ma * mc + mc) & 0xFFFFFFFF
        n >>= 1
    return (a * x + c) & 0xFFFFFFFF


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


def test_run(prog_fd: int, pkt: bytes, repeat: int, runs: int, expect: Optional[int] = None) -> tuple:
    """(median ns per packet, every run's figure). Each run is one
    BPF_PROG_TEST_RUN; the kernel times it and divides by `repeat`."""
    ds = []
    for _ in range(runs):
        r = bpf.prog_test_run(prog_fd, pkt, repeat)
        if expect is not None and r.retval != expect:
            raise SeawallError(f"bench frame got verdict {VERDICTS.get(r.retval, r.retval)}, "
                               f"expected {VERDICTS[expect]}: the bench measured the wrong path")
        ds.append(int(r.duration_ns))
    return float(statistics.median(ds)), ds


class Datapath:
    """Scratch maps, the programs under test, and their measurements."""

    def __init__(self, p: Params, lists: Lists, pin_root: str, state_dir: str, say: Callable):
        self.p, self.lists, self.say = p, lists, say
        self.paths = Paths(pin_root, state_dir)
        self.loaded: list = []
        self.xf: Optional[XdpFilter] = None
        say("compiling seawall, the floor and the spoofed-mix wrapper with bcc")
        # production tunables: only the list capacities must fit the lists
        self.defines = {"MAX_BLOCK_ENTRIES": max(131072, p.block_entries + 1),
                        "MAX_ALLOW_ENTRIES": max(16384, p.allow_entries)}
        self.seawall = self._load("bench", self.defines)
        self.floor = self._load("floor", None, "bench/floor.c", "xdp_floor")
        self.rotate = self._load("rotate", None, "bench/rotate.c", "xdp_rotate")
        self.store = ListStore(self.paths, create=False)

    def _load(self, iface: str, defines, source: str = loader.SOURCE, func: str = loader.PROG_NAME,
              include: Optional[str] = None):
        loaded = loader.load(self.paths.pin_root, loader.iface_dir(self.paths.pin_root, iface), defines,
                             source=source, func=func, include=include)
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
        # blocks with a TTL, as the daemon's are, but made by hand: the
        # control-plane part's daemon, which reads the journal when it
        # starts, then has no 100k automatic blocks of its own in force
        # (its limit is 50,000, and it would make none under attack)
        n = len(self.store.block_add(prefixes, ttl=3600, reason="bench"))
        secs = time.perf_counter() - t
        if n != len(prefixes):
            raise SeawallError(f"bulk install wrote {n} of {len(prefixes)} entries")
        # the same, one block_add() call (one lock, lookup, update and fsync) per entry
        singles = [Prefix(4, int(0x0A000000 + i).to_bytes(4, "big"), 32) for i in range(p.single_adds)]
        t = time.perf_counter()
        for q in singles:
            self.store.block_add([q], ttl=3600, reason="bench")
        single = (time.perf_counter() - t) / max(1, len(singles))
        self.store.block_del(singles)
        report.cases.append(Case(
            f"bulk install, {p.block_entries // 1000}k blocklist entries", "control",
            "ListStore.block_add of the whole list: one lock, BPF_MAP_UPDATE_BATCH into the LPM trie, "
            "one journal append",
            seconds=round(secs, 3), target="<= 1 s" if p.block_entries >= 100_000 else None,
            met=(secs <= 1.0) if p.block_entries >= 100_000 else None,
            detail={"entries": n, "entries_per_second": round(n / secs),
                    "single_add_seconds": round(single, 5),
                    "single_adds_would_take_seconds": round(single * n, 1)}))
        self.store.block_add(lists.block6_prefixes(), ttl=3600, reason="bench")
        self.store.block_add(lists.permanent_prefixes(), reason="bench")
        self.store.allow_add(lists.allow_prefixes(), reason="bench")

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
        self.store.sig_flush()
        if on:
            # rules that do not match first, the matching one last: the scan is paid in full
            for i in range(self.p.signature_rules - 1):
                self.store.sig_add(Signature(proto=17, dport=20000 + i), ttl=3600, reason="bench", source="auto")
            self.store.sig_add(Signature(proto=17, sport=161), ttl=3600, reason="bench", source="auto")

    def counters(self) -> dict:
        with Interfaces(self.paths).counters("bench") as c:
            return c.to_json()

    # -- cases ----------------------------------------------------------------------

    def run(self, report: Report) -> None:
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
            "drop_block": frame(BLOCKED_SRC, DST4, "udp", 40000, 9),
            "drop_block_permanent": frame(PERMANENT_SRC, DST4, "udp", 40000, 9),
            "drop_signature": frame(SIG_SRC, DST4, "udp", 161, 40000),
            "ipv6_pass": frame(PASS_SRC6, DST6),
            "vlan_pass": frame(PASS_SRC, DST4, vlan=100),
        }
        cases = (
            ("pass", "a tracked source on no list, in a /24 with no list entry (so its summary bits are "
                     "clear), accounted", XdpAction.PASS, "pass_clean", True),
            ("pass_listed_24", "the same, but its /24 holds an allowed /25 and a blocked /32: both tries "
                               "are walked", XdpAction.PASS, "pass_clean", True),
            ("drop_block", "blocked source (a block with a TTL, as the daemon's)", XdpAction.DROP, "drop_block", True),
            ("drop_block_permanent", "blocked source (a manual block, until removed)", XdpAction.DROP, "drop_block",
             True),
            ("drop_signature", f"UDP sport 161 from a source on no list, matching the last of "
                               f"{p.signature_rules} signature rules", XdpAction.DROP, "drop_sig", False),
            ("ipv6_pass", "IPv6 source on no list", XdpAction.PASS, "pass_clean", True),
            ("vlan_pass", "802.1Q-tagged IPv4, source on no list", XdpAction.PASS, "pass_clean", True),
        )
        self.say(f"datapath: {p.runs} runs of {p.repeat:,} repeats per case")
        floor_ns, floor_runs = test_run(self.floor.prog_fd, frames["pass"], p.repeat, p.runs, XdpAction.DROP)
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
        r = bpf.prog_test_run(self.rotate.prog_fd, pkt, self.p.repeat)
        if r.retval == XdpAction.ABORTED:
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
                  "method": "xdp/bench/rotate.c rewrites the IPv4 source (full-period LCG) and tail-calls the "
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
        """Seawall with one part compiled out at a time (xdp/bench/profile.h):
        the difference to the full program is what that part costs."""
        p = self.p
        frames = {"pass": frame(PASS_SRC, DST4), "drop_block": frame(BLOCKED_SRC, DST4, "udp", 40000, 9)}
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
                    loaded = self._load(f"profile{i}", {**self.defines, "PROFILE_SKIP": bit},
                                        include="bench/profile.h")
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
