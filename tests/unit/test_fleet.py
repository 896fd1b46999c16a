"""The fleet's pure core: decisions to FlowSpec routes and back (control/fleet/).

The JSON fixtures are what gobgpd 3.10 (Debian's) printed for routes
announced with the words these tests expect; tests/netns/test_fleet_lab.py
checks the same against live daemons."""

from __future__ import annotations

import random
import tomllib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from seawall.control.addr import Prefix
from seawall.control.errors import SeawallError, UsageError
from seawall.control.fleet import flowspec as fs
from seawall.control.fleet import translate as tr
from seawall.control.fleet.exporter import Exporter
from seawall.control.fleet.rtbh import Blackhole, blackhole_routes, decode_blackholes, parse_community
from seawall.control.fleet.flowspec import AND, EQ, GT, LT, MATCH, NOT, FlowRoute, Term
from seawall.control.fleet.speaker import decode_neighbors, parse_api, speaker_config
from seawall.control.signature import Signature

P = Prefix.parse
HOST4, HOST6 = P("198.18.0.1"), P("2001:2::1")
PROTECTED = [HOST4, HOST6]


# --- export: blocks ------------------------------------------------------------------

def test_a_block_becomes_one_route_per_protected_address_of_its_family():
    routes = tr.block_routes(P("198.18.5.0/24"), PROTECTED + [P("198.18.0.9")])
    assert [r.gobgp_words() for r in routes] == [
        ["match", "destination", "198.18.0.1/32", "source", "198.18.5.0/24", "then", "discard"],
        ["match", "destination", "198.18.0.9/32", "source", "198.18.5.0/24", "then", "discard"],
    ]
    assert all(r.family == "ipv4-flowspec" and r.rate == 0 for r in routes)


def test_an_ipv6_block_is_announced_for_the_ipv6_addresses():
    (r,) = tr.block_routes(P("2001:2:0:5::/64"), PROTECTED)
    assert r.family == "ipv6-flowspec"
    assert r.gobgp_words() == ["match", "destination", "2001:2::1/128", "source", "2001:2:0:5::/64",
                               "then", "discard"]


def test_a_decision_with_no_protected_address_of_its_family_is_skipped_with_a_reason():
    ex = tr.export_routes([P("2001:2:0:5::/64"), P("198.18.5.0/24")], [Signature(58, sport=128)], [HOST4])
    assert [r.describe() for r in ex.routes.values()] == ["[destination 198.18.0.1/32][source 198.18.5.0/24] discard"]
    assert ex.skipped == (("block 2001:2:0:5::/64", "no protected IPv6 address to announce it for"),
                          ("sig icmpv6 type 128 drop", "no protected address of its protocol's family"))


def test_export_switches_leave_out_blocks_or_signatures():
    blocks, sigs = [P("198.18.5.0/24")], [Signature(17, sport=53)]
    assert len(tr.export_routes(blocks, sigs, PROTECTED).routes) == 3  # a block (v4), a udp rule (v4 and v6)
    assert len(tr.export_routes(blocks, sigs, PROTECTED, export_blocks=False).routes) == 2
    assert len(tr.export_routes(blocks, sigs, PROTECTED, export_signatures=False).routes) == 1


# --- export: signatures --------------------------------------------------------------

SIGNATURE_WORDS = [
    # (signature, family, the words after the destination)
    (Signature(17, sport=161, len_min=1200, len_max=1500, rate_pps=1000), 4,
     ["protocol", "==17", "source-port", "==161", "packet-length", ">=1186&<=1485",
      "then", "rate-limit", "1485000"]),
    (Signature(6, dport=443, tcp_flags=2), 4,
     ["protocol", "==6", "destination-port", "==443", "tcp-flags", "=S&!FRPAU", "then", "discard"]),
    (Signature(6, dport=80, tcp_flags=0), 6,
     ["protocol", "==6", "destination-port", "==80", "tcp-flags", "!FSRPAU", "then", "discard"]),
    (Signature(6, tcp_flags=0x3F), 4, ["protocol", "==6", "tcp-flags", "=FSRPAU", "then", "discard"]),
    (Signature(17, fragment=True, len_min=1200, len_max=1500), 4,
     ["protocol", "==17", "packet-length", ">=1186&<=1485", "fragment", "=is-fragment&!first-fragment",
      "then", "discard"]),
    (Signature(1, sport=3, dport=3), 4,
     ["protocol", "==1", "icmp-type", "==3", "icmp-code", "==3", "then", "discard"]),
    (Signature(58, sport=128), 6, ["protocol", "==58", "icmp-type", "==128", "then", "discard"]),
    (Signature(17, len_min=60, len_max=61), 4, ["protocol", "==17", "packet-length", "==46", "then", "discard"]),
    (Signature(47, rate_pps=10), 4, ["protocol", "==47", "then", "rate-limit", "15000"]),
]


