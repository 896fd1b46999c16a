"""Signature rules: add, del, list, flush."""

from __future__ import annotations

import click

from seawall.cli.common import json_option, list_show, of_source, pass_app, source_option
from seawall.cli.params import DURATION, REASON
from seawall.control.duration import format_duration
from seawall.control.errors import SeawallError, UsageError
from seawall.control.lists.journal import iso
from seawall.control.signature import ICMP_PROTOS, Signature, parse_len_range, parse_proto, parse_tcp_flags


@click.group()
def sig():
    """Signature rules: drop or rate-limit a flood by its shape when its
    sources are spoofed (protocol, ports, length, TCP flags, or the
    fragment flag for the non-first fragments of a fragmented flood).

    \b
    Examples:
      seawall sig add --proto udp --sport 161 --ttl 1h --reason "SNMP reflection"
      seawall sig add --proto udp --fragment --len 1200-1499 --ttl 10m
      seawall sig list
    """


@sig.command("add")
@click.option("--proto", required=True, metavar="PROTO", help="tcp, udp, icmp, icmpv6 or a number")
@click.option("--dport", type=click.IntRange(0, 65535), help="destination port (tcp/udp)")
@click.option("--sport", type=click.IntRange(0, 65535), help="source port (tcp/udp), e.g. 161 for SNMP reflection")
@click.option("--icmp-type", type=click.IntRange(0, 255), metavar="N",
              help="ICMP type (icmp/icmpv6), e.g. 11 for time exceeded")
@click.option("--icmp-code", type=click.IntRange(0, 255), metavar="N", help="ICMP code (icmp/icmpv6)")
@click.option("--len", "length", metavar="MIN-MAX", help="frame length range in bytes, inclusive")
@click.option("--flags", metavar="FLAGS", help="exact TCP flags, e.g. S for SYN-only")
@click.option("--fragment", is_flag=True,
              help="match only non-first IP fragments (no ports or flags: they carry no L4 header; "
                   "the first fragment carries the ports and meets a port rule)")
@click.option("--rate", type=click.IntRange(1, 2**32 - 1), metavar="PPS",
              help="pass up to PPS matching packets per second [default: drop all]")
@click.option("--ttl", type=DURATION, metavar="DURATION", help="expire after this long [default: until removed]")
@click.option("--reason", type=REASON, default="", help="why (shown by sig list)")
@click.option("--force", is_flag=True, help="add a rule that drops the ICMP path MTU discovery needs")
@pass_app
def sig_add(app, proto, dport, sport, icmp_type, icmp_code, length, flags, fragment, rate, ttl, reason, force):
    """Add a signature rule (or replace the rule matching the same packets).

    \b
    Examples:
      seawall sig add --proto udp --sport 161 --ttl 1h --reason "SNMP reflection"
      seawall sig add --proto tcp --dport 443 --flags S --rate 2000
      # a fragmented DNS reflection: its later fragments, then its first ones
      seawall sig add --proto udp --fragment --len 1200-1499 --ttl 10m --reason "DNS reflection"
      seawall sig add --proto udp --sport 53 --len 1200-1499 --ttl 10m --reason "DNS reflection"
      # the ICMP errors a reflection's spoofed queries draw back (not code 4: path MTU discovery)
      seawall sig add --proto icmp --icmp-type 3 --icmp-code 3 --ttl 10m
    """
    lo, hi = parse_len_range(length) if length else (None, None)
    number = parse_proto(proto)
    if (icmp_type is not None or icmp_code is not None) and number not in ICMP_PROTOS:
        raise UsageError("--icmp-type and --icmp-code need --proto icmp or icmpv6")
    if (dport is not None or sport is not None) and number in ICMP_PROTOS:
        raise UsageError("ICMP has no ports: give --icmp-type and --icmp-code")
    if icmp_type is not None:
        sport = icmp_type
    if icmp_code is not None:
        dport = icmp_code
    rule = Signature(number, dport=dport, sport=sport, len_min=lo, len_max=hi,
                     tcp_flags=parse_tcp_flags(flags) if flags else None, rate_pps=rate or 0,
                     fragment=fragment)
    if rule.dport is None and rule.sport is None and rule.len_min is None and rule.tcp_flags is None \
            and not rule.fragment:
        raise UsageError("a rule on a whole protocol would cut everyone off; add a port, length, flags "
                         "or --fragment")
    if rule.cuts_path_mtu() and not force:
        raise UsageError(f"{rule.describe()} would drop path MTU discovery's ICMP (fragmentation needed, "
                         f"packet too big): customers behind a smaller MTU stall; add --force if you mean it")
    slot, replaced = app.lists().sig_add(rule, ttl, reason)
    click.echo(f"{'updated' if replaced else 'added'} rule {slot}: {rule.describe()}"
               f"{' for ' + format_duration(ttl) if ttl else ''}")


@sig.command("list")
@source_option()
@json_option()
@pass_app
def sig_list(app, source, as_json):
    """List live signature rules.

    \b
    Example:
      seawall sig list --json
      seawall sig list --source bgp
    """
    list_show(of_source(app.lists().sig_list, source), "the signature table", as_json,
              ["SLOT", "RULE", "ACTION", "SOURCE", "EXPIRES IN", "REASON"],
              lambda r, now: [r["slot"], r["rule"], r["action"] + (f" {r['rate_pps']}pps" if r["rate_pps"] else ""),
                              r["source"], "never" if r["expires_at"] is None else format_duration(r["expires_at"] - now),
                              r["reason"] or "-"],
              lambda r, now: {"slot": r["slot"], "rule": r["rule"], "action": r["action"], "rate_pps": r["rate_pps"],
                              "expires_at": iso(r["expires_at"]), "reason": r["reason"], "source": r["source"],
                              "match": r["signature"].to_json()})


@sig.command("del")
@click.argument("rule", metavar="RULE")
@pass_app
def sig_del(app, rule):
    """Delete a rule by its text as `sig list` shows it (its words in any
    order), or by slot number.

    \b
    Examples:
      seawall sig del "udp sport 161"
      seawall sig del "udp fragment len 1200-1499"
      seawall sig del 0
    """
    store = app.lists()
    key = rule
    try:  # the same rule written otherwise ("udp len 1200-1499 fragment") is the same rule
        key = Signature.parse(rule).key
    except UsageError:
        pass
    if rule.isdigit():
        match = [r for r in store.sig_list() if r["slot"] == int(rule)]
        if not match:
            raise SeawallError(f"no live rule in slot {rule}")
        key = match[0]["rule"]
    if not store.sig_del(key):
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
    click.echo(f"flushed {app.lists().sig_flush()} signature rules")


COMMANDS = (sig,)
