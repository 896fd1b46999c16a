"""The fleet end to end: host A detects, the router carries, host B enforces.

    attacker X (swh-<id>-x)                host A (-a)                 router R (-r)              host B (-b)
    x0 198.18.1.66/24 <-veth-> a1 198.18.1.1/24                                          b1 198.18.3.1/24 <-veth-> x1
                               a0 198.18.0.1/24 <-veth-> r0 198.18.0.2/24
                                                         r1 198.18.2.2/24 <-veth-> b0 198.18.2.1/24
    trafgen floods A (a1);     seawall run -i a1         BIRD 2, AS 64513:     seawall run -i b1, importing
    a paced UDP probe with     (exports through its      FlowSpec from A,      through its gobgpd AS 64514;
    the same source goes to B  gobgpd AS 64512)          re-sent to B          a UDP receiver on 198.18.3.1:9

Oracles: the router's own CLI (`birdc show route table flowtab4`) for the
route; on B, the probe's UDP datagrams arriving at a socket in B's
namespace (their times, to the millisecond) and B's own seawall counters
(drop_block) for the drop. Times on the wire: from A's decision (the `ts`
of its `block` log line) to the last probe datagram B received before the
drop; from the block's expiry on A to the first one B received again.

Every namespace is removed, every daemon killed by its PID, and both
bpffs folders removed in `finally`. Addresses: 198.18.0.0/15 only.
Floods and probes are bounded by packet count and time.
"""

from __future__ import annotations

import calendar
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
import uuid
from contextlib import contextmanager

import pytest

from daemonlab import LAB_CONFIG
from test_fleet_lab import SEAWALL, TIMEOUT_S, _run, wait_for

pytestmark = [pytest.mark.root, pytest.mark.netns]

A_MAC1, X_MAC0, B_MAC1, X_MAC1 = "02:53:46:00:01:01", "02:53:46:00:01:02", "02:53:46:00:03:01", "02:53:46:00:03:02"
A_SVC, B_SVC, A_SVC6 = "198.18.1.1", "198.18.3.1", "2001:2:0:1::1"
API_A, API_B = "127.0.0.1:50081", "127.0.0.1:50082"
ROUNDS = 10
TTL_S = 6  # [ttl] base on A: a block's life, so that its withdrawal is seen within the round
PROBE_PPS = 1000  # the probe to B: one datagram a millisecond, so a time on B is good to about 1 ms

# the router: FlowSpec from A (import), to B (export)
_PEER = """\
protocol bgp host_{h} {{{{
  local {local} as 64513;
  neighbor {addr} as {asn};
  connect retry time 1;
  flow4 {{{{ table flowtab4; {io}; }}}};
  flow6 {{{{ table flowtab6; {io}; }}}};
}}}}
"""
BIRD_CONF = ("router id 198.18.0.2;\nlog \"{log}\" all;\nflow4 table flowtab4;\nflow6 table flowtab6;\n"
             "protocol device {{}}\n"
             + _PEER.format(h="a", local="198.18.0.2", addr="198.18.0.1", asn=64512, io="import all; export none")
             + _PEER.format(h="b", local="198.18.2.2", addr="198.18.2.1", asn=64514, io="import none; export all")
             + "{extra}\n")

# A: the daemon lab's detection (daemonlab.py), a short TTL, and the fleet
DAEMON_A = LAB_CONFIG.replace('base = "2m"', 'base = "{ttl}s"') + """\
[metrics]
enabled = false
[fleet]
api = "{api}"
asn = 64512
router_id = "198.18.0.1"
peers = ["198.18.0.2 64513"]
protect = ["{svc}", "{svc6}"]
max_import = 0
"""

DAEMON_B = """\
[daemon]
interval = "200ms"
[detection]
min_pps = 10000000
[metrics]
port = 9478
[fleet]
api = "{api}"
asn = 64514
router_id = "198.18.2.1"
peers = ["198.18.2.2 64513"]
protect = ["{svc}"]
accept = ["198.18.1.0/24", "2001:2:0:1::/64"]
max_import = {cap}
"""

