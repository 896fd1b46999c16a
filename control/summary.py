"""List summaries: a bitmap per list saying where in the address space the
list may have entries, so that the datapath skips the trie walk for a
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
write goes through control/lists.py, which calls Summaries.mark() first.
"""

from __future__ import annotations

import os
from typing import Iterable, Optional

import numpy as np

from . import bpfsys, const

V6_HASH = 2654435761  # seawall.c's multiplicative hash of an IPv6 source's top 32 bits
SUMMARY_MAPS = {("allow", 4): "allow_sum_v4", ("allow", 6): "allow_sum_v6",
                ("block", 4): "block_sum_v4", ("block", 6): "block_sum_v6"}
META_MAP = "list_meta"
PINS = tuple(SUMMARY_MAPS.values()) + (META_MAP,)
#: the blocklist's host mirrors (lists.HostMirror), derived from the tries too
HOST_MAPS = {4: "block_host_v4", 6: "block_host_v6"}


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

    def _pinned_id(self, name: str) -> Optional[int]:
        return bpfsys.pinned_map_id(os.path.join(self.pin_root, name))

    def _open(self) -> bool:
        if self._maps:
            if self._pinned_id(META_MAP) == self._maps[META_MAP].id:
                return True
            self.close()  # retired: the pins now name other maps, or none
        if not all(os.path.exists(os.path.join(self.pin_root, p)) for p in PINS):
            return False
        try:
            maps = {name: bpfsys.Map.open_pinned(os.path.join(self.pin_root, name)) for name in PINS}
        except OSError:
            return False  # retired meanwhile
        # retiring unpins every map before a new build pins any: a set
        # whose pins all still name it is one build's
        if any(self._pinned_id(name) != m.id for name, m in maps.items()):
            for m in maps.values():
                m.close()
            return False
        self._maps = maps
        return True

    def close(self) -> None:
        for m in self._maps.values():
            m.close()
        self._maps = {}

    def log2(self, name: str) -> int:
        """Bits per summary, as a log (LIST_SUMMARY_LOG2 of the build that made it)."""
        return int(self._maps[name].max_entries * 64).bit_length() - 1

    def summarised(self) -> bool:
        if not self._open():
            return False
        raw = self._maps[META_MAP].lookup(b"\0" * 4)
        return bool(raw) and bool(const.SwListMeta.from_buffer_copy(raw).flags & const.LISTS_SUMMARISED)

    def mark(self, lst: str, version: int, keys: np.ndarray) -> None:
        """Set the bits of trie keys about to be written. Call it before
        the trie write, with the state lock held (tests write alone)."""
        if len(keys) == 0 or not self._open():
            return
        m = self._maps[SUMMARY_MAPS[(lst, version)]]
        start, end = spans(version, keys, self.log2(m.name))
        if len(keys) <= 4 and int((end - start).max()) <= 64:
            # the common case, one entry: read and write one word (an
            # aligned run of at most 64 bits never straddles two)
            for w in sorted(set((start >> 6).tolist())):
                key = np.array([w], "=u4").tobytes()
                old = int(np.frombuffer(m.lookup(key), "=u8")[0])
                new = old
                for a, b in zip(start.tolist(), end.tolist()):
                    if a >> 6 == w:
                        new |= ((1 << (b - a)) - 1) << (a & 63)
                if new != old:
                    m.update(key, np.array([new], "=u8").tobytes())
            return
        words = self._read(m)
        before = words.copy()
        set_spans(words, start, end)
        self._write(m, words, before)

    def rebuild(self, tries: dict) -> None:
        """Recompute every summary from the tries' keys ({(list, version):
        (n, key size) uint8}) and mark them complete. Call it with the
        state lock held: the tries must not change meanwhile."""
        if not self._open():
            return
        for (lst, version), name in SUMMARY_MAPS.items():
            m = self._maps[name]
            words = np.zeros(m.max_entries, np.uint64)
            keys = tries.get((lst, version))
            if keys is not None and len(keys):
                set_spans(words, *spans(version, keys, self.log2(name)))
            self._write(m, words, None)
        meta = const.SwListMeta(flags=const.LISTS_SUMMARISED)
        self._maps[META_MAP].update(b"\0" * 4, bytes(meta))

    @staticmethod
    def _read(m: bpfsys.Map) -> np.ndarray:
        keys, vals = m.lookup_batch(chunk=m.max_entries)
        words = np.zeros(m.max_entries, np.uint64)
        words[keys.view(np.uint32).reshape(-1)] = vals.view(np.uint64).reshape(-1)
        return words

    @staticmethod
    def _write(m: bpfsys.Map, words: np.ndarray, before: Optional[np.ndarray]) -> None:
        idx = np.arange(m.max_entries, dtype=np.uint32) if before is None else \
            np.flatnonzero(words != before).astype(np.uint32)
        if len(idx):
            m.update_batch(idx.view(np.uint8).reshape(-1, 4),
                           np.ascontiguousarray(words[idx]).view(np.uint8).reshape(-1, 8))


def trie_keys(m: bpfsys.Map) -> np.ndarray:
    """Every key of an LPM trie (one syscall each: tries have no batch read)."""
    keys = list(m.keys())
    if not keys:
        return np.zeros((0, m.key_size), np.uint8)
    return np.frombuffer(b"".join(keys), np.uint8).reshape(-1, m.key_size)


def all_trie_keys(open_map, versions: Iterable[int] = (4, 6)) -> dict:
    return {(lst, v): trie_keys(open_map(lst, v)) for lst in ("allow", "block") for v in versions}
