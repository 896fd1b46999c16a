"""The seawall command line.

Exit status: 0 done, 1 runtime failure (not privileged, kernel refused,
nothing attached), 2 bad usage (bad CIDR, duration or option), 130
interrupted by Ctrl-C. Every error is one line on stderr, and a failed
command changes nothing.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Optional

import click

from seawall.control.addr import Prefix
from seawall.control.duration import format_duration, parse_duration
from seawall.control.errors import SeawallError, UsageError
from seawall.control.state import Paths

PROG = "seawall"


# --- parameter types ----------------------------------------------------------

class CidrType(click.ParamType):
    name = "CIDR"

    def convert(self, value, param, ctx):
        if isinstance(value, Prefix):
            return value
        try:
            return Prefix.parse(value)
        except UsageError as e:
            self.fail(str(e), param, ctx)


class DurationType(click.ParamType):
    name = "DURATION"

    def convert(self, value, param, ctx):
        if isinstance(value, int):
            return value
        try:
            return parse_duration(value)
        except UsageError as e:
            self.fail(str(e), param, ctx)


class IfaceType(click.ParamType):
    """An interface name; existence is checked by the command (it may live
    in another network namespace when the command runs under nsenter)."""

    name = "IFACE"

    def convert(self, value, param, ctx):
        if not value or len(value) > 15 or "/" in value or value in (".", "..") or any(c.isspace() for c in value):
            self.fail(f"{value!r} is not a valid interface name", param, ctx)
        return value


CIDR = CidrType()
DURATION = DurationType()
IFACE = IfaceType()


# --- context ------------------------------------------------------------------

class App:
    def __init__(self, paths: Paths):
        self.paths = paths

    def need_root(self) -> None:
        if os.geteuid() != 0:
            cmd = click.get_current_context().command_path
            raise SeawallError(f"`{cmd}` needs root (CAP_BPF and CAP_NET_ADMIN); run it with sudo")

    def lists(self):
        self.need_root()
        from seawall.control.lists import ListStore

        store = ListStore(self.paths)
        if store.restored:
            click.echo(f"restored {store.restored} entries from the journal into fresh maps", err=True)
        if store.restore_skipped:
            lines = ", ".join(str(n) for n, _ in store.restore_skipped if n) or "-"
            click.echo(f"warning: the journal had {len(store.restore_skipped)} unreadable entries "
                       f"(lines {lines}); they were ignored, the rest restored", err=True)
        return store

    def ifaces(self):
        self.need_root()
        from seawall.control.ifaces import Interfaces

        return Interfaces(self.paths)


pass_app = click.make_pass_decorator(App)


def emit_json(obj) -> None:
    click.echo(json.dumps(obj, indent=2, sort_keys=True))


def table(rows: list, headers: list) -> None:
    if not rows:
        return
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows)]
    for row in [headers] + rows:
        click.echo("  ".join(str(x).ljust(w) for x, w in zip(row, widths)).rstrip())


# --- the group ----------------------------------------------------------------

@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--bpffs", "pin_root", metavar="DIR", envvar="SEAWALL_BPFFS",
              help="bpffs folder of the pinned maps [default: /sys/fs/bpf/seawall; env SEAWALL_BPFFS]")
@click.option("--state-dir", metavar="DIR", envvar="SEAWALL_STATE_DIR",
              help="journal folder [default: /var/lib/seawall; env SEAWALL_STATE_DIR]")
@click.version_option(package_name="seawall", prog_name=PROG)
@click.pass_context
def cli(ctx, pin_root, state_dir):
    """seawall: drop DDoS floods at the NIC with XDP, keep customers served.

    \b
    Examples:
      seawall attach eth0
      seawall block add 198.18.0.66 --ttl 10m --reason "SYN flood"
      seawall block list --json
      seawall stats
    """
    ctx.obj = App(Paths.from_env(pin_root, state_dir))


# --- interfaces ---------------------------------------------------------------

@cli.command()
@click.argument("iface", type=IFACE)
@click.option("--mode", type=click.Choice(["auto", "native", "generic"]), default="auto", show_default=True,
              help="native (driver) XDP, generic (skb) XDP, or native falling back to generic")
@click.option("--monitor/--enforce", default=False,
              help="monitor: count what would be dropped and pass everything [default: enforce]")
@pass_app
def attach(app, iface, mode, monitor):
    """Attach the XDP filter to IFACE (or switch an attached one between
    monitor and enforce without reloading).

    \b
    Examples:
      seawall attach eth0
      seawall attach eth0 --mode generic --monitor
    """
    ifs = app.ifaces()
    st, action = ifs.attach(iface, mode, monitor)
    if ifs.restored:
        click.echo(f"restored {ifs.restored} entries from the journal into fresh maps", err=True)
    what = "monitor (counts, never drops)" if st.monitor else "enforce"
    if action == "attached":
        click.echo(f"attached to {iface} in {st.mode} mode, {what}")
    else:
        click.echo(f"already attached to {iface} ({st.mode}); now {what}")


@cli.command()
@click.argument("iface", type=IFACE)
@pass_app
def detach(app, iface):
    """Detach the filter from IFACE. The host-wide lists stay.

    \b
    Example:
      seawall detach eth0
    """
    app.ifaces().detach(iface)
    click.echo(f"detached from {iface}; allowlist and blocklist kept")


@cli.command()
@click.argument("iface", type=IFACE)
@click.argument("state", type=click.Choice(["on", "off"]))
@pass_app
def monitor(app, iface, state):
    """Turn monitor mode on or off on an attached IFACE, without reloading.

    \b
    Example:
      seawall monitor eth0 on
    """
    st = app.ifaces().set_monitor(iface, state == "on")
    click.echo(f"{iface}: monitor {'on: counting, never dropping' if st.monitor else 'off: enforcing'}")


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="print one JSON object")
@pass_app
def status(app, as_json):
    """Show attached interfaces and list sizes.

    \b
    Example:
      seawall status --json
    """
    from seawall.control.lists import ListStore

    ifs = app.ifaces().all()
    # a read-only command: it neither creates the lists nor compiles anything
    try:
        store = ListStore(app.paths, create=False)
    except SeawallError:
        store = None
    blocks = store.block_list() if store else []
    allows = store.allow_list() if store else []
    obj = {
        "bpffs": app.paths.pin_root,
        "state_dir": app.paths.state_dir,
        "lists_pinned": store is not None,
        "interfaces": [s.to_json() for s in ifs],
        "blocklist": {"entries": len(blocks),
                      "auto": sum(1 for e in blocks if e.source == "auto"),
                      "manual": sum(1 for e in blocks if e.source != "auto")},
        "allowlist": {"entries": len(allows)},
    }
    if as_json:
        emit_json(obj)
        return
    if not ifs:
        click.echo("no interface attached (seawall attach IFACE)")
    if store is None:
        click.echo(f"no lists pinned under {app.paths.pin_root} yet: the first attach or list edit creates "
                   "them (and restores the journal)")
    table([[s.ifname, s.state, s.mode or "-", "monitor" if s.monitor else "enforce", s.prog_id or "-"]
           for s in ifs], ["INTERFACE", "STATE", "MODE", "ACTION", "PROG"])
    click.echo(f"blocklist: {obj['blocklist']['entries']} entries "
               f"({obj['blocklist']['auto']} auto, {obj['blocklist']['manual']} manual); "
               f"allowlist: {obj['allowlist']['entries']} entries")


@cli.command()
@click.option("--interface", "-i", "only", type=IFACE, multiple=True, help="only this interface (repeatable)")
@click.option("--json", "as_json", is_flag=True, help="print one JSON object")
@pass_app
def stats(app, only, as_json):
    """Packets and bytes by verdict and reason, per interface.

    \b
    Example:
      seawall stats -i eth0 --json
    """
    ifs = app.ifaces()
    names = list(only) or ifs.names()
    obj = {"interfaces": {n: ifs.counters(n) for n in names}}
    if as_json:
        emit_json(obj)
        return
    if not names:
        click.echo("no interface attached (seawall attach IFACE)")
    for n, c in obj["interfaces"].items():
        click.echo(f"{n}:")
        table([[f"  {r}", v["verdict"], v["packets"], v["bytes"]] for r, v in c["reasons"].items()],
              ["  REASON", "VERDICT", "PACKETS", "BYTES"])
        ev = ", ".join(f"{k}={v}" for k, v in c["events"].items() if v)
        click.echo(f"  events: {ev or 'none'}")


# --- lists --------------------------------------------------------------------

def _big_prefix_guard(prefixes, force: bool) -> None:
    for p in prefixes:
        if not force and p.prefixlen < (8 if p.version == 4 else 16):
            raise UsageError(f"{p} covers a huge part of the Internet; add --force if you mean it")


def _list_del(cidrs, entries, name: str, delete_all, done: str) -> None:
    """Remove cidrs (each once, in the order given) from a list whose
    current entries are `entries`; all or nothing, and none if one is not
    on it."""
    listed = {e.prefix for e in entries}
    missing = [str(p) for p in cidrs if p not in listed]
    if missing:
        raise SeawallError(f"not on the {name}: {', '.join(missing)}")
    cidrs = list(dict.fromkeys(cidrs))
    delete_all(cidrs)  # all or nothing
    for p in cidrs:
        click.echo(done.format(p))


def _list_show(list_entries, name: str, as_json: bool, headers: list, row) -> None:
    """Print a list's entries as a JSON array or a table of row(entry, now)."""
    now = time.time()  # before listing: live entries expire after it
    entries = list_entries()
    if as_json:
        emit_json([e.to_json(now) for e in entries])
        return
    if not entries:
        click.echo(f"{name} is empty")
        return
    table([row(e, now) for e in entries], headers)


