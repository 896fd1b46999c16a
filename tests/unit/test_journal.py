"""control/journal.py: the decision journal, its replay and its file. Pure
(the file tests use tmp_path only)."""

from __future__ import annotations

import json
import os
import stat
import tempfile

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from seawall.control.lists.journal import (
    OPS, VERSION, Decision, JournalFile, actor, encode, from_iso, history, iso, record, replay,
)

T0 = 1_790_000_000  # 2026-09-21, whole seconds: the journal keeps seconds
A, B, C, D = "198.18.0.5/32", "198.18.7.0/24", "2001:2::/48", "198.19.0.0/16"


def lines(*recs) -> list:
    return [encode(r) for r in recs]


def block(cidr, ts=T0, **kw):
    return record("block", ts, cidr, **kw)


# --- records ------------------------------------------------------------------

def test_iso():
    assert iso(0) == "1970-01-01T00:00:00Z"
    assert iso(T0) == "2026-09-21T14:13:20Z"
    assert iso(None) is None
    assert from_iso(iso(T0)) == T0
    assert from_iso("1970-01-01T00:00:00+00:00") == 0
    assert from_iso(None) is None


def test_record_fields():
    rec = record("block", T0, A, expires_at=T0 + 600, reason="SYN flood", source="auto", score=0.93)
    assert rec == {
        "v": VERSION, "ts": iso(T0), "op": "block", "cidr": A, "expires_at": iso(T0 + 600),
        "reason": "SYN flood", "source": "auto", "score": 0.93,
    }


def test_record_without_cidr_or_expiry():
    assert record("flush", T0) == {"v": VERSION, "ts": iso(T0), "op": "flush"}
    assert record("block", T0, A, expires_at=None)["expires_at"] is None


@pytest.mark.parametrize("op", ["", "blocK", "purge", "add"])
def test_record_refuses_unknown_ops(op):
    with pytest.raises(ValueError, match="unknown journal op"):
        record(op, T0, A)


def test_ops():
    assert {"block", "unblock", "flush", "allow", "unallow"} <= set(OPS)


def test_encode_is_one_sorted_compact_line():
    rec = block(A, reason="two\nlines", source="manual", features={"dport": 0.9})
    text = encode(rec)
    assert text.endswith("\n") and text.count("\n") == 1
    assert json.loads(text) == rec
    assert ", " not in text and ": " not in text
    keys = list(json.loads(text))
    assert keys == sorted(keys)


# --- replay ---------------------------------------------------------------------

def test_replay_block_and_allow():
    rep = replay(lines(
        block(A, expires_at=T0 + 600, reason="syn", source="auto"),
        record("allow", T0 + 1, B, reason="monitoring"),
    ))
    assert rep.blocks == {A: Decision(A, "block", T0, T0 + 600, "syn", "auto", {})}
    assert rep.allows == {B: Decision(B, "allow", T0 + 1, None, "monitoring", "manual", {})}
    assert rep.skipped == [] and rep.records == 2


def test_defaults_when_fields_are_absent():
    d = replay(['{"v":1,"ts":"2026-09-21T14:13:20Z","op":"block","cidr":"198.18.0.5/32"}\n']).blocks[A]
    assert (d.added_at, d.expires_at, d.reason, d.source, d.extra) == (T0, None, "", "manual", {})


def test_unblock_removes():
    rep = replay(lines(block(A), block(B), record("unblock", T0 + 1, A)))
    assert list(rep.blocks) == [B]
    assert rep.records == 3


def test_unblock_of_unknown_entry_is_harmless():
    rep = replay(lines(record("unblock", T0, A), block(B)))
    assert list(rep.blocks) == [B] and rep.skipped == [] and rep.records == 2


def test_later_record_wins():
    rep = replay(lines(
        block(A, expires_at=T0 + 60, reason="first"),
        block(A, T0 + 10, expires_at=T0 + 3600, reason="second", source="auto"),
    ))
    assert rep.blocks == {A: Decision(A, "block", T0 + 10, T0 + 3600, "second", "auto", {})}


