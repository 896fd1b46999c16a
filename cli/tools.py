"""The tools around the filter: evaluate, replay, top, bench."""

from __future__ import annotations

import json
import os
import sys

import click

from seawall.cli.common import emit_json, pass_app
from seawall.cli.params import DurationType
from seawall.control.errors import SeawallError, UsageError


@click.command()
@click.option("--seed", type=int, default=1, show_default=True)
@click.option("--interval", type=DurationType(subsecond=True, least=0.05, most=10), default=0.25, show_default=True,
              metavar="DURATION", help="cycle length (250ms, 0.5, 1s)")
@click.option("--json", "as_json", is_flag=True)
@click.option("--wire", is_flag=True,
              help="on the wire instead: the real daemon in veth namespaces, real customers and floods (root)")
@click.option("--scenario", "scenarios", multiple=True, metavar="NAME",
              help="--wire: run only this scenario (repeatable) [default: the whole matrix]")
@click.option("--runs", type=click.IntRange(1, 100), metavar="N",
              help="--wire: runs per scenario [default: 5; 1 with --quick]")
@click.option("--quick", is_flag=True, help="--wire: the short subset for CI (about 2 minutes)")
@click.option("--pps", type=click.IntRange(1000, 200000), default=40000, show_default=True,
              help="--wire: the floods' rate, packets/s")
@click.option("--captures", "capture_dir", envvar="SEAWALL_CAPTURES", metavar="DIR",
              help="--wire: the folder of the two real captures [default: shared/captures beside the "
                   "checkout; env SEAWALL_CAPTURES]")
@click.option("--seawall", "seawall_exe", metavar="PATH", type=click.Path(dir_okay=False),
              help="--wire: the seawall to evaluate [default: the one beside this Python]")
@click.option("--keep", is_flag=True, help="--wire: keep the samples and logs (their folder is printed)")
@click.option("--fastnetmon", is_flag=True,
              help="--wire: also run FastNetMon Community on the lab's port mirror, and report when it would have "
                   "blackholed the victim")
def evaluate(seed, interval, as_json, wire, scenarios, runs, quick, pps, capture_dir, seawall_exe, keep, fastnetmon):
    """Run the evaluation harness: simulated legitimate traffic and attacks
    through the real scoring engine. No root needed.

    With --wire: the real daemon (`seawall run`, default settings) in veth
    namespaces against real traffic, judged by counters that are not
    seawall's (the protected namespace's taps and /proc/net/snmp, the
    sender's counters, the customers' own results). Needs root.

    \b
    Examples:
      seawall evaluate --seed 2
      sudo seawall evaluate --wire --quick
      sudo seawall evaluate --wire --scenario botnet --scenario syn --runs 3 --json
      sudo seawall evaluate --wire --fastnetmon --runs 5
    """
    if wire:
        _evaluate_wire(scenarios, runs, quick, pps, capture_dir, seawall_exe, keep, as_json, fastnetmon)
        return
    if scenarios or runs or quick or seawall_exe or keep or fastnetmon:
        raise UsageError("--scenario, --runs, --quick, --seawall, --keep and --fastnetmon go with --wire")
    from seawall.control.tools import harness

    progress = _progress("evaluate", as_json)
    try:
        results = harness.run_all(seed=seed, dt=interval, say=progress and progress.say)
    finally:
        if progress is not None:
            progress.done()
    if as_json:
        emit_json([r.to_json() for r in results])
    else:
        click.echo(harness.table(results))
    if not all(r.ok for r in results):
        raise SeawallError("a scenario missed its bound")


def _evaluate_wire(names, runs, quick, pps, capture_dir, seawall_exe, keep, as_json, fastnetmon=False) -> None:
    import shutil
    import time

    from seawall.control.tools.wire import floods, report, runner, scenarios

    try:
        scs = scenarios.select(tuple(names), quick, pps)
    except ValueError as e:
        raise UsageError(f"--scenario: {e}") from None
    exe = seawall_exe or runner.default_seawall()
    capture_dir = capture_dir or floods.default_capture_dir()
    try:
        runner.check_tools(scs, capture_dir, exe, fastnetmon)
    except RuntimeError as e:
        raise SeawallError(str(e)) from None
    n = runs or (1 if quick else 5)
    opts = runner.Options(seawall=exe, workdir=runner.workdir(), capture_dir=capture_dir,
                          say=lambda m: click.echo(f"wire: {m}", err=True), fastnetmon=fastnetmon)
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    t = time.monotonic()
    try:
        results = runner.run_matrix(scs, n, opts)
    finally:
        if keep:
            click.echo(f"wire: samples and logs kept in {opts.workdir}", err=True)
        else:
            shutil.rmtree(opts.workdir, ignore_errors=True)
    command = " ".join(["seawall evaluate", *sys.argv[sys.argv.index("evaluate") + 1:]]) \
        if "evaluate" in sys.argv else "seawall evaluate --wire"
    doc = report.document(results, command, exe, started, time.monotonic() - t)
    if as_json:
        emit_json(doc)
    else:
        click.echo(report.table(results))
        click.echo(f"\n{len(results)} runs in {doc['seconds']:.0f} s")


