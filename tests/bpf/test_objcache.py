"""The compiled-object cache (control/datapath/objcache.py) with the real
program: a load from the cache runs no clang and behaves as the compiled
program on crafted frames; a corrupt entry or odd pins fall back to
compiling, with a warning; pin paths do not change the instructions."""

from __future__ import annotations

import json
import logging
import os
import shutil
import stat
import time
import uuid

import numpy as np
import pytest

from seawall.control.addr import Prefix
from seawall.control.datapath import bpf, counters, loader, objcache, sigtable
from seawall.control.lists.store import ListStore
from seawall.control.signature import Signature
from seawall.control.state import Paths

from frames import XDP_DROP, XDP_PASS, arp, eth, frag6, icmp4, ip4, ip6, tcp, udp

BAD4, OK4, ALLOWED4 = "198.18.1.66", "198.18.2.10", "198.18.3.3"
BAD6, OK6 = "2001:2:0:66::66", "2001:2:0:2::10"

#: (name, frame, verdict): each row runs through both programs
FRAMES = [
    ("v4-tcp-clean", eth() / ip4(OK4) / tcp(), XDP_PASS),
    ("v4-tcp-blocked", eth() / ip4(BAD4) / tcp(), XDP_DROP),
    ("v4-udp-blocked", eth() / ip4(BAD4) / udp(), XDP_DROP),
    ("v4-allowed-and-blocked", eth() / ip4(ALLOWED4) / udp(), XDP_PASS),
    ("v4-sig-udp-161", eth() / ip4(OK4) / udp(sport=161), XDP_DROP),
    ("v4-udp-other-port", eth() / ip4(OK4) / udp(sport=162), XDP_PASS),
    ("v4-icmp-vlan", eth(("q", 7)) / ip4(OK4) / icmp4(), XDP_PASS),
    ("v4-blocked-qinq", eth(("ad", 1), ("q", 2)) / ip4(BAD4) / tcp(), XDP_DROP),
    ("v4-fragment", eth() / ip4(OK4, frag=10, proto=17) / (b"f" * 40), XDP_PASS),
    ("v6-tcp-clean", eth() / ip6(OK6) / tcp(), XDP_PASS),
    ("v6-tcp-blocked", eth() / ip6(BAD6) / tcp(), XDP_DROP),
    ("v6-frag-clean", eth() / ip6(OK6) / frag6() / udp(), XDP_PASS),
    ("arp", eth() / arp(), XDP_PASS),
    ("truncated-v4", bytes(eth() / ip4(OK4) / tcp())[:30], XDP_PASS),
]


@pytest.fixture
def paths(tmp_path):
    pin_root = f"/sys/fs/bpf/seawall-test-{uuid.uuid4().hex[:10]}"
    p = Paths(pin_root, str(tmp_path / "state"), str(tmp_path / "cache"))
    yield p
    shutil.rmtree(pin_root, ignore_errors=True)


def entries(p: Paths) -> list:
    return sorted(f for f in os.listdir(p.cache_dir) if f.startswith("prog-"))


def load(p: Paths, name: str) -> loader.Loaded:
    return loader.load(p.pin_root, loader.iface_dir(p.pin_root, name), cache_dir=p.cache_dir)


def reasons(iface_dir: str) -> np.ndarray:
    with counters.IfaceCounters(iface_dir) as c:
        return c.read_stats()[:, 0].astype(np.int64)


