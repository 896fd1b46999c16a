"""The command line's parameter types: addresses, durations, interfaces.
Each turns a bad value into click's one-line usage error (exit status 2).
Every option that takes a time takes a DurationType: one grammar
(control/duration.py) for all of them."""

from __future__ import annotations

import click

from seawall.control.addr import Prefix
from seawall.control.duration import parse_duration, say_duration
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


class DurationType(ParsedType):
    """A duration as control/duration.py reads it: whole seconds (an int),
    or with subsecond=True a float that may be a fraction (an interval).
    With bounds (least, most; seconds), a value outside them is refused."""

    def __init__(self, subsecond: bool = False, least: float = 0, most: float = float("inf"), zero: bool = False):
        super().__init__("DURATION", lambda text: parse_duration(text, subsecond, zero), (int, float))
        self.least, self.most = least, most

    def convert(self, value, param, ctx):
        seconds = super().convert(value, param, ctx)
        if not self.least <= seconds <= self.most:
            self.fail(f"{value!r} is not between {say_duration(self.least)} and {say_duration(self.most)}", param, ctx)
        return seconds


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
DURATION = DurationType()  # a TTL: whole seconds, up to a year
IFACE = IfaceType()
REASON = ReasonType()
