"""scripts/seawall.service under a real systemd (tests/netns/sdlab.py).

The shipped unit file runs unchanged, with all its hardening; a drop-in
only moves paths: ExecStart to this checkout's .venv, the config to the
inner /run, the pins to this test's bpffs folder, the network namespace to
the lab's server, the output to a file. It also shortens the watchdog to
4 s and sets DefaultDependencies=no (see sdlab.py for why).

    client ns  swc0 198.18.0.10, .66/24  <-veth->  sws0 198.18.0.1/24  server ns
                                                   (seawall.service in here)

One run walks the life of the service: start (READY=1), a block added with
the CLI, SIGKILL and restart, reload, a hung daemon caught by the watchdog,
stop; through all of it the XDP program stays attached and the block holds.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import time
import uuid

import pytest

from sdlab import NETNS_PATH, InnerSystemd, sh, wait_for

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
UNIT_FILE = os.path.join(REPO, "scripts", "seawall.service")
EXAMPLE_CONFIG = os.path.join(REPO, "scripts", "seawall.toml")
SEAWALL = os.path.join(os.path.dirname(sys.executable), "seawall")
STATE_DIR = "/var/lib/seawall"  # StateDirectory=seawall, inside the inner namespace
WATCHDOG_S = 4
SERVER, GOOD, BAD, BAD6 = "198.18.0.1", "198.18.0.10", "198.18.0.66", "2001:2::66"

CONFIG = """
[daemon]
interfaces = ["sws0"]
interval = "{interval}"
[detection]
warmup = "2s"
[metrics]
listen = "127.0.0.1"
port = 9477
"""

def drop_in(pin_root: str) -> str:
    lines = [
        "[Unit]",
        "DefaultDependencies=no",
        "[Service]",
        "ExecStart=",
        f"ExecStart={SEAWALL} run --config /run/swt/seawall.toml",
        "ConfigurationDirectory=",
        f"NetworkNamespacePath={NETNS_PATH}",
        f"Environment=SEAWALL_BPFFS={pin_root}",
        "StandardOutput=append:/run/swt/daemon.log",
        "StandardError=append:/run/swt/daemon.log",
        f"WatchdogSec={WATCHDOG_S}s",
        "LimitCORE=0",  # the watchdog's SIGABRT would dump a core
    ]
    # The installed service runs from /opt/seawall; this checkout's .venv
    # may sit where the sandbox hides it.
    if re.match(r"^/(home|root|run/user)(/|$)", REPO):
        lines.append("ProtectHome=read-only")
    if re.match(r"^/(var/)?tmp(/|$)", REPO):
        lines.append("PrivateTmp=no")
    return "\n".join(lines) + "\n"


class Lab:
    def __init__(self, tag: str, pin_root: str, log_dir: str):
        self.c, self.s = f"swt-{tag}-c", f"swt-{tag}-s"
        self.unit = f"seawall-swt{tag}.service"
        self.pin_root = pin_root
        self.sd = InnerSystemd(self.s, os.path.join(log_dir, "systemd.log"))

    def build(self) -> None:
        for ns in (self.c, self.s):
            sh("ip", "netns", "add", ns)
        sh("ip", "link", "add", "swc0", "netns", self.c, "type", "veth", "peer", "name", "sws0", "netns", self.s)
        sh("ip", "-n", self.s, "addr", "add", f"{SERVER}/24", "dev", "sws0")
        for a in (GOOD, BAD):
            sh("ip", "-n", self.c, "addr", "add", f"{a}/24", "dev", "swc0")
        for ns, ifs in ((self.c, ["lo", "swc0"]), (self.s, ["lo", "sws0"])):
            for i in ifs:
                sh("ip", "-n", ns, "link", "set", i, "up")

    def install_unit(self, interval: str = "200ms") -> None:
        with open(UNIT_FILE) as f:
            self.sd.write(f"/run/systemd/system/{self.unit}", f.read())
        self.sd.write(f"/run/systemd/system/{self.unit}.d/test.conf", drop_in(self.pin_root))
        self.write_config(interval)
        self.sd.systemctl("daemon-reload")

    def write_config(self, interval: str) -> None:
        self.sd.write("/run/swt/seawall.toml", CONFIG.format(interval=interval))

    def seawall(self, *args):
        """The CLI beside the service: its mount namespace (the state dir),
        the server's network namespace, the same bpffs folder."""
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "SEAWALL_BPFFS": self.pin_root,
               "SEAWALL_STATE_DIR": STATE_DIR}
        return sh(*self.sd.nsenter(pid=False), f"--net=/run/netns/{self.s}", SEAWALL, *args, env=env)

    def metrics(self) -> str:
        return sh(*self.sd.nsenter(pid=False), f"--net=/run/netns/{self.s}", sys.executable, "-c",
                  "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:9477/metrics', "
                  "timeout=5).read().decode())").stdout

    def blocked(self) -> set:
        return {b["cidr"] for b in json.loads(self.seawall("block", "list", "--json").stdout)}

    def xdp_prog(self):
        link = json.loads(sh("ip", "-n", self.s, "-j", "link", "show", "dev", "sws0").stdout)[0]
        return (link.get("xdp") or {}).get("prog", {}).get("id")

    def ping(self, src: str) -> bool:
        p = sh("nsenter", f"--net=/run/netns/{self.c}", "ping", "-n", "-q", "-c", "1", "-W", "1", "-I", src, SERVER,
               check=False)
        return p.returncode == 0

    def state(self) -> dict:
        return self.sd.show(self.unit, "ActiveState", "SubState", "Result", "MainPID", "NRestarts")

    def running(self, restarts: int, not_pid: str = "0"):
        """The state once active again after `restarts` restarts, else None."""
        st = self.state()
        if (st["ActiveState"] == "active" and st["SubState"] == "running" and st["NRestarts"] == str(restarts)
                and st["MainPID"] not in ("0", not_pid)):
            return st
        return None

    def daemon_log(self) -> str:
        try:
            with open(self.sd.path("/run/swt/daemon.log"), errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def events(self) -> list:
        out = []
        for line in self.daemon_log().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
        return out

    def diagnostics(self) -> str:
        out = [f"inner systemd (pid {self.sd.pid}) output:", self.sd.log()[-2000:]]
        if self.sd.pid is not None and self.sd.proc.poll() is None:
            p = self.sd.systemctl("show", self.unit, "--property=ActiveState,SubState,Result,NRestarts,MainPID,"
                                  "ExecMainCode,ExecMainStatus,StatusText", check=False, timeout=10)
            out += [f"{self.unit}:", p.stdout + p.stderr, "daemon output:", self.daemon_log()[-3000:]]
        return "\n".join(out)

    def proc_status(self, inner_pid: str) -> dict:
        with open(self.sd.path(f"/proc/{inner_pid}/status")) as f:
            return dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)

    def teardown(self) -> None:
        try:
            self.sd.stop()
        finally:
            for ns in (self.c, self.s):
                sh("ip", "netns", "del", ns, check=False)
            shutil.rmtree(self.pin_root, ignore_errors=True)


