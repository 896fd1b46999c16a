"""A reference model of the XDP classifier in plain Python. Pure.

Given a frame's bytes and the contents of the maps the program reads (the
allow and block tries, the signature table, the monitor flag), classify()
says what xdp/seawall.c decides: the XDP verdict, the reason it counts, and
the parsing events it counts. tests/bpf/test_fuzz.py runs the compiled
program and this model on the same random frames and tables and fails on
any disagreement, so the model is written for clarity, not speed, and
follows the C program step by step (the comments name the C helper).

Not modelled: the state-dependent parts of accounting (doorkeeper, insert
budget, which admission event a packet counts) and the token bucket of a
rate-limited signature, whose outcome the caller supplies (rate_ok); of
SYN protection, the sockets and valid cookies (tests/bpf/test_syncookie_xdp.py):
the model's host has neither, as the fuzz's random frames find none.
"""

from __future__ import annotations

import struct
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Optional

from seawall.control.datapath import abi
from seawall.control.datapath.abi import BLOCK_EXPIRED_HOPS, IPV6_EXT_MAX_CHAIN, VLAN_MAX_DEPTH, Event, FragClass, Reason

# the verdicts and the tunables.h defaults the program is compiled with are abi.py's
XDP_DROP, XDP_PASS, XDP_TX = abi.XdpAction.DROP, abi.XdpAction.PASS, abi.XdpAction.TX

ETH_P_IP = 0x0800
ETH_P_IPV6 = 0x86DD
VLAN_TYPES = (0x8100, 0x88A8)  # 802.1Q, 802.1ad

IPPROTO_HOPOPTS, IPPROTO_ROUTING, IPPROTO_FRAGMENT = 0, 43, 44
IPPROTO_ESP, IPPROTO_AH, IPPROTO_NONE, IPPROTO_DSTOPTS = 50, 51, 59, 60
IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP, IPPROTO_ICMPV6 = 1, 6, 17, 58
EXT_HEADERS = (IPPROTO_HOPOPTS, IPPROTO_ROUTING, IPPROTO_DSTOPTS, IPPROTO_AH, IPPROTO_FRAGMENT)


@dataclass(frozen=True)
class Block:
    """A blocklist value: struct sw_block without the last-hit stamp."""

    expires_ns: int = 0  # CLOCK_BOOTTIME ns; 0: never
    prefixlen: int = 0  # the value's copy of the key's prefix length


@dataclass(frozen=True)
class Rule:
    """A signature slot: struct sw_sig."""

    proto: int = 0
    match: int = 0  # abi.SigMatch
    tcp_flags: int = 0
    dport: int = 0
    sport: int = 0
    len_min: int = 0
    len_max: int = 0
    rate_pps: int = 0
    expires_ns: int = 0

    @classmethod
    def from_kernel(cls, s: abi.SwSig) -> "Rule":
        return cls(s.proto, s.match, s.tcp_flags, s.dport, s.sport, s.len_min, s.len_max, s.rate_pps,
                   s.expires_ns)

    def to_kernel(self) -> abi.SwSig:
        return abi.SwSig(proto=self.proto, match=self.match, tcp_flags=self.tcp_flags, dport=self.dport,
                           sport=self.sport, len_min=self.len_min, len_max=self.len_max,
                           rate_pps=self.rate_pps, expires_ns=self.expires_ns)


@dataclass
class Tables:
    """What the program reads from its maps. Prefix keys are
    (prefixlen, network address bytes) with host bits clear, as the
    control plane writes them."""

    allow_v4: set = field(default_factory=set)
    allow_v6: set = field(default_factory=set)
    block_v4: dict = field(default_factory=dict)  # (plen, addr) -> Block
    block_v6: dict = field(default_factory=dict)
    sigs: list = field(default_factory=list)  # Rule per slot (at most MAX_SIGNATURES)
    sig_used: int = 0  # sig_meta.used
    monitor: bool = False
    syn_ports: dict = field(default_factory=dict)  # TCP port -> expires_ns of its syn_ports slot


@dataclass(frozen=True)
class Decision:
    verdict: int  # XDP_DROP, XDP_PASS or XDP_TX
    reason: Reason
    events: Counter  # Event -> count, the parsing and list events (no admission events)
    accounted: bool  # reached accounting (one admission event, features bumped)
    proto: Optional[int] = None
    sport: int = 0
    dport: int = 0
    tcp_flags: int = 0
    rate_slot: Optional[int] = None  # a rate-limited rule decided: its slot
    frag: FragClass = FragClass.NONE  # the fragment class it is accounted under
    dst: Optional[int] = None  # the destination's Feature.DST bucket (abi.dst_bucket), once the L3 header is whole

    def __str__(self) -> str:
        ev = ",".join(f"{e.name}={n}" for e, n in sorted(self.events.items()) if n)
        return (f"{abi.XdpAction(self.verdict).name}/{self.reason.name} events[{ev}] "
                f"accounted={self.accounted} proto={self.proto} sport={self.sport} dport={self.dport} "
                f"flags={self.tcp_flags:#x} frag={self.frag.name} dst={self.dst}")


