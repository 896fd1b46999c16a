"""A FlowSpec route as a value, and GoBGP's two forms of it. Pure.

A route is its NLRI (destination and source prefixes, then the other
components, each a list of operator/value terms, RFC 8955 section 4.2) and
its action (discard, or a traffic-rate in bytes per second; an extended
community, RFC 8955 section 7). Two forms on GoBGP's side:

- `FlowRoute.gobgp_words()`: the words after `gobgp global rib -a FAMILY
  add|del`, e.g. ['match', 'destination', '198.18.0.1/32', 'source',
  '198.18.5.0/24', 'then', 'discard'];
- `decode_rib(obj)`: the routes in the JSON of `gobgp global rib -a FAMILY
  -j` (or `neighbor ADDR adj-in|adj-out -j`), which gives each component's
  raw type, operator byte and value.

Only what a route says is kept here; whether seawall can enforce it is
translate.py's question.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from seawall.control.addr import Prefix
from seawall.control.errors import UsageError

# Component types (RFC 8955 section 4.2.2; RFC 8956 section 3 for IPv6,
# where 3 is the upper-layer protocol and 13 the flow label).
DST, SRC, PROTO, PORT, DPORT, SPORT, ICMP_TYPE, ICMP_CODE, TCP_FLAGS, PKT_LEN, DSCP, FRAGMENT, FLOW_LABEL = range(1, 14)
COMPONENT_NAMES = {
    DST: "destination", SRC: "source", PROTO: "protocol", PORT: "port", DPORT: "destination-port",
    SPORT: "source-port", ICMP_TYPE: "icmp-type", ICMP_CODE: "icmp-code", TCP_FLAGS: "tcp-flags",
    PKT_LEN: "packet-length", DSCP: "dscp", FRAGMENT: "fragment", FLOW_LABEL: "label",
}
BITMASK_TYPES = (TCP_FLAGS, FRAGMENT)

# Operator byte bits (RFC 8955 section 4.2.1): end-of-list 0x80 and the value
# length 0x30 are encoding only and dropped on decoding; what a Term keeps:
AND = 0x40
LT, GT, EQ = 0x04, 0x02, 0x01  # numeric operators
NOT, MATCH = 0x02, 0x01  # bitmask operators
_OP_KEEP = 0x47

# fragment bits (RFC 8955 section 4.2.2.12)
DONT_FRAGMENT, IS_FRAGMENT, FIRST_FRAGMENT, LAST_FRAGMENT = 1, 2, 4, 8
_FRAGMENT_NAMES = {DONT_FRAGMENT: "dont-fragment", IS_FRAGMENT: "is-fragment",
                   FIRST_FRAGMENT: "first-fragment", LAST_FRAGMENT: "last-fragment"}
# TCP flag letters, low bit first, as GoBGP spells them
_TCP_LETTERS = "FSRPAUEC"
_NUMERIC_OPS = {EQ: "==", GT: ">", GT | EQ: ">=", LT: "<", LT | EQ: "<=", LT | GT: "!="}

# Extended communities of the actions (RFC 8955 section 7): type 0x80, subtype:
RATE_BYTES, ACTION, REDIRECT, MARK, RATE_PACKETS = 0x06, 0x07, 0x08, 0x09, 0x0C
_ACTION_NAMES = {ACTION: "traffic-action", REDIRECT: "redirect", MARK: "traffic-marking",
                 RATE_PACKETS: "traffic-rate-packets"}


@dataclass(frozen=True, order=True)
class Term:
    """One operator/value pair of a component. `op` is AND plus LT/GT/EQ
    (numeric) or NOT/MATCH (bitmask); a term without AND starts a new
    alternative (the terms of a component are ORs of ANDs)."""

    op: int
    value: int


@dataclass(frozen=True, order=True)
class FlowRoute:
    """One FlowSpec route: what it matches (its NLRI) and what it does.

    `components` holds every component but the two prefixes, as
    ((type, (Term, ...)), ...) sorted by type. `rate` is the traffic-rate in
    bytes per second: 0.0 is discard. `other_actions` names any action
    besides a traffic-rate (redirect, marking, ...); `dst_offset` and
    `src_offset` are IPv6's prefix offsets (RFC 8956), 0 when absent."""

    version: int  # 4 or 6: the address family
    dst: Optional[Prefix] = None
    src: Optional[Prefix] = None
    components: tuple = ()
    rate: Optional[float] = 0.0  # None: no traffic-rate action at all
    other_actions: tuple = ()
    dst_offset: int = 0
    src_offset: int = 0
    peer: str = field(default="", compare=False)  # where it was learnt ("" for our own)

    def __post_init__(self):
        if self.version not in (4, 6):
            raise UsageError(f"address family must be 4 or 6, got {self.version!r}")
        for p in (self.dst, self.src):
            if p is not None and p.version != self.version:
                raise UsageError(f"{p} is not an IPv{self.version} prefix")
        types = [t for t, _ in self.components]
        if types != sorted(set(types)) or any(t in (DST, SRC) for t in types):
            raise UsageError("components must be sorted by type, each once, prefixes apart")

    @property
    def family(self) -> str:
        """GoBGP's name of the route's address family."""
        return f"ipv{self.version}-flowspec"

    @property
    def nlri(self) -> tuple:
        """What identifies the route (two routes with the same NLRI are one
        route with a new action)."""
        return (self.version, self.dst, self.dst_offset, self.src, self.src_offset, self.components)

    @property
    def action(self) -> tuple:
        """What the route does: a route announced again when it changes."""
        return (self.rate, self.other_actions)

    def component(self, ctype: int) -> Optional[tuple]:
        for t, terms in self.components:
            if t == ctype:
                return terms
        return None

    @property
    def match_text(self) -> str:
        """What the route matches, e.g. '[destination 198.18.0.1/32][source
        198.18.5.0/24]': the NLRI as text, which also orders routes."""
        parts = []
        if self.dst is not None:
            parts.append(f"[destination {self.dst}{f'/{self.dst_offset}' if self.dst_offset else ''}]")
        if self.src is not None:
            parts.append(f"[source {self.src}{f'/{self.src_offset}' if self.src_offset else ''}]")
        for t, terms in self.components:
            parts.append(f"[{COMPONENT_NAMES.get(t, f'type {t}')} {' '.join(_term_groups(t, terms))}]")
        return "".join(parts)

    def describe(self) -> str:
        """One line: what it matches and does, e.g. '[destination
        198.18.0.1/32][source 198.18.5.0/24] discard'."""
        acts = list(self.other_actions)
        if self.rate is not None:
            acts.insert(0, "discard" if self.rate == 0 else f"rate-limit {_number(self.rate)}")
        return f"{self.match_text} {' '.join(acts) or 'no action'}"

    def gobgp_words(self) -> list:
        """The words after `gobgp global rib -a FAMILY add` (or `del`)."""
        if self.other_actions or self.rate is None:
            raise UsageError(f"seawall announces discard or rate-limit only, not {self.describe()}")
        if self.dst_offset or self.src_offset:
            raise UsageError("seawall announces no IPv6 prefix offsets")
        words = ["match"]
        if self.dst is not None:
            words += ["destination", str(self.dst)]
        if self.src is not None:
            words += ["source", str(self.src)]
        for t, terms in self.components:
            if t not in COMPONENT_NAMES or t in (DST, SRC):
                raise UsageError(f"no GoBGP word for component type {t}")
            words.append(COMPONENT_NAMES[t])
            words += _term_groups(t, terms)
        if len(words) == 1:
            raise UsageError("a route must match something")
        words += ["then", "discard"] if self.rate == 0 else ["then", "rate-limit", _number(self.rate)]
        return words

    def to_json(self) -> dict:
        return {"family": self.family, "route": self.describe(), "peer": self.peer or None}