@pytest.mark.parametrize("sig, version, words", SIGNATURE_WORDS, ids=lambda x: getattr(x, "key", None))
def test_a_signature_as_gobgp_words(sig, version, words):
    routes = {r.version: r for r in tr.signature_routes(sig, PROTECTED)}
    dst = {4: "198.18.0.1/32", 6: "2001:2::1/128"}[version]
    assert routes[version].gobgp_words() == ["match", "destination", dst] + words


def test_icmp_lives_in_ipv4_and_icmpv6_in_ipv6_only():
    assert [r.version for r in tr.signature_routes(Signature(1), PROTECTED)] == [4]
    assert [r.version for r in tr.signature_routes(Signature(58), PROTECTED)] == [6]
    assert [r.version for r in tr.signature_routes(Signature(17), PROTECTED)] == [4, 6]


def test_a_length_range_under_the_ethernet_header_is_refused_on_export():
    ex = tr.export_routes([], [Signature(17, len_min=0, len_max=10)], PROTECTED)
    assert not ex.routes and "Ethernet header" in ex.skipped[0][1]


def test_two_decisions_with_the_same_match_give_one_route():
    ex = tr.export_routes([P("198.18.5.0/24"), P("198.18.5.0/24")], [], PROTECTED)
    assert len(ex.routes) == 1


# --- the round trip: export then import gives the decision back ----------------------

signatures = st.builds(
    lambda proto, a, b, length, flags, frag, rate: _sig(proto, a, b, length, flags, frag, rate),
    st.sampled_from([1, 6, 17, 58, 47]), st.none() | st.integers(0, 255), st.none() | st.integers(0, 255),
    st.none() | st.tuples(st.integers(14, 9000), st.integers(1, 600)), st.none() | st.integers(0, 63),
    st.booleans(), st.sampled_from([0, 1, 1000, 250000]))


def _sig(proto, a, b, length, flags, frag, rate):
    kw = {"proto": proto, "rate_pps": rate}
    if length:
        kw["len_min"], kw["len_max"] = length[0], min(length[0] + length[1], 65535)
    if frag:
        kw["fragment"] = True
    elif proto in (1, 58, 6, 17):
        kw["sport"], kw["dport"] = a, b
        if proto == 6:
            kw["tcp_flags"] = flags
    return Signature(**kw)


@settings(max_examples=300, deadline=None)
@given(signatures)
def test_every_signature_makes_the_round_trip_unchanged(sig):
    routes = tr.signature_routes(sig, PROTECTED)
    assert routes
    for r in routes:
        verdict = tr.judge(r, PROTECTED)
        assert isinstance(verdict, tr.Accepted), verdict
        assert verdict.signature == sig


def test_a_block_makes_the_round_trip_unchanged():
    for prefix in (P("198.18.5.0/24"), P("198.18.5.7"), P("2001:2:0:5::/64")):
        for r in tr.block_routes(prefix, PROTECTED):
            assert tr.judge(r, PROTECTED) == tr.Accepted(r, block=prefix)


# --- GoBGP's JSON, as gobgpd 3.10 printed it -----------------------------------------

def _path(components, rate=0.0, extra=(), neighbor=None):
    ext = [{"type": 128, "subtype": 6, "as": 0, "rate": rate}] + list(extra)
    p = {"nlri": {"value": components}, "age": 1796037279, "best": True,
         "attrs": [{"type": 1, "value": 2}, {"type": 16, "value": ext}], "stale": False}
    if neighbor:
        p.update({"source-id": neighbor, "neighbor-ip": neighbor})
    return p