@click.command()
@click.argument("capture", type=click.Path(dir_okay=False))
@click.option("--config", "config_path", type=click.Path(dir_okay=False), metavar="FILE", help="TOML config")
@click.option("--interval", default="100ms", show_default=True, metavar="DURATION",
              help="cycle length on the capture's clock")
@click.option("--background", type=click.FloatRange(0, 200000), default=1000.0, show_default=True, metavar="PPS",
              help="legitimate background mixed in (attack captures carry none)")
@click.option("--warmup", type=DurationType(subsecond=True, most=600, zero=True), default=30.0, show_default=True,
              metavar="DURATION",
              help="background alone before the capture, for the baseline")
@click.option("--seed", type=int, default=1, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="print one JSON object, with the per-cycle timeline")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False), metavar="FILE",
              help="also draw the timeline as a PNG: packets/s by verdict, entropy, score, decisions")
@click.option("--quiet", "-q", is_flag=True, help="no progress line (it is shown only on a terminal)")
@pass_app
def replay(app, capture, config_path, interval, background, warmup, seed, as_json, plot_path, quiet):
    """Run a pcap/pcapng capture through the real XDP program (BPF_PROG_TEST_RUN)
    and the real scoring engine, on the capture's own clock, and report what
    would have been detected and dropped. Uses scratch maps: the host's
    lists are not touched.

    The capture is streamed (memory does not grow with it). Link types:
    Ethernet, Linux cooked SLL and SLL2 (`tcpdump -i any`; the host's own
    outgoing packets are left out), raw IP. On a terminal, a progress line
    shows packets, share and rate on stderr (not with --json or --quiet).

    \b
    Examples:
      seawall replay attack.pcap --json
      seawall replay attack.pcap --plot attack.png
      seawall replay any.pcap --quiet     # from tcpdump -i any -w any.pcap
    """
    from seawall.control import config as configmod
    from seawall.control.tools import pcap as pcapmod
    from seawall.control.tools.replay import check
    from seawall.control.tools.replay import replay as run_replay

    if plot_path is not None:  # before the replay, which takes a while
        folder = os.path.dirname(os.path.abspath(plot_path))
        if not os.path.isdir(folder):
            raise UsageError(f"--plot: {plot_path}: no such directory {folder}")
        if not os.access(folder, os.W_OK):
            raise UsageError(f"--plot: {plot_path}: directory {folder} is not writable")
    cfg = configmod.load(config_path)
    try:
        dt = configmod.from_dict({"daemon": {"interval": interval}}, "--interval").daemon.interval
    except configmod.ConfigError as e:
        raise UsageError(str(e).replace("--interval: [daemon] interval: ", "--interval: ")) from None
    progress = _progress("replay", quiet or as_json)
    try:
        # validate the whole capture before compiling anything: one streaming pass
        summary = check(capture, pcapmod.scan(capture, progress and progress.reading))
        app.need_root()
        res = run_replay(capture, cfg, dt, background, warmup, seed, scratch_prefix=app.paths.pin_root,
                         summary=summary, progress=progress)
    finally:
        if progress is not None:
            progress.done()
    if as_json:
        emit_json(res.to_json())
    else:
        _replay_summary(res)
    if plot_path is not None:
        from seawall.control.tools import plot

        plot.write_png(plot_path, plot.render(res, cfg.detection.threshold))
        click.echo(f"plot: {plot_path}", err=as_json)


def _progress(what: str, quiet: bool):
    """A progress line on stderr when it is a terminal (replay.Progress),
    else None."""
    if quiet or not sys.stderr.isatty():
        return None
    from seawall.control.tools.replay import Progress

    return Progress(lambda s: (sys.stderr.write(s), sys.stderr.flush()), what)


