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


def ready(lab, tmp_path) -> tuple:
    """(config, flood config): the lab's daemon config and the attacker's
    trafgen file written, both interfaces attached, the server up."""
    cfg = tmp_path / "seawall.toml"
    cfg.write_text(LAB_CONFIG)
    conf = tmp_path / "flood.cfg"
    write_flood_conf(conf)
    lab.seawall("attach", "sws0")
    lab.seawall("attach", "swa0")
    lab.http_server()
    time.sleep(0.5)
    return cfg, conf


def attacker_blocked(lab, t0: float, within: float):
    """Seconds from t0 until `block list` shows the attacker, or None."""
    while time.monotonic() - t0 < within:
        blocks = json.loads(lab.seawall("block", "list", "--json").stdout)
        if any(b["cidr"] == f"{ATTACKER}/32" for b in blocks):
            return time.monotonic() - t0
        time.sleep(0.1)
    return None


def test_flood_is_cut_and_customers_stay_served(dlab, tmp_path):
    lab = dlab
    cfg, conf = ready(lab, tmp_path)
    daemon = lab.daemon(str(cfg), "sws0", "swa0")
    clients = lab.clients(duration=16, rate=60)
    time.sleep(7)  # warm-up and baseline on customer traffic only
    t_flood = time.monotonic()
    flood = lab.flood(str(conf), pps=40000, seconds=6)
    blocked_at = attacker_blocked(lab, t_flood, 6)
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


def test_restart_in_the_middle_of_a_flood_judges_it_against_the_saved_baseline(dlab, tmp_path, seawall_env):
    """The daemon learns the customers, is stopped (its baseline saved),
    and starts again three seconds into a flood: it cuts the flood at once
    and the baseline it saves afterwards has not learnt it."""
    from seawall.control.config import Config, load
    from seawall.control.service import persist

    lab = dlab
    cfg, conf = ready(lab, tmp_path)
    clients = lab.clients(duration=26, rate=60)
    daemon = lab.daemon(str(cfg), "sws0", "swa0")
    time.sleep(8)  # calm: customers only
    daemon.send_signal(signal.SIGTERM)
    _, err1 = daemon.communicate(timeout=20)
    saved = os.path.join(seawall_env.state_dir, "baseline.npz")
    assert os.path.exists(saved), err1[-2000:]
    before, _ = persist.load(saved, load(str(cfg)), 0.0)
    ref_before = before.volumes.reference(300, {})[0]
    assert 300 <= ref_before < 3000, ref_before  # the customers' busy rate (or the lab's floor)

    flood = lab.flood(str(conf), pps=40000, seconds=10)
    time.sleep(3)
    daemon = lab.daemon(str(cfg), "sws0", "swa0")
    t_start = time.monotonic()
    blocked_at = attacker_blocked(lab, t_start, 6)
    flood.wait(30)
    time.sleep(1)
    daemon.send_signal(signal.SIGTERM)
    _, err2 = daemon.communicate(timeout=20)
    clients.communicate(timeout=60)
    ev = events(err2)
    said = [e for e in ev if e["event"] == "baseline"]
    assert said and said[0]["result"].startswith("baseline restored"), said
    assert blocked_at is not None and blocked_at < 3.0, (blocked_at, err2[-2000:])
    alarm = [e for e in ev if e["event"] == "alarm"][0]
    assert alarm["score"] >= 2 * Config().detection.threshold, alarm
    after, _ = persist.load(saved, load(str(cfg)), 0.0)
    assert after.volumes.reference(300, {})[0] <= 1.5 * ref_before + 1, "the flood was learnt"
    print(f"restarted 3 s into the flood: blocked {blocked_at:.2f} s after the start; busy rate "
          f"{ref_before:.0f} pps before, {after.volumes.reference(300, {})[0]:.0f} pps after; alarm {alarm}")


def test_a_large_source_table_is_read_through_the_hot_table_and_still_cuts(dlab, tmp_path, seawall_env):
    """With `sources_v4` past what is read whole each cycle, the daemon
    attaches a build with the larger table, reads it through the hot table
    and slices (service/sources.py), and still blocks the flooding source
    within a second or so while the customers stay served."""
    from seawall.control.datapath import abi, counters, loader

    lab = dlab
    big = 262144
    cfg = tmp_path / "seawall.toml"
    cfg.write_text(LAB_CONFIG.replace("[daemon]\n", f"[daemon]\nsources_v4 = {big}\n"))
    conf = tmp_path / "flood.cfg"
    write_flood_conf(conf)
    lab.seawall("attach", "sws0")  # the customers' side: the default build
    lab.http_server()
    time.sleep(0.5)
    daemon = lab.daemon(str(cfg), "sws0", "swa0")  # attaches swa0 itself, with the large table
    clients = lab.clients(duration=14, rate=60)
    time.sleep(6)
    swa0 = loader.iface_dir(seawall_env.pin_root, "swa0")
    with counters.IfaceCounters(swa0) as c:
        assert c.sources[4].max_entries == big and c.hot_marks
        cfg_slot = abi.SwConfig.from_buffer_copy(c.config.lookup(b"\0" * 4))
        assert cfg_slot.hot_pkts >= 1 and cfg_slot.epoch > 10, "the daemon runs the hot marks, cycle by cycle"
    t_flood = time.monotonic()
    flood = lab.flood(str(conf), pps=40000, seconds=5)
    blocked_at = attacker_blocked(lab, t_flood, 5)
    with counters.IfaceCounters(swa0) as c:
        hot = c.read_hot()
    flood.wait(30)
    out, _ = clients.communicate(timeout=60)
    summary = json.loads(out)
    daemon.send_signal(signal.SIGTERM)
    _, err = daemon.communicate(timeout=20)
    print(f"large table: attacker blocked {blocked_at} s after the flood started; customers {summary}")
    assert blocked_at is not None and blocked_at < 1.5, (blocked_at, err[-2000:])
    assert any(str(hot.prefix(i)) == f"{ATTACKER}/32" for i in range(len(hot))), \
        "the attacker went through the hot table"
    blocks = json.loads(lab.seawall("block", "list", "--json").stdout)
    assert [b["cidr"] for b in blocks] == [f"{ATTACKER}/32"], blocks
    total = summary["ok"] + summary["fail"]
    assert total > 400 and summary["fail"] <= max(1, total // 200), summary
    with counters.IfaceCounters(swa0) as c:
        assert abi.SwConfig.from_buffer_copy(c.config.lookup(b"\0" * 4)).hot_pkts == 0, "marks off at stop"
