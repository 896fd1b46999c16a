"""SYN protection in the datapath (xdp/synproxy.h), on crafted frames.

A SYN to a protected port comes back as a cookie SYN-ACK (XDP_TX), checked
field by field: addresses and ports swapped, ack = seq + 1, the options
netfilter's SYNPROXY decodes from our timestamp, checksums. The cookie is
then proved by the kernel's own check: the ACK a client would send passes
(SW_PASS_SYNCOOKIE), any other ACK is dropped. IPv4 and IPv6, VLAN tags,
truncated and odd segments, monitor mode, expiry, the lists first, and a
segment of a real established connection (socket lookup) in a private
network namespace.
"""

from __future__ import annotations

import ctypes
import json
import os
import socket
import time

import pytest
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Dot1AD, Dot1Q, Ether

from frames import eth, ip4, ip6
from seawall.control.datapath import abi, bpf

R = abi.Reason
XDP_TX, XDP_PASS, XDP_DROP = abi.XdpAction.TX, abi.XdpAction.PASS, abi.XdpAction.DROP
PORT = 8443
CLONE_NEWNET = 0x40000000
SRC4, SRC6 = "198.18.7.9", "2001:2::7:9"
LINUX_OPTS = [("MSS", 1460), ("SAckOK", b""), ("Timestamp", (123456789, 0)), ("NOP", None), ("WScale", 9)]


def syn(v: int = 4, src: str = None, sport: int = 40123, dport: int = PORT, seq: int = 1000, opts=None, tags=(),
        flags="S"):
    l3 = ip4(src or SRC4) if v == 4 else ip6(src or SRC6)
    return eth(*tags) / l3 / TCP(sport=sport, dport=dport, seq=seq, flags=flags,
                                 options=LINUX_OPTS if opts is None else opts)


def run(dp, frame) -> tuple:
    """(retval, the one reason counted, the frame as it left)."""
    r0 = dp.reasons()
    res = bpf.prog_test_run(dp.prog_fd, bytes(frame))
    moved = dp.reasons() - r0
    assert sum(moved) == 1, moved.tolist()
    return res.retval, R(int(moved.argmax())), res.data_out


def parsed(out: bytes):
    return Ether(out)


def check_checksums(pkt) -> None:
    """The SYN-ACK's checksums are what scapy computes for its contents."""
    l3 = pkt[IP] if IP in pkt else pkt[IPv6]
    fresh = l3.__class__(bytes(l3))
    tcp_sum = fresh[TCP].chksum
    del fresh[TCP].chksum
    if IP in pkt:
        ip_sum = fresh.chksum
        del fresh.chksum
    again = l3.__class__(bytes(fresh))
    assert again[TCP].chksum == tcp_sum, "TCP checksum"
    if IP in pkt:
        assert again.chksum == ip_sum, "IPv4 header checksum"


def ack_for(synack, v: int = 4, tags=(), flags="A", ack_delta: int = 0, dport: int = PORT):
    """The ACK a client sends back for a SYN-ACK."""
    t = synack[TCP]
    l3 = ip4(SRC4) if v == 4 else ip6(SRC6)
    opts = [("NOP", None), ("NOP", None), ("Timestamp", (123456790, dict(synack[TCP].options)["Timestamp"][0]))]
    return eth(*tags) / l3 / TCP(sport=t.dport, dport=dport, seq=t.ack, ack=t.seq + 1 + ack_delta, flags=flags,
                                 window=502, options=opts)


