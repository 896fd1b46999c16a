"""The daemon: run, and its config."""

from __future__ import annotations

import json

import click

from seawall.cli.common import pass_app
from seawall.cli.params import IFACE
from seawall.control.errors import UsageError


@click.command()
@click.option("--config", "config_path", type=click.Path(dir_okay=False), metavar="FILE",
              help="TOML config [default: built-in defaults]")
@click.option("--interface", "-i", "interfaces", type=IFACE, multiple=True,
              help="attach to and watch IFACE (repeatable) [default: every attached interface]")
@click.option("--monitor", is_flag=True, default=None, help="decide and log, enforce nothing")
@click.option("--interval", metavar="DURATION", help="cycle length, 100ms to 10s [default: 250ms]")
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
    from seawall.control.service.daemon import Daemon
    from seawall.control.service.logs import setup_logging

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
    Daemon(cfg, app.paths, interfaces, config_path, overrides=over).run(max_cycles=cycles)


@click.group("config")
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


COMMANDS = (run, config_group)
