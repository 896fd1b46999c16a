"""The two-namespace lab of the end-to-end tests (fixture in conftest.py).

    client ns (swt-<id>-c)                      server ns (swt-<id>-s)
    swc0: 198.18.0.10, .20, .30 /24    <-veth->  sws0: 198.18.0.1/24
          2001:2::10, ::20 /64                         2001:2::1/64

The veth pair is created directly inside the two namespaces: nothing is
ever added to the host's own network namespace. Both namespaces are
removed when the test ends, pass or fail. Traffic stays on the pair and
uses only the benchmarking ranges 198.18.0.0/15 and 2001:2::/48.

The seawall CLI runs in the server namespace through
`nsenter --net=...`, never `ip netns exec`: the latter gives the command a
fresh /sys, hiding the host's bpffs and so the pins the previous command
left (see the environment notes).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator

SERVER_IF = "sws0"
CLIENT_IF = "swc0"
# Locally administered MACs, so the neighbour entries can be static.
SERVER_MAC = "02:53:57:00:00:01"
CLIENT_MAC = "02:53:57:00:00:02"

SERVER_V4 = "198.18.0.1"
SERVER_V6 = "2001:2::1"
CLIENT_V4 = ("198.18.0.10", "198.18.0.20", "198.18.0.30")
CLIENT_V6 = ("2001:2::10", "2001:2::20")

#: seawall in the same virtual environment as the interpreter running pytest
SEAWALL = os.path.join(os.path.dirname(sys.executable), "seawall")
if not os.path.exists(SEAWALL):  # pragma: no cover - pytest run from elsewhere
    SEAWALL = shutil.which("seawall") or SEAWALL

#: UID/GID of `nobody`, for the unprivileged runs
NOBODY = 65534

#: every subprocess is bounded; a ping takes count * 10 ms plus its wait
CMD_TIMEOUT_S = 60

_PING_SUMMARY = re.compile(r"(\d+) packets transmitted, (\d+) received")

# Sends COUNT datagrams of SIZE bytes from SRC to DST:PORT, then exits.
_UDP_SENDER = """
import socket, sys
src, dst, port, count, size = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
fam = socket.AF_INET6 if ":" in dst else socket.AF_INET
s = socket.socket(fam, socket.SOCK_DGRAM)
s.bind((src, 0))
for _ in range(count):
    s.sendto(b"x" * size, (dst, port))
