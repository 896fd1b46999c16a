"""The fleet: seawall's decisions as BGP FlowSpec routes (RFC 8955, RFC 8956).

- flowspec.py: a FlowSpec route as a value (its components and action), and
  its two forms on GoBGP's side: the words `gobgp global rib add` takes, and
  the JSON `gobgp ... -j` prints. Pure.
- translate.py: decisions to routes (a block, a signature) for export, and
  routes to decisions for import, each judged whole: accepted, or refused
  with a reason. Pure.
- rtbh.py: a blocked source prefix as a blackhole route with a community
  (RFC 7999), never one covering a protected address. Pure.
- speaker.py: the one module that talks to the BGP speaker (GoBGP's `gobgp`
  command, which drives gobgpd over its gRPC API): announce, withdraw, read
  the sessions and the routes; gobgpd's config from [fleet].
- exporter.py: keeps the speaker's routes equal to what the lists hold
  (`seawall fleet sync`, and the daemon's fleet thread).
- importer.py: the difference between the routes the speaker learnt and
  the lists' imported (`bgp:<peer>`) entries. Pure.

The daemon's thread that runs the exporter and the importer is
control/service/fleet.py.
"""
