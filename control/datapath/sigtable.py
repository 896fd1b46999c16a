"""The signature table in the kernel: owner of sigs and sig_meta, and of a
rule's kernel form (struct sw_sig).

The datapath scans slots 0 .. used-1 of `sigs` for every packet on no
list while used (slot 0 of `sig_meta`) is not 0, so `used` is kept at the
highest live slot + 1 after every change. Expiry is the datapath's: a rule
past its expires_ns stops matching with no one here.
"""

from __future__ import annotations

from typing import Optional

from seawall.control.datapath import abi, bpf
from seawall.control.datapath.bpf import HOST, MapSpec
from seawall.control.signature import Signature

SIGS = MapSpec("sigs", HOST, bpf.MAP_TYPE_ARRAY, abi.U32, abi.SwSig, abi.MAX_SIGNATURES)
#: slot 0: how many slots to scan
META = MapSpec("sig_meta", HOST, bpf.MAP_TYPE_ARRAY, abi.U32, abi.SwSigMeta, 1)
SPECS = (SIGS, META)

_SLOT0 = b"\0" * 4
EMPTY = abi.SwSig()


def encode(sig: Signature, expires_ns: int) -> abi.SwSig:
    """The rule as the datapath reads it."""
    m = abi.SigMatch
    s = abi.SwSig(proto=sig.proto, match=m.ACTIVE, rate_pps=sig.rate_pps, expires_ns=expires_ns)
    if sig.dport is not None:
        s.match |= m.DPORT
        s.dport = sig.dport
    if sig.sport is not None:
        s.match |= m.SPORT
        s.sport = sig.sport
    if sig.len_min is not None:
        s.match |= m.LEN
        s.len_min, s.len_max = sig.len_min, sig.len_max
    if sig.tcp_flags is not None:
        s.match |= m.FLAGS
        s.tcp_flags = sig.tcp_flags
    if sig.fragment:
        s.match |= m.FRAG
    return s


def decode(s: abi.SwSig) -> Signature:
    """The rule of a slot the control plane wrote (encode()'s inverse)."""
    m = abi.SigMatch(s.match)
    return Signature(
        proto=s.proto,
        dport=s.dport if m & m.DPORT else None,
        sport=s.sport if m & m.SPORT else None,
        len_min=s.len_min if m & m.LEN else None,
        len_max=s.len_max if m & m.LEN else None,
        tcp_flags=s.tcp_flags if m & m.FLAGS else None,
        rate_pps=s.rate_pps,
        fragment=bool(m & m.FRAG),
    )


def active(s: abi.SwSig) -> bool:
    return bool(s.match & abi.SigMatch.ACTIVE)


def slot_key(slot: int) -> bytes:
    return slot.to_bytes(4, "little")


def pinned(pin_root: str) -> bool:
    return all(spec.pinned(pin_root) for spec in SPECS)


class SigTable:
    """The table under one pin root, opened on first use."""

    def __init__(self, pin_root: str):
        self.pin_root = pin_root
        self._sigs: Optional[bpf.Map] = None
        self._meta: Optional[bpf.Map] = None

    @property
    def sigs(self) -> bpf.Map:
        if self._sigs is None:
            self._sigs = SIGS.open(self.pin_root)
        return self._sigs

    @property
    def meta(self) -> bpf.Map:
        if self._meta is None:
            self._meta = META.open(self.pin_root)
        return self._meta

    def close(self) -> None:
        for m in (self._sigs, self._meta):
            if m is not None:
                m.close()
        self._sigs = self._meta = None

    @property
    def size(self) -> int:
        return self.sigs.max_entries

    def slots(self) -> list:
        """[(slot, abi.SwSig)] of every slot, in use or not."""
        m = self.sigs
        return [(i, abi.SwSig.from_buffer_copy(m.lookup(slot_key(i)))) for i in range(m.max_entries)]

    def live(self, now_ns: int) -> list:
        """[(slot, Signature, expires_ns)] of the rules in force at now_ns."""
        return [(i, decode(r), r.expires_ns) for i, r in self.slots()
                if active(r) and abi.live(r.expires_ns, now_ns)]

    def find(self, key: str) -> list:
        """The slots of active rules matching what `key` matches."""
        return [i for i, r in self.slots() if active(r) and decode(r).key == key]

    def place(self, key: str, now_ns: int) -> tuple:
        """(slot, replaced) for a rule matching what `key` matches, from one
        read of the table: the slot of the active rule it replaces, else
        the first one free or holding an expired rule; (None, False) when
        the table is full."""
        slots = self.slots()
        same = [i for i, r in slots if active(r) and decode(r).key == key]
        if same:
            return same[0], True
        free = [i for i, r in slots if not active(r) or not abi.live(r.expires_ns, now_ns)]
        return (free[0] if free else None), False

    def used(self, now_ns: int) -> bytes:
        """struct sw_sig_meta for the slots as they are now."""
        live = [i for i, r in self.slots() if active(r) and abi.live(r.expires_ns, now_ns)]
        return bytes(abi.SwSigMeta(used=max(live) + 1 if live else 0))

    def count(self, now_ns: int) -> int:
        return len(self.live(now_ns))
