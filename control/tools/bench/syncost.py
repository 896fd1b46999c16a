"""The host's CPU time per million spoofed SYNs on veth: the kernel's own
syncookies against seawall's cookies in XDP, side by side in one run.

    attacker ns  wa0 198.18.0.2  --veth--  ws0 198.18.0.1  server ns
    (trafgen; XDP_DROP on wa0)             (a listener on LISTEN_PORT)

The same trafgen flood of N SYNs (a random source in 198.19.0.0/16 per
SYN, Linux's options: MSS, SACK permitted, timestamps, window scale) goes
into the server under each configuration, interleaved (a, b, c, a, b,
c, ...):

- kernel: no XDP on ws0; net.ipv4.tcp_syncookies=1 and the listen queue
  overflows, so the kernel answers with its own cookies (oracle: TcpExt
  SyncookiesSent in the server namespace grows);
- xdp: seawall on ws0 with the port in syn_ports, so XDP answers with a
  cookie SYN-ACK (XDP_TX) and no SYN reaches the stack (oracle: the
  TX_SYNCOOKIE reason counts the SYNs, Tcp InSegs barely moves);
- floor: an empty `return XDP_DROP;` (xdp/bench/floor.c) on ws0: what the
  sender and veth cost by themselves.

CPU time is measured twice over each flood:
- host: the delta of /proc/stat, every CPU, every field but idle, iowait
  and steal (steal is time the VM did not run; it is reported beside).
  It counts whatever else runs on the host meanwhile;
- flood: the CPU time of the sending process tree (RUSAGE_CHILDREN) and
  of the ksoftirqd threads. On veth the receive path, XDP or the
  kernel's softirq, runs in-line on the sender's core and is charged to
  it (measured here: trafgen's system time holds /proc/stat's softirq
  time of the flood), or, when the CPU is busy, is deferred to
  ksoftirqd: this is the flood's cost without the rest of the host's
  load. It misses timers and work on other cores (the host measure of a
  quiet run shows how much: about 0.2 s a million for the kernel's).
Both configurations answer every SYN that arrives, and
both answers go back over the veth to the attacker's side, where an
XDP_DROP program on wa0 drops them before its stack sees them (the
server's route to 198.19.0.0/16 points at the attacker, so the kernel's
SYN-ACKs take the same way back as XDP_TX's). On veth the receiver's XDP
and the server's softirq run on the sender's core: the figures are the
host's CPU time, whichever core spent it.

The module needs root, trafgen and nsenter; every namespace it makes is
deleted afterwards and the flood is bounded by count and by `timeout`.
Pure parts (the trafgen configuration, the /proc parsers, the summary)
are at the top.
"""

from __future__ import annotations

import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from typing import Callable, Optional

from seawall.control.datapath import bpf, loader
from seawall.control.datapath.interfaces import Interfaces
from seawall.control.datapath.synports import MSS4, MSS6, SynPort, SynPortTable
from seawall.control.errors import SeawallError
from seawall.control.state import Paths
from seawall.control.tools.bench.syn import WSCALE
from seawall.control.tools.wire import lab as wirelab

SERVER, ATTACKER = "198.18.0.1", "198.18.0.2"
SPOOF_NET = "198.19.0.0/16"  # the SYNs' sources (RFC 2544 space)
SERVER_MAC, ATTACKER_MAC = "02:53:59:4e:00:01", "02:53:59:4e:00:02"
IF_SERVER, IF_ATTACKER = "ws0", "wa0"
LISTEN_PORT = 8080
BACKLOG = 4096  # the listener's (customers.serve) and the namespace's somaxconn and tcp_max_syn_backlog
CONFIGS = ("kernel", "xdp", "floor")
CONFIG_WHAT = {
    "kernel": "no XDP on the server: the kernel's own syncookies (tcp_syncookies=1, listen queue overflowing)",
    "xdp": "seawall on the server, the port in syn_ports: cookie SYN-ACKs from XDP (XDP_TX)",
    "floor": "an empty XDP_DROP program on the server: the sender's and veth's own cost",
}
#: /proc/stat's cpu line: user nice system idle iowait irq softirq steal guest guest_nice
_IDLE, _IOWAIT, _STEAL = 3, 4, 7
USER_HZ = os.sysconf("SC_CLK_TCK")


def _b(text: str, sep: str) -> str:
    """An address as trafgen bytes: '02:53:..' -> '0x02, 0x53, ..'; '198.18.0.1' -> '198, 18, 0, 1'."""
    if sep == ":":
        return ", ".join(f"0x{x}" for x in text.split(":"))
    return ", ".join(text.split("."))


