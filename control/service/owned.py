"""attached-by-daemon.json: the interfaces the daemon attached itself, so
that after a crash the next run knows they are its own to detach (and a
stop with keep_filter_on_exit off detaches only those)."""

from __future__ import annotations

import json
import os

from seawall.control.service.logs import event


def read(path: str) -> list:
    """The interface names recorded at path ([] when none, or unreadable: said)."""
    try:
        with open(path) as f:
            names = json.load(f)
    except FileNotFoundError:
        return []
    except (OSError, ValueError) as e:
        event("state_ignored", file=path, error=str(e))
        return []
    return [n for n in names if isinstance(n, str)] if isinstance(names, list) else []


def write(path: str, names: list) -> None:
    """Record (or, with none, forget) the interfaces this daemon attached,
    atomically; a failure only costs the detach after a crash."""
    try:
        if not names:
            if os.path.exists(path):
                os.unlink(path)
            return
        tmp = path + ".tmp"  # root's alone, as every state file
        with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600), "w") as f:
            json.dump(sorted(names), f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        event("state_write_failed", file=path, error=e.strerror or str(e))
