"""The bench's parameters, its report and how the report is shown."""

from __future__ import annotations

import os
import platform
from dataclasses import asdict, dataclass, field, replace
from typing import Optional

from seawall.control.tools import plot as plotmod


@dataclass(frozen=True)
class Params:
    repeat: int = 1_000_000  # BPF_PROG_TEST_RUN repeats per run
    runs: int = 5  # runs per case; the median is reported
    block_entries: int = 100_000  # IPv4 blocklist (/32s)
    allow_entries: int = 10_000  # IPv4 allowlist (/24s)
    block6_entries: int = 10_000  # IPv6 blocklist (/128s)
    allow6_entries: int = 1_000  # IPv6 allowlist (/48s)
    signature_rules: int = 8  # the daemon's own limit on automatic rules
    sources: tuple = (10_000, 100_000)  # tracked sources per scoring-cycle case
    bulk_entries: int = 100_000
    single_adds: int = 200  # block_add() calls timed for comparison with the bulk write
    rss_sources: int = 100_000
    syn_packets: int = 20_000  # SYNs per SYN case, one per test run (syn.py)
    syn_flood: int = 0  # spoofed SYNs per flood of the host-CPU part on veth (syncost.py); 0: not run
    syn_rounds: int = 5  # its rounds, each configuration once a round
    profile: bool = False
    seed: int = 1
    quick: bool = False
    full: bool = False

    @classmethod
    def make(cls, quick: bool = False, full: bool = False, **overrides) -> "Params":
        p = cls()
        if quick:
            p = replace(p, repeat=20_000, runs=3, block_entries=1_000, allow_entries=100, block6_entries=100,
                        allow6_entries=10, sources=(2_000,), bulk_entries=2_000, single_adds=20,
                        rss_sources=2_000, syn_packets=2_000, syn_rounds=2, quick=True)
        if full:
            p = replace(p, sources=tuple(p.sources) + (1_000_000,), syn_flood=1_000_000, full=True)
        return replace(p, **{k: v for k, v in overrides.items() if v is not None})


@dataclass
class Case:
    """One measured figure. ns_per_packet for the datapath, seconds for
    the control plane; target and met are None where no target is set."""

    name: str
    part: str  # datapath | control
    what: str
    ns_per_packet: Optional[float] = None
    seconds: Optional[float] = None
    ratio_to_floor: Optional[float] = None
    target: Optional[str] = None
    met: Optional[bool] = None
    detail: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        out = {"name": self.name, "part": self.part, "what": self.what}
        if self.ns_per_packet is not None:
            out["ns_per_packet"] = self.ns_per_packet
        if self.seconds is not None:
            out["seconds"] = self.seconds
        if self.ratio_to_floor is not None:
            out["ratio_to_floor"] = self.ratio_to_floor
        out["target"] = self.target
        out["met"] = self.met
        out.update(self.detail)
        return out


@dataclass
class Report:
    params: Params
    machine: dict
    cases: list = field(default_factory=list)
    profile: list = field(default_factory=list)  # datapath: one row per part compiled out
    control_stages: dict = field(default_factory=dict)  # sources -> part of a cycle -> seconds, each timed alone
    memory: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)
    command: str = ""
    syn_cost: dict = field(default_factory=dict)  # the host's CPU per million spoofed SYNs (syncost.host_cost)

    def case(self, name: str) -> Optional[Case]:
        return next((c for c in self.cases if c.name == name), None)

    def to_json(self) -> dict:
        return {
            "command": self.command,
            "params": {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self.params).items()},
            "machine": self.machine,
            "cases": [c.to_json() for c in self.cases],
            "profile": self.profile,
            "control_stages": self.control_stages,
            "memory": self.memory,
            "notes": self.notes,
            "syn_cost": self.syn_cost,
        }


def ratio(a: float, b: float) -> float:
    return round(a / b, 2) if b else float("nan")


def machine() -> dict:
    def read(path: str) -> str:
        try:
            with open(path) as f:
                return f.read().strip()
        except OSError:
            return ""

    cpu = ""
    for line in read("/proc/cpuinfo").splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    vul = "/sys/devices/system/cpu/vulnerabilities/"
    return {
        "kernel": platform.release(),
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "clocksource": read("/sys/devices/system/clocksource/clocksource0/current_clocksource"),
        "spectre_v2": read(vul + "spectre_v2"),
        "spec_rstack_overflow": read(vul + "spec_rstack_overflow"),
        "bpf_jit_harden": read("/proc/sys/net/core/bpf_jit_harden"),
    }


def _fmt_met(c: Case) -> str:
    return "-" if c.met is None else ("met" if c.met else "MISSED")


