"""`seawall replay --plot`: a replay's timeline drawn as a PNG, with numpy
and the standard library only (zlib and struct write the file).

Three panels share the capture's clock (seconds; negative during the
warm-up, when the background runs alone):

- packets per second by verdict, on a log scale so a thousandfold burst and
  the background both stay readable;
- the normalised entropy of each feature the engine scores;
- the anomaly score, with the threshold dashed and the alarm periods shaded.

The engine's decisions cross all three as vertical lines, labelled above
the first panel. Text uses the 5x7 bitmap font below (ASCII 32-126, plus a
descender row). `render` and `encode_png` are pure; `write_png` writes
atomically.
"""

from __future__ import annotations

import math
import os
import struct
import tempfile
import zlib
from typing import Optional

import numpy as np

from seawall.control.errors import SeawallError

WIDTH, HEIGHT = 1200, 900

WHITE = (255, 255, 255)
INK = (30, 30, 30)  # text, frames, ticks
MUTED = (105, 105, 105)
GRID = (226, 226, 226)
WARMUP = (241, 241, 241)
ALARM = (253, 219, 219)
DECISION = (85, 85, 85)
THRESHOLD = (0, 0, 0)
SCORE = (20, 60, 150)

# (timeline key, legend, colour, drawn as)
VERDICTS = (
    ("capture_pass", "capture pass", (250, 165, 20), "fill"),
    ("capture_drop", "capture drop", (214, 39, 40), "fill"),
    ("background_pass", "background pass", (31, 100, 200), "line"),
    ("background_drop", "background drop", (140, 60, 190), "line"),
)
# Okabe-Ito colours, distinguishable with the common colour-vision deficiencies
FEATURES = (
    ("src", (0, 114, 178)),
    ("dport", (230, 159, 0)),
    ("sport", (0, 158, 115)),
    ("proto", (204, 121, 167)),
    ("len", (86, 180, 233)),
    ("flags", (213, 94, 0)),
)
COLOURS = {key: colour for key, _, colour, _ in VERDICTS}
COLOURS.update({f"entropy_{k}": c for k, c in FEATURES})
COLOURS.update(score=SCORE, threshold=THRESHOLD, alarm=ALARM, warmup=WARMUP, decision=DECISION, ink=INK)

# --- font ---------------------------------------------------------------------

GLYPH_W, GLYPH_H = 5, 8  # 5x7 glyphs plus one descender row
ADVANCE = GLYPH_W + 1

# ASCII 32..126, 8 bytes a glyph (rows top to bottom, bit 4 = leftmost column)
_FONT_HEX = (
    "000000000000000004040404040004000a0a0a00000000000a0a1f0a1f0a0a00040f140e051e04001819020408130300"  #  !"#$%
    "0c12140815120d000404080000000000020408080804020008040202020408000004150e150400000004041f04040000"  # &'()*+
    "00000000000c04080000001f0000000000000000000c0c0000010204081000000e11131519110e00040c040404040e00"  # ,-./01
    "0e11010204081f001f02040201110e0002060a121f0202001f101e0101110e000608101e11110e001f01020408080800"  # 234567
    "0e11110e11110e000e11110f01020c00000c0c000c0c0000000c0c000c040800020408100804020000001f001f000000"  # 89:;<=
    "08040201020408000e110102040004000e11010d15150e000e11111f111111001e11111e11111e000e11101010110e00"  # >?@ABC
    "1c12111111121c001f10101e10101f001f10101e101010000e11101711110f001111111f111111000e04040404040e00"  # DEFGHI
    "0702020202120c0011121418141211001010101010101f00111b15151111110011111915131111000e11111111110e00"  # JKLMNO
    "1e11111e101010000e11111115120d001e11111e141211000f10100e01011e001f040404040404001111111111110e00"  # PQRSTU
    "11111111110a04001111111515150a0011110a040a11110011110a04040404001f01020408101f000e08080808080e00"  # VWXYZ[
    "00100804020100000e02020202020e00040a1100000000000000000000001f00080402000000000000000e010f110f00"  # \]^_`a
    "1010161911111e0000000e1010110e0001010d1311110f0000000e111f100e000609081c0808080000000f11110f010e"  # bcdefg
    "101016191111110004000c0404040e00020006020202120c10101214181412000c04040404040e0000001a1515111100"  # hijklm
    "000016191111110000000e1111110e0000001e11111e101000000f11110f0101000016191010100000000f100e011e00"  # nopqrs
    "08081c08080906000000111111130d0000001111110a04000000111115150a000000110a040a110000001111110f010e"  # tuvwxy
    "00001f0204081f000204040804040200040404040404040008040402040408000000081502000000"  # z{|}~
)
_FONT = np.unpackbits(np.frombuffer(bytes.fromhex(_FONT_HEX), np.uint8).reshape(95, GLYPH_H, 1),
                      axis=2)[:, :, 8 - GLYPH_W:].astype(bool)


