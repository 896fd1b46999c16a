"""The per-interface maps: owner of config, stats, events, features,
src_v4, src_v6, hot_v4, hot_v6 and sig_hits (pinned in the interface's own
folder), and of the program's private scratch maps.

Reads land straight in numpy arrays: one batch syscall per chunk of
entries, never one per entry, per-CPU values summed over CPUs. Raw bpf(2),
no bcc.
"""

from __future__ import annotations

import ctypes
import mmap
from typing import Optional

import numpy as np

from seawall.control.addr import Sources
from seawall.control.datapath import abi, bpf
from seawall.control.datapath.bpf import IFACE, SCRATCH, MapSpec

#: slot 0: the interface's flags (abi.CfgFlag), flipped at run time, and
#: the daemon's epoch and hot threshold, written each cycle
CONFIG = MapSpec("config", IFACE, bpf.MAP_TYPE_ARRAY, abi.U32, abi.SwConfig, 1)
#: packets and bytes by abi.Reason, per CPU
STATS = MapSpec("stats", IFACE, bpf.MAP_TYPE_PERCPU_ARRAY, abi.U32, abi.SwCounter, abi.REASON_MAX)
#: counts by abi.Event, per CPU
EVENTS = MapSpec("events", IFACE, bpf.MAP_TYPE_PERCPU_ARRAY, abi.U32, abi.U64, abi.EVENT_MAX)
#: cumulative feature histograms, back to back (abi.feature_offsets): one
#: region of FEATURE_SLOTS per possible CPU, mapped into memory to be read
FEATURES = MapSpec("features", IFACE, bpf.MAP_TYPE_ARRAY, abi.U32, abi.U64, abi.FEATURE_SLOTS * bpf.possible_cpus())
#: tracked sources, by address (network order): an abi.SwSource per
#: possible CPU in one value (maps.h says why not a per-CPU map)
SOURCES = {
    4: MapSpec("src_v4", IFACE, bpf.MAP_TYPE_LRU_HASH, abi.IN_ADDR, abi.SwSource, abi.MAX_SOURCES_V4, cpu_slots=True),
    6: MapSpec("src_v6", IFACE, bpf.MAP_TYPE_LRU_HASH, abi.IN6_ADDR, abi.SwSource, abi.MAX_SOURCES_V6, cpu_slots=True),
}
#: the hot sources (maps.h), counted again since they turned hot
HOT = {
    4: MapSpec("hot_v4", IFACE, bpf.MAP_TYPE_LRU_PERCPU_HASH, abi.IN_ADDR, abi.SwSource, abi.HOT_SOURCES_V4),
    6: MapSpec("hot_v6", IFACE, bpf.MAP_TYPE_LRU_PERCPU_HASH, abi.IN6_ADDR, abi.SwSource, abi.HOT_SOURCES_V6),
}
#: packets and bytes matched per signature slot, per CPU
SIG_HITS = MapSpec("sig_hits", IFACE, bpf.MAP_TYPE_PERCPU_ARRAY, abi.U32, abi.SwCounter, abi.MAX_SIGNATURES)

# The program's private state, never pinned and never read here; declared
# so that every map of the object has an owner (tests reset two of them).
SIG_RATE = MapSpec("sig_rate", SCRATCH, bpf.MAP_TYPE_PERCPU_ARRAY, abi.U32, abi.SwAdmitBucket, abi.MAX_SIGNATURES)
ADMIT_TAGS = MapSpec("admit_tags", SCRATCH, bpf.MAP_TYPE_ARRAY, abi.U32, abi.U32, abi.ADMIT_SLOTS * bpf.possible_cpus())
ADMIT_BUDGET = MapSpec("admit_budget", SCRATCH, bpf.MAP_TYPE_PERCPU_ARRAY, abi.U32, abi.SwAdmitBucket, 1)
STAMP_CACHE = MapSpec("stamp_cache", SCRATCH, bpf.MAP_TYPE_PERCPU_ARRAY, abi.U32, abi.SwStamp, 1)
SRC_ZERO = MapSpec("src_zero", SCRATCH, bpf.MAP_TYPE_ARRAY, abi.U32, abi.SwSource, 1, cpu_slots=True)

SPECS = (CONFIG, STATS, EVENTS, FEATURES, SOURCES[4], SOURCES[6], HOT[4], HOT[6], SIG_HITS,
         SIG_RATE, ADMIT_TAGS, ADMIT_BUDGET, STAMP_CACHE, SRC_ZERO)
PINNED = tuple(s for s in SPECS if s.scope == IFACE)

_SLOT0 = b"\0" * 4


