"""Monitor means monitor, and one daemon per host (issue 14).

- A second `seawall run` is refused before it changes anything: the first
  daemon's monitor mode stays in the kernel, and a blocked client's
  packets still arrive (the oracle: ping's own replies).
- A reload that turns monitor off switches the kernel to enforce before
  the daemon says so: the blocked client's pings stop being answered. A
  reload that changes what only a restart can apply is refused whole.
- A daemon restarted on an interface that runs another build puts its own
  build in place in one step, keeping the lists.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest

from swlab import SEAWALL, SERVER_IF, RunningDaemon, _run

pytestmark = pytest.mark.netns

BLOCKED = "198.18.0.20"


def _reply(lab, src: str) -> bool:
    return lab.ping(src, 3, wait=0.5).received > 0


def test_a_second_run_is_refused_before_it_changes_anything(lab):
    lab.sw("block", "add", BLOCKED)
    first = RunningDaemon(lab, "--monitor")
    try:
        first.wait("started", 60)
        assert lab.status(SERVER_IF)["monitor"] is True
        p = subprocess.run([*lab.nsenter(lab.server), SEAWALL, "run", "-i", SERVER_IF], capture_output=True,
                           text=True, env=lab.env, timeout=60)
        assert p.returncode == 1, p.stderr
        [line] = p.stderr.strip().splitlines()[-1:]
        assert f"another seawall run (pid {first.p.pid})" in line and "one per host" in line, p.stderr
        assert lab.status(SERVER_IF)["monitor"] is True, "the refused daemon switched the kernel to enforce"
        assert _reply(lab, BLOCKED), "monitor mode must let the blocked client through"
        assert first.p.poll() is None
    finally:
        first.stop()
    # the lock goes with its holder: a daemon starts again at once
    again = RunningDaemon(lab, "--monitor")
    try:
        again.wait("started", 60)
    finally:
        again.stop()


def test_a_reload_applies_monitor_to_the_kernel_or_is_refused_whole(lab, tmp_path):
    conf = tmp_path / "seawall.toml"
    conf.write_text("[daemon]\nmonitor = true\n[metrics]\nenabled = false\n")
    lab.sw("block", "add", BLOCKED)
    d = RunningDaemon(lab, "--config", str(conf))
    try:
        d.wait("started", 60)
        assert lab.status(SERVER_IF)["monitor"] is True and _reply(lab, BLOCKED)

        # what only a restart can apply: refused whole, monitor stays on
        conf.write_text("[daemon]\nmonitor = false\nmode = \"generic\"\n[metrics]\nenabled = false\n")
        d.p.send_signal(signal.SIGHUP)
        ev = _next_reload(d, 0)
        assert ev["result"].startswith("rejected") and "[daemon] mode" in ev["error"], ev
        assert ev["level"] == "error"
        assert lab.status(SERVER_IF)["monitor"] is True and _reply(lab, BLOCKED)

        conf.write_text("[daemon]\nmonitor = false\n[metrics]\nenabled = false\n")
        d.p.send_signal(signal.SIGHUP)
        ev = _next_reload(d, 1)
        assert ev["result"] == "applied" and ev["monitor"] is False, ev
        assert lab.status(SERVER_IF)["monitor"] is False
        assert not _reply(lab, BLOCKED), "after the reload the blocked client must be dropped"
        assert _reply(lab, "198.18.0.10")
    finally:
        d.stop()


def _next_reload(d, seen: int, timeout: float = 10.0) -> dict:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        evs = [e for e in d.events() if e.get("event") == "reload"]
        if len(evs) > seen:
            return evs[seen]
        time.sleep(0.05)
    raise AssertionError(f"no reload event; the daemon said:\n{''.join(d.lines)[-2000:]}")


def test_a_restart_on_another_build_puts_its_own_in_place_without_a_gap(lab):
    # an older build attached (one tunable changed, same tables), a block in force
    _run([*lab.nsenter(lab.server), sys.executable, "-c",
          "from seawall.control.state import Paths\n"
          "from seawall.control.datapath.interfaces import Interfaces\n"
          f"Interfaces(Paths.from_env()).attach('{SERVER_IF}', defines={{'ADMIT_RATE': 4000}})\n"], env=lab.env)
    old = lab.status(SERVER_IF)["prog_id"]
    lab.sw("block", "add", BLOCKED)
    d = RunningDaemon(lab)
    try:
        started = d.wait("started", 60)
        new = lab.status(SERVER_IF)["prog_id"]
        assert new != old and lab.xdp_link()["prog"]["id"] == new
        assert started["build"][SERVER_IF] != "", started
        assert not _reply(lab, BLOCKED) and _reply(lab, "198.18.0.10")
        assert not [e for e in d.events() if e.get("event") in ("filter_lost", "upgrade_refused")], d.lines
    finally:
        d.stop()