RIB_V4 = {
    "[destination: 198.18.0.1/32][protocol: ==tcp][destination-port: ==443][tcp-flags: =S&!FRPAU]": [_path([
        {"type": 1, "value": {"prefix": "198.18.0.1/32"}}, {"type": 3, "value": [{"op": 129, "value": 6}]},
        {"type": 5, "value": [{"op": 145, "value": 443}]},
        {"type": 9, "value": [{"op": 1, "value": 2}, {"op": 194, "value": 61}]}])],
    "[destination: 198.18.0.1/32][protocol: ==udp][fragment: =is-fragment&!first-fragment]": [_path([
        {"type": 1, "value": {"prefix": "198.18.0.1/32"}}, {"type": 3, "value": [{"op": 129, "value": 17}]},
        {"type": 12, "value": [{"op": 1, "value": 2}, {"op": 194, "value": 4}]}])],
    "[destination: 198.18.0.1/32][protocol: ==udp][source-port: ==161][packet-length: >=1186&<=1485]": [_path([
        {"type": 1, "value": {"prefix": "198.18.0.1/32"}}, {"type": 3, "value": [{"op": 129, "value": 17}]},
        {"type": 6, "value": [{"op": 129, "value": 161}]},
        {"type": 10, "value": [{"op": 19, "value": 1186}, {"op": 213, "value": 1485}]}], rate=1485000)],
    "[destination: 198.18.0.1/32][source: 198.18.5.0/24]": [_path([
        {"type": 1, "value": {"prefix": "198.18.0.1/32"}}, {"type": 2, "value": {"prefix": "198.18.5.0/24"}}],
        neighbor="198.18.0.1")],
}


def test_gobgp_json_decodes_to_the_routes_that_were_announced():
    got = {r.nlri: r for r in fs.decode_rib(RIB_V4, 4, lambda p: p.get("neighbor-ip", ""))}
    want = tr.export_routes([P("198.18.5.0/24")], [
        Signature(6, dport=443, tcp_flags=2), Signature(17, fragment=True),
        Signature(17, sport=161, len_min=1200, len_max=1500, rate_pps=1000)], [HOST4])
    assert set(got) == set(want.routes)
    for k, r in want.routes.items():
        assert got[k].rate == r.rate and got[k].other_actions == ()
    assert {r.peer for r in got.values()} == {"", "198.18.0.1"}


def test_an_ipv6_path_keeps_its_offsets():
    (r,) = fs.decode_rib({"x": [_path([{"type": 1, "value": {"prefix": "2001:2::1/128"}, "offset": 0},
                                       {"type": 2, "value": {"prefix": "2001:2:0:5::/64"}, "offset": 8}])]}, 6)
    assert r.dst == HOST6 and r.src_offset == 8
    assert tr.judge(r, PROTECTED).reason == "an IPv6 prefix offset cannot be enforced"


def test_other_actions_are_named_and_an_empty_rib_is_no_routes():
    (r,) = fs.decode_rib([_path([{"type": 1, "value": {"prefix": "198.18.0.1/32"}}],
                                extra=[{"type": 128, "subtype": 8}, {"type": 0, "subtype": 2}])], 4)
    assert r.other_actions == ("redirect",)  # a route target (type 0) is no action
    assert fs.decode_rib(None, 4) == [] and fs.decode_rib({}, 6) == []


@pytest.mark.parametrize("bad", [{"nlri": {}}, {"nlri": {"value": [{"type": 1, "value": {"prefix": "x"}}]}},
                                 {"nlri": {"value": [{"type": 3, "value": [{"op": "=="}]}]}}, "path"])
def test_an_unreadable_path_is_one_error(bad):
    with pytest.raises(UsageError):
        fs.decode_rib([bad], 4)


# --- import: what is refused, whole ---------------------------------------------------

def _route(components=(), dst=HOST4, src=None, rate=0.0, **kw):
    version = (dst or src or HOST4).version
    return FlowRoute(version, dst=dst, src=src, components=tuple(sorted(components)), rate=rate, **kw)


