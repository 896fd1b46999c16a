"""The daemon's fleet thread: export the lists to the BGP speaker, import its peers' routes.

In a thread of its own (never in the packet cycle: a `gobgp` call takes
about 11 ms, and a speaker that hangs must not hold back detection), every
TICK seconds or as soon as the daemon's cycle changed the lists (wake()):

- export: when the lists may have changed (the journal's stamp moved, an
  entry's expiry passed, or REREAD seconds went by), read the live blocks
  and rules that are not imported (source not `bgp:*`) and hand them to the
  Exporter (control/fleet/exporter.py), which announces and withdraws only
  what differs. An expiry is therefore withdrawn within about one TICK.
- import (with [fleet] max_import > 0): read the routes the speaker learnt,
  judge them (control/fleet/importer.py) against `ours` (this host's
  addresses, read with pyroute2, plus [fleet] protect and accept), and
  apply the difference through the list store with the origin
  `bgp:<peer>`. Each refusal is logged once, at warning.

It keeps a list store of its own (as housekeeping does: the state lock
serialises the writes). Sessions, routes out and routes in are kept for
the metrics (metrics.py). `follow()` is the daemon's one call: it starts,
reconfigures or stops the thread as the config says.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Callable, Optional

from seawall.control.addr import Prefix
from seawall.control.errors import SeawallError
from seawall.control.service.logs import event

TICK = 0.5  # seconds between looks: an expiry or a learnt route is acted on within this
REREAD = 30.0  # seconds after which the lists are read again even if the journal did not move
REFRESH = 5.0  # seconds between reads of the sessions and of this host's addresses
IMPORT_DUTY = 4  # the import waits 3x as long as its last look took (gobgp's JSON of 1,000 routes: ~2.7 s)


def host_addresses() -> list:
    """This network namespace's addresses, as host prefixes (pyroute2)."""
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        return [Prefix.parse(a.get_attr("IFA_ADDRESS")) for a in ipr.get_addr()
                if a.get_attr("IFA_ADDRESS")]


def enabled(fleet_cfg) -> bool:
    """The thread runs when [fleet] names something to protect or to accept."""
    return bool(fleet_cfg.protect or fleet_cfg.accept)


def follow(link: Optional["FleetLink"], cfg, paths, clock, speaker=None) -> Optional["FleetLink"]:
    """The daemon's call at start and at every reload: the running link
    given the new config (started, reconfigured, or stopped and None)."""
    if not enabled(cfg.fleet):
        if link is not None:
            link.stop()
        return None
    if link is None:
        return FleetLink(cfg, paths, clock, speaker).start()
    link.reconfigure(cfg)
    return link


