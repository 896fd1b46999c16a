"""control/signature.py: signature rules, their text and kernel forms, and
the vectorised match the harness and replay use. Pure."""

from __future__ import annotations

import ctypes

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from seawall.control.datapath import abi, sigtable
from seawall.control.errors import UsageError
from seawall.control.signature import (
    Signature, parse_len_range, parse_proto, parse_tcp_flags, tcp_flags_str,
)

SYN, ACK, FIN, RST, PSH, URG = 0x02, 0x10, 0x01, 0x04, 0x08, 0x20


# --- validation -------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, fragment", [
    (dict(proto=256), "protocol 256 is out of range"),
    (dict(proto=-1), "protocol -1 is out of range"),
    (dict(proto=6, dport=65536), "dport 65536 is out of range"),
    (dict(proto=6, dport=-1), "dport -1 is out of range"),
    (dict(proto=17, sport=70000), "sport 70000 is out of range"),
    (dict(proto=17, sport=-5), "sport -5 is out of range"),
    (dict(proto=17, len_min=100), "needs both ends"),
    (dict(proto=17, len_max=100), "needs both ends"),
    (dict(proto=17, len_min=100, len_max=100), "empty or out of range"),
    (dict(proto=17, len_min=200, len_max=100), "empty or out of range"),
    (dict(proto=17, len_min=-1, len_max=100), "empty or out of range"),
    (dict(proto=17, len_min=0, len_max=65536), "empty or out of range"),  # the kernel's end is a u16
    (dict(proto=17, len_min=0, len_max=70000), "empty or out of range"),
    (dict(proto=6, tcp_flags=64), "TCP flags must be 0-63"),
    (dict(proto=6, tcp_flags=-1), "TCP flags must be 0-63"),
    (dict(proto=6, dport=443, rate_pps=-1), "rate must be 0"),
    (dict(proto=6, dport=443, rate_pps=2**32), "rate must be 0"),
    (dict(proto=1, dport=300), "ICMP code 300 is out of range"),  # ICMP: a type and a code, each a byte
    (dict(proto=1, sport=256), "ICMP type 256 is out of range"),
    (dict(proto=58, dport=1000), "ICMP code 1000 is out of range"),
    (dict(proto=47, sport=1), "ports only exist for tcp and udp"),
    (dict(proto=17, tcp_flags=SYN), "TCP flags need protocol tcp"),
    (dict(proto=1, tcp_flags=0), "TCP flags need protocol tcp"),
    # a non-first fragment has no L4 header: no ports, no flags
    (dict(proto=17, fragment=True, sport=53), "fragment rule cannot match ports"),
    (dict(proto=17, fragment=True, dport=0), "fragment rule cannot match ports"),
    (dict(proto=6, fragment=True, tcp_flags=0), "fragment rule cannot match ports or TCP flags"),
    (dict(proto=17, fragment=1), "fragment must be true or false"),
    (dict(proto=17, fragment="yes"), "fragment must be true or false"),
])
def test_invalid(kwargs, fragment):
    with pytest.raises(UsageError, match=fragment.replace("(", r"\(")):
        Signature(**kwargs)


@pytest.mark.parametrize("kwargs", [
    dict(proto=6, dport=443, sport=1024, len_min=0, len_max=128, tcp_flags=SYN, rate_pps=2000),
    dict(proto=17, sport=161),
    dict(proto=17, dport=0),  # port 0 is a port
    dict(proto=17, dport=65535, sport=65535),
    dict(proto=1, len_min=0, len_max=1),
    dict(proto=58, len_min=1280, len_max=1408),
    dict(proto=47, len_min=65534, len_max=65535),
    dict(proto=0, len_min=0, len_max=65535),
    dict(proto=255),
    dict(proto=6, tcp_flags=0),  # a null scan: no flags at all is a value
    dict(proto=6, tcp_flags=63, rate_pps=2**32 - 1),
    dict(proto=17, fragment=True, len_min=1200, len_max=1500),
    dict(proto=17, fragment=True),
    dict(proto=6, fragment=True, len_min=60, len_max=61, rate_pps=10),
    dict(proto=44, fragment=True),
])
def test_valid(kwargs):
    s = Signature(**kwargs)
    assert all(getattr(s, k) == v for k, v in kwargs.items())