def mask(addr: bytes, plen: int) -> bytes:
    """addr with every bit after the first plen cleared."""
    n = int.from_bytes(addr, "big")
    bits = len(addr) * 8
    keep = ((1 << plen) - 1) << (bits - plen) if plen else 0
    return (n & keep).to_bytes(len(addr), "big")


def lpm(table, addr: bytes, key_plen: int):
    """An LPM trie lookup with key prefix length key_plen: the longest entry
    of length <= key_plen matching addr. Returns (plen, value) or None."""
    for plen in range(key_plen, -1, -1):
        k = (plen, mask(addr, plen))
        if k in table:
            v = table[k] if isinstance(table, dict) else True
            return plen, v
    return None


# --- parsing (xdp/parsing.h) --------------------------------------------------


@dataclass
class _L3:
    version: int
    saddr: bytes
    proto: int
    pos: int  # cursor after the L3 header and extension headers
    l4_ok: bool = False
    frag: FragClass = FragClass.NONE
    ext: bool = False
    short_hdr: bool = False
    daddr: bytes = b""  # when the fixed header is whole


def _parse_eth(f: bytes):
    """parse_ethhdr: (EtherType, cursor, tags) or None when truncated."""
    if len(f) < 14:
        return None
    proto = struct.unpack_from("!H", f, 12)[0]
    pos, tags = 14, 0
    for i in range(VLAN_MAX_DEPTH):
        if proto not in VLAN_TYPES:
            break
        if pos + 4 > len(f):
            return None
        proto = struct.unpack_from("!H", f, pos + 2)[0]
        pos += 4
        tags = i + 1
    return proto, pos, tags


def _parse_ipv4(f: bytes, pos: int) -> Optional[_L3]:
    """parse_iphdr. The version nibble and the total length are not read."""
    if pos + 16 > len(f):  # offsetof(struct iphdr, daddr)
        return None
    l3 = _L3(4, f[pos + 12:pos + 16], f[pos + 9], pos)
    if pos + 20 > len(f):
        l3.short_hdr = True
        return l3
    l3.daddr = f[pos + 16:pos + 20]
    l3.l4_ok = True
    hdrsize = (f[pos] & 0x0F) * 4
    if hdrsize < 20:
        l3.l4_ok = False
        return l3
    l3.ext = hdrsize > 20
    if pos + hdrsize > len(f):
        l3.l4_ok = False
        return l3
    l3.pos = pos + hdrsize
    frag_off = struct.unpack_from("!H", f, pos + 6)[0]
    if frag_off & 0x1FFF:  # fragment offset
        l3.l4_ok = False
        l3.frag = FragClass.LATER
    elif frag_off & 0x2000:  # MF
        l3.frag = FragClass.FIRST
    return l3


def _parse_ipv6(f: bytes, pos: int) -> Optional[_L3]:
    """parse_ip6hdr: the fixed header and up to IPV6_EXT_MAX_CHAIN extension
    headers; the protocol after the last one walked is the L4 protocol."""
    if pos + 24 > len(f):
        return None
    l3 = _L3(6, f[pos + 8:pos + 24], f[pos + 6], pos)
    if pos + 40 > len(f):
        l3.short_hdr = True
        return l3
    l3.daddr = f[pos + 24:pos + 40]
    pos += 40
    nexthdr = l3.proto
    for _ in range(IPV6_EXT_MAX_CHAIN):
        if nexthdr in (IPPROTO_HOPOPTS, IPPROTO_ROUTING, IPPROTO_DSTOPTS, IPPROTO_AH):
            if pos + 2 > len(f):
                l3.proto, l3.pos = nexthdr, pos
                return l3
            l3.ext = True
            this, nexthdr, hdrlen = nexthdr, f[pos], f[pos + 1]
            pos += (hdrlen + 2) * 4 if this == IPPROTO_AH else (hdrlen + 1) * 8
        elif nexthdr == IPPROTO_FRAGMENT:
            if pos + 8 > len(f):
                l3.proto, l3.pos = nexthdr, pos
                return l3
            l3.ext = True
            off = struct.unpack_from("!H", f, pos + 2)[0]
            nexthdr = f[pos]
            pos += 8
            if off & 0xFFF8:  # non-first fragment: no L4 header
                l3.frag = FragClass.LATER
                l3.proto, l3.pos = nexthdr, pos
                return l3
            if off & 1:  # M: a first fragment (and stays one whatever follows)
                l3.frag = FragClass.FIRST
        else:
            l3.l4_ok = nexthdr not in (IPPROTO_ESP, IPPROTO_NONE)
            l3.proto, l3.pos = nexthdr, pos
            return l3
    # IPV6_EXT_MAX_CHAIN headers walked: L4 follows only if the walk ended on it
    l3.l4_ok = nexthdr not in EXT_HEADERS and nexthdr not in (IPPROTO_ESP, IPPROTO_NONE)
    l3.proto, l3.pos = nexthdr, pos
    return l3