class FleetLink:
    """Export and import for one daemon. `speaker`: a speaker.GoBGP (built
    from [fleet] api when None); `addresses`: what gives this host's
    addresses (host_addresses). step() is one look, for tests."""

    def __init__(self, cfg, paths, clock, speaker=None, addresses: Callable[[], list] = host_addresses,
                 tick: float = TICK):
        self.paths, self.clock, self.tick = paths, clock, tick
        self.addresses = addresses
        self._speaker_given = speaker
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._threads: list = []
        self._locks = {"export": threading.Lock(), "import": threading.Lock()}  # reconfigure() against a look
        self.sessions: list = []  # speaker.Session, as of the last REFRESH
        self.routes_out = 0
        self.routes_in = {"accepted": 0, "refused": 0}
        self.imported: dict = {}  # {(origin bgp:<peer>, "block" or "signature"): entries held}
        self._failing: set = set()  # failures logged and still going on
        self._configure(cfg)

    def _configure(self, cfg) -> None:
        from seawall.control.fleet.exporter import Exporter
        from seawall.control.fleet.importer import Importer
        from seawall.control.fleet.speaker import GoBGP

        f = cfg.fleet
        self.fleet_cfg = f
        self.speaker = self._speaker_given or GoBGP(f.api)
        protect = [Prefix.parse(p) for p in f.protect]
        self.exporter = Exporter(self.speaker, protect, f.export_blocks, f.export_signatures, f.rtbh,
                                 f.rtbh_community) if protect else None
        self.importer = Importer(f.max_import) if f.max_import > 0 else None
        self.configured = [Prefix.parse(p) for p in f.protect + f.accept]
        self._views = {"export": _Lists(self.paths, self.clock), "import": _Lists(self.paths, self.clock)}
        self._refreshed_at = -REREAD
        self._exported = False  # the speaker is in step with the last read
        self._judged: Optional[tuple] = None  # (learnt routes, lists' read, ours) of the last plan carried out
        self.ours = list(self.configured)

    def reconfigure(self, cfg) -> None:
        """A reload: the new [fleet] takes effect at the next look (the
        exporter starts again from the speaker's routes)."""
        if cfg.fleet != self.fleet_cfg:
            with self._locks["export"], self._locks["import"]:
                self._configure(cfg)
            self.wake()

    # --- the thread --------------------------------------------------------------

    def start(self) -> "FleetLink":
        """Two threads: export (woken by the cycle) and import (its read of
        the speaker's learnt routes can take seconds on a large table, and
        must not hold back an announcement)."""
        for part in ("export", "import"):
            t = threading.Thread(target=self._loop, args=(part,), name=f"fleet-{part}", daemon=True)
            t.start()
            self._threads.append(t)
        event("fleet", result="started", api=self.fleet_cfg.api, export=self.exporter is not None,
              max_import=self.fleet_cfg.max_import)
        return self

    def wake(self) -> None:
        """The lists changed: look now rather than at the next tick."""
        self._wake.set()

    def stop(self) -> None:
        """End the thread. The speaker keeps the routes: a restarted daemon
        syncs against them (nothing dropped, nothing duplicated)."""
        self._stop.set()
        self._wake.set()
        for t in self._threads:
            t.join(15)

    def _loop(self, part: str) -> None:
        from seawall.control.lists.store import ListStore

        try:
            store = ListStore(self.paths, self.clock)
        except (OSError, SeawallError) as e:
            event("fleet_failed", error=getattr(e, "strerror", None) or str(e))
            return
        took = 0.0
        try:
            while not self._stop.is_set():
                if part == "export":
                    self._wake.wait(self.tick)
                    self._wake.clear()
                else:  # a slow read (a large table) spaces the next: at most 1/IMPORT_DUTY of a core
                    self._stop.wait(max(self.tick, took * (IMPORT_DUTY - 1)))
                if self._stop.is_set():
                    break
                t0 = time.monotonic()
                try:
                    with self._locks[part]:
                        self.step(store, parts=(part,))
                except Exception as e:  # the thread must outlive any one look; said once while it lasts
                    self._fail("look", f"{type(e).__name__}: {e}")
                took = time.monotonic() - t0
        finally:
            store.close()

    # --- one look ----------------------------------------------------------------

    def step(self, store, now: Optional[float] = None, parts: tuple = ("export", "import")) -> None:
        """One look: the export, the import, or both (tests)."""
        now = time.monotonic() if now is None else now
        if now - self._refreshed_at >= REFRESH and ("import" if self.importer is not None else "export") in parts:
            self._refresh(now)
        if self.exporter is not None and "export" in parts:
            self._export(store, now)
        if self.importer is not None and "import" in parts:
            self._import(store, now)

    def _refresh(self, now: float) -> None:
        self._refreshed_at = now
        try:
            before = {x.peer: x.state for x in self.sessions}
            self.sessions = self.speaker.sessions(self.clock.wall())
            self._ok("sessions")
            for x in self.sessions:  # a session that went down (a peer over gobgpd's prefix limit) is said
                prev = before.get(x.peer)
                if prev != x.state and (prev is not None or x.state != "established"):
                    event("fleet_session", peer=x.peer, state=x.state,
                          level=logging.INFO if x.state == "established" else logging.WARNING)
        except SeawallError as e:
            self.sessions = []
            self._fail("sessions", str(e))
        try:
            self.ours = self.configured + self.addresses()
            self._ok("addresses")
        except Exception as e:  # netlink refused: the configured prefixes alone
            self.ours = list(self.configured)
            self._fail("addresses", f"cannot read this host's addresses: {e}")

    def _export(self, store, now: float) -> None:
        from seawall.control.fleet.importer import imported

        blocks, sigs, moved = self._views["export"].read(store, now)
        if not moved and self._exported and self.exporter.held is not None:
            return  # nothing moved since the speaker was brought in step
        blocks = [e for e in blocks if not imported(e.source)]
        sigs = [r for r in sigs if not imported(r["source"])]
        self._exported = self.exporter.try_update([e.prefix for e in blocks], [r["signature"] for r in sigs])
        if self._exported:
            self.routes_out = len(self.exporter.held or {})

    def _import(self, store, now: float) -> None:
        from seawall.control.fleet.importer import imported

        try:
            routes = self.speaker.learnt_routes()
            self._ok("import")
        except SeawallError as e:
            self._fail("import", str(e))
            return
        view = self._views["import"]
        blocks, sigs, _ = view.read(store, now)
        seen = (tuple(routes), view.read_at, tuple(self.ours))
        if seen == self._judged:
            return  # the same routes against the same lists: the same plan, already carried out
        held_b = {e.prefix: e.source for e in blocks}
        held_s = {r["rule"]: (r["signature"], r["source"]) for r in sigs}
        allow = store.allow_prefixes()
        plan = self.importer.plan(routes, self.ours, held_b, held_s,
                                  lambda p: any(a.overlaps(p) for a in allow))
        over = [r for r in plan.fresh if r.reason.startswith("over the cap")]
        for r in (r for r in plan.fresh if not r.reason.startswith("over the cap")):
            event("fleet_refused", peer=r.route.peer, route=r.route.describe(), reason=r.reason,
                  level=logging.WARNING)
        if over:  # one line, not one per route: a peer may send thousands
            event("fleet_refused", routes=len(over), first=over[0].route.describe(), reason=over[0].reason,
                  level=logging.WARNING)
        failed = self._apply(store, plan)
        self._judged = None if failed else seen
        self.routes_in = {"accepted": plan.accepted - len(failed), "refused": len(plan.refused) + len(failed)}
        for what, err in failed:
            self._fail(f"apply {what}", err)
        self.imported = _imported_counts(held_b, held_s, plan)
        if plan.changes:
            event("fleet_import", added=[str(p) for p, _ in plan.add_blocks] + [s.describe() for s, _ in plan.add_sigs],
                  removed=[str(p) for p in plan.del_blocks] + list(plan.del_sigs),
                  imported=sum(imported(s) for s in held_b.values()) + len(plan.add_blocks) - len(plan.del_blocks),
                  failed=len(failed))

    def _apply(self, store, plan) -> list:
        """Carry out an ImportPlan; [(what, error)] of the changes refused
        (each is all or nothing: the others go on)."""
        from seawall.control.lists.store import NotDurable

        failed = []
        by_src: dict = {}
        for p, src in plan.add_blocks:
            by_src.setdefault(src, []).append((p, None, "fleet route", {}))
        for src, items in by_src.items():
            try:
                store.block_add_each(items, source=src, durable=False)
            except NotDurable:  # in the kernel; the journal is the daemon's to report
                pass
            except SeawallError as e:
                failed += [(f"block {p}", str(e)) for p, *_ in items]
        for sig, src in plan.add_sigs:
            try:
                store.sig_add(sig, None, "fleet route", source=src, durable=False)
            except NotDurable:
                pass
            except SeawallError as e:
                failed.append((f"sig {sig.describe()}", str(e)))
        if plan.del_blocks:
            try:
                store.block_del(plan.del_blocks)
            except SeawallError as e:
                failed.append(("unblock", str(e)))
        for key in plan.del_sigs:
            try:
                store.sig_del(key)
            except SeawallError as e:
                failed.append((f"unsig {key}", str(e)))
        return failed

    def _fail(self, what: str, error: str) -> None:
        if what not in self._failing:
            self._failing.add(what)
            event("fleet_failed", what=what, error=error, level=logging.ERROR)

    def _ok(self, what: str) -> None:
        if what in self._failing:
            self._failing.discard(what)
            event("fleet_recovered", what=what)


