"""One run of one scenario in a fresh lab, and the matrix of runs.

In: a Scenario, the seawall executable to evaluate, options. What it
does, for each run: build the lab (lab.py), start the HTTP server, the
two samplers (probes.py) and the customers (customers.py), start the real
daemon (`seawall run -i ws0`, default configuration, its own bpffs folder
and state directory in a temporary directory, metrics on the server
namespace's own loopback) at the time the start condition says, send the
bursts (floods.py), wait for the customers, stop everything, delete the
lab. Out: one dict per run with every raw figure (measure.py), the
daemon's events stamped with the time they were logged (used only for
"alarm raised", never for the cut), and the run's own duration.

`hooks` lets a caller act at fixed times (the instrument's own tests add
a block by hand): {"no_daemon": True} runs without the daemon,
{"before_flood": fn(run)} and {"at": [(seconds into the flood, fn(run))]}.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass

from seawall.control.tools.wire import customers as customers_mod
from seawall.control.tools.wire import fnm as fnm_mod
from seawall.control.tools.wire import floods, measure, probes
from seawall.control.tools.wire.lab import (CUSTOMER_IN_BOTNET, CUSTOMERS, HTTP_PORT, IF_ATTACKER, IF_SERVER,
                                            NOT_ATTACK, SERVER, Lab, LabError, leftovers, others, wait_for)
from seawall.control.tools.wire.scenarios import Scenario

#: sources in use in calm: the customer inside the botnet's /24 first, then 40 of the customers' /24
SOURCES = [CUSTOMER_IN_BOTNET] + CUSTOMERS
CALM_SOURCES = 41
FLASH_FACTOR = 10
SETTLE = 2.0  # customers and samplers run this long before anything else


def default_seawall() -> str:
    return os.path.join(os.path.dirname(sys.executable), "seawall")


@dataclass
class Options:
    seawall: str
    workdir: str
    capture_dir: str = floods.DEFAULT_CAPTURE_DIR
    hz: float = 100.0
    say: object = None  # callable(str) for progress
    fastnetmon: bool = False  # FastNetMon Community on the lab's port mirror, beside the daemon (fnm.py)


class Run:
    """The live state of one run (what hooks get)."""

    def __init__(self, sc: Scenario, opts: Options, lab: Lab, rundir: str):
        self.sc, self.opts, self.lab, self.rundir = sc, opts, lab, rundir
        self.tag = os.path.basename(rundir)
        self.env = dict(os.environ, SEAWALL_BPFFS=f"/sys/fs/bpf/sww-{self.tag}",
                        SEAWALL_STATE_DIR=os.path.join(rundir, "state"))
        self.daemon: subprocess.Popen | None = None
        self.events: list = []  # [monotonic time, event dict]
        self.daemon_starts: list = []
        self.daemon_stops: list = []
        self.marks: dict = {}
        self._readers: list = []
        self.fnms: list = []  # FastNetMon instances, in start order

    def start_fnm(self) -> None:
        """FastNetMon on the port mirror of the server's switch port (it
        sees every frame before seawall's XDP could drop one), started with
        the daemon; lab.close() stops it whatever happens."""
        f = fnm_mod.FastNetMon.mirror(self.lab, os.path.join(self.rundir, f"fnm{len(self.fnms)}"))
        f.start(wait=False)  # its capture opens about a second later: f.started_at
        self.lab.procs.append(f.proc)
        self.fnms.append(f)

    def stop_fnm(self) -> None:
        for f in self.fnms:
            f.stop()

    def seawall(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        """The seawall CLI in the server's namespace, on this run's paths."""
        return self.lab.run(self.lab.s, self.opts.seawall, *args, check=check, env=self.env)

    def start_daemon(self) -> None:
        p = self.lab.start(self.lab.s, self.opts.seawall, "run", "-i", IF_SERVER, env=self.env,
                           stderr=subprocess.PIPE)
        self.daemon = p
        self.daemon_starts.append(time.monotonic())

        def read() -> None:
            for raw in p.stderr:
                t = time.monotonic()
                line = raw.decode(errors="replace").strip()
                try:
                    ev = json.loads(line[line.index("{"):]) if "{" in line else {"text": line}
                except ValueError:
                    ev = {"text": line}
                self.events.append([t, ev])

        th = threading.Thread(target=read, daemon=True)
        th.start()
        self._readers.append(th)

    def stop_daemon(self) -> None:
        if self.daemon is not None:
            Lab.stop(self.daemon, signal.SIGTERM, wait=20)
            self.daemon_stops.append(time.monotonic())
            self.daemon = None


def _timeline(sc: Scenario) -> tuple[float | None, list]:
    """(flood start, [(time, action, arg)]) relative to the customers' start."""
    acts = []
    if sc.start == "during":
        flood_at = SETTLE + 6.0
        acts.append((flood_at + sc.restart_after, "daemon", None))
    elif sc.start == "restart":
        acts.append((SETTLE, "daemon", None))
        flood_at = SETTLE + sc.calm
        acts.append((flood_at + sc.restart_after, "restart", None))
    else:
        acts.append((SETTLE, "daemon", None))
        flood_at = SETTLE + sc.lead
    for i, b in enumerate(sc.bursts):
        acts.append((flood_at + b.start, "burst", i))
    if sc.options.get("synproxy"):  # the operator protects the port before the flood
        acts.append((flood_at - 3.0, "synproxy", sc.options["synproxy"]))
    return flood_at, sorted(acts, key=lambda a: a[0])