def test_block_again_after_unblock():
    rep = replay(lines(block(A, reason="1"), record("unblock", T0 + 1, A), block(A, T0 + 2, reason="3")))
    assert rep.blocks[A].reason == "3" and rep.blocks[A].added_at == T0 + 2


def test_flush_clears_blocks_only():
    rep = replay(lines(
        block(A), block(B), record("allow", T0, C),
        record("flush", T0 + 1),
        block(D, T0 + 2),
    ))
    assert list(rep.blocks) == [D]
    assert list(rep.allows) == [C]
    assert rep.records == 5


def test_allow_and_unallow():
    rep = replay(lines(
        record("allow", T0, A, reason="a"), record("allow", T0, B),
        record("unallow", T0 + 1, A), record("allow", T0 + 2, B, reason="again"),
    ))
    assert list(rep.allows) == [B]
    assert rep.allows[B].reason == "again"
    assert rep.blocks == {}


def test_block_and_allow_lists_are_separate():
    rep = replay(lines(block(A), record("allow", T0, A), record("unallow", T0, A)))
    assert list(rep.blocks) == [A] and rep.allows == {}


def test_expired_entries_are_filtered_when_now_is_given():
    recs = lines(
        block(A, expires_at=T0 + 60),
        block(B, expires_at=T0 + 120),
        block(C),  # until removed
        record("allow", T0, D),
    )
    assert set(replay(recs).blocks) == {A, B, C}  # no now: no filter
    assert set(replay(recs, now=T0 + 59).blocks) == {A, B, C}
    assert set(replay(recs, now=T0 + 60).blocks) == {B, C}  # expiry is exclusive
    assert set(replay(recs, now=T0 + 10 ** 9).blocks) == {C}
    assert set(replay(recs, now=T0 + 10 ** 9).allows) == {D}
    assert replay(recs, now=T0 + 10 ** 9).records == 4


SIG = "udp sport 53 len 512-1500"


def test_signatures_are_a_third_list():
    rep = replay(lines(
        record("sig", T0, SIG, expires_at=T0 + 60, reason="reflection", source="auto", slot=3),
        record("sig", T0, "tcp flags S", reason="syn"),
        block(A),
        record("flush", T0 + 1),  # blocks only
        record("unsig", T0 + 2, "tcp flags S"),
        block(B, T0 + 3),
    ))
    assert rep.sigs == {SIG: Decision(SIG, "sig", T0, T0 + 60, "reflection", "auto", {"slot": 3})}
    assert list(rep.blocks) == [B]
    assert replay(lines(record("sig", T0, SIG, expires_at=T0 + 60)), now=T0 + 60).sigs == {}
    rep = replay(lines(record("sig", T0, SIG), block(A), record("sigflush", T0 + 1)))
    assert rep.sigs == {} and list(rep.blocks) == [A]


def test_extra_fields_are_kept():
    rep = replay(lines(block(A, expires_at=T0 + 60, reason="r", source="auto",
                             score=7.5, features={"dport": 0.2, "src": 0.9}, ttl=60)))
    assert rep.blocks[A].extra == {"score": 7.5, "features": {"dport": 0.2, "src": 0.9}, "ttl": 60}


