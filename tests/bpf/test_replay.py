"""`seawall replay` on the two real attack captures: the real program (via
BPF_PROG_TEST_RUN) and the real engine must detect each attack."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from seawall.control.config import Config
from seawall.control.tools.replay import replay

CAPTURES = os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared", "captures")
SYN = os.path.join(CAPTURES, "pkt.TCP.synflood.spoofed.pcap")
AMP = os.path.join(CAPTURES, "amp.UDP.snmp.src161.pcapng")
SEAWALL = os.path.join(os.path.dirname(sys.executable), "seawall")


def _need(path):
    if not os.path.exists(path):
        pytest.fail(f"shared capture missing: {path} (CI clones shared/ beside the repo)")


def test_spoofed_syn_flood_capture_is_detected_and_dropped_by_signature():
    _need(SYN)
    r = replay(SYN, Config(), interval=0.1, background_pps=1000, warmup=20)
    assert r.packets == 37841
    assert r.detected_at is not None and r.detected_at <= 1.0, r.detected_at
    sigs = [d for d in r.decisions if d["action"] == "signature"]
    assert sigs and "tcp dport 25565" in sigs[0]["what"] and "flags S" in sigs[0]["what"], r.decisions
    # no per-source blocks: every packet is a new spoofed source
    assert not [d for d in r.decisions if d["action"] == "block"], r.decisions
    assert r.dropped_after_action >= 0.99, r.dropped_after_action
    assert r.dropped / r.packets >= 0.95
    assert r.background_dropped == 0


def test_snmp_reflection_capture_is_detected_with_a_source_port_161_signature():
    _need(AMP)
    r = replay(AMP, Config(), interval=0.1, background_pps=1000, warmup=20)
    assert r.packets == 4373
    assert r.detected_at is not None and r.detected_at <= 0.2
    sigs = [d["what"] for d in r.decisions if d["action"] == "signature"]
    assert any("udp sport 161" in s for s in sigs), r.decisions
    # the whole attack lasts 23 ms, inside one 100 ms cycle: detected, but
    # over before any decision can reach the kernel
    assert r.background_dropped == 0


def test_replay_cli_json_and_bad_captures(tmp_path, seawall_env):
    bad = tmp_path / "garbage.pcap"
    bad.write_bytes(b"this is not a capture at all")
    p = subprocess.run([SEAWALL, "replay", str(bad)], capture_output=True, text=True, timeout=60)
    assert p.returncode == 1 and p.stderr.count("\n") == 1 and "not a pcap" in p.stderr
    cut = tmp_path / "cut.pcap"
    with open(AMP, "rb") as f:
        cut.write_bytes(f.read(3000))
    p = subprocess.run([SEAWALL, "replay", str(cut)], capture_output=True, text=True, timeout=60)
    assert p.returncode == 1 and "truncated" in p.stderr and p.stderr.count("\n") == 1
    prefix = os.path.basename(seawall_env.pin_root) + "-replay-"
    p = subprocess.run([SEAWALL, "replay", AMP, "--json", "--warmup", "12", "--background", "800"],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert out["packets"] == 4373 and out["detected_at"] is not None
    assert out["timeline"] and {"t", "score", "capture_drop", "entropy"} <= set(out["timeline"][0])
    # replay works in a scratch bpffs folder, never the host's lists, and removes it
    # (the scratch folder is named after this test's own SEAWALL_BPFFS)
    assert not [d for d in os.listdir("/sys/fs/bpf") if d.startswith(prefix)]
    assert not os.path.exists(seawall_env.pin_root), "replay touched the host's lists"