def _parse_l4(f: bytes, pos: int, proto: int):
    """parse_l4: (sport, dport, tcp_flags, parsed). ICMP type and code stand
    in the port slots; a header cut short leaves them 0."""
    if proto == IPPROTO_TCP:
        if pos + 20 > len(f):
            return 0, 0, 0, False
        sport, dport = struct.unpack_from("!HH", f, pos)
        return sport, dport, f[pos + 13] & 0x3F, True
    if proto == IPPROTO_UDP:
        if pos + 8 > len(f):
            return 0, 0, 0, False
        sport, dport = struct.unpack_from("!HH", f, pos)
        return sport, dport, 0, True
    if proto in (IPPROTO_ICMP, IPPROTO_ICMPV6):
        if pos + 2 > len(f):
            return 0, 0, 0, False
        return f[pos], f[pos + 1], 0, True
    return 0, 0, 0, True


# --- lists and signatures (xdp/seawall.c) ---------------------------------------


def _blocked(table: dict, addr: bytes, now: int, events: Counter) -> bool:
    """check_block_v4/v6: an expired entry is skipped and the lookup repeated
    with a key one shorter than that entry, at most BLOCK_EXPIRED_HOPS times.
    The program decides expiry on a stamp up to a jiffy old (stamp_ns()):
    the model is exact, so callers keep expiries seconds away from now."""
    key_plen = len(addr) * 8
    for _ in range(BLOCK_EXPIRED_HOPS):
        hit = lpm(table, addr, key_plen)
        if hit is None:
            return False
        b = hit[1]
        if not b.expires_ns or b.expires_ns > now:
            return True
        events[Event.BLOCK_EXPIRED] += 1
        if b.prefixlen == 0:
            return False
        key_plen = b.prefixlen - 1
    return False


def _signature(t: Tables, proto: int, sport: int, dport: int, length: int, flags: int, frag: FragClass,
               now: int):
    """check_signatures: the first live rule matching decides. A non-first
    fragment is matched by FRAG rules only, and never by a rule with ports
    or flags; any other packet never by a FRAG rule. Returns the matching
    Rule's slot, or None."""
    m = abi.SigMatch
    refuse = (m.DPORT | m.SPORT | m.FLAGS) if frag == FragClass.LATER else m.FRAG
    for slot in range(min(t.sig_used, abi.MAX_SIGNATURES, len(t.sigs))):
        r = t.sigs[slot]
        if not r.match & abi.SigMatch.ACTIVE or r.proto != proto or r.match & refuse:
            continue
        if r.expires_ns and r.expires_ns <= now:
            continue
        if r.match & abi.SigMatch.DPORT and r.dport != dport:
            continue
        if r.match & abi.SigMatch.SPORT and r.sport != sport:
            continue
        if r.match & abi.SigMatch.LEN and (length < r.len_min or length >= r.len_max):
            continue
        if r.match & abi.SigMatch.FLAGS and r.tcp_flags != flags:
            continue
        return slot
    return None


# --- the program ------------------------------------------------------------------


