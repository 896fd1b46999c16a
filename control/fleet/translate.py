"""Decisions to FlowSpec routes (export), and routes to decisions (import). Pure.

Export:
- a block of a source prefix becomes one route per protected address of
  its family: destination = the address (/32 or /128), source = the prefix,
  action discard;
- a signature becomes one route per protected address of a family its
  protocol lives in: protocol, ports (an ICMP type and code for icmp and
  icmpv6), packet length, TCP flags, fragment; action discard, or a
  traffic-rate for a rate-limited rule.

Import judges a route whole: it becomes one block or one signature, or it
is refused with a reason (never half-applied). Only a destination within
this host's addresses or configured prefixes is accepted; every component
must be one the datapath enforces exactly; at most `cap` routes are taken.

Two units differ between seawall and FlowSpec, and are converted here:
- length: a signature's length is the frame's (the datapath measures from
  the Ethernet header), FlowSpec's the IP packet's: they differ by
  ETH_HLEN on an untagged link (a VLAN tag adds 4 bytes the conversion
  does not know of);
- rate: a signature limits packets per second, FlowSpec's traffic-rate is
  bytes per second. A limit is exported as pps x the largest IP length the
  rule matches (RATE_PACKET_BYTES when it matches any length), and imported
  back by the same division, so a rule makes the round trip unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Optional, Sequence, Union

from seawall.control.addr import Prefix
from seawall.control.errors import UsageError
from seawall.control.fleet.flowspec import (AND, DPORT, EQ, FIRST_FRAGMENT, FRAGMENT, GT, ICMP_CODE, ICMP_TYPE,
                                            IS_FRAGMENT, LT, MATCH, NOT, PKT_LEN, PROTO, SPORT, TCP_FLAGS,
                                            COMPONENT_NAMES, FlowRoute, Term)
from seawall.control.signature import ICMP_PROTOS, Signature

ETH_HLEN = 14  # bytes: a frame's length (the datapath's) = its IP packet's length (FlowSpec's) + this
RATE_PACKET_BYTES = 1500  # bytes a packet counts for in a traffic-rate when the rule matches any length
_TCP_FLAG_BITS = 0x3F  # the six flags a signature compares (FIN to URG); ECE and CWR are not compared
_FAMILY_OF_PROTO = {1: (4,), 58: (6,)}  # icmp lives in IPv4 only, icmpv6 in IPv6 only; others in both
_MIN_PREFIXLEN = {4: 8, 6: 16}  # a wider source is not taken from a peer (the CLI asks --force for it)


# --- export --------------------------------------------------------------------------

def block_routes(prefix: Prefix, protected: Sequence[Prefix]) -> list:
    """The routes of a block: one per protected address of the prefix's
    family (destination that address, source the prefix, discard). None
    when no protected address is of its family."""
    return [FlowRoute(prefix.version, dst=host, src=prefix) for host in _hosts(protected, prefix.version)]


def signature_routes(sig: Signature, protected: Sequence[Prefix]) -> list:
    """The routes of a signature rule: one per protected address of a family
    its protocol lives in."""
    out = []
    for version in _FAMILY_OF_PROTO.get(sig.proto, (4, 6)):
        comps = signature_components(sig)
        rate = 0.0 if sig.rate_pps == 0 else float(sig.rate_pps * _packet_bytes(sig))
        out += [FlowRoute(version, dst=host, components=comps, rate=rate) for host in _hosts(protected, version)]
    return out


def signature_components(sig: Signature) -> tuple:
    """A signature's FlowSpec components (everything but the destination),
    sorted by type as FlowRoute keeps them."""
    comps = {PROTO: (Term(EQ, sig.proto),)}
    icmp = sig.proto in ICMP_PROTOS
    if sig.dport is not None:  # for icmp: the code
        comps[ICMP_CODE if icmp else DPORT] = (Term(EQ, sig.dport),)
    if sig.sport is not None:  # for icmp: the type
        comps[ICMP_TYPE if icmp else SPORT] = (Term(EQ, sig.sport),)
    if sig.len_min is not None:
        lo, hi = sig.len_min - ETH_HLEN, sig.len_max - 1 - ETH_HLEN  # IP bytes, inclusive
        if hi < 0:
            raise UsageError(f"{sig.key}: no IP packet is {sig.len_max - 1} bytes long with its Ethernet header")
        lo = max(lo, 0)
        comps[PKT_LEN] = (Term(EQ, lo),) if lo == hi else (Term(GT | EQ, lo), Term(AND | LT | EQ, hi))
    if sig.tcp_flags is not None:  # exactly these of the six: the set ones set, the others clear
        terms = []
        if sig.tcp_flags:
            terms.append(Term(MATCH, sig.tcp_flags))
        clear = _TCP_FLAG_BITS & ~sig.tcp_flags
        if clear:
            terms.append(Term((AND if terms else 0) | NOT, clear))
        comps[TCP_FLAGS] = tuple(terms)
    if sig.fragment:  # a non-first fragment: is a fragment, and not the first
        comps[FRAGMENT] = (Term(MATCH, IS_FRAGMENT), Term(AND | NOT, FIRST_FRAGMENT))
    return tuple(sorted(comps.items()))


def _packet_bytes(sig: Signature) -> int:
    return RATE_PACKET_BYTES if sig.len_max is None else max(sig.len_max - 1 - ETH_HLEN, 1)


def _hosts(protected: Sequence[Prefix], version: int) -> list:
    return [p for p in protected if p.version == version]


@dataclass(frozen=True)
class Export:
    """What the lists give to announce: the routes, by NLRI, and the
    decisions that give none (with why)."""

    routes: dict  # {nlri: FlowRoute}
    skipped: tuple  # ((decision text, reason), ...)


def export_routes(blocks: Iterable[Prefix], sigs: Iterable[Signature], protected: Sequence[Prefix],
                  export_blocks: bool = True, export_signatures: bool = True) -> Export:
    """Every route the decisions give. A decision with no protected address
    of its family is skipped with a reason; two decisions giving the same
    NLRI give one route (the first one's action)."""
    routes: dict = {}
    skipped = []
    if export_blocks:
        for prefix in blocks:
            got = block_routes(prefix, protected)
            if not got:
                skipped.append((f"block {prefix}", f"no protected IPv{prefix.version} address to announce it for"))
            for r in got:
                routes.setdefault(r.nlri, r)
    if export_signatures:
        for sig in sigs:
            try:
                got = signature_routes(sig, protected)
            except UsageError as e:
                skipped.append((f"sig {sig.describe()}", str(e)))
                continue
            if not got:
                skipped.append((f"sig {sig.describe()}", "no protected address of its protocol's family"))
            for r in got:
                routes.setdefault(r.nlri, r)
    return Export(routes, tuple(skipped))


# --- import --------------------------------------------------------------------------

@dataclass(frozen=True)
class Accepted:
    """A route seawall can enforce: exactly one of `block` (a source prefix
    for the blocklist) and `signature` (a rule for the signature table)."""

    route: FlowRoute
    block: Optional[Prefix] = None
    signature: Optional[Signature] = None

    @property
    def decision(self) -> str:
        return f"block {self.block}" if self.block is not None else f"sig {self.signature.describe()}"


@dataclass(frozen=True)
class Refused:
    route: FlowRoute
    reason: str


def judge(route: FlowRoute, ours: Sequence[Prefix]) -> Union[Accepted, Refused]:
    """One route, whole: Accepted as a block or a signature, or Refused
    with the reason. `ours`: this host's addresses and configured prefixes;
    the route's destination must lie within one of them."""
    try:
        return _judge(route, ours)
    except _Refuse as e:
        return Refused(route, str(e))


class _Refuse(Exception):
    pass


def _judge(route: FlowRoute, ours: Sequence[Prefix]) -> Accepted:
    if route.dst is None:
        raise _Refuse("no destination: only rules for this host's addresses are taken")
    if route.dst_offset or route.src_offset:
        raise _Refuse("an IPv6 prefix offset cannot be enforced")
    if not any(o.contains(route.dst) for o in ours):
        raise _Refuse(f"destination {route.dst} is not one of this host's addresses or prefixes")
    if route.other_actions:
        raise _Refuse(f"action {', '.join(route.other_actions)} cannot be enforced")
    if route.rate is None:
        raise _Refuse("no discard or traffic-rate action")
    for t, _ in route.components:
        if t not in (PROTO, DPORT, SPORT, ICMP_TYPE, ICMP_CODE, PKT_LEN, TCP_FLAGS, FRAGMENT):
            raise _Refuse(f"component {COMPONENT_NAMES.get(t, f'type {t}')} cannot be enforced")
    if route.src is not None:
        if route.components:
            names = ", ".join(COMPONENT_NAMES[t] for t, _ in route.components)
            raise _Refuse(f"a source with {names}: the blocklist matches a source alone")
        if route.rate:
            raise _Refuse("a traffic-rate on a source: the blocklist only drops")
        if route.src.prefixlen < _MIN_PREFIXLEN[route.version]:
            raise _Refuse(f"source {route.src} is wider than /{_MIN_PREFIXLEN[route.version]}")
        return Accepted(route, block=route.src)
    return Accepted(route, signature=_signature(route))


def _signature(route: FlowRoute) -> Signature:
    proto = _single(route, PROTO)
    if proto is None:
        raise _Refuse("neither a source nor a protocol: it would drop all traffic to the destination")
    if route.version == 4 and proto == 58 or route.version == 6 and proto == 1:
        raise _Refuse(f"protocol {proto} does not live in IPv{route.version}")
    icmp = proto in ICMP_PROTOS
    for t, where in ((ICMP_TYPE, "icmp"), (ICMP_CODE, "icmp")) if not icmp else ((DPORT, "tcp/udp"), (SPORT, "tcp/udp")):
        if route.component(t) is not None:
            raise _Refuse(f"{COMPONENT_NAMES[t]} with protocol {proto}: it needs {where}")
    kw: dict = {"proto": proto}
    kw["dport"] = _single(route, ICMP_CODE if icmp else DPORT)
    kw["sport"] = _single(route, ICMP_TYPE if icmp else SPORT)
    ip_len = _length(route.component(PKT_LEN))
    if ip_len is not None:
        kw["len_min"], kw["len_max"] = ip_len[0] + ETH_HLEN, ip_len[1] + 1 + ETH_HLEN
    flags = route.component(TCP_FLAGS)
    if flags is not None:
        kw["tcp_flags"] = _exact_flags(flags)
    frag = route.component(FRAGMENT)
    if frag is not None:
        if sorted(frag) != sorted((Term(MATCH, IS_FRAGMENT), Term(AND | NOT, FIRST_FRAGMENT))):
            raise _Refuse("a fragment match other than 'a fragment, not the first' cannot be enforced")
        kw["fragment"] = True
    if route.rate:
        per_packet = RATE_PACKET_BYTES if ip_len is None else max(ip_len[1], 1)
        kw["rate_pps"] = max(1, round(route.rate / per_packet))
    try:
        return Signature(**kw)
    except UsageError as e:
        raise _Refuse(str(e)) from None


def _single(route: FlowRoute, ctype: int) -> Optional[int]:
    """The one value a component must equal (None when absent)."""
    terms = route.component(ctype)
    if terms is None:
        return None
    if len(terms) != 1 or terms[0].op & ~AND != EQ:
        raise _Refuse(f"{COMPONENT_NAMES[ctype]} other than a single '==' value cannot be enforced")
    return terms[0].value


def _length(terms: Optional[tuple]) -> Optional[tuple]:
    """An IP packet-length component as an inclusive (lo, hi): '==v', or a
    range of one lower and one upper bound ANDed."""
    if terms is None:
        return None
    ops = [t.op & ~AND for t in terms]
    if len(terms) == 1 and ops[0] == EQ:
        return terms[0].value, terms[0].value
    if len(terms) == 2 and terms[1].op & AND:
        lo = hi = None
        for op, t in zip(ops, terms):
            if op in (GT, GT | EQ) and lo is None:
                lo = t.value + (op == GT)
            elif op in (LT, LT | EQ) and hi is None:
                hi = t.value - (op == LT)
        if lo is not None and hi is not None and lo <= hi:
            return lo, hi
    raise _Refuse("a packet-length other than one value or one range cannot be enforced")


def _exact_flags(terms: tuple) -> int:
    """TCP flags the datapath compares exactly: ANDed terms that together
    say of each of the six flags whether it is set or clear."""
    must_set = must_clear = 0
    for i, t in enumerate(terms):
        if i and not t.op & AND:
            raise _Refuse("tcp-flags with alternatives cannot be enforced")
        op = t.op & ~AND
        if op == MATCH:
            must_set |= t.value
        elif op == NOT:
            must_clear |= t.value
        else:
            raise _Refuse("tcp-flags other than set and clear flags cannot be enforced")
    if must_set & must_clear or (must_set | must_clear) & ~_TCP_FLAG_BITS or \
            (must_set | must_clear) != _TCP_FLAG_BITS:
        raise _Refuse("tcp-flags must say of each of FIN SYN RST PSH ACK URG (and no other) whether it is set")
    return must_set


@dataclass(frozen=True)
class Import:
    """A set of routes judged: what to enforce, and what was refused."""

    accepted: tuple  # (Accepted, ...), at most the cap, one per decision
    refused: tuple  # (Refused, ...)


def plan_import(routes: Iterable[FlowRoute], ours: Sequence[Prefix], cap: int) -> Import:
    """Judge every route; keep at most `cap` accepted ones. Which ones is
    stable (in the routes' order: their NLRI, sorted), so a route taken
    stays taken while the set changes beyond the cap; the rest are refused
    as over the cap. Two routes giving the same decision give it once."""
    accepted, refused, seen = [], [], set()
    for route in sorted(routes, key=lambda r: (r.version, r.match_text)):
        verdict = judge(route, ours)
        if isinstance(verdict, Refused):
            refused.append(verdict)
            continue
        what = verdict.block or verdict.signature.matcher()
        if what in seen:
            continue
        if len(accepted) >= cap:
            refused.append(Refused(route, f"over the cap of {cap} imported rules"))
            continue
        seen.add(what)
        accepted.append(verdict)
    return Import(tuple(accepted), tuple(refused))
