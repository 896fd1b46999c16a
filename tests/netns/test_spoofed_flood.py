"""A random-spoofed flood on the wire, against the running daemon.

trafgen sends UDP to port 9 from a random source of 198.19.0.0/16 per
packet (drnd() source bytes), from the attacker's namespace, for a few
seconds; HTTP customers keep working meanwhile. The daemon must raise the
alarm and cut the flood with a signature rule (there is no source to
block), block no one, leave the lists it found as they were, and the
kernel's per-source table must stay bounded with the doorkeeper and the
insert budget visibly at work.

The same flood through BPF_PROG_TEST_RUN, with hundreds of thousands of
distinct sources and a table compiled small enough to fill, is
tests/bpf/test_exhaustion.py.
"""

from __future__ import annotations

import json
import os
import signal
import time

import pytest

from seawall.control.datapath import abi, counters, loader

from daemonlab import ATTACKER_MAC, CLIENTS, LAB_CONFIG, SERVER_MAC_A, daemon_lab, events

def spoofed_trafgen(path):
    """UDP 198.19.<random>.<random>:40000 -> 198.18.1.1:9, raw bytes so
    that the source can be random per packet."""
    da = ", ".join(f"0x{b}" for b in SERVER_MAC_A.split(":"))
    sa = ", ".join(f"0x{b}" for b in ATTACKER_MAC.split(":"))
    with open(path, "w") as f:
        f.write(
            "{\n"
            f"  {da}, {sa}, 0x08, 0x00,\n"
            "  0x45, 0x00, c16(60), drnd(2), 0x00, 0x00, 0x40, 0x11, csumip(14, 33),\n"
            "  0xc6, 0x13, drnd(), drnd(),\n"
            "  0xc6, 0x12, 0x01, 0x01,\n"
            "  c16(40000), c16(9), c16(40), c16(0),\n"
            "  fill(0x41, 32)\n"
            "}\n"
        )


@pytest.fixture
def dlab(seawall_env):
    with daemon_lab(dict(os.environ)) as lab:
        yield lab


def tracked(pin_root: str, iface: str) -> int:
    with counters.SOURCES[4].open(loader.iface_dir(pin_root, iface)) as m:
        keys, _ = m.lookup_batch()
        return len(keys)


def rss_kib(pid: int) -> int:
    """Resident memory of a process (VmRSS), KiB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


def test_spoofed_flood_on_the_wire_is_cut_by_a_signature(dlab, seawall_env, tmp_path):
    lab = dlab
    cfg = tmp_path / "seawall.toml"
    cfg.write_text(LAB_CONFIG)
    conf = tmp_path / "spoofed.cfg"
    spoofed_trafgen(conf)
    lab.seawall("attach", "sws0")
    lab.seawall("attach", "swa0")
    lab.seawall("block", "add", "198.18.7.0/24", "--reason", "before the flood")
    lab.seawall("block", "add", "198.19.66.0/24", "--ttl", "1h", "--reason", "inside the spoofed range")
    lab.seawall("allow", "add", "198.19.9.0/24", "--reason", "inside the spoofed range")
    before = (json.loads(lab.seawall("block", "list", "--json").stdout),
              json.loads(lab.seawall("allow", "list", "--json").stdout))
    lab.http_server()
    time.sleep(0.5)
    daemon = lab.daemon(str(cfg), "sws0", "swa0")
    clients = lab.clients(duration=14, rate=40)
    time.sleep(6)  # warm-up and baseline on customer traffic only
    rss_before = rss_kib(daemon.pid)  # nsenter --net execs the daemon: same pid
    flood = lab.flood(str(conf), pps=30000, seconds=5)
    flood.wait(30)
    rss_after = rss_kib(daemon.pid)
    out, _ = clients.communicate(timeout=60)
    summary = json.loads(out)
    stats = json.loads(lab.seawall("stats", "-i", "swa0", "--json").stdout)["interfaces"]["swa0"]
    n_tracked = tracked(seawall_env.pin_root, "swa0")
    daemon.send_signal(signal.SIGTERM)
    _, err = daemon.communicate(timeout=20)
    ev = events(err)
    kinds = [e["event"] for e in ev]
    sigs = [e for e in ev if e["event"] == "signature"]
    print(f"\ncustomers: {summary}; swa0: drop_sig {stats['reasons']['drop_sig']['packets']}, "
          f"pass_clean {stats['reasons']['pass_clean']['packets']}; events {stats['events']}; "
          f"tracked v4 {n_tracked}; rules: {[s['rule'] for s in sigs]}; "
          f"daemon RSS {rss_before / 1024:.0f} -> {rss_after / 1024:.0f} MiB")

    assert "alarm" in kinds, err[-3000:]
    # the flood is UDP from port 40000 to port 9: a rule on either port cuts it
    assert sigs and any(s["rule"].startswith("udp") and ("dport 9" in s["rule"] or "sport 40000" in s["rule"])
                        for s in sigs), (kinds, [s["rule"] for s in sigs])
    assert "block" not in kinds, [e for e in ev if e["event"] == "block"]
    assert stats["reasons"]["drop_sig"]["packets"] > stats["reasons"]["pass_clean"]["packets"]
    # the doorkeeper deferred most first sightings; the budget capped the rest
    assert stats["events"]["src_deferred"] > 10 * stats["events"]["src_insert"]
    assert n_tracked <= abi.MAX_SOURCES_V4
    # the daemon's memory follows the bounded tables, not the flood's sources
    assert rss_after - rss_before < 16 * 1024, (rss_before, rss_after)
    after = (json.loads(lab.seawall("block", "list", "--json").stdout),
             json.loads(lab.seawall("allow", "list", "--json").stdout))
    strip = lambda blocks: [{k: v for k, v in b.items() if k not in ("ttl_seconds", "last_hit_at")} for b in blocks]
    assert strip(after[0]) == strip(before[0]) and after[1] == before[1]
    total = summary["ok"] + summary["fail"]
    assert total > 300 and summary["fail"] <= max(1, total // 200), summary
    legit = [b for b in after[0] if b["cidr"].split("/")[0] in CLIENTS]
    assert legit == []
    assert daemon.returncode == 0
