"""The BGP speaker: GoBGP's gobgpd, driven through its `gobgp` command.

gobgpd keeps the routes and the sessions; seawall tells it what to announce
and reads back what it holds. The `gobgp` command speaks gobgpd's gRPC API,
so seawall needs no gRPC library of its own, and an operator can check every
step by hand with the same command. The cost is one process per call (about
11 ms measured here), which an export pays per changed route, not per
route held.

seawall owns every locally originated route of the flowspec families of
the gobgpd it talks to: exporter.py withdraws any it did not ask for. A
daemon that restarts finds its routes still held by gobgpd and syncs
against them: nothing is dropped, nothing duplicated.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from typing import Optional

from seawall.control.errors import SeawallError, UsageError
from seawall.control.fleet.flowspec import FlowRoute, decode_rib
from seawall.control.fleet.rtbh import decode_blackholes

FAMILIES = {4: "ipv4-flowspec", 6: "ipv6-flowspec"}


def parse_api(text: str) -> tuple:
    """'127.0.0.1:50051' or '[::1]:50051' -> (host, port)."""
    host, sep, port = text.strip().rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not (port.isascii() and port.isdigit() and 0 < int(port) < 65536):
        raise UsageError(f"{text!r} is not a gobgpd API address such as 127.0.0.1:50051")
    return host, int(port)


@dataclass(frozen=True)
class Session:
    """One BGP neighbour of the speaker, as `fleet status` shows it."""

    peer: str
    peer_as: int
    state: str  # established, active, connect, idle, ...
    uptime: Optional[int]  # seconds since the session came up (None when down)
    received: int  # flowspec routes received
    accepted: int

    def to_json(self) -> dict:
        return {"peer": self.peer, "peer_as": self.peer_as, "state": self.state, "uptime_seconds": self.uptime,
                "received": self.received, "accepted": self.accepted}


# gobgp's JSON gives a session's state as the number of its API's enum
_STATES = {0: "unknown", 1: "idle", 2: "connect", 3: "active", 4: "opensent", 5: "openconfirm", 6: "established"}


def decode_neighbors(obj, now: float) -> list:
    """Sessions from the JSON of `gobgp neighbor -j` (a list of peers,
    each with conf, state, timers and afi_safis). `now`: the wall clock, to
    turn the time the session came up into an uptime."""
    out = []
    for p in obj or []:
        conf, state = p.get("conf") or {}, p.get("state") or {}
        received = accepted = 0
        for af in p.get("afi_safis") or []:
            fam = (af.get("config") or {}).get("family") or {}
            if fam.get("safi") != 133:  # SAFI 133: flowspec
                continue
            st = af.get("state") or {}
            received += int(st.get("received") or 0)
            accepted += int(st.get("accepted") or 0)
        up = ((p.get("timers") or {}).get("state") or {}).get("uptime") or {}
        raw = state.get("session_state", 0)
        session_state = _STATES.get(raw, str(raw)).lower() if isinstance(raw, int) else str(raw).lower()
        since = up.get("seconds") if isinstance(up, dict) else None
        uptime = int(now - since) if since and session_state == "established" else None
        out.append(Session(str(conf.get("neighbor_address", "?")), int(conf.get("peer_asn") or 0),
                           session_state, uptime, received, accepted))
    return out


class GoBGP:
    """gobgpd at `api` (its gRPC address), through the `gobgp` command.
    Every failure is a SeawallError of one line."""

    def __init__(self, api: str = "127.0.0.1:50051", binary: str = "gobgp", timeout: float = 10.0):
        self.host, self.port = parse_api(api)
        self.binary = binary
        self.timeout = timeout

    def _run(self, args: list) -> str:
        cmd = [self.binary, "-u", self.host, "-p", str(self.port)] + args
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=self.timeout)
        except FileNotFoundError:
            raise SeawallError(f"{self.binary}: not found (install Debian's gobgpd: scripts/setup does)") from None
        except subprocess.TimeoutExpired:
            raise SeawallError(f"gobgpd at {self.host}:{self.port} did not answer in {self.timeout:g}s") from None
        if r.returncode != 0:
            msg = " ".join((r.stderr or r.stdout).split()) or f"exit status {r.returncode}"
            if "connection refused" in msg or "Unavailable" in msg or "context deadline" in msg:
                raise SeawallError(f"gobgpd is not reachable at {self.host}:{self.port} ({msg[:200]})")
            raise SeawallError(f"gobgp {' '.join(args[:4])}: {msg[:300]}")
        return r.stdout

    def _json(self, args: list):
        out = self._run(args + ["-j"])
        try:
            return json.loads(out) if out.strip() else None
        except ValueError:
            raise SeawallError(f"gobgp {' '.join(args[:4])}: output is not JSON: {out[:120]!r}") from None

    # --- announce ----------------------------------------------------------------------

    def announce(self, route: FlowRoute) -> None:
        """Announce (or re-announce with a new action) one route."""
        self._run(["global", "rib", "-a", route.family, "add"] + route.gobgp_words())

    def withdraw(self, route: FlowRoute) -> None:
        self._run(["global", "rib", "-a", route.family, "del"] + route.gobgp_words())

    # --- read --------------------------------------------------------------------------

    def global_routes(self) -> list:
        """Every best route of the flowspec tables, ours and learnt."""
        out = []
        for version, fam in FAMILIES.items():
            out += decode_rib(self._json(["global", "rib", "-a", fam]), version, _peer_of)
        return out

    def local_routes(self) -> list:
        """The routes this speaker originates (seawall's)."""
        return [r for r in self.global_routes() if not r.peer]

    def local_blackholes(self, community: int) -> list:
        """This speaker's unicast routes that carry `community` (rtbh.py's).
        It reads the whole unicast tables: fine for a host's speaker that
        takes no full table from its peers, and done once per start."""
        return [b for fam in ("ipv4", "ipv6") for b in decode_blackholes(self._json(["global", "rib", "-a", fam]),
                                                                          community)]

    def learnt_routes(self) -> list:
        """The routes learnt from peers, after gobgpd's own policy."""
        return [r for r in self.global_routes() if r.peer]

    def sessions(self, now: float) -> list:
        return decode_neighbors(self._json(["neighbor"]), now)

    def info(self) -> dict:
        """gobgpd's global settings: asn, router_id, listen_port."""
        return self._json(["global"]) or {}


def _peer_of(path: dict) -> str:
    """Where GoBGP says a path came from: its neighbour's address, or ''
    for a path this speaker originated (GoBGP leaves the field out, or
    gives the unspecified address)."""
    ip = path.get("neighbor-ip") or path.get("neighbor_ip") or ""
    return "" if ip in ("", "<nil>", "0.0.0.0", "::") else str(ip)


def import_limit(max_import: int) -> int:
    """gobgpd's prefix limit for [fleet] max_import: twice the cap (the
    routes seawall refuses count too), none when nothing is imported."""
    return 2 * max_import


def speaker_config(asn: int, router_id: str, peers: tuple, api: str = "127.0.0.1:50051",
                   unicast: bool = False, max_prefixes: int = 0) -> str:
    """gobgpd's config (TOML) for [fleet]'s asn, router_id and peers ("ADDRESS
    AS" each): one neighbour per peer, with the two flowspec families (and
    the two unicast ones with `unicast`, for rtbh). `max_prefixes` (0: none):
    gobgpd's prefix limit on each flowspec family, a router's
    maximum-prefix: a peer that sends more is cut off (BGP Cease), so a
    flood of routes never reaches seawall's reads. gobgpd is started with
    `gobgpd -f FILE --api-hosts API`."""
    if not asn or not router_id:
        raise UsageError("[fleet] asn and router_id are needed to write the speaker's config")
    if not peers:
        raise UsageError("[fleet] peers is empty: gobgpd would have no one to announce to")
    lines = [f"# gobgpd config written by `seawall fleet speaker-config`; run: gobgpd -f FILE --api-hosts {api}",
             "[global.config]", f"  as = {asn}", f'  router-id = "{router_id}"', ""]
    for peer in peers:
        address, peer_as = peer.split()
        lines += ["[[neighbors]]", "  [neighbors.config]", f'    neighbor-address = "{address}"',
                  f"    peer-as = {int(peer_as)}", "  [neighbors.timers.config]",
                  "    connect-retry = 5"]
        for fam in list(FAMILIES.values()) + (["ipv4-unicast", "ipv6-unicast"] if unicast else []):
            lines += ["  [[neighbors.afi-safis]]", "    [neighbors.afi-safis.config]",
                      f'      afi-safi-name = "{fam}"']
            if max_prefixes and fam in FAMILIES.values():
                lines += ["    [neighbors.afi-safis.prefix-limit.config]", f"      max-prefixes = {max_prefixes}"]
        lines.append("")
    return "\n".join(lines)
