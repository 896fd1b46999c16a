"""seawall's control plane, in the order the data flows (README "Layout"):

- datapath/: the kernel side. The loader compiles xdp/seawall.c (bcc),
  each map has one owner module that reads and writes it, abi.py mirrors
  xdp/shared.h.
- detect/: pure. A cycle's observation from two snapshots of the
  counters, then scoring and attribution: decisions out.
- lists/: the decisions kept, in the kernel and in the journal, through
  one write path.
- service/: `seawall run`, the daemon that turns that loop, and its metrics.
- tools/: replay, evaluate, top, bench.

The modules at this level are the words every stage uses: addresses
(addr.py), signature rules, the config, durations, errors, state paths.
"""