@pytest.fixture
def sdlab(tmp_path):
    """The lab, a systemd of its own and the unit loaded (not started).
    Everything is removed afterwards, even when the test fails; what the
    unit and the daemon said is printed (pytest shows it on failure)."""
    tag = uuid.uuid4().hex[:6]
    lab = Lab(tag, f"/sys/fs/bpf/seawall-test-{tag}", str(tmp_path))
    try:
        lab.build()
        lab.sd.start()
        lab.install_unit()
        yield lab
    finally:
        try:
            print(lab.diagnostics())
        finally:
            lab.teardown()


def cap_mask(*names) -> int:
    bits = {"CAP_NET_ADMIN": 12, "CAP_SYS_ADMIN": 21, "CAP_PERFMON": 38, "CAP_BPF": 39}
    return sum(1 << bits[n] for n in names)


def test_example_config_spells_out_the_defaults(tmp_path):
    """scripts/seawall.toml, with every commented key uncommented, is the
    built-in default config (so its comments do not lie)."""
    from seawall.control import config as configmod

    with open(EXAMPLE_CONFIG) as f:
        text = f.read()
    assert configmod.load(EXAMPLE_CONFIG) == configmod.Config()
    full = tmp_path / "full.toml"
    full.write_text(re.sub(r"(?m)^#([a-z_]+ = )", r"\1", text))
    assert configmod.load(str(full)) == configmod.Config()


def test_unit_file_verifies(tmp_path):
    """systemd parses every line of the shipped unit: an unknown or
    misspelt key would be ignored with only a warning, weakening the
    sandbox silently. (ExecStart must exist: point it at this .venv.)"""
    with open(UNIT_FILE) as f:
        text = f.read().replace("/opt/seawall/venv/bin/seawall", SEAWALL)
    unit = tmp_path / "seawall.service"
    unit.write_text(text)
    p = sh("systemd-analyze", "verify", str(unit), check=False)
    assert p.returncode == 0 and not (p.stdout + p.stderr).strip(), p.stdout + p.stderr


