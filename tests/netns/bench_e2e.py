"""The end-to-end bench: customers served during a real flood on veth,
with no protection, with nftables and with seawall, side by side in one run.

    python tests/netns/bench_e2e.py [--seconds S] [--rate R] [--entries N] [--json]

`scripts/bench` runs it after `seawall bench` (BENCHMARKS.md holds the
figures); tests/netns/test_bench_e2e.py runs it short. It lives with the
tests because it needs their lab (daemonlab.py, vethlab.py): three
namespaces of its own (swt-bench-*), removed afterwards, traffic only in
198.18.0.0/15. The flood is trafgen from the attacker's namespace, bounded
in count and time. Phases, each `seconds` long:

1. no flood: the customers alone;
2. flood, no protection: it reaches the server's stack;
3. nftables: the same blocked addresses in a set, dropped at netdev ingress;
4. seawall: `seawall attach` on both server interfaces, the addresses
   blocked beforehand (the attacker among them), no daemon;
5. seawall + daemon: the same, attached by `seawall run`, which watches
   throughout.

The figures: the customers' success rate and latency (their own results),
the flood's packets and rate at the server's interface, the host's input
backlog drops (/proc/net/softnet_stat).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from typing import Callable, Optional

from daemonlab import SEAWALL, VETHLAB, DaemonLab, sh
from seawall.control.lists.store import ListStore
from seawall.control.state import Paths
from seawall.control.tools.bench.control import proc_kib
from seawall.control.tools.bench.datapath import Lists
from seawall.control.tools.bench.report import Params
from vethlab import ATTACKER, ATTACKER_MAC, CLIENTS, HTTP_PORT, SERVER, SERVER_MAC_A

FLOOD_CPUS = 2  # trafgen processes, one per CPU: the flood's receive work lands on every core


def _softnet_drops() -> int:
    """Packets dropped because a CPU's input backlog was full, host-wide
    (/proc/net/softnet_stat, second column). Without XDP, veth hands every
    frame to the receiving CPU's backlog, which the flood then shares with
    the customers' packets on that CPU."""
    total = 0
    try:
        with open("/proc/net/softnet_stat") as f:
            for line in f:
                total += int(line.split()[1], 16)
    except (OSError, IndexError, ValueError):
        return 0
    return total


def _trafgen_conf(path: str) -> None:
    """One 64-byte UDP frame from the attacker to the server's port 9."""
    with open(path, "w") as f:
        f.write("{\n"
                f"  eth(da={SERVER_MAC_A}, sa={ATTACKER_MAC}, type=0x0800),\n"
                f"  ipv4(saddr={ATTACKER}, daddr=198.18.1.1, proto=17, ttl=64),\n"
                "  udp(sp=40000, dp=9),\n"
                "  fill(0x41, 18)\n"
                "}\n")


