"""What every command shares: the context object (the state's paths and
how to open the lists and interfaces), output, and the bodies that the
list groups (block, allow, sig) have in common."""

from __future__ import annotations

import json
import os
import time

import click

from seawall.control.duration import format_duration
from seawall.control.errors import SeawallError, UsageError
from seawall.control.state import Paths

PROG = "seawall"


class App:
    """The context object of every command (click's make_pass_decorator)."""

    def __init__(self, paths: Paths):
        self.paths = paths

    def need_root(self) -> None:
        if os.geteuid() != 0:
            cmd = click.get_current_context().command_path
            raise SeawallError(f"`{cmd}` needs root (CAP_BPF and CAP_NET_ADMIN); run it with sudo")

    def lists(self):
        """The list store, created (and restored from the journal) on first use."""
        self.need_root()
        from seawall.control.lists.store import ListStore

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
        from seawall.control.datapath.interfaces import Interfaces

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


def json_option(what: str = "print a JSON array"):
    return click.option("--json", "as_json", is_flag=True, help=what)


# --- the list groups' shared bodies ------------------------------------------------

def once(items) -> list:
    """Each item once, in the order given."""
    return list(dict.fromkeys(items))


def big_prefix_guard(prefixes, force: bool) -> None:
    for p in prefixes:
        if not force and p.prefixlen < (8 if p.version == 4 else 16):
            raise UsageError(f"{p} covers a huge part of the Internet; add --force if you mean it")


def as_stored(prefixes, force: bool = True) -> list:
    """prefixes as the lists keep them, each once: an IPv4-mapped IPv6
    prefix as its IPv4 one (Prefix.unmapped), said in one line on stderr
    each. Then big_prefix_guard, on what would be stored."""
    out = once(p.unmapped() for p in prefixes)
    big_prefix_guard(out, force)
    for p in once(prefixes):
        v4 = p.unmapped()
        if v4 != p:
            click.echo(f"note: ::ffff:{v4.network.network_address}/{p.prefixlen} is an IPv4-mapped address, "
                       f"taken as IPv4 {v4} (IPv4 packets never match an IPv6 entry)", err=True)
    return out


def list_del(cidrs, entries, name: str, delete_all, done: str) -> None:
    """Remove cidrs (each once, in the order given) from a list whose
    current entries are `entries`; all or nothing, and none if one is not
    on it."""
    listed = {e.prefix for e in entries}
    # an IPv4-mapped entry stored as IPv6 by an older seawall: named by its IPv4 form
    legacy = {e.prefix.unmapped(): e.prefix for e in entries if e.prefix.unmapped() != e.prefix}
    cidrs = once(p if p in listed else legacy.get(p, p) for p in cidrs)
    missing = [str(p) for p in cidrs if p not in listed]
    if missing:
        raise SeawallError(f"not on the {name}: {', '.join(missing)}")
    delete_all(cidrs)  # all or nothing
    for p in cidrs:
        click.echo(done.format(p))


SOURCES = ("auto", "manual", "bgp")  # who made an entry: the daemon, an operator, the fleet's BGP feed


def source_option():
    return click.option("--source", type=click.Choice(SOURCES), help="only the entries of this origin")


def of_source(rows, source):
    """rows (a function giving entries), keeping only those of `source` when given."""
    return rows if source is None else lambda: [e for e in rows() if _of(e, source)]


def _of(entry, source: str) -> bool:
    """An entry (or a sig_list row) is of `source`: "bgp" takes every "bgp:<peer>"."""
    have = entry["source"] if isinstance(entry, dict) else entry.source
    return have == source or have.startswith(source + ":")


def list_which(store, lst: str, prefix, as_json: bool) -> None:
    """Say which entry of list lst decides for prefix (the longest that
    covers it) and the journal's history of that entry (of prefix itself
    when none covers it): who added and removed it, when, and why."""
    now = time.time()
    entry = store.covering(lst, prefix)
    cidr = str(entry.prefix if entry else prefix)
    history = [{k: v for k, v in r.items() if k != "v"} for r in store.journal.history(lst, cidr)]
    allowed = store.covering("allow", prefix) if lst == "block" else None
    if as_json:
        out = {"address": str(prefix), "list": lst, "entry": entry and entry.to_json(now), "history": history}
        if lst == "block":
            out["allowed_by"] = allowed and str(allowed.prefix)
        emit_json(out)
        return
    name = {"block": "blocklist", "allow": "allowlist"}[lst]
    if entry is None:
        click.echo(f"{prefix} is not on the {name}")
    else:
        until = "" if lst != "block" else (", until removed" if entry.expires_at is None
                                           else f", expires in {format_duration(entry.expires_at - now)}")
        click.echo(f"{prefix} is on the {name} as {entry.prefix} ({entry.source}{until}): {entry.reason or '-'}")
    if allowed is not None:
        click.echo(f"but the allowlist entry {allowed.prefix} passes it: the allowlist wins")
    if history:
        click.echo(f"history of {cidr}:")
        table([[r.get("ts"), r.get("op"), r.get("by", "-"), r.get("source", "-"),
                "until " + str(r.get("expires_at") or "removed") if r.get("op") == "block" else "",
                r.get("reason") or "-" if r.get("op") in ("block", "allow") else ""] for r in history],
              ["WHEN", "OP", "BY", "SOURCE", "EXPIRY", "REASON"])


def list_show(rows, name: str, as_json: bool, headers: list, row, to_json) -> None:
    """Print a listing as a JSON array of to_json(entry, now), or a table of
    row(entry, now); rows() reads the entries after `now`, so that live
    entries never show as expired."""
    now = time.time()
    entries = rows()
    if as_json:
        emit_json([to_json(e, now) for e in entries])
        return
    if not entries:
        click.echo(f"{name} is empty")
        return
    table([row(e, now) for e in entries], headers)
