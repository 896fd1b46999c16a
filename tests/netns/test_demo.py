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


def _run_demo() -> subprocess.CompletedProcess:
    """Run the demo; on timeout stop it with SIGTERM so its trap cleans up."""
    proc = subprocess.Popen([DEMO], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=DEMO_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.terminate()
        try:
            out, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
        pytest.fail(f"demo took over {DEMO_TIMEOUT_S} s\n{out}\n{err}")
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def test_demo_passes_and_cleans_up():
    assert _demo_namespaces() == [], "a demo is running, or one left namespaces behind"
    try:
        p = _run_demo()
    finally:
        leftovers = _demo_namespaces()
        for ns in leftovers:  # the demo failed to clean up: do it, then fail below
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
    assert leftovers == [], f"demo left namespaces behind: {leftovers}"
    assert p.returncode == 0, f"demo exited {p.returncode}\n{p.stdout}\n{p.stderr}"
    assert not os.path.exists(DEMO_PINS)
    out = p.stdout
    # every seawall command is shown before it runs, and the story is told
    for cmd in ("$ seawall attach", "$ seawall block add 198.18.0.20 --ttl 30s --reason demo",
                "$ seawall block list", "$ seawall stats", "$ seawall detach"):
        assert cmd in out, f"{cmd!r} not echoed:\n{out}"
    assert "drop_block" in out
    assert "demo passed" in out
