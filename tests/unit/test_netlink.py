"""datapath/netlink.py: the rtnetlink attributes read by hand, and the
loopback read for real (RTM_GETLINK needs no privilege)."""

from __future__ import annotations

import socket
import struct

import pytest

from seawall.control.datapath import netlink
from seawall.control.errors import SeawallError


def rta(kind: int, payload: bytes) -> bytes:
    raw = struct.pack("=HH", 4 + len(payload), kind) + payload
    return raw + b"\0" * (-len(raw) % 4)


def test_attributes_are_read_past_padding_and_nesting_flags():
    nested = rta(netlink.IFLA_XDP_ATTACHED, b"\x02") + rta(netlink.IFLA_XDP_PROG_ID, struct.pack("=I", 77))
    buf = rta(netlink.IFLA_IFNAME, b"eth0\0") + rta(netlink.IFLA_XDP | 0x8000, nested) + rta(9, b"xyz")
    top = netlink._attrs(buf, 0, len(buf))
    assert top[netlink.IFLA_IFNAME] == b"eth0\0" and top[9] == b"xyz"
    xdp = netlink._attrs(top[netlink.IFLA_XDP], 0, len(top[netlink.IFLA_XDP]))
    assert xdp[netlink.IFLA_XDP_ATTACHED] == b"\x02"
    assert struct.unpack("=I", xdp[netlink.IFLA_XDP_PROG_ID]) == (77,)


def test_a_truncated_attribute_ends_the_walk():
    buf = rta(netlink.IFLA_IFNAME, b"lo\0") + struct.pack("=HH", 2, 5)
    assert list(netlink._attrs(buf, 0, len(buf))) == [netlink.IFLA_IFNAME]


def test_the_loopback_has_no_xdp_program():
    st = netlink.xdp_state("lo")
    assert st.ifindex == socket.if_nametoindex("lo")
    assert st.prog_id is None and st.mode is None


@pytest.mark.parametrize("name", ["seawall-none0", "", "x" * 16, "a/b"])
def test_an_unknown_interface_is_one_clear_error(name):
    with pytest.raises(SeawallError, match=f"^no such interface: {name}$"):
        netlink.xdp_state(name)