def render_text(r: Report) -> str:
    """The report as tables, for people."""
    lines = []
    p = r.params
    m = r.machine
    lines.append(f"seawall bench: {m['cpus']} CPUs ({m['cpu']}), kernel {m['kernel']}")
    lines.append(f"datapath: BPF_PROG_TEST_RUN, median of {p.runs} runs x {p.repeat:,} repeats; lists: "
                 f"{p.block_entries:,} blocked /32 + {p.allow_entries:,} allowed /24 (IPv6: "
                 f"{p.block6_entries:,} + {p.allow6_entries:,})")
    lines.append("")
    lines.append(f"{'case':28s} {'ns/pkt':>8s} {'x floor':>8s} {'xdp-filter':>11s} {'x xdpf':>7s}  target")
    for c in r.cases:
        if c.part != "datapath" or c.name.startswith("xdp-filter") or " vs " in c.name:
            continue
        xf = r.case(f"xdp-filter {c.name}")
        xf_s = f"{xf.ns_per_packet:>11.0f}" if xf else f"{'-':>11s}"
        rx = c.detail.get("ratio_to_xdp_filter")
        rx_s = f"{rx:>7.2f}" if rx is not None else f"{'-':>7s}"
        tgt = f"{c.target}: {_fmt_met(c)}" if c.target else ""
        lines.append(f"{c.name:28s} {c.ns_per_packet:>8.0f} {c.ratio_to_floor:>8.2f} {xf_s} {rx_s}  {tgt}")
    for c in r.cases:
        if " vs " in c.name:
            lines.append(f"{c.name:28s} {c.detail['ratio_to_xdp_filter']:>8.2f}x  {c.target}: {_fmt_met(c)}")
    if any(c.detail.get("floor") for c in r.cases):
        lines.append("(the SYN cases and their floor: one packet per test run, as a cookie SYN-ACK is built in "
                     "place; compare them with that floor only)")
    if r.profile:
        lines.append("")
        lines.append("profile (ns/packet; the part's cost = full program minus the build without it):")
        lines.append(f"  {'build':44s} {'pass':>6s} {'drop':>6s} {'spoofed':>8s}")
        for row in r.profile:
            if "error" in row:
                lines.append(f"  {row['build']:44s} not measured: {row['error']}")
                continue
            cost = row.get("cost_ns")
            tail = (f"   cost {cost['pass']:>5.0f} {cost['drop_block']:>5.0f} {cost['spoofed_mix']:>5.0f}"
                    if cost else "")
            lines.append(f"  {row['build']:44s} {row['pass']:>6.0f} {row['drop_block']:>6.0f} "
                         f"{row['spoofed_mix']:>8.0f}{tail}")
    lines.append("")
    lines.append(f"{'control plane':52s} {'seconds':>9s}  target")
    for c in r.cases:
        if c.part == "control":
            tgt = f"{c.target}: {_fmt_met(c)}" if c.target else ""
            lines.append(f"{c.name:52s} {c.seconds:>9.4f}  {tgt}")
    for label, st in r.control_stages.items():
        lines.append(f"  parts, {label}, each timed alone: " + ", ".join(f"{k} {v * 1000:.1f} ms"
                                                                       for k, v in st.items()))
    for key, mem in r.memory.items():
        lines.append(f"memory ({key}): {mem['rss_mib']} MiB RSS - {mem['what']}")
    if r.syn_cost:
        lines.append("")
        lines += render_syn_cost(r.syn_cost)
    for n in r.notes:
        lines.append("note: " + n)
    return "\n".join(lines)


def render_syn_cost(sc: dict) -> list:
    """The host-CPU part (syncost.host_cost's result) as lines."""
    s = sc["summary"]
    lines = [f"CPU seconds per million spoofed SYNs on veth ({sc['syns']:,} SYNs a flood, {sc['repeats']} rounds "
             f"interleaved, median (worst)); host: /proc/stat, every CPU; flood: the sending process tree, which "
             f"ran the receive path in-line, and ksoftirqd",
             f"  {'config':8s} {'host':>14s} {'- floor':>8s} {'flood':>14s} {'- floor':>8s} {'Mpps':>6s}  what"]
    for cfg, c in s["configs"].items():
        cells = []
        for m in ("host", "flood"):
            v = c[m]
            cells.append(f"{v['median']:>6.2f} ({v['worst']:>5.2f})")
            cells.append(f"{v['over_floor']:>8.2f}" if "over_floor" in v else f"{'':>8s}")
        lines.append(f"  {cfg:8s} {cells[0]:>14s} {cells[1]} {cells[2]:>14s} {cells[3]} {c['mpps']:>6.3f}  {c['what']}")
    if s.get("host_kernel_over_xdp") is not None or s.get("flood_kernel_over_xdp") is not None:
        def x(v) -> str:
            return f"{v:.1f}x" if v is not None else "-"

        lines.append(f"  above the floor, the kernel's syncookies cost {x(s.get('host_kernel_over_xdp'))} what XDP's "
                     f"cost per SYN (host), {x(s.get('flood_kernel_over_xdp'))} (flood)")
    lines.append(f"  {sc['method']['syn_acks']}; {sc['method']['veth']}")
    return lines


def plot(r: Report, path: str) -> None:
    """A grouped bar chart of ns per packet by case: floor, xdp-filter, seawall."""
    groups = []
    labels = {"pass": "pass", "pass_listed_24": "pass near", "drop_block": "drop TTL",
              "drop_block_permanent": "drop perm", "drop_signature": "signature", "ipv6_pass": "IPv6 pass",
              "vlan_pass": "VLAN pass", "spoofed_mix": "spoofed"}
    for name, label in labels.items():
        c = r.case(name)
        if c is None:
            continue
        fl = r.case("floor, spoofed wrapper" if name == "spoofed_mix" else "floor")
        xf = r.case(f"xdp-filter {name}")
        groups.append((label, [fl.ns_per_packet if fl else None, xf.ns_per_packet if xf else None,
                               c.ns_per_packet]))
    img = plotmod.render_bars(
        groups, [("floor (empty program)", (150, 150, 150)), ("xdp-filter", (230, 159, 0)),
                 ("seawall", (0, 114, 178))],
        title="ns per packet, BPF_PROG_TEST_RUN (median)",
        subtitle=f"{r.params.repeat:,} repeats x {r.params.runs} runs; {r.machine['cpu']}, "
                 f"kernel {r.machine['kernel']}")
    plotmod.write_png(path, img)
