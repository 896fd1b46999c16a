"""Bad input, pure side: every parser of text, bytes or JSON that comes
from a person, a file or the network either returns a value or raises its
one documented error (UsageError, ConfigError, CaptureError) with a
one-line message; nothing else escapes (a traceback on the command line,
a crash of the daemon at start). And a damaged journal loses nothing that
is readable.

The root side (the command line changing nothing when one of several
addresses is bad or refused) is tests/bpf/test_all_or_nothing.py.
"""

from __future__ import annotations

import json
import logging
import os
import struct

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from seawall.cli.main import main
from seawall.control import config as configmod
from seawall.control.tools import pcap
from seawall.control.addr import Prefix
from seawall.control.config import Config, ConfigError
from seawall.control.service.daemon import Daemon
from seawall.control.duration import parse_duration
from seawall.control.detect.engine import Engine
from seawall.control.errors import UsageError
from seawall.control.lists.journal import encode, record, replay
from seawall.control.tools.pcap import CaptureError
from seawall.control.datapath import sigtable
from seawall.control.signature import Signature, parse_len_range, parse_proto, parse_tcp_flags
from seawall.control.state import Paths

CAPTURES = "/work/shared/captures"
HUGE = "9" * 5000  # int() refuses strings of over 4300 digits with a ValueError

# text as people and files get it wrong: near misses, unicode digits,
# control characters, huge numbers
near_text = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["", " ", "\n", "0", "-1", "1e9", "0x10", "١٢٣", "１２", "²", HUGE, HUGE + "s", "9" * 64 + "s",
                     "198.18.0.1/", "198.18.0.1/33", "::/129", "1.2.3", "1.2.3.4.5", "1.2.3.4/24/1", "tcp ",
                     "60-", "-60", "60--70", "70-60", "0-65535", HUGE + "-1", "S A", "SS", "X", "\x00"]),
    st.builds(lambda a, b: a + b, st.sampled_from(["1", "90s", "198.18.0.0/24", "udp", "60-70", "SA"]),
              st.text(max_size=5)),
)



@settings(max_examples=400)
@given(near_text)
@pytest.mark.parametrize("parse", [Prefix.parse, parse_duration, parse_proto, parse_len_range, parse_tcp_flags],
                         ids=lambda f: f.__name__)
def test_text_parsers_return_a_value_or_a_usage_error(parse, text):
    try:
        parse(text)
    except UsageError as e:
        assert "\n" not in str(e).replace(repr(text), ""), str(e)


@pytest.mark.parametrize("argv", [
    ["block", "add", "198.18.0.1", "--ttl", HUGE + "s"],
    ["sig", "add", "--proto", HUGE, "--dport", "1"],
    ["sig", "add", "--proto", "tcp", "--len", HUGE + "-1"],
    ["sig", "add", "--proto", "tcp", "--flags", HUGE],
    ["block", "add", "198.18.0.1", "198.18.0." + HUGE],
])
def test_huge_numbers_on_the_command_line_are_a_usage_error(argv, capsys):
    """Once a traceback (int() of over 4300 digits): now exit 2, one line."""
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("seawall: error: ") and err.count("\n") == 1


# --- JSON from the journal ---------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
rule_like = st.fixed_dictionaries({}, optional={
    k: json_values | st.integers(0, 70000) for k in ("proto", "dport", "sport", "len_min", "len_max", "tcp_flags",
                                                     "rate_pps")})


@settings(max_examples=500)
@given(json_values | rule_like)
def test_signature_from_journal_json_is_a_rule_or_a_usage_error(d):
    try:
        sig = Signature.from_json(d)
    except UsageError:
        return
    sigtable.encode(sig, 1)  # what restore() does next: must not raise either


def _daemon():
    d = Daemon(Config(), Paths("/nonexistent-bpffs", "/nonexistent-state"))
    d.engine = Engine(Config(), d._allowed)
    return d


def test_damaged_automatic_records_do_not_stop_the_daemon(caplog):
    """The daemon seeds its engine with the journal's automatic decisions
    at start; a damaged one is skipped and reported (once: a crash)."""
    base = {"v": 1, "ts": "2026-01-01T00:00:00Z", "source": "auto"}
    lines = [json.dumps({**base, **r}) for r in [
        {"op": "block", "cidr": "bogus"},
        {"op": "block", "cidr": "198.18.0.1/32", "offence": "x"},
        {"op": "block", "cidr": "198.18.0.2/32", "offence": [2]},
        {"op": "sig", "cidr": "weird", "rule": "udp sport 161"},
        {"op": "sig", "cidr": "weirder", "rule": {"proto": 17, "sport": 161.5}},
        {"op": "block", "cidr": "198.18.0.3/32", "offence": 2},
        {"op": "sig", "cidr": "udp sport 161", "rule": {"proto": 17, "sport": 161}},
    ]]
    d = _daemon()
    with caplog.at_level(logging.INFO, logger="seawall"):
        d._seed_engine(replay(lines))
    host = Prefix.parse("198.18.0.3/32")
    assert set(d.engine.active) == {host} and d.engine.offences[host][0] == 2
    assert len(d.engine.sigs) == 1
    ev = [json.loads(r.getMessage()) for r in caplog.records]
    assert [e["event"] for e in ev] == ["journal_ignored"]
    assert ev[0]["count"] == 5 and set(ev[0]["entries"]) == {"bogus", "198.18.0.1/32", "198.18.0.2/32", "weird",
                                                             "weirder"}


