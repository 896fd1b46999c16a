"""What the host serves (control/detect/serving.py), the sock_diag decoder
and watch around it (control/datapath/sockets.py, fed fake netlink answers
here) and `seawall serving`, without root or the kernel."""

from __future__ import annotations

import errno
import ipaddress
import json
import logging
import socket
import struct
import threading
import time

import numpy as np
import pytest

from seawall.cli.main import main
from seawall.control.addr import Sources
from seawall.control.datapath import sockets
from seawall.control.detect.serving import (CLOSE, ESTABLISHED, FIN_WAIT2, LISTEN, PORTS, REFLECTION_MASK,
                                            REFLECTION_PORTS, SYN_RECV, SYN_SENT, TIME_WAIT, Asked, Endpoint,
                                            Serving, SocketTable)
from seawall.control.errors import SeawallError

TCP, UDP = 6, 17
EPH = (32768, 60999)

# a host: a web server on one address, a dual-stack and an IPv6-only
# listener, ssh on the wildcard, a listener bound through a v4-mapped
# address, DNS and NTP servers, a resolver (unconnected, ephemeral port), a
# connected UDP client, its customers in every state, and sockets that
# serve nothing (port 0, TCP bound but not listening)
ROWS = [
    (TCP, LISTEN, "198.18.0.1", 80, "0.0.0.0", 0),
    (TCP, LISTEN, "0.0.0.0", 22, "0.0.0.0", 0),
    (TCP, LISTEN, "::", 443, "::", 0, False),
    (TCP, LISTEN, "::", 8443, "::", 0, True),
    (TCP, LISTEN, "::ffff:198.18.0.2", 8080, "::", 0),
    (TCP, LISTEN, "2001:2::1", 9000, "::", 0, True),
    (TCP, CLOSE, "198.18.0.1", 7000, "0.0.0.0", 0),  # bound, never listened
    (TCP, LISTEN, "0.0.0.0", 0, "0.0.0.0", 0),  # nothing bound: serves nothing
    (TCP, ESTABLISHED, "198.18.0.1", 80, "198.18.1.10", 40001),
    (TCP, ESTABLISHED, "198.18.0.1", 80, "198.18.1.10", 40002),  # the same customer twice
    (TCP, ESTABLISHED, "::ffff:198.18.0.1", 443, "::ffff:198.18.1.11", 40003),  # v4 through dual stack
    (TCP, TIME_WAIT, "198.18.0.1", 80, "198.18.1.12", 40004),
    (TCP, FIN_WAIT2, "2001:2::1", 443, "2001:2::1:12", 40005),
    (TCP, ESTABLISHED, "127.0.0.1", 22, "127.0.0.1", 50000),  # loopback: nobody's customer
    (TCP, ESTABLISHED, "::1", 443, "::1", 50001),
    (TCP, SYN_RECV, "198.18.0.1", 80, "198.18.9.9", 1234),  # half open: maybe spoofed
    (TCP, SYN_SENT, "198.18.0.1", 45000, "198.18.7.7", 80),  # our own connection, pending
    (TCP, ESTABLISHED, "198.18.0.1", 45001, "198.18.7.8", 443),  # our own connection, up
    (UDP, CLOSE, "0.0.0.0", 53, "0.0.0.0", 0),
    (UDP, CLOSE, "0.0.0.0", 123, "0.0.0.0", 0),
    (UDP, CLOSE, "::", 5353, "::", 0, False),
    (UDP, CLOSE, "0.0.0.0", 40000, "0.0.0.0", 0),  # a resolver's sendto() socket
    (UDP, ESTABLISHED, "198.18.0.1", 41000, "198.18.5.5", 53),  # a connected resolver client
    (UDP, ESTABLISHED, "2001:2::1", 41001, "::ffff:198.18.5.6", 123),
    (UDP, CLOSE, "0.0.0.0", 0, "0.0.0.0", 0),  # not bound
]


