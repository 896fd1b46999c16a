"""The host's sockets read for real (control/datapath/sockets.py) and
`seawall serving`, in a pair of namespaces this test creates and removes:

    clients  sk0 198.19.0.1-199/15, 2001:2::10-12  <-veth->  sk1 198.18.0.1/15, 2001:2::1  server

The server namespace holds a known set of sockets (listeners on specific,
wildcard, dual-stack and IPv6-only addresses, bound and connected UDP
sockets, a socket bound but not listening, a loopback connection, one
outgoing connection and one in TIME_WAIT) and the customers' connections;
what read_serving finds there is checked exactly, and against pyroute2's
own sock_diag decoder.

This file is also the processes it runs (python test_sockets.py MODE ...):
`server` and `client` hold the sockets, `read` reads them, and `bench N...`
times one read with N established connections:

    sudo .venv/bin/python tests/netns/test_sockets.py bench 1000 10000 50000
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import resource
import socket
import subprocess
import sys
import threading
import time
import uuid

SERVER4, SERVER6 = "198.18.0.1", "2001:2::1"
CLIENT4 = [f"198.19.0.{i}" for i in range(1, 200)]
CLIENT6 = ["2001:2::10", "2001:2::11", "2001:2::12"]
OUT_PORT = 9000  # the clients' listener that the server connects to
TW_PEER = "198.19.0.30"  # the server closes its connection first: TIME_WAIT
SEAWALL = os.path.join(os.path.dirname(sys.executable), "seawall")
HERE = os.path.abspath(__file__)


def _sh(*cmd) -> None:
    p = subprocess.run(list(cmd), capture_output=True, text=True, timeout=30)
    if p.returncode:
        raise RuntimeError(f"{' '.join(cmd)}: {p.stderr.strip()}")


@contextlib.contextmanager
def namespaces(n_clients4: int = 40):
    """(client, server) namespaces joined by a veth pair; always removed."""
    tag = uuid.uuid4().hex[:8]
    c, s = f"swsk-c-{tag}", f"swsk-s-{tag}"
    try:
        _sh("ip", "netns", "add", c)
        _sh("ip", "netns", "add", s)
        _sh("ip", "link", "add", "sk0", "netns", c, "type", "veth", "peer", "name", "sk1", "netns", s)
        _sh("ip", "-n", s, "addr", "add", f"{SERVER4}/15", "dev", "sk1")
        _sh("ip", "-n", s, "addr", "add", f"{SERVER6}/64", "dev", "sk1", "nodad")
        for a in CLIENT4[:n_clients4]:
            _sh("ip", "-n", c, "addr", "add", f"{a}/15", "dev", "sk0")
        for a in CLIENT6:
            _sh("ip", "-n", c, "addr", "add", f"{a}/64", "dev", "sk0", "nodad")
        for ns, i in ((c, "sk0"), (s, "sk1"), (c, "lo"), (s, "lo")):
            _sh("ip", "-n", ns, "link", "set", i, "up")
        yield c, s
    finally:
        for ns in (c, s):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)


def in_ns(ns: str, *argv) -> list:
    return ["nsenter", f"--net=/run/netns/{ns}", *argv]


class Proc:
    """A child holding sockets: JSON lines out, stdin closed to end it."""

    def __init__(self, ns: str, *args):
        self.p = subprocess.Popen(in_ns(ns, sys.executable, HERE, *args), stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def line(self, timeout: float = 60.0) -> dict:
        box: list = []
        t = threading.Thread(target=lambda: box.append(self.p.stdout.readline()), daemon=True)
        t.start()
        t.join(timeout)
        if not box or not box[0]:
            self.close()
            raise AssertionError(f"child gave no line: {self.p.stderr.read()[-2000:]}")
        return json.loads(box[0])

    def send(self, text: str) -> None:
        self.p.stdin.write(text + "\n")
        self.p.stdin.flush()

    def close(self) -> None:
        if self.p.poll() is None:
            with contextlib.suppress(OSError):
                self.p.stdin.close()
            try:
                self.p.wait(10)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait(10)


# --- the children -------------------------------------------------------------------

def _more_files() -> None:
    """As many files as the hard limit allows (20,000 here; raising it
    needs CAP_SYS_RESOURCE, which these machines do not give)."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _tcp(family, addr, port, listen=True, v6only=None):
    s = socket.socket(family, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if v6only is not None:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, int(v6only))
    s.bind((addr, port))
    if listen:
        s.listen(200_000)
    return s


