"""control/config.py: the daemon's TOML file, parsed once into frozen
dataclasses. Every bad value is one ConfigError line naming the file, the
section and the key; `seawall config check` turns it into exit status 2."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys

import pytest

from seawall.cli.main import main
from seawall.control import config
from seawall.control.config import Config, ConfigError, DaemonConfig
from seawall.control.errors import UsageError


def write(tmp_path, text: str, name: str = "seawall.toml"):
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def load_error(path) -> str:
    with pytest.raises(ConfigError) as e:
        config.load(str(path))
    msg = str(e.value)
    assert "\n" not in msg, msg
    assert msg.startswith(f"{path}: "), msg
    return msg


# --- defaults ------------------------------------------------------------------

def test_empty_file_gives_the_defaults(tmp_path):
    assert config.load(str(write(tmp_path, ""))) == Config()


def test_comments_only_give_the_defaults(tmp_path):
    assert config.load(str(write(tmp_path, "# nothing set\n\n# [daemon]\n"))) == Config()


def test_empty_sections_give_the_defaults(tmp_path):
    text = "".join(f"[{s}]\n" for s in ("daemon", "detection", "attribution", "ttl", "metrics"))
    assert config.load(str(write(tmp_path, text))) == Config()


def test_no_file_gives_the_defaults():
    assert config.load(None) == Config()


def test_defaults_are_documented_values():
    c = Config()
    assert (c.daemon.interval, c.daemon.mode, c.daemon.monitor) == (0.25, "auto", False)
    assert c.daemon.keep_filter_on_exit is True
    assert (c.detection.warmup, c.detection.threshold, c.detection.clear_after) == (10.0, 2.5, 5.0)
    assert (c.detection.min_pps, c.detection.quantile, c.detection.baseline_window) == (1000.0, 0.99, 86400.0)
    assert c.detection.learn_ratio == 1.5 and c.attribution.signature_max_legit == 0.001
    assert (c.attribution.aggregate_v4, c.attribution.aggregate_v6, c.attribution.aggregate_min) == (24, 64, 8)
    assert (c.ttl.base, c.ttl.max, c.ttl.escalation, c.ttl.memory) == (300.0, 86400.0, 4.0, 86400.0)
    assert (c.metrics.listen, c.metrics.port, c.metrics.enabled) == ("127.0.0.1", 9477, True)


def test_config_is_frozen():
    c = Config()
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.detection.threshold = 1.0  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.ttl = config.TtlConfig()  # type: ignore[misc]


# --- every key with a valid, non-default value -------------------------------------

# section -> key -> (TOML text, value after loading); every value differs from the default
VALID = {
    "daemon": {
        "interval": ('"500ms"', 0.5),
        "interfaces": ('["eth0", "enp1s0f0np0"]', ("eth0", "enp1s0f0np0")),
        "mode": ('"native"', "native"),
        "monitor": ("true", True),
        "keep_filter_on_exit": ("false", False),
        "log_level": ('"debug"', "debug"),
        "housekeeping": ('"5m"', 300.0),
        "baseline_save": ('"1m"', 60.0),
        "sources_v4": ("1048576", 1048576),
        "sources_v6": ("131072", 131072),
    },
    "detection": {
        "warmup": ('"30s"', 30.0),
        "baseline_window": ('"2d"', 172800.0),
        "threshold": ("4.5", 4.5),
        "clear_after": ('"10s"', 10.0),
        "min_pps": ("500", 500.0),
        "min_sigma": ("0.05", 0.05),
        "quantile": ("0.95", 0.95),
        "learn_ratio": ("1.2", 1.2),
        "mix_window": ('"5m"', 300.0),
        "entropy_z": ("6", 6.0),
        "surge_learn_after": ('"1h"', 3600.0),
    },
    "attribution": {
        "heavy_min_pps": ("250.5", 250.5),
        "heavy_new_factor": ("3", 3.0),
        "heavy_factor": ("8.0", 8.0),
        "aggregate_v4": ("20", 20),
        "aggregate_v6": ("56", 56),
        "aggregate_min": ("4", 4),
        "max_new_blocks": ("64", 64),
        "max_auto_blocks": ("131072", 131072),
        "signatures": ("false", False),
        "max_signatures": ("16", 16),
        "signature_min_share": ("1.0", 1.0),
        "signature_max_legit": ("0.01", 0.01),
        "returning_min_pps": ("5", 5.0),
        "synproxy": ("false", False),
    },
    "ttl": {
        "base": ('"10m"', 600.0),
        "max": ('"1w"', 604800.0),
        "escalation": ("2", 2.0),
        "memory": ('"1h30m"', 5400.0),
    },
    "metrics": {
        "listen": ('"::1"', "::1"),
        "port": ("19477", 19477),
        "enabled": ("false", False),
    },
    "fleet": {
        "api": ('"[::1]:50052"', "[::1]:50052"),
        "asn": ("64512", 64512),
        "router_id": ('"198.18.0.1"', "198.18.0.1"),
        "peers": ('["198.18.0.2 64513", "2001:2::2 4200000000"]', ("198.18.0.2 64513", "2001:2::2 4200000000")),
        "protect": ('["198.18.0.1", "2001:2::/64"]', ("198.18.0.1", "2001:2::/64")),
        "export_blocks": ("false", False),
        "export_signatures": ("false", False),
        "accept": ('["198.18.1.0/24"]', ("198.18.1.0/24",)),
        "max_import": ("50", 50),
        "rtbh": ("true", True),
        "rtbh_community": ('"65001:666"', "65001:666"),
    },
}


def test_valid_table_covers_every_key():
    """A key added to the config must be added here too."""
    for name, section in dataclasses.asdict(Config()).items():
        assert set(VALID[name]) == set(section), name
    assert set(VALID) == {f.name for f in dataclasses.fields(Config)}


def test_every_valid_value_differs_from_its_default():
    for section, keys in VALID.items():
        for key, (_, want) in keys.items():
            assert getattr(getattr(Config(), section), key) != want, f"[{section}] {key}"


def test_every_key_at_once(tmp_path):
    text = "".join(f"[{s}]\n" + "".join(f"{k} = {v[0]}\n" for k, v in keys.items()) + "\n"
                   for s, keys in VALID.items())
    cfg = config.load(str(write(tmp_path, text)))
    for section, keys in VALID.items():
        for key, (_, want) in keys.items():
            got = getattr(getattr(cfg, section), key)
            assert got == want and type(got) is type(want), f"[{section}] {key}: {got!r}"


@pytest.mark.parametrize("section, key", [(s, k) for s, keys in VALID.items() for k in keys])
def test_each_key_alone(tmp_path, section, key):
    text, want = VALID[section][key]
    cfg = config.load(str(write(tmp_path, f"[{section}]\n{key} = {text}\n")))
    assert getattr(getattr(cfg, section), key) == want
    # every other setting keeps its default
    changed = dataclasses.replace(getattr(Config(), section), **{key: want})
    assert cfg == dataclasses.replace(Config(), **{section: changed})


@pytest.mark.parametrize("section, key, text, seconds", [
    ("daemon", "interval", '"100ms"', 0.1),
    ("daemon", "interval", '"1500ms"', 1.5),
    ("daemon", "interval", '"10s"', 10.0),
    ("daemon", "interval", '"1s"', 1.0),
    ("daemon", "interval", "0.5", 0.5),  # a bare TOML number is seconds
    ("daemon", "interval", "2", 2.0),
    ("detection", "warmup", "15", 15.0),
    ("detection", "warmup", '"15"', 15.0),  # a plain number is seconds, as text too (control/duration.py)
    ("detection", "warmup", '"1s"', 1.0),  # the floor itself
    ("detection", "baseline_window", '"1m"', 60.0),  # the floor itself
    ("ttl", "base", "600", 600.0),
    ("ttl", "max", '"2d"', 172800.0),
    ("ttl", "memory", '"1w"', 604800.0),
])
def test_duration_forms(tmp_path, section, key, text, seconds):
    cfg = config.load(str(write(tmp_path, f"[{section}]\n{key} = {text}\n")))
    assert getattr(getattr(cfg, section), key) == pytest.approx(seconds, abs=1e-12)


def test_range_ends_are_accepted(tmp_path):
    text = ("[attribution]\naggregate_v4 = 8\naggregate_v6 = 128\naggregate_min = 2\nmax_auto_blocks = 1\n"
            "max_signatures = 0\nheavy_factor = 1\n[metrics]\nport = 65535\n[detection]\nmin_pps = 1\n"
            "[ttl]\nbase = \"1d\"\nmax = \"1d\"\nescalation = 1\n")
    cfg = config.load(str(write(tmp_path, text)))
    assert (cfg.attribution.aggregate_v4, cfg.attribution.aggregate_v6) == (8, 128)
    assert (cfg.attribution.max_auto_blocks, cfg.attribution.max_signatures) == (1, 0)
    assert cfg.metrics.port == 65535 and cfg.detection.min_pps == 1.0
    assert cfg.ttl.base == cfg.ttl.max == 86400.0


def test_to_dict_lists_every_setting():
    cfg = config.load(None)
    d = config.to_dict(cfg)
    assert list(d) == ["daemon", "detection", "attribution", "ttl", "metrics", "fleet"]
    assert d["detection"]["threshold"] == 2.5 and d["metrics"]["port"] == 9477
    assert sum(len(v) for v in d.values()) == sum(len(v) for v in VALID.values())


# --- bad values: one line naming the file, the section and the key ----------------

BAD = [
    # wrong type
    ("daemon", "interval", "true", "duration"),
    ("daemon", "interval", "[1]", "duration"),
    ("daemon", "interfaces", '"eth0"', "list of strings"),
    ("daemon", "interfaces", "[1, 2]", "list of strings"),
    ("daemon", "mode", "1", "string"),
    ("daemon", "monitor", '"yes"', "true or false"),
    ("daemon", "monitor", "1", "true or false"),
    ("daemon", "keep_filter_on_exit", "0", "true or false"),
    ("daemon", "log_level", "[\"info\"]", "string"),
    ("detection", "warmup", "true", "duration"),
    ("detection", "warmup", "1979-05-27", "duration"),
    ("detection", "threshold", '"high"', "number"),
    ("detection", "threshold", "true", "number"),
    ("detection", "threshold", "{ a = 1 }", "number"),
    ("detection", "min_pps", '"2000"', "number"),
    ("attribution", "aggregate_v4", "24.0", "integer"),
    ("attribution", "aggregate_v4", "true", "integer"),
    ("attribution", "aggregate_v4", '"24"', "integer"),
    ("attribution", "max_new_blocks", "1.5", "integer"),
    ("attribution", "signatures", '"on"', "true or false"),
    ("metrics", "port", '"9477"', "integer"),
    ("metrics", "listen", "127", "string"),
    ("metrics", "enabled", '"true"', "true or false"),
    # out of range
    ("daemon", "interval", '"50ms"', "between 100ms and 10s"),
    ("daemon", "interval", '"99ms"', "between 100ms and 10s"),
    ("daemon", "interval", '"0ms"', "longer than zero"),
    ("daemon", "interval", '"11s"', "between 100ms and 10s"),
    ("daemon", "housekeeping", '"0s"', "longer than zero"),
    ("daemon", "housekeeping", '"500ms"', "not a duration"),
    ("daemon", "housekeeping", '"2d"', "between 1s and 1d"),
    ("daemon", "housekeeping", "true", "duration"),
    ("daemon", "interval", "0.05", "between 100ms and 10s"),
    ("daemon", "interval", "-1", "between 100ms and 10s"),
    ("daemon", "interfaces", '["a-name-longer-than-15"]', "interface names"),
    ("daemon", "interfaces", '[""]', "interface names"),
    ("daemon", "mode", '"fast"', "auto, native, generic"),
    ("daemon", "log_level", '"verbose"', "debug, info"),
    ("detection", "warmup", "0.5", "at least 1s"),
    ("detection", "baseline_window", '"59s"', "at least 1m"),
    ("detection", "threshold", "1", "> 1"),
    ("detection", "threshold", "-3", "> 1"),
    ("detection", "threshold", "nan", "> 1"),
    ("detection", "min_pps", "0.5", ">= 1"),
    ("detection", "min_sigma", "0.0", "> 0"),
    ("detection", "quantile", "1", "[0.5, 1)"),
    ("detection", "quantile", "0.4", "[0.5, 1)"),
    ("detection", "learn_ratio", "0.9", ">= 1"),
    ("detection", "mix_window", '"4s"', "at least 5s"),
    ("attribution", "signature_max_legit", "1.5", "[0, 1]"),
    ("attribution", "returning_min_pps", "0", "> 0"),
    ("daemon", "baseline_save", '"0s"', "longer than zero"),
    ("detection", "clear_after", "0", "> 0"),
    ("attribution", "heavy_min_pps", "0", "> 0"),
    ("attribution", "heavy_new_factor", "0.9", ">= 1"),
    ("attribution", "heavy_factor", "0.5", ">= 1"),
    ("attribution", "aggregate_v4", "7", "8 to 32"),
    ("attribution", "aggregate_v4", "33", "8 to 32"),
    ("attribution", "aggregate_v6", "15", "16 to 128"),
    ("attribution", "aggregate_v6", "129", "16 to 128"),
    ("attribution", "aggregate_min", "1", ">= 2"),
    ("attribution", "max_new_blocks", "0", "> 0"),
    ("attribution", "max_auto_blocks", "0", "1 to 131072"),
    ("attribution", "max_auto_blocks", "131073", "1 to 131072"),
    ("attribution", "max_signatures", "17", "0 to 16"),
    ("attribution", "max_signatures", "-1", "0 to 16"),
    ("attribution", "signature_min_share", "0", "(0, 1]"),
    ("attribution", "signature_min_share", "1.01", "(0, 1]"),
    ("ttl", "base", "0", "duration"),
    ("ttl", "base", "-300", "duration"),
    ("ttl", "escalation", "0.99", ">= 1"),
    ("ttl", "memory", "-1", "duration"),
    ("metrics", "port", "0", "1 to 65535"),
    ("metrics", "port", "65536", "1 to 65535"),
    ("metrics", "listen", '""', "an address"),
    # bad durations
    ("detection", "warmup", '"ten seconds"', "not a duration"),
    ("detection", "warmup", '"1.5m"', "not a duration"),
    ("detection", "warmup", '"-10s"', "not a duration"),
    ("detection", "warmup", '"0s"', "longer than zero"),
    ("detection", "baseline_window", '""', "not a duration"),
    ("detection", "clear_after", '"5 s"', "not a duration"),
    ("ttl", "base", '"5ms"', "not a duration"),  # milliseconds only for the interval
    ("ttl", "max", '"2y"', "not a duration"),
    ("ttl", "max", '"400d"', "longer than a year"),
    ("ttl", "memory", '"forever"', "not a duration"),
    ("daemon", "interval", '"fast"', "not a duration"),
    ("daemon", "interval", '"ms"', "not a duration"),
    ("daemon", "interval", '"100 ms"', "not a duration"),
    ("daemon", "interval", '"0.5s"', "not a duration"),
    # a number of seconds beyond what a duration string may say
    ("ttl", "base", "inf", "duration"),
    ("ttl", "max", "inf", "duration"),
    ("ttl", "max", "1e300", "duration"),
    ("ttl", "memory", "nan", "duration"),
    ("detection", "warmup", "inf", "duration"),
]


@pytest.mark.parametrize("section, key, text, want", BAD, ids=[f"{s}.{k}={t}" for s, k, t, _ in BAD])
def test_bad_value(tmp_path, section, key, text, want):
    path = write(tmp_path, f"[{section}]\n{key} = {text}\n")
    msg = load_error(path)
    assert f"[{section}] {key}: " in msg
    assert want in msg


@pytest.mark.parametrize("section, key, text, want", BAD[:6], ids=[f"{s}.{k}" for s, k, _, _ in BAD[:6]])
def test_bad_value_among_good_ones(tmp_path, section, key, text, want):
    """The bad key is named, not its neighbours."""
    good = "".join(f"{k} = {v[0]}\n" for k, v in VALID[section].items() if k != key)
    msg = load_error(write(tmp_path, f"[{section}]\n{good}{key} = {text}\n"))
    assert f"[{section}] {key}: " in msg


def test_bad_value_names_the_value(tmp_path):
    msg = load_error(write(tmp_path, '[detection]\nthreshold = "high"\n'))
    assert msg == f"{tmp_path / 'seawall.toml'}: [detection] threshold: must be a number, got 'high'"


def test_multiline_string_value_stays_one_line(tmp_path):
    msg = load_error(write(tmp_path, '[daemon]\nmode = """\nnative\n"""\n'))
    assert "[daemon] mode: " in msg


def test_unknown_key(tmp_path):
    msg = load_error(write(tmp_path, "[detection]\nthreshhold = 5\n"))
    assert "[detection]" in msg and "unknown key 'threshhold'" in msg
    assert "threshold" in msg.split("known:")[1]  # lists what is known


def test_unknown_key_in_dotted_form(tmp_path):
    msg = load_error(write(tmp_path, "ttl.maximum = \"1d\"\n"))
    assert "[ttl]" in msg and "'maximum'" in msg


def test_key_in_the_wrong_section(tmp_path):
    msg = load_error(write(tmp_path, "[daemon]\nthreshold = 5\n"))
    assert "[daemon]" in msg and "'threshold'" in msg


def test_unknown_section(tmp_path):
    msg = load_error(write(tmp_path, "[detect]\nthreshold = 5\n"))
    assert "unknown section [detect]" in msg
    assert "detection" in msg.split("known:")[1]


def test_top_level_key_is_an_unknown_section(tmp_path):
    msg = load_error(write(tmp_path, "threshold = 5\n"))
    assert "[threshold]" in msg


def test_section_that_is_not_a_table(tmp_path):
    msg = load_error(write(tmp_path, "daemon = 5\n"))
    assert "[daemon] must be a table" in msg


def test_section_that_is_an_array_of_tables(tmp_path):
    msg = load_error(write(tmp_path, "[[ttl]]\nbase = 60\n"))
    assert "[ttl] must be a table" in msg


@pytest.mark.parametrize("text", [
    '[ttl]\nbase = "2d"\n',  # the default max is 1d
    '[ttl]\nmax = "1m"\n',  # the default base is 5m
    '[ttl]\nbase = "1h"\nmax = "59m"\n',
    "[ttl]\nbase = 601\nmax = 600\n",
])
def test_ttl_max_shorter_than_base(tmp_path, text):
    msg = load_error(write(tmp_path, text))
    assert "[ttl] max" in msg and "base" in msg and "shorter" in msg


def test_ttl_max_shorter_than_base_gives_both_values(tmp_path):
    msg = load_error(write(tmp_path, '[ttl]\nbase = "1h"\nmax = "59m"\n'))
    assert "3540s" in msg and "3600s" in msg


@pytest.mark.parametrize("text", [
    "[daemon\ninterval = 1\n",
    "[daemon]\ninterval = \n",
    "[daemon]\ninterval 1\n",
    "[daemon]\nmode = 'native\n",
    "[daemon]\nmonitor = yes\n",
    "[daemon]\nmonitor = true\nmonitor = false\n",  # a duplicate key
    "[daemon]\n[daemon]\n",
])
def test_invalid_toml(tmp_path, text):
    msg = load_error(write(tmp_path, text))
    assert "not valid TOML" in msg
    assert "line" in msg or "end of document" in msg  # where the parser gave up


def test_non_utf8_file(tmp_path):
    p = tmp_path / "latin1.toml"
    p.write_bytes('[daemon]\nmode = "n\xe4tive"\n'.encode("latin-1"))
    msg = load_error(p)
    assert "UTF-8" in msg


def test_binary_file(tmp_path):
    p = tmp_path / "blob.toml"
    p.write_bytes(bytes(range(256)))
    msg = load_error(p)
    assert "UTF-8" in msg or "TOML" in msg


def test_missing_file(tmp_path):
    msg = load_error(tmp_path / "absent.toml")
    assert "no such file" in msg


def test_directory(tmp_path):
    d = tmp_path / "conf.d"
    d.mkdir()
    msg = load_error(d)
    assert "directory" in msg.lower()


def test_unreadable_file(tmp_path):
    """Root reads any file, so as root the load runs as nobody (setpriv)."""
    p = write(tmp_path, "")
    p.chmod(0)
    tmp_path.chmod(0o755)
    try:
        if os.geteuid() != 0:
            assert "permission denied" in load_error(p)
            return
        code = ("import sys; from seawall.control import config\n"
                "try:\n    config.load(sys.argv[1])\nexcept config.ConfigError as e:\n    print(e)")
        out = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                              sys.executable, "-c", code, str(p)],
                             capture_output=True, text=True, timeout=60, cwd="/")
        assert out.stdout.strip() == f"{p}: permission denied", out.stdout + out.stderr
    finally:
        p.chmod(0o600)


def test_config_error_is_a_usage_error():
    """Exit status 2 in the CLI, and the daemon's reload catches it."""
    assert issubclass(ConfigError, UsageError)


