"""Reading an attached interface's counters straight into numpy arrays.

One batch syscall per chunk of 8192 entries, into buffers reused from cycle
to cycle; never one syscall per entry. Raw bpf(2), no bcc.
"""

from __future__ import annotations

import os
from typing import Optional

import numpy as np

from . import bpfsys, const, kernel
from .sources import Sources


class IfaceView:
    """Cumulative counters of one interface: features and tracked sources."""

    def __init__(self, pin_root: str, ifname: str):
        self.ifname = ifname
        d = kernel.iface_pin_dir(pin_root, ifname)
        self.features = bpfsys.Map.open_pinned(os.path.join(d, "features"))
        self.src4 = bpfsys.Map.open_pinned(os.path.join(d, "src_v4"))
        self.src6 = bpfsys.Map.open_pinned(os.path.join(d, "src_v6"))
        self.stats = bpfsys.Map.open_pinned(os.path.join(d, "stats"))
        self.sig_hits = bpfsys.Map.open_pinned(os.path.join(d, "sig_hits"))

    def close(self) -> None:
        for m in (self.features, self.src4, self.src6, self.stats, self.sig_hits):
            m.close()

    @staticmethod
    def _sum_percpu(m: bpfsys.Map, keys: np.ndarray, vals: np.ndarray, fields: int) -> np.ndarray:
        v = vals.view(np.uint64).reshape(len(vals), m.ncpu, m.stride // 8)[:, :, :fields]
        return v.sum(axis=1, dtype=np.uint64)

    def read_features(self) -> np.ndarray:
        """FEATURE_SLOTS cumulative packet counts, summed over CPUs."""
        keys, vals = self.features.lookup_batch(chunk=65536)
        out = np.zeros(self.features.max_entries, np.uint64)
        out[keys.view(np.uint32).reshape(-1)] = self._sum_percpu(self.features, keys, vals, 1)[:, 0]
        return out

    def read_sources(self) -> Sources:
        """Every tracked source with its cumulative counters."""
        k4, v4 = self.src4.lookup_batch()
        k6, v6 = self.src6.lookup_batch()
        s4 = self._sum_percpu(self.src4, k4, v4, 3)
        s6 = self._sum_percpu(self.src6, k6, v6, 3)
        return Sources.from_kernel(k4, s4, k6, s6)

    def read_stats(self) -> np.ndarray:
        """(REASON_MAX, 2) packets and bytes per reason."""
        keys, vals = self.stats.lookup_batch()
        out = np.zeros((self.stats.max_entries, 2), np.uint64)
        out[keys.view(np.uint32).reshape(-1)] = self._sum_percpu(self.stats, keys, vals, 2)
        return out


def split_features(flat: np.ndarray) -> dict:
    """Flat features array -> {Feature: histogram}."""
    off = const.feature_offsets()
    return {f: flat[off[f]: off[f] + const.FEATURE_SIZES[f]] for f in const.Feature}


def hist_delta(cur: np.ndarray, prev: Optional[np.ndarray]) -> np.ndarray:
    if prev is None or prev.shape != cur.shape:
        return np.zeros_like(cur)
    d = cur.astype(np.int64) - prev.astype(np.int64)
    return np.where(d < 0, cur.astype(np.int64), d)
