"""The report of `seawall evaluate --wire`: one markdown row per scenario
(median and worst over its runs), and the JSON document with every run.
"(N shared)" after the runs says that N of them ran while another
evaluation's lab ran on the same machine, sharing its CPUs.

In: the run dicts of runner.run_matrix. Out: text. Pure.
"""

from __future__ import annotations

import statistics

NEVER = float("inf")


def _cuts(rs: list) -> list[float]:
    return [NEVER if r.get("cut") is None else float(r["cut"]) for r in rs]


def _fmt_s(x) -> str:
    if x is None:
        return "–"
    return "never" if x in (NEVER, "never") else f"{x:.2f}"


def _never(x):
    """inf (never cut) as the string "never": JSON has no infinity."""
    return "never" if x == NEVER else x


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f}%"


def _median(xs: list):
    xs = [x for x in xs if x is not None]
    return statistics.median_low(sorted(xs)) if xs else None


def summarise(runs: list) -> list[dict]:
    """One dict per scenario, in the order met."""
    order: list = []
    by: dict = {}
    for r in runs:
        if r["scenario"] not in by:
            order.append(r["scenario"])
            by[r["scenario"]] = []
        by[r["scenario"]].append(r)
    out = []
    for name in order:
        rs = by[name]
        ok = [r for r in rs if "error" not in r]
        flood = [r for r in ok if r.get("segments")]
        cuts = _cuts(flood)
        # a daemon started during the flood: its cut counted from its own start as well
        since = [c - r["daemon_starts_s"][0] for c, r in zip(cuts, flood)
                 if r.get("start") == "during" and r.get("daemon_starts_s")]
        after = [r["passed_after_cut"] for r in flood]
        total = [r["passed_total"] for r in flood]
        cust = [r["customers"] for r in ok]
        out.append({
            "scenario": name,
            "runs": len(rs), "errors": len(rs) - len(ok),
            "flood": bool(flood),
            "cut_runs": int(sum(c != NEVER for c in cuts)),
            "cut_median": _never(_median(cuts)), "cut_worst": _never(max(cuts)) if cuts else None,
            "cut_since_daemon_median": _never(_median(since)) if since else None,
            "cut_since_daemon_worst": _never(max(since)) if since else None,
            "passed_after_cut_median": _median(after),
            "passed_after_cut_worst": max((a for a in after if a is not None), default=None),
            "passed_total_median": _median(total), "passed_total_worst": max(total) if total else None,
            "later_pulses_passed_worst": max((r["later_segments_passed_worst"] for r in flood
                                              if r.get("later_segments_passed_worst") is not None), default=None),
            "legit_blocked_worst": max((r["legit_blocked"] for r in ok), default=None),
            "success_worst": min((c["success_attack"] for c in cust if c["success_attack"] is not None),
                                 default=None),
            "p99_calm_ms": _median([c["p99_calm_ms"] for c in cust]),
            "p99_attack_ms": _median([c["p99_attack_ms"] for c in cust]),
            "p99_connect_calm_ms": _median([c.get("p99_connect_calm_ms") for c in cust]),
            "p99_connect_attack_ms": _median([c.get("p99_connect_attack_ms") for c in cust]),
            "alarm_runs": sum(bool(r.get("alarm_raised")) for r in ok),
            "seconds_per_run": _median([r["duration_s"] for r in rs]),
            "xdp_modes": sorted({r.get("xdp_mode") or "none" for r in ok}),
            # runs during which another lab ran on this machine (shared CPUs)
            "shared_runs": sum(bool(r.get("marks", {}).get("other_labs_at_start") or
                                    r.get("marks", {}).get("other_labs_at_end")) for r in ok),
            **_fastnetmon([r["fastnetmon"] for r in ok if r.get("fastnetmon")]),
        })
    return out