@cli.group()
def block():
    """Blocked sources: dropped at the NIC until they expire or are removed.

    \b
    Examples:
      seawall block add 198.18.0.66 --ttl 10m --reason "SYN flood"
      seawall block list
    """


@block.command("add")
@click.argument("cidrs", metavar="CIDR...", nargs=-1, required=True, type=CIDR)
@click.option("--ttl", type=DURATION, metavar="DURATION",
              help="expire after this long: 90s, 10m, 4h, 1d [default: until removed]")
@click.option("--reason", default="", metavar="TEXT", help="why (shown by block list)")
@click.option("--force", is_flag=True, help="allow prefixes shorter than /8 (IPv4) or /16 (IPv6)")
@pass_app
def block_add(app, cidrs, ttl, reason, force):
    """Block one or more sources (addresses or CIDRs, IPv4 or IPv6).

    Adding an entry that exists replaces its TTL and reason.

    \b
    Examples:
      seawall block add 198.18.0.66
      seawall block add 198.18.7.0/24 2001:2::/64 --ttl 4h --reason "botnet"
    """
    _big_prefix_guard(cidrs, force)
    if len(reason) > 256 or any(ord(c) < 32 for c in reason):
        raise UsageError("--reason must be at most 256 printable characters")
    store = app.lists()
    for p in cidrs:
        cover = store.allowed(p)
        if cover is not None:
            click.echo(f"warning: {p} overlaps allowlist entry {cover}; the allowlist wins", err=True)
    cidrs = list(dict.fromkeys(cidrs))  # each once, in the order given
    until = f"for {format_duration(ttl)}" if ttl else "until removed"
    for entry, replaced in store.block_add_all(cidrs, ttl, reason):  # all or nothing
        click.echo(f"{'updated' if replaced else 'blocked'} {entry.prefix} {until}")


