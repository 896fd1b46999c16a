"""The command line's parameter types: addresses, durations, interfaces.
Each turns a bad value into click's one-line usage error (exit status 2)."""

from __future__ import annotations

import click

from seawall.control.addr import Prefix
from seawall.control.duration import parse_duration
from seawall.control.errors import UsageError


class ParsedType(click.ParamType):
    """A value parsed by one of the control plane's parsers, whose
    UsageError becomes click's usage error."""

    def __init__(self, name: str, parse, kind: type):
        self.name, self.parse, self.kind = name, parse, kind

    def convert(self, value, param, ctx):
        if isinstance(value, self.kind):  # a default, or a value converted already
            return value
        try:
            return self.parse(value)
        except UsageError as e:
            self.fail(str(e), param, ctx)


class IfaceType(click.ParamType):
    """An interface name; existence is checked by the command (it may live
    in another network namespace when the command runs under nsenter)."""

    name = "IFACE"

    def convert(self, value, param, ctx):
        if not value or len(value) > 15 or "/" in value or value in (".", "..") or any(c.isspace() for c in value):
            self.fail(f"{value!r} is not a valid interface name", param, ctx)
        return value


class ReasonType(click.ParamType):
    """Why an entry or rule is there: shown by the listings and journalled."""

    name = "TEXT"

    def convert(self, value, param, ctx):
        if len(value) > 256 or any(ord(c) < 32 for c in value):
            self.fail("must be at most 256 printable characters", param, ctx)
        return value


CIDR = ParsedType("CIDR", Prefix.parse, Prefix)
DURATION = ParsedType("DURATION", parse_duration, int)
IFACE = IfaceType()
REASON = ReasonType()
