"""The daemon's fleet thread (control/service/fleet.py) and the importer
(control/fleet/importer.py), against a fake speaker and a fake list store:
what is announced, withdrawn, imported, removed and refused, and the
metrics that say so. No kernel, no gobgpd."""

from __future__ import annotations

import logging
import time
from types import SimpleNamespace

from prometheus_client import CollectorRegistry

from seawall.control.addr import Prefix
from seawall.control.config import Config, FleetConfig
from seawall.control.errors import SeawallError
from seawall.control.fleet import flowspec as fs
from seawall.control.fleet import translate as tr
from seawall.control.fleet.flowspec import EQ, FlowRoute, Term
from seawall.control.fleet.importer import Importer, imported, origin
from seawall.control.lists.store import Entry
from seawall.control.service import fleet
from seawall.control.service.metrics import SeawallCollector
from seawall.control.signature import Signature
from test_fleet import FakeSpeaker

P = Prefix.parse
HOST4 = P("198.18.0.1")
PEER = "198.18.0.2"


class Clock:
    def __init__(self):
        self.t = 1_000_000.0

    def wall(self):
        return self.t


class Store:
    """The list store's calls the fleet thread makes, over dicts; every
    write appends to the journal file, as the real one does."""

    def __init__(self, journal, clock):
        self.journal, self.clock = journal, clock
        self.blocks: dict = {}  # Prefix -> (source, expires_at)
        self.sigs: dict = {}  # key -> (Signature, source, expires_at)
        self.allow: list = []
        self.fail = False
        self.reads = 0

    def _wrote(self):
        if self.fail:
            raise SeawallError("the blocklist is full (4 entries); nothing was changed")
        with open(self.journal, "a") as f:
            f.write("x\n")

    def block_list(self, prune=True):
        self.reads += 1
        return [Entry(p, "block", at, "", s) for p, (s, at) in self.blocks.items()
                if at is None or at > self.clock.wall()]

    def sig_list(self):
        return [{"rule": k, "signature": sig, "source": s, "expires_at": at} for k, (sig, s, at) in self.sigs.items()
                if at is None or at > self.clock.wall()]

    def allow_prefixes(self):
        return list(self.allow)

    def block_add_each(self, items, source="manual", durable=True):
        self._wrote()
        for p, ttl, _, _ in items:
            self.blocks[p] = (source, None if ttl is None else self.clock.wall() + ttl)

    def block_del(self, prefixes):
        self._wrote()
        for p in prefixes:
            self.blocks.pop(p, None)

    def sig_add(self, sig, ttl=None, reason="", source="manual", extra=None, durable=True):
        self._wrote()
        self.sigs[sig.key] = (sig, source, None if ttl is None else self.clock.wall() + ttl)

    def sig_del(self, key):
        self._wrote()
        return self.sigs.pop(key, None) is not None


class Speaker(FakeSpeaker):
    """gobgpd as the thread sees it: our routes (test_fleet's fake), the
    learnt ones, the sessions."""

    def __init__(self):
        super().__init__()
        self.learnt: list = []

    def learnt_routes(self):
        self._call("learnt")
        return list(self.learnt)

    def sessions(self, now):
        self._call("sessions")
        return [SimpleNamespace(peer=PEER, state="established")]


def _link(tmp_path, **fleet_kw):
    clock = Clock()
    paths = SimpleNamespace(journal=str(tmp_path / "journal"))
    cfg = Config(fleet=FleetConfig(**{"protect": ("198.18.0.1",), **fleet_kw}))
    speaker = Speaker()
    link = fleet.FleetLink(cfg, paths, clock, speaker, addresses=lambda: [P("198.18.0.1"), P("198.18.3.3")])
    return link, Store(paths.journal, clock), speaker, clock


def _block_route(src, dst=HOST4, peer=PEER):
    return FlowRoute(dst.version, dst=dst, src=P(src), peer=peer)