# A paced UDP sender (X's side of the probe): raw frames from SRC to B, so
# the source is the attacker's whatever interface they leave by.
PROBE = r"""
import socket, struct, sys, time
dev, smac, dmac, src, dst, pps, seconds = sys.argv[1:8]
pps, seconds = int(pps), float(seconds)
def csum(b):
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while s >> 16: s = (s & 0xffff) + (s >> 16)
    return ~s & 0xffff
payload = b"probe" * 8
udp = struct.pack("!HHHH", 40000, 9, 8 + len(payload), 0) + payload
ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0, socket.inet_aton(src), socket.inet_aton(dst))
ip = ip[:10] + struct.pack("!H", csum(ip)) + ip[12:]
frame = bytes.fromhex(dmac.replace(":", "")) + bytes.fromhex(smac.replace(":", "")) + b"\x08\x00" + ip + udp
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((dev, 0))
t0 = time.monotonic()
for i in range(int(pps * seconds)):  # bounded: pps x seconds frames at most
    delay = t0 + i / pps - time.monotonic()
    if delay > 0:
        time.sleep(delay)
    s.send(frame)
"""

# B's receiver: the wall-clock time of every datagram to ADDR:9, for SECONDS
RECEIVER = r"""
import json, signal, socket, sys, time
addr, seconds = sys.argv[1], float(sys.argv[2])
stop = []
signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
s.bind((addr, 9))
s.settimeout(0.1)
print("ready", flush=True)
end = time.monotonic() + seconds
times = []
while not stop and time.monotonic() < end:
    try:
        s.recv(2048)
    except (socket.timeout, InterruptedError):
        continue
    times.append(time.time())
print(json.dumps(times), flush=True)
"""


def _ts(text: str) -> float:
    """A log line's ts ('2026-11-30T12:00:00.123Z') as a Unix time."""
    head, ms = text.rstrip("Z").split(".")
    return calendar.timegm(time.strptime(head, "%Y-%m-%dT%H:%M:%S")) + int(ms) / 1000


class Hosts:
    def __init__(self, tmp_path, tag: str):
        self.tmp = tmp_path
        self.x, self.a, self.r, self.b = (f"swh-{tag}-{n}" for n in "xarb")
        self.pins = {h: f"/sys/fs/bpf/seawall-test-fleet-{tag}-{h}" for h in "ab"}
        self.env = {h: {**os.environ, "SEAWALL_BPFFS": self.pins[h], "SEAWALL_STATE_DIR": str(tmp_path / f"state-{h}")}
                    for h in "ab"}
        self.procs: list = []
        self.daemons: dict = {}  # host -> its seawall run
        self.bird_ctl = tmp_path / "bird.ctl"

    def ns(self, host: str) -> str:
        return {"a": self.a, "b": self.b, "r": self.r, "x": self.x}[host]

    def start(self, host: str, *cmd, log=None, env=None, **kw) -> subprocess.Popen:
        out = open(log, "w") if log else subprocess.PIPE
        p = subprocess.Popen(["nsenter", f"--net=/run/netns/{self.ns(host)}", *cmd], stdout=out,
                             stderr=subprocess.STDOUT if log else subprocess.PIPE, text=True, env=env, **kw)
        self.procs.append(p)
        return p

    def seawall(self, host: str, *args, check=True) -> subprocess.CompletedProcess:
        return _run("nsenter", f"--net=/run/netns/{self.ns(host)}", SEAWALL, *args, check=check, env=self.env[host])

    def birdc(self, *args) -> str:
        return _run("birdc", "-s", str(self.bird_ctl), *args).stdout

    def router_routes(self) -> set:
        out = set()
        for line in self.birdc("show", "route", "table", "flowtab4", "protocol", "host_a").splitlines():
            if line.startswith("flow4 {"):
                out.add(line.split("}", 1)[0] + "}")
        return out

    def wait(self, ok, what: str, timeout: float = TIMEOUT_S) -> float:
        return wait_for(ok, what, timeout)

    def run_daemon(self, host: str, run: int = 1) -> subprocess.Popen:
        """`seawall run` on the host (its run-th start: its own log), once it said started."""
        p = self.start(host, SEAWALL, "run", "--config", str(self.tmp / f"seawall-{host}.toml"), "-i", f"{host}1",
                       log=self.tmp / f"seawall-{host}-{run}.log", env=self.env[host])
        self.daemons[host] = p
        self.wait(lambda: any(e.get("event") == "started" for e in self.daemon_log(host, run)), f"{host}'s daemon", 60)
        return p

    def stop_daemon(self, host: str) -> None:
        p = self.daemons.pop(host)
        p.send_signal(signal.SIGTERM)
        p.wait(20)
        assert p.returncode == 0, self.daemon_log(host)[-3:]

    def daemon_log(self, host: str, run: int = 1) -> list:
        out = []
        for line in (self.tmp / f"seawall-{host}-{run}.log").read_text().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
        return out

    def metric(self, host: str, name: str, **labels) -> float:
        """A sample of the host's daemon's metrics (B's: port 9478), read in its namespace."""
        from prometheus_client.parser import text_string_to_metric_families

        text = _run("nsenter", f"--net=/run/netns/{self.ns(host)}", sys.executable, "-c",
                    "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:9478/metrics').read()"
                    ".decode())").stdout
        for fam in text_string_to_metric_families(text):
            for smp in fam.samples:
                if smp.name == name and smp.labels == labels:
                    return smp.value
        raise AssertionError(f"no {name}{labels} in the metrics")

    def flood(self, src: str, pps: int, seconds: float) -> subprocess.Popen:
        conf = self.tmp / f"flood-{src}.cfg"
        conf.write_text("{\n" f"  eth(da={A_MAC1}, sa={X_MAC0}, type=0x0800),\n"
                        f"  ipv4(saddr={src}, daddr={A_SVC}, proto=17, ttl=64),\n"
                        "  udp(sp=40000, dp=9),\n  fill(0x41, 64)\n}\n")
        return self.start("x", "timeout", str(int(seconds) + 5), "trafgen", "--dev", "x0", "--conf", str(conf),
                          "--cpus", "1", "--rate", f"{pps}pps", "--num", str(int(pps * seconds)), "-Q", "-C",
                          log=self.tmp / "trafgen.log")

    def probe(self, src: str, seconds: float) -> subprocess.Popen:
        return self.start("x", "timeout", str(int(seconds) + 5), sys.executable, "-c", PROBE, "x1", X_MAC1, B_MAC1,
                          src, B_SVC, str(PROBE_PPS), str(seconds))

    def receiver(self, seconds: float) -> subprocess.Popen:
        p = self.start("b", "timeout", str(int(seconds) + 5), sys.executable, "-c", RECEIVER, B_SVC, str(seconds))
        assert p.stdout.readline().strip() == "ready"
        return p