def test_a_hit_runs_no_clang_and_behaves_as_the_compiled_program(paths, monkeypatch):
    t0 = time.monotonic()
    compiled = load(paths, "compiled")
    compile_s = time.monotonic() - t0
    hit = None
    try:
        assert not compiled.cached and len(entries(paths)) == 1
        folder = os.stat(paths.cache_dir)
        assert stat.S_IMODE(folder.st_mode) == 0o700 and folder.st_uid == os.geteuid()
        assert stat.S_IMODE(os.stat(os.path.join(paths.cache_dir, entries(paths)[0])).st_mode) == 0o600

        import bcc

        class NoCompile:
            XDP = bcc.BPF.XDP

            def __init__(self, *a, **kw):
                raise AssertionError("bcc compiled on a cache hit")

        with monkeypatch.context() as m:
            m.setattr(bcc, "BPF", NoCompile)
            t0 = time.monotonic()
            hit = load(paths, "hit")
            hit_s = time.monotonic() - t0
        assert hit.cached and hit.bpf is None
        # the verifier still runs on a hit; clang (0.6 s or more here) does not
        assert hit_s < compile_s, (hit_s, compile_s)
        same, own = _map_ids(compiled.prog_fd), _map_ids(hit.prog_fd)
        assert bytes(bpf.prog_info(hit.prog_fd).tag) == bytes(bpf.prog_info(compiled.prog_fd).tag)
        # the host-wide maps are shared, the interface's and scratch ones its own
        host = {s.name for s in loader.HOST_MAPS}
        assert {n: i for n, i in same.items() if n in host} == {n: i for n, i in own.items() if n in host}
        assert all(same[n] != own[n] for n in same if n not in host)
        for spec in counters.PINNED:
            assert spec.pinned(loader.iface_dir(paths.pin_root, "hit"))

        st = ListStore(paths)
        st.block_add([Prefix.parse(BAD4), Prefix.parse(BAD6), Prefix.parse(ALLOWED4)], None, "test")
        st.allow_add([Prefix.parse(ALLOWED4)], "test")
        st.sig_add(Signature(17, sport=161), None, "test")
        st.close()
        dirs = {n: loader.iface_dir(paths.pin_root, n) for n in ("compiled", "hit")}
        for name, frame, verdict in FRAMES:
            got = {}
            for prog, ld in (("compiled", compiled), ("hit", hit)):
                before = reasons(dirs[prog])
                ret = bpf.prog_test_run(ld.prog_fd, bytes(frame)).retval
                got[prog] = (ret, (reasons(dirs[prog]) - before).tolist())
            assert got["compiled"] == got["hit"], name
            assert got["hit"][0] == verdict, name
            assert sum(got["hit"][1]) == 1, name
    finally:
        compiled.close()
        if hit is not None:
            hit.close()


def _map_ids(prog_fd: int) -> dict:
    """{map name: id} of the maps a loaded program uses."""
    import ctypes

    n = bpf.prog_info(prog_fd).nr_map_ids
    ids = (ctypes.c_uint32 * n)()
    info = bpf.ProgInfo(nr_map_ids=n, map_ids=ctypes.addressof(ids))
    bpf.obj_info(prog_fd, info, "program info")
    out = {}
    for map_id in ids:
        fd = bpf.call(14, bpf.IdAttr(id=map_id), "map by id")  # BPF_MAP_GET_FD_BY_ID
        try:
            out[bpf.map_info(fd).name.decode()] = map_id
        finally:
            os.close(fd)
    return out


def _corrupt_truncated(path: str) -> None:
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) // 2)


def _corrupt_one_instruction(path: str) -> None:
    """Valid JSON, one instruction changed: only the checksum can tell."""
    doc = json.load(open(path))
    raw = bytearray(__import__("base64").b64decode(doc["entry"]["insns"]))
    raw[8 * 3] ^= 0x01
    doc["entry"]["insns"] = __import__("base64").b64encode(bytes(raw)).decode()
    with open(path, "w") as f:
        json.dump(doc, f)


@pytest.mark.parametrize("corrupt", [_corrupt_truncated, _corrupt_one_instruction], ids=["truncated", "bit-flip"])
def test_a_corrupt_entry_is_ignored_with_a_warning_and_replaced(paths, corrupt, caplog):
    load(paths, "a").close()
    path = os.path.join(paths.cache_dir, entries(paths)[0])
    good = open(path, "rb").read()
    corrupt(path)
    with caplog.at_level(logging.WARNING, logger="seawall.cache"):
        again = load(paths, "b")
    try:
        assert not again.cached
        warnings = [r.getMessage() for r in caplog.records if r.name == "seawall.cache"]
        assert len(warnings) == 1 and "corrupt entry" in warnings[0] and "\n" not in warnings[0]
        assert objcache.Entry.decode(open(path, "rb").read()).insns == objcache.Entry.decode(good).insns
    finally:
        again.close()
    third = load(paths, "c")
    try:
        assert third.cached
    finally:
        third.close()


def test_a_pinned_map_of_another_size_falls_back_and_keeps_the_entry(paths, caplog):
    load(paths, "a").close()
    path = os.path.join(paths.cache_dir, entries(paths)[0])
    good = open(path, "rb").read()
    odd = Paths(f"{paths.pin_root}-odd", paths.state_dir, paths.cache_dir)
    try:
        os.makedirs(odd.pin_root)
        # a sig_meta of two slots where the program has one: bcc reuses any
        # pin, the cache must not (the program still loads compiled)
        spec = sigtable.META
        fd = bpf.map_create(spec.type, spec.key_bytes(), spec.value_bytes(), 2, 0, spec.name)
        bpf.obj_pin(fd, spec.path(odd.pin_root))
        os.close(fd)
        with caplog.at_level(logging.WARNING, logger="seawall.cache"):
            ld = load(odd, "x")
        try:
            assert not ld.cached
            assert any("differs" in r.getMessage() for r in caplog.records if r.name == "seawall.cache")
        finally:
            ld.close()
        assert open(path, "rb").read() == good  # not overwritten by what the odd pins made
    finally:
        shutil.rmtree(odd.pin_root, ignore_errors=True)


