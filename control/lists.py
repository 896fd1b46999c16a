"""The allowlist and the blocklist: kernel maps plus the journal.

The pinned LPM tries are what the datapath enforces; the journal remembers
why each entry is there and restores the tries after a reboot. Every write
takes the state lock, changes the kernel, then appends to the journal; a
failure in between leaves the kernel as it was.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import socket
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterable, Optional

import numpy as np

from . import bpfsys, const, summary
from .addr import Prefix
from .errors import SeawallError, UsageError
from .journal import JournalFile, encode, iso, live_at, record
from .signature import Signature
from .state import Clock, Paths, locked


@dataclass(frozen=True)
class Entry:
    prefix: Prefix
    list: str  # block | allow
    expires_at: Optional[float] = None
    reason: str = ""
    source: str = "manual"
    added_at: Optional[float] = None
    last_hit_at: Optional[float] = None

    def to_json(self, now: float) -> dict:
        out = {
            "cidr": str(self.prefix),
            "family": "ipv4" if self.prefix.version == 4 else "ipv6",
            "reason": self.reason,
            "source": self.source,
            "added_at": iso(self.added_at),
        }
        if self.list == "block":
            out["expires_at"] = iso(self.expires_at)
            out["ttl_seconds"] = None if self.expires_at is None else max(0, int(self.expires_at - now))
            out["last_hit_at"] = iso(self.last_hit_at)
        return out


def _map_name(lst: str, version: int) -> str:
    return f"{lst}_v{version}"


#: the LPM tries, by pin name: (list, version)
_TRIES = {"allow_v4": ("allow", 4), "allow_v6": ("allow", 6), "block_v4": ("block", 4), "block_v6": ("block", 6)}


class HostMirror:
    """block_host_v4 / block_host_v6 (xdp/maps.h): the blocklist's host
    entries (/32, /128) again, in an exact-match hash the datapath reads
    before walking the trie.

    The rule that keeps verdicts unchanged: every entry here has its twin,
    with the same value, in the trie. Writes go to the trie first and then
    here; deletes come here first. A write here that fails is only a trie
    walk for that host, so it is not an error; a delete here that fails
    stops the trie's delete, or the mirror would drop a removed block.
    The map is looked up by pin on each use: a build that retires the
    derived maps (kernel.retire_stale_summaries) pins a new one."""

    def __init__(self, pin_root: str, version: int):
        self.path = os.path.join(pin_root, summary.HOST_MAPS[version])
        self.full = 32 if version == 4 else 128
        self._m: Optional[bpfsys.Map] = None

    def map(self) -> Optional[bpfsys.Map]:
        pinned = bpfsys.pinned_map_id(self.path)
        if self._m is not None and self._m.id != pinned:
            self.close()
        if self._m is None and pinned is not None:
            try:
                self._m = bpfsys.Map.open_pinned(self.path)
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
            _update_many(m, keys, values)
        except (OSError, SeawallError):
            # Behind, not wrong: take out what may be half-written, so no
            # entry here differs from its twin.
            for k in keys:
                try:
                    m.delete(k.tobytes())
                except OSError:
                    pass

    def drop(self, keys: np.ndarray) -> None:
        """Remove the hosts among trie rows about to be deleted."""
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
        hits = vals.view(_BLOCK_DTYPE).reshape(-1)["last_hit_ns"]
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
                o, n = np.frombuffer(old, _BLOCK_DTYPE)[0], np.frombuffer(v, _BLOCK_DTYPE)[0]
                if (o["expires_ns"], o["prefixlen"], o["flags"]) == (n["expires_ns"], n["prefixlen"], n["flags"]):
                    continue
            try:
                m.update(k, v)
            except OSError:
                m.delete(k)


class _ListTrie(bpfsys.Map):
    """A list's LPM trie. Every write marks the list's summary first
    (control/summary.py): that order is what lets the datapath skip the
    trie for a source whose summary bit is clear. The blocklist's tries
    also keep their HostMirror in step: written after the trie, deleted
    from before it."""

    summaries: Optional[summary.Summaries] = None
    hosts: Optional[HostMirror] = None
    lst = ""
    version = 0

    def update(self, key: bytes, value: bytes, flags: int = bpfsys.BPF_ANY) -> None:
        if len(key) == self.key_size and self.summaries is not None:
            self.summaries.mark(self.lst, self.version, np.frombuffer(bytes(key), np.uint8).reshape(1, -1))
        super().update(key, value, flags)
        if self.hosts is not None and len(key) == self.key_size:
            self.hosts.put(np.frombuffer(bytes(key), np.uint8).reshape(1, -1),
                           np.frombuffer(bytes(value), np.uint8).reshape(1, -1))

    def update_batch(self, keys: np.ndarray, values: np.ndarray) -> int:
        keys = np.ascontiguousarray(keys, dtype=np.uint8)
        if self.summaries is not None:
            self.summaries.mark(self.lst, self.version, keys.reshape(len(keys), -1))
        try:
            n = super().update_batch(keys, values)
        except bpfsys.BpfError as e:
            n = getattr(e, "written", 0)
            if self.hosts is not None and n:
                self.hosts.put(keys[:n], np.asarray(values)[:n])
            raise
        if self.hosts is not None:
            self.hosts.put(keys[:n], np.asarray(values)[:n])
        return n

    def delete(self, key: bytes) -> bool:
        if self.hosts is not None and len(key) == self.key_size:
            self.hosts.drop(np.frombuffer(bytes(key), np.uint8).reshape(1, -1))
        return super().delete(key)

    def delete_batch(self, keys: np.ndarray) -> int:
        if self.hosts is not None:
            self.hosts.drop(keys)
        return super().delete_batch(keys)


# struct sw_block and struct sw_allow as numpy rows (native order, as the
# ctypes mirrors in const.py)
_BLOCK_DTYPE = np.dtype([("expires_ns", "=u8"), ("last_hit_ns", "=u8"), ("prefixlen", "=u4"), ("flags", "=u4")])
_ALLOW_DTYPE = np.dtype([("prefixlen", "=u4"), ("flags", "=u4")])
assert _BLOCK_DTYPE.itemsize == ctypes.sizeof(const.SwBlock) and _ALLOW_DTYPE.itemsize == ctypes.sizeof(const.SwAllow)
_MARK = "\x00cidr\x00"  # stands for the cidr in a bulk write's journal template
ENOTSUPP = 524  # the kernel's "no such operation" (include/linux/errno.h), e.g. no batch ops


def _cidr(p: Prefix) -> str:
    """str(p), without building an ipaddress object for IPv4 (100k of them
    take half a second); IPv6 keeps ipaddress's canonical text."""
    if p.version == 4:
        return f"{socket.inet_ntoa(p.packed)}/{p.prefixlen}"
    return str(p)


