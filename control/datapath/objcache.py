"""The compiled-object cache: load a program built before without clang.

bcc compiles xdp/seawall.c in 0.6 to 0.9 s on these machines, every time
a program is loaded: a daemon started during a flood spends that before
it can drop anything. What bcc hands the kernel is plain: the program's
instructions, with each map's fd in the immediate of a BPF_LD_IMM64
whose src_reg is BPF_PSEUDO_MAP_FD, and the license. An entry keeps
those instructions (the fds zeroed), which map each fd was (its name,
type, sizes and flags, from the kernel, and where it is pinned: under
the pin root, in the interface's folder, or nowhere), and the program's
tag as the kernel computed it for bcc's load. A hit opens the pinned maps
(creating and pinning the missing ones as BPF_TABLE_PINNED would, BTF
aside), creates the unpinned ones, patches their fds in and loads the
result with BPF_PROG_LOAD; the verifier still checks every instruction,
and the tag proves the kernel got exactly what bcc had compiled.

The key hashes everything the instructions depend on: every file of
xdp/, the program's source and forced include, the flags that change
code (tunables, SW_NR_CPUS; not the pin paths, which only name where bcc
finds the maps: two builds with different pin roots give the same
instructions), the kernel release and its headers, and bcc's version.

Anything that does not fit (a pinned map of another type or size, a
refused load, a tag that differs) makes `instantiate` give no program,
with the reason logged, and the caller compiles as before. An entry that does
not parse or fails its checksum is ignored with a one-line warning, and
the next compile replaces it. The folder is root's alone (0700); entries
are written to a temporary file and renamed into place.

The pure part (key, scan, encode, decode, patch) touches no kernel; the
rest is raw bpf(2) through datapath/bpf.py. loader.py drives both.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import struct
import tempfile
import threading
from dataclasses import asdict, dataclass
from typing import Callable, Optional

from seawall.control.datapath import bpf
from seawall.control.state import private_makedirs

log = logging.getLogger("seawall.cache")

FORMAT = 1  # bump when an entry's layout or meaning changes
KEEP = 16  # entries kept, the most recently written: one a build (upgrades, tunables)

BPF_LD_IMM64 = 0x18  # BPF_LD | BPF_IMM | BPF_DW: two instruction slots
BPF_CALL = 0x85  # BPF_JMP | BPF_CALL
BPF_PSEUDO_MAP_FD = 1
BPF_PSEUDO_CALL = 1
_INSN = struct.Struct("<BBhi")  # code, dst:4 src:4, off, imm


# --- pure: the key, the scan, the entry ----------------------------------------

def key(files: dict, flags: list, extra: dict) -> str:
    """The cache key: sha256 over {name: content bytes} of the sources, the
    compiler flags that change code, and `extra` (kernel, bcc, func...)."""
    h = hashlib.sha256()
    h.update(b"seawall-objcache %d\0" % FORMAT)
    for name in sorted(files):
        h.update(b"file\0%s\0%d\0" % (name.encode(), len(files[name])))
        h.update(files[name])
    for f in flags:
        h.update(b"flag\0%s\0" % f.encode())
    h.update(json.dumps(extra, sort_keys=True).encode())
    return h.hexdigest()


def scan(insns: bytes) -> tuple:
    """({map fd: [instruction index, ...]}, why it cannot be cached or None).

    Only map references are relocated here. Anything else that names
    another object (a bpf-to-bpf call or a callback address, which need
    BTF function info; a map value address) makes the object uncacheable."""
    if len(insns) % 8:
        return {}, "instructions are not whole 8-byte slots"
    slots: dict = {}
    i, n = 0, len(insns) // 8
    while i < n:
        code, regs, _, imm = _INSN.unpack_from(insns, i * 8)
        src = regs >> 4
        if code == BPF_LD_IMM64:
            if src == BPF_PSEUDO_MAP_FD:
                slots.setdefault(imm, []).append(i)
            elif src:
                return {}, f"a BPF_LD_IMM64 of kind {src} at {i}"
            i += 2
            continue
        if code == BPF_CALL and src == BPF_PSEUDO_CALL:
            return {}, f"a bpf-to-bpf call at {i}"
        i += 1
    return slots, None


def patch(insns: bytes, fds: dict) -> bytes:
    """The instructions with fds[index] in the immediate of each listed
    BPF_LD_IMM64 ({instruction index: fd})."""
    out = bytearray(insns)
    for i, fd in fds.items():
        code, regs, _, _ = _INSN.unpack_from(out, i * 8)
        if code != BPF_LD_IMM64 or regs >> 4 != BPF_PSEUDO_MAP_FD:
            raise ValueError(f"instruction {i} is not a map reference")
        struct.pack_into("<i", out, i * 8 + 4, fd)
    return bytes(out)


@dataclass(frozen=True)
class MapRecord:
    """One map the program references: what the kernel said about it when
    bcc loaded the program, where it was pinned, and which instructions
    load its fd."""

    name: str  # the kernel's name (15 characters at most)
    scope: str  # bpf.HOST, bpf.IFACE or bpf.SCRATCH
    pin: str  # the pin's file name in its folder ("" for SCRATCH)
    type: int
    key_size: int
    value_size: int
    max_entries: int
    flags: int
    slots: tuple

    def fits(self, info: bpf.MapInfo) -> Optional[str]:
        """None when a pinned map is this one's twin, else what differs."""
        want = (self.type, self.key_size, self.value_size, self.max_entries, self.flags)
        got = (info.type, info.key_size, info.value_size, info.max_entries, info.map_flags)
        if want == got:
            return None
        return "type, key, value, entries, flags %s, the cache's %s" % (got, want)