@pytest.mark.parametrize("v", [4, 6])
def test_a_syn_is_answered_with_a_cookie_syn_ack(datapath, v):
    datapath.protect(PORT, wscale=7)
    rv, reason, out = run(datapath, syn(v))
    assert (rv, reason) == (XDP_TX, R.TX_SYNCOOKIE)
    p = parsed(out)
    assert p.src == "02:00:00:00:00:02" and p.dst == "02:00:00:00:00:01"  # MACs swapped
    l3 = p[IP] if v == 4 else p[IPv6]
    assert (l3.src, l3.dst) == ((ip4(SRC4).dst, SRC4) if v == 4 else (ip6(SRC6).dst, SRC6))
    if v == 4:
        assert (l3.ihl, l3.ttl, l3.proto, int(l3.flags)) == (5, 64, 6, 2)  # DF
        assert l3.len == len(bytes(l3))
    else:
        assert (l3.hlim, l3.nh, l3.plen) == (64, 6, len(bytes(l3[TCP])))
    t = p[TCP]
    assert (t.sport, t.dport) == (PORT, 40123)
    assert t.flags == "SA" and t.ack == 1001 and t.window == 0 and t.urgptr == 0
    opts = dict(t.options)
    assert opts["MSS"] == (1460 if v == 4 else 1440)
    assert "SAckOK" in opts and opts["WScale"] == 7  # ours, the nft rule's
    tsval, tsecr = opts["Timestamp"]
    assert tsecr == 123456789  # the client's, echoed
    assert tsval & 0xf == 9 and tsval & 0x10 and not tsval & 0x20  # its wscale and SACK, for SYNPROXY
    assert len(out) == len(bytes(p))  # no trailing bytes of the SYN
    check_checksums(p)


@pytest.mark.parametrize("v", [4, 6])
def test_the_cookie_is_the_kernels_the_client_ack_passes_and_others_drop(datapath, v):
    datapath.protect(PORT)
    _, _, out = run(datapath, syn(v))
    synack = parsed(out)
    assert run(datapath, ack_for(synack, v))[:2] == (XDP_PASS, R.PASS_SYNCOOKIE)
    # (a cookie keeps the MSS in its low bits: an ACK off by one may land on
    # another valid MSS, as with the kernel's own cookies; these may not)
    for bad in (ack_for(synack, v, ack_delta=1 << 20), ack_for(synack, v, ack_delta=-(1 << 12))):
        assert run(datapath, bad)[:2] == (XDP_DROP, R.DROP_SYNPROXY)
    # another client's ACK with the same numbers: the cookie binds the addresses
    other = ack_for(synack, v)
    other[IP if v == 4 else IPv6].src = "198.18.7.10" if v == 4 else "2001:2::7:10"
    assert run(datapath, other)[:2] == (XDP_DROP, R.DROP_SYNPROXY)


def test_segments_with_no_socket_and_no_cookie_are_dropped(datapath):
    datapath.protect(PORT)
    for flags in ("A", "R", "RA", "F", "FA", "PA", "SA", "SR", "SF"):
        f = syn(flags=flags, opts=[])
        assert run(datapath, f)[:2] == (XDP_DROP, R.DROP_SYNPROXY), flags


def test_other_ports_and_protocols_are_not_touched(datapath):
    datapath.protect(PORT)
    assert run(datapath, syn(dport=PORT + 1))[:2] == (XDP_PASS, R.PASS_CLEAN)
    assert run(datapath, syn(dport=PORT + 1, flags="A", opts=[]))[:2] == (XDP_PASS, R.PASS_CLEAN)
    udp = eth() / ip4(SRC4) / UDP(sport=5, dport=PORT)
    assert run(datapath, udp)[:2] == (XDP_PASS, R.PASS_CLEAN)


def test_unprotected_then_expired_then_cleared(datapath):
    assert run(datapath, syn())[:2] == (XDP_PASS, R.PASS_CLEAN)
    datapath.protect(PORT, expires_ns=time.clock_gettime_ns(time.CLOCK_BOOTTIME) + 60 * 10**9)
    assert run(datapath, syn())[:2] == (XDP_TX, R.TX_SYNCOOKIE)
    # expiry is judged on a stamp taken in the current jiffy: a second past is past
    datapath.protect(PORT, expires_ns=time.clock_gettime_ns(time.CLOCK_BOOTTIME) - 10**9)
    assert run(datapath, syn())[:2] == (XDP_PASS, R.PASS_CLEAN)
    datapath.protect(PORT)
    datapath.synports.clear(PORT)
    assert run(datapath, syn())[:2] == (XDP_PASS, R.PASS_CLEAN)


