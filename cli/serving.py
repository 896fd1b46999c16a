"""seawall serving: what this host serves, read from its own sockets."""

from __future__ import annotations

import click

from seawall.cli.common import emit_json, json_option, table


def _host(address: str, port) -> str:
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def rows(serving) -> list:
    """One table row per listening, bound or connected socket."""
    out = []
    for e in serving.tcp_listening:
        note = "listening"
        if e.version == 6 and e.wildcard:
            note += ", IPv6 only" if e.v6only else ", IPv4 and IPv6"
        out.append(["tcp", _host(e.address, e.port), "-", note])
    for e in serving.udp_bound:
        note = "bound"
        if e.version == 6 and e.wildcard:
            note += ", IPv6 only" if e.v6only else ", IPv4 and IPv6"
        if serving.ephemeral[0] <= e.port <= serving.ephemeral[1]:
            note += ", asked (ephemeral port)"
        out.append(["udp", _host(e.address, e.port), "-", note])
    for a in serving.udp_connected:
        out.append(["udp", f"*:{a.port}", _host(a.remote, a.remote_port), "connected, asked"])
    return out


@click.command()
@json_option("print one JSON object")
def serving(as_json):
    """Show what this host serves, from its sockets (sock_diag), in the
    current network namespace: TCP listeners and bound UDP sockets with
    their addresses, the UDP sockets that asked (connected, or bound to an
    ephemeral port: answers to them are wanted), and how many customers
    hold a TCP connection whose handshake completed. The daemon reads the
    same to tell traffic that nobody serves from its customers'. No root
    needed.

    \b
    Examples:
      seawall serving
      seawall serving --json
      nsenter --net=/run/netns/web seawall serving
    """
    from seawall.control.datapath.sockets import read_serving

    s = read_serving()
    if as_json:
        emit_json(s.to_json())
        return
    found = rows(s)
    if found:
        table(found, ["PROTO", "LOCAL", "REMOTE", "NOTE"])
    else:
        click.echo("no TCP listener and no bound UDP socket")
    click.echo(f"customers: {len(s.peers)} addresses, {s.established} established connections "
               f"({s.connections} past the handshake)")


COMMANDS = (serving,)
