"""A three-namespace lab for the daemon: customers, an attacker, a server.

    clients ns  swc0 198.18.0.10-59/24  <-veth->  sws0 198.18.0.1/24   server ns
    attacker ns swa1 198.18.1.66/24     <-veth->  swa0 198.18.1.1/24   (seawall on both)

Everything lives in namespaces created here and removed on exit; traffic
uses only 198.18.0.0/15. The attacker's flood is trafgen with a packet
count and a time limit, so it ends by itself.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import contextmanager

SEAWALL = os.path.join(os.path.dirname(sys.executable), "seawall")
SERVER_MAC_A = "02:53:57:00:01:01"
ATTACKER_MAC = "02:53:57:00:01:02"
CLIENTS = [f"198.18.0.{i}" for i in range(10, 60)]
ATTACKER = "198.18.1.66"
HTTP_PORT = 8080

# Legitimate customers: HTTP requests from rotating source addresses at a
# steady rate for DURATION seconds; prints one JSON summary.
CLIENT_SCRIPT = r"""
import json, random, socket, sys, time
srcs = sys.argv[1].split(","); dst = sys.argv[2]; port = int(sys.argv[3])
duration = float(sys.argv[4]); rate = float(sys.argv[5])
ok = fail = 0; lat = []; failures = []
end = time.monotonic() + duration; nxt = time.monotonic(); i = 0
while time.monotonic() < end:
    src = srcs[i % len(srcs)]; i += 1
    t = time.monotonic()
    try:
        s = socket.create_connection((dst, port), timeout=2.0, source_address=(src, 0))
        s.sendall(b"GET / HTTP/1.0\r\nHost: shop\r\n\r\n")
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        s.close()
        if data.startswith(b"HTTP/1.") and b" 200 " in data[:20]:
            ok += 1; lat.append(time.monotonic() - t)
        else:
            fail += 1; failures.append([round(t, 3), src, "bad reply"])
    except OSError as e:
        fail += 1; failures.append([round(t, 3), src, str(e)])
    nxt += 1.0 / rate
    time.sleep(max(0.0, nxt - time.monotonic()))
lat.sort()
print(json.dumps({"ok": ok, "fail": fail, "failures": failures[:20],
                  "p50_ms": round(1000 * lat[len(lat) // 2], 2) if lat else None,
                  "p99_ms": round(1000 * lat[int(len(lat) * 0.99)], 2) if lat else None}))
"""


# The daemon's config in these labs: short cycles and a short warm-up, a
# rate floor that the lab's few hundred customer packets/s clear.
LAB_CONFIG = """
[daemon]
interval = "200ms"
[detection]
warmup = "3s"
baseline_window = "10s"
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
        for ns in (self.c, self.a, self.s):
            sh("ip", "netns", "add", ns)
        sh("ip", "link", "add", "swc0", "netns", self.c, "type", "veth", "peer", "name", "sws0", "netns", self.s)
        sh("ip", "link", "add", "swa1", "netns", self.a, "address", ATTACKER_MAC, "type", "veth",
           "peer", "name", "swa0", "netns", self.s, "address", SERVER_MAC_A)
        sh("ip", "-n", self.s, "addr", "add", "198.18.0.1/24", "dev", "sws0")
        sh("ip", "-n", self.s, "addr", "add", "198.18.1.1/24", "dev", "swa0")
        for a in CLIENTS:
            sh("ip", "-n", self.c, "addr", "add", f"{a}/24", "dev", "swc0")
        sh("ip", "-n", self.a, "addr", "add", f"{ATTACKER}/24", "dev", "swa1")
        for ns, ifs in ((self.c, ["lo", "swc0"]), (self.a, ["lo", "swa1"]), (self.s, ["lo", "sws0", "swa0"])):
            for i in ifs:
                sh("ip", "-n", ns, "link", "set", i, "up")
        # the flood is one-way: the server must not answer it with ARP storms
        sh("ip", "-n", self.s, "neigh", "replace", ATTACKER, "lladdr", ATTACKER_MAC, "dev", "swa0", "nud", "permanent")

    def seawall(self, *args, check=True):
        p = sh(*self.nsenter(self.s), SEAWALL, *args, check=False, env=self.env)
        if check and p.returncode:
            raise AssertionError(f"seawall {' '.join(args)}: exit {p.returncode}: {p.stderr.strip()}")
        return p

    def start(self, ns, *cmd, quiet=False, **kw) -> subprocess.Popen:
        """quiet: discard the output (a pipe nobody reads fills up and blocks the process)."""
        out = subprocess.DEVNULL if quiet else subprocess.PIPE
        p = subprocess.Popen([*self.nsenter(ns), *cmd], stdout=out, stderr=out, text=True, **kw)
        self.procs.append(p)
        return p

    def http_server(self):
        return self.start(self.s, sys.executable, "-m", "http.server", str(HTTP_PORT), "--bind", "198.18.0.1",
                          "--directory", tempfile.gettempdir(), quiet=True)

    def clients(self, duration: float, rate: float):
        return self.start(self.c, sys.executable, "-c", CLIENT_SCRIPT, ",".join(CLIENTS), "198.18.0.1",
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
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(5)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait(5)
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
