"""The blocklist and the allowlist: add, del, list, flush."""

from __future__ import annotations

import click

from seawall.cli.common import big_prefix_guard, json_option, list_del, list_show, once, pass_app
from seawall.cli.params import CIDR, DURATION, REASON
from seawall.control.duration import format_duration


@click.group()
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
@click.option("--reason", type=REASON, default="", help="why (shown by block list)")
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
    big_prefix_guard(cidrs, force)
    store = app.lists()
    for p in cidrs:
        cover = store.allowed(p)
        if cover is not None:
            click.echo(f"warning: {p} overlaps allowlist entry {cover}; the allowlist wins", err=True)
    until = f"for {format_duration(ttl)}" if ttl else "until removed"
    for entry, replaced in store.block_add(once(cidrs), ttl, reason):  # all or nothing
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
    list_del(cidrs, store.block_list(prune=False), "blocklist", store.block_del, "unblocked {}")


@block.command("list")
@json_option()
@pass_app
def block_list(app, as_json):
    """List live blocks with their expiry, reason and source.

    \b
    Example:
      seawall block list --json
    """
    list_show(app.lists().block_list, "blocklist", as_json, ["CIDR", "SOURCE", "EXPIRES IN", "REASON"],
              lambda e, now: [str(e.prefix), e.source,
                              "never" if e.expires_at is None else format_duration(e.expires_at - now),
                              e.reason or "-"],
              lambda e, now: e.to_json(now))


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


@click.group()
def allow():
    """Trusted sources: always passed, never blocked (not even by the daemon).

    \b
    Examples:
      seawall allow add 198.18.0.0/28 --reason "monitoring"
      seawall allow list
    """


@allow.command("add")
@click.argument("cidrs", metavar="CIDR...", nargs=-1, required=True, type=CIDR)
@click.option("--reason", type=REASON, default="", help="why (shown by allow list)")
@pass_app
def allow_add(app, cidrs, reason):
    """Allow one or more sources.

    \b
    Example:
      seawall allow add 198.18.0.0/28 --reason "monitoring"
    """
    for entry, replaced in app.lists().allow_add(once(cidrs), reason):  # all or nothing
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
    list_del(cidrs, store.allow_list(), "allowlist", store.allow_del, "removed {} from the allowlist")


@allow.command("list")
@json_option()
@pass_app
def allow_list(app, as_json):
    """List allowlist entries.

    \b
    Example:
      seawall allow list --json
    """
    list_show(app.lists().allow_list, "allowlist", as_json, ["CIDR", "REASON"],
              lambda e, now: [str(e.prefix), e.reason or "-"], lambda e, now: e.to_json(now))


COMMANDS = (block, allow)
