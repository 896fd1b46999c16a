"""SYN protection through the real CLI, in the server namespace of the
two-namespace lab (swlab.py): the real kernel, the real nft, no stand-ins.

- add: `nft list table inet seawall_synproxy` holds the port, the
  namespace's nf_conntrack_tcp_loose is 0, and the port's syn_ports slot
  is active, with the window scale the server's own stack offers (read
  from an accepted connection with ss); del: all of it gone, loose back.
- a reboot (pins, table and loose gone): the next CLI call puts it back
  from the state file; a TTL that passes: the port is pruned.
- a missing requirement (PATH without nft): one line, exit 1, nothing
  installed.
- an idle connection opened before the port was protected, in a namespace
  where nothing tracked connections, carries on (seawall adds it to
  conntrack first; what happens without that: the test's docstring).
- a customer connects through the cookie SYN-ACK and SYNPROXY.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time

import pytest

from seawall.control.datapath import synports
from seawall.control.synproxy import rules
from swlab import CLIENT_IF, CLIENT_V4, CLIENT_V6, SEAWALL, SERVER_IF, SERVER_V4, SERVER_V6, _run

pytestmark = pytest.mark.netns

PORT = 8080
LOOSE = "/proc/sys/net/netfilter/nf_conntrack_tcp_loose"

# One connection at a time: each byte back upper-cased.
_ECHO = """
import socket, sys
l = socket.socket(socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET)
l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
l.bind((sys.argv[1], int(sys.argv[2]))); l.listen(16)
print("listening", flush=True)
while True:
    c, _ = l.accept()
    while True:
        d = c.recv(100)
        if not d:
            break
        c.sendall(d.upper())
    c.close()
"""

# Connects, checks the echo ("open A <the window scale the server offered>"),
# then on each line of stdin sends one byte and says what came back within
# the line's timeout: "got B 0.01" or "timeout".
_CLIENT = """
import socket, sys, time
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5, source_address=(sys.argv[3], 0))
s.sendall(b"a")
info = s.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)  # byte 6: snd_wscale (low 4 bits), rcv_wscale
print("open", s.recv(10).decode(), info[6] & 15, flush=True)
for line in sys.stdin:
    byte, wait = line.split()
    s.settimeout(float(wait)); t = time.monotonic()
    if byte != "-":
        s.sendall(byte.encode())
    try:
        print("got", s.recv(10).decode(), round(time.monotonic() - t, 3), flush=True)
    except socket.timeout:
        print("timeout", flush=True)
"""


def ns_cmd(lab, *cmd, check=True):
    return _run([*lab.nsenter(lab.server), *cmd], check=check)


def table(lab):
    """The nft table as the namespace holds it, or None."""
    p = ns_cmd(lab, "nft", "-j", "list", "table", "inet", rules.TABLE, check=False)
    return rules.parse_table(p.stdout) if p.returncode == 0 else None


def loose(lab) -> int:
    return int(ns_cmd(lab, "cat", LOOSE).stdout)


def slot(lab, port):
    t = synports.SynPortTable(lab.env["SEAWALL_BPFFS"])
    try:
        return t.get(port)
    finally:
        t.close()


def offered_wscale(lab) -> int:
    """The window scale the server's stack offers on a connection it
    accepts (ss: wscale:<sent>,<offered>), on the namespace's loopback."""
    script = ("import socket, subprocess, re\n"
              "l = socket.socket(); l.bind(('127.0.0.1', 5999)); l.listen()\n"
              "c = socket.create_connection(('127.0.0.1', 5999)); a, _ = l.accept()\n"
              "print(subprocess.run(['ss', '-tin', 'sport = :5999'], capture_output=True, text=True).stdout)\n")
    ns_cmd(lab, "ip", "link", "set", "lo", "up")
    out = ns_cmd(lab, sys.executable, "-c", script).stdout
    [(_, offered)] = re.findall(r"wscale:(\d+),(\d+)", out)
    return int(offered)


def sw_fail(lab, *args):
    p = lab.seawall(*args)
    assert p.returncode != 0, p.stdout
    return p


