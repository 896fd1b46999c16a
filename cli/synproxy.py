"""SYN protection of a served port: add, del, list."""

from __future__ import annotations

import click

from seawall.cli.common import json_option, list_show, pass_app
from seawall.cli.params import DURATION, REASON, ParsedType
from seawall.control.duration import format_duration
from seawall.control.errors import SeawallError
from seawall.control.synproxy.rules import parse_port

PORT = ParsedType("PORT", parse_port, int)


def _open(app, restore: bool = True):
    """The port protection of this network namespace; with restore, the
    kernel brought back to the state file first (after a reboot or a new
    attach), said in one line on stderr."""
    app.need_root()
    from seawall.control.synproxy.protect import SynProxy

    sp = SynProxy(app.paths)
    if restore:
        _restore(sp)
    return sp


def _restore(sp) -> None:
    n = sp.restore()
    if n:
        click.echo(f"restored SYN protection of {n} port{'s' if n > 1 else ''} from the state file", err=True)


@click.group()
def synproxy():
    """SYN floods on a served port: SYNs answered with cookies at the NIC.

    For a protected TCP port, the XDP program answers each SYN with a
    SYN-ACK whose sequence number is a SYN cookie, and passes on only the
    ACKs that carry a valid one; netfilter's SYNPROXY (an nftables table
    that seawall installs beside it, `inet seawall_synproxy`) then opens
    the connection with the listening socket. Spoofed SYNs never reach
    the stack. Needs Linux >= 6.0, connection tracking and nftables; while
    a port is protected, net.netfilter.nf_conntrack_tcp_loose is 0.

    \b
    Examples:
      seawall synproxy add 443 --ttl 1h --reason "SYN flood"
      seawall synproxy list
      seawall synproxy del 443
    """


@synproxy.command("add")
@click.argument("port", metavar="PORT", type=PORT)
@click.option("--ttl", type=DURATION, metavar="DURATION",
              help="turn it off after this long: 90s, 10m, 4h, 1d, 1h30m, or plain seconds "
                   "[default: until removed]")
@click.option("--reason", type=REASON, default=None,
              help="why (shown by synproxy list) [default: a new port none, a protected one keeps its own]")
@pass_app
def synproxy_add(app, port, ttl, reason):
    """Protect a TCP port against SYN floods (or update the TTL and reason
    of one that is protected). The requirements are checked first: where
    one is missing, one line says which and nothing is changed.

    \b
    Examples:
      seawall synproxy add 443
      seawall synproxy add 8080 --ttl 30m --reason "SYN flood, ticket 4713"
    """
    sp = _open(app)
    e, updated = sp.enable(port, ttl, reason)
    until = f"for {format_duration(ttl)}" if ttl else "until removed"
    click.echo(f"{'updated' if updated else 'protected'} port {e.port} {until}")
    if sp.seeded:
        click.echo(f"{sp.seeded} connection{'s' if sp.seeded > 1 else ''} open on the port added to conntrack, "
                   f"so that they carry on", err=True)
    if sp.seed_error:
        click.echo(f"warning: connections open on the port before may stall while it is protected "
                   f"(cannot add them to conntrack: {sp.seed_error})", err=True)


@synproxy.command("del")
@click.argument("port", metavar="PORT", type=PORT)
@pass_app
def synproxy_del(app, port):
    """Turn SYN protection of a port off (the nftables table goes with the
    last port, and nf_conntrack_tcp_loose gets its old value back).

    \b
    Example:
      seawall synproxy del 443
    """
    _open(app, restore=False).disable(port)
    click.echo(f"unprotected port {port}")


@synproxy.command("list")
@json_option("print a JSON array: port, source, reason, added_at, expires_at, ttl_seconds, nft, xdp")
@pass_app
def synproxy_list(app, as_json):
    """List the protected ports with their expiry, reason and source (auto:
    the daemon's; manual: an operator's), and whether each half is in
    place: NFT (the port in the nftables table) and XDP (its entry in the
    datapath; no until seawall is attached).

    \b
    Example:
      seawall synproxy list --json
    """
    sp = _open(app, restore=False)
    try:
        _restore(sp)
    except SeawallError as e:  # still say what is kept, and which half is missing
        click.echo(f"warning: cannot put the protection back: {e}", err=True)
    list_show(sp.list, "the list of protected ports", as_json,
              ["PORT", "SOURCE", "EXPIRES IN", "NFT", "XDP", "REASON"],
              lambda r, now: [r.entry.port, r.entry.source,
                              "never" if r.entry.expires_at is None else format_duration(r.entry.expires_at - now),
                              "yes" if r.nft else "no", "yes" if r.xdp else "no", r.entry.reason or "-"],
              lambda r, now: r.to_json(now))


COMMANDS = (synproxy,)