def _sig_route(dport, dst=HOST4, peer=PEER, comps=()):
    c = ((fs.PROTO, (Term(EQ, 17),)), (fs.DPORT, (Term(EQ, dport),))) + tuple(comps)
    return FlowRoute(dst.version, dst=dst, components=tuple(sorted(c)), peer=peer)


# --- export ------------------------------------------------------------------------

def test_the_lists_are_announced_once_and_imported_entries_never(tmp_path):
    link, store, speaker, clock = _link(tmp_path, max_import=0)
    store.blocks[P("198.18.5.0/24")] = ("auto", clock.t + 60)
    store.blocks[P("198.18.6.0/24")] = ("bgp:198.18.0.2", None)  # learnt: never sent back out
    store.sigs["udp sport 161"] = (Signature(proto=17, sport=161), "manual", None)
    link.step(store, now=0.0)
    assert sorted(c for c in speaker.calls if c[0] == "announce") == [
        ("announce", "[destination 198.18.0.1/32][protocol ==17][source-port ==161]"),
        ("announce", "[destination 198.18.0.1/32][source 198.18.5.0/24]")]
    assert link.routes_out == 2
    speaker.calls.clear()
    reads = store.reads
    link.step(store, now=0.5)  # nothing moved: no read of the lists, no call to the speaker
    assert speaker.calls == [] and store.reads == reads


def test_an_expiry_is_withdrawn_at_the_next_look_and_a_change_is_seen_by_the_journal(tmp_path):
    link, store, speaker, clock = _link(tmp_path, max_import=0)
    store.block_add_each([(P("198.18.5.0/24"), 2.0, "", {})], source="auto")
    link.step(store, now=0.0)
    assert len(speaker.held) == 1
    store.block_add_each([(P("198.18.7.0/24"), None, "", {})])  # the CLI (or the cycle) adds one
    link.step(store, now=0.5)
    assert len(speaker.held) == 2
    clock.t += 2.5  # the first expires: no write, the kernel just stops dropping
    link.step(store, now=1.0)
    assert [r.match_text for r in speaker.held.values()] == ["[destination 198.18.0.1/32][source 198.18.7.0/24]"]


def test_a_speaker_failure_is_logged_once_and_the_next_look_syncs_again(tmp_path, caplog):
    link, store, speaker, clock = _link(tmp_path, max_import=0)
    store.blocks[P("198.18.5.0/24")] = ("auto", None)
    speaker.fail = True
    with caplog.at_level(logging.WARNING):
        for i in range(3):
            link.step(store, now=i * 0.5)
    assert sum("the speaker failed" in r.getMessage() for r in caplog.records) == 1
    speaker.fail = False
    link.step(store, now=2.0)
    assert len(speaker.held) == 1 and "read" in speaker.calls  # it read the speaker's routes first


# --- import ------------------------------------------------------------------------

def test_accepted_routes_enter_the_lists_with_their_origin_and_leave_with_them(tmp_path):
    link, store, speaker, clock = _link(tmp_path)
    speaker.learnt = [_block_route("198.18.50.0/24"), _sig_route(53, dst=P("198.18.3.3"))]
    link.step(store, now=0.0)
    assert store.blocks == {P("198.18.50.0/24"): ("bgp:198.18.0.2", None)}
    assert {k: s for k, (_, s, _) in store.sigs.items()} == {"udp dport 53": "bgp:198.18.0.2"}
    assert link.routes_in == {"accepted": 2, "refused": 0}
    assert link.imported == {("bgp:198.18.0.2", "block"): 1, ("bgp:198.18.0.2", "signature"): 1}
    assert not [c for c in speaker.calls if c[0] == "announce"]  # imported entries are not exported
    speaker.learnt = [_sig_route(53, dst=P("198.18.3.3"))]  # the block's route withdrawn
    link.step(store, now=0.5)
    assert store.blocks == {} and list(store.sigs) == ["udp dport 53"]
    speaker.learnt = []
    link.step(store, now=1.0)
    assert store.sigs == {} and link.imported == {}