def glyph(ch: str) -> np.ndarray:
    """The (8, 5) bool bitmap of one character; '?' for anything outside ASCII 32-126."""
    c = ord(ch)
    return _FONT[(c if 32 <= c <= 126 else ord("?")) - 32]


def text_width(s: str, scale: int = 1) -> int:
    return max(0, len(s) * ADVANCE - 1) * scale


def text_mask(s: str, scale: int = 1) -> np.ndarray:
    """The string's pixels, (8*scale, text_width(s, scale)) bool."""
    m = np.zeros((GLYPH_H, max(0, len(s) * ADVANCE - 1)), bool)
    for i, ch in enumerate(s):
        m[:, i * ADVANCE:i * ADVANCE + GLYPH_W] = glyph(ch)
    return m.repeat(scale, 0).repeat(scale, 1) if scale > 1 else m


def draw_text(img: np.ndarray, x: int, y: int, s: str, colour, scale: int = 1) -> None:
    """Paint `s` with its top-left corner at (x, y), clipped to the image."""
    _paint(img, x, y, text_mask(s, scale), colour)


# --- raster primitives (all clipped) --------------------------------------------

def _paint(img, x, y, mask, colour) -> None:
    h, w = mask.shape
    H, W = img.shape[:2]
    x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + w, W), min(y + h, H)
    if x0 < x1 and y0 < y1:
        img[y0:y1, x0:x1][mask[y0 - y:y1 - y, x0 - x:x1 - x]] = colour


def _rect(img, x0, y0, x1, y1, colour, clip=None) -> None:
    """Fill [x0, x1) x [y0, y1)."""
    cx0, cy0, cx1, cy1 = clip or (0, 0, img.shape[1], img.shape[0])
    x0, y0 = max(int(x0), cx0, 0), max(int(y0), cy0, 0)
    x1, y1 = min(int(x1), cx1, img.shape[1]), min(int(y1), cy1, img.shape[0])
    if x0 < x1 and y0 < y1:
        img[y0:y1, x0:x1] = colour


def _segments(img, x0, y0, x1, y1, colour, clip, width: int = 2) -> None:
    """Straight segments (x0[i], y0[i]) -> (x1[i], y1[i]), `width` px wide."""
    x0, y0, x1, y1 = (np.asarray(v, float).ravel() for v in (x0, y0, x1, y1))
    if x0.size == 0:
        return
    n = np.maximum(np.abs(x1 - x0), np.abs(y1 - y0)).astype(int) + 1
    seg = np.repeat(np.arange(x0.size), n)
    start = np.cumsum(n) - n
    frac = (np.arange(seg.size) - start[seg]) / np.maximum(n - 1, 1)[seg]
    px = x0[seg] + frac * (x1 - x0)[seg]
    py = y0[seg] + frac * (y1 - y0)[seg]
    half = (width - 1) / 2.0
    xi = np.round(px - half).astype(int)
    yi = np.round(py - half).astype(int)
    off = np.arange(width)
    xs = (xi[:, None, None] + off[None, :, None]).repeat(width, 2).ravel()
    ys = (yi[:, None, None] + off[None, None, :]).repeat(width, 1).ravel()
    cx0, cy0, cx1, cy1 = clip
    keep = (xs >= cx0) & (xs < cx1) & (ys >= cy0) & (ys < cy1)
    img[ys[keep], xs[keep]] = colour


