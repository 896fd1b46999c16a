"""Signature rules: what they match, their text form, their kernel form.

A signature stops a flood whose sources cannot be blocked (spoofed, or
thousands of reflectors): protocol plus any of destination port, source
port (for ICMP: its type and code, which the datapath keeps where a port
would be), frame-length range and exact TCP flags; or protocol, the fragment
flag and a frame-length range for the non-first IP fragments of a
fragmented flood, which carry no L4 header (its first fragments carry their
ports and are matched by a port rule). Pure: the rule's kernel form is
datapath/sigtable.py's.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Optional

import numpy as np

from seawall.control.errors import UsageError

PROTO_NAMES = {1: "icmp", 6: "tcp", 17: "udp", 58: "icmpv6"}
#: protocols whose "ports" are the ICMP type (sport) and code (dport)
ICMP_PROTOS = (1, 58)
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
    fragment: bool = False  # only non-first IP fragments (never with ports or flags)

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
        if self.proto in ICMP_PROTOS:
            for name, v in (("type", self.sport), ("code", self.dport)):
                if v is not None and v > 255:
                    raise UsageError(f"ICMP {name} {v} is out of range 0-255")
        elif (self.dport is not None or self.sport is not None) and self.proto not in (6, 17):
            raise UsageError("ports only exist for tcp and udp (and an ICMP type and code for icmp)")
        if self.tcp_flags is not None and self.proto != 6:
            raise UsageError("TCP flags need protocol tcp")
        if not isinstance(self.fragment, bool):
            raise UsageError(f"fragment must be true or false, got {self.fragment!r}")
        if self.fragment and (self.dport is not None or self.sport is not None or self.tcp_flags is not None):
            raise UsageError("a fragment rule cannot match ports or TCP flags: a non-first fragment carries "
                             "none (a port rule matches the first fragment)")

    @property
    def key(self) -> str:
        """What it matches, without the action: identifies the rule."""
        parts = [PROTO_NAMES.get(self.proto, f"proto {self.proto}")]
        if self.fragment:
            parts.append("fragment")
        icmp = self.proto in ICMP_PROTOS
        if self.sport is not None:
            parts.append(f"{'type' if icmp else 'sport'} {self.sport}")
        if self.dport is not None:
            parts.append(f"{'code' if icmp else 'dport'} {self.dport}")
        if self.len_min is not None:
            parts.append(f"len {self.len_min}-{self.len_max - 1}")
        if self.tcp_flags is not None:
            parts.append("flags " + tcp_flags_str(self.tcp_flags))
        return " ".join(parts)

    def describe(self) -> str:
        return self.key + (" drop" if self.rate_pps == 0 else f" limit {self.rate_pps}pps")

    def matcher(self) -> "Signature":
        return replace(self, rate_pps=0)

    def matches(self, proto, sport, dport, length, flags, fragment=None) -> np.ndarray:
        """Vectorised match over packet arrays (harness and replay), as the
        datapath matches. `fragment`: bool array, True for a non-first IP
        fragment (None: no packet is one). A fragment rule matches only
        those; a rule with ports or flags never does (they have no L4
        header); any other rule matches them on protocol and length."""
        m = proto == self.proto
        later = np.zeros(np.shape(m), bool) if fragment is None else np.asarray(fragment, bool)
        if self.fragment:
            m &= later
        elif self.sport is not None or self.dport is not None or self.tcp_flags is not None:
            m &= ~later
        if self.sport is not None:
            m &= sport == self.sport
        if self.dport is not None:
            m &= dport == self.dport
        if self.len_min is not None:
            m &= (length >= self.len_min) & (length < self.len_max)
        if self.tcp_flags is not None:
            m &= flags == self.tcp_flags
        return m

    def cuts_path_mtu(self) -> bool:
        """Whether the rule can match the ICMP messages path MTU discovery
        needs: IPv4 "fragmentation needed" (type 3 code 4), ICMPv6 "packet
        too big" (type 2). Dropping them breaks large transfers to every
        host behind a smaller MTU, customers included."""
        if self.fragment or self.proto not in ICMP_PROTOS:
            return False
        need_type, need_code = (3, 4) if self.proto == 1 else (2, 0)
        return self.sport in (None, need_type) and (self.dport in (None, need_code) or self.proto == 58)

    def to_json(self) -> dict:
        return {"proto": self.proto, "dport": self.dport, "sport": self.sport, "len_min": self.len_min,
                "len_max": self.len_max, "tcp_flags": self.tcp_flags, "rate_pps": self.rate_pps,
                "fragment": self.fragment}

    @classmethod
    def from_json(cls, d: dict) -> "Signature":
        """The rule of a journal record. It comes from a file that may be
        damaged: anything but an object of integer fields (and a boolean
        `fragment`, absent from records written before it existed) is a
        UsageError."""
        if not isinstance(d, dict):
            raise UsageError(f"a signature rule must be an object, got {type(d).__name__}")
        fields = {k: d.get(k) for k in ("proto", "dport", "sport", "len_min", "len_max", "tcp_flags", "rate_pps")}
        for k, v in fields.items():
            if v is not None and (isinstance(v, bool) or not isinstance(v, int)):
                raise UsageError(f"signature field {k} must be an integer, got {v!r}")
        if fields["proto"] is None:
            raise UsageError("a signature rule needs a protocol")
        fields["rate_pps"] = fields["rate_pps"] or 0
        frag = d.get("fragment")
        if frag is not None and not isinstance(frag, bool):
            raise UsageError(f"signature field fragment must be true or false, got {frag!r}")
        return cls(**fields, fragment=bool(frag))

    @classmethod
    def parse(cls, text: str) -> "Signature":
        """A rule from its text form, `key` or `describe()` (what `sig list`
        shows): 'udp fragment len 1200-1499', 'tcp dport 443 flags S limit
        826pps'. The inverse of both; anything else is a UsageError."""
        words = text.split()
        if not words:
            raise UsageError("an empty rule")
        bad = UsageError(f"{text!r} is not a rule such as 'udp sport 161', 'icmp type 3 code 3' or "
                         "'udp fragment len 1200-1499'")
        if words[0] == "proto" and len(words) > 1:  # how `key` names a protocol without a name
            n = words[1]
            if not (n.isascii() and n.isdigit() and len(n) <= 3):
                raise bad
            proto, rest = int(n), words[2:]
        else:
            proto, rest = parse_proto(words[0]), words[1:]
        kw: dict = {"proto": proto}
        i = 0
        while i < len(rest):
            w = rest[i]
            if w == "fragment" and "fragment" not in kw:
                kw["fragment"], i = True, i + 1
                continue
            if w == "drop" and i == len(rest) - 1:
                break
            if i + 1 >= len(rest):
                raise bad
            v = rest[i + 1]
            icmp = {"type": "sport", "code": "dport"} if proto in ICMP_PROTOS else {}
            if w in ("sport", "dport") and not icmp and w not in kw and v.isascii() and v.isdigit() and len(v) <= 5:
                kw[w] = int(v)
            elif w in icmp and icmp[w] not in kw and v.isascii() and v.isdigit() and len(v) <= 3:
                kw[icmp[w]] = int(v)
            elif w == "len" and "len_min" not in kw:
                kw["len_min"], kw["len_max"] = parse_len_range(v)
            elif w == "flags" and "tcp_flags" not in kw:
                kw["tcp_flags"] = 0 if v == "none" else parse_tcp_flags(v)
            elif w == "limit" and i + 2 == len(rest) and re.fullmatch(r"[1-9]\d{0,9}pps", v):
                kw["rate_pps"] = int(v[:-3])
            else:
                raise bad
            i += 2
        return cls(**kw)


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