def trafgen_conf(dport: int = LISTEN_PORT) -> str:
    """The flood's frame as trafgen's configuration: 74 bytes, a SYN from a
    random source of 198.19.0.0/16 (random port, sequence number and
    timestamp) to SERVER:dport with the options Linux sends, in its order:
    MSS 1460, SACK permitted, timestamps, NOP, window scale 7."""
    return ("{\n"
            f"  {_b(SERVER_MAC, ':')}, {_b(ATTACKER_MAC, ':')}, 0x08, 0x00,\n"
            "  0x45, 0x00, c16(60), drnd(2), 0x40, 0x00, 64, 6, csumip(14, 33),\n"
            f"  198, 19, drnd(), drnd(),\n  {_b(SERVER, '.')},\n"
            f"  drnd(2), c16({dport}), drnd(4), c32(0), 0xa0, 0x02, c16(64240), csumtcp(14, 34), c16(0),\n"
            "  0x02, 0x04, c16(1460), 0x04, 0x02, 0x08, 0x0a, drnd(4), c32(0), 0x01, 0x03, 0x03, 0x07\n"
            "}\n")


def cpu_ticks(stat_text: str) -> tuple:
    """(busy, steal) ticks of /proc/stat's aggregate `cpu` line: busy is
    every field but idle, iowait and steal (guest is inside user)."""
    for line in stat_text.splitlines():
        if line.startswith("cpu "):
            f = [int(x) for x in line.split()[1:]]
            busy = sum(f[:8]) - f[_IDLE] - f[_IOWAIT] - f[_STEAL]
            return busy, f[_STEAL]
    raise ValueError("no aggregate cpu line in /proc/stat")


def snmp_table(text: str) -> dict:
    """/proc/net/snmp or /proc/net/netstat as {"Tcp": {"InSegs": n}, "TcpExt": {...}}:
    each group is a header line and a value line."""
    out: dict = {}
    lines = text.splitlines()
    for head, vals in zip(lines[::2], lines[1::2]):
        group, names = head.split(":", 1)
        g2, values = vals.split(":", 1)
        if group != g2:
            raise ValueError(f"unpaired lines {group!r} and {g2!r}")
        out[group] = {k: int(v) for k, v in zip(names.split(), values.split())}
    return out


def dev_table(text: str) -> dict:
    """/proc/net/dev as {ifname: {"rx_packets", "rx_dropped", "tx_packets", "tx_dropped"}}."""
    out = {}
    for line in text.splitlines()[2:]:
        name, rest = line.split(":", 1)
        f = [int(x) for x in rest.split()]
        out[name.strip()] = {"rx_packets": f[1], "rx_dropped": f[3], "tx_packets": f[9], "tx_dropped": f[11]}
    return out


@dataclass
class Sample:
    """One flood under one configuration."""

    config: str
    syns: int  # sent by trafgen
    seconds: float  # the flood's wall time
    host_s: float  # CPU seconds of the whole host over the flood (/proc/stat)
    steal_s: float
    flood_s: float  # CPU seconds of the sending process tree (which ran the receive path in-line) and ksoftirqd
    oracle: dict  # counters of the server namespace and of seawall

    def per_million(self, measure: str = "host") -> float:
        """CPU seconds per million SYNs, by `measure`: host or flood."""
        return (self.host_s if measure == "host" else self.flood_s) * 1e6 / self.syns

    def to_json(self) -> dict:
        return {"config": self.config, "syns": self.syns, "seconds": round(self.seconds, 3),
                "host_cpu_s": round(self.host_s, 3), "steal_s": round(self.steal_s, 3),
                "flood_cpu_s": round(self.flood_s, 3),
                "host_cpu_s_per_million": round(self.per_million("host"), 3),
                "flood_cpu_s_per_million": round(self.per_million("flood"), 3), **self.oracle}


MEASURES = ("host", "flood")