def _number(x: float) -> str:
    """A rate in plain digits (GoBGP reads no exponent): 1485000, 12.5."""
    return f"{x:.3f}".rstrip("0").rstrip(".")


def _term_groups(ctype: int, terms: tuple) -> list:
    """Terms as GoBGP's arguments: one per alternative, its ANDed terms
    joined by '&' ('>=1186&<=1485', '=S&!FRPAU')."""
    groups: list = []
    for term in terms:
        text = _term_text(ctype, term)
        if groups and term.op & AND:
            groups[-1] += "&" + text
        else:
            groups.append(text)
    return groups


def _term_text(ctype: int, term: Term) -> str:
    op = term.op & ~AND
    if ctype in BITMASK_TYPES:
        prefix = {MATCH: "=", NOT: "!", NOT | MATCH: "!="}.get(op, "")
        if ctype == TCP_FLAGS:
            value = "".join(c for i, c in enumerate(_TCP_LETTERS) if term.value >> i & 1)
        else:
            names = [n for bit, n in _FRAGMENT_NAMES.items() if term.value & bit]
            if len(names) != 1 or term.value & ~0x0F:
                raise UsageError(f"fragment value {term.value:#x} is not one flag")
            value = names[0]
        if not value:
            raise UsageError(f"{COMPONENT_NAMES[ctype]} term with no bits")
        return prefix + value
    if op not in _NUMERIC_OPS:
        raise UsageError(f"numeric operator {term.op:#x} is always true or always false")
    return _NUMERIC_OPS[op] + str(term.value)


