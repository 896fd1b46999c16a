"""The command line without root: usage errors, exit codes, help texts and
the root check. Nothing here may reach the kernel, even when the suite runs
as root in CI: os.geteuid() reports an unprivileged user, the paths point
into tmp_path, and the modules that touch BPF are replaced by stubs that
fail the test if they are ever used."""

from __future__ import annotations

import os
import sys
import types

import click
import pytest
from click.testing import CliRunner

from seawall.cli.main import cli, main
from seawall.control.errors import SeawallError, UsageError


class _Forbidden:
    def __init__(self, *a, **kw):
        raise AssertionError("the unit tier must not reach the kernel")


@pytest.fixture(autouse=True)
def unprivileged(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    monkeypatch.setenv("SEAWALL_BPFFS", str(tmp_path / "bpffs"))
    monkeypatch.setenv("SEAWALL_STATE_DIR", str(tmp_path / "state"))
    for name, attrs in (("seawall.control.lists", ["ListStore"]), ("seawall.control.ifaces", ["Interfaces"]),
                        ("seawall.control.daemon", ["Daemon", "setup_logging"])):
        stub = types.ModuleType(name)
        for attr in attrs:
            setattr(stub, attr, _Forbidden)
        monkeypatch.setitem(sys.modules, name, stub)
    yield
    assert list(tmp_path.iterdir()) == [], "a command wrote state"


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_error_line(err: str) -> str:
    assert err.startswith("seawall: error: "), err
    assert err.endswith("\n") and err.count("\n") == 1, err
    return err


def invoke(*argv):
    return CliRunner().invoke(cli, list(argv), prog_name="seawall")


# --- usage errors: exit 2, one line ------------------------------------------

USAGE_ERRORS = {
    "bad CIDR": (["block", "add", "300.1.2.3"], "300.1.2.3"),
    "bad CIDR among good ones": (["block", "add", "198.18.0.5", "198.18.0.0/33"], "198.18.0.0/33"),
    "host bits": (["block", "add", "198.18.0.1/24"], "did you mean 198.18.0.0/24?"),
    "bad CIDR, allow": (["allow", "add", "nonsense"], "nonsense"),
    "bad CIDR, block del": (["block", "del", "2001:db8::g"], "2001:db8::g"),
    "fractional ttl": (["block", "add", "198.18.0.5", "--ttl", "1.5"], "whole seconds"),
    "millisecond ttl": (["sig", "add", "--proto", "udp", "--sport", "161", "--ttl", "500ms"], "whole seconds"),
    "bad ttl, sig": (["sig", "add", "--proto", "udp", "--sport", "161", "--ttl", "soon"], "not a duration"),
    "zero ttl": (["block", "add", "198.18.0.5", "--ttl", "0s"], "--ttl"),
    "negative ttl": (["block", "add", "198.18.0.5", "--ttl=-5m"], "--ttl"),
    "ttl over a year": (["block", "add", "198.18.0.5", "--ttl", "400d"], "longer than a year"),
    "ttl garbage": (["block", "add", "198.18.0.5", "--ttl", "soon"], "--ttl"),
    "unknown command": (["blok"], "blok"),
    "unknown subcommand": (["block", "remove", "198.18.0.5"], "remove"),
    "unknown option": (["block", "add", "198.18.0.5", "--tll", "10m"], "--tll"),
    "missing CIDR": (["block", "add"], "CIDR"),
    "missing CIDR, allow del": (["allow", "del"], "CIDR"),
    "missing iface": (["attach"], "IFACE"),
    "missing state": (["monitor", "eth0"], "on|off"),  # click lists the choices on several lines
    "bad state": (["monitor", "eth0", "maybe"], "maybe"),
    "bad iface": (["attach", "eth0/1"], "eth0/1"),
    "iface too long": (["detach", "a-very-long-ifname"], "not a valid interface name"),
    "bad mode": (["attach", "eth0", "--mode", "turbo"], "turbo"),
    "missing ttl value": (["block", "add", "198.18.0.5", "--ttl"], "--ttl"),
    "signature without --proto": (["sig", "add", "--sport", "161"], "--proto"),
    "signature ttl": (["sig", "add", "--proto", "udp", "--sport", "161", "--ttl", "1.5"], "--ttl"),
    # --reason is checked by its type, the same for every list
    "reason with a newline": (["block", "add", "198.18.0.5", "--reason", "a\nb"], "--reason"),
    "reason too long": (["allow", "add", "198.18.0.5", "--reason", "x" * 257], "--reason"),
    "unknown source": (["block", "list", "--source", "daemon"], "--source"),
    "unknown source, allow": (["allow", "list", "--source", "fleet"], "--source"),
    "which without an address": (["block", "which"], "ADDRESS"),
    "which a bad address": (["allow", "which", "198.18.0.300"], "198.18.0.300"),
    "flush takes no address": (["allow", "flush", "198.18.0.5"], "198.18.0.5"),
    "signature reason with a control character": (["sig", "add", "--proto", "udp", "--sport", "161",
                                                   "--reason", "a\x1bb"], "--reason"),
}

# caught by the commands themselves, before anything is opened
COMMAND_USAGE_ERRORS = {
    "v4 /0": (["block", "add", "0.0.0.0/0"], "--force"),
    "v6 /0": (["block", "add", "::/0"], "--force"),
    "v4 /7": (["block", "add", "198.0.0.0/7"], "--force"),
    "v6 /15": (["block", "add", "2000::/15"], "--force"),
    "allow v4 /0": (["allow", "add", "0.0.0.0/0"], "0.0.0.0/0 covers a huge part of the Internet; add --force"),
    "allow v6 /0": (["allow", "add", "::/0"], "::/0 covers a huge part of the Internet; add --force"),
    "allow v4 /7": (["allow", "add", "198.0.0.0/7"], "--force"),
    "allow v6 /15": (["allow", "add", "2000::/15"], "--force"),
    "allow huge prefix after a good one": (["allow", "add", "198.18.0.5", "0.0.0.0/0"], "0.0.0.0/0"),
    "mapped /96 is the IPv4 /0": (["block", "add", "::ffff:0:0/96"], "0.0.0.0/0 covers"),
    "mapped /100, allow": (["allow", "add", "::ffff:0:0/100"], "0.0.0.0/4 covers"),
    "huge prefix after a good one": (["block", "add", "198.18.0.5", "0.0.0.0/0", "--ttl", "1h"], "0.0.0.0/0"),
    "signature on a whole protocol": (["sig", "add", "--proto", "udp"], "whole protocol"),
    "icmp type on udp": (["sig", "add", "--proto", "udp", "--icmp-type", "3"], "--proto icmp"),
    "ports on icmp": (["sig", "add", "--proto", "icmp", "--dport", "3"], "ICMP has no ports"),
    "fragmentation needed": (["sig", "add", "--proto", "icmp", "--icmp-type", "3", "--icmp-code", "4"],
                             "path MTU discovery"),
    "every unreachable": (["sig", "add", "--proto", "icmp", "--icmp-type", "3"], "add --force"),
    "any icmp of a length": (["sig", "add", "--proto", "icmp", "--len", "500-600"], "path MTU"),
    "packet too big": (["sig", "add", "--proto", "icmpv6", "--icmp-type", "2"], "path MTU"),
}


@pytest.mark.parametrize("case", list(USAGE_ERRORS) + list(COMMAND_USAGE_ERRORS), ids=str)
def test_usage_error_via_main(case, capsys):
    argv, needle = USAGE_ERRORS.get(case) or COMMAND_USAGE_ERRORS[case]
    code, out, err = run(capsys, *argv)
    assert code == 2
    assert out == ""
    assert needle in assert_one_error_line(err)


@pytest.mark.parametrize("case", USAGE_ERRORS, ids=str)
def test_usage_error_via_cli_runner(case):
    argv, needle = USAGE_ERRORS[case]
    result = invoke(*argv)
    assert result.exit_code == 2, result.output
    assert needle in result.output
    assert "Error:" in result.output


@pytest.mark.parametrize("case", COMMAND_USAGE_ERRORS, ids=str)
def test_command_usage_error_via_cli_runner(case):
    """Outside main() the project's UsageError propagates; main() turns it
    into exit status 2 (test above)."""
    argv, needle = COMMAND_USAGE_ERRORS[case]
    result = invoke(*argv)
    assert isinstance(result.exception, UsageError), result.output
    assert needle in str(result.exception)
    assert result.exit_code != 0


def test_host_bits_error_names_the_fix(capsys):
    code, _, err = run(capsys, "block", "add", "2001:db8::1/64")
    assert code == 2
    assert "did you mean 2001:db8::/64?" in assert_one_error_line(err)


GROUPS = [()] + [(n,) for n, c in sorted(cli.commands.items()) if isinstance(c, click.Group)]


@pytest.mark.skipif(not hasattr(click.exceptions, "NoArgsIsHelpError"),
                    reason="click < 8.2 prints the help and exits 0")
@pytest.mark.parametrize("path", GROUPS, ids=lambda p: " ".join(("seawall",) + p))
def test_group_without_command(path, capsys):
    code, out, err = run(capsys, *path)
    assert code == 2
    assert out == ""
    assert "Missing command" in assert_one_error_line(err)
    assert f"`{' '.join(('seawall',) + path)} --help`" in err


@pytest.mark.parametrize("argv", [
    ["block", "add", "0.0.0.0/0", "--force"],
    ["block", "add", "::/0", "--force"],
    ["block", "add", "10.0.0.0/8"],  # the limits themselves need no --force
    ["block", "add", "2001::/16"],
    ["allow", "add", "0.0.0.0/0", "--force"],
    ["allow", "add", "::/0", "--force"],
    ["allow", "add", "10.0.0.0/8"],
    ["allow", "add", "2001::/16"],
])
def test_force_or_limit_passes_the_guard(argv, capsys):
    # past the guard the next stop is the root check: exit 1, not 2
    code, _, err = run(capsys, *argv)
    assert code == 1
    assert "root" in assert_one_error_line(err)


@pytest.mark.parametrize("argv, stored", [
    (["block", "add", "::ffff:198.18.0.9"], "198.18.0.9/32"),
    (["block", "add", "::ffff:198.18.0.0/120", "--ttl", "10m"], "198.18.0.0/24"),
    (["block", "del", "::FFFF:C612:0009"], "198.18.0.9/32"),
    (["allow", "add", "::ffff:198.18.0.0/124"], "198.18.0.0/28"),
    (["allow", "del", "::ffff:198.18.0.0/124"], "198.18.0.0/28"),
    (["block", "which", "::ffff:198.18.0.77"], "198.18.0.77/32"),
    (["block", "add", "::ffff:0:0/96", "--force"], "0.0.0.0/0"),
])
def test_mapped_addresses_are_taken_as_ipv4(argv, stored, capsys):
    """One line on stderr says so; the command then goes on (here to the
    root check) with the IPv4 prefix."""
    code, out, err = run(capsys, *argv)
    note, error = err.splitlines()
    assert note.startswith("note: ") and f"taken as IPv4 {stored}" in note
    assert code == 1 and "needs root" in error


def test_unmapped_addresses_say_nothing(capsys):
    code, _, err = run(capsys, "block", "add", "2001:2::9", "198.18.0.9", "::198.18.0.9")
    assert code == 1 and "note" not in err
    assert_one_error_line(err)


def test_duration_type_bounds():
    from seawall.cli.params import DURATION, DurationType

    interval = DurationType(subsecond=True, least=0.1, most=10)
    assert interval.convert("250ms", None, None) == 0.25
    assert interval.convert("0.5", None, None) == 0.5
    assert interval.convert("10s", None, None) == 10
    for bad, words in (("50ms", "not between 100ms and 10s"), ("11", "not between"), ("fast", "not a duration")):
        with pytest.raises(click.BadParameter, match=words):
            interval.convert(bad, None, None)
    assert DURATION.convert("90", None, None) == 90 == DURATION.convert("1m30s", None, None)
    with pytest.raises(click.BadParameter, match="whole seconds"):
        DURATION.convert("250ms", None, None)


# --- not root: exit 1, nothing created ---------------------------------------

def test_block_add_needs_root(capsys, tmp_path):
    code, out, err = run(capsys, "block", "add", "198.18.0.5")
    assert code == 1
    assert out == ""
    msg = assert_one_error_line(err)
    assert "root" in msg and "sudo" in msg
    assert "`seawall block add`" in msg
    assert list(tmp_path.iterdir()) == []


PRIVILEGED = [
    ["attach", "eth0"], ["attach", "eth0", "--mode", "generic", "--monitor"], ["detach", "eth0"],
    ["monitor", "eth0", "on"], ["status"], ["status", "--json"], ["stats"], ["stats", "-i", "eth0", "--json"],
    ["block", "add", "198.18.0.5", "2001:2::/48", "--ttl", "10m", "--reason", "test"],
    ["block", "del", "198.18.0.5"], ["block", "list"], ["block", "list", "--json"], ["block", "flush"],
    ["allow", "add", "198.18.0.0/28"], ["allow", "del", "198.18.0.0/28"], ["allow", "list", "--json"],
    ["allow", "flush"], ["block", "list", "--source", "auto"], ["allow", "list", "--source", "manual", "--json"],
    ["block", "which", "198.18.0.77"], ["allow", "which", "2001:2::1", "--json"],
    ["block", "add", "198.18.0.5", "--ttl", "90"],  # a plain number is seconds
    ["block", "add", "198.18.0.5", "--ttl", "1h30m"],
    ["sig", "add", "--proto", "udp", "--sport", "161", "--ttl", "1h"], ["sig", "list"], ["sig", "del", "0"],
    ["sig", "flush"], ["run", "-i", "eth0", "--cycles", "1"],
]


@pytest.mark.parametrize("argv", PRIVILEGED, ids=" ".join)
def test_every_command_that_changes_or_reads_state_needs_root(argv, capsys, tmp_path):
    code, out, err = run(capsys, *argv)
    assert code == 1
    assert out == ""
    assert "needs root" in assert_one_error_line(err)
    assert list(tmp_path.iterdir()) == []


def test_root_check_via_cli_runner(tmp_path):
    result = invoke("block", "add", "198.18.0.5")
    assert result.exit_code == 1
    assert isinstance(result.exception, SeawallError)
    assert "root" in str(result.exception)
    assert list(tmp_path.iterdir()) == []


def test_state_paths_come_from_the_environment(tmp_path):
    seen = {}

    @cli.command("_probe", hidden=True)
    @click.pass_obj
    def probe(app):
        seen["paths"] = app.paths

    try:
        assert invoke("_probe").exit_code == 0
        assert seen["paths"].pin_root == str(tmp_path / "bpffs")
        assert seen["paths"].state_dir == str(tmp_path / "state")
        assert invoke("--bpffs", "/x", "--state-dir", "/y", "_probe").exit_code == 0
        assert (seen["paths"].pin_root, seen["paths"].state_dir) == ("/x", "/y")
    finally:
        cli.commands.pop("_probe")


# --- help ---------------------------------------------------------------------

def _walk(group, path=()):
    for name, cmd in sorted(group.commands.items()):
        yield path + (name,)
        if isinstance(cmd, click.Group):
            yield from _walk(cmd, path + (name,))


COMMANDS = [()] + list(_walk(cli))


def test_every_command_is_walked():
    assert {(), ("allow",), ("block",)} <= set(GROUPS)
    assert {("attach",), ("detach",), ("monitor",), ("status",), ("stats",), ("block",), ("allow",),
            ("block", "add"), ("block", "del"), ("block", "list"), ("block", "flush"),
            ("allow", "add"), ("allow", "del"), ("allow", "list"), ("allow", "flush"),
            ("block", "which"), ("allow", "which")} <= set(COMMANDS)


@pytest.mark.parametrize("path", COMMANDS, ids=lambda p: " ".join(p) or "seawall")
def test_help(path, capsys):
    code, out, err = run(capsys, *path, "--help")
    assert code == 0
    assert err == ""
    assert out.startswith(f"Usage: {' '.join(('seawall',) + path)} ")
    assert "Example" in out


@pytest.mark.parametrize("path", COMMANDS, ids=lambda p: " ".join(p) or "seawall")
def test_help_via_cli_runner(path):
    result = invoke(*path, "-h")
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"Usage: {' '.join(('seawall',) + path)} ")
    assert "Example" in result.output


