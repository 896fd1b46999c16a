"""A three-namespace lab for the daemon: customers, an attacker, a server.

    clients ns  swc0 198.18.0.10-59/24  <-veth->  sws0 198.18.0.1/24   server ns
    attacker ns swa1 198.18.1.66/24     <-veth->  swa0 198.18.1.1/24   (seawall on both)

The topology and the customers' load are vethlab.py's, and the
end-to-end bench (bench_e2e.py) runs in this lab too. Everything lives in
namespaces created here and removed on exit; traffic uses only
198.18.0.0/15. The attacker's flood is trafgen with a packet count and a
time limit, so it ends by itself.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import uuid
from contextlib import contextmanager

import vethlab
from vethlab import ATTACKER, ATTACKER_MAC, CLIENTS, HTTP_PORT, SERVER, SERVER_MAC_A

SEAWALL = os.path.join(os.path.dirname(sys.executable), "seawall")
#: the customers' client, run as its own process in the clients' namespace
VETHLAB = os.path.join(os.path.dirname(os.path.abspath(__file__)), "vethlab.py")

# The daemon's config in these labs: short cycles and a short warm-up, a
# rate floor that the lab's few hundred customer packets/s clear.
LAB_CONFIG = """
[daemon]
interval = "200ms"
[detection]
warmup = "3s"
mix_window = "10s"
min_pps = 300
[ttl]
base = "2m"
"""


def write_flood_conf(path):
    """trafgen: one UDP frame from the attacker to the server's discard port."""
    with open(path, "w") as f:
        f.write(
            "{\n"
            f"  eth(da={SERVER_MAC_A}, sa={ATTACKER_MAC}, type=0x0800),\n"
            f"  ipv4(saddr={ATTACKER}, daddr=198.18.1.1, proto=17, ttl=64),\n"
            "  udp(sp=40000, dp=9),\n"
            "  fill(0x41, 64)\n"
            "}\n"
        )


def sh(*cmd, check=True, timeout=60, **kw):
    p = subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout, **kw)
    if check and p.returncode:
        raise AssertionError(f"{' '.join(cmd)}: exit {p.returncode}: {p.stderr.strip()}")
    return p


class DaemonLab:
    def __init__(self, tag: str, env: dict):
        self.c, self.a, self.s = f"swt-{tag}-c", f"swt-{tag}-a", f"swt-{tag}-s"
        self.env = env
        self.procs: list = []

    def nsenter(self, ns):
        return ["nsenter", f"--net=/run/netns/{ns}"]

    def build(self):
        vethlab.build(self.c, self.a, self.s)

    def seawall(self, *args, check=True):
        p = sh(*self.nsenter(self.s), SEAWALL, *args, check=False, env=self.env)
        if check and p.returncode:
            raise AssertionError(f"seawall {' '.join(args)}: exit {p.returncode}: {p.stderr.strip()}")
        return p

    def start(self, ns, *cmd, quiet=False, group=False, **kw) -> subprocess.Popen:
        """Start cmd in namespace ns. quiet: discard the output (a pipe
        nobody reads fills up and blocks the process, http.server's after
        some 900 requests). group: its own process group, signalled whole
        by stop() (trafgen forks a sender per CPU)."""
        out = subprocess.DEVNULL if quiet else subprocess.PIPE
        p = subprocess.Popen([*self.nsenter(ns), *cmd], stdout=out, stderr=out, text=True,
                             start_new_session=group, **kw)
        p.group = group
        self.procs.append(p)
        return p

    def stop(self, p: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
        def send(s: int) -> None:
            try:
                if getattr(p, "group", False):
                    os.killpg(p.pid, s)
                else:
                    p.send_signal(s)
            except ProcessLookupError:
                pass

        if p.poll() is None or getattr(p, "group", False):
            send(sig)
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                send(signal.SIGKILL)
                p.wait(5)
            if getattr(p, "group", False):
                send(signal.SIGKILL)  # a sender the signal left behind

    def arrived(self, by_seawall: bool) -> int:
        """Frames that reached the server's flooded interface, whoever then
        dropped them. by_seawall: seawall is attached there, so its own
        counters (the frames its XDP drops never reach the interface's rx
        counter); otherwise the rx counter (nftables' ingress hook runs
        after it). A failed read raises: falling back to the other counter
        would quietly count nothing."""
        if by_seawall:
            st = self.seawall("stats", "-i", "swa0", "--json")
            return sum(r["packets"] for r in json.loads(st.stdout)["interfaces"]["swa0"]["reasons"].values())
        out = sh(*self.nsenter(self.s), "ip", "-s", "-j", "link", "show", "swa0").stdout
        return int(json.loads(out)[0]["stats64"]["rx"]["packets"])

    def http_server(self):
        return self.start(self.s, sys.executable, "-m", "http.server", str(HTTP_PORT), "--bind", SERVER,
                          "--directory", tempfile.gettempdir(), quiet=True)

    def clients(self, duration: float, rate: float):
        """Legitimate customers (vethlab.py): HTTP requests from rotating
        source addresses at a steady rate for `duration` seconds; prints one
        JSON summary (ok, fail, failures, p50_ms, p99_ms)."""
        return self.start(self.c, sys.executable, VETHLAB, ",".join(CLIENTS), SERVER,
                          str(HTTP_PORT), str(duration), str(rate))

    def flood(self, conf: str, pps: int, seconds: float):
        """trafgen from the attacker namespace: pps for `seconds`, then exits."""
        return self.start(self.a, "timeout", str(int(seconds) + 5), "trafgen", "--dev", "swa1", "--conf", conf,
                          "--cpus", "1", "--rate", f"{pps}pps", "--num", str(int(pps * seconds)), "-Q", "-C")

    def daemon(self, config: str, *ifaces):
        args = [SEAWALL, "run", "--config", config]
        for i in ifaces:
            args += ["-i", i]
        return self.start(self.s, *args, env=self.env)

    def teardown(self):
        for p in self.procs:
            self.stop(p)
        for ns in (self.c, self.a, self.s):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


@contextmanager
def daemon_lab(env: dict):
    lab = DaemonLab(uuid.uuid4().hex[:6], env)
    try:
        lab.build()
        yield lab
    finally:
        lab.teardown()


def events(stderr_text: str) -> list:
    out = []
    for line in stderr_text.splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            pass
    return out