def _veth(ns1, dev1, mac1, ns2, dev2, mac2):
    args = ["ip", "link", "add", dev1, "netns", ns1] + (["address", mac1] if mac1 else [])
    args += ["type", "veth", "peer", "name", dev2, "netns", ns2] + (["address", mac2] if mac2 else [])
    _run(*args)


@contextmanager
def fleet_hosts(tmp_path, cap: int = 1000, bird_extra: str = ""):
    if not (shutil.which("gobgpd") and shutil.which("bird") and shutil.which("trafgen")):
        pytest.fail("gobgpd, bird2 and netsniff-ng are needed: run scripts/setup --test")
    h = Hosts(tmp_path, uuid.uuid4().hex[:6])
    try:
        for n in "xarb":
            _run("ip", "netns", "add", h.ns(n))
            _run("ip", "-n", h.ns(n), "link", "set", "lo", "up")
        _veth(h.x, "x0", X_MAC0, h.a, "a1", A_MAC1)
        _veth(h.x, "x1", X_MAC1, h.b, "b1", B_MAC1)
        _veth(h.a, "a0", None, h.r, "r0", None)
        _veth(h.b, "b0", None, h.r, "r1", None)
        for ns, dev, addr in ((h.x, "x0", "198.18.1.66/24"), (h.a, "a1", f"{A_SVC}/24"), (h.x, "x1", "198.18.3.66/24"),
                              (h.b, "b1", f"{B_SVC}/24"), (h.a, "a0", "198.18.0.1/24"), (h.r, "r0", "198.18.0.2/24"),
                              (h.r, "r1", "198.18.2.2/24"), (h.b, "b0", "198.18.2.1/24")):
            _run("ip", "-n", ns, "addr", "add", addr, "dev", dev)
            _run("ip", "-n", ns, "link", "set", dev, "up")
        _run("ip", "-n", h.a, "addr", "add", f"{A_SVC6}/64", "dev", "a1", "nodad")
        # B takes the attacker's sources on b1 (no reverse-path drop before its socket)
        _run("ip", "-n", h.b, "route", "add", "198.18.1.0/24", "dev", "b1")
        for ns in (h.a, h.b):
            _run("ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv4.conf.all.rp_filter=0",
                 "net.ipv4.conf.default.rp_filter=0")
        cfg = {"a": DAEMON_A.format(api=API_A, svc=A_SVC, svc6=A_SVC6, ttl=TTL_S),
               "b": DAEMON_B.format(api=API_B, svc=B_SVC, cap=cap)}
        for host, api in (("a", API_A), ("b", API_B)):
            (tmp_path / f"seawall-{host}.toml").write_text(cfg[host])
            conf = h.seawall(host, "fleet", "speaker-config", "--config", str(tmp_path / f"seawall-{host}.toml")).stdout
            (tmp_path / f"gobgpd-{host}.toml").write_text(conf)
            h.start(host, "gobgpd", "-f", str(tmp_path / f"gobgpd-{host}.toml"), "-l", "warn", "--api-hosts", api,
                    log=tmp_path / f"gobgpd-{host}.log")
        (tmp_path / "bird.conf").write_text(BIRD_CONF.format(log=tmp_path / "bird.log", extra=bird_extra))
        h.start("r", "bird", "-f", "-c", str(tmp_path / "bird.conf"), "-s", str(h.bird_ctl),
                log=tmp_path / "bird.out")
        h.wait(lambda: h.bird_ctl.exists(), "BIRD's control socket")
        h.wait(lambda: h.birdc("show", "protocols").count("Established") == 2, "both BGP sessions", 60)
        for host in "ab":
            h.run_daemon(host)
        yield h
    finally:
        for p in h.procs:  # nsenter execs the command: p.pid is the process's own
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in h.procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=5)
        for n in "xarb":
            subprocess.run(["ip", "netns", "del", h.ns(n)], capture_output=True, timeout=TIMEOUT_S)
        for pin in h.pins.values():
            shutil.rmtree(pin, ignore_errors=True)