UDP = (fs.PROTO, (Term(EQ, 17),))
TCP = (fs.PROTO, (Term(EQ, 6),))
REFUSED = [
    ("no destination", _route([UDP], dst=None), "no destination"),
    ("not ours", _route([UDP], dst=P("198.18.9.9")), "destination 198.18.9.9/32 is not one of this host's"),
    ("wider than ours", _route([UDP], dst=P("198.18.0.0/24")), "is not one of this host's"),
    ("port either way", _route([UDP, (fs.PORT, (Term(EQ, 53),))]), "component port cannot be enforced"),
    ("dscp", _route([UDP, (fs.DSCP, (Term(EQ, 46),))]), "component dscp cannot be enforced"),
    ("flow label", _route([UDP, (fs.FLOW_LABEL, (Term(EQ, 1),))], dst=HOST6), "component label"),
    ("unknown type", _route([UDP, (14, (Term(EQ, 1),))]), "component type 14 cannot be enforced"),
    ("source and protocol", _route([UDP], src=P("198.18.5.0/24")), "a source with protocol"),
    ("source rate", _route(src=P("198.18.5.0/24"), rate=1000.0), "a traffic-rate on a source"),
    ("source too wide", _route(src=P("198.0.0.0/7")), "wider than /8"),
    ("redirect", _route([UDP], other_actions=("redirect",)), "action redirect cannot be enforced"),
    ("no action", _route([UDP], rate=None), "no discard or traffic-rate action"),
    ("everything to us", _route([(fs.DPORT, (Term(EQ, 53),))]), "neither a source nor a protocol"),
    ("two protocols", _route([(fs.PROTO, (Term(EQ, 6), Term(EQ, 17)))]), "protocol other than a single"),
    ("port range", _route([UDP, (fs.DPORT, (Term(GT | EQ, 1), Term(AND | LT | EQ, 1023)))]),
     "destination-port other than a single"),
    ("icmp type with udp", _route([UDP, (fs.ICMP_TYPE, (Term(EQ, 3),))]), "icmp-type with protocol 17"),
    ("port with icmp", _route([(fs.PROTO, (Term(EQ, 1),)), (fs.DPORT, (Term(EQ, 3),))]),
     "destination-port with protocol 1"),
    ("icmpv6 in ipv4", _route([(fs.PROTO, (Term(EQ, 58),))]), "protocol 58 does not live in IPv4"),
    ("flags at least", _route([TCP, (fs.TCP_FLAGS, (Term(MATCH, 2),))]), "tcp-flags must say of each"),
    ("flags or", _route([TCP, (fs.TCP_FLAGS, (Term(MATCH, 2), Term(NOT, 61)))]), "tcp-flags with alternatives"),
    ("flags on udp", _route([UDP, (fs.TCP_FLAGS, (Term(MATCH, 2), Term(AND | NOT, 61)))]), "TCP flags need"),
    ("any fragment", _route([UDP, (fs.FRAGMENT, (Term(MATCH, 2),))]), "a fragment match other than"),
    ("length or", _route([UDP, (fs.PKT_LEN, (Term(EQ, 100), Term(EQ, 200)))]), "a packet-length other than"),
    ("length open", _route([UDP, (fs.PKT_LEN, (Term(GT, 100),))]), "a packet-length other than"),
    ("fragment with port", _route([UDP, (fs.SPORT, (Term(EQ, 53),)),
                                   (fs.FRAGMENT, (Term(MATCH, 2), Term(AND | NOT, 4)))]), "a fragment rule cannot"),
]


@pytest.mark.parametrize("name, route, reason", REFUSED, ids=[c[0] for c in REFUSED])
def test_a_route_seawall_cannot_enforce_exactly_is_refused_whole(name, route, reason):
    verdict = tr.judge(route, PROTECTED)
    assert isinstance(verdict, tr.Refused), verdict
    assert reason in verdict.reason
    imp = tr.plan_import([route], PROTECTED, 100)
    assert imp.accepted == () and [r.route for r in imp.refused] == [route]


def test_a_destination_within_a_configured_prefix_is_accepted():
    r = _route([UDP], dst=P("198.18.1.7"))
    assert isinstance(tr.judge(r, [P("198.18.1.0/24")]), tr.Accepted)
    assert isinstance(tr.judge(r, [HOST4]), tr.Refused)


def test_an_open_ended_length_range_is_read_as_its_bounds():
    r = _route([UDP, (fs.PKT_LEN, (Term(GT, 99), Term(AND | LT, 201)))])
    assert tr.judge(r, PROTECTED).signature == Signature(17, len_min=114, len_max=215)


