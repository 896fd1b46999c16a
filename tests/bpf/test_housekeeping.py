"""Housekeeping (Daemon.housekeeping, ListStore.prune_expired and
compact_journal): expired blocks leave the kernel, and a journal that is
mostly history is rewritten with what is in force, so that a daemon
running for weeks neither fills its blocklist with expired entries nor
replays every decision it ever made."""

from __future__ import annotations

import logging

from seawall.control.datapath import summary, tries
from seawall.control.addr import Prefix
from seawall.control.config import Config
from seawall.control.service.daemon import Daemon
from seawall.control.lists.journal import record

SEC = 1_000_000_000


def blocked(datapath) -> set:
    return {str(tries.prefix(k)) for v in (4, 6) for k in datapath.lists.maps.trie("block", v).keys()}


def test_prune_removes_expired_blocks_and_their_mirror_and_summary_bits(datapath):
    now = datapath.clock.boot_ns()
    datapath.block_raw("198.18.60.1/32", now - SEC)
    datapath.block_raw("2001:2:0:60::1/128", now - SEC)
    datapath.block_raw("198.18.61.1/32", now + 600 * SEC)
    datapath.block("198.18.62.0/24")  # permanent
    assert datapath.lists.prune_expired() == 2
    assert blocked(datapath) == {"198.18.61.1/32", "198.18.62.0/24"}
    assert datapath.host_entry("198.18.60.1/32") is None and datapath.host_entry("2001:2:0:60::1/128") is None
    assert datapath.host_entry("198.18.61.1/32") is not None
    idx = int.from_bytes(Prefix.parse("198.18.60.1").packed, "big") >> (32 - datapath.lists.maps.summaries.size_log2("block", 4))
    with summary.SUMMARIES[("block", 4)].open(datapath.paths.pin_root) as m:
        word = int.from_bytes(m.lookup((idx >> 6).to_bytes(4, "little")), "little")
    assert not word >> (idx & 63) & 1, "the pruned entry's summary bit is cleared"
    assert datapath.lists.prune_expired() == 0


def _history(store, n: int) -> None:
    now = store.clock.wall()
    store.journal.append([record("block", now - 7200, f"198.19.{i // 250}.{i % 250 + 1}/32",
                                 expires_at=now - 3600, reason="old", source="auto") for i in range(n)])


def test_a_journal_that_is_mostly_history_is_compacted_to_what_is_in_force(datapath):
    store = datapath.lists
    open(store.journal.path, "w").close()
    store.block_add([Prefix.parse("198.18.63.1/32")], ttl=600, reason="live")
    store.allow_add([Prefix.parse("198.18.64.0/24")], reason="customer")
    _history(store, 12000)
    assert store.compact_journal(min_records=100000) is None, "below the threshold: left alone"
    assert store.compact_journal() == (12002, 2)
    rep = store.journal.read()
    assert rep.records == 2 and set(rep.blocks) == {"198.18.63.1/32"} and set(rep.allows) == {"198.18.64.0/24"}
    assert rep.blocks["198.18.63.1/32"].reason == "live"
    assert store.compact_journal() is None, "nothing left to drop"


def test_a_journal_with_unreadable_lines_is_not_compacted(datapath):
    store = datapath.lists
    open(store.journal.path, "w").close()
    _history(store, 11000)
    with open(store.journal.path, "a") as f:
        f.write("{not json\n")
    before = open(store.journal.path).read()
    assert store.compact_journal() is None
    assert store.compaction_held == 1
    assert open(store.journal.path).read() == before, "the damaged line stays for the operator"


def test_the_daemon_housekeeps_and_says_what_it_did(datapath, caplog):
    store = datapath.lists
    open(store.journal.path, "w").close()
    _history(store, 10500)
    datapath.block_raw("198.18.65.1/32", datapath.clock.boot_ns() - SEC)
    d = Daemon(Config(), datapath.paths)
    d.store = store
    with caplog.at_level(logging.INFO, logger="seawall"):
        done = d.housekeeping()
    assert done["pruned"] == 1 and done["journal_records"] == 10500 and done["journal_kept"] == 0
    assert '"event": "housekeeping"' in caplog.text
    assert "198.18.65.1/32" not in blocked(datapath)


def test_the_daemon_says_once_why_it_does_not_compact(datapath, caplog):
    store = datapath.lists
    open(store.journal.path, "w").close()
    _history(store, 10500)
    with open(store.journal.path, "a") as f:
        f.write("{not json\n")
    d = Daemon(Config(), datapath.paths)
    d.store = store
    with caplog.at_level(logging.INFO, logger="seawall"):
        d.housekeeping()
        d.housekeeping()
    assert caplog.text.count('"event": "journal_not_compacted"') == 1
    assert '"unreadable_lines": 1' in caplog.text
