"""The daemon's log and its word to systemd.

One JSON object per line on stderr, for each decision or state change:
{"ts": ..., "level": ..., "event": KIND, ...fields}. The level means
something: failures at warning or error (FAILURES below), routine at
info, so that `log_level = "warning"` and `journalctl -p warning` show
exactly what needs an operator.

Under systemd (JOURNAL_STREAM names stderr) each line starts with the
syslog priority, `<3>` for error to `<7>` for debug, which journald reads
and strips (sd-daemon(3)); the journal stamps the time itself. In the
foreground the line carries its own UTC timestamp instead.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
import time
from functools import lru_cache

log = logging.getLogger("seawall")

#: event kind -> its level, for the kinds that are not routine (info)
FAILURES = {
    "filter_lost": logging.ERROR,  # our program is not attached as it should be
    "filter_unrecoverable": logging.ERROR,  # and it could not be put back: the watchdog stops
    "filter_maps": logging.ERROR,  # the attached program reads other maps than the pinned lists
    "state_unwritable": logging.ERROR,
    "detach_failed": logging.ERROR,
    "block_failed": logging.ERROR,
    "signature_failed": logging.ERROR,
    "housekeeping_failed": logging.ERROR,
    "alarm": logging.WARNING,  # an attack: something an operator may want to look at
    "note": logging.WARNING,  # a surge the engine cannot attribute, so does not act on
    "filter_restored": logging.WARNING,
    "journal_skipped": logging.WARNING,
    "journal_ignored": logging.WARNING,
    "journal_not_compacted": logging.WARNING,
    "state_ignored": logging.WARNING,
    "state_write_failed": logging.WARNING,
    "baseline_save_failed": logging.WARNING,
    "last_hits_failed": logging.WARNING,
}

#: logging level -> syslog priority (sd-daemon's <N> prefix)
PRIORITY = {logging.CRITICAL: 2, logging.ERROR: 3, logging.WARNING: 4, logging.INFO: 6, logging.DEBUG: 7}


@lru_cache(maxsize=1)
def version() -> str:
    """The installed seawall's version (read once: every scrape gives it)."""
    from importlib.metadata import PackageNotFoundError, version as v

    try:
        return v("seawall")
    except PackageNotFoundError:
        return "unknown"


def sd_notify(msg: str) -> bool:
    """systemd's notify protocol, without libsystemd: one datagram."""
    addr = os.environ.get("NOTIFY_SOCKET")
    if not addr:
        return False
    if addr.startswith("@"):
        addr = "\0" + addr[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
            s.connect(addr)
            s.sendall(msg.encode())
        return True
    except OSError:
        return False


def event(kind: str, level: int = 0, **fields) -> None:
    """One structured log line per decision or state change; level: a
    logging level, by default FAILURES' for the kind, else info."""
    fields = {"event": kind, **fields}
    log.log(level or FAILURES.get(kind, logging.INFO), json.dumps(fields, sort_keys=True, default=str),
            extra={"fields": fields})


class LineFormatter(logging.Formatter):
    """A record as one JSON line: its time (unless journald stamps it),
    level and fields; with the <N> priority prefix for journald."""

    def __init__(self, journald: bool):
        super().__init__()
        self.journald = journald

    def format(self, record: logging.LogRecord) -> str:
        head = {} if self.journald else {"ts": _utc(record.created)}
        head["level"] = record.levelname.lower()
        fields = getattr(record, "fields", None) or {"message": record.getMessage()}
        line = json.dumps({**head, **dict(sorted(fields.items()))}, default=str)
        if self.journald:
            return f"<{PRIORITY.get(record.levelno, 6)}>{line}"
        return line


def _utc(t: float) -> str:
    """ISO 8601 UTC to the millisecond."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1000):03d}Z"


def under_journald(stream=None) -> bool:
    """True when stream (stderr) is the journal's: JOURNAL_STREAM holds
    its device and inode (systemd.exec(5)), so output redirected elsewhere
    by hand does not get the prefixes."""
    want = os.environ.get("JOURNAL_STREAM", "")
    try:
        dev, ino = (int(x) for x in want.split(":"))
        st = os.fstat((stream or sys.stderr).fileno())
    except (ValueError, OSError, AttributeError):
        return False
    return (st.st_dev, st.st_ino) == (dev, ino)


def setup_logging(level: str = "info") -> None:
    h = logging.StreamHandler(sys.stderr)
    h.setFormatter(LineFormatter(under_journald(sys.stderr)))
    log.handlers[:] = [h]
    log.setLevel(level.upper())
    log.propagate = False
