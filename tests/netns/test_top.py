"""`seawall top` in a real terminal (tmux): it draws the live view with the
attached interface, redraws, and quits cleanly on q and on Ctrl-C."""

from __future__ import annotations

import os
import shlex
import subprocess
import time
import uuid

import pytest

from daemonlab import SEAWALL, daemon_lab


@pytest.fixture
def dlab(seawall_env):
    with daemon_lab(dict(os.environ)) as lab:
        yield lab


def tmux(*args, check=True):
    return subprocess.run(["tmux", *args], capture_output=True, text=True, timeout=10, check=check)


def screen(session):
    return tmux("capture-pane", "-p", "-t", session).stdout


def wait_screen(session, needle, timeout=10.0):
    end = time.monotonic() + timeout
    text = ""
    while time.monotonic() < end:
        text = screen(session)
        if needle in text:
            return text
        time.sleep(0.2)
    raise AssertionError(f"{needle!r} never appeared; screen:\n{text}")


@pytest.mark.parametrize("quit_key", ["q", "C-c"])
def test_top_draws_and_quits(dlab, quit_key):
    lab = dlab
    lab.seawall("attach", "sws0")
    lab.seawall("block", "add", "198.18.0.77", "--reason", "top test")
    session = f"swt-top-{uuid.uuid4().hex[:6]}"
    env = " ".join(f"{k}={shlex.quote(v)}" for k, v in lab.env.items() if k.startswith("SEAWALL_"))
    cmd = f"env {env} nsenter --net=/run/netns/{lab.s} {SEAWALL} top --interval 0.3; echo TOP-EXITED-$?"
    tmux("new-session", "-d", "-s", session, "-x", "120", "-y", "40", cmd + "; sleep 30")
    try:
        first = wait_screen(session, "ENTROPY")
        assert "sws0" in first and "TOP SOURCES" in first and "RECENT DECISIONS" in first
        assert "198.18.0.77/32" in first  # the manual block, from the journal
        clock = first.splitlines()[0][:8]
        time.sleep(1.5)
        assert screen(session).splitlines()[0][:8] != clock, "the view did not redraw"
        tmux("send-keys", "-t", session, quit_key)
        after = wait_screen(session, "TOP-EXITED-0")
        assert "ENTROPY" not in after, "curses screen left behind"
    finally:
        tmux("kill-session", "-t", session, check=False)