def test_add_installs_every_half_and_del_removes_them(lab):
    lab.sw("attach", SERVER_IF)
    assert loose(lab) == 1 and table(lab) is None and slot(lab, PORT) is None
    out = lab.sw("synproxy", "add", str(PORT), "--ttl", "1h", "--reason", "netns test")
    assert out.strip() == f"protected port {PORT} for 1h"

    t = table(lab)
    assert t is not None and t.ports == {PORT} and t.rules == rules.RULES
    listed = ns_cmd(lab, "nft", "list", "table", "inet", rules.TABLE).stdout
    assert f"elements = {{ {PORT} }}" in listed and "synproxy mss 1460" in listed and "synproxy mss 1440" in listed
    assert loose(lab) == 0
    s = slot(lab, PORT)
    assert s is not None and not s.auto and (s.mss4, s.mss6) == (synports.MSS4, synports.MSS6)
    assert s.expires_ns > time.clock_gettime_ns(time.CLOCK_BOOTTIME) + 3500 * 10**9
    assert t.wscales == {s.wscale} and s.wscale == offered_wscale(lab), "the SYN-ACK must offer the stack's own"
    [row] = lab.sw_json("synproxy", "list")
    assert (row["port"], row["source"], row["reason"], row["nft"], row["xdp"]) == (PORT, "manual", "netns test",
                                                                                  True, True)
    assert 3500 < row["ttl_seconds"] <= 3600

    # a second port is an element of the same set; a re-add updates
    lab.sw("synproxy", "add", "443")
    assert table(lab).ports == {PORT, 443} and slot(lab, 443).expires_ns == 0
    assert lab.sw("synproxy", "add", "443", "--ttl", "10m").strip() == "updated port 443 for 10m"
    assert slot(lab, 443).expires_ns > 0

    # a bad port: exit 2, one line, nothing changed
    for bad in ("0", "65536", "http"):
        p = sw_fail(lab, "synproxy", "add", bad)
        assert p.returncode == 2 and p.stderr.count("\n") == 1 and "is not a TCP port" in p.stderr, p.stderr
    assert table(lab).ports == {PORT, 443}

    lab.sw("synproxy", "del", "443")
    assert table(lab).ports == {PORT} and slot(lab, 443) is None and loose(lab) == 0
    assert lab.sw("synproxy", "del", str(PORT)).strip() == f"unprotected port {PORT}"
    assert table(lab) is None and slot(lab, PORT) is None and loose(lab) == 1
    assert lab.sw_json("synproxy", "list") == []
    p = sw_fail(lab, "synproxy", "del", str(PORT))
    assert p.returncode == 1 and "is not under SYN protection" in p.stderr and p.stderr.count("\n") == 1


def test_a_reboot_is_restored_and_a_ttl_prunes(lab):
    lab.sw("attach", SERVER_IF)
    lab.sw("synproxy", "add", str(PORT))
    lab.sw("synproxy", "add", "22", "--ttl", "3")
    # a reboot: the table and the loose setting gone with the namespace's
    # netfilter state, bpffs emptied
    lab.sw("detach", SERVER_IF)
    ns_cmd(lab, "nft", "delete", "table", "inet", rules.TABLE)
    ns_cmd(lab, "sh", "-c", f"echo 1 > {LOOSE}")
    shutil.rmtree(lab.env["SEAWALL_BPFFS"])
    p = lab.seawall("attach", SERVER_IF)  # the attach after a reboot puts them back
    assert p.returncode == 0 and "restored SYN protection of 2 ports" in p.stderr, p.stderr
    assert slot(lab, PORT) is not None
    p = lab.seawall("synproxy", "list", "--json")
    assert p.returncode == 0, p.stderr
    assert {r["port"]: (r["nft"], r["xdp"]) for r in json.loads(p.stdout)} == {22: (True, True),
                                                                                 PORT: (True, True)}
    assert table(lab).ports == {22, PORT} and loose(lab) == 0 and slot(lab, PORT) is not None
    time.sleep(3.2)
    assert [r["port"] for r in lab.sw_json("synproxy", "list")] == [PORT]
    assert table(lab).ports == {PORT} and slot(lab, 22) is None
    lab.sw("synproxy", "del", str(PORT))
    assert table(lab) is None and loose(lab) == 1


def test_a_missing_requirement_is_one_line_and_installs_nothing(lab, tmp_path):
    lab.sw("attach", SERVER_IF)
    nsenter = shutil.which("nsenter")
    p = _run([nsenter, f"--net=/run/netns/{lab.server}", SEAWALL, "synproxy", "add", str(PORT)], check=False,
             env=dict(lab.env, PATH=str(tmp_path)))
    assert p.returncode == 1, p.stderr
    assert p.stderr == ("seawall: error: nft (nftables) is not installed: SYN protection needs netfilter's "
                        "SYNPROXY through it (apt install nftables)\n")
    assert table(lab) is None and loose(lab) == 1 and slot(lab, PORT) is None
    assert lab.sw_json("synproxy", "list") == []