@block.command("del")
@click.argument("cidrs", metavar="CIDR...", nargs=-1, required=True, type=CIDR)
@pass_app
def block_del(app, cidrs):
    """Remove blocks (exact prefixes as listed).

    \b
    Example:
      seawall block del 198.18.0.66
    """
    store = app.lists()
    _list_del(cidrs, store.block_list(prune=False), "blocklist", store.block_del_all, "unblocked {}")


@block.command("list")
@click.option("--json", "as_json", is_flag=True, help="print a JSON array")
@pass_app
def block_list(app, as_json):
    """List live blocks with their expiry, reason and source.

    \b
    Example:
      seawall block list --json
    """
    _list_show(app.lists().block_list, "blocklist", as_json, ["CIDR", "SOURCE", "EXPIRES IN", "REASON"],
               lambda e, now: [str(e.prefix), e.source,
                               "never" if e.expires_at is None else format_duration(e.expires_at - now),
                               e.reason or "-"])


@block.command("flush")
@pass_app
def block_flush(app):
    """Remove every block, manual and automatic.

    \b
    Example:
      seawall block flush
    """
    n = app.lists().block_flush()
    click.echo(f"flushed {n} blocklist entries")


@cli.group()
def allow():
    """Trusted sources: always passed, never blocked (not even by the daemon).

    \b
    Examples:
      seawall allow add 198.18.0.0/28 --reason "monitoring"
      seawall allow list
    """


