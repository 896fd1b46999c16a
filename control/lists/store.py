"""The lists as seawall keeps them: the kernel's maps plus the journal.

The maps are what the datapath enforces (datapath/tries.py, sigtable.py);
the journal (lists/journal.py) remembers why each entry is there and puts
the maps back after a reboot. The command line, the daemon, restore and
pruning all change the lists through one write path, `_commit`, with one
rule: under the state lock the kernel changes are made in order, each
entry's old value kept; if the kernel refuses one (a full trie), or the
journal cannot be written, every entry already changed is put back, and
SeawallError says that nothing was changed.

The one exception is asked for by name: a non-durable write (the daemon's,
`durable=False`) keeps its kernel changes when only the journal fails, and
raises NotDurable instead, because filtering comes first during an attack.
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass
from typing import Callable, Iterable, Optional

import numpy as np

from seawall.control.addr import Prefix
from seawall.control.datapath import abi, bpf, loader, sigtable, summary, tries
from seawall.control.errors import SeawallError, UsageError
from seawall.control.lists.journal import JournalFile, actor, encode, encode_many, iso, live_at, record
from seawall.control.signature import Signature
from seawall.control.state import Clock, Paths, locked


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


class NotDurable(SeawallError):
    """A non-durable write is in the kernel, but its journal records could
    not be written: it will not survive a reboot. `result` is what the
    write returned; `error` the journal's OSError."""

    def __init__(self, msg: str, result, error: OSError):
        super().__init__(msg)
        self.result = result
        self.error = error


class _Undo:
    """The kernel half of one write: every entry changed, with what it held
    before, so that a failure puts each back, newest first."""

    def __init__(self):
        self.log: list = []  # (map, key bytes or (n, k) rows, old value or None)
        self.map: Optional[bpf.Map] = None  # the map of the change under way, for the error

    def put(self, m: bpf.Map, key: bytes, value: bytes) -> bool:
        """Write one entry; True when it replaced one."""
        self.map = m
        old = m.lookup(key)
        m.update(key, value)
        self.log.append((m, key, old))
        return old is not None

    def put_many(self, m: bpf.Map, keys: np.ndarray, values: np.ndarray) -> np.ndarray:
        """Write rows in one batch (a whole bulk block is one syscall, after
        finding each row's old value); returns which replaced an entry."""
        self.map = m
        olds = [m.lookup(k.tobytes()) if there else None for k, there in zip(keys, _present(m, keys))]
        try:
            m.update_many(keys, values)
        except bpf.BpfError as e:
            self._rows(m, keys, olds, getattr(e, "written", 0))  # the rows before the refused one went in
            raise
        self._rows(m, keys, olds, len(keys))
        return np.array([o is not None for o in olds], bool)

    def _rows(self, m: bpf.Map, keys: np.ndarray, olds: list, written: int) -> None:
        new = [i for i in range(written) if olds[i] is None]
        if new:
            self.log.append((m, keys[new], None))
        self.log.extend((m, keys[i].tobytes(), olds[i]) for i in range(written) if olds[i] is not None)

    def delete(self, m: bpf.Map, key: bytes) -> bool:
        """Delete one entry; False when it was not there."""
        self.map = m
        old = m.lookup(key)
        if old is None:
            return False
        m.delete(key)
        self.log.append((m, key, old))
        return True

    def rollback(self) -> None:
        for m, key, old in reversed(self.log):
            try:
                if isinstance(key, np.ndarray):
                    m.delete_many(key)
                elif old is None:
                    m.delete(key)
                else:
                    m.update(key, old)
            except OSError:
                pass
        self.log.clear()


#: rows written at once past which their old values are found by walking the
#: map's keys (one syscall per entry it holds) rather than looking each row up
WALK_FROM = 256


