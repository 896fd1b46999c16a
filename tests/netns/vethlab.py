"""The three-namespace veth lab of the namespace tests (daemonlab.py) and
the end-to-end bench (bench_e2e.py): the topology, and the legitimate
customers that load it.

    clients  swc0 198.18.0.10-59/24  <-veth->  sws0 198.18.0.1/24  server
    attacker swa1 198.18.1.66/24     <-veth->  swa0 198.18.1.1/24  server

Traffic uses only benchmarking addresses (198.18.0.0/15, RFC 2544). The
customers run as their own process in the clients' namespace:

    python tests/netns/vethlab.py SRCS DST PORT DURATION RATE [--latencies]

HTTP requests to DST:PORT from the comma-separated SRCS in turn, RATE a
second for DURATION seconds; one JSON line on stdout: ok, fail, p50_ms,
p99_ms, the first failures as [time, source, why], and with --latencies
every latency in ms (for callers that merge several processes).
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time


SERVER = "198.18.0.1"  # the server's address on the customers' side
SERVER_MAC_A = "02:53:57:00:01:01"  # swa0, the server's side facing the attacker
ATTACKER_MAC = "02:53:57:00:01:02"
CLIENTS = [f"198.18.0.{i}" for i in range(10, 60)]
ATTACKER = "198.18.1.66"
HTTP_PORT = 8080


def _sh(*cmd) -> None:
    p = subprocess.run(list(cmd), capture_output=True, text=True, timeout=60)
    if p.returncode:
        raise RuntimeError(f"{' '.join(cmd)}: exit {p.returncode}: {p.stderr.strip()[-300:]}")


def build(c: str, a: str, s: str) -> None:
    """Create the namespaces c (clients), a (attacker) and s (server) and
    wire them as above. The caller removes them (`ip netns del`)."""
    for ns in (c, a, s):
        _sh("ip", "netns", "add", ns)
    _sh("ip", "link", "add", "swc0", "netns", c, "type", "veth", "peer", "name", "sws0", "netns", s)
    _sh("ip", "link", "add", "swa1", "netns", a, "address", ATTACKER_MAC, "type", "veth",
        "peer", "name", "swa0", "netns", s, "address", SERVER_MAC_A)
    _sh("ip", "-n", s, "addr", "add", f"{SERVER}/24", "dev", "sws0")
    _sh("ip", "-n", s, "addr", "add", "198.18.1.1/24", "dev", "swa0")
    for addr in CLIENTS:
        _sh("ip", "-n", c, "addr", "add", f"{addr}/24", "dev", "swc0")
    _sh("ip", "-n", a, "addr", "add", f"{ATTACKER}/24", "dev", "swa1")
    for ns, ifs in ((c, ["lo", "swc0"]), (a, ["lo", "swa1"]), (s, ["lo", "sws0", "swa0"])):
        for i in ifs:
            _sh("ip", "-n", ns, "link", "set", i, "up")
    # the flood is one-way: the server must not answer it with ARP storms
    _sh("ip", "-n", s, "neigh", "replace", ATTACKER, "lladdr", ATTACKER_MAC, "dev", "swa0", "nud", "permanent")


def customers(srcs: list, dst: str, port: int, duration: float, rate: float) -> tuple:
    """HTTP/1.0 GETs from srcs in turn at a steady rate for duration
    seconds. Returns (ok, latencies in seconds, failures as
    [time, source, why])."""
    ok = 0
    lat: list = []
    failures: list = []
    end = time.monotonic() + duration
    nxt = time.monotonic()
    i = 0
    while time.monotonic() < end:
        src = srcs[i % len(srcs)]
        i += 1
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
                ok += 1
                lat.append(time.monotonic() - t)
            else:
                failures.append([round(t, 3), src, "bad reply"])
        except OSError as e:
            failures.append([round(t, 3), src, str(e)])
        nxt += 1.0 / rate
        time.sleep(max(0.0, nxt - time.monotonic()))
    return ok, lat, failures


def main(argv: list) -> int:
    latencies = "--latencies" in argv
    args = [a for a in argv if a != "--latencies"]
    if len(args) != 5:
        print("usage: python vethlab.py SRCS DST PORT DURATION RATE [--latencies]",
              file=sys.stderr)
        return 2
    srcs, dst, port, duration, rate = args
    ok, lat, failures = customers(srcs.split(","), dst, int(port), float(duration), float(rate))
    lat.sort()
    out = {"ok": ok, "fail": len(failures), "failures": failures[:20],
           "p50_ms": round(1000 * lat[len(lat) // 2], 2) if lat else None,
           "p99_ms": round(1000 * lat[int(len(lat) * 0.99)], 2) if lat else None}
    if latencies:
        out["lat_ms"] = [round(1000 * x, 3) for x in lat]
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
