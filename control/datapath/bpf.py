"""The bpf(2) system call through ctypes: pinned objects, map I/O, test runs.

bcc compiles and loads the program (datapath/loader.py); everything after
that (the CLI changing a list, the daemon reading counters, tests running
packets) goes through the pinned objects with these raw calls. They are
cheap (no compilation), and batch reads land straight in numpy arrays.

`MapSpec` is how an owner module declares one of the program's maps (its
name, where it is pinned, its type and layout); nobody but the owner
spells a map's name.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
from dataclasses import dataclass
from functools import lru_cache
from typing import Iterator, Optional

import numpy as np

_SYS_BPF = {"x86_64": 321, "aarch64": 280, "armv7l": 386, "ppc64le": 361, "s390x": 351, "riscv64": 280}

# enum bpf_cmd (include/uapi/linux/bpf.h)
BPF_MAP_CREATE = 0
BPF_MAP_LOOKUP_ELEM = 1
BPF_MAP_UPDATE_ELEM = 2
BPF_MAP_DELETE_ELEM = 3
BPF_MAP_GET_NEXT_KEY = 4
BPF_PROG_LOAD = 5
BPF_OBJ_PIN = 6
BPF_OBJ_GET = 7
BPF_PROG_TEST_RUN = 10
BPF_PROG_GET_FD_BY_ID = 13
BPF_OBJ_GET_INFO_BY_FD = 15
BPF_MAP_LOOKUP_BATCH = 24
BPF_MAP_UPDATE_BATCH = 26
BPF_MAP_DELETE_BATCH = 27

# map update flags
BPF_ANY = 0
BPF_NOEXIST = 1
BPF_EXIST = 2

# enum bpf_map_type values seawall uses
MAP_TYPE_HASH = 1
MAP_TYPE_ARRAY = 2
MAP_TYPE_PERCPU_HASH = 5
MAP_TYPE_PERCPU_ARRAY = 6
MAP_TYPE_LRU_HASH = 9
MAP_TYPE_LRU_PERCPU_HASH = 10
MAP_TYPE_LPM_TRIE = 11
PERCPU_TYPES = {MAP_TYPE_PERCPU_HASH, MAP_TYPE_PERCPU_ARRAY, MAP_TYPE_LRU_PERCPU_HASH}
ENOTSUPP = 524  # the kernel's "no such operation" (include/linux/errno.h): a map type without batch ops

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


class BpfError(OSError):
    """A bpf(2) call failed; errno and a message naming the call."""


def _ptr(buf) -> int:
    if buf is None:
        return 0
    if isinstance(buf, np.ndarray):
        return buf.ctypes.data
    return ctypes.addressof(buf)


def call(cmd: int, attr: ctypes.Structure, what: str) -> int:
    """bpf(cmd, attr): the return value, or BpfError naming `what`."""
    nr = _SYS_BPF.get(platform.machine())
    if nr is None:
        raise BpfError(errno.ENOSYS, f"bpf(2): unsupported architecture {platform.machine()}")
    ret = _libc.syscall(nr, cmd, ctypes.byref(attr), ctypes.sizeof(attr))
    if ret < 0:
        err = ctypes.get_errno()
        raise BpfError(err, f"{what}: {os.strerror(err)}")
    return ret


class _ElemAttr(ctypes.Structure):
    _fields_ = [
        ("map_fd", ctypes.c_uint32),
        ("pad", ctypes.c_uint32),
        ("key", ctypes.c_uint64),
        ("value", ctypes.c_uint64),  # or next_key
        ("flags", ctypes.c_uint64),
    ]


class _ObjAttr(ctypes.Structure):
    _fields_ = [
        ("pathname", ctypes.c_uint64),
        ("bpf_fd", ctypes.c_uint32),
        ("file_flags", ctypes.c_uint32),
    ]


class _BatchAttr(ctypes.Structure):
    _fields_ = [
        ("in_batch", ctypes.c_uint64),
        ("out_batch", ctypes.c_uint64),
        ("keys", ctypes.c_uint64),
        ("values", ctypes.c_uint64),
        ("count", ctypes.c_uint32),
        ("map_fd", ctypes.c_uint32),
        ("elem_flags", ctypes.c_uint64),
        ("flags", ctypes.c_uint64),
    ]


class _MapCreateAttr(ctypes.Structure):
    _fields_ = [(f, ctypes.c_uint32) for f in ("map_type", "key_size", "value_size", "max_entries", "map_flags",
                                                "inner_map_fd", "numa_node")] + [("map_name", ctypes.c_char * 16)]


class _ProgLoadAttr(ctypes.Structure):
    _fields_ = [("prog_type", ctypes.c_uint32), ("insn_cnt", ctypes.c_uint32), ("insns", ctypes.c_uint64),
                ("license", ctypes.c_uint64), ("log_level", ctypes.c_uint32), ("log_size", ctypes.c_uint32),
                ("log_buf", ctypes.c_uint64), ("kern_version", ctypes.c_uint32), ("prog_flags", ctypes.c_uint32),
                ("prog_name", ctypes.c_char * 16)]


class _InfoAttr(ctypes.Structure):
    _fields_ = [("bpf_fd", ctypes.c_uint32), ("info_len", ctypes.c_uint32), ("info", ctypes.c_uint64)]


class IdAttr(ctypes.Structure):
    _fields_ = [("id", ctypes.c_uint32), ("next_id", ctypes.c_uint32), ("open_flags", ctypes.c_uint32)]


class _TestRunAttr(ctypes.Structure):
    _fields_ = [
        ("prog_fd", ctypes.c_uint32),
        ("retval", ctypes.c_uint32),
        ("data_size_in", ctypes.c_uint32),
        ("data_size_out", ctypes.c_uint32),
        ("data_in", ctypes.c_uint64),
        ("data_out", ctypes.c_uint64),
        ("repeat", ctypes.c_uint32),
        ("duration", ctypes.c_uint32),  # ns per run, averaged by the kernel
        ("ctx_size_in", ctypes.c_uint32),
        ("ctx_size_out", ctypes.c_uint32),
        ("ctx_in", ctypes.c_uint64),
        ("ctx_out", ctypes.c_uint64),
        ("flags", ctypes.c_uint32),
        ("cpu", ctypes.c_uint32),
        ("batch_size", ctypes.c_uint32),
    ]


class MapInfo(ctypes.Structure):
    _fields_ = [
        ("type", ctypes.c_uint32),
        ("id", ctypes.c_uint32),
        ("key_size", ctypes.c_uint32),
        ("value_size", ctypes.c_uint32),
        ("max_entries", ctypes.c_uint32),
        ("map_flags", ctypes.c_uint32),
        ("name", ctypes.c_char * 16),
        ("ifindex", ctypes.c_uint32),
        ("btf_vmlinux_value_type_id", ctypes.c_uint32),
        ("netns_dev", ctypes.c_uint64),
        ("netns_ino", ctypes.c_uint64),
        ("btf_id", ctypes.c_uint32),
        ("btf_key_type_id", ctypes.c_uint32),
        ("btf_value_type_id", ctypes.c_uint32),
        ("pad", ctypes.c_uint32),
        ("map_extra", ctypes.c_uint64),
    ]


class ProgInfo(ctypes.Structure):
    _fields_ = [
        ("type", ctypes.c_uint32),
        ("id", ctypes.c_uint32),
        ("tag", ctypes.c_uint8 * 8),
        ("jited_prog_len", ctypes.c_uint32),
        ("xlated_prog_len", ctypes.c_uint32),
        ("jited_prog_insns", ctypes.c_uint64),
        ("xlated_prog_insns", ctypes.c_uint64),
        ("load_time", ctypes.c_uint64),
        ("created_by_uid", ctypes.c_uint32),
        ("nr_map_ids", ctypes.c_uint32),
        ("map_ids", ctypes.c_uint64),
        ("name", ctypes.c_char * 16),
    ]


@lru_cache(maxsize=1)
def possible_cpus() -> int:
    """Number of possible CPUs: the stride of per-CPU map values."""
    with open("/sys/devices/system/cpu/possible") as f:
        spec = f.read().strip()
    n = 0
    for part in spec.split(","):
        lo, _, hi = part.partition("-")
        n += (int(hi) if hi else int(lo)) - int(lo) + 1
    return n


def obj_get(path: str) -> int:
    """Open a pinned object; returns a new fd (caller closes)."""
    p = ctypes.create_string_buffer(os.fsencode(path))
    attr = _ObjAttr(pathname=ctypes.addressof(p))
    return call(BPF_OBJ_GET, attr, f"open pinned {path}")


def obj_pin(fd: int, path: str) -> None:
    p = ctypes.create_string_buffer(os.fsencode(path))
    attr = _ObjAttr(pathname=ctypes.addressof(p), bpf_fd=fd)
    call(BPF_OBJ_PIN, attr, f"pin {path}")


def map_create(map_type: int, key_size: int, value_size: int, max_entries: int, flags: int = 0, name: str = "") -> int:
    """BPF_MAP_CREATE without BTF, the name cut to 15 characters as bcc does: a new fd."""
    attr = _MapCreateAttr(map_type=map_type, key_size=key_size, value_size=value_size,
                          max_entries=max_entries, map_flags=flags, map_name=name.encode()[:15])
    return call(BPF_MAP_CREATE, attr, f"create map {name}")


def prog_load(prog_type: int, insns: bytes, license: str, name: str = "", kern_version: int = 0,
              log_level: int = 0, log_size: int = 1 << 16) -> tuple:
    """BPF_PROG_LOAD of instructions whose map fds are in place, no BTF:
    (fd, verifier log; log_level 4 gives its figures). A refusal raises
    BpfError ending with the log's last line."""
    code = ctypes.create_string_buffer(bytes(insns), len(insns))
    lic = ctypes.create_string_buffer(license.encode())
    size = log_size if log_level else 0
    log = ctypes.create_string_buffer(max(size, 1))
    attr = _ProgLoadAttr(prog_type=prog_type, insn_cnt=len(insns) // 8, insns=ctypes.addressof(code),
                         license=ctypes.addressof(lic), log_level=log_level, log_size=size,
                         log_buf=ctypes.addressof(log) if size else 0, kern_version=kern_version,
                         prog_name=name.encode()[:15])
    try:
        fd = call(BPF_PROG_LOAD, attr, f"load program {name}")
    except BpfError as e:  # the log's last line says why
        last = log.value.decode(errors="replace").strip().splitlines()[-1:]
        raise BpfError(e.errno, e.strerror + "".join(f" ({ln[:200]})" for ln in last)) from None
    return fd, log.value.decode(errors="replace")


