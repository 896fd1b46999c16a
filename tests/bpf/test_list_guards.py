"""The lists' guards, through the installed command and the real pinned
maps: `allow add` needs --force for huge prefixes as `block add` does;
IPv4-mapped IPv6 addresses are stored as IPv4; a re-add keeps its reason
unless given a new one; `allow flush`; `list --source`; `which` with the
journal's history and who wrote it."""

from __future__ import annotations

import json
import os

import pytest

from seawall.control.addr import Prefix
from seawall.control.lists.store import ListStore

from test_all_or_nothing import cli, journal_bytes, kernel_state


def ok(p) -> str:
    assert p.returncode == 0, (p.returncode, p.stdout, p.stderr)
    return p.stdout


def listed(lst: str, *args) -> list:
    return json.loads(ok(cli(lst, "list", "--json", *args)))


@pytest.fixture
def store(seawall_env):
    ok(cli("block", "add", "198.18.5.0/24", "--reason", "before"))  # the maps and journal exist
    st = ListStore(seawall_env, create=False)
    yield st
    st.close()


@pytest.mark.parametrize("huge", ["0.0.0.0/0", "::/0", "198.0.0.0/7", "2000::/15", "::ffff:0:0/96"])
def test_allow_add_of_a_huge_prefix_needs_force(store, seawall_env, huge):
    before, jbefore = kernel_state(seawall_env), journal_bytes(seawall_env)
    for args in (["allow", "add", huge], ["allow", "add", "198.18.0.5", huge, "--reason", "typo"]):
        p = cli(*args)
        assert p.returncode == 2, p.stderr
        assert p.stderr.splitlines()[-1].startswith("seawall: error: ") and "add --force" in p.stderr
        assert kernel_state(seawall_env) == before and journal_bytes(seawall_env) == jbefore
    ok(cli("allow", "add", huge, "--force"))
    assert [e["cidr"] for e in listed("allow")] == [str(Prefix.parse(huge).unmapped())]


def test_mapped_addresses_are_stored_as_ipv4(store):
    p = cli("block", "add", "::ffff:198.18.0.9", "::ffff:198.18.0.0/120", "--reason", "mapped")
    assert ok(p).splitlines() == ["blocked 198.18.0.9/32 until removed", "blocked 198.18.0.0/24 until removed"]
    notes = p.stderr.splitlines()
    assert len(notes) == 2 and all(n.startswith("note: ") and "taken as IPv4" in n for n in notes)
    assert "::ffff:198.18.0.0/120 is an IPv4-mapped address, taken as IPv4 198.18.0.0/24" in notes[1]
    assert {(e["cidr"], e["family"]) for e in listed("block")} == {
        ("198.18.0.9/32", "ipv4"), ("198.18.0.0/24", "ipv4"), ("198.18.5.0/24", "ipv4")}
    assert store.maps.prefixes("block") and all(q.version == 4 for q in store.maps.prefixes("block"))
    ok(cli("allow", "add", "::ffff:198.18.1.0/124"))
    assert [(e["cidr"], e["family"]) for e in listed("allow")] == [("198.18.1.0/28", "ipv4")]
    # del by the mapped form removes the IPv4 entry
    p = cli("block", "del", "::ffff:198.18.0.9")
    assert ok(p) == "unblocked 198.18.0.9/32\n" and "taken as IPv4 198.18.0.9/32" in p.stderr
    ok(cli("allow", "del", "::ffff:198.18.1.0/124"))
    assert listed("allow") == []
    assert "198.18.0.9/32" not in {e["cidr"] for e in listed("block")}


