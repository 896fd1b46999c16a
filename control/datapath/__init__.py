"""The kernel side: everything that touches bpf(2) or bcc.

In: the compiled program's maps. Out: numpy arrays of counters
(counters.py) and the lists' maps written in step (tries.py, hosts.py,
summary.py, sigtable.py). One owner module per map; abi.py is the mirror
of xdp/shared.h; loader.py is the only bcc user.
"""