def _gap(times: list, after: float) -> tuple:
    """(last arrival before the longest silence after `after`, first arrival after it)."""
    ts = [t for t in times if t >= after]
    best = max(range(len(ts) - 1), key=lambda i: ts[i + 1] - ts[i])
    return ts[best], ts[best + 1]


def test_an_attack_on_a_is_cut_on_b_within_2s_and_released_within_2s_of_expiry(tmp_path):
    with fleet_hosts(tmp_path) as h:
        time.sleep(4)  # A's warm-up on silence
        up, down = [], []
        for i in range(ROUNDS):
            src = f"198.18.1.{100 + i}"
            route = f"flow4 {{ dst {A_SVC}/32; src {src}/32; }}"
            rx = h.receiver(TTL_S + 20)
            probe = h.probe(src, TTL_S + 15)
            time.sleep(0.5)
            flood = h.flood(src, pps=40000, seconds=3)
            h.wait(lambda: route in h.router_routes(), f"round {i}: {src} blocked by A, on the router", 10)
            flood.terminate()  # timeout passes it on to trafgen: the block is not renewed (no drop late in its life)
            flood.wait(15)
            blocked = [e for e in h.daemon_log("a") if e.get("event") == "block" and e.get("cidr") == f"{src}/32"]
            assert len(blocked) == 1, blocked
            decided = _ts(blocked[0]["ts"])
            expires = decided + blocked[0]["ttl"]
            if i == 0:  # while it holds: the router shows exactly A's block list; B names its origin
                assert h.router_routes() == {f"flow4 {{ dst {A_SVC}/32; src {b['cidr']}; }}"
                                             for b in json.loads(h.seawall("a", "block", "list", "--json").stdout)}
                got = json.loads(h.seawall("b", "block", "list", "--source", "bgp", "--json").stdout)
                assert [(b["cidr"], b["source"]) for b in got] == [(f"{src}/32", "bgp:198.18.2.2")], got
                assert h.metric("b", "seawall_fleet_imported_entries", origin="bgp:198.18.2.2", kind="block") == 1
                assert h.metric("b", "seawall_fleet_routes_in", verdict="accepted") == 1
            h.wait(lambda: route not in h.router_routes(), f"round {i}: {src} withdrawn on the router", TTL_S + 10)
            time.sleep(2.5)
            for p in (probe, rx):
                p.terminate()
            probe.wait(15)
            out, _ = rx.communicate(timeout=15)
            times = json.loads(out.strip().splitlines()[-1])
            assert len(times) > PROBE_PPS, f"round {i}: B received only {len(times)} probe datagrams"
            last, back = _gap(times, decided - 1)
            assert back - last > 1.0, f"round {i}: B never stopped receiving the probe ({back - last:.3f}s gap)"
            up.append(last - decided)
            down.append(back - expires)
        print(f"\nfleet A -> router -> B, {ROUNDS} rounds: from A's decision to B dropping: median "
              f"{statistics.median(up) * 1000:.0f} ms (min {min(up) * 1000:.0f}, max {max(up) * 1000:.0f}); "
              f"from the expiry on A to B passing again: median {statistics.median(down) * 1000:.0f} ms "
              f"(min {min(down) * 1000:.0f}, max {max(down) * 1000:.0f})")
        assert statistics.median(up) <= 2.0, up
        assert max(down) <= 2.0, down
        stats = json.loads(h.seawall("b", "stats", "-i", "b1", "--json").stdout)["interfaces"]["b1"]["reasons"]
        assert stats["drop_block"]["packets"] >= ROUNDS * PROBE_PPS, stats  # B's own counters: B dropped them
        assert json.loads(h.seawall("b", "block", "list", "--source", "bgp", "--json").stdout) == []


