"""SYN protection's pure part: the nftables table that finishes the
handshakes, the window scale it and the datapath advertise, the state
file's format, and the judgements of the requirement checks. No I/O.

The table (one, owned by seawall; the protected ports are elements of its
set, so protecting a port adds an element, not a rule):

    pre: a pure SYN to a protected port is not tracked, so that SYNPROXY
         sees it as UNTRACKED (the datapath answers most of them itself;
         those it passes, when its entry is expired or in monitor mode,
         SYNPROXY answers with its own cookie);
    in:  an UNTRACKED SYN or an INVALID segment (with tcp_loose = 0, the
         ACK that carries a cookie is INVALID to conntrack) goes to
         SYNPROXY: a valid cookie opens the connection with the listening
         socket, anything else is dropped; the INVALID rest is dropped.
         At priority filter - 10, before a host firewall's input chain,
         whose `ct state invalid drop` would otherwise take the cookie ACKs
         whenever it was loaded after this table (at one priority the
         newer hook runs first).

`synproxy` takes one MSS, so each family has its rule (the MSS of a
1500-byte MTU: 1460 over IPv4, 1440 over IPv6). Its window scale must be
the one the server's own stack picks (SYNPROXY does not rewrite windows):
window_scale(). The datapath's entry for the port carries the same value.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, replace
from typing import Iterable, Optional

from seawall.control.errors import UsageError
from seawall.control.lists.journal import from_iso, iso

FAMILY = "inet"
TABLE = "seawall_synproxy"
SET = "ports"
#: TCP_MAX_WSCALE (RFC 7323)
MAX_WSCALE = 14
#: the first kernel with bpf_tcp_raw_{gen,check}_syncookie_ipv{4,6}
MIN_KERNEL = (6, 0)
SOURCES = ("manual", "auto")  # an operator's, the daemon's
#: the state file's format
VERSION = 1


def parse_port(text) -> int:
    """A TCP port (1 to 65535) from its text; UsageError for anything else
    (0, 65536, a service name)."""
    s = str(text).strip()
    if not s.isdigit() or len(s) > 5 or not 0 < int(s) < 65536:
        raise UsageError(f"{text!r} is not a TCP port (1 to 65535)")
    return int(s)


def window_scale(tcp_rmem_max: int, rmem_max: int) -> int:
    """The window scale Linux offers on a connection it accepts
    (tcp_select_initial_window): the shift that fits the largest receive
    buffer a socket may grow to, max(net.ipv4.tcp_rmem[2],
    net.core.rmem_max), into 16 bits: clamp(ilog2(space) - 15, 0, 14).
    (A listener that clamps its window with TCP_WINDOW_CLAMP picks less.)"""
    space = max(int(tcp_rmem_max), int(rmem_max), 1)
    return min(max(space.bit_length() - 1 - 15, 0), MAX_WSCALE)


def kernel_ok(release: str) -> bool:
    """Is the kernel release (uname -r: '6.18.44-fc-v509') at least
    MIN_KERNEL? An unreadable one is not."""
    m = re.match(r"(\d+)\.(\d+)", release)
    return bool(m) and (int(m[1]), int(m[2])) >= MIN_KERNEL


def render(wscale: int, mss4: int, mss6: int, ports: Iterable[int] = (), replace_table: bool = False) -> str:
    """The nft script that installs the table (module docstring) with
    ports in its set. replace_table: one that also deletes a table there
    (a different window scale), in the same transaction."""
    if not 0 <= wscale <= MAX_WSCALE:
        raise ValueError(f"window scale {wscale} is not 0 to {MAX_WSCALE}")
    opts = f"wscale {wscale} timestamp sack-perm"
    elements = sorted(set(ports))
    lines = []
    if replace_table:  # `add` first: a delete of a table that is not there fails the transaction
        lines += [f"add table {FAMILY} {TABLE}", f"delete table {FAMILY} {TABLE}"]
    lines += [
        f"table {FAMILY} {TABLE} {{",
        f"  set {SET} {{",
        "    type inet_service",
    ]
    if elements:
        lines.append(f"    elements = {{ {', '.join(map(str, elements))} }}")
    lines += [
        "  }",
        "  chain pre {",
        "    type filter hook prerouting priority raw; policy accept;",
        # a pure SYN: `tcp flags syn` alone would match SYN-ACKs and SYN-RSTs too
        f"    tcp dport @{SET} tcp flags & (fin | syn | rst | ack) == syn notrack",
        "  }",
        "  chain in {",
        "    type filter hook input priority filter - 10; policy accept;",
        f"    meta nfproto ipv4 tcp dport @{SET} ct state invalid,untracked synproxy mss {mss4} {opts}",
        f"    meta nfproto ipv6 tcp dport @{SET} ct state invalid,untracked synproxy mss {mss6} {opts}",
        f"    tcp dport @{SET} ct state invalid drop",
        "  }",
        "}",
    ]
    return "\n".join(lines) + "\n"


def element(op: str, ports: Iterable[int]) -> str:
    """The nft command adding (op "add") or deleting ("delete") ports of the set."""
    return f"{op} element {FAMILY} {TABLE} {SET} {{ {', '.join(map(str, sorted(ports)))} }}\n"


DELETE_TABLE = f"delete table {FAMILY} {TABLE}\n"
#: the rules render() writes (a table holding others was changed by hand: it is put back)
RULES = 4


@dataclass(frozen=True)
class Table:
    """The table as the kernel holds it (from `nft -j list table`)."""

    ports: frozenset
    wscales: frozenset  # of its synproxy statements: one value when it is ours
    rules: int


def parse_table(text: str) -> Table:
    """Table from the JSON that `nft -j list table inet seawall_synproxy`
    prints. ValueError when it is not such JSON."""
    doc = json.loads(text)
    ports, wscales, rules = set(), set(), 0
    for obj in doc.get("nftables", []):
        s = obj.get("set")
        if s and s.get("name") == SET:
            for e in s.get("elem", []):
                if isinstance(e, int):
                    ports.add(e)
                elif isinstance(e, dict) and "range" in e:  # not ours, but say what it holds
                    lo, hi = e["range"]
                    ports.update(range(int(lo), int(hi) + 1))
        r = obj.get("rule")
        if r:
            rules += 1
            for expr in r.get("expr", []):
                if isinstance(expr, dict) and "synproxy" in expr:
                    wscales.add(int(expr["synproxy"].get("wscale", 0)))
    return Table(frozenset(ports), frozenset(wscales), rules)


# --- the state file ------------------------------------------------------------------

@dataclass(frozen=True)
class Protected:
    """A port under SYN protection, as seawall keeps it."""

    port: int
    expires_at: Optional[float] = None  # wall clock, epoch seconds; None: until removed
    reason: str = ""
    source: str = "manual"  # manual | auto
    added_at: Optional[float] = None

    def live(self, now: float) -> bool:
        return self.expires_at is None or self.expires_at > now

    def to_json(self, now: float) -> dict:
        return {
            "port": self.port,
            "source": self.source,
            "reason": self.reason,
            "added_at": iso(self.added_at),
            "expires_at": iso(self.expires_at),
            "ttl_seconds": None if self.expires_at is None else max(0, int(self.expires_at - now)),
        }


@dataclass(frozen=True)
class State:
    """What the state file holds: the protected ports, the value of
    nf_conntrack_tcp_loose before seawall set it to 0 (None: seawall has
    not changed it), and the window scale of the table in force."""

    ports: dict = field(default_factory=dict)  # port -> Protected
    loose_saved: Optional[int] = None
    wscale: Optional[int] = None

    def live(self, now: float) -> dict:
        return {p: e for p, e in self.ports.items() if e.live(now)}

    def next_expiry(self) -> Optional[float]:
        """The earliest wall-clock expiry of a port (None: none expires)."""
        return min((e.expires_at for e in self.ports.values() if e.expires_at is not None), default=None)

    def with_port(self, e: Protected) -> "State":
        return replace(self, ports={**self.ports, e.port: e})

    def without(self, ports: Iterable[int]) -> "State":
        gone = set(ports)
        return replace(self, ports={p: e for p, e in self.ports.items() if p not in gone})


def encode_state(st: State) -> str:
    ports = [{"port": e.port, "expires_at": iso(e.expires_at), "reason": e.reason, "source": e.source,
              "added_at": iso(e.added_at)} for _, e in sorted(st.ports.items())]
    return json.dumps({"v": VERSION, "ports": ports, "loose_saved": st.loose_saved, "wscale": st.wscale},
                      indent=1, sort_keys=True) + "\n"


def decode_state(text: str) -> State:
    """State from the file's text. ValueError (with what is wrong) when it
    cannot be read: never a guess at which ports were protected."""
    try:
        doc = json.loads(text)
        if not isinstance(doc, dict) or doc.get("v") != VERSION:
            raise ValueError("unknown format version")
        ports = {}
        for d in doc["ports"]:
            port = parse_port(d["port"])
            source = str(d.get("source", "manual"))
            if source not in SOURCES:
                raise ValueError(f"unknown source {source!r}")
            ports[port] = Protected(port, from_iso(d.get("expires_at")), str(d.get("reason", "")), source,
                                    from_iso(d.get("added_at")))
        loose = doc.get("loose_saved")
        wscale = doc.get("wscale")
        if loose is not None and not isinstance(loose, int) or wscale is not None and not isinstance(wscale, int):
            raise ValueError("loose_saved and wscale must be whole numbers")
        return State(ports, loose, wscale)
    except (KeyError, TypeError, UsageError) as e:
        raise ValueError(str(e)) from None
