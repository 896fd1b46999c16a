"""`seawall run`: the foreground daemon.

Each cycle: read the kernel's histograms and tracked sources (batch reads
into numpy), hand the per-cycle deltas to the engine, apply its decisions
(blocks, signature rules) through the list store, which journals them, and
log one structured line per decision (logs.py). After each cycle the
guard (guard.py) checks that the daemon's programs are still attached,
puts back one taken off, and withholds the watchdog's ping while it
cannot. SIGTERM stops it and leaves kernel filtering in place (unless
configured otherwise); SIGHUP reloads the config.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import threading
import time
from typing import Optional

from seawall.control import config as configmod
from seawall.control.addr import Prefix, PrefixSet
from seawall.control.datapath import loader
from seawall.control.datapath.counters import IfaceCounters
from seawall.control.datapath.interfaces import Interfaces
from seawall.control.detect.engine import BlockAction, CycleReport, Engine, Observation, SignatureAction, SynProxyAction
from seawall.control.detect.observe import observe
from seawall.control.errors import SeawallError, UsageError
from seawall.control.lists.store import ListStore, NotDurable
from seawall.control.service import fleet, persist
from seawall.control.service import owned as owned_mod
from seawall.control.service.guard import FilterGuard
from seawall.control.service.logs import event, sd_notify, version
from seawall.control.service.sources import SourceReader
from seawall.control.service.synprotect import SynProtection
from seawall.control.signature import Signature
from seawall.control.state import Clock, Paths, claim_daemon

#: seconds after which the allowlist is re-read even if the journal did not change
ALLOW_REFRESH = 60.0
#: the first cycle's length at most (the next ones are the interval's)
FIRST_CYCLE = 0.1
#: how long the first cycle waits for the first read of the host's sockets
FIRST_SOCKETS_WAIT = 1.0


class Daemon:
    def __init__(self, cfg: configmod.Config, paths: Paths, interfaces: tuple = (),
                 config_path: Optional[str] = None, clock: Optional[Clock] = None, overrides: Optional[dict] = None):
        self.overrides = dict(overrides or {})  # [daemon] settings from the command line, kept over reloads
        self.cfg = cfg
        self.paths = paths
        self.config_path = config_path
        self.interfaces = tuple(interfaces) or cfg.daemon.interfaces
        self.clock = clock or Clock()
        self.stop = False
        self.reload = False
        self.attached_here: list = []
        self.counters: dict = {}  # interface -> IfaceCounters
        self.readers: dict = {}  # interface -> SourceReader of its counters
        self.snapshots: dict = {}  # interface -> Snapshot of the last cycle
        self.store: Optional[ListStore] = None
        self.engine: Optional[Engine] = None
        self.last: Optional[CycleReport] = None
        self.decisions = 0
        self.decisions_by = {"block": 0, "signature": 0, "would_block": 0, "would_signature": 0, "synproxy": 0,
                             "would_synproxy": 0}
        self.syn: Optional[SynProtection] = None  # SYN protection of served ports, once start() ran
        self.metrics_server = None
        self.cycle_seconds = 0.0
        self.state_ok = True
        self._allow = PrefixSet()
        self._allow_stamp: Optional[tuple] = None
        self._allow_read_at = -ALLOW_REFRESH
        self._housekeeping_stop = threading.Event()
        self._housekeeper: Optional[threading.Thread] = None
        self._held_said = False
        self.fleet: Optional[fleet.FleetLink] = None  # export/import through the BGP speaker ([fleet])
        self.sockets = None  # datapath.sockets.SocketWatch, while run() runs
        self.guard: Optional[FilterGuard] = None  # checks our programs are attached, once start() attached them
        self._saved_at = time.monotonic()
        self._snapshot_at = time.monotonic()  # when watch() took the first snapshot
        self._sig_hits: dict = {}  # slot -> (packets so far, monotonic t of the last increase)

    # --- set-up ------------------------------------------------------------

    def start(self) -> None:
        # Attach first: loading the program creates any missing map and
        # puts the journal back into it (Interfaces.attach), so a start on
        # an empty bpffs compiles once, not once for the lists and again
        # for the program.
        ifs = Interfaces(self.paths)
        owned = owned_mod.read(self.paths.owned)
        for name in self.interfaces:
            args = (name, self.cfg.daemon.mode, self.cfg.daemon.monitor, self.cfg.daemon.defines())
            try:  # attached already (a restart, an upgrade): this build takes over in one step if it differs
                st, action = ifs.attach(*args, replace=True)
            except loader.ReplaceRefused as e:
                event("upgrade_refused", interface=name, error=str(e), level=logging.WARNING)
                st, action = ifs.attach(*args)
            # attached now, or by an earlier run of the daemon that did not
            # get to detach it (a crash): either way it is ours to detach
            if action == "attached" or name in owned:
                self.attached_here.append(name)
            event("attached" if action == "attached" else "interface", interface=name, mode=st.mode,
                  monitor=st.monitor)
        self.store = ListStore(self.paths, self.clock)
        self._probe_state()
        owned_mod.write(self.paths.owned, self.attached_here)
        restored = self.store.restored + ifs.restored
        if restored:
            event("restored", entries=restored,
                  ignored=len(self.store.restore_skipped) + len(ifs.restore_skipped))
        rep = self.store.journal.read()
        if rep.skipped:
            event("journal_skipped", lines=[n for n, _ in rep.skipped][:20], count=len(rep.skipped),
                  why=rep.skipped[0][1])
        names = list(self.interfaces) or ifs.names()
        if not names:
            raise SeawallError("no interface to watch: give --interface IFACE or attach one first")
        modes = {}
        for name in names:
            st = ifs.status(name)
            if st.state != "attached":
                raise SeawallError(f"{name}: seawall is not attached (seawall attach {name})")
            modes[name] = st.mode
        self.guard = FilterGuard(self.paths.pin_root, modes)
        self.watch({n: IfaceCounters(loader.iface_dir(self.paths.pin_root, n)) for n in names}, self.store, rep)
        self.syn = SynProtection(self.cfg, self.paths, self.clock)
        self.syn.start_soon(self.engine)

    def watch(self, counters: dict, store: ListStore, journal=None) -> None:
        """Watch these interfaces' counters ({name: IfaceCounters}), deciding
        into this list store: the engine starts, seeded with the journal's
        automatic decisions in force, and the first snapshot is taken, so
        that the first cycle's deltas start now. start() calls it for the
        interfaces it attached; `seawall bench` for its scratch maps."""
        self.store = store
        self.counters = dict(counters)
        self.readers = {n: SourceReader(c, self.cfg.daemon.interval, self.cfg.attribution.returning_min_pps)
                        for n, c in self.counters.items()}
        base, said = persist.load(self.paths.baseline, self.cfg, time.monotonic(), self.clock.wall())
        event("baseline", result=said, level=logging.INFO if base is not None or "no saved" in said else logging.WARNING)
        self.engine = Engine(self.cfg, self._allowed, base)
        self._seed_engine(journal if journal is not None else store.journal.read())
        self._saved_at = time.monotonic()
        self.snapshots = self.snapshot()
        self._snapshot_at = time.monotonic()

    def _seed_engine(self, rep) -> None:
        """Automatic decisions still in force are known to the engine, so a
        restart neither repeats them nor forgets a repeat offender."""
        now_wall = self.clock.wall()
        mono = time.monotonic()
        ignored = []
        for cidr, d in rep.blocks.items():
            if d.source == "auto" and d.live(now_wall):
                left = float("inf") if d.expires_at is None else d.expires_at - now_wall
                try:
                    self.engine.note_block(Prefix.parse(cidr), mono + left, _offence(d), mono, _ttl(d))
                except (UsageError, TypeError, ValueError) as e:  # a damaged record
                    ignored.append((cidr, str(e)))
        for key, d in rep.sigs.items():
            if d.source == "auto" and d.live(now_wall):
                left = float("inf") if d.expires_at is None else d.expires_at - now_wall
                try:
                    self.engine.note_signature(Signature.from_json(d.extra.get("rule", {})), mono + left,
                                               _offence(d), mono, _ttl(d))
                except (UsageError, TypeError, ValueError) as e:
                    ignored.append((key, str(e)))
        if ignored:
            event("journal_ignored", entries=[k for k, _ in ignored][:20], count=len(ignored), why=ignored[0][1],
                  effect="these automatic decisions are not known to the engine")

    def _allowed(self, prefix: Prefix) -> bool:
        return self._allow.overlaps(prefix)

    def _refresh_allow(self) -> None:
        """Re-read the allowlist when it may have changed: every change to
        the lists appends to the journal, so a journal that has not changed
        (same inode, size and mtime) means the same allowlist. Reading 10k
        entries and replaying the journal every cycle took most of the
        cycle (BENCHMARKS.md). A change whose journal append failed is
        picked up within ALLOW_REFRESH seconds."""
        try:
            st = os.stat(self.paths.journal)
            stamp: Optional[tuple] = (st.st_ino, st.st_size, st.st_mtime_ns)
        except OSError:
            stamp = None
        now = time.monotonic()
        if stamp is not None and stamp == self._allow_stamp and now - self._allow_read_at < ALLOW_REFRESH:
            return
        self._allow = PrefixSet(self.store.allow_prefixes())
        self._allow_stamp, self._allow_read_at = stamp, now

    # --- the cycle ---------------------------------------------------------

    def snapshot(self) -> dict:
        """{interface: Snapshot} of the counters now."""
        return {name: r.read() for name, r in self.readers.items()}

    def observe(self, dt: float) -> Observation:
        cur = self.snapshot()
        obs = observe(time.monotonic(), dt, cur, self.snapshots)
        self.snapshots = cur
        return obs

    def last_hits(self, keys: list, t: float) -> dict:
        """{engine key: monotonic t of its last drop, or None} for the
        decisions the engine is about to let expire: the kernel's own
        stamps (a block's last_hit_ns; a signature slot's hit counter,
        watched from cycle to cycle)."""
        out: dict = {}
        blocks = [k for k in keys if isinstance(k, Prefix)]
        if blocks:
            now_boot = self.clock.boot_ns()
            for p, ns in self.store.maps.last_hit_ns(blocks).items():
                out[p] = t - (now_boot - ns) / 1e9 if ns else None
        for k in keys:
            if isinstance(k, Signature):
                seen = [self._sig_hits[s][1] for s in self.store.sigs.find(k.key) if s in self._sig_hits]
                out[k] = max((x for x in seen if x is not None), default=None)
        return out

    def _watch_sig_hits(self, t: float) -> None:
        """Note, per signature slot, when its hit counter last went up."""
        if not self.engine.sigs:
            return
        total = None
        for c in self.counters.values():
            h = c.sig_hits.read_array(2)[:, 0]
            total = h if total is None else total + h
        for slot, n in enumerate(total.tolist() if total is not None else ()):
            before = self._sig_hits.get(slot)
            if before is None:
                self._sig_hits[slot] = (n, None)
            elif n != before[0]:
                self._sig_hits[slot] = (n, t)

    def cycle(self, dt: float) -> CycleReport:
        t0 = time.perf_counter()
        self._refresh_allow()
        if self.sockets is not None:
            self.engine.serving = self.sockets.latest()
        obs = self.observe(dt)
        try:
            self._watch_sig_hits(obs.t)
            keys = self.engine.expiring(obs.t, max(1.0, 2 * self.cfg.daemon.interval))
            if keys:
                obs.last_hits = self.last_hits(keys, obs.t)
        except (OSError, SeawallError) as e:  # without the stamps, decisions simply expire
            event("last_hits_failed", error=getattr(e, "strerror", None) or str(e))
        if self.syn is not None:
            self.syn.sync()
        rep = self.engine.step(obs)
        if rep.raised:
            event("alarm", score=round(rep.score, 2), pps=round(rep.pps), volume=round(rep.volume, 2),
                  where=rep.where, findings=rep.findings, z={k: round(v, 2) for k, v in rep.z.items()})
        if rep.cleared:
            event("alarm_cleared", score=round(rep.score, 2), pps=round(rep.pps))
        if rep.note:
            event("note", text=rep.note)
        try:
            with self.store.journal.batched():  # one fsync for the cycle's decisions
                self.apply_all(rep.actions)
        except OSError as e:
            self._state_failed(e)
        if self.fleet is not None and rep.actions:
            self.fleet.wake()
        if self.syn is not None:
            self.syn.tick()
        self.last = rep
        if obs.t - self._saved_at >= self.cfg.daemon.baseline_save:
            self.save_baseline(obs.t)
        self.cycle_seconds = time.perf_counter() - t0
        return rep

    def save_baseline(self, t: Optional[float] = None) -> None:
        """The learnt baseline to the state directory; a failure is logged
        (the filter goes on; a restart would learn afresh)."""
        t = time.monotonic() if t is None else t
        self._saved_at = t
        try:
            persist.save(self.paths.baseline, self.engine.base, t, self.clock.wall())
        except OSError as e:
            event("baseline_save_failed", file=self.paths.baseline, error=e.strerror or str(e))

    def _housekeep_loop(self) -> None:
        """Every [daemon] housekeeping seconds, in its own thread with its own list
        store (maps and fds are not shared with the cycle's; the state lock
        serialises the writes), so that walking a 100k-entry blocklist
        (about a second here) never delays a cycle."""
        try:
            store = ListStore(self.paths, self.clock)
        except (OSError, SeawallError) as e:
            event("housekeeping_failed", error=getattr(e, "strerror", None) or str(e))
            return
        try:
            while not self._housekeeping_stop.wait(self.cfg.daemon.housekeeping):
                self.housekeeping(store)
        finally:
            store.close()

    def housekeeping(self, store: Optional[ListStore] = None) -> dict:
        """Expired blocks stop dropping in the kernel by themselves, but
        they keep their trie slots (131,072 of them) and summary bits, and
        the journal keeps every decision ever made: over weeks of attacks
        the blocklist would fill with history and new blocks fail, and a
        restart would replay it all. Prune the kernel, and compact the
        journal when history is most of it. Failures are reported and the
        filter goes on."""
        store = store or self.store
        t = time.perf_counter()
        done = {}
        try:
            done["pruned"] = store.prune_expired()
            compacted = store.compact_journal()
            if compacted:
                done["journal_records"], done["journal_kept"] = compacted
            elif store.compaction_held and not self._held_said:
                self._held_said = True  # once a run: it stays so until someone looks
                event("journal_not_compacted", file=self.paths.journal, unreadable_lines=store.compaction_held,
                      why="the journal has lines it cannot read; compaction would drop them")
        except (OSError, SeawallError) as e:
            event("housekeeping_failed", error=getattr(e, "strerror", None) or str(e))
            return done
        done["seconds"] = round(time.perf_counter() - t, 3)
        if done.get("pruned") or compacted:
            event("housekeeping", **done)
        return done

    def apply_all(self, actions: list) -> None:
        """Carry out a cycle's decisions: the blocks in one write (one lock,
        one journal append), then the signatures."""
        blocks = [a for a in actions if isinstance(a, BlockAction)]
        if blocks:
            self._apply_blocks(blocks)
        for act in actions:
            if not isinstance(act, BlockAction):
                self.apply(act)

    def _apply_blocks(self, acts: list, counted: bool = False) -> None:
        monitor = self.cfg.daemon.monitor
        kind = "would_block" if monitor else "block"
        if not counted:
            self.decisions += len(acts)
            self.decisions_by[kind] += len(acts)
        said = [dict(cidr=str(a.prefix), ttl=round(a.ttl), reason=a.reason, **a.evidence) for a in acts]
        if not monitor:
            items = [(a.prefix, int(a.ttl), a.reason,
                      {"score": a.evidence.get("score"), "moved": a.evidence.get("moved"),
                       "offence": self.engine.offences.get(a.prefix, (1, 0))[0]}) for a in acts]
            try:
                self.store.block_add_each(items, source="auto", durable=False)
                self._state_ok()
            except NotDurable as e:  # journal unwritable: the kernel entries stand
                self._state_failed(e.error)
            except SeawallError as e:  # refused, no state directory, or held locked: nothing was changed
                if len(acts) > 1:  # all or nothing: one refused entry must not hold back the others
                    for a in acts:
                        self._apply_blocks([a], counted=True)
                    return
                event("block_failed", cidr=said[0]["cidr"], error=str(e))
                return
        for f in said:
            event(kind, **f)

    def apply(self, act) -> None:
        """Carry out one decision (apply_all batches a cycle's blocks)."""
        if isinstance(act, BlockAction):
            self._apply_blocks([act])
            return
        monitor = self.cfg.daemon.monitor
        self.decisions += 1
        if isinstance(act, SynProxyAction):
            self.decisions_by["would_synproxy" if monitor else "synproxy"] += 1
            if self.syn is not None:
                self.syn.apply(act, monitor)
            return
        kind = "would_signature" if monitor else "signature"
        self.decisions_by[kind] += 1
        if isinstance(act, SignatureAction):
            fields = dict(rule=act.signature.describe(), ttl=round(act.ttl), reason=act.reason, **act.evidence)
            if monitor:
                event("would_signature", **fields)
                return
            try:
                self.store.sig_add(act.signature, act.ttl, act.reason, source="auto", durable=False,
                                   extra={"score": act.evidence.get("score"), "moved": act.evidence.get("moved"),
                                          "offence": self.engine.offences.get(act.signature.matcher(), (1, 0))[0]})
                self._state_ok()
            except NotDurable as e:
                self._state_failed(e.error)
            except SeawallError as e:
                event("signature_failed", rule=act.signature.describe(), error=str(e))
                return
            event("signature", **fields)

    def _probe_state(self) -> None:
        """Say at start, rather than at the first decision, that the
        journal cannot be written (a full disk only shows at a write)."""
        try:
            self.paths.ensure_state_dir()
            os.close(os.open(self.paths.journal, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600))
        except (OSError, SeawallError) as e:
            self._state_failed(e)

    def _state_failed(self, e: Exception) -> None:
        if self.state_ok:
            event("state_unwritable", state_dir=self.paths.state_dir, error=str(e),
                  effect="filtering continues; decisions will not survive a reboot")
        self.state_ok = False

    def _state_ok(self) -> None:
        if not self.state_ok:
            event("state_writable", state_dir=self.paths.state_dir)
        self.state_ok = True

    # --- loop ----------------------------------------------------------------

    def _signals(self) -> None:
        def term(signum, frame):
            self.stop = True

        def hup(signum, frame):
            self.reload = True

        signal.signal(signal.SIGTERM, term)
        signal.signal(signal.SIGINT, term)
        signal.signal(signal.SIGHUP, hup)

    def do_reload(self) -> None:
        self.reload = False
        if not self.config_path:
            event("reload", result="no config file: nothing to reload")
            return
        try:
            cfg = configmod.load(self.config_path)
            cfg = dataclasses.replace(cfg, daemon=dataclasses.replace(cfg.daemon, **self.overrides))
            why = configmod.restart_needed(self.cfg, cfg)
            if why:
                raise SeawallError(f"{', '.join(why)} changed: that needs a restart (systemctl restart seawall)")
            if cfg.daemon.monitor != self.cfg.daemon.monitor:  # the kernel's mode first: logs never lie
                Interfaces(self.paths).set_monitor_all(list(self.counters), cfg.daemon.monitor)
        except (configmod.ConfigError, SeawallError) as e:
            event("reload", result="rejected, keeping the running config", error=str(e), level=logging.ERROR)
            return
        self.cfg = cfg
        self.engine.cfg = cfg
        self.fleet = fleet.follow(self.fleet, cfg, self.paths, self.clock)
        event("reload", result="applied", config=self.config_path, monitor=cfg.daemon.monitor)
        sd_notify("READY=1")

    def run(self, max_cycles: Optional[int] = None) -> None:
        self._instance = claim_daemon(self.paths)  # one per host, before anything is changed
        self._signals()
        # The host's sockets are read while the program loads and attaches
        # (importing pyroute2's sock_diag and the first read take 0.1-0.2 s)
        self.sockets = self._watch_sockets()
        try:
            self.start()
        except BaseException:
            self.sockets.stop()
            raise
        interval = self.cfg.daemon.interval
        if self.cfg.metrics.enabled:
            from seawall.control.service.metrics import serve

            try:
                self.metrics_server = serve(self.paths, self, self.cfg.metrics.listen, self.cfg.metrics.port)
            except OSError as e:
                raise SeawallError(f"metrics: cannot listen on {self.cfg.metrics.listen}:{self.cfg.metrics.port}: "
                                   f"{e.strerror}") from None
        event("started", interfaces=list(self.counters), interval=interval, monitor=self.cfg.daemon.monitor,
              version=version(), build=self.guard.builds() if self.guard else {},
              bpffs=self.paths.pin_root, state_dir=self.paths.state_dir,
              metrics=f"http://{self.cfg.metrics.listen}:{self.cfg.metrics.port}/metrics"
              if self.cfg.metrics.enabled else None)
        self._said_sockets(self.sockets)
        sd_notify("READY=1\nSTATUS=watching " + ", ".join(self.counters))
        self._housekeeper = threading.Thread(target=self._housekeep_loop, name="housekeeping", daemon=True)
        self._housekeeper.start()
        self.fleet = fleet.follow(None, self.cfg, self.paths, self.clock)
        # the first cycle counts from the snapshot watch() took, and comes
        # early: a daemon started during a flood acts on its first 100 ms
        last = self._snapshot_at
        next_t = last + min(interval, FIRST_CYCLE)
        n = 0
        try:
            while not self.stop:
                pause = next_t - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
                if self.stop:
                    break
                if self.reload:
                    self.do_reload()
                    interval = self.cfg.daemon.interval
                now = time.monotonic()
                self.cycle(now - last)
                last = now
                next_t = max(next_t + interval, now + interval / 10)
                if self.guard is None or self.guard.check():  # else systemd's watchdog restarts the daemon
                    sd_notify("WATCHDOG=1")
                n += 1
                if max_cycles is not None and n >= max_cycles:
                    break
        finally:
            self.shutdown()

    def _watch_sockets(self):
        """What the host serves, read every second in a thread of its own
        (datapath/sockets.py): customers past the handshake are never
        blocked, and a port no socket serves can be cut without a baseline.
        Without it (sock_diag refused), detection goes on without."""
        from seawall.control.datapath.sockets import SocketWatch

        return SocketWatch(interval=1.0).start(wait=False)

    def _said_sockets(self, watch) -> None:
        s = watch.first(FIRST_SOCKETS_WAIT)
        event("sockets", result="watching" if s is not None else "unreadable: going on without",
              level=logging.INFO if s is not None else logging.WARNING,
              error=watch.error, **({"customers": len(s.peers), "listening": len(s.tcp_listening)} if s else {}))

    def shutdown(self) -> None:
        sd_notify("STOPPING=1")
        if self.sockets is not None:
            self.sockets.stop()
        if self.engine is not None and self.store is not None:
            self.save_baseline()
        self._housekeeping_stop.set()
        if self.fleet is not None:
            self.fleet.stop()
        if self._housekeeper is not None:
            self._housekeeper.join(10)
        if not self.cfg.daemon.keep_filter_on_exit and self.attached_here:
            ifs = Interfaces(self.paths)
            left = []
            for name in self.attached_here:
                try:
                    ifs.detach(name)
                    event("detached", interface=name)
                except SeawallError as e:
                    left.append(name)
                    event("detach_failed", interface=name, error=str(e))
            owned_mod.write(self.paths.owned, left)
        elif self.attached_here:
            owned_mod.write(self.paths.owned, [])  # left attached on purpose: the operator's now
        if self.metrics_server is not None:
            self.metrics_server[0].shutdown()
        for x in (*self.readers.values(), *self.counters.values(), *([self.syn] if self.syn else [])):
            x.close()
        if self.store is not None:
            self.store.close()
        # what is attached now, asked of the kernel: not what was meant to be
        left = self.guard.attached_now() if self.guard else []
        lost = [n for n in (self.guard.modes if self.guard else ()) if n not in left and
                (self.cfg.daemon.keep_filter_on_exit or n not in self.attached_here)]
        event("stopped", kept_filter=bool(left) and not lost, attached=left, not_attached=lost,
              decisions=self.decisions, level=logging.ERROR if lost else logging.INFO)


def _ttl(d) -> Optional[float]:
    """The TTL a journalled decision was given, if it had one."""
    if d.expires_at is None or d.added_at is None:
        return None
    return max(0.0, d.expires_at - d.added_at)


def _offence(d) -> int:
    """How many times a journalled automatic decision had been made."""
    n = d.extra.get("offence", 1)
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"offence count {n!r} is not a positive integer")
    return n
