"""Security: where the metrics listen, who can read the state, and who can
change it.

- The daemon's metrics listen on loopback unless the config says
  otherwise: checked with the socket table of the server namespace and a
  connection attempt from the client namespace, with the default config and
  with `listen` set to the server's address (so the test can tell the two
  apart).
- The state directory is 0700, the journal and lock 0600, the bpffs folder
  0700 and its pins 0600, even under a umask of 0.
- Write commands refuse an unprivileged user with one line and change
  nothing: tests/unit/test_cli.py::test_every_command_that_changes_or_reads_state_needs_root
  (every command, no root) and tests/netns/test_e2e.py (as `nobody`,
  against a live lab, journal and lists unchanged).
- Nothing reaches a shell: tests/unit/test_no_shell.py.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import time

import pytest

from swlab import CLIENT_V4, SERVER_V4, SEAWALL, SERVER_IF

PORT = 9477


def listening(lab) -> set:
    """(address, port) of every listening TCP socket in the server namespace."""
    out = subprocess.run(lab.nsenter(lab.server) + ["ss", "-ltnH"], capture_output=True, text=True,
                         check=True).stdout
    socks = set()
    for line in out.splitlines():
        local = line.split()[3]
        addr, _, port = local.rpartition(":")
        socks.add((addr.strip("[]"), int(port)))
    return socks


def connects_from_client(lab, addr: str) -> bool:
    code = ("import socket, sys\n"
            "s = socket.socket()\ns.settimeout(2)\n"
            f"s.bind(({CLIENT_V4[0]!r}, 0))\n"
            f"sys.exit(s.connect_ex(({addr!r}, {PORT})))")
    p = subprocess.run(lab.nsenter(lab.client) + ["python3", "-c", code], capture_output=True, timeout=30)
    return p.returncode == 0


def run_daemon(lab, tmp_path, config: str):
    cfg = tmp_path / "seawall.toml"
    cfg.write_text(config)
    p = subprocess.Popen(lab.nsenter(lab.server) + [SEAWALL, "run", "--config", str(cfg), "-i", SERVER_IF],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=lab.env)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if any(port == PORT for _, port in listening(lab)):
            return p
        if p.poll() is not None:
            break
        time.sleep(0.1)
    p.kill()
    raise AssertionError(f"the daemon never listened: {p.communicate(timeout=10)}")


def stop(p) -> str:
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=20)
    assert p.returncode == 0, err[-2000:]
    return err


@pytest.mark.parametrize("listen,reachable", [(None, False), (SERVER_V4, True)],
                         ids=["default-loopback", "configured-address"])
def test_metrics_listen_on_loopback_unless_configured(lab, tmp_path, listen, reachable):
    config = "[daemon]\ninterval = \"200ms\"\n"
    if listen:
        config += f"[metrics]\nlisten = \"{listen}\"\n"
    p = run_daemon(lab, tmp_path, config)
    try:
        socks = {a for a, port in listening(lab) if port == PORT}
        assert socks == {listen or "127.0.0.1"}, socks
        assert connects_from_client(lab, SERVER_V4) is reachable
    finally:
        err = stop(p)
    started = [json.loads(l) for l in err.splitlines() if '"started"' in l][0]
    assert started["metrics"] == f"http://{listen or '127.0.0.1'}:{PORT}/metrics"


def mode(path: str) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_state_and_pins_are_root_only_even_under_umask_0(lab):
    env = lab.env
    old = os.umask(0)
    try:
        for args in (["attach", SERVER_IF], ["block", "add", "198.18.0.20", "--reason", "x"],
                     ["allow", "add", "198.18.0.30"], ["sig", "add", "--proto", "udp", "--dport", "9"]):
            p = lab.seawall(*args)
            assert p.returncode == 0, p.stderr
    finally:
        os.umask(old)
    state, pins = env["SEAWALL_STATE_DIR"], env["SEAWALL_BPFFS"]
    assert mode(state) == 0o700
    assert mode(os.path.join(state, "journal.jsonl")) == 0o600
    assert mode(os.path.join(state, "lock")) == 0o600
    assert mode(pins) == 0o700
    for root, dirs, files in os.walk(pins):
        for d in dirs:
            assert mode(os.path.join(root, d)) == 0o700, os.path.join(root, d)
        for f in files:
            assert mode(os.path.join(root, f)) & 0o077 == 0, (os.path.join(root, f), oct(mode(os.path.join(root, f))))
    assert sum(len(f) for _, _, f in os.walk(pins)) >= 10  # the pins were looked at
