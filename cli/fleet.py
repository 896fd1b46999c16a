"""The fleet: seawall's decisions as BGP FlowSpec routes, through gobgpd."""

from __future__ import annotations

import time

import click

from seawall.cli.common import emit_json, pass_app, table
from seawall.control.addr import Prefix


def _config(config_path, api):
    from seawall.control import config as configmod

    cfg = configmod.load(config_path).fleet
    return cfg, (api or cfg.api)


_CONFIG = click.option("--config", "config_path", type=click.Path(dir_okay=False), metavar="FILE",
                       help="TOML config with a [fleet] section [default: built-in defaults]")
_API = click.option("--api", metavar="HOST:PORT", help="gobgpd's gRPC address [default: [fleet] api]")


@click.group()
def fleet():
    """BGP FlowSpec: announce this host's blocks and signatures to the
    upstream routers through a local gobgpd, and see what peers send.

    \b
    Examples:
      seawall fleet speaker-config --config /etc/seawall/seawall.toml > /etc/gobgpd.conf
      seawall fleet sync --config /etc/seawall/seawall.toml
      seawall fleet status --json
    """


@fleet.command("sync")
@_CONFIG
@_API
@click.option("--dry-run", is_flag=True, help="say what would change, change nothing")
@pass_app
def fleet_sync(app, config_path, api, dry_run):
    """Announce what the blocklist and the signature rules hold (and, with
    [fleet] rtbh, each blocked prefix as a blackhole), and withdraw every
    route of ours they no longer hold. Run it again: it changes only what
    differs.

    \b
    Examples:
      seawall fleet sync --config /etc/seawall/seawall.toml
      seawall fleet sync --dry-run
    """
    from seawall.control.fleet.exporter import Exporter
    from seawall.control.fleet.speaker import GoBGP

    cfg, api = _config(config_path, api)
    exporter = Exporter(GoBGP(api), [Prefix.parse(p) for p in cfg.protect], cfg.export_blocks,
                        cfg.export_signatures, cfg.rtbh, cfg.rtbh_community)
    store = app.lists()
    try:
        blocks = [e.prefix for e in store.block_list()]
        sigs = [s["signature"] for s in store.sig_list()]
    finally:
        store.close()
    if dry_run:
        announce, withdraw, _ = exporter.plan(blocks, sigs)
        for r in withdraw:
            click.echo(f"would withdraw {r.describe()}")
        for r in announce:
            click.echo(f"would announce {r.describe()}")
        return
    announced, withdrawn = exporter.update(blocks, sigs)
    for r in withdrawn:
        click.echo(f"withdrew {r.describe()}")
    for r in announced:
        click.echo(f"announced {r.describe()}")
    click.echo(f"{len(exporter.held)} routes announced ({len(announced)} new, {len(withdrawn)} withdrawn)")


@fleet.command("status")
@_CONFIG
@_API
@click.option("--json", "as_json", is_flag=True, help="print one JSON object")
def fleet_status(config_path, api, as_json):
    """The speaker's sessions, the routes it announces for this host
    (routes out), and the routes its peers sent (routes in), each judged as
    an import would (for this host's addresses, [fleet] protect and accept):
    accepted as a block or a rule, or refused and why. The daemon's import
    also applies the cap and never replaces a local entry: its log says so.

    \b
    Examples:
      seawall fleet status
      seawall fleet status --api 127.0.0.1:50051 --json
    """
    from seawall.control.fleet.speaker import GoBGP
    from seawall.control.fleet.translate import Accepted, judge

    cfg, api = _config(config_path, api)
    speaker = GoBGP(api)
    info = speaker.info()
    sessions = speaker.sessions(time.time())
    routes = speaker.global_routes()
    ours = [Prefix.parse(p) for p in cfg.protect + cfg.accept] + _host_addresses()
    out = [r for r in routes if not r.peer]
    learnt = []
    for r in (r for r in routes if r.peer):
        v = judge(r, ours)
        learnt.append({**r.to_json(), "verdict": "accepted" if isinstance(v, Accepted) else "refused",
                       "decision": v.decision if isinstance(v, Accepted) else None,
                       "reason": None if isinstance(v, Accepted) else v.reason})
    if as_json:
        emit_json({"speaker": {"api": api, "asn": info.get("asn"), "router_id": info.get("router_id")},
                   "sessions": [s.to_json() for s in sessions],
                   "routes_out": [r.to_json() for r in out], "routes_in": learnt})
        return
    click.echo(f"speaker: gobgpd at {api}, AS {info.get('asn')}, router id {info.get('router_id')}")
    click.echo(f"sessions: {len(sessions)}")
    table([[s.peer, s.peer_as, s.state, "-" if s.uptime is None else f"{s.uptime}s", s.received, s.accepted]
           for s in sessions], ["PEER", "AS", "STATE", "UP", "RECEIVED", "ACCEPTED"])
    click.echo(f"routes out: {len(out)}")
    for r in out:
        click.echo(f"  {r.describe()}")
    click.echo(f"routes in: {len(learnt)}")
    for d in learnt:
        click.echo(f"  from {d['peer']}: {d['route']} -> "
                   + (d["decision"] if d["verdict"] == "accepted" else f"refused: {d['reason']}"))


def _host_addresses() -> list:
    """This host's addresses, which an imported route may be for too (as
    the daemon judges them); none when netlink cannot be read."""
    from seawall.control.service.fleet import host_addresses

    try:
        return host_addresses()
    except Exception as e:  # pyroute2's NetlinkError is not an OSError
        click.echo(f"warning: this host's addresses are unreadable ({e}): judging by [fleet] alone", err=True)
        return []


@fleet.command("speaker-config")
@_CONFIG
def fleet_speaker_config(config_path):
    """Print gobgpd's config for [fleet]'s asn, router_id and peers. Each
    peer may send at most twice [fleet] max_import FlowSpec routes per
    family (gobgpd's prefix limit): past it gobgpd cuts the session.

    \b
    Example:
      seawall fleet speaker-config --config /etc/seawall/seawall.toml > /etc/gobgpd.conf
    """
    from seawall.control.fleet.speaker import import_limit, speaker_config

    cfg, api = _config(config_path, None)
    click.echo(speaker_config(cfg.asn, cfg.router_id, cfg.peers, api, unicast=cfg.rtbh,
                              max_prefixes=import_limit(cfg.max_import)), nl=False)
