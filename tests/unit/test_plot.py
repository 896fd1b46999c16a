"""control/plot.py: the replay timeline drawn as a PNG with numpy, zlib and
struct only. No root: a timeline is built by hand, rendered, written, and
the file is parsed back here (signature, chunk CRCs, IHDR, IDAT, every
scanline filter undone) before its pixels are checked."""

from __future__ import annotations

import os
import struct
import zlib

import numpy as np
import pytest

from seawall.control.config import Config
from seawall.control.tools import plot
from seawall.control.errors import SeawallError

DT = 0.1
DECISION_T = 0.5
THRESHOLD = 6.0


def synthetic() -> dict:
    """3 s of quiet background, a 0.5 s burst that passes, a decision, 1.5 s
    of the burst dropped, then quiet again."""
    quiet = {"src": 0.9, "dport": 0.15, "sport": 0.99, "proto": 0.12, "len": 0.6, "flags": 0.22}
    burst = {"src": 0.97, "dport": 0.02, "sport": 0.99, "proto": 0.01, "len": 0.1, "flags": 0.05}
    rows = []
    for k in range(-29, 31):
        t = round(k * DT, 3)
        cap_pass = 5000 if 0 < t <= DECISION_T else 0
        cap_drop = 5000 if DECISION_T < t <= 2.0 else 0
        rows.append({
            "t": t, "capture_pass": cap_pass, "capture_drop": cap_drop,
            "background_pass": 100 + (k % 7), "background_drop": 0,
            "score": 12.0 if cap_pass else (1.0 if cap_drop else 0.5 + 0.05 * (k % 5)),
            "alarm": 0 < t <= 1.5, "entropy": burst if cap_pass else quiet,
            "actions": 1 if t == DECISION_T else 0,
        })
    return {
        "capture": "synthetic.pcap", "timeline": rows,
        "decisions": [{"t": DECISION_T, "action": "signature", "what": "tcp dport 25565 flags S drop",
                       "reason": "spoofed/reflected flood"}],
    }


# --- an independent PNG reader ------------------------------------------------------

def _unfilter(kind: int, line: bytearray, prev: bytes, bpp: int = 3) -> bytearray:
    if kind == 0:
        return line
    if kind == 2:
        return bytearray((x + b) & 0xFF for x, b in zip(line, prev))
    out = bytearray(len(line))
    for i, x in enumerate(line):
        a = out[i - bpp] if i >= bpp else 0
        b = prev[i]
        c = prev[i - bpp] if i >= bpp else 0
        if kind == 1:
            pred = a
        elif kind == 3:
            pred = (a + b) // 2
        elif kind == 4:
            p = a + b - c
            pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
            pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
        else:
            raise AssertionError(f"unknown filter type {kind}")
        out[i] = (x + pred) & 0xFF
    return out


