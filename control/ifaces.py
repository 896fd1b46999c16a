"""Attached interfaces: attach, detach, monitor mode, status and counters."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Optional

import numpy as np

from . import bpfsys, const, kernel, netlink
from .errors import SeawallError, UsageError
from .state import Paths


@dataclass(frozen=True)
class IfaceStatus:
    ifname: str
    state: str  # attached | stale (pins left, program gone or replaced)
    mode: Optional[str]
    prog_id: Optional[int]
    monitor: bool

    def to_json(self) -> dict:
        return {"interface": self.ifname, "state": self.state, "mode": self.mode,
                "prog_id": self.prog_id, "monitor": self.monitor}


class Interfaces:
    def __init__(self, paths: Paths):
        self.paths = paths
        self.restored = 0  # journal entries the last attach put back into fresh maps
        self.restore_skipped: list = []  # and the journal lines it could not use

    def _dir(self, ifname: str) -> str:
        return kernel.iface_pin_dir(self.paths.pin_root, ifname)

    def _pinned_prog_id(self, ifname: str) -> Optional[int]:
        path = os.path.join(self._dir(ifname), "prog")
        if not os.path.exists(path):
            return None
        fd = bpfsys.obj_get(path)
        try:
            return bpfsys.prog_info(fd).id
        finally:
            os.close(fd)

    def status(self, ifname: str) -> IfaceStatus:
        pinned = self._pinned_prog_id(ifname)
        try:
            xs = netlink.xdp_state(ifname)
        except SeawallError:
            xs = None
        attached = pinned is not None and xs is not None and xs.prog_id == pinned
        monitor = False
        if os.path.exists(os.path.join(self._dir(ifname), "config")):
            monitor = bool(kernel.read_config(self._dir(ifname)) & const.CFG_MONITOR)
        return IfaceStatus(ifname, "attached" if attached else "stale",
                           xs.mode if attached else None, pinned if attached else None, monitor)

    def names(self) -> list:
        d = os.path.join(self.paths.pin_root, "ifaces")
        if not os.path.isdir(d):
            return []
        return sorted(kernel.unpin_name(n) for n in os.listdir(d) if not n.startswith("scratch-"))

    def all(self) -> list:
        return [self.status(n) for n in self.names()]

    def attach(self, ifname: str, mode: str = "auto", monitor: bool = False) -> tuple:
        """Returns (status, action) with action 'attached' or 'updated'."""
        xs = netlink.xdp_state(ifname)  # raises for an unknown interface
        flags = const.CFG_MONITOR if monitor else 0
        if xs.prog_id is not None:
            if xs.prog_id != self._pinned_prog_id(ifname):
                raise SeawallError(
                    f"{ifname} already runs another XDP program (id {xs.prog_id}); "
                    f"remove it first (ip link set dev {ifname} xdp off)")
            if mode != "auto" and mode != xs.mode:
                raise UsageError(f"{ifname} is attached in {xs.mode} mode; detach it first to change mode")
            kernel.write_config(self._dir(ifname), flags)
            return self.status(ifname), "updated"
        # Loading the program creates any missing host-wide map, empty. If
        # they were missing (first use, or a reboot emptied bpffs), put the
        # journal's entries back before the program sees a packet: else it
        # enforces an empty blocklist, and the list store, finding the maps
        # present, never restores them.
        fresh = not all(os.path.exists(os.path.join(self.paths.pin_root, p)) for p in kernel.GLOBAL_PINS)

        def before_attach() -> None:
            from .lists import ListStore

            # Opening the store also builds list summaries the load has
            # just created (a build with another summary size retires the
            # old ones), so the program trusts them from its first packet.
            store = ListStore(self.paths)
            try:
                if fresh:
                    self.restored = store.restore()
                    self.restore_skipped = store.restore_skipped
            finally:
                store.close()

        kernel.attach(ifname, self.paths.pin_root, mode, flags, before_attach=before_attach)
        return self.status(ifname), "attached"

    def detach(self, ifname: str) -> None:
        st = self.status(ifname)
        if st.state != "attached" and not os.path.isdir(self._dir(ifname)):
            raise SeawallError(f"{ifname}: seawall is not attached")
        kernel.detach(ifname, self.paths.pin_root, st.mode if st.state == "attached" else None)

    def set_monitor(self, ifname: str, on: bool) -> IfaceStatus:
        st = self.status(ifname)
        if st.state != "attached":
            raise SeawallError(f"{ifname}: seawall is not attached")
        kernel.write_config(self._dir(ifname), const.CFG_MONITOR if on else 0)
        return self.status(ifname)

    # --- counters ----------------------------------------------------------

    def _percpu_rows(self, ifname: str, name: str, fields: int) -> np.ndarray:
        """Per-CPU array summed over CPUs: shape (entries, fields) of u64."""
        with bpfsys.Map.open_pinned(os.path.join(self._dir(ifname), name)) as m:
            keys, vals = m.lookup_batch()
            out = np.zeros((m.max_entries, fields), np.uint64)
            idx = keys.view(np.uint32).reshape(-1)
            per = vals.view(np.uint64).reshape(len(vals), m.ncpu, m.stride // 8)[:, :, :fields]
            out[idx] = per.sum(axis=1, dtype=np.uint64)
            return out

    def counters(self, ifname: str) -> dict:
        if not os.path.isdir(self._dir(ifname)):
            raise SeawallError(f"{ifname}: seawall is not attached")
        reasons = self._percpu_rows(ifname, "stats", 2)
        events = self._percpu_rows(ifname, "events", 1)
        return {
            "reasons": {r.name.lower(): {"verdict": const.REASON_VERDICT[r],
                                         "packets": int(reasons[r][0]), "bytes": int(reasons[r][1])}
                        for r in const.Reason},
            "events": {e.name.lower(): int(events[e][0]) for e in const.Event},
        }

    def features(self, ifname: str) -> np.ndarray:
        """Cumulative feature histograms summed over CPUs (FEATURE_SLOTS u64)."""
        return self._percpu_rows(ifname, "features", 1)[:, 0]
