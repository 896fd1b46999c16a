"""control/harness.py: every simulated scenario meets its bounds through
the real engine, for two seeds; and check() really fails a result that
misses a bound. Each scenario takes 1-4 s, so each (scenario, seed) is run
once and its Result shared by the tests that look at it."""

from __future__ import annotations

import dataclasses

import pytest

from seawall.control.tools import harness
from seawall.control.tools.harness import Result, Scenario

SCENARIOS = {sc.name: sc for sc in harness.scenarios()}
_results: dict = {}


def result(name: str, seed: int) -> Result:
    if (name, seed) not in _results:
        _results[name, seed] = harness.run(SCENARIOS[name], seed=seed)
    return _results[name, seed]


def test_scenario_names_are_unique():
    names = [sc.name for sc in harness.scenarios()]
    assert len(names) == len(set(names)) == 8
    assert {"flash-crowd", "low-rate", "single-source", "spoofed-syn", "reflection"} <= set(names)


@pytest.mark.parametrize("seed", [1, 2])
@pytest.mark.parametrize("name", list(SCENARIOS))
def test_scenario_meets_its_bounds(name, seed):
    r = result(name, seed)
    assert r.name == name
    assert r.ok, f"{name} (seed {seed}) missed its bounds: {'; '.join(r.failures)}"
    assert r.failures == []
    assert r.legit_packets > 100_000  # the customers were there all along
    sc = SCENARIOS[name]
    if sc.expect_detect:
        assert r.attack_packets > 0 and r.detected


@pytest.mark.parametrize("seed", [1, 2])
def test_flash_crowd_blocks_nobody_and_drops_nothing(seed):
    r = result("flash-crowd", seed)
    assert r.attack_packets == 0
    assert r.blocks == 0
    assert r.legit_blocked == 0
    assert r.signatures == []
    assert r.legit_dropped == 0.0


@pytest.mark.parametrize("seed", [1, 2])
def test_low_rate_attack_blocks_nobody(seed):
    r = result("low-rate", seed)
    assert r.attack_packets > 0
    assert r.blocks == 0
    assert r.legit_blocked == 0
    assert r.signatures == []
    assert r.legit_dropped == 0.0


@pytest.mark.parametrize("seed", [1, 2])
def test_single_source_is_one_block(seed):
    r = result("single-source", seed)
    assert r.blocks == 1 and r.signatures == []
    assert r.mitigation_delay is not None and r.mitigation_delay <= 1.0


@pytest.mark.parametrize("seed", [1, 2])
def test_reflection_is_stopped_by_a_signature_on_port_161(seed):
    r = result("reflection", seed)
    assert r.blocks == 0
    assert r.signatures and all(s.startswith("udp sport 161") for s in r.signatures)


def test_run_is_deterministic_for_a_seed():
    sc = SCENARIOS["low-rate"]
    assert harness.run(sc, seed=1) == result("low-rate", 1)


# --- check() ------------------------------------------------------------------------

SC = Scenario("hand-made", "for check()", attack=lambda rng: None, active=lambda t: False,
              max_delay=1.0, min_dropped=0.9, max_legit_dropped=0.001)


def good(**changes) -> Result:
    r = Result("hand-made", detected=True, delay=0.5, mitigation_delay=0.5, attack_packets=1000,
               attack_dropped=0.95, legit_packets=100000, legit_dropped=0.0, legit_blocked=0, blocks=1)
    return dataclasses.replace(r, **changes)


def checked(sc: Scenario, r: Result) -> Result:
    r.ok, r.failures = False, ["stale"]  # check() must set both, not only add to them
    harness.check(sc, r)
    return r


def test_check_passes_a_result_within_every_bound():
    r = checked(SC, good())
    assert r.ok and r.failures == []


def test_check_passes_a_result_exactly_at_every_bound():
    r = checked(SC, good(delay=1.0, attack_dropped=0.9, legit_dropped=0.001))
    assert r.ok, r.failures


@pytest.mark.parametrize("changes, fragment", [
    (dict(detected=False, delay=None), "not detected"),
    (dict(delay=1.5), "detected after 1.5s > 1.0s"),
    (dict(attack_dropped=0.5), "dropped 50.0% of the attack < 90%"),
    (dict(attack_dropped=0.8999), "of the attack < 90%"),
    (dict(legit_blocked=1), "1 legitimate sources blocked"),
    (dict(legit_dropped=0.0011), "of legitimate packets > 0.100%"),
    (dict(legit_dropped=0.5), "dropped 50.000% of legitimate packets"),
], ids=["undetected", "late", "attack-passed", "attack-just-passed", "legit-blocked",
        "legit-just-dropped", "legit-dropped"])
def test_check_fails_each_bound(changes, fragment):
    r = checked(SC, good(**changes))
    assert not r.ok
    assert len(r.failures) == 1, r.failures
    assert fragment in r.failures[0]


def test_check_lists_every_missed_bound():
    r = checked(SC, good(detected=False, delay=None, attack_dropped=0.0, legit_blocked=3, legit_dropped=0.2))
    assert not r.ok and len(r.failures) == 4


def test_check_undetected_is_fine_when_not_expected():
    quiet = dataclasses.replace(SC, expect_detect=False, min_dropped=0.0, max_legit_dropped=0.0)
    r = checked(quiet, good(detected=False, delay=None, attack_dropped=0.0, blocks=0))
    assert r.ok, r.failures
    r = checked(quiet, good(detected=False, delay=None, attack_dropped=0.0, legit_dropped=1e-6))
    assert not r.ok and "of legitimate packets > 0.000%" in r.failures[0]
    r = checked(quiet, good(detected=True, delay=30.0, attack_dropped=0.0, blocks=0))
    assert r.ok  # a late alarm only matters where one is expected


def test_check_uses_the_scenarios_own_bounds():
    loose = dataclasses.replace(SC, max_delay=5.0, min_dropped=0.5, max_legit_dropped=0.05)
    assert checked(loose, good(delay=4.0, attack_dropped=0.6, legit_dropped=0.04)).ok
    assert not checked(SC, good(delay=4.0, attack_dropped=0.6, legit_dropped=0.04)).ok


def test_flash_crowd_bounds_forbid_any_legitimate_drop():
    sc = SCENARIOS["flash-crowd"]
    r = checked(sc, good(detected=False, delay=None, attack_packets=0, attack_dropped=0.0, legit_dropped=1e-6))
    assert not r.ok


def test_table_shows_a_missed_bound():
    bad = checked(SC, good(legit_blocked=2))
    text = harness.table([checked(SC, good()), bad])
    lines = text.splitlines()
    assert len(lines) == 4
    assert lines[2].endswith("| met |")
    assert "MISSED: 2 legitimate sources blocked" in lines[3]