def summarise(samples: list) -> dict:
    """For each measure (host, flood) and configuration: the median and
    worst CPU seconds per million SYNs, each configuration's median less
    the floor's (the receiver's share), and the kernel's share over XDP's."""
    out: dict = {"configs": {cfg: {"what": CONFIG_WHAT[cfg]} for cfg in CONFIGS
                             if any(s.config == cfg for s in samples)}}
    c = out["configs"]
    for cfg in c:
        rows = [s for s in samples if s.config == cfg]
        c[cfg]["runs"] = len(rows)
        c[cfg]["mpps"] = round(statistics.median(s.syns / s.seconds for s in rows) / 1e6, 3)
        for m in MEASURES:
            vals = [s.per_million(m) for s in rows]
            c[cfg][m] = {"median": round(statistics.median(vals), 3), "worst": round(max(vals), 3)}
    if "floor" in c:
        for m in MEASURES:
            for cfg in ("kernel", "xdp"):
                if cfg in c:
                    c[cfg][m]["over_floor"] = round(c[cfg][m]["median"] - c["floor"][m]["median"], 3)
            if "kernel" in c and "xdp" in c:
                k, x = c["kernel"][m]["over_floor"], c["xdp"][m]["over_floor"]
                out[f"{m}_kernel_over_xdp"] = round(k / x, 2) if x > 0 else None
    return out


# --- the lab ---------------------------------------------------------------------------------

class SynLab(wirelab.Lab):
    """Two namespaces of the wire lab's kind (names sww-PID-TAG-{s,a}, so
    wire.lab.leftovers() knows them), joined by one veth pair: no bridge,
    so XDP_TX on ws0 lands straight in wa0's XDP."""

    def build(self) -> None:
        for ns in (self.s, self.a):
            wirelab.sh("ip", "netns", "add", ns)
            self.built.append(ns)
            for key in ("all", "default"):  # IPv4 only: no router solicitations in the counts
                wirelab.sh("ip", "netns", "exec", ns, "sysctl", "-qw", f"net.ipv6.conf.{key}.disable_ipv6=1")
        wirelab.sh("ip", "link", "add", IF_SERVER, "netns", self.s, "address", SERVER_MAC, "type", "veth",
                   "peer", "name", IF_ATTACKER, "netns", self.a, "address", ATTACKER_MAC)
        self._batch(self.s, [f"addr add {SERVER}/24 dev {IF_SERVER}", f"link set {IF_SERVER} up", "link set lo up",
                             f"neigh replace {ATTACKER} lladdr {ATTACKER_MAC} dev {IF_SERVER} nud permanent",
                             f"route add {SPOOF_NET} via {ATTACKER} dev {IF_SERVER}"])
        self._batch(self.a, [f"addr add {ATTACKER}/24 dev {IF_ATTACKER}", f"link set {IF_ATTACKER} up",
                             "link set lo up",
                             f"neigh replace {SERVER} lladdr {SERVER_MAC} dev {IF_ATTACKER} nud permanent"])
        for key, val in (("net.ipv4.conf.all.rp_filter", "0"), (f"net.ipv4.conf.{IF_SERVER}.rp_filter", "0"),
                         ("net.ipv4.tcp_syncookies", "1"), ("net.core.somaxconn", str(BACKLOG)),
                         ("net.ipv4.tcp_max_syn_backlog", str(BACKLOG))):
            wirelab.sh("ip", "netns", "exec", self.s, "sysctl", "-qw", f"{key}={val}")

    def xdp(self, ns: str, ifname: str, prog_pin: Optional[str]) -> None:
        """Detach the interface's program, then attach the pinned one in
        native mode (None: leave it detached)."""
        self.run(ns, "ip", "link", "set", "dev", ifname, "xdp", "off")
        if prog_pin:
            self.run(ns, "ip", "link", "set", "dev", ifname, "xdpdrv", "pinned", prog_pin)


def _read(path: str) -> str:
    with open(path) as f:
        return f.read()


class _Server:
    """The server namespace's counters, read through its listener's /proc."""

    def __init__(self, pid: int):
        self.pid = pid

    def snapshot(self) -> dict:
        net = f"/proc/{self.pid}/net/"
        snmp = snmp_table(_read(net + "snmp"))
        ext = snmp_table(_read(net + "netstat"))["TcpExt"]
        dev = dev_table(_read(net + "dev"))[IF_SERVER]
        return {"in_segs": snmp["Tcp"]["InSegs"], "out_segs": snmp["Tcp"]["OutSegs"],
                "syncookies_sent": ext["SyncookiesSent"], "listen_overflows": ext["ListenOverflows"],
                "listen_drops": ext["ListenDrops"], "rx_packets": dev["rx_packets"],
                "rx_dropped": dev["rx_dropped"]}

    def listening(self, port: int) -> bool:
        want = f":{port:04X} "
        return any(want in ln and ln.split()[3] == "0A" for ln in _read(f"/proc/{self.pid}/net/tcp").splitlines()[1:])


def _delta(after: dict, before: dict) -> dict:
    return {k: after[k] - before[k] for k in after}


