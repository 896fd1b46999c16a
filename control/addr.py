"""Addresses and prefixes: parsing, canonical form, LPM keys. Pure."""

from __future__ import annotations

import bisect
import ipaddress
import struct
from dataclasses import dataclass
from typing import Union

from .errors import UsageError

Network = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]


@dataclass(frozen=True, order=True)
class Prefix:
    """An IPv4 or IPv6 prefix with host bits cleared."""

    version: int
    packed: bytes  # network address, network byte order
    prefixlen: int

    @classmethod
    def parse(cls, text: str) -> "Prefix":
        """Parse a CIDR or a bare address (a /32 or /128).

        Host bits are rejected rather than silently cleared: blocking
        198.18.0.1/24 is almost always a typo for one of two things.
        """
        raw = text.strip()
        if not raw:
            raise UsageError("empty address")
        try:
            net = ipaddress.ip_network(raw, strict=True)
        except ValueError as e:
            msg = str(e)
            if "host bits set" in msg:
                fixed = ipaddress.ip_network(raw, strict=False)
                raise UsageError(f"{raw!r} has host bits set (did you mean {fixed}?)") from None
            raise UsageError(f"{raw!r} is not an IPv4/IPv6 address or CIDR") from None
        return cls.from_network(net)

    @classmethod
    def from_network(cls, net: Network) -> "Prefix":
        return cls(net.version, net.network_address.packed, net.prefixlen)

    @property
    def network(self) -> Network:
        return ipaddress.ip_network((self.packed, self.prefixlen))

    @property
    def family(self) -> str:
        return "v4" if self.version == 4 else "v6"

    @property
    def is_host(self) -> bool:
        return self.prefixlen == len(self.packed) * 8

    def __str__(self) -> str:
        return str(self.network)

    def lpm_key(self) -> bytes:
        """struct sw_lpm_v4 / sw_lpm_v6: u32 prefixlen (host order), address."""
        return struct.pack("=I", self.prefixlen) + self.packed

    @classmethod
    def from_lpm_key(cls, key: bytes) -> "Prefix":
        (plen,) = struct.unpack_from("=I", key)
        addr = bytes(key[4:])
        version = 4 if len(addr) == 4 else 6
        return cls(version, addr, plen)

    def overlaps(self, other: "Prefix") -> bool:
        return self.version == other.version and self.network.overlaps(other.network)

    def contains(self, other: "Prefix") -> bool:
        return self.version == other.version and other.network.subnet_of(self.network)


class PrefixSet:
    """Prefixes that answer "does any of them overlap this one?" in
    O(log n): any(p.overlaps(q) for p in prefixes), without the ipaddress
    objects (the daemon asks it for every candidate block, against an
    allowlist of thousands)."""

    def __init__(self, prefixes=()):
        self.prefixes = list(prefixes)
        self._starts: dict = {}
        self._ends: dict = {}
        for version, bits in ((4, 32), (6, 128)):
            spans = sorted(_span(p, bits) for p in self.prefixes if p.version == version)
            starts, ends = [], []
            for lo, hi in spans:  # merge: the spans left are disjoint and sorted
                if ends and lo <= ends[-1] + 1:
                    ends[-1] = max(ends[-1], hi)
                else:
                    starts.append(lo)
                    ends.append(hi)
            self._starts[version], self._ends[version] = starts, ends

    def __len__(self) -> int:
        return len(self.prefixes)

    def __iter__(self):
        return iter(self.prefixes)

    def overlaps(self, q: Prefix) -> bool:
        lo, hi = _span(q, 32 if q.version == 4 else 128)
        starts = self._starts.get(q.version, [])
        i = bisect.bisect_right(starts, hi) - 1  # the last span starting at or before q's end
        return i >= 0 and self._ends[q.version][i] >= lo


def _span(p: Prefix, bits: int) -> tuple:
    """First and last address of p, as ints."""
    lo = int.from_bytes(p.packed, "big")
    return lo, lo | ((1 << (bits - p.prefixlen)) - 1)


BENCHMARK_V4 = ipaddress.ip_network("198.18.0.0/15")
BENCHMARK_V6 = ipaddress.ip_network("2001:2::/48")
