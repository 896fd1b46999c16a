"""What the host serves, from its own sockets: a frozen snapshot. Pure.

In: a `SocketTable` (numpy arrays, one row per socket, as sock_diag
reports them; control/datapath/sockets.py reads it). Out: a `Serving`
that answers, fast and vectorised, the questions detection asks of a
flood without any baseline:

- Is anything listening on this TCP port, or bound to this UDP port?
  (`tcp_served`, `udp_served`, `unserved`, and 65536-long masks for the
  per-port histograms: `served_mask`.) Traffic to a port nobody serves is
  an attack candidate that costs no customer.
- Is this source a customer: the peer of a TCP connection whose handshake
  completed (`customers(Sources)`)? A completed handshake cannot be spoofed.
- Is this UDP packet an answer that nobody asked for? A reflection answer
  comes from a well-known service port (REFLECTION_PORTS) to a port where
  no socket asked a question (`reflection_unasked`, `unasked_mask`).

Addresses are normalised on the way in: an IPv4-mapped IPv6 address
(::ffff:198.18.0.10, the peer of a dual-stack socket) is the IPv4 address
the XDP program sees.
"""

from __future__ import annotations

import ipaddress
import time
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from seawall.control.addr import U64, Sources

PORTS = 65536  # the length of a per-port mask (and of the engine's per-port histograms)

# TCP states as the kernel numbers them (include/net/tcp_states.h); a UDP
# socket reports ESTABLISHED when connected and CLOSE when not.
ESTABLISHED, SYN_SENT, SYN_RECV, FIN_WAIT1, FIN_WAIT2, TIME_WAIT, CLOSE, CLOSE_WAIT, LAST_ACK, LISTEN, \
    CLOSING = range(1, 12)
# States whose handshake completed: the peer answered our SYN-ACK (or we
# answered its), so its address is not spoofed. TIME_WAIT counts: a short
# HTTP/1.0 customer spends most of its life there on the server's side.
HANDSHAKEN = (ESTABLISHED, FIN_WAIT1, FIN_WAIT2, TIME_WAIT, CLOSE_WAIT, LAST_ACK, CLOSING)
# A TCP local port that receives traffic legitimately: a listener, or the
# port of one of our own connections (a client's ephemeral port included).
TCP_OPEN = (LISTEN, SYN_SENT) + HANDSHAKEN

# UDP source ports of the services abused for reflection and
# amplification: an answer from one of these ports to a port where no
# socket asked is not wanted by anyone here. From US-CERT TA14-017A
# ("UDP-Based Amplification Attacks") and the reflectors seen since.
REFLECTION_PORTS = frozenset({
    7,  # echo
    17,  # QOTD
    19,  # chargen
    53,  # DNS
    69,  # TFTP
    111,  # portmapper (rpcbind)
    123,  # NTP (monlist)
    137,  # NetBIOS name service
    161,  # SNMP
    389,  # CLDAP
    427,  # SLP
    520,  # RIPv1
    623,  # IPMI (ASF-RMCP)
    1434,  # MS-SQL browser
    1900,  # SSDP
    3283,  # Apple Remote Desktop
    3478,  # STUN
    3702,  # WS-Discovery
    5353,  # mDNS
    5683,  # CoAP
    10001,  # Ubiquiti discovery
    10074,  # Mitel MiCollab
    11211,  # memcached
    32414,  # Plex media server discovery
    33848,  # Jenkins auto-discovery
    37810,  # DVR DHCPDiscover
})
REFLECTION_MASK = np.zeros(PORTS, bool)
REFLECTION_MASK[sorted(REFLECTION_PORTS)] = True

EPHEMERAL = (32768, 60999)  # Linux's default net.ipv4.ip_local_port_range
_PROTO = {"tcp": "tcp", "udp": "udp", 6: "tcp", 17: "udp"}
_MAPPED = bytes(10) + b"\xff\xff"  # ::ffff:0:0/96, IPv4-mapped IPv6
_LOOPBACK6 = bytes(15) + b"\x01"


