"""SYN protection's control plane without root: the pure part (window
scale, ruleset, table listing, state file) and the write path's order,
with the kernel's three halves (nft, /proc/sys, syn_ports) replaced by
recorders that keep what they were told. The real kernel and nft are
tests/netns/test_synproxy_cli.py's."""

from __future__ import annotations

import json
import os

import pytest

from seawall.control.datapath import synports
from seawall.control.errors import SeawallError, UsageError
from seawall.control.state import Paths
from seawall.control.synproxy import protect, rules
from seawall.control.synproxy.protect import SynProxy, SynProxyUnavailable
from seawall.control.synproxy.rules import Protected, State

# --- the pure part -------------------------------------------------------------------


@pytest.mark.parametrize("tcp_rmem_max, rmem_max, want", [
    (33554432, 4194304, 10),  # Debian's defaults on this machine: ss shows wscale 10
    (1048576, 4194304, 7),  # rmem_max the larger
    (100000000, 212992, 11),  # not a power of two: ilog2 rounds down
    (6291456, 212992, 7),  # the kernel's own default tcp_rmem[2]
    (131072, 0, 2),
    (65535, 0, 0),  # fits 16 bits: no scaling
    (4096, 4096, 0),  # clamped at 0
    (2**31, 2**31, 14),  # clamped at TCP_MAX_WSCALE
])
def test_window_scale_is_the_one_linux_offers(tcp_rmem_max, rmem_max, want):
    assert rules.window_scale(tcp_rmem_max, rmem_max) == want


@pytest.mark.parametrize("release, ok", [
    ("6.18.44-fc-v509", True), ("6.0.0", True), ("6.1.0-28-amd64", True), ("10.2", True),
    ("5.19.17-arch1", False), ("5.15.0-91-generic", False), ("4.19", False), ("", False), ("linux", False),
])
def test_kernel_release(release, ok):
    assert rules.kernel_ok(release) is ok


@pytest.mark.parametrize("text, port", [("443", 443), ("1", 1), ("65535", 65535), (" 8080 ", 8080), (22, 22)])
def test_port_parses(text, port):
    assert rules.parse_port(text) == port


@pytest.mark.parametrize("text", ["0", "65536", "http", "-1", "", "+80", "1e3", "4.5", "123456", "0x50"])
def test_bad_port_is_a_usage_error(text):
    with pytest.raises(UsageError, match="is not a TCP port"):
        rules.parse_port(text)


def test_ruleset_has_the_set_the_pure_syn_match_and_one_rule_per_family():
    text = rules.render(10, 1460, 1440, [8080, 443, 443])
    assert text.startswith("table inet seawall_synproxy {\n")
    assert "elements = { 443, 8080 }" in text
    assert "tcp dport @ports tcp flags & (fin | syn | rst | ack) == syn notrack" in text
    assert ("meta nfproto ipv4 tcp dport @ports ct state invalid,untracked synproxy mss 1460 wscale 10 "
            "timestamp sack-perm") in text
    assert ("meta nfproto ipv6 tcp dport @ports ct state invalid,untracked synproxy mss 1440 wscale 10 "
            "timestamp sack-perm") in text
    assert "tcp dport @ports ct state invalid drop" in text
    assert "hook prerouting priority raw;" in text  # before conntrack, so the SYN is UNTRACKED
    assert "hook input priority filter - 10;" in text  # before a host firewall's INVALID drop
    # the synproxy rules come before the drop: an INVALID cookie ACK is SYNPROXY's to judge
    assert text.index("synproxy mss 1460") < text.index("invalid drop")
    assert text.count("synproxy mss") == 2
    assert sum(1 for ln in text.splitlines() if "@ports" in ln) == rules.RULES  # a notrack, two synproxy, a drop
    assert "add table" not in text and "delete table" not in text


