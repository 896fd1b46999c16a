"""BTF, the kernel's type format, read from a loaded object: enough of it
to check the control plane's mirror of the ABI against what the compiler
made of xdp/shared.h (as Cilium's alignchecker checks its Go structs).

The kernel keeps every loaded program's and map's BTF; `blob(id)` fetches
it by the id in their info, through the product's bpf(2) wrapper (which
has no use for it otherwise). Format: include/uapi/linux/btf.h.
"""

from __future__ import annotations

import ctypes
import os
import struct
from dataclasses import dataclass, field

from seawall.control.datapath import bpf

BPF_MAP_GET_FD_BY_ID = 14
BPF_BTF_GET_FD_BY_ID = 19


class _BtfInfo(ctypes.Structure):
    _fields_ = [("btf", ctypes.c_uint64), ("btf_size", ctypes.c_uint32), ("id", ctypes.c_uint32),
                ("name", ctypes.c_uint64), ("name_len", ctypes.c_uint32), ("kernel_btf", ctypes.c_uint32)]


def blob(btf_id: int) -> bytes:
    """The raw BTF of a loaded object (its maps' info give the id)."""
    fd = bpf.call(BPF_BTF_GET_FD_BY_ID, bpf.IdAttr(id=btf_id), f"open BTF id {btf_id}")
    try:
        size = bpf.obj_info(fd, _BtfInfo(), "BTF info").btf_size
        buf = ctypes.create_string_buffer(size)
        bpf.obj_info(fd, _BtfInfo(btf=ctypes.addressof(buf), btf_size=size), "BTF info")
        return buf.raw
    finally:
        os.close(fd)


def map_fd_by_id(map_id: int) -> int:
    return bpf.call(BPF_MAP_GET_FD_BY_ID, bpf.IdAttr(id=map_id), f"open map id {map_id}")


def prog_map_ids(prog_fd: int) -> list:
    """The ids of every map a loaded program uses."""
    n = bpf.prog_info(prog_fd).nr_map_ids
    ids = (ctypes.c_uint32 * max(1, n))()
    info = bpf.ProgInfo(nr_map_ids=n, map_ids=ctypes.addressof(ids))
    bpf.obj_info(prog_fd, info, "program info")
    return list(ids[:min(n, info.nr_map_ids)])

MAGIC = 0xEB9F

# enum btf_kind
INT, PTR, ARRAY, STRUCT, UNION, ENUM, FWD, TYPEDEF, VOLATILE, CONST, RESTRICT = range(1, 12)
FUNC, FUNC_PROTO, VAR, DATASEC, FLOAT, DECL_TAG, TYPE_TAG, ENUM64 = range(12, 20)

#: bytes of kind-specific data after a type's 12-byte header: fixed, or per vlen item
_EXTRA = {INT: (4, 0), ARRAY: (12, 0), STRUCT: (0, 12), UNION: (0, 12), ENUM: (0, 8), FUNC_PROTO: (0, 8),
          VAR: (4, 0), DATASEC: (0, 12), DECL_TAG: (4, 0), ENUM64: (0, 12)}
_QUALIFIERS = (TYPEDEF, VOLATILE, CONST, RESTRICT, TYPE_TAG)


class BtfError(ValueError):
    """Not BTF, or BTF this reader does not understand."""


@dataclass(frozen=True)
class Member:
    name: str
    type_id: int
    offset: int  # bytes from the start of the struct
    size: int  # bytes


@dataclass
class Type:
    id: int
    kind: int
    name: str
    size_or_type: int  # size for INT/STRUCT/UNION/ENUM/DATASEC/FLOAT, else the referenced type id
    vlen: int
    kind_flag: bool
    data: list = field(default_factory=list)  # members, enumerators or array (elem, index, nelems)