@pytest.fixture(scope="module")
def host() -> Serving:
    return Serving.from_table(SocketTable.from_rows(ROWS), EPH, taken_at=1_800_000_000)


def ports(mask) -> list:
    return [int(p) for p in np.flatnonzero(mask)]


# --- what is served ------------------------------------------------------------------

def test_listeners_with_their_addresses(host):
    assert host.tcp_listening == tuple(sorted([
        Endpoint("tcp", 4, "198.18.0.1", 80), Endpoint("tcp", 4, "0.0.0.0", 22),
        Endpoint("tcp", 6, "::", 443, v6only=False), Endpoint("tcp", 6, "::", 8443, v6only=True),
        Endpoint("tcp", 4, "198.18.0.2", 8080),  # bound through ::ffff:198.18.0.2: an IPv4 listener
        Endpoint("tcp", 6, "2001:2::1", 9000, v6only=True)]))
    assert host.udp_bound == tuple(sorted([
        Endpoint("udp", 4, "0.0.0.0", 53), Endpoint("udp", 4, "0.0.0.0", 123),
        Endpoint("udp", 6, "::", 5353, v6only=False), Endpoint("udp", 4, "0.0.0.0", 40000)]))
    assert host.udp_connected == (Asked(41000, "198.18.5.5", 53), Asked(41001, "198.18.5.6", 123))
    for e in host.tcp_listening + host.udp_bound:  # plain Python values, for JSON and for ==
        assert type(e.v6only) is bool and type(e.port) is int and type(e.version) is int


def test_port_masks(host):
    assert ports(host.listen_mask) == [22, 80, 443, 8080, 8443, 9000]
    # TCP takes traffic on its listeners and on its own connections' ports
    assert ports(host.served_mask("tcp")) == [22, 80, 443, 8080, 8443, 9000, 45000, 45001]
    assert ports(host.served_mask(UDP)) == [53, 123, 5353, 40000, 41000, 41001]
    assert ports(host.asked_mask) == [40000, 41000, 41001]
    for m in (host.served_mask("tcp"), host.served_mask("udp"), host.listen_mask, host.asked_mask):
        assert m.shape == (PORTS,) and m.dtype == bool
        with pytest.raises(ValueError):
            m[0] = True  # read-only: one snapshot, shared


def test_served_and_unserved(host):
    assert host.tcp_served(80) and host.tcp_served(45001) and not host.tcp_served(7000)
    assert not host.tcp_served(0) and host.unserved("tcp", 0) and host.unserved("udp", 0)
    assert host.udp_served(53) and not host.udp_served(80)
    assert host.unserved("TCP", 81) and not host.unserved(6, 80)
    got = host.unserved("udp", np.array([53, 54, 123, 40000, 0, 65535]))
    assert got.tolist() == [False, True, False, False, True, True]
    assert host.unserved(17, 53) is False  # a plain bool for one port


def test_wildcard_specific_and_dual_stack_binds(host):
    assert host.tcp_served(80, "198.18.0.1") and not host.tcp_served(80, "198.18.0.9")
    assert host.tcp_served(22, "198.18.0.9") and not host.tcp_served(22, "2001:2::1")  # 0.0.0.0 takes no IPv6
    assert host.tcp_served(443, "198.18.0.9") and host.tcp_served(443, "2001:2::9")  # dual stack
    assert host.tcp_served(443, "::ffff:198.18.0.9")
    assert not host.tcp_served(8443, "198.18.0.9") and host.tcp_served(8443, "2001:2::9")  # IPv6 only
    assert host.tcp_served(8080, "198.18.0.2") and host.tcp_served(8080, "::ffff:198.18.0.2")
    assert not host.tcp_served(8080, "198.18.0.1")
    assert host.tcp_served(9000, "2001:2::1") and not host.tcp_served(9000, "2001:2::2")
    assert not host.tcp_served(45001, "198.18.0.1")  # a connection's port, no listener
    assert host.udp_served(5353, "198.18.0.3") and not host.udp_served(41000, "198.18.0.1")