@allow.command("add")
@click.argument("cidrs", metavar="CIDR...", nargs=-1, required=True, type=CIDR)
@click.option("--reason", default="", metavar="TEXT", help="why (shown by allow list)")
@pass_app
def allow_add(app, cidrs, reason):
    """Allow one or more sources.

    \b
    Example:
      seawall allow add 198.18.0.0/28 --reason "monitoring"
    """
    if len(reason) > 256 or any(ord(c) < 32 for c in reason):
        raise UsageError("--reason must be at most 256 printable characters")
    store = app.lists()
    for entry, replaced in store.allow_add_all(list(dict.fromkeys(cidrs)), reason):  # all or nothing
        click.echo(f"{'updated' if replaced else 'allowed'} {entry.prefix}")


@allow.command("del")
@click.argument("cidrs", metavar="CIDR...", nargs=-1, required=True, type=CIDR)
@pass_app
def allow_del(app, cidrs):
    """Remove allowlist entries.

    \b
    Example:
      seawall allow del 198.18.0.0/28
    """
    store = app.lists()
    _list_del(cidrs, store.allow_list(), "allowlist", store.allow_del_all, "removed {} from the allowlist")


@allow.command("list")
@click.option("--json", "as_json", is_flag=True, help="print a JSON array")
@pass_app
def allow_list(app, as_json):
    """List allowlist entries.

    \b
    Example:
      seawall allow list --json
    """
    _list_show(app.lists().allow_list, "allowlist", as_json, ["CIDR", "REASON"],
               lambda e, now: [str(e.prefix), e.reason or "-"])


# --- signatures -----------------------------------------------------------------

@cli.group()
def sig():
    """Signature rules: drop or rate-limit a flood by its shape when its
    sources are spoofed (protocol, ports, length, TCP flags).

    \b
    Examples:
      seawall sig add --proto udp --sport 161 --ttl 1h --reason "SNMP reflection"
      seawall sig list
    """


@sig.command("add")
@click.option("--proto", required=True, metavar="PROTO", help="tcp, udp, icmp, icmpv6 or a number")
@click.option("--dport", type=click.IntRange(0, 65535), help="destination port (tcp/udp)")
@click.option("--sport", type=click.IntRange(0, 65535), help="source port (tcp/udp), e.g. 161 for SNMP reflection")
@click.option("--len", "length", metavar="MIN-MAX", help="frame length range in bytes, inclusive")
@click.option("--flags", metavar="FLAGS", help="exact TCP flags, e.g. S for SYN-only")
@click.option("--rate", type=click.IntRange(1, 2**32 - 1), metavar="PPS",
              help="pass up to PPS matching packets per second [default: drop all]")
