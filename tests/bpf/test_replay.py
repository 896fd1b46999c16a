"""`seawall replay` on the two real attack captures: the real program (via
BPF_PROG_TEST_RUN) and the real engine must detect each attack."""

from __future__ import annotations

import json
import os
import pty
import struct
import subprocess
import sys
import time
import tracemalloc

import pytest

from seawall.control.config import Config
from seawall.control.tools import pcap
from seawall.control.tools.frames import frame
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


# --- captures as operators have them: streamed, cooked, with progress ----------------

def _pcap_head(linktype: int = 1) -> bytes:
    """A little-endian, microsecond pcap file header."""
    return struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, linktype)


def _record(sec: int, usec: int, data: bytes) -> bytes:
    return struct.pack("<IIII", sec, usec, len(data), len(data)) + data


def _write_capture(path, n: int, span: float = 2.0, sources: int = 64) -> None:
    """n UDP frames from `sources` addresses of 198.18.0.0/24, evenly over
    `span` seconds, as an Ethernet pcap, written as it goes."""
    frames = [frame(0xC6120002 + i, 0xC6120001, "udp", 1000 + i, 53) for i in range(sources)]
    step = int(span * 1e6) // n
    with open(path, "wb") as f:
        f.write(_pcap_head())
        for k in range(n):
            t = 1_700_000_000_000_000 + k * step
            f.write(_record(t // 10**6, t % 10**6, frames[k % sources]))


def _replay_peak(path, pin_root) -> tuple:
    tracemalloc.start()
    try:
        r = replay(path, Config(), interval=0.1, background_pps=0, warmup=0, scratch_prefix=pin_root)
        return r, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_replay_streams_the_capture(tmp_path, paths):
    """Eight times the packets over the same span take the same memory: the
    capture is never held whole (it had been, as a list of frames: about
    40 MB more for the larger one here)."""
    small, large = str(tmp_path / "small.pcap"), str(tmp_path / "large.pcap")
    _write_capture(small, 20_000)
    _write_capture(large, 160_000)
    r1, peak1 = _replay_peak(small, paths.pin_root)
    r2, peak2 = _replay_peak(large, paths.pin_root)
    assert (r1.packets, r2.packets) == (20_000, 160_000)
    assert len(r1.timeline) == len(r2.timeline)  # the same span: the same cycles
    assert peak2 < peak1 + (4 << 20), (peak1, peak2)


def test_cooked_capture_replays_like_ethernet_and_leaves_out_what_the_host_sent(tmp_path, paths):
    """The SYN flood rewritten as `tcpdump -i any` writes it (SLL2), with
    one packet in ten sent by the host itself: the same detection and
    drops; the sent packets are counted, not replayed."""
    _need(SYN)
    out = tmp_path / "syn-any.pcap"
    with open(out, "wb") as f:
        f.write(_pcap_head(276))
        for k, fr in enumerate(pcap.read(SYN)):
            sec, usec = divmod(round(fr.ts * 1e6), 10**6)
            for pkttype in (0, 4) if k % 10 == 0 else (0,):
                rec = struct.pack("!2sHIHBB8s", fr.data[12:14], 0, 2, 1, pkttype, 6, fr.data[6:12] + bytes(2)) \
                    + fr.data[14:]
                f.write(_record(sec, usec, rec))
    r = replay(str(out), Config(), interval=0.1, background_pps=1000, warmup=20, scratch_prefix=paths.pin_root)
    assert (r.packets, r.outgoing) == (37841, 3785)
    sigs = [d["what"] for d in r.decisions if d["action"] == "signature"]
    assert sigs and "tcp dport 25565" in sigs[0], r.decisions
    assert r.dropped / r.packets >= 0.95 and r.background_dropped == 0


def _on_a_terminal(args, timeout=300) -> tuple:
    """(exit status, stdout, what the terminal on stderr showed)."""
    master, slave = pty.openpty()
    try:
        p = subprocess.Popen([SEAWALL, *args], stdout=subprocess.PIPE, stderr=slave, text=True)
    finally:
        os.close(slave)
    seen = b""
    try:
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO: the last writer closed
                break
            if not chunk:
                break
            seen += chunk
        out = p.stdout.read()
        p.wait(timeout)
    finally:
        os.close(master)
        if p.poll() is None:
            p.kill()
    return p.returncode, out, seen.decode()


def test_replay_progress_on_a_terminal_only(tmp_path, seawall_env):
    cap = str(tmp_path / "big.pcap")
    _write_capture(cap, 120_000, span=3.0)
    t = time.monotonic()
    rc, out, tty = _on_a_terminal(["replay", cap, "--warmup", "2", "--background", "500"])
    took = time.monotonic() - t
    assert rc == 0, tty
    assert "120000 packets over" in out
    lines = [s for s in tty.split("\r") if s.startswith("replay: ")]
    assert any("warm-up" in s for s in lines), tty
    shares = [s for s in lines if " of 120,000 packets (" in s]
    assert shares and "packets/s" in shares[-1], tty
    # at most four a second (and the first at once), then the line is cleared
    assert len(lines) <= 4 * took + 2, (len(lines), took)
    assert tty.endswith("\r\x1b[K") and "Traceback" not in tty
    for quiet in (["--quiet"], ["--json"]):
        rc, out, tty = _on_a_terminal(["replay", cap, "--warmup", "0", "--background", "0", *quiet])
        assert rc == 0 and "replay: " not in tty and "\r" not in tty, (quiet, tty)
    # not a terminal: nothing on stderr either
    p = subprocess.run([SEAWALL, "replay", cap, "--warmup", "0", "--background", "0"], capture_output=True,
                       text=True, timeout=300)
    assert p.returncode == 0 and p.stderr == "", p.stderr


def test_replay_cli_one_line_errors_for_links_and_corruption(tmp_path, seawall_env):
    """Before anything is compiled: an unknown link type, a record cut short
    late in a large capture (named by packet and byte), a cooked capture of
    only what the host sent."""
    def run(path):
        return subprocess.run([SEAWALL, "replay", str(path)], capture_output=True, text=True, timeout=120)

    usb = tmp_path / "usb.pcap"
    usb.write_bytes(_pcap_head(189) + _record(1, 0, bytes(4)))
    p = run(usb)
    assert p.returncode == 1 and p.stderr.count("\n") == 1 and "link type 189 is not one replay reads" in p.stderr
    big = tmp_path / "big.pcap"
    _write_capture(str(big), 50_000)
    with open(big, "r+b") as f:
        f.truncate(os.path.getsize(big) - 10)
    p = run(big)
    assert p.returncode == 1 and p.stderr.count("\n") == 1, p.stderr
    assert "truncated inside packet 50000 (record at byte" in p.stderr
    sent = tmp_path / "sent.pcap"
    rec = struct.pack("!HHIHBB8s", 0x0800, 0, 2, 1, 4, 6, bytes(8)) + frame("198.18.0.1", "198.18.0.2")[14:]
    sent.write_bytes(_pcap_head(276) + _record(1, 0, rec))
    p = run(sent)
    assert p.returncode == 1 and "no packets the host received (only 1 it sent)" in p.stderr
    assert not os.path.exists(seawall_env.pin_root)
