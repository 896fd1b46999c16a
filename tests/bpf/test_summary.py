"""List summaries (xdp/maps.h, control/summary.py) in the real program: a
clear bit skips the trie walk, so every way of writing a list must leave
the bit of each entry set, and a summary not yet built must be ignored."""

from __future__ import annotations

import os
import shutil
import uuid

import numpy as np
import pytest

from seawall.control.datapath import abi, bpf, loader, summary, tries
from seawall.control.addr import Prefix
from seawall.control.lists.store import ListStore
from seawall.control.state import Paths
from seawall.control.datapath.abi import Reason

from frames import XDP_DROP, XDP_PASS, eth, ip4, ip6, tcp

LOG2 = abi.LIST_SUMMARY_LOG2


def frame(src: str) -> bytes:
    return bytes(eth() / (ip4(src) if ":" not in src else ip6(src)) / tcp())


def verdict(datapath, src: str) -> tuple:
    out = datapath.run_counted(frame(src))
    return out.retval, out.reason


def bit_set(datapath, lst: str, addr: str) -> bool:
    """The v4 summary bit of addr in list lst, read from the pinned map."""
    idx = int.from_bytes(Prefix.parse(addr).packed, "big") >> (32 - LOG2)
    with summary.SUMMARIES[(lst, 4)].open(datapath.paths.pin_root) as m:
        raw = m.lookup((idx >> 6).to_bytes(4, "little"))
    return bool(int.from_bytes(raw, "little") >> (idx & 63) & 1)


def set_summarised(datapath, on: bool) -> None:
    datapath.lists.maps.summaries.set_flags(abi.ListsFlag.SUMMARISED if on else 0)


@pytest.fixture
def dp(datapath):
    """The datapath with its lists empty and the summaries rebuilt, so no
    bit is left over from an earlier test's entries."""
    datapath.lists.rebuild_derived()
    return datapath


def test_summaries_are_built_when_the_list_store_opens(datapath):
    assert datapath.lists.maps.summaries.summarised()


@pytest.mark.parametrize("cidr,inside,outside", [
    ("198.18.20.20/32", "198.18.20.20", "198.18.20.21"),
    ("198.18.20.0/24", "198.18.20.99", "198.18.21.1"),
    ("198.18.16.0/20", "198.18.31.1", "198.18.32.1"),  # shorter than the summary's /24: a run of bits
    ("198.18.0.0/16", "198.18.200.1", "198.19.0.1"),
    ("198.16.0.0/12", "198.19.255.1", None),
    ("2001:2:0:20::20/128", "2001:2:0:20::20", "2001:2:0:20::21"),
    ("2001:2:0:20::/64", "2001:2:0:20::99", "2001:2:0:21::1"),
    ("2001::/16", "2001:2::1", None),  # shorter than /32: every v6 bit
], ids=lambda x: str(x))
def test_entries_of_every_length_drop_what_they_cover_and_nothing_else(datapath, cidr, inside, outside):
    datapath.block(cidr)
    assert verdict(datapath, inside) == (XDP_DROP, Reason.DROP_BLOCK)
    if outside is not None:
        assert verdict(datapath, outside) == (XDP_PASS, Reason.PASS_CLEAN)


def test_a_source_far_from_every_entry_has_its_bit_clear_and_passes(dp):
    datapath = dp
    datapath.block("198.18.20.20/32")
    assert bit_set(datapath, "block", "198.18.20.20")
    assert not bit_set(datapath, "block", "198.19.128.1")
    assert verdict(datapath, "198.19.128.1") == (XDP_PASS, Reason.PASS_CLEAN)


def test_the_allowlist_still_wins_through_its_summary(datapath):
    datapath.block("198.18.20.20/32")
    datapath.allow("198.18.20.0/24")
    assert verdict(datapath, "198.18.20.20") == (XDP_PASS, Reason.PASS_ALLOW)