@pytest.mark.parametrize("line, why", [
    ('{"v":2,"ts":"2026-09-21T14:13:20Z","op":"block","cidr":"198.18.7.0/24"}', "version"),
    ('{"ts":"2026-09-21T14:13:20Z","op":"block","cidr":"198.18.7.0/24"}', "version"),
    ('[1, 2, 3]', "version"),
    ('"block"', "version"),
    ('{"v":1,"ts":"2026-09-21T14:13:20Z","op":"purge","cidr":"198.18.7.0/24"}', "purge"),
    ('{"v":1,"ts":"2026-09-21T14:13:20Z","op":"block"}', "cidr"),
    ('{"v":1,"ts":"2026-09-21T14:13:20Z","cidr":"198.18.7.0/24"}', "op"),
    ('{"v":1,"op":"block","cidr":"198.18.7.0/24"}', "ts"),
    ('{"v":1,"ts":"yesterday","op":"block","cidr":"198.18.7.0/24"}', ""),
    ('{"v":1,"ts":"2026-09-21T14:13:20Z","op":"block","cidr":"198.18.7.0/24","expires_at":"soon"}', ""),
    # valid JSON with the wrong types: a hand edit or a flipped bit
    ('{"v":1,"ts":1790000000,"op":"block","cidr":"198.18.7.0/24"}', ""),
    ('{"v":1,"ts":"2026-09-21T14:13:20Z","op":"block","cidr":"198.18.7.0/24","expires_at":1790000600}', ""),
    ('{"v":1,"ts":["2026"],"op":"unblock","cidr":"198.18.7.0/24"}', ""),
    ('not json at all', "not JSON"),
    ('{"v":1,"ts":"2026-09-21T14:13:20Z","op":"blo', "truncated"),
])
def test_bad_record_is_skipped_and_reported(line, why):
    rep = replay(lines(block(A)) + [line + "\n"] + lines(record("allow", T0, C)))
    assert rep.skipped and rep.skipped[0][0] == 2 and len(rep.skipped) == 1
    assert why in rep.skipped[0][1]
    assert list(rep.blocks) == [A] and list(rep.allows) == [C]
    assert rep.records == 2


def test_garbage_in_the_middle_and_truncated_last_line():
    good = lines(block(A), record("allow", T0, B), block(C, T0 + 1), record("unblock", T0 + 2, A), block(D, T0 + 3))
    torn = encode(block("198.18.9.0/24", T0 + 4, reason="cut"))[:-25]  # no newline
    text = good[0] + good[1] + "\x00\x13garbage}{\n" + good[2] + good[3] + good[4] + torn
    rep = replay(text.splitlines(keepends=True))
    assert [n for n, _ in rep.skipped] == [3, 7]
    assert rep.skipped[1][1] == "truncated or not JSON"
    assert set(rep.blocks) == {C, D}
    assert set(rep.allows) == {B}
    assert rep.records == 5


def test_blank_lines_are_ignored_but_counted_for_line_numbers():
    rep = replay(["\n", encode(block(A)), "   \n", "oops\n", "\n"])
    assert rep.skipped == [(4, "truncated or not JSON")]
    assert list(rep.blocks) == [A] and rep.records == 1


# --- a model of the semantics, checked on random histories --------------------

cidrs = st.sampled_from([A, B, C, D])
events = st.one_of(
    st.tuples(st.just("block"), cidrs, st.one_of(st.none(), st.integers(1, 1000)), st.text(max_size=5)),
    st.tuples(st.just("unblock"), cidrs),
    st.tuples(st.just("flush")),
    st.tuples(st.just("allow"), cidrs, st.text(max_size=5)),
    st.tuples(st.just("unallow"), cidrs),
    st.tuples(st.just("sig"), st.sampled_from([SIG, "tcp flags S"]), st.one_of(st.none(), st.integers(1, 1000))),
    st.tuples(st.just("unsig"), st.sampled_from([SIG, "tcp flags S"])),
    st.tuples(st.just("sigflush")),
)


def _history(evs):
    recs, blocks, allows, sigs = [], {}, {}, {}
    for i, ev in enumerate(evs):
        ts = T0 + i
        if ev[0] == "block":
            exp = None if ev[2] is None else ts + ev[2]
            recs.append(block(ev[1], ts, expires_at=exp, reason=ev[3], n=i))
            blocks[ev[1]] = (ts, exp, ev[3], i)
        elif ev[0] == "unblock":
            recs.append(record("unblock", ts, ev[1]))
            blocks.pop(ev[1], None)
        elif ev[0] == "flush":
            recs.append(record("flush", ts))
            blocks.clear()
        elif ev[0] == "allow":
            recs.append(record("allow", ts, ev[1], reason=ev[2]))
            allows[ev[1]] = (ts, ev[2])
        elif ev[0] == "unallow":
            recs.append(record("unallow", ts, ev[1]))
            allows.pop(ev[1], None)
        elif ev[0] == "sig":
            exp = None if ev[2] is None else ts + ev[2]
            recs.append(record("sig", ts, ev[1], expires_at=exp))
            sigs[ev[1]] = (ts, exp)
        elif ev[0] == "unsig":
            recs.append(record("unsig", ts, ev[1]))
            sigs.pop(ev[1], None)
        else:
            recs.append(record("sigflush", ts))
            sigs.clear()
    return recs, blocks, allows, sigs