def test_vlan_tags_are_kept(datapath):
    datapath.protect(PORT)
    tags = (("ad", 100), ("q", 200))
    rv, reason, out = run(datapath, syn(tags=tags))
    assert (rv, reason) == (XDP_TX, R.TX_SYNCOOKIE)
    p = parsed(out)
    assert [x.vlan for x in p.iterpayloads() if isinstance(x, (Dot1AD, Dot1Q))] == [100, 200]
    assert p[TCP].flags == "SA"
    check_checksums(p)
    assert run(datapath, ack_for(p, tags=tags))[:2] == (XDP_PASS, R.PASS_SYNCOOKIE)


def test_options_as_other_stacks_send_them(datapath):
    datapath.protect(PORT, wscale=8)
    cases = {
        # Windows: no timestamps: MSS only (SYNPROXY cannot recover the rest)
        "windows": ([("MSS", 1460), ("NOP", None), ("WScale", 8), ("NOP", None), ("NOP", None),
                     ("SAckOK", b"")], None),
        # macOS: timestamps without SACK last, then EOL
        "macos": ([("MSS", 1460), ("NOP", None), ("WScale", 6), ("NOP", None), ("NOP", None),
                   ("Timestamp", (777, 0)), ("SAckOK", b""), ("EOL", None)], (6, True)),
        "ts only": ([("Timestamp", (5, 0))], (0xf, False)),
        "none": ([], None),
        "wscale over 14": ([("Timestamp", (5, 0)), ("WScale", 200)], (14, False)),
    }
    for name, (opts, want) in cases.items():
        rv, reason, out = run(datapath, syn(opts=opts))
        assert (rv, reason) == (XDP_TX, R.TX_SYNCOOKIE), name
        t = parsed(out)[TCP]
        got = dict(t.options)
        assert got["MSS"] == 1460, name
        if want is None:
            assert set(got) == {"MSS"} and t.dataofs == 6, name
        else:
            ws, sack = want
            tsval, _ = got["Timestamp"]
            assert tsval & 0xf == ws and bool(tsval & 0x10) == sack, name
            assert ("WScale" in got) == (ws != 0xf) and ("SAckOK" in got) == sack, name
            if ws != 0xf:
                assert got["WScale"] == 8, name
        check_checksums(parsed(out))
        assert run(datapath, ack_for(parsed(out)) if want else
                   eth() / ip4(SRC4) / TCP(sport=40123, dport=PORT, seq=1001, ack=t.seq + 1, flags="A"))[:2] \
            == (XDP_PASS, R.PASS_SYNCOOKIE), name


def test_ecn_setup_syn_gets_ece_and_the_ecn_bit(datapath):
    datapath.protect(PORT)
    _, _, out = run(datapath, syn(flags="SEC"))
    t = parsed(out)[TCP]
    assert t.flags == "SAE" and dict(t.options)["Timestamp"][0] & 0x20


def test_truncated_and_fragmented_syns_are_dropped(datapath):
    datapath.protect(PORT)
    whole = bytes(syn())
    # options cut short: data offset says 40 bytes of TCP, the frame ends earlier
    assert run(datapath, whole[:len(whole) - 8])[:2] == (XDP_DROP, R.DROP_SYNPROXY)
    bad_doff = bytearray(bytes(syn(opts=[])))
    bad_doff[14 + 20 + 12] = 0x40  # data offset 4 words: below the header
    assert run(datapath, bytes(bad_doff))[:2] == (XDP_DROP, R.DROP_SYNPROXY)
    first_frag = eth() / IP(src=SRC4, dst="198.18.0.1", flags="MF") / TCP(dport=PORT, flags="S")
    assert run(datapath, first_frag)[:2] == (XDP_DROP, R.DROP_SYNPROXY)


