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


# --- the SYN cases (control/tools/bench/syn.py) ----------------------------------------------------

SYN_COOKIE_CASES = ("syn_cookie", "syn_cookie_ipv6")


def test_the_syn_cases_were_answered_with_cookie_syn_acks(report):
    """The bench fails (and this fixture with it) unless every SYN of a
    cookie case came back XDP_TX, as a SYN-ACK to its source, counted
    under tx_syncookie; the report must say so, against its own floor."""
    from seawall.control.tools.bench.syn import PROTECTED_PORT, SINGLE_FLOOR

    cases = by_name(report)
    n = report["params"]["syn_packets"]
    floor = cases[SINGLE_FLOOR]
    assert floor["packets"] == n and floor["ns_per_packet"] > 0 and floor["ratio_to_floor"] == 1.0
    for name in SYN_COOKIE_CASES:
        c = cases[name]
        assert (c["verdict"], c["reason"], c["dport"], c["packets"]) == ("tx", "tx_syncookie", PROTECTED_PORT, n), c
        assert c["floor"] == SINGLE_FLOOR
        assert math.isclose(c["ratio_to_floor"], c["ns_per_packet"] / floor["ns_per_packet"], abs_tol=0.01), c
        assert 0 < c["p10_ns"] <= c["ns_per_packet"] <= c["p90_ns"], c  # a trimmed mean lies inside
    u = cases["syn_unprotected"]
    assert (u["verdict"], u["reason"], u["packets"]) == ("pass", "pass_clean", n), u
    assert u["dport"] != PROTECTED_PORT


def test_the_syn_frames_are_linux_syns_with_valid_checksums():
    import scapy.layers.inet  # noqa: F401 - binds IP and TCP under Ether
    import scapy.layers.inet6  # noqa: F401
    from scapy.layers.l2 import Ether

    from seawall.control.tools.bench.syn import spoofed_syns

    for version in (4, 6):
        frames = spoofed_syns(version, 8443, 50, 7)
        assert len({f[26:30] if version == 4 else f[22:38] for f in frames}) == 50  # a new source each
        for f in frames:
            p = Ether(f)
            tcp = p["TCP"]
            assert tcp.flags == "S" and tcp.dport == 8443
            assert [o[0] for o in tcp.options] == ["MSS", "SAckOK", "Timestamp", "NOP", "WScale"]
            want = tcp.chksum
            del tcp.chksum
            if version == 4:
                ip_sum = p["IP"].chksum
                del p["IP"].chksum
            q = Ether(bytes(p))
            assert q["TCP"].chksum == want
            if version == 4:
                assert q["IP"].chksum == ip_sum


def test_the_syn_ack_check_refuses_what_is_not_an_answer():
    from seawall.control.tools.bench.syn import check_synack, syn_frame

    syn = syn_frame("198.19.1.2", "198.18.0.1", 40000, 8443, seq=100)
    ans = bytearray(syn)
    ans[0:6], ans[6:12] = syn[6:12], syn[0:6]
    ans[26:30], ans[30:34] = syn[30:34], syn[26:30]
    ans[34:36], ans[36:38] = syn[36:38], syn[34:36]
    ans[42:46] = (101).to_bytes(4, "big")
    ans[47] = 0x12
    assert check_synack(syn, bytes(ans)) is None
    assert "not SYN-ACK" in check_synack(syn, bytes(ans[:47]) + b"\x10" + bytes(ans[48:]))
    assert "acknowledgement" in check_synack(syn, bytes(ans[:42]) + (100).to_bytes(4, "big") + bytes(ans[46:]))
    assert "not swapped" in check_synack(syn, syn)


def test_a_syn_run_with_the_wrong_verdict_fails_the_bench(tmp_path):
    """single_runs() checks every verdict: the floor drops, so expecting
    XDP_TX of it must raise, not measure."""
    import shutil
    import uuid

    from seawall.control.datapath import loader
    from seawall.control.errors import SeawallError
    from seawall.control.tools.bench.syn import single_runs, spoofed_syns

    pin_root = f"/sys/fs/bpf/seawall-test-{uuid.uuid4().hex[:10]}"
    floor = loader.load(pin_root, loader.iface_dir(pin_root, "f"), source="bench/floor.c", func="xdp_floor")
    try:
        frames = spoofed_syns(4, 8443, 3, 1)
        assert len(single_runs(floor.prog_fd, frames, 1)) == 3  # XDP_DROP
        with pytest.raises(SeawallError, match="wrong path"):
            single_runs(floor.prog_fd, frames, 3)
    finally:
        floor.close()
        shutil.rmtree(pin_root, ignore_errors=True)
