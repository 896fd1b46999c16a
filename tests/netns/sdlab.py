"""A real systemd for tests/netns/test_systemd.py, without touching the host's.

systemd runs as PID 1 of a new PID and mount namespace:

    unshare --pid --fork --mount --mount-proc --propagation private sh -c '
        mount -t tmpfs tmpfs /var/lib     # StateDirectory=seawall lands here
        mount -t tmpfs tmpfs /var/cache   # and CacheDirectory=seawall here
        bind the lab's server netns to /var/lib/swt-netns/server
        mount -t tmpfs tmpfs /run         # units, config, logs live here
        exec env container=seawall-test systemd --system --unit=swt-idle.target'

Why each step:
- /run, /var/lib and /var/cache are tmpfs inside the new mount namespace,
  so the unit files (/run/systemd/system), the config, the log, the state
  directory and the object cache vanish with it; the host's /run,
  /var/lib, /var/cache and /etc are never written.
- /run/netns/NAME is hidden once /run is replaced, so the server netns is
  bind-mounted to /var/lib/swt-netns/server first: NetworkNamespacePath=
  points there.
- `--unit=swt-idle.target` (an empty target) instead of default.target: a
  full boot starts the host's own units inside the namespace, and they act
  on shared kernel and disk state (seen here: systemd-tmpfiles-setup
  emptied the host's /tmp, systemd-sysctl rewrote sysctls, ntpd and gettys
  on the console started). For the same reason the unit under test gets
  DefaultDependencies=no (else it pulls in sysinit.target).
- `container=...` tells systemd it is in a container, so its shutdown path
  neither unmounts nor remounts file systems read-only (those are the
  host's).
- `--log-target=null`: as PID 1 with no journald, systemd would log to
  /dev/console (the host's console) or the kernel log. The test reads the
  units' state with `systemctl show` and the daemon's output from a file.

The host sees the inner files through /proc/PID/root.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time

SYSTEMD = "/lib/systemd/systemd"

IDLE_TARGET = """[Unit]
Description=seawall test: nothing but the units the test starts
"""

INNER = r"""
set -e
mount -t tmpfs -o mode=0755 swt-var-lib /var/lib
mount -t tmpfs -o mode=0755 swt-var-cache /var/cache
mkdir -p /var/lib/swt-netns
touch /var/lib/swt-netns/server
mount --bind "/run/netns/$1" /var/lib/swt-netns/server
mount -t tmpfs -o mode=0755 swt-run /run
mkdir -p /run/systemd/system /run/swt
printf '%s' "$2" > /run/systemd/system/swt-idle.target
exec env -i container=seawall-test PATH=/usr/sbin:/usr/bin:/sbin:/bin \
    "$3" --system --unit=swt-idle.target --log-target=null
"""

#: where the lab's server network namespace is visible inside
NETNS_PATH = "/var/lib/swt-netns/server"


def sh(*cmd, check=True, timeout=30, **kw):
    p = subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout, **kw)
    if check and p.returncode:
        raise AssertionError(f"{' '.join(cmd)}: exit {p.returncode}: {p.stderr.strip()}{p.stdout.strip()}")
    return p


def wait_for(what: str, pred, timeout: float, step: float = 0.1):
    """Poll pred() until it returns something truthy; fail after timeout."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = pred()
        if last:
            return last
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what} (last: {last!r})")


class InnerSystemd:
    """systemd as PID 1 of its own PID and mount namespace."""

    def __init__(self, netns: str, log_path: str):
        self.netns = netns
        self.log_path = log_path
        self.proc = None
        self.pid = None  # systemd's PID as the host sees it

    def start(self, timeout: float = 20.0) -> None:
        log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            ["unshare", "--pid", "--fork", "--mount", "--mount-proc", "--propagation", "private",
             "sh", "-c", INNER, "sh", self.netns, IDLE_TARGET, SYSTEMD],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()

        def child():
            if self.proc.poll() is not None:
                raise AssertionError(f"inner systemd exited ({self.proc.returncode}): {self.log()[-2000:]}")
            try:
                with open(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children") as f:
                    kids = f.read().split()
            except OSError:
                return None
            if not kids:
                return None
            try:
                with open(f"/proc/{kids[0]}/comm") as f:
                    return int(kids[0]) if f.read().strip() == "systemd" else None
            except OSError:
                return None

        self.pid = wait_for("systemd to exec", child, timeout)

        def booted():
            p = self.systemctl("is-system-running", check=False)
            return p.stdout.strip() in ("running", "degraded")

        wait_for("systemd to finish starting", booted, timeout, step=0.2)

    def log(self) -> str:
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def path(self, inner: str) -> str:
        """A path inside the namespace, as the host reaches it."""
        return f"/proc/{self.pid}/root{inner}"

    def write(self, inner: str, text: str) -> None:
        host = self.path(inner)
        os.makedirs(os.path.dirname(host), exist_ok=True)
        with open(host, "w") as f:
            f.write(text)

    def nsenter(self, *, pid=True) -> list:
        return ["nsenter", "-t", str(self.pid), "-m"] + (["-p"] if pid else [])

    def systemctl(self, *args, check=True, timeout=30):
        return sh(*self.nsenter(), "systemctl", *args, check=check, timeout=timeout)

    def show(self, unit: str, *props) -> dict:
        out = self.systemctl("show", unit, *(f"--property={p}" for p in props)).stdout
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def stop(self, timeout: float = 15.0) -> None:
        """Power the inner systemd off; kill its namespace if it lingers."""
        if self.proc is None:
            return
        if self.proc.poll() is None and self.pid is not None:
            try:
                self.systemctl("poweroff", "--no-block", check=False, timeout=10)
            except subprocess.TimeoutExpired:
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        if self.proc.poll() is None:
            # SIGKILL to the namespace's PID 1 kills every process in it
            for pid in (self.pid, self.proc.pid):
                if pid is not None:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
            self.proc.wait(10)