def _stat() -> tuple:
    return cpu_ticks(_read("/proc/stat"))


def _ksoftirqd_s() -> float:
    """CPU seconds the ksoftirqd threads have run (schedstat, ns): the
    softirq work a CPU deferred instead of running it in-line."""
    total = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            if _read(f"/proc/{pid}/comm").startswith("ksoftirqd/"):
                total += int(_read(f"/proc/{pid}/schedstat").split()[0])
        except (OSError, ValueError, IndexError):  # gone meanwhile
            continue
    return total / 1e9


# --- the measurement -----------------------------------------------------------------------------

def host_cost(syns: int = 1_000_000, repeats: int = 5, configs: tuple = CONFIGS, timeout: float = 120,
              seed: int = 1, say: Callable = lambda msg: None) -> dict:
    """Flood `syns` spoofed SYNs into the server under each configuration,
    `repeats` rounds interleaved (kernel, xdp, floor, kernel, ...). Each
    flood is one trafgen process (one core), bounded by --num and by
    `timeout` seconds. Returns the samples (with their oracle counters)
    and summarise()'s figures. Raises SeawallError when a flood took
    another path than its configuration's (the oracle)."""
    if os.geteuid() != 0:
        raise SeawallError("the SYN cost bench needs root (namespaces, BPF)")
    for tool in ("trafgen", "nsenter", "ip"):
        if shutil.which(tool) is None:
            raise SeawallError(f"{tool} is not installed (scripts/setup installs it)")
    unknown = set(configs) - set(CONFIGS)
    if unknown or not configs:
        raise SeawallError(f"SYN cost configurations are {', '.join(CONFIGS)}, not "
                           f"{', '.join(sorted(unknown)) or 'none'}")
    if syns < 1 or repeats < 1 or timeout <= 0:
        raise SeawallError(f"SYN cost: {syns} SYNs, {repeats} rounds, {timeout} s: each must be positive")
    tag = uuid.uuid4().hex[:6]
    pin_root = f"/sys/fs/bpf/seawall-bench-{tag}-syn"
    state_dir = tempfile.mkdtemp(prefix="seawall-bench-syn-")
    work = tempfile.mkdtemp(prefix="seawall-bench-syn-")
    conf = os.path.join(work, "syn.trafgen")
    with open(conf, "w") as f:
        f.write(trafgen_conf())
    lab = SynLab(f"syn{tag}")
    counters = None
    loaded: list = []
    samples: list = []
    try:
        say("SYN cost: building the namespaces and loading the programs")
        lab.build()
        floor = loader.load(pin_root, loader.iface_dir(pin_root, "syn-floor"), source="bench/floor.c",
                            func="xdp_floor")
        loaded.append(floor)
        pins = {"floor": os.path.join(pin_root, "syn-floor-prog")}
        bpf.obj_pin(floor.prog_fd, pins["floor"])
        if "xdp" in configs:
            sw = loader.load(pin_root, loader.iface_dir(pin_root, IF_SERVER))
            loaded.append(sw)
            pins["xdp"] = os.path.join(pin_root, "syn-seawall-prog")
            bpf.obj_pin(sw.prog_fd, pins["xdp"])
            table = SynPortTable(pin_root)
            table.put(SynPort(LISTEN_PORT, expires_ns=0, auto=False, wscale=WSCALE, mss4=MSS4, mss6=MSS6))
            table.close()
            counters = Interfaces(Paths(pin_root, state_dir)).counters(IF_SERVER)
        lab.xdp(lab.a, IF_ATTACKER, pins["floor"])  # the SYN-ACKs die in wa0's XDP
        listener = lab.start(lab.s, sys.executable, "-m", "seawall.control.tools.wire.customers", "serve",
                             SERVER, str(LISTEN_PORT))
        server = _Server(listener.pid)
        if not wirelab.wait_for(lambda: server.listening(LISTEN_PORT), 10):
            raise SeawallError(f"the listener on {SERVER}:{LISTEN_PORT} did not start")
        for rnd in range(repeats):
            for cfg in configs:
                say(f"SYN cost: round {rnd + 1}/{repeats}, {cfg}: {syns:,} SYNs")
                lab.xdp(lab.s, IF_SERVER, pins.get(cfg) if cfg != "kernel" else None)
                samples.append(_flood(lab, server, counters, cfg, conf, syns, timeout, seed + rnd))
    except wirelab.LabError as e:
        raise SeawallError(f"SYN cost: {e}") from None
    finally:
        if counters is not None:
            counters.close()
        lab.close()
        for l in loaded:
            l.close()
        shutil.rmtree(pin_root, ignore_errors=True)
        shutil.rmtree(state_dir, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)
    return {"syns": syns, "repeats": repeats, "configs": list(configs),
            "samples": [s.to_json() for s in samples], "summary": summarise(samples),
            "method": {"sender": "one trafgen process (one core), 74-byte SYNs with Linux's options, random "
                                 f"sources in {SPOOF_NET}, to port {LISTEN_PORT}",
                       "syn_acks": "routed back to the attacker's veth, where an XDP_DROP program drops them "
                                   "(kernel's and XDP's alike)",
                       "cpu": "host: delta of /proc/stat over the flood, all CPUs, all fields but idle, iowait, "
                              "steal; flood: CPU time of the sending process tree (RUSAGE_CHILDREN) and of "
                              "the ksoftirqd threads",
                       "veth": "the receiver's XDP and softirq run on the sender's core"}}


