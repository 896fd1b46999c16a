"""Attached interfaces: attach, detach, monitor mode and status."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Optional

from seawall.control.datapath import abi, counters, loader, netlink
from seawall.control.errors import SeawallError, UsageError
from seawall.control.state import Paths


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
        return loader.iface_dir(self.paths.pin_root, ifname)

    def _pinned_prog_id(self, ifname: str) -> Optional[int]:
        return loader.pinned_prog_id(self.paths.pin_root, ifname)

    def status(self, ifname: str) -> IfaceStatus:
        pinned = self._pinned_prog_id(ifname)
        try:
            xs = netlink.xdp_state(ifname)
        except SeawallError:
            xs = None
        attached = pinned is not None and xs is not None and xs.prog_id == pinned
        monitor = bool(counters.read_flags(self._dir(ifname)) & abi.CfgFlag.MONITOR)
        return IfaceStatus(ifname, "attached" if attached else "stale",
                           xs.mode if attached else None, pinned if attached else None, monitor)

    def names(self) -> list:
        d = loader.ifaces_dir(self.paths.pin_root)
        if not os.path.isdir(d):
            return []
        return sorted(loader.unpin_name(n) for n in os.listdir(d) if not n.startswith("scratch-"))

    def all(self) -> list:
        return [self.status(n) for n in self.names()]

    def attach(self, ifname: str, mode: str = "auto", monitor: Optional[bool] = False,
               defines: Optional[dict] = None, replace: bool = False) -> tuple:
        """Returns (status, action) with action 'attached', 'updated',
        'unchanged', 'replaced' or 'current'. monitor: True or False sets
        the kernel's mode; None leaves an attached interface's mode as it
        is (and attaches a new one enforcing). defines: tunables.h values
        for the build a new attach loads. An interface already attached
        keeps its program and tables; with replace, this build takes the
        running program's place in one step ('replaced'; 'current' when it
        is this build already), keeping its tables and mode."""
        xs = netlink.xdp_state(ifname)  # raises for an unknown interface
        flags = abi.CfgFlag.MONITOR if monitor else 0
        if xs.prog_id is not None:
            if xs.prog_id != self._pinned_prog_id(ifname):
                raise SeawallError(
                    f"{ifname} already runs another XDP program (id {xs.prog_id}); "
                    f"remove it first (ip link set dev {ifname} xdp off)")
            if mode != "auto" and mode != xs.mode:
                raise UsageError(f"{ifname} is attached in {xs.mode} mode; detach it first to change mode")
            action = "unchanged" if monitor is None else "updated"
            if replace:
                done = loader.replace(ifname, self.paths.pin_root, xs.mode, defines, self._list_maps_ready(False),
                                      self.paths.cache_dir)
                action = "replaced" if done else "current"
            if monitor is not None:
                counters.write_flags(self._dir(ifname), flags)
            return self.status(ifname), action
        loader.attach(ifname, self.paths.pin_root, mode, flags, defines=defines,
                      before_attach=self._list_maps_ready(not loader.host_maps_pinned(self.paths.pin_root)),
                      cache_dir=self.paths.cache_dir)
        return self.status(ifname), "attached"

    def _list_maps_ready(self, fresh: bool):
        """What to do once a load has made its maps, before its program
        sees a packet. Loading creates any missing host-wide map, empty:
        if they were missing (fresh: first use, or a reboot emptied bpffs),
        the journal's entries go back in, else the program enforces an
        empty blocklist (and the list store, finding the maps present,
        never restores them)."""

        def before_attach() -> None:
            from seawall.control.lists.store import ListStore

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

        return before_attach

    def detach(self, ifname: str) -> None:
        st = self.status(ifname)
        if st.state != "attached" and not os.path.isdir(self._dir(ifname)):
            raise SeawallError(f"{ifname}: seawall is not attached")
        loader.detach(ifname, self.paths.pin_root, st.mode if st.state == "attached" else None)

    def set_monitor(self, ifname: str, on: bool) -> IfaceStatus:
        st = self.status(ifname)
        if st.state != "attached":
            raise SeawallError(f"{ifname}: seawall is not attached")
        counters.write_flags(self._dir(ifname), abi.CfgFlag.MONITOR if on else 0)
        return self.status(ifname)

    def set_monitor_all(self, names: list, on: bool) -> None:
        """Each interface's kernel flag to monitor (on) or enforce; if one
        refuses, those already switched are put back and SeawallError."""
        done = []
        try:
            for name in names:
                self.set_monitor(name, on)
                done.append(name)
        except SeawallError:
            for name in done:
                self.set_monitor(name, not on)
            raise

    # --- counters ----------------------------------------------------------

    def counters(self, ifname: str) -> counters.IfaceCounters:
        """The interface's counters (the caller closes them)."""
        if not os.path.isdir(self._dir(ifname)):
            raise SeawallError(f"{ifname}: seawall is not attached")
        return counters.IfaceCounters(self._dir(ifname))