def test_ip_options_and_extension_headers_are_answered_without_them(datapath):
    from scapy.layers.inet import IPOption_NOP
    from scapy.layers.inet6 import IPv6ExtHdrDestOpt

    datapath.protect(PORT)
    f4 = eth() / IP(src=SRC4, dst="198.18.0.1", options=[IPOption_NOP()] * 4) / TCP(
        sport=40123, dport=PORT, seq=1000, flags="S", options=LINUX_OPTS)
    rv, reason, out = run(datapath, f4)
    assert (rv, reason) == (XDP_TX, R.TX_SYNCOOKIE)
    p = parsed(out)
    assert p[IP].ihl == 5 and p[TCP].ack == 1001
    check_checksums(p)
    f6 = eth() / IPv6(src=SRC6, dst="2001:2::1") / IPv6ExtHdrDestOpt() / TCP(
        sport=40123, dport=PORT, seq=1000, flags="S", options=LINUX_OPTS)
    rv, reason, out = run(datapath, f6)
    assert (rv, reason) == (XDP_TX, R.TX_SYNCOOKIE)
    p = parsed(out)
    assert p[IPv6].nh == 6 and p[TCP].ack == 1001
    check_checksums(p)


def test_monitor_mode_only_counts(datapath):
    datapath.protect(PORT)
    datapath.set_config(int(abi.CfgFlag.MONITOR))
    assert run(datapath, syn())[:2] == (XDP_PASS, R.MON_SYNPROXY)
    assert run(datapath, syn(flags="A", opts=[]))[:2] == (XDP_PASS, R.MON_SYNPROXY)


def test_the_lists_come_first(datapath):
    datapath.protect(PORT)
    datapath.allow(SRC4)
    assert run(datapath, syn())[:2] == (XDP_PASS, R.PASS_ALLOW)
    datapath.reset()
    datapath.protect(PORT)
    datapath.block(SRC4)
    assert run(datapath, syn())[:2] == (XDP_DROP, R.DROP_BLOCK)


def test_a_protected_syn_is_still_accounted(datapath):
    """The daemon keeps seeing the flood it turned protection on for."""
    datapath.protect(PORT)
    for _ in range(3):
        run(datapath, syn(src="198.18.9.9"))
    s = datapath.source("198.18.9.9")
    assert s is not None and s.syns >= 2  # the first sighting only primes the doorkeeper


def test_a_segment_of_an_established_connection_passes(datapath):
    """bpf_skc_lookup_tcp finds the socket: a real connection in a private
    network namespace (the test run's device is that namespace's lo), its
    ACK with no cookie passes; the same tuple with no socket drops."""
    datapath.protect(PORT)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: own netns, a connection, the verdicts
        code = 1
        try:
            os.close(r)
            if ctypes.CDLL(None, use_errno=True).unshare(CLONE_NEWNET):  # os.unshare is Python 3.12's
                raise OSError(ctypes.get_errno(), "unshare")
            os.system("ip link set lo up && ip addr add 198.18.0.1/32 dev lo && ip addr add 198.18.7.9/32 dev lo")
            srv = socket.socket()
            srv.bind(("198.18.0.1", PORT))
            srv.listen()
            cli = socket.create_connection(("198.18.0.1", PORT), source_address=("198.18.7.9", 0))
            conn, _ = srv.accept()
            sport = cli.getsockname()[1]
            est = eth() / ip4(SRC4) / TCP(sport=sport, dport=PORT, seq=5, ack=7, flags="A")
            gone = eth() / ip4(SRC4) / TCP(sport=sport + 1 if sport < 65535 else 1024, dport=PORT, seq=5, ack=7,
                                           flags="A")
            out = [run(datapath, est)[:2], run(datapath, gone)[:2]]
            os.write(w, json.dumps([[int(a), int(b)] for a, b in out]).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(w)
    data = b""
    while chunk := os.read(r, 4096):
        data += chunk
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0 and data
    est, gone = json.loads(data)
    assert (est[0], R(est[1])) == (XDP_PASS, R.PASS_SOCKET)
    assert (gone[0], R(gone[1])) == (XDP_DROP, R.DROP_SYNPROXY)
