"""Addresses, in the two forms seawall uses between the kernel and a decision. Pure.

- `Sources`: many source addresses at once, as numpy arrays (ver, hi, lo):
  IPv4 keeps its 32-bit address in `lo` (hi = 0); IPv6 splits its 128 bits
  into two big-endian u64 halves. The kernel read produces them
  (datapath/counters.py), detection works on them, vectorised.
- `Prefix`: one prefix, the unit of a decision (a block, an allowlist entry).
  `Sources.prefix(i, plen)` turns a source into one.
"""

from __future__ import annotations

import bisect
import ipaddress
from dataclasses import dataclass
from typing import Union

import numpy as np

from seawall.control.errors import UsageError

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

    def unmapped(self) -> "Prefix":
        """The IPv4 prefix an IPv4-mapped IPv6 one (::ffff:a.b.c.d/96 and
        longer) stands for; any other prefix as it is. A mapped address
        is how a dual-stack socket shows an IPv4 client (ss, application
        logs); on the wire that client's packets are IPv4, and an IPv6
        entry for it would never match one."""
        if self.version != 6 or self.prefixlen < 96 or self.packed[:12] != _MAPPED:
            return self
        return Prefix(4, self.packed[12:], self.prefixlen - 96)

    def overlaps(self, other: "Prefix") -> bool:
        return self.version == other.version and self.network.overlaps(other.network)

    def contains(self, other: "Prefix") -> bool:
        return self.version == other.version and other.network.subnet_of(self.network)


_MAPPED = bytes(10) + b"\xff\xff"  # the first 96 bits of ::ffff:0:0/96


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


# --- many sources at once --------------------------------------------------------

U64 = np.uint64
_ALL = (1 << 64) - 1


