"""The per-interface maps: owner of config, stats, events, features,
src_v4, src_v6 and sig_hits (pinned in the interface's own folder), and of
the program's private scratch maps.

Reads land straight in numpy arrays: one batch syscall per chunk of
entries, never one per entry, per-CPU values summed over CPUs. Raw bpf(2),
no bcc.
"""

from __future__ import annotations

import numpy as np

from seawall.control.addr import Sources
from seawall.control.datapath import abi, bpf
from seawall.control.datapath.bpf import IFACE, SCRATCH, MapSpec

#: slot 0: the interface's flags (abi.CfgFlag), flipped at run time
CONFIG = MapSpec("config", IFACE, bpf.MAP_TYPE_ARRAY, abi.U32, abi.SwConfig, 1)
#: packets and bytes by abi.Reason, per CPU
STATS = MapSpec("stats", IFACE, bpf.MAP_TYPE_PERCPU_ARRAY, abi.U32, abi.SwCounter, abi.REASON_MAX)
#: counts by abi.Event, per CPU
EVENTS = MapSpec("events", IFACE, bpf.MAP_TYPE_PERCPU_ARRAY, abi.U32, abi.U64, abi.EVENT_MAX)
#: cumulative feature histograms, back to back (abi.feature_offsets), per CPU
FEATURES = MapSpec("features", IFACE, bpf.MAP_TYPE_PERCPU_ARRAY, abi.U32, abi.U64, abi.FEATURE_SLOTS)
#: tracked sources, by address (network order)
SOURCES = {
    4: MapSpec("src_v4", IFACE, bpf.MAP_TYPE_LRU_PERCPU_HASH, abi.IN_ADDR, abi.SwSource, abi.MAX_SOURCES_V4),
    6: MapSpec("src_v6", IFACE, bpf.MAP_TYPE_LRU_PERCPU_HASH, abi.IN6_ADDR, abi.SwSource, abi.MAX_SOURCES_V6),
}
#: packets and bytes matched per signature slot, per CPU
SIG_HITS = MapSpec("sig_hits", IFACE, bpf.MAP_TYPE_PERCPU_ARRAY, abi.U32, abi.SwCounter, abi.MAX_SIGNATURES)

# The program's private state, never pinned and never read here; declared
# so that every map of the object has an owner (tests reset two of them).
SIG_RATE = MapSpec("sig_rate", SCRATCH, bpf.MAP_TYPE_PERCPU_ARRAY, abi.U32, abi.SwAdmitBucket, abi.MAX_SIGNATURES)
ADMIT_TAGS = MapSpec("admit_tags", SCRATCH, bpf.MAP_TYPE_PERCPU_ARRAY, abi.U32, abi.U32, abi.ADMIT_SLOTS)
ADMIT_BUDGET = MapSpec("admit_budget", SCRATCH, bpf.MAP_TYPE_PERCPU_ARRAY, abi.U32, abi.SwAdmitBucket, 1)
STAMP_CACHE = MapSpec("stamp_cache", SCRATCH, bpf.MAP_TYPE_PERCPU_ARRAY, abi.U32, abi.SwStamp, 1)

SPECS = (CONFIG, STATS, EVENTS, FEATURES, SOURCES[4], SOURCES[6], SIG_HITS,
         SIG_RATE, ADMIT_TAGS, ADMIT_BUDGET, STAMP_CACHE)
PINNED = tuple(s for s in SPECS if s.scope == IFACE)

_SLOT0 = b"\0" * 4


def read_flags(iface_dir: str) -> int:
    """The interface's abi.CfgFlag bits (0 when it has no config map)."""
    if not CONFIG.pinned(iface_dir):
        return 0
    with CONFIG.open(iface_dir) as m:
        raw = m.lookup(_SLOT0)
    return abi.SwConfig.from_buffer_copy(raw).flags if raw else 0


def write_flags(iface_dir: str, flags: int) -> None:
    """Set the interface's flags (monitor mode): the program reads them per
    packet, so no reload is needed."""
    with CONFIG.open(iface_dir) as m:
        m.update(_SLOT0, bytes(abi.SwConfig(flags=int(flags))))


class IfaceCounters:
    """One interface's counters, opened once and read every cycle."""

    def __init__(self, iface_dir: str):
        self.iface_dir = iface_dir
        self.features = FEATURES.open(iface_dir)
        self.sources = {v: spec.open(iface_dir) for v, spec in SOURCES.items()}
        self.stats = STATS.open(iface_dir)
        self.events = EVENTS.open(iface_dir)
        self.sig_hits = SIG_HITS.open(iface_dir)

    def close(self) -> None:
        for m in (self.features, *self.sources.values(), self.stats, self.events, self.sig_hits):
            m.close()

    def __enter__(self) -> "IfaceCounters":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def read_features(self) -> np.ndarray:
        """abi.FEATURE_SLOTS cumulative packet counts."""
        return self.features.read_array(1)[:, 0]

    def read_sources(self) -> Sources:
        """Every tracked source with its cumulative counters."""
        rows = {}
        for v, m in self.sources.items():
            keys, vals = m.lookup_batch()
            rows[v] = (keys, m.cpu_sum(vals, 3))
        return Sources.from_kernel(*rows[4], *rows[6])

    def read_stats(self) -> np.ndarray:
        """(REASON_MAX, 2): packets and bytes per abi.Reason."""
        return self.stats.read_array(2)

    def read_events(self) -> np.ndarray:
        """(EVENT_MAX,): count per abi.Event."""
        return self.events.read_array(1)[:, 0]

    def to_json(self) -> dict:
        """What `seawall stats --json` shows of the interface."""
        reasons, events = self.read_stats(), self.read_events()
        return {
            "reasons": {r.name.lower(): {"verdict": abi.REASON_VERDICT[r],
                                         "packets": int(reasons[r][0]), "bytes": int(reasons[r][1])}
                        for r in abi.Reason},
            "events": {e.name.lower(): int(events[e]) for e in abi.Event},
        }