def test_a_traffic_rate_is_read_back_in_packets_per_second():
    r = _route([UDP, (fs.PKT_LEN, (Term(EQ, 500),))], rate=1e6)
    assert tr.judge(r, PROTECTED).signature.rate_pps == 2000
    assert tr.judge(_route([UDP], rate=1.0), PROTECTED).signature.rate_pps == 1  # never 0: that is a drop


def test_the_cap_refuses_the_excess_and_keeps_the_same_ones():
    routes = [_route(src=Prefix(4, bytes([198, 18, i >> 8, i & 0xFF]), 32)) for i in range(10000)]
    imp = tr.plan_import(routes, PROTECTED, 1000)
    assert len(imp.accepted) == 1000 and len(imp.refused) == 9000
    assert {r.reason for r in imp.refused} == {"over the cap of 1000 imported rules"}
    shuffled = routes[:]
    random.Random(7).shuffle(shuffled)
    again = tr.plan_import(shuffled, PROTECTED, 1000)
    assert [a.block for a in again.accepted] == [a.block for a in imp.accepted]
    assert tr.plan_import(routes, PROTECTED, 0).accepted == ()


def test_routes_giving_the_same_decision_count_once():
    routes = tr.signature_routes(Signature(17, sport=53), PROTECTED)  # one per family
    imp = tr.plan_import(routes + [_route([UDP, (fs.SPORT, (Term(EQ, 53),))])], PROTECTED, 1)
    assert [a.decision for a in imp.accepted] == ["sig udp sport 53 drop"] and imp.refused == ()


# --- the route value -----------------------------------------------------------------

def test_a_route_refuses_a_prefix_of_the_other_family_and_unsorted_components():
    with pytest.raises(UsageError, match="not an IPv6 prefix"):
        FlowRoute(6, dst=HOST4)
    with pytest.raises(UsageError, match="sorted"):
        FlowRoute(4, dst=HOST4, components=(UDP, (fs.PROTO, ())))


def test_only_discard_and_rate_limit_are_announced():
    with pytest.raises(UsageError, match="discard or rate-limit only"):
        _route([UDP], other_actions=("redirect",)).gobgp_words()
    with pytest.raises(UsageError, match="must match something"):
        FlowRoute(4).gobgp_words()


# --- the speaker's pure parts --------------------------------------------------------

def test_speaker_config_is_gobgpd_toml_with_both_flowspec_families():
    text = speaker_config(64512, "198.18.0.1", ("198.18.0.2 64513", "2001:2::2 4200000000"))
    cfg = tomllib.loads(text)
    assert cfg["global"]["config"] == {"as": 64512, "router-id": "198.18.0.1"}
    assert [(n["config"]["neighbor-address"], n["config"]["peer-as"]) for n in cfg["neighbors"]] == \
        [("198.18.0.2", 64513), ("2001:2::2", 4200000000)]
    assert [a["config"]["afi-safi-name"] for a in cfg["neighbors"][0]["afi-safis"]] == \
        ["ipv4-flowspec", "ipv6-flowspec"]
    with pytest.raises(UsageError, match="asn and router_id"):
        speaker_config(0, "", ("198.18.0.2 64513",))
    with pytest.raises(UsageError, match="peers is empty"):
        speaker_config(64512, "198.18.0.1", ())


def test_sessions_from_gobgp_neighbor_json():
    peer = {"conf": {"local_asn": 64513, "neighbor_address": "198.18.0.1", "peer_asn": 64512, "type": 1},
            "state": {"session_state": 6},
            "timers": {"state": {"uptime": {"seconds": 1796037436}, "downtime": {"seconds": 1796037436}}},
            "afi_safis": [{"config": {"family": {"afi": 1, "safi": 133}}, "state": {"received": 5, "accepted": 4}},
                          {"config": {"family": {"afi": 2, "safi": 133}}, "state": {"received": 5, "accepted": 5}},
                          {"config": {"family": {"afi": 1, "safi": 1}}, "state": {"received": 99}}]}
    down = {"conf": {"neighbor_address": "198.18.0.3", "peer_asn": 64514}, "state": {"session_state": 3},
            "timers": {"state": {"downtime": {"seconds": 1796037400}}}}
    got = decode_neighbors([peer, down], now=1796037446.5)
    assert [s.to_json() for s in got] == [
        {"peer": "198.18.0.1", "peer_as": 64512, "state": "established", "uptime_seconds": 10,
         "received": 10, "accepted": 9},
        {"peer": "198.18.0.3", "peer_as": 64514, "state": "active", "uptime_seconds": None,
         "received": 0, "accepted": 0}]