def read_png(data: bytes) -> tuple:
    """(pixels (H, W, 3) uint8, filter types used). Asserts the structure."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "PNG signature"
    pos, chunks = 8, []
    while pos < len(data):
        (n,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + n]
        (crc,) = struct.unpack(">I", data[pos + 8 + n:pos + 12 + n])
        assert zlib.crc32(kind + body) & 0xFFFFFFFF == crc, f"bad CRC on {kind!r}"
        chunks.append((kind, body))
        pos += 12 + n
    assert pos == len(data), "trailing bytes"
    kinds = [k for k, _ in chunks]
    assert kinds[0] == b"IHDR" and kinds[-1] == b"IEND" and chunks[-1][1] == b""
    assert set(kinds) == {b"IHDR", b"IDAT", b"IEND"}
    w, h, depth, colour_type, compression, filt, interlace = struct.unpack(">IIBBBBB", chunks[0][1])
    assert (depth, colour_type, compression, filt, interlace) == (8, 2, 0, 0, 0)
    raw = zlib.decompress(b"".join(body for k, body in chunks if k == b"IDAT"))
    stride = w * 3
    assert len(raw) == h * (stride + 1)
    rows, used, prev = [], set(), bytes(stride)
    for y in range(h):
        kind = raw[y * (stride + 1)]
        used.add(kind)
        line = _unfilter(kind, bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)]), prev)
        rows.append(bytes(line))
        prev = line
    return np.frombuffer(b"".join(rows), np.uint8).reshape(h, w, 3), used


def mask(img: np.ndarray, colour) -> np.ndarray:
    return np.all(img == np.array(colour, np.uint8), axis=2)


@pytest.fixture(scope="module")
def drawn(tmp_path_factory):
    rgb = plot.render(synthetic(), THRESHOLD)
    path = tmp_path_factory.mktemp("plot") / "replay.png"
    plot.write_png(str(path), rgb)
    pixels, filters = read_png(path.read_bytes())
    return rgb, pixels, filters, path


# --- the PNG ----------------------------------------------------------------------

def test_png_round_trip(drawn):
    rgb, pixels, filters, path = drawn
    assert rgb.shape == (plot.HEIGHT, plot.WIDTH, 3) and rgb.dtype == np.uint8
    assert pixels.shape == rgb.shape
    assert np.array_equal(pixels, rgb)
    assert filters - {0}, "only the trivial filter was used"
    assert path.stat().st_size < 200_000
    assert os.listdir(path.parent) == ["replay.png"], "a temporary file was left behind"


def test_every_filter_type_decodes():
    rng = np.random.default_rng(1)
    gradient = np.broadcast_to(np.arange(64, dtype=np.uint8)[None, :, None] * 4, (16, 64, 3))
    noise = rng.integers(0, 256, (16, 64, 3), dtype=np.uint8)
    smooth = (np.add.outer(np.arange(16), np.arange(64))[:, :, None] * np.array([1, 3, 7])).astype(np.uint8)
    img = np.concatenate([gradient, noise, smooth, np.full((4, 64, 3), 255, np.uint8)])
    pixels, filters = read_png(plot.encode_png(img))
    assert np.array_equal(pixels, img)
    assert len(filters) >= 3, filters


def test_encode_png_refuses_a_wrong_array():
    with pytest.raises(ValueError):
        plot.encode_png(np.zeros((4, 4), np.uint8))
    with pytest.raises(ValueError):
        plot.encode_png(np.zeros((4, 4, 3), np.float64))


def test_write_png_to_a_missing_directory(tmp_path):
    target = tmp_path / "no" / "such" / "dir" / "out.png"
    with pytest.raises(SeawallError) as e:
        plot.write_png(str(target), np.zeros((2, 2, 3), np.uint8))
    msg = str(e.value)
    assert str(target) in msg and "\n" not in msg
    assert list(tmp_path.iterdir()) == []


def test_write_png_onto_a_directory_cleans_up(tmp_path):
    (tmp_path / "taken.png").mkdir()
    with pytest.raises(SeawallError, match="taken.png"):
        plot.write_png(str(tmp_path / "taken.png"), np.zeros((2, 2, 3), np.uint8))
    assert os.listdir(tmp_path) == ["taken.png"], "the temporary file was left behind"


def test_write_png_replaces_and_follows_the_umask(tmp_path):
    target = tmp_path / "out.png"
    target.write_bytes(b"old")
    old = os.umask(0o027)
    try:
        plot.write_png(str(target), np.full((3, 5, 3), 7, np.uint8))
    finally:
        os.umask(old)
    assert target.stat().st_mode & 0o777 == 0o640
    pixels, _ = read_png(target.read_bytes())
    assert pixels.shape == (3, 5, 3) and (pixels == 7).all()


# --- what is drawn --------------------------------------------------------------------

def decision_columns(img: np.ndarray) -> np.ndarray:
    """The decision line crosses all three panels: the columns full of its colour."""
    counts = mask(img, plot.DECISION).sum(axis=0)
    cols = np.flatnonzero(counts > 300)
    assert cols.size and cols.max() - cols.min() <= 2, cols
    return cols


def test_the_image_is_not_blank(drawn):
    rgb = drawn[0]
    assert (rgb != 255).any(axis=2).mean() > 0.05
    assert len(np.unique(rgb.reshape(-1, 3), axis=0)) >= 15


def test_capture_drops_only_after_the_decision(drawn):
    rgb = drawn[0]
    cols = decision_columns(rgb)
    drop = np.flatnonzero(mask(rgb, plot.COLOURS["capture_drop"]).any(axis=0))
    assert drop.size and drop.min() >= cols.min() - 1, (drop.min(), cols)
    assert mask(rgb[:, cols.max() + 1:], plot.COLOURS["capture_drop"]).sum() > 2000
    # the burst that passed is drawn before it, and the quiet warm-up carries no capture at all
    passed = np.flatnonzero(mask(rgb, plot.COLOURS["capture_pass"]).any(axis=0))
    assert passed.min() < cols.min()
    # 0.5 s of burst passed before the decision, 1.5 s dropped after it (the legend column aside)
    plotted = drop[drop < plot.WIDTH - plot.LEGEND]
    ratio = (cols.min() - passed.min()) / (plotted.max() - cols.min())
    assert 0.28 < ratio < 0.38, ratio


def test_the_threshold_is_a_dashed_line_in_the_score_panel(drawn):
    rgb = drawn[0]
    black = mask(rgb, plot.THRESHOLD)
    rows = np.flatnonzero(black.sum(axis=1) > 200)
    assert rows.size and rows.min() > 0.6 * rgb.shape[0], rows  # the bottom panel
    line = black[rows[0]]
    edges = np.flatnonzero(np.diff(np.concatenate([[0], line.astype(int), [0]])))
    runs = edges[1::2] - edges[::2]
    assert len(runs) >= 20 and runs.max() <= 12, runs  # dashes, not a solid rule
    # a lower threshold moves it down
    lower = mask(plot.render(synthetic(), THRESHOLD / 2), plot.THRESHOLD)
    assert np.flatnonzero(lower.sum(axis=1) > 200).min() > rows.max()


def test_alarm_shading_and_entropy_lines(drawn):
    rgb = drawn[0]
    cols = decision_columns(rgb)
    alarm_cols = np.flatnonzero(mask(rgb, plot.ALARM).sum(axis=0) > 50)  # the legend swatch is shorter
    assert alarm_cols.size and alarm_cols.min() < cols.min() < alarm_cols.max()
    for feature, colour in plot.FEATURES:
        assert mask(rgb, colour).sum() > 300, feature


def test_render_takes_a_result_object_and_an_empty_timeline():
    class Result:
        def to_json(self):
            return synthetic()

    assert np.array_equal(plot.render(Result(), THRESHOLD), plot.render(synthetic(), THRESHOLD))
    empty = plot.render({"capture": "x.pcap", "timeline": [], "decisions": []}, THRESHOLD)
    assert empty.shape == (plot.HEIGHT, plot.WIDTH, 3)
    assert mask(empty, plot.THRESHOLD).any()


# --- the font ------------------------------------------------------------------------

A = [".###.",
     "#...#",
     "#...#",
     "#####",
     "#...#",
     "#...#",
     "#...#",
     "....."]


def test_font_glyph_a():
    want = np.array([[c == "#" for c in row] for row in A])
    assert np.array_equal(plot.glyph("A"), want)
    img = np.full((12, 12, 3), 255, np.uint8)
    plot.draw_text(img, 2, 1, "A", (0, 0, 0))
    assert np.array_equal(mask(img, (0, 0, 0))[1:9, 2:7], want)
    assert mask(img, (0, 0, 0)).sum() == want.sum()


def test_font_scale_and_fallback():
    big = plot.text_mask("A", 2)
    assert big.shape == (16, 10)
    assert np.array_equal(big[::2, ::2], plot.glyph("A"))
    assert plot.text_width("abc") == 17 and plot.text_width("abc", 2) == 34
    assert np.array_equal(plot.glyph("\u2026"), plot.glyph("?"))
    assert not plot.glyph(" ").any()
    for c in range(33, 127):  # every printable glyph has ink, and no two are alike
        assert plot.glyph(chr(c)).any(), chr(c)
    assert len({plot.glyph(chr(c)).tobytes() for c in range(32, 127)}) == 95


def test_draw_text_clips_at_the_edges():
    img = np.full((6, 6, 3), 255, np.uint8)
    plot.draw_text(img, -3, -2, "WW", (0, 0, 0), 2)  # no IndexError
    assert mask(img, (0, 0, 0)).any()


# --- the command line (no root: the replay itself is replaced) --------------------------

def _pcap(path) -> None:
    frame = bytes(12) + b"\x08\x00" + bytes(46)
    path.write_bytes(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
                     + struct.pack("<IIII", 1, 0, len(frame), len(frame)) + frame)


@pytest.fixture
def cli_env(tmp_path, monkeypatch):
    monkeypatch.setenv("SEAWALL_BPFFS", str(tmp_path / "bpffs"))
    monkeypatch.setenv("SEAWALL_STATE_DIR", str(tmp_path / "state"))
    import seawall.control.tools.replay as replay_mod

    def forbidden(*a, **kw):
        raise AssertionError("the replay must not run")

    monkeypatch.setattr(replay_mod, "replay", forbidden)
    return replay_mod


def test_cli_plot_into_a_missing_directory_fails_first(tmp_path, cli_env, capsys):
    from seawall.cli.main import main

    _pcap(tmp_path / "x.pcap")
    code = main(["replay", str(tmp_path / "x.pcap"), "--plot", str(tmp_path / "missing" / "x.png")])
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    assert err.startswith("seawall: error: --plot: ") and err.count("\n") == 1, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.pcap"]


def test_cli_writes_the_plot(tmp_path, cli_env, capsys, monkeypatch):
    from seawall.cli.main import main

    d = synthetic()
    res = cli_env.ReplayResult(d["capture"], 1, 0.0, 0, 0.1, 0.5, 1.0, 60, 0, d["decisions"], d["timeline"])
    monkeypatch.setattr(cli_env, "replay", lambda *a, **kw: res)
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    _pcap(tmp_path / "x.pcap")
    out_png = tmp_path / "x.png"
    code = main(["replay", str(tmp_path / "x.pcap"), "--plot", str(out_png)])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert out.splitlines()[-1] == f"plot: {out_png}"
    pixels, _ = read_png(out_png.read_bytes())
    assert np.array_equal(pixels, plot.render(res, Config().detection.threshold))
    # with --json, stdout stays one JSON object and the path goes to stderr
    code = main(["replay", str(tmp_path / "x.pcap"), "--json", "--plot", str(out_png)])
    out, err = capsys.readouterr()
    assert code == 0 and out.lstrip().startswith("{") and err == f"plot: {out_png}\n"
