"""Signature rules: what they match, their text form, their kernel form.

A signature stops a flood whose sources cannot be blocked (spoofed, or
thousands of reflectors): protocol plus any of destination port, source
port, frame-length range and exact TCP flags. Pure: the rule's kernel form
is datapath/sigtable.py's.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Optional

import numpy as np

from seawall.control.errors import UsageError

PROTO_NAMES = {1: "icmp", 6: "tcp", 17: "udp", 58: "icmpv6"}
PROTO_NUMBERS = {v: k for k, v in PROTO_NAMES.items()}
_FLAG_BITS = [(1, "F"), (2, "S"), (4, "R"), (8, "P"), (16, "A"), (32, "U")]


def tcp_flags_str(v: int) -> str:
    return "".join(n for bit, n in _FLAG_BITS if v & bit) or "none"


def parse_tcp_flags(text: str) -> int:
    """'S' (SYN only), 'SA', 'PA', ... or a number 0-63."""
    t = text.strip().upper()
    if t.isascii() and t.isdigit() and len(t) <= 8 and int(t) < 64:  # isdigit() alone takes '²', which int() refuses
        return int(t)
    bits = dict((n, b) for b, n in _FLAG_BITS)
    if not t or any(c not in bits for c in t):
        raise UsageError(f"{text!r} is not a TCP flag set (letters F S R P A U, e.g. S or SA)")
    return sum(bits[c] for c in set(t))


@dataclass(frozen=True)
class Signature:
    """A kernel signature rule: packets matching every set field."""

    proto: int
    dport: Optional[int] = None
    sport: Optional[int] = None
    len_min: Optional[int] = None  # frame bytes, inclusive
    len_max: Optional[int] = None  # frame bytes, exclusive (the kernel keeps it in a u16: <= 65535)
    tcp_flags: Optional[int] = None  # exact value of the low 6 flag bits
    rate_pps: int = 0  # 0: drop all matching; else pass up to this rate

    def __post_init__(self):
        if not 0 <= self.proto <= 255:
            raise UsageError(f"protocol {self.proto} is out of range 0-255")
        for name in ("dport", "sport"):
            v = getattr(self, name)
            if v is not None and not 0 <= v <= 65535:
                raise UsageError(f"{name} {v} is out of range 0-65535")
        if (self.len_min is None) != (self.len_max is None):
            raise UsageError("a length range needs both ends")
        if self.len_min is not None and not 0 <= self.len_min < self.len_max <= 65535:
            raise UsageError(f"length range {self.len_min}-{self.len_max - 1} is empty or out of range")
        if self.tcp_flags is not None and not 0 <= self.tcp_flags < 64:
            raise UsageError("TCP flags must be 0-63")
        if not 0 <= self.rate_pps < 2**32:
            raise UsageError("rate must be 0 (drop) or a positive packets-per-second figure")
        if (self.dport is not None or self.sport is not None) and self.proto not in (6, 17):
            raise UsageError("ports only exist for tcp and udp")
        if self.tcp_flags is not None and self.proto != 6:
            raise UsageError("TCP flags need protocol tcp")

    @property
    def key(self) -> str:
        """What it matches, without the action: identifies the rule."""
        parts = [PROTO_NAMES.get(self.proto, f"proto {self.proto}")]
        if self.sport is not None:
            parts.append(f"sport {self.sport}")
        if self.dport is not None:
            parts.append(f"dport {self.dport}")
        if self.len_min is not None:
            parts.append(f"len {self.len_min}-{self.len_max - 1}")
        if self.tcp_flags is not None:
            parts.append("flags " + tcp_flags_str(self.tcp_flags))
        return " ".join(parts)

    def describe(self) -> str:
        return self.key + (" drop" if self.rate_pps == 0 else f" limit {self.rate_pps}pps")

    def matcher(self) -> "Signature":
        return replace(self, rate_pps=0)

    def matches(self, proto, sport, dport, length, flags) -> np.ndarray:
        """Vectorised match over packet arrays (harness and replay)."""
        m = proto == self.proto
        if self.sport is not None:
            m &= sport == self.sport
        if self.dport is not None:
            m &= dport == self.dport
        if self.len_min is not None:
            m &= (length >= self.len_min) & (length < self.len_max)
        if self.tcp_flags is not None:
            m &= flags == self.tcp_flags
        return m

    def to_json(self) -> dict:
        return {"proto": self.proto, "dport": self.dport, "sport": self.sport, "len_min": self.len_min,
                "len_max": self.len_max, "tcp_flags": self.tcp_flags, "rate_pps": self.rate_pps}

    @classmethod
    def from_json(cls, d: dict) -> "Signature":
        """The rule of a journal record. It comes from a file that may be
        damaged: anything but an object of integer fields is a UsageError."""
        if not isinstance(d, dict):
            raise UsageError(f"a signature rule must be an object, got {type(d).__name__}")
        fields = {k: d.get(k) for k in ("proto", "dport", "sport", "len_min", "len_max", "tcp_flags", "rate_pps")}
        for k, v in fields.items():
            if v is not None and (isinstance(v, bool) or not isinstance(v, int)):
                raise UsageError(f"signature field {k} must be an integer, got {v!r}")
        if fields["proto"] is None:
            raise UsageError("a signature rule needs a protocol")
        fields["rate_pps"] = fields["rate_pps"] or 0
        return cls(**fields)


def parse_proto(text: str) -> int:
    t = text.strip().lower()
    if t in PROTO_NUMBERS:
        return PROTO_NUMBERS[t]
    if t.isascii() and t.isdigit() and len(t) <= 8 and 0 < int(t) < 256:  # no int() of 5000 digits
        return int(t)
    raise UsageError(f"{text!r} is not a protocol (tcp, udp, icmp, icmpv6 or a number)")


def parse_len_range(text: str) -> tuple:
    """'1200-1500' (inclusive) -> (1200, 1501)."""
    m = re.fullmatch(r"\s*(\d{1,6})\s*-\s*(\d{1,6})\s*", text)
    if not m or int(m.group(1)) > int(m.group(2)) or int(m.group(2)) > 65534:
        raise UsageError(f"{text!r} is not a length range such as 1200-1500")
    return int(m.group(1)), int(m.group(2)) + 1