def pinned_map_id(path: str) -> Optional[int]:
    """The id of the map pinned at path, or None if nothing is. Ids are
    never reused, so a changed id means the pin names another map."""
    try:
        fd = obj_get(path)
    except OSError:
        return None
    try:
        return map_info(fd).id
    finally:
        os.close(fd)


def prog_fd_by_id(prog_id: int) -> int:
    return call(BPF_PROG_GET_FD_BY_ID, IdAttr(id=prog_id), f"open program id {prog_id}")


def obj_info(fd: int, info: ctypes.Structure, what: str):
    """BPF_OBJ_GET_INFO_BY_FD into info (a map's, a program's, BTF's)."""
    attr = _InfoAttr(bpf_fd=fd, info_len=ctypes.sizeof(info), info=ctypes.addressof(info))
    call(BPF_OBJ_GET_INFO_BY_FD, attr, what)
    return info


def map_info(fd: int) -> MapInfo:
    return obj_info(fd, MapInfo(), "map info")


def prog_info(fd: int) -> ProgInfo:
    return obj_info(fd, ProgInfo(), "program info")


class TestRunResult:
    __slots__ = ("retval", "duration_ns", "data_out")

    def __init__(self, retval: int, duration_ns: int, data_out: bytes):
        self.retval = retval
        self.duration_ns = duration_ns
        self.data_out = data_out


