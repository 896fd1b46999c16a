"""`seawall bench`: how fast seawall is, measured side by side in one run.

1. **Datapath** (datapath.py). The real program runs under
   BPF_PROG_TEST_RUN (`repeat` times per run, the median of `runs` runs)
   on one frame per case: pass (a source on no list), drop (a blocked
   source), signature drop, IPv6, VLAN-tagged, and a random-spoofed mix
   where every packet has a source never seen before. The lists hold 100k
   blocked addresses and 10k allowed /24s. Beside it run the floor (an
   empty `return XDP_DROP;` compiled by bcc the same way) and xdp-filter's
   own object from xdp-tools (peers.py), loaded through libbpf with the
   same addresses. Each figure is also given as a ratio to the floor, and
   seawall's as a ratio to xdp-filter's. The SYN cases (syn.py): a
   spoofed SYN answered with a cookie SYN-ACK in XDP, IPv4 and IPv6, and
   the same SYN to an unprotected port, one packet per test run against
   the floor run the same way.
2. **Control plane** (control.py). One daemon scoring cycle over 10k and
   100k tracked sources (1M with `full`), the parts of a cycle each timed
   alone, the bulk install of 100k blocklist entries, and the resident
   memory of a process running the cycle.
3. **SYN flood on veth** (syncost.py, with `full` or `syn_flood`): the
   host's CPU time per million spoofed SYNs with the kernel's own
   syncookies, with seawall's cookies in XDP and with an empty XDP_DROP
   program (the floor), interleaved, in namespaces of its own.

Everything runs in scratch maps (a private bpffs folder), removed
afterwards; the host's own lists are never touched. The bench uses the
product through its public interfaces only: the loader, the list store,
the counters, the daemon. The end-to-end part, customers served during a
real flood on veth with no protection, nftables and seawall, is the
namespace tests' (tests/netns/bench_e2e.py), which `scripts/bench` runs
after this. BENCHMARKS.md explains the method and holds the latest figures.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from typing import Callable

from seawall.control.datapath import loader
from seawall.control.errors import SeawallError
from seawall.control.tools.bench import syn, syncost
from seawall.control.tools.bench.control import control_plane
from seawall.control.tools.bench.datapath import Datapath, Lists
from seawall.control.tools.bench.report import Params, Report, machine, plot, render_text

__all__ = ["Params", "Report", "run", "render_text", "plot"]


def run(p: Params, say: Callable = lambda msg: None, command: str = "seawall bench") -> Report:
    """Run the whole bench; every scratch object is removed afterwards."""
    if os.geteuid() != 0:
        raise SeawallError("`seawall bench` needs root (BPF and bpffs)")
    report = Report(p, machine(), command=command)
    tag = uuid.uuid4().hex[:10]
    pin_root = f"/sys/fs/bpf/seawall-bench-{tag}"
    state_dir = tempfile.mkdtemp(prefix="seawall-bench-")
    lists = Lists.make(p)
    dp = None
    try:
        loader.ensure_bpffs(pin_root)
        dp = Datapath(p, lists, pin_root, state_dir, say)
        dp.fill_lists(report)
        dp.run(report)
        syn.run(dp, report)
        if p.profile:
            dp.profile(report)
        dp.close()
        dp = None
        control_plane(p, pin_root, state_dir, report, say)
        if p.syn_flood:
            report.syn_cost = syncost.host_cost(p.syn_flood, p.syn_rounds, seed=p.seed, say=say)
    finally:
        if dp is not None:
            dp.close()
        shutil.rmtree(pin_root, ignore_errors=True)
        shutil.rmtree(state_dir, ignore_errors=True)
    return report
