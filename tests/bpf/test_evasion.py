"""Evasion: a blocked source stays dropped however its packets are dressed.

test_packets.py has one row per disguise, from a blocked /32 or /128, and
cuts a few stacks at every length. Here the disguises are combined: every
L2 encapsulation (none, 802.1Q, 802.1ad alone, QinQ, double 802.1Q) times
every L3 disguise (IPv4 options, bogus IHL, bogus total length, first and
non-first fragments, fragments with options, IPv6 extension chains up to
the walk's limit and past it, AH, bogus payload length, non-first
fragments behind a chain) times where the frame ends (whole, right after
the source address, inside the fixed header, inside L4), for a source
blocked as a host (/32, /128) and one blocked through its network (/24,
/64; the network's first, middle and last address). Every combination must
count DROP_BLOCK, never anything else.

Then the same for a spoofed flood matched by a signature rule: the rule
still matches through VLAN tags, IPv4 options and IPv6 extension chains of
up to IPV6_EXT_MAX_CHAIN (8) headers.
"""

from __future__ import annotations

import ipaddress
import itertools
from dataclasses import dataclass

import pytest
from scapy.layers.inet import IP, TCP, UDP, IPOption_NOP, IPOption_Router_Alert
from scapy.layers.inet6 import IPv6, IPv6ExtHdrDestOpt
from scapy.packet import Raw

from seawall.control.datapath import abi
from seawall.control.datapath.abi import Reason
from seawall.control.signature import Signature

from frames import XDP_DROP, XDP_PASS, ah, dstopts, eth, frag6, hbh, rthdr

DST4, DST6 = "198.18.0.1", "2001:2::1"

# (id, source address, what the blocklist holds)
SOURCES = [
    ("v4-host32", "198.18.3.66", "198.18.3.66/32"),
    ("v4-first-of-24", "198.18.4.0", "198.18.4.0/24"),
    ("v4-inside-24", "198.18.4.77", "198.18.4.0/24"),
    ("v4-last-of-24", "198.18.4.255", "198.18.4.0/24"),
    ("v6-host128", "2001:2:0:3::66", "2001:2:0:3::66/128"),
    ("v6-first-of-64", "2001:2:0:4::", "2001:2:0:4::/64"),
    ("v6-inside-64", "2001:2:0:4:dead:beef:0:77", "2001:2:0:4::/64"),
    ("v6-last-of-64", "2001:2:0:4:ffff:ffff:ffff:ffff", "2001:2:0:4::/64"),
]

L2 = [
    ("untagged", ()),
    ("dot1q", (("q", 10),)),
    ("dot1ad", (("ad", 20),)),
    ("qinq", (("ad", 100), ("q", 200))),
    ("double-dot1q", (("q", 100), ("q", 200))),
]


def _tcp():
    return TCP(sport=40000, dport=443, flags="S")


def _udp():
    return UDP(sport=40001, dport=53) / Raw(b"q" * 12)


# L3 disguises: (id, builder(src) -> L3 packet). Each is a packet the
# kernel stack would still deliver, or one built to confuse a parser.
V4_DISGUISES = [
    ("plain", lambda s: IP(src=s, dst=DST4) / _tcp()),
    ("router-alert-option", lambda s: IP(src=s, dst=DST4, options=[IPOption_Router_Alert()]) / _udp()),
    ("max-options-ihl15", lambda s: IP(src=s, dst=DST4, options=[IPOption_NOP()] * 40) / _tcp()),
    ("ihl0", lambda s: IP(src=s, dst=DST4, ihl=0) / _tcp()),
    ("ihl4", lambda s: IP(src=s, dst=DST4, ihl=4) / _tcp()),
    ("ihl15-no-options", lambda s: IP(src=s, dst=DST4, ihl=15) / _udp()),
    ("totlen-0", lambda s: IP(src=s, dst=DST4, len=0) / _tcp()),
    ("totlen-19", lambda s: IP(src=s, dst=DST4, len=19) / _tcp()),
    ("totlen-65535", lambda s: IP(src=s, dst=DST4, len=65535) / _udp()),
    ("version-6-in-ipv4-ethertype", lambda s: IP(src=s, dst=DST4, version=6) / _tcp()),
    ("first-fragment", lambda s: IP(src=s, dst=DST4, flags="MF", frag=0) / _tcp()),
    ("middle-fragment", lambda s: IP(src=s, dst=DST4, flags="MF", frag=185, proto=6) / Raw(b"f" * 32)),
    ("last-fragment", lambda s: IP(src=s, dst=DST4, frag=370, proto=17) / Raw(b"f" * 32)),
    ("df-and-offset", lambda s: IP(src=s, dst=DST4, flags="DF", frag=1, proto=6) / Raw(b"f" * 32)),
    ("fragment-with-options", lambda s: IP(src=s, dst=DST4, flags="MF", frag=7, proto=17,
                                           options=[IPOption_Router_Alert()]) / Raw(b"f" * 16)),
    ("fragment-bogus-ihl", lambda s: IP(src=s, dst=DST4, flags="MF", frag=7, ihl=3) / Raw(b"f" * 16)),
    ("tiny-first-fragment", lambda s: IP(src=s, dst=DST4, flags="MF", frag=0, proto=6) / Raw(b"\x9c\x40")),
]