ACTION = "{ bgp_ext_community.add((generic, 0x80060000, 0x0)); }"  # discard (traffic-rate 0)
CAP = 100  # B's [fleet] max_import; its gobgpd takes 2 x CAP routes per family from a peer


def _routes(blocks: int) -> str:
    """The router's own routes for B: one for a destination not B's, one with
    a component B cannot enforce, and `blocks` blocks of sources for B."""
    lines = ["protocol static bad_routes {", "  flow4 { table flowtab4; };",
             f"  route flow4 {{ dst 198.18.9.9/32; src 198.18.50.0/24; }} {ACTION};",
             f"  route flow4 {{ dst {B_SVC}/32; proto 17; dport 53; dscp 46; }} {ACTION};"]
    lines += [f"  route flow4 {{ dst {B_SVC}/32; src 198.19.{i // 256}.{i % 256}/32; }} {ACTION};"
              for i in range(blocks)]
    return "\n".join(lines + ["}"])


def _imported(h) -> list:
    return json.loads(h.seawall("b", "block", "list", "--source", "bgp", "--json").stdout)


def test_bad_routes_change_nothing_on_b_and_are_reported(tmp_path):
    over = 50
    with fleet_hosts(tmp_path, cap=CAP, bird_extra=_routes(CAP + over)) as h:
        h.wait(lambda: len(_imported(h)) == CAP, f"B taking {CAP} routes", 60)
        time.sleep(2)  # more looks: still the cap, nothing else
        got = _imported(h)
        assert len(got) == CAP and all(b["cidr"].startswith("198.19.") and b["source"] == "bgp:198.18.2.2"
                                       and b["expires_at"] is None for b in got), got[:3]
        assert json.loads(h.seawall("b", "sig", "list", "--source", "bgp", "--json").stdout) == []
        refused = [e for e in h.daemon_log("b") if e.get("event") == "fleet_refused"]
        reasons = sorted(e["reason"] for e in refused)
        assert reasons == ["component dscp cannot be enforced",
                           "destination 198.18.9.9/32 is not one of this host's addresses or prefixes",
                           f"over the cap of {CAP} imported rules"], refused  # each said once
        assert [e["routes"] for e in refused if e["reason"].startswith("over")] == [over]
        assert all(e["level"] == "warning" for e in refused)
        assert h.metric("b", "seawall_fleet_routes_in", verdict="accepted") == CAP
        assert h.metric("b", "seawall_fleet_routes_in", verdict="refused") == over + 2
        assert h.metric("b", "seawall_fleet_imported_entries", origin="bgp:198.18.2.2", kind="block") == CAP
        assert h.metric("b", "seawall_fleet_session_up", peer="198.18.2.2") == 1


def test_ten_thousand_routes_are_cut_off_and_change_nothing_on_b(tmp_path):
    with fleet_hosts(tmp_path, cap=CAP, bird_extra=_routes(0)) as h:
        def said() -> list:
            return [e for e in h.daemon_log("b") if e.get("event") == "fleet_session"]

        time.sleep(1)
        conf = tmp_path / "bird.conf"  # the router starts sending 10,000 more while B runs
        conf.write_text(BIRD_CONF.format(log=tmp_path / "bird.log", extra=_routes(10_000)))
        assert "Reconfigured" in h.birdc("configure", f'"{conf}"')

        h.wait(lambda: any(e["state"] != "established" for e in said()), "B saying its session was cut", 60)
        for _ in range(10):  # over 5 s: nothing imported, ever
            assert _imported(h) == []
            assert json.loads(h.seawall("b", "sig", "list", "--source", "bgp", "--json").stdout) == []
            time.sleep(0.5)
        assert "fleet_import" not in {e.get("event") for e in h.daemon_log("b")}
        assert [e["level"] for e in said() if e["state"] != "established"][0] == "warning"
        assert h.metric("b", "seawall_fleet_session_up", peer="198.18.2.2") == 0
        log = (tmp_path / "gobgpd-b.log").read_text()
        print("\ngobgpd B:", log[-600:])


