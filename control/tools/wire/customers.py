"""The legitimate side: a tiny HTTP server and its customers, each a process
of its own in its namespace (`python -m seawall.control.tools.wire.customers`).

- `serve ADDR PORT`: an asyncio HTTP/1.0 server (backlog 4096) answering
  every request with a short 200.
- `clients DST PORT OUT --phase START:RATE:NSRC ...`: customers opening a
  new TCP connection for each request, open loop (a request is started on
  schedule whatever happened to the previous ones, as independent people
  do), from source addresses taken in turn. Each phase sets, from START
  seconds on, the request rate (per second) and how many of the
  `--sources` (comma-separated, in order) are in use: a flash crowd is a
  phase with 10x the rate and many new addresses. The run lasts
  `--duration` seconds plus the time for the last requests to end.

OUT gets one JSON object: {"t0": monotonic start, "requests": [[t, src,
ok, connect_ms, total_ms, error], ...]} with t relative to t0 and the
times in ms (None when it failed). A request fails when its connection,
its request or its answer takes longer than `--timeout` seconds in all
(2 by default) or is refused or reset.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import socket
import sys
import time

REPLY = b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n\r\nok\n"


async def _handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        writer.write(REPLY)
        await writer.drain()
    except (asyncio.TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError):
        pass
    finally:
        writer.close()


async def serve(addr: str, port: int) -> None:
    server = await asyncio.start_server(_handle, addr, port, backlog=4096, reuse_address=True)
    async with server:
        await server.serve_forever()


async def _one(dst: str, port: int, src: str, timeout: float) -> tuple:
    t = time.monotonic()
    connect_ms = None
    writer = None
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(dst, port, local_addr=(src, 0))
            connect_ms = (time.monotonic() - t) * 1000
            writer.write(b"GET / HTTP/1.0\r\nHost: shop\r\n\r\n")
            data = await reader.read()
        ok = data.startswith(b"HTTP/1.0 200")
        return ok, connect_ms, (time.monotonic() - t) * 1000 if ok else None, None if ok else "bad reply"
    except TimeoutError:
        return False, connect_ms, None, "timeout"
    except OSError as e:
        return False, connect_ms, None, e.strerror or type(e).__name__
    finally:
        if writer is not None:
            writer.close()


def parse_phase(text: str) -> tuple[float, float, int]:
    try:
        start, rate, nsrc = text.split(":")
        p = (float(start), float(rate), int(nsrc))
    except ValueError:
        raise argparse.ArgumentTypeError(f"phase {text!r}: expected START:RATE:NSRC") from None
    if p[0] < 0 or p[1] <= 0 or p[2] < 1:
        raise argparse.ArgumentTypeError(f"phase {text!r}: START >= 0, RATE > 0, NSRC >= 1")
    return p


async def clients(dst: str, port: int, sources: list[str], phases: list[tuple], duration: float,
                  timeout: float) -> dict:
    phases = sorted(phases)
    t0 = time.monotonic()
    records: list = []
    tasks: set = set()
    counters = [0] * len(sources)
    i = 0

    async def run(k: int, src: str, t_rel: float) -> None:
        ok, c_ms, tot_ms, err = await _one(dst, port, src, timeout)
        records.append([round(t_rel, 4), src, ok, None if c_ms is None else round(c_ms, 3),
                        None if tot_ms is None else round(tot_ms, 3), err])

    now_rel = 0.0
    while now_rel < duration:
        phase = [p for p in phases if p[0] <= now_rel][-1]
        _start, rate, nsrc = phase
        src = sources[i % min(nsrc, len(sources))]
        counters[i % len(sources)] += 1
        i += 1
        task = asyncio.ensure_future(run(i, src, now_rel))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        nxt = now_rel + 1.0 / rate
        await asyncio.sleep(max(0.0, t0 + nxt - time.monotonic()))
        now_rel = max(nxt, time.monotonic() - t0 - 0.5)  # fall behind by at most 0.5 s, never burst
    if tasks:
        await asyncio.wait(tasks, timeout=timeout + 1)
    records.sort()
    return {"t0": t0, "requests": records}


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="customers")
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve")
    s.add_argument("addr")
    s.add_argument("port", type=int)
    c = sub.add_parser("clients")
    c.add_argument("dst")
    c.add_argument("port", type=int)
    c.add_argument("out")
    c.add_argument("--sources", required=True)
    c.add_argument("--phase", action="append", type=parse_phase, required=True)
    c.add_argument("--duration", type=float, required=True)
    c.add_argument("--timeout", type=float, default=2.0)
    a = ap.parse_args(argv)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 65536)), hard))
    if a.cmd == "serve":
        try:
            asyncio.run(serve(a.addr, a.port))
        except KeyboardInterrupt:
            pass
        return 0
    srcs = a.sources.split(",")
    for src in srcs:
        socket.inet_aton(src)
    res = asyncio.run(clients(a.dst, a.port, srcs, a.phase, a.duration, a.timeout))
    with open(a.out, "w") as f:
        json.dump(res, f)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