def _lpm_keys(prefixes: list, version: int) -> np.ndarray:
    """struct sw_lpm_v4 / sw_lpm_v6 rows: u32 prefix length (host order), address."""
    alen = 4 if version == 4 else 16
    keys = np.empty((len(prefixes), 4 + alen), np.uint8)
    keys[:, :4] = np.array([p.prefixlen for p in prefixes], "=u4").view(np.uint8).reshape(-1, 4)
    keys[:, 4:] = np.frombuffer(b"".join(p.packed for p in prefixes), np.uint8).reshape(-1, alen)
    return keys


def _update_many(m: bpfsys.Map, keys: np.ndarray, vals: np.ndarray) -> int:
    """Write rows with BPF_MAP_UPDATE_BATCH, or one update at a time where
    the kernel has no batch operation for the map. Returns the count; a
    refused entry raises SeawallError once the ones before it are in."""
    try:
        return m.update_batch(keys, vals)
    except bpfsys.BpfError as e:
        done = getattr(e, "written", 0)
        if done == 0 and e.errno in (errno.EINVAL, ENOTSUPP, errno.EOPNOTSUPP):
            pass  # no batch support: fall back below
        else:
            raise _refused(m, done, len(keys), e) from None
    for i in range(len(keys)):
        try:
            m.update(keys[i].tobytes(), vals[i].tobytes())
        except bpfsys.BpfError as e:
            raise _refused(m, i, len(keys), e) from None
    return len(keys)