@dataclass(frozen=True)
class Entry:
    key: str
    func: str
    prog_type: int
    license: str
    kern_version: int
    tag: str  # hex of the kernel's tag for bcc's load
    insns: bytes  # map fds zeroed
    maps: tuple  # of MapRecord

    def encode(self) -> bytes:
        body = {**asdict(self), "format": FORMAT, "insns": base64.b64encode(self.insns).decode(),
                "maps": [asdict(m) for m in self.maps]}
        text = json.dumps(body, sort_keys=True)
        return json.dumps({"sha256": hashlib.sha256(text.encode()).hexdigest(), "entry": body},
                          sort_keys=True).encode()

    @classmethod
    def decode(cls, raw: bytes) -> "Entry":
        """An entry from its file's bytes; ValueError says what is wrong."""
        try:
            outer = json.loads(raw)
            body = outer["entry"]
            text = json.dumps(body, sort_keys=True)
            if hashlib.sha256(text.encode()).hexdigest() != outer["sha256"]:
                raise ValueError("checksum mismatch")
            if body.pop("format") != FORMAT:
                raise ValueError("another format")
            maps = tuple(MapRecord(**{**m, "slots": tuple(m["slots"])}) for m in body.pop("maps"))
            entry = cls(**{**body, "insns": base64.b64decode(body["insns"], validate=True), "maps": maps})
        except ValueError:
            raise
        except (KeyError, TypeError, AttributeError) as e:
            raise ValueError(f"malformed ({type(e).__name__}: {e})") from None
        for m in maps:
            numbers = (m.type, m.key_size, m.value_size, m.max_entries, m.flags, *m.slots)
            pin_ok = m.pin == "" if m.scope == bpf.SCRATCH else \
                m.scope in (bpf.HOST, bpf.IFACE) and m.pin not in ("", ".", "..") and "/" not in m.pin
            if not (isinstance(m.name, str) and isinstance(m.pin, str) and pin_ok
                    and all(type(n) is int and n >= 0 for n in numbers)):
                raise ValueError(f"malformed map record {m.name!r}")
        slots, why = scan(entry.insns)
        if why or sorted(i for ix in slots.values() for i in ix) != sorted(i for m in maps for i in m.slots):
            raise ValueError(why or "map references do not match the instructions")
        return entry


# --- the folder -------------------------------------------------------------------