@pytest.mark.parametrize("text, want", [("127.0.0.1:50051", ("127.0.0.1", 50051)), ("[::1]:50052", ("::1", 50052))])
def test_the_api_address(text, want):
    assert parse_api(text) == want


@pytest.mark.parametrize("text", ["foo", "127.0.0.1", ":50051", "127.0.0.1:0", "127.0.0.1:x"])
def test_a_bad_api_address_is_one_error(text):
    with pytest.raises(UsageError, match="not a gobgpd API address"):
        parse_api(text)


# --- the exporter: what reaches the speaker ------------------------------------------

class FakeSpeaker:
    """Holds routes as gobgpd would; records every call; fails on demand."""

    def __init__(self, held=()):
        self.held = {r.nlri: r for r in held}
        self.calls: list = []
        self.fail = False

    def _call(self, what):
        self.calls.append(what)
        if self.fail:
            raise SeawallError("gobgpd is not reachable at 127.0.0.1:50051")

    def local_routes(self):
        self._call("read")
        return [r for r in self.held.values() if isinstance(r, FlowRoute)]

    def local_blackholes(self, community):
        self._call("read unicast")
        return [r for r in self.held.values() if isinstance(r, Blackhole) and r.community == community]

    def announce(self, r):
        self._call(("announce", r.match_text))
        self.held[r.nlri] = r

    def withdraw(self, r):
        self._call(("withdraw", r.match_text))
        del self.held[r.nlri]


B1, B2 = P("198.18.5.0/24"), P("198.18.6.0/24")
M1 = "[destination 198.18.0.1/32][source 198.18.5.0/24]"
M2 = "[destination 198.18.0.1/32][source 198.18.6.0/24]"


def test_the_first_update_syncs_against_what_the_speaker_already_holds():
    stale = tr.block_routes(P("198.18.9.0/24"), [HOST4])[0]
    speaker = FakeSpeaker(tr.block_routes(B1, [HOST4]) + [stale])  # as a restarted seawall finds it
    ex = Exporter(speaker, [HOST4])
    announced, withdrawn = ex.update([B1, B2], [])
    assert speaker.calls == ["read", ("withdraw", stale.match_text), ("announce", M2)]
    assert [r.match_text for r in announced] == [M2] and withdrawn == [stale]
    assert {r.match_text for r in speaker.held.values()} == {M1, M2}


def test_later_updates_send_only_what_changed_and_nothing_when_nothing_did():
    speaker = FakeSpeaker()
    ex = Exporter(speaker, [HOST4])
    ex.update([B1], [])
    speaker.calls.clear()
    ex.update([B1], [])
    assert speaker.calls == []
    ex.update([B2], [])
    assert speaker.calls == [("withdraw", M1), ("announce", M2)]


def test_a_changed_rate_is_announced_again():
    speaker = FakeSpeaker()
    ex = Exporter(speaker, [HOST4])
    ex.update([], [Signature(17, sport=53, rate_pps=10)])
    speaker.calls.clear()
    ex.update([], [Signature(17, sport=53, rate_pps=20)])
    assert [c[0] for c in speaker.calls] == ["announce"]
    assert [r.rate for r in speaker.held.values()] == [20 * tr.RATE_PACKET_BYTES]


def test_a_speaker_failure_is_raised_and_the_next_update_reads_again():
    speaker = FakeSpeaker()
    ex = Exporter(speaker, [HOST4])
    ex.update([B1], [])
    speaker.fail = True
    with pytest.raises(SeawallError):
        ex.update([B2], [])
    speaker.fail = False
    speaker.calls.clear()
    ex.update([B2], [])
    assert speaker.calls[0] == "read" and {r.match_text for r in speaker.held.values()} == {M2}