@click.option("--ttl", type=DURATION, metavar="DURATION", help="expire after this long [default: until removed]")
@click.option("--reason", default="", metavar="TEXT")
@pass_app
def sig_add(app, proto, dport, sport, length, flags, rate, ttl, reason):
    """Add a signature rule (or replace the rule matching the same packets).

    \b
    Examples:
      seawall sig add --proto udp --sport 161 --ttl 1h --reason "SNMP reflection"
      seawall sig add --proto tcp --dport 443 --flags S --rate 2000
    """
    from seawall.control.signature import Signature, parse_len_range, parse_proto, parse_tcp_flags

    lo, hi = parse_len_range(length) if length else (None, None)
    rule = Signature(parse_proto(proto), dport=dport, sport=sport, len_min=lo, len_max=hi,
                     tcp_flags=parse_tcp_flags(flags) if flags else None, rate_pps=rate or 0)
    if rule.dport is None and rule.sport is None and rule.len_min is None and rule.tcp_flags is None:
        raise UsageError("a rule on a whole protocol would cut everyone off; add a port, length or flags")
    slot, replaced = app.lists().sig_add(rule, ttl, reason, atomic=True)
    click.echo(f"{'updated' if replaced else 'added'} rule {slot}: {rule.describe()}"
               f"{' for ' + format_duration(ttl) if ttl else ''}")


@sig.command("list")
@click.option("--json", "as_json", is_flag=True, help="print a JSON array")
@pass_app
def sig_list(app, as_json):
    """List live signature rules.

    \b
    Example:
      seawall sig list --json
    """
    from seawall.control.journal import iso

    rows = app.lists().sig_list()
    if as_json:
        emit_json([{"slot": r["slot"], "rule": r["rule"], "action": r["action"], "rate_pps": r["rate_pps"],
                    "expires_at": iso(r["expires_at"]), "reason": r["reason"], "source": r["source"],
                    "match": r["signature"].to_json()} for r in rows])
        return
    if not rows:
        click.echo("no signature rules")
        return
    now = time.time()
    table([[r["slot"], r["rule"], r["action"] + (f" {r['rate_pps']}pps" if r["rate_pps"] else ""), r["source"],
            "never" if r["expires_at"] is None else format_duration(r["expires_at"] - now), r["reason"] or "-"]
           for r in rows], ["SLOT", "RULE", "ACTION", "SOURCE", "EXPIRES IN", "REASON"])


@sig.command("del")
@click.argument("rule", metavar="RULE")
@pass_app
def sig_del(app, rule):
    """Delete a rule by its text as `sig list` shows it, or by slot number.

    \b
    Examples:
      seawall sig del "udp sport 161"
      seawall sig del 0
    """
    store = app.lists()
    key = rule
    if rule.isdigit():
        match = [r for r in store.sig_list() if r["slot"] == int(rule)]
        if not match:
            raise SeawallError(f"no live rule in slot {rule}")
        key = match[0]["rule"]
    if not store.sig_del(key, atomic=True):
        raise SeawallError(f"no rule {rule!r} (see `seawall sig list`)")
    click.echo(f"deleted rule: {key}")


@sig.command("flush")
@pass_app
def sig_flush(app):
    """Delete every signature rule.

    \b
    Example:
      seawall sig flush
    """
    click.echo(f"flushed {app.lists().sig_flush(atomic=True)} signature rules")


# --- the daemon and its config --------------------------------------------------

@cli.command()
@click.option("--config", "config_path", type=click.Path(dir_okay=False), metavar="FILE",
              help="TOML config [default: built-in defaults]")
@click.option("--interface", "-i", "interfaces", type=IFACE, multiple=True,
              help="attach to and watch IFACE (repeatable) [default: every attached interface]")