@dataclass
class SocketTable:
    """Sockets as sock_diag lists them, one row each (numpy arrays)."""

    proto: np.ndarray  # uint8: 6 (TCP) or 17 (UDP)
    family: np.ndarray  # uint8: 4 or 6
    state: np.ndarray  # uint8: the kernel's TCP state numbers (above)
    lport: np.ndarray  # uint16: local port, host order
    rport: np.ndarray  # uint16: remote port (0 when none)
    laddr: np.ndarray  # (n, 16) uint8: local address, network order (IPv4 in the first 4 bytes)
    raddr: np.ndarray  # (n, 16) uint8: remote address, same form
    v6only: np.ndarray  # bool: an IPv6 socket that takes no IPv4 (IPV6_V6ONLY)

    def __len__(self) -> int:
        return len(self.proto)

    @classmethod
    def concat(cls, parts: list) -> "SocketTable":
        names = ("proto", "family", "state", "lport", "rport", "laddr", "raddr", "v6only")
        if not parts:
            z = np.zeros(0, np.uint8)
            return cls(z, z, z, np.zeros(0, np.uint16), np.zeros(0, np.uint16),
                       np.zeros((0, 16), np.uint8), np.zeros((0, 16), np.uint8), np.zeros(0, bool))
        return cls(*(np.concatenate([getattr(p, n) for p in parts]) for n in names))

    @classmethod
    def from_rows(cls, rows: list) -> "SocketTable":
        """From (proto, state, local 'addr', lport, remote 'addr', rport[,
        v6only]) tuples, the family read from the local address: the tests'
        way of writing a table."""
        out = []
        for r in rows:
            proto, state, la, lp, ra, rp = r[:6]
            v6only = bool(r[6]) if len(r) > 6 else False
            l, r_ = ipaddress.ip_address(la), ipaddress.ip_address(ra)
            out.append(cls(np.array([proto], np.uint8), np.array([l.version], np.uint8),
                           np.array([state], np.uint8), np.array([lp], np.uint16), np.array([rp], np.uint16),
                           np.frombuffer(l.packed.ljust(16, b"\0"), np.uint8)[None, :],
                           np.frombuffer(r_.packed.ljust(16, b"\0"), np.uint8)[None, :],
                           np.array([v6only])))
        return cls.concat(out)


@dataclass(frozen=True, order=True)
class Endpoint:
    """A socket that serves: a TCP listener or a bound UDP socket."""

    proto: str  # "tcp" | "udp"
    version: int  # 4 | 6
    address: str  # "0.0.0.0" and "::" are the wildcards
    port: int
    v6only: bool = False  # IPv6 only; False on "::" means it takes IPv4 too (dual stack)

    @property
    def wildcard(self) -> bool:
        return self.address in ("0.0.0.0", "::")

    def covers(self, address: str) -> bool:
        """Would a packet to `address` (at this port) reach this socket?"""
        ip = _plain(ipaddress.ip_address(address))
        if self.wildcard:
            return ip.version == self.version or (self.version == 6 and ip.version == 4 and not self.v6only)
        return ip == ipaddress.ip_address(self.address)

    def to_json(self, ephemeral=EPHEMERAL) -> dict:
        out = {"address": self.address, "port": self.port, "family": f"ipv{self.version}"}
        if self.version == 6:
            out["v6only"] = self.v6only
        if self.proto == "udp":
            out["asked"] = ephemeral[0] <= self.port <= ephemeral[1]
        return out


@dataclass(frozen=True, order=True)
class Asked:
    """A connected UDP socket: it receives only from remote:remote_port."""

    port: int  # local port
    remote: str
    remote_port: int

    def to_json(self) -> dict:
        return {"port": self.port, "remote": self.remote, "remote_port": self.remote_port}


