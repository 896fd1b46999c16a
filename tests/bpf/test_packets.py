"""The compiled program on crafted frames: one table row per case.

Each row names the frame (built with scapy, see frames.py), the list state
it runs against, the verdict (XDP_PASS / XDP_DROP), the reason counted in
the per-CPU `stats` array, and every accounting event the frame must count
(all others must stay still). Rows whose packet is accounted also name the
protocol, source-port and destination-port histogram buckets it must land
in, which checks that the parser found the L4 header (ports at the wrong
offset land in the wrong bucket).

Then the truncation sweep: frames cut at every length.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass
from typing import Optional

import pytest
from scapy.packet import Packet, Raw

from seawall.control.datapath import abi, bpf
from seawall.control.datapath.abi import Event, Feature, Reason

from frames import (
    ETH_HLEN,
    XDP_DROP,
    XDP_PASS,
    V4_HDR,
    V4_SADDR_END,
    V6_HDR,
    V6_SADDR_END,
    ah,
    arp,
    dstopt,
    dstopts,
    eth,
    frag6,
    hbh,
    icmp4,
    icmp6,
    ip4,
    ip6,
    l3_offset,
    rthdr,
    tcp,
    udp,
    v4_options_full,
    v4_options_rr,
)

BAD4 = "198.18.1.66"  # on the blocklist in most rows
OK4 = "198.18.2.10"  # on no list
BAD6 = "2001:2:0:66::66"
OK6 = "2001:2:0:2::10"
BLOCKED = (f"{BAD4}/32", f"{BAD6}/128")

VLAN, OPTS, EXT6 = Event.VLAN, Event.IP_OPTIONS, Event.IPV6_EXT
FRAG, NOL4 = Event.FRAGMENT, Event.L4_UNPARSED

# what an accounted packet counts on its first sighting (the doorkeeper
# is reset before every test, so every accounted row is a first sighting)
ACCOUNTED = (Reason.PASS_CLEAN, Reason.MON_BLOCK)


@dataclass(frozen=True)
class Case:
    id: str
    frame: Packet
    verdict: int
    reason: Reason
    blocked: tuple = BLOCKED
    allowed: tuple = ()
    events: tuple = ()  # events counted once each; every other one stays still
    l4: Optional[tuple] = None  # (proto, sport bucket, dport bucket) when accounted


def clean(id, frame, l4, events=(), **kw):
    return Case(id, frame, XDP_PASS, Reason.PASS_CLEAN, events=events, l4=l4, **kw)


def dropped(id, frame, events=(), **kw):
    return Case(id, frame, XDP_DROP, Reason.DROP_BLOCK, events=events, **kw)


TCP_, UDP_, ICMP_, ICMP6_ = 6, 17, 1, 58
T = (TCP_, 40000, 80)  # tcp() defaults
U = (UDP_, 40001, 53)  # udp() defaults

CHAIN = lambda: hbh() / dstopt() / rthdr() / frag6(0, 1) / ah(nh=60) / dstopt()  # noqa: E731

CASES = [
    # --- plain IPv4 ------------------------------------------------------
    clean("v4-tcp-syn-clean", eth() / ip4(OK4) / tcp(), T),
    dropped("v4-tcp-syn-blocked", eth() / ip4(BAD4) / tcp()),
    clean("v4-udp-clean", eth() / ip4(OK4) / udp(), U),
    dropped("v4-udp-blocked", eth() / ip4(BAD4) / udp()),
    # ICMP type and code stand in the sport and dport buckets
    clean("v4-icmp-unreach-clean", eth() / ip4(OK4) / icmp4(3, 3), (ICMP_, 3, 3)),
    dropped("v4-icmp-echo-blocked", eth() / ip4(BAD4) / icmp4(8, 0)),
    clean("v4-gre-clean-no-ports", eth() / ip4(OK4, proto=47) / Raw(b"g" * 8), (47, 0, 0)),
    dropped("v4-gre-blocked", eth() / ip4(BAD4, proto=47) / Raw(b"g" * 8)),
    # --- plain IPv6 ------------------------------------------------------
    clean("v6-tcp-syn-clean", eth() / ip6(OK6) / tcp(), T),
    dropped("v6-tcp-syn-blocked", eth() / ip6(BAD6) / tcp()),
    clean("v6-udp-clean", eth() / ip6(OK6) / udp(), U),
    dropped("v6-udp-blocked", eth() / ip6(BAD6) / udp()),
    clean("v6-icmp6-echo-clean", eth() / ip6(OK6) / icmp6(), (ICMP6_, 128, 0)),
    dropped("v6-icmp6-echo-blocked", eth() / ip6(BAD6) / icmp6()),
    # --- VLAN: 802.1Q, QinQ (802.1ad + 802.1Q), double 802.1Q ------------
    clean("v4-dot1q-tcp-clean", eth(("q", 10)) / ip4(OK4) / tcp(), T, events=(VLAN,)),
    dropped("v4-dot1q-tcp-blocked", eth(("q", 10)) / ip4(BAD4) / tcp(), events=(VLAN,)),
    clean("v6-dot1q-udp-clean", eth(("q", 10)) / ip6(OK6) / udp(), U, events=(VLAN,)),
    dropped("v6-dot1q-udp-blocked", eth(("q", 10)) / ip6(BAD6) / udp(), events=(VLAN,)),
    clean("v4-qinq-udp-clean", eth(("ad", 100), ("q", 200)) / ip4(OK4) / udp(), U, events=(VLAN,)),
    dropped("v4-qinq-udp-blocked", eth(("ad", 100), ("q", 200)) / ip4(BAD4) / udp(), events=(VLAN,)),
    clean("v6-qinq-tcp-clean", eth(("ad", 100), ("q", 200)) / ip6(OK6) / tcp(), T, events=(VLAN,)),
    dropped("v6-qinq-tcp-blocked", eth(("ad", 100), ("q", 200)) / ip6(BAD6) / tcp(), events=(VLAN,)),
    dropped("v4-double-dot1q-blocked", eth(("q", 100), ("q", 200)) / ip4(BAD4) / tcp(), events=(VLAN,)),
    # More tags than VLAN_MAX_DEPTH (2): the third tag's EtherType is what
    # the parser is left with, so the frame is not IP to it, even from a
    # blocked source (the host stack has no triple-tagged VLAN device).
    Case("v4-triple-tag-blocked-src", eth(("ad", 1), ("q", 2), ("q", 3)) / ip4(BAD4) / tcp(),
         XDP_PASS, Reason.PASS_NOT_IP, events=(VLAN,)),
    Case("v6-triple-tag-blocked-src", eth(("ad", 1), ("q", 2), ("q", 3)) / ip6(BAD6) / tcp(),
         XDP_PASS, Reason.PASS_NOT_IP, events=(VLAN,)),
    # --- not IP ----------------------------------------------------------
    Case("arp-request", eth() / arp(), XDP_PASS, Reason.PASS_NOT_IP),
    Case("arp-dot1q", eth(("q", 10)) / arp(), XDP_PASS, Reason.PASS_NOT_IP, events=(VLAN,)),
    Case("lldp-ethertype", eth(type=0x88CC) / Raw(b"\0" * 46), XDP_PASS, Reason.PASS_NOT_IP),
    # --- IPv4 options (ihl > 5) ------------------------------------------
    clean("v4-ihl6-router-alert-clean", eth() / ip4(OK4, options=v4_options_rr()) / tcp(), T,
          events=(OPTS,)),
    dropped("v4-ihl6-router-alert-blocked", eth() / ip4(BAD4, options=v4_options_rr()) / tcp(),
            events=(OPTS,)),
    clean("v4-ihl15-max-options-clean", eth() / ip4(OK4, options=v4_options_full()) / udp(), U,
          events=(OPTS,)),
    dropped("v4-ihl15-max-options-blocked", eth() / ip4(BAD4, options=v4_options_full()) / udp(),
            events=(OPTS,)),
    # --- IPv6 extension headers --------------------------------------------
    clean("v6-hbh-tcp-clean", eth() / ip6(OK6) / hbh() / tcp(), T, events=(EXT6,)),
    dropped("v6-hbh-tcp-blocked", eth() / ip6(BAD6) / hbh() / tcp(), events=(EXT6,)),
    clean("v6-routing-udp-clean", eth() / ip6(OK6) / rthdr() / udp(), U, events=(EXT6,)),
    dropped("v6-routing-udp-blocked", eth() / ip6(BAD6) / rthdr() / udp(), events=(EXT6,)),
    clean("v6-dstopt-tcp-clean", eth() / ip6(OK6) / dstopt() / tcp(), T, events=(EXT6,)),
    dropped("v6-dstopt-tcp-blocked", eth() / ip6(BAD6) / dstopt() / tcp(), events=(EXT6,)),
    clean("v6-ah-tcp-clean", eth() / ip6(OK6) / ah(nh=TCP_) / tcp(), T, events=(EXT6,)),
    dropped("v6-ah-tcp-blocked", eth() / ip6(BAD6) / ah(nh=TCP_) / tcp(), events=(EXT6,)),
    clean("v6-chain-hbh-dst-rt-frag0-ah-dst-tcp-clean", eth() / ip6(OK6) / CHAIN() / tcp(), T,
          events=(EXT6,)),
    dropped("v6-chain-hbh-dst-rt-frag0-ah-dst-tcp-blocked", eth() / ip6(BAD6) / CHAIN() / tcp(),
            events=(EXT6,)),
    # nine headers: one more than IPV6_EXT_MAX_CHAIN (8), so no L4; the
    # protocol left is the ninth header's type (60, destination options)
    clean("v6-chain-9-dstopts-too-long-clean", eth() / ip6(OK6) / dstopts(9) / tcp(), (60, 0, 0),
          events=(EXT6, NOL4)),
    dropped("v6-chain-9-dstopts-too-long-blocked", eth() / ip6(BAD6) / dstopts(9) / tcp(),
            events=(EXT6,)),
    clean("v6-esp-no-l4-clean", eth() / ip6(OK6, nh=50) / Raw(b"\0" * 16), (50, 0, 0), events=(NOL4,)),
    clean("v6-no-next-header-clean", eth() / ip6(OK6, nh=59), (59, 0, 0), events=(NOL4,)),
    dropped("v6-esp-blocked", eth() / ip6(BAD6, nh=50) / Raw(b"\0" * 16)),
    # --- IPv4 fragments: judged by address; only the first carries L4 --------
    clean("v4-frag-first-udp-clean", eth() / ip4(OK4, flags="MF", frag=0) / udp(), U),
    dropped("v4-frag-first-udp-blocked", eth() / ip4(BAD4, flags="MF", frag=0) / udp()),
    clean("v4-frag-middle-clean", eth() / ip4(OK4, flags="MF", frag=185, proto=UDP_) / Raw(b"f" * 24),
          (UDP_, 0, 0), events=(FRAG, NOL4)),
    dropped("v4-frag-middle-blocked", eth() / ip4(BAD4, flags="MF", frag=185, proto=UDP_) / Raw(b"f" * 24)),
    dropped("v4-frag-last-blocked", eth() / ip4(BAD4, frag=370, proto=UDP_) / Raw(b"f" * 24)),
    # --- IPv6 fragments ----------------------------------------------------
    clean("v6-frag-first-tcp-clean", eth() / ip6(OK6) / frag6(0, 1) / tcp(), T, events=(EXT6,)),
    dropped("v6-frag-first-tcp-blocked", eth() / ip6(BAD6) / frag6(0, 1) / tcp(), events=(EXT6,)),
    clean("v6-frag-middle-udp-clean", eth() / ip6(OK6) / frag6(100, 1, nh=UDP_) / Raw(b"f" * 24),
          (UDP_, 0, 0), events=(EXT6, FRAG, NOL4)),
    dropped("v6-frag-middle-udp-blocked", eth() / ip6(BAD6) / frag6(100, 1, nh=UDP_) / Raw(b"f" * 24),
            events=(EXT6,)),
    dropped("v6-frag-last-udp-blocked", eth() / ip6(BAD6) / frag6(200, 0, nh=UDP_) / Raw(b"f" * 24),
            events=(EXT6,)),
    # --- bogus IPv4 headers: the source address is still there ------------
    dropped("v4-ihl4-bogus-blocked", eth() / ip4(BAD4, ihl=4) / tcp()),
    dropped("v4-ihl0-bogus-blocked", eth() / ip4(BAD4, ihl=0) / tcp()),
    clean("v4-ihl4-bogus-clean-no-l4", eth() / ip4(OK4, ihl=4) / tcp(), (TCP_, 0, 0), events=(NOL4,)),
    # ihl 15 claims 60 bytes of header; the packet ends before that
    dropped("v4-ihl15-past-end-blocked", eth() / ip4(BAD4, ihl=15) / Raw(b"x" * 8), events=(OPTS,)),
    clean("v4-ihl15-past-end-clean", eth() / ip4(OK4, ihl=15, proto=TCP_) / Raw(b"x" * 8), (TCP_, 0, 0),
          events=(OPTS, NOL4)),
    dropped("v4-totlen-10-blocked", eth() / ip4(BAD4, len=10) / tcp()),
    dropped("v4-totlen-65535-blocked", eth() / ip4(BAD4, len=65535) / tcp()),
    clean("v4-totlen-10-clean-judged-on-frame", eth() / ip4(OK4, len=10) / tcp(), T),
    # --- allowlist wins over blocklist --------------------------------------
    Case("v4-allow-and-block-same-host", eth() / ip4(BAD4) / tcp(), XDP_PASS, Reason.PASS_ALLOW,
         blocked=(f"{BAD4}/32",), allowed=(f"{BAD4}/32",)),
    Case("v6-allow-and-block-same-host", eth() / ip6(BAD6) / tcp(), XDP_PASS, Reason.PASS_ALLOW,
         blocked=(f"{BAD6}/128",), allowed=(f"{BAD6}/128",)),
    Case("v4-allow-24-covers-blocked-host", eth(("q", 5)) / ip4(BAD4) / udp(), XDP_PASS, Reason.PASS_ALLOW,
         blocked=(f"{BAD4}/32",), allowed=("198.18.1.0/24",), events=(VLAN,)),
    Case("v4-block-24-covers-allowed-host", eth() / ip4(BAD4) / udp(), XDP_PASS, Reason.PASS_ALLOW,
         blocked=("198.18.1.0/24",), allowed=(f"{BAD4}/32",)),
    Case("v6-allow-48-covers-blocked-64", eth() / ip6(BAD6) / udp(), XDP_PASS, Reason.PASS_ALLOW,
         blocked=("2001:2:0:66::/64",), allowed=("2001:2::/48",)),
    dropped("v4-allowed-neighbour-does-not-help", eth() / ip4(BAD4) / tcp(),
            blocked=(f"{BAD4}/32",), allowed=("198.18.1.67/32",)),
    # --- longest-prefix match: members drop, neighbours pass -----------------
    dropped("v4-lpm24-first-member", eth() / ip4("198.18.5.0") / tcp(), blocked=("198.18.5.0/24",)),
    dropped("v4-lpm24-member", eth() / ip4("198.18.5.7") / tcp(), blocked=("198.18.5.0/24",)),
    dropped("v4-lpm24-last-member", eth() / ip4("198.18.5.255") / tcp(), blocked=("198.18.5.0/24",)),
    clean("v4-lpm24-neighbour-below", eth() / ip4("198.18.4.255") / tcp(), T, blocked=("198.18.5.0/24",)),
    clean("v4-lpm24-neighbour-above", eth() / ip4("198.18.6.0") / tcp(), T, blocked=("198.18.5.0/24",)),
    clean("v4-host32-neighbour", eth() / ip4("198.18.1.67") / tcp(), T),
    dropped("v6-lpm64-member", eth() / ip6("2001:2:0:5::abcd") / tcp(), blocked=("2001:2:0:5::/64",)),
    dropped("v6-lpm64-last-member", eth() / ip6("2001:2:0:5:ffff:ffff:ffff:ffff") / tcp(),
            blocked=("2001:2:0:5::/64",)),
    clean("v6-lpm64-neighbour-below", eth() / ip6("2001:2:0:4:ffff:ffff:ffff:ffff") / tcp(), T,
          blocked=("2001:2:0:5::/64",)),
    clean("v6-lpm64-neighbour-above", eth() / ip6("2001:2:0:6::") / tcp(), T, blocked=("2001:2:0:5::/64",)),
    clean("v6-host128-neighbour", eth() / ip6("2001:2:0:66::67") / tcp(), T),
]


def _len_class(n: int) -> int:
    return min(n // abi.LEN_CLASS_WIDTH, abi.LEN_CLASSES - 1)


def test_table_ids_are_unique():
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids)), sorted(i for i in ids if ids.count(i) > 1)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_packet(datapath, case: Case):
    for cidr in case.blocked:
        datapath.block(cidr)
    for cidr in case.allowed:
        datapath.allow(cidr)
    frame = bytes(case.frame)
    accounted = case.reason in ACCOUNTED
    assert (case.l4 is not None) == accounted, "table row: l4 buckets go with accounted reasons only"

    watch = [(Feature.LEN, _len_class(len(frame)))]
    if case.l4:
        proto, sport, dport = case.l4
        watch += [(Feature.PROTO, proto), (Feature.SPORT, sport), (Feature.DPORT, dport)]
    feat0 = datapath.features(watch)
    bytes0 = datapath.reason_bytes()

    out = datapath.run_counted(frame)
    what = f"{case.id}: {case.frame.summary()} ({len(frame)} bytes)"

    assert out.retval == case.verdict, what
    assert out.reason == case.reason, what
    assert abi.REASON_VERDICT[case.reason] == ("drop" if case.verdict == XDP_DROP else "pass")
    assert (datapath.reason_bytes() - bytes0)[case.reason] == len(frame), what

    want = {ev: 0 for ev in Event}
    for ev in case.events:
        want[ev] += 1
    if accounted:
        want[Event.SRC_DEFERRED] += 1  # first sighting of this source
    got = {ev: out.event(ev) for ev in Event}
    assert got == want, what

    moved = {k: v - feat0[k] for k, v in datapath.features(watch).items()}
    assert moved == {k: int(accounted) for k in watch}, what


REPEAT = 100


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_packet_repeated(datapath, case: Case):
    """The same row run REPEAT times in one BPF_PROG_TEST_RUN call (the
    table doubles as a benchmark this way): the verdict does not drift as
    the source moves from first sighting to admitted to tracked, and every
    run counts its reason."""
    for cidr in case.blocked:
        datapath.block(cidr)
    for cidr in case.allowed:
        datapath.allow(cidr)
    r0 = datapath.reasons()
    assert datapath.run(bytes(case.frame), repeat=REPEAT) == case.verdict, case.id
    moved = datapath.reasons() - r0
    assert moved[case.reason] == REPEAT and moved.sum() == REPEAT, (case.id, moved.tolist())


# --- short frames and truncation ------------------------------------------------


def test_kernel_refuses_frames_shorter_than_ethernet(datapath):
    """BPF_PROG_TEST_RUN for XDP refuses data_size_in < ETH_HLEN (EINVAL):
    such frames can never reach the program, so sweeps start at 14."""
    r0 = datapath.reasons()
    for n in range(1, ETH_HLEN):
        with pytest.raises(bpf.BpfError) as ei:
            datapath.run(b"\xff" * n)
        assert ei.value.errno == errno.EINVAL, n
    assert (datapath.reasons() == r0).all(), "a refused frame must not reach the program"
    assert datapath.run(b"\xff" * ETH_HLEN) in (XDP_PASS, XDP_DROP)


@pytest.mark.parametrize("ethertype,reason", [
    (0x0800, Reason.PASS_MALFORMED),  # IPv4 with no header at all
    (0x86DD, Reason.PASS_MALFORMED),
    (0x8100, Reason.PASS_MALFORMED),  # VLAN tag missing
    (0x88A8, Reason.PASS_MALFORMED),
    (0x0806, Reason.PASS_NOT_IP),  # ARP (header irrelevant to the program)
], ids=["ipv4", "ipv6", "dot1q", "dot1ad", "arp"])
def test_bare_ethernet_header(datapath, ethertype, reason):
    out = datapath.run_counted(bytes(eth(type=ethertype)))
    assert len(bytes(eth(type=ethertype))) == ETH_HLEN
    assert (out.retval, out.reason) == (XDP_PASS, reason)


TRUNC_BASES = [
    # (id, version, vlan tags, builder taking the source address)
    ("v4-tcp", 4, 0, lambda s: eth() / ip4(s) / tcp()),
    ("v4-dot1q-udp", 4, 1, lambda s: eth(("q", 7)) / ip4(s) / udp()),
    ("v4-qinq-icmp", 4, 2, lambda s: eth(("ad", 7), ("q", 8)) / ip4(s) / icmp4()),
    ("v4-ihl15-tcp", 4, 0, lambda s: eth() / ip4(s, options=v4_options_full()) / tcp()),
    ("v4-frag-middle", 4, 0, lambda s: eth() / ip4(s, frag=9, proto=UDP_) / Raw(b"f" * 16)),
    ("v6-tcp", 6, 0, lambda s: eth() / ip6(s) / tcp()),
    ("v6-dot1q-udp", 6, 1, lambda s: eth(("q", 7)) / ip6(s) / udp()),
    ("v6-qinq-icmp6", 6, 2, lambda s: eth(("ad", 7), ("q", 8)) / ip6(s) / icmp6()),
    ("v6-ext-chain-tcp", 6, 0, lambda s: eth() / ip6(s) / CHAIN() / tcp()),
]


@pytest.mark.parametrize("listed", ["blocked", "clean"])
@pytest.mark.parametrize("base", TRUNC_BASES, ids=[b[0] for b in TRUNC_BASES])
def test_truncated_at_every_length(datapath, base, listed):
    """Cut the frame at every length. Every cut runs (PASS or DROP, exactly
    one reason counted); a blocked source drops as soon as its whole
    source address is in the frame, whatever follows is missing; a cut
    inside the fixed L3 header that is not dropped is PASS_MALFORMED."""
    name, version, vlans, build = base
    src = {4: {"blocked": BAD4, "clean": OK4}, 6: {"blocked": BAD6, "clean": OK6}}[version][listed]
    datapath.block(f"{BAD4}/32")
    datapath.block(f"{BAD6}/128")
    full = bytes(build(src))
    l3 = l3_offset(vlans)
    saddr_end = l3 + (V4_SADDR_END if version == 4 else V6_SADDR_END)
    hdr_end = l3 + (V4_HDR if version == 4 else V6_HDR)
    assert len(full) > hdr_end

    seen = {}
    for n in range(1, len(full) + 1):
        cut = full[:n]
        if n < ETH_HLEN:
            with pytest.raises(bpf.BpfError) as ei:
                datapath.run(cut)
            assert ei.value.errno == errno.EINVAL, n
            continue
        out = datapath.run_counted(cut)
        reason = out.reason
        where = f"{name} from {src} cut at {n} of {len(full)} bytes"
        assert out.retval in (XDP_PASS, XDP_DROP), where
        assert out.retval == (XDP_DROP if abi.REASON_VERDICT[reason] == "drop" else XDP_PASS), where
        if listed == "blocked" and n >= saddr_end:
            assert (out.retval, reason) == (XDP_DROP, Reason.DROP_BLOCK), where
        elif n < hdr_end:
            assert (out.retval, reason) == (XDP_PASS, Reason.PASS_MALFORMED), where
        else:
            assert (out.retval, reason) == (XDP_PASS, Reason.PASS_CLEAN), where
        seen[reason] = seen.get(reason, 0) + 1
    # the sweep exercised both sides of the boundary
    assert seen.get(Reason.PASS_MALFORMED) == min(saddr_end if listed == "blocked" else hdr_end,
                                                  len(full) + 1) - ETH_HLEN


# --- ICMP error rules (a reflection's backscatter) --------------------------


def test_icmp_type_and_code_rules_cut_those_errors_only(datapath):
    """`icmp type 3 code 3` and `icmp type 11` drop port-unreachable and
    time-exceeded; fragmentation-needed (type 3 code 4, path MTU
    discovery) and echo pass."""
    from seawall.control.signature import Signature

    datapath.lists.sig_add(Signature.parse("icmp type 3 code 3"), None, "test")
    datapath.lists.sig_add(Signature.parse("icmp type 11"), None, "test")
    try:
        for (t, c), want in (((3, 3), Reason.DROP_SIG), ((11, 0), Reason.DROP_SIG), ((11, 1), Reason.DROP_SIG),
                             ((3, 4), Reason.PASS_CLEAN), ((3, 13), Reason.PASS_CLEAN), ((8, 0), Reason.PASS_CLEAN)):
            out = datapath.run_counted(bytes(eth() / ip4("198.18.9.30") / icmp4(t, c)))
            assert out.reason == want, (t, c, out.reason)
    finally:
        datapath.lists.sig_flush()