def run_once(sc: Scenario, opts: Options, hooks: dict | None = None) -> dict:
    hooks = hooks or {}
    tag = uuid.uuid4().hex[:6]
    rundir = os.path.join(opts.workdir, f"{sc.name.replace('@', '-')}-{tag}")
    os.makedirs(rundir)
    began = time.monotonic()
    lab = Lab(tag)
    run = Run(sc, opts, lab, rundir)
    try:
        run.marks["other_labs_at_start"] = others()
        run.marks["loadavg_at_start"] = os.getloadavg()[0]
        lab.build()
        flood_at, acts = _timeline(sc)
        if hooks.get("no_daemon"):
            acts = [a for a in acts if a[1] == "burst"]
        total = flood_at + sc.flood_seconds + sc.tail
        for b in sc.bursts:  # rewrite captures and write configs before the clock starts
            floods.command(b, opts.workdir, opts.capture_dir)
        lab.start(lab.s, sys.executable, "-m", customers_mod.__name__, "serve", SERVER, str(HTTP_PORT))
        if not wait_for(lambda: f":{HTTP_PORT} " in lab.run(lab.s, "ss", "-ltnH").stdout, 10):
            raise LabError("the HTTP server did not start")
        srv_file, snd_file = os.path.join(rundir, "server.jsonl"), os.path.join(rundir, "sender.jsonl")
        limit = str(total + 120)
        samplers = [
            lab.start(lab.s, sys.executable, "-m", probes.__name__, "server", IF_SERVER, srv_file, "--hz",
                      str(opts.hz), "--duration", limit, "--exclude", ",".join(f"{a}/{p}" for a, p in NOT_ATTACK)),
            lab.start(lab.a, sys.executable, "-m", probes.__name__, "sender", IF_ATTACKER, snd_file, "--hz",
                      str(opts.hz), "--duration", limit)]
        if not wait_for(lambda: all(os.path.exists(f) and os.path.getsize(f) > 200 for f in (srv_file, snd_file)), 10):
            raise LabError("the samplers did not start")
        phases = [f"0:{sc.rate}:{CALM_SOURCES}"]
        if sc.flash:
            phases += [f"{flood_at}:{sc.rate * FLASH_FACTOR}:{len(SOURCES)}",
                       f"{flood_at + sc.flash}:{sc.rate}:{CALM_SOURCES}"]
        cust_file = os.path.join(rundir, "customers.json")
        cust = lab.start(lab.c, sys.executable, "-m", customers_mod.__name__, "clients", SERVER, str(HTTP_PORT),
                         cust_file, "--sources", ",".join(SOURCES), "--duration", str(total),
                         *(x for p in phases for x in ("--phase", p)))
        t0 = time.monotonic()
        if "before_flood" in hooks:
            hooks["before_flood"](run)
        at = sorted(hooks.get("at", []), key=lambda x: x[0])
        acts += [(flood_at + off, "hook", fn) for off, fn in at]
        acts.sort(key=lambda a: a[0])
        senders = []
        for when, what, arg in acts:
            time.sleep(max(0.0, t0 + when - time.monotonic()))
            if what == "daemon":
                run.start_daemon()
                if opts.fastnetmon:
                    run.start_fnm()
            elif what == "restart":  # FastNetMon goes on: it keeps no state for a restart to test
                run.stop_daemon()
                run.start_daemon()
            elif what == "burst":
                b = sc.bursts[arg]
                run.marks.setdefault("bursts", []).append([time.monotonic(), b.kind, b.pps, b.seconds])
                senders.append(lab.start(lab.a, *floods.command(b, opts.workdir, opts.capture_dir),
                                         stderr=subprocess.PIPE))
            elif what == "synproxy":
                for port in arg:
                    run.seawall("synproxy", "add", str(port), "--reason", "wire lab: protected beforehand")
                run.marks["synproxy_at"] = time.monotonic()
            elif what == "hook":
                arg(run)
        cust.wait(timeout=total + 60)
        run.marks["xdp_mode"] = xdp_mode(lab)
        run.marks["other_labs_at_end"] = others()
        run.marks["loadavg_at_end"] = os.getloadavg()[0]
        for p in senders:
            p.wait(timeout=30)
        for p in samplers:
            Lab.stop(p)
        run.stop_daemon()
        run.stop_fnm()
        for th in run._readers:
            th.join(5)
        sender_err = [p.stderr.read().decode(errors="replace")[-300:] for p in senders if p.returncode not in (0,)]
        with open(os.path.join(rundir, "daemon-events.jsonl"), "w") as f:  # kept with --keep
            for t, ev in run.events:
                f.write(json.dumps({"t": round(t, 4), **ev}) + "\n")
        return _figures(run, sc, srv_file, snd_file, cust_file, t0, flood_at, began, sender_err)
    finally:
        try:
            run.stop_daemon()
        finally:
            lab.close()
            shutil.rmtree(run.env["SEAWALL_BPFFS"], ignore_errors=True)


