"""`seawall replay` on a capture an operator takes during an attack:
`tcpdump -i any` on the server (Linux cooked SLL2), of pings and UDP from
the lab's client. What the server sent (echo replies, port unreachables)
is marked outgoing and left out; the rest is replayed, as tcpdump counts it.
Traffic stays inside the lab's namespaces (198.18.0.0/24)."""

from __future__ import annotations

import json
import signal
import subprocess
import time

import pytest

from seawall.control.tools import pcap
from swlab import CLIENT_V4

pytestmark = [pytest.mark.root, pytest.mark.netns]


@pytest.mark.parametrize("link", ["LINUX_SLL2", "LINUX_SLL"])  # tcpdump's default for -i any, and the older one
def test_tcpdump_any_capture_replays_what_the_host_received(lab, tmp_path, link):
    cap = str(tmp_path / "any.pcap")
    # immediate mode rings one frame of the snap length a packet: 2 KiB
    # frames, else the default buffer holds eight and a burst is dropped
    tcpdump = ["tcpdump", "-i", "any", "-y", link, "--immediate-mode", "-s", "2048", "-U", "-nn", "-w", cap]
    dump = subprocess.Popen(lab.nsenter(lab.server) + tcpdump, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    try:
        said = [dump.stderr.readline() for _ in range(2)]  # the link type, then "listening on any"
        assert "listening on any" in said[-1], said
        assert lab.ping(CLIENT_V4[0], count=5).all_ok
        lab.udp(CLIENT_V4[1], count=20)
        time.sleep(0.5)  # for tcpdump to take the last of them from its ring
    finally:
        dump.send_signal(signal.SIGINT)
        try:
            dump.wait(10)
        except subprocess.TimeoutExpired:
            dump.kill()
            dump.wait()
    printed = subprocess.run(["tcpdump", "-e", "-nn", "-r", cap], capture_output=True, text=True, timeout=30)
    assert printed.returncode == 0 and f"link-type {link} " in printed.stderr, printed.stderr
    lines = printed.stdout.splitlines()
    sent = [s for s in lines if " Out " in s]
    assert len([s for s in sent if "ICMP echo reply" in s]) == 5, printed.stdout
    assert not [s for s in lines if "ICMP echo request" in s and " Out " in s]
    received = len(lines) - len(sent)
    assert received >= 25, (printed.stdout, dump.stderr.read())

    s = pcap.scan(cap)
    assert (s.packets, s.outgoing) == (received, len(sent))
    p = lab.seawall("replay", cap, "--json", "--warmup", "0", "--background", "0")
    assert p.returncode == 0 and p.stderr == "", p.stderr
    out = json.loads(p.stdout)
    assert (out["packets"], out["outgoing"]) == (received, len(sent))
    # every frame reached the program as IP (no pass_not_ip of a mangled header): the timeline's counts add up
    assert sum(c["capture_pass"] + c["capture_drop"] for c in out["timeline"]) == received