def test_bulk_writes_mark_the_summaries(datapath):
    many = [Prefix(4, (0xC6124000 + 16 * i).to_bytes(4, "big"), 32) for i in range(300)]  # 198.18.64.0 ...
    assert len(datapath.lists.block_add(many, ttl=60)) == 300
    assert all(verdict(datapath, str(p).split("/")[0])[0] == XDP_DROP for p in many[::37])
    datapath.lists.allow_add([Prefix.parse("198.18.64.0/28")])
    assert verdict(datapath, "198.18.64.0") == (XDP_PASS, Reason.PASS_ALLOW)


def test_a_clear_bit_skips_the_trie_until_the_summaries_are_rebuilt(dp):
    """A write that bypasses ListStore (never done outside this test)
    shows the skip is real; an incomplete summary is ignored; a rebuild
    takes in whatever the trie holds."""
    datapath = dp
    src = "198.19.144.1"
    p = Prefix.parse(f"{src}/32")
    raw = bpf.Map.open_pinned(os.path.join(datapath.paths.pin_root, "block_v4"))
    try:
        raw.update(tries.key(p), bytes(abi.SwBlock(prefixlen=32)))
        assert not bit_set(datapath, "block", src)
        assert verdict(datapath, src) == (XDP_PASS, Reason.PASS_CLEAN), "the clear bit skipped the trie"
        set_summarised(datapath, False)
        assert verdict(datapath, src) == (XDP_DROP, Reason.DROP_BLOCK), "not summarised: the trie is walked"
        datapath.lists.rebuild_derived()
        assert bit_set(datapath, "block", src) and datapath.lists.maps.summaries.summarised()
        assert verdict(datapath, src) == (XDP_DROP, Reason.DROP_BLOCK)
    finally:
        raw.close()
        datapath.lists.rebuild_derived()


def test_a_rebuild_clears_the_bits_of_removed_entries(dp):
    datapath = dp
    datapath.block("198.18.40.1/32")
    assert bit_set(datapath, "block", "198.18.40.1")
    datapath.lists.block_del([Prefix.parse("198.18.40.1/32")])
    assert bit_set(datapath, "block", "198.18.40.1"), "a delete leaves the bit: only a trie walk wasted"
    datapath.lists.rebuild_derived()
    assert not bit_set(datapath, "block", "198.18.40.1")


def test_index_math_matches_the_program_for_ipv6(datapath):
    """A v6 entry whose /32 differs from the source's never clears the
    source's bit by accident: compare the kernel's verdicts to the spans."""
    from seawall.control.datapath.summary import spans

    datapath.block("2001:2:0:30::/64")
    key = np.frombuffer(tries.key(Prefix.parse("2001:2:0:30::/64")), np.uint8).reshape(1, -1)
    (start,), (end,) = spans(6, key, LOG2)
    assert end - start == 1
    assert verdict(datapath, "2001:2:0:30::1") == (XDP_DROP, Reason.DROP_BLOCK)