# --- GoBGP's JSON --------------------------------------------------------------------

def decode_rib(obj, version: int, peer_of=None) -> list:
    """The FlowRoutes in GoBGP's JSON of a flowspec table: `global rib -j`
    prints {nlri text: [path, ...]}, `neighbor ... adj-in -j` a list of
    paths or the same mapping. Every path becomes a route (best or not);
    `peer_of(path)` names where it came from. A path this cannot read is a
    UsageError naming it."""
    if isinstance(obj, dict):
        paths = [p for ps in obj.values() for p in (ps if isinstance(ps, list) else [ps])]
    elif isinstance(obj, list):
        paths = obj
    elif obj is None:
        paths = []
    else:
        raise UsageError(f"unexpected GoBGP JSON: {type(obj).__name__}")
    return [decode_path(p, version, peer_of(p) if peer_of else "") for p in paths]


def decode_path(path: dict, version: int, peer: str = "") -> FlowRoute:
    """One GoBGP path (its "nlri" and "attrs") as a FlowRoute."""
    try:
        comps = path["nlri"]["value"]
        kw: dict = {"version": version, "peer": peer}
        others = {}
        for c in comps:
            t = int(c["type"])
            if t in (DST, SRC):
                pfx = Prefix.parse(c["value"]["prefix"])
                off = int(c.get("offset") or 0)
                kw.update({"dst": pfx, "dst_offset": off} if t == DST else {"src": pfx, "src_offset": off})
            else:
                others[t] = tuple(Term(int(x["op"]) & _OP_KEEP, int(x["value"])) for x in c["value"])
        kw["components"] = tuple(sorted(others.items()))
        rate, acts = None, []
        for attr in path.get("attrs") or []:
            if attr.get("type") != 16:  # extended communities
                continue
            for ec in attr.get("value") or []:
                if ec.get("type") != 0x80:
                    continue  # not a flowspec action (route targets and the like)
                sub = ec.get("subtype")
                if sub == RATE_BYTES:
                    rate = float(ec.get("rate", 0.0))
                else:
                    acts.append(_ACTION_NAMES.get(sub, f"action 0x80{sub:02x}" if isinstance(sub, int) else "action ?"))
        kw["rate"], kw["other_actions"] = rate, tuple(sorted(acts))
        return FlowRoute(**kw)
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise UsageError(f"unreadable GoBGP flowspec path ({type(e).__name__}: {e})") from None
