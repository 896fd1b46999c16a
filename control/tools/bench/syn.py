"""The bench's SYN cases: what a cookie SYN-ACK built in XDP costs per
packet (issue 11), against the empty program, and the same SYN to a port
without SYN protection.

A cookie SYN-ACK is built in place: XDP_TX turns the frame into the
answer. An XDP test run keeps what the program wrote into the frame from
one repeat to the next, so a run of `repeat` repeats would answer its own
SYN-ACK from the second repeat on. These cases therefore run one SYN per
BPF_PROG_TEST_RUN (repeat 1), each with a source never seen before (a
spoofed flood's), and report the mean over many runs without the 10%
at each end (trimmed_mean()). The kernel still times the program
itself, plus one clock read, and the floor is measured the same way, one
frame per run: the ratio compares like with like. The figures are higher
than the other cases' (a run of one packet finds the caches cold after
the system call), and are compared with their own floor only. Every run's verdict is checked, seawall's counters must have
counted each SYN under the expected reason, and every answer must be a
SYN-ACK to the SYN's source.

The frames carry Linux's SYN options (MSS, SACK permitted, timestamps,
window scale) and benchmarking addresses only; nothing is sent.
"""

from __future__ import annotations

import ipaddress
import os
import statistics
import struct
from typing import Optional, Union

import numpy as np

from seawall.control.datapath import bpf
from seawall.control.datapath.abi import Reason, XdpAction
from seawall.control.datapath.synports import MSS4, MSS6, SynPort, SynPortTable
from seawall.control.errors import SeawallError
from seawall.control.tools.bench.report import Case, Report
from seawall.control.tools.bench.report import ratio as _ratio
from seawall.control.tools.frames import MAC_DST, MAC_SRC, internet_checksum

PROTECTED_PORT = 8443  # in syn_ports for these cases only (the other cases' TCP goes to 443)
OPEN_PORT = 443  # no SYN protection: the SYN takes the pass path
DST4, DST6 = "198.18.0.1", "2001:2::1"
SPOOF_NET4 = 0xC6130000  # 198.19.0.0/16: the SYNs' sources, on no list of the bench
SPOOF_NET6 = bytes.fromhex("20010002000000010000000000000000")  # 2001:2:0:1::/64
WSCALE = 7  # what the SYN-ACK advertises (the nft synproxy rule's, as the CLI sets it)
TH_SYN, TH_ACK = 0x02, 0x10

#: the cases: (name, what, IP version, port, expected verdict, expected reason)
CASES = (
    ("syn_cookie", "a spoofed IPv4 SYN (Linux's options) to a port under SYN protection: answered with a "
                   "cookie SYN-ACK (XDP_TX)", 4, PROTECTED_PORT, XdpAction.TX, Reason.TX_SYNCOOKIE),
    ("syn_cookie_ipv6", "the same over IPv6", 6, PROTECTED_PORT, XdpAction.TX, Reason.TX_SYNCOOKIE),
    ("syn_unprotected", "the same IPv4 SYN to a port without SYN protection: the pass path", 4, OPEN_PORT,
     XdpAction.PASS, Reason.PASS_CLEAN),
)
SINGLE_FLOOR = "floor, one packet per run"
TRIM = 0.1  # the share of runs left out at each end of the mean


def linux_options(tsval: int) -> bytes:
    """The options of a Linux SYN, in its order: MSS 1460, SACK permitted,
    timestamps (tsval, 0), NOP, window scale 7. 20 bytes."""
    return struct.pack("!BBH BB BBII B BBB", 2, 4, 1460, 4, 2, 8, 10, tsval, 0, 1, 3, 3, 7)


