"""End to end: the real CLI in a server namespace, real traffic from a
client namespace over a veth pair (see conftest.py for the lab).

Every CLI call is its own short-lived process, as an operator's would be,
so these tests also check that all state lives in the pins and the journal.
"""

from __future__ import annotations

import json
import shutil
import time

import pytest

from swlab import CLIENT_V4, CLIENT_V6, NOBODY, SERVER_IF, _run

pytestmark = pytest.mark.netns

N = 5  # echo requests per ping run
DROP_WAIT_S = 0.5  # how long a ping that should get no reply waits for one
TTL_S = 3  # block lifetime in the expiry test: long enough to see it drop
#: packets that may reach drop_block beyond the ones a test sent itself
#: (with static neighbours there are none; IPv6 MLD/RS use link-local sources)
SLACK = 3

#: what `ip -j link` reports as xdp.mode (IFLA_XDP_ATTACHED)
IP_XDP_MODE = {"native": 1, "generic": 2}


def _one_line_error(p, code: int) -> str:
    assert p.returncode == code, f"exit {p.returncode}, want {code}; stderr: {p.stderr!r}"
    lines = p.stderr.splitlines()
    assert len(lines) == 1, f"want one line on stderr, got {lines!r}"
    assert lines[0].startswith("seawall: error: "), lines[0]
    assert "Traceback" not in p.stderr
    return lines[0]


def _attach(lab, *args: str) -> dict:
    lab.sw("attach", SERVER_IF, *args)
    st = lab.status(SERVER_IF)
    assert st is not None and st["state"] == "attached", st
    return st


def _assert_passes(lab, *sources: str) -> None:
    for src in sources:
        p = lab.ping(src, N)
        assert p.all_ok, f"pings from {src} should all pass:\n{p.output}"


def _assert_dropped(lab, *sources: str) -> None:
    # Replies on a veth come back in well under a millisecond; the wait only
    # bounds how long ping listens for ones that will never come. Every
    # test also checks the drop counters, so a late reply cannot hide.
    for src in sources:
        p = lab.ping(src, N, wait=DROP_WAIT_S)
        assert p.none_ok, f"pings from {src} should all be dropped:\n{p.output}"


# --- (a) and (b): block one source per family, the others pass -----------------

@pytest.mark.parametrize("mode,expect", [("generic", "generic"), ("native", "native"), ("auto", "native")])
def test_block_one_source(lab, mode, expect):
    st = _attach(lab, "--mode", mode)
    assert st["mode"] == expect and st["monitor"] is False
    xdp = lab.xdp_link()
    assert xdp["prog"]["id"] == st["prog_id"] and xdp["mode"] == IP_XDP_MODE[expect]

    _assert_passes(lab, *CLIENT_V4, *CLIENT_V6)  # nothing blocked yet
    lab.sw("block", "add", "198.18.0.20", "--reason", "e2e")
    assert lab.blocked() == ["198.18.0.20/32"]

    # IPv4
    before = lab.counters()["reasons"]
    _assert_dropped(lab, "198.18.0.20")
    _assert_passes(lab, "198.18.0.10", "198.18.0.30", *CLIENT_V6)
    after = lab.counters()["reasons"]
    assert N <= after["drop_block"] - before["drop_block"] <= N + SLACK, (before, after)
    # the clean sources' requests were passed and counted as clean
    assert after["pass_clean"] - before["pass_clean"] >= 4 * N

    # IPv6
    lab.sw("block", "add", "2001:2::20")
    assert lab.blocked() == ["198.18.0.20/32", "2001:2::20/128"]
    before = lab.counters()["reasons"]
    _assert_dropped(lab, "2001:2::20")
    _assert_passes(lab, "2001:2::10", "198.18.0.10")
    after = lab.counters()["reasons"]
    assert N <= after["drop_block"] - before["drop_block"] <= N + SLACK, (before, after)

    # UDP: a datagram is judged on its source alone, and counted exactly
    before = after
    lab.udp("198.18.0.20", count=40)
    lab.udp("2001:2::20", count=20)
    lab.udp("198.18.0.30", count=30)
    after = lab.counters()["reasons"]
    assert 60 <= after["drop_block"] - before["drop_block"] <= 60 + SLACK
    assert after["pass_clean"] - before["pass_clean"] >= 30
    assert after["mon_block"] == 0


# --- (c) expiry ---------------------------------------------------------------

