"""What the engine decides (engine.py), and its report of a cycle. Pure."""

from __future__ import annotations

from dataclasses import dataclass, field

from seawall.control.addr import Prefix
from seawall.control.datapath.abi import Feature
from seawall.control.signature import PROTO_NAMES, Signature


@dataclass
class BlockAction:
    prefix: Prefix
    ttl: float
    reason: str
    evidence: dict


@dataclass
class SignatureAction:
    signature: Signature
    ttl: float
    reason: str
    evidence: dict


@dataclass
class SynProxyAction:
    """Answer SYNs to a served port with cookies at the NIC (control/synproxy.py)."""

    port: int
    ttl: float
    reason: str
    evidence: dict


@dataclass
class CycleReport:
    t: float
    pps: float
    entropy: dict  # feature name -> H
    z: dict  # feature name -> z (once the mix is learnt)
    score: float  # max(volume, mix); anomalous at >= threshold
    alarm: bool
    raised: bool  # alarm raised this cycle
    cleared: bool
    learning: bool  # this cycle was learnt as calm
    actions: list = field(default_factory=list)
    note: str = ""
    volume: float = 0.0  # the volume ratio
    where: str = ""  # the dimension that gave it ("total", "dport 9", ...)
    findings: list = field(default_factory=list)  # attackers recognised, acted on or not


# --- how a report names what moved -------------------------------------------

def moved(z: dict) -> dict:
    return {k: round(v, 2) for k, v in z.items() if abs(v) >= 2.0}


def dimension(f: Feature, b: int) -> str:
    if f == Feature.PROTO:
        return f"proto {PROTO_NAMES.get(b, b)}"
    if f in (Feature.DPORT, Feature.SPORT):
        return f"{f.name.lower()} {b}" if b else f"{f.name.lower()} none"
    return f"{f.name.lower()} {b}"