@click.option("--monitor", is_flag=True, default=None, help="decide and log, enforce nothing")
@click.option("--interval", metavar="DURATION", help="cycle length, 100ms to 10s [default: 1s]")
@click.option("--cycles", type=click.IntRange(1), hidden=True, help="stop after N cycles (tests)")
@pass_app
def run(app, config_path, interfaces, monitor, interval, cycles):
    """Run the detection daemon in the foreground (systemd runs this).

    \b
    Examples:
      seawall run -i eth0
      seawall run --config /etc/seawall/seawall.toml
    """
    import dataclasses

    from seawall.control import config as configmod
    from seawall.control.daemon import Daemon, setup_logging

    cfg = configmod.load(config_path)
    over = {}
    if monitor:
        over["monitor"] = True
    if interval:
        try:
            over["interval"] = configmod.from_dict({"daemon": {"interval": interval}}, "--interval").daemon.interval
        except configmod.ConfigError as e:
            raise UsageError(str(e).replace("--interval: [daemon] interval: ", "--interval: ")) from None
    if over:
        cfg = dataclasses.replace(cfg, daemon=dataclasses.replace(cfg.daemon, **over))
    app.need_root()
    setup_logging(cfg.daemon.log_level)
    Daemon(cfg, app.paths, interfaces, config_path).run(max_cycles=cycles)


@cli.group("config")
def config_group():
    """The daemon's TOML configuration.

    \b
    Example:
      seawall config check /etc/seawall/seawall.toml
    """


@config_group.command("check")
@click.argument("file", type=click.Path(dir_okay=False))
def config_check(file):
    """Validate FILE: prints every setting in force, or the first error.

    \b
    Example:
      seawall config check /etc/seawall/seawall.toml
    """
    from seawall.control import config as configmod

    cfg = configmod.load(file)
    click.echo(f"{file}: ok")
    for section, values in configmod.to_dict(cfg).items():
        click.echo(f"[{section}]")
        for k, v in values.items():
            click.echo(f"  {k} = {json.dumps(list(v) if isinstance(v, tuple) else v)}")


@cli.command()
@click.option("--seed", type=int, default=1, show_default=True)
@click.option("--interval", type=float, default=0.5, show_default=True, help="cycle length, seconds")
@click.option("--json", "as_json", is_flag=True)
def evaluate(seed, interval, as_json):
    """Run the evaluation harness: simulated legitimate traffic and attacks
    through the real scoring engine. No root needed.

    \b
    Example:
      seawall evaluate --seed 2
    """
    from seawall.control import harness

    results = harness.run_all(seed=seed, dt=interval)
    if as_json:
        emit_json([r.to_json() for r in results])
    else:
        click.echo(harness.table(results))
    if not all(r.ok for r in results):
        raise SeawallError("a scenario missed its bound")


@cli.command()
@click.argument("capture", type=click.Path(dir_okay=False))
@click.option("--config", "config_path", type=click.Path(dir_okay=False), metavar="FILE", help="TOML config")
@click.option("--interval", default="100ms", show_default=True, metavar="DURATION",
              help="cycle length on the capture's clock")
@click.option("--background", type=click.FloatRange(0, 200000), default=1000.0, show_default=True, metavar="PPS",
              help="legitimate background mixed in (attack captures carry none)")
@click.option("--warmup", type=click.FloatRange(0, 600), default=30.0, show_default=True, metavar="SECONDS",
              help="background alone before the capture, for the baseline")
@click.option("--seed", type=int, default=1, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="print one JSON object, with the per-cycle timeline")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False), metavar="FILE",
              help="also draw the timeline as a PNG: packets/s by verdict, entropy, score, decisions")