def _figures(run: Run, sc: Scenario, srv_file: str, snd_file: str, cust_file: str, t0: float, flood_at: float,
             began: float, sender_err: list) -> dict:
    scols, srows = probes.load(srv_file)
    _, trows = probes.load(snd_file)
    segs = measure.flood(trows, scols, srows) if sc.bursts else []
    with open(cust_file) as f:
        cj = json.load(f)
    if segs:
        a_start, a_end = segs[0].start, segs[-1].end
    else:  # a flash crowd: its phases run on the customers' own clock
        a_start, a_end = cj["t0"] + flood_at, cj["t0"] + flood_at + sc.flood_seconds
    calm_from = max(cj["t0"] + 1.0, a_start - 10.0)
    if sc.start == "fresh" and run.daemon_starts:
        calm_from = max(calm_from, run.daemon_starts[0] + 5.0)  # past the daemon's compile and attach
    cust = measure.customers(cj["requests"], cj["t0"], (calm_from, a_start - 0.5), (a_start, a_end))
    window_end = a_end + sc.tail
    alarms = [ev for t, ev in run.events if a_start - 0.5 <= t <= window_end and
              ev.get("event") in ("alarm", "block", "signature", "synproxy", "would_block", "would_signature",
                                  "would_synproxy")]
    first_alarm = next((t - a_start for t, ev in run.events if ev.get("event") == "alarm" and t >= a_start - 0.5),
                       None)
    sent = sum(s.sent for s in segs)
    arrived = sum(s.arrived for s in segs)
    first = segs[0] if segs else None
    later = [s.passed_total for s in segs[1:]]
    unrelated = [ev for _t, ev in run.events if "text" in ev and "Traceback" in ev["text"]]
    fnm_events = sorted((e for f in run.fnms for e in f.events()), key=lambda e: e["mono"])
    return {
        "scenario": sc.name, "start": sc.start, "note": sc.note,
        "bursts": [[b.start, b.seconds, b.pps, b.kind] for b in sc.bursts],
        "customers_rate": sc.rate, "flash_seconds": sc.flash,
        "segments": [s.to_json() for s in segs],
        "sent": sent, "arrived": arrived,
        "cut": None if first is None else first.cut,
        "cut_in_every_segment": bool(segs) and all(s.cut is not None for s in segs),
        "passed_total": round(arrived / sent, 5) if sent else None,
        "passed_after_cut": _after_cut(segs),
        "later_segments_passed_worst": round(max(later), 5) if later else None,
        "customers": cust.to_json(),
        "legit_blocked": len(cust.blocked),
        "counters_during_attack": measure.counters_delta(scols, srows, a_start, a_end),
        "sampling": {"server": measure.sampling(srows, (a_start, a_end)),
                     "sender": measure.sampling(trows, (a_start, a_end))},
        "alarm_raised": any(ev.get("event") in ("alarm",) for ev in alarms),
        "daemon_decisions": sum(ev.get("event") in ("block", "signature", "synproxy") for ev in alarms),
        "first_alarm_s": None if first_alarm is None else round(first_alarm, 3),
        "xdp_mode": run.marks.get("xdp_mode"),
        "daemon_starts_s": [round(t - a_start, 3) for t in run.daemon_starts],
        "daemon_errors": [ev["text"][-200:] for ev in unrelated][:3],
        "sender_errors": sender_err,
        "marks": {k: v for k, v in run.marks.items() if k not in ("bursts", "xdp_mode")},
        "attack_window": [round(a_start, 4), round(a_end, 4)],
        "duration_s": round(time.monotonic() - began, 1),
        "fastnetmon": None if not run.fnms else {
            **fnm_mod.figures(fnm_events, a_start, window_end, SERVER),
            "ready_s": [None if f.started_at is None else round(f.started_at - a_start, 3) for f in run.fnms]},
    }