def test_restarts_neither_drop_nor_duplicate_a_route(tmp_path):
    with fleet_hosts(tmp_path) as h:
        src = "198.18.1.200/32"
        route = f"flow4 {{ dst {A_SVC}/32; src {src}; }}"
        h.seawall("a", "block", "add", src, "--reason", "fleet restart")  # a manual decision: exported too
        h.wait(lambda: route in h.router_routes(), "A's manual block on the router", 10)
        h.wait(lambda: [b["cidr"] for b in _imported(h)] == [src], "B importing it", 10)

        def router_view() -> str:  # the route with BIRD's time of its last change
            text = h.birdc("show", "route", "table", "flowtab4", "protocol", "host_a")
            return next(line for line in text.splitlines() if line.startswith(route))

        def journal_adds(host: str) -> int:
            text = (tmp_path / f"state-{host}" / "journal.jsonl").read_text()
            return sum(1 for line in text.splitlines() if f'"cidr":"{src}"' in line and '"op":"block"' in line)

        before, b_before = router_view(), _imported(h)
        assert "[host_a " in before, before  # BIRD's "[protocol time-of-last-change]"
        for host in "ab":
            h.stop_daemon(host)
            time.sleep(1)
            h.run_daemon(host, run=2)
            time.sleep(2)  # several looks of the restarted daemon
            assert router_view() == before  # not withdrawn, not announced again
            assert _imported(h) == b_before  # B's entry neither dropped nor added again
        assert journal_adds("a") == 1 and journal_adds("b") == 1
        gob = json.loads(_run("nsenter", f"--net=/run/netns/{h.a}", "gobgp", "-u", "127.0.0.1", "-p", "50081",
                              "global", "rib", "-a", "ipv4-flowspec", "-j").stdout)
        assert len(gob) == 1, gob  # one route in A's speaker, not two
        h.seawall("a", "block", "del", src)
        h.wait(lambda: route not in h.router_routes(), "the route withdrawn after block del", 10)
        h.wait(lambda: _imported(h) == [], "B dropping its import", 10)


def test_a_signature_on_a_is_enforced_in_b_until_it_expires_and_an_ipv6_block_reaches_b(tmp_path):
    with fleet_hosts(tmp_path) as h:
        src = "198.18.1.210"
        # the probe's frames: UDP from port 40000, 82 bytes with the Ethernet header
        h.seawall("a", "sig", "add", "--proto", "udp", "--sport", "40000", "--len", "60-100", "--ttl", "8s")
        h.wait(lambda: any(r["rule"] == "udp sport 40000 len 60-100" and r["source"] == "bgp:198.18.2.2"
                           for r in json.loads(h.seawall("b", "sig", "list", "--source", "bgp", "--json").stdout)),
               "B's imported rule", 10)
        rx = h.receiver(30)
        probe = h.probe(src, 25)
        h.wait(lambda: json.loads(h.seawall("b", "sig", "list", "--source", "bgp", "--json").stdout) == [],
               "the rule gone from B once it expired on A", 15)
        time.sleep(2)
        for p in (probe, rx):
            p.terminate()
        probe.wait(15)
        times = json.loads(rx.communicate(timeout=15)[0].strip().splitlines()[-1])
        stats = json.loads(h.seawall("b", "stats", "-i", "b1", "--json").stdout)["interfaces"]["b1"]["reasons"]
        assert stats["drop_sig"]["packets"] >= PROBE_PPS, stats  # B's signature table dropped the probe
        assert len(times) >= PROBE_PPS, len(times)  # and let it through again after the expiry

        # IPv6: a block on A for its IPv6 address, in B's blocklist from the router
        h.seawall("a", "block", "add", "2001:2:0:66::/64")
        h.wait(lambda: [(b["cidr"], b["source"]) for b in _imported(h)] == [("2001:2:0:66::/64", "bgp:198.18.2.2")],
               "B importing the IPv6 block", 10)
        assert f"flow6 {{ dst {A_SVC6}/128; src 2001:2:0:66::/64; }}" in h.birdc("show", "route", "table", "flowtab6")
        h.seawall("a", "block", "del", "2001:2:0:66::/64")
        h.wait(lambda: _imported(h) == [], "B dropping the IPv6 block", 10)
