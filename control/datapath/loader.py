"""The one module that touches bcc: compile, load, attach, detach, pin.

Everything after loading goes through pinned objects and raw bpf(2) calls
(datapath/bpf.py), so the CLI's list and stats commands never compile.
Given a cache folder, a load keeps what bcc compiled (datapath/objcache.py)
and the next load of the same program skips clang.

The pin layout: the host-wide maps (lists, their derived maps, the
signature table) straight under the pin root, shared by every interface;
each attached interface's program and counters under ifaces/NAME. Which
maps there are is their owners' (`MAPS`).
"""

from __future__ import annotations

import ctypes
import os
import shutil
import socket
from dataclasses import dataclass
from importlib import resources
from typing import Callable, Optional

from seawall.control.datapath import abi, bpf, counters, hosts, netlink, objcache, sigtable, summary, synports, tries
from seawall.control.errors import SeawallError
from seawall.control.state import private_makedirs

PROG_NAME = "xdp_seawall"
SOURCE = "seawall.c"

# XDP attach flags (include/uapi/linux/if_link.h)
XDP_FLAGS_UPDATE_IF_NOEXIST = 1 << 0
XDP_FLAGS_SKB_MODE = 1 << 1
XDP_FLAGS_DRV_MODE = 1 << 2
MODE_FLAGS = {"native": XDP_FLAGS_DRV_MODE, "generic": XDP_FLAGS_SKB_MODE}

BPF_FS_MAGIC = 0xCAFE4A11

#: every map of xdp/maps.h, as its owner declares it
MAPS = (*tries.SPECS, *hosts.SPECS, *summary.SPECS, *sigtable.SPECS, *synports.SPECS, *counters.SPECS)
#: the maps pinned under the pin root, shared by every interface
HOST_MAPS = tuple(s for s in MAPS if s.scope == bpf.HOST)
#: the pinned program in an interface's folder (its maps are counters.PINNED)
PROG_PIN = "prog"
BPF_PROG_TYPE_XDP = 6  # enum bpf_prog_type (include/uapi/linux/bpf.h)


def xdp_dir() -> str:
    """Folder of the BPF C sources (installed as package seawall.xdp)."""
    return str(resources.files("seawall.xdp"))


def pin_name(ifname: str) -> str:
    """bpffs refuses names with a dot (eth0.100): escape '%' and '.'."""
    return ifname.replace("%", "%25").replace(".", "%2e")


def unpin_name(name: str) -> str:
    return name.replace("%2e", ".").replace("%25", "%")


def ifaces_dir(pin_root: str) -> str:
    return os.path.join(pin_root, "ifaces")


def iface_dir(pin_root: str, ifname: str) -> str:
    """The interface's folder: its pinned program and counters."""
    return os.path.join(ifaces_dir(pin_root), pin_name(ifname))


def host_maps_pinned(pin_root: str) -> bool:
    return all(s.pinned(pin_root) for s in HOST_MAPS)


class _Statfs(ctypes.Structure):
    _fields_ = [("f_type", ctypes.c_long), ("rest", ctypes.c_long * 15)]


def _fs_magic(path: str) -> int:
    libc = ctypes.CDLL(None, use_errno=True)
    st = _Statfs()
    if libc.statfs(os.fsencode(path), ctypes.byref(st)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), path)
    return st.f_type & 0xFFFFFFFF


def ensure_bpffs(pin_root: str) -> None:
    """Make sure pin_root sits on a bpffs, mounting /sys/fs/bpf if needed."""
    probe = pin_root
    while not os.path.exists(probe):
        probe = os.path.dirname(probe)
    if _fs_magic(probe) != BPF_FS_MAGIC:
        if not os.path.abspath(pin_root).startswith("/sys/fs/bpf"):
            raise SeawallError(f"{pin_root} is not on a bpffs mount")
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.mount(b"bpf", b"/sys/fs/bpf", b"bpf", 0, None) != 0:
            err = ctypes.get_errno()
            raise SeawallError(f"cannot mount bpffs on /sys/fs/bpf: {os.strerror(err)}")
    private_makedirs(pin_root)


def cflags(pin_root: str, iface_dir: str, defines: Optional[dict] = None) -> list:
    """Compiler flags: include path, pin paths and tunables, one per element."""
    return pin_flags(pin_root, iface_dir) + code_flags(defines)