class BulkWriteError(SeawallError):
    """A bulk write stopped part way; `written` entries went in (and were journalled)."""

    def __init__(self, msg: str, written: int):
        super().__init__(msg)
        self.written = written


def _refused(m: bpfsys.Map, done: int, total: int, e: OSError) -> BulkWriteError:
    why = f"{m.name} holds at most {m.max_entries} entries" if e.errno in (errno.ENOSPC, errno.E2BIG) else str(e)
    return BulkWriteError(f"wrote {done} of {total} entries: {why}", done)


def _why(e: Exception, m: Optional[bpfsys.Map]) -> str:
    """One line on a map change the kernel refused."""
    if isinstance(e, bpfsys.BpfError) and e.errno in (errno.ENOSPC, errno.E2BIG) and m is not None:
        return f"{m.name} is full ({m.max_entries} entries)"
    return str(e)


class ListStore:
    def __init__(self, paths: Paths, clock: Optional[Clock] = None, create: bool = True):
        self.paths = paths
        self.clock = clock or Clock()
        self.journal = JournalFile(paths.journal)
        self._maps: dict = {}
        self.summaries = summary.Summaries(paths.pin_root)
        self.hosts = {v: HostMirror(paths.pin_root, v) for v in (4, 6)}
        self.restored = 0
        self.restore_skipped: list = []
        self.compaction_held = 0  # unreadable journal lines that kept the last compaction from running
        missing = [p for p in ("allow_v4", "allow_v6", "block_v4", "block_v6", "sigs", "sig_meta")
                   if not os.path.exists(os.path.join(paths.pin_root, p))]
        if missing:
            if not create:
                raise SeawallError(f"no seawall maps under {paths.pin_root} (nothing attached or listed yet)")
            from . import kernel  # compiles once to create the pinned maps

            kernel.ensure_global_maps(paths.pin_root)
            # Fresh maps (first use, or bpffs emptied by a reboot): put back
            # what the journal says is still in force.
            self.restored = self.restore()
        elif create and not all(os.path.exists(os.path.join(paths.pin_root, p)) for p in summary.PINS):
            from . import kernel

            kernel.ensure_global_maps(paths.pin_root)  # lists made by an older seawall: add the summaries
        self._complete_summaries()

    def map(self, lst: str, version: int = 0) -> bpfsys.Map:
        """A pinned map by list and version ("block", 4) or by name. The
        tries come as _ListTrie, which keeps the list summaries in step:
        write them through here only."""
        name = _map_name(lst, version) if version else lst
        if name not in self._maps:
            path = os.path.join(self.paths.pin_root, name)
            trie = _TRIES.get(name)
            if trie is None:
                self._maps[name] = bpfsys.Map.open_pinned(path)
            else:
                m = _ListTrie.open_pinned(path)
                m.summaries, m.lst, m.version = self.summaries, *trie
                if m.lst == "block":
                    m.hosts = self.hosts[m.version]
                self._maps[name] = m
        return self._maps[name]

    def close(self) -> None:
        for m in self._maps.values():
            m.close()
        self._maps.clear()
        self.summaries.close()
        for h in self.hosts.values():
            h.close()

    # --- list summaries ----------------------------------------------------

    def _complete_summaries(self) -> None:
        """Build the summaries from the tries if they are new (the flag in
        list_meta is clear), so the datapath may start trusting them. Under
        the lock, so no write slips between reading the tries and setting
        the flag; without the lock (an unwritable state directory) they
        stay unused, which is slower but never wrong."""
        if self.summaries.summarised() or not all(
                os.path.exists(os.path.join(self.paths.pin_root, p)) for p in summary.PINS):
            return
        try:
            with locked(self.paths):
                if not self.summaries.summarised():
                    self._rebuild_derived()
        except (SeawallError, OSError):
            pass

    def rebuild_summaries(self) -> None:
        """Recompute the summaries from the tries, dropping the bits of
        entries since removed (they only cost trie walks), and bring the
        host mirrors in line with the tries. Takes the lock."""
        with locked(self.paths):
            self._rebuild_derived()

    def _rebuild_derived(self) -> None:
        """Hosts first: the summaries' flag, set last, is what says the
        derived maps were built from the tries."""
        keys = {}
        for v, h in self.hosts.items():  # one walk of each blocklist trie serves both
            items = list(self.map("block", v).items())
            h.sync(items)
            size = self.map("block", v).key_size
            keys[("block", v)] = np.frombuffer(b"".join(k for k, _ in items), np.uint8).reshape(-1, size)
        for v in (4, 6):
            keys[("allow", v)] = summary.trie_keys(self.map("allow", v))
        self.summaries.rebuild(keys)

    # --- blocklist -------------------------------------------------------

    def _block_value(self, prefix: Prefix, expires_at: Optional[float], source: str) -> bytes:
        v = const.SwBlock()
        # clamped: a hand-edited journal's year 9999 must not wrap round into the past
        v.expires_ns = 0 if expires_at is None else min(max(1, self.clock.wall_to_boot_ns(expires_at)), 2**64 - 1)
        v.prefixlen = prefix.prefixlen
        v.flags = const.BLOCK_AUTO if source == "auto" else 0
        return bytes(v)

    def block_add(self, prefix: Prefix, ttl: Optional[int] = None, reason: str = "",
                  source: str = "manual", extra: Optional[dict] = None) -> tuple:
        """Add or replace a block. Returns (Entry, replaced: bool)."""
        now = self.clock.wall()
        expires_at = None if ttl is None else now + ttl
        with locked(self.paths):
            m = self.map("block", prefix.version)
            replaced = m.lookup(prefix.lpm_key()) is not None
            m.update(prefix.lpm_key(), self._block_value(prefix, expires_at, source))
            self.journal.append([record("block", now, str(prefix), expires_at=expires_at,
                                        reason=reason, source=source, **(extra or {}))])
        return Entry(prefix, "block", expires_at, reason, source, now), replaced

    def block_del(self, prefix: Prefix) -> bool:
        now = self.clock.wall()
        with locked(self.paths):
            found = self.map("block", prefix.version).delete(prefix.lpm_key())
            if found:
                self.journal.append([record("unblock", now, str(prefix))])
        return found

    def block_flush(self) -> int:
        """Remove every block; all or nothing (see _all_or_nothing)."""
        now = self.clock.wall()
        keys = [(v, k) for v in (4, 6) for k in self.map("block", v).keys()]
        done = self._all_or_nothing("block", [(v, k, None) for v, k in keys], [record("flush", now)])
        return sum(1 for _, _, old in done if old is not None)

    # --- several changes at once, for the command line ----------------------

    def block_add_all(self, prefixes: list, ttl: Optional[int] = None, reason: str = "") -> list:
        """block_add() for several prefixes, all or nothing. Returns
        [(Entry, replaced)] in the order given."""
        now = self.clock.wall()
        expires_at = None if ttl is None else now + ttl
        changes = [(p.version, p.lpm_key(), self._block_value(p, expires_at, "manual")) for p in prefixes]
        records = [record("block", now, str(p), expires_at=expires_at, reason=reason, source="manual")
                   for p in prefixes]
        done = self._all_or_nothing("block", changes, records)
        return [(Entry(p, "block", expires_at, reason, "manual", now), old is not None)
                for p, (_, _, old) in zip(prefixes, done)]

    def allow_add_all(self, prefixes: list, reason: str = "") -> list:
        """allow_add() for several prefixes, all or nothing."""
        now = self.clock.wall()
        changes = [(p.version, p.lpm_key(), bytes(const.SwAllow(prefixlen=p.prefixlen, flags=0)))
                   for p in prefixes]
        records = [record("allow", now, str(p), reason=reason, source="manual") for p in prefixes]
        done = self._all_or_nothing("allow", changes, records)
        return [(Entry(p, "allow", None, reason, "manual", now), old is not None)
                for p, (_, _, old) in zip(prefixes, done)]

    def block_del_all(self, prefixes: list) -> list:
        """block_del() for several prefixes, all or nothing; [found]."""
        return self._del_all("block", "unblock", prefixes)

    def allow_del_all(self, prefixes: list) -> list:
        return self._del_all("allow", "unallow", prefixes)

    def _del_all(self, lst: str, op: str, prefixes: list) -> list:
        now = self.clock.wall()
        done = self._all_or_nothing(lst, [(p.version, p.lpm_key(), None) for p in prefixes],
                                    [record(op, now, str(p)) for p in prefixes])
        return [old is not None for _, _, old in done]

    def _all_or_nothing(self, lst: str, changes: list, records: list) -> list:
        """Apply kernel changes [(version, key, value, or None to delete)]
        and append the journal records, under the lock. If the kernel
        refuses one (a full trie) or the journal cannot be written, every
        entry already changed is put back as it was and SeawallError says
        that nothing was changed: a failed command changes nothing.
        (The daemon's block_add() keeps its kernel entry when only the
        journal fails: filtering comes first there.) Returns [(map, key,
        previous value or None)] in the order given."""
        done = []
        m = None
        journal = False
        with locked(self.paths):
            try:
                for version, key, value in changes:
                    m = None
                    m = self.map(lst, version)
                    old = m.lookup(key)
                    if value is not None:
                        m.update(key, value)
                    elif old is not None:
                        m.delete(key)
                    done.append((m, key, old))
                journal = True
                self.journal.append(records)
            except (OSError, SeawallError) as e:
                for dm, key, old in reversed(done):
                    try:
                        if old is not None:
                            dm.update(key, old)
                        else:
                            dm.delete(key)
                    except OSError:
                        pass
                if journal:
                    why = f"cannot write the journal {self.journal.path}: " + (
                        e.strerror if isinstance(e, OSError) and e.strerror else str(e))
                else:
                    why = _why(e, m)
                raise SeawallError(f"{why}; nothing was changed") from e
        return done

    def _kernel_entries(self, lst: str) -> list:
        out = []
        for v in (4, 6):
            for k, raw in self.map(lst, v).items():
                out.append((Prefix.from_lpm_key(k), raw))
        return out

    def block_list(self, prune: bool = True) -> list:
        """Live blocks, from the kernel, with the journal's reasons.
        Expired entries are pruned from the kernel on the way (they no
        longer drop: the datapath checks expiry itself)."""
        now_boot = self.clock.boot_ns()
        now = self.clock.wall()
        meta = self.journal.read().blocks
        hits = {**self.hosts[4].last_hits(), **self.hosts[6].last_hits()}
        entries, expired = [], []
        for prefix, raw in self._kernel_entries("block"):
            b = const.SwBlock.from_buffer_copy(raw)
            if prefix.prefixlen == len(prefix.packed) * 8:  # a host: the datapath stamps its mirror
                b.last_hit_ns = max(b.last_hit_ns, hits.get(prefix.packed, 0))
            if b.expires_ns and b.expires_ns <= now_boot:
                expired.append(prefix)
                continue
            d = meta.get(str(prefix))
            entries.append(Entry(
                prefix, "block",
                expires_at=None if not b.expires_ns else now + (b.expires_ns - now_boot) / 1e9,
                reason=d.reason if d else "",
                source="auto" if b.flags & const.BLOCK_AUTO else (d.source if d else "manual"),
                added_at=d.added_at if d else None,
                last_hit_at=None if not b.last_hit_ns else now + (b.last_hit_ns - now_boot) / 1e9,
            ))
        if prune and expired:
            self._prune(expired)
        return sorted(entries, key=lambda e: (e.prefix.version, e.prefix.packed, e.prefix.prefixlen))

    def prune_expired(self) -> int:
        """Remove expired blocks from the kernel. They no longer drop (the
        datapath checks expiry itself), but they keep their trie slots and
        their summary bits until removed. Returns how many went."""
        now_boot = self.clock.boot_ns()
        expired = []
        for prefix, raw in self._kernel_entries("block"):
            b = const.SwBlock.from_buffer_copy(raw)
            if b.expires_ns and b.expires_ns <= now_boot:
                expired.append(prefix)
        return self._prune(expired) if expired else 0

    def _prune(self, expired: list) -> int:
        n = 0
        with locked(self.paths):
            for p in expired:
                m = self.map("block", p.version)
                raw = m.lookup(p.lpm_key())
                # re-check under the lock: a concurrent add may have renewed it
                if raw is not None:
                    b = const.SwBlock.from_buffer_copy(raw)
                    if b.expires_ns and b.expires_ns <= self.clock.boot_ns():
                        n += bool(m.delete(p.lpm_key()))
            # drop the pruned entries' summary bits (their mirror entries went
            # with their deletes: no resync, half the time under the lock)
            if n and self.summaries.summarised():
                self.summaries.rebuild(summary.all_trie_keys(self.map))
        return n

    def compact_journal(self, min_records: int = 10000) -> Optional[tuple]:
        """Rewrite the journal with only what is in force, when history
        (expired and removed decisions) makes up most of it: at least
        min_records records and more than twice the live ones. A journal
        with unreadable lines is left as it is, for the operator to see.
        Returns (records before, records after), or None if left."""
        with locked(self.paths):
            now = self.clock.wall()
            rep = self.journal.read()
            self.compaction_held = 0
            if rep.records < min_records:
                return None
            live = live_at(rep, now)
            kept = len(live.blocks) + len(live.allows) + len(live.sigs)
            if rep.records <= 2 * kept:
                return None
            if rep.skipped:
                self.compaction_held = len(rep.skipped)
                return None
            self.journal.compact(now, rep)
            return rep.records, kept

    # --- bulk writes -----------------------------------------------------

    def block_add_many(self, prefixes: Iterable[Prefix], ttl: Optional[int] = None, reason: str = "",
                       source: str = "manual") -> int:
        """Add or replace many blocks at once, as block_add() does one:
        under one lock, one batched kernel write per family and one journal
        append (one fsync) of every record. 100k entries take a fraction of
        a second (BENCHMARKS.md) where block_add() in a loop takes a lock
        and an fsync each. Returns how many were written; when the kernel
        refuses one (a full trie), the ones before it stay, are journalled,
        and SeawallError says how many."""
        now = self.clock.wall()
        expires_at = None if ttl is None else now + ttl
        expires_ns = 0 if expires_at is None else max(1, self.clock.wall_to_boot_ns(expires_at))
        flags = const.BLOCK_AUTO if source == "auto" else 0

        def values(plens: np.ndarray) -> np.ndarray:
            v = np.zeros(len(plens), _BLOCK_DTYPE)
            v["expires_ns"] = expires_ns
            v["prefixlen"] = plens
            v["flags"] = flags
            return v.view(np.uint8).reshape(len(plens), -1)

        template = record("block", now, _MARK, expires_at=expires_at, reason=reason, source=source)
        return self._add_many("block", prefixes, values, template)

    def allow_add_many(self, prefixes: Iterable[Prefix], reason: str = "") -> int:
        """allow_add() for many prefixes: one lock, one batched kernel write
        per family, one journal append. Returns how many were written."""
        now = self.clock.wall()

        def values(plens: np.ndarray) -> np.ndarray:
            v = np.zeros(len(plens), _ALLOW_DTYPE)
            v["prefixlen"] = plens
            return v.view(np.uint8).reshape(len(plens), -1)

        template = record("allow", now, _MARK, reason=reason, source="manual")
        return self._add_many("allow", prefixes, values, template)

    def _add_many(self, lst: str, prefixes: Iterable[Prefix], values, template: dict) -> int:
        by_version: dict = {4: [], 6: []}
        for p in prefixes:
            by_version[p.version].append(p)
        # every journal line is the template's with its own cidr
        head, tail = encode(template).split(json.dumps(_MARK))
        written: list = []
        with locked(self.paths):
            try:
                for version, ps in by_version.items():
                    if not ps:
                        continue
                    keys = _lpm_keys(ps, version)
                    try:
                        n = _update_many(self.map(lst, version), keys,
                                         values(keys[:, :4].copy().view("=u4").reshape(-1)))
                    except BulkWriteError as e:
                        written.extend(ps[:e.written])
                        raise
                    written.extend(ps[:n])
            finally:
                self.journal.append_encoded("".join(head + json.dumps(_cidr(p)) + tail for p in written))
        return len(written)

    # --- allowlist -------------------------------------------------------

    def allow_add(self, prefix: Prefix, reason: str = "") -> tuple:
        now = self.clock.wall()
        v = const.SwAllow(prefixlen=prefix.prefixlen, flags=0)
        with locked(self.paths):
            m = self.map("allow", prefix.version)
            replaced = m.lookup(prefix.lpm_key()) is not None
            m.update(prefix.lpm_key(), bytes(v))
            self.journal.append([record("allow", now, str(prefix), reason=reason, source="manual")])
        return Entry(prefix, "allow", None, reason, "manual", now), replaced

    def allow_del(self, prefix: Prefix) -> bool:
        now = self.clock.wall()
        with locked(self.paths):
            found = self.map("allow", prefix.version).delete(prefix.lpm_key())
            if found:
                self.journal.append([record("unallow", now, str(prefix))])
        return found

    def allow_prefixes(self) -> list:
        """The allowlist's prefixes, from the kernel alone (no journal
        replay, no values): what the daemon checks its decisions against."""
        return [Prefix.from_lpm_key(k) for v in (4, 6) for k in self.map("allow", v).keys()]

    def allow_list(self) -> list:
        meta = self.journal.read().allows
        out = []
        for prefix, _raw in self._kernel_entries("allow"):
            d = meta.get(str(prefix))
            out.append(Entry(prefix, "allow", None, d.reason if d else "",
                             d.source if d else "manual", d.added_at if d else None))
        return sorted(out, key=lambda e: (e.prefix.version, e.prefix.packed, e.prefix.prefixlen))

    def allowed(self, prefix: Prefix) -> Optional[Prefix]:
        """The allowlist entry covering (or overlapping) prefix, if any."""
        for e in self.allow_list():
            if e.prefix.overlaps(prefix):
                return e.prefix
        return None

    # --- signatures ------------------------------------------------------

    def _sig_slots(self) -> list:
        """[(slot, SwSig)] for every slot of the kernel table."""
        m = self.map("sigs")
        return [(i, const.SwSig.from_buffer_copy(m.lookup(i.to_bytes(4, "little"))))
                for i in range(m.max_entries)]

    def _sig_write(self, slot: int, rule: const.SwSig) -> None:
        self.map("sigs").update(slot.to_bytes(4, "little"), bytes(rule))

    def _sig_used(self) -> None:
        now = self.clock.boot_ns()
        live = [i for i, r in self._sig_slots()
                if r.match & const.SIG_ACTIVE and not (r.expires_ns and r.expires_ns <= now)]
        self.map("sig_meta").update(b"\0" * 4, bytes(const.SwSigMeta(used=max(live) + 1 if live else 0)))

    @contextmanager
    def _sigs_atomic(self, atomic: bool):
        """With atomic, put the signature table back as it was when the
        journal cannot be written: a failed command changes nothing. (The
        daemon's rules stay in the kernel then: filtering comes first.)"""
        if not atomic:
            yield
            return
        m, meta = self.map("sigs"), self.map("sig_meta")
        before = [m.lookup(i.to_bytes(4, "little")) for i in range(m.max_entries)]
        before_meta = meta.lookup(b"\0" * 4)
        try:
            yield
        except OSError as e:
            for i, raw in enumerate(before):
                m.update(i.to_bytes(4, "little"), raw)
            meta.update(b"\0" * 4, before_meta)
            raise SeawallError(f"cannot write the journal {self.journal.path}: {e.strerror or e}; "
                               "nothing was changed") from e

    def sig_add(self, sig: Signature, ttl: Optional[float] = None, reason: str = "",
                source: str = "manual", extra: Optional[dict] = None, atomic: bool = False) -> tuple:
        """Add a rule, or replace the one matching the same packets.
        Returns (Entry-like dict, replaced)."""
        now = self.clock.wall()
        expires_at = None if ttl is None else now + ttl
        expires_ns = 0 if expires_at is None else max(1, self.clock.wall_to_boot_ns(expires_at))
        with locked(self.paths), self._sigs_atomic(atomic):
            boot = self.clock.boot_ns()
            slots = self._sig_slots()
            same = [i for i, r in slots if r.match & const.SIG_ACTIVE and Signature.from_kernel(r).key == sig.key]
            free = [i for i, r in slots if not r.match & const.SIG_ACTIVE
                    or (r.expires_ns and r.expires_ns <= boot)]
            slot = same[0] if same else (free[0] if free else None)
            if slot is None:
                raise SeawallError(f"the signature table is full ({len(slots)} rules); delete one first")
            self._sig_write(slot, sig.to_kernel(expires_ns))
            self._sig_used()
            self.journal.append([record("sig", now, sig.key, expires_at=expires_at, reason=reason,
                                        source=source, rule=sig.to_json(), **(extra or {}))])
        return slot, bool(same)

    def sig_del(self, key: str, atomic: bool = False) -> bool:
        now = self.clock.wall()
        with locked(self.paths), self._sigs_atomic(atomic):
            found = False
            for i, r in self._sig_slots():
                if r.match & const.SIG_ACTIVE and Signature.from_kernel(r).key == key:
                    self._sig_write(i, const.SwSig())
                    found = True
            if found:
                self._sig_used()
                self.journal.append([record("unsig", now, key)])
        return found

    def sig_flush(self, atomic: bool = False) -> int:
        now = self.clock.wall()
        n = 0
        with locked(self.paths), self._sigs_atomic(atomic):
            for i, r in self._sig_slots():
                if r.match & const.SIG_ACTIVE:
                    self._sig_write(i, const.SwSig())
                    n += 1
            self._sig_used()
            self.journal.append([record("sigflush", now)])
        return n

    def sig_list(self) -> list:
        """[(slot, Signature, expires_at, reason, source)] of live rules."""
        boot = self.clock.boot_ns()
        now = self.clock.wall()
        meta = self.journal.read().sigs
        out = []
        for i, r in self._sig_slots():
            if not r.match & const.SIG_ACTIVE or (r.expires_ns and r.expires_ns <= boot):
                continue
            sig = Signature.from_kernel(r)
            d = meta.get(sig.key)
            out.append({
                "slot": i, "rule": sig.key, "action": "drop" if sig.rate_pps == 0 else "limit",
                "rate_pps": sig.rate_pps or None,
                "expires_at": None if not r.expires_ns else now + (r.expires_ns - boot) / 1e9,
                "reason": d.reason if d else "", "source": d.source if d else "manual",
                "signature": sig,
            })
        return out

    # --- restore ---------------------------------------------------------

    def restore(self) -> int:
        """Write the journal's unexpired entries into the kernel maps."""
        now = self.clock.wall()
        with locked(self.paths):
            rep = self.journal.read(now)
            n = 0
            self.restore_skipped = list(rep.skipped)
            for cidr, d in rep.allows.items():
                try:
                    p = Prefix.parse(cidr)
                except UsageError:
                    self.restore_skipped.append((0, f"bad address {cidr!r}"))
                    continue
                self.map("allow", p.version).update(
                    p.lpm_key(), bytes(const.SwAllow(prefixlen=p.prefixlen, flags=0)))
                n += 1
            for cidr, d in rep.blocks.items():
                try:
                    p = Prefix.parse(cidr)
                except UsageError:
                    self.restore_skipped.append((0, f"bad address {cidr!r}"))
                    continue
                self.map("block", p.version).update(p.lpm_key(), self._block_value(p, d.expires_at, d.source))
                n += 1
            slots = self.map("sigs").max_entries
            for slot, (key, d) in enumerate(list(rep.sigs.items())[:slots]):
                try:
                    sig = Signature.from_json(d.extra.get("rule", {}))
                except (UsageError, TypeError, ValueError):
                    self.restore_skipped.append((0, f"bad signature rule {key!r}"))
                    continue
                exp = 0 if d.expires_at is None else max(1, self.clock.wall_to_boot_ns(d.expires_at))
                self._sig_write(slot, sig.to_kernel(exp))
                n += 1
            self._sig_used()
        return n