@given(st.lists(events, max_size=30), st.integers(0, 1100))
def test_replay_matches_a_model(evs, dt):
    recs, blocks, allows, sigs = _history(evs)
    now = T0 + dt
    rep = replay(lines(*recs), now=now)
    assert {c: (d.added_at, d.expires_at) for c, d in rep.sigs.items()} == \
        {c: v for c, v in sigs.items() if v[1] is None or v[1] > now}
    assert {c: (d.added_at, d.expires_at, d.reason, d.extra["n"]) for c, d in rep.blocks.items()} == \
        {c: v for c, v in blocks.items() if v[1] is None or v[1] > now}
    assert {c: (d.added_at, d.reason) for c, d in rep.allows.items()} == allows
    assert rep.records == len(recs) and rep.skipped == []


@settings(max_examples=50)
@given(st.lists(events, max_size=30), st.integers(0, 1100))
def test_compaction_keeps_the_live_lists(evs, dt):
    recs, _, _, _ = _history(evs)
    now = T0 + dt
    with tempfile.TemporaryDirectory() as d:
        jf = JournalFile(os.path.join(d, "journal.jsonl"))
        jf.append(recs)
        before = jf.read(now)
        jf.compact(now)
        after = jf.read(now)
        assert (after.blocks, after.allows, after.sigs) == (before.blocks, before.allows, before.sigs)
        assert after.records == len(before.blocks) + len(before.allows) + len(before.sigs)
        assert os.listdir(d) == ["journal.jsonl"]


# --- the file -----------------------------------------------------------------

@pytest.fixture
def umask022():
    old = os.umask(0o022)  # a common umask that would leave a 0644 file readable
    yield
    os.umask(old)


@pytest.fixture
def jf(tmp_path):
    return JournalFile(str(tmp_path / "journal.jsonl"))


def test_read_missing_file_is_empty(jf):
    rep = jf.read()
    assert (rep.blocks, rep.allows, rep.skipped, rep.records) == ({}, {}, [], 0)


def test_append_nothing_creates_nothing(jf):
    jf.append([])
    assert not os.path.exists(jf.path)


def test_append_read_round_trip(jf):
    r1 = [block(A, expires_at=T0 + 60, reason="r", source="auto", score=3)]
    r2 = [record("allow", T0 + 1, B), block(C, T0 + 2)]
    jf.append(r1)
    jf.append(r2)
    with open(jf.path) as f:
        assert f.read() == "".join(lines(*r1, *r2))
    rep = jf.read()
    assert set(rep.blocks) == {A, C} and set(rep.allows) == {B}
    assert rep.blocks[A] == Decision(A, "block", T0, T0 + 60, "r", "auto", {"score": 3})
    assert set(jf.read(now=T0 + 60).blocks) == {C}


def test_file_mode_is_0600(jf, umask022):
    jf.append([block(A)])
    assert stat.S_IMODE(os.stat(jf.path).st_mode) == 0o600
    jf.compact(T0)
    assert stat.S_IMODE(os.stat(jf.path).st_mode) == 0o600


def test_compact(jf):
    jf.append([
        block(A, expires_at=T0 + 60, reason="short"),
        block(B, expires_at=T0 + 3600, reason="long", source="auto", score=9),
        block(C),
        record("unblock", T0 + 1, C),
        record("allow", T0 + 2, D, reason="ours"),
        record("allow", T0 + 3, A),
    ])
    now = T0 + 120
    live = jf.read(now)
    returned = jf.compact(now)
    assert (returned.blocks, returned.allows) == (live.blocks, live.allows)
    with open(jf.path) as f:
        kept = [json.loads(x) for x in f]
    assert sorted((r["op"], r["cidr"]) for r in kept) == [("allow", A), ("allow", D), ("block", B)]
    rep = jf.read()  # no `now`: the expired entry is gone from the file itself
    assert set(rep.blocks) == {B} and set(rep.allows) == {A, D}
    assert rep.blocks[B] == Decision(B, "block", T0, T0 + 3600, "long", "auto", {"score": 9})
    assert not os.path.exists(jf.path + ".tmp")