def pin_flags(pin_root: str, iface_dir: str) -> list:
    return [f'-DPIN_ROOT="{pin_root}"', f'-DIFACE_PIN_DIR="{iface_dir}"']


def code_flags(defines: Optional[dict] = None) -> list:
    """The flags that change the instructions: the include path, the CPU
    count and the tunables (the pin paths only tell bcc where the maps are)."""
    flags = ["-I", xdp_dir(), f"-DSW_NR_CPUS={bpf.possible_cpus()}"]
    for name, value in sorted((defines or {}).items()):
        flags.append(f"-D{name}={int(value)}")
    return flags


def cache_key(src: str, flags: list, func: str, include: Optional[str]) -> str:
    """The object cache's key for a build: every file of xdp/, the source
    and forced include wherever they are, the flags that change code (the
    folder of xdp/ itself left out), the kernel and the headers bcc would
    compile against (bcc's environment overrides included), and bcc."""
    top = xdp_dir()
    files = {}
    for folder, dirs, names in os.walk(top):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for name in names:
            if not name.endswith(".pyc"):
                path = os.path.join(folder, name)
                with open(path, "rb") as f:
                    files[os.path.relpath(path, top)] = f.read()
    for role, path in (("source", src), ("include", include)):
        if path:
            with open(path, "rb") as f:
                files[f"<{role}>"] = f.read()
    release = os.uname().release
    headers = [os.path.realpath(f"/lib/modules/{release}/{d}") for d in ("build", "source")]
    headers += [os.environ.get(v, "") for v in ("BCC_KERNEL_SOURCE", "BCC_KERNEL_MODULES_SUFFIX")]
    return objcache.key(files, [f.replace(top, "<xdp>") for f in flags],
                        {"func": func, "kernel": release, "headers": headers, "bcc": bcc_version()})


def bcc_version() -> str:
    """bcc's version, read from its package without importing it: the
    import loads libbcc (LLVM and clang, 30 ms), which a load from the
    cache never needs."""
    import importlib.util

    spec = importlib.util.find_spec("bcc")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        try:
            with open(os.path.join(folder, "version.py")) as f:
                for line in f:
                    if line.startswith("__version__"):
                        return line.split("=", 1)[1].strip().strip("'\"")
        except OSError:
            continue
    import bcc  # an unusual layout: ask the package itself

    return bcc.__version__


@dataclass
class Loaded:
    """A loaded program; keep it alive while the fd is used. `bpf` is the
    bcc object when it was compiled, None when it came from the cache."""

    bpf: object  # bcc.BPF or None
    prog_fd: int
    pin_root: str
    iface_dir: str
    func: str = PROG_NAME

    @property
    def cached(self) -> bool:
        return self.bpf is None

    def close(self) -> None:
        if self.bpf is not None:
            self.bpf.cleanup()
        elif self.prog_fd >= 0:
            os.close(self.prog_fd)
            self.prog_fd = -1


def load(pin_root: str, iface_dir: str, defines: Optional[dict] = None, source: str = SOURCE,
         func: str = PROG_NAME, include: Optional[str] = None, cache_dir: Optional[str] = None,
         meanwhile: Optional[Callable[[], None]] = None) -> Loaded:
    """Compile a program of xdp/ (xdp/seawall.c unless told) with bcc and
    load it. Creates (or opens) the host-wide maps under pin_root and the
    interface's maps under iface_dir. `defines` override tunables.h;
    `include` is a header of xdp/ force-included ahead of the source (the
    bench builds its profile variants so, xdp/bench/profile.h).

    cache_dir: the object cache's folder. A build found there loads without
    clang (the same maps opened or created, the same instructions); a
    compile fills it. Any mismatch compiles, with a warning.

    meanwhile: called once, when the maps exist and before the program
    can be attached: on a cache hit while the kernel verifies it (which
    takes most of a second), after the load otherwise. If it raises, the
    program is closed and its exception raised."""
    ensure_bpffs(pin_root)
    private_makedirs(iface_dir)  # and ifaces/ above it: 0700 whatever the umask
    retire_stale_summaries(pin_root, int((defines or {}).get("LIST_SUMMARY_LOG2", abi.LIST_SUMMARY_LOG2)))
    src = os.path.join(xdp_dir(), source)
    forced = os.path.join(xdp_dir(), include) if include is not None else None
    flags = code_flags(defines) + (["-include", forced] if forced else [])
    folders = {bpf.HOST: pin_root, bpf.IFACE: iface_dir}
    cache = objcache.Cache(cache_dir) if cache_dir else None
    k = cache_key(src, flags, func, forced) if cache else None
    entry = cache.get(k) if cache else None
    keep, once = False, _Once(meanwhile)
    if entry is not None:
        fd, keep = objcache.instantiate(entry, folders, once)
        if fd is not None:
            return Loaded(None, fd, pin_root, iface_dir, func)
    loaded = _compile(src, pin_flags(pin_root, iface_dir) + flags, func, pin_root, iface_dir)
    if cache is not None and not keep:
        _remember(cache, k, loaded)
    try:
        once()
    except BaseException:
        loaded.close()
        raise
    return loaded


