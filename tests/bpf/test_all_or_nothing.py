"""Bad input on the command line and in the journal: a clear one-line
error, and nothing half-applied. A command given several addresses of
which one is bad, or of which one the kernel refuses (a full trie), or
whose journal cannot be written, changes nothing at all; a damaged journal
record of any shape is skipped and reported, never fatal.

The pure side (every parser given arbitrary text, bytes or JSON) is
tests/unit/test_parsers.py; the daemon under a damaged journal is
tests/netns/test_faults.py.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys

import pytest

from seawall.control.addr import Prefix
from seawall.control.datapath import loader, tries
from seawall.control.errors import SeawallError
from seawall.control.lists.store import ListStore

SEAWALL = os.path.join(os.path.dirname(sys.executable), "seawall")
GOOD, GOOD2, GOOD6 = "198.18.0.66", "198.18.5.0/24", "2001:2::66"


def cli(*args):
    return subprocess.run([SEAWALL, *args], capture_output=True, text=True, timeout=120)


def one_line_error(p, status: int, *words):
    assert p.returncode == status, (p.returncode, p.stdout, p.stderr)
    assert p.stdout == "" and p.stderr.count("\n") == 1 and p.stderr.startswith("seawall: error: "), p.stderr
    for w in words:
        assert w in p.stderr, p.stderr


def kernel_state(paths) -> dict:
    st = ListStore(paths, create=False)
    try:
        out = {spec.name: sorted(st.maps.trie(lst, v).items()) for (lst, v), spec in tries.TRIES.items()}
        out["sigs"] = [st.sigs.sigs.lookup(i.to_bytes(4, "little")) for i in range(st.sigs.sigs.max_entries)]
        out["sig_meta"] = st.sigs.meta.lookup(b"\0" * 4)
        return out
    finally:
        st.close()


def journal_bytes(paths) -> bytes:
    try:
        with open(paths.journal, "rb") as f:
            return f.read()
    except FileNotFoundError:
        return b""


BAD_CIDRS = [
    ("not-an-address", "198.18.0.300"),
    ("host-bits", "198.18.0.1/24"),
    ("too-long", "2001:2::/129"),
    ("huge-without-force", "0.0.0.0/0"),
    ("huge-v6-without-force", "::/0"),
    ("huge-mapped-without-force", "::ffff:0:0/96"),  # the IPv4 /0, written as IPv6
    ("empty", ""),
    ("words", "evil.example"),
    ("shell", "198.18.0.1;reboot"),
    ("newline", "198.18.0.1\n198.18.0.2"),
]


def test_add_good_and_bad_adds_nothing(seawall_env):
    """`block add GOOD BAD`, `allow add GOOD BAD`, for every kind of BAD:
    exit 2, one line, not one entry (the good ones before the bad one
    included)."""
    cli("block", "add", GOOD2, "--reason", "before")  # maps and journal exist, one entry
    before, jbefore = kernel_state(seawall_env), journal_bytes(seawall_env)
    for lst in ("block", "allow"):
        for bid, bad in BAD_CIDRS:
            p = cli(lst, "add", GOOD, GOOD6, bad)
            one_line_error(p, 2)
            assert kernel_state(seawall_env) == before, (lst, bid)
            assert journal_bytes(seawall_env) == jbefore, (lst, bid)


def test_bad_options_add_nothing(seawall_env):
    cli("block", "add", GOOD2)
    before, jbefore = kernel_state(seawall_env), journal_bytes(seawall_env)
    for args, status in [
        (["block", "add", GOOD, "--ttl", "forever"], 2),
        (["block", "add", GOOD, "--ttl", "0s"], 2),
        (["block", "add", GOOD, "--ttl", "400d"], 2),
        (["block", "add", GOOD, "--reason", "x" * 257], 2),
        (["block", "add", GOOD, "--reason", "line\nbreak"], 2),
        (["block", "del", GOOD2, GOOD], 1),  # GOOD is not listed: GOOD2 stays too
        (["allow", "del", GOOD], 1),
        (["sig", "add", "--proto", "udp"], 2),  # a whole protocol
        (["sig", "add", "--proto", "icmp", "--dport", "53"], 2),
        (["sig", "add", "--proto", "tcp", "--dport", "70000"], 2),
        (["sig", "add", "--proto", "tcp", "--len", "1500-60"], 2),
        (["sig", "add", "--proto", "udp", "--flags", "S"], 2),
        (["sig", "add", "--proto", "999", "--dport", "1"], 2),
    ]:
        p = cli(*args)
        one_line_error(p, status)
        assert kernel_state(seawall_env) == before, args
        assert journal_bytes(seawall_env) == jbefore, args
    assert json.loads(cli("sig", "list", "--json").stdout) == []


def blocklist_of(paths, entries: int):
    """The host-wide maps created by a program compiled with a blocklist
    of `entries` per family, so that a test can fill it."""
    loaded = loader.load(paths.pin_root, loader.iface_dir(paths.pin_root, "small"), {"MAX_BLOCK_ENTRIES": entries})
    loaded.close()
    shutil.rmtree(loader.iface_dir(paths.pin_root, "small"))
    return paths


@pytest.fixture
def small_trie(seawall_env):
    return blocklist_of(seawall_env, 4)


def test_full_blocklist_refuses_the_whole_command(small_trie):
    paths = small_trie
    p = cli("block", "add", "198.18.0.1", "198.18.0.2", "198.18.0.3")
    assert p.returncode == 0, p.stderr
    before, jbefore = kernel_state(paths), journal_bytes(paths)
    # 198.18.0.4 would fit, 198.18.0.5 does not: neither goes in; the
    # update of a listed one (198.18.0.1) is undone too
    p = cli("block", "add", "198.18.0.1", "198.18.0.4", "198.18.0.5", "--ttl", "1h", "--reason", "new")
    one_line_error(p, 1, "block_v4 is full (4 entries)", "nothing was changed")
    assert kernel_state(paths) == before
    assert journal_bytes(paths) == jbefore
    # and what fits still goes in
    assert cli("block", "add", "198.18.0.4").returncode == 0
    assert len(kernel_state(paths)["block_v4"]) == 4


@pytest.fixture
def trie_of_512(seawall_env):
    return blocklist_of(seawall_env, 512)


def test_a_bulk_write_refused_part_way_changes_nothing(trie_of_512):
    """The batched path (more rows than WALK_FROM): 300 entries in, then
    100 of them renewed and 250 new ones, which cannot all fit: the 100
    keep their old values, none of the new ones stays, the journal is as
    it was; the same write that fits goes in whole."""
    paths = trie_of_512
    st = ListStore(paths, create=False)
    try:
        hosts = [Prefix(4, bytes([198, 18, 100 + i // 250, i % 250 + 1]), 32) for i in range(550)]
        st.block_add(hosts[:300], ttl=600, reason="first")
        before, jbefore = kernel_state(paths), journal_bytes(paths)
        with pytest.raises(SeawallError, match=r"block_v4 is full \(512 entries\); nothing was changed"):
            st.block_add(hosts[200:], ttl=3600, reason="second")
        assert kernel_state(paths) == before
        assert journal_bytes(paths) == jbefore
        # the blocked-host mirror is the trie's hosts again, value for value
        mirror = dict(st.maps.mirrors[4].map().items())
        assert mirror == {k[4:]: v for k, v in st.maps.trie("block", 4).items()}
        done = st.block_add(hosts[200:400], ttl=3600, reason="second")
        assert [r for _, r in done] == [True] * 100 + [False] * 100
        assert len(kernel_state(paths)["block_v4"]) == 400
    finally:
        st.close()


@pytest.fixture
def frozen_journal(seawall_env):
    """A journal that cannot be written (chattr +i)."""
    assert cli("block", "add", GOOD2, "--reason", "before").returncode == 0
    assert cli("allow", "add", "198.18.9.0/24").returncode == 0
    assert cli("sig", "add", "--proto", "udp", "--sport", "161").returncode == 0
    subprocess.run(["chattr", "+i", seawall_env.journal], check=True)
    try:
        yield seawall_env
    finally:
        subprocess.run(["chattr", "-i", seawall_env.journal], check=True)


@pytest.mark.parametrize("args", [
    ["block", "add", GOOD, GOOD6],
    ["block", "add", GOOD2, "--ttl", "1h"],  # an update of an existing entry
    ["block", "del", GOOD2],
    ["block", "flush"],
    ["allow", "add", GOOD],
    ["allow", "del", "198.18.9.0/24"],
    ["sig", "add", "--proto", "udp", "--sport", "19"],
    ["sig", "add", "--proto", "udp", "--sport", "161", "--rate", "100"],  # replaces the rule
    ["sig", "del", "udp sport 161"],
    ["sig", "flush"],
], ids=lambda a: "-".join(a[:2]))
def test_unwritable_journal_changes_nothing(frozen_journal, args):
    """The journal is what a reboot restores: a change the command line
    cannot journal is not made (the daemon, by contrast, keeps filtering;
    tests/netns/test_faults.py)."""
    before = kernel_state(frozen_journal)
    p = cli(*args)
    one_line_error(p, 1, "cannot write the journal", "nothing was changed")
    assert kernel_state(frozen_journal) == before


# --- damaged journal records of every shape --------------------------------------------

WEIRD_SIG_RECORDS = [
    {"rule": "udp sport 161"},  # a string where an object belongs
    {"rule": [17, 161]},
    {"rule": None},
    {"rule": {"proto": 17, "sport": 161.0}},  # floats: ctypes refuses them
    {"rule": {"proto": 6.5, "dport": 80}},
    {"rule": {"proto": "17", "sport": 161}},
    {"rule": {"proto": 17, "sport": 161, "rate_pps": "fast"}},
    {"rule": {"proto": 17, "sport": 161, "rate_pps": 2**40}},
    {"rule": {"proto": True, "sport": 161}},
    {"rule": {}},
]


def test_restore_skips_damaged_signature_records(paths):
    st = ListStore(paths)
    st.block_add([Prefix.parse(GOOD)], None, "keep")
    st.close()
    with open(paths.journal, "a") as f:
        for i, extra in enumerate(WEIRD_SIG_RECORDS):
            f.write(json.dumps({"v": 1, "ts": "2026-01-01T00:00:00Z", "op": "sig", "cidr": f"weird {i}",
                                "source": "auto", **extra}) + "\n")
        f.write(json.dumps({"v": 1, "ts": "2026-01-01T00:00:00Z", "op": "sig", "cidr": "udp sport 161",
                            "rule": {"proto": 17, "sport": 161}}) + "\n")
        f.write(json.dumps({"v": 1, "ts": "2026-01-01T00:00:00Z", "op": "block", "cidr": "198.18.0.67/32",
                            "expires_at": "9999-12-31T23:59:59Z"}) + "\n")
    shutil.rmtree(paths.pin_root)  # as after a reboot
    st = ListStore(paths)
    try:
        assert len(st.restore_skipped) == len(WEIRD_SIG_RECORDS)
        assert all("signature rule" in why for _, why in st.restore_skipped)
        assert [r["rule"] for r in st.sig_list()] == ["udp sport 161"]
        blocks = {str(e.prefix): e for e in st.block_list()}
        assert set(blocks) == {f"{GOOD}/32", "198.18.0.67/32"}
        # year 9999 does not wrap round into the past (an expired entry)
        assert blocks["198.18.0.67/32"].expires_at > 4e9
    finally:
        st.close()


# --- captures the network made odd ------------------------------------------------------


def test_replay_takes_frames_of_any_length(tmp_path):
    """A capture may hold frames shorter than an Ethernet header, and, from
    a host-side capture with GRO, frames of up to 256 KiB, which the kernel
    refuses to test-run (ENOMEM, once a crash of `seawall replay`)."""
    from seawall.control.config import Config
    from seawall.control.tools.replay import replay

    eth_ip = bytes.fromhex("020000000002020000000001" "0800" "45000028000000004011" "0000" "c6120042" "c6120001")
    frames = [b"", b"\x02", eth_ip[:13], eth_ip[:14], eth_ip + b"\0" * 100, eth_ip + b"\0" * 70000,
              eth_ip + b"\0" * 200000]
    path = tmp_path / "odd.pcap"
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1))
        for i, fr in enumerate(frames):
            f.write(struct.pack("<IIII", 1_700_000_000, i, len(fr), len(fr)) + fr)
    r = replay(str(path), Config(), interval=0.1, background_pps=0, warmup=0)
    assert r.packets == len(frames) and r.dropped == 0
