"""FastNetMon Community in the wire lab (control/tools/wire/fnm.py).

The lab of `seawall evaluate --wire` (lab.py: server, bridge, clients,
attacker) without the runner and without seawall. FastNetMon sniffs the
bridge port facing the server (`wbs` in the wire namespace: the port
mirror of its documentation, which sees every frame before seawall's XDP
on ws0 could drop it). First 2,000 packets/s for 8 s, two thirds of its
threshold (16,000 packets in all, over five times the threshold's
3,000): it must see them (its screen shows the rate) and ban nothing. Then a flood at
40,000 packets/s for 3 s from one source: it must ban the victim,
198.18.0.1, after the flood began, and its attack details must name the
source. Nothing may be written to the host's /var/log. The namespaces are
always removed and FastNetMon always stopped.

This file also measures the detection delay (flood start to ban):

    sudo .venv/bin/python tests/netns/test_fnm.py bench [RUNS] [PPS] [KIND] [SECONDS]
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time

import pytest

from seawall.control.tools.wire import floods
from seawall.control.tools.wire.fnm import (FastNetMon, Thresholds, config_text, detection, figures,
                                            merge_events, parse_details, parse_screen, summary)
from seawall.control.tools.wire.lab import ATTACKER, SERVER, Lab, wait_for

MIRROR = "wbs"  # the bridge port facing the server, in the wire namespace


def send(lab: Lab, workdir: str, pps: int, seconds: float, kind: str = "single") -> float:
    """One bounded burst from the attacker (tcpreplay --limit under
    timeout); returns its start (monotonic) once it has ended."""
    cmd = floods.command(floods.Burst(0.0, seconds, pps, kind), workdir)
    began = time.monotonic()
    p = lab.start(lab.a, *cmd, stderr=subprocess.PIPE)
    p.wait(timeout=seconds + 15)
    assert p.returncode == 0, p.stderr.read().decode(errors="replace")[-300:]
    return began


def host_log_state() -> tuple:
    out = []
    for p in ("/var/log/fastnetmon.log", "/var/log/fastnetmon_attacks", "/var/log/fastnetmon_backtrace.dump",
              "/tmp/fastnetmon.dat"):
        try:
            st = os.stat(p)
            out.append((p, st.st_mtime_ns, st.st_size))
        except FileNotFoundError:
            out.append((p, None, None))
    return tuple(out)


def test_bans_the_victim_of_a_flood_and_nothing_below_its_threshold(tmp_path):
    before = host_log_state()
    lab = Lab()
    fnm = None
    try:
        lab.build()
        fnm = FastNetMon.mirror(lab, str(tmp_path / "fnm"))
        assert (fnm.netns, fnm.iface, fnm.prefixes) == (lab.w, MIRROR, [f"{SERVER}/32"])
        fnm.start(wait=False)  # as the runner starts it, beside the daemon
        ready = fnm.wait_ready()
        assert fnm.running() and fnm.capturing() and ready == fnm.started_at
        floods.command(floods.Burst(0.0, 1.0, 1, "single"), str(tmp_path))  # the frames, before the clock

        # below the threshold: seen, not banned
        send(lab, str(tmp_path), 2000, 8.0)
        seen = fnm.screen()["incoming"].get(SERVER, 0)  # its moving average, 1 - e^(-8/5) = 80% there
        assert 1000 <= seen < Thresholds().pps, seen
        time.sleep(1.2)
        assert fnm.events() == []

        # a flood: the victim banned, after the flood began
        began = send(lab, str(tmp_path), 40000, 3.0)
        assert wait_for(lambda: any(e["action"] == "ban" for e in fnm.events()), 5.0)
        bans = [e for e in fnm.events() if e["action"] == "ban"]
        assert [e["ip"] for e in bans] == [SERVER]
        ban = bans[0]
        assert ban["would"] == f"blackhole {SERVER}/32" and ban["direction"] == "incoming"
        assert ban["pps"] >= Thresholds().pps
        delay = detection(fnm.events(), began, SERVER)
        assert delay is not None and 0.0 <= delay < 3.0, delay
        assert ban["mono"] >= began and ban["t"] > time.time() - 60
        assert ban["attack"]["fields"]["attack protocol"] == "udp"
        # its packet samples name the attacker
        assert wait_for(lambda: "sources" in fnm.events()[0]["attack"], 5.0)
        assert fnm.events()[0]["attack"]["sources"] == [ATTACKER]
        assert summary(fnm.events()[0], began).startswith(f"would blackhole {SERVER}/32 at +")
        # what it writes stays in its folder
        assert os.listdir(tmp_path / "fnm" / "var-log" / "fastnetmon_attacks")
        assert (tmp_path / "fnm" / "fastnetmon.log").stat().st_size > 0
        pid = fnm.proc.pid
    finally:
        if fnm is not None:
            fnm.stop()
        lab.close()
    assert not os.path.exists(f"/proc/{pid}")
    assert not fnm.running()
    assert host_log_state() == before
    assert not any(ns.startswith(lab.s[:-2]) for ns in subprocess.run(
        ["ip", "netns", "list"], capture_output=True, text=True).stdout.split())


def test_refuses_bad_input_and_a_missing_namespace(tmp_path):
    with pytest.raises(ValueError, match="whitespace"):
        FastNetMon("x", "eth0", ["198.18.0.1"], str(tmp_path / "a b"))
    with pytest.raises(ValueError, match="/var/log"):
        FastNetMon("x", "eth0", ["198.18.0.1"], "/var/log/fnm")
    with pytest.raises(ValueError, match="protected prefix"):
        FastNetMon("x", "eth0", [], str(tmp_path))
    with pytest.raises(ValueError, match="host bits"):
        FastNetMon("x", "eth0", ["198.18.0.1/24"], str(tmp_path))
    f = FastNetMon("sww-nonexistent-s", "ws0", ["198.18.0.1"], str(tmp_path / "f"))
    with pytest.raises(RuntimeError, match="no network namespace"):
        f.start()
    assert f.proc is None and not os.path.exists(tmp_path / "f")
    # an interface it cannot sniff: it never opens a capture there, and is stopped
    lab = Lab()
    try:
        lab.build()
        f = FastNetMon(lab.w, "nosuch0", [f"{SERVER}/32"], str(tmp_path / "g"))
        with pytest.raises(RuntimeError, match="did not open its capture on nosuch0"):
            f.start(timeout=3.0)
        assert f.proc is None and f.proc_rc is not None
    finally:
        lab.close()


def test_config_and_reports_parsed(tmp_path):
    text = config_text("wbs", "/w/fnm", Thresholds())
    conf = dict(ln.split(" = ") for ln in text.splitlines() if " = " in ln)
    assert conf["interfaces"] == "wbs" and conf["mirror_afpacket"] == "on"
    assert conf["threshold_pps"] == "3000" and conf["ban_for_pps"] == "on" and conf["ban_for_flows"] == "off"
    assert conf["disable_usage_report"] == "on" and conf["enable_api"] == "off" and conf["prometheus"] == "off"
    paths = [v for k, v in conf.items() if k.endswith("_path")]
    assert len(paths) >= 6 and all(p.startswith("/w/fnm/") for p in paths), paths

    det = ("IP: 198.18.0.1\nAttack type: udp_flood\nAttack protocol: udp\n\n"
           "2026-11-30 05:46:19.468490 198.18.1.66:40000 > 198.18.0.1:9 protocol: udp frag: 0  packets: 1\n"
           "2026-11-30 05:46:19.468491 198.19.3.4:5 > 198.18.0.1:9 protocol: udp frag: 0  packets: 1\n"
           "2026-11-30 05:46:19.468492 198.18.1.66:40000 > 198.18.0.1:9 protocol: udp frag: 0  packets: 1\n")
    det += "2026-11-30 05:46:19.468493 198.18.0.1:9 > 198.18.1.66:40000 protocol: udp frag: 0  packets: 1\n"
    p = parse_details(det, "198.18.0.1")  # only what was sent to the victim
    assert p["fields"]["attack type"] == "udp_flood" and p["sources"] == ["198.18.1.66", "198.19.3.4"]
    assert p["dports"] == ["9"] and p["samples"] == 3
    assert parse_details(det)["samples"] == 4 and parse_details(det)["sources"][0] == "198.18.1.66"
    files = {"/d/b": det.split("\n\n")[0], "/d/a": det}
    lines = ['{"t": 100.5, "ip": "198.18.0.1", "direction": "incoming", "pps": "4999", "action": "ban", '
             '"details": "/d/b"}',
             'not json',
             '{"t": 101.2, "ip": "198.18.0.1", "direction": "incoming", "pps": "4999", '
             '"action": "attack_details", "details": "/d/a"}',
             '{"t": 300.0, "ip": "198.18.0.1", "direction": "incoming", "pps": "0", "action": "unban", '
             '"details": "/d/u"}']
    evs = merge_events(lines, lambda path: files.get(path, ""), offset=100.0)
    assert [e["action"] for e in evs] == ["ban", "unban"]
    assert evs[0]["mono"] == 0.5 and evs[0]["pps"] == 4999 and evs[0]["attack"]["sources"][0] == "198.18.1.66"
    assert detection(evs, 0.4) == 0.1 and detection(evs, 0.6) is None and detection(evs, 0.0, "198.18.0.2") is None
    fig = figures(evs, 0.25, 10.0, "198.18.0.1")
    assert fig["detect_s"] == 0.25 and fig["false_bans"] == 0 and fig["pps"] == 4999 and fig["unbans"] == 1
    assert fig["would"] == ["would blackhole 198.18.0.1/32 at +0.25 s (incoming, 4999 pps, udp)"]
    assert fig["sources"] == ["198.18.1.66", "198.19.3.4"] and fig["protocol"] == "udp" and fig["samples"] == 3
    late = figures(evs, 5.0, 10.0)  # the ban came before this flood: a false ban, no detection
    assert late["detect_s"] is None and late["false_bans"] == 1 and late["would"] == []
    screen = ("Incoming traffic\t  6112 pps      5 mbps      0 flows\n"
              "198.18.0.1\t\t  6112 pps      5 mbps      0 flows  *banned* \n\n"
              "Outgoing traffic\t     0 pps      0 mbps      0 flows\n"
              "198.18.0.1\t\t     3 pps      0 mbps      0 flows\n")
    assert parse_screen(screen) == {"incoming": {"198.18.0.1": 6112}, "outgoing": {"198.18.0.1": 3},
                                    "banned": ["198.18.0.1"]}


def bench(runs: int, pps: int, kind: str, seconds: float = 3.0) -> None:
    """Detection delay over `runs` floods of `seconds`, each with a fresh
    FastNetMon started at a different phase of its one-second tick."""
    delays = []
    with tempfile.TemporaryDirectory(prefix="fnm-bench-") as wd:
        lab = Lab()
        try:
            lab.build()
            floods.command(floods.Burst(0.0, 1.0, 1, kind), wd)
            for k in range(runs):
                with FastNetMon.mirror(lab, os.path.join(wd, f"fnm{k}")) as f:
                    time.sleep(1.0 + (k * 0.37) % 1.0)
                    began = send(lab, wd, pps, seconds, kind)
                    wait_for(lambda: f.events(), 3.0)
                    d = detection(f.events(), began, SERVER)
                    evs = f.events()
                    print(f"run {k + 1}: detection {d} s; " + (summary(evs[0], began) if evs else "no ban"))
                    delays.append(float("inf") if d is None else d)
        finally:
            lab.close()
    print(f"{kind} at {pps} pps for {seconds:g} s, {runs} runs: median {statistics.median(delays):.3f} s, "
          f"min {min(delays):.3f} s, worst {max(delays):.3f} s")


if __name__ == "__main__":
    if len(sys.argv) >= 2 and sys.argv[1] == "bench":
        a = sys.argv[2:] + [None] * 4
        bench(int(a[0] or 5), int(a[1] or 40000), a[2] or "single", float(a[3] or 3.0))
    else:
        sys.exit("usage: test_fnm.py bench [RUNS] [PPS] [KIND] [SECONDS]")
