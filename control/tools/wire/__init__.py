"""`seawall evaluate --wire`: the real daemon, real customers and real floods
in veth namespaces, measured by counters that are not seawall's.

    sudo .venv/bin/seawall evaluate --wire                 # the full matrix, 5 runs each
    sudo .venv/bin/seawall evaluate --wire --quick         # the CI subset, 1 run each (~2.5 min)
    sudo .venv/bin/seawall evaluate --wire --scenario pulse --runs 3 --json

Modules: lab.py builds the namespaces (one protected NIC behind a bridge);
probes.py samples the protected namespace's packet taps and /proc counters
and the sender's tx counter at 100 Hz; customers.py is the HTTP server and
its clients; floods.py the attacks; scenarios.py the matrix; measure.py
turns samples into figures (pure); runner.py runs it all; report.py
prints it.

The oracle is never seawall's output. What reached the protected stack is
counted by AF_PACKET taps on the protected interface (a tap sees a frame
only after XDP passed it) and cross-checked with /proc/net/snmp (Udp
NoPorts, Ip InReceives, ReasmReqds, Tcp InSegs, all in the JSON); what was
sent, by the attacker interface's tx counter; the customers' fate, by
their own per-request results. seawall's log is read only for "alarm
raised". Facts measured on this kernel (6.18) while building it:
- veth counts the frames its XDP program dropped in rx_packets, in native
  and in generic mode alike (80,000 dropped, rx_packets +80,030, rx_dropped
  0): the interface counter tells what arrived at the NIC, not what passed.
- Native XDP works on the protected veth with its peer a bridge port and
  no program on the peer; `ip -j link` reports mode 1 (driver).
- trafgen's --rate sends in bursts (40k pps came as ~260k pps for 0.15 s,
  then nothing, each second), useless for a cut measured to 20 ms; its
  --gap sleeps per packet and tops out near 20-30k pps. So trafgen makes
  each flood's frames into a pcap (65,536 frames, random fields drawn
  once) and tcpreplay paces them (400 ± 150 frames per 10 ms at 40k pps;
  ~167k pps at most here when asked for 200k).
- The full matrix (20 scenarios) takes about 14.5 minutes per run of each
  scenario (1,730 s for --runs 2), so about 72 minutes at the default 5
  runs; --quick about 2.3 minutes.
"""