def test_bad_questions_are_refused(host):
    for bad in (lambda: host.unserved("icmp", 1), lambda: host.tcp_served(65536), lambda: host.udp_served(-1),
                lambda: host.unserved("udp", np.array([1, 70000])), lambda: host.reflection_unasked(53, 65536),
                lambda: host.unasked_mask(-5), lambda: host.served_mask("sctp")):
        with pytest.raises(ValueError):
            bad()
    with pytest.raises(ValueError, match="ephemeral"):
        Serving.from_table(SocketTable.from_rows(ROWS), (40000, 30000))


# --- reflection ---------------------------------------------------------------------------

def test_reflection_ports_constant():
    assert {19, 53, 123, 161, 389, 1900, 11211, 17, 111, 137, 3702, 5353} <= REFLECTION_PORTS
    assert ports(REFLECTION_MASK) == sorted(REFLECTION_PORTS)
    assert 80 not in REFLECTION_PORTS and 443 not in REFLECTION_PORTS


@pytest.mark.parametrize("sport, dport, unasked", [
    (53, 41000, False),  # the connected resolver asked 198.18.5.5:53
    (123, 41000, True),  # ... but not an NTP server
    (123, 41001, False),
    (53, 40000, False),  # the sendto() resolver at an ephemeral port
    (11211, 40000, False),  # an unconnected ephemeral socket could have asked anyone
    (53, 53, False),  # a DNS server speaking to another from port 53
    (123, 123, False),  # NTP peers: 123 <-> 123
    (5353, 5353, False),  # mDNS
    (123, 53, True),  # NTP answers to the DNS server: nobody asked
    (53, 80, True),  # to a port with no UDP socket at all
    (1900, 123, True),
    (53, 0, True),
    (40000, 53, False),  # not from a reflection port: not a reflection answer
    (0, 12345, False),
])
def test_reflection_unasked(host, sport, dport, unasked):
    assert host.reflection_unasked(sport, dport) is unasked


def test_reflection_vectorised_agrees_with_one_by_one(host):
    rng = np.random.default_rng(7)
    interesting = np.array([0, 53, 123, 5353, 40000, 41000, 41001, 80, 11211, 65535])
    s = np.concatenate([rng.choice(np.array(sorted(REFLECTION_PORTS)), 300), rng.integers(0, PORTS, 100),
                        rng.choice(interesting, 100)])
    d = np.concatenate([rng.choice(interesting, 250), rng.integers(0, PORTS, 250)])
    got = host.reflection_unasked(s, d)
    assert got.shape == s.shape and got.dtype == bool
    assert got.tolist() == [host.reflection_unasked(int(a), int(b)) for a, b in zip(s, d)]
    assert 0 < got.sum() < len(got)


def test_unasked_mask_is_the_cautious_per_port_form(host):
    assert not host.unasked_mask(80).any() and not host.unasked_mask(40000).any()
    for sport in (53, 123, 5353, 11211):
        m = host.unasked_mask(sport)
        assert m.shape == (PORTS,)
        exact = host.reflection_unasked(np.full(PORTS, sport), np.arange(PORTS))
        assert not (m & ~exact).any()  # never calls an asked answer unasked
        # the one difference: a connected socket's port, whatever it asked
        assert set(np.flatnonzero(exact & ~m)) <= {41000, 41001}
    assert ports(~host.unasked_mask(53)) == [53, 40000, 41000, 41001]
    assert ports(~host.unasked_mask(123)) == [123, 40000, 41000, 41001]
    assert ports(~host.unasked_mask(1900)) == [40000, 41000, 41001]  # nothing bound at 1900


# --- customers -----------------------------------------------------------------------------