def test_an_idle_connection_from_before_carries_on(lab):
    """A connection opened before its port is protected, in a namespace
    where nothing tracked connections (no conntrack user until seawall's
    table), idle across the `add`. Measured without the seeding that
    `add` does (conntrack.py): its next segment is INVALID to conntrack
    with tcp_loose = 0, SYNPROXY drops it as an ACK without a valid cookie
    (cookie_invalid in /proc/net/stat/synproxy) and the connection stalls
    until `del`; connections that sent nothing for 100 ms or more across
    the switch stalled the same way, those sending every 10 ms survived.
    With the seeding, conntrack knows it, and it carries on."""
    lab.sw("attach", SERVER_IF)
    server = subprocess.Popen([*lab.nsenter(lab.server), sys.executable, "-c", _ECHO, SERVER_V4, str(PORT)],
                              stdout=subprocess.PIPE, text=True)
    client = None
    try:
        assert server.stdout.readline().strip() == "listening"
        client = subprocess.Popen([*lab.nsenter(lab.client), sys.executable, "-c", _CLIENT, SERVER_V4, str(PORT),
                                   CLIENT_V4[0]], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert client.stdout.readline().split()[:2] == ["open", "A"]
        p = lab.seawall("synproxy", "add", str(PORT))
        assert p.returncode == 0, p.stderr
        assert "1 connection open on the port added to conntrack" in p.stderr, p.stderr
        assert loose(lab) == 0
        client.stdin.write("b 3\n")
        client.stdin.flush()
        got = client.stdout.readline().split()
        assert got[:2] == ["got", "B"] and float(got[2]) < 1, got
        stat = ns_cmd(lab, "cat", "/proc/net/stat/synproxy").stdout.splitlines()[1:]
        assert sum(int(line.split()[2], 16) for line in stat) == 0, stat  # cookie_invalid: none dropped
        lab.sw("synproxy", "del", str(PORT))
        client.stdin.write("c 3\n")
        client.stdin.flush()
        assert client.stdout.readline().split()[:2] == ["got", "C"]
    finally:
        for p in (client, server):
            if p is not None:
                p.kill()
                p.wait(5)


def xdp_pass_on_the_client(lab):
    """An XDP_PASS program on the client's veth: a veth delivers what its
    peer's XDP sends back (XDP_TX) only to a device with XDP of its own
    (its NAPI); without one, every cookie SYN-ACK is lost on the way. A
    NIC has no such need. Pinned in the test's pin root, which goes with it."""
    from seawall.control.datapath import bpf, loader

    pin = f"{lab.env['SEAWALL_BPFFS']}/client_pass"
    fd, _ = bpf.prog_load(loader.BPF_PROG_TYPE_XDP, bytes.fromhex("b700000002000000" "9500000000000000"), "GPL",
                          "pass")  # r0 = XDP_PASS; exit
    try:
        bpf.obj_pin(fd, pin)
    finally:
        os.close(fd)
    _run([*lab.nsenter(lab.client), "ip", "link", "set", "dev", CLIENT_IF, "xdpdrv", "pinned", pin])


#: a host firewall of the common kind: INVALID dropped at the usual priority
FIREWALL = """table inet hostfw {
  chain input {
    type filter hook input priority filter; policy drop;
    ct state invalid drop
    ct state established,related accept
    iif lo accept
    tcp dport %d accept
    meta l4proto { icmp, ipv6-icmp } accept
  }
}
""" % PORT


@pytest.mark.parametrize("server_addr, client_addr, firewall", [
    (SERVER_V4, CLIENT_V4[1], False), (SERVER_V6, CLIENT_V6[0], False), (SERVER_V4, CLIENT_V4[1], True)],
    ids=["ipv4", "ipv6", "ipv4-behind-a-host-firewall"])
def test_a_customer_connects_through_the_cookie(lab, server_addr, client_addr, firewall):
    """The cookie ACK is INVALID to conntrack: seawall's input chain runs
    before a host firewall's (priority filter - 10), so that SYNPROXY gets
    it before a `ct state invalid drop` does."""
    lab.sw("attach", SERVER_IF)
    xdp_pass_on_the_client(lab)
    server = subprocess.Popen([*lab.nsenter(lab.server), sys.executable, "-c", _ECHO, server_addr, str(PORT)],
                              stdout=subprocess.PIPE, text=True)
    client = None
    try:
        assert server.stdout.readline().strip() == "listening"
        lab.sw("synproxy", "add", str(PORT))
        if firewall:  # loaded after seawall's table (a firewall reload): at one priority the newer hook runs first
            _run([*lab.nsenter(lab.server), "nft", "-f", "-"], input=FIREWALL)
        client = subprocess.Popen([*lab.nsenter(lab.client), sys.executable, "-c", _CLIENT, server_addr, str(PORT),
                                   client_addr], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        opened = client.stdout.readline().split()
        assert opened[:2] == ["open", "A"], opened
        # the cookie SYN-ACK offered the window scale the server's socket uses (SYNPROXY rewrites no window)
        assert int(opened[2]) == slot(lab, PORT).wscale == offered_wscale(lab)
        client.stdin.write("z 3\n")
        client.stdin.flush()
        assert client.stdout.readline().split()[:2] == ["got", "Z"]
        reasons = lab.counters()["reasons"]
        assert reasons.get("tx_syncookie", 0) >= 1 and reasons.get("pass_syncookie", 0) >= 1, reasons
        stat = ns_cmd(lab, "cat", "/proc/net/stat/synproxy").stdout.splitlines()[1:]
        assert sum(int(line.split()[3], 16) for line in stat) >= 1, stat  # cookie_valid: SYNPROXY finished it
    finally:
        for p in (client, server):
            if p is not None:
                p.kill()
                p.wait(5)
        lab.seawall("synproxy", "del", str(PORT))
