"""`seawall evaluate --wire`: the real daemon, real customers and real floods
in veth namespaces, measured by counters that are not seawall's.

lab.py builds the namespaces; probes.py samples the protected namespace's
own counters and packet taps (and the sender's) at 100 Hz; customers.py is
the HTTP server and its clients; floods.py the attacks (trafgen,
tcpreplay); scenarios.py the matrix; measure.py turns the samples into
figures (pure); runner.py runs it all and report.py prints it.
"""