@dataclass(frozen=True, eq=False)
class Serving:
    """The host's sockets at `taken_at`: what it serves, who its customers
    are, which UDP sockets asked. Build it with `Serving.from_table`."""

    tcp_listening: tuple  # Endpoints
    udp_bound: tuple  # Endpoints of unconnected UDP sockets
    udp_connected: tuple  # Askeds
    peers: Sources  # distinct peers of handshaken TCP connections, sorted by key64
    established: int  # TCP connections in ESTABLISHED (to a peer off the loopback)
    connections: int  # TCP connections whose handshake completed (HANDSHAKEN), same peers
    ephemeral: tuple = EPHEMERAL  # (first, last) local port the kernel picks for port 0
    taken_at: float = 0.0  # wall clock (time.time())
    _masks: dict = field(default_factory=dict, repr=False, compare=False)  # derived, by from_table

    @classmethod
    def empty(cls, ephemeral=EPHEMERAL, taken_at: Optional[float] = None) -> "Serving":
        return cls.from_table(SocketTable.concat([]), ephemeral, taken_at)

    @classmethod
    def from_table(cls, t: SocketTable, ephemeral=EPHEMERAL, taken_at: Optional[float] = None) -> "Serving":
        """Classify a socket table. Sockets at port 0 (not bound) serve
        nothing; loopback peers never cross the NIC and are left out."""
        first, last = int(ephemeral[0]), int(ephemeral[1])
        if not 0 < first <= last < PORTS:
            raise ValueError(f"bad ephemeral port range {ephemeral!r}")
        tcp, udp = t.proto == 6, t.proto == 17
        bound = t.lport > 0
        listen = tcp & bound & (t.state == LISTEN)
        uconn = udp & bound & (t.state == ESTABLISHED)
        ubound = udp & bound & (t.state == CLOSE)
        tcp_listening = _endpoints("tcp", t, listen)
        udp_bound = _endpoints("udp", t, ubound)
        udp_connected = tuple(sorted({Asked(int(t.lport[i]), _text(t.family[i], t.raddr[i]), int(t.rport[i]))
                                      for i in np.flatnonzero(uconn)}))

        hand = tcp & np.isin(t.state, HANDSHAKEN)
        ver, hi, lo, loop = _addresses(t.family[hand], t.raddr[hand])
        peers = _peers(ver[~loop], hi[~loop], lo[~loop])
        est = t.state[hand][~loop] == ESTABLISHED

        def mask(rows: np.ndarray) -> np.ndarray:
            m = np.zeros(PORTS, bool)
            m[t.lport[rows]] = True
            return m

        eph = (t.lport >= first) & (t.lport <= last)
        masks = {
            "tcp_listen": mask(listen),
            "tcp": mask(tcp & bound & np.isin(t.state, TCP_OPEN)),
            "udp": mask(uconn | ubound),
            "udp_unconnected": mask(ubound),
            # asked: a connected socket (its remote), or an unconnected one at
            # an ephemeral port (a client that asks with sendto())
            "udp_asked": mask(uconn | (ubound & eph)),
            # (local port, remote port) of each connected UDP socket, as one sorted array
            "pairs": np.unique(t.lport[uconn].astype(np.int64) * PORTS + t.rport[uconn]),
            "peer_keys": peers.key64(),
            "ephemeral": np.arange(PORTS) >= first,
        }
        masks["ephemeral"][last + 1:] = False
        masks["any"] = masks["tcp"] | masks["udp"]
        for a in (peers.ver, peers.hi, peers.lo):
            a.flags.writeable = False
        for m in masks.values():
            m.flags.writeable = False
        return cls(tcp_listening, udp_bound, udp_connected, peers,
                   int(np.count_nonzero(est)), len(est),
                   (first, last), time.time() if taken_at is None else float(taken_at), masks)

    # --- ports -------------------------------------------------------------------

    def served_mask(self, proto=None) -> np.ndarray:
        """A read-only bool array of 65536: True at each port where a socket
        of `proto` ("tcp"/6 or "udp"/17; None: either, the form of the
        datapath's protocol-blind destination-port histogram) takes traffic.
        TCP: a listener or one of our own connections; UDP: any bound socket."""
        return self._masks["any" if proto is None else _proto(proto)]

    @property
    def ephemeral_mask(self) -> np.ndarray:
        """The ports the kernel hands to new client sockets: one may be in
        use a moment after this snapshot (see no_collateral)."""
        return self._masks["ephemeral"]

    @property
    def listen_mask(self) -> np.ndarray:
        """TCP ports with a listener (only: no ports of our own connections)."""
        return self._masks["tcp_listen"]

    @property
    def asked_mask(self) -> np.ndarray:
        """UDP ports where a socket asked: a connected socket's local port,
        or an unconnected socket bound to an ephemeral port (a resolver or
        NTP client using sendto). Per destination port only: a connected
        socket counts whatever port the answer comes from (the cautious
        side: it never calls an asked answer unasked)."""
        return self._masks["udp_asked"]

    def tcp_served(self, port: int, address: Optional[str] = None) -> bool:
        """Does TCP traffic to `port` reach a socket? With an address, only
        a listener bound to it (or to a wildcard covering it) counts."""
        if address is None:
            return bool(self._masks["tcp"][_port(port)])
        return any(e.port == port and e.covers(address) for e in self.tcp_listening)

    def udp_served(self, port: int, address: Optional[str] = None) -> bool:
        """Does UDP traffic to `port` reach a socket (bound or connected)?
        With an address, only an unconnected socket bound to it (or to a
        wildcard covering it) counts."""
        if address is None:
            return bool(self._masks["udp"][_port(port)])
        return any(e.port == port and e.covers(address) for e in self.udp_bound)

    def unserved(self, proto, dport):
        """True where no socket of `proto` takes traffic to dport: an attack
        candidate that costs no customer. dport: an int, or a numpy array of
        them (answered element-wise). Port 0 is never served."""
        return _index(~self._masks[_proto(proto)], dport)

    def unasked_mask(self, sport: int) -> np.ndarray:
        """Over destination ports (65536 bools): is a UDP packet from source
        port `sport` an answer nobody asked for? All False unless sport is a
        reflection port. Asked: a socket connected to a remote at `sport`,
        an unconnected socket at an ephemeral port, or an unconnected socket
        at `sport` itself (peers that speak from their service port: NTP
        123<->123, mDNS 5353<->5353, NetBIOS 137<->137)."""
        sport = _port(sport)
        if not REFLECTION_MASK[sport]:
            return np.zeros(PORTS, bool)
        out = ~self._masks["udp_asked"]  # a fresh array: the mask is not changed
        if self._masks["udp_unconnected"][sport]:
            out[sport] = False
        return out

    def reflection_unasked(self, sport, dport):
        """Is a UDP packet sport -> dport a reflection answer that no socket
        asked for? Ints, or numpy arrays of equal shape (element-wise). Exact
        for connected sockets: one connected to remote port 53 asked for an
        answer from 53, not from 123."""
        s, d = np.asarray(sport, np.int64), np.asarray(dport, np.int64)
        if ((s < 0) | (s >= PORTS) | (d < 0) | (d >= PORTS)).any():
            raise ValueError("a port is 0 to 65535")
        m = self._masks
        eph = (d >= self.ephemeral[0]) & (d <= self.ephemeral[1])
        asked = (m["udp_unconnected"][d] & (eph | (d == s))) | _isin(d * PORTS + s, m["pairs"])
        out = REFLECTION_MASK[s] & ~asked
        return bool(out) if out.ndim == 0 else out

    def no_collateral(self, proto, dport: Optional[int] = None, sport: Optional[int] = None) -> Optional[str]:
        """Why dropping every `proto` packet to dport (from sport) would cut
        nothing this host serves, or None when that is not certain.

        Certain: no socket of proto at dport, or (UDP) answers from a
        reflection port that no socket at dport asked for; and dport outside
        the ephemeral range. Never certain: a rule without dport, or with a
        dport in the ephemeral range: short-lived clients escape a snapshot
        (glibc's resolver opens a connected UDP socket per query, on a fresh
        ephemeral port, and closes it within milliseconds), so a rule on
        `udp sport 53` alone would cut the host's own name lookups."""
        name = _proto(proto)
        if dport is None:
            return None
        dport = _port(dport)
        if self._masks["ephemeral"][dport]:
            return None
        if not self._masks[name][dport]:
            return f"no {name.upper()} socket at port {dport}"
        if name == "udp" and sport is not None and self.reflection_unasked(_port(sport), dport):
            return f"UDP answers from port {sport} to port {dport}, where no socket asked"
        return None

    # --- customers -----------------------------------------------------------------

    def customers(self, src: Sources) -> np.ndarray:
        """For each source, does it hold a TCP connection whose handshake
        completed? A bool array as long as src, exact on (ver, hi, lo)."""
        keys = self._masks["peer_keys"]
        if not len(src) or not len(keys):
            return np.zeros(len(src), bool)
        k = src.key64()
        order = np.argsort(k)  # sorted needles: 1 ms + 1 ms for 100k, against 11 ms in random order
        pos = np.empty(len(k), np.intp)
        pos[order] = np.searchsorted(keys, k[order])
        np.minimum(pos, len(keys) - 1, out=pos)
        p = self.peers
        same_key = keys[pos] == k
        out = same_key & (p.ver[pos] == src.ver) & (p.hi[pos] == src.hi) & (p.lo[pos] == src.lo)
        # two IPv6 peers whose key64 collide (odds near 1e-7 in a million)
        # sit side by side: look at the next ones with the same key
        todo = np.flatnonzero(same_key & ~out)
        while len(todo):
            pos[todo] += 1
            todo = todo[pos[todo] < len(keys)]
            q = pos[todo]
            same_key = keys[q] == k[todo]
            out[todo] = same_key & (p.ver[q] == src.ver[todo]) & (p.hi[q] == src.hi[todo]) & (p.lo[q] == src.lo[todo])
            todo = todo[same_key & ~out[todo]]
        return out

    def is_customer(self, address: str) -> bool:
        return bool(self.customers(Sources.from_addresses([address], [0]))[0])

    # --- output ---------------------------------------------------------------------

    def to_json(self) -> dict:
        """For `seawall serving --json` and the logs: sockets and counts (not
        the peers themselves, which may be 100k)."""
        return {
            "taken_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.taken_at)),
            "ephemeral_ports": list(self.ephemeral),
            "tcp": {"listening": [e.to_json() for e in self.tcp_listening]},
            "udp": {"bound": [e.to_json(self.ephemeral) for e in self.udp_bound],
                    "connected": [a.to_json() for a in self.udp_connected]},
            "customers": {"addresses": len(self.peers), "connections": self.connections,
                          "established": self.established},
        }