def test_from_dict_names_its_origin():
    with pytest.raises(ConfigError, match=r"^--interval: \[daemon\] interval: must be between"):
        config.from_dict({"daemon": {"interval": "50ms"}}, "--interval")


# --- seawall config check ------------------------------------------------------------

def check(capsys, path):
    code = main(["config", "check", str(path)])
    out, err = capsys.readouterr()
    return code, out, err


def test_check_good_file(tmp_path, capsys):
    path = write(tmp_path, '[detection]\nthreshold = 4.5\n[daemon]\ninterval = "250ms"\ninterfaces = ["eth0"]\n')
    code, out, err = check(capsys, path)
    assert code == 0, err
    assert err == ""
    lines = out.splitlines()
    assert lines[0] == f"{path}: ok"
    assert "[detection]" in lines and "  threshold = 4.5" in lines
    assert "  interval = 0.25" in lines and '  interfaces = ["eth0"]' in lines
    assert "  warmup = 10.0" in lines  # defaults are shown too


def test_check_empty_file(tmp_path, capsys):
    code, out, err = check(capsys, write(tmp_path, ""))
    assert code == 0 and err == ""
    assert out.splitlines()[0].endswith(": ok")


@pytest.mark.parametrize("text, names", [
    ('[detection]\nthreshold = "high"\n', ["[detection]", "threshold"]),
    ('[daemon]\ninterval = "50ms"\n', ["[daemon]", "interval"]),
    ("[ttl]\nbase = \"2d\"\n", ["[ttl]", "max", "base"]),
    ("[metrics]\nport = 70000\n", ["[metrics]", "port"]),
    ("[metric]\nport = 1\n", ["[metric]"]),
    ("[attribution]\nagregate_min = 3\n", ["[attribution]", "agregate_min"]),
    ("[daemon\n", ["not valid TOML"]),
])
def test_check_bad_file(tmp_path, capsys, text, names):
    path = write(tmp_path, text)
    code, out, err = check(capsys, path)
    assert code == 2
    assert out == ""
    assert err.count("\n") == 1 and err.endswith("\n"), err
    assert err.startswith(f"seawall: error: {path}: "), err
    for n in names:
        assert n in err


