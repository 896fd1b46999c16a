"""The token bucket of a rate-limited signature rule (sig_rate_ok in
xdp/seawall.c), driven through its per-CPU bucket.

After a long idle spell the refill must give a full bucket. It used to
compute elapsed * rate in 64 bits, which wraps round once the product
passes 2^64 (for 2^20 packets/s per CPU, after 4.9 idle hours; sooner for
higher rates), leaving a few tokens: the rule then dropped most of a
burst of legitimate matching traffic it should have passed. The bucket's
last refill is set here so that elapsed * rate lands just past a multiple
of 2^64, as 4.9 idle hours would.
"""

from __future__ import annotations

import os
import struct


from seawall.control.datapath import bpf
from seawall.control.datapath.abi import Reason
from seawall.control.signature import Signature

from frames import XDP_PASS, eth, ip4, udp

PER_CPU = 2**20  # packets/s per CPU
BURST = 100_000  # packets in one BPF_PROG_TEST_RUN call: well under a second's worth


def bucket_map(datapath) -> bpf.Map:
    return bpf.Map(os.dup(datapath.loaded.bpf[b"sig_rate"].map_fd), "sig_rate")


def set_bucket(m: bpf.Map, slot: int, tokens: int, last_ns: int) -> None:
    one = struct.pack("=QQ", tokens, last_ns % 2**64).ljust(m.stride, b"\0")
    m.update(slot.to_bytes(4, "little"), one * m.ncpu)


def burst_drops(datapath, frame: bytes) -> int:
    r0 = datapath.reasons()
    datapath.run(frame, repeat=BURST)
    moved = datapath.reasons() - r0
    assert moved.sum() == BURST
    return int(moved[Reason.DROP_SIG])


def test_rate_limit_after_a_long_idle_spell_starts_full(datapath):
    slot, _ = datapath.lists.sig_add(Signature(17, dport=9, rate_pps=PER_CPU * bpf.possible_cpus()), None, "t")
    frame = bytes(eth() / ip4("198.18.3.3") / udp(dport=9))
    with bucket_map(datapath) as m:
        try:
            # an empty bucket just refilled: the limiter does limit
            set_bucket(m, slot, 0, datapath.clock.boot_ns())
            limited = burst_drops(datapath, frame)
            assert limited > BURST // 2, limited
            # idle since a moment that makes elapsed * rate wrap round 2^64
            set_bucket(m, slot, 0, datapath.clock.boot_ns() + 2**44)
            assert burst_drops(datapath, frame) == 0, "a full bucket after a long idle spell"
            assert datapath.run(frame) == XDP_PASS
        finally:
            datapath.lists.sig_flush()
