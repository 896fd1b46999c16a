"""Durations as operators write them, one grammar for every option and
config value that takes a time. Pure.

    90s  10m  4h  1d  1w  1h30m  250ms  90 (a plain number is seconds)

Parts are whole numbers with a unit (ms, s, m, h, d, w), summed; a plain
number, as in systemd, fail2ban and TOML, is seconds. Sub-second values
(250ms, 0.5) are taken only where the caller says they mean something (a
cycle interval); a TTL is whole seconds.
"""

from __future__ import annotations

import re
from decimal import Decimal

from seawall.control.errors import UsageError

_UNITS = {"ms": Decimal("0.001"), "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_PART = re.compile(r"(\d+)(ms|[smhdw])")
_WHOLE = re.compile(r"(?:\d+(?:ms|[smhdw]))+")
_PLAIN = re.compile(r"\d+(?:\.\d+)?")
EXAMPLES = "examples: 90s, 10m, 4h, 1d, 1h30m; a plain number is seconds"

#: longest duration accepted: a year; longer is a permanent block, say so
MAX_SECONDS = 366 * 86400


def parse_duration(text: str, subsecond: bool = False, zero: bool = False):
    """Seconds in a duration such as '90s', '10m', '1h30m' or '90': an int,
    or with subsecond=True a float that may be a fraction ('250ms', '0.5').

    Refused with a UsageError naming the text: anything else, zero (unless
    zero=True: a wait that may be none), more than a year, and a fraction
    of a second where subsecond is False.
    """
    raw = text.strip().lower()
    # a length cap first: int() refuses numbers of over 4300 digits with a
    # ValueError, which would escape as a traceback
    if len(raw) > 64 or not (_WHOLE.fullmatch(raw) or _PLAIN.fullmatch(raw)):
        raise UsageError(f"{text!r} is not a duration ({EXAMPLES})")
    if _PLAIN.fullmatch(raw):
        seconds = Decimal(raw)
    else:
        seconds = sum(int(n) * _UNITS[u] for n, u in _PART.findall(raw))
    if seconds < 0 or (seconds == 0 and not zero):
        raise UsageError(f"{text!r}: a duration must be longer than zero")
    if seconds > MAX_SECONDS:
        raise UsageError(f"{text!r} is longer than a year (366d); leave the option out for no expiry")
    if subsecond:
        return float(seconds)
    if seconds != int(seconds):
        raise UsageError(f"{text!r} is not a duration in whole seconds ({EXAMPLES})")
    return int(seconds)


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


def say_duration(seconds: float) -> str:
    """format_duration, or milliseconds below a second: 0.25 -> '250ms'."""
    return f"{round(seconds * 1000)}ms" if 0 < seconds < 1 else format_duration(seconds)
