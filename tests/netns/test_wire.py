"""`seawall evaluate --wire`: first the instrument, then the command.

The instrument is proven right without seawall's detection: with no
filter a flood passes whole and is never cut; with its source blocked by
hand before it starts, nothing passes and the cut is at the start; with
the block added by hand 1.5 s into the flood, the measured cut is at the
block's time within 0.1 s. The protected namespace's own counters
(/proc/net/snmp) must agree with the packet tap, and the way veth counts
frames that XDP dropped is checked as documented (they are in
rx_packets: the interface counter is no oracle of what reached the stack).

Then one end-to-end run of the quick subset with the real daemon checks
the report's shape and that the customers were measured. seawall's
detection figures are not asserted here.
"""

from __future__ import annotations

import json
import os
import subprocess
import time

import numpy as np
import pytest

from seawall.control.addr import Prefix
from seawall.control.lists.store import ListStore
from seawall.control.state import Paths
from seawall.control.tools.wire import measure, probes, report, runner, scenarios
from seawall.control.tools.wire.floods import Burst
from seawall.control.tools.wire.lab import ATTACKER, NOT_ATTACK

SEAWALL = runner.default_seawall()
FLOOD_S = 3.0
PPS = 40000


def instrument(tmp_path, hooks: dict, seconds: float = FLOOD_S) -> dict:
    sc = scenarios.Scenario("instrument", (Burst(0.0, seconds, PPS, "single"),), lead=1.0, tail=1.0)
    opts = runner.Options(seawall=SEAWALL, workdir=str(tmp_path))
    return runner.run_once(sc, opts, dict(hooks, no_daemon=True))


def test_tap_filter_counts_only_the_attacks_incoming_ipv4():
    prog = probes.tap_filter(NOT_ATTACK)

    def frame(src: str, ethertype: int = 0x0800) -> bytes:
        import socket
        import struct
        return (b"\0" * 12 + struct.pack("!H", ethertype) + b"\0" * 12 + socket.inet_aton(src)
                + socket.inet_aton("198.18.0.1"))

    for src, want in (("198.18.1.66", 1), ("198.19.200.7", 1), ("198.18.66.10", 1), ("198.18.66.200", 0),
                      ("198.18.2.77", 0), ("198.18.0.1", 0)):
        assert probes.run_filter(prog, frame(src)) == want, src
        assert probes.run_filter(prog, frame(src), pkttype=probes.PACKET_OUTGOING) == 0
    assert probes.run_filter(prog, frame("198.19.0.1", 0x0806)) == 0


def test_cut_and_shares_from_synthetic_samples():
    # 1 kHz sender, 100 Hz server; the flood starts at t=1.0, is blocked at t=2.0, ends at 3.0
    ts = np.arange(0.0, 4.0, 0.001)
    sent = np.clip(ts - 1.0, 0, 2.0) * 40000
    snd = np.column_stack([ts, np.floor(sent)])
    st = np.arange(0.0, 4.0, 0.01)
    arrived = np.floor(np.clip(np.minimum(st, 2.0) - 1.0, 0, None) * 40000)
    seg = measure.cut_segment(st, arrived, np.interp(st, ts, np.floor(sent)), 1.0, 3.0)
    assert measure.segments(snd) == [pytest.approx((1.0, 3.0), abs=0.002)]
    assert seg.cut == pytest.approx(1.0, abs=0.011)
    assert seg.passed_total == pytest.approx(0.5, abs=0.01)
    assert seg.passed_after_cut == 0.0
    never = measure.cut_segment(st, np.interp(st, ts, np.floor(sent)), np.interp(st, ts, np.floor(sent)), 1.0, 3.0)
    assert never.cut is None and never.passed_after_cut is None
    # a customer failing from the attack on, to the end, is blocked; one that recovers is not
    rows = [(t, "a", t < 5) for t in range(10)] + [(t, "b", not 5 <= t < 8) for t in range(10)]
    assert measure.blocked_sources(rows, (5, 8)) == [["a", 0]]
    # the report is plain JSON, numpy scalars included
    run = {"scenario": "x", "segments": [seg.to_json()], "cut": np.float64(0.5), "passed_after_cut": 0.0,
           "passed_total": 0.5, "later_segments_passed_worst": None, "legit_blocked": 0, "duration_s": 1.0,
           "customers": measure.Customers().to_json(), "alarm_raised": np.bool_(True), "xdp_mode": "native"}
    doc = report.document([run, dict(run, cut=None)], "seawall evaluate --wire", "seawall", "now", 1.0)
    back = json.loads(json.dumps(doc, allow_nan=False))
    assert back["summary"][0]["cut_runs"] == 1 and back["summary"][0]["cut_worst"] == "never"
    assert "| x | 2 | 1/2 | 0.50 / never |" in report.table(back["runs"])