V6_DISGUISES = [
    ("plain", lambda s: IPv6(src=s, dst=DST6) / _tcp()),
    ("hop-by-hop", lambda s: IPv6(src=s, dst=DST6) / hbh() / _udp()),
    ("routing", lambda s: IPv6(src=s, dst=DST6) / rthdr() / _tcp()),
    ("ah", lambda s: IPv6(src=s, dst=DST6) / ah(nh=6) / _tcp()),
    ("chain-of-8", lambda s: IPv6(src=s, dst=DST6) / dstopts(8) / _tcp()),
    ("chain-of-12", lambda s: IPv6(src=s, dst=DST6) / dstopts(12) / _tcp()),
    ("mixed-chain", lambda s: IPv6(src=s, dst=DST6) / hbh() / rthdr() / ah(nh=60) / IPv6ExtHdrDestOpt() / _udp()),
    ("first-fragment", lambda s: IPv6(src=s, dst=DST6) / frag6(0, 1) / _tcp()),
    ("middle-fragment", lambda s: IPv6(src=s, dst=DST6) / frag6(100, 1, nh=6) / Raw(b"f" * 32)),
    ("last-fragment-behind-chain", lambda s: IPv6(src=s, dst=DST6) / hbh() / rthdr() / frag6(200, 0, nh=17)
     / Raw(b"f" * 32)),
    ("atomic-fragment", lambda s: IPv6(src=s, dst=DST6) / frag6(0, 0) / _udp()),
    ("plen-0", lambda s: IPv6(src=s, dst=DST6, plen=0) / _tcp()),
    ("plen-65535", lambda s: IPv6(src=s, dst=DST6, plen=65535) / _udp()),
    ("esp", lambda s: IPv6(src=s, dst=DST6, nh=50) / Raw(b"\0" * 24)),
    ("no-next-header", lambda s: IPv6(src=s, dst=DST6, nh=59)),
    ("ext-hdrlen-past-end", lambda s: IPv6(src=s, dst=DST6, nh=0) / Raw(bytes([6, 255]) + b"\0" * 6) / _tcp()),
]

V4_SADDR_END, V4_HDR, V6_SADDR_END, V6_HDR = 16, 20, 24, 40


@dataclass(frozen=True)
class Variant:
    what: str
    frame: bytes


def variants(src: str):
    """Every combination of L2, L3 disguise and cut for one source."""
    v6 = ":" in src
    for (l2, tags), (l3, build) in itertools.product(L2, V6_DISGUISES if v6 else V4_DISGUISES):
        full = bytes(eth(*tags) / build(src))
        at = 14 + 4 * len(tags)
        saddr_end = at + (V6_SADDR_END if v6 else V4_SADDR_END)
        hdr_end = at + (V6_HDR if v6 else V4_HDR)
        cuts = {"whole": len(full), "after-source": saddr_end, "inside-fixed-header": hdr_end - 1,
                "after-fixed-header": hdr_end, "inside-l4": min(len(full), hdr_end + 3)}
        for cut, n in cuts.items():
            yield Variant(f"{l2}/{l3}/{cut} ({n} of {len(full)} bytes)", full[:n])


@pytest.mark.parametrize("sid,src,blocked", SOURCES, ids=[s[0] for s in SOURCES])
def test_blocked_source_dropped_in_every_disguise(datapath, sid, src, blocked):
    datapath.block(blocked)
    r0 = datapath.reasons()
    failures, n = [], 0
    for v in variants(src):
        out = datapath.run_counted(v.frame)
        n += 1
        if (out.retval, out.reason) != (XDP_DROP, Reason.DROP_BLOCK):
            failures.append(f"{v.what}: {out.retval}/{out.reason.name}")
    assert not failures, f"{sid}: {len(failures)} of {n} disguises passed: " + "; ".join(failures[:20])
    moved = datapath.reasons() - r0
    assert moved[Reason.DROP_BLOCK] == n == moved.sum()
    assert n >= 5 * 5 * min(len(V4_DISGUISES), len(V6_DISGUISES))


