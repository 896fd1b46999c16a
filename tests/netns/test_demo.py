"""scripts/demo runs to the end, checks what it shows, and leaves nothing."""

from __future__ import annotations

import os
import subprocess

import pytest

pytestmark = pytest.mark.netns

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEMO = os.path.join(TOP, "scripts", "demo")
DEMO_PINS = "/sys/fs/bpf/seawall-demo"
#: scripts/setup is a no-op on a set-up machine; the lab part takes seconds
DEMO_TIMEOUT_S = 300


def _demo_namespaces() -> list:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    return [line.split()[0] for line in out.splitlines() if line.startswith("swd-")]


def test_demo_passes_and_cleans_up():
    assert _demo_namespaces() == [], "a demo is running, or one left namespaces behind"
    try:
        p = subprocess.run([DEMO], capture_output=True, text=True, timeout=DEMO_TIMEOUT_S,
                           stdin=subprocess.DEVNULL)
    finally:
        leftovers = _demo_namespaces()
    assert p.returncode == 0, f"demo exited {p.returncode}\n{p.stdout}\n{p.stderr}"
    assert leftovers == []
    assert not os.path.exists(DEMO_PINS)
    out = p.stdout
    # every seawall command is shown before it runs, and the story is told
    for cmd in ("$ seawall attach", "$ seawall block add 198.18.0.20 --ttl 30s --reason demo",
                "$ seawall block list", "$ seawall stats", "$ seawall detach"):
        assert cmd in out, f"{cmd!r} not echoed:\n{out}"
    assert "drop_block" in out
    assert "demo passed" in out