def run(seconds: float = 8.0, rate: float = 100.0, entries: int = 100_000, seed: int = 1,
        say: Callable = lambda msg: None) -> dict:
    """The five phases, each `seconds` long with customers making `rate`
    requests a second; `entries` addresses blocked (the attacker among
    them) for seawall and nftables alike. Returns the e2e report."""
    for tool in ("trafgen", "nft", "nsenter"):
        if shutil.which(tool) is None:
            raise RuntimeError(f"{tool} is not installed (scripts/setup installs it)")
    tag = uuid.uuid4().hex[:6]
    pin_root = f"/sys/fs/bpf/seawall-bench-{tag}-lab"
    state_dir = tempfile.mkdtemp(prefix="seawall-bench-lab-")
    env = dict(os.environ, SEAWALL_BPFFS=pin_root, SEAWALL_STATE_DIR=state_dir)
    lab = DaemonLab(f"bench-{tag}", env)
    lists = Lists.make(Params.make(block_entries=entries, seed=seed))
    work = tempfile.mkdtemp(prefix="seawall-bench-e2e-")
    conf = os.path.join(work, "flood.cfg")
    tg_log = os.path.join(work, "trafgen.log")
    _trafgen_conf(conf)
    attackers = [ATTACKER] + [socket.inet_ntoa(int(a).to_bytes(4, "big")) for a in lists.block4[1:].tolist()]
    phases = []
    try:
        say("end to end: building the namespaces")
        lab.build()
        lab.start(lab.s, sys.executable, "-m", "http.server", str(HTTP_PORT), "--bind", SERVER,
                  "--directory", work, quiet=True)
        time.sleep(0.7)
        secs = seconds

        cpus = sorted(os.sched_getaffinity(0))
        halves = [CLIENTS[i::len(cpus)] for i in range(len(cpus))]

        def phase(name: str, what: str, flood: bool, during: Optional[Callable] = None,
                  by_seawall: bool = False) -> dict:
            say(f"end to end: {name}")
            drops0 = _softnet_drops()
            fl = None
            if flood:
                # as fast as the senders go; bounded in time, and each
                # trafgen in count. trafgen gives up on the first EAGAIN
                # from its TX ring, which a veth returns when the receiving
                # side's ring is full (its XDP behind on a loaded machine:
                # CI's first failure of this test): start it again.
                tg = (f"trafgen --dev swa1 --conf {shlex.quote(conf)} --cpus {FLOOD_CPUS} "
                      f"--num {int(3_000_000 * secs)} -Q -C >/dev/null 2>>{shlex.quote(tg_log)}")
                open(tg_log, "w").close()
                fl = lab.start(lab.a, "timeout", str(int(secs) + 10), "sh", "-c",
                               f"while :; do {tg}; sleep 0.01; done", group=True)
                time.sleep(0.5)  # at full rate before the customers start
            arrived0, t0 = lab.arrived(by_seawall), time.monotonic()
            # one customer process per CPU, so that some customers always
            # share a core with the flood, as RSS spreads them on a NIC
            clients = [lab.start(lab.c, "taskset", "-c", str(cpu), sys.executable, VETHLAB,
                                 ",".join(half), SERVER, str(HTTP_PORT), str(secs), str(rate / len(cpus)),
                                 "--latencies")
                       for cpu, half in zip(cpus, halves)]
            extra = during() if during else {}
            ok = fail = 0
            lat: list = []
            why: list = []
            for c in clients:
                out, err = c.communicate(timeout=secs + 60)
                try:
                    r = json.loads(out.strip().splitlines()[-1])
                except (ValueError, IndexError):
                    raise RuntimeError(f"the client load died: {err.strip()[-300:]}") from None
                ok, fail, lat = ok + r["ok"], fail + r["fail"], lat + r["lat_ms"]
                why += [f"{src}: {msg}" for _, src, msg in r["failures"]]
            arrived = lab.arrived(by_seawall) - arrived0
            elapsed = time.monotonic() - t0
            if fl is not None:
                early = fl.poll()  # the loop ends only at its timeout, well after the phase
                lab.stop(fl, signal.SIGINT)
                with open(tg_log) as f:
                    gave_up = f.read().count("TX_RING failed")
                if early is not None:
                    raise RuntimeError(f"{name}: the flood ended early ({early})")
            lat.sort()

            def pct(q: float):
                return round(lat[min(len(lat) - 1, int(len(lat) * q))], 2) if lat else None

            total = ok + fail
            row = {"name": name, "what": what, "requests": total, "ok": ok,
                   "success_rate": round(ok / total, 4) if total else None,
                   "p50_ms": pct(0.5), "p99_ms": pct(0.99), "max_ms": lat[-1] if lat else None,
                   "flood_packets": arrived if flood else 0,
                   "flood_pps": round(arrived / elapsed) if flood else 0,
                   "backlog_drops": _softnet_drops() - drops0, "failures": why[:4],
                   "trafgen_restarts": gave_up if flood else 0}
            row.update(extra)
            phases.append(row)
            return row

        phase("no flood", "customers only, nothing in the way", False)
        phase("flood, no protection", "the flood reaches the server's stack", True)

        # nftables: the same addresses in a set, dropped at netdev ingress
        nft = os.path.join(work, "bench.nft")
        with open(nft, "w") as f:
            f.write("table netdev swbench {\n  set attackers {\n    type ipv4_addr\n    elements = { "
                    + ", ".join(attackers) + " }\n  }\n"
                    "  chain c {\n    type filter hook ingress device swa0 priority 0;\n"
                    "    ip saddr @attackers counter drop\n  }\n}\n")
        sh(*lab.nsenter(lab.s), "nft", "-f", nft, timeout=300)
        row = phase("flood, nftables", f"nft netdev ingress on swa0: `ip saddr @set drop`, the same "
                                       f"{len(attackers):,} addresses", True)
        sh(*lab.nsenter(lab.s), "nft", "delete", "table", "netdev", "swbench")

        # seawall: the attacker and the bench's whole list blocked beforehand,
        # the daemon attaching both interfaces itself and running throughout
        store = ListStore(Paths(pin_root, state_dir))  # creates the lists
        store.block_add(lists.block_prefixes(), ttl=3600, reason="bench", source="manual")
        store.close()

        # seawall alone: attached by the CLI, no daemon
        lab.seawall("attach", "sws0")
        lab.seawall("attach", "swa0")
        row = phase("flood, seawall", f"`seawall attach` on both server interfaces, {len(attackers):,} addresses "
                                      f"blocked beforehand (the attacker among them), no daemon", True, by_seawall=True)
        stats = json.loads(lab.seawall("stats", "--json").stdout)["interfaces"]
        row["dropped_by_seawall"] = stats["swa0"]["reasons"]["drop_block"]["packets"]
        lab.seawall("detach", "sws0")
        lab.seawall("detach", "swa0")

        # and with the daemon, which attaches both interfaces itself
        daemon_log = open(os.path.join(work, "daemon.log"), "w+")
        daemon = subprocess.Popen([*lab.nsenter(lab.s), SEAWALL, "run", "-i", "sws0", "-i", "swa0",
                                   "--interval", "1s"], stdout=daemon_log, stderr=daemon_log, env=env)
        lab.procs.append(daemon)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            # exit 1 while an interface is half-way (its folder made, its program not
            # attached yet): the JSON is printed all the same
            st = json.loads(lab.seawall("status", "--json", check=False).stdout)
            if sum(i["state"] == "attached" for i in st["interfaces"]) == 2:
                break
            if daemon.poll() is not None:
                daemon_log.seek(0)
                raise RuntimeError(f"seawall run exited: {daemon_log.read()[-300:]}")
            time.sleep(0.2)
        time.sleep(2.5)  # a few cycles

        def daemon_rss() -> dict:
            time.sleep(secs * 0.8)
            return {"daemon_rss_mib": round(proc_kib(daemon.pid, "VmRSS") / 1024, 1)}

        row = phase("flood, seawall + daemon", "the same, attached by `seawall run`, which watches "
                                               "throughout (1 s cycles)", True, daemon_rss, by_seawall=True)
        stats = json.loads(lab.seawall("stats", "--json").stdout)["interfaces"]
        row["dropped_by_seawall"] = stats["swa0"]["reasons"]["drop_block"]["packets"]
        lab.stop(daemon)
        daemon_log.seek(0)
        events = [json.loads(line) for line in daemon_log if line.startswith("{")]
        row["daemon_decisions"] = sum(1 for e in events if e.get("event") in ("block", "signature"))
        daemon_log.close()
        memory = {
            "what": "RSS of the real `seawall run` process in the lab after a few cycles (it attached both "
                    "interfaces itself, so bcc and LLVM are loaded; about 50 tracked sources)",
            "rss_mib": row.pop("daemon_rss_mib")}
        lab.seawall("detach", "sws0")
        lab.seawall("detach", "swa0")

    finally:
        lab.teardown()
        shutil.rmtree(pin_root, ignore_errors=True)
        shutil.rmtree(state_dir, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)
    return {
        "phases": phases,
        "seconds_per_phase": seconds,
        "request_rate": rate,
        "blocked_entries": len(attackers),
        "seawall_run_memory": memory,
        "note": "veth: the receiver's XDP and nftables run on the sender's core, so flood_pps is what the "
                "sender and the filter sustain together; the clients, the HTTP server, trafgen and the "
                "daemon share the machine's two cores",
    }


