"""Frames built from their fields, for the tools that run the real program
on traffic no wire carried: `seawall replay` (its legitimate background)
and `seawall bench` (one frame per case). Pure.

The program reads the L2 and L3 headers, the ports, the TCP flags and the
frame's length; the rest (checksums, sequence numbers) is filled in but
never read. (The tests build their packets with scapy: tests/bpf/frames.py.)
"""

from __future__ import annotations

import ipaddress
import struct
from typing import Optional, Union

PROTO_NUMBERS = {"icmp": 1, "tcp": 6, "udp": 17}
MAC_DST = bytes.fromhex("020000000002")
MAC_SRC = bytes.fromhex("020000000001")

Address = Union[str, int]  # text, or an IPv4 address as a host-order int


def internet_checksum(b: bytes) -> int:
    """RFC 1071: the one's complement of the one's complement sum of b's 16-bit words."""
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack(f"!{len(b) // 2}H", b))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def _ip(a: Address):
    return ipaddress.IPv4Address(a) if isinstance(a, int) else ipaddress.ip_address(a)


def frame(src: Address, dst: Address, proto: Union[str, int] = "tcp", sport: int = 40000, dport: int = 443,
          flags: int = 0x10, length: int = 60, vlan: Optional[int] = None,
          fragment: Optional[int] = None, more: bool = True) -> bytes:
    """An Ethernet frame from src to dst (IPv4 or IPv6 by the addresses;
    one 802.1Q tag if `vlan`), carrying TCP (with `flags`, ACK by default),
    UDP or an ICMP echo request, zero-padded to `length` bytes when its
    headers are shorter. The IP total length covers the padding.

    `fragment`: None for a whole datagram, else the fragment offset in
    8-byte units (IPv4 header field; IPv6 adds a fragment header), with
    more-fragments set if `more`. Offset 0 is a first fragment, which
    carries the L4 header; any other offset carries none, only padding."""
    pnum = PROTO_NUMBERS.get(proto, proto) if isinstance(proto, str) else proto
    s, d = _ip(src), _ip(dst)
    if fragment is not None and not 0 <= fragment < 8192:
        raise ValueError(f"a fragment offset is 0-8191 (8-byte units), not {fragment}")
    if fragment:  # a non-first fragment: no L4 header
        l4 = b""
    elif pnum == 6:
        l4 = struct.pack("!HHIIBBHHH", sport, dport, 1, 0, 5 << 4, flags, 65535, 0, 0)
    elif pnum == 17:
        l4 = struct.pack("!HHHH", sport, dport, 8, 0)
    elif pnum in (1, 58):
        l4 = struct.pack("!BBHI", 8 if pnum == 1 else 128, 0, 0, 0)
    else:
        l4 = b""
    eth = MAC_DST + MAC_SRC + (struct.pack("!HH", 0x8100, vlan) if vlan is not None else b"")
    frag6 = b""
    if fragment is not None and s.version == 6:  # nh, reserved, offset << 3 | M, identification
        frag6 = struct.pack("!BBHI", pnum, 0, (fragment << 3) | int(more), 1)
    l3_len = (20 if s.version == 4 else 40) + len(frag6)
    body = max(length - len(eth) - 2 - l3_len, len(l4))  # L4 header and padding
    if s.version == 4:
        frag_off = 0 if fragment is None else (0x2000 if more else 0) | fragment
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, l3_len + body, 1, frag_off, 64, pnum, 0, s.packed, d.packed)
        ip = ip[:10] + struct.pack("!H", internet_checksum(ip)) + ip[12:]
        etype = 0x0800
    else:
        ip = struct.pack("!IHBB16s16s", 6 << 28, len(frag6) + body, 44 if frag6 else pnum, 64, s.packed,
                         d.packed) + frag6
        etype = 0x86DD
    return eth + struct.pack("!H", etype) + ip + l4 + b"\0" * (body - len(l4))