def test_frozen_and_hashable():
    a = Signature(17, sport=161)
    assert a == Signature(17, sport=161) and hash(a) == hash(Signature(17, sport=161))
    assert a != Signature(17, dport=161)
    with pytest.raises(AttributeError):
        a.sport = 53  # type: ignore[misc]


# --- text --------------------------------------------------------------------

@pytest.mark.parametrize("sig, key, describe", [
    (Signature(17, sport=161), "udp sport 161", "udp sport 161 drop"),
    (Signature(6, dport=443, len_min=0, len_max=128, tcp_flags=SYN, rate_pps=826),
     "tcp dport 443 len 0-127 flags S", "tcp dport 443 len 0-127 flags S limit 826pps"),
    (Signature(6, sport=80, dport=8080, tcp_flags=SYN | ACK), "tcp sport 80 dport 8080 flags SA",
     "tcp sport 80 dport 8080 flags SA drop"),
    (Signature(6, dport=25565, tcp_flags=0), "tcp dport 25565 flags none", "tcp dport 25565 flags none drop"),
    (Signature(1, len_min=1000, len_max=1501, rate_pps=100), "icmp len 1000-1500", "icmp len 1000-1500 limit 100pps"),
    (Signature(58, len_min=60, len_max=61), "icmpv6 len 60-60", "icmpv6 len 60-60 drop"),
    (Signature(47, len_min=100, len_max=200), "proto 47 len 100-199", "proto 47 len 100-199 drop"),
    (Signature(17), "udp", "udp drop"),
    (Signature(17, fragment=True, len_min=1200, len_max=1500), "udp fragment len 1200-1499",
     "udp fragment len 1200-1499 drop"),
    (Signature(47, fragment=True, rate_pps=5), "proto 47 fragment", "proto 47 fragment limit 5pps"),
])
def test_key_and_describe(sig, key, describe):
    assert sig.key == key
    assert sig.describe() == describe


def test_key_ignores_the_action():
    drop = Signature(17, sport=161, len_min=1280, len_max=1408)
    limit = Signature(17, sport=161, len_min=1280, len_max=1408, rate_pps=500)
    assert drop.key == limit.key and drop.describe() != limit.describe()
    assert limit.matcher() == drop and limit.matcher().rate_pps == 0
    assert limit.rate_pps == 500  # matcher() is a copy


@pytest.mark.parametrize("bits, text", [
    (0, "none"), (FIN, "F"), (SYN, "S"), (RST, "R"), (PSH, "P"), (ACK, "A"), (URG, "U"),
    (SYN | ACK, "SA"), (PSH | ACK, "PA"), (FIN | PSH | URG, "FPU"), (63, "FSRPAU"),
])
def test_tcp_flags_str(bits, text):
    assert tcp_flags_str(bits) == text


# --- kernel and JSON forms ------------------------------------------------------------

ports = st.none() | st.integers(0, 65535)


@st.composite
def signatures(draw):
    proto = draw(st.sampled_from([6, 17, 1, 58]) | st.integers(0, 255))
    ported = proto in (6, 17)
    dport = draw(ports) if ported else None
    sport = draw(ports) if ported else None
    if draw(st.booleans()):
        lo = draw(st.integers(0, 65534))
        hi = draw(st.integers(lo + 1, 65535))
    else:
        lo = hi = None
    flags = draw(st.none() | st.integers(0, 63)) if proto == 6 else None
    rate = draw(st.sampled_from([0, 1, 2**32 - 1]) | st.integers(0, 2**32 - 1))
    frag = dport is None and sport is None and flags is None and draw(st.booleans())
    return Signature(proto, dport=dport, sport=sport, len_min=lo, len_max=hi, tcp_flags=flags, rate_pps=rate,
                     fragment=frag)


