"""The daemon checks its own filter every cycle (control/service/guard.py).

In the two-namespace lab (swlab.py), `seawall run` watches the server
veth; the program is then taken off it behind the daemon's back. The
oracle is the kernel (`ip -j link show`), not the daemon's word: the
daemon's pinned program must be back on the interface, in its mode,
within a couple of cycles, and the loss logged at error level. A
program it cannot put back (its pin gone as well) stops the watchdog's
pings; the systemd side of that is tests/netns/test_systemd.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from swlab import SERVER_IF, RunningDaemon, _run

INTERVAL = 0.2  # the daemon's cycle, seconds


def Daemon(lab, *args, env=None, interval=INTERVAL) -> RunningDaemon:
    return RunningDaemon(lab, *args, env=env, interval=interval)


def _xdp_off(lab) -> None:
    _run(["ip", "-n", lab.server, "link", "set", "dev", SERVER_IF, "xdp", "off"])


def test_program_removed_under_the_daemon_is_put_back_and_logged(lab, tmp_path):
    d = Daemon(lab)
    try:
        started = d.wait("started", 60)
        before = lab.xdp_link()
        assert before.get("prog", {}).get("id"), before
        # the build that filters, as the kernel knows it (ip -d shows the program's tag)
        detail = json.loads(_run(["ip", "-n", lab.server, "-d", "-j", "link", "show", "dev", SERVER_IF]).stdout)
        assert started["build"] == {SERVER_IF: detail[0]["xdp"]["prog"]["tag"]}, (started, detail[0]["xdp"])
        assert started["version"] not in ("", "unknown") and started["level"] == "info"
        mode = before.get("mode")
        for round_ in (1, 2):  # twice: the second loss is seen and counted as well
            _xdp_off(lab)
            t0 = time.monotonic()
            assert not lab.xdp_link().get("prog"), "xdp off left a program"
            while not lab.xdp_link().get("prog") and time.monotonic() - t0 < 10 * INTERVAL:
                time.sleep(0.02)
            took = time.monotonic() - t0
            now = lab.xdp_link()
            assert now.get("prog", {}).get("id") == before["prog"]["id"], (round_, now, before)
            assert now.get("mode") == mode
            # within a couple of cycles (the next cycle, plus a slow one)
            assert took < 3 * INTERVAL + 0.2, f"re-attached after {took:.2f} s"
        lost = [e for e in d.events() if e.get("event") == "filter_lost"]
        assert [e["reattached"] for e in lost] == [1, 2], d.lines
        assert all(e["level"] == "error" and e["interface"] == SERVER_IF and e["result"] == "re-attached"
                   for e in lost)
        assert lab.status(SERVER_IF)["state"] == "attached"
        assert not [e for e in d.events() if e.get("event") == "filter_maps"], "the maps check misfired"
    finally:
        d.stop()
    stopped = [e for e in d.events() if e.get("event") == "stopped"]
    assert stopped and stopped[0]["kept_filter"] is True and stopped[0]["attached"] == [SERVER_IF], d.lines


def test_a_program_it_cannot_put_back_stops_the_watchdog_and_stop_says_so(lab, tmp_path, seawall_env):
    """The pin gone with the program: the daemon logs it once at error
    level, stops feeding the watchdog (seen at a notify socket of our
    own, as systemd's), and at stop does not claim it kept the filter."""
    import socket

    sock_path = str(tmp_path / "notify")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(sock_path)
    s.settimeout(0.1)
    got: list = []

    def drain(seconds: float) -> list:
        end, out = time.monotonic() + seconds, []
        while time.monotonic() < end:
            try:
                out.append((time.monotonic(), s.recv(4096).decode()))
            except socket.timeout:
                pass
        got.extend(out)
        return [m for _, m in out]

    d = Daemon(lab, env={"NOTIFY_SOCKET": sock_path})
    try:
        d.wait("started", 60)
        assert any("WATCHDOG=1" in m for m in drain(1.0)), got
        os.unlink(os.path.join(seawall_env.pin_root, "ifaces", SERVER_IF, "prog"))
        _xdp_off(lab)
        d.wait("filter_unrecoverable", 5)
        drain(0.5)  # a ping already in flight
        assert not any("WATCHDOG=1" in m for m in drain(1.5)), "still feeding the watchdog"
        assert d.p.poll() is None, "the daemon keeps running (systemd decides)"
    finally:
        d.stop()
        s.close()
    ev = d.events()
    bad = [e for e in ev if e.get("event") == "filter_unrecoverable"]
    assert len(bad) == 1 and bad[0]["level"] == "error", [x for x in d.lines if "filter" in x]
    stopped = [e for e in ev if e.get("event") == "stopped"][0]
    assert stopped["kept_filter"] is False and stopped["not_attached"] == [SERVER_IF], stopped
    assert stopped["level"] == "error"


# Run in the server namespace: the guard over the attached interface,
# timed, then with the pinned blocklist swapped for another map.
GUARD_PROBE = """
import json, os, statistics, sys, time
from seawall.control.datapath import bpf, tries
from seawall.control.service import guard as g, logs
logs.setup_logging("info")
pin_root, name, mode = sys.argv[1:4]
fg = g.FilterGuard(pin_root, {name: mode})
assert fg.check(), fg.attached
took = []
for _ in range(300):
    t0 = time.perf_counter()
    fg.check()
    took.append(time.perf_counter() - t0)
before = list(fg.missing[name])
spec = tries.TRIES[("block", 4)]
path = spec.path(pin_root)
os.unlink(path)
fd = bpf.map_create(spec.type, spec.key_bytes(), spec.value_bytes(), 16, flags=1)
bpf.obj_pin(fd, path)
fg.check(time.monotonic() + g.MAPS_EVERY + 1)
print(json.dumps({"median_s": statistics.median(took), "max_s": max(took), "before": before,
                  "after": fg.missing[name], "ok": fg.ok()}))
"""


def test_the_check_is_cheap_and_sees_a_program_without_the_pinned_lists(lab, seawall_env):
    lab.sw("attach", SERVER_IF)
    mode = lab.xdp_link()["mode"]
    mode = {1: "native", 2: "generic"}[mode]  # ip -j gives enum XDP_ATTACHED_*
    p = _run([*lab.nsenter(lab.server), sys.executable, "-c", GUARD_PROBE, seawall_env.pin_root,
              SERVER_IF, mode], env=lab.env)
    r = json.loads(p.stdout.strip().splitlines()[-1])
    print(f"guard check: median {r['median_s'] * 1e6:.0f} us, max {r['max_s'] * 1e6:.0f} us")
    assert r["median_s"] < 1e-3, r  # every cycle: well under a millisecond
    assert r["before"] == [] and r["after"] == ["block_v4"], r
    assert r["ok"], "attached all the same: the watchdog is not the answer to this"
    err = [json.loads(x) for x in p.stderr.splitlines() if x.startswith("{")]
    assert [e["event"] for e in err if e.get("event") == "filter_maps"] == ["filter_maps"], p.stderr


def _foreign_program(pin: str, name: str = "swt_foreign") -> int:
    """Load `return XDP_PASS` (another tool's program, for the kernel;
    named xdp_seawall, a seawall build for the guard) and pin it at pin;
    returns its id."""
    from seawall.control.datapath import bpf
    from seawall.control.datapath.loader import BPF_PROG_TYPE_XDP

    insns = bytes.fromhex("b700000002000000" "9500000000000000")  # r0 = XDP_PASS; exit
    fd, _ = bpf.prog_load(BPF_PROG_TYPE_XDP, insns, "GPL", name)
    try:
        bpf.obj_pin(fd, pin)
        return bpf.prog_info(fd).id
    finally:
        os.close(fd)


def test_a_program_replaced_by_another_is_put_back_in_its_mode(lab, seawall_env):
    """Another program in the daemon's place: in the same mode (ip -force
    replaces it), then in the other mode (generic, after xdp off), which
    the guard must remove before its own can go back in native mode."""
    foreign = os.path.join(seawall_env.pin_root, "swt-foreign")
    os.makedirs(seawall_env.pin_root, exist_ok=True)
    other = _foreign_program(foreign)
    d = Daemon(lab, interval=1.0)  # a cycle longer than the shell's two steps, so the daemon sees their end
    try:
        d.wait("started", 60)
        ours = lab.xdp_link()
        assert ours.get("mode") == 1, f"veth runs native XDP: {ours}"  # XDP_ATTACHED_DRV
        steps = (["-force", "link", "set", "dev", SERVER_IF, "xdpdrv", "pinned", foreign],
                 ["link", "set", "dev", SERVER_IF, "xdp", "off"],
                 ["link", "set", "dev", SERVER_IF, "xdpgeneric", "pinned", foreign])
        for n, cmds in enumerate((steps[:1], steps[1:]), 1):
            # nsenter, not ip -n: that gives ip a fresh /sys, without the host's bpffs pins
            ns = " ".join(lab.nsenter(lab.server))
            p = subprocess.run(["sh", "-c", " && ".join(f"{ns} ip " + " ".join(c) for c in cmds)
                                + f" && ip -n {lab.server} -j link show dev {SERVER_IF}"],
                               capture_output=True, text=True, timeout=30)
            assert p.returncode == 0, p.stderr
            # the foreign program was in place (the oracle saw it), then ours came back
            assert json.loads(p.stdout)[0]["xdp"]["prog"]["id"] == other
            t0 = time.monotonic()
            while lab.xdp_link().get("prog", {}).get("id") != ours["prog"]["id"] and time.monotonic() - t0 < 3:
                time.sleep(0.02)
            now = lab.xdp_link()
            assert now.get("prog", {}).get("id") == ours["prog"]["id"] and now.get("mode") == 1, (n, now)
            assert not now.get("generic"), now
        lost = [e for e in d.events() if e.get("event") == "filter_lost"]
        assert [e["reattached"] for e in lost] == [1, 2], d.lines
    finally:
        d.stop()


def test_another_seawall_build_gets_time_to_be_pinned_then_is_undone(lab, seawall_env):
    """An upgrade (attach --replace) attaches the new build, then pins it:
    a seawall program other than the pinned one is left SWAP_GRACE
    seconds, not undone at once; still unpinned after that, it is."""
    from seawall.control.service.guard import SWAP_GRACE

    pin = os.path.join(seawall_env.pin_root, "swt-other-build")
    os.makedirs(seawall_env.pin_root, exist_ok=True)
    other = _foreign_program(pin, "xdp_seawall")
    d = Daemon(lab)
    try:
        d.wait("started", 60)
        ours = lab.xdp_link()["prog"]["id"]
        _run([*lab.nsenter(lab.server), "ip", "-force", "link", "set", "dev", SERVER_IF, "xdpdrv", "pinned", pin])
        t0 = time.monotonic()
        time.sleep(SWAP_GRACE / 2)  # several cycles
        assert lab.xdp_link()["prog"]["id"] == other, "a seawall build was undone at once"
        while lab.xdp_link()["prog"]["id"] != ours and time.monotonic() - t0 < SWAP_GRACE + 2:
            time.sleep(0.02)
        took = time.monotonic() - t0
        assert lab.xdp_link()["prog"]["id"] == ours
        assert SWAP_GRACE - 0.1 <= took < SWAP_GRACE + 1, took
        assert [e["event"] for e in d.events() if e.get("event", "").startswith("filter_")] == ["filter_lost"]
    finally:
        d.stop()
