"""The allowlist and the blocklist: kernel maps plus the journal.

The pinned LPM tries are what the datapath enforces; the journal remembers
why each entry is there and restores the tries after a reboot. Every write
takes the state lock, changes the kernel, then appends to the journal; a
failure in between leaves the kernel as it was.
"""

from __future__ import annotations

import ctypes
import os
from dataclasses import dataclass
from typing import Optional

from . import bpfsys, const
from .addr import Prefix
from .errors import SeawallError, UsageError
from .journal import JournalFile, iso, record
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


class ListStore:
    def __init__(self, paths: Paths, clock: Optional[Clock] = None, create: bool = True):
        self.paths = paths
        self.clock = clock or Clock()
        self.journal = JournalFile(paths.journal)
        self._maps: dict = {}
        self.restored = 0
        self.restore_skipped: list = []
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

    def map(self, lst: str, version: int = 0) -> bpfsys.Map:
        name = _map_name(lst, version) if version else lst
        if name not in self._maps:
            self._maps[name] = bpfsys.Map.open_pinned(os.path.join(self.paths.pin_root, name))
        return self._maps[name]

    def close(self) -> None:
        for m in self._maps.values():
            m.close()
        self._maps.clear()

    # --- blocklist -------------------------------------------------------

    def _block_value(self, prefix: Prefix, expires_at: Optional[float], source: str) -> bytes:
        v = const.SwBlock()
        v.expires_ns = 0 if expires_at is None else max(1, self.clock.wall_to_boot_ns(expires_at))
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
        now = self.clock.wall()
        n = 0
        with locked(self.paths):
            for v in (4, 6):
                m = self.map("block", v)
                for k in list(m.keys()):
                    n += m.delete(k)
            self.journal.append([record("flush", now)])
        return n

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
        entries, expired = [], []
        for prefix, raw in self._kernel_entries("block"):
            b = const.SwBlock.from_buffer_copy(raw)
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
            with locked(self.paths):
                for p in expired:
                    m = self.map("block", p.version)
                    raw = m.lookup(p.lpm_key())
                    # re-check under the lock: a concurrent add may have renewed it
                    if raw is not None:
                        b = const.SwBlock.from_buffer_copy(raw)
                        if b.expires_ns and b.expires_ns <= self.clock.boot_ns():
                            m.delete(p.lpm_key())
        return sorted(entries, key=lambda e: (e.prefix.version, e.prefix.packed, e.prefix.prefixlen))

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

    def sig_add(self, sig: Signature, ttl: Optional[float] = None, reason: str = "",
                source: str = "manual", extra: Optional[dict] = None) -> tuple:
        """Add a rule, or replace the one matching the same packets.
        Returns (Entry-like dict, replaced)."""
        now = self.clock.wall()
        expires_at = None if ttl is None else now + ttl
        expires_ns = 0 if expires_at is None else max(1, self.clock.wall_to_boot_ns(expires_at))
        with locked(self.paths):
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

    def sig_del(self, key: str) -> bool:
        now = self.clock.wall()
        with locked(self.paths):
            found = False
            for i, r in self._sig_slots():
                if r.match & const.SIG_ACTIVE and Signature.from_kernel(r).key == key:
                    self._sig_write(i, const.SwSig())
                    found = True
            if found:
                self._sig_used()
                self.journal.append([record("unsig", now, key)])
        return found

    def sig_flush(self) -> int:
        now = self.clock.wall()
        n = 0
        with locked(self.paths):
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
