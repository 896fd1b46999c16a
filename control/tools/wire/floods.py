"""The attacks: trafgen configurations and capture replays, from the
attacker's namespace to the server, every address in 198.18.0.0/15.

A flood is a list of `Burst`s (start offset, seconds, packets/s, kind); a
pulse is three bursts with gaps, a slow ramp a staircase of bursts. The
frames of a kind are made by trafgen (netsniff-ng) from its configuration
language into a pool of POOL frames (per-packet random fields drawn once,
then replayed in a loop), or taken from a capture; each burst is one
tcpreplay with `--limit` packets under `timeout`, so it ends by itself.

Sources by kind (the customers are 198.18.2.0/24 and 198.18.66.200, the
server 198.18.0.1; no kind ever uses those):
- single: 198.18.1.66, UDP to port 9;
- botnet: 198.18.66.10-69 (60 sources, the /24 of one customer), UDP to 9;
- botnet_tcp: the same sources, TCP ACKs to the served port;
- spoofed: a random source of 198.19.0.0/16 per packet, UDP to 9;
- reflect: ~1000 reflectors in 198.18.100-103.x, UDP from source port
  123 (NTP), 468-byte answers, to random high ports;
- frag: DNS answers from 198.18.104-107.x as IP fragments, alternately a
  first fragment (UDP header, source port 53, MF) and a non-first one
  (offset 1480, no L4 header);
- syn: spoofed SYNs from 198.19.0.0/16 to the served port (8080);
- capture:NAME: a file of the project's ../shared/captures (or --captures DIR)
  rewritten with tcprewrite: Ethernet addresses the lab's, destination the
  server, sources mapped into 198.19.0.0/16 (host bits kept).
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
from dataclasses import dataclass

from seawall.control.tools.wire.lab import ATTACKER_MAC, HTTP_PORT, IF_ATTACKER, SERVER, SERVER_MAC

CAPTURES = {"capture-syn": "pkt.TCP.synflood.spoofed.pcap", "capture-snmp": "amp.UDP.snmp.src161.pcapng"}


def default_capture_dir() -> str:
    """shared/captures beside the checkout this runs from (the project's
    ../shared/captures), or captures/ in the current folder elsewhere."""
    top = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    if os.path.exists(os.path.join(top, "pyproject.toml")):
        return os.path.join(os.path.dirname(top), "shared", "captures")
    return os.path.abspath("captures")


DEFAULT_CAPTURE_DIR = default_capture_dir()
KINDS = ("single", "botnet", "botnet_tcp", "spoofed", "reflect", "frag", "syn", *CAPTURES)


@dataclass(frozen=True)
class Burst:
    start: float  # seconds after the flood's start
    seconds: float
    pps: int
    kind: str

    def packets(self) -> int:
        return max(1, int(self.pps * self.seconds))


def _bytes(text: str) -> str:
    return ", ".join(f"0x{b}" for b in text.replace(".", ":").split(":")) if ":" in text else \
        ", ".join(str(int(b)) for b in text.split("."))


ETH = f"{_bytes(SERVER_MAC)}, {_bytes(ATTACKER_MAC)}, 0x08, 0x00"
DST = _bytes(SERVER)


def _ipv4(total: int, proto: int, src: str, frag: str = "c16(0x0000)") -> str:
    return (f"0x45, 0x00, c16({total}), drnd(2), {frag}, 0x40, {proto}, csumip(14, 33),\n"
            f"  {src},\n  {DST},\n")


def _udp(src: str, sport: str, dport: str, payload: int) -> str:
    return ("{\n  " + ETH + ",\n  " + _ipv4(28 + payload, 17, src) +
            f"  {sport}, {dport}, c16({8 + payload}), c16(0),\n  fill(0x41, {payload})\n}}\n")


def config_text(kind: str) -> str:
    """The trafgen configuration of a kind (raw bytes: per-packet sources)."""
    botnet = "198, 18, 66, dinc(10, 69)"
    spoofed = "198, 19, drnd(), drnd()"
    if kind == "single":
        return _udp("198, 18, 1, 66", "c16(40000)", "c16(9)", 64)
    if kind == "botnet":
        return _udp(botnet, "drnd(2)", "c16(9)", 64)
    if kind == "spoofed":
        return _udp(spoofed, "drnd(2)", "c16(9)", 64)
    if kind == "reflect":
        return _udp("198, 18, dinc(100, 103), drnd()", "c16(123)", "dinc(0x80, 0xfe), drnd()", 460)
    if kind in ("syn", "botnet_tcp"):
        src, flags = (spoofed, "0x02") if kind == "syn" else (botnet, "0x10")
        return ("{\n  " + ETH + ",\n  " + _ipv4(40, 6, src) +
                f"  drnd(2), c16({HTTP_PORT}), drnd(4), c32(0), 0x50, {flags}, c16(64240), csumtcp(14, 34), c16(0)\n}}\n")
    if kind == "frag":
        src = "198, 18, dinc(104, 107), drnd()"
        first = ("{\n  " + ETH + ",\n  " + _ipv4(1500, 17, src, "c16(0x2000)") +
                 "  c16(53), dinc(0x80, 0xfe), drnd(), c16(2080), c16(0),\n  fill(0x42, 1472)\n}\n")
        rest = ("{\n  " + ETH + ",\n  " + _ipv4(620, 17, src, f"c16({1480 // 8})") +
                "  fill(0x43, 600)\n}\n")
        return first + rest
    raise ValueError(f"no trafgen configuration for {kind!r}")


def prepare_capture(kind: str, capture_dir: str, workdir: str) -> str:
    """The capture rewritten for the lab (see the module's docstring);
    returns its path. Raises FileNotFoundError or RuntimeError."""
    src = os.path.join(capture_dir, CAPTURES[kind])
    if not os.path.exists(src):
        raise FileNotFoundError(f"{src}: no such capture")
    for tool in ("tcprewrite", "tcpreplay"):
        if shutil.which(tool) is None:
            raise RuntimeError(f"{tool} is not installed (Debian's tcpreplay; scripts/setup installs it)")
    out = os.path.join(workdir, kind + ".pcap")
    p = subprocess.run(["tcprewrite", f"--infile={src}", f"--outfile={out}", f"--enet-dmac={SERVER_MAC}",
                        f"--enet-smac={ATTACKER_MAC}", f"--dstipmap=0.0.0.0/0:{SERVER}/32",
                        "--srcipmap=0.0.0.0/0:198.19.0.0/16", "--fixcsum"],
                       capture_output=True, text=True, timeout=60)
    if p.returncode:
        raise RuntimeError(f"tcprewrite {src}: {p.stderr.strip()[-300:]}")
    return out


POOL = 65536  # frames of a flood's pool, replayed in a loop


def prepare_pool(kind: str, workdir: str) -> str:
    """POOL frames of a kind, made by trafgen from its configuration into a
    pcap file (trafgen's own --rate sends in bursts: 40k pps came as
    260k pps for 0.15 s then nothing, measured; tcpreplay paces evenly)."""
    out = os.path.join(workdir, kind + ".pcap")
    conf = os.path.join(workdir, kind + ".trafgen")
    with open(conf, "w") as f:
        f.write(config_text(kind))
    p = subprocess.run(["timeout", "60", "trafgen", "--conf", conf, "--out", out, "--num", str(POOL), "-C",
                        "--seed", "1"], capture_output=True, text=True, timeout=90)
    if p.returncode or not os.path.exists(out):
        raise RuntimeError(f"trafgen {conf}: {p.stderr.strip()[-300:]}")
    _ethernet_linktype(out)
    return out


def _ethernet_linktype(path: str) -> None:
    """trafgen writes its pcap with link type NULL (no device to ask);
    the frames are Ethernet: say so in the global header, in the file's
    own byte order (the magic number tells)."""
    with open(path, "r+b") as f:
        head = f.read(24)
        order = "<" if head[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
        f.seek(20)
        f.write(struct.pack(order + "I", 1))


def command(burst: Burst, workdir: str, capture_dir: str = DEFAULT_CAPTURE_DIR) -> list[str]:
    """The command that sends one burst from the attacker's namespace:
    tcpreplay of the kind's frames (made once per workdir), `--limit`
    packets, under `timeout`."""
    path = os.path.join(workdir, burst.kind + ".pcap")
    if not os.path.exists(path):
        if burst.kind in CAPTURES:
            prepare_capture(burst.kind, capture_dir, workdir)
        else:
            prepare_pool(burst.kind, workdir)
    return ["timeout", str(int(burst.seconds) + 5), "tcpreplay", f"--intf1={IF_ATTACKER}", f"--pps={burst.pps}",
            "--loop=0", f"--limit={burst.packets()}", "--quiet", path]


def pulse(kind: str, pps: int, on: float, off: float, n: int = 3) -> list[Burst]:
    return [Burst(i * (on + off), on, pps, kind) for i in range(n)]


def ramp(kind: str, pps: int, step: float, steps: int, factor: float = 1.2) -> list[Burst]:
    """A rate rising by `factor` every `step` seconds, from pps."""
    return [Burst(i * step, step, int(pps * factor ** i), kind) for i in range(steps)]


def span(bursts: list[Burst]) -> float:
    return max(b.start + b.seconds for b in bursts) if bursts else 0.0