class Btf:
    def __init__(self, raw: bytes):
        if len(raw) < 24:
            raise BtfError("too short for a BTF header")
        magic, version, _flags, hdr_len, type_off, type_len, str_off, str_len = struct.unpack_from("<HBBIIIII", raw)
        if magic != MAGIC or version != 1:
            raise BtfError(f"not BTF (magic {magic:#06x}, version {version})")
        types = raw[hdr_len + type_off: hdr_len + type_off + type_len]
        self._strings = raw[hdr_len + str_off: hdr_len + str_off + str_len]
        self.types: list = [Type(0, 0, "void", 0, 0, False)]
        pos = 0
        while pos < len(types):
            name_off, info, sot = struct.unpack_from("<III", types, pos)
            pos += 12
            kind, vlen = (info >> 24) & 0x1F, info & 0xFFFF
            t = Type(len(self.types), kind, self._str(name_off), sot, vlen, bool(info >> 31))
            fixed, per = _EXTRA.get(kind, (0, 0))
            if kind in (STRUCT, UNION):
                for i in range(vlen):
                    mname, mtype, moff = struct.unpack_from("<III", types, pos + 12 * i)
                    # with kind_flag, the offset's top byte is a bitfield's size
                    bits = moff & 0xFFFFFF if t.kind_flag else moff
                    t.data.append((self._str(mname), mtype, bits))
            elif kind == ENUM:
                for i in range(vlen):
                    ename, val = struct.unpack_from("<Ii" if t.kind_flag else "<II", types, pos + 8 * i)
                    t.data.append((self._str(ename), val))
            elif kind == ENUM64:
                for i in range(vlen):
                    ename, lo, hi = struct.unpack_from("<III", types, pos + 12 * i)
                    t.data.append((self._str(ename), hi << 32 | lo))
            elif kind == ARRAY:
                t.data.append(struct.unpack_from("<III", types, pos))
            elif kind not in range(1, 20):
                raise BtfError(f"unknown BTF kind {kind} (type {t.id})")
            pos += fixed + per * vlen
            self.types.append(t)

    def _str(self, off: int) -> str:
        end = self._strings.find(b"\0", off)
        return self._strings[off:end].decode()

    # --- lookups ----------------------------------------------------------

    def named(self, kind: int, name: str) -> Type:
        found = [t for t in self.types if t.kind == kind and t.name == name]
        if not found:
            raise KeyError(f"no {_KIND_NAMES.get(kind, kind)} {name!r} in the BTF")
        return found[0]

    def resolve(self, tid: int) -> Type:
        """The type behind typedefs and qualifiers."""
        t = self.types[tid]
        while t.kind in _QUALIFIERS:
            t = self.types[t.size_or_type]
        return t

    def size(self, tid: int) -> int:
        t = self.resolve(tid)
        if t.kind in (INT, STRUCT, UNION, ENUM, ENUM64, FLOAT, DATASEC):
            return t.size_or_type
        if t.kind == PTR:
            return 8
        if t.kind == ARRAY:
            elem, _index, n = t.data[0]
            return self.size(elem) * n
        raise BtfError(f"type {tid} ({_KIND_NAMES.get(t.kind, t.kind)}) has no size")

    def members(self, t: Type) -> list:
        if t.kind not in (STRUCT, UNION):
            raise BtfError(f"{t.name or t.id} is not a struct")
        out = []
        for name, tid, bits in t.data:
            if bits % 8:
                raise BtfError(f"{t.name}.{name} is a bitfield")
            out.append(Member(name, tid, bits // 8, self.size(tid)))
        return out

    def enumerators(self, name: str) -> dict:
        try:
            t = self.named(ENUM, name)
        except KeyError:
            t = self.named(ENUM64, name)
        return dict(t.data)


_KIND_NAMES = {INT: "int", PTR: "pointer", ARRAY: "array", STRUCT: "struct", UNION: "union", ENUM: "enum",
               TYPEDEF: "typedef", FUNC: "function", VAR: "variable", DATASEC: "section", ENUM64: "enum"}