def test_compact_of_missing_journal_writes_an_empty_one(jf):
    rep = jf.compact(T0)
    assert rep.records == 0
    assert os.path.getsize(jf.path) == 0


@pytest.mark.parametrize("tail", [
    encode(block("198.18.9.0/24", T0, reason="torn"))[:30],  # crash mid-write
    "\x00" * 64,  # zero-filled tail some file systems leave after a crash
])
def test_append_after_a_torn_last_line(jf, tail):
    with open(jf.path, "w") as f:
        f.write(encode(block(A)) + tail)
    jf.append([block(B, T0 + 1)])
    jf.append([record("allow", T0 + 2, C)])
    rep = jf.read()
    assert rep.skipped == [(2, "truncated or not JSON")]
    assert set(rep.blocks) == {A, B} and set(rep.allows) == {C}
    with open(jf.path) as f:
        assert f.read() == encode(block(A)) + tail + "\n" + encode(block(B, T0 + 1)) + encode(record("allow", T0 + 2, C))


def test_append_after_a_clean_last_line_adds_no_blank_line(jf):
    jf.append([block(A)])
    jf.append([block(B)])
    with open(jf.path) as f:
        assert f.read() == encode(block(A)) + encode(block(B))


def test_non_utf8_bytes_are_skipped(jf):
    with open(jf.path, "wb") as f:
        f.write(encode(block(A)).encode() + b"\xff\xfe\x80 junk\n" + encode(block(B)).encode())
    rep = jf.read()
    assert [n for n, _ in rep.skipped] == [2]
    assert set(rep.blocks) == {A, B}


# --- one entry's history and who wrote it -------------------------------------------

def test_history_of_one_entry():
    recs = [
        block(A, reason="first", by="alice"),
        block(B, T0 + 1, reason="other"),
        record("unblock", T0 + 2, A, by="bob"),
        record("flush", T0 + 3, by="carol"),  # A was not there: not part of its history
        block(A, T0 + 4, reason="again", by="alice"),
        record("allow", T0 + 5, A, reason="an allow of the same text"),
        record("flush", T0 + 6, by="carol"),  # removed A
        record("flush", T0 + 7, by="dave"),  # A gone already
    ]
    text = lines(*recs) + ["{torn", "[1]\n", "\n"]
    got = history(text, "block", A)
    assert [(r["op"], r["ts"], r.get("by")) for r in got] == [
        ("block", iso(T0), "alice"), ("unblock", iso(T0 + 2), "bob"),
        ("block", iso(T0 + 4), "alice"), ("flush", iso(T0 + 6), "carol")]
    assert [r["reason"] for r in got if r["op"] == "block"] == ["first", "again"]
    assert history(text, "allow", A) == [recs[5]]
    assert history(text, "block", C) == []


def test_history_from_the_file(tmp_path):
    j = JournalFile(str(tmp_path / "journal"))
    assert j.history("block", A) == []  # no journal yet
    j.append([block(A, reason="r", by="alice"), record("unallow", T0, A)])
    assert [r["by"] for r in j.history("block", A)] == ["alice"]


def test_actor_is_the_sudo_user(monkeypatch):
    import pwd

    monkeypatch.setenv("SUDO_USER", "alice")
    assert actor() == "alice"
    monkeypatch.delenv("SUDO_USER")
    assert actor() == pwd.getpwuid(os.getuid()).pw_name
    monkeypatch.setenv("SUDO_USER", "")  # set but empty: not a user
    assert actor() == pwd.getpwuid(os.getuid()).pw_name
