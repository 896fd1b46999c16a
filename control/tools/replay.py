"""`seawall replay`: a capture through the real kernel program and the real
engine, on the capture's own clock.

The program is compiled and loaded into a scratch bpffs folder (never the
host's lists), each frame is run through it with BPF_PROG_TEST_RUN, and at
every cycle boundary of the capture's clock the engine reads the program's
maps exactly as the daemon does; its decisions go into the scratch maps, so
later frames meet them in the loader. Captures of attacks carry no
legitimate traffic, so a seeded background (the harness's web mix) runs
alongside, and before the capture for a warm-up the baseline learns from.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np

from seawall.control.config import Config
from seawall.control.datapath import bpf, loader
from seawall.control.datapath.abi import XdpAction
from seawall.control.datapath.counters import IfaceCounters
from seawall.control.detect.engine import BlockAction, Engine, SignatureAction
from seawall.control.detect.observe import Snapshot, observe
from seawall.control.errors import SeawallError
from seawall.control.lists.store import ListStore
from seawall.control.state import Paths
from seawall.control.tools import pcap
from seawall.control.tools.frames import frame
from seawall.control.tools.harness import Legit

MAX_TEST_FRAME = 65536  # bytes of a captured frame handed to BPF_PROG_TEST_RUN
PROGRESS_EVERY = 4096  # capture packets between progress calls inside one cycle


@dataclass
class ReplayResult:
    capture: str
    packets: int
    span: float
    dropped: int  # capture packets dropped by the program
    detected_at: Optional[float]  # seconds into the capture, alarm raised
    first_action_at: Optional[float]
    dropped_after_action: float  # fraction of capture packets after the first decision
    background_packets: int
    background_dropped: int
    decisions: list = field(default_factory=list)
    timeline: list = field(default_factory=list)
    outgoing: int = 0  # capture packets the capturing host sent: not replayed

    def to_json(self) -> dict:
        d = {k: getattr(self, k) for k in self.__dataclass_fields__ if k != "timeline"}
        d["timeline"] = self.timeline
        return d


def check(path: str, s: pcap.Summary) -> pcap.Summary:
    """s, if its capture is one replay runs (packets the host received, over
    an hour at the most); else SeawallError, one line."""
    if not s.packets:
        raise SeawallError(f"{path}: the capture holds no packets"
                           + (f" the host received (only {s.outgoing} it sent)" if s.outgoing else ""))
    if s.max_ts - s.min_ts > 3600:
        raise SeawallError(f"{path}: spans {s.max_ts - s.min_ts:.0f} s; replay handles up to an hour")
    return s


def replay(path: str, cfg: Config, interval: float = 0.1, background_pps: float = 1000.0,
           warmup: float = 30.0, seed: int = 1, defines: Optional[dict] = None,
           scratch_prefix: str = "/sys/fs/bpf/seawall", summary: Optional[pcap.Summary] = None,
           progress: Optional[Callable[[float, int, int], None]] = None) -> ReplayResult:
    """scratch_prefix: the scratch bpffs folder is `<prefix>-replay-<random>`,
    beside (never inside) the host's pins, and removed afterwards.

    The capture is streamed: one pass (`summary`, pcap.scan's, made here
    if not given) for its length and clock, then one pass through the
    program, a frame at a time; memory does not grow with the capture.
    Frames a cooked capture marks as sent by the capturing host are left
    out (no XDP program sees them) and counted in `outgoing`.
    progress(seconds into the capture, negative in the warm-up; capture
    packets run; capture packets in all) is called after every cycle."""
    s = check(path, summary if summary is not None else pcap.scan(path))
    t0, t1 = s.first_ts, s.max_ts
    rng = np.random.default_rng(seed)
    legit = Legit(rng, clients=2000, pps=background_pps)
    dst = 0xC6120001  # 198.18.0.1

    pin_root = f"{scratch_prefix.rstrip('/')}-replay-{uuid.uuid4().hex[:10]}"
    state = tempfile.mkdtemp(prefix="seawall-replay-")
    paths = Paths(pin_root, state)
    loaded = None
    reader = None
    view = None
    store = None
    try:
        loaded = loader.load(pin_root, loader.iface_dir(pin_root, "replay"), defines)
        store = ListStore(paths)
        view = IfaceCounters(loader.iface_dir(pin_root, "replay"))
        eng = Engine(cfg)
        prev = {"replay": Snapshot(view.read_features(), view.read_sources())}
        res = ReplayResult(os.path.basename(path), 0, round(s.max_ts - s.min_ts, 3), 0, None, None, 0.0, 0, 0,
                           outgoing=s.outgoing)
        after_action = [0, 0]
        reader = pcap.read(path)
        frames = (fr for fr in reader if not fr.outgoing)
        nxt = next(frames, None)
        t = t0 - warmup
        while t <= t1 + 1e-9:
            end = t + interval
            cap_pass = cap_drop = bg_pass = bg_drop = 0
            # background for this cycle
            if background_pps > 0:
                pk = legit.gen(interval)
                for j in range(len(pk.src)):
                    fr = frame(int(pk.src[j]), dst, int(pk.proto[j]), int(pk.sport[j]), int(pk.dport[j]),
                               int(pk.flags[j]), int(pk.length[j]))
                    v = bpf.prog_test_run(loaded.prog_fd, fr).retval
                    if v == XdpAction.DROP:
                        bg_drop += 1
                    else:
                        bg_pass += 1
            while nxt is not None and nxt.ts < end:
                # The kernel runs no test on less than an Ethernet header,
                # and refuses (ENOMEM) much more than 64 KiB, which only
                # GRO/TSO super-frames of a host-side capture reach; the
                # program reads the first page of a frame and no further.
                data = nxt.data[:MAX_TEST_FRAME]
                v = bpf.prog_test_run(loaded.prog_fd, data).retval if len(data) >= 14 else XdpAction.PASS
                if v == XdpAction.DROP:
                    cap_drop += 1
                else:
                    cap_pass += 1
                if res.first_action_at is not None:
                    after_action[0] += 1
                    after_action[1] += v == XdpAction.DROP
                nxt = next(frames, None)
                if progress is not None and not (cap_pass + cap_drop) % PROGRESS_EVERY:
                    progress(end - t0, res.packets + cap_pass + cap_drop, s.packets)
            res.packets += cap_pass + cap_drop
            res.dropped += cap_drop
            res.background_packets += bg_pass + bg_drop
            res.background_dropped += bg_drop
            cur = {"replay": Snapshot(view.read_features(), view.read_sources())}
            rep = eng.step(observe(end - t0, interval, cur, prev))
            prev = cur
            rel = round(end - t0, 3)
            if rep.raised and res.detected_at is None and end > t0:
                res.detected_at = rel
            for a in rep.actions:
                if isinstance(a, BlockAction):
                    store.block_add([a.prefix], int(a.ttl), a.reason, source="auto")
                    res.decisions.append({"t": rel, "action": "block", "what": str(a.prefix), "reason": a.reason})
                elif isinstance(a, SignatureAction):
                    store.sig_add(a.signature, a.ttl, a.reason, source="auto")
                    res.decisions.append({"t": rel, "action": "signature", "what": a.signature.describe(),
                                          "reason": a.reason})
                if res.first_action_at is None and end > t0:
                    res.first_action_at = rel
            res.timeline.append({
                "t": rel, "capture_pass": cap_pass, "capture_drop": cap_drop, "background_pass": bg_pass,
                "background_drop": bg_drop, "score": round(rep.score, 3), "alarm": rep.alarm,
                "entropy": {k: round(v, 4) for k, v in rep.entropy.items()},
                "actions": len(rep.actions),
            })
            t = end
            if progress is not None:
                progress(end - t0, res.packets, s.packets)
        res.dropped_after_action = round(after_action[1] / after_action[0], 4) if after_action[0] else 0.0
        return res
    finally:
        if reader is not None:
            reader.close()
        if view is not None:
            view.close()
        if store is not None:
            store.close()
        if loaded is not None:
            loaded.close()
        shutil.rmtree(pin_root, ignore_errors=True)
        shutil.rmtree(state, ignore_errors=True)


class Progress:
    """The replay's progress as one line on a terminal, rewritten at most
    `hz` times a second: the reading pass (packets read), the warm-up,
    then capture packets run, their share and rate. write: a text
    stream's write; clock: seconds, monotonic. done() clears the line."""

    def __init__(self, write: Callable[[str], object], name: str, clock: Callable[[], float] = time.monotonic,
                 hz: float = 4.0):
        self.write, self.name, self.clock, self.period = write, name, clock, 1.0 / hz
        self.last: Optional[float] = None  # when the line was last written
        self.start: Optional[tuple] = None  # (clock, packets) at the capture's first cycle
        self.shown = False

    def _show(self, text: str) -> None:
        now = self.clock()
        if self.last is not None and now - self.last < self.period:
            return
        self.last = now
        self.write(f"\r{self.name}: {text}\x1b[K")
        self.shown = True

    def say(self, text: str) -> None:
        """Any other step's line (`seawall evaluate`: the scenario running)."""
        self._show(text)

    def reading(self, packets: int) -> None:
        self._show(f"reading, {packets:,} packets")

    def __call__(self, t: float, done: int, total: int) -> None:
        if t < 0:
            self._show(f"warm-up, {-t:.0f} s before the capture")
            return
        now = self.clock()
        if self.start is None:
            self.start = (now, done)
        dt = now - self.start[0]
        rate = f", {(done - self.start[1]) / dt:,.0f} packets/s" if dt > 0 else ""
        self._show(f"{done:,} of {total:,} packets ({100 * done / max(total, 1):.1f}%){rate}")

    def done(self) -> None:
        if self.shown:
            self.write("\r\x1b[K")