def test_a_mapped_entry_left_by_an_older_seawall_can_be_removed(store):
    """Before this guard, `block add ::ffff:198.18.0.9` stored an IPv6 /128
    (the store itself stores what it is given); it goes by its IPv4 name."""
    store.block_add([Prefix.parse("::ffff:198.18.0.9")], reason="old")
    store.allow_add([Prefix.parse("::ffff:198.18.1.0/124")])
    assert "::ffff:c612:9/128" in {e["cidr"] for e in listed("block")}
    assert ok(cli("block", "del", "::ffff:198.18.0.9")) == "unblocked ::ffff:c612:9/128\n"
    assert ok(cli("allow", "del", "198.18.1.0/28")) == "removed ::ffff:c612:100/124 from the allowlist\n"
    assert [e["cidr"] for e in listed("block")] == ["198.18.5.0/24"] and listed("allow") == []


def test_a_re_add_keeps_its_reason_unless_given_one(store):
    ok(cli("block", "add", "198.18.0.66", "198.18.0.67", "--ttl", "10m", "--reason", "SYN flood"))
    ok(cli("block", "add", "198.18.0.66", "--ttl", "1h"))  # a new TTL, the old reason
    ok(cli("block", "add", "198.18.0.68"))  # new, no reason
    got = {e["cidr"]: e for e in listed("block")}
    assert got["198.18.0.66/32"]["reason"] == "SYN flood"
    assert 3590 <= got["198.18.0.66/32"]["ttl_seconds"] <= 3600  # the TTL was replaced
    assert got["198.18.0.67/32"]["reason"] == "SYN flood" and got["198.18.0.68/32"]["reason"] == ""
    ok(cli("block", "add", "198.18.0.66", "198.18.0.68", "--reason", "botnet"))
    got = {e["cidr"]: e for e in listed("block")}
    assert got["198.18.0.66/32"]["reason"] == got["198.18.0.68/32"]["reason"] == "botnet"
    assert got["198.18.0.66/32"]["expires_at"] is None  # no --ttl: until removed, as before
    # a removed entry added again starts afresh
    ok(cli("block", "del", "198.18.0.67"))
    ok(cli("block", "add", "198.18.0.67"))
    assert {e["cidr"]: e["reason"] for e in listed("block")}["198.18.0.67/32"] == ""
    # the allowlist likewise, and the journal says the kept reason (a reboot keeps it)
    ok(cli("allow", "add", "198.18.1.0/28", "--reason", "monitoring"))
    ok(cli("allow", "add", "198.18.1.0/28"))
    assert [e["reason"] for e in listed("allow")] == ["monitoring"]
    rep = store.journal.read()
    assert rep.allows["198.18.1.0/28"].reason == "monitoring" and rep.blocks["198.18.0.66/32"].reason == "botnet"


def test_allow_flush(store, seawall_env):
    ok(cli("allow", "add", "198.18.1.0/28", "2001:2::/64", "--reason", "monitoring"))
    blocks = listed("block")
    assert ok(cli("allow", "flush")) == "flushed 2 allowlist entries\n"
    assert listed("allow") == [] and listed("block") == blocks
    assert store.journal.read().allows == {}  # a reboot does not bring them back
    assert ok(cli("allow", "flush")) == "flushed 0 allowlist entries\n"
    assert ok(cli("allow", "list")) == "allowlist is empty\n"


def test_list_by_source(store):
    ok(cli("block", "add", "198.18.0.1", "--reason", "by hand"))
    store.block_add([Prefix.parse("198.18.0.2")], 600, "flood", source="auto")
    store.block_add([Prefix.parse("198.18.0.3")], 600, "peer", source="bgp")
    by = {s: [e["cidr"] for e in listed("block", "--source", s)] for s in ("manual", "auto", "bgp")}
    assert by == {"manual": ["198.18.0.1/32", "198.18.5.0/24"], "auto": ["198.18.0.2/32"],
                  "bgp": ["198.18.0.3/32"]}
    assert len(listed("block")) == 4
    text = ok(cli("block", "list", "--source", "auto")).splitlines()
    assert len(text) == 2 and text[1].split()[:2] == ["198.18.0.2/32", "auto"]
    assert ok(cli("block", "list", "--source", "bgp")).splitlines()[1].startswith("198.18.0.3/32")
    ok(cli("allow", "add", "198.18.1.0/28"))
    assert [e["cidr"] for e in listed("allow", "--source", "manual")] == ["198.18.1.0/28"]
    assert listed("allow", "--source", "bgp") == []


