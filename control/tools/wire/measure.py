"""From samples to figures (pure: no I/O, no seawall).

In: the sender's samples (time, cumulative frames put on the wire), the
server's samples (time, cumulative attack frames that reached the
protected stack, from the tap, and the namespace's own counters), the
customers' per-request records. Out: per flood segment the cut and the
shares that passed; per run the customers' figures and the legitimate
sources blocked.

Definitions:
- A **segment** is a stretch where the sender's counter rises, split at
  gaps of more than `gap` seconds (a pulse has one segment per pulse). Its
  start is the first frame's time, interpolated inside the sample where
  the counter first rose.
- The **cut** of a segment is the earliest server sample from which, in
  every window of `window` seconds up to the segment's end, the attack
  frames that arrived are at most 1% of those sent (plus one frame of
  slack): the moment after which the attack's arrival rate stays below 1%
  of its send rate. It is given in seconds after the segment's start, or
  None ("never"), also when no full window of the flood is left after it.
  Its resolution is the sampling step.
- **Passed after the cut**: frames arrived / frames sent from the cut to
  the segment's end; **passed in total**: over the whole segment.
- A **legitimate source blocked**: a customer source whose requests start
  failing during the attack and keep failing: its requests from some
  moment inside the attack window to the end of the run all failed, at
  least `min_fails` of them, and at least one of them after the attack
  ended (a source that only suffered the flood recovers once it ends).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

RATIO = 0.01


@dataclass
class Segment:
    start: float  # monotonic seconds
    end: float
    sent: int
    arrived: int
    cut: float | None  # seconds after start, None: never
    sent_after_cut: int = 0
    arrived_after_cut: int = 0

    @property
    def passed_total(self) -> float:
        return self.arrived / self.sent if self.sent else 0.0

    @property
    def passed_after_cut(self) -> float | None:
        if self.cut is None:
            return None
        return self.arrived_after_cut / self.sent_after_cut if self.sent_after_cut else 0.0

    def to_json(self) -> dict:
        d = asdict(self)
        d["passed_total"] = round(self.passed_total, 5)
        pac = self.passed_after_cut
        d["passed_after_cut"] = None if pac is None else round(pac, 5)
        return d


def segments(sender: np.ndarray, gap: float = 0.5, min_frames: int = 50) -> list[tuple[float, float]]:
    """(start, end) of each stretch where the sender's counter rises.
    sender: an (n, 2) array of (time, cumulative frames)."""
    t, c = sender[:, 0], sender[:, 1]
    if len(t) < 2:
        return []
    d = np.diff(c)
    rising = np.nonzero(d > 0)[0]  # interval k is (t[k], t[k+1]]
    out: list[list] = []
    for k in rising:
        if out and t[k] - out[-1][1] <= gap:
            out[-1][1] = t[k + 1]
            out[-1][2] += d[k]
        else:
            # the first frame inside (t[k], t[k+1]]: at the next interval's rate
            nxt = d[k + 1] if k + 1 < len(d) and d[k + 1] > 0 else d[k]
            dt = t[k + 1] - t[k]
            rate = nxt / max(t[k + 2] - t[k + 1], 1e-6) if k + 2 < len(t) else d[k] / dt
            start = max(t[k], t[k + 1] - d[k] / max(rate, 1e-9))
            out.append([start, t[k + 1], d[k]])
    return [(float(s), float(e)) for s, e, n in out if n >= min_frames]


def cut_segment(server_t: np.ndarray, arrived: np.ndarray, sent: np.ndarray, start: float, end: float,
                window: float = 0.1, ratio: float = RATIO, slack: int = 1) -> Segment:
    """The cut of one segment. server_t: server sample times; arrived:
    cumulative attack frames at those times; sent: the sender's cumulative
    frames interpolated at those times."""
    i0 = max(0, int(np.searchsorted(server_t, start, side="right")) - 1)
    i1 = min(len(server_t) - 1, int(np.searchsorted(server_t, end + 0.05, side="left")))
    seg = Segment(start, end, int(sent[i1] - sent[i0]), int(arrived[i1] - arrived[i0]), None)
    if i1 <= i0:
        return seg
    step = float(np.median(np.diff(server_t[i0:i1 + 1]))) if i1 - i0 > 1 else window
    w = max(1, int(round(window / max(step, 1e-6))))
    ok = np.zeros(i1 - i0 + 1, dtype=bool)
    for j in range(i0, i1 + 1):
        e = min(j + w, i1)
        if e == j:
            ok[j - i0] = True
            continue
        a, s = arrived[e] - arrived[j], sent[e] - sent[j]
        ok[j - i0] = a <= ratio * s + slack
    # the earliest j from which every window is fine
    bad = np.nonzero(~ok)[0]
    first = 0 if len(bad) == 0 else bad[-1] + 1
    j = i0 + first
    if len(bad) and server_t[j] + window > end + step:
        return seg  # fine only once the flood was over: never cut
    seg.cut = round(max(0.0, float(server_t[j]) - start), 4)
    seg.sent_after_cut = int(sent[i1] - sent[j])
    seg.arrived_after_cut = int(arrived[i1] - arrived[j])
    return seg


def flood(sender_rows: list, server_cols: list, server_rows: list, **kw) -> list[Segment]:
    """Every segment of a run, cut and shares. Rows as probes.load gives them."""
    if not sender_rows or not server_rows:
        return []
    snd = np.asarray(sender_rows, dtype=float)
    srv = np.asarray(server_rows, dtype=float)
    col = server_cols.index("tap_attack")
    st, arrived = srv[:, 0], srv[:, col]
    sent = np.interp(st, snd[:, 0], snd[:, 1])
    return [cut_segment(st, arrived, sent, s, e, **kw) for s, e in segments(snd)]


def counters_delta(server_cols: list, server_rows: list, start: float, end: float) -> dict:
    """Each server counter's change over [start, end] (nearest samples)."""
    if not server_rows:
        return {}
    srv = np.asarray(server_rows, dtype=float)
    i0 = max(0, int(np.searchsorted(srv[:, 0], start)) - 1)
    i1 = min(len(srv) - 1, int(np.searchsorted(srv[:, 0], end + 0.05)))
    return {c: int(srv[i1, k] - srv[i0, k]) for k, c in enumerate(server_cols) if c != "t"}


