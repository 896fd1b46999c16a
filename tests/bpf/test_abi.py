"""The kernel/user ABI has one source, xdp/shared.h and tunables.h; the
control plane's mirror (control/datapath/abi.py) and every map owner's
declaration (MapSpec) are checked here against what the compiler made of
them: the BTF of compiled objects, as Cilium's alignchecker checks its Go
structs. No regex reads C.

- The real program (xdp/seawall.c): every map it has is declared by
  exactly one owner module, with its type, key, value, size and pin place;
  the key and value layouts in its BTF are the mirror's.
- A probe (abi_probe.c) compiled from the same headers: every enum, flag
  and tunable, and every struct, has the mirror's values and layout.

Every comparison is a pure function returning the differences, so the
drift tests at the bottom can show it failing: on an edited mirror, on the
probe compiled with another tunable, and on the probe compiled against an
edited copy of shared.h.
"""

from __future__ import annotations

import ctypes
import enum
import os
import shutil
import uuid

import pytest

import btf as btfmod
from seawall.control.datapath import abi, bpf, counters, loader
from seawall.control.datapath.bpf import HOST, IFACE, SCRATCH

HERE = os.path.dirname(os.path.abspath(__file__))
PROBE = os.path.join(HERE, "abi_probe.c")


# --- reading the objects -------------------------------------------------------

def map_table(prog_fd: int) -> tuple:
    """({name: (map_info, map id)}, Btf) of every map a loaded program uses."""
    out, blob_id = {}, None
    for map_id in btfmod.prog_map_ids(prog_fd):
        fd = btfmod.map_fd_by_id(map_id)
        try:
            info = bpf.map_info(fd)
        finally:
            os.close(fd)
        out[info.name.decode()] = info
        blob_id = blob_id or info.btf_id
    return out, btfmod.Btf(btfmod.blob(blob_id))


@pytest.fixture(scope="module")
def scratch():
    pin_root = f"/sys/fs/bpf/seawall-test-{uuid.uuid4().hex[:10]}"
    yield pin_root
    shutil.rmtree(pin_root, ignore_errors=True)


@pytest.fixture(scope="module")
def program(scratch):
    """The real program, loaded: (its maps, its BTF, pin root, interface folder)."""
    iface_dir = loader.iface_dir(scratch, "abi")
    loaded = loader.load(scratch, iface_dir)
    try:
        maps, btf = map_table(loaded.prog_fd)
        yield maps, btf, scratch, iface_dir
    finally:
        loaded.close()


def compile_probe(pin_root: str, defines=None, include=None) -> btfmod.Btf:
    loaded = loader.load(pin_root, loader.iface_dir(pin_root, "probe"), defines, source=PROBE,
                         func="sw_abi_probe", include=include)
    try:  # the probe's program uses no map: its one map's info has the object's BTF
        return btfmod.Btf(btfmod.blob(bpf.map_info(loaded.bpf[b"sw_abi"].map_fd).btf_id))
    finally:
        loaded.close()


@pytest.fixture(scope="module")
def probe(scratch):
    return compile_probe(scratch)


# --- the comparisons (pure) --------------------------------------------------------

def layout_diffs(btf: btfmod.Btf, tid: int, mirror, what: str) -> list:
    """A BTF type against a ctypes mirror: a struct member by member (name,
    offset, size), anything else by size."""
    t = btf.resolve(tid)
    size = btf.size(tid)
    out = []
    if ctypes.sizeof(mirror) != size:
        out.append(f"{what}: {size} bytes in C, {ctypes.sizeof(mirror)} in the mirror")
    if t.kind == btfmod.STRUCT and issubclass(mirror, ctypes.Structure):
        c = [(m.name, m.offset, m.size) for m in btf.members(t)]
        py = [(name, getattr(mirror, name).offset, getattr(mirror, name).size) for name, *_ in mirror._fields_]
        if c != py:
            out.append(f"{what}: members {c} in C, {py} in the mirror")
    elif t.kind == btfmod.STRUCT or issubclass(mirror, ctypes.Structure):
        if t.name not in ("in6_addr",):  # a union of arrays in C, 16 bytes in the mirror
            out.append(f"{what}: a struct on one side only ({t.name or btfmod._KIND_NAMES.get(t.kind)} in C)")
    return out


def cpu_slot_type(btf: btfmod.Btf, tid: int) -> tuple:
    """(the element type id, None) of a struct holding one array of one
    element per possible CPU (a cpu_slots map's value), or (None, why not)."""
    t = btf.resolve(tid)
    members = btf.members(t) if t.kind == btfmod.STRUCT else []
    arr = btf.resolve(members[0].type_id) if len(members) == 1 else None
    if arr is None or arr.kind != btfmod.ARRAY:
        return None, f"{t.name or t.id} is not a struct of one array"
    elem, _index, n = arr.data[0]
    if n != bpf.possible_cpus():
        return None, f"{n} slots in C, {bpf.possible_cpus()} possible CPUs"
    return elem, None