def test_which_entry_covers_an_address(store, monkeypatch):
    monkeypatch.setenv("SUDO_USER", "alice")
    ok(cli("block", "add", "198.18.0.0/16", "--reason", "wide"))
    ok(cli("block", "add", "198.18.0.0/24", "--ttl", "1h", "--reason", "botnet"))
    monkeypatch.setenv("SUDO_USER", "bob")
    ok(cli("block", "add", "198.18.0.77", "--reason", "one"))
    ok(cli("block", "del", "198.18.0.77"))
    ok(cli("block", "add", "198.18.0.0/24", "--ttl", "2h"))  # a re-add by bob, reason kept
    got = json.loads(ok(cli("block", "which", "198.18.0.77", "--json")))
    assert got["address"] == "198.18.0.77/32" and got["list"] == "block" and got["allowed_by"] is None
    assert got["entry"]["cidr"] == "198.18.0.0/24" and got["entry"]["reason"] == "botnet"  # the longest match
    assert all(set(r) >= {"ts", "op", "cidr", "by"} and "v" not in r for r in got["history"])
    assert [(r["op"], r["by"], r["reason"]) for r in got["history"]] == [
        ("block", "alice", "botnet"), ("block", "bob", "botnet")]
    text = ok(cli("block", "which", "198.18.0.77")).splitlines()
    assert text[0].startswith("198.18.0.77/32 is on the blocklist as 198.18.0.0/24 (manual, expires in ")
    assert text[0].endswith("): botnet") and text[1] == "history of 198.18.0.0/24:"
    assert [line.split()[1:3] for line in text[3:]] == [["block", "alice"], ["block", "bob"]]
    # the /16 decides outside the /24; nothing covers 198.19.x; an unblocked host keeps its history
    assert json.loads(ok(cli("block", "which", "198.18.9.9", "--json")))["entry"]["cidr"] == "198.18.0.0/16"
    ok(cli("block", "del", "198.18.0.0/16"))
    gone = json.loads(ok(cli("block", "which", "198.18.9.9", "--json")))
    assert gone["entry"] is None and gone["history"] == []
    assert ok(cli("block", "which", "198.19.0.1")) == "198.19.0.1/32 is not on the blocklist\n"
    ok(cli("block", "del", "198.18.0.0/24"))
    host = json.loads(ok(cli("block", "which", "198.18.0.77", "--json")))
    assert host["entry"] is None and [(r["op"], r["by"]) for r in host["history"]] == [
        ("block", "bob"), ("unblock", "bob")]
    # the allowlist: its own which, and block which says that it wins
    ok(cli("allow", "add", "198.18.0.0/28", "--reason", "monitoring"))
    ok(cli("block", "add", "198.18.0.5"))
    got = json.loads(ok(cli("block", "which", "::ffff:198.18.0.5", "--json")))
    assert got["entry"]["cidr"] == "198.18.0.5/32" and got["allowed_by"] == "198.18.0.0/28"
    assert "the allowlist wins" in ok(cli("block", "which", "198.18.0.5"))
    got = json.loads(ok(cli("allow", "which", "198.18.0.5", "--json")))
    assert got["entry"]["cidr"] == "198.18.0.0/28" and got["history"][0]["by"] == "bob"
    assert "allowed_by" not in got


def test_every_record_says_who(store, monkeypatch):
    monkeypatch.delenv("SUDO_USER", raising=False)
    ok(cli("block", "add", "198.18.0.9"))
    ok(cli("block", "flush"))
    with open(store.paths.journal) as f:
        recs = [json.loads(line) for line in f]
    import pwd
    me = pwd.getpwuid(os.getuid()).pw_name
    assert [r["by"] for r in recs[-2:]] == [me, me]  # root, run without sudo
