"""What the engine decides (engine.py), and its report of a cycle. Pure."""

from __future__ import annotations

from dataclasses import dataclass, field

from seawall.control.addr import Prefix
from seawall.control.signature import Signature


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