def test_bad_routes_change_nothing_and_each_is_reported_once(tmp_path, caplog):
    link, store, speaker, clock = _link(tmp_path, max_import=3)
    store.allow = [P("198.18.60.0/24")]
    store.blocks[P("198.18.70.0/24")] = ("manual", None)
    bad = [
        _block_route("198.18.51.0/24", dst=P("198.18.9.9")),  # not ours
        _sig_route(53, comps=[(fs.DSCP, (Term(EQ, 46),))]),  # a component it cannot enforce
        _block_route("198.18.60.0/25"),  # allowlisted
        _block_route("198.18.70.0/24"),  # held locally: stays manual
    ]
    many = [_block_route(f"198.18.{100 + i}.0/24") for i in range(10)]
    speaker.learnt = bad + many
    with caplog.at_level(logging.WARNING):
        link.step(store, now=0.0)
        link.step(store, now=0.5)
        store.blocks[P("198.18.71.0/24")] = ("manual", None)
        store.block_del([])  # the lists move: the routes are judged again, and nothing is said again
        link.step(store, now=1.0)
    refused = [r.getMessage() for r in caplog.records if "fleet_refused" in r.getMessage()]
    for reason in ("destination 198.18.9.9/32 is not one of this host's", "component dscp cannot be enforced",
                   "source 198.18.60.0/25 is allowlisted", "block 198.18.70.0/24 is held locally (manual)",
                   "over the cap of 3 imported rules"):
        assert sum(reason in m for m in refused) >= 1, (reason, refused)
    assert len(refused) == len(bad) + 1  # once each, not at every look; those over the cap in one line
    assert '"routes": 7' in refused[-1]
    assert sorted(p for p, (s, _) in store.blocks.items() if imported(s)) == [P(f"198.18.{100 + i}.0/24")
                                                                               for i in range(3)]
    assert store.blocks[P("198.18.70.0/24")] == ("manual", None)
    assert link.routes_in == {"accepted": 3, "refused": 11}


def test_ten_thousand_routes_take_the_cap_and_no_more(tmp_path):
    link, store, speaker, clock = _link(tmp_path, max_import=1000)
    speaker.learnt = [_block_route(f"198.{18 + i // 65536 % 2}.{i // 256 % 256}.{i % 256}/32") for i in range(10_000)]
    t = time.perf_counter()
    link.step(store, now=0.0)
    assert sum(imported(s) for s, _ in store.blocks.values()) == 1000
    assert link.routes_in == {"accepted": 1000, "refused": 9000}
    assert time.perf_counter() - t < 5.0


def test_a_refused_write_changes_nothing_and_is_said(tmp_path, caplog):
    link, store, speaker, clock = _link(tmp_path)
    speaker.learnt = [_block_route("198.18.50.0/24")]
    store.fail = True
    with caplog.at_level(logging.ERROR):
        link.step(store, now=0.0)
    assert store.blocks == {} and link.routes_in == {"accepted": 0, "refused": 1}
    assert any("blocklist is full" in r.getMessage() for r in caplog.records)


def test_a_changed_rate_replaces_the_imported_rule():
    imp = Importer(10)
    slow = _sig_route(53)
    fast = FlowRoute(4, dst=HOST4, components=slow.components, rate=1500.0 * 100, peer=PEER)
    held = {"udp dport 53": (Signature(proto=17, dport=53), origin(PEER))}
    plan = imp.plan([fast], [HOST4], {}, held)
    assert [(s.rate_pps, src) for s, src in plan.add_sigs] == [(100, "bgp:198.18.0.2")] and plan.del_sigs == ()
    assert imp.plan([slow], [HOST4], {}, held).changes == 0


# --- the daemon's hook and the metrics -----------------------------------------------