def _flood(lab: SynLab, server: _Server, counters, cfg: str, conf: str, syns: int, timeout: float,
           seed: int) -> Sample:
    time.sleep(0.3)  # the attach settles; the previous flood's last timers fire
    srv0 = server.snapshot()
    sw0 = counters.to_json()["reasons"] if counters is not None else None
    cmd = ["timeout", str(int(timeout)), "trafgen", "--dev", IF_ATTACKER, "--conf", conf, "--num", str(syns),
           "--cpus", "1", "--seed", str(seed), "-Q", "-C", "--no-sock-mem"]
    r0, k0 = resource.getrusage(resource.RUSAGE_CHILDREN), _ksoftirqd_s()
    (busy0, steal0), t0 = _stat(), time.monotonic()
    # nsenter execs timeout, which waits for trafgen, which waits for its
    # sender: reaping it adds the whole tree's CPU time to RUSAGE_CHILDREN
    p = lab.run(lab.a, *cmd, check=False, timeout=timeout + 10)
    (busy1, steal1), t1 = _stat(), time.monotonic()
    r1, k1 = resource.getrusage(resource.RUSAGE_CHILDREN), _ksoftirqd_s()
    if p.returncode:
        raise SeawallError(f"trafgen exited {p.returncode}: {p.stderr.strip()[-300:]}")
    srv = _delta(server.snapshot(), srv0)
    oracle = {"server": srv}
    if sw0 is not None and cfg == "xdp":
        sw1 = counters.to_json()["reasons"]
        oracle["seawall"] = {r: sw1[r]["packets"] - sw0[r]["packets"] for r in sw1
                             if sw1[r]["packets"] != sw0[r]["packets"]}
    flood = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime) + (k1 - k0)
    sample = Sample(cfg, syns, t1 - t0, (busy1 - busy0) / USER_HZ, (steal1 - steal0) / USER_HZ, flood, oracle)
    check(sample)
    return sample


def check(s: Sample) -> None:
    """The flood took its configuration's path, by counters that are not
    the CPU's (the server namespace's own, and seawall's): raises
    SeawallError otherwise. `arrived` is ws0's rx count, which counts
    what XDP drops or sends back too."""
    srv = s.oracle["server"]
    arrived = srv["rx_packets"]
    if arrived < 0.5 * s.syns:
        raise SeawallError(f"{s.config}: only {arrived:,} of {s.syns:,} SYNs reached the server's interface")
    if s.config == "kernel":
        # a SYN into TCP gets a cookie while the listen queue is full; the
        # kernel expires queued requests early under pressure, and a SYN
        # that finds a free slot gets a request socket instead (measured:
        # 1.7% of a million, 4,096 of them the first flood's)
        if srv["in_segs"] < 0.5 * s.syns or srv["syncookies_sent"] < 0.9 * srv["in_segs"]:
            raise SeawallError(f"kernel: {srv['syncookies_sent']:,} syncookies sent for {srv['in_segs']:,} "
                               f"segments into TCP ({s.syns:,} SYNs)")
    elif s.config == "xdp":
        tx = s.oracle["seawall"].get("tx_syncookie", 0)
        if tx < 0.99 * arrived or srv["in_segs"] >= 0.01 * s.syns:
            raise SeawallError(f"xdp: {tx:,} cookie SYN-ACKs for {arrived:,} SYNs arrived, and "
                               f"{srv['in_segs']:,} segments into the stack")
    elif srv["in_segs"] >= 0.01 * s.syns:
        raise SeawallError(f"floor: {srv['in_segs']:,} segments reached the stack past XDP_DROP")
