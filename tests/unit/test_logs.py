"""The daemon's log lines (control/service/logs.py): failures at warning
or error, routine at info, so that `log_level = "warning"` keeps exactly
the failures; a UTC timestamp in the foreground; under journald (stderr
named by JOURNAL_STREAM) the sd-daemon <N> priority prefix instead."""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys

import pytest

from seawall.control.service import logs

DAEMON_SRC = os.path.join(os.path.dirname(logs.__file__), "daemon.py")
GUARD_SRC = os.path.join(os.path.dirname(logs.__file__), "guard.py")

# Runs setup_logging(level) in a fresh interpreter whose stderr is the
# given file, logs one routine event and two failures, and exits.
CHILD = """
import sys
from seawall.control.service import logs
logs.setup_logging(sys.argv[1])
logs.event("started", interfaces=["eth0"])
logs.event("filter_lost", interface="eth0", result="re-attached")
logs.event("journal_skipped", count=2)
"""


def run_child(tmp_path, level: str, journald: bool) -> list:
    err = tmp_path / "stderr"
    with open(err, "w") as f:
        env = dict(os.environ)
        env.pop("JOURNAL_STREAM", None)
        if journald:  # what systemd sets: the device and inode of the stream it gave
            st = os.fstat(f.fileno())
            env["JOURNAL_STREAM"] = f"{st.st_dev}:{st.st_ino}"
        subprocess.run([sys.executable, "-c", CHILD, level], stderr=f, env=env, check=True, timeout=30)
    return err.read_text().splitlines()


def test_foreground_lines_are_json_with_a_utc_timestamp_and_level(tmp_path):
    lines = run_child(tmp_path, "info", journald=False)
    ev = [json.loads(x) for x in lines]
    assert [e["event"] for e in ev] == ["started", "filter_lost", "journal_skipped"]
    assert [e["level"] for e in ev] == ["info", "error", "warning"]
    for e in ev:
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", e["ts"]), e


def test_warning_level_still_shows_the_failures(tmp_path):
    ev = [json.loads(x) for x in run_child(tmp_path, "warning", journald=False)]
    assert [e["event"] for e in ev] == ["filter_lost", "journal_skipped"]


def test_under_journald_lines_carry_the_syslog_priority(tmp_path):
    lines = run_child(tmp_path, "info", journald=True)
    assert [x[:3] for x in lines] == ["<6>", "<3>", "<4>"]
    ev = [json.loads(x[3:]) for x in lines]
    assert "ts" not in ev[0] and ev[1]["event"] == "filter_lost"


def test_journal_stream_of_another_file_gets_no_prefix(tmp_path, monkeypatch):
    other = tmp_path / "other"
    other.write_text("")
    st = os.stat(other)
    monkeypatch.setenv("JOURNAL_STREAM", f"{st.st_dev}:{st.st_ino}")
    with open(tmp_path / "mine", "w") as f:
        assert not logs.under_journald(f)
    with open(other) as f:
        assert logs.under_journald(f)
    monkeypatch.setenv("JOURNAL_STREAM", "garbage")
    with open(other) as f:
        assert not logs.under_journald(f)


@pytest.mark.parametrize("src", [DAEMON_SRC, GUARD_SRC])
def test_every_failure_the_daemon_logs_has_a_failure_level(src):
    """An event named like a failure (…_failed, …_unwritable, …_lost …)
    must be listed in FAILURES, or it would be logged at info again."""
    with open(src) as f:
        kinds = set(re.findall(r'event\(\s*"([a-z_]+)"', f.read()))
    assert kinds, src
    failing = {k for k in kinds if re.search(r"_(failed|unwritable|ignored|skipped|lost|unrecoverable|maps|"
                                             r"not_compacted)$", k)}
    assert failing, kinds
    assert failing <= set(logs.FAILURES), failing - set(logs.FAILURES)
    assert all(logs.FAILURES[k] >= logging.WARNING for k in failing)


def test_a_cli_error_under_journald_is_at_error_priority(tmp_path):
    """`seawall run` failing under systemd: its one-line error reaches
    journald at priority 3 (`journalctl -p err` shows it), and only there."""
    seawall = os.path.join(os.path.dirname(sys.executable), "seawall")
    for journald in (True, False):
        err = tmp_path / f"stderr-{journald}"
        with open(err, "w") as f:
            env = dict(os.environ)
            env.pop("JOURNAL_STREAM", None)
            if journald:
                st = os.fstat(f.fileno())
                env["JOURNAL_STREAM"] = f"{st.st_dev}:{st.st_ino}"
            p = subprocess.run([seawall, "run", "--interval", "1ms"], stderr=f, env=env, timeout=60)
        assert p.returncode == 2
        text = err.read_text()
        assert text.startswith("<3>seawall: error: " if journald else "seawall: error: "), text