def test_check_non_utf8_file(tmp_path, capsys):
    p = tmp_path / "bad.toml"
    p.write_bytes(b"[daemon]\nmode = \"\xff\"\n")
    code, out, err = check(capsys, p)
    assert (code, out) == (2, "")
    assert err.count("\n") == 1 and str(p) in err and "UTF-8" in err


def test_check_missing_file(tmp_path, capsys):
    p = tmp_path / "absent.toml"
    code, out, err = check(capsys, p)
    assert (code, out) == (2, "")
    assert err.count("\n") == 1 and str(p) in err


def test_check_directory(tmp_path, capsys):
    code, out, err = check(capsys, tmp_path)
    assert (code, out) == (2, "")
    assert err.count("\n") == 1 and "directory" in err


def test_source_tables_default_to_the_builds_and_change_it_only_when_set():
    from seawall.control.config import from_dict
    from seawall.control.datapath import abi

    d = DaemonConfig()
    assert (d.sources_v4, d.sources_v6) == (abi.MAX_SOURCES_V4, abi.MAX_SOURCES_V6)
    assert d.defines() == {}, "the default build: the same program (and cache entry) as seawall attach"
    big = from_dict({"daemon": {"sources_v4": 1048576}}, "t").daemon
    assert big.defines() == {"MAX_SOURCES_V4": 1048576}
    with pytest.raises(ConfigError, match="sources_v6"):
        from_dict({"daemon": {"sources_v6": 10}}, "t")


@pytest.mark.parametrize("text, seconds", [('"250ms"', 0.25), ('"0.5"', 0.5), ("0.5", 0.5), ('"1s500ms"', 1.5), ('"2s"', 2.0)])
def test_an_interval_takes_the_one_duration_grammar(tmp_path, text, seconds):
    p = tmp_path / "seawall.toml"
    p.write_text(f"[daemon]\ninterval = {text}\n")
    assert config.load(str(p)).daemon.interval == seconds


def test_a_reload_that_changes_what_only_a_restart_applies_is_named():
    running = Config()
    assert config.restart_needed(running, running) == []
    new = dataclasses.replace(running, daemon=dataclasses.replace(running.daemon, mode="generic", monitor=True,
                                                                   interval=1.0))
    assert config.restart_needed(running, new) == ["[daemon] mode"]  # monitor and interval reload live
    new = dataclasses.replace(new, metrics=dataclasses.replace(new.metrics, port=9999))
    assert config.restart_needed(running, new) == ["[daemon] mode", "[metrics] port"]