@pytest.mark.parametrize("sid,src,blocked", SOURCES, ids=[s[0] for s in SOURCES])
def test_neighbour_in_the_same_disguises_passes(datapath, sid, src, blocked):
    """The other side: the same disguises from the address next to the
    blocked prefix never count DROP_BLOCK (the drops above are the
    blocklist's doing, not the disguise's)."""
    datapath.block(blocked)
    neighbour = str(ipaddress.ip_network(blocked).network_address - 1)
    for v in variants(neighbour):
        out = datapath.run_counted(v.frame)
        assert out.retval == XDP_PASS and out.reason != Reason.DROP_BLOCK, f"{neighbour} {v.what}"


def test_monitor_mode_counts_every_disguise_as_would_drop(datapath):
    datapath.block("198.18.4.0/24")
    datapath.set_config(abi.CfgFlag.MONITOR)
    for v in variants("198.18.4.77"):
        out = datapath.run_counted(v.frame)
        assert (out.retval, out.reason) == (XDP_PASS, Reason.MON_BLOCK), v.what


# --- signatures through disguises ------------------------------------------------------

SIG_DISGUISES = [
    # (id, builder(src) -> frame): all SYNs to port 443 with an L4 header in place
    ("v4-plain", lambda s: eth() / IP(src=s, dst=DST4) / _tcp()),
    ("v4-qinq", lambda s: eth(("ad", 1), ("q", 2)) / IP(src=s, dst=DST4) / _tcp()),
    ("v4-options", lambda s: eth(("q", 3)) / IP(src=s, dst=DST4, options=[IPOption_NOP()] * 40) / _tcp()),
    ("v4-first-fragment", lambda s: eth() / IP(src=s, dst=DST4, flags="MF") / _tcp()),
    ("v6-plain", lambda s: eth() / IPv6(src=s, dst=DST6) / _tcp()),
    ("v6-qinq-hbh", lambda s: eth(("ad", 1), ("q", 2)) / IPv6(src=s, dst=DST6) / hbh() / _tcp()),
    ("v6-first-fragment", lambda s: eth() / IPv6(src=s, dst=DST6) / frag6(0, 1) / _tcp()),
    ("v6-chain-of-7", lambda s: eth() / IPv6(src=s, dst=DST6) / dstopts(7) / _tcp()),
    # IPV6_EXT_MAX_CHAIN (8) extension headers, as the README promises
    ("v6-chain-of-8", lambda s: eth() / IPv6(src=s, dst=DST6) / dstopts(8) / _tcp()),
    ("v6-mixed-chain-of-8", lambda s: eth() / IPv6(src=s, dst=DST6) / hbh() / rthdr() / dstopts(2) / frag6(0, 1)
     / ah(nh=60) / dstopts(2) / _tcp()),
]


@pytest.mark.parametrize("did,build", SIG_DISGUISES, ids=[d[0] for d in SIG_DISGUISES])
def test_signature_matches_through_disguises(datapath, did, build):
    """A spoofed SYN flood to 443 meets `tcp dport 443 flags S`: every
    disguise that still carries the TCP header is dropped by the rule."""
    datapath.lists.sig_add(Signature(6, dport=443, tcp_flags=0x02), None, "test")
    try:
        src = "2001:2:0:9::9" if did.startswith("v6") else "198.18.9.9"
        out = datapath.run_counted(bytes(build(src)))
        assert (out.retval, out.reason) == (XDP_DROP, Reason.DROP_SIG), did
    finally:
        datapath.lists.sig_flush()


def test_chain_longer_than_the_walk_is_not_matched(datapath):
    """The documented limit: past IPV6_EXT_MAX_CHAIN headers the program
    does not look for the TCP header, so a port rule cannot match (the
    packet is accounted with no ports, and still judged on its source)."""
    datapath.lists.sig_add(Signature(6, dport=443, tcp_flags=0x02), None, "test")
    try:
        out = datapath.run_counted(bytes(eth() / IPv6(src="2001:2:0:9::9", dst=DST6) / dstopts(9) / _tcp()))
        assert (out.retval, out.reason) == (XDP_PASS, Reason.PASS_CLEAN)
        datapath.block("2001:2:0:9::/64")
        out = datapath.run_counted(bytes(eth() / IPv6(src="2001:2:0:9::9", dst=DST6) / dstopts(9) / _tcp()))
        assert (out.retval, out.reason) == (XDP_DROP, Reason.DROP_BLOCK)
    finally:
        datapath.lists.sig_flush()
