"""The allowlist and the blocklist in the kernel: owner of the LPM tries
allow_v4, allow_v6, block_v4 and block_v6, of their key and value layouts,
and of the rule that keeps the maps derived from them in step.

A trie is the list. Two kinds of map are derived from it, to spare the
datapath its walk (xdp/maps.h): the list summaries (datapath/summary.py)
and the blocked-host mirror (datapath/hosts.py). Every write goes through
`Trie`, which marks the summary before the trie write and mirrors a host
after it, and drops a host from the mirror before the trie's delete: that
order is what lets the datapath trust a clear summary bit and a mirror
hit. Write the lists through here only (`bpftool map update` would bypass
both).
"""

from __future__ import annotations

import errno
import socket
import struct
from typing import Optional

import numpy as np

from seawall.control.addr import Prefix
from seawall.control.datapath import abi, bpf, hosts, summary
from seawall.control.datapath.bpf import HOST, MapSpec

LISTS = ("allow", "block")
TRIES = {
    ("allow", 4): MapSpec("allow_v4", HOST, bpf.MAP_TYPE_LPM_TRIE, abi.SwLpmV4, abi.SwAllow, abi.MAX_ALLOW_ENTRIES),
    ("allow", 6): MapSpec("allow_v6", HOST, bpf.MAP_TYPE_LPM_TRIE, abi.SwLpmV6, abi.SwAllow, abi.MAX_ALLOW_ENTRIES),
    ("block", 4): MapSpec("block_v4", HOST, bpf.MAP_TYPE_LPM_TRIE, abi.SwLpmV4, abi.SwBlock, abi.MAX_BLOCK_ENTRIES),
    ("block", 6): MapSpec("block_v6", HOST, bpf.MAP_TYPE_LPM_TRIE, abi.SwLpmV6, abi.SwBlock, abi.MAX_BLOCK_ENTRIES),
}
SPECS = tuple(TRIES.values())
BLOCK = abi.dtype(abi.SwBlock)
ALLOW = abi.dtype(abi.SwAllow)


# --- keys and values ------------------------------------------------------------

def key(p: Prefix) -> bytes:
    """struct sw_lpm_v4 / sw_lpm_v6: u32 prefix length (host order), address."""
    return struct.pack("=I", p.prefixlen) + p.packed


def keys(prefixes: list, version: int) -> np.ndarray:
    """key() of many prefixes of one family, as (n, key size) uint8 rows."""
    alen = 4 if version == 4 else 16
    rows = np.empty((len(prefixes), 4 + alen), np.uint8)
    rows[:, :4] = np.array([p.prefixlen for p in prefixes], "=u4").view(np.uint8).reshape(-1, 4)
    rows[:, 4:] = np.frombuffer(b"".join(p.packed for p in prefixes), np.uint8).reshape(-1, alen)
    return rows


def prefix(k: bytes) -> Prefix:
    """The prefix a trie key holds."""
    (plen,) = struct.unpack_from("=I", k)
    addr = bytes(k[4:])
    return Prefix(4 if len(addr) == 4 else 6, addr, plen)


