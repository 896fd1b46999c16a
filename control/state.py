"""Where seawall keeps its state, and the lock that serialises writers."""

from __future__ import annotations

import errno
import fcntl
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Optional

from seawall.control.errors import SeawallError

# Default locations; the CLI's --bpffs/--state-dir/--cache-dir and the
# SEAWALL_BPFFS / SEAWALL_STATE_DIR / SEAWALL_CACHE_DIR environment
# variables override them.
DEFAULT_BPFFS = "/sys/fs/bpf/seawall"
DEFAULT_STATE_DIR = "/var/lib/seawall"
# The compiled-object cache (datapath/objcache.py): survives reboots, and
# is not the state dir, which a fresh install starts without.
DEFAULT_CACHE_DIR = "/var/cache/seawall"


def private_makedirs(path: str) -> None:
    """os.makedirs(path, 0o700, exist_ok=True), except that every folder it
    creates is 0700: os.makedirs gives the intermediate ones 0777 less the
    umask, which is 0777 itself under a umask of 0."""
    missing = []
    p = os.path.abspath(path)
    while not os.path.isdir(p):
        missing.append(p)
        p = os.path.dirname(p)
    for d in reversed(missing):
        try:
            os.mkdir(d, 0o700)
        except FileExistsError:
            pass


@dataclass(frozen=True)
class Paths:
    pin_root: str = DEFAULT_BPFFS  # bpffs folder of the pinned maps
    state_dir: str = DEFAULT_STATE_DIR  # journal and lock
    cache_dir: Optional[str] = None  # compiled-object cache; None: always compile

    @classmethod
    def from_env(cls, pin_root=None, state_dir=None, cache_dir=None) -> "Paths":
        return cls(
            pin_root or os.environ.get("SEAWALL_BPFFS") or DEFAULT_BPFFS,
            state_dir or os.environ.get("SEAWALL_STATE_DIR") or DEFAULT_STATE_DIR,
            cache_dir or os.environ.get("SEAWALL_CACHE_DIR") or DEFAULT_CACHE_DIR,
        )

    @property
    def journal(self) -> str:
        return os.path.join(self.state_dir, "journal.jsonl")

    @property
    def lock(self) -> str:
        return os.path.join(self.state_dir, "lock")

    @property
    def baseline(self) -> str:
        """The learnt baseline (control/service/persist.py)."""
        return os.path.join(self.state_dir, "baseline.npz")

    @property
    def owned(self) -> str:
        """Interfaces the daemon attached itself (and so detaches on a stop
        with keep_filter_on_exit = false), kept across a crash."""
        return os.path.join(self.state_dir, "attached-by-daemon.json")

    @property
    def daemon_lock(self) -> str:
        """Held by the one `seawall run` of this state directory."""
        return os.path.join(self.state_dir, "daemon.lock")

    def ensure_state_dir(self) -> None:
        try:
            private_makedirs(self.state_dir)
        except OSError as e:
            raise SeawallError(f"cannot create state directory {self.state_dir}: {e.strerror}") from None


#: errors of a state directory that exists but cannot be written
UNWRITABLE = (errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOSPC, errno.EDQUOT)


def _lock_fd(paths: Paths) -> int:
    """The file to flock. Normally the lock file, created if needed. When
    the directory cannot be written (mounted read-only, immutable, full),
    the existing lock file opened read-only, or the directory itself:
    flock works on either, so writers still exclude each other, and the
    kernel half of a change, which needs no disk, still happens (the
    journal append then fails, and the daemon says so)."""
    try:
        return os.open(paths.lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as e:
        if e.errno not in UNWRITABLE:
            raise
    try:
        return os.open(paths.lock, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return os.open(paths.state_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)


def claim_daemon(paths: Paths) -> Optional[int]:
    """One `seawall run` per state directory, so one per host at the
    defaults: an exclusive flock on daemon.lock, held while the returned
    fd stays open (the daemon's life; the kernel drops it with the
    process, a crash included). Raises SeawallError, naming the holder,
    before the caller has changed anything. None: a state directory that
    cannot be written and holds no daemon.lock yet (nothing to lock;
    the daemon goes on, as it does without a journal)."""
    paths.ensure_state_dir()
    try:
        fd = os.open(paths.daemon_lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as e:
        if e.errno not in UNWRITABLE:
            raise SeawallError(f"cannot open {paths.daemon_lock}: {e.strerror}") from None
        try:
            fd = os.open(paths.daemon_lock, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
        os.close(fd)
        if e.errno in (errno.EAGAIN, errno.EACCES):
            raise SeawallError(f"another seawall run (pid {holder}) is running on {paths.state_dir}: "
                               f"one per host (systemctl stop seawall first)") from None
        raise SeawallError(f"cannot lock {paths.daemon_lock}: {e.strerror}") from None
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    except OSError:
        pass  # read-only: the lock holds all the same, without the pid
    return fd


@contextmanager
def locked(paths: Paths, timeout: float = 10.0):
    """Exclusive lock on the state directory (CLI and daemon both write)."""
    paths.ensure_state_dir()
    fd = _lock_fd(paths)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as e:
                if e.errno not in (errno.EAGAIN, errno.EACCES) or time.monotonic() > deadline:
                    raise SeawallError(f"state directory {paths.state_dir} is locked by another seawall") from None
                time.sleep(0.02)
        yield
    finally:
        os.close(fd)


class Clock:
    """Wall clock and CLOCK_BOOTTIME (the kernel's expiry clock)."""

    def wall(self) -> float:
        return time.time()

    def boot_ns(self) -> int:
        return time.clock_gettime_ns(time.CLOCK_BOOTTIME)

    def wall_to_boot_ns(self, wall: float) -> int:
        return self.boot_ns() + int((wall - self.wall()) * 1e9)

    def boot_ns_to_wall(self, ns: int) -> float:
        return self.wall() + (ns - self.boot_ns()) / 1e9