def _fastnetmon(fs: list) -> dict:
    """FastNetMon's figures over the runs it ran in (fnm.figures)."""
    if not fs:
        return {}
    bans = [NEVER if f["detect_s"] is None else f["detect_s"] for f in fs]
    return {"fnm_runs": len(fs), "fnm_ban_runs": int(sum(b != NEVER for b in bans)),
            "fnm_ban_median": _never(_median(bans)), "fnm_ban_worst": _never(max(bans)),
            "fnm_false_bans": sum(f["false_bans"] for f in fs)}


def table(runs: list) -> str:
    head = ("| scenario | runs | cut in | cut median / worst (s) | passed after cut median / worst | "
            "passed in total median / worst | legit sources blocked (worst) | customers' success (worst) | "
            "p99 request (connect) calm → attack (ms) | alarm raised | s/run |")
    summ = summarise(runs)
    fnm = any("fnm_runs" in s for s in summ)
    if fnm:  # FastNetMon beside seawall: when it would have blackholed the victim
        head += " FastNetMon ban median / worst (s) |"
    lines = [head, "|" + "---|" * (12 if fnm else 11)]
    for s in summ:
        if s["flood"]:
            cut_in = f"{s['cut_runs']}/{s['runs'] - s['errors']}"
            cut = f"{_fmt_s(s['cut_median'])} / {_fmt_s(s['cut_worst'])}"
            if s["cut_since_daemon_median"] is not None:
                cut += (f" ({_fmt_s(s['cut_since_daemon_median'])} / {_fmt_s(s['cut_since_daemon_worst'])} "
                        "after the daemon's start)")
            after = f"{_pct(s['passed_after_cut_median'])} / {_pct(s['passed_after_cut_worst'])}"
            total = f"{_pct(s['passed_total_median'])} / {_pct(s['passed_total_worst'])}"
            if s["later_pulses_passed_worst"] is not None:
                total += f" (later pulses ≤ {_pct(s['later_pulses_passed_worst'])})"
        else:
            cut_in, cut, after, total = "no flood", "–", "–", "–"
        p99 = (f"{_fmt_ms(s['p99_calm_ms'])} ({_fmt_ms(s['p99_connect_calm_ms'])}) → "
               f"{_fmt_ms(s['p99_attack_ms'])} ({_fmt_ms(s['p99_connect_attack_ms'])})")
        err = f" ({s['errors']} failed)" if s["errors"] else ""
        err += f" ({s['shared_runs']} shared)" if s["shared_runs"] else ""
        lines.append(f"| {s['scenario']} | {s['runs']}{err} | {cut_in} | {cut} | {after} | {total} | "
                     f"{'–' if s['legit_blocked_worst'] is None else s['legit_blocked_worst']} | "
                     f"{_pct(s['success_worst'])} | {p99} | {s['alarm_runs']}/{s['runs'] - s['errors']} | "
                     f"{_fmt_ms(s['seconds_per_run'])} |" + (_fnm_cell(s) if fnm else ""))
    return "\n".join(lines)


def _fnm_cell(s: dict) -> str:
    if "fnm_runs" not in s:
        return " – |"
    if not s["flood"]:
        return f" {s['fnm_false_bans']} bans |"
    return f" {_fmt_s(s['fnm_ban_median'])} / {_fmt_s(s['fnm_ban_worst'])} |"


def _fmt_ms(x) -> str:
    return "–" if x is None else f"{x:.0f}" if x >= 10 else f"{x:.1f}"


def plain(x):
    """x with numpy scalars made Python numbers (for json), recursively."""
    if isinstance(x, dict):
        return {k: plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [plain(v) for v in x]
    if hasattr(x, "item") and not isinstance(x, (str, bytes)):
        return x.item()
    return x


def document(runs: list, command: str, seawall: str, started: str, seconds: float) -> dict:
    return plain({"command": command, "seawall": seawall, "started": started, "seconds": round(seconds, 1),
                  "summary": summarise(runs), "runs": runs})