def _present(m: bpf.Map, keys: np.ndarray) -> np.ndarray:
    """Which rows may be in the map already (True: look the row up). A few
    rows: all. Many: those among the map's keys, so that a bulk block into
    a list holding few entries costs no lookup per row."""
    if len(keys) <= WALK_FROM:
        return np.ones(len(keys), bool)
    have = m.key_rows()
    if not len(have):
        return np.zeros(len(keys), bool)
    row = np.dtype((np.void, keys.shape[1]))
    return np.isin(np.ascontiguousarray(keys).view(row).ravel(), np.ascontiguousarray(have).view(row).ravel())


def _why(e: Exception, m: Optional[bpf.Map]) -> str:
    """One line on a change the kernel refused."""
    if isinstance(e, bpf.BpfError) and e.errno in (errno.ENOSPC, errno.E2BIG) and m is not None:
        return f"{m.name} is full ({m.max_entries} entries)"
    return str(e)


class ListStore:
    def __init__(self, paths: Paths, clock: Optional[Clock] = None, create: bool = True):
        self.paths = paths
        self.clock = clock or Clock()
        self.journal = JournalFile(paths.journal)
        self.actor = actor()  # every record says who wrote it (`by`)
        self.maps = tries.ListMaps(paths.pin_root)
        self.sigs = sigtable.SigTable(paths.pin_root)
        self.restored = 0
        self.restore_skipped: list = []
        self.compaction_held = 0  # unreadable journal lines that kept the last compaction from running
        pin_root = paths.pin_root
        if not (tries.pinned(pin_root) and sigtable.pinned(pin_root)):
            if not create:
                raise SeawallError(f"no seawall maps under {pin_root} (nothing attached or listed yet)")
            loader.ensure_global_maps(pin_root, paths.cache_dir)  # compiles once to create the pinned maps
            # Fresh maps (first use, or bpffs emptied by a reboot): put back
            # what the journal says is still in force.
            self.restored = self.restore()
        elif create and not loader.host_maps_pinned(pin_root):
            loader.ensure_global_maps(pin_root, paths.cache_dir)  # lists made by an older seawall: add the derived maps
        self._complete_summaries()

    def close(self) -> None:
        self.maps.close()
        self.sigs.close()

    # --- the write path ---------------------------------------------------------

    def _commit(self, change: Callable[[_Undo], object], records: Callable[[object], str],
                durable: bool = True):
        """Make the kernel changes `change(undo)` and append the journal
        text `records(its result)`, under the lock, all or nothing (module
        docstring). Returns change's result."""
        undo = _Undo()
        with locked(self.paths):
            try:
                result = change(undo)
            except (OSError, SeawallError) as e:
                undo.rollback()
                raise SeawallError(f"{_why(e, undo.map)}; nothing was changed") from e
            try:
                self.journal.append_encoded(records(result))
            except OSError as e:
                why = f"cannot write the journal {self.journal.path}: {e.strerror or e}"
                if durable:
                    undo.rollback()
                    raise SeawallError(f"{why}; nothing was changed") from e
                raise NotDurable(f"{why}; the kernel holds the change, a reboot will lose it", result, e) from e
        return result

    def _expires(self, ttl: Optional[float]) -> tuple:
        """(wall-clock expiry or None, the CLOCK_BOOTTIME expiry the kernel checks: 0 for never)."""
        now = self.clock.wall()
        if ttl is None:
            return None, 0
        return now + ttl, self._boot_ns(now + ttl)

    def _boot_ns(self, wall: float) -> int:
        # clamped: a hand-edited journal's year 9999 must not wrap round into the past
        return min(max(1, self.clock.wall_to_boot_ns(wall)), 2**64 - 1)

    @staticmethod
    def _by_version(prefixes: list) -> dict:
        out: dict = {4: [], 6: []}
        for i, p in enumerate(prefixes):
            out[p.version].append(i)
        return out

    def _put(self, lst: str, prefixes: list, values: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> Callable:
        """A change writing prefixes into a list's tries, values(indices into
        prefixes, their prefix lengths) giving the rows; its result is which
        of them replaced an entry."""
        def change(undo: _Undo) -> list:
            replaced = [False] * len(prefixes)
            for v, idx in self._by_version(prefixes).items():
                if not idx:
                    continue
                rows = tries.keys([prefixes[i] for i in idx], v)
                done = undo.put_many(self.maps.trie(lst, v), rows, values(np.asarray(idx), tries.prefix_lengths(rows)))
                for i, r in zip(idx, done.tolist()):
                    replaced[i] = r
            return replaced
        return change

    def _delete(self, lst: str, prefixes: list) -> Callable:
        def change(undo: _Undo) -> list:
            return [undo.delete(self.maps.trie(lst, p.version), tries.key(p)) for p in prefixes]
        return change

    # --- blocklist --------------------------------------------------------------

    def block_add(self, prefixes: Iterable[Prefix], ttl: Optional[float] = None, reason: Optional[str] = "",
                  source: str = "manual", extra: Optional[dict] = None, durable: bool = True) -> list:
        """Add or replace blocks; reason None keeps the reason of a block
        that is there (see _adding). Returns [(Entry, replaced)] in the
        order given."""
        prefixes = list(prefixes)
        now = self.clock.wall()
        expires_at, expires_ns = self._expires(ttl)
        flags = abi.BlockFlag.AUTO if source == "auto" else 0
        put = self._put("block", prefixes, lambda _, plens: tries.block_values(plens, expires_ns, flags))
        replaced, reasons = self._commit(*self._adding("block", now, prefixes, reason, put, durable=durable,
                                                       expires_at=expires_at, source=source, **(extra or {})))
        return [(Entry(p, "block", expires_at, why, source, now), r)
                for p, r, why in zip(prefixes, replaced, reasons)]

    def _adding(self, lst: str, now: float, prefixes: list, reason: Optional[str], put: Callable,
                durable: bool = True, **fields) -> tuple:
        """_commit's arguments for an add of prefixes to list lst by put,
        whose result is (which replaced an entry, each one's reason).
        reason None keeps the reason the journal has for an entry in force
        (a re-add), and is "" for a new one; read under the lock, so that
        no write slips between."""
        def change(undo: _Undo) -> tuple:
            if reason is None:
                live = self.journal.read(now)
                have = live.blocks if lst == "block" else live.allows
                reasons = [have[c].reason if c in have else "" for c in map(tries.cidr, prefixes)]
            else:
                reasons = [reason] * len(prefixes)
            return put(undo), reasons

        def records(result: tuple) -> str:
            groups: dict = {}  # one template per reason (encode_many)
            for p, why in zip(prefixes, result[1]):
                groups.setdefault(why, []).append(tries.cidr(p))
            return "".join(encode_many(lst, now, cidrs, reason=why, **{"by": self.actor, **fields})
                           for why, cidrs in groups.items())

        return change, records, durable

    def block_add_each(self, items: list, source: str = "manual", durable: bool = True) -> list:
        """Add or replace blocks, each with its own ttl, reason and extra
        fields: items are (prefix, ttl, reason, extra). One lock, one batch
        write per list and one journal append for all (the daemon's blocks
        of one cycle: 256 at most, 0.3 ms each when added one by one).
        Returns [(Entry, replaced)] in the order given."""
        items = list(items)
        if not items:
            return []
        now = self.clock.wall()
        expiry = [self._expires(ttl) for _, ttl, _, _ in items]
        flags = abi.BlockFlag.AUTO if source == "auto" else 0
        prefixes = [p for p, _, _, _ in items]
        expires_ns = np.array([ns for _, ns in expiry], np.uint64)

        def records(_) -> str:
            return "".join(encode(record("block", now, tries.cidr(p), expires_at=at, reason=reason, source=source,
                                         **{"by": self.actor, **(extra or {})}))
                           for (p, _, reason, extra), (at, _) in zip(items, expiry))

        replaced = self._commit(
            self._put("block", prefixes, lambda idx, plens: tries.block_values(plens, expires_ns[idx], flags)),
            records, durable)
        return [(Entry(p, "block", at, reason, source, now), r)
                for (p, _, reason, _), (at, _), r in zip(items, expiry, replaced)]

    def block_del(self, prefixes: Iterable[Prefix]) -> list:
        """Remove blocks; [found] in the order given."""
        return self._del("block", "unblock", list(prefixes))

    def block_flush(self) -> int:
        """Remove every block, manual and automatic; how many there were."""
        now = self.clock.wall()
        return sum(self._commit(self._delete("block", self.maps.prefixes("block")),
                                lambda _: encode(record("flush", now, by=self.actor))))

    def _del(self, lst: str, op: str, prefixes: list) -> list:
        now = self.clock.wall()
        return self._commit(self._delete(lst, prefixes),
                            lambda found: encode_many(op, now, [str(p) for p, f in zip(prefixes, found) if f],
                                                      by=self.actor))

    def block_list(self, prune: bool = True) -> list:
        """Live blocks, from the kernel, with the journal's reasons.
        Expired entries are pruned from the kernel on the way (they no
        longer drop: the datapath checks expiry itself)."""
        now_boot = self.clock.boot_ns()
        now = self.clock.wall()
        meta = self.journal.read().blocks
        hits = self.maps.last_hits()
        entries, expired = [], []
        for prefix, raw in self.maps.entries("block"):
            b = tries.block(raw)
            if prefix.is_host:  # the datapath stamps its mirror entry
                b.last_hit_ns = max(b.last_hit_ns, hits.get(prefix.packed, 0))
            if not abi.live(b.expires_ns, now_boot):
                expired.append(prefix)
                continue
            d = meta.get(str(prefix))
            entries.append(Entry(
                prefix, "block",
                expires_at=None if not b.expires_ns else now + (b.expires_ns - now_boot) / 1e9,
                reason=d.reason if d else "",
                source="auto" if b.flags & abi.BlockFlag.AUTO else (d.source if d else "manual"),
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
        expired = [p for p, raw in self.maps.entries("block")
                   if not abi.live(tries.block(raw).expires_ns, now_boot)]
        return self._prune(expired) if expired else 0

    def _prune(self, expired: list) -> int:
        def change(undo: _Undo) -> int:
            n = 0
            now_boot = self.clock.boot_ns()
            for p in expired:
                t = self.maps.trie("block", p.version)
                raw = t.lookup(tries.key(p))
                # re-check under the lock: a concurrent add may have renewed it
                if raw is not None and not abi.live(tries.block(raw).expires_ns, now_boot):
                    n += undo.delete(t, tries.key(p))
            # drop the pruned entries' summary bits (their mirror entries went
            # with their deletes: no resync, half the time under the lock)
            if n and self.maps.summaries.summarised():
                self.maps.rebuild_summaries()
            return n
        return self._commit(change, lambda _: "")

    # --- allowlist ----------------------------------------------------------------

    def allow_add(self, prefixes: Iterable[Prefix], reason: Optional[str] = "") -> list:
        """Add or replace allowlist entries; reason None keeps the reason of
        an entry that is there. Returns [(Entry, replaced)]."""
        prefixes = list(prefixes)
        now = self.clock.wall()
        put = self._put("allow", prefixes, lambda _, plens: tries.allow_values(plens))
        replaced, reasons = self._commit(*self._adding("allow", now, prefixes, reason, put, source="manual"))
        return [(Entry(p, "allow", None, why, "manual", now), r) for p, r, why in zip(prefixes, replaced, reasons)]

    def allow_del(self, prefixes: Iterable[Prefix]) -> list:
        return self._del("allow", "unallow", list(prefixes))

    def allow_flush(self) -> int:
        """Remove every allowlist entry; how many there were. Journalled as
        one removal each (the allowlist is short), which any seawall
        replays."""
        return sum(self._del("allow", "unallow", self.maps.prefixes("allow")))

    def allow_prefixes(self) -> list:
        """The allowlist's prefixes, from the kernel alone (no journal
        replay, no values): what the daemon checks its decisions against."""
        return self.maps.prefixes("allow")

    def allow_list(self) -> list:
        meta = self.journal.read().allows
        out = []
        for prefix, _raw in self.maps.entries("allow"):
            d = meta.get(str(prefix))
            out.append(Entry(prefix, "allow", None, d.reason if d else "",
                             d.source if d else "manual", d.added_at if d else None))
        return sorted(out, key=lambda e: (e.prefix.version, e.prefix.packed, e.prefix.prefixlen))

    def covering(self, lst: str, prefix: Prefix) -> Optional[Entry]:
        """The live entry of list lst ("block" or "allow") that decides for
        prefix: the longest one containing it, as the datapath's longest
        match finds it (an expired block is passed over there too)."""
        entries = self.block_list() if lst == "block" else self.allow_list()
        return max((e for e in entries if e.prefix.contains(prefix)), key=lambda e: e.prefix.prefixlen, default=None)

    def allowed(self, prefix: Prefix) -> Optional[Prefix]:
        """The allowlist entry covering (or overlapping) prefix, if any."""
        for e in self.allow_list():
            if e.prefix.overlaps(prefix):
                return e.prefix
        return None

    # --- signatures -------------------------------------------------------------

    def _sig_meta(self, undo: _Undo) -> None:
        undo.put(self.sigs.meta, sigtable.slot_key(0), self.sigs.used(self.clock.boot_ns()))

    def sig_add(self, sig: Signature, ttl: Optional[float] = None, reason: str = "", source: str = "manual",
                extra: Optional[dict] = None, durable: bool = True) -> tuple:
        """Add a rule, or replace the one matching the same packets.
        Returns (slot, replaced)."""
        now = self.clock.wall()
        expires_at, expires_ns = self._expires(ttl)

        def change(undo: _Undo) -> tuple:
            slot, replaced = self.sigs.place(sig.key, self.clock.boot_ns())
            if slot is None:
                raise SeawallError(f"the signature table is full ({self.sigs.size} rules); delete one first")
            undo.put(self.sigs.sigs, sigtable.slot_key(slot), bytes(sigtable.encode(sig, expires_ns)))
            self._sig_meta(undo)
            return slot, replaced

        return self._commit(change, lambda _: encode(record(
            "sig", now, sig.key, expires_at=expires_at, reason=reason, source=source, rule=sig.to_json(),
            **{"by": self.actor, **(extra or {})})), durable)

    def sig_del(self, key: str) -> bool:
        """Delete the rule matching what `key` matches (its text as listed)."""
        now = self.clock.wall()

        def change(undo: _Undo) -> bool:
            slots = self.sigs.find(key)
            for i in slots:
                undo.put(self.sigs.sigs, sigtable.slot_key(i), bytes(sigtable.EMPTY))
            if slots:
                self._sig_meta(undo)
            return bool(slots)

        return self._commit(change, lambda found: encode(record("unsig", now, key, by=self.actor)) if found else "")

    def sig_flush(self) -> int:
        now = self.clock.wall()

        def change(undo: _Undo) -> int:
            slots = [i for i, r in self.sigs.slots() if sigtable.active(r)]
            for i in slots:
                undo.put(self.sigs.sigs, sigtable.slot_key(i), bytes(sigtable.EMPTY))
            self._sig_meta(undo)
            return len(slots)

        return self._commit(change, lambda _: encode(record("sigflush", now, by=self.actor)))

    def sig_list(self) -> list:
        """[dict(slot, rule, action, rate_pps, expires_at, reason, source,
        signature)] of the rules in force."""
        boot = self.clock.boot_ns()
        now = self.clock.wall()
        meta = self.journal.read().sigs
        out = []
        for slot, sig, expires_ns in self.sigs.live(boot):
            d = meta.get(sig.key)
            out.append({
                "slot": slot, "rule": sig.key, "action": "drop" if sig.rate_pps == 0 else "limit",
                "rate_pps": sig.rate_pps or None,
                "expires_at": None if not expires_ns else now + (expires_ns - boot) / 1e9,
                "reason": d.reason if d else "", "source": d.source if d else "manual",
                "signature": sig,
            })
        return out

    # --- restore, summaries, journal ---------------------------------------------

    def restore(self) -> int:
        """Write the journal's unexpired entries into the kernel maps (fresh
        ones: first use, or a reboot emptied bpffs). Entries the journal
        cannot say properly are skipped and listed in restore_skipped."""
        rep = self.journal.read(self.clock.wall())
        self.restore_skipped = list(rep.skipped)
        wanted: dict = {"allow": [], "block": []}
        for lst, decisions in (("allow", rep.allows), ("block", rep.blocks)):
            for cidr, d in decisions.items():
                try:
                    wanted[lst].append((Prefix.parse(cidr), d))
                except UsageError:
                    self.restore_skipped.append((0, f"bad address {cidr!r}"))
        rules = []
        for key, d in list(rep.sigs.items())[:abi.MAX_SIGNATURES]:
            try:
                sig = Signature.from_json(d.extra.get("rule", {}))
            except (UsageError, TypeError, ValueError):
                self.restore_skipped.append((0, f"bad signature rule {key!r}"))
                continue
            rules.append((sig, 0 if d.expires_at is None else self._boot_ns(d.expires_at)))

        blocks = [d for _, d in wanted["block"]]
        expires = np.array([0 if d.expires_at is None else self._boot_ns(d.expires_at) for d in blocks], np.uint64)
        flags = np.array([abi.BlockFlag.AUTO if d.source == "auto" else 0 for d in blocks], np.uint32)
        put_allows = self._put("allow", [p for p, _ in wanted["allow"]], lambda _, plens: tries.allow_values(plens))
        put_blocks = self._put("block", [p for p, _ in wanted["block"]],
                               lambda idx, plens: tries.block_values(plens, expires[idx], flags[idx]))

        def change(undo: _Undo) -> int:
            put_allows(undo)
            put_blocks(undo)
            for slot, (sig, expires_ns) in enumerate(rules):
                undo.put(self.sigs.sigs, sigtable.slot_key(slot), bytes(sigtable.encode(sig, expires_ns)))
            self._sig_meta(undo)
            return len(wanted["allow"]) + len(wanted["block"]) + len(rules)

        return self._commit(change, lambda _: "")

    def _complete_summaries(self) -> None:
        """Build the summaries from the tries if they are new (the flag in
        list_meta is clear), so the datapath may start trusting them. Under
        the lock, so no write slips between reading the tries and setting
        the flag; without the lock (an unwritable state directory) they
        stay unused, which is slower but never wrong."""
        if self.maps.summaries.summarised() or not summary.pinned(self.paths.pin_root):
            return
        try:
            with locked(self.paths):
                if not self.maps.summaries.summarised():
                    self.maps.rebuild_derived(exact=False)  # never built: the set words suffice
        except (SeawallError, OSError):
            pass

    def rebuild_derived(self) -> None:
        """Recompute the summaries and host mirrors from the tries. Takes the lock."""
        with locked(self.paths):
            self.maps.rebuild_derived()

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


def lists_pinned(pin_root: str) -> bool:
    """Are the lists there (made by an attach or a list edit)?"""
    return os.path.isdir(pin_root) and tries.pinned(pin_root) and sigtable.pinned(pin_root)
