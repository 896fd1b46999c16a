"""`seawall bench --quick --json`: a smoke test of the bench itself.

It checks the report's shape, that every figure is positive and every
ratio computed from the figures it names, and that nothing is left behind.
It asserts no performance target: this machine is shared and noisy, and
BENCHMARKS.md is where the figures are judged. It fails when the bench
breaks. About 40 s (the quick mode: small repeats and tables; the profile's
nine builds are most of it)."""

from __future__ import annotations

import glob
import json
import math
import os
import subprocess
import sys

import pytest

from seawall.control.tools.bench.datapath import SPOOFED_RUNS_FACTOR
from seawall.control.tools.bench.peers import XdpFilter

SEAWALL = os.path.join(os.path.dirname(sys.executable), "seawall")

DATAPATH_CASES = ("floor", "pass", "pass_listed_24", "drop_block", "drop_block_permanent", "drop_signature",
                  "ipv6_pass", "vlan_pass", "floor, spoofed wrapper", "spoofed_mix")
TARGETED = ("pass", "pass_listed_24", "drop_block", "drop_block_permanent", "ipv6_pass", "vlan_pass", "spoofed_mix")


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    png = tmp_path_factory.mktemp("bench") / "bench.png"
    before = set(glob.glob("/sys/fs/bpf/seawall-bench-*"))
    p = subprocess.run([SEAWALL, "bench", "--quick", "--profile", "--json", "--plot", str(png)],
                       capture_output=True, text=True, timeout=420)
    assert p.returncode == 0, p.stderr[-2000:]
    r = json.loads(p.stdout)
    r["_png"] = png
    r["_stderr"] = p.stderr
    r["_leftover_pins"] = set(glob.glob("/sys/fs/bpf/seawall-bench-*")) - before
    return r


def by_name(r: dict) -> dict:
    return {c["name"]: c for c in r["cases"]}


def test_the_report_is_one_object_with_every_part(report):
    for key in ("command", "params", "machine", "cases", "profile", "control_stages", "memory", "notes"):
        assert key in report, key
    assert report["params"]["quick"] is True
    assert report["machine"]["cpus"] >= 1 and report["machine"]["kernel"]


def test_every_case_has_a_name_a_positive_figure_a_target_and_met(report):
    assert report["cases"]
    for c in report["cases"]:
        assert c["name"] and c["part"] in ("datapath", "control")
        figure = c.get("ns_per_packet", c.get("seconds"))
        assert figure is not None and figure > 0, c
        assert "target" in c and "met" in c
        assert (c["target"] is None) == (c["met"] is None), c
        if c["met"] is not None:
            assert isinstance(c["met"], bool)


def test_the_datapath_cases_are_all_there_with_ratios_to_their_floor(report):
    cases = by_name(report)
    for name in DATAPATH_CASES:
        assert name in cases, name
    floor = cases["floor"]["ns_per_packet"]
    spoof_floor = cases["floor, spoofed wrapper"]["ns_per_packet"]
    for name in DATAPATH_CASES:
        c = cases[name]
        base = spoof_floor if "spoof" in name else floor
        assert math.isclose(c["ratio_to_floor"], c["ns_per_packet"] / base, abs_tol=0.01), c
        assert len(c["runs_ns"]) >= report["params"]["runs"]
    for name in TARGETED:
        assert isinstance(cases[name]["met"], bool) and cases[name]["target"], name


def test_the_spoofed_mix_saw_a_new_source_every_packet(report):
    c = by_name(report)["spoofed_mix"]
    total = report["params"]["repeat"] * report["params"]["runs"] * SPOOFED_RUNS_FACTOR
    assert sum(c["verdicts"].values()) == total
    # a source never seen before is remembered by the doorkeeper, not tracked
    assert c["events"]["src_deferred"] > 0.9 * total


@pytest.mark.skipif(XdpFilter.find() is None, reason="xdp-tools is not installed (scripts/setup installs it)")
def test_xdp_filter_runs_beside_seawall(report):
    cases = by_name(report)
    for name in ("pass", "drop_block", "drop_block_permanent"):
        xf = cases[f"xdp-filter {name}"]
        assert xf["ns_per_packet"] > 0
        vs = cases[f"{name} vs xdp-filter"]
        assert math.isclose(vs["ratio_to_xdp_filter"], vs["ns_per_packet"] / xf["ns_per_packet"], abs_tol=0.01)
        assert isinstance(vs["met"], bool)
    assert cases["xdp-filter spoofed_mix"]["ns_per_packet"] > 0


def test_the_control_plane_cases_and_stages(report):
    cases = by_name(report)
    bulk = [c for c in report["cases"] if c["name"].startswith("bulk install")]
    assert bulk and bulk[0]["entries"] > 0 and bulk[0]["single_add_seconds"] > 0
    n = report["params"]["sources"][0]
    label = f"{n // 1000}k"
    for name in (f"scoring cycle, {label} sources", f"scoring cycle, {label} sources, pure part",
                 f"scoring cycle under attack, {label} sources"):
        assert cases[name]["seconds"] > 0, name
    assert cases[f"scoring cycle, {label} sources"]["sources"] == n
    attack = cases[f"scoring cycle under attack, {label} sources"]
    assert attack["alarm"] is True and attack["blocks"] > 0
    stages = report["control_stages"][label]
    assert set(stages) == {"read_features", "read_sources", "deltas_and_engine"}
    assert all(v > 0 for v in stages.values()), stages
    assert cases[f"scoring cycle, {label} sources, pure part"]["seconds"] == stages["deltas_and_engine"]
    assert report["memory"]["cycle_process"]["rss_mib"] > 0


def test_the_profile_builds_every_variant_of_the_unmodified_program(report):
    """xdp/bench/profile.h replaces one part's helper at a time; every
    variant compiles, loads and passes the verifier, and the program
    without anything but parsing costs less than the whole one."""
    rows = {r["build"]: r for r in report["profile"]}
    assert "full program" in rows and rows["full program"]["skip_mask"] == 0
    variants = [r for r in report["profile"] if r["skip_mask"]]
    assert len(variants) == 8, [r["build"] for r in variants]
    for r in variants:
        assert "error" not in r, r
        assert set(r["cost_ns"]) == {"pass", "drop_block", "spoofed_mix"}
    assert rows["without everything but parsing"]["pass"] < rows["full program"]["pass"]


def test_the_plot_is_a_png(report):
    with open(report["_png"], "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_nothing_is_left_behind(report):
    assert not report["_leftover_pins"]
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert "swt-bench-" not in netns
