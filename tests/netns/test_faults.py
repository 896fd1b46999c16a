"""Faults: the daemon killed mid-attack, bpffs wiped under a corrupt
journal, a state directory that is full or read-only.

Each test builds the three-namespace lab of daemonlab.py (customers, an
attacker, the server with seawall on both of its interfaces), which is
removed afterwards. Floods are trafgen with a packet count and a time
limit, from 198.18.1.66 to 198.18.1.1.

The systemd side of a crash (Restart=on-failure, the watchdog) is
tests/netns/test_systemd.py; the journal's own replay rules are
tests/unit/test_journal.py and tests/bpf/test_restore.py.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import threading
import time

import pytest

from daemonlab import ATTACKER, LAB_CONFIG, SEAWALL, daemon_lab, sh, write_flood_conf



class Events:
    """The daemon's JSON event lines, read from its stderr as they come."""

    def __init__(self, proc: subprocess.Popen):
        self.proc = proc
        self.lines: list = []
        self.events: list = []
        self._t = threading.Thread(target=self._read, daemon=True)
        self._t.start()

    def _read(self):
        for line in self.proc.stderr:
            self.lines.append(line)
            try:
                self.events.append((time.monotonic(), json.loads(line)))
            except ValueError:
                pass

    def kinds(self) -> list:
        return [e.get("event") for _, e in self.events]

    def wait(self, kind: str, timeout: float, **match) -> tuple:
        """(monotonic time it arrived, the event) of the first `kind`."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            for t, e in list(self.events):
                if e.get("event") == kind and all(e.get(k) == v for k, v in match.items()):
                    return t, e
            if self.proc.poll() is not None and not self._t.is_alive():
                break
            time.sleep(0.02)
        raise AssertionError(f"no {kind} event within {timeout} s; the daemon said:\n{''.join(self.lines)[-3000:]}")


@pytest.fixture
def dlab(seawall_env, tmp_path):
    with daemon_lab(dict(os.environ)) as lab:
        lab.cfg = str(tmp_path / "seawall.toml")
        with open(lab.cfg, "w") as f:
            f.write(LAB_CONFIG)
        lab.conf = str(tmp_path / "flood.cfg")
        write_flood_conf(lab.conf)
        lab.paths = seawall_env
        yield lab


def drop_block(lab, iface="swa0") -> int:
    st = json.loads(lab.seawall("stats", "-i", iface, "--json").stdout)
    return st["interfaces"][iface]["reasons"]["drop_block"]["packets"]


def kernel_blocks(lab) -> set:
    return {b["cidr"] for b in json.loads(lab.seawall("block", "list", "--json").stdout)}


def wait_blocked(lab, cidr: str, timeout: float) -> float:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if cidr in kernel_blocks(lab):
            return time.monotonic() - t0
        time.sleep(0.1)
    raise AssertionError(f"{cidr} not blocked within {timeout} s")


# --- SIGKILL mid-attack --------------------------------------------------------------


def test_sigkill_mid_attack_kernel_keeps_dropping_and_restart_is_quick(dlab):
    lab = dlab
    lab.seawall("attach", "sws0")
    lab.seawall("attach", "swa0")
    d1 = lab.daemon(lab.cfg, "sws0", "swa0")
    ev1 = Events(d1)
    ev1.wait("started", 60)
    time.sleep(3.5)  # warm-up on quiet links
    flood = lab.flood(lab.conf, pps=20000, seconds=16)
    took = wait_blocked(lab, f"{ATTACKER}/32", 6)

    d1.send_signal(signal.SIGKILL)
    d1.wait(10)
    assert d1.returncode == -signal.SIGKILL
    t_kill = time.monotonic()
    drops = [drop_block(lab)]
    for _ in range(3):  # no daemon at all for over three seconds (trafgen sends in bursts, about 1/s)
        time.sleep(1.2)
        drops.append(drop_block(lab))
    assert all(b > a for a, b in zip(drops, drops[1:])), f"the kernel stopped dropping with no daemon: {drops}"
    assert f"{ATTACKER}/32" in kernel_blocks(lab)

    t0 = time.monotonic()
    alone_s = t0 - t_kill
    d2 = lab.daemon(lab.cfg, "sws0", "swa0")
    ev2 = Events(d2)
    t_started, started = ev2.wait("started", 30)
    restart_s = t_started - t0
    time.sleep(1.2)
    after = drop_block(lab)
    assert after > drops[-1]
    flood.wait(30)
    d2.send_signal(signal.SIGTERM)
    d2.wait(20)

    print(f"\nattacker blocked {took:.2f} s into the flood; after SIGKILL drop_block went "
          f"{' -> '.join(map(str, drops))} over {alone_s:.1f} s with no daemon; "
          f"restarted daemon ready (started event) {restart_s:.2f} s after exec")
    assert restart_s < 1.0, f"restart took {restart_s:.2f} s"
    assert started["interfaces"] == ["sws0", "swa0"]
    # already attached: the restart reuses the running program, and the
    # engine, seeded from the journal, does not block the attacker again
    kinds = ev2.kinds()
    assert "attached" not in kinds and kinds.count("interface") == 2, kinds
    assert not [e for _, e in ev2.events if e.get("event") == "block"], kinds
    assert d2.returncode == 0 and kinds[-1] == "stopped"


# --- keep_filter_on_exit = false across a crash ------------------------------------------


def attached(lab) -> set:
    st = json.loads(lab.seawall("status", "--json").stdout)
    return {i["interface"] for i in st["interfaces"] if i["state"] == "attached"}


def test_a_stop_detaches_what_the_daemon_attached_even_after_a_crash(dlab, tmp_path):
    """keep_filter_on_exit = false: a stop takes off the filters the daemon
    put on, and only those, also when the run that put them on was killed
    (the ownership is kept in the state directory, not in memory)."""
    lab = dlab
    cfg = str(tmp_path / "detach.toml")
    with open(cfg, "w") as f:
        f.write(LAB_CONFIG.replace("[daemon]\n", "[daemon]\nkeep_filter_on_exit = false\n"))
    lab.seawall("attach", "swa0")  # the operator's: never the daemon's to remove
    d1 = lab.daemon(cfg, "sws0", "swa0")
    ev1 = Events(d1)
    ev1.wait("started", 60)
    ev1.wait("attached", 1, interface="sws0")
    owned = os.path.join(lab.paths.state_dir, "attached-by-daemon.json")
    assert os.stat(owned).st_mode & 0o777 == 0o600, "a state file readable by others"
    d1.send_signal(signal.SIGKILL)
    d1.wait(10)
    assert attached(lab) == {"sws0", "swa0"}

    d2 = lab.daemon(cfg, "sws0", "swa0")
    ev2 = Events(d2)
    ev2.wait("started", 30)
    assert "attached" not in ev2.kinds(), "both were still attached: nothing to load"
    d2.send_signal(signal.SIGTERM)
    d2.wait(20)
    ev2.wait("stopped", 5)
    detached = [e["interface"] for _, e in ev2.events if e.get("event") == "detached"]
    assert detached == ["sws0"], ev2.kinds()
    assert attached(lab) == {"swa0"}
    assert not os.path.exists(os.path.join(lab.paths.state_dir, "attached-by-daemon.json"))


def test_the_daemon_prunes_expired_blocks_by_itself(dlab, tmp_path):
    """Expired blocks stop dropping in the kernel at their time; the
    daemon's housekeeping thread then frees their slots, with no CLI call
    (a `block list` would prune too, so none is made until the event)."""
    lab = dlab
    cfg = str(tmp_path / "housekeeping.toml")
    with open(cfg, "w") as f:
        f.write(LAB_CONFIG.replace("[daemon]\n", '[daemon]\nhousekeeping = "1s"\n'))
    lab.seawall("attach", "sws0")
    d = lab.daemon(cfg, "sws0")
    ev = Events(d)
    ev.wait("started", 60)
    lab.seawall("block", "add", "198.18.1.201", "--ttl", "1s", "--reason", "short")
    lab.seawall("block", "add", "198.18.1.202", "--reason", "kept")
    _, e = ev.wait("housekeeping", 15)
    assert e["pruned"] == 1, e
    d.send_signal(signal.SIGTERM)
    d.wait(20)
    assert kernel_blocks(lab) == {"198.18.1.202/32"}


# --- bpffs wiped, journal damaged ------------------------------------------------------

PING_FROM = "198.18.0.59"  # a customer address of the lab, blocked in the journal


def ping(lab, src: str) -> bool:
    p = sh("nsenter", f"--net=/run/netns/{lab.c}", "ping", "-n", "-q", "-c", "1", "-W", "1", "-I", src,
           "198.18.0.1", check=False)
    return p.returncode == 0


def test_wiped_bpffs_and_damaged_journal_restore_what_is_readable(dlab):
    lab = dlab
    lab.seawall("attach", "sws0")
    lab.seawall("block", "add", PING_FROM, "--reason", "kept")
    lab.seawall("block", "add", "198.18.0.58", "--ttl", "1s", "--reason", "expires")
    lab.seawall("block", "add", "198.18.7.0/24", "--ttl", "1h", "--reason", "kept too")
    lab.seawall("allow", "add", "198.18.0.57", "--reason", "kept")
    journal = lab.paths.journal
    with open(journal, "rb") as f:
        good_lines = f.read().count(b"\n")
    with open(journal, "ab") as f:
        f.write(b"garbage that is not json\n")  # line good+1
        f.write(b'{"v":1,"ts":"2026-01-01T00:00:00Z","op":"block","cidr":"198.18.0.40/32",'
                b'"reason":"fl\xff\xfepped"\n')  # bit-flipped, unterminated string: line good+2
        f.write(b"\0" * 64 + b"\n")  # a block of zeros, as after a crash on some filesystems: good+3
        f.write(b'{"v":1,"ts":"2026-01-01T00:00:00Z","op":"block","cidr":"198.18.0.300/32"}\n')  # good+4
        f.write(b'{"v":1,"ts":"2026-01-01T00:00:00Z","op":"block","cidr":"198.18.0.41/32","expires_at":5}\n')
        f.write(b'{"v":1,"ts":"2026-01-01T00:00:00Z","op":"blo')  # torn last line: good+6
    # as after a reboot: nothing attached, bpffs empty; and the 1s block expires meanwhile
    lab.seawall("detach", "sws0")
    shutil.rmtree(lab.paths.pin_root)
    time.sleep(1.2)

    d = lab.daemon(lab.cfg, "sws0")
    ev = Events(d)
    _, restored = ev.wait("restored", 60)
    _, skipped = ev.wait("journal_skipped", 10)
    ev.wait("started", 30)
    try:
        assert restored["entries"] == 3, restored  # 2 live blocks + 1 allow
        assert restored["ignored"] == 5 + 1, restored  # 5 unreadable lines, 1 bad address
        assert skipped["count"] == 5 and skipped["lines"] == [good_lines + i for i in (1, 2, 3, 5, 6)], skipped
        assert kernel_blocks(lab) == {f"{PING_FROM}/32", "198.18.7.0/24"}
        allows = {a["cidr"] for a in json.loads(lab.seawall("allow", "list", "--json").stdout)}
        assert allows == {"198.18.0.57/32"}
        assert not ping(lab, PING_FROM), "the restored block is not enforced"
        assert ping(lab, "198.18.0.10") and ping(lab, "198.18.0.58")
    finally:
        d.send_signal(signal.SIGTERM)
        d.wait(20)
    assert d.returncode == 0, "".join(ev.lines)[-2000:]


# --- state directory full or read-only -------------------------------------------------

MOUNTS = {
    # a 16 KiB tmpfs, filled up: the lock file still gets an inode, every
    # journal write fails with ENOSPC
    "full": "mount -t tmpfs -o size=16k,mode=0700 tmpfs {d} && "
            "(dd if=/dev/zero of={d}/fill bs=4k 2>/dev/null || true)",
    # the existing state directory, bind-mounted read-only: EROFS
    "read-only": "mount --bind {d} {d} && mount -o remount,bind,ro {d}",
}
ERRORS = {"full": "No space left on device", "read-only": "Read-only file system"}


@pytest.mark.parametrize("how", list(MOUNTS))
def test_state_dir_unwritable_keeps_filtering_and_says_so(dlab, how):
    lab = dlab
    lab.seawall("attach", "sws0")
    lab.seawall("attach", "swa0")
    lab.seawall("block", "add", "198.18.7.0/24", "--reason", "manual, before")  # journal and lock exist
    d = shlex.quote(lab.paths.state_dir)
    script = (MOUNTS[how].format(d=d) + " && exec " +
              " ".join(shlex.quote(a) for a in (SEAWALL, "run", "--config", lab.cfg, "-i", "sws0", "-i", "swa0")))
    # the daemon's own mount namespace: the test's view of the directory stays writable
    proc = lab.start(lab.s, "unshare", "--mount", "--propagation", "private", "sh", "-c", script, env=lab.env)
    ev = Events(proc)
    ev.wait("started", 60)
    time.sleep(3.5)
    flood = lab.flood(lab.conf, pps=20000, seconds=8)
    try:
        wait_blocked(lab, f"{ATTACKER}/32", 6)
        _, unwritable = ev.wait("state_unwritable", 5)
        ev.wait("block", 5, cidr=f"{ATTACKER}/32")
        d0 = drop_block(lab)
        time.sleep(1.2)
        d1 = drop_block(lab)
    finally:
        flood.wait(30)
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)
    print(f"\n{how}: {unwritable}")
    assert ERRORS[how] in unwritable["error"], unwritable
    assert d1 > d0, "the block is not enforced"
    assert proc.returncode == 0, "".join(ev.lines)[-2000:]
    # the decision never reached the journal, which the test side still sees whole
    with open(lab.paths.journal) as f:
        journal = f.read()
    assert ATTACKER not in journal and "198.18.7.0/24" in journal