# --- helpers ---------------------------------------------------------------------


def _proto(proto) -> str:
    try:
        return _PROTO[proto.lower() if isinstance(proto, str) else proto]
    except (KeyError, AttributeError):
        raise ValueError(f"unknown protocol {proto!r} (tcp, udp, 6 or 17)") from None


def _port(port) -> int:
    p = int(port)
    if not 0 <= p < PORTS:
        raise ValueError(f"port {port!r} is not 0 to 65535")
    return p


def _index(mask: np.ndarray, port):
    if np.ndim(port) == 0:
        return bool(mask[_port(port)])
    p = np.asarray(port, np.int64)
    if ((p < 0) | (p >= PORTS)).any():
        raise ValueError("a port is 0 to 65535")
    return mask[p]


def _isin(values: np.ndarray, sorted_keys: np.ndarray) -> np.ndarray:
    if not len(sorted_keys):
        return np.zeros(values.shape, bool)
    pos = np.minimum(np.searchsorted(sorted_keys, values), len(sorted_keys) - 1)
    return sorted_keys[pos] == values


def _plain(ip):
    """An IPv4-mapped IPv6 address as the IPv4 address it carries."""
    return ip.ipv4_mapped if ip.version == 6 and ip.ipv4_mapped is not None else ip


def _text(family, raw: np.ndarray) -> str:
    b = bytes(raw)
    if family == 4:
        return str(ipaddress.IPv4Address(b[:4]))
    return str(_plain(ipaddress.IPv6Address(b)))


