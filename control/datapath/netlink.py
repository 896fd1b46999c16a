"""Interface facts from rtnetlink: index, XDP program and mode.

One RTM_GETLINK request on a raw NETLINK_ROUTE socket, its IFLA_XDP
attributes read by hand: this is on the path from `seawall run` to the
program attached, and importing pyroute2 for it cost 0.1 to 0.2 s there
(pyroute2's package imports all of itself).
"""

from __future__ import annotations

import errno
import os
import socket
import struct
from dataclasses import dataclass
from typing import Optional

from seawall.control.errors import SeawallError

# include/uapi/linux/rtnetlink.h, netlink.h, if_link.h
RTM_GETLINK = 18
NLM_F_REQUEST = 1
NLMSG_ERROR = 2
IFLA_IFNAME = 3
IFLA_XDP = 43
IFLA_XDP_ATTACHED = 2
IFLA_XDP_PROG_ID = 4
IFLA_XDP_DRV_PROG_ID, IFLA_XDP_SKB_PROG_ID, IFLA_XDP_HW_PROG_ID = 5, 6, 7  # "multi": one each
NLA_TYPE_MASK = 0x3FFF  # without NLA_F_NESTED and NLA_F_NET_BYTEORDER

_NLMSG = struct.Struct("=IHHII")  # len, type, flags, seq, pid
_IFINFO = struct.Struct("=BxHiII")  # family, type, index, flags, change
_RTA = struct.Struct("=HH")  # len, type

# enum XDP_ATTACHED_*, in ip(8)'s words
_ATTACHED_MODE = {1: "native", 2: "generic", 3: "offload", 4: "multi"}


@dataclass(frozen=True)
class XdpState:
    ifname: str
    ifindex: int
    prog_id: Optional[int]  # None: no XDP program
    mode: Optional[str]  # native | generic | offload | multi


def _attrs(buf: bytes, start: int, end: int) -> dict:
    """{type: payload} of the netlink attributes in buf[start:end]."""
    out = {}
    while start + _RTA.size <= end:
        length, kind = _RTA.unpack_from(buf, start)
        if length < _RTA.size:
            break
        out[kind & NLA_TYPE_MASK] = buf[start + _RTA.size:start + length]
        start += (length + 3) & ~3
    return out


def _getlink(ifname: str) -> tuple:
    """(ifindex, IFLA_XDP's nested attributes) of ifname, from the kernel."""
    name = ifname.encode() + b"\0"
    rta = _RTA.pack(_RTA.size + len(name), IFLA_IFNAME) + name
    rta += b"\0" * (-len(rta) % 4)
    body = _IFINFO.pack(socket.AF_UNSPEC, 0, 0, 0, 0) + rta
    msg = _NLMSG.pack(_NLMSG.size + len(body), RTM_GETLINK, NLM_F_REQUEST, 1, 0) + body
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, socket.NETLINK_ROUTE) as s:
        s.sendto(msg, (0, 0))
        buf = s.recv(65536)
    length, kind, _, _, _ = _NLMSG.unpack_from(buf, 0)
    if kind == NLMSG_ERROR:
        err = -struct.unpack_from("=i", buf, _NLMSG.size)[0]
        if err in (errno.ENODEV, errno.EINVAL):
            raise SeawallError(f"no such interface: {ifname}")
        raise SeawallError(f"rtnetlink: cannot read {ifname}: {os.strerror(err)}")
    _, _, index, _, _ = _IFINFO.unpack_from(buf, _NLMSG.size)
    top = _attrs(buf, _NLMSG.size + _IFINFO.size, length)
    xdp = top.get(IFLA_XDP, b"")
    return index, _attrs(xdp, 0, len(xdp))


def xdp_state(ifname: str) -> XdpState:
    """The XDP program attached to ifname (in this network namespace) and
    its mode; SeawallError for an interface that does not exist."""
    if not ifname or len(ifname) >= 16 or "/" in ifname:
        raise SeawallError(f"no such interface: {ifname}")
    index, xdp = _getlink(ifname)
    attached = _ATTACHED_MODE.get(xdp[IFLA_XDP_ATTACHED][0]) if IFLA_XDP_ATTACHED in xdp else None
    prog_id = None
    for kind in (IFLA_XDP_PROG_ID, IFLA_XDP_DRV_PROG_ID, IFLA_XDP_SKB_PROG_ID, IFLA_XDP_HW_PROG_ID):
        if kind in xdp and struct.unpack_from("=I", xdp[kind])[0]:
            prog_id = struct.unpack_from("=I", xdp[kind])[0]
            break
    return XdpState(ifname, index, prog_id if attached else None, attached)


RTM_SETLINK = 19
NLM_F_ACK = 4
NLA_F_NESTED = 1 << 15
IFLA_XDP_FD, IFLA_XDP_FLAGS, IFLA_XDP_EXPECTED_FD = 1, 3, 8
XDP_FLAGS_REPLACE = 1 << 4


class XdpRefused(SeawallError):
    """The kernel refused an XDP attach or detach; reason: its word."""

    def __init__(self, ifname: str, attach: bool, reason: str):
        what = f"attach XDP to {ifname}" if attach else f"detach XDP from {ifname}"
        super().__init__(f"cannot {what}: {reason}")
        self.reason = reason


def set_xdp(ifname: str, prog_fd: int, flags: int, expected_fd: Optional[int] = None) -> None:
    """Attach the program prog_fd to ifname (-1: remove the one attached)
    with these XDP_FLAGS_* (the mode's), by one RTM_SETLINK: how the
    daemon puts its own pinned program back without importing bcc. Raises
    SeawallError with the kernel's reason.

    expected_fd: swap prog_fd in for exactly this attached program, in
    one step (XDP_FLAGS_REPLACE): no packet goes unfiltered, and the
    kernel refuses (EEXIST) if another program has been attached since."""
    index, _ = _getlink(ifname)
    xdp = _RTA.pack(8, IFLA_XDP_FD) + struct.pack("=i", prog_fd)
    if expected_fd is not None:
        flags |= XDP_FLAGS_REPLACE
        xdp += _RTA.pack(8, IFLA_XDP_EXPECTED_FD) + struct.pack("=i", expected_fd)
    xdp += _RTA.pack(8, IFLA_XDP_FLAGS) + struct.pack("=I", flags)
    body = _IFINFO.pack(socket.AF_UNSPEC, 0, index, 0, 0)
    body += _RTA.pack(_RTA.size + len(xdp), IFLA_XDP | NLA_F_NESTED) + xdp
    msg = _NLMSG.pack(_NLMSG.size + len(body), RTM_SETLINK, NLM_F_REQUEST | NLM_F_ACK, 1, 0) + body
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, socket.NETLINK_ROUTE) as s:
        s.sendto(msg, (0, 0))
        buf = s.recv(65536)
    _, kind, _, _, _ = _NLMSG.unpack_from(buf, 0)
    err = -struct.unpack_from("=i", buf, _NLMSG.size)[0] if kind == NLMSG_ERROR else 0
    if err:
        raise XdpRefused(ifname, prog_fd >= 0, os.strerror(err))