class _Once:
    """A callable that calls fn the first time only (none: does nothing)."""

    def __init__(self, fn: Optional[Callable[[], None]]):
        self.fn = fn

    def __call__(self) -> None:
        fn, self.fn = self.fn, None
        if fn is not None:
            fn()


def _compile(src: str, flags: list, func: str, pin_root: str, iface_dir: str) -> Loaded:
    try:
        from bcc import BPF
    except ImportError as e:  # pragma: no cover - setup installs it
        raise SeawallError("bcc is not importable: run scripts/setup (Debian's python3-bpfcc)") from e
    with _CapturedOutput() as out:
        try:
            b = BPF(src_file=src.encode(), cflags=flags)
            fn = b.load_func(func.encode(), BPF.XDP)
        except Exception as e:
            err = e
        else:
            err = None
    if err is not None:
        hint = _diagnostic(out.text)
        raise SeawallError(f"cannot compile or load {src}: {err}" + (f" ({hint})" if hint else "")) from err
    return Loaded(b, fn.fd, pin_root, iface_dir, func)


def _remember(cache: objcache.Cache, k: str, loaded: Loaded) -> None:
    """Put what bcc has just loaded into the cache (or say why not)."""
    from bcc import lib

    b = loaded.bpf
    try:
        entry, why = objcache.record(
            k, loaded.func, BPF_PROG_TYPE_XDP, lib.bpf_module_license(b.module).decode(),
            lib.bpf_module_kern_version(b.module), b.dump_func(loaded.func.encode()), loaded.prog_fd,
            {bpf.HOST: loaded.pin_root, bpf.IFACE: loaded.iface_dir}, {s.name: s.scope for s in MAPS})
    except Exception as e:  # the program is loaded: a cache that cannot record it is no failure
        entry, why = None, f"{type(e).__name__}: {e}"
    if entry is None:
        objcache.log.warning("object cache: %s not cached: %s", loaded.func, why)
    else:
        cache.put(entry)


def retire_stale_summaries(pin_root: str, log2: int) -> bool:
    """Unpin the maps derived from the tries when the list summaries are
    sized for another LIST_SUMMARY_LOG2 (made by an older build, or a
    test's), so that the program about to be compiled creates its own.
    bcc reuses a pinned map whatever its size, and a program would then
    read bits laid out for another size: a clear bit in the wrong place
    lets a listed source skip its list.

    The old summaries' flag is cleared and the old host mirrors emptied
    first, so a program still attached with them walks its tries from now
    on (slower, never wrong: nobody keeps the old maps in step any more).
    The new maps start unflagged and empty until the list store rebuilds
    them under the lock. Returns whether anything was retired."""
    pinned = summary.pinned_log2(pin_root)
    if pinned is None or pinned == log2:
        return False
    summary.disable(pin_root)
    for v in (4, 6):
        mirror = hosts.HostMirror(pin_root, v)
        mirror.empty()
        mirror.close()
    for spec in (*summary.SPECS, *hosts.SPECS):
        if spec.pinned(pin_root):
            os.unlink(spec.path(pin_root))
    return True


