"""The bench's peer: xdp-filter (xdp-tools), loaded through libbpf."""

from __future__ import annotations

import ctypes
import glob
import os
from typing import Optional

import numpy as np

from seawall.control.datapath import bpf
from seawall.control.errors import SeawallError


class XdpFilter:
    """xdp-filter's own BPF object, as Debian's xdp-tools ships it, loaded
    with Debian's libbpf.so.1 through ctypes.

    The variant is xdpfilt_alw_ip: what `xdp-filter load --features
    ipv4,ipv6` picks (addresses only, default policy allow: a listed
    address is dropped). Its maps are per-CPU hashes keyed by exact
    address; `xdp-filter ip ADDR --mode src` sets the value to MAP_FLAG_SRC
    on every CPU, and so does fill(). Per packet it looks up the
    destination, then the source (xdp-filter/xdpfilt_prog.h). Three
    changes, none to its code: the maps are resized to hold the bench's
    lists (10,000 entries as shipped), they are not pinned, and the
    program's expected attach type is 0, as bcc loads seawall, so that the
    spoofed-mix wrapper may tail-call it (it only matters for attaching).
    """

    OBJECT = "xdpfilt_alw_ip.o"
    PROGRAM = "xdpfilt_alw_ip"
    MAP_FLAG_SRC = 1 << 0  # xdp-filter/common_kern_user.h

    @staticmethod
    def find() -> Optional[str]:
        dirs = [os.environ.get("LIBXDP_OBJECT_PATH", ""), "/usr/lib/bpf", "/usr/local/lib/bpf",
                *glob.glob("/usr/lib/*/bpf"), *glob.glob("/usr/local/lib/*/bpf")]
        for d in dirs:
            if d and os.path.exists(os.path.join(d, XdpFilter.OBJECT)):
                return os.path.join(d, XdpFilter.OBJECT)
        return None

    def __init__(self, path: str, v4_entries: int, v6_entries: int):
        lib = ctypes.CDLL("libbpf.so.1", use_errno=True)
        vp, cp, u32 = ctypes.c_void_p, ctypes.c_char_p, ctypes.c_uint32
        for name, res, args in (
            ("bpf_object__open_file", vp, [cp, vp]),
            ("libbpf_get_error", ctypes.c_long, [vp]),
            ("bpf_object__next_map", vp, [vp, vp]),
            ("bpf_map__name", cp, [vp]),
            ("bpf_map__set_pin_path", ctypes.c_int, [vp, cp]),
            ("bpf_map__set_max_entries", ctypes.c_int, [vp, u32]),
            ("bpf_object__find_program_by_name", vp, [vp, cp]),
            ("bpf_program__set_expected_attach_type", ctypes.c_int, [vp, ctypes.c_int]),
            ("bpf_object__load", ctypes.c_int, [vp]),
            ("bpf_program__fd", ctypes.c_int, [vp]),
            ("bpf_object__find_map_fd_by_name", ctypes.c_int, [vp, cp]),
            ("bpf_object__close", None, [vp]),
            ("libbpf_set_print", vp, [vp]),
        ):
            fn = getattr(lib, name)
            fn.restype, fn.argtypes = res, args
        self.lib = lib
        lib.libbpf_set_print(None)  # its notes on sections it skips are not ours to print
        obj = lib.bpf_object__open_file(path.encode(), None)
        if not obj or lib.libbpf_get_error(obj):
            raise SeawallError(f"libbpf cannot open {path}")
        self.obj = obj
        sizes = {b"filter_ipv4": max(10_000, v4_entries + 1), b"filter_ipv6": max(10_000, v6_entries + 1)}
        m = None
        while True:
            m = lib.bpf_object__next_map(obj, m)
            if not m:
                break
            lib.bpf_map__set_pin_path(m, None)  # no pins: xdp-filter's would go to /sys/fs/bpf/xdp-filter
            name = lib.bpf_map__name(m)
            if name in sizes:
                lib.bpf_map__set_max_entries(m, sizes[name])
        prog = lib.bpf_object__find_program_by_name(obj, self.PROGRAM.encode())
        if not prog:
            self.close()
            raise SeawallError(f"{path} has no program {self.PROGRAM}")
        lib.bpf_program__set_expected_attach_type(prog, 0)
        err = lib.bpf_object__load(obj)
        if err:
            self.close()
            raise SeawallError(f"libbpf cannot load {path}: {os.strerror(-err)}")
        self.prog_fd = lib.bpf_program__fd(prog)
        self.path = path

    def fill(self, map_name: str, keys: np.ndarray) -> None:
        fd = self.lib.bpf_object__find_map_fd_by_name(self.obj, map_name.encode())
        m = bpf.Map(os.dup(fd), map_name)
        try:
            vals = np.full((len(keys), m.buf_size // 8), self.MAP_FLAG_SRC, np.uint64).view(np.uint8)
            m.update_batch(np.ascontiguousarray(keys, np.uint8), vals)
        finally:
            m.close()

    def close(self) -> None:
        if self.obj:
            self.lib.bpf_object__close(self.obj)
            self.obj = None