def test_version(capsys):
    code, out, _ = run(capsys, "--version")
    assert code == 0
    assert out.startswith("seawall, version ")


# --- Ctrl-C: exit 130, one short line, no traceback ---------------------------

def _raise(exc):
    def callback(*args, **kwargs):
        raise exc
    return callback


@pytest.mark.parametrize("exc, code, line", [
    (KeyboardInterrupt, 130, "seawall: interrupted"),
    (click.Abort, 1, "seawall: aborted"),  # a declined prompt stays a runtime failure
], ids=["ctrl-c", "abort"])
def test_interrupt_exits_130(exc, code, line, capsys, monkeypatch):
    check = cli.commands["config"].commands["check"]
    monkeypatch.setattr(check, "callback", _raise(exc))
    with pytest.raises(SystemExit) as e:
        sys.exit(main(["config", "check", "seawall.toml"]))  # as the console script does
    assert e.value.code == code
    out, err = capsys.readouterr()
    assert out == ""
    assert "Traceback" not in err
    assert [x for x in err.splitlines() if x] == [line]  # click's newline after ^C, then one line


def test_real_sigint_exits_130(tmp_path):
    """A real SIGINT in the middle of a command, through sys.exit(main())."""
    import subprocess
    import textwrap

    script = textwrap.dedent("""
        import os, signal, sys
        from seawall.cli.main import cli, main
        # as at a terminal: a job a shell ran in the background (as a CI
        # runner may) inherits SIGINT ignored, and Python keeps it so
        signal.signal(signal.SIGINT, signal.default_int_handler)
        def check(file):
            os.kill(os.getpid(), signal.SIGINT)
            signal.pause()  # not reached: the signal is handled on return from kill
        cli.commands["config"].commands["check"].callback = check
        sys.exit(main(["config", "check", "seawall.toml"]))
    """)
    p = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                       cwd=tmp_path, env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
    assert p.returncode == 130, p.stderr
    assert p.stdout == ""
    assert "Traceback" not in p.stderr
    assert p.stderr.strip() == "seawall: interrupted"


def test_evaluate_says_which_scenario_runs_on_a_terminal_only(monkeypatch):
    import io

    from seawall.cli import tools

    class Tty(io.StringIO):
        def isatty(self):
            return True

    tty = Tty()
    monkeypatch.setattr(sys, "stderr", tty)
    progress = tools._progress("evaluate", quiet=False)
    progress.say("scenario 2 of 8: botnet")
    assert tty.getvalue() == "\revaluate: scenario 2 of 8: botnet\x1b[K"
    progress.done()
    assert tty.getvalue().endswith("\r\x1b[K")  # the line cleared at the end
    assert tools._progress("evaluate", quiet=True) is None  # --json
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    assert tools._progress("evaluate", quiet=False) is None  # not a terminal
