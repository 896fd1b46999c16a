"""The ports under SYN protection in the kernel: owner of syn_ports, and of
a port's kernel form (struct sw_synport).

Slot `port` of the array is that TCP port's entry. While an entry is
active and not expired, the datapath answers SYNs to the port with cookie
SYN-ACKs and passes its other segments only with a socket or a valid
cookie (xdp/seawall.c, synproxy()). The entry must never be active
without netfilter's SYNPROXY rule for the port beside it: an ACK passed on
for a cookie only SYNPROXY can finish the handshake of (control/synproxy
installs the rule first and removes it last). Expiry is the datapath's:
past expires_ns the port is judged as any other, and SYNs reach
netfilter's SYNPROXY, which answers them itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from seawall.control.datapath import abi, bpf
from seawall.control.datapath.bpf import HOST, SCRATCH, MapSpec

PORTS = 65536
SYN_PORTS = MapSpec("syn_ports", HOST, bpf.MAP_TYPE_ARRAY, abi.U32, abi.SwSynPort, PORTS)
#: the datapath's scratch: a segment's particulars on their way to SYN protection
SYN_ARGS = MapSpec("syn_args", SCRATCH, bpf.MAP_TYPE_PERCPU_ARRAY, abi.U32, abi.SwSynArgs, 1)
SPECS = (SYN_PORTS, SYN_ARGS)

#: what the SYN-ACK advertises when nothing else is said: the MSS of a
#: 1500-byte MTU (the interface's own MTU lowers it in the datapath)
MSS4 = 1460
MSS6 = 1440


@dataclass(frozen=True)
class SynPort:
    port: int
    expires_ns: int  # CLOCK_BOOTTIME ns, 0: never
    auto: bool  # turned on by the daemon
    wscale: int
    mss4: int
    mss6: int


def encode(p: SynPort) -> abi.SwSynPort:
    flags = abi.SynPortFlag.ACTIVE | (abi.SynPortFlag.AUTO if p.auto else 0)
    return abi.SwSynPort(expires_ns=p.expires_ns, flags=int(flags), wscale=p.wscale, mss4=p.mss4, mss6=p.mss6)


def decode(port: int, s: abi.SwSynPort) -> Optional[SynPort]:
    """The port's entry, or None when the slot is not in use."""
    if not s.flags & abi.SynPortFlag.ACTIVE:
        return None
    return SynPort(port, s.expires_ns, bool(s.flags & abi.SynPortFlag.AUTO), s.wscale, s.mss4, s.mss6)


def _key(port: int) -> bytes:
    if not 0 < port < PORTS:
        raise ValueError(f"a TCP port is 1 to 65535, not {port}")
    return port.to_bytes(4, "little")


def pinned(pin_root: str) -> bool:
    return SYN_PORTS.pinned(pin_root)


class SynPortTable:
    """syn_ports under one pin root, opened on first use."""

    def __init__(self, pin_root: str):
        self.pin_root = pin_root
        self._m: Optional[bpf.Map] = None

    @property
    def map(self) -> bpf.Map:
        if self._m is None:
            self._m = SYN_PORTS.open(self.pin_root)
        return self._m

    def close(self) -> None:
        if self._m is not None:
            self._m.close()
            self._m = None

    def get(self, port: int) -> Optional[SynPort]:
        return decode(port, abi.SwSynPort.from_buffer_copy(self.map.lookup(_key(port))))

    def put(self, p: SynPort) -> None:
        self.map.update(_key(p.port), bytes(encode(p)))

    def clear(self, port: int) -> None:
        """The port's slot emptied (an array's slots cannot be deleted)."""
        self.map.update(_key(port), bytes(abi.SwSynPort()))

    def active(self, now_ns: Optional[int] = None) -> list:
        """[SynPort] of the slots in use (and in force at now_ns, if given),
        by port: one batch read of the 65,536 slots (1 MiB)."""
        keys, vals = self.map.lookup_batch(chunk=PORTS)
        rows = vals.view(abi.dtype(abi.SwSynPort)).reshape(-1)
        ports = keys.view("<u4").reshape(-1)
        on = (rows["flags"] & int(abi.SynPortFlag.ACTIVE)) != 0
        if now_ns is not None:
            on &= abi.live(rows["expires_ns"], now_ns)
        return [decode(int(p), abi.SwSynPort.from_buffer_copy(r.tobytes())) for p, r in zip(ports[on], rows[on])]