def struct_diffs(btf: btfmod.Btf, structs: dict) -> list:
    out = []
    for cname, mirror in structs.items():
        try:
            t = btf.named(btfmod.STRUCT, cname)
        except KeyError:
            out.append(f"struct {cname}: not in the object")
            continue
        out += layout_diffs(btf, t.id, mirror, f"struct {cname}")
    return out


def enum_diffs(btf: btfmod.Btf, enums: dict) -> list:
    """enums: {Python enum: (C name, prefix, the C enumerator that counts it or None)}."""
    out = []
    for py, (cname, prefix, count) in enums.items():
        try:
            c = btf.enumerators(cname)
        except KeyError:
            out.append(f"enum {cname}: not in the object")
            continue
        if count is not None:
            n = c.pop(count, None)
            if n != len(py):
                out.append(f"enum {cname}: {count} is {n} in C, the mirror has {len(py)} members")
        want = {prefix + m.name: int(m.value) for m in py}
        if c != want:
            out.append(f"enum {cname}: {sorted(c.items())} in C, {sorted(want.items())} in the mirror")
    return out


def tunable_diffs(btf: btfmod.Btf, mirror) -> list:
    c = {k[2:]: v for k, v in btf.enumerators("sw_tunables").items()}
    want = {name: getattr(mirror, name) for name in mirror.TUNABLES}
    return [f"{name}: {c.get(name)} in C, {want.get(name)} in the mirror"
            for name in sorted(c.keys() | want.keys()) if c.get(name) != want.get(name)]


def map_diffs(maps: dict, btf: btfmod.Btf, specs: tuple, pinned_id) -> list:
    """The program's maps against their owners' specs. pinned_id(spec) is
    the id of the map pinned where the spec says, or None."""
    out = []
    names = [s.name for s in specs]
    for name in sorted({n for n in names if names.count(n) > 1}):
        out.append(f"map {name}: declared by more than one owner")
    for name in sorted(maps.keys() - set(names)):
        out.append(f"map {name}: in the program, declared by no owner")
    for spec in specs:
        info = maps.get(spec.name)
        if info is None:
            out.append(f"map {spec.name}: declared, not in the program")
            continue
        for field, want in (("type", spec.type), ("key_size", spec.key_bytes()),
                            ("value_size", spec.value_bytes()), ("max_entries", spec.max_entries)):
            if getattr(info, field) != want:
                out.append(f"map {spec.name}: {field} {getattr(info, field)} in the program, {want} declared")
        if info.btf_key_type_id:
            out += layout_diffs(btf, info.btf_key_type_id, spec.key, f"map {spec.name} key")
            value_tid = info.btf_value_type_id
            if spec.cpu_slots:  # a struct of one array, a spec.value per possible CPU
                value_tid, why = cpu_slot_type(btf, value_tid)
                if why:
                    out.append(f"map {spec.name} value: {why}")
                    continue
            out += layout_diffs(btf, value_tid, spec.value, f"map {spec.name} value")
        else:
            out.append(f"map {spec.name}: no BTF for its key and value")
        pid = pinned_id(spec)
        if (spec.scope == SCRATCH) != (pid is None) or (pid is not None and pid != info.id):
            out.append(f"map {spec.name}: pinned as map {pid}, the program's is {info.id} ({spec.scope})")
    return out


# --- the real program and the probe --------------------------------------------------------

def test_every_map_of_the_program_is_its_owners_declaration(program):
    maps, btf, pin_root, iface_dir = program

    def pinned_id(spec):
        folder = {HOST: pin_root, IFACE: iface_dir}.get(spec.scope)
        return None if folder is None else bpf.pinned_map_id(spec.path(folder))

    assert len(maps) == len(loader.MAPS)
    assert map_diffs(maps, btf, loader.MAPS, pinned_id) == []


def test_the_program_pins_nothing_else(program):
    """The pin layout is the owners' (and the program's own pin)."""
    _, _, pin_root, iface_dir = program
    host = {s.name for s in loader.HOST_MAPS}
    assert set(os.listdir(pin_root)) - {"ifaces"} == host
    assert set(os.listdir(iface_dir)) == {s.name for s in counters.PINNED}  # the program is pinned on attach


def test_structs_enums_flags_and_tunables_match_the_probe(probe):
    assert struct_diffs(probe, abi.STRUCTS) == []
    assert enum_diffs(probe, abi.C_ENUMS) == []
    assert tunable_diffs(probe, abi) == []


def test_every_struct_of_the_header_is_mirrored(probe):
    """A struct shared.h gains must get its mirror (it reaches the probe
    through its anchor; the anchor itself is the probe's)."""
    anchor = probe.named(btfmod.STRUCT, "sw_abi")
    in_anchor = {probe.resolve(m.type_id).name for m in probe.members(anchor)
                 if probe.resolve(m.type_id).kind == btfmod.STRUCT}
    assert in_anchor == set(abi.STRUCTS)
    enums = {probe.resolve(m.type_id).name for m in probe.members(anchor)
             if probe.resolve(m.type_id).kind == btfmod.ENUM}
    assert enums == {c for c, _, _ in abi.C_ENUMS.values()} | {"sw_tunables"}


def test_the_program_and_the_probe_agree_on_every_struct_they_share(program, probe):
    _, btf, _, _ = program
    shared = [t.name for t in btf.types if t.kind == btfmod.STRUCT and t.name in abi.STRUCTS]
    assert len(shared) >= 10
    assert struct_diffs(btf, {n: abi.STRUCTS[n] for n in shared}) == []


# --- the check fails when the sides drift ------------------------------------------------------

def test_a_mirror_struct_with_fields_swapped_is_caught(probe):
    class SwBlock(ctypes.Structure):  # expires_ns and last_hit_ns swapped
        _fields_ = [("last_hit_ns", ctypes.c_uint64), ("expires_ns", ctypes.c_uint64),
                    ("prefixlen", ctypes.c_uint32), ("flags", ctypes.c_uint32)]

    diffs = struct_diffs(probe, {**abi.STRUCTS, "sw_block": SwBlock})
    assert len(diffs) == 1 and "struct sw_block: members" in diffs[0]


def test_a_mirror_struct_of_another_size_is_caught(probe):
    class SwSigMeta(ctypes.Structure):
        _fields_ = [("used", ctypes.c_uint32)]

    diffs = struct_diffs(probe, {"sw_sig_meta": SwSigMeta})
    assert any("4 in the mirror" in d for d in diffs), diffs


def test_a_mirror_enum_drift_is_caught(probe):
    Reason = enum.IntEnum("Reason", {**{m.name: m.value for m in abi.Reason}, "MON_SIG": 99})
    Extra = enum.IntFlag("CfgFlag", {"MONITOR": 1, "TURBO": 2})
    diffs = enum_diffs(probe, {Reason: abi.C_ENUMS[abi.Reason], Extra: abi.C_ENUMS[abi.CfgFlag]})
    assert len(diffs) == 2 and "enum sw_reason" in diffs[0] and "enum sw_cfg_flags" in diffs[1]


def test_a_missing_mirror_member_is_caught_by_the_count(probe):
    Event = enum.IntEnum("Event", {m.name: m.value for m in abi.Event if m.name != "VLAN"})
    diffs = enum_diffs(probe, {Event: abi.C_ENUMS[abi.Event]})
    assert any("SW_EVENT_MAX is 10 in C, the mirror has 9" in d for d in diffs), diffs


def test_a_map_spec_drift_is_caught(program):
    maps, btf, pin_root, iface_dir = program
    wrong = bpf.MapSpec("stats", IFACE, bpf.MAP_TYPE_PERCPU_ARRAY, abi.U32, abi.SwSource, abi.REASON_MAX)
    specs = tuple(wrong if s.name == "stats" else s for s in loader.MAPS)
    diffs = map_diffs(maps, btf, specs, lambda s: maps[s.name].id if s.scope != SCRATCH else None)
    assert any("map stats: value_size 16 in the program, 32 declared" in d for d in diffs), diffs
    assert any("map stats value" in d for d in diffs), diffs
    orphan = tuple(s for s in loader.MAPS if s.name != "sig_hits")
    diffs = map_diffs(maps, btf, orphan, lambda s: maps[s.name].id if s.scope != SCRATCH else None)
    assert diffs == ["map sig_hits: in the program, declared by no owner"]


def test_a_tunable_compiled_otherwise_is_caught(scratch):
    btf = compile_probe(scratch, defines={"SRC_BUCKETS": 2048})
    assert tunable_diffs(btf, abi) == ["SRC_BUCKETS: 2048 in C, 4096 in the mirror"]


def test_an_edited_header_is_caught(scratch, tmp_path):
    """The probe compiled against a copy of shared.h whose struct sw_block
    lost a field and whose sw_event gained one."""
    header = open(os.path.join(loader.xdp_dir(), "shared.h")).read()
    edited = header.replace("\t__u64 last_hit_ns; /* CLOCK_BOOTTIME ns of a recent drop, 0 = none */\n", "")
    edited = edited.replace("\tSW_EVENT_MAX = 10,", "\tSW_EV_NEW = 10,\n\tSW_EVENT_MAX = 11,")
    assert "__u64 last_hit_ns" not in edited and "SW_EV_NEW" in edited, "the edit did not apply: update this test"
    (tmp_path / "shared.h").write_text(edited)
    # force-included ahead of the probe: its guard then skips xdp/shared.h
    btf = compile_probe(scratch, include=str(tmp_path / "shared.h"))
    diffs = struct_diffs(btf, abi.STRUCTS) + enum_diffs(btf, abi.C_ENUMS)
    assert any(d.startswith("struct sw_block: 16 bytes in C, 24 in the mirror") for d in diffs), diffs
    assert any(d.startswith("enum sw_event: SW_EVENT_MAX is 11 in C") for d in diffs), diffs