def _udp(family, addr, port, v6only=None):
    s = socket.socket(family, socket.SOCK_DGRAM)
    if v6only is not None:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, int(v6only))
    s.bind((addr, port))
    return s


def server(expected: int) -> None:
    """The server's sockets; prints their ports, then {"accepted": n} once
    `expected` customers are accepted; holds everything until stdin ends.
    expected 0: accept nobody (the bench: its customers wait in the
    listeners' queue, ESTABLISHED all the same, and need no file each)."""
    _more_files()
    with open("/proc/sys/net/core/somaxconn", "w") as f:  # this namespace's own
        f.write("200000")
    A4, A6 = socket.AF_INET, socket.AF_INET6
    keep = [_tcp(A4, SERVER4, 8080), _tcp(A6, "::", 8443, v6only=False), _tcp(A6, "::", 9443, v6only=True),
            _tcp(A6, SERVER6, 8081), _tcp(A4, SERVER4, 7000, listen=False), socket.socket(A4, socket.SOCK_STREAM),
            _udp(A4, "0.0.0.0", 5300), _udp(A6, SERVER6, 5301), _udp(A6, "::", 5302, v6only=True),
            _udp(A4, "0.0.0.0", 123)]
    lo = _tcp(A4, "127.0.0.1", 6000)
    lc = socket.create_connection(("127.0.0.1", 6000))
    keep += [lo, lc, lo.accept()[0]]
    eph = _udp(A4, "0.0.0.0", 0)
    conn = socket.socket(A4, socket.SOCK_DGRAM)
    conn.connect((CLIENT4[0], 53))
    out = socket.create_connection((CLIENT4[0], OUT_PORT))
    keep += [eph, conn, out]
    listeners = keep[:4]
    accepted: list = []

    def accept(ls):
        while True:
            try:
                s, peer = ls.accept()
            except OSError:
                return
            if peer[0] in (TW_PEER, f"::ffff:{TW_PEER}"):
                s.close()  # the server closes first: TIME_WAIT here once the client closes
            else:
                accepted.append(s)
            with lock:
                count[0] += 1
                if count[0] == expected:
                    print(json.dumps({"accepted": count[0]}), flush=True)

    lock, count = threading.Lock(), [0]
    for ls in listeners if expected else ():
        threading.Thread(target=accept, args=(ls,), daemon=True).start()
    print(json.dumps({"ready": True, "loop_client_port": lc.getsockname()[1], "udp_ephemeral": eph.getsockname()[1],
                      "udp_connected": conn.getsockname()[1], "out_port": out.getsockname()[1]}), flush=True)
    sys.stdin.read()


