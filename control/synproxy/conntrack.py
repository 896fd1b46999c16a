"""The connections a port holds already, made known to conntrack before
SYN protection sets nf_conntrack_tcp_loose to 0.

With tcp_loose = 0, conntrack no longer picks up a connection it has not
seen open: the next segment of a connection that was open before (and
that nothing tracked: no firewall with a `ct state` rule) is INVALID, and
the protected port's rules hand it to SYNPROXY, which drops it as an ACK
without a valid cookie. The connection stalls until protection is off.
So, before the switch, each such connection (sock_diag: the namespace's
TCP sockets on the port, past the handshake) is added to conntrack as
ESTABLISHED through ctnetlink (the requests packed here, as sockets.py
packs its own), with window tracking liberal in both directions (its
sequence numbers are not known). One already tracked is left as it is.

In: ports; out: how many were added. Kernel I/O only (sock_diag, ctnetlink).
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
import struct
from typing import Iterable

import numpy as np

from seawall.control.datapath import sockets
from seawall.control.detect.serving import ESTABLISHED

# include/uapi/linux/netlink.h, netfilter/nfnetlink.h, nfnetlink_conntrack.h
NETLINK_NETFILTER = 12
SOL_NETLINK, NETLINK_CAP_ACK = 270, 10
NLMSG_ERROR = 2
NLA_F_NESTED = 1 << 15
NLM_F_REQUEST, NLM_F_ACK, NLM_F_EXCL, NLM_F_CREATE = 0x1, 0x4, 0x200, 0x400
NEW_FLAGS = NLM_F_REQUEST | NLM_F_ACK | NLM_F_EXCL | NLM_F_CREATE
IPCTNL_MSG_CT_NEW = 1 << 8 | 0  # NFNL_SUBSYS_CTNETLINK << 8 | IPCTNL_MSG_CT_NEW
CTA_TUPLE_ORIG, CTA_TUPLE_REPLY, CTA_STATUS, CTA_PROTOINFO, CTA_TIMEOUT = 1, 2, 3, 4, 7
CTA_TUPLE_IP, CTA_TUPLE_PROTO = 1, 2
CTA_IP_V4_SRC, CTA_IP_V4_DST, CTA_IP_V6_SRC, CTA_IP_V6_DST = 1, 2, 3, 4
CTA_PROTO_NUM, CTA_PROTO_SRC_PORT, CTA_PROTO_DST_PORT = 1, 2, 3
CTA_PROTOINFO_TCP = 1
CTA_PROTOINFO_TCP_STATE, CTA_PROTOINFO_TCP_FLAGS_ORIGINAL, CTA_PROTOINFO_TCP_FLAGS_REPLY = 1, 4, 5
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


def _nla(kind: int, payload: bytes) -> bytes:
    """One netlink attribute, padded to 4 bytes."""
    n = 4 + len(payload)
    return struct.pack("=HH", n, kind) + payload + bytes(-n % 4)


def _nest(kind: int, *attrs: bytes) -> bytes:
    return _nla(kind | NLA_F_NESTED, b"".join(attrs))


def _tuple(kind: int, v: int, src: str, dst: str, sport: int, dport: int) -> bytes:
    fam = socket.AF_INET if v == 4 else socket.AF_INET6
    s_attr, d_attr = (CTA_IP_V4_SRC, CTA_IP_V4_DST) if v == 4 else (CTA_IP_V6_SRC, CTA_IP_V6_DST)
    return _nest(kind,
                 _nest(CTA_TUPLE_IP, _nla(s_attr, socket.inet_pton(fam, src)),
                       _nla(d_attr, socket.inet_pton(fam, dst))),
                 _nest(CTA_TUPLE_PROTO, _nla(CTA_PROTO_NUM, bytes([socket.IPPROTO_TCP])),
                       _nla(CTA_PROTO_SRC_PORT, struct.pack("!H", sport)),
                       _nla(CTA_PROTO_DST_PORT, struct.pack("!H", dport))))


def pack_new(seq: int, conn: tuple, timeout: int) -> bytes:
    """The IPCTNL_MSG_CT_NEW request (nlmsghdr, nfgenmsg, attributes) that
    adds conn (version, local addr, local port, remote addr, remote port)
    as ESTABLISHED, opened by the remote side, liberal both ways; create
    only (NLM_F_EXCL: EEXIST when conntrack has it)."""
    v, laddr, lport, raddr, rport = conn
    liberal = bytes([IP_CT_TCP_FLAG_BE_LIBERAL, IP_CT_TCP_FLAG_BE_LIBERAL])  # struct nf_ct_tcp_flags: flags, mask
    body = b"".join((
        struct.pack("=BBH", socket.AF_INET if v == 4 else socket.AF_INET6, 0, 0),  # nfgenmsg, NFNETLINK_V0
        _tuple(CTA_TUPLE_ORIG, v, raddr, laddr, rport, lport),
        _tuple(CTA_TUPLE_REPLY, v, laddr, raddr, lport, rport),
        _nla(CTA_STATUS, struct.pack("!I", IPS_CONFIRMED | IPS_SEEN_REPLY | IPS_ASSURED)),
        _nla(CTA_TIMEOUT, struct.pack("!I", timeout)),
        _nest(CTA_PROTOINFO, _nest(CTA_PROTOINFO_TCP, _nla(CTA_PROTOINFO_TCP_STATE, bytes([TCP_CONNTRACK_ESTABLISHED])),
                                   _nla(CTA_PROTOINFO_TCP_FLAGS_ORIGINAL, liberal),
                                   _nla(CTA_PROTOINFO_TCP_FLAGS_REPLY, liberal))),
    ))
    return struct.pack("=IHHII", 16 + len(body), IPCTNL_MSG_CT_NEW, NEW_FLAGS, seq, 0) + body


def seed(conns: list, batch: int = 256) -> int:
    """Add conns (as connections() gives them) to conntrack through
    ctnetlink: `batch` requests a datagram, each acknowledged (some 8 us a
    connection; pyroute2's Conntrack took 500). Returns how many were
    added: one that conntrack has already is left as it is. OSError when
    ctnetlink refuses otherwise (naming the errno)."""
    if not conns:
        return 0
    timeout = _timeout()
    added = 0
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER) as sock:
        sock.settimeout(5.0)
        sock.setsockopt(SOL_NETLINK, NETLINK_CAP_ACK, 1)  # acks without the request copied back
        sock.bind((0, 0))
        for first in range(0, len(conns), batch):
            chunk = conns[first:first + batch]
            sock.send(b"".join(pack_new(first + i + 1, c, timeout) for i, c in enumerate(chunk)))
            pending = len(chunk)
            while pending:
                data = sock.recv(1 << 16)
                off = 0
                while off + 16 <= len(data):
                    length, kind = struct.unpack_from("=IH", data, off)
                    if length < 16:
                        raise OSError(errno.EPROTO, "ctnetlink: a malformed answer")
                    if kind == NLMSG_ERROR:
                        code = -struct.unpack_from("=i", data, off + 16)[0]
                        pending -= 1
                        if code == 0:
                            added += 1
                        elif code != errno.EEXIST:
                            raise OSError(code, f"ctnetlink refused a connection: {os.strerror(code)}")
                    off += (length + 3) & ~3
    return added