def _endpoints(proto: str, t: SocketTable, rows: np.ndarray) -> tuple:
    out = set()
    for i in np.flatnonzero(rows):
        addr = _text(t.family[i], t.laddr[i])
        v6 = bool(t.family[i] == 6 and ":" in addr)  # a v4-mapped bind is an IPv4 one
        # a specific IPv6 address takes no IPv4, whatever the flag (the kernel sets it then)
        v6only = bool(v6 and (addr != "::" or t.v6only[i]))
        out.add(Endpoint(proto, 6 if v6 else 4, addr, int(t.lport[i]), v6only))
    return tuple(sorted(out))


def _addresses(family: np.ndarray, raw: np.ndarray) -> tuple:
    """(ver, hi, lo, loopback) of 16-byte addresses: IPv4-mapped IPv6 as IPv4."""
    raw = np.ascontiguousarray(raw.reshape(-1, 16))
    v4 = (family == 4) | ((family == 6) & (raw[:, :12] == np.frombuffer(_MAPPED, np.uint8)).all(axis=1))
    lo4 = np.where((family == 4)[:, None], raw[:, :4], raw[:, 12:16]).copy().view(">u4").reshape(-1).astype(U64)
    hi6 = raw[:, :8].copy().view(">u8").reshape(-1).astype(U64)
    lo6 = raw[:, 8:].copy().view(">u8").reshape(-1).astype(U64)
    hi = np.where(v4, U64(0), hi6)
    lo = np.where(v4, lo4, lo6)
    loop = (v4 & ((lo >> U64(24)) == U64(127))) | (~v4 & (hi == U64(0)) & (lo == U64(1)))
    return np.where(v4, 4, 6).astype(np.uint8), hi, lo, loop


def _peers(ver: np.ndarray, hi: np.ndarray, lo: np.ndarray) -> Sources:
    """Distinct peers as Sources (counts zero), sorted by key64."""
    z = np.zeros(len(ver), U64)
    s = Sources(ver, hi, lo, z, z.copy(), z.copy())
    k = s.key64()
    order = np.argsort(k)
    s, k = s.take(order), k[order]
    # equal peers share a key64 and now sit side by side (a colliding IPv6
    # peer between them would leave a harmless duplicate)
    dup = np.zeros(len(k), bool)
    dup[1:] = (k[1:] == k[:-1]) & (s.hi[1:] == s.hi[:-1]) & (s.lo[1:] == s.lo[:-1]) & (s.ver[1:] == s.ver[:-1])
    return s.take(~dup)