def _polyline(img, xs, ys, colour, clip, valid=None) -> None:
    """Join consecutive valid points; a lone valid point gets a short tick."""
    xs, ys = np.asarray(xs, float), np.asarray(ys, float)
    if xs.size == 0:
        return
    ok = np.ones(xs.size, bool) if valid is None else np.asarray(valid, bool)
    pair = ok[:-1] & ok[1:]
    _segments(img, xs[:-1][pair], ys[:-1][pair], xs[1:][pair], ys[1:][pair], colour, clip)
    lone = ok.copy()
    lone[:-1] &= ~pair
    lone[1:] &= ~pair
    _segments(img, xs[lone] - 2, ys[lone], xs[lone] + 2, ys[lone], colour, clip)


def _dashed_hline(img, x0, x1, y, colour, clip, dash: int = 10, gap: int = 6) -> None:
    for a in range(int(x0), int(x1), dash + gap):
        _rect(img, a, y - 1, min(a + dash, int(x1)), y + 1, colour, clip)


# --- scales and ticks ---------------------------------------------------------------

def _nice_step(span: float, target: int) -> float:
    raw = max(span, 1e-9) / max(target, 1)
    mag = 10.0 ** math.floor(math.log10(raw))
    for m in (1, 2, 2.5, 5, 10):
        if m * mag >= raw * 0.999:
            return m * mag
    return 10 * mag


def _decimals(step: float) -> int:
    for d in range(7):
        if abs(round(step, d) - step) <= 1e-9 * max(1.0, abs(step)):
            return d
    return 6


def _ticks(lo: float, hi: float, target: int) -> tuple:
    """Round values from lo to hi, about `target` of them, and their decimals."""
    step = _nice_step(hi - lo, target)
    first, last = math.ceil(lo / step - 1e-9), math.floor(hi / step + 1e-9)
    return [k * step for k in range(first, last + 1)], _decimals(step)


def _fmt(v: float, decimals: int) -> str:
    s = f"{v:.{decimals}f}"
    return "0" if s.strip("-0.") == "" else s


def _fmt_pps(v: float) -> str:
    for div, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if v >= div:
            return f"{v / div:g}{unit}"
    return f"{v:g}"


class _Panel:
    def __init__(self, box, t0, t1, v0, v1, log=False):
        self.box = box  # x0, y0, x1, y1 (half-open)
        self.t0, self.t1, self.v0, self.v1, self.log = t0, t1, v0, v1, log

    def x(self, t):
        x0, _, x1, _ = self.box
        return x0 + (np.asarray(t, float) - self.t0) / (self.t1 - self.t0) * (x1 - 1 - x0)

    def y(self, v):
        _, y0, _, y1 = self.box
        v = np.asarray(v, float)
        if self.log:
            v = np.log10(np.maximum(v, 1e-12))
            lo, hi = math.log10(self.v0), math.log10(self.v1)
        else:
            lo, hi = self.v0, self.v1
        return (y1 - 1) - (v - lo) / (hi - lo) * (y1 - 1 - y0)


# --- the plot ---------------------------------------------------------------------

LEFT = 80  # y tick labels
LEGEND = 250  # the legend column, right of the panels
TEXT = 2  # every text is drawn at 2x: readable once a README scales the image down
LINE = GLYPH_H * TEXT + 6


def _label(d: dict) -> str:
    action, what = str(d.get("action", "")), str(d.get("what", ""))
    what = what.replace("\u2026", "...")
    return f"{'sig' if action == 'signature' else action} {what}".strip()


def _clip_text(s: str, width: int) -> str:
    room = width // (ADVANCE * TEXT)
    if len(s) <= room:
        return s
    return s[:max(0, room - 2)] + ".." if room > 2 else ""


def _legend(img, x, y, entries) -> None:
    """entries: (text, colour, kind) with kind fill | line | dash | shade."""
    for i, (text, colour, kind) in enumerate(entries):
        yy = y + i * LINE
        mid = yy + GLYPH_H * TEXT // 2
        if kind == "fill":
            _rect(img, x, mid - 6, x + 22, mid + 6, colour)
        elif kind == "shade":
            _rect(img, x, mid - 8, x + 22, mid + 8, colour)
            _rect(img, x, mid - 8, x + 22, mid - 7, GRID)
        elif kind == "dash":
            _rect(img, x, mid - 1, x + 8, mid + 1, colour)
            _rect(img, x + 13, mid - 1, x + 22, mid + 1, colour)
        else:
            _rect(img, x, mid - 2, x + 22, mid + 2, colour)
        draw_text(img, x + 30, yy, text, INK, TEXT)