def test_ruleset_without_ports_and_as_a_replacement():
    assert "elements" not in rules.render(0, 1460, 1440)
    text = rules.render(7, 1460, 1440, [22], replace_table=True)
    lines = text.splitlines()
    assert lines[:2] == ["add table inet seawall_synproxy", "delete table inet seawall_synproxy"]
    assert "wscale 7" in text


@pytest.mark.parametrize("w", [-1, 15])
def test_ruleset_refuses_a_window_scale_out_of_range(w):
    with pytest.raises(ValueError):
        rules.render(w, 1460, 1440)


def test_element_commands():
    assert rules.element("add", {8080, 443}) == "add element inet seawall_synproxy ports { 443, 8080 }\n"
    assert rules.element("delete", [22]) == "delete element inet seawall_synproxy ports { 22 }\n"


def _listing(elems, wscale=10, rules_n=4) -> str:
    """What `nft -j list table inet seawall_synproxy` prints (trimmed from nft 1.0.6's output)."""
    objs = [{"metainfo": {"version": "1.0.6", "json_schema_version": 1}},
            {"table": {"family": "inet", "name": "seawall_synproxy", "handle": 1}},
            {"set": {"family": "inet", "name": "ports", "table": "seawall_synproxy", "type": "inet_service",
                     "handle": 3, **({"elem": elems} if elems else {})}}]
    for i in range(rules_n):
        expr = [{"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}}, "right": "@ports"}}]
        if i in (1, 2):
            expr.append({"synproxy": {"mss": 1460, "wscale": wscale, "flags": ["timestamp", "sack-perm"]}})
        objs.append({"rule": {"family": "inet", "table": "seawall_synproxy", "chain": "in", "handle": 4 + i,
                              "expr": expr}})
    return json.dumps({"nftables": objs})


def test_table_listing_parses():
    t = rules.parse_table(_listing([443, 8080], wscale=9))
    assert t == rules.Table(frozenset({443, 8080}), frozenset({9}), 4)
    assert rules.parse_table(_listing([])).ports == frozenset()
    ranged = json.loads(_listing([22]))
    ranged["nftables"][2]["set"]["elem"].append({"range": [1000, 1002]})
    assert rules.parse_table(json.dumps(ranged)).ports == {22, 1000, 1001, 1002}
    with pytest.raises(ValueError):
        rules.parse_table("Error: no such table")


def test_state_round_trip():
    st = State({443: Protected(443, None, "shop", "manual", 1_700_000_000.0),
                8080: Protected(8080, 1_700_000_600.0, "flood: score 9.5", "auto", 1_700_000_000.0)},
               loose_saved=1, wscale=10)
    back = rules.decode_state(rules.encode_state(st))
    assert back == st
    assert rules.decode_state(rules.encode_state(State())) == State()


def test_state_live_expiry_and_edits():
    st = State({1: Protected(1, 100.0), 2: Protected(2, None), 3: Protected(3, 50.0)})
    assert set(st.live(75.0)) == {1, 2}
    assert set(st.live(100.0)) == {2}  # expired at its instant, as the datapath's rule
    assert st.next_expiry() == 50.0
    assert State({2: Protected(2)}).next_expiry() is None
    assert set(st.without([1, 3, 9]).ports) == {2}
    assert st.with_port(Protected(9)).ports[9] == Protected(9) and 9 not in st.ports


@pytest.mark.parametrize("text, why", [
    ("not json", "Expecting value"),
    ('{"v": 2, "ports": []}', "version"),
    ('{"v": 1}', "ports"),
    ('{"v": 1, "ports": [{"port": 0}]}', "not a TCP port"),
    ('{"v": 1, "ports": [{"port": "http"}]}', "not a TCP port"),
    ('{"v": 1, "ports": [{"port": 80, "source": "bgp"}]}', "source"),
    ('{"v": 1, "ports": [{"port": 80, "expires_at": 5}]}', "ISO"),
    ('{"v": 1, "ports": [], "loose_saved": "1"}', "whole"),
    ('[1]', "version"),
])
def test_a_damaged_state_file_is_refused_not_guessed(text, why):
    with pytest.raises(ValueError, match=why):
        rules.decode_state(text)


# --- the write path, with the kernel's halves recorded ----------------------------------


class FakeClock:
    def __init__(self):
        self.t = 1_800_000_000.0

    def wall(self):
        return self.t

    def boot_ns(self):
        return int(self.t * 1e9) - 1_000_000_000_000_000_000

    def wall_to_boot_ns(self, wall):
        return self.boot_ns() + int((wall - self.t) * 1e9)


class Kernel:
    """nft's table, syn_ports and the log of every change, in order."""

    def __init__(self):
        self.log: list = []
        self.table = None  # set of ports, or None: no table
        self.wscale = None
        self.entries: dict = {}
        self.fail_put = False
        self.nft_calls = 0

    # SynPortTable
    def active(self, now_ns=None):
        return [self.entries[p] for p in sorted(self.entries)]

    def put(self, p):
        if self.fail_put:
            raise OSError(28, "No space left on device")
        self.log.append(f"put {p.port}")
        self.entries[p.port] = p

    def clear(self, port):
        self.log.append(f"clear {port}")
        self.entries.pop(port, None)

    def close(self):
        pass


@pytest.fixture
def kernel():
    return Kernel()


@pytest.fixture
def sp(tmp_path, monkeypatch, kernel):
    """A SynProxy whose /proc/sys is a folder of tmp_path and whose nft and
    syn_ports are the Kernel recorder."""
    sysctl = tmp_path / "sys"
    for key, value in ((protect.LOOSE, "1"), (protect.TCP_RMEM, "4096\t131072\t33554432"),
                       (protect.RMEM_MAX, "4194304"), (protect.SYNCOOKIES, "1")):
        (sysctl / key).parent.mkdir(parents=True, exist_ok=True)
        (sysctl / key).write_text(value + "\n")
    monkeypatch.setattr(synports, "pinned", lambda root: True)
    s = SynProxy(Paths(pin_root=str(tmp_path / "bpffs"), state_dir=str(tmp_path / "state")), FakeClock(),
                 nft="/usr/sbin/nft-never-run", sysctl=str(sysctl))
    s.table = kernel

    def nft(script, check_only=False):
        kernel.nft_calls += 1
        if check_only:
            assert "synproxy" in script
            return
        for line in script.splitlines():
            words = line.split()
            if line.startswith("delete table"):
                kernel.log.append("nft delete table")
                kernel.table = None
            elif line.startswith("table "):
                kernel.table = set(rules.parse_table(json.dumps({"nftables": []})).ports)
                kernel.wscale = int(script.split("wscale ")[1].split()[0])
            elif line.strip().startswith("elements"):
                kernel.table |= {int(p.strip(" ,")) for p in line.split("{")[1].split("}")[0].split(",")}
            elif line.startswith(("add element", "delete element")):
                ports = {int(p.strip(" ,")) for p in line.split("{")[1].split("}")[0].split(",")}
                kernel.table = kernel.table | ports if words[0] == "add" else kernel.table - ports
        if "table inet" in script and not script.startswith("delete"):
            kernel.log.append(f"nft table {sorted(kernel.table)}")
        elif "element" in script:
            kernel.log.append(f"nft {script.split()[0]} element")

    def nft_table():
        kernel.nft_calls += 1
        if kernel.table is None:
            return None
        return rules.Table(frozenset(kernel.table), frozenset({kernel.wscale}), rules.RULES)

    s._nft = nft
    s.nft_table = nft_table
    s._seed = lambda ports: kernel.log.append(f"seed {sorted(ports)}")
    real_write = s._write

    def write(key, value):
        kernel.log.append(f"loose={value}")
        real_write(key, value)

    s._write = write
    return s


def loose(sp) -> str:
    return open(os.path.join(sp.sysctl, protect.LOOSE)).read().strip()


def test_on_is_requirements_then_nft_then_loose_then_the_entry(sp, kernel):
    e, updated = sp.enable(443, ttl=600, reason="SYN flood")
    assert not updated and e.port == 443 and e.expires_at == sp.clock.wall() + 600
    assert kernel.log == ["seed [443]", "nft table [443]", "loose=0", "put 443"]
    p = kernel.entries[443]
    assert (p.wscale, p.mss4, p.mss6, p.auto) == (10, synports.MSS4, synports.MSS6, False)
    assert p.expires_ns == sp.clock.wall_to_boot_ns(e.expires_at)
    assert loose(sp) == "0"
    st = sp.read_state()
    assert st.loose_saved == 1 and st.wscale == 10 and st.ports[443].reason == "SYN flood"


def test_a_second_port_is_a_set_element(sp, kernel):
    sp.enable(443)
    kernel.log.clear()
    sp.enable(8080, source="auto")
    assert kernel.log == ["seed [8080]", "nft add element", "put 443", "put 8080"]
    assert kernel.table == {443, 8080} and kernel.entries[8080].auto


def test_off_clears_the_entry_first_and_the_last_port_takes_the_table_and_loose(sp, kernel):
    sp.enable(443)
    sp.enable(8080)
    kernel.log.clear()
    assert sp.disable(8080).port == 8080
    assert kernel.log == ["clear 8080", "nft delete element", "put 443"]
    kernel.log.clear()
    sp.disable(443)
    assert kernel.log == ["clear 443", "nft delete table", "loose=1"]
    assert kernel.table is None and kernel.entries == {} and loose(sp) == "1"
    assert sp.read_state() == State()


def test_loose_that_was_0_is_left_0(sp, kernel):
    with open(os.path.join(sp.sysctl, protect.LOOSE), "w") as f:
        f.write("0\n")
    sp.enable(22)
    sp.disable(22)
    assert "loose=0" not in kernel.log and "loose=1" not in kernel.log and loose(sp) == "0"


def test_re_adding_updates_ttl_and_keeps_the_reason_unless_given(sp, kernel):
    sp.enable(443, ttl=60, reason="first")
    added = sp.read_state().ports[443].added_at
    sp.clock.t += 10
    e, updated = sp.enable(443, ttl=3600, reason=None)
    assert updated and e.reason == "first" and e.expires_at == sp.clock.t + 3600 and e.added_at == added
    e, _ = sp.enable(443, reason="second")
    assert e.reason == "second" and e.expires_at is None and kernel.entries[443].expires_ns == 0


def test_disable_of_a_port_not_protected_changes_nothing(sp, kernel):
    sp.enable(443)
    kernel.log.clear()
    with pytest.raises(SeawallError, match="port 80 is not under SYN protection"):
        sp.disable(80)
    assert kernel.log == [] and set(sp.read_state().ports) == {443}


def test_a_kernel_refusal_puts_everything_back(sp, kernel):
    kernel.fail_put = True
    with pytest.raises(SeawallError, match="nothing was changed"):
        sp.enable(443)
    assert kernel.table is None and kernel.entries == {} and loose(sp) == "1"
    assert sp.read_state().ports == {} and sp.read_state().loose_saved is None


def test_a_missing_requirement_is_one_line_and_changes_nothing(sp, kernel, monkeypatch):
    monkeypatch.setattr(protect.os, "uname", lambda: os.uname_result(("Linux", "h", "5.15.0-91-generic", "", "")))
    with pytest.raises(SynProxyUnavailable, match="kernel 5.15.0-91-generic is older than 6.0"):
        sp.enable(443)
    assert kernel.log == [] and kernel.nft_calls == 0 and not os.path.exists(protect.state_path(sp.paths))


@pytest.mark.parametrize("key, why", [(protect.LOOSE, "no connection tracking"), (protect.SYNCOOKIES, "SYN cookies")])
def test_missing_conntrack_or_syncookies(sp, kernel, key, why):
    os.unlink(os.path.join(sp.sysctl, key))
    with pytest.raises(SynProxyUnavailable, match=why):
        sp.enable(443)
    assert kernel.log == []


def test_missing_nft_is_named(sp, kernel, monkeypatch):
    s = SynProxy(sp.paths, sp.clock, sysctl=sp.sysctl)
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(SynProxyUnavailable, match=r"nft \(nftables\) is not installed"):
        s.enable(443)


def test_prune_is_one_stat_until_something_is_due(sp, kernel):
    sp.enable(443, ttl=60)
    sp.enable(8080)
    calls = kernel.nft_calls
    assert sp.prune() == 0 and kernel.nft_calls == calls  # nothing due: no nft, no map
    sp.clock.t += 61
    kernel.log.clear()
    assert sp.prune() == 1
    assert kernel.log == ["clear 443", "nft delete element", "put 8080"]
    assert set(sp.read_state().ports) == {8080}
    calls = kernel.nft_calls
    assert sp.prune() == 0 and kernel.nft_calls == calls


def test_prune_sees_another_process_s_change(sp, kernel):
    sp.enable(443)
    assert sp.prune() == 0  # remembers: nothing expires
    other = SynProxy(sp.paths, sp.clock, nft=sp.nft, sysctl=sp.sysctl)
    other.table, other._nft, other.nft_table, other._write, other._seed = kernel, sp._nft, sp.nft_table, sp._write, \
        sp._seed
    other.enable(22, ttl=5)
    sp.clock.t += 6
    assert sp.prune() == 1 and kernel.table == {443}


def test_the_last_port_expiring_restores_loose(sp, kernel):
    sp.enable(443, ttl=5)
    sp.clock.t += 5
    assert sp.prune() == 1 and kernel.table is None and loose(sp) == "1"


def test_restore_puts_back_what_the_state_holds_and_clears_what_it_does_not(sp, kernel):
    sp.enable(443)
    sp.enable(8080, ttl=30)
    # a reboot: bpffs and the nft table gone, loose back at its default
    kernel.entries.clear()
    kernel.table = None
    with open(os.path.join(sp.sysctl, protect.LOOSE), "w") as f:
        f.write("1\n")
    kernel.entries[9999] = synports.SynPort(9999, 0, False, 10, 1460, 1440)  # no state, no rule: never active
    sp.clock.t += 40  # 8080 expired meanwhile
    kernel.log.clear()
    assert sp.restore() == 1
    assert kernel.log == ["clear 9999", "seed [443]", "nft table [443]", "loose=0", "put 443"]
    st = sp.read_state()
    assert set(st.ports) == {443} and st.loose_saved == 1
    assert sp.restore() == 0  # in step: nothing to put back


def test_restore_without_requirements_leaves_every_entry_off(sp, kernel):
    sp.enable(443)
    os.unlink(os.path.join(sp.sysctl, protect.LOOSE))
    with pytest.raises(SynProxyUnavailable):
        sp.restore()
    assert kernel.entries == {}


def test_without_syn_ports_add_is_refused_and_del_works_on_nft_alone(sp, kernel, monkeypatch):
    sp.enable(443)
    sp.enable(8080)
    kernel.entries.clear()  # a reboot: bpffs empty, nothing attached yet
    monkeypatch.setattr(synports, "pinned", lambda root: False)
    monkeypatch.setattr(protect.loader, "ensure_global_maps", lambda *a: None)  # a build without syn_ports
    kernel.log.clear()
    with pytest.raises(SynProxyUnavailable, match="no syn_ports map under .*attach"):
        sp.enable(22)
    assert kernel.log == [] and set(sp.read_state().ports) == {443, 8080}
    sp.disable(8080)  # SYNPROXY alone keeps protecting 443 until the attach restores its entry
    assert kernel.log == ["nft delete element"] and kernel.table == {443}
    assert sp.restore() == 0  # nothing attached: nothing to put back yet
    monkeypatch.setattr(synports, "pinned", lambda root: True)
    assert sp.restore() == 1 and kernel.entries[443].wscale == 10


def test_del_with_nft_gone_still_clears_the_entry(sp, kernel):
    sp.enable(443)
    sp.enable(8080)

    def gone():
        raise SynProxyUnavailable("nft (nftables) is not installed")

    sp.nft_table = gone
    kernel.log.clear()
    with pytest.raises(SynProxyUnavailable):
        sp.disable(8080)
    assert kernel.log[0] == "clear 8080" and 8080 not in kernel.entries  # the datapath never outlives its rule
    assert 443 in kernel.entries


def test_list_says_which_half_is_in_place(sp, kernel):
    sp.enable(443, reason="shop")
    sp.enable(8080, ttl=120)
    kernel.entries.pop(8080)
    rows = sp.list()
    assert [(r.entry.port, r.nft, r.xdp) for r in rows] == [(443, True, True), (8080, True, False)]
    j = rows[1].to_json(sp.clock.wall())
    assert j["ttl_seconds"] == 120 and j["nft"] is True and j["xdp"] is False and j["source"] == "manual"


def test_a_damaged_state_file_is_one_line(sp):
    os.makedirs(sp.paths.state_dir, exist_ok=True)
    with open(protect.state_path(sp.paths), "w") as f:
        f.write("{")
    with pytest.raises(SeawallError, match="cannot read .*synproxy.json.*fix or remove it"):
        sp.enable(443)


def test_the_gauge_counts_active_entries_by_source(tmp_path, monkeypatch):
    from seawall.control.service.metrics import SeawallCollector

    seen = {}

    class Table:
        def __init__(self, root):
            seen["root"] = root

        def active(self, now_ns=None):
            seen["now"] = now_ns
            return [synports.SynPort(p, 0, auto, 10, 1460, 1440) for p, auto in ((22, False), (443, True), (80, True))]

        def close(self):
            seen["closed"] = True

    monkeypatch.setattr(synports, "pinned", lambda root: True)
    monkeypatch.setattr(synports, "SynPortTable", Table)
    fam = SeawallCollector(Paths(pin_root=str(tmp_path)))._synproxy()
    assert fam.name == "seawall_synproxy_ports"
    assert {s.labels["source"]: s.value for s in fam.samples} == {"auto": 2, "manual": 1}
    assert seen["root"] == str(tmp_path) and seen["now"] > 0 and seen["closed"]
    monkeypatch.setattr(synports, "pinned", lambda root: False)
    assert [s.value for s in SeawallCollector(Paths(pin_root=str(tmp_path)))._synproxy().samples] == [0, 0]


# --- the open connections handed to conntrack ---------------------------------------


def test_connections_are_the_port_s_past_the_handshake_v4_mapped_as_v4(monkeypatch):
    from seawall.control.datapath import sockets
    from seawall.control.detect.serving import ESTABLISHED, LISTEN, SocketTable
    from seawall.control.synproxy import conntrack

    table = SocketTable.from_rows([
        (6, LISTEN, "0.0.0.0", 443, "0.0.0.0", 0),
        (6, ESTABLISHED, "198.18.0.1", 443, "198.18.0.10", 40000),
        (6, ESTABLISHED, "::ffff:198.18.0.1", 443, "::ffff:198.18.0.20", 40001),  # dual-stack socket
        (6, ESTABLISHED, "2001:2::1", 443, "2001:2::10", 40002),
        (6, 8, "198.18.0.1", 443, "198.18.0.30", 40003),  # CLOSE_WAIT: still open
        (6, ESTABLISHED, "198.18.0.1", 22, "198.18.0.10", 40004),  # another port
        (17, 7, "198.18.0.1", 443, "0.0.0.0", 0),  # UDP
    ])
    monkeypatch.setattr(sockets, "read_table", lambda: table)
    assert conntrack.connections([443]) == [
        (4, "198.18.0.1", 443, "198.18.0.10", 40000),
        (4, "198.18.0.1", 443, "198.18.0.20", 40001),
        (6, "2001:2::1", 443, "2001:2::10", 40002),
        (4, "198.18.0.1", 443, "198.18.0.30", 40003),
    ]
    assert conntrack.seed([]) == 0  # nothing to add: no netlink socket opened


@pytest.mark.parametrize("conn", [(4, "198.18.0.1", 443, "198.18.0.10", 40000),
                                  (6, "2001:2::1", 8443, "2001:2::10", 65535)])
def test_the_ctnetlink_request_says_what_pyroute2_reads(conn):
    from pyroute2.netlink.nfnetlink.nfctsocket import nfct_msg

    from seawall.control.synproxy import conntrack

    v, laddr, lport, raddr, rport = conn
    raw = conntrack.pack_new(7, conn, 432000)
    msg = nfct_msg(raw)
    msg.decode()
    assert msg["header"]["length"] == len(raw) and msg["header"]["sequence_number"] == 7
    assert msg["header"]["type"] == 0x100 and msg["header"]["flags"] == 0x605  # CT_NEW; REQUEST|ACK|EXCL|CREATE
    assert msg["nfgen_family"] == (2 if v == 4 else 10)
    ip = "V4" if v == 4 else "V6"

    def tup(name):
        t = msg.get_attr(name)
        return (t.get_attr("CTA_TUPLE_IP").get_attr(f"CTA_IP_{ip}_SRC"),
                t.get_attr("CTA_TUPLE_IP").get_attr(f"CTA_IP_{ip}_DST"),
                t.get_attr("CTA_TUPLE_PROTO").get_attr("CTA_PROTO_NUM"),
                t.get_attr("CTA_TUPLE_PROTO").get_attr("CTA_PROTO_SRC_PORT"),
                t.get_attr("CTA_TUPLE_PROTO").get_attr("CTA_PROTO_DST_PORT"))

    assert tup("CTA_TUPLE_ORIG") == (raddr, laddr, 6, rport, lport)  # opened by the remote side
    assert tup("CTA_TUPLE_REPLY") == (laddr, raddr, 6, lport, rport)
    assert msg.get_attr("CTA_STATUS") == 0b1110  # CONFIRMED, ASSURED, SEEN_REPLY
    assert msg.get_attr("CTA_TIMEOUT") == 432000
    tcp = msg.get_attr("CTA_PROTOINFO").get_attr("CTA_PROTOINFO_TCP")
    assert tcp.get_attr("CTA_PROTOINFO_TCP_STATE") == 3  # ESTABLISHED
    for side in ("ORIGINAL", "REPLY"):
        assert tuple(tcp.get_attr(f"CTA_PROTOINFO_TCP_FLAGS_{side}")) == (8, 8)  # BE_LIBERAL: flags, mask


# --- the command line ----------------------------------------------------------------


@pytest.mark.parametrize("argv", [
    ["synproxy", "add", "0"], ["synproxy", "add", "65536"], ["synproxy", "add", "http"],
    ["synproxy", "del", "-1"], ["synproxy", "add", "443", "--ttl", "soon"], ["synproxy", "add", "443", "--ttl", "0"],
    ["synproxy", "add"], ["synproxy", "add", "443", "--reason", "a\nb"], ["synproxy", "list", "--yaml"],
])
def test_cli_usage_errors_exit_2_in_one_line_and_change_nothing(argv, tmp_path, monkeypatch, capsys):
    from seawall.cli.main import main

    monkeypatch.setenv("SEAWALL_BPFFS", str(tmp_path / "bpffs"))
    monkeypatch.setenv("SEAWALL_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setattr(SynProxy, "__init__", lambda *a, **k: pytest.fail("reached the kernel"))
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("seawall: error: ") and err.count("\n") == 1, err
    assert list(tmp_path.iterdir()) == []


def test_cli_needs_root(tmp_path, monkeypatch, capsys):
    from seawall.cli.main import main

    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    monkeypatch.setenv("SEAWALL_STATE_DIR", str(tmp_path / "state"))
    assert main(["synproxy", "list"]) == 1
    err = capsys.readouterr().err
    assert "`seawall synproxy list` needs root" in err and err.count("\n") == 1
