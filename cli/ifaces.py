"""Interfaces: attach, detach, monitor, status, stats."""

from __future__ import annotations

import click

from seawall.cli.common import emit_json, json_option, pass_app, table
from seawall.cli.params import IFACE
from seawall.control.errors import SeawallError
from seawall.control.lists.store import ListStore


@click.command()
@click.argument("iface", type=IFACE)
@click.option("--mode", type=click.Choice(["auto", "native", "generic"]), default="auto", show_default=True,
              help="native (driver) XDP, generic (skb) XDP, or native falling back to generic")
@click.option("--monitor/--enforce", default=None,
              help="monitor: count what would be dropped and pass everything "
                   "[default: enforce on a new attach; an attached interface keeps its mode]")
@click.option("--replace", is_flag=True,
              help="on an attached IFACE: put this build in place of the running program in one step "
                   "(after an upgrade), keeping its lists, counters and mode")
@pass_app
def attach(app, iface, mode, monitor, replace):
    """Attach the XDP filter to IFACE (or switch an attached one between
    monitor and enforce without reloading: only --monitor or --enforce
    changes the mode of an attached interface).

    \b
    Examples:
      seawall attach eth0
      seawall attach eth0 --mode generic --monitor
      seawall attach eth0 --enforce      # an attached eth0 leaves monitor mode
      seawall attach eth0 --replace      # after an upgrade: the new build, no gap
    """
    ifs = app.ifaces()
    st, action = ifs.attach(iface, mode, monitor, replace=replace)
    if ifs.restored:
        click.echo(f"restored {ifs.restored} entries from the journal into fresh maps", err=True)
    _restore_synproxy(app)
    what = "monitor (counts, never drops)" if st.monitor else "enforce"
    if action == "attached":
        click.echo(f"attached to {iface} in {st.mode} mode, {what}")
    elif action == "replaced":
        click.echo(f"{iface} now runs this build (program {st.prog_id}), {st.mode} mode, {what}; "
                   f"lists and counters kept")
    elif action == "current":
        click.echo(f"{iface} runs this build already (program {st.prog_id}), {st.mode} mode, {what}")
    elif action == "unchanged":
        click.echo(f"already attached to {iface} ({st.mode}), {what}: unchanged "
                   f"(--monitor or --enforce switches it)")
    else:
        click.echo(f"already attached to {iface} ({st.mode}); now {what}")


def _synproxy_ports(app) -> list:
    """The ports under SYN protection, as the state file has them (no kernel I/O)."""
    from seawall.control.synproxy.protect import SynProxy

    sp = SynProxy(app.paths)
    try:
        now = sp.clock.wall()
        return [e.to_json(now) for _, e in sorted(sp.ports().items())]
    except (SeawallError, OSError):
        return []
    finally:
        sp.close()


def _restore_synproxy(app) -> None:
    """The ports under SYN protection in the state file, back into the
    kernel after a reboot (a fresh syn_ports): a plain read of the state
    file when none is protected."""
    from seawall.control.synproxy.protect import SynProxy

    sp = SynProxy(app.paths)
    try:
        if sp.ports():
            n = sp.restore()
            if n:
                click.echo(f"restored SYN protection of {n} port{'s' if n > 1 else ''}", err=True)
    except SeawallError as e:
        click.echo(f"SYN protection not restored: {e}", err=True)
    finally:
        sp.close()


@click.command()
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


@click.command()
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


@click.command()
@json_option("print one JSON object")
@pass_app
def status(app, as_json):
    """Show attached interfaces and list sizes.

    \b
    Example:
      seawall status --json
    """
    ifs = app.ifaces().all()
    # a read-only command: it neither creates the lists nor compiles anything
    try:
        store = ListStore(app.paths, create=False)
    except SeawallError:
        store = None
    blocks = store.block_list() if store else []
    allows = store.allow_list() if store else []
    auto = sum(1 for e in blocks if e.source == "auto")
    bgp = sum(1 for e in blocks if e.source.startswith("bgp"))
    obj = {
        "bpffs": app.paths.pin_root,
        "state_dir": app.paths.state_dir,
        "lists_pinned": store is not None,
        "interfaces": [s.to_json() for s in ifs],
        "blocklist": {"entries": len(blocks), "auto": auto, "manual": len(blocks) - auto - bgp, "bgp": bgp},
        "allowlist": {"entries": len(allows)},
        "synproxy": _synproxy_ports(app),
    }
    # like systemctl status: not 0 when something that should filter does not
    stale = [s.ifname for s in ifs if s.state != "attached"]
    if as_json:
        emit_json(obj)
    else:
        _status_text(app, ifs, store, obj)
    if stale:
        raise SeawallError(f"not filtering: {', '.join(stale)} (its program is gone: seawall attach "
                           f"{stale[0]}, or seawall detach {stale[0]} to clear it)")


def _status_text(app, ifs: list, store, obj: dict) -> None:
    if not ifs:
        click.echo("no interface attached (seawall attach IFACE)")
    if store is None:
        click.echo(f"no lists pinned under {app.paths.pin_root} yet: the first attach or list edit creates "
                   "them (and restores the journal)")
    table([[s.ifname, s.state, s.mode or "-",
            ("monitor" if s.monitor else "enforce") if s.state == "attached" else "not filtering", s.prog_id or "-"]
           for s in ifs], ["INTERFACE", "STATE", "MODE", "ACTION", "PROG"])
    click.echo(f"blocklist: {obj['blocklist']['entries']} entries "
               f"({obj['blocklist']['auto']} auto, {obj['blocklist']['manual']} manual, {obj['blocklist']['bgp']} bgp); "
               f"allowlist: {obj['allowlist']['entries']} entries")
    if obj["synproxy"]:
        click.echo("SYN protection: " + ", ".join(f"port {p['port']} ({p['source']})" for p in obj["synproxy"])
                   + " (seawall synproxy list)")


@click.command()
@click.option("--interface", "-i", "only", type=IFACE, multiple=True, help="only this interface (repeatable)")
@json_option("print one JSON object")
@pass_app
def stats(app, only, as_json):
    """Packets and bytes by verdict and reason, per interface.

    \b
    Example:
      seawall stats -i eth0 --json
    """
    ifs = app.ifaces()
    names = list(only) or ifs.names()
    obj = {"interfaces": {}}
    for n in names:
        with ifs.counters(n) as c:
            obj["interfaces"][n] = c.to_json()
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


COMMANDS = (attach, detach, monitor, status, stats)