def _replay_summary(res) -> None:
    click.echo(f"{res.capture}: {res.packets} packets over {res.span:.2f} s"
               + (f" ({res.outgoing} the capturing host sent left out)" if res.outgoing else ""))
    if res.detected_at is None:
        click.echo("not detected")
    else:
        click.echo(f"alarm at {res.detected_at:.2f} s; first decision at "
                   f"{'-' if res.first_action_at is None else f'{res.first_action_at:.2f} s'}")
    click.echo(f"dropped {res.dropped} of {res.packets} capture packets ({res.dropped / res.packets:.1%}); "
               f"{res.dropped_after_action:.1%} of those after the first decision")
    click.echo(f"background: {res.background_dropped} of {res.background_packets} legitimate packets dropped")
    for d in res.decisions:
        click.echo(f"  {d['t']:8.2f} s  {d['action']:9}  {d['what']}  ({d['reason']})")


@click.command()
@click.option("--interval", type=DurationType(subsecond=True, least=0.2, most=10), default=1.0, show_default=True,
              metavar="DURATION")
@click.option("--metrics", "metrics_url", default="http://127.0.0.1:9477/metrics", show_default=True, metavar="URL",
              help="the daemon's metrics, for its score and alarm")
@pass_app
def top(app, interval, metrics_url):
    """Live view: rates by verdict, entropy per feature, top sources, the
    daemon's score and recent decisions. q or Ctrl-C quits.

    \b
    Example:
      seawall top --interval 0.5
    """
    app.need_root()
    if not sys.stdout.isatty():
        raise UsageError("seawall top needs a terminal (use `seawall stats --json` in scripts)")
    from seawall.control.tools.top import run as run_top

    run_top(app.paths, interval, metrics_url)


@click.command()
@click.option("--json", "as_json", is_flag=True, help="print one JSON object (progress goes to stderr)")
@click.option("--quick", is_flag=True,
              help="small repeats and tables: a smoke test of the bench itself")
@click.option("--full", is_flag=True,
              help="also the scoring cycle over 1M sources (maps of a million entries: not for CI)")
@click.option("--repeat", type=click.IntRange(1, 2**31), metavar="N",
              help="BPF_PROG_TEST_RUN repeats per run [default: 1000000; 20000 with --quick]")
@click.option("--runs", type=click.IntRange(1, 101), metavar="N",
              help="runs per case, the median is reported [default: 5; 3 with --quick]")
@click.option("--profile", is_flag=True,
              help="also time seawall with each part compiled out, to show where the time goes")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False), metavar="FILE",
              help="also draw ns per packet by case (floor, xdp-filter, seawall) as a PNG")
@click.option("--save", "save_path", type=click.Path(dir_okay=False), metavar="FILE",
              help="also write the JSON report to FILE")
@click.option("--seed", type=int, default=1, show_default=True, help="seed of the address lists and traffic")
@click.option("--syn-flood", type=click.IntRange(10_000, 10_000_000), metavar="N",
              help="also the host's CPU per million spoofed SYNs on veth, kernel syncookies against XDP's, N SYNs "
                   "a flood [default with --full: 1000000]")
def bench(as_json, quick, full, repeat, runs, profile, plot_path, save_path, seed, syn_flood):
    """Measure seawall side by side with the empty program and xdp-filter:
    per-packet cost (BPF_PROG_TEST_RUN), the daemon's scoring cycle and
    bulk list install, and memory. (scripts/bench adds customers served
    during a real flood on veth.)

    Everything runs in scratch maps; the host's lists are never touched.
    A missed target is reported, not an error. BENCHMARKS.md explains the
    method.

    \b
    Examples:
      seawall bench
      seawall bench --profile --plot docs/bench.png
      seawall bench --quick --json
      seawall bench --quick --syn-flood 200000
    """
    from seawall.control.tools import bench as benchmod

    if os.geteuid() != 0:
        raise SeawallError("`seawall bench` needs root (BPF and bpffs); run it with sudo")
    p = benchmod.Params.make(quick=quick, full=full, repeat=repeat, runs=runs, profile=profile or None, seed=seed,
                             syn_flood=syn_flood)
    args = sys.argv[sys.argv.index("bench") + 1:] if "bench" in sys.argv else []
    command = " ".join(["seawall bench", *args])

    def say(msg: str) -> None:
        click.echo(f"bench: {msg}", err=True)

    report = benchmod.run(p, say, command)
    if plot_path:
        benchmod.plot(report, plot_path)
    if save_path:
        try:
            with open(save_path, "w") as f:
                json.dump(report.to_json(), f, indent=2, sort_keys=True)
        except OSError as e:
            raise SeawallError(f"{save_path}: cannot write the report: {e.strerror}") from None
    if as_json:
        click.echo(json.dumps(report.to_json(), indent=2, sort_keys=True))
    else:
        click.echo(benchmod.render_text(report))


COMMANDS = (evaluate, replay, top, bench)