def sampling(rows: list, window: tuple[float, float] | None = None) -> dict:
    """The real sampling of a file: median and worst step, in ms, over the
    whole file and (worst_in_attack_ms) over the attack window."""
    if len(rows) < 2:
        return {"samples": len(rows), "median_ms": None, "worst_ms": None, "worst_in_attack_ms": None}
    t = np.asarray([r[0] for r in rows])
    d = np.diff(t)
    inside = d[(t[1:] >= window[0]) & (t[:-1] <= window[1])] if window else d
    return {"samples": len(rows), "median_ms": round(float(np.median(d)) * 1000, 2),
            "worst_ms": round(float(d.max()) * 1000, 2),
            "worst_in_attack_ms": round(float(inside.max()) * 1000, 2) if len(inside) else None}


# --- customers ------------------------------------------------------------
@dataclass
class Customers:
    requests_calm: int = 0
    requests_attack: int = 0
    success_calm: float | None = None
    success_attack: float | None = None
    p99_calm_ms: float | None = None  # whole requests: connect, send, answer
    p99_attack_ms: float | None = None
    p99_connect_calm_ms: float | None = None  # the TCP handshake alone (connect() returning)
    p99_connect_attack_ms: float | None = None
    blocked: list = field(default_factory=list)  # [source, time the failures began (s after attack start)]

    def to_json(self) -> dict:
        return asdict(self)


def _p99(x: list) -> float | None:
    return round(float(np.percentile(np.asarray(x), 99)), 2) if x else None


def customers(records: list, t0: float, calm: tuple[float, float], attack: tuple[float, float],
              min_fails: int = 2) -> Customers:
    """records: [t (s after t0), src, ok, connect_ms, total_ms, error];
    calm and attack: windows in monotonic seconds."""
    out = Customers()
    rows = [(t0 + r[0], r[1], bool(r[2]), r[4], r[3]) for r in records]
    cal = [r for r in rows if calm[0] <= r[0] < calm[1]]
    att = [r for r in rows if attack[0] <= r[0] < attack[1]]
    out.requests_calm, out.requests_attack = len(cal), len(att)
    if cal:
        out.success_calm = round(sum(r[2] for r in cal) / len(cal), 5)
        out.p99_calm_ms = _p99([r[3] for r in cal if r[2]])
        out.p99_connect_calm_ms = _p99([r[4] for r in cal if r[2]])
    if att:
        out.success_attack = round(sum(r[2] for r in att) / len(att), 5)
        out.p99_attack_ms = _p99([r[3] for r in att if r[2]])
        out.p99_connect_attack_ms = _p99([r[4] for r in att if r[2]])
    out.blocked = blocked_sources(rows, attack, min_fails)
    return out


def blocked_sources(rows: list, attack: tuple[float, float], min_fails: int = 2) -> list:
    """rows: (time, src, ok, ...) in monotonic seconds. See the module's docstring."""
    by: dict = {}
    for r in sorted(rows):
        by.setdefault(r[1], []).append(r)
    out = []
    for src, rs in by.items():
        tail = []
        for r in reversed(rs):
            if r[2]:
                break
            tail.append(r)
        tail.reverse()
        if len(tail) < min_fails:
            continue
        began = tail[0][0]
        if attack[0] <= began < attack[1] and tail[-1][0] >= attack[1]:
            out.append([src, round(began - attack[0], 3)])
    return sorted(out)
