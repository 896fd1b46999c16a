"""Where seawall keeps its state, and the lock that serialises writers."""

from __future__ import annotations

import errno
import fcntl
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass

from .const import DEFAULT_BPFFS, DEFAULT_STATE_DIR
from .errors import SeawallError


@dataclass(frozen=True)
class Paths:
    pin_root: str = DEFAULT_BPFFS  # bpffs folder of the pinned maps
    state_dir: str = DEFAULT_STATE_DIR  # journal and lock

    @classmethod
    def from_env(cls, pin_root=None, state_dir=None) -> "Paths":
        return cls(
            pin_root or os.environ.get("SEAWALL_BPFFS") or DEFAULT_BPFFS,
            state_dir or os.environ.get("SEAWALL_STATE_DIR") or DEFAULT_STATE_DIR,
        )

    @property
    def journal(self) -> str:
        return os.path.join(self.state_dir, "journal.jsonl")

    @property
    def lock(self) -> str:
        return os.path.join(self.state_dir, "lock")

    def ensure_state_dir(self) -> None:
        try:
            os.makedirs(self.state_dir, mode=0o700, exist_ok=True)
        except OSError as e:
            raise SeawallError(f"cannot create state directory {self.state_dir}: {e.strerror}") from None


@contextmanager
def locked(paths: Paths, timeout: float = 10.0):
    """Exclusive lock on the state directory (CLI and daemon both write)."""
    paths.ensure_state_dir()
    fd = os.open(paths.lock, os.O_RDWR | os.O_CREAT, 0o600)
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
