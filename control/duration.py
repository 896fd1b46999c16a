"""Durations as operators write them: 90s, 10m, 4h, 1d, 1w, 1h30m. Pure."""

from __future__ import annotations

import re

from seawall.control.errors import UsageError

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_PART = re.compile(r"(\d+)([smhdw])")
_WHOLE = re.compile(r"(?:\d+[smhdw])+")

#: longest TTL accepted: a year; longer is a permanent block, say so
MAX_SECONDS = 366 * 86400


def parse_duration(text: str) -> int:
    """Seconds in a duration such as '90s', '10m', '4h', '1d' or '1h30m'.

    A bare number is refused: '90' could mean seconds or minutes, and a
    wrong guess either never expires an attack block or drops it at once.
    """
    raw = text.strip().lower()
    # a length cap first: int() refuses numbers of over 4300 digits with a
    # ValueError, which would escape as a traceback
    if len(raw) > 64 or not _WHOLE.fullmatch(raw):
        raise UsageError(f"{text!r} is not a duration (examples: 90s, 10m, 4h, 1d, 1h30m)")
    seconds = sum(int(n) * _UNITS[u] for n, u in _PART.findall(raw))
    if seconds <= 0:
        raise UsageError(f"{text!r}: a duration must be longer than zero")
    if seconds > MAX_SECONDS:
        raise UsageError(f"{text!r} is longer than a year; omit --ttl for a block until removed")
    return seconds


def format_duration(seconds: float) -> str:
    """Compact form, largest units first: 5400 -> '1h30m'. 0 -> '0s'."""
    s = int(round(seconds))
    if s <= 0:
        return "0s"
    out = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if s >= size:
            out.append(f"{s // size}{unit}")
            s %= size
    return "".join(out)
