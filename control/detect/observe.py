"""What one cycle saw, from the kernel's cumulative counters. Pure.

The datapath only ever adds to its counters; a cycle's observation is the
difference between two snapshots of them, summed over the interfaces
watched, with only the sources that sent something in between.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from seawall.control.addr import Sources, delta
from seawall.control.datapath.abi import split_features
from seawall.control.detect.engine import Observation


@dataclass
class Snapshot:
    """One interface's cumulative counters at one moment."""

    features: np.ndarray  # flat feature histograms (abi.FEATURE_SLOTS)
    sources: Sources  # tracked sources


def hist_delta(cur: np.ndarray, prev: Optional[np.ndarray]) -> np.ndarray:
    """Per-cycle counts of cumulative histograms. A slot that went backwards
    (the interface re-attached: its counters started again) counts from 0."""
    if prev is None or prev.shape != cur.shape:
        return np.zeros_like(cur)
    d = cur.astype(np.int64) - prev.astype(np.int64)
    return np.where(d < 0, cur.astype(np.int64), d)


def observe(t: float, dt: float, cur: dict, prev: dict) -> Observation:
    """The Observation of the cycle ending at t, dt long, from two
    {interface: Snapshot}; an interface absent from prev starts now."""
    hist = None
    parts = []
    for name, snap in cur.items():
        before = prev.get(name)
        d = hist_delta(snap.features, before.features if before is not None else None)
        hist = d if hist is None else hist + d
        parts.append(delta(snap.sources, before.sources if before is not None else None))
    if hist is None:
        raise ValueError("no interface to observe")
    srcs = Sources.concat(parts)
    return Observation(t, dt, split_features(hist), srcs.take(srcs.packets > 0))