def test_a_build_with_another_summary_size_retires_the_old_summaries(tmp_path):
    """bcc reuses a pinned map whatever its size. A program built with
    another LIST_SUMMARY_LOG2 (an upgrade) must get summaries of its own
    size, the program still attached with the old ones must stop trusting
    them, and a list store opened before the change must mark the new ones."""
    pin_root = f"/sys/fs/bpf/seawall-test-{uuid.uuid4().hex[:10]}"
    paths = Paths(pin_root=pin_root, state_dir=str(tmp_path))
    loaded = []
    try:
        old = loader.load(pin_root, os.path.join(pin_root, "ifaces", "old"), {"LIST_SUMMARY_LOG2": 16})
        loaded.append(old)
        daemon_store = ListStore(paths)  # as a running daemon holds it
        assert daemon_store.maps.summaries.summarised()
        assert daemon_store.maps.summaries.size_log2("block", 4) == 16
        daemon_store.block_add([Prefix.parse("198.18.20.20/32")], reason="before")

        def verdict_of(prog, src):
            return bpf.prog_test_run(prog.prog_fd, frame(src)).retval

        assert verdict_of(old, "198.18.20.20") == XDP_DROP

        new = loader.load(pin_root, os.path.join(pin_root, "ifaces", "new"))
        loaded.append(new)
        with bpf.Map.open_pinned(os.path.join(pin_root, "block_sum_v4")) as m:
            assert m.max_entries == 1 << (LOG2 - 6), "the new build pinned summaries of its own size"
        old_meta = bpf.Map(os.dup(old.bpf[b"list_meta"].map_fd), "list_meta")
        assert abi.SwListMeta.from_buffer_copy(old_meta.lookup(b"\0" * 4)).flags == 0, \
            "the old program walks its tries from now on"
        old_meta.close()
        old_hosts = bpf.Map(os.dup(old.bpf[b"block_host_v4"].map_fd), "block_host_v4")
        assert list(old_hosts.keys()) == [], "the old mirror is emptied: nobody keeps it in step now"
        old_hosts.close()
        assert verdict_of(new, "198.18.20.20") == XDP_DROP, "unflagged new summaries are not trusted"

        store = ListStore(paths)  # what attach does before the new program sees a packet
        assert store.maps.summaries.summarised() and store.maps.summaries.size_log2("block", 4) == LOG2
        assert store.maps.mirrors[4].map().lookup(Prefix.parse("198.18.20.20").packed) is not None, \
            "the new mirror is filled from the trie"
        store.close()
        daemon_store.block_add([Prefix.parse("198.18.40.40/32")], reason="after")
        assert daemon_store.maps.mirrors[4].map().lookup(Prefix.parse("198.18.40.40").packed) is not None, \
            "the daemon's store writes the new mirror"
        for prog in (old, new):
            assert verdict_of(prog, "198.18.20.20") == XDP_DROP
            assert verdict_of(prog, "198.18.40.40") == XDP_DROP, "the daemon's store marked the new summaries"
            assert verdict_of(prog, "198.18.40.41") == XDP_PASS
        daemon_store.close()
    finally:
        for lo in loaded:
            lo.close()
        shutil.rmtree(pin_root, ignore_errors=True)


def test_summaries_never_built_get_only_their_set_words_written(dp):
    """Opening a list store completes summaries never built (a first start:
    the arrays are new and zeroed) by writing only the words with a bit
    set, not 4 x 2 MiB of zeros; every entry's bit is set all the same. A
    bit left from before stays set (a trie walk wasted, no verdict
    changed; the entries below are in two words of 64 /24s); an explicit
    rebuild still clears it."""
    datapath = dp
    datapath.block("198.18.50.1/32")
    datapath.lists.block_del([Prefix.parse("198.18.50.1/32")])
    datapath.block("198.19.60.0/24")
    set_summarised(datapath, False)  # as if never built, with a stale bit in place
    written = []
    orig = bpf.Map.update_batch

    def counting(self, keys, values, flags=bpf.BPF_ANY):
        written.append((self.name, len(keys)))
        return orig(self, keys, values, flags)

    bpf.Map.update_batch = counting
    try:
        store = ListStore(datapath.paths)  # what attach does before the program sees a packet
        store.close()
    finally:
        bpf.Map.update_batch = orig
    assert datapath.lists.maps.summaries.summarised()
    sums = {s.name for s in summary.SUMMARIES.values()}
    assert [n for n, _ in written if n in sums] and all(k <= 1 for n, k in written if n in sums), written
    assert bit_set(datapath, "block", "198.19.60.77")
    assert bit_set(datapath, "block", "198.18.50.1"), "the stale bit stays"
    assert verdict(datapath, "198.18.50.1") == (XDP_PASS, Reason.PASS_CLEAN)
    assert verdict(datapath, "198.19.60.77") == (XDP_DROP, Reason.DROP_BLOCK)
    datapath.lists.rebuild_derived()
    assert not bit_set(datapath, "block", "198.18.50.1") and bit_set(datapath, "block", "198.19.60.77")
