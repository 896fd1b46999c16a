"""Metrics of a running daemon: the exposition passes `promtool check
metrics`, and a real Prometheus server scrapes it and answers a query."""

from __future__ import annotations

import json
import os
import subprocess
import time

import pytest

from daemonlab import daemon_lab
from seawall.control.datapath.abi import Feature

METRICS_PORT = 9477
PROM_PORT = 19090

CONFIG = f"""
[daemon]
interval = "200ms"
[detection]
warmup = "2s"
[metrics]
listen = "127.0.0.1"
port = {METRICS_PORT}
"""

FETCH = r"""
import sys, urllib.request
print(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())
"""


@pytest.fixture
def dlab(seawall_env):
    with daemon_lab(dict(os.environ)) as lab:
        yield lab


def fetch(lab, url: str) -> str:
    p = subprocess.run([*lab.nsenter(lab.s), os.sys.executable, "-c", FETCH, url], capture_output=True,
                       text=True, timeout=20)
    assert p.returncode == 0, p.stderr
    return p.stdout


def wait_for(fn, timeout: float, what: str):
    end = time.monotonic() + timeout
    last = None
    while time.monotonic() < end:
        try:
            v = fn()
            if v:
                return v
        except (AssertionError, OSError, ValueError) as e:
            last = e
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}: {last}")


def test_metrics_pass_promtool_and_a_real_prometheus_scrapes_them(dlab, tmp_path):
    lab = dlab
    cfg = tmp_path / "seawall.toml"
    cfg.write_text(CONFIG)
    lab.seawall("attach", "sws0")
    lab.seawall("block", "add", "198.18.0.99", "--ttl", "10m", "--reason", "metrics test")
    lab.http_server()
    daemon = lab.daemon(str(cfg), "sws0")
    clients = lab.clients(duration=6, rate=40)
    url = f"http://127.0.0.1:{METRICS_PORT}/metrics"
    text = wait_for(lambda: (t := fetch(lab, url)) and "seawall_anomaly_score" in t and t, 15, "metrics")

    # promtool's linter, on the exposition exactly as served
    p = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True, timeout=30)
    assert p.returncode == 0 and not p.stdout.strip() and not p.stderr.strip(), p.stdout + p.stderr
    for name in ("seawall_packets_total", "seawall_bytes_total", "seawall_events_total", "seawall_entropy",
                 "seawall_anomaly_score", "seawall_blocklist_entries", "seawall_signature_rules",
                 "seawall_decisions_total", "seawall_cycle_duration_seconds", "seawall_interface_attached",
                 "seawall_build_info", "seawall_anomaly_threshold", "seawall_filter_reattach_total",
                 "process_resident_memory_bytes"):
        assert f"\n{name}" in text, f"{name} missing from the exposition"
    assert 'seawall_blocklist_entries{source="manual"} 1.0' in text
    assert 'seawall_filter_attached{interface="sws0"} 1.0' in text

    # a real Prometheus server, in the same namespace, scraping every second
    prom_cfg = tmp_path / "prometheus.yml"
    prom_cfg.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "scrape_configs:\n"
        f"  - job_name: seawall\n    static_configs: [{{targets: ['127.0.0.1:{METRICS_PORT}']}}]\n"
    )
    lab.start(lab.s, "prometheus", f"--config.file={prom_cfg}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
              f"--web.listen-address=127.0.0.1:{PROM_PORT}")
    q = (f"http://127.0.0.1:{PROM_PORT}/api/v1/query?query="
         "sum(seawall_packets_total%7Bjob%3D%22seawall%22%2Creason%3D%22pass_clean%22%7D)")

    def query():
        res = json.loads(fetch(lab, q))
        assert res["status"] == "success", res
        r = res["data"]["result"]
        return r and float(r[0]["value"][1]) > 0 and float(r[0]["value"][1])

    value = wait_for(query, 30, "Prometheus to scrape seawall_packets_total")
    assert value > 10, value

    # every query of the shipped Grafana dashboard runs on the real server
    import urllib.parse

    dash = json.load(open(os.path.join(os.path.dirname(__file__), "..", "..", "docs", "grafana-seawall.json")))
    for panel in dash["panels"]:
        for t in panel["targets"]:
            expr = t["expr"].replace("$instance", ".*")
            res = json.loads(fetch(lab, f"http://127.0.0.1:{PROM_PORT}/api/v1/query?query="
                                        + urllib.parse.quote(expr)))
            assert res["status"] == "success", (panel["title"], expr, res)
    res = json.loads(fetch(lab, f"http://127.0.0.1:{PROM_PORT}/api/v1/query?query=seawall_entropy"))
    assert len(res["data"]["result"]) == len(Feature), res  # one series per feature
    clients.communicate(timeout=30)
    daemon.terminate()
    daemon.communicate(timeout=20)


def test_a_scrape_reads_100k_list_entries_in_batch_calls(paths):
    """The list gauges come from batch reads of the tries, not a walk of
    one bpf() call per key and per value (0.5 s for 100k entries here,
    against some 65 ms): counted in bpf() calls, so load cannot flake it."""
    import errno

    import numpy as np
    from prometheus_client import generate_latest

    from seawall.control.datapath import abi, bpf, loader, tries
    from seawall.control.service import metrics

    n = 100_000
    loader.ensure_bpffs(paths.pin_root)
    loader.ensure_global_maps(paths.pin_root, os.environ.get("SEAWALL_CACHE_DIR"))
    maps = tries.ListMaps(paths.pin_root)
    try:
        addrs = (np.arange(n, dtype=np.uint32) + (198 << 24 | 18 << 16)).byteswap()
        keys = np.zeros((n, 8), np.uint8)
        keys[:, :4] = np.full(n, 32, "=u4").view(np.uint8).reshape(-1, 4)
        keys[:, 4:] = addrs.view(np.uint8).reshape(-1, 4)
        auto = np.where(np.arange(n) % 4 == 0, int(abi.BlockFlag.AUTO), 0)
        maps.trie("block", 4).update_batch(keys, tries.block_values(np.full(n, 32), 0, auto))
    finally:
        maps.close()
    reg = metrics.registry(paths)
    calls = []
    real = bpf.call

    def counted(cmd, attr, what):
        calls.append(cmd)
        return real(cmd, attr, what)

    bpf.call = counted
    try:
        t0 = time.perf_counter()
        text = generate_latest(reg).decode()
        took = time.perf_counter() - t0
    finally:
        bpf.call = real
    assert 'seawall_blocklist_entries{source="auto"} 25000.0' in text
    assert 'seawall_blocklist_entries{source="manual"} 75000.0' in text
    assert len(calls) < 1000, f"{len(calls)} bpf() calls for one scrape"

    # a kernel without batch reads for tries: the walk, same counts (and the time it took before)
    def no_batch(self, *a, **kw):
        raise bpf.BpfError(errno.EINVAL, "no batch ops (as before 6.x)")

    real_batch, tries.Trie.lookup_batch = tries.Trie.lookup_batch, no_batch
    try:
        t0 = time.perf_counter()
        walked = generate_latest(reg).decode()
        walk = time.perf_counter() - t0
    finally:
        tries.Trie.lookup_batch = real_batch
    assert 'seawall_blocklist_entries{source="auto"} 25000.0' in walked
    assert 'seawall_blocklist_entries{source="manual"} 75000.0' in walked
    print(f"scrape of {n} blocklist entries: {took * 1000:.0f} ms in {len(calls)} bpf() calls "
          f"(walking the tries: {walk * 1000:.0f} ms)")
