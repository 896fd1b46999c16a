"""The daemon's check on its own filter, every cycle.

`ip link set dev IFACE xdp off`, another tool attaching its program, or a
driver reset removes seawall's program from an interface without a word
to the daemon, which would go on deciding blocks that nothing enforces.
Each cycle, for every interface it watches, FilterGuard asks the kernel
(one RTM_GETLINK, datapath/netlink.py) which program is attached and in
which mode, and compares it with the program pinned for that interface
(its id, three bpf() calls). When the pinned program changes (a new
build) and every MAPS_EVERY seconds, it also checks that the attached
program reads the pinned lists and counters (its map ids).

A program gone or replaced is logged at error level and put back: the
pinned program, in the mode it was attached in, by one RTM_SETLINK (a
foreign program in the other mode is removed first). Another seawall
build is given SWAP_GRACE seconds first: an upgrade attaches the new
program, then pins it. The outcome flows
out as `ok()` (False: stop the watchdog's pings, so that systemd restarts
the daemon, whose start attaches afresh) and as counts for the metrics.
"""

from __future__ import annotations

import ctypes
import errno
import os
import time
from typing import Optional

from seawall.control.datapath import bpf, counters, loader, netlink, tries
from seawall.control.errors import SeawallError
from seawall.control.service.logs import event, sd_notify

#: seconds between checks of the attached program's maps (and at each new program)
MAPS_EVERY = 10.0
#: seconds a seawall program other than the pinned one may stay attached
#: before the pinned one is put back: an upgrade attaches first, then pins
SWAP_GRACE = 2.0
GONE = "its pinned program is gone (seawall detach?)"
#: the maps whose ids the attached program must hold: the lists it
#: enforces, its monitor flag and the counters the metrics read
MAP_SPECS = (*tries.SPECS, counters.CONFIG, counters.STATS)


def prog_map_ids(fd: int) -> set:
    """The ids of the maps the program fd uses (BPF_OBJ_GET_INFO_BY_FD, twice:
    the count, then the ids)."""
    n = bpf.prog_info(fd).nr_map_ids
    ids = (ctypes.c_uint32 * max(n, 1))()
    info = bpf.ProgInfo(nr_map_ids=n, map_ids=ctypes.addressof(ids))
    bpf.obj_info(fd, info, "program maps")
    return set(ids[:min(n, info.nr_map_ids)])


def _is_seawall(prog_id: int) -> bool:
    """Whether program prog_id is a seawall build (by its name)."""
    try:
        fd = bpf.prog_fd_by_id(prog_id)
    except OSError:
        return False
    try:
        return bpf.prog_info(fd).name.decode(errors="replace") == loader.PROG_NAME[:15]
    finally:
        os.close(fd)


def prog_tag(pin_root: str, name: str) -> Optional[str]:
    """The kernel's tag (hex) of the program pinned for interface name, or
    None: which build filters there (the tag hashes its instructions)."""
    try:
        fd = bpf.obj_get(os.path.join(loader.iface_dir(pin_root, name), loader.PROG_PIN))
    except OSError:
        return None
    try:
        return bytes(bpf.prog_info(fd).tag).hex()
    finally:
        os.close(fd)


