"""Prometheus metrics. Map-backed values are read from the kernel at scrape
time by a custom collector (the lists in batch reads: some 60 ms for 100k
entries); the engine's view (entropy, score, alarm) comes from the
daemon's last cycle, the filter's state from its guard (guard.py). With
them, the process's own (prometheus_client's ProcessCollector) and
seawall_build_info. Served on 127.0.0.1 unless configured; the alert
rules that go with them are docs/seawall-alerts.yml."""

from __future__ import annotations

from prometheus_client import ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry

from seawall.control.datapath import sigtable, synports, tries
from seawall.control.errors import SeawallError
from seawall.control.datapath.interfaces import Interfaces
from seawall.control.lists.store import lists_pinned
from seawall.control.service.guard import prog_tag
from seawall.control.service.logs import version
from seawall.control.state import Clock, Paths


class SeawallCollector(Collector):
    def __init__(self, paths: Paths, daemon=None):
        self.paths = paths
        self.daemon = daemon

    def _lists(self):
        """(auto blocks, manual blocks, allow entries, live signature rules)."""
        if not lists_pinned(self.paths.pin_root):
            return 0, 0, 0, 0
        boot = Clock().boot_ns()
        maps, sigs = tries.ListMaps(self.paths.pin_root), sigtable.SigTable(self.paths.pin_root)
        try:
            blocks = maps.count("block", boot)
            return blocks["auto"], blocks["manual"], maps.count("allow")["entries"], sigs.count(boot)
        finally:
            maps.close()
            sigs.close()

    def _synproxy(self):
        """Ports whose SYNs the datapath answers with cookies (syn_ports
        entries active and unexpired: one batch read of the array), by source."""
        g = GaugeMetricFamily("seawall_synproxy_ports", "TCP ports under SYN protection (SYN cookies at the "
                              "NIC), by source", labels=["source"])
        n = {"auto": 0, "manual": 0}
        if synports.pinned(self.paths.pin_root):
            table = synports.SynPortTable(self.paths.pin_root)
            try:
                for p in table.active(Clock().boot_ns()):
                    n["auto" if p.auto else "manual"] += 1
            except OSError:
                pass
            finally:
                table.close()
        for source, count in n.items():
            g.add_metric([source], count)
        return g

    def collect(self):
        ifs = Interfaces(self.paths)
        pk = CounterMetricFamily("seawall_packets", "Packets seen by the XDP program, by verdict and reason",
                                 labels=["interface", "verdict", "reason"])
        by = CounterMetricFamily("seawall_bytes", "Frame bytes seen by the XDP program, by verdict and reason",
                                 labels=["interface", "verdict", "reason"])
        ev = CounterMetricFamily("seawall_events", "Accounting events of the XDP program",
                                 labels=["interface", "event"])
        up = GaugeMetricFamily("seawall_interface_attached", "1 when the filter is attached to the interface",
                               labels=["interface", "mode", "monitor"])
        names = ifs.names()
        builds = sorted({t for t in (prog_tag(self.paths.pin_root, n) for n in names) if t})
        info = GaugeMetricFamily("seawall_build_info", "The running version, and the tags of the programs "
                                 "pinned (the builds that filter), comma-separated", labels=["version", "build"])
        info.add_metric([version(), ",".join(builds) or "none"], 1.0)
        yield info
        for name in names:
            st = ifs.status(name)
            up.add_metric([name, st.mode or "none", "true" if st.monitor else "false"],
                          1.0 if st.state == "attached" else 0.0)
            try:
                with ifs.counters(name) as counters:
                    c = counters.to_json()
            except (OSError, SeawallError):  # detached between listing and reading
                continue
            for reason, v in c["reasons"].items():
                pk.add_metric([name, v["verdict"], reason], v["packets"])
                by.add_metric([name, v["verdict"], reason], v["bytes"])
            for e, n in c["events"].items():
                ev.add_metric([name, e], n)
        yield pk
        yield by
        yield ev
        yield up

        auto, manual, allows, sigs = self._lists()
        bl = GaugeMetricFamily("seawall_blocklist_entries", "Live blocklist entries", labels=["source"])
        bl.add_metric(["auto"], auto)
        bl.add_metric(["manual"], manual)
        yield bl
        yield GaugeMetricFamily("seawall_allowlist_entries", "Allowlist entries", value=allows)
        yield GaugeMetricFamily("seawall_signature_rules", "Live signature rules", value=sigs)
        yield self._synproxy()

        d = self.daemon
        if d is None:
            return
        dec = CounterMetricFamily("seawall_decisions", "Automatic decisions made by the daemon, by kind",
                                  labels=["kind"])
        for kind, n in sorted(d.decisions_by.items()):
            dec.add_metric([kind], n)
        yield dec
        yield GaugeMetricFamily("seawall_cycle_duration_seconds", "Duration of the last scoring cycle",
                                value=d.cycle_seconds)
        yield GaugeMetricFamily("seawall_anomaly_threshold", "The score that makes a cycle anomalous "
                                "([detection] threshold)", value=d.cfg.detection.threshold)
        yield from _filter(d.guard)
        yield from _fleet(getattr(d, "fleet", None))
        rep = d.last
        if rep is None:
            return
        ent = GaugeMetricFamily("seawall_entropy", "Normalised Shannon entropy per feature, last cycle",
                                labels=["feature"])
        for f, v in rep.entropy.items():
            ent.add_metric([f], v)
        yield ent
        z = GaugeMetricFamily("seawall_deviation", "Deviation from the baseline (z) per feature, last cycle",
                              labels=["feature"])
        for f, v in rep.z.items():
            z.add_metric([f], v)
        yield z
        yield GaugeMetricFamily("seawall_anomaly_score", "Anomaly score of the last cycle", value=rep.score)
        yield GaugeMetricFamily("seawall_alarm", "1 while an alarm is raised", value=1.0 if rep.alarm else 0.0)
        yield GaugeMetricFamily("seawall_observed_packets_per_second",
                                "Accounted packets per second in the last cycle", value=rep.pps)
        vol = GaugeMetricFamily("seawall_volume_ratio", "Largest rate of the last cycle over its learnt busy rate, "
                                "and the dimension it was measured on", labels=["dimension"])
        vol.add_metric([rep.where], rep.volume)
        yield vol
        base = d.engine.base if d.engine is not None else None
        if base is not None:
            yield GaugeMetricFamily("seawall_baseline_learnt_seconds", "Calm traffic learnt by the baseline, seconds",
                                    value=base.seconds)
            yield GaugeMetricFamily("seawall_baseline_packets_per_second", "The learnt busy rate of all traffic "
                                    "(the reference of the total)",
                                    value=base.volumes.reference(d.cfg.detection.min_pps, {})[0])