def test_the_daemon_call_logs_a_failure_and_a_skip_once(caplog):
    speaker = FakeSpeaker()
    ex = Exporter(speaker, [HOST4])
    speaker.fail = True
    with caplog.at_level("WARNING", logger="seawall.fleet"):
        assert [ex.try_update([B1, P("2001:2:0:5::/64")], []) for _ in range(3)] == [False] * 3
        speaker.fail = False
        assert ex.try_update([B1, P("2001:2:0:5::/64")], [])
        speaker.fail = True
        assert not ex.try_update([B2], [])
    msgs = [r.getMessage() for r in caplog.records]
    assert msgs == [
        "not announced: block 2001:2:0:5::/64: no protected IPv6 address to announce it for",
        "the speaker failed: gobgpd is not reachable at 127.0.0.1:50051",
        "the speaker failed: gobgpd is not reachable at 127.0.0.1:50051",  # failed again after recovering
    ]


# --- remote triggered blackholes ------------------------------------------------------

RTBH = parse_community("65535:666")


def test_a_community_is_two_16_bit_halves():
    assert parse_community("65535:666") == 4294902426 == RTBH  # as gobgpd's JSON gives it
    assert parse_community("65001:666") == 65001 << 16 | 666
    for bad in ("65536:1", "666", "a:b", "1:2:3", ""):
        with pytest.raises(UsageError, match="not a BGP community"):
            parse_community(bad)


def test_a_blackhole_is_never_announced_for_a_protected_address():
    routes, skipped = blackhole_routes([P("198.18.5.0/24"), P("198.18.0.0/16"), P("2001:2:0:5::/64")],
                                       PROTECTED, RTBH)
    assert [r.gobgp_words() for r in routes.values()] == [["198.18.5.0/24", "community", "65535:666"],
                                                         ["2001:2:0:5::/64", "community", "65535:666"]]
    assert [r.family for r in routes.values()] == ["ipv4", "ipv6"]
    assert skipped == (("blackhole 198.18.0.0/16", "it covers the protected 198.18.0.1/32"),)


def test_only_our_own_blackholes_are_read_back():
    rib = {  # as gobgpd 3.10 printed it: ours, one with another community, one learnt from a peer
        "198.18.5.0/24": [{"nlri": {"prefix": "198.18.5.0/24"}, "attrs": [
            {"type": 1, "value": 2}, {"type": 8, "communities": [4294902426]}, {"type": 3, "nexthop": "0.0.0.0"}]}],
        "198.18.6.0/24": [{"nlri": {"prefix": "198.18.6.0/24"}, "attrs": [{"type": 8, "communities": [1]}]}],
        "198.18.7.0/24": [{"nlri": {"prefix": "198.18.7.0/24"}, "neighbor-ip": "198.18.0.2",
                           "attrs": [{"type": 8, "communities": [4294902426]}]}],
    }
    assert decode_blackholes(rib, RTBH) == [Blackhole(P("198.18.5.0/24"), RTBH)]
    assert decode_blackholes(None, RTBH) == []
    with pytest.raises(UsageError, match="unreadable"):
        decode_blackholes([{"attrs": [{"type": 8, "communities": [RTBH]}]}], RTBH)


def test_the_exporter_announces_blackholes_only_with_rtbh_on():
    speaker = FakeSpeaker()
    Exporter(speaker, [HOST4], rtbh=True).update([B1, P("198.18.0.0/24")], [])
    assert sorted(r.match_text for r in speaker.held.values()) == [
        "[blackhole 198.18.5.0/24]", "[destination 198.18.0.1/32][source 198.18.0.0/24]", M1]
    speaker.calls.clear()
    off = Exporter(speaker, [HOST4])  # a restart with rtbh off: the unicast tables are not even read
    off.update([B1], [])
    assert speaker.calls == ["read", ("withdraw", "[destination 198.18.0.1/32][source 198.18.0.0/24]")]
    speaker.calls.clear()
    Exporter(speaker, [HOST4], rtbh=True).update([], [])  # on again: it withdraws what it left
    assert sorted(speaker.calls, key=str) == sorted(["read", "read unicast", ("withdraw", M1),
                                                    ("withdraw", "[blackhole 198.18.5.0/24]")], key=str)


def test_speaker_config_adds_the_unicast_families_for_rtbh():
    cfg = tomllib.loads(speaker_config(64512, "198.18.0.1", ("198.18.0.2 64513",), unicast=True))
    assert [a["config"]["afi-safi-name"] for a in cfg["neighbors"][0]["afi-safis"]] == \
        ["ipv4-flowspec", "ipv6-flowspec", "ipv4-unicast", "ipv6-unicast"]