class _CapturedOutput:
    """Send file descriptors 1 and 2 to a temporary file for a while.

    bcc, clang and the verifier print their diagnostics straight to them,
    many lines at a time, while the CLI promises one line per error (and
    the daemon's stdout carries its events); load() keeps the telling line.
    """

    def __enter__(self) -> "_CapturedOutput":
        import sys
        import tempfile

        for f in (sys.stdout, sys.stderr):
            f.flush()
        self._tmp = tempfile.TemporaryFile()
        self._saved = [os.dup(1), os.dup(2)]
        os.dup2(self._tmp.fileno(), 1)
        os.dup2(self._tmp.fileno(), 2)
        self.text = ""
        return self

    def __exit__(self, *exc) -> None:
        for fd, saved in zip((1, 2), self._saved):
            os.dup2(saved, fd)
            os.close(saved)
        self._tmp.seek(0)
        self.text = self._tmp.read().decode(errors="replace")
        self._tmp.close()


def _diagnostic(text: str) -> str:
    """The line of compiler or loader output that says what went wrong."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    for ln in lines:
        if "error:" in ln or ln.startswith("Unable to find kernel headers"):
            return ln[:300]
    return lines[-1][:300] if lines else ""


def ensure_global_maps(pin_root: str, cache_dir: Optional[str] = None) -> None:
    """Create the host-wide maps if absent, so lists can be edited before
    any interface is attached. Compiles once (or loads from the object
    cache in cache_dir); a no-op when they exist."""
    if host_maps_pinned(pin_root):
        return
    scratch = os.path.join(ifaces_dir(pin_root), "scratch-%d" % os.getpid())
    loaded = load(pin_root, scratch, cache_dir=cache_dir)
    loaded.close()
    shutil.rmtree(scratch, ignore_errors=True)


def ifindex(ifname: str) -> int:
    try:
        return socket.if_nametoindex(ifname)
    except OSError:
        raise SeawallError(f"no such interface: {ifname}") from None


def attach(ifname: str, pin_root: str, mode: str = "auto", config_flags: int = 0,
           defines: Optional[dict] = None, before_attach: Optional[Callable[[], None]] = None,
           cache_dir: Optional[str] = None) -> str:
    """Load a program instance for ifname, pin it and attach it.

    mode: auto (native, falling back to generic), native or generic.
    before_attach: called once the maps exist (while the kernel verifies
    the program, on a cache hit), before the program sees a packet (to
    fill maps that loading has just created).
    cache_dir: the object cache (load()), None to always compile.
    Returns the mode actually used. The program stays attached after this
    process exits (netlink attachment holds it).
    """
    ifindex(ifname)
    folder = iface_dir(pin_root, ifname)
    # A failed attach leaves nothing behind: a new interface folder would
    # show as a stale interface in status and break stats.
    new_dir = not os.path.isdir(folder)
    try:
        return _load_and_attach(ifname, pin_root, folder, mode, config_flags, defines, before_attach, cache_dir)
    except BaseException:
        if new_dir:
            shutil.rmtree(folder, ignore_errors=True)
        raise


def _load_and_attach(ifname, pin_root, folder, mode, config_flags, defines, before_attach, cache_dir) -> str:
    def prepare() -> None:
        # configure before attaching: a --monitor attach must never drop
        counters.write_flags(folder, config_flags)
        if before_attach is not None:
            before_attach()

    loaded = load(pin_root, folder, defines, cache_dir=cache_dir, meanwhile=prepare)
    tried = ["native", "generic"] if mode == "auto" else [mode]
    last_err = None
    used = None
    for m in tried:
        try:
            netlink.set_xdp(ifname, loaded.prog_fd, MODE_FLAGS[m])
            used = m
            break
        except netlink.XdpRefused as e:
            last_err = e.reason
    if used is None:
        loaded.close()
        raise SeawallError(f"cannot attach XDP to {ifname} in {mode} mode: {last_err}")
    prog_pin = os.path.join(folder, PROG_PIN)
    if os.path.exists(prog_pin):
        os.unlink(prog_pin)
    bpf.obj_pin(loaded.prog_fd, prog_pin)
    loaded.close()
    return used


class ReplaceRefused(SeawallError):
    """replace() found the new build unable to take over (another table
    layout, or a load the kernel refused): the running program stays."""


def replace(ifname: str, pin_root: str, mode: str, defines: Optional[dict] = None,
            before_attach: Optional[Callable[[], None]] = None, cache_dir: Optional[str] = None) -> bool:
    """Put this build in place of the program attached to ifname (its
    mode: native or generic) in one step, keeping the pinned lists and
    counters: the kernel swaps the two programs between packets, so none
    goes unfiltered. Returns False when the attached program is this
    build already (nothing done).

    The build comes from the object cache, compiled into it first if it
    is not there (against scratch maps, so that a build whose tables
    differ never touches the pinned ones; bcc would take any pinned map
    whatever its size). A pinned map the build cannot use as it is
    (another size or layout) refuses the swap, naming it; the list
    summaries, which a new build of another summary size remakes, are the
    exception. before_attach: as for attach(). Raises ReplaceRefused when
    the running program must stay, SeawallError for other failures."""
    if not cache_dir:
        raise SeawallError("replacing a running program needs the object cache (--cache-dir)")
    folder = iface_dir(pin_root, ifname)
    src = os.path.join(xdp_dir(), SOURCE)
    flags = code_flags(defines)
    cache = objcache.Cache(cache_dir)
    k = cache_key(src, flags, PROG_NAME, None)
    entry = cache.get(k) or _compile_into(cache, k, src, flags, pin_root)
    old = bpf.obj_get(os.path.join(folder, PROG_PIN))
    try:
        folders = {bpf.HOST: pin_root, bpf.IFACE: folder}
        why = objcache.mismatches(entry, folders, skip=tuple(s.name for s in (*summary.SPECS, *hosts.SPECS)))
        if why:
            raise ReplaceRefused(f"{ifname}: the new build cannot take over the running program's tables "
                               f"({'; '.join(why)}): detach and attach to start it with fresh ones")
        if bytes(bpf.prog_info(old).tag).hex() == entry.tag:
            return False
        retire_stale_summaries(pin_root, int((defines or {}).get("LIST_SUMMARY_LOG2", abi.LIST_SUMMARY_LOG2)))
        fd, _ = objcache.instantiate(entry, folders, _Once(before_attach))
        if fd is None:
            raise ReplaceRefused(f"{ifname}: cannot load the new build (see the warning above); the running one stays")
        try:
            netlink.set_xdp(ifname, fd, MODE_FLAGS[mode], expected_fd=old)
            tmp = os.path.join(folder, PROG_PIN + "-new")
            if os.path.exists(tmp):
                os.unlink(tmp)
            bpf.obj_pin(fd, tmp)
            os.replace(tmp, os.path.join(folder, PROG_PIN))
        finally:
            os.close(fd)
        return True
    finally:
        os.close(old)


def _compile_into(cache: objcache.Cache, k: str, src: str, flags: list, pin_root: str) -> objcache.Entry:
    """Compile the build of key k into the cache, its maps made in a
    scratch folder of the pin root and removed after: its entry."""
    scratch = os.path.join(ifaces_dir(pin_root), f"scratch-build-{os.getpid()}")
    host, iface = os.path.join(scratch, "host"), os.path.join(scratch, "iface")
    private_makedirs(host)
    private_makedirs(iface)
    try:
        loaded = _compile(src, pin_flags(host, iface) + flags, PROG_NAME, host, iface)
        try:
            _remember(cache, k, loaded)
        finally:
            loaded.close()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    entry = cache.get(k)
    if entry is None:
        raise SeawallError("cannot keep the new build in the object cache (see the warning above)")
    return entry


def pinned_prog_id(pin_root: str, ifname: str) -> Optional[int]:
    """The id of the program pinned for ifname, or None."""
    path = os.path.join(iface_dir(pin_root, ifname), PROG_PIN)
    if not os.path.exists(path):
        return None
    fd = bpf.obj_get(path)
    try:
        return bpf.prog_info(fd).id
    finally:
        os.close(fd)


def detach(ifname: str, pin_root: str, attached_mode: Optional[str]) -> None:
    """Remove the XDP program from ifname (if attached_mode is set) and the
    interface's pins. Host-wide lists stay."""
    if attached_mode is not None:
        netlink.set_xdp(ifname, -1, MODE_FLAGS.get(attached_mode, 0))
    shutil.rmtree(iface_dir(pin_root, ifname), ignore_errors=True)