def test_block_expires(lab):
    _attach(lab, "--mode", "generic")
    lab.sw("block", "add", "198.18.0.20", "--ttl", f"{TTL_S}s")
    added = time.time()  # the entry expires at most TTL_S after this
    _assert_dropped(lab, "198.18.0.20")
    assert time.time() < added + TTL_S, "too slow to observe the block before it expired"
    assert lab.counters()["reasons"]["drop_block"] >= N
    [entry] = lab.sw_json("block", "list")
    assert entry["cidr"] == "198.18.0.20/32" and 0 <= entry["ttl_seconds"] <= TTL_S

    time.sleep(max(0.0, added + TTL_S + 0.3 - time.time()))
    # the datapath stops dropping on its own: nothing pruned the entry yet
    ev_before = lab.counters()["events"]["block_expired"]
    _assert_passes(lab, "198.18.0.20", "198.18.0.10")
    assert lab.counters()["events"]["block_expired"] - ev_before >= N
    assert lab.blocked() == []
    assert "198.18.0.20" not in lab.sw("block", "list")


# --- (d) monitor mode -----------------------------------------------------------

def test_monitor_then_enforce_without_reload(lab):
    st = _attach(lab, "--monitor")
    assert st["monitor"] is True
    prog_id = st["prog_id"]
    lab.sw("block", "add", "198.18.0.20")

    before = lab.counters()["reasons"]
    _assert_passes(lab, "198.18.0.20", "198.18.0.10")
    after = lab.counters()["reasons"]
    assert N <= after["mon_block"] - before["mon_block"] <= N + SLACK, (before, after)
    assert after["drop_block"] == before["drop_block"]

    out = lab.sw("monitor", SERVER_IF, "off")
    assert "off" in out
    st = lab.status(SERVER_IF)
    assert st["monitor"] is False and st["state"] == "attached"
    assert st["prog_id"] == prog_id, "monitor off must not reload the program"
    assert lab.xdp_link()["prog"]["id"] == prog_id

    before = lab.counters()["reasons"]
    _assert_dropped(lab, "198.18.0.20")
    _assert_passes(lab, "198.18.0.10")
    after = lab.counters()["reasons"]
    assert N <= after["drop_block"] - before["drop_block"] <= N + SLACK
    assert after["mon_block"] == before["mon_block"]

    # and back on, still the same program
    lab.sw("monitor", SERVER_IF, "on")
    _assert_passes(lab, "198.18.0.20")
    assert lab.status(SERVER_IF)["prog_id"] == prog_id


def test_attach_again_leaves_monitor_alone_unless_told(lab):
    st = _attach(lab, "--monitor")
    prog_id = st["prog_id"]
    lab.sw("block", "add", "198.18.0.20")
    out = lab.sw("attach", SERVER_IF)  # the operator re-runs the set-up line without --monitor
    assert "unchanged" in out
    st = lab.status(SERVER_IF)
    assert st["monitor"] is True and st["prog_id"] == prog_id
    before = lab.counters()["reasons"]
    _assert_passes(lab, "198.18.0.20")  # still monitoring: the blocked client's packets arrive
    assert lab.counters()["reasons"]["drop_block"] == before["drop_block"]

    out = lab.sw("attach", SERVER_IF, "--enforce")
    assert "now enforce" in out
    assert lab.status(SERVER_IF)["monitor"] is False and lab.status(SERVER_IF)["prog_id"] == prog_id
    _assert_dropped(lab, "198.18.0.20")


def test_status_says_an_interface_that_no_longer_filters_and_exits_1(lab):
    _attach(lab)
    assert lab.seawall("status").returncode == 0
    _run(["ip", "-n", lab.server, "link", "set", "dev", SERVER_IF, "xdp", "off"])  # behind seawall's back
    p = lab.seawall("status")
    assert p.returncode == 1 and "not filtering" in p.stdout, p.stdout
    assert _one_line_error(p, 1).endswith(f"seawall attach {SERVER_IF}, or seawall detach {SERVER_IF} to clear it)")
    p = lab.seawall("status", "--json")
    assert p.returncode == 1
    [st] = json.loads(p.stdout)["interfaces"]
    assert st["state"] == "stale" and st["prog_id"] is None


# --- (e) the lists outlive the program --------------------------------------------

def test_blocklist_survives_detach_and_reattach(lab):
    _attach(lab, "--mode", "native")
    lab.sw("block", "add", "198.18.0.20", "2001:2::20")
    _assert_dropped(lab, "198.18.0.20", "2001:2::20")

    out = lab.sw("detach", SERVER_IF)
    assert "kept" in out
    assert lab.xdp_link() == {}, "detach must remove the XDP program"
    assert lab.status()["interfaces"] == []
    _assert_passes(lab, "198.18.0.20", "2001:2::20")  # nothing filters now
    assert lab.blocked() == ["198.18.0.20/32", "2001:2::20/128"]

    _attach(lab, "--mode", "generic")
    before = lab.counters()["reasons"]  # a fresh program: fresh counters
    _assert_dropped(lab, "198.18.0.20", "2001:2::20")
    _assert_passes(lab, "198.18.0.10", "2001:2::10")
    after = lab.counters()["reasons"]
    assert 2 * N <= after["drop_block"] - before["drop_block"] <= 2 * N + SLACK


