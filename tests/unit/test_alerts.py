"""The shipped alert rules (docs/seawall-alerts.yml) and the metrics they
and the operator rely on (control/service/metrics.py), without a kernel:
the collector runs over an empty bpffs folder, with a daemon stand-in
whose guard (control/service/guard.py) says what its last check found.

`promtool check rules` must pass on the file as shipped, and
`promtool test rules` must fire each alert on the series that mean it,
and not before its time; every metric the rules name must be one the
collector exports."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import textwrap
from types import SimpleNamespace

import pytest
from prometheus_client import generate_latest

from seawall.control.config import Config
from seawall.control.detect.engine import CycleReport
from seawall.control.service import metrics
from seawall.control.service.guard import FilterGuard
from seawall.control.service.logs import version
from seawall.control.state import Paths

RULES = os.path.join(os.path.dirname(__file__), "..", "..", "docs", "seawall-alerts.yml")
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"


def daemon_standin(attached: bool = True, reattached: int = 0, missing=()):
    guard = FilterGuard("/nonexistent", {"eth0": "native"})
    guard.attached["eth0"], guard.reattached["eth0"], guard.missing["eth0"] = attached, reattached, list(missing)
    rep = CycleReport(t=0.0, pps=1000.0, entropy={"src": 0.5}, z={"src": 1.0}, score=3.0, alarm=True, raised=False,
                      cleared=False, learning=False, volume=3.0, where="total")
    return SimpleNamespace(decisions_by={"block": 2}, cycle_seconds=0.001, cfg=Config(), guard=guard, last=rep,
                           engine=None)


def scrape(tmp_path, daemon) -> dict:
    paths = Paths(pin_root=str(tmp_path / "bpffs"), state_dir=str(tmp_path / "state"))
    reg = metrics.registry(paths, daemon)
    text = generate_latest(reg).decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for m in reg.collect() for s in m.samples}, text


def test_filter_build_threshold_and_process_metrics(tmp_path):
    samples, text = scrape(tmp_path, daemon_standin(attached=False, reattached=3, missing=["block_v4"]))
    assert samples[("seawall_filter_attached", (("interface", "eth0"),))] == 0.0
    assert samples[("seawall_filter_reattach_total", (("interface", "eth0"),))] == 3.0
    assert samples[("seawall_filter_maps_missing", (("interface", "eth0"),))] == 1.0
    assert samples[("seawall_anomaly_threshold", ())] == Config().detection.threshold
    assert samples[("seawall_build_info", (("build", "none"), ("version", version())))] == 1.0
    assert version() != "unknown"
    for name in ("process_cpu_seconds_total", "process_resident_memory_bytes", "process_open_fds",
                 "process_start_time_seconds"):
        assert any(n == name for n, _ in samples), f"{name} missing"
    p = subprocess.run([PROMTOOL, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stdout + p.stderr
    ok, _ = scrape(tmp_path, daemon_standin())
    assert ok[("seawall_filter_attached", (("interface", "eth0"),))] == 1.0


def test_rules_name_only_exported_metrics(tmp_path):
    samples, _ = scrape(tmp_path, daemon_standin())
    # what this stand-in exports, and the per-interface families it has no interface for
    src = open(metrics.__file__).read()
    exported = {n for n, _ in samples} | {"up"} | set(re.findall(r'GaugeMetricFamily\(\s*"(seawall_[a-z_]+)"', src))
    with open(RULES) as f:
        exprs = re.findall(r"^\s+expr: (.+)$", f.read(), re.M)
    assert len(exprs) >= 6
    used = {n for e in exprs for n in re.findall(r"\b(seawall_[a-z_]+|up)\{", e)}
    assert {"seawall_filter_attached", "seawall_alarm", "up"} <= used
    assert used <= exported, used - exported


def test_promtool_check_rules():
    p = subprocess.run([PROMTOOL, "check", "rules", RULES], capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stdout + p.stderr
    assert f"SUCCESS: {len(CASES)} rules found" in p.stdout, p.stdout


# Each case: input series (15 s apart), then [eval time, alerts expected firing].
L = 'job="seawall", instance="edge1:9477"'
CASES = {
    "SeawallFilterNotAttached": ([f'seawall_filter_attached{{{L}, interface="eth0"}}: "1 1 0 0 0 0 0 0"'],
                                 [("45s", []), ("1m30s", [{"interface": "eth0", "severity": "critical"}])]),
    "SeawallFilterReattached": ([f'seawall_filter_reattach_total{{{L}, interface="eth0"}}: "0 0 0 1 1 1"'],
                                [("30s", []), ("1m", [{"interface": "eth0", "severity": "warning"}])]),
    "SeawallFilterMapsMismatch": ([f'seawall_filter_maps_missing{{{L}, interface="eth0"}}: "0 2 2 2 2 2 2 2"'],
                                  [("30s", []), ("1m30s", [{"interface": "eth0", "severity": "critical"}])]),
    "SeawallDaemonDown": ([f'up{{{L}}}: "1 0 0 0 0 0 0 0 0"'],
                          [("45s", []), ("1m30s", [{"severity": "critical"}])]),
    "SeawallDaemonAbsent": (['other_metric{job="node"}: "1+0x40"'],
                            [("2m", []), ("6m", [{"job": "seawall", "severity": "critical"}])]),
    "SeawallAttack": ([f'seawall_alarm{{{L}}}: "0 0 1 1"'],
                      [("15s", []), ("30s", [{"severity": "warning"}])]),
    "SeawallAttackOngoing": ([f'seawall_alarm{{{L}}}: "1+0x80"'],
                             [("10m", []), ("16m", [{"severity": "critical"}])]),
    "SeawallFleetPeerDown": ([f'seawall_fleet_session_up{{{L}, peer="198.18.0.2"}}: "1 1 0 0 0 0 0 0"'],
                             [("45s", []), ("1m45s", [{"peer": "198.18.0.2", "severity": "warning"}])]),
}


def _alerts(alertname: str, want: list) -> str:
    out = []
    for labels in want:
        full = dict(labels)
        if "job" not in full:  # every series of the cases but absent()'s has these
            full.update(job="seawall", instance="edge1:9477")
        out.append("      - exp_labels: {" + ", ".join(f'{k}: "{v}"' for k, v in sorted(full.items())) + "}")
    return "\n".join(out) if out else ""


def without_annotations(text: str) -> str:
    """The rules file without its annotations (promtool's unit tests
    compare them too; `check rules` has checked their templates)."""
    out, skip = [], None
    for line in text.splitlines():
        indent = len(line) - len(line.lstrip())
        if skip is not None and (not line.strip() or indent > skip):
            continue
        skip = indent if line.strip() == "annotations:" else None
        if skip is None:
            out.append(line)
    return "\n".join(out) + "\n"


@pytest.mark.parametrize("alertname", sorted(CASES))
def test_promtool_fires_each_alert_at_its_time(alertname, tmp_path):
    series, evals = CASES[alertname]
    rules = tmp_path / "rules.yml"
    with open(RULES) as f:
        rules.write_text(without_annotations(f.read()))
    assert "annotations" not in rules.read_text() and rules.read_text().count("- alert:") == len(CASES)
    lines = [f"rule_files: [{rules}]", "evaluation_interval: 15s", "tests:",
             "  - interval: 15s", "    input_series:"]
    for s in series:
        name, values = s.rsplit(": ", 1)
        lines += [f"      - series: '{name}'", f"        values: {values}"]
    lines.append("    alert_rule_test:")
    for at, want in evals:
        lines += [f"      - eval_time: {at}", f"        alertname: {alertname}"]
        body = _alerts(alertname, want)
        lines.append("        exp_alerts:" + ("\n" + textwrap.indent(body, "    ") if body else " []"))
    test = tmp_path / "test.yml"
    test.write_text("\n".join(lines) + "\n")
    p = subprocess.run([PROMTOOL, "test", "rules", str(test)], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, test.read_text() + p.stdout + p.stderr
    assert "SUCCESS" in p.stdout
