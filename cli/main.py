"""The seawall command line: the group, and its one entry point.

Exit status: 0 done, 1 runtime failure (not privileged, kernel refused,
nothing attached), 2 bad usage (bad CIDR, duration or option), 130
interrupted by Ctrl-C. Every error is one line on stderr, and a failed
command changes nothing.

The commands live by group, as click advises for larger applications:
ifaces.py (attach, detach, monitor, status, stats), lists.py (block,
allow), sig.py, service.py (run, config) and tools.py (evaluate, replay,
top, bench); common.py has what they share.
"""

from __future__ import annotations

import sys
from typing import Optional

import click

from seawall.cli import ifaces, lists, serving, service, sig, synproxy, tools
from seawall.cli.fleet import fleet
from seawall.cli.common import PROG, App
from seawall.control.errors import SeawallError, UsageError
from seawall.control.service.logs import under_journald
from seawall.control.state import Paths


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--bpffs", "pin_root", metavar="DIR", envvar="SEAWALL_BPFFS",
              help="bpffs folder of the pinned maps [default: /sys/fs/bpf/seawall; env SEAWALL_BPFFS]")
@click.option("--state-dir", metavar="DIR", envvar="SEAWALL_STATE_DIR",
              help="journal folder [default: /var/lib/seawall; env SEAWALL_STATE_DIR]")
@click.option("--cache-dir", metavar="DIR", envvar="SEAWALL_CACHE_DIR",
              help="compiled programs, to load without clang [default: /var/cache/seawall; env SEAWALL_CACHE_DIR]")
@click.version_option(package_name="seawall", prog_name=PROG)
@click.pass_context
def cli(ctx, pin_root, state_dir, cache_dir):
    """seawall: drop DDoS floods at the NIC with XDP, keep customers served.

    \b
    Examples:
      seawall attach eth0
      seawall block add 198.18.0.66 --ttl 10m --reason "SYN flood"
      seawall block list --json
      seawall stats
    """
    ctx.obj = App(Paths.from_env(pin_root, state_dir, cache_dir))


for module in (ifaces, lists, sig, synproxy, service, tools, serving):
    for command in module.COMMANDS:
        cli.add_command(command)
cli.add_command(fleet)


# click >= 8.2 raises this for a group run without a subcommand; older
# versions print the help and exit 0 instead.
_NO_COMMAND = getattr(click.exceptions, "NoArgsIsHelpError", ())


def _error(line: str) -> None:
    """An error line on stderr; from `seawall run` under systemd, with the
    error priority journald reads (control/service/logs.py), so that
    `journalctl -p err` shows why the service failed."""
    click.echo(("<3>" if under_journald() else "") + line, err=True)


# 128 + SIGINT, the status of a shell command stopped by Ctrl-C.
EXIT_INTERRUPTED = 130


def main(argv: Optional[list] = None) -> int:
    """Run the CLI; every error is one line on stderr."""
    try:
        cli.main(args=argv, prog_name=PROG, standalone_mode=False)
        return 0
    except click.exceptions.Exit as e:
        return e.exit_code
    except click.exceptions.Abort as e:
        # click turns Ctrl-C (after printing a newline to close the
        # terminal's ^C) and EOF at a prompt into Abort.
        if isinstance(e.__cause__, KeyboardInterrupt):
            click.echo(f"{PROG}: interrupted", err=True)
            return EXIT_INTERRUPTED
        click.echo(f"{PROG}: aborted", err=True)
        return 1
    except KeyboardInterrupt:  # outside click's own handler
        click.echo(f"\n{PROG}: interrupted", err=True)
        return EXIT_INTERRUPTED
    except click.UsageError as e:
        cmd = e.ctx.command_path if e.ctx else PROG
        if isinstance(e, _NO_COMMAND):  # its message is the group's whole help text
            msg = "Missing command."
        else:  # some are several lines (a missing choice lists the choices)
            msg = " ".join(line.strip() for line in e.format_message().splitlines() if line.strip())
        _error(f"{PROG}: error: {msg} (see `{cmd} --help`)")
        return 2
    except UsageError as e:
        _error(f"{PROG}: error: {e}")
        return 2
    except SeawallError as e:
        _error(f"{PROG}: error: {e}")
        return 1
    except OSError as e:
        _error(f"{PROG}: error: {e}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
