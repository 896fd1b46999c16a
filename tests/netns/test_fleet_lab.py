"""The fleet with real BGP daemons: seawall's gobgpd announcing to a BIRD 2 router.

    host A (swf-<id>-a)                            router (swf-<id>-r)
    swfa0: 198.18.0.1/24, 2001:2::1/64  <-veth->   swfr0: 198.18.0.2/24, 2001:2::2/64
    gobgpd AS 64512 (config from                   BIRD 2 AS 64513, flow4/flow6 tables;
      `seawall fleet speaker-config`)              a static flow route of its own for A
    seawall block/sig/fleet (nsenter --net)

The router's own CLI (`birdc show route table flowtab4`) is the oracle:
it shows exactly the routes A's block list and sig list hold, and each
route is gone after its decision is deleted. Announce and withdraw
latency (from `seawall fleet sync` to the route shown, or gone, on the
router) are measured over 10 rounds; their medians are printed.

Both namespaces and both daemons are removed in `finally`, pass or fail.
Only 198.18.0.0/15 and 2001:2::/48 are used; no packet is sent but BGP's.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import time
import uuid
from contextlib import contextmanager

import pytest

pytestmark = [pytest.mark.root, pytest.mark.netns]

SEAWALL = os.path.join(os.path.dirname(sys.executable), "seawall")
API = "127.0.0.1:50071"  # gobgpd's gRPC, on host A's own loopback
A_V4, A_V6, R_V4, R_V6 = "198.18.0.1", "2001:2::1", "198.18.0.2", "2001:2::2"
TIMEOUT_S = 30  # every wait is bounded
ROUNDS = 10

BIRD_CONF = """\
router id {r4};
log "{log}" all;
flow4 table flowtab4;
flow6 table flowtab6;
protocol device {{}}
# a route of the router's own towards A: A's status judges it (not A's address: refused)
protocol static own_flow {{
  flow4 {{ table flowtab4; }};
  route flow4 {{ dst 198.18.9.9/32; proto 17; dport 53; }} {{
    bgp_ext_community.add((generic, 0x80060000, 0x0));
  }};
  route flow4 {{ dst {a4}/32; proto 17; dport 53; }} {{
    bgp_ext_community.add((generic, 0x80060000, 0x0));
  }};
}}
protocol bgp host_a {{
  local {r4} as 64513;
  neighbor {a4} as 64512;
  connect retry time 1;
  flow4 {{ table flowtab4; import all; export where source = RTS_STATIC; }};
  flow6 {{ table flowtab6; import all; export none; }};
  ipv4 {{ import all; export none; }};
}}
"""


def _run(*cmd, check=True, env=None, timeout=TIMEOUT_S) -> subprocess.CompletedProcess:
    r = subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout, env=env)
    if check and r.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)}: exit {r.returncode}: {r.stderr.strip() or r.stdout.strip()}")
    return r


@contextmanager
def fleet_lab(tmp_path, paths, fleet_extra: str = ""):
    if not (shutil.which("gobgpd") and shutil.which("bird") and shutil.which("birdc")):
        pytest.fail("gobgpd and bird2 are not installed: run scripts/setup --test")
    tag = uuid.uuid4().hex[:6]
    a, r = f"swf-{tag}-a", f"swf-{tag}-r"
    procs: list = []
    try:
        for ns in (a, r):
            _run("ip", "netns", "add", ns)
            _run("ip", "-n", ns, "link", "set", "lo", "up")
        _run("ip", "link", "add", "swfa0", "netns", a, "type", "veth", "peer", "name", "swfr0", "netns", r)
        for ns, dev, v4, v6 in ((a, "swfa0", A_V4, A_V6), (r, "swfr0", R_V4, R_V6)):
            _run("ip", "-n", ns, "addr", "add", f"{v4}/24", "dev", dev)
            _run("ip", "-n", ns, "addr", "add", f"{v6}/64", "dev", dev, "nodad")
            _run("ip", "-n", ns, "link", "set", dev, "up")
        lab = Lab(tmp_path, paths, a, r)
        lab.config.write_text(
            "[fleet]\n"
            f'api = "{API}"\nasn = 64512\nrouter_id = "{A_V4}"\npeers = ["{R_V4} 64513"]\n'
            f'protect = ["{A_V4}", "{A_V6}"]\n' + fleet_extra)
        speaker = tmp_path / "gobgpd.toml"
        speaker.write_text(lab.seawall("fleet", "speaker-config", "--config", str(lab.config)).stdout)
        (tmp_path / "bird.conf").write_text(BIRD_CONF.format(r4=R_V4, a4=A_V4, log=tmp_path / "bird.log"))
        with open(tmp_path / "gobgpd.log", "w") as log:
            procs.append(subprocess.Popen(["ip", "netns", "exec", a, "gobgpd", "-f", str(speaker), "-l", "warn",
                                           "--api-hosts", API], stdout=log, stderr=subprocess.STDOUT))
            procs.append(subprocess.Popen(["ip", "netns", "exec", r, "bird", "-f", "-c", str(tmp_path / "bird.conf"),
                                           "-s", str(lab.bird_ctl)], stdout=log, stderr=subprocess.STDOUT))
        def up() -> bool:
            dead = [p.args[4] for p in procs if p.poll() is not None]
            assert not dead, f"{dead} exited: {(tmp_path / 'gobgpd.log').read_text()[-500:]}"
            return "Established" in lab.birdc("show", "protocols", "host_a", check=False)

        lab.wait(up, "the BGP session")
        yield lab
    finally:
        for p in procs:  # `ip netns exec` execs the daemon: p.pid is the daemon's
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=5)
        for ns in (a, r):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=TIMEOUT_S)


class Lab:
    def __init__(self, tmp_path, paths, a, r):
        self.a, self.r = a, r
        self.config = tmp_path / "seawall.toml"
        self.bird_ctl = tmp_path / "bird.ctl"
        self.env = {**os.environ, "SEAWALL_BPFFS": paths.pin_root, "SEAWALL_STATE_DIR": paths.state_dir}

    def seawall(self, *args, check=True) -> subprocess.CompletedProcess:
        """The CLI in host A's network namespace (nsenter keeps the host's bpffs)."""
        return _run("nsenter", f"--net=/run/netns/{self.a}", SEAWALL, *args, check=check, env=self.env)

    def sync(self) -> str:
        return self.seawall("fleet", "sync", "--config", str(self.config)).stdout

    def birdc(self, *args, check=True) -> str:
        return _run("birdc", "-s", str(self.bird_ctl), *args, check=check).stdout

    def router_routes(self) -> set:
        """The flow routes the router learnt from A, as BIRD prints them."""
        out = set()
        for table in ("flowtab4", "flowtab6"):
            for line in self.birdc("show", "route", "table", table, "protocol", "host_a").splitlines():
                if line.startswith(("flow4 {", "flow6 {")):
                    out.add(line.split("}", 1)[0] + "}")
        return out

    def wait(self, ok, what: str, timeout: float = TIMEOUT_S) -> float:
        return wait_for(ok, what, timeout)


def wait_for(ok, what: str, timeout: float = TIMEOUT_S, step: float = 0.01) -> float:
    """Seconds until ok() holds; an AssertionError naming `what` after `timeout`."""
    t0 = time.monotonic()
    while not ok():
        if time.monotonic() - t0 > timeout:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(step)
    return time.monotonic() - t0


BLOCK4 = "flow4 { dst 198.18.0.1/32; src 198.18.5.0/24; }"
BLOCK6 = "flow6 { dst 2001:2::1/128; src 2001:2:0:5::/64; }"
SIG4 = "flow4 { dst 198.18.0.1/32; proto 17; sport 161; length 1186..1485; }"
SIG6 = "flow6 { dst 2001:2::1/128; next header 17; sport 161; length 1186..1485; }"


def test_blocks_and_signatures_are_announced_to_the_router_and_withdrawn(tmp_path, paths):
    with fleet_lab(tmp_path, paths) as lab:
        lab.seawall("block", "add", "198.18.5.0/24", "2001:2:0:5::/64", "--reason", "fleet lab")
        lab.seawall("sig", "add", "--proto", "udp", "--sport", "161", "--len", "1200-1499")
        dry = lab.seawall("fleet", "sync", "--config", str(lab.config), "--dry-run").stdout
        assert sorted(dry.splitlines()) == sorted(
            f"would announce [destination {d}][{m}] discard" for d, m in (
                ("198.18.0.1/32", "source 198.18.5.0/24"), ("2001:2::1/128", "source 2001:2:0:5::/64"),
                ("198.18.0.1/32", "protocol ==17][source-port ==161][packet-length >=1186&<=1485"),
                ("2001:2::1/128", "protocol ==17][source-port ==161][packet-length >=1186&<=1485"))), dry
        time.sleep(0.5)
        assert lab.router_routes() == set()  # a dry run announces nothing
        out = lab.sync()
        assert "4 routes announced (4 new, 0 withdrawn)" in out, out
        lab.wait(lambda: lab.router_routes() == {BLOCK4, BLOCK6, SIG4, SIG6}, "the four routes on the router")
        # the discard action arrives as traffic-rate 0 (RFC 8955 section 7)
        assert "(generic, 0x80060000, 0x0)" in lab.birdc("show", "route", "table", "flowtab4", "all")

        # again: nothing changes, nothing is duplicated (a restarted daemon syncs the same way)
        assert "4 routes announced (0 new, 0 withdrawn)" in lab.sync()
        status = json.loads(lab.seawall("fleet", "status", "--config", str(lab.config), "--json").stdout)
        assert [(s["peer"], s["state"]) for s in status["sessions"]] == [(R_V4, "established")]
        assert len(status["routes_out"]) == 4
        # the router's own routes, judged as an import would: one ours, one not
        verdicts = {d["route"]: (d["verdict"], d["decision"] or d["reason"]) for d in status["routes_in"]}
        assert verdicts == {
            "[destination 198.18.0.1/32][protocol ==17][destination-port ==53] discard":
                ("accepted", "sig udp dport 53 drop"),
            "[destination 198.18.9.9/32][protocol ==17][destination-port ==53] discard":
                ("refused", "destination 198.18.9.9/32 is not one of this host's addresses or prefixes"),
        }

        lab.seawall("block", "del", "198.18.5.0/24")
        assert "1 withdrawn" in lab.sync()
        lab.wait(lambda: lab.router_routes() == {BLOCK6, SIG4, SIG6}, "the IPv4 block withdrawn")
        lab.seawall("sig", "flush")
        lab.seawall("block", "flush")
        lab.sync()
        lab.wait(lambda: lab.router_routes() == set(), "every route withdrawn")


SHAPES = {  # what BIRD makes of each signature component seawall sends
    "flow4 { dst 198.18.0.1/32; proto 6; dport 443; tcp flags 0x2/0x2 && 0x0/0x3d; }",
    "flow6 { dst 2001:2::1/128; next header 6; dport 443; tcp flags 0x2/0x2 && 0x0/0x3d; }",
    "flow4 { dst 198.18.0.1/32; proto 17; length 1186..1485; fragment is_fragment && !first_fragment; }",
    "flow6 { dst 2001:2::1/128; next header 17; length 1186..1485; fragment is_fragment && !first_fragment; }",
    "flow4 { dst 198.18.0.1/32; proto 1; icmp type 3; icmp code 3; }",
    "flow6 { dst 2001:2::1/128; next header 58; icmp type 128; }",
}


def test_every_signature_component_reaches_the_router_as_meant(tmp_path, paths):
    with fleet_lab(tmp_path, paths) as lab:
        lab.seawall("sig", "add", "--proto", "tcp", "--dport", "443", "--flags", "S", "--rate", "2000")
        lab.seawall("sig", "add", "--proto", "udp", "--fragment", "--len", "1200-1499")
        lab.seawall("sig", "add", "--proto", "icmp", "--icmp-type", "3", "--icmp-code", "3")
        lab.seawall("sig", "add", "--proto", "icmpv6", "--icmp-type", "128")
        assert "6 routes announced (6 new, 0 withdrawn)" in lab.sync()
        lab.wait(lambda: lab.router_routes() == SHAPES, "the six signature routes")
        # 2000 pps of packets of any length: 2000 x 1500 bytes/s, a float32 in the traffic-rate community
        detail = lab.birdc("show", "route", "table", "flowtab4", "all", "protocol", "host_a")
        tcp = detail[detail.index("proto 6;"):]
        assert tcp.split("BGP.ext_community: ", 1)[1].startswith("(generic, 0x80060000, 0x4a371b00)")
        lab.seawall("sig", "flush")
        assert "6 withdrawn" in lab.sync()
        lab.wait(lambda: lab.router_routes() == set(), "every signature route withdrawn")


def test_rtbh_announces_blocked_prefixes_with_the_community_never_the_protected_host(tmp_path, paths):
    with fleet_lab(tmp_path, paths, 'rtbh = true\nrtbh_community = "65001:666"\n') as lab:
        lab.seawall("block", "add", "198.18.5.0/24", "198.18.0.0/24", "--force")
        out = lab.sync()
        assert "announced [blackhole 198.18.5.0/24] community 65001:666" in out
        assert "blackhole 198.18.0.0/24" not in out  # it covers the protected 198.18.0.1

        def unicast() -> dict:
            text = lab.birdc("show", "route", "table", "master4", "protocol", "host_a", "all")
            return {block.split()[0]: block for block in text.split("\n198.18.")[1:]
                    for block in ["198.18." + block]}

        lab.wait(lambda: set(unicast()) == {"198.18.5.0/24"}, "the blackhole on the router")
        assert "BGP.community: (65001,666)" in unicast()["198.18.5.0/24"]
        lab.wait(lambda: BLOCK4 in lab.router_routes(), "the FlowSpec route beside it")
        lab.seawall("block", "del", "198.18.5.0/24")
        assert "withdrew [blackhole 198.18.5.0/24] community 65001:666" in lab.sync()
        lab.wait(lambda: unicast() == {}, "the blackhole withdrawn")


def test_announce_and_withdraw_latency_median_of_10(tmp_path, paths):
    with fleet_lab(tmp_path, paths) as lab:
        up, down = [], []
        for i in range(ROUNDS):
            cidr = f"198.18.{100 + i}.0/24"
            route = f"flow4 {{ dst 198.18.0.1/32; src {cidr}; }}"
            lab.seawall("block", "add", cidr)
            t0 = time.monotonic()
            lab.sync()
            lab.wait(lambda: route in lab.router_routes(), f"{cidr} announced")
            up.append(time.monotonic() - t0)
            lab.seawall("block", "del", cidr)
            t0 = time.monotonic()
            lab.sync()
            lab.wait(lambda: route not in lab.router_routes(), f"{cidr} withdrawn")
            down.append(time.monotonic() - t0)
        print(f"\nfleet: `seawall fleet sync` to the route on BIRD, median of {ROUNDS}: "
              f"announce {statistics.median(up) * 1000:.0f} ms (max {max(up) * 1000:.0f}), "
              f"withdraw {statistics.median(down) * 1000:.0f} ms (max {max(down) * 1000:.0f})")
        assert statistics.median(up) <= 2.0 and statistics.median(down) <= 2.0