def client(plan_json: str, listen: str = "listen") -> None:
    """Listens on OUT_PORT (unless told "nolisten"), then on "go" makes the
    connections of the plan ([[src, dst, port, count], ...]; one marked
    [..., "closed"] waits for the server's close and closes too); holds them
    until stdin ends."""
    _more_files()
    plan = json.loads(plan_json)
    if listen == "listen":
        ls = _tcp(socket.AF_INET, CLIENT4[0], OUT_PORT)
        threading.Thread(target=lambda: [ls.accept() for _ in iter(int, 1)], daemon=True).start()
    print(json.dumps({"ready": True}), flush=True)
    sys.stdin.readline()
    held = []
    for src, dst, port, n, *closed in plan:
        fam = socket.AF_INET6 if ":" in dst else socket.AF_INET
        for _ in range(n):
            s = socket.socket(fam, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((src, 0))
            s.settimeout(10)
            s.connect((dst, port))
            if closed:
                s.recv(1)  # EOF: the server closed first
                s.close()
            else:
                held.append(s)
    print(json.dumps({"connected": len(held)}), flush=True)
    sys.stdin.read()


def read() -> None:
    """Read this namespace: our table, pyroute2's view of the same sockets,
    read_serving's JSON and a SocketWatch's work over a second."""
    from pyroute2.netlink.diag import DiagSocket

    from seawall.control.datapath import sockets

    t = sockets.read_table()
    table = {k: getattr(t, k).tolist() for k in ("proto", "family", "state", "lport", "rport", "laddr", "raddr",
                                                 "v6only")}
    theirs = []
    with DiagSocket() as ds:
        for proto, states in ((6, sockets._TCP_STATES), (17, sockets._UDP_STATES)):
            for family in (socket.AF_INET, socket.AF_INET6):
                for m in ds.get_sock_stats(family=family, protocol=proto, states=states):
                    theirs.append([proto, m["idiag_state"], m["idiag_src"], m["idiag_sport"], m["idiag_dst"],
                                   m["idiag_dport"]])
    with sockets.SocketWatch(interval=0.2) as w:
        time.sleep(1.1)
        watched = {"reads": w.reads, "error": w.error, "established": w.latest().established}
    print(json.dumps({"table": table, "pyroute2": theirs, "ephemeral": sockets.ephemeral_range(),
                      "serving": sockets.read_serving().to_json(), "watch": watched}))


def time_reads(want: int = 0) -> None:
    """Five reads of this namespace (once `want` connections are up)."""
    from seawall.control.datapath import sockets

    deadline = time.monotonic() + 60
    while want and sockets.read_serving().established < want and time.monotonic() < deadline:
        time.sleep(0.2)
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        s = sockets.read_serving()
        times.append(time.perf_counter() - t0)
    print(json.dumps({"median_s": sorted(times)[2], "min_s": min(times), "established": s.established,
                      "peers": len(s.peers)}))


PER_CLIENT = 15_000  # connections per client process: each holds a file per connection


def load(c: str, s: str, n: int, srcs: int = 100) -> tuple:
    """n connections from `srcs` client addresses to SERVER4:8080, held by
    client processes in c; the server in s accepts none (they wait in its
    queue). Returns the processes, to close."""
    per = -(-n // srcs)
    plan = [[CLIENT4[i], SERVER4, 8080, min(per, n - i * per)] for i in range(srcs) if n - i * per > 0]
    chunks, cur, size = [], [], 0
    for src, dst, port, k in plan:
        while k:
            take = min(k, PER_CLIENT - size)
            cur.append([src, dst, port, take])
            size, k = size + take, k - take
            if size == PER_CLIENT:
                chunks.append(cur)
                cur, size = [], 0
    if cur:
        chunks.append(cur)
    procs = [Proc(c, "client", json.dumps(ch), "listen" if i == 0 else "nolisten") for i, ch in enumerate(chunks)]
    for p in procs:
        p.line()
    sv = Proc(s, "server", "0")
    procs.append(sv)
    sv.line()
    for p in procs[:-1]:
        p.send("go")
    for p in procs[:-1]:
        p.line(timeout=600)
    return procs


def bench(sizes: list) -> None:
    """read_serving's cost with N established customers, for each N."""
    print(f"{'connections':>12} {'established':>12} {'peers':>6} {'median ms':>10} {'min ms':>8}")
    for n in sizes:
        with namespaces(n_clients4=100) as (c, s):
            procs = load(c, s, n)
            try:
                p = subprocess.run(in_ns(s, sys.executable, HERE, "time", str(n + 1)), capture_output=True,
                                   text=True, timeout=120, check=True)
                r = json.loads(p.stdout)
                print(f"{n:>12} {r['established']:>12} {r['peers']:>6} {1e3 * r['median_s']:>10.1f} "
                      f"{1e3 * r['min_s']:>8.1f}", flush=True)
            finally:
                for p in procs:
                    p.close()


if __name__ == "__main__":
    mode, args = sys.argv[1], sys.argv[2:]
    {"server": lambda: server(int(args[0])), "client": lambda: client(*args), "read": read,
     "time": lambda: time_reads(*map(int, args)), "bench": lambda: bench([int(a) for a in args])}[mode]()
    sys.exit(0)


# --- the tests ----------------------------------------------------------------------

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from seawall.control.addr import Sources  # noqa: E402
from seawall.control.detect.serving import Asked, Endpoint, Serving, SocketTable  # noqa: E402

# the customers: 10 IPv4 sources x 3 to 8080, one v4 customer of the
# dual-stack [::]:8443, two v6 sources x 2 to [2001:2::1]:8443, one v6 to
# 8081, and TW_PEER (one connection, closed by the server)
PLAN = [[a, SERVER4, 8080, 3] for a in CLIENT4[9:19]] + [["198.19.0.20", SERVER4, 8443, 1]] + \
       [[a, SERVER6, 8443, 2] for a in CLIENT6[:2]] + [[CLIENT6[2], SERVER6, 8081, 1]] + \
       [[TW_PEER, SERVER4, 8080, 1, "closed"]]
EXPECTED = sum(r[3] for r in PLAN)
ESTABLISHED = EXPECTED - 1 + 1  # all but TW_PEER's, plus the server's own outgoing connection
PEERS = sorted({r[0] for r in PLAN} | {CLIENT4[0]})


@pytest.fixture
def served():
    """The namespaces, the server's sockets, the customers connected; yields
    (client ns, server ns, the server's ports)."""
    with namespaces() as (c, s):
        cl = Proc(c, "client", json.dumps(PLAN))
        sv = None
        try:
            cl.line()
            sv = Proc(s, "server", str(EXPECTED))
            ports = sv.line()
            cl.send("go")
            assert cl.line()["connected"] == EXPECTED - 1
            assert sv.line()["accepted"] == EXPECTED
            yield c, s, ports
        finally:
            if sv:
                sv.close()
            cl.close()


def read_in(ns: str) -> dict:
    """The read child's report, once the TIME_WAIT connection got there."""
    deadline = time.monotonic() + 5
    while True:
        p = subprocess.run(in_ns(ns, sys.executable, HERE, "read"), capture_output=True, text=True, timeout=60)
        assert p.returncode == 0, p.stderr
        r = json.loads(p.stdout)
        if r["serving"]["customers"]["connections"] == ESTABLISHED + 1 or time.monotonic() > deadline:
            return r
        time.sleep(0.2)


def table_of(r: dict) -> SocketTable:
    t = r["table"]
    return SocketTable(*(np.asarray(t[k], dt) for k, dt in (
        ("proto", np.uint8), ("family", np.uint8), ("state", np.uint8), ("lport", np.uint16),
        ("rport", np.uint16), ("laddr", np.uint8), ("raddr", np.uint8), ("v6only", bool))))


def test_read_serving_finds_exactly_the_servers_sockets(served):
    _, s, ports = served
    r = read_in(s)
    got = Serving.from_table(table_of(r), tuple(r["ephemeral"]))
    eph, uconn = ports["udp_ephemeral"], ports["udp_connected"]
    out, loopc = ports["out_port"], ports["loop_client_port"]

    assert set(got.tcp_listening) == {
        Endpoint("tcp", 4, SERVER4, 8080), Endpoint("tcp", 6, "::", 8443, v6only=False),
        Endpoint("tcp", 6, "::", 9443, v6only=True), Endpoint("tcp", 6, SERVER6, 8081, v6only=True),
        Endpoint("tcp", 4, "127.0.0.1", 6000)}
    assert set(got.udp_bound) == {
        Endpoint("udp", 4, "0.0.0.0", 5300), Endpoint("udp", 6, SERVER6, 5301, v6only=True),
        Endpoint("udp", 6, "::", 5302, v6only=True), Endpoint("udp", 4, "0.0.0.0", 123),
        Endpoint("udp", 4, "0.0.0.0", eph)}
    assert got.udp_connected == (Asked(uconn, CLIENT4[0], 53),)
    assert list(np.flatnonzero(got.listen_mask)) == [6000, 8080, 8081, 8443, 9443]
    assert set(np.flatnonzero(got.served_mask("tcp"))) == {6000, 8080, 8081, 8443, 9443, out, loopc}
    assert set(np.flatnonzero(got.served_mask("udp"))) == {123, 5300, 5301, 5302, eph, uconn}
    assert set(np.flatnonzero(got.asked_mask)) == {eph, uconn}
    assert not got.tcp_served(7000)  # bound, never listened
    assert got.tcp_served(8443, "198.18.0.1") and not got.tcp_served(9443, "198.18.0.1")
    assert got.reflection_unasked(53, 5300) and not got.reflection_unasked(53, uconn)
    assert got.reflection_unasked(123, uconn) and not got.reflection_unasked(123, 123)
    assert got.no_collateral("tcp", 7000) == "no TCP socket at port 7000" and got.no_collateral("udp", 5300) is None
    assert got.no_collateral("udp", 5300, 123) == "UDP answers from port 123 to port 5300, where no socket asked"

    # customers: the v4 client of the dual-stack socket is an IPv4 peer; the
    # loopback connection is nobody's customer; TIME_WAIT still counts
    peers = sorted(str(got.peers.prefix(i).network.network_address) for i in range(len(got.peers)))
    assert peers == PEERS
    assert (got.established, got.connections) == (ESTABLISHED, ESTABLISHED + 1)
    probe = Sources.from_addresses(["198.19.0.20", "::ffff:198.19.0.20", TW_PEER, "198.19.0.21", "127.0.0.1",
                                    CLIENT6[0], "2001:2::13"], [1] * 7)
    assert got.customers(probe).tolist() == [True, False, True, False, False, True, False]
    # ::ffff:198.19.0.20 as a Source is an IPv6 address; the XDP program never sees one

    # read_serving's own JSON is the same snapshot; the watch read it again
    # and again in the background
    want = got.to_json()
    assert {k: v for k, v in r["serving"].items() if k != "taken_at"} == \
           {k: v for k, v in want.items() if k != "taken_at"}
    assert r["watch"]["error"] is None and r["watch"]["reads"] >= 5 and r["watch"]["established"] == ESTABLISHED


def test_the_decoder_agrees_with_pyroute2s(served):
    _, s, _ = served
    r = read_in(s)
    t = table_of(r)

    def addr(fam, raw):
        return str(ipaddress.ip_address(bytes(raw[:4] if fam == 4 else raw)))

    ours = sorted((int(t.proto[i]), int(t.state[i]), addr(t.family[i], t.laddr[i]), int(t.lport[i]),
                   addr(t.family[i], t.raddr[i]), int(t.rport[i])) for i in range(len(t)))
    theirs = sorted((p, st, str(ipaddress.ip_address(a)), sp, str(ipaddress.ip_address(b)), dp)
                    for p, st, a, sp, b, dp in r["pyroute2"])
    assert len(ours) > EXPECTED and ours == theirs


def test_cli_in_the_namespace(served):
    _, s, ports = served
    r = read_in(s)
    p = subprocess.run(in_ns(s, SEAWALL, "serving", "--json"), capture_output=True, text=True, timeout=60)
    assert p.returncode == 0 and p.stderr == "", p.stderr
    doc = json.loads(p.stdout)
    assert doc["tcp"] == r["serving"]["tcp"] and doc["udp"] == r["serving"]["udp"]
    assert doc["customers"] == {"addresses": len(PEERS), "connections": ESTABLISHED + 1, "established": ESTABLISHED}
    p = subprocess.run(in_ns(s, SEAWALL, "serving"), capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[0].split() == ["PROTO", "LOCAL", "REMOTE", "NOTE"]
    table = [line.split(None, 3) for line in lines[1:-1]]
    assert len(table) == 5 + 5 + 1
    for row in (["tcp", "198.18.0.1:8080", "-", "listening"], ["tcp", "[::]:8443", "-", "listening, IPv4 and IPv6"],
                ["tcp", "[::]:9443", "-", "listening, IPv6 only"], ["tcp", "[2001:2::1]:8081", "-", "listening"],
                ["udp", f"0.0.0.0:{ports['udp_ephemeral']}", "-", "bound, asked (ephemeral port)"],
                ["udp", "0.0.0.0:5300", "-", "bound"],
                ["udp", f"*:{ports['udp_connected']}", f"{CLIENT4[0]}:53", "connected, asked"]):
        assert row in table
    assert lines[-1] == f"customers: {len(PEERS)} addresses, {ESTABLISHED} established connections " \
                        f"({ESTABLISHED + 1} past the handshake)"


def test_a_thousand_connections_are_all_read():
    """At a scale the namespace builds in a second: every connection, every
    peer, and the read's cost (the bench, run by hand, measures more)."""
    with namespaces(n_clients4=100) as (c, s):
        procs = load(c, s, 1000)
        try:
            p = subprocess.run(in_ns(s, sys.executable, HERE, "time", "1001"), capture_output=True, text=True,
                               timeout=120)
            assert p.returncode == 0, p.stderr
            got = json.loads(p.stdout)
            assert (got["established"], got["peers"]) == (1001, 100)  # + the server's outgoing one (same peer)
            assert got["median_s"] < 0.5
        finally:
            for p in procs:
                p.close()


def test_reading_in_a_namespace_without_sockets():
    with namespaces(n_clients4=1) as (_, s):
        p = subprocess.run(in_ns(s, SEAWALL, "serving", "--json"), capture_output=True, text=True, timeout=60)
        assert p.returncode == 0, p.stderr
        doc = json.loads(p.stdout)
        assert doc["tcp"] == {"listening": []} and doc["udp"] == {"bound": [], "connected": []}
        assert doc["customers"] == {"addresses": 0, "connections": 0, "established": 0}
