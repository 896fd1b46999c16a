"""The instrument: counters sampled at a fixed rate from inside a namespace.

Nothing here reads seawall. Two samplers run as their own processes, each
inside one namespace (`python -m seawall.control.tools.wire.probes`):

- `server IFACE OUT`: in the protected namespace. Per sample: the time
  (CLOCK_MONOTONIC, shared by every namespace), two packet taps on IFACE
  and the namespace's own counters (/proc/net/snmp, /proc/net/netstat,
  /proc/net/dev). The taps are AF_PACKET sockets with a classic BPF
  filter; a tap sees a frame only once the XDP program has passed it, so
  what a tap counts is what reached the protected stack. `attack` counts
  incoming IPv4 frames whose source is not a customer's nor the server's
  (lab.NOT_ATTACK), `all` every incoming frame. The taps keep nothing:
  their receive buffer is tiny, and the kernel counts every frame the
  filter accepted (PACKET_STATISTICS tp_packets includes the frames
  dropped for want of room), so counting costs no copy to user space.
- `sender IFACE OUT`: in the attacker's namespace: its interface's tx
  packets (/proc/net/dev), the frames the attack put on the wire.

Both write one JSON header line ({"columns": [...]}) and one JSON array per
sample, at `--hz` (100 by default), until `--duration` runs out or SIGTERM.
They run SCHED_FIFO (priority 10) when they can, so a busy sender does not
delay a sample; the real spacing is in the file.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import signal
import socket
import struct
import sys
import time

ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_STATISTICS = 6
SO_ATTACH_FILTER = 26
SKF_AD_OFF = -0x1000
SKF_AD_PKTTYPE = 4
PACKET_OUTGOING = 4

SNMP_FIELDS = {"Ip": ("InReceives", "InDelivers", "ReasmReqds"),
               "Udp": ("InDatagrams", "NoPorts", "InErrors", "RcvbufErrors"),
               "Tcp": ("InSegs",)}
NETSTAT_FIELDS = {"TcpExt": ("SyncookiesSent", "ListenDrops", "ListenOverflows", "TCPReqQFullDrop")}
SERVER_COLUMNS = ["t", "tap_attack", "tap_all", "rx_packets", "rx_dropped",
                  *(f"{g}.{f}" for g, fs in SNMP_FIELDS.items() for f in fs),
                  *(f"{g}.{f}" for g, fs in NETSTAT_FIELDS.items() for f in fs)]
SENDER_COLUMNS = ["t", "tx_packets"]


# --- classic BPF --------------------------------------------------------
def _ins(code: int, jt: int, jf: int, k: int) -> tuple:
    return (code, jt, jf, k & 0xFFFFFFFF)


def tap_filter(exclude: list[tuple[str, int]] | None) -> list[tuple]:
    """A classic BPF program accepting incoming frames (never the host's
    own outgoing ones). With `exclude` (a list of (address, prefix len)),
    only IPv4 frames whose source is in none of those prefixes. Returns
    (code, jt, jf, k) tuples; it accepts 1 byte (nothing is read anyway)."""
    LD_W_ABS, LD_H_ABS, LD_B_ABS = 0x20, 0x28, 0x30
    ALU_AND, JEQ, RET = 0x54, 0x15, 0x06
    prog = [_ins(LD_B_ABS, 0, 0, SKF_AD_OFF + SKF_AD_PKTTYPE)]
    if exclude is None:
        prog += [_ins(JEQ, 1, 0, PACKET_OUTGOING), _ins(RET, 0, 0, 1), _ins(RET, 0, 0, 0)]
        return prog
    body = [_ins(LD_H_ABS, 0, 0, 12)]
    # after the ethertype check: per prefix, load, mask, compare
    checks = []
    for addr, plen in exclude:
        net = struct.unpack("!I", socket.inet_aton(addr))[0]
        mask = (0xFFFFFFFF << (32 - plen)) & 0xFFFFFFFF if plen else 0
        checks.append((net & mask, mask))
    # layout: [pkttype] [jeq out -> reject] [ld h 12] [jeq 0x800 ? next : reject] then per prefix 3 insns, accept, reject
    n_after = 3 * len(checks) + 2  # instructions after the ethertype jump, reject is the last
    prog.append(_ins(JEQ, 0, 0, PACKET_OUTGOING))  # jt fixed below
    prog += body
    prog.append(_ins(JEQ, 0, 0, 0x0800))  # jf fixed below
    for i, (net, mask) in enumerate(checks):
        left = 3 * (len(checks) - i - 1) + 1  # instructions between this compare and reject: rest + accept
        prog += [_ins(LD_W_ABS, 0, 0, 26), _ins(ALU_AND, 0, 0, mask), _ins(JEQ, left, 0, net)]
    prog += [_ins(RET, 0, 0, 1), _ins(RET, 0, 0, 0)]
    # fix the two early jumps to reject (the last instruction)
    last = len(prog) - 1
    prog[1] = _ins(JEQ, last - 2, 0, PACKET_OUTGOING)
    prog[3] = _ins(JEQ, 0, last - 4, 0x0800)
    assert n_after + 4 == len(prog)
    return prog


def run_filter(prog: list[tuple], frame: bytes, pkttype: int = 0) -> int:
    """Interpret a classic BPF program of the kinds tap_filter makes over
    one frame (for the tests: the kernel runs the real one)."""
    pc, a = 0, 0
    while True:
        code, jt, jf, k = prog[pc]
        k = k - (1 << 32) if k & 0x80000000 and code in (0x20, 0x28, 0x30) else k
        if code == 0x30:
            a = pkttype if k == SKF_AD_OFF + SKF_AD_PKTTYPE else frame[k]
        elif code == 0x28:
            a = struct.unpack_from("!H", frame, k)[0]
        elif code == 0x20:
            a = struct.unpack_from("!I", frame, k)[0]
        elif code == 0x54:
            a &= k
        elif code == 0x15:
            pc += jt if a == k else jf
        elif code == 0x06:
            return k
        else:
            raise ValueError(f"opcode {code:#x}")
        pc += 1


class Tap:
    """An AF_PACKET socket on one interface counting what its filter accepts."""

    def __init__(self, iface: str, prog: list[tuple]):
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1)  # the kernel's minimum
        insns = b"".join(struct.pack("HBBI", *i) for i in prog)
        buf = ctypes.create_string_buffer(insns)
        fprog = struct.pack("HL", len(prog), ctypes.addressof(buf))
        self.sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)
        # frames queued between socket() and the filter would be counted: drain them
        self.sock.bind((iface, ETH_P_ALL))
        self.sock.setblocking(False)
        self._drain()
        self.total = 0
        self.read()
        self.total = 0

    def _drain(self) -> None:
        try:
            while True:
                self.sock.recv(1)
        except BlockingIOError:
            pass

    def read(self) -> int:
        """Frames the filter accepted so far (the kernel resets its own
        count at each read; this keeps the running total)."""
        raw = self.sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8)
        packets, _drops = struct.unpack("II", raw)
        self.total += packets
        self._drain()
        return self.total


# --- /proc --------------------------------------------------------------
def parse_pairs(text: str, fields: dict) -> dict:
    """/proc/net/snmp and /proc/net/netstat: header and value lines in pairs."""
    out = {}
    lines = text.splitlines()
    for head, vals in zip(lines[0::2], lines[1::2]):
        group, names = head.split(":", 1)
        if group in fields:
            row = dict(zip(names.split(), vals.split(":", 1)[1].split()))
            for f in fields[group]:
                out[f"{group}.{f}"] = int(row.get(f, 0))
    return out


def parse_dev(text: str, iface: str) -> dict:
    """/proc/net/dev for one interface: rx_packets, rx_dropped, tx_packets."""
    for line in text.splitlines()[2:]:
        name, rest = line.split(":", 1)
        if name.strip() == iface:
            v = [int(x) for x in rest.split()]
            return {"rx_packets": v[1], "rx_dropped": v[3], "tx_packets": v[9]}
    raise KeyError(f"no interface {iface} in /proc/net/dev")


def _read(path: str) -> str:
    with open(path) as f:
        return f.read()


def _realtime() -> None:
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(10))
    except (OSError, AttributeError):
        pass


def sample_loop(out, columns: list[str], read, hz: float, duration: float) -> int:
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    out.write(json.dumps({"columns": columns, "hz": hz}) + "\n")
    step = 1.0 / hz
    t0 = time.monotonic()
    nxt, end, n = t0, t0 + duration, 0
    while not stop and time.monotonic() < end:
        row = read()
        out.write(json.dumps(row) + "\n")
        n += 1
        nxt += step
        pause = nxt - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        else:
            nxt = time.monotonic()
    out.flush()
    return n


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="probes")
    ap.add_argument("role", choices=("server", "sender"))
    ap.add_argument("iface")
    ap.add_argument("out")
    ap.add_argument("--hz", type=float, default=100.0)
    ap.add_argument("--duration", type=float, default=600.0)
    ap.add_argument("--exclude", default="", help="comma-separated CIDRs that are not the attack")
    a = ap.parse_args(argv)
    _realtime()
    with open(a.out, "w") as out:
        if a.role == "sender":
            def read_sender():
                return [round(time.monotonic(), 5), parse_dev(_read("/proc/net/dev"), a.iface)["tx_packets"]]
            sample_loop(out, SENDER_COLUMNS, read_sender, a.hz, a.duration)
            return 0
        excl = []
        for c in filter(None, a.exclude.split(",")):
            addr, _, plen = c.partition("/")
            excl.append((addr, int(plen or 32)))
        attack, every = Tap(a.iface, tap_filter(excl)), Tap(a.iface, tap_filter(None))

        def read_server():
            t = time.monotonic()
            dev = parse_dev(_read("/proc/net/dev"), a.iface)
            snmp = parse_pairs(_read("/proc/net/snmp"), SNMP_FIELDS)
            snmp.update(parse_pairs(_read("/proc/net/netstat"), NETSTAT_FIELDS))
            row = [round(t, 5), attack.read(), every.read(), dev["rx_packets"], dev["rx_dropped"]]
            return row + [snmp.get(c, 0) for c in SERVER_COLUMNS[5:]]
        sample_loop(out, SERVER_COLUMNS, read_server, a.hz, a.duration)
    return 0


def load(path: str) -> tuple[list[str], list[list]]:
    """A sampler's file: (columns, rows). A torn last line is skipped."""
    with open(path) as f:
        lines = f.read().splitlines()
    if not lines:
        return [], []
    cols = json.loads(lines[0])["columns"]
    rows = []
    for ln in lines[1:]:
        try:
            rows.append(json.loads(ln))
        except ValueError:
            break
    return cols, rows


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