good_records = st.lists(st.tuples(st.sampled_from(["block", "allow"]), st.integers(0, 255)), min_size=1, max_size=12)
garbage_lines = st.lists(st.one_of(
    st.text(max_size=60).filter(lambda s: "\n" not in s and "\r" not in s),
    st.builds(lambda s: s[:len(s) // 2], st.just(encode(record("block", 1.7e9, "198.18.9.9/32")).strip())),
    st.builds(json.dumps, json_values),
    st.builds(lambda o: json.dumps({"v": 1, "ts": "2026-01-01T00:00:00Z", "op": "block", **o}),
              st.dictionaries(st.sampled_from(["cidr", "expires_at", "reason", "source"]), json_values,
                              max_size=3)),
), max_size=12)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(good_records, garbage_lines, st.randoms(use_true_random=False))
def test_garbage_in_the_journal_loses_no_good_record(goods, garbage, rnd):
    """Good records interleaved with garbage (torn lines, random JSON,
    records with missing or wrong fields) replay to the same lists as the
    good records alone: every garbage line is skipped and reported,
    nothing readable is lost. Never an exception."""
    good = [encode(record(op, 1.7e9 + i, f"198.18.{i}.{n}/32")).strip() for i, (op, n) in enumerate(goods)]
    mixed = good + garbage
    rnd.shuffle(mixed)
    # keep the good ones in their order (a later record overrides an earlier one)
    it = iter(good)
    mixed = [next(it) if line in good else line for line in mixed]
    alone = replay(good)
    got = replay(mixed)
    sane = [g for g in garbage if replay([g]).skipped == [] and g.strip()]
    assume(not sane)  # a garbage line that happens to be a valid record changes the lists legitimately
    assert got.blocks.keys() == alone.blocks.keys() and got.allows.keys() == alone.allows.keys()
    assert len(got.skipped) == len([g for g in garbage if g.strip()])


# --- configuration ---------------------------------------------------------------------------

toml_scalars = st.one_of(st.booleans(), st.integers(-2**70, 2**70), st.floats(allow_nan=True), st.text(max_size=12),
                         st.sampled_from(["90s", "100ms", "0ms", "1w", HUGE + "ms", "auto", "eth0", "127.0.0.1"]))
config_dicts = st.dictionaries(
    st.sampled_from(["daemon", "detection", "attribution", "ttl", "metrics", "bogus"]),
    st.dictionaries(st.sampled_from(sorted({k for sec in configmod._RULES.values() for k in sec}) + ["x"]),
                    toml_scalars | st.lists(toml_scalars, max_size=3)) | toml_scalars,
    max_size=4)


@settings(max_examples=500)
@given(config_dicts)
def test_config_is_a_config_or_one_config_error(d):
    try:
        cfg = configmod.from_dict(d, "fuzz.toml")
    except ConfigError as e:
        assert "\n" not in str(e).split("got ")[0], str(e)
        return
    assert isinstance(cfg, Config)


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=200) | st.sampled_from([b"[daemon]\ninterval = " + HUGE.encode() + b"\n",
                                                   b"[detection]\nthreshold = " + HUGE.encode() + b"\n",
                                                   b"\xff\xfe[daemon]", b"[[daemon]]\n", b"daemon = 1\n"]))
def test_config_file_of_any_bytes(tmp_path, data):
    p = tmp_path / "c.toml"
    p.write_bytes(data)
    try:
        configmod.load(str(p))
    except ConfigError:
        pass


# --- captures ------------------------------------------------------------------------------


def _pcap() -> bytes:
    frame = bytes.fromhex("020000000002020000000001080045000028000000004011000" "0c6120001c6120002") + b"\0" * 20
    out = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
    for i in range(4):
        out += struct.pack("<IIII", 1, i, len(frame), len(frame)) + frame
    return out


def _seeds() -> list:
    out = [_pcap()]
    for name in sorted(os.listdir(CAPTURES)) if os.path.isdir(CAPTURES) else []:
        with open(os.path.join(CAPTURES, name), "rb") as f:
            out.append(f.read(6000))
    return out


SEEDS = _seeds()


@st.composite
def mutated_captures(draw):
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["flip", "set", "cut", "insert", "delete"]))
        at = draw(st.integers(0, max(0, len(data) - 1)))
        if kind == "flip" and data:
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "set" and len(data) >= at + 4:
            data[at:at + 4] = struct.pack("<I", draw(st.sampled_from([0, 1, 12, 0xFFFFFFFF, 0x7FFFFFFF, 1 << 24])))
        elif kind == "cut":
            del data[at:]
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        elif kind == "delete":
            del data[at:at + draw(st.integers(1, 16))]
    return bytes(data)


@settings(max_examples=600, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(mutated_captures())
def test_damaged_capture_is_frames_or_one_capture_error(tmp_path, data):
    """A capture given to `seawall replay`, damaged anywhere: frames, or
    one CaptureError line (the command prints it and exits 1)."""
    p = tmp_path / "c.pcap"
    p.write_bytes(data)
    try:
        for fr in pcap.read(str(p)):
            assert isinstance(fr.data, bytes) and len(fr.data) <= 1 << 24
    except CaptureError as e:
        assert "\n" not in str(e), str(e)