@pass_app
def replay(app, capture, config_path, interval, background, warmup, seed, as_json, plot_path):
    """Run a pcap/pcapng capture through the real XDP program (BPF_PROG_TEST_RUN)
    and the real scoring engine, on the capture's own clock, and report what
    would have been detected and dropped. Uses scratch maps: the host's
    lists are not touched.

    \b
    Examples:
      seawall replay attack.pcap --json
      seawall replay attack.pcap --plot attack.png
    """
    from seawall.control import config as configmod
    from seawall.control import pcap as pcapmod
    from seawall.control.replay import replay as run_replay

    if plot_path is not None:  # before the replay, which takes a while
        folder = os.path.dirname(os.path.abspath(plot_path))
        if not os.path.isdir(folder):
            raise UsageError(f"--plot: {plot_path}: no such directory {folder}")
        if not os.access(folder, os.W_OK):
            raise UsageError(f"--plot: {plot_path}: directory {folder} is not writable")
    cfg = configmod.load(config_path)
    try:
        dt = configmod.from_dict({"daemon": {"interval": interval}}, "--interval").daemon.interval
    except configmod.ConfigError as e:
        raise UsageError(str(e).replace("--interval: [daemon] interval: ", "--interval: ")) from None
    # validate the whole capture before compiling anything
    n = sum(1 for _ in pcapmod.read(capture))
    if n == 0:
        raise SeawallError(f"{capture}: the capture holds no packets")
    app.need_root()
    res = run_replay(capture, cfg, dt, background, warmup, seed, scratch_prefix=app.paths.pin_root)
    if as_json:
        emit_json(res.to_json())
    else:
        _replay_summary(res)
    if plot_path is not None:
        from seawall.control import plot

        plot.write_png(plot_path, plot.render(res, cfg.detection.threshold))
        click.echo(f"plot: {plot_path}", err=as_json)


def _replay_summary(res) -> None:
    click.echo(f"{res.capture}: {res.packets} packets over {res.span:.2f} s")
    if res.detected_at is None:
        click.echo("not detected")
    else:
        click.echo(f"alarm at {res.detected_at:.2f} s; first decision at "
                   f"{'-' if res.first_action_at is None else f'{res.first_action_at:.2f} s'}")
    click.echo(f"dropped {res.dropped} of {res.packets} capture packets ({res.dropped / res.packets:.1%}); "
               f"{res.dropped_after_action:.1%} of those after the first decision")
    click.echo(f"background: {res.background_dropped} of {res.background_packets} legitimate packets dropped")
    for d in res.decisions:
        click.echo(f"  {d['t']:8.2f} s  {d['action']:9}  {d['what']}  ({d['reason']})")


@cli.command()
@click.option("--interval", type=click.FloatRange(0.2, 10), default=1.0, show_default=True, metavar="SECONDS")
@click.option("--metrics", "metrics_url", default="http://127.0.0.1:9477/metrics", show_default=True, metavar="URL",
              help="the daemon's metrics, for its score and alarm")
@pass_app
def top(app, interval, metrics_url):
    """Live view: rates by verdict, entropy per feature, top sources, the
    daemon's score and recent decisions. q or Ctrl-C quits.

    \b
    Example:
      seawall top --interval 0.5
    """
    app.need_root()
    if not sys.stdout.isatty():
        raise UsageError("seawall top needs a terminal (use `seawall stats --json` in scripts)")
    from seawall.control.top import run as run_top

    run_top(app.paths, interval, metrics_url)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="print one JSON object (progress goes to stderr)")
@click.option("--quick", is_flag=True,
              help="small repeats and tables, no veth part: a smoke test of the bench itself")
@click.option("--full", is_flag=True,
              help="also the scoring cycle over 1M sources (maps of a million entries: not for CI)")
@click.option("--repeat", type=click.IntRange(1, 2**31), metavar="N",
              help="BPF_PROG_TEST_RUN repeats per run [default: 1000000; 20000 with --quick]")
@click.option("--runs", type=click.IntRange(1, 101), metavar="N",
              help="runs per case, the median is reported [default: 5; 3 with --quick]")
@click.option("--profile", is_flag=True,
              help="also time seawall with each part compiled out, to show where the time goes")
@click.option("--e2e/--no-e2e", default=None,
              help="the end-to-end part on veth [default: on; off with --quick]")
@click.option("--seconds", type=click.FloatRange(2, 120), metavar="S",
              help="length of each end-to-end phase [default: 8]")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False), metavar="FILE",
              help="also draw ns per packet by case (floor, xdp-filter, seawall) as a PNG")
