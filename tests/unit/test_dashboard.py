"""The shipped Grafana dashboard: valid JSON whose queries only name
metrics the collector exports (a renamed metric breaks this test)."""

from __future__ import annotations

import json
import os
import re

import pytest

DASH = os.path.join(os.path.dirname(__file__), "..", "..", "docs", "grafana-seawall.json")
# the families control/service/metrics.py yields, with the suffix Prometheus adds to counters
EXPORTED = {
    "seawall_packets_total", "seawall_bytes_total", "seawall_events_total", "seawall_interface_attached",
    "seawall_blocklist_entries", "seawall_allowlist_entries", "seawall_signature_rules",
    "seawall_decisions_total", "seawall_cycle_duration_seconds", "seawall_entropy", "seawall_deviation",
    "seawall_anomaly_score", "seawall_alarm", "seawall_observed_packets_per_second",
    "seawall_volume_ratio", "seawall_baseline_learnt_seconds", "seawall_baseline_packets_per_second",
    "seawall_build_info", "seawall_anomaly_threshold", "seawall_filter_attached", "seawall_filter_reattach_total",
    "seawall_filter_maps_missing", "seawall_synproxy_ports",
    "seawall_fleet_session_up", "seawall_fleet_routes_out", "seawall_fleet_routes_in", "seawall_fleet_imported_entries",
}


def test_exported_names_match_the_collector_source():
    src = open(os.path.join(os.path.dirname(__file__), "..", "..", "control", "service", "metrics.py")).read()
    names = set(re.findall(r'MetricFamily\(\s*"(seawall_[a-z_]+)"', src))
    counters = set(re.findall(r'CounterMetricFamily\(\s*"(seawall_[a-z_]+)"', src))
    assert {n + "_total" if n in counters else n for n in names} == EXPORTED


def test_dashboard_queries_use_exported_metrics_only():
    with open(DASH) as f:
        dash = json.load(f)
    exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
    assert len(exprs) >= 10
    used = set()
    for e in exprs:
        used |= set(re.findall(r"\bseawall_[a-z_]+", e))
    assert used and used <= EXPORTED, used - EXPORTED
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    # the operator's first question: is the filter on? (alert SeawallFilterNotAttached)
    assert any("seawall_filter_attached" in e for e in exprs)


@pytest.mark.parametrize("panel", json.load(open(DASH))["panels"], ids=lambda p: p["title"])
def test_panels_have_a_place_and_a_query(panel):
    assert panel["gridPos"]["w"] > 0 and panel["gridPos"]["h"] > 0
    assert panel["targets"] and all(t["expr"].strip() for t in panel["targets"])