def _imported_counts(held_b: dict, held_s: dict, plan) -> dict:
    """{(origin, kind): entries} the lists hold once `plan` is carried out."""
    from seawall.control.fleet.importer import imported

    out: dict = {}
    dels_b, dels_s = set(plan.del_blocks), set(plan.del_sigs)
    rows = [(s, "block") for p, s in held_b.items() if imported(s) and p not in dels_b]
    rows += [(s, "signature") for k, (_, s) in held_s.items() if imported(s) and k not in dels_s]
    rows += [(s, "block") for _, s in plan.add_blocks]
    rows += [(s, "signature") for sig, s in plan.add_sigs if sig.key not in held_s]
    for key in rows:
        out[key] = out.get(key, 0) + 1
    return out


class _Lists:
    """What the lists hold, read again only when the journal's stamp moved
    (every change to the lists appends to it), an entry's expiry passed, or
    REREAD seconds went by. One per thread (each has its own store)."""

    def __init__(self, paths, clock):
        self.paths, self.clock = paths, clock
        self.cache: Optional[tuple] = None
        self.stamp: Optional[tuple] = None  # the journal's (inode, size, mtime) at the last read
        self.read_at = -REREAD
        self.next_expiry = float("inf")

    def read(self, store, now: float) -> tuple:
        """(blocks [Entry], rules [sig_list row], read again now)."""
        try:
            st = os.stat(self.paths.journal)
            stamp: Optional[tuple] = (st.st_ino, st.st_size, st.st_mtime_ns)
        except OSError:
            stamp = None
        if not (self.cache is None or stamp != self.stamp or now - self.read_at >= REREAD
                or self.clock.wall() >= self.next_expiry):
            return self.cache + (False,)
        blocks, sigs = store.block_list(prune=False), store.sig_list()
        expiries = [e.expires_at for e in blocks] + [r["expires_at"] for r in sigs]
        self.next_expiry = min((x for x in expiries if x is not None), default=float("inf"))
        self.cache, self.stamp, self.read_at = (blocks, sigs), stamp, now
        return blocks, sigs, True
