"""The wire report's arithmetic (pure; the runs themselves are tests/netns/test_wire.py's)."""

from __future__ import annotations

from seawall.control.tools.wire import report


def _run(scenario, cut, start="fresh", daemon_at=None, after=0.0):
    return {"scenario": scenario, "start": start, "cut": cut, "segments": [{}], "passed_after_cut": after,
            "passed_total": 0.02, "customers": {"success_attack": 1.0, "p99_calm_ms": 1.0, "p99_attack_ms": 2.0},
            "legit_blocked": 0, "alarm_raised": True, "duration_s": 33.0,
            "daemon_starts_s": [] if daemon_at is None else [daemon_at]}


def test_a_daemon_started_during_the_flood_is_timed_from_its_own_start_too():
    runs = [_run("botnet@during", c, "during", d) for c, d in ((3.45, 2.95), (3.52, 2.96), (3.60, 2.94))]
    runs += [_run("botnet", c) for c in (0.2, 0.3, 0.1)]
    s = {x["scenario"]: x for x in report.summarise(runs)}
    assert s["botnet@during"]["cut_median"] == 3.52 and s["botnet@during"]["cut_worst"] == 3.60
    assert round(s["botnet@during"]["cut_since_daemon_median"], 2) == 0.56
    assert round(s["botnet@during"]["cut_since_daemon_worst"], 2) == 0.66
    assert s["botnet"]["cut_since_daemon_median"] is None
    text = report.table(runs)
    assert "3.52 / 3.60 (0.56 / 0.66 after the daemon's start)" in text
    assert "| botnet | 3 | 3/3 | 0.20 / 0.30 |" in text


def test_a_run_never_cut_is_never_from_the_daemon_either():
    runs = [_run("spoofed@during", None, "during", 2.9), _run("spoofed@during", 3.4, "during", 2.9)]
    s = report.summarise(runs)[0]
    assert s["cut_worst"] == "never" and s["cut_since_daemon_worst"] == "never"