def test_customers_are_the_peers_past_the_handshake(host):
    peers = sorted(str(host.peers.prefix(i).network.network_address) for i in range(len(host.peers)))
    assert peers == sorted(["198.18.1.10", "198.18.1.11", "198.18.1.12", "2001:2::1:12", "198.18.7.8"])
    assert (host.established, host.connections) == (4, 6)
    probe = ["198.18.1.10", "198.18.1.11", "198.18.1.12", "2001:2::1:12", "198.18.7.8",
             "198.18.9.9", "198.18.7.7", "127.0.0.1", "::1", "198.18.1.13", "2001:2::1:13", "::ffff:198.18.1.11"]
    got = host.customers(Sources.from_addresses(probe, [1] * len(probe)))
    # SYN_RECV (maybe spoofed) and SYN_SENT peers are not customers, nor
    # loopback; an IPv4-mapped IPv6 source is not the IPv4 customer
    assert got.tolist() == [True] * 5 + [False] * 7
    assert host.is_customer("198.18.1.11") and not host.is_customer("198.18.9.9")


def test_customers_against_a_set_at_scale():
    rng = np.random.default_rng(3)
    n = 100_000
    fam = np.where(rng.random(n) < 0.7, 4, 6).astype(np.uint8)
    raddr = rng.integers(0, 256, (n, 16)).astype(np.uint8)
    raddr[fam == 4, 4:] = 0
    raddr[fam == 4, 0] = 198  # no loopback among them
    t = SocketTable(np.full(n, TCP, np.uint8), fam, np.full(n, ESTABLISHED, np.uint8), np.full(n, 443, np.uint16),
                    rng.integers(1024, PORTS, n).astype(np.uint16), np.zeros((n, 16), np.uint8), raddr,
                    np.zeros(n, bool))
    s = Serving.from_table(t, EPH)
    known = {(int(f), bytes(r[:4] if f == 4 else r)) for f, r in zip(fam, raddr)}
    assert len(s.peers) == len(known)
    # the query: half customers in another order, half strangers
    half = s.peers.take(rng.permutation(len(s.peers))[: n // 2])
    strangers = half.take(np.arange(len(half)))
    strangers.lo = strangers.lo ^ np.uint64(1 << 7)
    q = Sources.concat([half, strangers])
    t0 = time.perf_counter()
    got = s.customers(q)
    took = time.perf_counter() - t0

    def key(i):
        v = int(q.ver[i])
        return (v, q.prefix(i).packed)

    want = np.array([key(i) in known for i in range(len(q))])
    assert (got == want).all() and got[: len(half)].all()
    assert took < 0.1, f"customers() over 100k sources took {took * 1e3:.1f} ms"  # about 4 ms here


def test_empty_host_and_empty_questions():
    s = Serving.empty(taken_at=0)
    assert s.customers(Sources.from_addresses(["198.18.0.1"], [1])).tolist() == [False]
    assert s.customers(Sources.empty()).shape == (0,)
    assert not s.served_mask("tcp").any() and s.unserved("udp", 53)
    assert s.reflection_unasked(53, 40000) and not s.reflection_unasked(80, 40000)
    assert (s.established, s.connections, len(s.peers)) == (0, 0, 0)


# --- output ------------------------------------------------------------------------------

def test_to_json(host):
    doc = host.to_json()
    assert json.loads(json.dumps(doc)) == doc
    assert doc["taken_at"] == "2027-01-15T08:00:00Z" and doc["ephemeral_ports"] == [32768, 60999]
    assert {"address": "::", "port": 8443, "family": "ipv6", "v6only": True} in doc["tcp"]["listening"]
    assert {"address": "0.0.0.0", "port": 22, "family": "ipv4"} in doc["tcp"]["listening"]
    assert {"address": "0.0.0.0", "port": 40000, "family": "ipv4", "asked": True} in doc["udp"]["bound"]
    assert {"address": "0.0.0.0", "port": 53, "family": "ipv4", "asked": False} in doc["udp"]["bound"]
    assert doc["udp"]["connected"] == [{"port": 41000, "remote": "198.18.5.5", "remote_port": 53},
                                       {"port": 41001, "remote": "198.18.5.6", "remote_port": 123}]
    assert doc["customers"] == {"addresses": 5, "connections": 6, "established": 4}


# --- the decoder, fed netlink answers -------------------------------------------------------

def diag_msg(state, family, lport, rport, laddr, raddr, seq, v6only=None) -> bytes:
    la = ipaddress.ip_address(laddr).packed.ljust(16, b"\0")
    ra = ipaddress.ip_address(raddr).packed.ljust(16, b"\0")
    body = struct.pack("=BBBB", family, state, 0, 0) + struct.pack(">HH", lport, rport) + la + ra + \
        struct.pack("=IQIIIII", 0, 0, 0, 0, 0, 0, 0)
    assert len(body) == 72
    attrs = struct.pack("=HHB3x", 5, 8, 0)  # INET_DIAG_SHUTDOWN, as the kernel sends it
    if v6only is not None:
        attrs += struct.pack("=HHB3x", 5, 11, int(v6only))
    return struct.pack("=IHHII", 16 + len(body) + len(attrs), 20, 2, seq, 0) + body + attrs


def done(seq, code=0) -> bytes:
    return struct.pack("=IHHIIi", 20, 3, 2, seq, 0, code)


class FakeNetlink:
    """Answers each request with the next list of datagrams."""

    def __init__(self, answers):
        self.answers = list(answers)
        self.sent, self.queue = [], []

    def send(self, data):
        self.sent.append(data)
        self.queue += self.answers.pop(0)

    def recv_into(self, view, n):
        data = self.queue.pop(0)
        assert len(data) <= n
        view[:len(data)] = data
        return len(data)


def test_dump_and_decode_across_datagrams_and_stale_answers():
    A6 = socket.AF_INET6
    msgs = [diag_msg(LISTEN, A6, 443, 0, "::", "::", 5, v6only=True),
            diag_msg(ESTABLISHED, A6, 443, 40000, "::ffff:198.18.0.1", "::ffff:198.18.1.10", 5),
            diag_msg(CLOSE, A6, 5353, 0, "::", "::", 5, v6only=False)]
    stale = diag_msg(LISTEN, A6, 1, 0, "::", "::", 4)  # an answer to an earlier request
    fake = FakeNetlink([[stale + msgs[0], msgs[1] + msgs[2] + done(5)]])
    data, offs = sockets._dump(fake, A6, TCP, sockets._TCP_STATES, 5)
    assert len(fake.sent[0]) == 72 and struct.unpack_from("=HH", fake.sent[0], 4) == (20, 0x301)
    assert fake.sent[0][16:18] == bytes([A6, TCP]) and struct.unpack_from("=I", fake.sent[0], 20)[0] == \
        sockets._TCP_STATES
    t = sockets._decode(data, offs, TCP)
    assert t.state.tolist() == [LISTEN, ESTABLISHED, CLOSE] and t.family.tolist() == [6, 6, 6]
    assert t.lport.tolist() == [443, 443, 5353] and t.rport.tolist() == [0, 40000, 0]
    assert t.v6only.tolist() == [True, False, False]
    assert bytes(t.raddr[1]) == ipaddress.ip_address("::ffff:198.18.1.10").packed
    s = Serving.from_table(t, EPH)
    assert s.tcp_listening == (Endpoint("tcp", 6, "::", 443, v6only=True),)
    assert s.is_customer("198.18.1.10")


def test_sockets_off_by_state():
    assert not sockets._TCP_STATES & (1 << SYN_RECV) and not sockets._TCP_STATES & (1 << CLOSE)
    assert sockets._TCP_STATES & (1 << TIME_WAIT) and sockets._TCP_STATES & (1 << LISTEN)
    assert sockets._UDP_STATES == (1 << ESTABLISHED) | (1 << CLOSE)


@pytest.mark.parametrize("answer, text", [
    ([done(1, -errno.ENOENT)], "lacks udp_diag"),
    ([struct.pack("=IHHIIi", 36, 2, 0, 1, 0, -errno.EPERM) + bytes(16)], "Operation not permitted"),
    ([struct.pack("=IHHII", 300, 20, 2, 1, 0)], "malformed"),
    ([b""], "closed the dump"),
])
def test_dump_failures_are_one_line(answer, text):
    with pytest.raises(SeawallError, match=text) as e:
        sockets._dump(FakeNetlink([answer]), socket.AF_INET, UDP, sockets._UDP_STATES, 1)
    assert "\n" not in str(e.value)


def test_read_table_when_netlink_is_refused(monkeypatch):
    def refuse(*a, **kw):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(sockets.socket, "socket", refuse)
    with pytest.raises(SeawallError, match="cannot read the host's sockets.*Permission denied"):
        sockets.read_serving()


def test_ephemeral_range(tmp_path):
    f = tmp_path / "range"
    f.write_text("1024\t65000\n")
    assert sockets.ephemeral_range(str(f)) == (1024, 65000)
    f.write_text("garbage")
    assert sockets.ephemeral_range(str(f)) == EPH
    assert sockets.ephemeral_range(str(tmp_path / "none")) == EPH


# --- the watch ----------------------------------------------------------------------------

class Reader:
    def __init__(self):
        self.calls, self.fail = 0, False
        self.called = threading.Event()

    def __call__(self):
        self.calls += 1
        self.called.set()
        if self.fail:
            raise SeawallError("sock_diag refused")
        return Serving.empty(taken_at=time.time())


def test_watch_refreshes_survives_failures_and_stops(caplog):
    r = Reader()
    w = sockets.SocketWatch(interval=0.02, reader=r)
    assert w.latest() is None and w.age() is None
    with w:
        first = w.latest()
        assert first is not None and r.calls == 1  # start reads once before it returns
        deadline = time.monotonic() + 5
        while r.calls < 4 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert r.calls >= 4 and w.latest() is not first and w.error is None
        with caplog.at_level(logging.WARNING, logger="seawall.sockets"):
            r.fail = True
            kept = w.latest()
            n = r.calls
            while r.calls < n + 3 and time.monotonic() < deadline:
                time.sleep(0.01)
            assert w.latest() is kept and w.error == "sock_diag refused"
        assert len([x for x in caplog.records if "going on without" in x.message]) == 1  # logged once
        r.fail = False
        while w.error is not None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert w.error is None and w.latest() is not kept and w.read_seconds is not None
    assert not any(t.name == "seawall-sockets" for t in threading.enumerate())
    n = r.calls
    time.sleep(0.1)
    assert r.calls == n  # stopped


def test_watch_that_never_reads():
    r = Reader()
    r.fail = True
    with sockets.SocketWatch(interval=10, reader=r) as w:
        assert w.latest() is None and w.error == "sock_diag refused"
    with pytest.raises(ValueError):
        sockets.SocketWatch(interval=0)


def test_watch_started_without_waiting_reads_first_in_its_thread():
    """The daemon starts the watch before it loads its program: the first
    read happens meanwhile, and first() waits for it, whatever it gave."""
    gate = threading.Event()

    class Slow(Reader):
        def __call__(self):
            gate.wait(5)
            return super().__call__()

    r = Slow()
    w = sockets.SocketWatch(interval=10, reader=r).start(wait=False)
    try:
        assert w.latest() is None and r.calls == 0, "start(wait=False) returns before reading"
        assert w.first(0.05) is None, "first() gives up after its timeout"
        gate.set()
        assert w.first(5) is not None and r.calls == 1
    finally:
        w.stop()
    r = Reader()
    r.fail = True
    w = sockets.SocketWatch(interval=10, reader=r).start(wait=False)
    try:
        t = time.monotonic()
        assert w.first(5) is None and time.monotonic() - t < 1, "a failed first read ends the wait too"
    finally:
        w.stop()


# --- seawall serving ------------------------------------------------------------------------

def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_table_and_json(host, monkeypatch, capsys):
    monkeypatch.setattr(sockets, "read_serving", lambda: host)
    code, out, err = run(capsys, "serving")
    assert code == 0 and err == ""
    lines = out.splitlines()
    assert lines[0].split() == ["PROTO", "LOCAL", "REMOTE", "NOTE"]
    table = [line.split(None, 3) for line in lines[1:-1]]
    assert ["tcp", "[::]:443", "-", "listening, IPv4 and IPv6"] in table
    assert ["tcp", "[2001:2::1]:9000", "-", "listening"] in table
    assert ["udp", "0.0.0.0:40000", "-", "bound, asked (ephemeral port)"] in table
    assert ["udp", "*:41000", "198.18.5.5:53", "connected, asked"] in table
    assert len(table) == 6 + 4 + 2
    assert lines[-1] == "customers: 5 addresses, 4 established connections (6 past the handshake)"
    code, out, err = run(capsys, "serving", "--json")
    assert code == 0 and json.loads(out) == host.to_json()


def test_cli_failure_is_one_line(monkeypatch, capsys):
    def fail():
        raise SeawallError("cannot read the host's sockets (sock_diag): Permission denied")

    monkeypatch.setattr(sockets, "read_serving", fail)
    code, out, err = run(capsys, "serving", "--json")
    assert (code, out) == (1, "")
    assert err == "seawall: error: cannot read the host's sockets (sock_diag): Permission denied\n"
    code, _, err = run(capsys, "serving", "--nope")
    assert code == 2 and err.count("\n") == 1


# --- collateral ----------------------------------------------------------------------------

@pytest.mark.parametrize("proto, dport, sport, why", [
    ("udp", 80, None, "no UDP socket at port 80"),
    ("udp", 0, None, "no UDP socket at port 0"),
    ("tcp", 3389, None, "no TCP socket at port 3389"),
    ("tcp", 7000, 12345, "no TCP socket at port 7000"),  # bound, never listened
    (17, 53, 123, "UDP answers from port 123 to port 53, where no socket asked"),
    ("udp", 53, 53, None),  # a DNS server answering another: asked
    ("udp", 53, None, None),  # served
    ("tcp", 80, None, None),
    ("udp", 5353, 5353, None),
    ("udp", 53, 40000, None),  # not a reflection port: a client of the DNS server
    ("udp", None, 53, None),  # no port: the host's own lookups come from port 53
    ("udp", 50000, 53, None),  # ephemeral: a resolver may open a socket there any moment
    ("tcp", 50000, None, None),  # ... or an outgoing connection
    ("udp", 41000, 53, None),
])
def test_no_collateral(host, proto, dport, sport, why):
    assert host.no_collateral(proto, dport, sport) == why


def test_protocol_blind_and_ephemeral_masks(host):
    either = set(ports(host.served_mask("tcp"))) | set(ports(host.served_mask("udp")))
    assert ports(host.served_mask()) == sorted(either)
    assert ports(host.ephemeral_mask) == list(range(EPH[0], EPH[1] + 1))


def test_customers_with_colliding_key64(monkeypatch):
    """Two IPv6 peers whose key64 collide are both found (key64 forced
    to collide here: the real odds are near 1e-7 in a million)."""
    real = Sources.key64

    def coarse(self):
        k = real(self)
        six = self.ver == 6
        k[six] = np.uint64(1 << 63) | (self.hi[six] >> np.uint64(60))  # every 2001:... collides
        return k

    monkeypatch.setattr(Sources, "key64", coarse)
    peers = ["2001:2::1", "2001:2::2", "2001:2::3", "198.18.0.1"]
    rows = [(TCP, ESTABLISHED, "2001:2::ff", 443, a, 40000 + i) for i, a in enumerate(peers[:3])]
    rows.append((TCP, ESTABLISHED, "198.18.0.9", 443, peers[3], 40009))
    s = Serving.from_table(SocketTable.from_rows(rows), EPH)
    assert len(s.peers) == 4
    probe = peers + ["2001:2::4", "2001:2::2"]
    assert s.customers(Sources.from_addresses(probe, [1] * len(probe))).tolist() == [True] * 4 + [False, True]
