"""The scenario matrix of `seawall evaluate --wire`.

A scenario is a flood (a list of bursts, floods.py), a start condition
and the customers' load:
- fresh: the daemon starts `lead` (15 s) before the flood, customers
  running;
- restart: the daemon runs calm `calm_restart` (30 s), the flood starts,
  and 3 s into it the daemon is stopped (SIGTERM) and started again on
  the same state;
- during: the flood starts, and 3 s into it a daemon with an empty state
  directory starts.
A scenario's options: {"synproxy": (port, ...)}: the ports are put under
SYN protection by hand (`seawall synproxy add`) 3 s before the flood.
A flash crowd has no flood: the customers' rate rises 10x with 200 new
addresses for `flood_s` seconds; the figures of interest are the alarm
and the customers'.

`matrix(quick, pps)` gives the list; quick is the short subset for CI
(shorter phases, four scenarios, about a minute each at most).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from seawall.control.tools.wire.floods import Burst, pulse, ramp

START_CONDITIONS = ("fresh", "restart", "during")


@dataclass(frozen=True)
class Scenario:
    name: str
    bursts: tuple = ()
    start: str = "fresh"
    rate: float = 50.0  # customers' new connections per second
    flash: float = 0.0  # seconds of flash crowd (no flood)
    lead: float = 15.0  # fresh: daemon start to flood
    calm: float = 30.0  # restart: calm seconds before the flood
    restart_after: float = 3.0  # restart / during: seconds into the flood
    tail: float = 4.0  # customers go on after the flood
    note: str = ""
    options: dict = field(default_factory=dict)

    @property
    def flood_seconds(self) -> float:
        return max((b.start + b.seconds for b in self.bursts), default=self.flash)


def _one(kind: str, pps: int, seconds: float) -> tuple:
    return (Burst(0.0, seconds, pps, kind),)


def matrix(quick: bool = False, pps: int = 40000) -> list[Scenario]:
    if quick:
        d = 6.0
        return [
            Scenario("botnet", _one("botnet", pps, d), note="60 sources in one /24 that holds a customer"),
            Scenario("spoofed@restart", _one("spoofed", pps, 8.0), start="restart", calm=12.0),
            Scenario("syn@during", _one("syn", pps, 8.0), start="during"),
            Scenario("flash-crowd", flash=d, note="10x customers, 200 new addresses, no attack"),
        ]
    d = 10.0
    low = min(pps, 5000)
    return [
        Scenario("single", _one("single", pps, d), note="one source, UDP"),
        Scenario("botnet", _one("botnet", pps, d), note="60 sources in one /24 that holds a customer"),
        Scenario("botnet-tcp", _one("botnet_tcp", pps, d), note="60 sources, TCP ACKs to the served port"),
        Scenario("botnet-high", _one("botnet", pps, d), rate=300.0, note="botnet, customers at 300 conn/s"),
        Scenario("spoofed", _one("spoofed", pps, d), note="random source of 198.19/16 per packet, UDP"),
        Scenario("reflection", _one("reflect", pps, d), note="NTP-style, sport 123, ~1000 reflectors"),
        Scenario("frag-reflection", _one("frag", pps, d), note="DNS answers as IP fragments"),
        Scenario("syn", _one("syn", pps, d), note="spoofed SYN to the served port"),
        Scenario("syn-protected", _one("syn", pps, d), options={"synproxy": (8080,)},
                 note="the same, the port protected beforehand (seawall synproxy add 8080)"),
        Scenario("pulse", tuple(pulse("botnet", pps, 6.0, 14.0, 3)), note="botnet, 3 pulses 6 s on 14 s off"),
        Scenario("ramp", tuple(ramp("botnet", low, 3.0, 12)), note="botnet from 5k pps, +20% every 3 s"),
        Scenario("low-rate", _one("botnet", low, d), note="botnet at 5k pps"),
        Scenario("capture-syn", _one("capture-syn", 15000, d), note="real spoofed SYN capture at 15k pps"),
        Scenario("capture-snmp", _one("capture-snmp", 15000, d), note="real SNMP reflection capture at 15k pps"),
        Scenario("flash-crowd", flash=15.0, note="10x customers, 200 new addresses, no attack"),
        Scenario("botnet@restart", _one("botnet", pps, 12.0), start="restart"),
        Scenario("spoofed@restart", _one("spoofed", pps, 12.0), start="restart"),
        Scenario("reflection@restart", _one("reflect", pps, 12.0), start="restart"),
        Scenario("botnet@during", _one("botnet", pps, 15.0), start="during"),
        Scenario("spoofed@during", _one("spoofed", pps, 15.0), start="during"),
        Scenario("reflection@during", _one("reflect", pps, 15.0), start="during"),
    ]


def select(names: tuple, quick: bool, pps: int) -> list[Scenario]:
    """The scenarios named (all when none); ValueError names an unknown one."""
    every = matrix(quick, pps)
    if not names:
        return every
    known = {s.name: s for s in matrix(False, pps) + matrix(True, pps)}
    by = {s.name: s for s in every}
    out = []
    for n in names:
        if n not in known:
            raise ValueError(f"no scenario {n!r}; known: {', '.join(sorted(known))}")
        out.append(by.get(n, known[n]))
    return out