@given(signatures(), st.integers(0, 2**64 - 1))
def test_kernel_round_trip(sig, expires_ns):
    k = sigtable.encode(sig, expires_ns)
    assert isinstance(k, abi.SwSig) and ctypes.sizeof(k) == 24
    assert k.expires_ns == expires_ns
    assert k.match & abi.SigMatch.ACTIVE
    assert bool(k.match & abi.SigMatch.DPORT) == (sig.dport is not None)
    assert bool(k.match & abi.SigMatch.SPORT) == (sig.sport is not None)
    assert bool(k.match & abi.SigMatch.LEN) == (sig.len_min is not None)
    assert bool(k.match & abi.SigMatch.FLAGS) == (sig.tcp_flags is not None)
    assert bool(k.match & abi.SigMatch.FRAG) == sig.fragment
    # through the bytes the kernel map holds
    back = sigtable.decode(abi.SwSig.from_buffer_copy(bytes(k)))
    assert back == sig
    assert back.key == sig.key  # `seawall sig del KEY` finds the rule by this text


@given(signatures())
def test_json_round_trip(sig):
    assert Signature.from_json(sig.to_json()) == sig


@given(signatures())
def test_text_round_trip(sig):
    """parse() reads back both key and describe(): `sig del` takes either."""
    assert Signature.parse(sig.describe()) == sig
    assert Signature.parse(sig.key) == sig.matcher()


@pytest.mark.parametrize("text", [
    "", "udp sport", "udp sport 161 sport 162", "udp fragment fragment", "udp len 5", "udp limit 0pps",
    "udp limit 5pps drop", "udp drop drop", "udp sport x", "gre", "proto 300", "proto x", "udp fragment sport 53",
    "tcp flags Q", "udp sport 1234567",
])
def test_text_refused(text):
    with pytest.raises(UsageError):
        Signature.parse(text)


def test_text_accepts_any_word_order_and_spacing():
    want = Signature(17, fragment=True, len_min=1200, len_max=1500)
    assert Signature.parse("  udp   len 1200-1499 fragment ") == want
    assert Signature.parse("17 fragment len 1200-1499 drop") == want


def test_old_journal_records_have_no_fragment_field():
    """Records written before the fragment flag existed read as before."""
    old = {"proto": 17, "dport": None, "sport": 161, "len_min": None, "len_max": None, "tcp_flags": None,
           "rate_pps": 0}
    assert Signature.from_json(old) == Signature(17, sport=161) and not Signature.from_json(old).fragment
    assert Signature.from_json({**old, "fragment": None}) == Signature(17, sport=161)
    assert Signature(17, sport=161).to_json() == {**old, "fragment": False}


@pytest.mark.parametrize("bad", [1, 0, "true", [True]])
def test_json_refuses_a_fragment_that_is_not_a_boolean(bad):
    with pytest.raises(UsageError, match="fragment must be true or false"):
        Signature.from_json({"proto": 17, "fragment": bad})


def test_json_refuses_a_fragment_rule_with_ports():
    with pytest.raises(UsageError, match="fragment rule cannot match ports"):
        Signature.from_json({"proto": 17, "sport": 53, "fragment": True})


def test_kernel_form_of_a_fragment_rule():
    k = sigtable.encode(Signature(17, fragment=True, len_min=1200, len_max=1500), 0)
    assert k.match == abi.SigMatch.ACTIVE | abi.SigMatch.FRAG | abi.SigMatch.LEN
    assert (k.proto, k.len_min, k.len_max, k.dport, k.sport, k.tcp_flags) == (17, 1200, 1500, 0, 0, 0)
    assert sigtable.decode(k).key == "udp fragment len 1200-1499"


def test_kernel_form_fields():
    k = sigtable.encode(Signature(6, dport=443, sport=1234, len_min=60, len_max=61, tcp_flags=SYN, rate_pps=500), 99)
    assert (k.proto, k.dport, k.sport, k.len_min, k.len_max, k.tcp_flags, k.rate_pps, k.expires_ns) == \
        (6, 443, 1234, 60, 61, SYN, 500, 99)
    assert k.match == abi.SigMatch.ACTIVE | abi.SigMatch.DPORT | abi.SigMatch.SPORT | abi.SigMatch.LEN | abi.SigMatch.FLAGS


def test_kernel_form_leaves_unset_fields_out():
    k = sigtable.encode(Signature(17, sport=161), 0)
    assert k.match == abi.SigMatch.ACTIVE | abi.SigMatch.SPORT
    assert (k.dport, k.len_min, k.len_max, k.tcp_flags, k.rate_pps) == (0, 0, 0, 0, 0)


