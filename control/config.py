"""seawall.toml: parsed and validated once into frozen dataclasses. Pure.

Every bad key or value gets one error naming it, e.g.
  config.toml: [detection] threshold: must be a number > 0, got 'high'
"""

from __future__ import annotations

import dataclasses
import ipaddress
import math
import tomllib
from dataclasses import dataclass, field
from typing import Any, Optional

from seawall.control.addr import Prefix
from seawall.control.duration import MAX_SECONDS, parse_duration
from seawall.control.errors import UsageError


class ConfigError(UsageError):
    """A bad config file: one line naming the file, section and key."""


def _ms_duration(text: str) -> float:
    """Durations for intervals may go below a second: 100ms, 250ms, 0.5, 1s500ms."""
    return float(parse_duration(text, subsecond=True))


@dataclass(frozen=True)
class DaemonConfig:
    interval: float = 0.25  # seconds per scoring cycle
    interfaces: tuple = ()  # attached at start when given
    mode: str = "auto"  # XDP attach mode for those interfaces
    monitor: bool = False  # log decisions, enforce nothing
    keep_filter_on_exit: bool = True  # SIGTERM leaves the XDP program and lists in place
    log_level: str = "info"
    housekeeping: float = 60.0  # seconds between prunes of expired blocks and journal compactions
    baseline_save: float = 30.0  # seconds between saves of the learnt baseline to the state directory
    # tracked-source tables of the interfaces the daemon attaches (xdp/tunables.h):
    # past 131,072 in all they are read through the hot table (service/sources.py)
    sources_v4: int = 65536
    sources_v6: int = 16384

    def defines(self) -> dict:
        """The tunables.h values a build for these settings is compiled
        with: none at the defaults (the build `seawall attach` makes)."""
        out = {}
        for name, key in (("sources_v4", "MAX_SOURCES_V4"), ("sources_v6", "MAX_SOURCES_V6")):
            if getattr(self, name) != getattr(DaemonConfig, name):
                out[key] = getattr(self, name)
        return out


@dataclass(frozen=True)
class DetectionConfig:
    threshold: float = 2.5  # score (a rate over its learnt busy rate) that makes a cycle anomalous
    min_pps: float = 1000.0  # floor of every reference: a host never judged against less than this
    quantile: float = 0.99  # the busy rate: this quantile of the calm cycles' rates
    baseline_window: float = 86400.0  # seconds: a calm cycle this old counts e times less
    learn_ratio: float = 1.5  # a calm cycle's rate is learnt at most this many times the reference
    warmup: float = 10.0  # seconds of calm traffic before the mix (entropy) is judged
    mix_window: float = 600.0  # seconds: horizon of the mix's EWMAs (entropy, shares, busy sources)
    entropy_z: float = 8.0  # an entropy this many std devs from its calm mean scores `threshold`
    min_sigma: float = 0.03  # floor of an entropy feature's std dev
    clear_after: float = 5.0  # seconds below threshold/2 that clear the alarm
    surge_learn_after: float = 600.0  # an anomaly with no attacker that lasts this long is learnt


@dataclass(frozen=True)
class AttributionConfig:
    heavy_min_pps: float = 100.0  # a heavy hitter sends at least this many packets/s
    heavy_new_factor: float = 2.0  # a source unknown to the baseline: this many times the p99 source rate
    heavy_factor: float = 5.0  # a regular (busy while calm): this many times its own usual rate
    aggregate_v4: int = 24  # block a /24 when ...
    aggregate_v6: int = 64
    aggregate_min: int = 8  # ... at least this many of its members offend
    max_new_blocks: int = 256  # per cycle
    max_auto_blocks: int = 50000  # in the kernel at once
    signatures: bool = True  # derive signature rules for spoofed floods
    max_signatures: int = 8
    signature_min_share: float = 0.5  # the signature must cover this share of the excess
    signature_max_legit: float = 0.001  # installed as a drop only if it matched at most this share of calm traffic
    returning_min_pps: float = 20.0  # a past offender seen again at this rate is blocked again at once
    # a SYN flood on a port the host serves is answered with SYN cookies at
    # the NIC for that port (control/synproxy.py; needs kernel >= 6.0,
    # conntrack and nftables' synproxy: without them, nothing is done)
    synproxy: bool = True


