"""The end-to-end bench (bench_e2e.py), short: five phases of 3 s, 2,000
addresses blocked. It checks what the bench's table stands on: the
customers' own results and the flood reaching the server, phase by phase.
About 45 s."""

from __future__ import annotations

import subprocess

import pytest

import bench_e2e


@pytest.fixture(scope="module")
def e2e():
    return bench_e2e.run(seconds=3.0, rate=60.0, entries=2000)


def phases(e2e) -> dict:
    return {p["name"]: p for p in e2e["phases"]}


def test_every_phase_ran_with_customers(e2e):
    ph = phases(e2e)
    assert list(ph) == ["no flood", "flood, no protection", "flood, nftables", "flood, seawall",
                        "flood, seawall + daemon"]
    for p in ph.values():
        assert p["requests"] >= 100, p  # 60/s for 3 s, less what a stalled client missed


def test_customers_are_served_with_no_flood_and_with_seawall(e2e):
    """The clients' own results: every request answered with no flood; with
    seawall in the way, at least 98% (two cores carry the flood's senders,
    the filter, the clients and the server at once)."""
    ph = phases(e2e)
    assert ph["no flood"]["success_rate"] == 1.0, ph["no flood"]
    for name in ("flood, seawall", "flood, seawall + daemon"):
        assert ph[name]["success_rate"] >= 0.98, ph[name]


def test_the_flood_reached_the_server_and_seawall_dropped_it(e2e):
    ph = phases(e2e)
    for name in ("flood, no protection", "flood, nftables", "flood, seawall", "flood, seawall + daemon"):
        assert ph[name]["flood_packets"] > 10_000, ph[name]
    for name in ("flood, seawall", "flood, seawall + daemon"):
        # every frame that arrived at swa0 from the attacker was the flood's: all dropped at the NIC
        assert ph[name]["dropped_by_seawall"] >= 0.99 * ph[name]["flood_packets"], ph[name]
    assert ph["no flood"]["flood_packets"] == 0


def test_the_daemon_ran_and_nothing_is_left_behind(e2e):
    assert e2e["seawall_run_memory"]["rss_mib"] > 0
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert "swt-bench-" not in netns


def test_render_is_a_table(e2e):
    text = bench_e2e.render(e2e)
    assert "flood, seawall + daemon" in text and "success" in text
