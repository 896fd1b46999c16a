"""What every command shares: the context object (the state's paths and
how to open the lists and interfaces), output, and the bodies that the
list groups (block, allow, sig) have in common."""

from __future__ import annotations

import json
import os
import time

import click

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


def list_del(cidrs, entries, name: str, delete_all, done: str) -> None:
    """Remove cidrs (each once, in the order given) from a list whose
    current entries are `entries`; all or nothing, and none if one is not
    on it."""
    listed = {e.prefix for e in entries}
    missing = [str(p) for p in cidrs if p not in listed]
    if missing:
        raise SeawallError(f"not on the {name}: {', '.join(missing)}")
    cidrs = once(cidrs)
    delete_all(cidrs)  # all or nothing
    for p in cidrs:
        click.echo(done.format(p))


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
