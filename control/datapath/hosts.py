"""The blocked-host mirror: owner of block_host_v4 and block_host_v6.

The blocklist's host entries (/32, /128) again, in an exact-match hash the
datapath reads before walking the trie: one lookup where the trie walks
some twenty levels (BENCHMARKS.md).

The rule that keeps verdicts unchanged: every entry here has its twin,
with the same value, in the trie. Writes go to the trie first and then
here; deletes come here first (datapath/tries.py does both). A write here
that fails is only a trie walk for that host, so it is not an error; a
delete here that fails stops the trie's delete, or the mirror would drop a
removed block. The map is looked up by pin on each use: a build that
retires the derived maps (loader.retire_stale_summaries) pins a new one.
"""

from __future__ import annotations

import sys
from typing import Optional

import numpy as np

from seawall.control.datapath import abi, bpf
from seawall.control.datapath.bpf import HOST, MapSpec

HOSTS = {
    4: MapSpec("block_host_v4", HOST, bpf.MAP_TYPE_HASH, abi.IN_ADDR, abi.SwBlock, abi.MAX_BLOCK_ENTRIES),
    6: MapSpec("block_host_v6", HOST, bpf.MAP_TYPE_HASH, abi.IN6_ADDR, abi.SwBlock, abi.MAX_BLOCK_ENTRIES),
}
SPECS = tuple(HOSTS.values())
_BLOCK = abi.dtype(abi.SwBlock)


def pinned(pin_root: str) -> bool:
    return all(spec.pinned(pin_root) for spec in SPECS)


class HostMirror:
    """One family's mirror under a pin root."""

    def __init__(self, pin_root: str, version: int):
        self.path = HOSTS[version].path(pin_root)
        self.full = 32 if version == 4 else 128
        self._m: Optional[bpf.Map] = None

    def map(self) -> Optional[bpf.Map]:
        pinned = bpf.pinned_map_id(self.path)
        if self._m is not None and self._m.id != pinned:
            self.close()
        if self._m is None and pinned is not None:
            try:
                self._m = bpf.Map.open_pinned(self.path)
            except OSError:
                return None
        return self._m

    def close(self) -> None:
        if self._m is not None:
            self._m.close()
            self._m = None

    def _hosts(self, keys: np.ndarray) -> np.ndarray:
        keys = np.ascontiguousarray(keys, np.uint8).reshape(len(keys), -1)
        return keys[:, :4].copy().view("=u4").reshape(-1) == self.full

    def put(self, keys: np.ndarray, values: np.ndarray) -> None:
        """Mirror trie rows just written (any prefix lengths; hosts kept)."""
        hosts = self._hosts(keys)
        m = self.map() if hosts.any() else None
        if m is None:
            return
        keys = np.ascontiguousarray(keys, np.uint8).reshape(len(keys), -1)[hosts, 4:]
        values = np.ascontiguousarray(values, np.uint8).reshape(len(hosts), -1)[hosts]
        try:
            m.update_many(keys, values)
        except OSError:
            # Behind, not wrong: take out what may be half-written, so no
            # entry here differs from its twin.
            for k in keys:
                try:
                    m.delete(k.tobytes())
                except OSError:
                    pass

    def drop(self, keys: np.ndarray) -> None:
        """Remove the hosts among trie rows about to be deleted or rewritten."""
        hosts = self._hosts(keys)
        m = self.map() if hosts.any() else None
        if m is None:
            return
        for k in np.ascontiguousarray(keys, np.uint8).reshape(len(keys), -1)[hosts, 4:]:
            m.delete(k.tobytes())  # a missing key is fine; any other error stops the caller

    def last_hits(self) -> dict:
        """{address bytes: last_hit_ns} of every mirrored host: the datapath
        stamps the entry it hit, which for a host is this one."""
        m = self.map()
        if m is None:
            return {}
        keys, vals = m.lookup_batch()
        hits = vals.view(_BLOCK).reshape(-1)["last_hit_ns"]
        return {k.tobytes(): int(h) for k, h in zip(keys, hits) if h}

    def sync(self, trie_items: list) -> None:
        """Make the mirror exactly the trie's hosts, given the trie's
        (key, value) pairs (under the state lock), keeping the mirror's
        newer last-hit stamps."""
        m = self.map()
        if m is None:
            return
        want = {k[4:]: v for k, v in trie_items if int.from_bytes(k[:4], sys.byteorder) == self.full}
        keys, vals = m.lookup_batch()
        have = {k.tobytes(): v.tobytes() for k, v in zip(keys, vals)}
        for k in have.keys() - want.keys():
            m.delete(k)
        for k, v in want.items():
            old = have.get(k)
            if old is not None:
                o, n = np.frombuffer(old, _BLOCK)[0], np.frombuffer(v, _BLOCK)[0]
                if (o["expires_ns"], o["prefixlen"], o["flags"]) == (n["expires_ns"], n["prefixlen"], n["flags"]):
                    continue
            try:
                m.update(k, v)
            except OSError:
                m.delete(k)

    def empty(self) -> None:
        """Remove every entry (a retired mirror: nobody keeps it in step)."""
        m = self.map()
        if m is not None:
            for k in list(m.keys()):
                m.delete(k)
