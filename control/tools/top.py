"""`seawall top`: a live terminal view of the filter.

Redraws in place with curses (no flicker: curses only repaints what
changed), once per interval; q or Ctrl-C quits and restores the terminal.
What it shows comes from the kernel maps (rates, top sources, entropy of
this interval's histograms), the journal (recent decisions) and, when the
daemon runs, its metrics endpoint (anomaly score and alarm).
"""

from __future__ import annotations

import curses
import re
import time
import urllib.request
from typing import Optional

import numpy as np

from seawall.control.addr import delta
from seawall.control.datapath import abi, loader
from seawall.control.datapath.counters import IfaceCounters
from seawall.control.datapath.interfaces import Interfaces
from seawall.control.detect.engine import entropy
from seawall.control.detect.observe import hist_delta
from seawall.control.lists.journal import JournalFile
from seawall.control.state import Paths


def daemon_view(url: str) -> Optional[dict]:
    """Score and alarm from the daemon's metrics, or None when it is not running."""
    try:
        text = urllib.request.urlopen(url, timeout=0.3).read().decode()
    except (OSError, ValueError):
        return None
    out = {}
    for name in ("seawall_anomaly_score", "seawall_alarm", "seawall_observed_packets_per_second"):
        m = re.search(rf"^{name} ([0-9.eE+-]+)$", text, re.M)
        if m:
            out[name] = float(m.group(1))
    return out


class Snapshot:
    def __init__(self, paths: Paths, metrics_url: str):
        self.paths = paths
        self.url = metrics_url
        self.ifs = Interfaces(paths)
        self.views = {n: IfaceCounters(loader.iface_dir(paths.pin_root, n)) for n in self.ifs.names()}
        self.prev = {n: (v.read_stats(), v.read_features(), v.read_sources()) for n, v in self.views.items()}
        self.t = time.monotonic()

    def take(self) -> dict:
        now = time.monotonic()
        dt = max(now - self.t, 1e-3)
        self.t = now
        rows, top, hist = [], [], None
        for n, v in self.views.items():
            st, feat, src = v.read_stats(), v.read_features(), v.read_sources()
            pst, pfeat, psrc = self.prev[n]
            self.prev[n] = (st, feat, src)
            d = st.astype(np.int64) - pst.astype(np.int64)
            rates = {r.name.lower(): d[r][0] / dt for r in abi.Reason}
            rows.append((n, sum(v for k, v in rates.items() if abi.REASON_VERDICT[abi.Reason[k.upper()]] == "pass"),
                         sum(v for k, v in rates.items() if abi.REASON_VERDICT[abi.Reason[k.upper()]] == "drop"),
                         rates))
            fd = hist_delta(feat, pfeat)
            hist = fd if hist is None else hist + fd
            sd = delta(src, psrc)
            for i in np.argsort(-sd.packets.astype(np.int64))[:10]:
                if sd.packets[i]:
                    top.append((str(sd.prefix(int(i))).split("/")[0], sd.packets[i] / dt, sd.bytes[i] * 8 / dt, n))
        top.sort(key=lambda x: -x[1])
        ent = {}
        if hist is not None:
            for f, h in abi.split_features(hist).items():
                ent[f.name.lower()] = entropy(h)
        rep = JournalFile(self.paths.journal).read()
        recent = []
        for d in list(rep.blocks.values()) + list(rep.sigs.values()):
            recent.append((d.added_at, d.list, d.cidr, d.source, d.reason))
        recent.sort(reverse=True)
        return {"ifaces": rows, "top": top[:10], "entropy": ent, "recent": recent[:8],
                "daemon": daemon_view(self.url)}

    def close(self):
        for v in self.views.values():
            v.close()


def render(win, snap: dict, interval: float) -> None:
    win.erase()
    h, w = win.getmaxyx()

    def put(y, x, text, attr=0):
        if 0 <= y < h - 1 and x < w:
            win.addnstr(y, x, text, max(0, w - x - 1), attr)

    d = snap["daemon"]
    head = time.strftime("%H:%M:%S") + f"  seawall top  (every {interval:g}s, q quits)"
    if d is None:
        status = "daemon: not running (no score)"
    else:
        status = (f"score {d.get('seawall_anomaly_score', 0):.1f}  "
                  f"{'ALARM' if d.get('seawall_alarm') else 'calm'}")
    put(0, 0, head, curses.A_BOLD)
    put(0, max(len(head) + 2, w - len(status) - 2), status,
        curses.A_REVERSE if d and d.get("seawall_alarm") else curses.A_BOLD)
    y = 2
    put(y, 0, f"{'INTERFACE':12} {'PASS pps':>12} {'DROP pps':>12}   by reason", curses.A_UNDERLINE)
    for n, p, dr, rates in snap["ifaces"]:
        y += 1
        busy = ", ".join(f"{k} {v:,.0f}" for k, v in rates.items() if v >= 0.5)
        put(y, 0, f"{n:12} {p:12,.0f} {dr:12,.0f}   {busy}")
    if not snap["ifaces"]:
        y += 1
        put(y, 0, "no interface attached (seawall attach IFACE)")
    y += 2
    put(y, 0, "ENTROPY (this interval)", curses.A_UNDERLINE)
    for f, v in snap["entropy"].items():
        y += 1
        bar = "#" * int(round(v * 30))
        put(y, 0, f"  {f:6} {v:5.2f} {bar}")
    y += 2
    put(y, 0, f"{'TOP SOURCES':40} {'pps':>10} {'bit/s':>12}  IFACE", curses.A_UNDERLINE)
    for a, p, b, n in snap["top"]:
        y += 1
        put(y, 0, f"  {a:38} {p:10,.0f} {b:12,.0f}  {n}")
    y += 2
    put(y, 0, "RECENT DECISIONS", curses.A_UNDERLINE)
    for ts, lst, what, src, why in snap["recent"]:
        y += 1
        put(y, 0, f"  {time.strftime('%H:%M:%S', time.localtime(ts))} {lst:5} {what:24} {src:6} {why}")
    win.noutrefresh()
    curses.doupdate()


def run(paths: Paths, interval: float = 1.0, metrics_url: str = "http://127.0.0.1:9477/metrics",
        iterations: Optional[int] = None) -> None:
    snap = Snapshot(paths, metrics_url)

    def loop(stdscr):
        curses.curs_set(0)
        stdscr.timeout(int(interval * 1000))
        n = 0
        render(stdscr, snap.take(), interval)
        while iterations is None or n < iterations:
            key = stdscr.getch()  # waits up to `interval`
            if key in (ord("q"), ord("Q"), 27):
                return
            if key == curses.KEY_RESIZE:
                stdscr.clear()
            render(stdscr, snap.take(), interval)
            n += 1

    try:
        curses.wrapper(loop)
    except KeyboardInterrupt:
        pass  # curses.wrapper has restored the terminal
    finally:
        snap.close()