def prog_test_run(prog_fd: int, packet: bytes, repeat: int = 1) -> TestRunResult:
    """Run an XDP program on one packet with BPF_PROG_TEST_RUN.

    duration_ns is the kernel's mean time per run over `repeat` runs.
    """
    if not packet:
        raise ValueError("BPF_PROG_TEST_RUN needs at least one byte of packet")
    data_in = ctypes.create_string_buffer(bytes(packet), len(packet))
    out_size = len(packet) + 512
    data_out = ctypes.create_string_buffer(out_size)
    attr = _TestRunAttr(
        prog_fd=prog_fd,
        data_size_in=len(packet),
        data_size_out=out_size,
        data_in=ctypes.addressof(data_in),
        data_out=ctypes.addressof(data_out),
        repeat=repeat,
    )
    call(BPF_PROG_TEST_RUN, attr, "BPF_PROG_TEST_RUN")
    return TestRunResult(attr.retval, attr.duration, data_out.raw[: attr.data_size_out])


class Map:
    """A BPF map opened by fd (usually from a pin). Keys and values are
    bytes; per-CPU values come back as one slice per possible CPU."""

    def __init__(self, fd: int, name: str = "", cpu_slots: bool = False):
        self.fd = fd
        info = map_info(fd)
        self.type = info.type
        self.id = info.id
        self.key_size = info.key_size
        self.value_size = info.value_size
        self.max_entries = info.max_entries
        self.name = name or info.name.decode()
        # cpu_slots: one value holds a slot per possible CPU, laid out as a
        # per-CPU map's value reads back, and is read as one
        self.percpu = self.type in PERCPU_TYPES or cpu_slots
        self.ncpu = possible_cpus() if self.percpu else 1
        if cpu_slots:
            self.stride = self.value_size // self.ncpu
        else:  # per-CPU values are laid out with an 8-byte stride per CPU
            self.stride = (self.value_size + 7) // 8 * 8 if self.percpu else self.value_size
        self.buf_size = self.stride * self.ncpu

    @classmethod
    def open_pinned(cls, path: str, cpu_slots: bool = False) -> "Map":
        return cls(obj_get(path), os.path.basename(path), cpu_slots)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    def _key(self, key: bytes):
        if len(key) != self.key_size:
            raise ValueError(f"{self.name}: key is {len(key)} bytes, map wants {self.key_size}")
        return ctypes.create_string_buffer(bytes(key), self.key_size)

    def lookup(self, key: bytes) -> Optional[bytes]:
        k = self._key(key)
        v = ctypes.create_string_buffer(self.buf_size)
        attr = _ElemAttr(map_fd=self.fd, key=ctypes.addressof(k), value=ctypes.addressof(v))
        try:
            call(BPF_MAP_LOOKUP_ELEM, attr, f"{self.name}: lookup")
        except BpfError as e:
            if e.errno == errno.ENOENT:
                return None
            raise
        return v.raw

    def update(self, key: bytes, value: bytes, flags: int = BPF_ANY) -> None:
        if len(value) != self.buf_size:
            raise ValueError(f"{self.name}: value is {len(value)} bytes, map wants {self.buf_size}")
        k = self._key(key)
        v = ctypes.create_string_buffer(bytes(value), self.buf_size)
        attr = _ElemAttr(map_fd=self.fd, key=ctypes.addressof(k), value=ctypes.addressof(v), flags=flags)
        call(BPF_MAP_UPDATE_ELEM, attr, f"{self.name}: update")

    def delete(self, key: bytes) -> bool:
        """Delete one key; False when it was not there."""
        k = self._key(key)
        attr = _ElemAttr(map_fd=self.fd, key=ctypes.addressof(k))
        try:
            call(BPF_MAP_DELETE_ELEM, attr, f"{self.name}: delete")
        except BpfError as e:
            if e.errno == errno.ENOENT:
                return False
            raise
        return True

    def keys(self) -> Iterator[bytes]:
        """Iterate keys with BPF_MAP_GET_NEXT_KEY (one syscall per key).
        Prefer lookup_batch() for hash and array maps."""
        cur = None
        nxt = ctypes.create_string_buffer(self.key_size)
        while True:
            kbuf = None if cur is None else ctypes.create_string_buffer(cur, self.key_size)
            attr = _ElemAttr(
                map_fd=self.fd,
                key=0 if kbuf is None else ctypes.addressof(kbuf),
                value=ctypes.addressof(nxt),
            )
            try:
                call(BPF_MAP_GET_NEXT_KEY, attr, f"{self.name}: next key")
            except BpfError as e:
                if e.errno == errno.ENOENT:
                    return
                raise
            cur = nxt.raw
            yield cur

    def key_rows(self) -> np.ndarray:
        """Every key as (n, key_size) uint8 rows, walked with
        BPF_MAP_GET_NEXT_KEY (one syscall per key: LPM tries have no batch
        reads)."""
        ks = list(self.keys())
        if not ks:
            return np.zeros((0, self.key_size), np.uint8)
        return np.frombuffer(b"".join(ks), np.uint8).reshape(-1, self.key_size)

    def items(self) -> Iterator[tuple]:
        for k in list(self.keys()):
            v = self.lookup(k)
            if v is not None:
                yield k, v

    def lookup_batch(self, chunk: int = 8192):
        """Read the whole map with BPF_MAP_LOOKUP_BATCH.

        Returns (keys, values) as uint8 numpy arrays of shape
        (n, key_size) and (n, buf_size); per-CPU values are CPU-major
        slices of `stride` bytes. Raises BpfError(EINVAL/ENOTSUPP) on maps
        without batch support (LPM tries), where items() serves instead.
        """
        chunk = max(1, min(chunk, self.max_entries))
        keys = np.empty((self.max_entries, self.key_size), np.uint8)
        vals = np.empty((self.max_entries, self.buf_size), np.uint8)
        n, cursor = 0, None
        while n < self.max_entries:
            got, cursor = self._batch(keys, vals, n, min(chunk, self.max_entries - n), cursor)
            n += got
            if cursor is None or got == 0:
                break
        return keys[:n], vals[:n]

    def lookup_slice(self, cursor: Optional[bytes], count: int) -> tuple:
        """Read up to `count` entries of a hash map with one
        BPF_MAP_LOOKUP_BATCH, from `cursor` (None: the start). Returns
        (keys, values, cursor): the arrays as lookup_batch's, and the cursor
        to pass next time, None once the map's end was reached. The kernel
        stops before a hash bucket that would not fit, so a slice may hold
        fewer than `count` entries before the end."""
        count = max(count, 1)
        keys = np.empty((count, self.key_size), np.uint8)
        vals = np.empty((count, self.buf_size), np.uint8)
        n, cursor = self._batch(keys, vals, 0, count, cursor)
        return keys[:n], vals[:n], cursor

    def _batch(self, keys: np.ndarray, vals: np.ndarray, at: int, count: int, cursor: Optional[bytes]) -> tuple:
        """One BPF_MAP_LOOKUP_BATCH of up to count entries into rows at..
        of keys and vals, from cursor (None: the start). Returns (entries
        read, the next cursor or None at the map's end)."""
        in_b = ctypes.create_string_buffer(max(8, self.key_size))
        out_b = ctypes.create_string_buffer(max(8, self.key_size))
        if cursor is not None:
            ctypes.memmove(in_b, cursor, min(len(cursor), len(in_b)))
        attr = _BatchAttr(in_batch=0 if cursor is None else ctypes.addressof(in_b),
                          out_batch=ctypes.addressof(out_b), keys=keys.ctypes.data + at * self.key_size,
                          values=vals.ctypes.data + at * self.buf_size, count=count, map_fd=self.fd)
        try:
            call(BPF_MAP_LOOKUP_BATCH, attr, f"{self.name}: batch lookup")
        except BpfError as e:
            if e.errno != errno.ENOENT:
                raise
            return attr.count, None  # the last (possibly partial) batch
        return attr.count, out_b.raw

    def update_batch(self, keys: np.ndarray, values: np.ndarray, flags: int = BPF_ANY) -> int:
        """BPF_MAP_UPDATE_BATCH; returns how many were written. On failure
        the BpfError carries `written`: the kernel stops at the first entry
        it refuses and keeps the ones before it."""
        keys = np.ascontiguousarray(keys, dtype=np.uint8)
        values = np.ascontiguousarray(values, dtype=np.uint8)
        attr = _BatchAttr(keys=keys.ctypes.data, values=values.ctypes.data,
                          count=len(keys), map_fd=self.fd, elem_flags=flags)
        try:
            call(BPF_MAP_UPDATE_BATCH, attr, f"{self.name}: batch update")
        except BpfError as e:
            e.written = attr.count
            raise
        return attr.count

    def delete_batch(self, keys: np.ndarray) -> int:
        keys = np.ascontiguousarray(keys, dtype=np.uint8)
        attr = _BatchAttr(keys=keys.ctypes.data, count=len(keys), map_fd=self.fd)
        call(BPF_MAP_DELETE_BATCH, attr, f"{self.name}: batch delete")
        return attr.count

    def update_many(self, keys: np.ndarray, values: np.ndarray, flags: int = BPF_ANY) -> int:
        """Write rows with one batch call, or one update at a time where the
        kernel has no batch operation for the map. Returns how many went
        in; a refused entry raises BpfError whose `written` says how many
        went in before it."""
        keys = np.ascontiguousarray(keys, np.uint8).reshape(len(keys), -1)
        values = np.ascontiguousarray(values, np.uint8).reshape(len(keys), -1)
        if not len(keys):
            return 0
        try:
            return self.update_batch(keys, values, flags)
        except BpfError as e:
            if not (e.written == 0 and e.errno in _NO_BATCH):
                raise
        for i in range(len(keys)):
            try:
                self.update(keys[i].tobytes(), values[i].tobytes(), flags)
            except BpfError as e:
                e.written = i
                raise
        return len(keys)

    def delete_many(self, keys: np.ndarray) -> int:
        """Delete rows (absent ones are no error); returns how many were there."""
        keys = np.ascontiguousarray(keys, np.uint8).reshape(len(keys), -1)
        return sum(self.delete(k.tobytes()) for k in keys)

    def cpu_sum(self, values, fields: Optional[int] = None) -> np.ndarray:
        """Per-CPU values of u64 fields summed over CPUs: one value's raw
        bytes give (fields,), batch rows (n, buf_size) give (n, fields).
        fields: how many leading u64 fields [default: the whole value]."""
        fields = self.value_size // 8 if fields is None else fields
        if isinstance(values, (bytes, bytearray)):
            arr = np.frombuffer(values, dtype=np.uint64).reshape(self.ncpu, self.stride // 8)
            return arr[:, :fields].sum(axis=0, dtype=np.uint64)
        rows = np.ascontiguousarray(values).view(np.uint64).reshape(len(values), self.ncpu, self.stride // 8)
        return rows[:, :, :fields].sum(axis=1, dtype=np.uint64)

    def read_array(self, fields: Optional[int] = None) -> np.ndarray:
        """A whole (per-CPU) array of u64 fields, summed over CPUs and in
        slot order: shape (max_entries, fields)."""
        keys, vals = self.lookup_batch(chunk=self.max_entries)
        fields = self.value_size // 8 if fields is None else fields
        out = np.zeros((self.max_entries, fields), np.uint64)
        rows = self.cpu_sum(vals, fields) if self.percpu else \
            np.ascontiguousarray(vals).view(np.uint64).reshape(len(vals), -1)[:, :fields]
        out[keys.view(np.uint32).reshape(-1)] = rows
        return out


#: errnos of a batch call the map type does not support
_NO_BATCH = (errno.EINVAL, ENOTSUPP, errno.EOPNOTSUPP)

# where a map is pinned
HOST = "host"  # under the pin root: shared by every interface
IFACE = "iface"  # under the interface's own folder
SCRATCH = "scratch"  # not pinned: the program's private state


@dataclass(frozen=True)
class MapSpec:
    """One map of xdp/maps.h, as its owner module declares it: its name
    there (which is also its pin's), where it is pinned, its type, its key
    and value (ctypes types of abi.py, one CPU's value for a per-CPU map)
    and its size. tests/bpf/test_abi.py checks every spec against the
    compiled object."""

    name: str
    scope: str  # HOST, IFACE or SCRATCH
    type: int  # MAP_TYPE_*
    key: type
    value: type
    max_entries: int
    cpu_slots: bool = False  # value: one `value` per possible CPU, read as a per-CPU map's

    def path(self, folder: str) -> str:
        """Its pin in folder (the pin root for HOST, the interface's folder for IFACE)."""
        return os.path.join(folder, self.name)

    def pinned(self, folder: str) -> bool:
        return os.path.exists(self.path(folder))

    def open(self, folder: str) -> "Map":
        return Map.open_pinned(self.path(folder), self.cpu_slots)

    def key_bytes(self) -> int:
        return ctypes.sizeof(self.key)

    def value_bytes(self) -> int:
        return ctypes.sizeof(self.value) * (possible_cpus() if self.cpu_slots else 1)
