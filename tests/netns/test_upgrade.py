"""Upgrades without a gap: `seawall attach IFACE --replace` puts a new
build in place of the running program while a blocked source floods, and
not one of its packets reaches the server. The oracle is the server
namespace's own UDP counters (/proc/net/snmp), not seawall's.

The "old build" is the same source compiled with one tunable changed
(ADMIT_RATE: code only, the tables' layout is the same), attached through
the Python API as an older seawall would have attached it.
"""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from swlab import SERVER_IF, SERVER_V4

pytestmark = pytest.mark.netns

BLOCKED = "198.18.0.20"
FLOOD_S = 10.0  # the blocked source sends this long (the new build compiles first: 1-4 s)
FLOOD_MAX = 5_000_000  # and never more datagrams than this

# Attach (or replace with) a build of these tunables, as another version would.
_API = """
import json, sys
from seawall.control.state import Paths
from seawall.control.datapath.interfaces import Interfaces
from seawall.control.errors import SeawallError
ifname, replace, defines = sys.argv[1], sys.argv[2] == "replace", json.loads(sys.argv[3])
try:
    st, action = Interfaces(Paths.from_env()).attach(ifname, "auto", None if replace else False,
                                                     defines=defines, replace=replace)
except SeawallError as e:
    print(e)
    sys.exit(1)
print(action, st.prog_id)
"""

# Sends datagrams to DST:9 from SRC for SECONDS (at most MAX), then prints how many.
_SENDER = """
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], 0))
end, n, top = time.monotonic() + float(sys.argv[3]), 0, int(sys.argv[4])
while n < top and (n % 256 or time.monotonic() < end):
    s.sendto(b"x" * 32, (sys.argv[2], 9))
    n += 1
print(n)
"""


def _api(lab, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(lab.nsenter(lab.server) + [sys.executable, "-c", _API, SERVER_IF, *args],
                          capture_output=True, text=True, env=lab.env, timeout=120)


def _udp_arrived(lab) -> int:
    """Datagrams the server's stack took in (delivered or refused for want
    of a socket): from /proc/net/snmp of its namespace."""
    out = subprocess.run(lab.nsenter(lab.server) + ["cat", "/proc/net/snmp"], capture_output=True, text=True,
                         check=True).stdout
    head, vals = [ln.split() for ln in out.splitlines() if ln.startswith("Udp:")][:2]
    row = dict(zip(head[1:], map(int, vals[1:])))
    return row["InDatagrams"] + row["NoPorts"] + row["InErrors"]


def test_a_new_build_takes_over_while_a_blocked_source_floods_and_none_of_it_passes(lab):
    p = _api(lab, "attach", '{"ADMIT_RATE": 4000}')
    assert p.returncode == 0, p.stdout + p.stderr
    old_id = lab.status(SERVER_IF)["prog_id"]
    lab.sw("block", "add", BLOCKED, "--reason", "upgrade test")
    lab.udp(BLOCKED, count=50)
    dropped_before = lab.counters()["reasons"]["drop_block"]
    assert dropped_before >= 50

    arrived = _udp_arrived(lab)
    sender = subprocess.Popen(lab.nsenter(lab.client) + [sys.executable, "-c", _SENDER, BLOCKED, SERVER_V4,
                                                         str(FLOOD_S), str(FLOOD_MAX)],
                              stdout=subprocess.PIPE, text=True)
    try:
        time.sleep(0.3)
        out = lab.sw("attach", SERVER_IF, "--replace")
        swapped_while_sending = sender.poll() is None
        sent = int(sender.communicate(timeout=FLOOD_S + 30)[0])
    finally:
        if sender.poll() is None:
            sender.kill()
    assert swapped_while_sending, "the flood ended before the swap: nothing was tested (raise FLOOD_S)"
    assert "now runs this build" in out, out

    st = lab.status(SERVER_IF)
    assert st["state"] == "attached" and st["prog_id"] != old_id and st["monitor"] is False
    assert _udp_arrived(lab) == arrived, "packets of the blocked source reached the server during the swap"
    # the counters were kept, and the new program counted the rest of the flood
    assert sent > 10_000
    assert lab.counters()["reasons"]["drop_block"] >= dropped_before + sent
    assert lab.blocked() == [f"{BLOCKED}/32"]
    assert lab.ping("198.18.0.10", 3).all_ok

    # the same build again: nothing to do
    assert "runs this build already" in lab.sw("attach", SERVER_IF, "--replace")
    assert lab.status(SERVER_IF)["prog_id"] == st["prog_id"]


def test_a_build_whose_tables_differ_is_refused_and_the_running_one_stays(lab):
    lab.sw("attach", SERVER_IF, "--monitor")
    before = lab.status(SERVER_IF)
    p = _api(lab, "replace", '{"MAX_SOURCES_V4": 4096}')
    assert p.returncode == 1, p.stdout + p.stderr
    assert "cannot take over" in p.stdout and "src_v4" in p.stdout, p.stdout
    after = lab.status(SERVER_IF)
    assert after["prog_id"] == before["prog_id"] and after["monitor"] is True
    assert lab.xdp_link()["prog"]["id"] == before["prog_id"]


def test_replace_on_an_interface_not_attached_attaches_it(lab):
    out = lab.sw("attach", SERVER_IF, "--replace")
    assert "attached to" in out
    assert lab.status(SERVER_IF)["state"] == "attached"