@dataclass(frozen=True)
class TtlConfig:
    base: float = 300.0  # first offence
    max: float = 86400.0
    escalation: float = 4.0  # multiplier per repeat offence
    memory: float = 86400.0  # how long an offence counts as "repeat"


@dataclass(frozen=True)
class MetricsConfig:
    listen: str = "127.0.0.1"
    port: int = 9477
    enabled: bool = True


@dataclass(frozen=True)
class FleetConfig:
    api: str = "127.0.0.1:50051"  # gobgpd's gRPC address (what the gobgp command is given)
    asn: int = 0  # this host's AS number (for the speaker's config: seawall fleet speaker-config)
    router_id: str = ""  # this host's BGP router id (an IPv4 address)
    peers: tuple = ()  # "ADDRESS AS" each: the routers (or route reflectors) to peer with
    protect: tuple = ()  # this host's addresses or served prefixes: the destinations of exported routes
    export_blocks: bool = True  # announce the blocklist's entries (source prefix -> discard)
    export_signatures: bool = True  # announce the signature rules
    accept: tuple = ()  # prefixes, besides `protect`, that an imported route may be for
    max_import: int = 1000  # imported rules at most; past it, routes are refused
    rtbh: bool = False  # also announce each blocked source prefix as a blackhole (never one covering `protect`)
    rtbh_community: str = "65535:666"  # the blackhole community (RFC 7999; FastNetMon's default: 65001:666)


def _cidrs(items) -> bool:
    try:
        [Prefix.parse(i) for i in items]
    except UsageError:
        return False
    return True


def _peers(items) -> bool:
    for item in items:
        parts = item.split()
        if len(parts) != 2 or not _cidrs([parts[0]]) or "/" in parts[0] or not _asn(parts[1]):
            return False
    return True


def _asn(text: str) -> bool:
    return text.isascii() and text.isdigit() and len(text) <= 10 and 0 < int(text) < 2**32


def _community(text: str) -> bool:
    hi, sep, lo = text.partition(":")
    return bool(sep) and all(x.isascii() and x.isdigit() and len(x) <= 5 and int(x) < 65536 for x in (hi, lo))


def _ipv4(text: str) -> bool:
    try:
        return ipaddress.ip_address(text).version == 4
    except ValueError:
        return False