def syn_frame(src: Union[str, int, bytes], dst: str, sport: int = 40000, dport: int = PROTECTED_PORT,
              seq: int = 1, tsval: int = 1) -> bytes:
    """An Ethernet frame carrying a TCP SYN with Linux's options, with
    valid IP and TCP checksums. src: text, an IPv4 address as a host-order
    int, or 16 bytes of IPv6 address; its version is dst's."""
    d = ipaddress.ip_address(dst)
    if isinstance(src, bytes):
        s = ipaddress.IPv6Address(src)
    else:
        s = ipaddress.ip_address(src) if isinstance(src, str) else ipaddress.IPv4Address(src)
    if s.version != d.version:
        raise ValueError(f"source {s} and destination {d} are not of one IP version")
    opts = linux_options(tsval)
    tcp = struct.pack("!HHIIBBHHH", sport, dport, seq, 0, (5 + len(opts) // 4) << 4, TH_SYN, 64240, 0, 0) + opts
    if d.version == 4:
        pseudo = s.packed + d.packed + struct.pack("!BBH", 0, 6, len(tcp))
        l3 = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 1, 0x4000, 64, 6, 0, s.packed, d.packed)
        l3 = l3[:10] + struct.pack("!H", internet_checksum(l3)) + l3[12:]
        etype = 0x0800
    else:
        pseudo = s.packed + d.packed + struct.pack("!IxxxB", len(tcp), 6)
        l3 = struct.pack("!IHBB16s16s", 6 << 28, len(tcp), 6, 64, s.packed, d.packed)
        etype = 0x86DD
    tcp = tcp[:16] + struct.pack("!H", internet_checksum(pseudo + tcp)) + tcp[18:]
    return MAC_DST + MAC_SRC + struct.pack("!H", etype) + l3 + tcp


def spoofed_syns(version: int, dport: int, n: int, seed: int) -> list:
    """n SYNs to dport from random sources (198.19.0.0/16, each a different
    one up to 65,536 SYNs; or 2001:2:0:1::/64), with random ports,
    sequence numbers and timestamps."""
    rng = np.random.default_rng(seed)
    hosts = rng.permutation(1 << 16)[:n] if version == 4 and n <= 1 << 16 else rng.integers(1, 1 << 16, n)
    ports = rng.integers(1024, 65536, n)
    seqs = rng.integers(0, 1 << 32, n, dtype=np.uint64)
    out = []
    for i in range(n):
        if version == 4:
            src: Union[int, bytes] = SPOOF_NET4 | int(hosts[i])
            dst = DST4
        else:
            src = SPOOF_NET6[:8] + rng.bytes(8)
            dst = DST6
        out.append(syn_frame(src, dst, int(ports[i]), dport, int(seqs[i]), int(seqs[i]) ^ 0x5A5A5A5A))
    return out


def check_synack(syn: bytes, out: bytes) -> Optional[str]:
    """Why `out` is not a SYN-ACK answering `syn`, an untagged frame of
    syn_frame()'s (None when it is): the Ethernet and IP addresses and the
    ports swapped, SYN and ACK set, and the acknowledgement one past the
    SYN's sequence number."""
    if len(out) < 54:
        return f"a {len(out)}-byte frame"
    if out[0:6] != syn[6:12] or out[6:12] != syn[0:6]:
        return "the MAC addresses are not swapped"
    v6 = syn[12:14] == b"\x86\xdd"
    a, l4 = (22, 54) if v6 else (26, 34)
    alen = 16 if v6 else 4
    if out[a:a + alen] != syn[a + alen:a + 2 * alen] or out[a + alen:a + 2 * alen] != syn[a:a + alen]:
        return "the IP addresses are not swapped"
    if out[l4:l4 + 2] != syn[l4 + 2:l4 + 4] or out[l4 + 2:l4 + 4] != syn[l4:l4 + 2]:
        return "the ports are not swapped"
    if out[l4 + 13] & (TH_SYN | TH_ACK) != TH_SYN | TH_ACK:
        return f"TCP flags {out[l4 + 13]:#04x}, not SYN-ACK"
    seq = struct.unpack_from("!I", syn, l4 + 4)[0]
    if struct.unpack_from("!I", out, l4 + 8)[0] != (seq + 1) & 0xFFFFFFFF:
        return "the acknowledgement is not the SYN's sequence number + 1"
    return None


def single_runs(prog_fd: int, frames: list, expect: int, answer: bool = False) -> list:
    """ns of each frame run once (BPF_PROG_TEST_RUN, repeat 1), checking
    each verdict, and with `answer` that the frame came back a SYN-ACK."""
    ds = []
    for f in frames:
        r = bpf.prog_test_run(prog_fd, f, 1)
        if r.retval != expect:
            raise SeawallError(f"SYN bench frame got verdict {XdpAction(r.retval).name}, expected "
                               f"{XdpAction(expect).name}: the bench measured the wrong path")
        if answer:
            why = check_synack(f, r.data_out)
            if why:
                raise SeawallError(f"the cookie SYN-ACK is wrong: {why}")
        ds.append(int(r.duration_ns))
    return ds


def trimmed_mean(ds: list, cut: float = TRIM) -> float:
    """The mean of ds without its lowest and highest `cut` fraction. A run
    of one packet is timed by two clock reads, which step by 10 ns here:
    a median would only ever read a multiple of the step."""
    xs = sorted(ds)
    k = int(len(xs) * cut)
    mid = xs[k:len(xs) - k] or xs
    return round(sum(mid) / len(mid), 1)


def _case(name: str, what: str, ds: list, floor_ns: Optional[float], **detail) -> Case:
    ns = trimmed_mean(ds)
    q = statistics.quantiles(ds, n=10)
    return Case(name, "datapath", what, ns_per_packet=ns,
                ratio_to_floor=_ratio(ns, floor_ns) if floor_ns else 1.0,
                detail={"method": f"one packet per BPF_PROG_TEST_RUN (repeat 1), a new source each; the mean "
                                  f"without the lowest and highest {TRIM:.0%}",
                        "packets": len(ds), "median_ns": float(statistics.median(ds)), "p10_ns": q[0],
                        "p90_ns": q[-1], "floor": SINGLE_FLOOR, **detail})


def run(dp, report: Report) -> None:
    """The SYN cases on the bench's loaded programs (a Datapath): its
    seawall, with PROTECTED_PORT put in syn_ports for the time of the
    cases, and its floor. Pinned to one CPU, as the other cases."""
    old = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(old)})
    table = SynPortTable(dp.paths.pin_root)
    try:
        table.put(SynPort(PROTECTED_PORT, expires_ns=0, auto=False, wscale=WSCALE, mss4=MSS4, mss6=MSS6))
        _run(dp, report)
    finally:
        try:
            table.clear(PROTECTED_PORT)
        finally:
            table.close()
            os.sched_setaffinity(0, old)


def _run(dp, report: Report) -> None:
    n = dp.p.syn_packets
    dp.say(f"datapath: SYN cases, {n:,} SYNs each, one per run")
    frames = {name: spoofed_syns(v, port, n, dp.p.seed * 100 + i)
              for i, (name, _, v, port, _, _) in enumerate(CASES)}
    floor_ds = single_runs(dp.floor.prog_fd, frames["syn_cookie"], XdpAction.DROP)
    floor_ns = trimmed_mean(floor_ds)
    report.cases.append(_case(SINGLE_FLOOR, "bcc-compiled `return XDP_DROP;`, the SYN frames one per run",
                              floor_ds, None))
    for name, what, _, port, verdict, reason in CASES:
        key = reason.name.lower()
        before = dp.counters()["reasons"][key]["packets"]
        ds = single_runs(dp.seawall.prog_fd, frames[name], verdict, answer=verdict == XdpAction.TX)
        moved = dp.counters()["reasons"][key]["packets"] - before
        if moved != n:
            raise SeawallError(f"{name}: {moved} of {n} SYNs counted as {key}")
        report.cases.append(_case(name, what, ds, floor_ns, verdict=XdpAction(verdict).name.lower(),
                                  reason=key, dport=port))
