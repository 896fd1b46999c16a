"""FastNetMon Community beside seawall: the peer engineers use for
detection, run in the wire lab as its documentation has it, and what it
would have done.

In: a network namespace, the interface it sniffs, the protected prefixes,
a working folder (absolute, no whitespace, not under /var/log). Out:
`FastNetMon.events()`, one dict per ban or unban FastNetMon decided, with
its time (wall clock and CLOCK_MONOTONIC, the runner's clock), the victim
and the attack's details as FastNetMon reported them.

What FastNetMon Community does (Debian 12's 1.2.4, read in its source):
it counts packets, bytes and flows per host of `networks_list`, once a
second (`speed_calculation_delay`, whole seconds, at least 1) turns the
second's counts into a rate and an exponential moving average with time
constant `average_calculation_time` (5 s by default), and when a host's
average crosses a threshold it *bans the host*: it calls the notify
script with `IP direction pps ban` and the attack's description on stdin,
writes the description to /var/log/fastnetmon_attacks/IP_TIME.txt, and
with ExaBGP or GoBGP would announce the IP /32 for remote-triggered
blackholing (RTBH). It bans the victim, never the attackers: the ban
would blackhole every packet to 198.18.0.1, the customers' included.
Once `ban_details_records_count` packets of the attack are sampled, it
calls the script again with `attack_details` (the packets: sources,
ports, protocol). `ban_time` later, when the attack is over, it unbans.

Configuration (`Thresholds`; each value and why):
- capture: `mirror_afpacket` on the interface, the documented default for
  port mirror on Linux (AF_PACKET, TPACKET_V3, fanout per CPU);
- `networks_list`: the protected prefixes; nothing else (no local
  addresses, no whitelist);
- `threshold_pps` 3,000 with `ban_for_pps` on: the host normally takes
  about 1,000 packets/s; FastNetMon's own baseline tool sets the packet
  threshold at twice the busiest rate seen over a week; a careful
  operator who has not watched a week keeps more headroom: 3x. A flood at
  the issue's bar (5x the busy rate) then crosses it, and so would a
  crowd of customers three times the busy rate (it counts; it cannot
  tell them apart). The lab's customers are lighter than that host:
  FastNetMon's own averages showed 180-240 packets/s calm and ~1,500 at
  the top of the 10x flash crowd;
- `threshold_mbps` 20 with `ban_for_bandwidth` on: 1,000 packets/s of
  a web host's mix (~600 bytes on average) is ~5 Mbit/s; the baseline
  tool's rule for bandwidth is 3x the peak: ~15, rounded up to 20;
- `ban_for_flows` off (the packaged default; the per-protocol thresholds
  off too) with connection tracking on (the default): flows are counted
  and printed in the attack's details, never a reason to ban;
- `average_calculation_time` 5 and `speed_calculation_delay` 1: the
  defaults, which the documentation calls right for port mirror. They
  set its detection time: a flood of R packets/s begun x s before a tick
  shows R*x*(1 - e^-0.2) there, so at 40,000 packets/s it bans at the
  first tick 0.4 s or more into the flood (0.59-1.43 s, median 1.15 s,
  8 runs), and at 5,000 packets/s once R*(1 - e^(-t/5)) > 3,000 (t >
  4.6 s; 5.0-5.7 s measured);
- `ban_time` 1900 (the default) with `unban_only_if_attack_finished`;
- no usage report, no API, no Prometheus, no BGP: nothing leaves the lab.

Where it writes (never /etc, /var/log or /tmp of the host): the config,
networks files, pid file (`pid_path`), log (`--log_file`), client stats
(`cli_stats_file_path`, `cli_stats_ipv6_file_path`) and the notify
script's output all under `workdir`. Two paths are compiled in and not
configurable in 1.2.4 (/var/log/fastnetmon_attacks, where the attack
details go, and /var/log/fastnetmon_backtrace.dump): FastNetMon runs in a
mount namespace of its own (`unshare --mount`, private propagation) where
`workdir/var-log` is bind-mounted over /var/log.

Where to run it: FastNetMon sees what reaches the socket it sniffs.
seawall's XDP program runs before any AF_PACKET socket of ws0, so on ws0
FastNetMon sees only what seawall let through, and a flood seawall cuts
in 0.3 s never reaches its threshold (measured: on ws0 behind seawall it
never banned the botnet flood; its average peaked at 2,268 packets/s
before seawall's cut at 0.30 s). Its documented deployment is a port
mirror from the switch: in the lab, the bridge port facing the server
(`wbs` in the wire namespace) carries exactly the frames that reach ws0
before any filter. Both are a `FastNetMon(netns, iface, ...)`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import dataclass

from seawall.control.addr import Prefix
from seawall.control.errors import UsageError
from seawall.control.tools.wire.lab import SERVER, Lab

FASTNETMON = "/usr/sbin/fastnetmon"
MIRROR_IFACE = "wbs"  # lab.py's bridge port facing the server, in the wire namespace
EVENTS = "events.jsonl"


class FastNetMonError(RuntimeError):
    pass


@dataclass(frozen=True)
class Thresholds:
    """Per-host thresholds and timing (see the module's docstring)."""

    pps: int = 3000
    mbps: int = 20
    flows: int = 3500
    ban_for_pps: bool = True
    ban_for_bandwidth: bool = True
    ban_for_flows: bool = False
    average_calculation_time: int = 5  # seconds, time constant of the moving average
    speed_calculation_delay: int = 1  # seconds between two rate calculations (integer, >= 1)
    ban_time: int = 1900  # seconds
    ban_details_records_count: int = 20  # packets sampled for attack_details


def _on(flag: bool) -> str:
    return "on" if flag else "off"


def config_text(iface: str, workdir: str, th: Thresholds) -> str:
    """fastnetmon.conf for one sniffed interface, every path under workdir
    (pure)."""
    w = workdir.rstrip("/")
    keys = [
        ("logging_level", "info"), ("logging_local_syslog_logging", "off"),
        ("logging_remote_syslog_logging", "off"), ("disable_usage_report", "on"),
        ("enable_ban", "on"), ("enable_ban_ipv6", "on"),
        ("process_incoming_traffic", "on"), ("process_outgoing_traffic", "on"),
        ("dump_all_traffic", "off"), ("dump_other_traffic", "off"),
        ("ban_details_records_count", str(th.ban_details_records_count)),
        ("ban_time", str(th.ban_time)), ("unban_only_if_attack_finished", "on"),
        ("networks_list_path", f"{w}/networks_list"), ("white_list_path", f"{w}/networks_whitelist"),
        ("check_period", "1"), ("enable_connection_tracking", "on"),
        ("ban_for_pps", _on(th.ban_for_pps)), ("ban_for_bandwidth", _on(th.ban_for_bandwidth)),
        ("ban_for_flows", _on(th.ban_for_flows)),
        ("threshold_pps", str(th.pps)), ("threshold_mbps", str(th.mbps)), ("threshold_flows", str(th.flows)),
        *((f"ban_for_{p}_{k}", "off") for p in ("tcp", "udp", "icmp") for k in ("pps", "bandwidth")),
        ("mirror_afpacket", "on"), ("mirror_afxdp", "off"), ("mirror_af_packet_custom_sampling_rate", "1"),
        ("mirror_af_packet_fanout_mode", "cpu"), ("af_packet_read_packet_length_from_ip_header", "off"),
        ("mirror_netmap", "off"), ("pcap", "off"), ("netflow", "off"), ("sflow", "off"),
        ("interfaces", iface),
        ("average_calculation_time", str(th.average_calculation_time)),
        ("speed_calculation_delay", str(th.speed_calculation_delay)),
        ("notify_script_path", f"{w}/notify.sh"), ("collect_attack_pcap_dumps", "off"),
        ("redis_enabled", "off"), ("mongodb_enabled", "off"), ("exabgp", "off"), ("gobgp", "off"),
        ("influxdb", "off"), ("graphite", "off"),
        ("monitor_local_ip_addresses", "off"), ("monitor_openvz_vps_ip_addresses", "off"),
        ("pid_path", f"{w}/fastnetmon.pid"),
        ("cli_stats_file_path", f"{w}/fastnetmon.dat"), ("cli_stats_ipv6_file_path", f"{w}/fastnetmon_ipv6.dat"),
        ("enable_api", "off"), ("kafka_traffic_export", "off"), ("prometheus", "off"),
    ]
    return "# written by seawall's wire lab (control/tools/wire/fnm.py)\n" + "".join(f"{k} = {v}\n" for k, v in keys)


def notify_text(workdir: str) -> str:
    """The notify script: FastNetMon runs it (through popen, so a shell
    line) with `IP direction pps action` and writes the attack's
    description to its stdin, which must be read. It stamps the wall
    clock first, keeps stdin in a file and appends one JSON line."""
    w = workdir.rstrip("/")
    return f"""#!/bin/sh
# FastNetMon's notify hook (seawall wire lab): $1 IP, $2 direction, $3 pps,
# $4 action (ban, unban, attack_details); the details come on stdin.
t=$(date +%s.%N)
f="{w}/details/$1-$4-$t.txt"
cat > "$f"
printf '{{"t": %s, "ip": "%s", "direction": "%s", "pps": "%s", "action": "%s", "details": "%s"}}\\n' \\
  "$t" "$1" "$2" "$3" "$4" "$f" >> "{w}/{EVENTS}"
"""


# --- what FastNetMon reported (pure) --------------------------------------
_PACKET = re.compile(r"(\d{1,3}(?:\.\d{1,3}){3}):(\d+)\s*>\s*(\d{1,3}(?:\.\d{1,3}){3}):(\d+)\s+protocol:\s*(\w+)")
_FIELD = re.compile(r"^([A-Za-z][A-Za-z ]+?):\s*(.+?)\s*$")


def parse_details(text: str, victim: str | None = None) -> dict:
    """FastNetMon's attack description (stdin of the notify script): its
    `Key: value` lines, and from the packet samples of attack_details the
    sources, destination ports and protocols of the packets sent to
    `victim` (all sampled packets without it). The samples are the first
    packets of the victim's traffic its capture threads saw after the
    ban, in both directions: under a spoofed flood they can be the
    customers' only (seen in the lab: its thread on the flood's CPU lags),
    so they say what FastNetMon reported, not what the attack was."""
    fields: dict = {}
    sources: dict = {}
    ports: dict = {}
    protos: dict = {}
    samples = seen = 0
    for line in text.splitlines():
        m = _PACKET.search(line)
        if m:
            seen += 1
            src, _sport, dst, dport, proto = m.groups()
            if victim is not None and dst != victim:
                continue
            samples += 1
            sources[src] = sources.get(src, 0) + 1
            ports[dport] = ports.get(dport, 0) + 1
            protos[proto] = protos.get(proto, 0) + 1
            continue
        f = _FIELD.match(line.strip())
        if f and f.group(1).strip().lower() not in fields:
            fields[f.group(1).strip().lower()] = f.group(2)
    out = {"fields": fields}
    if seen:
        def top(d: dict) -> list:
            return [k for k, _ in sorted(d.items(), key=lambda kv: (-kv[1], kv[0]))]
        out.update(samples=samples, sources=top(sources), dports=top(ports), protocols=top(protos))
    return out


def merge_events(lines: list[str], read=lambda p: "", offset: float = 0.0) -> list[dict]:
    """The notify script's JSON lines into events: one per ban and unban,
    in time order, a ban carrying the attack_details that followed it.
    `read(path)` returns a details file's text; `offset` is wall minus
    monotonic at the start, for `mono`. A malformed line is skipped."""
    raw = []
    for ln in lines:
        try:
            d = json.loads(ln)
            d["t"] = float(d["t"])
            d["pps"] = int(d["pps"]) if str(d.get("pps", "")).isdigit() else None
        except (ValueError, KeyError, TypeError):
            continue
        raw.append(d)
    raw.sort(key=lambda d: d["t"])
    out: list[dict] = []
    last_ban: dict = {}
    for d in raw:
        det = parse_details(read(d.get("details", "")) if d.get("details") else "",
                            d["ip"] if d.get("direction") == "incoming" else None)
        if d["action"] == "attack_details":
            ban = last_ban.get(d["ip"])
            if ban is not None:
                ban["attack"] = {**ban["attack"], **{k: v for k, v in det.items() if k != "fields"}}
                ban["details_at"] = round(d["t"], 6)
            continue
        ev = {"action": d["action"], "ip": d["ip"], "direction": d.get("direction"), "pps": d["pps"],
              "t": round(d["t"], 6), "mono": round(d["t"] - offset, 6), "attack": det}
        if d["action"] == "ban":
            plen = 128 if ":" in d["ip"] else 32
            ev["would"] = f"blackhole {d['ip']}/{plen}"
            last_ban[d["ip"]] = ev
        out.append(ev)
    return out


def detection(events: list[dict], flood_start: float, ip: str | None = None) -> float | None:
    """Seconds from flood_start (monotonic) to the first ban at or after
    it (of `ip` when given), None when there was none."""
    for ev in events:
        if ev["action"] == "ban" and ev["mono"] >= flood_start and (ip is None or ev["ip"] == ip):
            return round(ev["mono"] - flood_start, 3)
    return None


def figures(events: list[dict], flood_start: float, flood_end: float, victim: str | None = None) -> dict:
    """FastNetMon's figures for one run, for the report (pure). Times are
    monotonic; the window is [flood_start, flood_end]. `detect_s`: flood
    start to its first ban of `victim` (None: never); `false_bans`: bans
    before the flood started (a calm host blackholed); `would`: what it
    would have done, one line per ban in the window; `pps`: its moving
    average when it banned; `protocol`, `sources` (up to 5, from its
    packet samples) and `samples` from its attack details. A ban is RTBH
    of the victim: it would cut the customers with the attack."""
    bans = [e for e in events if e["action"] == "ban" and (victim is None or e["ip"] == victim)]
    inside = [e for e in bans if flood_start <= e["mono"] <= flood_end]
    first = inside[0] if inside else None
    att = first["attack"] if first else {}
    return {
        "detect_s": detection(events, flood_start, victim) if first else None,
        "false_bans": sum(e["mono"] < flood_start for e in bans),
        "would": [summary(e, flood_start) for e in inside],
        "pps": first["pps"] if first else None,
        "protocol": att.get("fields", {}).get("attack protocol"),
        "sources": att.get("sources", [])[:5],
        "samples": att.get("samples", 0),
        "unbans": sum(e["action"] == "unban" for e in events),
    }


def summary(ev: dict, flood_start: float | None = None) -> str:
    """One line: what FastNetMon would have done."""
    at = f"{ev['mono'] - flood_start:+.2f} s" if flood_start is not None else time.strftime(
        "%H:%M:%S", time.gmtime(ev["t"]))
    if ev["action"] != "ban":
        return f"would lift the blackhole of {ev['ip']} at {at}"
    f = ev["attack"].get("fields", {})
    kind = f.get("attack protocol") or f.get("attack type") or "?"
    return f"would {ev['would']} at {at} ({ev['direction']}, {ev['pps']} pps, {kind})"


_SCREEN_HOST = re.compile(r"^(\S+)\s+(\d+) pps\s+(\d+) mbps")


def parse_screen(text: str) -> dict:
    """FastNetMon's client screen (`cli_stats_file_path`, rewritten every
    second): {"incoming": {ip: pps}, "outgoing": {ip: pps}, "banned":
    [ip, ...]}; the rates are its moving averages."""
    out: dict = {"incoming": {}, "outgoing": {}, "banned": []}
    section = None
    for line in text.splitlines():
        if line.startswith("Incoming traffic"):
            section = "incoming"
        elif line.startswith("Outgoing traffic"):
            section = "outgoing"
        elif line.startswith(("Internal traffic", "Other traffic", "Ban list")):
            section = None
        else:
            m = _SCREEN_HOST.match(line)
            if m and section:
                out[section][m.group(1)] = int(m.group(2))
                if "*banned*" in line and m.group(1) not in out["banned"]:
                    out["banned"].append(m.group(1))
    return out


# --- the process --------------------------------------------------------
def _check_workdir(workdir: str) -> str:
    w = os.path.abspath(workdir)
    if re.search(r"[\s'\"$`\\=#]", w):
        raise ValueError(f"{workdir}: FastNetMon's workdir may hold no whitespace, quote, $, `, \\, = or #")
    if w == "/var/log" or w.startswith("/var/log/"):
        raise ValueError(f"{workdir}: FastNetMon's workdir cannot be under /var/log (it is mounted over)")
    return w


class FastNetMon:
    """FastNetMon sniffing `iface` in namespace `netns`, its files in
    `workdir`. start() returns once its AF_PACKET sockets are bound to the
    interface (`started_at`, monotonic), or at once with wait=False;
    stop() always ends it (and the notify scripts it runs); `with
    FastNetMon(...) as f:` does both. events() reads what it did."""

    def __init__(self, netns: str, iface: str, protected: list[str], workdir: str,
                 thresholds: Thresholds = Thresholds(), binary: str = FASTNETMON):
        if not protected:
            raise ValueError("FastNetMon needs at least one protected prefix")
        try:
            self.prefixes = [str(Prefix.parse(p)) for p in protected]
        except UsageError as e:
            raise ValueError(f"FastNetMon's protected prefixes: {e}") from None
        self.netns, self.iface, self.th, self.binary = netns, iface, thresholds, binary
        self.workdir = _check_workdir(workdir)
        self.proc: subprocess.Popen | None = None
        self.proc_rc: int | None = None  # its exit status once stopped
        self.offset = 0.0  # wall minus monotonic, taken at start
        self.started_at: float | None = None  # monotonic, capture ready
        self._ifidx: int | None = None
        self._stderr = None
        self._ready = threading.Event()

    @classmethod
    def mirror(cls, lab: Lab, workdir: str, thresholds: Thresholds = Thresholds()) -> "FastNetMon":
        """The placement for the wire evaluation: the port mirror of the
        server's switch port (wbs in the wire namespace), the server /32
        protected."""
        return cls(lab.w, MIRROR_IFACE, [f"{SERVER}/32"], workdir, thresholds)

    # files
    def path(self, name: str) -> str:
        return os.path.join(self.workdir, name)

    def write_files(self) -> None:
        os.makedirs(self.path("details"), exist_ok=True)
        os.makedirs(self.path("var-log/fastnetmon_attacks"), exist_ok=True)
        with open(self.path("fastnetmon.conf"), "w") as f:
            f.write(config_text(self.iface, self.workdir, self.th))
        with open(self.path("networks_list"), "w") as f:
            f.write("".join(p + "\n" for p in self.prefixes))
        open(self.path("networks_whitelist"), "w").close()
        with open(self.path("notify.sh"), "w") as f:
            f.write(notify_text(self.workdir))
        os.chmod(self.path("notify.sh"), 0o755)
        open(self.path(EVENTS), "w").close()  # events() tells this start's
        if os.path.exists(self.path("fastnetmon.pid")):  # an earlier start's: its pid may be reused
            os.unlink(self.path("fastnetmon.pid"))

    def command(self) -> list[str]:
        """nsenter the namespace, a private mount namespace with
        workdir/var-log over /var/log, then exec fastnetmon (one pid)."""
        inner = ('mount --bind "$1" /var/log && exec "$2" --configuration_file "$3" --log_file "$4"')
        return ["nsenter", f"--net=/run/netns/{self.netns}", "unshare", "--mount", "--propagation", "private",
                "sh", "-c", inner, "fnm", self.path("var-log"), self.binary, self.path("fastnetmon.conf"),
                self.path("fastnetmon.log")]

    # lifecycle
    def start(self, timeout: float = 15.0, wait: bool = True) -> None:
        """Write the files and start FastNetMon; with `wait`, return once
        its capture is open (about 0.9 s here), else at once (call
        wait_ready() later). FastNetMonError (one line) when it cannot."""
        for tool in ("nsenter", "unshare"):
            if shutil.which(tool) is None:
                raise FastNetMonError(f"{tool} is not installed (util-linux)")
        if not os.access(self.binary, os.X_OK):
            raise FastNetMonError(f"{self.binary}: not installed (Debian's fastnetmon; scripts/setup --test)")
        if not os.path.exists(f"/run/netns/{self.netns}"):
            raise FastNetMonError(f"no network namespace {self.netns}")
        if self.proc is not None:
            raise FastNetMonError("FastNetMon is already running")
        self.write_files()
        self.started_at = None
        self.offset = time.time() - time.monotonic()
        self._stderr = open(self.path("stderr.txt"), "w")
        self.proc = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL, stdout=self._stderr,
                                     stderr=subprocess.STDOUT, cwd=self.workdir, start_new_session=True)
        self._ready = threading.Event()
        threading.Thread(target=self._watch, args=(self.proc, timeout), daemon=True).start()
        if wait:
            self.wait_ready(timeout)

    def _watch(self, proc: subprocess.Popen, timeout: float) -> None:
        """Stamp the moment its capture opens (started_at), polling every
        10 ms, so start(wait=False) still knows it."""
        end = time.monotonic() + timeout
        while proc is self.proc and proc.poll() is None and time.monotonic() < end:
            if self.capturing(proc):
                self.started_at = time.monotonic()
                break
            time.sleep(0.01)
        self._ready.set()

    def wait_ready(self, timeout: float = 15.0) -> float:
        """Wait until its AF_PACKET sockets are bound to the interface;
        returns that moment (monotonic). Stops it and raises
        FastNetMonError if it exits or does not get there in time."""
        if self.proc is None:
            raise FastNetMonError("FastNetMon is not running")
        self._ready.wait(timeout)
        if self.started_at is None:
            err = self.log_tail()
            rc = self.proc.poll() if self.proc is not None else self.proc_rc
            self.stop()
            why = f"exited with {rc}" if rc is not None else f"did not open its capture on {self.iface}"
            raise FastNetMonError(f"fastnetmon {why} within {timeout:.0f} s: {err}")
        return self.started_at

    def capturing(self, proc: subprocess.Popen | None = None) -> bool:
        """Are FastNetMon's AF_PACKET sockets bound to the interface? (its
        own fds against its namespace's /proc/net/packet)"""
        proc = proc or self.proc
        if proc is None:
            return False
        pid = proc.pid
        try:
            mine = set()
            for fd in os.listdir(f"/proc/{pid}/fd"):
                try:
                    link = os.readlink(f"/proc/{pid}/fd/{fd}")
                except OSError:
                    continue
                if link.startswith("socket:["):
                    mine.add(link[8:-1])
            with open(f"/proc/{pid}/net/packet") as f:
                rows = f.read().splitlines()[1:]
            exe = os.readlink(f"/proc/{pid}/exe")
        except OSError:
            return False
        if os.path.basename(exe) != os.path.basename(self.binary):
            return False  # still nsenter / unshare / sh
        ifindex = self._ifindex()
        bound = [r.split() for r in rows]
        return any(len(c) >= 9 and c[8] in mine and c[4] == str(ifindex) for c in bound)

    def _ifindex(self) -> int | None:
        if self._ifidx is None:
            p = subprocess.run(["ip", "-n", self.netns, "-j", "link", "show", "dev", self.iface],
                               capture_output=True, text=True)
            try:
                self._ifidx = int(json.loads(p.stdout)[0]["ifindex"])
            except (ValueError, IndexError, KeyError, TypeError):
                return None
        return self._ifidx

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        """SIGTERM to its process group, SIGKILL if it lingers; idempotent."""
        if self.proc is not None:
            Lab.stop(self.proc, signal.SIGTERM, wait=5)
            self.proc_rc = self.proc.returncode
            self.proc = None
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None

    def __enter__(self) -> "FastNetMon":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    # results
    def log_tail(self, n: int = 300) -> str:
        """The end of its log and of its own output, on one line."""
        parts = []
        for name in ("fastnetmon.log", "stderr.txt"):
            try:
                with open(self.path(name), errors="replace") as f:
                    text = f.read().strip()
            except OSError:
                continue
            if text:
                parts.append(text[-n:].replace("\n", " | "))
        return " || ".join(parts)

    def screen(self) -> dict:
        """What FastNetMon shows now (parse_screen of its stats file)."""
        try:
            with open(self.path("fastnetmon.dat"), errors="replace") as f:
                return parse_screen(f.read())
        except OSError:
            return parse_screen("")

    def events(self) -> list[dict]:
        """Every ban and unban so far, in time order (see merge_events):
        {"action", "ip", "direction", "pps", "t" (wall), "mono"
        (CLOCK_MONOTONIC), "would" ("blackhole IP/32"), "attack" (its
        description's fields; after attack_details also "sources",
        "dports", "protocols", "samples")}."""
        try:
            with open(self.path(EVENTS)) as f:
                lines = [ln for ln in f.read().splitlines() if ln.strip()]
        except OSError:
            return []

        def read(p: str) -> str:
            if not os.path.abspath(p).startswith(self.path("details") + os.sep):
                return ""
            try:
                with open(p, errors="replace") as f:
                    return f.read()
            except OSError:
                return ""

        return merge_events(lines, read, self.offset)
