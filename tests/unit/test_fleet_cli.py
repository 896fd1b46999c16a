"""`seawall fleet`: its errors, its config, and its status over a stand-in
`gobgp` that prints what gobgpd 3.10 printed (the live daemons are
tests/netns/test_fleet_lab.py's)."""

from __future__ import annotations

import json
import os
import sys
import tomllib

import pytest

from seawall.cli.main import main

FAKE_GOBGP = r"""#!{python}
import json, sys
args = sys.argv[1:]
log = {log!r}
with open(log, "a") as f:
    f.write(" ".join(args) + "\n")
words = args[4:]  # after -u HOST -p PORT
if words[:1] == ["global"] and "rib" not in words:
    print(json.dumps({{"asn": 64512, "router_id": "198.18.0.1", "listen_port": 179}}))
elif words[:1] == ["neighbor"]:
    print(json.dumps([{{"conf": {{"neighbor_address": "198.18.0.2", "peer_asn": 64513}},
                       "state": {{"session_state": 6}},
                       "timers": {{"state": {{"uptime": {{"seconds": 1}}}}}}, "afi_safis": []}}]))
elif words[:3] == ["global", "rib", "-a"] and words[3] == "ipv4-flowspec" and words[-1] == "-j":
    dst = {{"type": 1, "value": {{"prefix": "198.18.0.1/32"}}}}
    ext = {{"type": 16, "value": [{{"type": 128, "subtype": 6, "as": 0, "rate": 0}}]}}
    print(json.dumps({{
        "a": [{{"nlri": {{"value": [dst, {{"type": 2, "value": {{"prefix": "198.18.5.0/24"}}}}]}}, "attrs": [ext]}}],
        "b": [{{"nlri": {{"value": [dst, {{"type": 3, "value": [{{"op": 129, "value": 17}}]}},
                                  {{"type": 5, "value": [{{"op": 145, "value": 53}}]}}]}},
               "attrs": [ext], "neighbor-ip": "198.18.0.2"}}],
        "c": [{{"nlri": {{"value": [dst, {{"type": 3, "value": [{{"op": 129, "value": 17}}]}},
                                  {{"type": 11, "value": [{{"op": 129, "value": 46}}]}}]}},
               "attrs": [ext], "neighbor-ip": "198.18.0.2"}}]}}))
elif words[-1] == "-j":
    print("{{}}")
else:
    print("unexpected", file=sys.stderr)
    sys.exit(1)
"""


@pytest.fixture
def fake_gobgp(tmp_path, monkeypatch):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    log = tmp_path / "calls"
    script = bindir / "gobgp"
    script.write_text(FAKE_GOBGP.format(python=sys.executable, log=str(log)))
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    return log


@pytest.fixture
def config(tmp_path):
    path = tmp_path / "seawall.toml"
    path.write_text('[fleet]\napi = "127.0.0.1:50099"\nasn = 64512\nrouter_id = "198.18.0.1"\n'
                    'peers = ["198.18.0.2 64513"]\nprotect = ["198.18.0.1", "2001:2::1"]\n')
    return str(path)


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_status_shows_sessions_routes_out_and_routes_in_judged(fake_gobgp, config, capsys):
    code, out, err = run(capsys, "fleet", "status", "--config", config, "--json")
    assert code == 0, err
    got = json.loads(out)
    assert got["speaker"] == {"api": "127.0.0.1:50099", "asn": 64512, "router_id": "198.18.0.1"}
    assert [(s["peer"], s["state"]) for s in got["sessions"]] == [("198.18.0.2", "established")]
    assert [r["route"] for r in got["routes_out"]] == ["[destination 198.18.0.1/32][source 198.18.5.0/24] discard"]
    assert {(r["peer"], r["verdict"], r["decision"] or r["reason"]) for r in got["routes_in"]} == {
        ("198.18.0.2", "accepted", "sig udp dport 53 drop"),
        ("198.18.0.2", "refused", "component dscp cannot be enforced")}
    assert "-u 127.0.0.1 -p 50099 neighbor -j" in fake_gobgp.read_text()


def test_status_in_text(fake_gobgp, config, capsys):
    code, out, _ = run(capsys, "fleet", "status", "--config", config)
    assert code == 0
    assert "routes out: 1" in out and "routes in: 2" in out
    assert "refused: component dscp cannot be enforced" in out


def test_speaker_config_is_printed_from_the_fleet_section(config, capsys):
    code, out, _ = run(capsys, "fleet", "speaker-config", "--config", config)
    assert code == 0
    assert tomllib.loads(out)["neighbors"][0]["config"] == {"neighbor-address": "198.18.0.2", "peer-as": 64513}


@pytest.mark.parametrize("argv, code, text", [
    (["fleet", "status", "--api", "nowhere"], 2, "'nowhere' is not a gobgpd API address"),
    (["fleet", "speaker-config"], 2, "[fleet] asn and router_id are needed"),
    (["fleet", "status", "--config", "/nonexistent/seawall.toml"], 2, "no such file"),
])
def test_bad_input_is_one_line(capsys, argv, code, text):
    got, out, err = run(capsys, *argv)
    assert got == code and out == ""
    assert err.startswith("seawall: error: ") and err.count("\n") == 1 and text in err, err


def test_a_speaker_that_fails_is_one_line_exit_1(tmp_path, monkeypatch, capsys):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "gobgp").write_text('#!/bin/sh\necho \'{"error":"context deadline exceeded"}\' >&2\nexit 1\n')
    (bindir / "gobgp").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    code, out, err = run(capsys, "fleet", "status")
    assert code == 1 and out == ""
    assert err == "seawall: error: gobgpd is not reachable at 127.0.0.1:50051 " \
                  "({\"error\":\"context deadline exceeded\"})\n"


def test_sync_needs_root(monkeypatch, capsys):
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    code, _, err = run(capsys, "fleet", "sync")
    assert code == 1 and "needs root" in err
