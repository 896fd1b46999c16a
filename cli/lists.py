"""The blocklist and the allowlist: add, del, list, which, flush."""

from __future__ import annotations

import click

from seawall.cli.common import (as_stored, json_option, list_del, list_show, list_which, of_source, pass_app,
                                source_option)
from seawall.cli.params import CIDR, DURATION, REASON
from seawall.control.duration import format_duration

FORCE = click.option("--force", is_flag=True, help="allow prefixes shorter than /8 (IPv4) or /16 (IPv6)")
CIDRS = click.argument("cidrs", metavar="CIDR...", nargs=-1, required=True, type=CIDR)
ADDRESS = click.argument("prefix", metavar="ADDRESS", type=CIDR)


def reason_option(shown_by: str):
    return click.option("--reason", type=REASON, default=None,
                        help=f"why (shown by {shown_by}) [default: a new entry none, a re-added one keeps its own]")


@click.group()
def block():
    """Blocked sources: dropped at the NIC until they expire or are removed.

    \b
    Examples:
      seawall block add 198.18.0.66 --ttl 10m --reason "SYN flood"
      seawall block list
      seawall block which 198.18.0.66
    """


@block.command("add")
@CIDRS
@click.option("--ttl", type=DURATION, metavar="DURATION",
              help="expire after this long: 90s, 10m, 4h, 1d, 1h30m, or plain seconds [default: until removed]")
@reason_option("block list")
@FORCE
@pass_app
def block_add(app, cidrs, ttl, reason, force):
    """Block one or more sources (addresses or CIDRs, IPv4 or IPv6).

    Adding an entry that exists replaces its TTL, and its reason when
    --reason is given. An IPv4-mapped address (::ffff:198.18.0.9) is
    blocked as the IPv4 address it stands for.

    \b
    Examples:
      seawall block add 198.18.0.66
      seawall block add 198.18.7.0/24 2001:2::/64 --ttl 4h --reason "botnet"
    """
    cidrs = as_stored(cidrs, force)
    store = app.lists()
    for p in cidrs:
        cover = store.allowed(p)
        if cover is not None:
            click.echo(f"warning: {p} overlaps allowlist entry {cover}; the allowlist wins", err=True)
    until = f"for {format_duration(ttl)}" if ttl else "until removed"
    for entry, replaced in store.block_add(cidrs, ttl, reason):  # all or nothing
        click.echo(f"{'updated' if replaced else 'blocked'} {entry.prefix} {until}")


@block.command("del")
@CIDRS
@pass_app
def block_del(app, cidrs):
    """Remove blocks (exact prefixes as listed).

    \b
    Example:
      seawall block del 198.18.0.66
    """
    cidrs = as_stored(cidrs)
    store = app.lists()
    list_del(cidrs, store.block_list(prune=False), "blocklist", store.block_del, "unblocked {}")


@block.command("list")
@source_option()
@json_option()
@pass_app
def block_list(app, source, as_json):
    """List live blocks with their expiry, reason and source (auto: the
    daemon's; manual: an operator's; bgp: the fleet's).

    \b
    Examples:
      seawall block list --json
      seawall block list --source auto
    """
    list_show(of_source(app.lists().block_list, source), "blocklist", as_json,
              ["CIDR", "SOURCE", "EXPIRES IN", "REASON"],
              lambda e, now: [str(e.prefix), e.source,
                              "never" if e.expires_at is None else format_duration(e.expires_at - now),
                              e.reason or "-"],
              lambda e, now: e.to_json(now))


@block.command("which")
@ADDRESS
@json_option("print a JSON object: address, entry (or null), history, allowed_by")
@pass_app
def block_which(app, prefix, as_json):
    """Which block drops ADDRESS (the longest that covers it), and its
    history from the journal: who added or removed it, when and why.

    \b
    Examples:
      seawall block which 198.18.0.77
      seawall block which 2001:2::5 --json
    """
    [prefix] = as_stored([prefix])
    list_which(app.lists(), "block", prefix, as_json)


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
      seawall allow which 198.18.0.5
    """


@allow.command("add")
@CIDRS
@reason_option("allow list")
@FORCE
@pass_app
def allow_add(app, cidrs, reason, force):
    """Allow one or more sources. Prefixes shorter than /8 (IPv4) or /16
    (IPv6) need --force: the allowlist wins over every block.

    \b
    Example:
      seawall allow add 198.18.0.0/28 --reason "monitoring"
    """
    cidrs = as_stored(cidrs, force)
    for entry, replaced in app.lists().allow_add(cidrs, reason):  # all or nothing
        click.echo(f"{'updated' if replaced else 'allowed'} {entry.prefix}")


@allow.command("del")
@CIDRS
@pass_app
def allow_del(app, cidrs):
    """Remove allowlist entries.

    \b
    Example:
      seawall allow del 198.18.0.0/28
    """
    cidrs = as_stored(cidrs)
    store = app.lists()
    list_del(cidrs, store.allow_list(), "allowlist", store.allow_del, "removed {} from the allowlist")


@allow.command("list")
@source_option()
@json_option()
@pass_app
def allow_list(app, source, as_json):
    """List allowlist entries.

    \b
    Example:
      seawall allow list --json
    """
    list_show(of_source(app.lists().allow_list, source), "allowlist", as_json, ["CIDR", "SOURCE", "REASON"],
              lambda e, now: [str(e.prefix), e.source, e.reason or "-"], lambda e, now: e.to_json(now))


@allow.command("which")
@ADDRESS
@json_option("print a JSON object: address, entry (or null), history")
@pass_app
def allow_which(app, prefix, as_json):
    """Which allowlist entry passes ADDRESS (the longest that covers it),
    and its history from the journal.

    \b
    Example:
      seawall allow which 198.18.0.5
    """
    [prefix] = as_stored([prefix])
    list_which(app.lists(), "allow", prefix, as_json)


@allow.command("flush")
@pass_app
def allow_flush(app):
    """Remove every allowlist entry.

    \b
    Example:
      seawall allow flush
    """
    n = app.lists().allow_flush()
    click.echo(f"flushed {n} allowlist entries")


COMMANDS = (block, allow)
