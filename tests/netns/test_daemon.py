"""The daemon against real traffic: customers keep being served while a
flood from another namespace is detected and its source blocked."""

from __future__ import annotations

import json
import os
import signal
import time

import pytest

from daemonlab import ATTACKER, CLIENTS, LAB_CONFIG, daemon_lab, events, write_flood_conf



@pytest.fixture
def dlab(seawall_env):
    env = dict(os.environ)
    with daemon_lab(env) as lab:
        yield lab


def test_flood_is_cut_and_customers_stay_served(dlab, tmp_path):
    lab = dlab
    cfg = tmp_path / "seawall.toml"
    cfg.write_text(LAB_CONFIG)
    conf = tmp_path / "flood.cfg"
    write_flood_conf(conf)
    lab.seawall("attach", "sws0")
    lab.seawall("attach", "swa0")
    lab.http_server()
    time.sleep(0.5)
    daemon = lab.daemon(str(cfg), "sws0", "swa0")
    clients = lab.clients(duration=16, rate=60)
    time.sleep(7)  # warm-up and baseline on customer traffic only
    t_flood = time.monotonic()
    flood = lab.flood(str(conf), pps=40000, seconds=6)
    blocked_at = None
    while time.monotonic() - t_flood < 6:
        blocks = json.loads(lab.seawall("block", "list", "--json").stdout)
        if any(b["cidr"] == f"{ATTACKER}/32" for b in blocks):
            blocked_at = time.monotonic() - t_flood
            break
        time.sleep(0.1)
    flood.wait(30)
    out, _ = clients.communicate(timeout=60)
    summary = json.loads(out)
    daemon.send_signal(signal.SIGTERM)
    _, err = daemon.communicate(timeout=20)
    ev = events(err)

    print(f"attacker blocked {blocked_at} s after the flood started; customers: {summary}")
    print("\n".join(l for l in err.splitlines() if "\"block\"" in l or "alarm" in l))
    assert blocked_at is not None, f"attacker never blocked; daemon said: {err[-2000:]}"
    assert blocked_at < 3.0, f"attacker blocked only after {blocked_at:.1f} s"
    blocks = json.loads(lab.seawall("block", "list", "--json").stdout)
    legit_blocked = [b["cidr"] for b in blocks if b["cidr"].split("/")[0] in CLIENTS or b["cidr"].startswith("198.18.0.")]
    assert legit_blocked == [], f"customers blocked: {legit_blocked}"
    auto = [b for b in blocks if b["cidr"] == f"{ATTACKER}/32"][0]
    assert auto["source"] == "auto" and auto["expires_at"] is not None
    total = summary["ok"] + summary["fail"]
    assert total > 500, summary
    assert summary["fail"] <= max(1, total // 200), f"customers failed: {summary}"
    stats = json.loads(lab.seawall("stats", "--json").stdout)["interfaces"]
    assert stats["swa0"]["reasons"]["drop_block"]["packets"] > 10000
    assert stats["sws0"]["reasons"]["drop_block"]["packets"] == 0
    kinds = [e["event"] for e in ev]
    assert "alarm" in kinds and "block" in kinds and kinds[-1] == "stopped", kinds
    block_ev = [e for e in ev if e["event"] == "block"][0]
    assert block_ev["cidr"] == f"{ATTACKER}/32" and block_ev["ttl"] > 0 and "score" in block_ev
    assert daemon.returncode == 0
    # SIGTERM leaves filtering in place
    st = json.loads(lab.seawall("status", "--json").stdout)
    assert {i["interface"]: i["state"] for i in st["interfaces"]} == {"sws0": "attached", "swa0": "attached"}