def test_from_kernel_ignores_fields_without_their_bit():
    k = abi.SwSig(proto=17, match=abi.SigMatch.ACTIVE | abi.SigMatch.SPORT, sport=161, dport=53, len_min=5, len_max=9,
                    tcp_flags=SYN, rate_pps=7)
    assert sigtable.decode(k) == Signature(17, sport=161, rate_pps=7)


def test_json_accepts_a_missing_rate():
    d = Signature(17, sport=161).to_json()
    del d["rate_pps"]
    assert Signature.from_json(d) == Signature(17, sport=161)


def test_json_refuses_a_bad_rule():
    with pytest.raises(UsageError):
        Signature.from_json({"proto": 1, "dport": 800})


# --- matching ---------------------------------------------------------------------

# one packet per column: proto, sport, dport, frame length, TCP flags
PACKETS = {
    "syn-443-60": (6, 40000, 443, 60, SYN),
    "synack-443-60": (6, 40001, 443, 60, SYN | ACK),
    "ack-443-1500": (6, 40002, 443, 1500, ACK),
    "syn-80-60": (6, 40003, 80, 60, SYN),
    "snmp-1400": (17, 161, 50000, 1400, 0),
    "snmp-1279": (17, 161, 50001, 1279, 0),
    "snmp-1408": (17, 161, 50002, 1408, 0),
    "dns-90": (17, 50003, 53, 90, 0),
    "dns-from-161": (17, 161, 53, 90, 0),
    "icmp-98": (1, 0, 0, 98, 0),
    "tcp-sport-161": (6, 161, 50000, 1400, ACK),
}
NAMES = list(PACKETS)


def columns():
    arr = np.array([PACKETS[n] for n in NAMES], dtype=np.int64)
    return arr[:, 0], arr[:, 1], arr[:, 2], arr[:, 3], arr[:, 4]


@pytest.mark.parametrize("sig, hits", [
    (Signature(6, dport=443, tcp_flags=SYN), {"syn-443-60"}),
    (Signature(6, dport=443), {"syn-443-60", "synack-443-60", "ack-443-1500"}),
    (Signature(6, tcp_flags=SYN), {"syn-443-60", "syn-80-60"}),  # flags are exact, not a mask
    (Signature(6, len_min=0, len_max=128), {"syn-443-60", "synack-443-60", "syn-80-60"}),
    (Signature(17, sport=161), {"snmp-1400", "snmp-1279", "snmp-1408", "dns-from-161"}),
    # length: min inclusive, max exclusive
    (Signature(17, sport=161, len_min=1280, len_max=1408), {"snmp-1400"}),
    (Signature(17, sport=161, len_min=1279, len_max=1409), {"snmp-1400", "snmp-1279", "snmp-1408"}),
    (Signature(17, dport=53), {"dns-90", "dns-from-161"}),
    (Signature(17, sport=161, dport=53), {"dns-from-161"}),
    (Signature(1), {"icmp-98"}),
    (Signature(1, len_min=99, len_max=200), set()),
    (Signature(58), set()),
    (Signature(6, sport=161), {"tcp-sport-161"}),  # protocol first: UDP 161 is not TCP 161
])
def test_matches(sig, hits):
    m = sig.matches(*columns())
    assert m.dtype == bool and m.shape == (len(NAMES),)
    assert {n for n, hit in zip(NAMES, m) if hit} == hits


def test_matches_leaves_its_inputs_alone():
    cols = columns()
    copies = [c.copy() for c in cols]
    Signature(6, sport=40000, dport=443, len_min=0, len_max=128, tcp_flags=SYN).matches(*cols)
    for a, b in zip(cols, copies):
        assert np.array_equal(a, b)


def test_matches_empty_arrays():
    z = np.zeros(0, np.int64)
    assert Signature(17, sport=161).matches(z, z, z, z, z).shape == (0,)


def test_matches_ignores_rate():
    assert np.array_equal(Signature(17, sport=161, rate_pps=10).matches(*columns()),
                          Signature(17, sport=161).matches(*columns()))