def test_service_lifecycle_keeps_the_filter(sdlab):
    lab = sdlab
    t0 = time.monotonic()

    # --- start: Type=notify, so `start` returns once READY=1 arrived ----
    lab.sd.systemctl("start", lab.unit, timeout=90)
    st = lab.running(0)
    assert st, f"not running after start: {lab.state()}"
    t_start = time.monotonic() - t0
    proc = lab.proc_status(st["MainPID"])
    assert int(proc["CapBnd"], 16) == cap_mask("CAP_BPF", "CAP_PERFMON", "CAP_NET_ADMIN", "CAP_SYS_ADMIN")
    assert proc["NoNewPrivs"].strip() == "1" and proc["Seccomp"].strip() == "2", proc
    prog = lab.xdp_prog()
    assert prog, "no XDP program on sws0 after start"
    assert any(e.get("event") == "started" for e in lab.events())

    # --- the CLI beside the service --------------------------------------
    lab.seawall("block", "add", BAD, BAD6, "--reason", "systemd test")
    want = {f"{BAD}/32", f"{BAD6}/128"}
    assert want <= lab.blocked()
    assert lab.ping(GOOD), "the customer gets no answer"
    assert not lab.ping(BAD), "the blocked address still gets an answer"
    metrics = lab.metrics()
    assert 'seawall_blocklist_entries{source="manual"} 2.0' in metrics
    # the process's own metrics, under the unit's /proc restrictions too
    assert "\nprocess_resident_memory_bytes " in metrics and "\nprocess_start_time_seconds " in metrics, metrics

    # --- SIGKILL: systemd restarts it, the filter never left -------------
    old = st["MainPID"]
    lab.sd.systemctl("kill", "--kill-whom=main", "--signal=KILL", lab.unit)
    seen = set()

    def restarted():
        seen.add(lab.xdp_prog())
        return lab.running(1, old)

    st = wait_for("a restart after SIGKILL", restarted, 20)
    seen.add(lab.xdp_prog())
    assert seen == {prog}, f"XDP program changed or vanished during the restart: {seen}"
    assert want <= lab.blocked()
    assert not lab.ping(BAD)

    # --- reload: SIGHUP, same process, still active ----------------------
    lab.write_config("300ms")
    lab.sd.systemctl("reload", lab.unit)
    wait_for("the reload to be applied",
             lambda: any(e.get("event") == "reload" and e.get("result") == "applied" for e in lab.events()), 10)
    after = lab.state()
    assert after["ActiveState"] == "active" and after["MainPID"] == st["MainPID"] and after["NRestarts"] == "1", after

    # --- a hung daemon: the watchdog aborts it, systemd restarts it ------
    hung = st["MainPID"]
    results = set()
    t_hang = time.monotonic()
    lab.sd.systemctl("kill", "--kill-whom=main", "--signal=STOP", lab.unit)

    def recovered():
        st = lab.state()
        results.add(st["Result"])  # "watchdog" while it waits to restart
        return lab.running(2, hung)

    st = wait_for("the watchdog to restart a stopped daemon", recovered, WATCHDOG_S + 20, step=0.05)
    assert "watchdog" in results, f"restarted, but not by the watchdog: {results}"
    assert time.monotonic() - t_hang >= WATCHDOG_S - 0.5
    assert lab.xdp_prog() == prog
    assert want <= lab.blocked()

    # --- stop: clean exit, the filter stays ------------------------------
    lab.sd.systemctl("stop", lab.unit, timeout=30)
    st = lab.state()
    assert st["ActiveState"] == "inactive" and st["Result"] == "success", st
    stopped = [e for e in lab.events() if e.get("event") == "stopped"]
    assert stopped and stopped[-1]["kept_filter"] is True
    assert lab.xdp_prog() == prog
    assert want <= lab.blocked()
    assert lab.ping(GOOD) and not lab.ping(BAD)
    print(f"start (compile, READY=1) {t_start:.1f} s; whole life {time.monotonic() - t0:.1f} s")


def test_a_filter_taken_off_is_put_back_or_the_watchdog_restarts_the_daemon(sdlab):
    """The daemon's guard (control/service/guard.py) under the real unit:
    `xdp off` is undone by the running daemon (same program, no restart);
    with its pin gone too, it cannot be, the daemon stops feeding the
    watchdog, and systemd restarts it, whose start attaches afresh."""
    lab = sdlab
    lab.sd.systemctl("start", lab.unit, timeout=90)
    assert lab.running(0), f"not running after start: {lab.state()}"
    prog = lab.xdp_prog()
    assert prog

    # --- xdp off: put back by the daemon within a few cycles -------------
    sh("ip", "-n", lab.s, "link", "set", "dev", "sws0", "xdp", "off")
    wait_for("the program to be put back", lambda: lab.xdp_prog() == prog, 3, step=0.02)
    assert lab.running(0), lab.state()
    lost = [e for e in lab.events() if e.get("event") == "filter_lost"]
    assert len(lost) == 1 and lost[0]["level"] == "error", lab.daemon_log()[-2000:]
    assert 'seawall_filter_reattach_total{interface="sws0"} 1.0' in lab.metrics()

    # --- not restorable: the watchdog restarts the daemon ----------------
    first = lab.state()["MainPID"]
    os.unlink(os.path.join(lab.pin_root, "ifaces", "sws0", "prog"))
    sh("ip", "-n", lab.s, "link", "set", "dev", "sws0", "xdp", "off")
    t0 = time.monotonic()
    results = set()

    def restarted():
        results.add(lab.state()["Result"])
        return lab.running(1, first)

    wait_for("the watchdog to restart the daemon", restarted, WATCHDOG_S + 20, step=0.05)
    assert "watchdog" in results, f"restarted, but not by the watchdog: {results}"
    assert time.monotonic() - t0 >= WATCHDOG_S - 0.5
    assert any(e.get("event") == "filter_unrecoverable" and e["level"] == "error" for e in lab.events())
    new = wait_for("a program attached by the restarted daemon", lab.xdp_prog, 30)
    assert new != prog
    assert lab.seawall("status", "--json").returncode == 0
    st = json.loads(lab.seawall("status", "--json").stdout)
    assert [i["state"] for i in st["interfaces"] if i["interface"] == "sws0"] == ["attached"], st