def classify(frame: bytes, t: Tables, now: int,
             rate_ok: Optional[Callable[[int], bool]] = None) -> Decision:
    """What xdp_seawall decides for frame. now: CLOCK_BOOTTIME ns at the
    time of the run. rate_ok(slot): whether a rate-limited rule's token
    bucket has a token (default: it does not; the packet is over the rate)."""
    f = bytes(frame)
    ev: Counter = Counter()

    def out(verdict, reason, accounted=False, l3=None, ports=(0, 0, 0), rate_slot=None):
        dst = abi.dst_bucket(l3.daddr) if l3 is not None and l3.daddr else None
        return Decision(verdict, reason, ev, accounted, None if l3 is None else l3.proto,
                        ports[0], ports[1], ports[2], rate_slot, FragClass.NONE if l3 is None else l3.frag, dst)

    eth = _parse_eth(f)
    if eth is None:
        return out(XDP_PASS, Reason.PASS_MALFORMED)
    eth_type, pos, tags = eth
    if tags:
        ev[Event.VLAN] += 1
    if eth_type == ETH_P_IP:
        l3 = _parse_ipv4(f, pos)
        if l3 is None:
            return out(XDP_PASS, Reason.PASS_MALFORMED)
        if l3.ext:
            ev[Event.IP_OPTIONS] += 1
    elif eth_type == ETH_P_IPV6:
        l3 = _parse_ipv6(f, pos)
        if l3 is None:
            return out(XDP_PASS, Reason.PASS_MALFORMED)
        if l3.ext:
            ev[Event.IPV6_EXT] += 1
    else:
        return out(XDP_PASS, Reason.PASS_NOT_IP)

    # 1. allowlist
    allow = t.allow_v4 if l3.version == 4 else t.allow_v6
    if lpm(allow, l3.saddr, len(l3.saddr) * 8) is not None:
        return out(XDP_PASS, Reason.PASS_ALLOW, l3=l3)

    # 2. blocklist
    reason = Reason.PASS_CLEAN
    if _blocked(t.block_v4 if l3.version == 4 else t.block_v6, l3.saddr, now, ev):
        if not t.monitor:
            return out(XDP_DROP, Reason.DROP_BLOCK, l3=l3)
        reason = Reason.MON_BLOCK

    if l3.short_hdr:
        return out(XDP_PASS, Reason.PASS_MALFORMED if reason == Reason.PASS_CLEAN else reason, l3=l3)

    if l3.frag == FragClass.LATER:
        ev[Event.FRAGMENT] += 1
    sport = dport = flags = 0
    if l3.l4_ok:
        sport, dport, flags, parsed = _parse_l4(f, l3.pos, l3.proto)
        if not parsed:
            ev[Event.L4_UNPARSED] += 1
    else:
        ev[Event.L4_UNPARSED] += 1
    ports = (sport, dport, flags)

    # 3. signatures, only for packets no list has judged
    rate_slot = None
    if reason == Reason.PASS_CLEAN:
        slot = _signature(t, l3.proto, sport, dport, len(f), flags, l3.frag, now)
        if slot is not None:
            limited = t.sigs[slot].rate_pps != 0
            if limited:
                rate_slot = slot
            if not (limited and rate_ok is not None and rate_ok(slot)):
                if not t.monitor:
                    return out(XDP_DROP, Reason.DROP_SIG, l3=l3, ports=ports, rate_slot=rate_slot)
                reason = Reason.MON_SIG

    # 4. accounting, then 5. SYN protection of a protected port
    if reason == Reason.PASS_CLEAN and l3.proto == IPPROTO_TCP and dport and dport in t.syn_ports \
            and (t.syn_ports[dport] == 0 or t.syn_ports[dport] > now):
        verdict, reason = _synproxy(f, l3, flags, t.monitor)
        return out(verdict, reason, accounted=True, l3=l3, ports=ports, rate_slot=rate_slot)
    return out(XDP_PASS, reason, accounted=True, l3=l3, ports=ports, rate_slot=rate_slot)


TH_FIN, TH_SYN, TH_RST, TH_ACK = 0x01, 0x02, 0x04, 0x10


def _synproxy(f: bytes, l3: _L3, flags: int, monitor: bool) -> tuple:
    """synproxy() in xdp/synproxy.h, for a host with no socket for the
    frame (the fuzz's random tuples) and no valid cookie in its ACK (a
    random one is valid with a probability of some 2^-29): (verdict,
    reason)."""
    if flags & TH_SYN:
        if monitor:
            return XDP_PASS, Reason.MON_SYNPROXY
        if flags & (TH_SYN | TH_ACK | TH_RST | TH_FIN) != TH_SYN or l3.frag != FragClass.NONE:
            return XDP_DROP, Reason.DROP_SYNPROXY
        tcp_len = (f[l3.pos + 12] >> 4) * 4
        if tcp_len < 20 or l3.pos + tcp_len > len(f):  # a data offset below the header, or options cut short
            return XDP_DROP, Reason.DROP_SYNPROXY
        return XDP_TX, Reason.TX_SYNCOOKIE
    return (XDP_PASS, Reason.MON_SYNPROXY) if monitor else (XDP_DROP, Reason.DROP_SYNPROXY)
