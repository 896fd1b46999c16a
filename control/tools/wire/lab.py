"""The wire lab: one protected host behind one NIC, as on a real edge host.

    clients ns  wc0 198.18.2.10-249, 198.18.66.200 --veth-- wbc ┐
    attacker ns wa0 (raw frames: any source)      --veth-- wba ├ wbr (bridge, "wire" ns)
    server ns   ws0 198.18.0.1  <-- seawall's XDP --veth-- wbs ┘

Customers and attackers reach the server through the same interface
(ws0), where seawall attaches, so its program sees both mixed, as a real
NIC does. Every address is in 198.18.0.0/15 (RFC 2544). The server
answers only the customers: it has a route and a permanent neighbour
entry for each of them, and `blackhole 198.18.0.0/15` for everything
else, so its SYN-ACKs, RSTs and ICMP errors to spoofed or attacking
sources die in its own routing table and never leave the lab (nor even
ARP). The bridge has static FDB entries, so no frame is flooded to the
wrong port.

In: a short tag (names are sww-PID-TAG-{s,w,c,a}, PID the creator's). Out: a `Lab` whose
`start()` runs a command in one namespace (`nsenter --net`, which keeps
the host's bpffs, unlike `ip netns exec`) and whose `close()` stops every
process it started and deletes the namespaces; `lab()` is the context
manager that always does so, also on Ctrl-C.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from contextlib import contextmanager

SERVER = "198.18.0.1"
HTTP_PORT = 8080
#: the customers' addresses: CUSTOMER_NET .10 to .249, plus one inside the botnet's /24
CUSTOMER_NET = "198.18.2"
CUSTOMERS = [f"{CUSTOMER_NET}.{i}" for i in range(10, 250)]
BOTNET_NET = "198.18.66"
CUSTOMER_IN_BOTNET = f"{BOTNET_NET}.200"
ALL_CUSTOMERS = CUSTOMERS + [CUSTOMER_IN_BOTNET]
#: sources the taps count as the attack's: everything IPv4 except these
#: (the server's own /24, the customers' /24, the customer in the botnet's /24)
NOT_ATTACK = [("198.18.0.0", 24), (f"{CUSTOMER_NET}.0", 24), (CUSTOMER_IN_BOTNET, 32)]

SERVER_MAC = "02:53:57:77:00:01"
CLIENT_MAC = "02:53:57:77:00:02"
ATTACKER_MAC = "02:53:57:77:00:03"
ATTACKER = "198.18.1.66"  # the attacker namespace's own address (trafgen writes its own sources)

IF_SERVER, IF_CLIENTS, IF_ATTACKER = "ws0", "wc0", "wa0"
PREFIX = "sww-"


class LabError(RuntimeError):
    pass


def sh(*cmd: str, check: bool = True, timeout: float = 60, stdin: str | None = None) -> subprocess.CompletedProcess:
    p = subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout, input=stdin)
    if check and p.returncode:
        raise LabError(f"{' '.join(cmd[:6])}: exit {p.returncode}: {p.stderr.strip()[-300:]}")
    return p


BPF_PROG_TYPE_XDP = 6
XDP_PASS_INSNS = bytes.fromhex("b700000002000000" "9500000000000000")  # r0 = XDP_PASS; exit
XDP_DROP_INSNS = bytes.fromhex("b700000001000000" "9500000000000000")  # r0 = XDP_DROP; exit


class Lab:
    """The four namespaces and the processes started in them."""

    def __init__(self, tag: str | None = None):
        # the creator's pid first: leftovers() then knows whose lab it is
        tag = f"{os.getpid()}-{tag or uuid.uuid4().hex[:6]}"
        self.s, self.w, self.c, self.a = (f"{PREFIX}{tag}-{k}" for k in "swca")
        self.procs: list[subprocess.Popen] = []
        self.built: list[str] = []

    # --- topology ---------------------------------------------------------
    def build(self) -> None:
        for ns in (self.s, self.w, self.c, self.a):
            sh("ip", "netns", "add", ns)
            self.built.append(ns)
            # IPv4 only: no router solicitations or MLD reports in the counts
            for key in ("all", "default"):
                sh("ip", "netns", "exec", ns, "sysctl", "-qw", f"net.ipv6.conf.{key}.disable_ipv6=1")
        for ns, ifc, mac, port in ((self.s, IF_SERVER, SERVER_MAC, "wbs"), (self.c, IF_CLIENTS, CLIENT_MAC, "wbc"),
                                   (self.a, IF_ATTACKER, ATTACKER_MAC, "wba")):
            sh("ip", "link", "add", ifc, "netns", ns, "address", mac, "type", "veth", "peer", "name", port,
               "netns", self.w)
        w = [
            "link add wbr type bridge stp_state 0 forward_delay 0",
            *(f"link set {p} master wbr" for p in ("wbs", "wbc", "wba")),
            *(f"link set {p} up" for p in ("lo", "wbr", "wbs", "wbc", "wba")),
        ]
        self._batch(self.w, w)
        self._xdp(self.w, "wbs", XDP_PASS_INSNS)
        self._xdp(self.a, IF_ATTACKER, XDP_DROP_INSNS)
        self._batch(self.w, [f"fdb replace {SERVER_MAC} dev wbs master static",
                             f"fdb replace {CLIENT_MAC} dev wbc master static",
                             f"fdb replace {ATTACKER_MAC} dev wba master static"], tool="bridge")
        s = [f"addr add {SERVER}/24 dev {IF_SERVER}", f"link set {IF_SERVER} up", "link set lo up",
             "route add blackhole 198.18.0.0/15",
             f"route add {CUSTOMER_NET}.0/24 dev {IF_SERVER}",
             f"route add {CUSTOMER_IN_BOTNET}/32 dev {IF_SERVER}"]
        s += [f"neigh replace {a} lladdr {CLIENT_MAC} dev {IF_SERVER} nud permanent" for a in ALL_CUSTOMERS]
        self._batch(self.s, s)
        c = [f"addr add {a}/32 dev {IF_CLIENTS}" for a in ALL_CUSTOMERS]
        c += [f"link set {IF_CLIENTS} up", "link set lo up", f"route add {SERVER}/32 dev {IF_CLIENTS}",
              f"neigh replace {SERVER} lladdr {SERVER_MAC} dev {IF_CLIENTS} nud permanent"]
        self._batch(self.c, c)
        self._batch(self.a, [f"addr add {ATTACKER}/32 dev {IF_ATTACKER}", f"link set {IF_ATTACKER} up",
                             "link set lo up", f"route add {SERVER}/32 dev {IF_ATTACKER}",
                             f"neigh replace {SERVER} lladdr {SERVER_MAC} dev {IF_ATTACKER} nud permanent"])
        # a host under a SYN flood relies on syncookies; loose reverse-path
        # checks would hide spoofed floods behind the blackhole route
        for key, val in (("net.ipv4.conf.all.rp_filter", "0"), (f"net.ipv4.conf.{IF_SERVER}.rp_filter", "0"),
                         ("net.ipv4.tcp_syncookies", "1"), ("net.core.somaxconn", "4096"),
                         ("net.ipv4.tcp_max_syn_backlog", "4096"), ("net.ipv4.icmp_ratelimit", "1000")):
            sh("ip", "netns", "exec", self.s, "sysctl", "-qw", f"{key}={val}")
        for key, val in (("net.ipv4.ip_local_port_range", "10000 60999"), ("net.ipv4.tcp_tw_reuse", "1")):
            sh("ip", "netns", "exec", self.c, "sysctl", "-qw", f"{key}={val}")

    def _xdp(self, ns: str, ifname: str, insns: bytes) -> None:
        """A two-instruction XDP program on a veth:
        - XDP_PASS on the server's peer (wbs). A veth hands what its peer's
          XDP sends back (XDP_TX: seawall's cookie SYN-ACKs) only to a
          device with NAPI of its own, which XDP gives it; without it every
          SYN-ACK is lost on the way. A NIC needs nothing of the kind.
        - XDP_DROP on the attacker's interface: the backscatter (SYN-ACKs
          and RSTs to spoofed sources) ends there, as on the Internet it
          ends far from the host, instead of costing the attacker's stack
          CPU on the two cores the server shares."""
        from seawall.control.datapath import bpf

        fd, _ = bpf.prog_load(BPF_PROG_TYPE_XDP, insns, "GPL", "sww_lab")
        pin = f"/sys/fs/bpf/{ns}-{ifname}"
        try:
            bpf.obj_pin(fd, pin)
            # nsenter, not `ip -n`: that one mounts a fresh /sys, without the bpffs
            sh(*self.nsenter(ns), "ip", "link", "set", "dev", ifname, "xdpdrv", "pinned", pin)
        finally:
            os.close(fd)
            try:
                os.unlink(pin)  # the attachment holds the program
            except OSError:
                pass

    def _batch(self, ns: str, lines: list[str], tool: str = "ip") -> None:
        sh(tool, "-n", ns, "-batch", "-", stdin="\n".join(lines) + "\n")

    # --- processes --------------------------------------------------------
    def nsenter(self, ns: str) -> list[str]:
        return ["nsenter", f"--net=/run/netns/{ns}"]

    def run(self, ns: str, *cmd: str, check: bool = True, env: dict | None = None,
            timeout: float = 60) -> subprocess.CompletedProcess:
        p = subprocess.run([*self.nsenter(ns), *cmd], capture_output=True, text=True, timeout=timeout, env=env)
        if check and p.returncode:
            raise LabError(f"{' '.join(cmd[:4])}: exit {p.returncode}: {p.stderr.strip()[-300:]}")
        return p

    def start(self, ns: str, *cmd: str, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
              env: dict | None = None) -> subprocess.Popen:
        """cmd in namespace ns, in a process group of its own (trafgen
        forks, nsenter execs): stop() signals the whole group."""
        p = subprocess.Popen([*self.nsenter(ns), *cmd], stdout=stdout, stderr=stderr, env=env,
                             start_new_session=True, stdin=subprocess.DEVNULL)
        self.procs.append(p)
        return p

    @staticmethod
    def stop(p: subprocess.Popen, sig: int = signal.SIGTERM, wait: float = 10) -> None:
        def send(s: int) -> None:
            try:
                os.killpg(p.pid, s)
            except (ProcessLookupError, PermissionError):
                pass

        if p.poll() is None:
            send(sig)
            try:
                p.wait(wait)
            except subprocess.TimeoutExpired:
                send(signal.SIGKILL)
                p.wait(5)
        send(signal.SIGKILL)  # a forked child the signal left behind

    def close(self) -> None:
        for p in reversed(self.procs):
            try:
                self.stop(p)
            except Exception:  # teardown goes on whatever one process does
                pass
        self.procs.clear()
        for ns in reversed(self.built):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        self.built.clear()


def leftovers() -> list[str]:
    """Namespaces of a lab whose creator is gone (a kill -9). A lab whose
    creator still runs is another evaluation's, in use: never these."""
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    gone = []
    for ln in out.splitlines():
        name = ln.split()[0] if ln.split() else ""
        pid = name[len(PREFIX):].split("-")[0]
        if name.startswith(PREFIX) and pid.isdigit() and not os.path.exists(f"/proc/{pid}"):
            gone.append(name)
    return gone


def others() -> int:
    """Labs of other live processes running now (they share the CPUs)."""
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    mine = f"{PREFIX}{os.getpid()}-"
    return sum(1 for ln in out.splitlines() if ln.startswith(PREFIX) and ln.split()[0].endswith("-s")
               and not ln.startswith(mine))


@contextmanager
def lab(tag: str | None = None):
    """A built Lab, closed on exit whatever happens (also KeyboardInterrupt)."""
    lb = Lab(tag)
    try:
        lb.build()
        yield lb
    finally:
        lb.close()


def wait_for(pred, timeout: float, step: float = 0.05) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(step)
    return bool(pred())