# --- (f) restarts: every CLI call is a new process; state lives in pins and journal ---

def test_status_from_fresh_processes(lab):
    lab.sw("attach", SERVER_IF, "--mode", "generic", "--monitor")
    first = lab.status(SERVER_IF)
    second = lab.status(SERVER_IF)  # another nsenter, another process
    assert first == second
    assert second == {"interface": SERVER_IF, "state": "attached", "mode": "generic",
                      "prog_id": lab.xdp_link()["prog"]["id"], "monitor": True}
    # the plain-text form tells the same story
    text = lab.sw("status")
    assert SERVER_IF in text and "attached" in text and "monitor" in text
    # attach again: updated in place, same program
    out = lab.sw("attach", SERVER_IF, "--enforce")
    assert "already attached" in out
    third = lab.status(SERVER_IF)
    assert third["prog_id"] == first["prog_id"] and third["monitor"] is False


def test_blocklist_restored_after_reboot(lab):
    """A reboot empties bpffs and keeps the journal: the first attach
    afterwards must put the lists back before the filter runs."""
    lab.sw("block", "add", "198.18.0.20", "2001:2::20", "--reason", "kept")  # before any attach
    lab.sw("allow", "add", "198.18.0.30/32")
    shutil.rmtree(lab.env["SEAWALL_BPFFS"])  # what a reboot does to the pins

    p = lab.seawall("attach", SERVER_IF, "--mode", "generic")
    assert p.returncode == 0, p.stderr
    assert "restored 3 entries" in p.stderr
    before = lab.counters()["reasons"]
    _assert_dropped(lab, "198.18.0.20", "2001:2::20")
    _assert_passes(lab, "198.18.0.10", "2001:2::10", "198.18.0.30")
    after = lab.counters()["reasons"]
    assert 2 * N <= after["drop_block"] - before["drop_block"] <= 2 * N + SLACK
    assert after["pass_allow"] - before["pass_allow"] >= N  # the restored allowlist entry
    assert [(e["cidr"], e["reason"]) for e in lab.sw_json("block", "list")] == [
        ("198.18.0.20/32", "kept"), ("2001:2::20/128", "kept")]
    assert [e["cidr"] for e in lab.sw_json("allow", "list")] == ["198.18.0.30/32"]


# --- (g) bad input through the real CLI ----------------------------------------------

def test_errors_are_one_line_and_change_nothing(lab):
    lab.sw("block", "add", "198.18.0.30", "--reason", "baseline")
    listed = lab.sw_json("block", "list")
    journal = open(f"{lab.env['SEAWALL_STATE_DIR']}/journal.jsonl", "rb").read()

    # unknown interface: runtime failure
    msg = _one_line_error(lab.seawall("attach", "swnosuch0"), 1)
    assert "swnosuch0" in msg
    _one_line_error(lab.seawall("stats", "-i", "swnosuch0"), 1)

    # bad CIDR, bad TTL: usage errors
    for bad in ("198.18.0.300", "198.18.0.0/33", "2001:2::/129", "not-an-address"):
        msg = _one_line_error(lab.seawall("block", "add", bad), 2)
        assert bad in msg
    _one_line_error(lab.seawall("block", "add", "198.18.0.20", "--ttl", "1.5"), 2)  # a TTL is whole seconds

    # detach or monitor an interface seawall is not attached to
    msg = _one_line_error(lab.seawall("detach", SERVER_IF), 1)
    assert "not attached" in msg
    _one_line_error(lab.seawall("monitor", SERVER_IF, "on"), 1)

    # the compiler fails (here: bcc finds no kernel headers): its many
    # lines of diagnostics are boiled down to one, and nothing is left
    # behind, not even a stale interface in status
    p = lab.seawall("attach", SERVER_IF, env={"BCC_KERNEL_SOURCE": "/nonexistent"})
    msg = _one_line_error(p, 1)
    assert "kernel headers" in msg
    assert p.stdout == ""
    assert lab.xdp_link() == {}
    assert lab.status()["interfaces"] == []
    lab.sw("stats")

    # unprivileged: refused, with a hint, before touching anything
    p = lab.seawall("block", "add", "198.18.0.20", user=NOBODY)
    msg = _one_line_error(p, 1)
    assert "root" in msg
    assert p.stdout == ""
    _one_line_error(lab.seawall("block", "list", user=NOBODY), 1)

    assert lab.sw_json("block", "list") == listed
    assert open(f"{lab.env['SEAWALL_STATE_DIR']}/journal.jsonl", "rb").read() == journal
    _assert_passes(lab, "198.18.0.20")