"""


def _run(cmd: list, check: bool = True, **kw) -> subprocess.CompletedProcess:
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=CMD_TIMEOUT_S, **kw)
    if check and p.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} exited {p.returncode}\nstdout: {p.stdout}\nstderr: {p.stderr}")
    return p


@dataclass
class Ping:
    sent: int
    received: int
    returncode: int
    output: str

    @property
    def all_ok(self) -> bool:
        return self.sent > 0 and self.received == self.sent

    @property
    def none_ok(self) -> bool:
        return self.sent > 0 and self.received == 0 and self.returncode != 0


@dataclass
class Lab:
    client: str  # namespace names
    server: str
    env: dict = field(repr=False)
    server_if: str = SERVER_IF

    # --- running things in a namespace ---------------------------------------

    def nsenter(self, ns: str) -> list:
        return ["nsenter", f"--net=/run/netns/{ns}"]

    def seawall(self, *args: str, user: int | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
        """Run the seawall CLI in the server namespace (never raises on a
        non-zero exit: the caller checks returncode/stdout/stderr).
        user: run unprivileged as this uid/gid (setpriv), after nsenter.
        env: extra environment variables."""
        cmd = self.nsenter(self.server)
        if user is not None:
            cmd += ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups"]
        cmd += [SEAWALL, *args]
        return _run(cmd, check=False, env=dict(self.env, **(env or {})))

    def sw(self, *args: str) -> str:
        """Run seawall and require success; returns stdout."""
        p = self.seawall(*args)
        assert p.returncode == 0, f"seawall {' '.join(args)} exited {p.returncode}: {p.stderr.strip()}"
        return p.stdout

    def sw_json(self, *args: str):
        return json.loads(self.sw(*args, "--json"))

    # --- seawall state, as the CLI reports it ----------------------------------

    def status(self, iface: str | None = None):
        st = self.sw_json("status")
        if iface is None:
            return st
        for s in st["interfaces"]:
            if s["interface"] == iface:
                return s
        return None

    def counters(self) -> dict:
        """{'reasons': {name: packets}, 'events': {name: count}} of the server veth."""
        c = self.sw_json("stats", "-i", self.server_if)["interfaces"][self.server_if]
        return {"reasons": {k: v["packets"] for k, v in c["reasons"].items()}, "events": c["events"]}

    def blocked(self) -> list:
        return [e["cidr"] for e in self.sw_json("block", "list")]

    def xdp_link(self) -> dict:
        """What the kernel says is attached to the server veth (ip -j link)."""
        out = _run(["ip", "-n", self.server, "-j", "link", "show", "dev", self.server_if]).stdout
        return json.loads(out)[0].get("xdp") or {}

    # --- traffic -------------------------------------------------------------

    def ping(self, src: str, count: int = 5, wait: float = 1.0) -> Ping:
        """count echo requests from client address src to the server, 10 ms
        apart, waiting at most `wait` seconds for the last reply."""
        dst = SERVER_V6 if ":" in src else SERVER_V4
        cmd = self.nsenter(self.client) + ["ping", "-n", "-q", "-c", str(count), "-i", "0.01", "-W", str(wait),
                                           "-I", src, dst]
        p = _run(cmd, check=False)
        m = _PING_SUMMARY.search(p.stdout)
        assert m, f"unexpected ping output (exit {p.returncode}): {p.stdout} {p.stderr}"
        return Ping(int(m[1]), int(m[2]), p.returncode, p.stdout)

    def udp(self, src: str, count: int = 50, port: int = 9, size: int = 64) -> None:
        """count UDP datagrams from client address src to the server's
        discard port (nothing listens: only the filter's counters see them)."""
        dst = SERVER_V6 if ":" in src else SERVER_V4
        _run(self.nsenter(self.client) + [sys.executable, "-c", _UDP_SENDER, src, dst, str(port),
                                          str(count), str(size)])


class RunningDaemon:
    """`seawall run` in the lab's server namespace, its JSON lines collected."""

    def __init__(self, lab, *args, env=None, interval: float = 0.2):
        self.p = subprocess.Popen([*lab.nsenter(lab.server), SEAWALL, "run", "-i", SERVER_IF,
                                   "--interval", f"{int(interval * 1000)}ms", *args],
                                  stderr=subprocess.PIPE, text=True, env=dict(lab.env, **(env or {})))
        self.lines: list = []
        self._t = threading.Thread(target=self._read, daemon=True)
        self._t.start()

    def _read(self):
        for line in self.p.stderr:
            self.lines.append(line)

    def events(self) -> list:
        out = []
        for line in list(self.lines):
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
        return out

    def wait(self, kind: str, timeout: float) -> dict:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            for e in self.events():
                if e.get("event") == kind:
                    return e
            assert self.p.poll() is None, f"the daemon exited {self.p.returncode}:\n{''.join(self.lines)[-3000:]}"
            time.sleep(0.02)
        raise AssertionError(f"no {kind} within {timeout} s; the daemon said:\n{''.join(self.lines)[-3000:]}")

    def stop(self) -> None:
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(15)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait(5)
        self._t.join(5)


def _ip(*args: str) -> None:
    _run(["ip", *args])


@contextmanager
def lab_namespaces(pin_root: str, state_dir: str) -> Iterator[Lab]:
    """Build the lab, yield it, and remove both namespaces whatever happens.
    The seawall CLI is pointed at pin_root and state_dir."""
    tag = uuid.uuid4().hex[:8]
    client, server = f"swt-{tag}-c", f"swt-{tag}-s"
    created = []
    env = dict(os.environ, SEAWALL_BPFFS=pin_root, SEAWALL_STATE_DIR=state_dir)
    try:
        for ns in (client, server):
            _ip("netns", "add", ns)
            created.append(ns)
        _ip("link", "add", CLIENT_IF, "address", CLIENT_MAC, "netns", client, "type", "veth",
            "peer", "name", SERVER_IF, "address", SERVER_MAC, "netns", server)
        _ip("-n", server, "addr", "add", f"{SERVER_V4}/24", "dev", SERVER_IF)
        _ip("-n", server, "addr", "add", f"{SERVER_V6}/64", "dev", SERVER_IF, "nodad")
        for a in CLIENT_V4:
            _ip("-n", client, "addr", "add", f"{a}/24", "dev", CLIENT_IF)
        for a in CLIENT_V6:
            _ip("-n", client, "addr", "add", f"{a}/64", "dev", CLIENT_IF, "nodad")
        # Static neighbours: with ARP/ND in play, a blocked source's own
        # neighbour solicitations are dropped too (rightly: they carry its
        # address), which stalls resolution for the other sources for up
        # to a second and adds packets the test did not send to drop_block.
        for a in CLIENT_V4 + CLIENT_V6:
            _ip("-n", server, "neigh", "replace", a, "lladdr", CLIENT_MAC, "dev", SERVER_IF, "nud", "permanent")
        for a in (SERVER_V4, SERVER_V6):
            _ip("-n", client, "neigh", "replace", a, "lladdr", SERVER_MAC, "dev", CLIENT_IF, "nud", "permanent")
        for ns, dev in ((client, CLIENT_IF), (server, SERVER_IF)):
            _ip("-n", ns, "link", "set", "lo", "up")
            _ip("-n", ns, "link", "set", dev, "up")
        yield Lab(client, server, env)
    finally:
        # Deleting a namespace destroys its end of the veth pair, which
        # detaches any XDP program; the pins go with the paths fixture.
        for ns in created:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=CMD_TIMEOUT_S)