@dataclass(frozen=True)
class Config:
    daemon: DaemonConfig = field(default_factory=DaemonConfig)
    detection: DetectionConfig = field(default_factory=DetectionConfig)
    attribution: AttributionConfig = field(default_factory=AttributionConfig)
    ttl: TtlConfig = field(default_factory=TtlConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    fleet: FleetConfig = field(default_factory=FleetConfig)


# Per key: (kind, check). kinds: duration, ms_duration, float, int, bool, str, list[str]
def _pos(x):
    return x > 0


_RULES: dict = {
    "daemon": {
        "interval": ("ms_duration", lambda x: 0.1 <= x <= 10, "between 100ms and 10s"),
        "interfaces": ("list_str", lambda x: all(0 < len(i) <= 15 for i in x), "a list of interface names"),
        "mode": ("str", lambda x: x in ("auto", "native", "generic"), "one of auto, native, generic"),
        "monitor": ("bool", None, ""),
        "keep_filter_on_exit": ("bool", None, ""),
        "log_level": ("str", lambda x: x in ("debug", "info", "warning", "error"), "debug, info, warning or error"),
        "housekeeping": ("duration", lambda x: 1 <= x <= 86400, "between 1s and 1d"),
        "baseline_save": ("duration", lambda x: 1 <= x <= 86400, "between 1s and 1d"),
        "sources_v4": ("int", lambda x: 1024 <= x <= 16777216, "an integer from 1024 to 16777216"),
        "sources_v6": ("int", lambda x: 1024 <= x <= 16777216, "an integer from 1024 to 16777216"),
    },
    "detection": {
        "threshold": ("float", lambda x: x > 1, "a number > 1"),
        "min_pps": ("float", lambda x: x >= 1, "a number >= 1"),
        "quantile": ("float", lambda x: 0.5 <= x < 1, "a number in [0.5, 1)"),
        "baseline_window": ("duration", lambda x: x >= 60, "at least 1m"),
        "learn_ratio": ("float", lambda x: x >= 1, "a number >= 1"),
        "warmup": ("duration", lambda x: x >= 1, "at least 1s"),
        "mix_window": ("duration", lambda x: x >= 5, "at least 5s"),
        "entropy_z": ("float", _pos, "a number > 0"),
        "min_sigma": ("float", _pos, "a number > 0"),
        "clear_after": ("duration", _pos, "> 0"),
        "surge_learn_after": ("duration", _pos, "a duration"),
    },
    "attribution": {
        "heavy_min_pps": ("float", _pos, "a number > 0"),
        "heavy_new_factor": ("float", lambda x: x >= 1, "a number >= 1"),
        "heavy_factor": ("float", lambda x: x >= 1, "a number >= 1"),
        "aggregate_v4": ("int", lambda x: 8 <= x <= 32, "a prefix length from 8 to 32"),
        "aggregate_v6": ("int", lambda x: 16 <= x <= 128, "a prefix length from 16 to 128"),
        "aggregate_min": ("int", lambda x: x >= 2, "an integer >= 2"),
        "max_new_blocks": ("int", _pos, "an integer > 0"),
        "max_auto_blocks": ("int", lambda x: 0 < x <= 131072, "an integer from 1 to 131072"),
        "signatures": ("bool", None, ""),
        "max_signatures": ("int", lambda x: 0 <= x <= 16, "an integer from 0 to 16"),
        "signature_min_share": ("float", lambda x: 0 < x <= 1, "a number in (0, 1]"),
        "signature_max_legit": ("float", lambda x: 0 <= x <= 1, "a number in [0, 1]"),
        "returning_min_pps": ("float", _pos, "a number > 0"),
        "synproxy": ("bool", None, ""),
    },
    "ttl": {
        "base": ("duration", _pos, "a duration"),
        "max": ("duration", _pos, "a duration"),
        "escalation": ("float", lambda x: x >= 1, "a number >= 1"),
        "memory": ("duration", _pos, "a duration"),
    },
    "metrics": {
        "listen": ("str", lambda x: len(x) > 0, "an address"),
        "port": ("int", lambda x: 0 < x < 65536, "a port from 1 to 65535"),
        "enabled": ("bool", None, ""),
    },
    "fleet": {
        "api": ("str", lambda x: x.rpartition(":")[2].isdigit() and x.rpartition(":")[0] != "",
                "an address and port such as 127.0.0.1:50051"),
        "asn": ("int", lambda x: 0 < x < 2**32, "an AS number from 1 to 4294967295"),
        "router_id": ("str", _ipv4, "an IPv4 address"),
        "peers": ("list_str", _peers, "a list of \"ADDRESS AS\" such as \"198.18.0.2 64513\""),
        "protect": ("list_str", _cidrs, "a list of addresses or CIDRs"),
        "export_blocks": ("bool", None, ""),
        "export_signatures": ("bool", None, ""),
        "accept": ("list_str", _cidrs, "a list of CIDRs"),
        "max_import": ("int", lambda x: 0 <= x <= 100000, "an integer from 0 to 100000"),
        "rtbh": ("bool", None, ""),
        "rtbh_community": ("str", _community, "a BGP community such as 65535:666"),
    },
}

_SECTIONS = {"daemon": DaemonConfig, "detection": DetectionConfig, "attribution": AttributionConfig,
             "ttl": TtlConfig, "metrics": MetricsConfig, "fleet": FleetConfig}


def _convert(kind: str, value: Any):
    if kind == "bool":
        if not isinstance(value, bool):
            raise ValueError("must be true or false")
        return value
    if kind == "str":
        if not isinstance(value, str):
            raise ValueError("must be a string")
        return value
    if kind == "list_str":
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ValueError("must be a list of strings")
        return tuple(value)
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError("must be an integer")
        return value
    if kind == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError("must be a number")
        return float(value)
    if kind in ("duration", "ms_duration"):
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise ValueError("must be a duration such as \"90s\"")
        if isinstance(value, (int, float)):
            # bare numbers in TOML are seconds, bounded like a duration
            # string: inf or 1e300 would overflow the kernel's expiry
            if not (math.isfinite(value) and value <= MAX_SECONDS):
                raise ValueError("must be a duration of at most a year (366d)")
            return float(value)
        try:
            return _ms_duration(value) if kind == "ms_duration" else float(parse_duration(value))
        except UsageError as e:
            raise ValueError(str(e)) from None
    raise AssertionError(kind)


def from_dict(data: dict, origin: str = "config") -> Config:
    sections = {}
    for name, body in data.items():
        if name not in _SECTIONS:
            raise ConfigError(f"{origin}: unknown section [{name}] (known: {', '.join(_SECTIONS)})")
        if not isinstance(body, dict):
            raise ConfigError(f"{origin}: [{name}] must be a table")
        kwargs = {}
        for key, value in body.items():
            rule = _RULES[name].get(key)
            if rule is None:
                raise ConfigError(f"{origin}: [{name}] unknown key {key!r} "
                                  f"(known: {', '.join(_RULES[name])})")
            kind, check, want = rule
            try:
                v = _convert(kind, value)
            except ValueError as e:
                raise ConfigError(f"{origin}: [{name}] {key}: {e}, got {value!r}") from None
            if check is not None and not check(v):
                raise ConfigError(f"{origin}: [{name}] {key}: must be {want}, got {value!r}")
            kwargs[key] = v
        sections[name] = _SECTIONS[name](**kwargs)
    cfg = Config(**sections)
    if cfg.ttl.max < cfg.ttl.base:
        raise ConfigError(f"{origin}: [ttl] max ({cfg.ttl.max:g}s) is shorter than base ({cfg.ttl.base:g}s)")
    return cfg


def load(path: Optional[str]) -> Config:
    if path is None:
        return Config()
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except PermissionError:
        raise ConfigError(f"{path}: permission denied") from None
    except OSError as e:  # a directory, an I/O error: still one line, exit 2
        raise ConfigError(f"{path}: {e.strerror or e}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not valid UTF-8") from None
    except ValueError as e:  # tomllib's int() of a number of over 4300 digits
        raise ConfigError(f"{path}: not valid TOML: {e}") from None
    return from_dict(data, path)


#: settings a running daemon cannot take from a reload: they shape what
#: it attached (the program's tables, the XDP mode, which interfaces) or
#: the metrics socket it holds
RESTART_ONLY = (("daemon", "interfaces"), ("daemon", "mode"), ("daemon", "sources_v4"), ("daemon", "sources_v6"),
                ("metrics", "listen"), ("metrics", "port"), ("metrics", "enabled"))


def restart_needed(running: Config, new: Config) -> list:
    """The RESTART_ONLY settings new changes from running ("[daemon] mode"):
    a reload that changes any of them is refused whole."""
    return [f"[{sec}] {key}" for sec, key in RESTART_ONLY
            if getattr(getattr(running, sec), key) != getattr(getattr(new, sec), key)]


def to_dict(cfg: Config) -> dict:
    return {name: dataclasses.asdict(getattr(cfg, name)) for name in _SECTIONS}
