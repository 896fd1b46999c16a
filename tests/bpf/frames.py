"""Frame builders for the BPF tier (scapy). Benchmarking addresses only:
198.18.0.0/15 and 2001:2::/48 (RFC 2544, RFC 5180)."""

from __future__ import annotations

import ipaddress

from scapy.layers.inet import ICMP, IP, TCP, UDP, IPOption_NOP, IPOption_Router_Alert
from scapy.layers.inet6 import (
    ICMPv6EchoRequest,
    IPv6,
    IPv6ExtHdrDestOpt,
    IPv6ExtHdrFragment,
    IPv6ExtHdrHopByHop,
    IPv6ExtHdrRouting,
    PadN,
)
from scapy.layers.ipsec import AH
from scapy.layers.l2 import ARP, Dot1AD, Dot1Q, Ether
from scapy.packet import Raw

from seawall.control.datapath.abi import XdpAction  # noqa: E402

XDP_DROP, XDP_PASS = XdpAction.DROP, XdpAction.PASS  # abi.py's, the one definition
#: the kernel refuses XDP test runs on less than an Ethernet header
#: (net/bpf/test_run.c: data_size_in < ETH_HLEN -> EINVAL)
ETH_HLEN = 14

MAC_SRC = "02:00:00:00:00:01"
MAC_DST = "02:00:00:00:00:02"

DST4 = "198.18.0.1"
DST6 = "2001:2::1"

BENCH_V4 = ipaddress.ip_network("198.18.0.0/15")
BENCH_V6 = ipaddress.ip_network("2001:2::/48")

# byte offsets of the L3 fields the program needs, from the L3 header start
V4_SADDR_END = 16  # saddr is bytes 12..15
V4_HDR = 20
V6_SADDR_END = 24  # saddr is bytes 8..23
V6_HDR = 40


def _check(addr: str) -> str:
    a = ipaddress.ip_address(addr)
    assert a in (BENCH_V4 if a.version == 4 else BENCH_V6), f"{addr} is not a benchmarking address"
    return addr


def eth(*tags, type=None):
    """Ethernet, then VLAN tags given as ("ad"|"q", vid) outermost first."""
    p = Ether(src=MAC_SRC, dst=MAC_DST) if type is None else Ether(src=MAC_SRC, dst=MAC_DST, type=type)
    for kind, vid in tags:
        p = p / (Dot1AD(vlan=vid) if kind == "ad" else Dot1Q(vlan=vid))
    return p


def ip4(src: str, dst: str = DST4, **kw):
    return IP(src=_check(src), dst=_check(dst), **kw)


def ip6(src: str, dst: str = DST6, **kw):
    return IPv6(src=_check(src), dst=_check(dst), **kw)


def tcp(sport=40000, dport=80, flags="S"):
    return TCP(sport=sport, dport=dport, flags=flags)


def udp(sport=40001, dport=53):
    return UDP(sport=sport, dport=dport) / Raw(b"q" * 12)


def icmp4(type=8, code=0):
    return ICMP(type=type, code=code) / Raw(b"ping")


def icmp6():
    return ICMPv6EchoRequest(data=b"ping")


def arp():
    return ARP(op=1, psrc="198.18.0.2", pdst=DST4, hwsrc=MAC_SRC)


def ah(nh: int):
    """AH with a 12-byte ICV: 24 bytes, payload length (24 / 4) - 2 = 4."""
    return AH(nh=nh, payloadlen=4, spi=0x100, seq=1, icv=b"\0" * 12)


# IPv6 extension headers with lengths the parser must step over correctly
def hbh():
    return IPv6ExtHdrHopByHop(options=[PadN(optdata=b"\0" * 12)])  # 16 bytes (len=1)


def rthdr():
    return IPv6ExtHdrRouting(addresses=["2001:2::9"])  # 24 bytes (len=2)


def dstopt():
    return IPv6ExtHdrDestOpt()  # 8 bytes (len=0)


def dstopts(n: int):
    """n destination-options headers back to back."""
    p = dstopt()
    for _ in range(n - 1):
        p = p / dstopt()
    return p


def frag6(offset=0, m=1, nh=None):
    """Fragment header; offset in 8-byte units. nh None: scapy fills it in
    from the next layer (a non-first fragment has none: pass nh)."""
    if nh is None:
        return IPv6ExtHdrFragment(offset=offset, m=m, id=0x1234)
    return IPv6ExtHdrFragment(nh=nh, offset=offset, m=m, id=0x1234)


def v4_options_rr():
    return [IPOption_Router_Alert()]  # 4 bytes: ihl 6


def v4_options_full():
    return [IPOption_NOP()] * 40  # 40 bytes: ihl 15, the maximum


def l3_offset(vlans: int) -> int:
    """Offset of the L3 header: Ethernet (14 bytes) plus 4 bytes a tag."""
    return 14 + 4 * vlans