def xdp_mode(lab: Lab) -> str | None:
    """The XDP mode on the protected interface as the kernel reports it
    (`ip -j link`: 1 driver, 2 generic, 3 offload), None when nothing is
    attached."""
    try:
        info = json.loads(lab.run(lab.s, "ip", "-j", "link", "show", IF_SERVER).stdout)[0]
    except (LabError, ValueError, IndexError):
        return None
    mode = (info.get("xdp") or {}).get("mode")
    return {1: "native", 2: "generic", 3: "offload"}.get(mode)


def _after_cut(segs: list) -> float | None:
    """Frames passed after each segment's cut over frames sent after it
    (a segment never cut counts whole)."""
    if not segs:
        return None
    a = sum(s.arrived_after_cut if s.cut is not None else s.arrived for s in segs)
    n = sum(s.sent_after_cut if s.cut is not None else s.sent for s in segs)
    return round(a / n, 5) if n else 0.0


def check_tools(scs: list, capture_dir: str, seawall: str, fastnetmon: bool = False) -> None:
    """Refuse to start (RuntimeError, one line) without root or a tool."""
    if os.geteuid() != 0:
        raise RuntimeError("`seawall evaluate --wire` needs root (namespaces, XDP); run it with sudo")
    need = ["ip", "bridge", "nsenter", "trafgen", "timeout", "ss"]
    if any(b.kind in floods.CAPTURES for s in scs for b in s.bursts):
        need += ["tcprewrite", "tcpreplay"]
        for s in scs:
            for b in s.bursts:
                if b.kind in floods.CAPTURES and not os.path.exists(os.path.join(capture_dir,
                                                                                floods.CAPTURES[b.kind])):
                    raise RuntimeError(f"{capture_dir}: no {floods.CAPTURES[b.kind]} (--captures DIR)")
    for tool in need:
        if shutil.which(tool) is None:
            raise RuntimeError(f"{tool} is not installed (scripts/setup installs what the lab needs)")
    if not os.access(seawall, os.X_OK):
        raise RuntimeError(f"{seawall}: no seawall executable there")
    if fastnetmon and not os.access(fnm_mod.FASTNETMON, os.X_OK):
        raise RuntimeError("fastnetmon is not installed (scripts/setup --test installs it)")


def run_matrix(scs: list, runs: int, opts: Options) -> list[dict]:
    """Every scenario `runs` times, in order; a run that fails is recorded
    with its error and the matrix goes on (Ctrl-C stops it, cleaned up)."""
    say = opts.say or (lambda _m: None)
    for ns in leftovers():
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)
    out = []
    for sc in scs:
        for k in range(runs):
            say(f"{sc.name}: run {k + 1}/{runs}")
            t = time.monotonic()
            try:
                r = run_once(sc, opts)
            except (LabError, OSError, RuntimeError, subprocess.SubprocessError, ValueError) as e:
                r = {"scenario": sc.name, "start": sc.start, "error": f"{type(e).__name__}: {e}",
                     "duration_s": round(time.monotonic() - t, 1)}
            r["run"] = k + 1
            say(f"{sc.name}: run {k + 1} done in {r['duration_s']} s: " + _brief(r))
            out.append(r)
    return out


def _brief(r: dict) -> str:
    if "error" in r:
        return r["error"]
    c = r["customers"]
    cut = "never" if r["cut"] is None else f"{r['cut']:.2f} s"
    return (f"cut {cut}, passed {r['passed_total']}, legit blocked {r['legit_blocked']}, "
            f"customers {c['success_attack']}, alarm {r['alarm_raised']}")


def workdir() -> str:
    return tempfile.mkdtemp(prefix="seawall-wire-")
