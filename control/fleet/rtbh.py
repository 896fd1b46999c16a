"""Remote triggered blackholes for blocked sources (RFC 5635, RFC 7999). Pure.

With [fleet] rtbh on, each blocked source prefix is also announced as a
plain unicast route carrying the blackhole community (65535:666, RFC
7999's BLACKHOLE, by default; FastNetMon's default for a host is 65001:666): routers
that drop by source (loose uRPF against a discard route) or that are told
to drop toward it then cut the attacker off upstream. It is never
announced for a prefix that overlaps a protected address: that would
blackhole the host the fleet protects, which is the attack's aim.

Only routes carrying the configured community are seawall's: the speaker's
other unicast routes are never read as ours, nor withdrawn.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

from seawall.control.addr import Prefix
from seawall.control.errors import UsageError

BLACKHOLE = "65535:666"  # RFC 7999


def parse_community(text: str) -> int:
    """'65535:666' -> the 32-bit community (AS in the high half)."""
    hi, sep, lo = text.strip().partition(":")
    if not sep or not all(x.isascii() and x.isdigit() and len(x) <= 5 and int(x) < 65536 for x in (hi, lo)):
        raise UsageError(f"{text!r} is not a BGP community such as 65535:666")
    return int(hi) << 16 | int(lo)


def community_text(value: int) -> str:
    return f"{value >> 16}:{value & 0xFFFF}"


@dataclass(frozen=True, order=True)
class Blackhole:
    """One blackhole route: `prefix` with `community`."""

    prefix: Prefix
    community: int

    @property
    def family(self) -> str:
        return f"ipv{self.prefix.version}"

    @property
    def nlri(self) -> tuple:
        return ("rtbh", self.prefix)

    @property
    def action(self) -> tuple:
        return (self.community,)

    @property
    def match_text(self) -> str:
        return f"[blackhole {self.prefix}]"

    def describe(self) -> str:
        return f"{self.match_text} community {community_text(self.community)}"

    def gobgp_words(self) -> list:
        """The words after `gobgp global rib -a ipv4|ipv6 add` (or `del`)."""
        return [str(self.prefix), "community", community_text(self.community)]

    def to_json(self) -> dict:
        return {"family": self.family, "route": self.describe(), "peer": None}


def blackhole_routes(prefixes: Iterable[Prefix], protected: Sequence[Prefix], community: int) -> tuple:
    """(routes {nlri: Blackhole}, skipped ((decision, reason), ...)): one
    route per blocked prefix, none for one overlapping a protected prefix."""
    routes, skipped = {}, []
    for p in prefixes:
        hit = next((q for q in protected if q.overlaps(p)), None)
        if hit is not None:
            skipped.append((f"blackhole {p}", f"it covers the protected {hit}"))
            continue
        r = Blackhole(p, community)
        routes.setdefault(r.nlri, r)
    return routes, tuple(skipped)


def decode_blackholes(obj, community: int) -> list:
    """seawall's blackholes in the JSON of `gobgp global rib -a ipv4|ipv6
    -j`: the locally originated paths that carry `community`."""
    out = []
    paths = [p for ps in (obj or {}).values() for p in ps] if isinstance(obj, dict) else (obj or [])
    try:
        for path in paths:
            if path.get("neighbor-ip") not in (None, "", "<nil>", "0.0.0.0", "::"):
                continue  # learnt from a peer
            comms = [c for a in path.get("attrs") or [] if a.get("type") == 8 for c in a.get("communities") or []]
            if community in comms:
                out.append(Blackhole(Prefix.parse(path["nlri"]["prefix"]), community))
    except (KeyError, TypeError, AttributeError) as e:
        raise UsageError(f"unreadable GoBGP unicast path ({type(e).__name__}: {e})") from None
    return out