def _frame(img, panel: _Panel, title: str, yticks, xticks, xdecimals) -> None:
    x0, y0, x1, y1 = panel.box
    _rect(img, x0 - 4, y0 - LINE - 3, x0 + text_width(title, TEXT) + 6, y0 - 2, WHITE)  # over decision lines
    draw_text(img, x0, y0 - LINE, title, INK, TEXT)
    # frame
    _rect(img, x0 - 1, y0 - 1, x1 + 1, y0, INK)
    _rect(img, x0 - 1, y1, x1 + 1, y1 + 1, INK)
    _rect(img, x0 - 1, y0 - 1, x0, y1 + 1, INK)
    _rect(img, x1, y0 - 1, x1 + 1, y1 + 1, INK)
    for v, label in yticks:
        yy = int(round(float(panel.y(v))))
        _rect(img, x0 - 7, yy - 1, x0 - 1, yy + 1, INK)
        w = text_width(label, TEXT)
        draw_text(img, x0 - 11 - w, yy - GLYPH_H * TEXT // 2 + 1, label, INK, TEXT)
    for t in xticks:
        xx = int(round(float(panel.x(t))))
        _rect(img, xx - 1, y1 + 1, xx + 1, y1 + 7, INK)
        label = _fmt(t, xdecimals)
        draw_text(img, xx - text_width(label, TEXT) // 2, y1 + 10, label, INK, TEXT)


def _background(img, panel: _Panel, yticks, xticks, t0_capture: float) -> None:
    x0, y0, x1, y1 = panel.box
    if panel.t0 < t0_capture:
        _rect(img, x0, y0, int(round(float(panel.x(min(t0_capture, panel.t1))))), y1, WARMUP)
    for v, _ in yticks:
        yy = int(round(float(panel.y(v))))
        _rect(img, x0, yy, x1, yy + 1, GRID, panel.box)
    for t in xticks:
        xx = int(round(float(panel.x(t))))
        _rect(img, xx, y0, xx + 1, y1, GRID, panel.box)


def _as_dict(result) -> dict:
    if isinstance(result, dict):
        return result
    if hasattr(result, "to_json"):
        return result.to_json()
    raise TypeError("render() takes a ReplayResult or its to_json() dict")


def render(result, threshold: float, width: int = WIDTH, height: int = HEIGHT) -> np.ndarray:
    """The replay's timeline as an (height, width, 3) uint8 RGB image."""
    res = _as_dict(result)
    tl = list(res.get("timeline") or [])
    decisions = list(res.get("decisions") or [])
    img = np.full((height, width, 3), 255, np.uint8)

    t = np.array([float(r["t"]) for r in tl]) if tl else np.zeros(0)
    dt = float(np.median(np.diff(t))) if t.size > 1 else 0.1
    dt = dt if dt > 0 else 0.1
    series = {k: np.array([float(r.get(k, 0)) for r in tl]) / dt for k, _, _, _ in VERDICTS}
    score = np.array([float(r.get("score", 0.0)) for r in tl])
    alarm = np.array([bool(r.get("alarm", False)) for r in tl])
    t0, t1 = (float(t[0]) - dt, float(t[-1])) if t.size else (0.0, 1.0)
    if decisions:
        td = [float(d["t"]) for d in decisions]
        t0, t1 = min(t0, min(td)), max(t1, max(td))
    if t1 <= t0:
        t1 = t0 + 1.0

    # layout: title, decision labels, three panels, the time axis' title
    right = width - LEGEND
    top = 8 + LINE + 2 * LINE + 8  # title row, two rows of decision labels
    gap = LINE + 14 + LINE  # tick labels below a panel, the next panel's title
    ph = (height - top - LINE - 2 * gap - (10 + LINE + 4 + LINE + 4)) // 3
    boxes = []
    y = top + LINE
    for _ in range(3):
        boxes.append((LEFT, y, right, y + ph))
        y += ph + gap
    xticks, xdec = _ticks(t0, t1, 10)
    xticks = [v for v in xticks if t0 <= v <= t1]

    # (a) packets per second by verdict, log scale
    pos = np.concatenate([v[v > 0] for v in series.values()]) if tl else np.zeros(0)
    # a decade below the smallest rate, so that its bars and lines clear the axis
    lo = 10.0 ** math.floor(math.log10(pos.min()) - 0.15) if pos.size else 1.0
    hi = 10.0 ** math.ceil(math.log10(pos.max()) + 0.05) if pos.size else 10.0
    hi = max(hi, lo * 10)
    pa = _Panel(boxes[0], t0, t1, lo, hi, log=True)
    decades = [10.0 ** k for k in range(round(math.log10(lo)), round(math.log10(hi)) + 1)]
    step = max(1, math.ceil(len(decades) / 7))
    ya = [(v, _fmt_pps(v)) for v in decades[::step]]
    # (b) entropy, 0..1
    pb = _Panel(boxes[1], t0, t1, 0.0, 1.06)
    yb = [(v, _fmt(v, 1)) for v in (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)]
    # (c) score, linear, threshold in view
    smax = max(float(score.max()) if score.size else 0.0, float(threshold)) * 1.15 or 1.0
    sv, sdec = _ticks(0.0, smax, 5)
    pc = _Panel(boxes[2], t0, t1, 0.0, max(smax, sv[-1]))
    yc = [(v, _fmt(v, sdec)) for v in sv]

    for panel, yt in ((pa, ya), (pb, yb), (pc, yc)):
        _background(img, panel, yt, xticks, 0.0)

    # alarm periods, shaded behind the score
    if alarm.any():
        edges = np.flatnonzero(np.diff(np.concatenate([[0], alarm.astype(int), [0]])))
        for a, b in zip(edges[::2], edges[1::2]):
            xa, xb = pc.x(t[a] - dt), pc.x(t[b - 1])
            _rect(img, int(round(float(xa))), pc.box[1], max(int(round(float(xb))), int(round(float(xa))) + 1),
                  pc.box[3], ALARM, pc.box)
        for v, _ in yc:  # grid lines stay visible on the shading
            yy = int(round(float(pc.y(v))))
            _rect(img, pc.box[0], yy, pc.box[2], yy + 1, GRID, pc.box)

    # decisions cross the panels behind the data
    for td in sorted({float(d["t"]) for d in decisions}):
        for panel in (pa, pb, pc):
            xd = float(panel.x(td))
            _segments(img, [xd], [panel.box[1]], [xd], [panel.box[3] - 1], DECISION, panel.box)

    if tl:
        # (a): capture as filled bars (the bigger one drawn first), background as lines
        xa0 = np.round(pa.x(t - dt)).astype(int)
        xa1 = np.maximum(np.round(pa.x(t)).astype(int), xa0 + 1)
        bottom = pa.box[3]
        fills = [(series[k], c) for k, _, c, kind in VERDICTS if kind == "fill"]
        for i in range(t.size):
            for vals, colour in sorted(fills, key=lambda f: -f[0][i]):
                if vals[i] > 0:
                    _rect(img, xa0[i], int(round(float(pa.y(vals[i])))), xa1[i], bottom, colour, pa.box)
        mid = t - dt / 2
        for k, _, colour, kind in VERDICTS:
            if kind == "line":
                v = series[k]
                _polyline(img, pa.x(mid), pa.y(np.maximum(v, lo)), colour, pa.box, v > 0)
        # (b)
        for k, colour in FEATURES:
            h = np.array([float((r.get("entropy") or {}).get(k, np.nan)) for r in tl])
            _polyline(img, pb.x(mid), pb.y(np.nan_to_num(h)), colour, pb.box, ~np.isnan(h))
        # (c)
        _polyline(img, pc.x(mid), pc.y(score), SCORE, pc.box)
    _dashed_hline(img, pc.box[0], pc.box[2], int(round(float(pc.y(threshold)))), THRESHOLD, pc.box)

    # decisions: one line per distinct time across the panels, labels above
    groups: dict = {}
    for d in decisions:
        groups.setdefault(round(float(d["t"]), 6), []).append(d)
    for ds in groups.values():  # a signature says more about a flood than one of its sources
        ds.sort(key=lambda d: d.get("action") != "signature")
    rows_used: list = [[], []]
    for td, ds in sorted(groups.items()):
        xd = float(pa.x(td))
        more = f" (+{len(ds) - 1} more)" if len(ds) > 1 else ""
        text = f"{_fmt(td, 2 if abs(td) < 10 else 1)} s: {_label(ds[0])}{more}"
        right_room, left_room = width - 8 - (int(xd) + 8), int(xd) - 8 - 8
        room = max(right_room, left_room)
        text = _clip_text(text, room)
        if not text:
            continue
        w = text_width(text, TEXT)
        xl = int(xd) + 8 if right_room >= w else int(xd) - 8 - w
        for row, used in enumerate(rows_used):
            if all(xl + w + 12 <= a or xl >= b + 12 for a, b in used):
                used.append((xl, xl + w))
                yl = 8 + LINE + 4 + row * LINE
                draw_text(img, xl, yl, text, DECISION, TEXT)
                _segments(img, [xd], [yl + GLYPH_H * TEXT // 2], [xd], [pa.box[1] - 1], DECISION,
                          (0, 0, width, height))
                xs = (xl - 6, int(xd)) if xl > xd else (xl + w + 2, int(xd))
                _segments(img, [min(xs)], [yl + GLYPH_H * TEXT // 2], [max(xs)], [yl + GLYPH_H * TEXT // 2],
                          DECISION, (0, 0, width, height))
                break

    # frames, ticks, titles, legends
    _frame(img, pa, "packets per second by verdict (log scale)", ya, xticks, xdec)
    _frame(img, pb, "normalised entropy per feature", yb, xticks, xdec)
    _frame(img, pc, "anomaly score", yc, xticks, xdec)
    lx = right + 20
    _legend(img, lx, pa.box[1] + 4, [(name, c, kind) for _, name, c, kind in VERDICTS]
            + [("decision", DECISION, "line")])
    _legend(img, lx, pb.box[1] + 4, [(k, c, "line") for k, c in FEATURES])
    _legend(img, lx, pc.box[1] + 4, [("score", SCORE, "line"), (f"threshold {threshold:g}", THRESHOLD, "dash"),
                                     ("alarm", ALARM, "shade"), ("warm-up", WARMUP, "shade")])
    xlabel = "seconds into the capture (before 0: warm-up, background only)"
    draw_text(img, (LEFT + right - text_width(xlabel, TEXT)) // 2, pc.box[3] + 10 + LINE + 4, xlabel, INK, TEXT)

    # title: the capture, and what became of it
    cap = np.array([float(r.get("capture_pass", 0)) + float(r.get("capture_drop", 0)) for r in tl])
    dropped = sum(float(r.get("capture_drop", 0)) for r in tl)
    title = f"seawall replay: {res.get('capture') or 'capture'}"
    draw_text(img, 8, 8, title, INK, TEXT)
    total = float(cap.sum())
    if total:
        summary = f"{dropped / total:.1%} of {int(total):,} capture packets dropped"
        if text_width(title, TEXT) + 40 + text_width(summary, TEXT) <= width - 16:
            draw_text(img, width - 8 - text_width(summary, TEXT), 8, summary, MUTED, TEXT)
    return img


# --- bar chart (seawall bench) -------------------------------------------------------

def render_bars(groups: list, series: list, title: str, subtitle: str = "", unit: str = "ns",
                width: int = 1200, height: int = 620) -> np.ndarray:
    """A grouped bar chart, pure: groups is [(label, [value or None per
    series])], series is [(legend, colour)]. Each bar carries its value; a
    missing one reads n/a. Returns an (H, W, 3) uint8 image."""
    img = np.empty((height, width, 3), np.uint8)
    img[:] = WHITE
    draw_text(img, LEFT, 14, title, INK, TEXT)
    if subtitle:
        draw_text(img, LEFT, 14 + LINE, _clip_text(subtitle, width - LEFT - 20), MUTED, TEXT)
    top = 14 + 3 * LINE + 10
    x0, y0, x1, y1 = LEFT + 20, top, width - 30, height - 3 * LINE
    values = [v for _, vs in groups for v in vs if v is not None]
    vmax = max(values) if values else 1.0
    yticks, dec = _ticks(0.0, vmax * 1.12, 6)
    panel = _Panel((x0, y0, x1, y1), 0.0, 1.0, 0.0, max(yticks[-1], vmax * 1.12))
    labels = [(v, _fmt(v, dec)) for v in yticks]
    for v, _ in labels:
        yy = int(round(float(panel.y(v))))
        _rect(img, x0, yy, x1, yy + 1, GRID, panel.box)
    _frame(img, panel, "", labels, [], 0)
    draw_text(img, 8, y0 - LINE, unit, INK, TEXT)
    # legend, right-aligned on the title line
    lx = width - 30 - max(text_width(name, TEXT) for name, _ in series) - 34
    _legend(img, lx, 14, [(name, colour, "fill") for name, colour in series])
    n_g, n_s = max(1, len(groups)), max(1, len(series))
    slot = (x1 - x0) / n_g
    bar = max(4.0, min(70.0, slot * 0.8 / n_s))
    for gi, (label, vs) in enumerate(groups):
        cx = x0 + slot * (gi + 0.5)
        left = cx - bar * n_s / 2
        for si, v in enumerate(vs):
            bx = int(round(left + si * bar))
            colour = series[si][1]
            if v is None:
                t = "n/a"
                draw_text(img, bx + int(bar) // 2 - text_width(t, 1) // 2, y1 - 12, t, MUTED, 1)
                continue
            by = int(round(float(panel.y(v))))
            _rect(img, bx + 1, by, bx + int(bar) - 1, y1, colour, panel.box)
            t = f"{v:.0f}"
            scale = TEXT if text_width(t, TEXT) <= bar else 1
            draw_text(img, bx + int(bar) // 2 - text_width(t, scale) // 2, by - GLYPH_H * scale - 4, t, INK, scale)
        t = _clip_text(label, int(slot))
        draw_text(img, int(cx) - text_width(t, TEXT) // 2, y1 + 10, t, INK, TEXT)
    return img


# --- PNG ------------------------------------------------------------------------------

def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def encode_png(rgb: np.ndarray) -> bytes:
    """An 8-bit RGB PNG. Each scanline gets the filter (none, sub, up,
    average, paeth) with the smallest sum of absolute residuals."""
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8 or 0 in rgb.shape:
        raise ValueError(f"encode_png wants an (H, W, 3) uint8 array, got {rgb.shape} {rgb.dtype}")
    h, w, _ = rgb.shape
    x = rgb.reshape(h, w * 3).astype(np.int16)
    a = np.zeros_like(x)
    a[:, 3:] = x[:, :-3]
    b = np.zeros_like(x)
    b[1:] = x[:-1]
    c = np.zeros_like(x)
    c[1:, 3:] = x[:-1, :-3]
    p = a + b - c
    pa, pb, pc = np.abs(p - a), np.abs(p - b), np.abs(p - c)
    paeth = np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, b, c))
    cands = np.stack([x, x - a, x - b, x - (a + b) // 2, x - paeth]) & 0xFF  # (5, h, w*3)
    cost = np.abs(cands.astype(np.uint8).view(np.int8).astype(np.int32)).sum(axis=2)  # (5, h)
    best = cost.argmin(axis=0)
    rows = cands[best, np.arange(h)].astype(np.uint8)
    raw = np.concatenate([best.astype(np.uint8)[:, None], rows], axis=1).tobytes()
    return (b"\x89PNG\r\n\x1a\n"
            + _chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + _chunk(b"IDAT", zlib.compress(raw, 9))
            + _chunk(b"IEND", b""))


def write_png(path: str, rgb: np.ndarray) -> None:
    """Write `rgb` as a PNG at `path`, atomically (a temporary file in the
    same directory, then a rename). SeawallError when it cannot be written."""
    data = encode_png(rgb)
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise SeawallError(f"{path}: cannot write the plot: no such directory {folder}")
    tmp: Optional[str] = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=folder)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
        tmp = None
    except OSError as e:
        raise SeawallError(f"{path}: cannot write the plot: {e.strerror or e}") from None
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass
