"""The object cache's pure part: scanning instructions, patching map fds,
an entry's encoding and every way a stored entry can be wrong (no root)."""

from __future__ import annotations

import dataclasses
import os
import struct

import pytest

from seawall.control.datapath import bpf, objcache


def insn(code, dst=0, src=0, off=0, imm=0) -> bytes:
    return struct.pack("<BBhi", code, dst | src << 4, off, imm)


def ld_map(fd: int, dst: int = 1) -> bytes:
    return insn(objcache.BPF_LD_IMM64, dst, objcache.BPF_PSEUDO_MAP_FD, imm=fd) + insn(0)


MOV_R0_2 = insn(0xB7, 0, imm=2)  # r0 = 2
EXIT = insn(0x95)
PROGRAM = ld_map(7) + MOV_R0_2 + ld_map(9, 2) + ld_map(7, 3) + EXIT


def test_scan_finds_every_map_reference_by_fd():
    slots, why = objcache.scan(PROGRAM)
    assert why is None
    assert slots == {7: [0, 5], 9: [3]}


@pytest.mark.parametrize("code, why", [
    (insn(objcache.BPF_CALL, src=objcache.BPF_PSEUDO_CALL, imm=3), "bpf-to-bpf call"),
    (insn(objcache.BPF_LD_IMM64, 1, 4, imm=3) + insn(0), "BPF_LD_IMM64 of kind 4"),  # a callback's address
    (insn(objcache.BPF_LD_IMM64, 1, 2, imm=3) + insn(0), "BPF_LD_IMM64 of kind 2"),  # a map value
    (b"\0" * 12, "whole 8-byte slots"),
])
def test_scan_refuses_what_it_cannot_relocate(code, why):
    assert why in objcache.scan(MOV_R0_2 + code + EXIT)[1]


def test_a_plain_helper_call_is_no_relocation():
    slots, why = objcache.scan(insn(objcache.BPF_CALL, imm=1) + EXIT)
    assert why is None and slots == {}


def test_patch_puts_fds_in_and_refuses_other_instructions():
    out = objcache.patch(PROGRAM, {0: 40, 3: 41, 5: 40})
    assert objcache.scan(out)[0] == {40: [0, 5], 41: [3]}
    assert out[16:24] == MOV_R0_2
    with pytest.raises(ValueError, match="not a map reference"):
        objcache.patch(PROGRAM, {2: 40})


def entry(**kw) -> objcache.Entry:
    maps = (objcache.MapRecord("sigs", bpf.HOST, "sigs", bpf.MAP_TYPE_ARRAY, 4, 24, 16, 0, (0, 5)),
            objcache.MapRecord("stamp_cache", bpf.SCRATCH, "", bpf.MAP_TYPE_PERCPU_ARRAY, 4, 16, 1, 0, (3,)))
    fields = dict(key="k" * 64, func="xdp_seawall", prog_type=6, license="GPL", kern_version=0,
                  tag="00" * 8, insns=objcache.patch(PROGRAM, {0: 0, 3: 0, 5: 0}), maps=maps)
    fields.update(kw)
    return objcache.Entry(**fields)


def test_an_entry_survives_its_encoding():
    e = entry()
    assert objcache.Entry.decode(e.encode()) == e


@pytest.mark.parametrize("mangle, why", [
    (lambda raw: raw[: len(raw) // 2], "Unterminated|Expecting"),
    (lambda raw: raw.replace(b'"license": "GPL"', b'"license": "MIT"'), "checksum"),
    (lambda raw: b"[]", "malformed"),
    (lambda raw: b"", "Expecting value"),
])
def test_a_damaged_entry_is_refused_with_a_reason(mangle, why):
    with pytest.raises(ValueError, match=why):
        objcache.Entry.decode(mangle(entry().encode()))


def test_an_entry_whose_slots_miss_a_map_reference_is_refused():
    maps = entry().maps[:1]  # the reference at 3 has no map
    with pytest.raises(ValueError, match="do not match"):
        objcache.Entry.decode(entry(maps=maps).encode())


def test_the_key_moves_with_any_file_flag_or_fact():
    files = {"seawall.c": b"int x;", "maps.h": b"//"}
    k = objcache.key(files, ["-DA=1"], {"kernel": "6.18"})
    assert k == objcache.key(dict(reversed(list(files.items()))), ["-DA=1"], {"kernel": "6.18"})
    assert k != objcache.key({**files, "maps.h": b"/ "}, ["-DA=1"], {"kernel": "6.18"})
    assert k != objcache.key({**files, "new.h": b""}, ["-DA=1"], {"kernel": "6.18"})
    assert k != objcache.key(files, ["-DA=2"], {"kernel": "6.18"})
    assert k != objcache.key(files, ["-DA=1"], {"kernel": "6.19"})


def test_a_map_record_names_what_differs_in_a_pinned_map():
    rec = entry().maps[0]
    info = bpf.MapInfo(type=bpf.MAP_TYPE_ARRAY, key_size=4, value_size=24, max_entries=16, map_flags=0)
    assert rec.fits(info) is None
    info.max_entries = 32
    assert "32" in rec.fits(info)


def test_the_folder_keeps_the_entries_written_last(tmp_path, monkeypatch):
    monkeypatch.setattr(objcache, "KEEP", 3)
    cache = objcache.Cache(str(tmp_path / "cache"))
    for i in range(5):
        assert cache.put(entry(key=f"{i:064x}"))
        os.utime(cache.path(f"{i:064x}"), ns=(i * 10**9, i * 10**9))
    cache._prune()
    assert sorted(os.listdir(cache.folder)) == [f"prog-{i:064x}.json" for i in (2, 3, 4)]
    assert cache.get(f"{4:064x}") == entry(key=f"{4:064x}")
    assert cache.get(f"{0:064x}") is None
    assert oct(os.stat(cache.folder).st_mode & 0o777) == "0o700"


def test_a_corrupt_file_is_refused_with_one_line_and_removed(tmp_path, caplog):
    cache = objcache.Cache(str(tmp_path / "cache"))
    k = "a" * 64
    cache.put(entry(key=k))
    with open(cache.path(k), "r+b") as f:
        f.truncate(100)
    with caplog.at_level("WARNING", logger="seawall.cache"):
        assert cache.get(k) is None
    [rec] = caplog.records
    assert "corrupt entry" in rec.getMessage() and "\n" not in rec.getMessage()
    assert not os.path.exists(cache.path(k))


def test_an_entry_filed_under_another_key_is_refused(tmp_path):
    cache = objcache.Cache(str(tmp_path / "cache"))
    cache.put(entry(key="b" * 64))
    os.rename(cache.path("b" * 64), cache.path("c" * 64))
    assert cache.get("c" * 64) is None


@pytest.mark.parametrize("field, value", [("scope", "elsewhere"), ("pin", "../../etc/x"), ("pin", ""),
                                          ("max_entries", "16"), ("slots", (0, -5))])
def test_a_map_record_out_of_shape_is_refused(field, value):
    maps = (objcache.MapRecord(**{**dataclasses.asdict(entry().maps[0]), field: value}), entry().maps[1])
    with pytest.raises(ValueError, match="malformed map record"):
        objcache.Entry.decode(entry(maps=maps).encode())

