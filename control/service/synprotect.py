"""The daemon's side of SYN protection (control/synproxy): whether this
host can have it, the engine's decisions carried out, and the ports
turned off again when their time is up.

At start, in a thread of its own (an nft check and a read of syn_ports
take some 35 ms, which a daemon started during a flood must not spend
before its first cycle): the requirements are checked once (kernel,
conntrack, nft's synproxy); until then, and without them, the engine is told so and a SYN flood on a
served port is left to the kernel's own syncookies, with no rule shared
with the customers. The ports of the state file are put back into the
kernel (a reboot empties syn_ports), and the automatic ones are made
known to the engine so that a restart neither repeats nor forgets them.
Each cycle: ports past their TTL are turned off (one stat() of the state
file when none is due), each with an event.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Optional

from seawall.control.config import Config
from seawall.control.detect.actions import SynProxyAction
from seawall.control.errors import SeawallError
from seawall.control.service.logs import event
from seawall.control.state import Clock, Paths
from seawall.control.synproxy.protect import SynProxy, SynProxyUnavailable


class SynProtection:
    def __init__(self, cfg: Config, paths: Paths, clock: Clock):
        self.cfg = cfg
        self.clock = clock
        self.sp = SynProxy(paths, clock)
        self.available = False
        self.why_not = ""
        self.on: dict = {}  # port -> Protected, as last read
        self.ready = threading.Event()  # start() is done
        self._thread: Optional[threading.Thread] = None
        self._engine = None  # the engine to tell once start_soon()'s thread is done

    def close(self) -> None:
        if self._thread is not None:
            self._thread.join(30)
        self.sp.close()

    def start_soon(self, engine) -> None:
        """start() in a thread; the engine learns the outcome at the first
        sync() after it (until then it turns nothing on)."""
        self._engine = engine
        self._thread = threading.Thread(target=self.start, name="synproxy-start", daemon=True)
        self._thread.start()

    def start(self, engine=None) -> None:
        """Check, restore, read what is on; with an engine, tell it at once."""
        try:
            self._start()
        finally:
            self.ready.set()
        if engine is not None:
            self._tell(engine)
            self._engine = None

    def _start(self) -> None:
        try:
            self.sp.check()
            self.available = True
        except SynProxyUnavailable as e:
            self.why_not = str(e)
        except SeawallError as e:
            self.why_not = str(e)
        if self.cfg.attribution.synproxy:
            if self.available:
                event("synproxy_ready", wscale=self.sp.wscale())
            else:
                event("synproxy_unavailable", error=self.why_not, level=logging.WARNING,
                      effect="a SYN flood on a served port is left to the kernel's syncookies")
        try:
            restored = self.sp.restore()
            if restored:
                event("synproxy_restored", ports=restored)
        except SeawallError as e:
            event("synproxy_restore_failed", error=str(e))
        self.on = self.sp.ports()

    def _tell(self, engine) -> None:
        """What start() found, told to the engine (in the cycle's thread:
        the engine is not shared with the start's)."""
        now_wall, mono = self.clock.wall(), time.monotonic()
        for port, e in self.on.items():
            if e.source == "auto":
                left = float("inf") if e.expires_at is None else e.expires_at - now_wall
                engine.note_synproxy(port, mono + left, 1, mono)
        engine.synproxy_ok = self.available

    def apply(self, act: SynProxyAction, monitor: bool) -> None:
        fields = dict(port=act.port, ttl=round(act.ttl), reason=act.reason, **act.evidence)
        if monitor:
            event("would_synproxy", **fields)
            return
        mine = self.sp.ports().get(act.port)
        if mine is not None and mine.source != "auto":  # an operator's: theirs to end, not a TTL's
            event("synproxy", **fields, note=f"port {act.port} is protected by hand already: left as it is")
            return
        try:
            self.sp.enable(act.port, act.ttl, act.reason, source="auto")
        except SeawallError as e:
            event("synproxy_failed", port=act.port, error=str(e))
            return
        self.on = self.sp.ports()
        event("synproxy", **fields)

    def sync(self) -> None:
        """Before a cycle's step: once the start in its thread is done, its
        outcome to the engine (an Event's check until then)."""
        if self._engine is not None and self.ready.is_set():
            self._tell(self._engine)
            self._engine = None

    def tick(self) -> Optional[list]:
        """Turn off the ports whose time is up; the ports turned off."""
        if not self.ready.is_set():
            return None
        try:
            if not self.sp.prune():
                return None
        except SeawallError as e:
            event("synproxy_prune_failed", error=str(e))
            return None
        now = self.sp.ports()
        gone = sorted(set(self.on) - set(now))
        self.on = now
        for port in gone:
            event("synproxy_off", port=port, why="expired: no SYN flood on it any more")
        return gone