def test_pin_paths_do_not_change_the_instructions(paths):
    """The claim behind keeping pin paths out of the key: two builds with
    different pin roots and interface folders give the same instructions
    once the map fds are zeroed."""
    other = f"{paths.pin_root}-other"
    a = loader.load(paths.pin_root, loader.iface_dir(paths.pin_root, "a"))
    b = loader.load(other, loader.iface_dir(other, "elsewhere"))
    try:
        def zeroed(ld):
            insns = ld.bpf.dump_func(loader.PROG_NAME.encode())
            slots, why = objcache.scan(insns)
            assert why is None and slots
            return objcache.patch(insns, {i: 0 for ix in slots.values() for i in ix})

        assert zeroed(a) == zeroed(b)
    finally:
        a.close()
        b.close()
        shutil.rmtree(other, ignore_errors=True)


def test_the_key_follows_the_code_not_the_pins():
    src = os.path.join(loader.xdp_dir(), loader.SOURCE)
    base = loader.cache_key(src, loader.code_flags(), loader.PROG_NAME, None)
    assert base == loader.cache_key(src, loader.code_flags(), loader.PROG_NAME, None)
    assert base != loader.cache_key(src, loader.code_flags({"MAX_SIGNATURES": 8}), loader.PROG_NAME, None)
    assert base != loader.cache_key(src, loader.code_flags(), "other_func", None)
    assert not any("PIN_ROOT" in f for f in loader.code_flags())


def test_meanwhile_runs_once_with_the_maps_there_and_its_error_is_not_a_cache_miss(paths):
    seen = []

    def meanwhile(name):
        def run():
            folder = loader.iface_dir(paths.pin_root, name)
            there = all(s.pinned(folder) for s in counters.PINNED) and loader.host_maps_pinned(paths.pin_root)
            seen.append((name, there))
        return run

    def loads(name, fn):
        return loader.load(paths.pin_root, loader.iface_dir(paths.pin_root, name), cache_dir=paths.cache_dir,
                           meanwhile=fn)

    first = loads("compiled", meanwhile("compiled"))  # compiled: after the load
    second = loads("hit", meanwhile("hit"))  # a hit: beside the verifier
    try:
        assert not first.cached and second.cached
        assert seen == [("compiled", True), ("hit", True)]
    finally:
        first.close()
        second.close()

    class Refused(OSError):
        pass

    def fails():
        raise Refused(5, "the restore failed")

    before = set(os.listdir("/proc/self/fd"))
    with pytest.raises(Refused):
        loads("failing", fails)  # an OSError of its own: raised, not taken for a cache miss
    assert set(os.listdir("/proc/self/fd")) == before  # the program and maps closed


def test_a_program_pinned_in_the_folder_is_no_map_to_record(paths):
    """An interface folder holds the program's pin beside its maps (a
    re-attach meets the old one): recording skips it."""
    folder = loader.iface_dir(paths.pin_root, "again")
    old = loader.load(paths.pin_root, folder)
    bpf.obj_pin(old.prog_fd, os.path.join(folder, loader.PROG_PIN))
    old.close()
    new = load(paths, "again")
    try:
        assert not new.cached and len(entries(paths)) == 1
    finally:
        new.close()
    again = load(paths, "again")
    try:
        assert again.cached
    finally:
        again.close()


def test_bccs_header_overrides_are_in_the_key(monkeypatch):
    """BCC_KERNEL_SOURCE names other headers to compile against: another build."""
    src = os.path.join(loader.xdp_dir(), loader.SOURCE)
    base = loader.cache_key(src, loader.code_flags(), loader.PROG_NAME, None)
    monkeypatch.setenv("BCC_KERNEL_SOURCE", "/usr/src/elsewhere")
    assert loader.cache_key(src, loader.code_flags(), loader.PROG_NAME, None) != base


def test_bccs_version_is_read_without_importing_it():
    import bcc

    assert loader.bcc_version() == bcc.__version__