def _map_memory(m: bpf.Map) -> mmap.mmap:
    """An array map made with BPF_F_MMAPABLE, mapped read-only."""
    size = -(-m.value_size * m.max_entries // mmap.PAGESIZE) * mmap.PAGESIZE
    try:
        return mmap.mmap(m.fd, size, mmap.MAP_SHARED, mmap.PROT_READ)
    except OSError as e:
        raise bpf.BpfError(e.errno, f"{m.name}: cannot map it into memory: {e.strerror}") from e


def read_flags(iface_dir: str) -> int:
    """The interface's abi.CfgFlag bits (0 when it has no config map)."""
    if not CONFIG.pinned(iface_dir):
        return 0
    with CONFIG.open(iface_dir) as m:
        raw = m.lookup(_SLOT0)
    return abi.SwConfig.from_buffer_copy(raw).flags if raw else 0


def _rewrite_config(m: bpf.Map, **fields) -> None:
    """Change some fields of the config slot, keeping the others."""
    raw = m.lookup(_SLOT0)
    cfg = abi.SwConfig.from_buffer_copy(raw[:ctypes.sizeof(abi.SwConfig)]) if raw else abi.SwConfig()
    for k, v in fields.items():
        setattr(cfg, k, int(v))
    m.update(_SLOT0, bytes(cfg))


def write_flags(iface_dir: str, flags: int) -> None:
    """Set the interface's flags (monitor mode): the program reads them per
    packet, so no reload is needed."""
    with CONFIG.open(iface_dir) as m:
        _rewrite_config(m, flags=flags)


class IfaceCounters:
    """One interface's counters, opened once and read every cycle."""

    def __init__(self, iface_dir: str):
        self.iface_dir = iface_dir
        self.features = FEATURES.open(iface_dir)
        # a program of an older build, still attached, has them per CPU
        self._features_mem = _map_memory(self.features) if not self.features.percpu else None
        self.sources = {v: spec.open(iface_dir) for v, spec in SOURCES.items()}
        # a program of an older build, still attached, has no hot table
        self.hot = {v: spec.open(iface_dir) for v, spec in HOT.items() if spec.pinned(iface_dir)}
        self.config = CONFIG.open(iface_dir)
        self.stats = STATS.open(iface_dir)
        self.events = EVENTS.open(iface_dir)
        self.sig_hits = SIG_HITS.open(iface_dir)

    def close(self) -> None:
        try:
            if self._features_mem is not None:
                self._features_mem.close()
        except BufferError:  # a caller still holds a view of it: the GC unmaps it
            pass
        for m in (self.features, *self.sources.values(), *self.hot.values(), self.config, self.stats,
                  self.events, self.sig_hits):
            m.close()

    def __enter__(self) -> "IfaceCounters":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def read_features(self) -> np.ndarray:
        """abi.FEATURE_SLOTS cumulative packet counts, summed over CPUs."""
        if self._features_mem is None:
            return self.features.read_array(1)[:, 0]
        ncpu = self.features.max_entries // abi.FEATURE_SLOTS
        regions = np.frombuffer(self._features_mem, np.uint64, count=ncpu * abi.FEATURE_SLOTS)
        return regions.reshape(ncpu, abi.FEATURE_SLOTS).sum(axis=0, dtype=np.uint64)

    def read_sources(self) -> Sources:
        """Every tracked source with its cumulative counters."""
        rows = {}
        for v, m in self.sources.items():
            keys, vals = m.lookup_batch()
            rows[v] = (keys, m.cpu_sum(vals, 3))
        return Sources.from_kernel(*rows[4], *rows[6])

    @property
    def hot_marks(self) -> bool:
        """Whether the attached program keeps hot marks (every build since
        the hot table; an older one, still attached, is read whole)."""
        return len(self.hot) == len(HOT)

    def source_capacity(self) -> int:
        """How many sources the interface's tables can track."""
        return sum(m.max_entries for m in self.sources.values())

    def write_epoch(self, epoch: int, hot_pkts: int) -> None:
        """Start an epoch (the daemon's cycle) and set the hot threshold:
        a source's packets on one CPU in one epoch that make it hot (0:
        no hot marks, the program then keeps no epoch counts)."""
        _rewrite_config(self.config, epoch=epoch & 0xFFFFFFFF, hot_pkts=max(0, min(int(hot_pkts), 0xFFFF)))

    def read_hot(self) -> Sources:
        """The hot sources, with what they sent since they turned hot
        (cumulative, like read_sources)."""
        rows = {}
        for v, m in self.hot.items():
            keys, vals = m.lookup_batch()
            rows[v] = (keys, m.cpu_sum(vals, 3))
        return Sources.from_kernel(*rows[4], *rows[6])

    def read_slice(self, version: int, cursor: Optional[bytes], count: int) -> tuple:
        """(sources, last_epoch, cursor) of up to `count` tracked sources of
        one family, read from `cursor` (None: the start; a None cursor back
        means the table's end was reached). sources: cumulative counters;
        last_epoch: the latest epoch in which any CPU counted the source
        (kept while hot marks are on)."""
        m = self.sources[version]
        keys, vals, nxt = m.lookup_slice(cursor, count)
        per_cpu = np.ascontiguousarray(vals).view(np.uint32).reshape(len(vals), m.ncpu, m.stride // 4)
        epoch_word = abi.SwSource.epoch.offset // 4
        last = per_cpu[:, :, epoch_word].max(axis=1) if len(vals) else np.zeros(0, np.uint32)
        counts = m.cpu_sum(vals, 3) if len(vals) else np.zeros((0, 3), np.uint64)
        none = {4: np.zeros((0, 4), np.uint8), 6: np.zeros((0, 16), np.uint8)}
        k4, v4 = (keys, counts) if version == 4 else (none[4], np.zeros((0, 3), np.uint64))
        k6, v6 = (keys, counts) if version == 6 else (none[6], np.zeros((0, 3), np.uint64))
        return Sources.from_kernel(k4, v4, k6, v6), last, nxt

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

