"""What one cycle saw, from the kernel's cumulative counters. Pure.

The datapath only ever adds to its counters; a cycle's observation is the
difference between two snapshots of them, summed over the interfaces
watched, with only the sources that sent something in between.

A large source table is not read whole every cycle (control/service/
sources.py): its snapshot holds the hot sources (counted in a table of
their own since they turned hot) as `sources`, and, as `seen`, the rest of
the sources a slice of the big table showed active lately, each counted
as a single packet of this cycle: present for whoever asks which sources
are active (aggregation, the regulars), too small to weigh as heavy.
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
    sources: Sources  # tracked sources (or only the hot ones), cumulative
    #: with a partial read: other sources active lately, one packet each
    seen: Optional[Sources] = None
    #: False while a partial read has not yet been round the whole table
    complete: bool = True


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
        if snap.seen is not None:
            parts.append(snap.seen)
    if hist is None:
        raise ValueError("no interface to observe")
    srcs = Sources.concat(parts)
    return Observation(t, dt, split_features(hist), srcs.take(srcs.packets > 0),
                       members_known=all(s.complete for s in cur.values()))


def seen_rows(swept: Sources, last_epoch: np.ndarray, since: int, hot: Sources) -> Sources:
    """The sources of a slice of the table that were counted in an epoch
    >= since and are not hot, each as one packet of this cycle: its bytes
    the source's mean packet size, a SYN if most of its packets were."""
    keep = np.asarray(last_epoch, np.int64) >= since
    if len(hot) and keep.any():
        keep[np.flatnonzero(keep)[swept.take(keep).find(hot) >= 0]] = False
    s = swept.take(keep)
    one = np.ones(len(s), np.uint64)
    size = s.bytes // np.maximum(s.packets, 1)
    syn = (2 * s.syns > s.packets).astype(np.uint64)
    return Sources(s.ver, s.hi, s.lo, one, size, syn)