@click.option("--save", "save_path", type=click.Path(dir_okay=False), metavar="FILE",
              help="also write the JSON report to FILE")
@click.option("--seed", type=int, default=1, show_default=True, help="seed of the address lists and traffic")
def bench(as_json, quick, full, repeat, runs, profile, e2e, seconds, plot_path, save_path, seed):
    """Measure seawall side by side with the empty program and xdp-filter:
    per-packet cost (BPF_PROG_TEST_RUN), the daemon's scoring cycle and
    bulk list install, memory, and customers served during a veth flood.

    Everything runs in scratch maps and scratch namespaces; the host's
    lists are never touched. A missed target is reported, not an error.
    BENCHMARKS.md explains the method.

    \b
    Examples:
      seawall bench
      seawall bench --profile --plot docs/bench.png
      seawall bench --quick --json
    """
    from seawall.control import bench as benchmod

    if os.geteuid() != 0:
        raise SeawallError("`seawall bench` needs root (BPF, bpffs and network namespaces); run it with sudo")
    p = benchmod.Params.make(quick=quick, full=full, repeat=repeat, runs=runs, profile=profile or None,
                             e2e=e2e, e2e_seconds=seconds, seed=seed)
    args = sys.argv[sys.argv.index("bench") + 1:] if "bench" in sys.argv else []
    command = " ".join(["seawall bench", *args])

    def say(msg: str) -> None:
        click.echo(f"bench: {msg}", err=True)

    report = benchmod.run(p, say, command)
    if plot_path:
        benchmod.plot(report, plot_path)
    if save_path:
        try:
            with open(save_path, "w") as f:
                json.dump(report.to_json(), f, indent=2, sort_keys=True)
        except OSError as e:
            raise SeawallError(f"{save_path}: cannot write the report: {e.strerror}") from None
    if as_json:
        click.echo(json.dumps(report.to_json(), indent=2, sort_keys=True))
    else:
        click.echo(benchmod.render_text(report))


# --- entry point --------------------------------------------------------------

# click >= 8.2 raises this for a group run without a subcommand; older
# versions print the help and exit 0 instead.
_NO_COMMAND = getattr(click.exceptions, "NoArgsIsHelpError", ())


# 128 + SIGINT, the status of a shell command stopped by Ctrl-C.
EXIT_INTERRUPTED = 130


def main(argv: Optional[list] = None) -> int:
    """Run the CLI; every error is one line on stderr."""
    try:
        cli.main(args=argv, prog_name=PROG, standalone_mode=False)
        return 0
    except click.exceptions.Exit as e:
        return e.exit_code
    except click.exceptions.Abort as e:
        # click turns Ctrl-C (after printing a newline to close the
        # terminal's ^C) and EOF at a prompt into Abort.
        if isinstance(e.__cause__, KeyboardInterrupt):
            click.echo(f"{PROG}: interrupted", err=True)
            return EXIT_INTERRUPTED
        click.echo(f"{PROG}: aborted", err=True)
        return 1
    except KeyboardInterrupt:  # outside click's own handler
        click.echo(f"\n{PROG}: interrupted", err=True)
        return EXIT_INTERRUPTED
    except click.UsageError as e:
        cmd = e.ctx.command_path if e.ctx else PROG
        if isinstance(e, _NO_COMMAND):  # its message is the group's whole help text
            msg = "Missing command."
        else:  # some are several lines (a missing choice lists the choices)
            msg = " ".join(line.strip() for line in e.format_message().splitlines() if line.strip())
        click.echo(f"{PROG}: error: {msg} (see `{cmd} --help`)", err=True)
        return 2
    except UsageError as e:
        click.echo(f"{PROG}: error: {e}", err=True)
        return 2
    except SeawallError as e:
        click.echo(f"{PROG}: error: {e}", err=True)
        return 1
    except OSError as e:
        click.echo(f"{PROG}: error: {e}", err=True)
        return 1


if __name__ == "__main__":
    sys.exit(main())
