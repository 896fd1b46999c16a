"""List summaries: owner of allow_sum_v4/v6, block_sum_v4/v6 and list_meta.

A bitmap per list says where in the address space the list may have entries, so that the datapath skips the trie walk for a
source no entry can cover (xdp/maps.h, list_summary_bit() in seawall.c).

A trie walk costs one dependent memory access per level, about twenty
levels for 100k entries: for a random-spoofed source each one misses the
cache (BENCHMARKS.md). A summary bit is one array read.

The rule that keeps verdicts unchanged: a bit is set before any entry it
covers enters the trie, and is never cleared while such an entry may be
there. A clear bit then proves the trie has no entry covering the source,
which is all the program concludes from it. Set bits for entries since
deleted only cost a trie walk. Until the summaries have been built from
the tries once (flag SW_LISTS_SUMMARISED in list_meta) the program ignores
them, so maps created by a new program beside old tries are safe.

Index math is pure (numpy); Summaries writes the pinned maps. Every trie
write goes through datapath/tries.py, which calls Summaries.mark() first.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from seawall.control.datapath import abi, bpf
from seawall.control.datapath.bpf import HOST, MapSpec

V6_HASH = 2654435761  # seawall.c's multiplicative hash of an IPv6 source's top 32 bits
_WORDS = 1 << (abi.LIST_SUMMARY_LOG2 - 6)  # u64 words per summary
#: one bitmap per list and family, by (list, version)
SUMMARIES = {(lst, v): MapSpec(f"{lst}_sum_v{v}", HOST, bpf.MAP_TYPE_ARRAY, abi.U32, abi.U64, _WORDS)
             for lst in ("allow", "block") for v in (4, 6)}
#: slot 0: abi.ListsFlag (SUMMARISED once built from the tries)
META = MapSpec("list_meta", HOST, bpf.MAP_TYPE_ARRAY, abi.U32, abi.SwListMeta, 1)
SPECS = (*SUMMARIES.values(), META)


def spans(version: int, keys: np.ndarray, log2: int) -> tuple:
    """The summary bits [start, end) that each LPM key covers.

    keys: (n, 4 + address bytes) uint8 rows of struct sw_lpm_v4/v6 (u32
    prefix length in host order, then the address). IPv4: the address's
    top `log2` bits, or the run of them a shorter prefix covers. IPv6: the
    hash of the top 32 bits, or every bit for a prefix shorter than /32
    (its /32s cannot be listed)."""
    keys = np.ascontiguousarray(keys, np.uint8).reshape(len(keys), -1)
    plen = keys[:, :4].copy().view("=u4").reshape(-1).astype(np.int64)
    top = keys[:, 4:8].copy().view(">u4").reshape(-1).astype(np.uint64)
    size = 1 << log2
    if version == 4:
        plen = np.minimum(plen, 32)
        width = np.where(plen >= log2, 0, log2 - np.minimum(plen, log2))
        start = (top >> np.uint64(32 - log2)).astype(np.int64)
        start = (start >> width) << width
        return start, start + (np.int64(1) << width)
    h = ((top * np.uint64(V6_HASH)) & np.uint64(0xFFFFFFFF)) >> np.uint64(32 - log2)
    start = np.where(plen >= 32, h.astype(np.int64), 0)
    end = np.where(plen >= 32, start + 1, size)
    return start, end


def set_spans(words: np.ndarray, start: np.ndarray, end: np.ndarray) -> None:
    """OR the bits [start, end) of each span into words (uint64), in place."""
    one = end - start == 1
    s = start[one]
    np.bitwise_or.at(words, s >> 6, np.left_shift(np.uint64(1), (s & 63).astype(np.uint64)))
    for a, b in zip(start[~one].tolist(), end[~one].tolist()):  # shorter prefixes: aligned runs
        if b - a >= 64:
            words[a >> 6:b >> 6] = np.uint64(0xFFFFFFFFFFFFFFFF)
        else:
            words[a >> 6] |= np.uint64(((1 << (b - a)) - 1) << (a & 63))


class Summaries:
    """The pinned summary maps of one bpffs folder. Absent maps (made by
    an older program) are looked for again on each use, and maps replaced
    since they were opened (kernel.retire_stale_summaries: a build with
    another summary size) are opened again: marking the retired ones would
    leave the new ones without the bit."""

    def __init__(self, pin_root: str):
        self.pin_root = pin_root
        self._maps: dict = {}

    def _pinned_id(self, spec: MapSpec) -> Optional[int]:
        return bpf.pinned_map_id(spec.path(self.pin_root))

    def _open(self) -> bool:
        if self._maps:
            if self._pinned_id(META) == self._maps[META].id:
                return True
            self.close()  # retired: the pins now name other maps, or none
        if not pinned(self.pin_root):
            return False
        try:
            maps = {spec: spec.open(self.pin_root) for spec in SPECS}
        except OSError:
            return False  # retired meanwhile
        # retiring unpins every map before a new build pins any: a set
        # whose pins all still name it is one build's
        if any(self._pinned_id(spec) != m.id for spec, m in maps.items()):
            for m in maps.values():
                m.close()
            return False
        self._maps = maps
        return True

    def close(self) -> None:
        for m in self._maps.values():
            m.close()
        self._maps = {}

    @staticmethod
    def log2(m: bpf.Map) -> int:
        """Bits per summary, as a log (LIST_SUMMARY_LOG2 of the build that made it)."""
        return int(m.max_entries * 64).bit_length() - 1

    def size_log2(self, lst: str, version: int) -> Optional[int]:
        """log2() of one list's summary, None when there is none."""
        return self.log2(self._maps[SUMMARIES[(lst, version)]]) if self._open() else None

    def summarised(self) -> bool:
        if not self._open():
            return False
        raw = self._maps[META].lookup(_SLOT0)
        return bool(raw) and bool(abi.SwListMeta.from_buffer_copy(raw).flags & abi.ListsFlag.SUMMARISED)

    def mark(self, lst: str, version: int, keys: np.ndarray) -> None:
        """Set the bits of trie keys about to be written. Call it before
        the trie write, with the state lock held (tests write alone)."""
        if len(keys) == 0 or not self._open():
            return
        m = self._maps[SUMMARIES[(lst, version)]]
        start, end = spans(version, keys, self.log2(m))
        first, last = start >> 6, (end - 1) >> 6
        if int((last - first + 1).sum()) <= SPARSE_WORDS:
            # a few entries (one from the CLI, a cycle's blocks from the
            # daemon): read and write only the words they touch; a whole
            # summary is 262,144 words, 76 ms to read
            touched = np.unique(np.concatenate([np.arange(a, b + 1) for a, b in
                                                zip(first.tolist(), last.tolist())])).astype(np.uint32)
            old = np.array([int(np.frombuffer(m.lookup(w.tobytes()), "=u8")[0]) for w in touched], np.uint64)
            local = np.zeros(int(touched[-1]) - int(touched[0]) + 1, np.uint64)
            base = int(touched[0])
            local[touched - base] = old
            set_spans(local, start - (base << 6), end - (base << 6))
            new = local[touched - base]
            changed = new != old
            if changed.any():
                m.update_batch(touched[changed].view(np.uint8).reshape(-1, 4),
                               np.ascontiguousarray(new[changed]).view(np.uint8).reshape(-1, 8))
            return
        words = self._read(m)
        before = words.copy()
        set_spans(words, start, end)
        self._write(m, words, before)

    def rebuild(self, tries: dict, exact: bool = True) -> None:
        """Recompute every summary from the tries' keys ({(list, version):
        (n, key size) uint8}) and mark them complete. Call it with the
        state lock held: the tries must not change meanwhile.

        exact=False writes only the words with a bit set, for summaries
        never built (maps just created start zeroed): the 4 x 2 MiB of
        zeros took 0.25 s of every first start, before the program could
        attach. A bit an interrupted build left set stays set, which only
        costs a trie walk; every entry's bit is set either way."""
        if not self._open():
            return
        for (lst, version), spec in SUMMARIES.items():
            m = self._maps[spec]
            words = np.zeros(m.max_entries, np.uint64)
            keys = tries.get((lst, version))
            if keys is not None and len(keys):
                set_spans(words, *spans(version, keys, self.log2(m)))
            self._write(m, words, None if exact else np.zeros_like(words))
        self.set_flags(abi.ListsFlag.SUMMARISED)

    def set_flags(self, flags: int) -> None:
        """abi.ListsFlag: SUMMARISED lets the datapath trust the summaries."""
        if self._open():
            self._maps[META].update(_SLOT0, bytes(abi.SwListMeta(flags=int(flags))))

    @staticmethod
    def _read(m: bpf.Map) -> np.ndarray:
        keys, vals = m.lookup_batch(chunk=m.max_entries)
        words = np.zeros(m.max_entries, np.uint64)
        words[keys.view(np.uint32).reshape(-1)] = vals.view(np.uint64).reshape(-1)
        return words

    @staticmethod
    def _write(m: bpf.Map, words: np.ndarray, before: Optional[np.ndarray]) -> None:
        idx = np.arange(m.max_entries, dtype=np.uint32) if before is None else \
            np.flatnonzero(words != before).astype(np.uint32)
        if len(idx):
            m.update_batch(idx.view(np.uint8).reshape(-1, 4),
                           np.ascontiguousarray(words[idx]).view(np.uint8).reshape(-1, 8))



_SLOT0 = b"\0" * 4
#: summary words a mark reads and writes one by one, rather than the map whole
SPARSE_WORDS = 2048


def pinned(pin_root: str) -> bool:
    """Are the summaries there (an older seawall made its lists without)?"""
    return all(spec.pinned(pin_root) for spec in SPECS)


def pinned_log2(pin_root: str) -> Optional[int]:
    """LIST_SUMMARY_LOG2 of the summaries pinned under pin_root, None when
    there are none, -1 when they are not all of one size."""
    sizes = set()
    for spec in SUMMARIES.values():
        if spec.pinned(pin_root):
            with spec.open(pin_root) as m:
                sizes.add(Summaries.log2(m))
    if not sizes:
        return None
    return sizes.pop() if len(sizes) == 1 else -1


def disable(pin_root: str) -> None:
    """Clear the flag that lets the datapath trust the summaries pinned
    under pin_root (a program still attached with them walks its tries)."""
    if META.pinned(pin_root):
        with META.open(pin_root) as m:
            m.update(_SLOT0, bytes(abi.SwListMeta(flags=0)))
