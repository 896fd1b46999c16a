"""SYN protection of a served port: SYN cookies at the NIC, finished by
netfilter's SYNPROXY.

rules.py is the pure part (the nftables table, the window scale, the
state file's format, the requirement checks' judgements); protect.py
turns a port's protection on and off in the kernel, in the one order the
datapath relies on (SynProxy); conntrack.py hands the connections a port
holds already to conntrack, so that turning protection on cuts none.
"""