def prefix_lengths(rows: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(rows[:, :4]).view("=u4").reshape(-1)


def block_values(plens: np.ndarray, expires_ns, flags) -> np.ndarray:
    """struct sw_block rows for keys of these prefix lengths; expires_ns and
    flags are one value for all, or one per row."""
    v = np.zeros(len(plens), BLOCK)
    v["expires_ns"] = expires_ns
    v["prefixlen"] = plens
    v["flags"] = flags
    return v.view(np.uint8).reshape(len(plens), -1)


def allow_values(plens: np.ndarray) -> np.ndarray:
    """struct sw_allow rows for keys of these prefix lengths."""
    v = np.zeros(len(plens), ALLOW)
    v["prefixlen"] = plens
    return v.view(np.uint8).reshape(len(plens), -1)


def block(raw: bytes) -> abi.SwBlock:
    return abi.SwBlock.from_buffer_copy(raw)


def cidr(p: Prefix) -> str:
    """str(p), without building an ipaddress object for IPv4 (100k of them
    take half a second); IPv6 keeps ipaddress's canonical text."""
    if p.version == 4:
        return f"{socket.inet_ntoa(p.packed)}/{p.prefixlen}"
    return str(p)


# --- the maps --------------------------------------------------------------------

class Trie(bpf.Map):
    """A list's LPM trie, writing its derived maps in step."""

    summaries: Optional[summary.Summaries] = None
    mirror: Optional[hosts.HostMirror] = None
    lst = ""
    version = 0

    def update(self, key: bytes, value: bytes, flags: int = bpf.BPF_ANY) -> None:
        row = np.frombuffer(bytes(key), np.uint8).reshape(1, -1)
        if self.summaries is not None and len(key) == self.key_size:
            self.summaries.mark(self.lst, self.version, row)
        super().update(key, value, flags)
        if self.mirror is not None and len(key) == self.key_size:
            self.mirror.put(row, np.frombuffer(bytes(value), np.uint8).reshape(1, -1))

    def update_batch(self, keys: np.ndarray, values: np.ndarray, flags: int = bpf.BPF_ANY) -> int:
        keys = np.ascontiguousarray(keys, dtype=np.uint8)
        if self.summaries is not None:
            self.summaries.mark(self.lst, self.version, keys.reshape(len(keys), -1))
        try:
            n = super().update_batch(keys, values, flags)
        except bpf.BpfError as e:
            n = getattr(e, "written", 0)
            if self.mirror is not None and n:
                self.mirror.put(keys[:n], np.asarray(values)[:n])
            raise
        if self.mirror is not None:
            self.mirror.put(keys[:n], np.asarray(values)[:n])
        return n

    def delete(self, key: bytes) -> bool:
        if self.mirror is not None and len(key) == self.key_size:
            self.mirror.drop(np.frombuffer(bytes(key), np.uint8).reshape(1, -1))
        return super().delete(key)

    def delete_batch(self, keys: np.ndarray) -> int:
        if self.mirror is not None:
            self.mirror.drop(keys)
        return super().delete_batch(keys)

    def rows(self) -> tuple:
        """Every (key, value) of the trie as two uint8 arrays: batch reads
        where the kernel has them for tries (6.18 does: 100k entries in
        some 50 ms), else a walk, one syscall per key and one per value."""
        try:
            return self.lookup_batch()
        except bpf.BpfError as e:
            if e.errno not in (errno.EINVAL, errno.EOPNOTSUPP, bpf.ENOTSUPP):
                raise
        items = list(self.items())
        if not items:
            return np.zeros((0, self.key_size), np.uint8), np.zeros((0, self.value_size), np.uint8)
        k = np.frombuffer(b"".join(k for k, _ in items), np.uint8).reshape(-1, self.key_size)
        v = np.frombuffer(b"".join(v for _, v in items), np.uint8).reshape(-1, self.value_size)
        return k, v



def pinned(pin_root: str) -> bool:
    return all(spec.pinned(pin_root) for spec in SPECS)


class ListMaps:
    """The host-wide list maps under one pin root: the four tries, opened
    on first use, with their summaries and host mirrors."""

    def __init__(self, pin_root: str):
        self.pin_root = pin_root
        self.summaries = summary.Summaries(pin_root)
        self.mirrors = {v: hosts.HostMirror(pin_root, v) for v in (4, 6)}
        self._tries: dict = {}

    def trie(self, lst: str, version: int) -> Trie:
        spec = TRIES[(lst, version)]
        if spec not in self._tries:
            t = Trie.open_pinned(spec.path(self.pin_root))
            t.summaries, t.lst, t.version = self.summaries, lst, version
            if lst == "block":
                t.mirror = self.mirrors[version]
            self._tries[spec] = t
        return self._tries[spec]

    def close(self) -> None:
        for t in self._tries.values():
            t.close()
        self._tries.clear()
        self.summaries.close()
        for m in self.mirrors.values():
            m.close()

    def entries(self, lst: str) -> list:
        """[(Prefix, raw value)] of both families' tries."""
        return [(prefix(k), raw) for v in (4, 6) for k, raw in self.trie(lst, v).items()]

    def prefixes(self, lst: str) -> list:
        """The list's prefixes from the kernel alone (no values)."""
        return [prefix(k) for v in (4, 6) for k in self.trie(lst, v).keys()]

    def last_hits(self) -> dict:
        """{address bytes: last_hit_ns} of the blocked hosts (their mirror's stamps)."""
        return {**self.mirrors[4].last_hits(), **self.mirrors[6].last_hits()}

    def last_hit_ns(self, prefixes: list) -> dict:
        """{Prefix: CLOCK_BOOTTIME ns of its last drop, 0 for none} of these
        blocks (absent: not in the blocklist), one lookup each: the stamp
        of its trie entry, or for a host the newer one of its mirror."""
        out = {}
        for p in prefixes:
            raw = self.trie("block", p.version).lookup(key(p))
            if raw is None:
                continue
            ns = block(raw).last_hit_ns
            if p.is_host:
                m = self.mirrors[p.version].map()
                mraw = m.lookup(p.packed) if m is not None else None
                if mraw is not None:
                    ns = max(ns, block(mraw).last_hit_ns)
            out[p] = ns
        return out

    def count(self, lst: str, now_ns: Optional[int] = None) -> dict:
        """Entries of a list: {"entries": n} for the allowlist; for the
        blocklist, live ones by {"auto": n, "manual": n}."""
        if lst == "allow":
            return {"entries": sum(len(self.trie(lst, v).rows()[0]) for v in (4, 6))}
        out = {"auto": 0, "manual": 0}
        for v in (4, 6):
            _, vals = self.trie(lst, v).rows()
            b = vals.view(BLOCK).reshape(-1)
            live = b[abi.live(b["expires_ns"], now_ns)] if now_ns is not None else b
            auto = int(np.count_nonzero(live["flags"] & abi.BlockFlag.AUTO))
            out["auto"] += auto
            out["manual"] += len(live) - auto
        return out

    # --- the derived maps ---------------------------------------------------------

    def rebuild_derived(self, exact: bool = True) -> None:
        """Bring the host mirrors and the summaries in line with the tries,
        dropping the bits of entries since removed (they only cost trie
        walks; exact=False keeps them, Summaries.rebuild). Call it with the
        state lock held. Hosts first: the summaries' flag, set last, says
        the derived maps were built from the tries."""
        keys = {}
        for v, mirror in self.mirrors.items():  # one walk of each blocklist trie serves both
            t = self.trie("block", v)
            items = list(t.items())
            mirror.sync(items)
            keys[("block", v)] = np.frombuffer(b"".join(k for k, _ in items), np.uint8).reshape(-1, t.key_size)
        for v in (4, 6):
            keys[("allow", v)] = self.trie("allow", v).key_rows()
        self.summaries.rebuild(keys, exact)

    def rebuild_summaries(self) -> None:
        """The summaries alone (after deletes: their mirror entries went with them)."""
        self.summaries.rebuild({(lst, v): self.trie(lst, v).key_rows() for lst in LISTS for v in (4, 6)})