# non-first fragments as the datapath sees them: no ports, no flags
FRAGS = {
    "udp-frag-1434": (17, 0, 0, 1434, 0, True),
    "udp-frag-600": (17, 0, 0, 600, 0, True),
    "tcp-frag-1434": (6, 0, 0, 1434, 0, True),
    "udp-whole-1434": (17, 40000, 0, 1434, 0, False),
    "udp-first-1434": (17, 53, 33333, 1434, 0, False),  # a first fragment carries its ports
}
FRAG_NAMES = list(FRAGS)


@pytest.mark.parametrize("sig, hits", [
    (Signature(17, fragment=True, len_min=1200, len_max=1500), {"udp-frag-1434"}),
    (Signature(17, fragment=True), {"udp-frag-1434", "udp-frag-600"}),
    (Signature(17, sport=53), {"udp-first-1434"}),
    (Signature(17, sport=0), set()),  # port 0 is not a non-first fragment's port
    (Signature(17, dport=0), {"udp-whole-1434"}),
    (Signature(6, tcp_flags=0), set()),
    (Signature(17, len_min=1200, len_max=1500), {"udp-frag-1434", "udp-whole-1434", "udp-first-1434"}),
])
def test_matches_fragments(sig, hits):
    arr = np.array([FRAGS[n][:5] for n in FRAG_NAMES], dtype=np.int64)
    later = np.array([FRAGS[n][5] for n in FRAG_NAMES])
    m = sig.matches(*arr.T, fragment=later)
    assert {n for n, hit in zip(FRAG_NAMES, m) if hit} == hits
    # without the column no packet is a fragment: a fragment rule matches nothing
    m0 = sig.matches(*arr.T)
    assert not (sig.fragment and m0.any())


packet = st.tuples(st.sampled_from([1, 6, 17, 58]), st.integers(0, 65535), st.integers(0, 65535),
                   st.integers(0, 9000), st.integers(0, 63), st.booleans())


def reference(sig: Signature, p) -> bool:
    """shared.h's rule: a non-first fragment (later) meets fragment rules
    only, and never a rule on ports or flags."""
    proto, sport, dport, length, flags, later = p
    l4 = sig.sport is not None or sig.dport is not None or sig.tcp_flags is not None
    if (sig.fragment and not later) or (l4 and later):
        return False
    return (proto == sig.proto
            and (sig.sport is None or sport == sig.sport)
            and (sig.dport is None or dport == sig.dport)
            and (sig.len_min is None or sig.len_min <= length < sig.len_max)
            and (sig.tcp_flags is None or flags == sig.tcp_flags))


@given(signatures(), st.lists(packet, max_size=20))
def test_matches_agrees_with_a_per_packet_reference(sig, pkts):
    arr = np.array([p[:5] for p in pkts], dtype=np.int64).reshape(-1, 5)
    later = np.array([p[5] for p in pkts], bool)
    m = sig.matches(arr[:, 0], arr[:, 1], arr[:, 2], arr[:, 3], arr[:, 4], fragment=later)
    assert m.tolist() == [reference(sig, p) for p in pkts]
    # no fragment column: as if every packet were whole
    m = sig.matches(arr[:, 0], arr[:, 1], arr[:, 2], arr[:, 3], arr[:, 4])
    assert m.tolist() == [reference(sig, (*p[:5], False)) for p in pkts]


# --- parsing ---------------------------------------------------------------------

@pytest.mark.parametrize("text, bits", [
    ("S", SYN), ("s", SYN), ("SA", SYN | ACK), ("as", SYN | ACK), (" PA ", PSH | ACK),
    ("F", FIN), ("R", RST), ("U", URG), ("FSRPAU", 63), ("SS", SYN),
    ("0", 0), ("2", SYN), ("18", SYN | ACK), ("63", 63), ("007", 7),
])
def test_parse_tcp_flags(text, bits):
    assert parse_tcp_flags(text) == bits


@pytest.mark.parametrize("text", ["", " ", "X", "SYN", "S A", "S,A", "64", "100", "-1", "1.5", "0x12", "²", "S²"])
def test_parse_tcp_flags_refuses(text):
    with pytest.raises(UsageError, match="is not a TCP flag set") as e:
        parse_tcp_flags(text)
    assert repr(text) in str(e.value)


@given(st.text(max_size=8))
def test_parse_tcp_flags_is_a_flag_set_or_a_usage_error(text):
    try:
        v = parse_tcp_flags(text)
    except UsageError:
        return
    assert 0 <= v < 64
    assert Signature(6, tcp_flags=v).tcp_flags == v