def test_follow_starts_only_with_a_fleet_configured_and_stops_with_it(tmp_path):
    paths = SimpleNamespace(journal=str(tmp_path / "journal"), pin_root="/nonexistent", state_dir=str(tmp_path))
    assert fleet.follow(None, Config(), paths, Clock()) is None
    link = fleet.FleetLink(Config(fleet=FleetConfig(protect=("198.18.0.1",))), paths, Clock(), Speaker())
    assert fleet.follow(link, Config(), paths, Clock()) is None and link._stop.is_set()


def test_the_fleet_metrics(tmp_path):
    link, store, speaker, clock = _link(tmp_path)
    store.blocks[P("198.18.5.0/24")] = ("auto", None)
    speaker.learnt = [_block_route("198.18.50.0/24"), _block_route("198.18.51.0/24", dst=P("198.18.9.9"))]
    link.step(store, now=0.0)
    daemon = SimpleNamespace(fleet=link, decisions_by={}, cycle_seconds=0.0, cfg=Config(), guard=None, last=None,
                             engine=None)
    reg = CollectorRegistry(auto_describe=False)
    reg.register(SeawallCollector(SimpleNamespace(pin_root="/sys/fs/bpf/seawall-none"), daemon))
    assert reg.get_sample_value("seawall_fleet_session_up", {"peer": PEER}) == 1.0
    assert reg.get_sample_value("seawall_fleet_routes_out") == 1.0
    assert reg.get_sample_value("seawall_fleet_routes_in", {"verdict": "accepted"}) == 1.0
    assert reg.get_sample_value("seawall_fleet_routes_in", {"verdict": "refused"}) == 1.0
    assert reg.get_sample_value("seawall_fleet_imported_entries",
                                {"origin": "bgp:198.18.0.2", "kind": "block"}) == 1.0


def test_the_route_text_of_a_refusal_names_the_route():
    r = tr.judge(_block_route("198.18.51.0/24", dst=P("198.18.9.9")), [HOST4])
    assert isinstance(r, tr.Refused) and "198.18.51.0/24" in r.route.describe()


def test_the_speaker_config_limits_what_a_peer_may_send():
    from seawall.control.fleet.speaker import import_limit, speaker_config
    import tomllib

    conf = tomllib.loads(speaker_config(64514, "198.18.2.1", ("198.18.2.2 64513",), max_prefixes=import_limit(100)))
    fams = {a["config"]["afi-safi-name"]: a.get("prefix-limit") for a in conf["neighbors"][0]["afi-safis"]}
    assert fams == {"ipv4-flowspec": {"config": {"max-prefixes": 200}},
                    "ipv6-flowspec": {"config": {"max-prefixes": 200}}}
    assert "prefix-limit" not in speaker_config(64514, "198.18.2.1", ("198.18.2.2 64513",))


def test_a_session_that_goes_down_is_said_once_at_warning(tmp_path, caplog):
    link, store, speaker, clock = _link(tmp_path, max_import=0)
    states = iter(["established", "established", "idle", "idle", "established"])
    speaker.sessions = lambda now: [SimpleNamespace(peer=PEER, state=next(states))]
    with caplog.at_level(logging.INFO):
        for i in range(5):
            link.step(store, now=i * fleet.REFRESH)
    said = [(r.levelname, r.getMessage()) for r in caplog.records if "fleet_session" in r.getMessage()]
    assert [(lvl, '"idle"' in m) for lvl, m in said] == [("WARNING", True), ("INFO", False)]


def test_a_reload_changes_what_is_announced_at_the_next_look(tmp_path):
    link, store, speaker, clock = _link(tmp_path, max_import=0)
    store.blocks[P("198.18.5.0/24")] = ("auto", None)
    link.step(store, now=0.0)
    assert [r.match_text for r in speaker.held.values()] == ["[destination 198.18.0.1/32][source 198.18.5.0/24]"]
    new = Config(fleet=FleetConfig(protect=("198.18.0.9",), max_import=0))
    assert fleet.follow(link, new, link.paths, clock) is link  # reconfigured, not restarted
    link.step(store, now=0.5)
    assert [r.match_text for r in speaker.held.values()] == ["[destination 198.18.0.9/32][source 198.18.5.0/24]"]