def _filter(guard):
    """The guard's view of the daemon's programs, as of its last check."""
    if guard is None:
        return
    att = GaugeMetricFamily("seawall_filter_attached", "1 while the daemon's program is attached to the "
                            "interface in its mode (checked every cycle)", labels=["interface"])
    re = CounterMetricFamily("seawall_filter_reattach", "Times the daemon found its program off the interface "
                             "and put it back", labels=["interface"])
    maps = GaugeMetricFamily("seawall_filter_maps_missing", "Pinned lists and counters the attached program "
                             "does not use (0 when all is well)", labels=["interface"])
    for name in sorted(guard.modes):
        att.add_metric([name], 1.0 if guard.attached[name] else 0.0)
        re.add_metric([name], guard.reattached[name])
        maps.add_metric([name], len(guard.missing[name]))
    yield att
    yield re
    yield maps


def _fleet(link):
    """The fleet thread's view (service/fleet.py): its sessions as of its
    last read, the routes it announces, the learnt routes by verdict."""
    if link is None:
        return
    up = GaugeMetricFamily("seawall_fleet_session_up", "1 while the BGP session with the peer is established",
                           labels=["peer"])
    for s in link.sessions:
        up.add_metric([s.peer], 1.0 if s.state == "established" else 0.0)
    yield up
    yield GaugeMetricFamily("seawall_fleet_routes_out", "Routes the speaker announces for this host's lists",
                            value=link.routes_out)
    rin = GaugeMetricFamily("seawall_fleet_routes_in", "Routes learnt from the peers, by verdict "
                            "(accepted: enforced in the lists as bgp:<peer>)", labels=["verdict"])
    for verdict, n in sorted(link.routes_in.items()):
        rin.add_metric([verdict], n)
    yield rin
    imp = GaugeMetricFamily("seawall_fleet_imported_entries", "Blocks and signature rules the lists hold "
                            "from the fleet, by origin (bgp:<peer>) and kind", labels=["origin", "kind"])
    for (origin, kind), n in sorted(link.imported.items()):
        imp.add_metric([origin, kind], n)
    yield imp


def registry(paths: Paths, daemon=None) -> CollectorRegistry:
    """seawall's collector and the process's (process_*: CPU, memory, file
    descriptors, start time)."""
    reg = CollectorRegistry(auto_describe=False)
    reg.register(SeawallCollector(paths, daemon))
    ProcessCollector(registry=reg)
    return reg


def serve(paths: Paths, daemon, listen: str, port: int):
    """Start the exposition server in a thread; returns (server, thread).
    Its own small server around prometheus_client's handler, as
    start_http_server is from 0.17 on: Debian 12's 0.16 returns nothing
    to stop it by."""
    import socket
    import threading
    from http.server import ThreadingHTTPServer

    from prometheus_client.exposition import MetricsHandler

    class Server(ThreadingHTTPServer):
        address_family = socket.AF_INET6 if ":" in listen else socket.AF_INET
        daemon_threads = True

    httpd = Server((listen, port), MetricsHandler.factory(registry(paths, daemon)))
    thread = threading.Thread(target=httpd.serve_forever, name="metrics", daemon=True)
    thread.start()
    return httpd, thread