@given(st.integers(0, 63))
def test_parse_tcp_flags_reads_its_own_text(bits):
    text = tcp_flags_str(bits)
    assert parse_tcp_flags(str(bits)) == bits
    if bits:
        assert parse_tcp_flags(text) == bits


@pytest.mark.parametrize("text, proto", [
    ("tcp", 6), ("TCP", 6), (" udp ", 17), ("icmp", 1), ("icmpv6", 58), ("ICMPv6", 58),
    ("6", 6), ("47", 47), ("1", 1), ("255", 255),
])
def test_parse_proto(text, proto):
    assert parse_proto(text) == proto


@pytest.mark.parametrize("text", ["", "sctp", "tcp6", "0", "256", "-6", "6.0", "0x11", "udp/tcp", "²", "¹⁷"])
def test_parse_proto_refuses(text):
    with pytest.raises(UsageError, match="is not a protocol") as e:
        parse_proto(text)
    assert repr(text) in str(e.value)


@given(st.text(max_size=8))
def test_parse_proto_is_a_protocol_or_a_usage_error(text):
    try:
        v = parse_proto(text)
    except UsageError:
        return
    assert 0 < v < 256


@pytest.mark.parametrize("text, rng", [
    ("1200-1500", (1200, 1501)),
    (" 60 - 60 ", (60, 61)),
    ("0-0", (0, 1)),
    ("0-127", (0, 128)),
    ("1-65534", (1, 65535)),
])
def test_parse_len_range(text, rng):
    assert parse_len_range(text) == rng
    Signature(17, len_min=rng[0], len_max=rng[1])  # always a valid rule


@pytest.mark.parametrize("text", [
    "", "1200", "1200-", "-1500", "1500-1200", "a-b", "1200..1500", "1200 1500", "-5-10", "1.5-2",
    "0-65535",  # the kernel keeps the exclusive end in 16 bits: 65534 is the longest
    "0-70000", "1200-1500-1600",
])
def test_parse_len_range_refuses(text):
    with pytest.raises(UsageError, match="is not a length range") as e:
        parse_len_range(text)
    assert repr(text) in str(e.value)


@given(st.integers(0, 65534), st.integers(0, 65534))
def test_parse_len_range_is_inclusive(a, b):
    lo, hi = sorted((a, b))
    rng = parse_len_range(f"{lo}-{hi}")
    sig = Signature(17, len_min=rng[0], len_max=rng[1])
    lengths = np.array([lo - 1, lo, hi, hi + 1], np.int64)
    ones = np.full(4, 17, np.int64)
    assert sig.matches(ones, ones, ones, lengths, ones).tolist() == [False, True, True, False]
    assert sigtable.decode(sigtable.encode(sig, 0)) == sig


@pytest.mark.parametrize("text,sig", [
    ("icmp type 11", Signature(1, sport=11)),
    ("icmp type 3 code 3", Signature(1, sport=3, dport=3)),
    ("icmpv6 type 1 code 4 len 0-127", Signature(58, sport=1, dport=4, len_min=0, len_max=128)),
])
def test_icmp_rules_name_a_type_and_code(text, sig):
    """The datapath keeps an ICMP type where a source port would be, its
    code where a destination port would be; the text says type and code."""
    assert Signature.parse(text) == sig
    assert sig.key == text
    assert Signature.parse(sig.describe()) == sig


@pytest.mark.parametrize("text", ["icmp sport 3", "udp type 3", "icmp code 999", "icmp type 3 type 4"])
def test_icmp_words_only_for_icmp(text):
    with pytest.raises(UsageError):
        Signature.parse(text)


@pytest.mark.parametrize("text, cuts", [
    ("icmp type 3 code 4", True), ("icmp type 3", True), ("icmp len 500-600", True),
    ("icmpv6 type 2", True), ("icmpv6 len 1200-1499", True),
    ("icmp type 3 code 3", False), ("icmp type 11", False), ("icmpv6 type 1", False), ("icmp fragment", False),
    ("udp sport 53", False),
])
def test_a_rule_that_would_drop_path_mtu_discovery_is_known(text, cuts):
    assert Signature.parse(text).cuts_path_mtu() is cuts