def render(e2e: dict) -> str:
    lines = [f"end to end on veth ({e2e['seconds_per_phase']:g} s per phase, {e2e['request_rate']:g} requests/s, "
             f"{e2e['blocked_entries']:,} addresses blocked):",
             f"  {'phase':24s} {'success':>8s} {'p50 ms':>8s} {'p99 ms':>8s} {'max ms':>8s} "
             f"{'flood pps':>10s} {'backlog drops':>14s}"]
    for ph in e2e["phases"]:
        sr = f"{100 * ph['success_rate']:.1f}%" if ph["success_rate"] is not None else "-"
        lines.append(f"  {ph['name']:24s} {sr:>8s} {ph['p50_ms'] or '-':>8} {ph['p99_ms'] or '-':>8} "
                     f"{ph['max_ms'] or '-':>8} {ph['flood_pps']:>10,} {ph['backlog_drops']:>14,}")
    lines.append(f"  memory (seawall run): {e2e['seawall_run_memory']['rss_mib']} MiB RSS")
    lines.append("  " + e2e["note"])
    return "\n".join(lines)


def main(argv: Optional[list] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=8.0, help="length of each phase [8]")
    ap.add_argument("--rate", type=float, default=100.0, help="customers' requests per second [100]")
    ap.add_argument("--entries", type=int, default=100_000, help="addresses blocked [100000]")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    a = ap.parse_args(argv)
    if not (2 <= a.seconds <= 120 and 1 <= a.rate <= 1000 and 1 <= a.entries <= 1_000_000):
        ap.error("--seconds 2..120, --rate 1..1000, --entries 1..1000000")
    if os.geteuid() != 0:
        print("bench_e2e: run as root (namespaces, XDP)", file=sys.stderr)
        return 1
    e2e = run(a.seconds, a.rate, a.entries, a.seed, say=lambda m: print(f"bench: {m}", file=sys.stderr))
    print(json.dumps(e2e, indent=2, sort_keys=True) if a.json else render(e2e))
    return 0


if __name__ == "__main__":
    sys.exit(main())
