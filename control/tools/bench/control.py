"""The bench's control-plane part: the daemon's scoring cycle over many
tracked sources, and the resident memory of a process running it.

The cycle is the real daemon's (`Daemon.watch` on scratch maps, then
`Daemon.cycle`); between cycles the bench writes the next cumulative
counters into the kernel maps as the datapath would, and that write is not
timed.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from typing import Callable

import numpy as np

from seawall.control.config import Config, DaemonConfig, DetectionConfig, MetricsConfig
from seawall.control.datapath import abi, loader
from seawall.control.datapath.counters import IfaceCounters
from seawall.control.detect.observe import observe
from seawall.control.errors import SeawallError
from seawall.control.lists.store import ListStore
from seawall.control.service.daemon import Daemon
from seawall.control.service.sources import SLICE
from seawall.control.state import Paths
from seawall.control.tools.bench.report import Case, Params, Report


class CycleSim:
    """The real daemon (`Daemon.watch`, then `Daemon.cycle`) watching one
    scratch interface whose tracked-source table holds n sources, every one
    of them active in every cycle (the worst case for a cycle). Between
    cycles, step() writes the next cumulative counters into the kernel maps
    as the datapath would; that write is not timed."""

    def __init__(self, pin_root: str, state_dir: str, iface: str, n: int, seed: int):
        paths = Paths(pin_root, state_dir)
        self.n = n
        self.rng = np.random.default_rng(seed)
        self.iface = iface
        self.counters = IfaceCounters(loader.iface_dir(pin_root, iface))
        self.store = ListStore(paths, create=False)
        m = self.counters.sources[4]
        self.ncpu, self.stride = m.ncpu, m.stride
        self.addrs = self.rng.choice(2**32 - 1, size=n, replace=False).astype(np.uint32) + np.uint32(1)
        self.keys = self.addrs.astype(">u4").view(np.uint8).reshape(-1, 4)
        self.cum = np.zeros((n, 3), np.uint64)  # packets, bytes, syns
        self.hot_cum = np.zeros((n, 3), np.uint64)  # the same, counted while hot
        self.was_hot = np.zeros(n, bool)
        self.feat = np.zeros(abi.FEATURE_SLOTS, np.uint64)
        self.offsets = abi.feature_offsets()
        self.step(attack=False)
        # warm-up 0: the engine scores from its fourth cycle on
        # cycles of one second, as cycle() scores them
        cfg = Config(daemon=DaemonConfig(interval=1.0), detection=DetectionConfig(warmup=0.0),
                     metrics=MetricsConfig(enabled=False))
        self.d = Daemon(cfg, paths)
        self.d.watch({iface: self.counters}, self.store)

    def step(self, attack: bool) -> None:
        """One cycle's traffic: every source 1 + Poisson(2) packets of a
        web mix; under attack, 1% of them send 5,000 UDP packets each. The
        counters go in as the datapath would count them on CPU 0: with a
        large table, the epoch counts too and the hot table (maps.h) for
        the sources at the daemon's hot threshold."""
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
        cfg = abi.SwConfig.from_buffer_copy(self.counters.config.lookup(b"\0" * 4))
        if cfg.hot_pkts:
            hot = (pk >= cfg.hot_pkts) | self.was_hot
            vals[:, 0, 3] = (np.uint64(cfg.epoch) | (np.minimum(pk, 0xFFFF) << np.uint64(32))
                             | (self.was_hot.astype(np.uint64) << np.uint64(48)))
            # a source turning hot is counted in the hot table from its
            # hot_pkts-th packet on
            add = np.where(self.was_hot, pk, pk - np.minimum(pk, np.uint64(cfg.hot_pkts - 1)))
            self.hot_cum[hot] += np.stack([add, add * np.uint64(600), add // np.uint64(8)], axis=1)[hot]
            self.was_hot = pk >= cfg.hot_pkts
            idx = np.flatnonzero(hot)
            hv = np.zeros((len(idx), self.ncpu, self.stride // 8), np.uint64)
            hv[:, 0, :3] = self.hot_cum[idx]
            self.counters.hot[4].update_batch(self.keys[idx], hv.view(np.uint8).reshape(len(idx), -1))
        self.counters.sources[4].update_batch(self.keys, vals.view(np.uint8).reshape(n, -1))
        # the feature histograms of the same packets
        total = int(pk.sum())
        legit = int(pk[~heavy].sum())
        F, off = abi.Feature, self.offsets
        h = self.feat
        h[off[F.SRC] + rng.integers(0, abi.FEATURE_SIZES[F.SRC], min(total, 1_000_000))] += np.uint64(
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
        # CPU 0's region of the features array (maps.h)
        keys = np.arange(len(h), dtype=np.uint32).view(np.uint8).reshape(-1, 4)
        self.counters.features.update_batch(keys, h.view(np.uint8).reshape(len(h), -1))

    def cycle(self, attack: bool = False) -> tuple:
        """(seconds, report) of one Daemon.cycle after one step() of traffic."""
        self.step(attack)
        t = time.perf_counter()
        rep = self.d.cycle(1.0)
        return time.perf_counter() - t, rep

    def tracked(self) -> int:
        return len(self.d.snapshots[self.iface].sources)

    def close(self) -> None:
        self.counters.close()
        self.store.close()


def _median_seconds(fn: Callable, times: int = 3) -> float:
    out = []
    for _ in range(times):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return float(statistics.median(out))


def _stages(sim: CycleSim, cycles: int = 3) -> dict:
    """Where a cycle's time goes, each part timed on its own through the
    same interfaces the daemon's reader uses (median seconds of `cycles`):
    the feature histograms, the sources (the whole table, or with a large
    one the hot table and one slice: service/sources.py), and the pure part
    (deltas and the engine step on snapshots already in memory; fresh
    cycles, the same baseline)."""
    c = sim.counters
    reader = sim.d.readers[sim.iface]

    def read_sources() -> None:
        if reader.partial:
            c.read_hot()
            c.read_slice(4, None, SLICE)
        else:
            c.read_sources()

    out = {"read_features": _median_seconds(c.read_features, cycles),
           "read_sources": _median_seconds(read_sources, cycles)}
    pure = []
    for _ in range(cycles):
        before = {sim.iface: reader.read()}
        sim.step(attack=False)
        after = {sim.iface: reader.read()}
        t = time.perf_counter()
        sim.d.engine.step(observe(time.monotonic(), 1.0, after, before))
        pure.append(time.perf_counter() - t)
    out["deltas_and_engine"] = float(statistics.median(pure))
    return {k: round(v, 4) for k, v in out.items()}


def control_plane(p: Params, pin_root: str, state_dir: str, report: Report, say: Callable) -> None:
    for n in p.sources:
        iface = f"cp{n}"
        say(f"control plane: scoring cycles over {n:,} tracked sources")
        # a build whose table holds n sources; the default holds 65,536
        loaded = loader.load(pin_root, loader.iface_dir(pin_root, iface),
                             {"MAX_SOURCES_V4": n + n // 8, "MAX_BLOCK_ENTRIES": max(131072, p.block_entries + 1)})
        loaded.close()  # the pinned maps stay
        sim = CycleSim(pin_root, state_dir, iface, n, p.seed)
        try:
            calm = [sim.cycle() for _ in range(6)][3:]  # three to learn, then three scored
            tracked = sim.tracked()
            secs = statistics.median(c[0] for c in calm)
            stages = _stages(sim)
            att_secs, att_rep = sim.cycle(attack=True)
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
            "deltas and engine step on snapshots already read (no I/O)", seconds=stages["deltas_and_engine"]))
        report.cases.append(Case(
            f"scoring cycle under attack, {label} sources", "control",
            "the same cycle when 1% of the sources flood: alarm, attribution, blocks written and journalled",
            seconds=round(att_secs, 4), target="<= 0.1 s" if target else None,
            met=(att_secs <= 0.1) if target else None,
            detail={"alarm": att_rep.alarm, "blocks": sum(1 for a in att_rep.actions if hasattr(a, "prefix"))}))
        report.control_stages[label] = stages
    _memory(p, pin_root, state_dir, report, say)


def _memory(p: Params, pin_root: str, state_dir: str, report: Report, say: Callable) -> None:
    """Resident memory of a fresh process running the daemon's cycle over
    rss_sources tracked sources (no bcc imported, as a daemon watching
    interfaces attached beforehand)."""
    n = p.rss_sources
    iface = f"cp{n}"
    if not os.path.isdir(loader.iface_dir(pin_root, iface)):
        loaded = loader.load(pin_root, loader.iface_dir(pin_root, iface), {"MAX_SOURCES_V4": n + n // 8})
        loaded.close()
    say(f"control plane: resident memory of the cycle over {n:,} sources (a fresh process)")
    arg = json.dumps({"pin_root": pin_root, "state_dir": state_dir, "iface": iface, "n": n, "seed": p.seed})
    out = subprocess.run([sys.executable, "-m", "seawall.control.tools.bench.control", "--rss-child", arg],
                         capture_output=True, text=True, timeout=600)
    if out.returncode:
        raise SeawallError(f"the memory probe failed: {out.stderr.strip()[-300:]}")
    r = json.loads(out.stdout.strip().splitlines()[-1])
    report.memory["cycle_process"] = {
        "what": f"a fresh Python process running Daemon.cycle over {n:,} tracked sources for "
                f"{r['cycles']} cycles, with the lists in place (no bcc loaded)",
        "sources": n, "rss_mib": round(r["rss_kib"] / 1024, 1), "peak_rss_mib": round(r["hwm_kib"] / 1024, 1)}


def proc_kib(pid: int, key: str) -> int:
    """A process's memory figure from /proc/PID/status (VmRSS, VmHWM), KiB."""
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
    print(json.dumps({"cycles": cycles, "rss_kib": proc_kib(os.getpid(), "VmRSS"),
                      "hwm_kib": proc_kib(os.getpid(), "VmHWM")}))


def main(argv: list) -> int:
    """`python -m seawall.control.tools.bench.control --rss-child ...`: the
    helper process of the memory part."""
    if argv[:1] == ["--rss-child"] and len(argv) == 2:
        _rss_child(argv[1])
        return 0
    print("usage: seawall bench (this module's own entry is for its helper processes)", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