class FilterGuard:
    """Keeps the pinned program of each interface attached in its mode.

    modes: {interface: the mode it was attached in (native, generic)}.
    check() runs every cycle, logs what it found and did, and says
    whether the watchdog may be fed; attached, reattached and missing
    are the metrics' (metrics.py)."""

    def __init__(self, pin_root: str, modes: dict):
        self.pin_root = pin_root
        self.modes = dict(modes)
        self.attached = {n: True for n in self.modes}  # as of the last check
        self.reattached = {n: 0 for n in self.modes}  # programs put back
        self.missing = {n: [] for n in self.modes}  # pinned maps the attached program does not use
        self._maps_seen: dict = {}  # interface -> (program id, monotonic t of its last map check)
        self._said: dict = {}  # interface -> the failure last logged about it
        self._swapping: dict = {}  # interface -> (id of a seawall program not pinned yet, since)

    def ok(self) -> bool:
        """Every watched interface runs its program: the watchdog may be fed."""
        return all(self.attached.values())

    def _pin(self, name: str) -> str:
        return os.path.join(loader.iface_dir(self.pin_root, name), loader.PROG_PIN)

    def check(self, now: Optional[float] = None) -> bool:
        """Check (and repair) every interface, log the changes; returns ok()."""
        now = time.monotonic() if now is None else now
        for name, mode in self.modes.items():
            attached, what = self._check(name, mode, now)
            self.attached[name] = attached
            before = self._said.get(name)
            if what == "restored":
                event("filter_lost", interface=name, mode=mode, result="re-attached",
                      reattached=self.reattached[name])
            elif not attached and what != before:
                event("filter_unrecoverable", interface=name, error=what,
                      effect="watchdog pings stop: systemd restarts the daemon")
                sd_notify(f"STATUS=not filtering {name}: {what}")  # systemctl status shows it
            elif attached and before is not None:
                event("filter_restored", interface=name)
                sd_notify(f"STATUS=filtering {name} again")
            if attached and self.missing[name] and before != self.missing[name]:
                event("filter_maps", interface=name, missing=self.missing[name],
                      effect="the attached program does not use these pinned maps")
            self._said[name] = (self.missing[name] or None) if attached else what
        return self.ok()

    def _pinned(self, name: str) -> Optional[int]:
        """The id of the program pinned for name; None when there is none,
        also when its pin goes while being read (seawall detach)."""
        try:
            return loader.pinned_prog_id(self.pin_root, name)
        except OSError as e:
            if e.errno == errno.ENOENT:
                return None
            raise

    def _check(self, name: str, mode: str, now: float) -> tuple:
        """(attached now, None or "restored" or why it is not)."""
        try:
            pinned = self._pinned(name)
            xs = netlink.xdp_state(name)
        except (OSError, SeawallError) as e:
            return False, f"unreadable: {getattr(e, 'strerror', None) or e}"
        if pinned is not None and xs.prog_id == pinned and xs.mode == mode:
            self._check_maps(name, pinned, now)
            self._swapping.pop(name, None)
            return True, None
        if xs.prog_id is not None and xs.mode == mode and _is_seawall(xs.prog_id):
            # another seawall build, attached before its pin is replaced
            # (attach --replace): leave it SWAP_GRACE to pin it, not undo it
            since = self._swapping.setdefault(name, (xs.prog_id, now))
            if since[0] == xs.prog_id and now - since[1] < SWAP_GRACE:
                return True, None
        self._swapping.pop(name, None)
        return self._restore(name, mode, pinned, xs)

    def _restore(self, name: str, mode: str, pinned: Optional[int], xs) -> tuple:
        """Put the pinned program back on name in mode."""
        if pinned is None:
            return False, GONE
        try:
            fd = bpf.obj_get(self._pin(name))
        except OSError as e:
            return False, GONE if e.errno == errno.ENOENT else f"cannot open its pinned program: {e.strerror}"
        try:
            if xs.prog_id is not None and xs.mode != mode and xs.mode in loader.MODE_FLAGS:
                netlink.set_xdp(name, -1, loader.MODE_FLAGS[xs.mode])  # one mode at a time
            netlink.set_xdp(name, fd, loader.MODE_FLAGS[mode])
            after = netlink.xdp_state(name)
        except SeawallError as e:
            return False, str(e)
        finally:
            os.close(fd)
        if after.prog_id != pinned or after.mode != mode:
            return False, (f"program id {after.prog_id} in {after.mode} mode is attached after re-attaching "
                           f"id {pinned} in {mode} mode")
        self.reattached[name] += 1
        self._maps_seen.pop(name, None)
        return True, "restored"

    def _check_maps(self, name: str, prog_id: int, now: float) -> None:
        seen = self._maps_seen.get(name)
        if seen is not None and seen[0] == prog_id and now - seen[1] < MAPS_EVERY:
            return
        self._maps_seen[name] = (prog_id, now)
        folder = loader.iface_dir(self.pin_root, name)
        try:
            fd = bpf.prog_fd_by_id(prog_id)
            try:
                used = prog_map_ids(fd)
            finally:
                os.close(fd)
        except OSError:
            return  # replaced meanwhile: the next check sees it
        want = {s.name: bpf.pinned_map_id(s.path(self.pin_root if s.scope == bpf.HOST else folder))
                for s in MAP_SPECS}
        self.missing[name] = sorted(n for n, i in want.items() if i is not None and i not in used)

    def attached_now(self) -> list:
        """The interfaces whose pinned program is attached, asked of the
        kernel without repairing anything (at stop)."""
        out = []
        for name, mode in self.modes.items():
            try:
                pinned = self._pinned(name)
                if pinned is not None and netlink.xdp_state(name).prog_id == pinned:
                    out.append(name)
            except (OSError, SeawallError):
                pass
        return out

    def builds(self) -> dict:
        """{interface: its pinned program's tag (prog_tag)}."""
        tags = {n: prog_tag(self.pin_root, n) for n in self.modes}
        return {n: t for n, t in tags.items() if t}