class Cache:
    """The cache's folder. Unusable (not root's alone, not creatable) means
    a warning and no caching, never a failed load."""

    def __init__(self, folder: str):
        self.folder = folder
        self._usable: Optional[bool] = None

    def path(self, k: str) -> str:
        return os.path.join(self.folder, f"prog-{k}.json")

    def usable(self) -> bool:
        if self._usable is None:
            self._usable = self._check()
        return self._usable

    def _check(self) -> bool:
        try:
            private_makedirs(self.folder)
            st = os.stat(self.folder)
            if st.st_uid != os.geteuid():
                log.warning("object cache %s belongs to uid %d: not used", self.folder, st.st_uid)
                return False
            if st.st_mode & 0o077:
                os.chmod(self.folder, 0o700)
        except OSError as e:
            log.warning("object cache %s unusable (%s): compiling", self.folder, e.strerror or e)
            return False
        return True

    def get(self, k: str) -> Optional[Entry]:
        """The entry for key k, or None (absent, or corrupt: then removed)."""
        if not self.usable():
            return None
        try:
            with open(self.path(k), "rb") as f:
                raw = f.read()
        except FileNotFoundError:
            return None
        except OSError as e:
            log.warning("object cache: cannot read %s (%s): compiling", self.path(k), e.strerror)
            return None
        try:
            entry = Entry.decode(raw)
            if entry.key != k:
                raise ValueError("filed under another key")
            return entry
        except ValueError as e:
            log.warning("object cache: ignoring corrupt entry %s (%s): compiling", self.path(k), e)
            try:
                os.unlink(self.path(k))
            except OSError:
                pass
            return None

    def put(self, entry: Entry) -> bool:
        """Write an entry atomically (a temporary file renamed into place)."""
        if not self.usable():
            return False
        tmp = None
        try:
            fd, tmp = tempfile.mkstemp(dir=self.folder, prefix=".tmp-")
            with os.fdopen(fd, "wb") as f:
                f.write(entry.encode())
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path(entry.key))
            self._prune()
            return True
        except OSError as e:
            log.warning("object cache: cannot write %s (%s)", self.path(entry.key), e.strerror or e)
            if tmp:
                try:
                    os.unlink(tmp)
                except OSError:
                    pass
            return False


    def _prune(self) -> None:
        """Remove all but the KEEP entries written last (older builds')."""
        try:
            names = [n for n in os.listdir(self.folder) if n.startswith("prog-")]
            stamped = sorted(((os.stat(os.path.join(self.folder, n)).st_mtime_ns, n) for n in names), reverse=True)
            for _, name in stamped[KEEP:]:
                os.unlink(os.path.join(self.folder, name))
        except OSError:
            pass  # another process pruning at the same time


# --- the kernel side: record after bcc's load, instantiate on a hit -----------------

def _pins(folder: str) -> dict:
    """{map id: pin file name} of the maps pinned straight in folder."""
    out = {}
    try:
        names = [e.name for e in os.scandir(folder) if e.is_file()]
    except OSError:
        return out
    for name in names:
        try:
            map_id = bpf.pinned_map_id(os.path.join(folder, name))
        except OSError:  # a program's pin (the interface's "prog")
            continue
        if map_id is not None:
            out[map_id] = name
    return out


def record(k: str, func: str, prog_type: int, license: str, kern_version: int, insns: bytes, prog_fd: int,
           folders: dict, scopes: dict) -> tuple:
    """(Entry, None) for a program bcc has just loaded (insns: its
    dump_func, fds in place, still open), or (None, why not).

    folders: {bpf.HOST: pin root, bpf.IFACE: interface folder}, where the
    pins are looked for by map id. scopes: {map name: scope} of the maps'
    owners (MapSpec); a map pinned elsewhere than its owner says is not
    cached."""
    slots, why = scan(insns)
    if why:
        return None, why
    pinned = {scope: _pins(folder) for scope, folder in folders.items()}
    maps = []
    for fd, at in sorted(slots.items()):
        info = bpf.map_info(fd)
        scope, pin = bpf.SCRATCH, ""
        for sc, ids in pinned.items():
            if info.id in ids:
                scope, pin = sc, ids[info.id]
        name = info.name.decode()
        if scopes.get(name, scope) != scope:
            return None, f"map {name} is {scope}, its owner says {scopes[name]}"
        maps.append(MapRecord(name, scope, pin, info.type, info.key_size, info.value_size, info.max_entries,
                              info.map_flags, tuple(at)))
    tag = bytes(bpf.prog_info(prog_fd).tag).hex()
    zeroed = patch(insns, {i: 0 for m in maps for i in m.slots})
    return Entry(k, func, prog_type, license, kern_version, tag, zeroed, tuple(maps)), None


class _Mismatch(Exception):
    """A pinned map is not the one the entry was built with (why: how)."""

    def __init__(self, text: str, why: str):
        super().__init__(text)
        self.why = why