@dataclass
class Sources:
    ver: np.ndarray  # uint8: 4 or 6
    hi: np.ndarray  # uint64
    lo: np.ndarray  # uint64
    packets: np.ndarray  # uint64 (per cycle, or cumulative from the kernel)
    bytes: np.ndarray
    syns: np.ndarray

    def __len__(self) -> int:
        return len(self.ver)

    @classmethod
    def empty(cls) -> "Sources":
        z = np.zeros(0, U64)
        return cls(np.zeros(0, np.uint8), z, z.copy(), z.copy(), z.copy(), z.copy())

    @classmethod
    def from_kernel(cls, keys4, vals4, keys6, vals6) -> "Sources":
        """From summed kernel rows: keys4 (n,4) u8 network order; keys6
        (m,16) u8; vals (n,3+) u64 = packets, bytes, syns, ..."""
        lo4 = keys4.reshape(-1, 4).copy().view(">u4").reshape(-1).astype(U64)
        k6 = np.ascontiguousarray(keys6.reshape(-1, 16))
        hi6 = k6[:, :8].copy().view(">u8").reshape(-1).astype(U64)
        lo6 = k6[:, 8:].copy().view(">u8").reshape(-1).astype(U64)
        ver = np.concatenate([np.full(len(lo4), 4, np.uint8), np.full(len(lo6), 6, np.uint8)])
        hi = np.concatenate([np.zeros(len(lo4), U64), hi6])
        lo = np.concatenate([lo4, lo6])
        # packets, bytes, syns: any further column would not be a count,
        # and an empty family must not decide the width
        v = np.concatenate([vals4.reshape(-1, vals4.shape[-1])[:, :3] if len(vals4) else np.zeros((0, 3), U64),
                            vals6.reshape(-1, vals6.shape[-1])[:, :3] if len(vals6) else np.zeros((0, 3), U64)])
        return cls(ver, hi, lo, v[:, 0].astype(U64), v[:, 1].astype(U64), v[:, 2].astype(U64))

    @classmethod
    def from_addresses(cls, addrs, packets, bytes_=None, syns=None) -> "Sources":
        ver, hi, lo = [], [], []
        for a in addrs:
            ip = ipaddress.ip_address(a)
            n = int(ip)
            ver.append(ip.version)
            hi.append(0 if ip.version == 4 else n >> 64)
            lo.append(n if ip.version == 4 else n & _ALL)
        p = np.asarray(packets, U64)
        return cls(np.asarray(ver, np.uint8), np.asarray(hi, U64), np.asarray(lo, U64), p,
                   np.asarray(bytes_ if bytes_ is not None else p * 100, U64),
                   np.asarray(syns if syns is not None else np.zeros(len(p)), U64))

    @classmethod
    def concat(cls, parts: list) -> "Sources":
        if not parts:
            return cls.empty()
        return cls(*(np.concatenate([getattr(p, f) for p in parts])
                     for f in ("ver", "hi", "lo", "packets", "bytes", "syns")))

    def take(self, idx) -> "Sources":
        return Sources(self.ver[idx], self.hi[idx], self.lo[idx], self.packets[idx], self.bytes[idx], self.syns[idx])

    def prefix(self, i: int, plen: int | None = None) -> Prefix:
        """Source i as a Prefix of length plen (the host itself when None)."""
        v = int(self.ver[i])
        bits = 32 if v == 4 else 128
        n = int(self.lo[i]) if v == 4 else (int(self.hi[i]) << 64) | int(self.lo[i])
        plen = bits if plen is None else plen
        n &= ((1 << bits) - 1) ^ ((1 << (bits - plen)) - 1)
        return Prefix(v, n.to_bytes(bits // 8, "big"), plen)

    def find(self, table: "Sources") -> np.ndarray:
        """For each source here, its row in table, or -1: an exact match on
        (ver, hi, lo), found through key64 (the rare IPv6 key64 collision
        counts as absent)."""
        if not len(self) or not len(table):
            return np.full(len(self), -1, np.intp)
        found, idx = _join(self.key64(), table.key64())
        found &= (table.ver[idx] == self.ver) & (table.hi[idx] == self.hi) & (table.lo[idx] == self.lo)
        return np.where(found, idx, -1)

    def masked(self, plen4: int, plen6: int):
        """(hi, lo) with host bits cleared to /plen4 (v4) or /plen6 (v6)."""
        is4 = self.ver == 4
        lo = self.lo.copy()
        hi = self.hi.copy()
        m4 = U64(((1 << 32) - 1) ^ ((1 << (32 - plen4)) - 1))
        lo[is4] &= m4
        if plen6 <= 64:
            mh = U64(_ALL ^ ((1 << (64 - plen6)) - 1)) if plen6 > 0 else U64(0)
            hi[~is4] &= mh
            lo[~is4] = U64(0)
        else:
            ml = U64(_ALL ^ ((1 << (128 - plen6)) - 1))
            lo[~is4] &= ml
        return hi, lo

    def network(self, plen4: int, plen6: int) -> "Sources":
        """The sources' networks of length plen4 (v4) or plen6 (v6), as
        Sources (no counts), for lookups by prefix."""
        hi, lo = self.masked(plen4, plen6)
        z = np.zeros(len(self), U64)
        return Sources(self.ver, hi, lo, z, z, z)

    @classmethod
    def of_prefixes(cls, prefixes: list) -> "Sources":
        """Prefixes' network addresses as Sources (no counts)."""
        if not prefixes:
            return cls.empty()
        n = [int.from_bytes(p.packed, "big") for p in prefixes]
        ver = np.array([p.version for p in prefixes], np.uint8)
        hi = np.array([0 if p.version == 4 else v >> 64 for p, v in zip(prefixes, n)], U64)
        lo = np.array([v if p.version == 4 else v & _ALL for p, v in zip(prefixes, n)], U64)
        z = np.zeros(len(prefixes), U64)
        return cls(ver, hi, lo, z, z, z)

    def key64(self) -> np.ndarray:
        """One u64 per source for joins: exact for IPv4 (the address, top
        bit clear); for IPv6 a 63-bit mix of both halves with the top bit
        set (a collision among a million sources has odds near 1e-7, and
        would only misattribute one cycle's delta)."""
        k = self.lo.copy()
        six = self.ver == 6
        if six.any():
            with np.errstate(over="ignore"):
                h = (self.hi[six] * U64(0x9E3779B97F4A7C15)) ^ (self.lo[six] * U64(0xC2B2AE3D27D4EB4F))
                h ^= h >> U64(29)
            k[six] = h | U64(1 << 63)
        return k

    def keys(self) -> np.ndarray:
        """One sortable structured key per source."""
        k = np.empty(len(self), dtype=[("ver", np.uint8), ("hi", U64), ("lo", U64)])
        k["ver"], k["hi"], k["lo"] = self.ver, self.hi, self.lo
        return k


def group_labels(ver: np.ndarray, hi: np.ndarray, lo: np.ndarray) -> tuple:
    """(labels, count): equal (ver, hi, lo) rows get equal labels, as the
    inverse of np.unique over a structured array would give, without
    sorting one (2.4 s for a million rows; a u64 sort takes 15 ms)."""
    inv = np.empty(len(ver), np.intp)
    n = 0
    for v in np.unique(ver):
        sel = np.flatnonzero(ver == v)
        h, l = hi[sel], lo[sel]
        if not h.any():
            key = l  # IPv4, or IPv6 masked to /64 or shorter has lo == 0 ...
        elif not l.any():
            key = h  # ... so one half is the whole key
        else:
            key = np.empty(len(sel), dtype=[("hi", np.uint64), ("lo", np.uint64)])
            key["hi"], key["lo"] = h, l
        u, i = np.unique(key, return_inverse=True)
        inv[sel] = i.reshape(-1) + n
        n += len(u)
    return inv, n


def delta(cur: Sources, prev: Sources | None) -> Sources:
    """Per-cycle counts from two cumulative snapshots of the kernel table.
    A source absent from prev (new, or evicted and re-admitted) counts from
    zero; a counter that went backwards (re-admitted) counts from zero."""
    if prev is None or len(prev) == 0 or len(cur) == 0:
        return cur
    ck, pk = cur.key64(), prev.key64()
    if len(ck) == len(pk) and np.array_equal(ck, pk):
        # the table read in the same order as last time (no source came or
        # went, the steady state): row i is row i
        found = np.ones(len(ck), bool)
        idx = np.arange(len(ck))
    else:
        found, idx = _join(ck, pk)
    out = []
    for name in ("packets", "bytes", "syns"):
        c = getattr(cur, name)
        p = np.where(found, getattr(prev, name)[idx], U64(0))
        p = np.where(p > c, U64(0), p)
        out.append(c - p)
    return Sources(cur.ver, cur.hi, cur.lo, *out)


def _join(ck: np.ndarray, pk: np.ndarray) -> tuple:
    """For each key of ck: is it in pk, and where (the first of equal keys,
    as a stable sort finds it). Both sides are sorted before the binary
    searches: searching for keys in random order misses the cache at every
    step, and took 200 ms of 300 for a million sources."""
    order = np.argsort(pk)  # introsort: several times faster than a stable sort here
    pk_sorted = pk[order]
    if len(pk_sorted) > 1 and (pk_sorted[1:] == pk_sorted[:-1]).any():
        order = np.argsort(pk, kind="stable")  # equal keys (IPv6 hash collisions): keep the first
        pk_sorted = pk[order]
    corder = np.argsort(ck)
    ck_sorted = ck[corder]
    pos = np.minimum(np.searchsorted(pk_sorted, ck_sorted), len(pk_sorted) - 1)
    found = np.empty(len(ck), bool)
    found[corder] = pk_sorted[pos] == ck_sorted
    idx = np.empty(len(ck), np.intp)
    idx[corder] = order[pos]
    return found, idx
