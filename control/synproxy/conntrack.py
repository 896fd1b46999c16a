"""The connections a port holds already, made known to conntrack before
SYN protection sets nf_conntrack_tcp_loose to 0.

With tcp_loose = 0, conntrack no longer picks up a connection it has not
seen open: the next segment of a connection that was open before (and
that nothing tracked: no firewall with a `ct state` rule) is INVALID, and
the protected port's rules hand it to SYNPROXY, which drops it as an ACK
without a valid cookie. The connection stalls until protection is off.
So, before the switch, each such connection (sock_diag: the namespace's
TCP sockets on the port, past the handshake) is added to conntrack as
ESTABLISHED through ctnetlink, with window tracking liberal in both
directions (its sequence numbers are not known). One already tracked is
left as it is.

In: ports; out: how many were added. Kernel I/O only (sock_diag, ctnetlink).
"""

from __future__ import annotations

import errno
import ipaddress
import socket
from typing import Iterable

import numpy as np

from seawall.control.datapath import sockets
from seawall.control.detect.serving import ESTABLISHED

# include/uapi/linux/netfilter/nf_conntrack_common.h, nf_conntrack_tcp.h
IPS_SEEN_REPLY = 1 << 1
IPS_ASSURED = 1 << 2
IPS_CONFIRMED = 1 << 3  # set on every entry ctnetlink makes: a status without it is refused (EBUSY)
TCP_CONNTRACK_ESTABLISHED = 3
IP_CT_TCP_FLAG_BE_LIBERAL = 0x08
TIMEOUT_ESTABLISHED = "/proc/sys/net/netfilter/nf_conntrack_tcp_timeout_established"
#: TCP states of sockets that hold a connection (not LISTEN, SYN_SENT, SYN_RECV, TIME_WAIT, CLOSE)
_CONNECTED = (ESTABLISHED, 4, 5, 8, 9, 11)  # ESTABLISHED, FIN_WAIT1/2, CLOSE_WAIT, LAST_ACK, CLOSING


def _addr(raw: np.ndarray, family: int) -> tuple:
    """(4 or 6, text) of a sock_diag address; an IPv4-mapped IPv6 one
    (an IPv4 client of a dual-stack socket) as the IPv4 address its
    packets carry."""
    if family == 4:
        return 4, str(ipaddress.IPv4Address(bytes(raw[:4])))
    a = ipaddress.IPv6Address(bytes(raw))
    return (4, str(a.ipv4_mapped)) if a.ipv4_mapped else (6, str(a))


def connections(ports: Iterable[int]) -> list:
    """[(version, local addr, local port, remote addr, remote port)] of
    this namespace's TCP connections whose local port is in ports."""
    t = sockets.read_table()
    want = np.isin(t.lport, np.fromiter(ports, np.uint16)) & (t.proto == socket.IPPROTO_TCP) & \
        np.isin(t.state, _CONNECTED) & (t.rport != 0)
    out = []
    for i in np.flatnonzero(want):
        v, laddr = _addr(t.laddr[i], int(t.family[i]))
        _, raddr = _addr(t.raddr[i], int(t.family[i]))
        out.append((v, laddr, int(t.lport[i]), raddr, int(t.rport[i])))
    return out


def _timeout() -> int:
    try:
        with open(TIMEOUT_ESTABLISHED) as f:
            return int(f.read())
    except (OSError, ValueError):
        return 432000  # the kernel's default: 5 days


def seed(conns: list) -> int:
    """Add conns (as connections() gives them) to conntrack, opened by the
    remote side, ESTABLISHED and liberal; returns how many were added (one
    tracked already is not). OSError when ctnetlink refuses otherwise."""
    if not conns:
        return 0
    from pyroute2 import Conntrack  # only here: importing pyroute2 costs some 0.1 s
    from pyroute2.netlink.exceptions import NetlinkError
    from pyroute2.netlink.nfnetlink.nfctsocket import NFCTAttrTuple

    timeout = _timeout()
    flags = {"value": (IP_CT_TCP_FLAG_BE_LIBERAL, IP_CT_TCP_FLAG_BE_LIBERAL)}
    protoinfo = {"attrs": [["CTA_PROTOINFO_TCP", {"attrs": [
        ["CTA_PROTOINFO_TCP_STATE", TCP_CONNTRACK_ESTABLISHED],
        ["CTA_PROTOINFO_TCP_FLAGS_ORIGINAL", flags],
        ["CTA_PROTOINFO_TCP_FLAGS_REPLY", flags],
    ]}]]}
    added = 0
    by_family: dict = {}
    for c in conns:
        by_family.setdefault(c[0], []).append(c)
    for v, rows in by_family.items():
        ct = Conntrack(nfgen_family=socket.AF_INET if v == 4 else socket.AF_INET6)
        try:
            for _, laddr, lport, raddr, rport in rows:
                try:
                    ct.entry("add", timeout=timeout, status=IPS_CONFIRMED | IPS_SEEN_REPLY | IPS_ASSURED, protoinfo=protoinfo,
                             tuple_orig=NFCTAttrTuple(saddr=raddr, daddr=laddr, proto=socket.IPPROTO_TCP,
                                                      sport=rport, dport=lport),
                             tuple_reply=NFCTAttrTuple(saddr=laddr, daddr=raddr, proto=socket.IPPROTO_TCP,
                                                       sport=lport, dport=rport))
                    added += 1
                except NetlinkError as e:
                    if e.code != errno.EEXIST:
                        raise OSError(e.code, f"ctnetlink: {e}") from None
        finally:
            ct.close()
    return added