def mismatches(entry: Entry, folders: dict, skip: tuple = ()) -> list:
    """What differs between the maps pinned in folders and the ones
    entry was built with ([] when every pinned map is its twin; a map not
    pinned yet is no difference: the load creates it). skip: pin names
    not to check."""
    out = []
    for rec in entry.maps:
        if rec.scope == bpf.SCRATCH or rec.pin in skip:
            continue
        path = os.path.join(folders[rec.scope], rec.pin)
        if os.path.exists(path):
            try:
                os.close(_open_pinned(rec, path))
            except _Mismatch as e:
                out.append(f"{rec.pin}: {e.why}")
    return out


def _open_map(rec: MapRecord, folders: dict) -> int:
    """The fd of rec's map: its pin opened (and checked), or created."""
    if rec.scope == bpf.SCRATCH:
        return bpf.map_create(rec.type, rec.key_size, rec.value_size, rec.max_entries, rec.flags, rec.name)
    path = os.path.join(folders[rec.scope], rec.pin)
    if not os.path.exists(path):
        fd = bpf.map_create(rec.type, rec.key_size, rec.value_size, rec.max_entries, rec.flags, rec.name)
        try:
            bpf.obj_pin(fd, path)
            return fd
        except OSError:  # pinned meanwhile by another loader: use theirs
            os.close(fd)
    return _open_pinned(rec, path)


def _open_pinned(rec: MapRecord, path: str) -> int:
    """The fd of the map pinned at path, if it is rec's twin (else _Mismatch)."""
    fd = bpf.obj_get(path)
    why = rec.fits(bpf.map_info(fd))
    if why:
        os.close(fd)
        raise _Mismatch(f"pinned map {path} differs: {why}", why)
    return fd


def instantiate(entry: Entry, folders: dict, meanwhile: Optional[Callable[[], None]] = None) -> tuple:
    """Load a cached program: its maps opened or created in folders
    ({bpf.HOST: pin root, bpf.IFACE: interface folder}), their fds patched
    in, BPF_PROG_LOAD, the tag checked. Returns (the program's fd, None),
    or (None, keep) when the caller must compile instead (why is logged):
    keep says the entry is sound and the pins are odd (a map of another
    size pinned there), so the compile must not overwrite the entry with
    what it makes of those odd maps.

    meanwhile: called once the maps exist, while the kernel verifies the
    program in another thread (the verifier takes most of a second here,
    in the kernel, without the GIL); its exception is raised after the
    verifier is done, the program closed."""
    fds = []
    try:
        where = {}
        for rec in entry.maps:
            fd = _open_map(rec, folders)
            fds.append(fd)
            where.update({i: fd for i in rec.slots})
        prog_fd = _verify(entry, patch(entry.insns, where), meanwhile)
        tag = bytes(bpf.prog_info(prog_fd).tag).hex()
        if tag != entry.tag:
            os.close(prog_fd)
            raise OSError(f"the kernel's tag {tag} is not the compiled program's {entry.tag}")
        return prog_fd, None
    except _Theirs as e:  # meanwhile's own failure: the caller's to see, not a reason to compile
        raise e.error from None
    except (_Mismatch, OSError) as e:
        log.warning("object cache: cannot use the cached %s (%s): compiling", entry.func, e)
        return None, isinstance(e, _Mismatch)
    finally:
        for fd in fds:
            os.close(fd)


class _Theirs(Exception):
    """What meanwhile() raised, carried past the handlers of the cache's own errors."""

    def __init__(self, error: BaseException):
        super().__init__(str(error))
        self.error = error


def _verify(entry: Entry, insns: bytes, meanwhile: Optional[Callable[[], None]]) -> int:
    """BPF_PROG_LOAD, with meanwhile() run beside it: the program's fd."""
    if meanwhile is None:
        return bpf.prog_load(entry.prog_type, insns, entry.license, entry.func, entry.kern_version)[0]
    out: dict = {}

    def load() -> None:
        try:
            out["fd"] = bpf.prog_load(entry.prog_type, insns, entry.license, entry.func, entry.kern_version)[0]
        except OSError as e:
            out["error"] = e

    verifier = threading.Thread(target=load, name="verifier", daemon=True)
    verifier.start()
    try:
        meanwhile()
    except BaseException as e:
        verifier.join()
        if "fd" in out:
            os.close(out["fd"])
        raise _Theirs(e) from None
    verifier.join()
    if "error" in out:
        raise out["error"]
    return out["fd"]
