"""SYN protection turned on and off for a port, in the kernel: the
nftables table (through `nft`), nf_conntrack_tcp_loose, and the port's
entry in syn_ports (datapath/synports.py), kept in step with the state
file synproxy.json in the state directory.

The order is the invariant the datapath relies on: its entry for a port
is never active without the nft rule for the port beside it (it passes on
ACKs whose cookie only SYNPROXY can finish).

    on:  requirements checked -> the port's open connections added to
         conntrack (conntrack.py) -> nft table or set element ->
         tcp_loose=0 -> syn_ports entry
    off: syn_ports entry cleared -> set element removed -> with the last
         port, the table deleted and tcp_loose put back

Every change is made under the state directory's lock (the lists' lock),
from the state it should reach (_apply): enable, disable, prune and
restore are that one path with different targets. A failure puts the
previous state back and says that nothing was changed.

/proc/sys/net is the caller's network namespace's: `seawall synproxy`
under `nsenter --net` protects that namespace's ports.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass, replace
from typing import Optional

from seawall.control.datapath import loader, synports
from seawall.control.errors import SeawallError, UsageError
from seawall.control.state import Clock, Paths, locked
from seawall.control.synproxy import rules
from seawall.control.synproxy.rules import Protected, State

SYSCTL = "/proc/sys"
LOOSE = "net/netfilter/nf_conntrack_tcp_loose"
TCP_RMEM = "net/ipv4/tcp_rmem"
RMEM_MAX = "net/core/rmem_max"
SYNCOOKIES = "net/ipv4/tcp_syncookies"
#: an nft command's limit, seconds
NFT_TIMEOUT = 10.0


class SynProxyUnavailable(SeawallError):
    """A requirement of SYN protection is missing (one line: which, and
    what to do); nothing was changed. Exit status 1."""


def state_path(paths: Paths) -> str:
    return os.path.join(paths.state_dir, "synproxy.json")


@dataclass(frozen=True)
class Listed:
    """A protected port and whether each kernel half is in place."""

    entry: Protected
    nft: bool  # its element in the table's set, the table with its rules
    xdp: bool  # its syn_ports entry active

    def to_json(self, now: float) -> dict:
        return {**self.entry.to_json(now), "nft": self.nft, "xdp": self.xdp}


class SynProxy:
    """SYN protection of this network namespace's ports. nft: the nft
    command (None: found on PATH); sysctl: the /proc/sys to read and write
    (a test's own folder)."""

    def __init__(self, paths: Paths, clock: Optional[Clock] = None, nft: Optional[str] = None,
                 sysctl: str = SYSCTL):
        self.paths = paths
        self.clock = clock or Clock()
        self.nft = nft
        self.sysctl = sysctl
        self.table = synports.SynPortTable(paths.pin_root)
        self._seen: Optional[tuple] = None  # (inode, mtime_ns, size) of the state file when last read
        self._due: Optional[float] = None  # its earliest expiry then
        self.seeded = 0  # open connections added to conntrack by this object's changes
        self.seed_error: Optional[str] = None  # why the last seeding failed, if it did

    def close(self) -> None:
        self.table.close()

    # --- /proc/sys and nft ---------------------------------------------------------

    def _path(self, key: str) -> str:
        return os.path.join(self.sysctl, key)

    def _read(self, key: str) -> str:
        with open(self._path(key)) as f:
            return f.read().strip()

    def _write(self, key: str, value: int) -> None:
        with open(self._path(key), "w") as f:
            f.write(f"{value}\n")

    def wscale(self) -> int:
        """The window scale this namespace's stack offers (rules.window_scale)."""
        try:
            return rules.window_scale(int(self._read(TCP_RMEM).split()[2]), int(self._read(RMEM_MAX)))
        except (OSError, ValueError, IndexError) as e:
            raise SynProxyUnavailable(f"cannot read the receive buffer sizes in {self.sysctl}: {e}") from None

    def _nft_bin(self) -> str:
        found = self.nft or shutil.which("nft")
        if not found:
            raise SynProxyUnavailable("nft (nftables) is not installed: SYN protection needs netfilter's "
                                      "SYNPROXY through it (apt install nftables)")
        return found

    def _nft(self, script: str, check_only: bool = False) -> None:
        cmd = [self._nft_bin(), *(["-c"] if check_only else []), "-f", "-"]
        try:
            p = subprocess.run(cmd, input=script, capture_output=True, text=True, timeout=NFT_TIMEOUT)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise SeawallError(f"nft failed: {e}") from None
        if p.returncode:
            why = next((ln.strip() for ln in p.stderr.splitlines() if "Error" in ln), p.stderr.strip()[:200])
            raise SeawallError(f"nft refused the {rules.TABLE} table: {why or 'exit %d' % p.returncode}")

    def nft_table(self) -> Optional[rules.Table]:
        """The table as the kernel holds it, or None when it is not there."""
        try:
            p = subprocess.run([self._nft_bin(), "-j", "list", "table", rules.FAMILY, rules.TABLE],
                               capture_output=True, text=True, timeout=NFT_TIMEOUT)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise SeawallError(f"nft failed: {e}") from None
        if p.returncode:
            if "No such file or directory" in p.stderr:
                return None
            raise SeawallError(f"nft cannot list the {rules.TABLE} table: {p.stderr.strip()[:200]}")
        try:
            return rules.parse_table(p.stdout)
        except ValueError as e:
            raise SeawallError(f"nft listed the {rules.TABLE} table in a form seawall cannot read: {e}") from None

    # --- requirements --------------------------------------------------------------

    def check(self, wscale: Optional[int] = None) -> dict:
        """Raise SynProxyUnavailable (one line) at the first requirement
        missing; else what was found: {kernel, wscale, nft, tcp_loose}.
        Changes nothing."""
        release = os.uname().release
        if not rules.kernel_ok(release):
            raise SynProxyUnavailable(f"kernel {release} is older than 6.0: it has no XDP syncookie helpers "
                                      f"(bpf_tcp_raw_gen_syncookie)")
        if not os.path.exists(self._path(SYNCOOKIES)):
            raise SynProxyUnavailable("this kernel has no SYN cookies (CONFIG_SYN_COOKIES): "
                                      "neither XDP nor SYNPROXY can make or check one")
        if not os.path.exists(self._path(LOOSE)):
            raise SynProxyUnavailable("no connection tracking in this network namespace "
                                      f"({self._path(LOOSE)} is missing): SYNPROXY needs nf_conntrack")
        w = self.wscale() if wscale is None else wscale
        try:
            self._nft(rules.render(w, synports.MSS4, synports.MSS6, [1]), check_only=True)
        except SynProxyUnavailable:
            raise
        except SeawallError as e:
            raise SynProxyUnavailable(f"{e} (the synproxy statement needs nftables >= 0.9.5 and the kernel's "
                                      f"nft_synproxy)") from None
        return {"kernel": release, "wscale": w, "nft": self._nft_bin(), "tcp_loose": int(self._read(LOOSE))}

    # --- the state file ------------------------------------------------------------

    def read_state(self) -> State:
        try:
            with open(state_path(self.paths)) as f:
                text = f.read()
        except FileNotFoundError:
            return State()
        try:
            return rules.decode_state(text)
        except ValueError as e:
            raise SeawallError(f"cannot read {state_path(self.paths)}: {e}; fix or remove it") from None

    def _save(self, st: State) -> None:
        self.paths.ensure_state_dir()
        path = state_path(self.paths)
        tmp = path + ".tmp"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
            try:
                os.write(fd, rules.encode_state(st).encode())
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, path)
        except OSError as e:
            raise SeawallError(f"cannot write {path}: {e.strerror or e}") from None

    # --- the one write path ----------------------------------------------------------

    def _kernel_active(self) -> dict:
        """{port: SynPort} of the active syn_ports slots (none when the map is not pinned)."""
        if not synports.pinned(self.paths.pin_root):
            return {}
        return {p.port: p for p in self.table.active()}

    def _synport(self, e: Protected, wscale: int) -> synports.SynPort:
        expires_ns = 0
        if e.expires_at is not None:  # clamped: a hand-edited year 9999 must not wrap round into the past
            expires_ns = min(max(1, self.clock.wall_to_boot_ns(e.expires_at)), 2**64 - 1)
        return synports.SynPort(e.port, expires_ns, e.source == "auto", wscale, synports.MSS4, synports.MSS6)

    def _apply(self, want: State, now: float) -> State:
        """Bring the kernel to the ports of want that are live at now, in
        the module's order; returns the state to save (the loose value
        saved, the window scale in force). Saves the state itself before
        it first sets tcp_loose, so that the value to put back survives a
        crash."""
        live = want.live(now)
        kernel = self._kernel_active()
        # 1. the datapath first: no entry may outlive its nft element (the
        # ports going are cleared before nft is asked anything, so that a
        # failing nft leaves them off)
        for port in kernel:
            if port not in live:
                self.table.clear(port)
        table = self.nft_table()
        for port in kernel:
            if port in live and (table is None or port not in table.ports):
                self.table.clear(port)
        if not live:
            if table is not None:
                self._nft(rules.DELETE_TABLE)
            if want.loose_saved is not None:
                self._write(LOOSE, want.loose_saved)
            return replace(want, loose_saved=None, wscale=None)
        # 2. the connections the new ports hold already, made known to
        # conntrack (conntrack.py), or tcp_loose=0 would cut off the idle ones
        new = set(live) - (table.ports if table is not None else set())
        if new:
            self._seed(new)
        # 3. the nft table, or its set
        wscale = self.wscale()
        if table is None or table.wscales != {wscale} or table.rules != rules.RULES:
            self._nft(rules.render(wscale, synports.MSS4, synports.MSS6, live, replace_table=table is not None))
        else:
            if set(live) - table.ports:
                self._nft(rules.element("add", set(live) - table.ports))
            if table.ports - set(live):
                self._nft(rules.element("delete", table.ports - set(live)))
        # 4. conntrack: a cookie ACK must reach SYNPROXY as INVALID, not be picked up
        loose = int(self._read(LOOSE))
        if loose != 0:
            if want.loose_saved is None:
                want = replace(want, loose_saved=loose)
                self._save(want)
            self._write(LOOSE, 0)
        # 5. the datapath's entries (all of them: the window scale may have
        # changed). With no syn_ports pinned (a reboot, before the attach),
        # SYNPROXY protects alone, and the attach's restore() adds them.
        if synports.pinned(self.paths.pin_root):
            for e in live.values():
                self.table.put(self._synport(e, wscale))
        return replace(want, wscale=wscale)

    def _seed(self, ports: set) -> None:
        """conntrack.seed of the ports' open connections, best effort:
        protection comes first, so a failure is kept in seed_error (for the
        caller to say) rather than raised."""
        from seawall.control.synproxy import conntrack

        try:
            self.seeded += conntrack.seed(conntrack.connections(ports))
        except (OSError, SeawallError) as e:
            self.seed_error = str(e)

    def _commit(self, have: State, want: State, now: float) -> State:
        """_apply(want) and save it, all or nothing: on a failure the
        kernel is brought back to `have` and SeawallError says that nothing
        was changed."""
        try:
            done = self._apply(want, now)
            self._save(done)
        except (OSError, SeawallError) as e:
            try:  # the loose value _apply saved before it set tcp_loose, to put back
                saved = have.loose_saved if have.loose_saved is not None else self.read_state().loose_saved
                self._save(self._apply(replace(have, loose_saved=saved), now))
            except (OSError, SeawallError):
                pass
            if isinstance(e, SynProxyUnavailable):
                raise
            raise SeawallError(f"{e}; nothing was changed") from e
        self._remember(done)
        return done

    def _maps(self) -> None:
        """The host maps pinned (an attach makes them; else compiled once, as the lists do)."""
        if not synports.pinned(self.paths.pin_root):
            loader.ensure_global_maps(self.paths.pin_root, self.paths.cache_dir)

    # --- what the CLI and the daemon call ----------------------------------------------

    def enable(self, port: int, ttl: Optional[float] = None, reason: Optional[str] = "",
               source: str = "manual") -> tuple:
        """Protect port (or update its TTL and reason: reason None keeps the
        one it has). ttl: seconds, None for until removed. Returns
        (Protected, updated: it was protected already)."""
        port = rules.parse_port(port)
        if source not in rules.SOURCES:
            raise UsageError(f"source must be one of {', '.join(rules.SOURCES)}, not {source!r}")
        if ttl is not None and ttl <= 0:
            raise UsageError("a TTL must be longer than zero")
        wscale = self.wscale()
        self.check(wscale)  # before anything changes
        self._maps()
        if not synports.pinned(self.paths.pin_root):
            raise SynProxyUnavailable(f"no syn_ports map under {self.paths.pin_root}: attach a seawall build "
                                      f"with SYN protection (seawall attach IFACE)")
        with locked(self.paths):
            now = self.clock.wall()
            have = self.read_state()
            old = have.live(now).get(port)
            why = (old.reason if old else "") if reason is None else reason
            e = Protected(port, None if ttl is None else now + ttl, why, source,
                          old.added_at if old else now)
            self._commit(have, have.with_port(e), now)
        return e, old is not None

    def disable(self, port: int) -> Protected:
        """Turn protection of port off; SeawallError if it is not protected."""
        port = rules.parse_port(port)
        with locked(self.paths):
            now = self.clock.wall()
            have = self.read_state()
            e = have.live(now).get(port)
            if e is None:
                raise SeawallError(f"port {port} is not under SYN protection (see `seawall synproxy list`)")
            self._commit(have, have.without([port]), now)
        return e

    def list(self, prune: bool = True) -> list:
        """[Listed] of the live protected ports, by port (expired ones
        pruned on the way unless prune is False)."""
        if prune:
            self.prune(force=True)
        now = self.clock.wall()
        st = self.read_state()
        table = self.nft_table() if (self.nft or shutil.which("nft")) else None
        kernel = self._kernel_active()
        rules_in = table is not None and table.rules > 0
        return [Listed(e, rules_in and p in table.ports, p in kernel) for p, e in sorted(st.live(now).items())]

    def ports(self) -> dict:
        """{port: Protected} live in the state file (no kernel I/O)."""
        return self.read_state().live(self.clock.wall())

    def _remember(self, st: State) -> None:
        try:
            s = os.stat(state_path(self.paths))
            self._seen = (s.st_ino, s.st_mtime_ns, s.st_size)
        except OSError:
            self._seen = None
        self._due = st.next_expiry()

    def prune(self, force: bool = False) -> int:
        """Turn off the ports whose TTL has passed (entry cleared, nft
        element removed, the table and tcp_loose with the last one).
        Returns how many. The daemon calls it every cycle: without force,
        one stat() of the state file when nothing is due."""
        try:
            s = os.stat(state_path(self.paths))
        except FileNotFoundError:
            return 0
        if force or self._seen != (s.st_ino, s.st_mtime_ns, s.st_size):
            self._remember(self.read_state())
        if self._due is None or self._due > self.clock.wall():
            return 0
        with locked(self.paths):
            now = self.clock.wall()
            have = self.read_state()
            gone = [p for p, e in have.ports.items() if not e.live(now)]
            if gone:
                self._commit(have, have.without(gone), now)
            else:
                self._remember(have)
        return len(gone)

    def restore(self) -> int:
        """Bring the kernel to the state file (after a reboot or a new
        attach, whose syn_ports is empty; or after a crash between two
        steps): expired ports pruned, missing elements and entries put
        back, entries the state does not hold cleared. Returns how many
        live ports had no active entry before. Raises SynProxyUnavailable
        when a port is to be protected and a requirement is missing (the
        entries are then left off: nothing is ever active without its rule)."""
        with locked(self.paths):
            now = self.clock.wall()
            have = self.read_state()
            live = have.live(now)
            before = self._kernel_active()
            if live and not synports.pinned(self.paths.pin_root):
                return 0  # nothing attached yet: the attach makes syn_ports, and restore runs then
            if live:
                try:
                    self.check()
                except SynProxyUnavailable:
                    for port in before:  # never active without its rule
                        self.table.clear(port)
                    raise
            elif not before and have.loose_saved is None and not have.ports:
                return 0  # nothing protected, nothing to undo: no nft call
            want = have.without([p for p in have.ports if p not in live])
            self._commit(have, want, now)
        return sum(1 for p in live if p not in before)