def test_no_filter_the_flood_passes_whole_and_is_never_cut(tmp_path):
    r = instrument(tmp_path, {})
    assert r["xdp_mode"] is None
    assert len(r["segments"]) == 1
    assert r["sent"] == pytest.approx(PPS * FLOOD_S, rel=0.02)
    assert r["cut"] is None
    assert 0.98 <= r["passed_total"] <= 1.01
    c = r["counters_during_attack"]
    # the namespace's own UDP counter agrees with the tap (port 9 has no socket)
    assert c["Udp.NoPorts"] == pytest.approx(c["tap_attack"], rel=0.01)
    assert r["sampling"]["server"]["median_ms"] <= 11 and r["sampling"]["server"]["worst_in_attack_ms"] <= 20
    assert r["customers"]["requests_attack"] > 50 and r["customers"]["success_attack"] >= 0.99
    assert r["legit_blocked"] == 0


def test_blocked_by_hand_before_the_flood_nothing_passes_and_the_cut_is_at_the_start(tmp_path):
    def before(run):
        run.seawall("attach", "ws0")
        run.seawall("block", "add", ATTACKER, "--reason", "by hand")

    r = instrument(tmp_path, {"before_flood": before})
    assert r["xdp_mode"] == "native"  # as the kernel reports it: no fallback to generic in this lab
    assert r["sent"] == pytest.approx(PPS * FLOOD_S, rel=0.02)
    assert r["cut"] is not None and r["cut"] <= 0.02
    assert r["passed_total"] <= 0.001
    c = r["counters_during_attack"]
    assert c["Udp.NoPorts"] <= 5
    # veth counts the frames its XDP program dropped in rx_packets: the
    # interface counter says what arrived at the NIC, not what passed
    assert c["rx_packets"] >= 0.99 * r["sent"]
    assert r["customers"]["success_attack"] >= 0.99 and r["legit_blocked"] == 0


def test_blocked_by_hand_during_the_flood_the_cut_is_at_the_block(tmp_path):
    marks = {}

    def before(run):
        run.seawall("attach", "ws0")
        marks["store"] = ListStore(Paths(run.env["SEAWALL_BPFFS"], run.env["SEAWALL_STATE_DIR"]))

    def block(run):
        t = time.monotonic()
        marks["store"].block_add([Prefix.parse(ATTACKER)], None, "by hand, 1.5 s in")
        marks["at"] = (t, time.monotonic())

    r = instrument(tmp_path, {"before_flood": before, "at": [(1.5, block)]})
    start = r["segments"][0]["start"]
    t_block, t_done = (x - start for x in marks["at"])
    assert t_done - t_block < 0.05
    assert 1.3 < t_block < 1.8
    assert r["cut"] == pytest.approx(t_done, abs=0.1)
    assert r["passed_total"] == pytest.approx(t_block / FLOOD_S, abs=0.05)
    assert r["passed_after_cut"] <= 0.001


