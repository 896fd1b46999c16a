"""The decision journal: one JSON object per line, appended and fsynced.

Every change to the lists (manual or automatic) is a record. Replaying the
file gives the current lists with their reasons and wall-clock expiries, so
a restart or a reboot (which empties bpffs) restores every unexpired
decision. The replay is pure and forgiving: a corrupt or truncated line is
skipped and reported, the rest is kept.
"""

from __future__ import annotations

import json
import os
import pwd
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Iterable, Optional

VERSION = 1
OPS = ("block", "unblock", "flush", "allow", "unallow", "sig", "unsig", "sigflush")


def iso(ts: Optional[float]) -> Optional[str]:
    """Epoch seconds -> ISO 8601 UTC with a Z, or None."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def from_iso(text: Optional[str]) -> Optional[float]:
    if text is None:
        return None
    if not isinstance(text, str):  # a hand edit or a flipped bit: replay() skips the line
        raise TypeError(f"timestamp {text!r} is not an ISO 8601 string")
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


@dataclass
class Decision:
    """A list entry as the journal knows it."""

    cidr: str
    list: str  # "block" or "allow"
    added_at: float
    expires_at: Optional[float] = None  # epoch seconds; None: until removed
    reason: str = ""
    source: str = "manual"  # manual | auto
    extra: dict = field(default_factory=dict)  # score, features, ttl, ... (auto)

    def live(self, now: float) -> bool:
        """In force at now (wall clock): no expiry, or a later one."""
        return self.expires_at is None or self.expires_at > now


@dataclass
class Replay:
    blocks: dict  # cidr -> Decision
    allows: dict  # cidr -> Decision
    skipped: list  # (line number, why)
    records: int
    sigs: dict = field(default_factory=dict)  # rule text -> Decision (list "sig")


def record(op: str, ts: float, cidr: Optional[str] = None, **fields) -> dict:
    if op not in OPS:
        raise ValueError(f"unknown journal op {op!r}")
    rec = {"v": VERSION, "ts": iso(ts), "op": op}
    if cidr is not None:
        rec["cidr"] = cidr
    for k, v in fields.items():
        rec[k] = iso(v) if k == "expires_at" else v
    return rec


def actor() -> str:
    """Who is changing the lists, for the records' `by`: the user behind
    sudo (SUDO_USER) where set, else the process's own user."""
    who = os.environ.get("SUDO_USER")
    if who:
        return who
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:  # a uid with no passwd entry (a container)
        return str(os.getuid())


def encode(rec: dict) -> str:
    return json.dumps(rec, sort_keys=True, separators=(",", ":")) + "\n"


_MARK = "\x00cidr\x00"  # stands for the cidr in encode_many()'s template


def encode_many(op: str, ts: float, cidrs: list, **fields) -> str:
    """encode(record(op, ts, cidr, **fields)) for every cidr, from one
    template: 100k lines in a fraction of a second (a bulk block)."""
    head, tail = encode(record(op, ts, _MARK, **fields)).split(json.dumps(_MARK))
    return "".join(head + json.dumps(c) + tail for c in cidrs)


def replay(lines: Iterable[str], now: Optional[float] = None) -> Replay:
    """Fold journal lines into the current lists. Entries expired at `now`
    (when given) are left out."""
    blocks: dict = {}
    allows: dict = {}
    sigs: dict = {}
    skipped = []
    n = 0
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
            if not isinstance(rec, dict) or rec.get("v") != VERSION:
                raise ValueError("unknown record version")
            op = rec["op"]
            ts = from_iso(rec["ts"])
            if op in ("block", "allow", "sig"):
                cidr = str(rec["cidr"])
                d = Decision(
                    cidr=cidr,
                    list=op,
                    added_at=ts,
                    expires_at=from_iso(rec.get("expires_at")),
                    reason=str(rec.get("reason", "")),
                    source=str(rec.get("source", "manual")),
                    extra={k: v for k, v in rec.items()
                           if k not in ("v", "ts", "op", "cidr", "expires_at", "reason", "source")},
                )
                {"block": blocks, "allow": allows, "sig": sigs}[op][cidr] = d
            elif op == "unblock":
                blocks.pop(str(rec["cidr"]), None)
            elif op == "unallow":
                allows.pop(str(rec["cidr"]), None)
            elif op == "flush":
                blocks.clear()
            elif op == "unsig":
                sigs.pop(str(rec["cidr"]), None)
            elif op == "sigflush":
                sigs.clear()
            else:
                raise ValueError(f"unknown op {op!r}")
        except (ValueError, KeyError, TypeError) as e:
            why = "truncated or not JSON" if isinstance(e, json.JSONDecodeError) else str(e)
            skipped.append((lineno, why))
            continue
        n += 1
    rep = Replay(blocks, allows, skipped, n, sigs)
    return rep if now is None else live_at(rep, now)


def history(lines: Iterable[str], lst: str, cidr: str) -> list:
    """The records (dicts, oldest first) of one entry of list `lst`
    ("block" or "allow"): its adds and removals, and each blocklist flush
    that removed it. Lines that cannot be read are passed over (replay()
    reports them)."""
    add, remove = (lst, "un" + lst)
    out, present = [], False
    for line in lines:
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if not isinstance(rec, dict):
            continue
        op = rec.get("op")
        if op in (add, remove) and rec.get("cidr") == cidr:
            out.append(rec)
            present = op == add
        elif op == "flush" and lst == "block" and present:
            out.append(rec)
            present = False
    return out


def live_at(rep: Replay, now: float) -> Replay:
    """rep without the blocks and rules expired at now (as replay(f, now))."""
    return Replay({c: d for c, d in rep.blocks.items() if d.live(now)}, rep.allows, rep.skipped, rep.records,
                  {c: d for c, d in rep.sigs.items() if d.live(now)})


def snapshot(rep: Replay, now: float) -> list:
    """Records that recreate rep's lists: the compacted journal."""
    out = []
    for lst, entries in (("allow", rep.allows), ("block", rep.blocks), ("sig", rep.sigs)):
        for d in entries.values():
            out.append(record(lst, d.added_at, d.cidr, expires_at=d.expires_at,
                              reason=d.reason, source=d.source, **d.extra))
    return out


class JournalFile:
    """The journal on disk: appends are fsynced; compaction is atomic.
    Callers serialise writers with the state directory's lock."""

    def __init__(self, path: str):
        self.path = path
        self._deferred = 0  # depth of batched() blocks
        self._unsynced = False

    @contextmanager
    def batched(self):
        """Appends inside the block are written at once but fsynced once,
        at its end (the daemon's decisions of one cycle: an fsync costs
        milliseconds, and a cycle may make 256 blocks). An fsync that fails
        there raises OSError, as a failed append would."""
        self._deferred += 1
        try:
            yield self
        finally:
            self._deferred -= 1
            if not self._deferred and self._unsynced:
                self._unsynced = False
                fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)

    def _fold(self, fold):
        """fold(the journal's lines), or fold([]) when there is no journal."""
        try:
            with open(self.path, encoding="utf-8", errors="replace") as f:
                return fold(f)
        except FileNotFoundError:
            return fold([])

    def read(self, now: Optional[float] = None) -> Replay:
        return self._fold(lambda lines: replay(lines, now))

    def history(self, lst: str, cidr: str) -> list:
        """history() of one entry, from the journal on disk."""
        return self._fold(lambda lines: history(lines, lst, cidr))

    def append(self, records: list) -> None:
        if not records:
            return
        self.append_encoded("".join(encode(r) for r in records))

    def append_encoded(self, text: str) -> None:
        """Append lines already made by encode() (a bulk write builds
        100k of them from one template), in one write and one fsync."""
        if not text:
            return
        data = text.encode()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            # a crash mid-write leaves at most one torn last line, which
            # replay() skips; make sure the next record starts on a new line
            if os.fstat(fd).st_size > 0:
                with open(self.path, "rb") as f:
                    f.seek(-1, os.SEEK_END)
                    if f.read(1) != b"\n":
                        data = b"\n" + data
            os.write(fd, data)
            if self._deferred:
                self._unsynced = True
            else:
                os.fsync(fd)
        finally:
            os.close(fd)

    def compact(self, now: float, rep: Optional[Replay] = None) -> Replay:
        """Rewrite the journal with only live entries (atomic rename).
        rep: the journal as just read, to save reading it again."""
        rep = self.read(now) if rep is None else live_at(rep, now)
        tmp = self.path + ".tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, "".join(encode(r) for r in snapshot(rep, now)).encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.path)
        return rep