def test_evaluate_wire_quick_end_to_end(tmp_path):
    """The quick subset with the real daemon and FastNetMon beside it: the
    report's shape, the customers' figures, and then seawall's bounds
    (issue 10) on the wire: every flood cut within a second of its start
    (or of the daemon's, started during it) with at most 1% passing after
    the cut, no customer blocked, 99% of the customers served, no alarm in
    the flash crowd; the spoofed SYN flood on the served port answered with
    SYN cookies at the NIC (issue 11)."""
    t = time.monotonic()
    p = subprocess.run([SEAWALL, "evaluate", "--wire", "--quick", "--fastnetmon", "--json"], capture_output=True,
                       text=True, timeout=400, env=dict(os.environ))
    assert p.returncode == 0, p.stderr[-2000:]
    doc = json.loads(p.stdout)
    names = [s.name for s in scenarios.matrix(quick=True)]
    assert [s["scenario"] for s in doc["summary"]] == names
    assert len(doc["runs"]) == len(names)
    for r in doc["runs"]:
        assert "error" not in r, r.get("error")
        c = r["customers"]
        assert c["requests_calm"] > 100 and c["requests_attack"] > 100, r["scenario"]
        assert c["success_calm"] is not None and c["p99_calm_ms"] is not None
        assert r["xdp_mode"] in ("native", "generic"), r["scenario"]
        assert r["sampling"]["server"]["median_ms"] <= 11
        if r["scenario"] != "flash-crowd":
            # A daemon (re)started during the flood attaches XDP to the protected veth; the sender
            # has been seen to stall up to 0.7 s then (the kernel reconfigures the veth pair), which
            # splits the flood into two stretches at the daemon's start. Nothing else may.
            restarted = "@" in r["scenario"]
            assert len(r["segments"]) == 1 or (restarted and len(r["segments"]) == 2), r["segments"]
            assert r["sent"] > 0.9 * r["bursts"][0][1] * r["bursts"][0][2]
            assert r["passed_total"] is not None
    flash = next(r for r in doc["runs"] if r["scenario"] == "flash-crowd")
    # the flash crowd: 10x the calm rate for 6 s (calm window: 9.5 s); at least 5x was achieved
    assert flash["customers"]["requests_attack"] / 6.0 > 5 * flash["customers"]["requests_calm"] / 9.5
    assert isinstance(flash["alarm_raised"], bool)
    # the same runs as a table
    table = report.table(doc["runs"])
    assert table.count("\n") == len(names) + 1 and "| botnet |" in table
    assert "FastNetMon ban" in table
    assert time.monotonic() - t < 240

    # seawall's bounds
    by = {r["scenario"]: r for r in doc["runs"]}
    for name, r in by.items():
        assert r["legit_blocked"] == 0, (name, r["customers"]["blocked"])
        assert r["customers"]["success_attack"] >= 0.99, (name, r["customers"])
    for name in ("botnet", "spoofed@restart"):
        r = by[name]
        assert r["alarm_raised"] and r["cut"] is not None and r["cut"] <= 1.0, (name, r["cut"])
        assert r["passed_after_cut"] <= 0.01, (name, r["passed_after_cut"])
    # a daemon started during a spoofed SYN flood on the served port: no rule, no block (nothing that
    # would be shared with the customers): SYN cookies at the NIC for the port, which answer the
    # customers too; what then reaches the stack is the customers' (their success is checked above)
    r = by["syn@during"]
    assert r["daemon_decisions"] == 1 and r["cut"] is not None, (r["daemon_decisions"], r["cut"])
    assert r["passed_after_cut"] <= 0.01, r["passed_after_cut"]
    assert not flash["alarm_raised"]
    # FastNetMon beside it: it blackholes the victim (all customers with it), after seawall's cut
    f = by["botnet"]["fastnetmon"]
    assert f is not None and f["false_bans"] == 0 and f["detect_s"] is not None, f
    assert f["would"] and "blackhole 198.18.0.1" in f["would"][0], f["would"]
    assert flash["fastnetmon"]["false_bans"] == 0 and flash["fastnetmon"]["detect_s"] is None


def test_a_daemon_started_during_a_flood_cuts_it_within_a_second_of_its_start():
    """botnet@during alone (FastNetMon sniffing the same 40k pps beside it
    takes a core of these two, and delayed the daemon's start past a
    second): an empty state, started 3 s into the flood, the program
    loaded from the object cache, filled first as scripts/setup fills an
    installed host's."""
    # the installer's warm-up (scripts/setup): one command that creates the lists, in scratch folders,
    # fills the object cache (here the test session's) with the program the daemon will load
    import tempfile
    import uuid

    pins = f"/sys/fs/bpf/seawall-warm-{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory() as state:
        try:
            subprocess.run([SEAWALL, "block", "list"], check=True, capture_output=True, timeout=60,
                           env=dict(os.environ, SEAWALL_BPFFS=pins, SEAWALL_STATE_DIR=state))
        finally:
            subprocess.run(["rm", "-rf", pins])
    p = subprocess.run([SEAWALL, "evaluate", "--wire", "--scenario", "botnet@during", "--runs", "1", "--json"],
                       capture_output=True, text=True, timeout=200, env=dict(os.environ))
    assert p.returncode == 0, p.stderr[-2000:]
    (r,) = json.loads(p.stdout)["runs"]
    assert "error" not in r, r.get("error")
    since_start = None if r["cut"] is None else r["cut"] - r["daemon_starts_s"][-1]
    print(f"botnet@during: cut {since_start} s after the daemon's start")
    assert since_start is not None and since_start <= 1.0, (since_start, r["daemon_starts_s"], r["cut"])
    assert r["passed_after_cut"] <= 0.01 and r["legit_blocked"] == 0, r
    assert r["customers"]["success_attack"] >= 0.99, r["customers"]
