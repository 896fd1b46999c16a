"""IP fragments through the compiled program: signature rules and the
fragment and destination histograms.

A fragmented DNS reflection (answers of 3,000 bytes from port 53, cut into
fragments of about 1,400 bytes by scapy's own fragment() and fragment6())
is cut whole by two rules: `udp sport 53 len 1200-1499` for its first
fragments, which carry the UDP header, and `udp fragment len 1200-1499` for
the others, which carry none. A port rule never matches a non-first
fragment, a fragment rule never matches anything else; both hold through
VLAN tags, for IPv4 and IPv6.

Then the histograms the daemon reads: Feature.FRAG counts each packet under
its fragment class, and Feature.DST under abi.dst_bucket() of its
destination, the function the control plane uses to find its own
addresses' buckets: kernel and Python must agree.
"""

from __future__ import annotations

import ipaddress
import random

import numpy as np
import pytest
from scapy.layers.inet import TCP, UDP, fragment
from scapy.layers.inet6 import IPv6ExtHdrFragment, fragment6
from scapy.packet import Raw

from seawall.cli.main import main as cli_main
from seawall.control.datapath import abi, sigtable
from seawall.control.datapath.abi import Event, Feature, FragClass, Reason
from seawall.control.signature import Signature
from seawall.control.tools.frames import frame as product_frame

from frames import XDP_DROP, XDP_PASS, eth, frag6, ip4, ip6, udp

DST4, DST6 = "198.18.0.1", "2001:2::1"
REFLECTOR4, REFLECTOR6 = "198.19.53.53", "2001:2:0:53::53"
LEN = (1200, 1500)  # the length class of the cut fragments: 1200-1499 bytes
FRAG_RULE = Signature(17, fragment=True, len_min=LEN[0], len_max=LEN[1])
PORT_RULE = Signature(17, sport=53, len_min=LEN[0], len_max=LEN[1])

TAGS = [("untagged", ()), ("dot1q", (("q", 10),)), ("qinq", (("ad", 100), ("q", 200)))]
FAMILIES = [4, 6]


def answer(version: int, size: int = 3000, frag_hdr: bool = False):
    """A DNS answer of `size` payload bytes from port 53 to a client port
    (IPv6: with an empty fragment header when fragment6() is to cut it)."""
    src, dst = (REFLECTOR4, DST4) if version == 4 else (REFLECTOR6, DST6)
    l3 = ip4(src, dst) if version == 4 else ip6(src, dst) / IPv6ExtHdrFragment() if frag_hdr else ip6(src, dst)
    return l3 / UDP(sport=53, dport=33333) / Raw(b"a" * size)


def fragments(version: int, tags=(), size: int = 3000) -> list:
    """The answer cut into fragments as a router cuts it, each in its own
    Ethernet frame: [(FragClass, frame bytes)] in order."""
    if version == 4:
        parts = fragment(answer(4, size), fragsize=1400)
    else:
        parts = fragment6(answer(6, size, frag_hdr=True), 1400)
    out = []
    for p in parts:
        if version == 4:
            later = p.frag != 0
        else:
            later = p[IPv6ExtHdrFragment].offset != 0
        out.append((FragClass.LATER if later else FragClass.FIRST, bytes(eth(*tags) / p)))
    return out


def test_the_reflection_is_fragmented_as_the_rules_expect():
    """The frames the tests below rely on: one first fragment and at least
    one non-first fragment in the length class, and a short last one."""
    for v in FAMILIES:
        fr = fragments(v)
        classes = [c for c, _ in fr]
        assert classes[0] == FragClass.FIRST and set(classes[1:]) == {FragClass.LATER}, v
        assert all(LEN[0] <= len(f) < LEN[1] for _, f in fr[:-1]), [len(f) for _, f in fr]
        assert len(fr[-1][1]) < LEN[0]


@pytest.fixture
def rules(datapath):
    """Install rules for one test and remove them after it."""
    def add(*sigs):
        for s in sigs:
            datapath.lists.sig_add(s, None, "test")
    yield add
    datapath.lists.sig_flush()


@pytest.mark.parametrize("tag_id,tags", TAGS, ids=[t[0] for t in TAGS])
@pytest.mark.parametrize("version", FAMILIES)
def test_fragment_rule_drops_the_non_first_fragments(datapath, rules, version, tag_id, tags):
    rules(FRAG_RULE)
    fr = fragments(version, tags)
    for i, (cls, frame) in enumerate(fr):
        out = datapath.run_counted(frame)
        in_class = LEN[0] <= len(frame) < LEN[1]
        if cls == FragClass.LATER and in_class:
            assert (out.retval, out.reason) == (XDP_DROP, Reason.DROP_SIG), (i, len(frame))
        else:  # the first fragment (it has its ports), and the short last one
            assert (out.retval, out.reason) == (XDP_PASS, Reason.PASS_CLEAN), (i, cls, len(frame))
        assert out.event(Event.FRAGMENT) == int(cls == FragClass.LATER)


@pytest.mark.parametrize("tag_id,tags", TAGS, ids=[t[0] for t in TAGS])
@pytest.mark.parametrize("version", FAMILIES)
def test_port_rule_matches_first_fragments_only(datapath, rules, version, tag_id, tags):
    rules(Signature(17, sport=53))
    for i, (cls, frame) in enumerate(fragments(version, tags)):
        out = datapath.run_counted(frame)
        want = (XDP_DROP, Reason.DROP_SIG) if cls == FragClass.FIRST else (XDP_PASS, Reason.PASS_CLEAN)
        assert (out.retval, out.reason) == want, (i, cls)


@pytest.mark.parametrize("version", FAMILIES)
def test_both_rules_cut_the_whole_reflection_and_nothing_else(datapath, rules, version):
    rules(PORT_RULE, FRAG_RULE)
    tags = TAGS[1][1]
    fr = fragments(version, tags, size=4000)  # three fragments, the last one in the class too
    assert all(LEN[0] <= len(f) < LEN[1] for _, f in fr), [len(f) for _, f in fr]
    for i, (cls, frame) in enumerate(fr):
        out = datapath.run_counted(frame)
        assert (out.retval, out.reason) == (XDP_DROP, Reason.DROP_SIG), (i, cls)
    src, dst = (REFLECTOR4, DST4) if version == 4 else (REFLECTOR6, DST6)
    l3 = (lambda **kw: ip4(src, dst, **kw)) if version == 4 else (lambda **kw: ip6(src, dst, **kw))
    spared = {  # all of the length class but a short answer
        "a short DNS answer": eth(*tags) / answer(version, 100),
        "a whole 1300-byte datagram to port 53": eth(*tags) / l3() / UDP(sport=40000, dport=53) / Raw(b"q" * 1250),
        "a TCP segment from port 53 of the class": eth(*tags) / l3() / TCP(sport=53, dport=40000) / Raw(b"t" * 1250),
    }
    if version == 4:
        spared["a non-first TCP fragment of the class"] = eth(*tags) / l3(frag=185, proto=6) / Raw(b"f" * 1300)
    else:
        spared["a non-first TCP fragment of the class"] = eth(*tags) / l3() / frag6(185, 1, nh=6) / Raw(b"f" * 1300)
        spared["an atomic fragment (offset 0, M clear)"] = eth(*tags) / l3() / frag6(0, 0) / UDP(sport=40000, dport=53) / \
            Raw(b"q" * 1250)
    for what, p in spared.items():
        frame = bytes(p)
        assert (LEN[0] <= len(frame) < LEN[1]) == (what != "a short DNS answer"), what
        out = datapath.run_counted(frame)
        assert (out.retval, out.reason) == (XDP_PASS, Reason.PASS_CLEAN), what


@pytest.mark.parametrize("sig", [
    Signature(17, sport=0), Signature(17, dport=0), Signature(17, sport=0, dport=0),
    Signature(6, tcp_flags=0), Signature(6, dport=0, tcp_flags=0),
], ids=lambda s: s.key)
@pytest.mark.parametrize("version", FAMILIES)
def test_port_and_flag_rules_never_match_a_non_first_fragment(datapath, rules, sig, version):
    """A non-first fragment has no L4 header: the program sees port 0 and
    no flags there, which a rule on port 0 or on 'flags none' must not take
    for the packet's own."""
    rules(sig)
    src, dst = (REFLECTOR4, DST4) if version == 4 else (REFLECTOR6, DST6)
    if version == 4:
        p = eth() / ip4(src, dst, frag=185, flags="MF", proto=sig.proto) / Raw(b"\0" * 64)
    else:
        p = eth() / ip6(src, dst) / frag6(185, 1, nh=sig.proto) / Raw(b"\0" * 64)
    out = datapath.run_counted(bytes(p))
    assert (out.retval, out.reason) == (XDP_PASS, Reason.PASS_CLEAN)
    assert out.event(Event.FRAGMENT) == 1


def test_a_kernel_rule_with_the_fragment_bit_and_ports_matches_nothing(datapath, rules):
    """The control plane never writes one (Signature refuses it); the
    kernel, handed one anyway, matches neither kind of fragment."""
    m = abi.SigMatch
    raw = abi.SwSig(proto=17, match=m.ACTIVE | m.FRAG | m.SPORT, sport=53)
    datapath.lists.sigs.sigs.update(sigtable.slot_key(0), bytes(raw))
    datapath.lists.sigs.meta.update(b"\0" * 4, bytes(abi.SwSigMeta(used=1)))
    for v in FAMILIES:
        for cls, frame in fragments(v):
            out = datapath.run_counted(frame)
            assert (out.retval, out.reason) == (XDP_PASS, Reason.PASS_CLEAN), (v, cls)


def test_monitor_mode_counts_a_fragment_rule_as_would_drop(datapath, rules):
    rules(FRAG_RULE)
    datapath.set_config(abi.CfgFlag.MONITOR)
    cls, frame = fragments(4)[1]
    out = datapath.run_counted(frame)
    assert cls == FragClass.LATER and (out.retval, out.reason) == (XDP_PASS, Reason.MON_SIG)


def test_fragment_rule_through_the_list_store_and_the_command_line(datapath, tmp_path, capsys):
    """`seawall sig add --fragment` writes the rule the program matches;
    `sig list --json` shows it; `sig del` finds it by its text, in any
    word order; with a port it is a one-line usage error that changes
    nothing."""
    base = ["--bpffs", datapath.paths.pin_root, "--state-dir", datapath.paths.state_dir]
    try:
        assert cli_main(base + ["sig", "add", "--proto", "udp", "--fragment", "--len", "1200-1499",
                                "--ttl", "10m", "--reason", "fragmented DNS reflection"]) == 0
        assert "udp fragment len 1200-1499" in capsys.readouterr().out
        [r] = datapath.lists.sig_list()
        assert r["rule"] == "udp fragment len 1200-1499" and r["signature"] == FRAG_RULE
        assert r["signature"].to_json()["fragment"] is True
        out = datapath.run_counted(fragments(6)[1][1])
        assert (out.retval, out.reason) == (XDP_DROP, Reason.DROP_SIG)

        assert cli_main(base + ["sig", "add", "--proto", "udp", "--fragment", "--sport", "53"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "fragment rule cannot match ports" in err, err
        assert [x["rule"] for x in datapath.lists.sig_list()] == ["udp fragment len 1200-1499"]

        assert cli_main(base + ["sig", "del", "udp len 1200-1499 fragment"]) == 0
        assert "deleted rule: udp fragment len 1200-1499" in capsys.readouterr().out
        assert datapath.lists.sig_list() == []
    finally:
        datapath.lists.sig_flush()


# --- histograms --------------------------------------------------------------------------

FRAG_CASES = [
    ("v4-whole", lambda: ip4("198.18.7.1") / udp(), FragClass.NONE),
    ("v4-df", lambda: ip4("198.18.7.1", flags="DF") / udp(), FragClass.NONE),
    ("v4-first", lambda: ip4("198.18.7.1", flags="MF") / udp(), FragClass.FIRST),
    ("v4-middle", lambda: ip4("198.18.7.1", flags="MF", frag=185, proto=17) / Raw(b"f" * 32), FragClass.LATER),
    ("v4-last", lambda: ip4("198.18.7.1", frag=370, proto=17) / Raw(b"f" * 32), FragClass.LATER),
    ("v6-whole", lambda: ip6("2001:2:0:7::1") / udp(), FragClass.NONE),
    ("v6-atomic", lambda: ip6("2001:2:0:7::1") / frag6(0, 0) / udp(), FragClass.NONE),
    ("v6-first", lambda: ip6("2001:2:0:7::1") / frag6(0, 1) / udp(), FragClass.FIRST),
    ("v6-middle", lambda: ip6("2001:2:0:7::1") / frag6(100, 1, nh=17) / Raw(b"f" * 32), FragClass.LATER),
    ("v6-last", lambda: ip6("2001:2:0:7::1") / frag6(200, 0, nh=17) / Raw(b"f" * 32), FragClass.LATER),
]


@pytest.mark.parametrize("tag_id,tags", TAGS[:2], ids=[t[0] for t in TAGS[:2]])
@pytest.mark.parametrize("cid,build,cls", FRAG_CASES, ids=[c[0] for c in FRAG_CASES])
def test_fragment_histogram(datapath, cid, build, cls, tag_id, tags):
    watch = [(Feature.FRAG, b) for b in range(abi.FRAG_BUCKETS)]
    before = datapath.features(watch)
    out = datapath.run_counted(bytes(eth(*tags) / build()))
    assert out.reason == Reason.PASS_CLEAN
    moved = {b: n - before[(f, b)] for (f, b), n in datapath.features(watch).items()}
    assert moved == {b: int(b == cls) for b in range(abi.FRAG_BUCKETS)}, cid


PRODUCT_FRAGS = [  # control/tools/frames.py's fragments (replay and bench build theirs so)
    ("v4-whole", dict(), FragClass.NONE),
    ("v4-first", dict(fragment=0), FragClass.FIRST),
    ("v4-middle", dict(fragment=175), FragClass.LATER),
    ("v4-last", dict(fragment=350, more=False), FragClass.LATER),
    ("v4-offset-0-no-mf", dict(fragment=0, more=False), FragClass.NONE),
    ("v6-whole", dict(v6=True), FragClass.NONE),
    ("v6-first", dict(v6=True, fragment=0), FragClass.FIRST),
    ("v6-middle", dict(v6=True, fragment=175), FragClass.LATER),
    ("v6-last", dict(v6=True, fragment=350, more=False), FragClass.LATER),
    ("v6-atomic", dict(v6=True, fragment=0, more=False), FragClass.NONE),
]


@pytest.mark.parametrize("vlan", [None, 12])
@pytest.mark.parametrize("fid,kw,cls", PRODUCT_FRAGS, ids=[f[0] for f in PRODUCT_FRAGS])
def test_product_frame_builder_fragments(datapath, rules, fid, kw, cls, vlan):
    """The product's frame builder makes fragments the program classes as
    they are meant, with the UDP ports in the first fragment only, and the
    two rules of a fragmented reflection cut every one of these answers."""
    kw = dict(kw)
    src, dst = (REFLECTOR6, DST6) if kw.pop("v6", False) else (REFLECTOR4, DST4)
    f = product_frame(src, dst, "udp", 53, 33333, length=1434, vlan=vlan, **kw)
    assert len(f) == 1434
    watch = [(Feature.FRAG, int(cls)), (Feature.SPORT, 53 if cls != FragClass.LATER else 0)]
    before = datapath.features(watch)
    out = datapath.run_counted(f)
    assert out.reason == Reason.PASS_CLEAN and out.event(Event.FRAGMENT) == int(cls == FragClass.LATER)
    assert {k: v - before[k] for k, v in datapath.features(watch).items()} == {k: 1 for k in watch}
    rules(PORT_RULE, FRAG_RULE)
    out = datapath.run_counted(f)
    assert (out.retval, out.reason) == (XDP_DROP, Reason.DROP_SIG), fid


def test_product_frame_builder_refuses_a_bad_offset():
    for bad in (-1, 8192):
        with pytest.raises(ValueError):
            product_frame(REFLECTOR4, DST4, "udp", fragment=bad)


def _dst_histogram(datapath) -> np.ndarray:
    off = datapath.offsets[Feature.DST]
    return datapath.counters.read_features()[off:off + abi.DST_BUCKETS].astype(np.int64)


HOST_DSTS = ["198.18.0.1", "198.18.0.2", "198.18.0.3", "198.18.0.254", "198.18.1.1", "198.19.255.255",
             "2001:2::1", "2001:2::2", "2001:2:0:ffff::1", "2001:2:0:ffff:ffff:ffff:ffff:ffff"]


@pytest.mark.parametrize("dst", HOST_DSTS)
def test_destination_bucket_is_the_python_function(datapath, dst):
    v6 = ":" in dst
    p = ip6("2001:2:0:7::1", dst) / udp() if v6 else ip4("198.18.7.1", dst) / udp()
    for tags in ((), (("q", 5),)):
        h0 = _dst_histogram(datapath)
        out = datapath.run_counted(bytes(eth(*tags) / p))
        assert out.reason == Reason.PASS_CLEAN
        moved = _dst_histogram(datapath) - h0
        want = abi.dst_bucket(ipaddress.ip_address(dst).packed)
        assert np.flatnonzero(moved).tolist() == [want] and moved[want] == 1, dst


def test_destination_buckets_of_many_addresses_agree(datapath):
    """500 random destinations in the benchmarking ranges, both families,
    some behind fragments and tags: the kernel's histogram is the
    bincount of abi.dst_buckets() over them."""
    rng = random.Random(10)
    net4, net6 = ipaddress.ip_network("198.18.0.0/15"), ipaddress.ip_network("2001:2::/48")
    dsts = [str(net4[rng.randrange(net4.num_addresses)]) for _ in range(250)] + \
        [str(net6[rng.randrange(net6.num_addresses)]) for _ in range(250)]
    h0 = _dst_histogram(datapath)
    for i, d in enumerate(dsts):
        if ":" in d:
            l3 = ip6("2001:2:0:7::1", d) / (frag6(100, 1, nh=17) / Raw(b"f" * 8) if i % 3 == 0 else udp())
        else:
            l3 = ip4("198.18.7.1", d, **({"frag": 100, "proto": 17} if i % 3 == 0 else {})) / udp()
        assert datapath.run_counted(bytes(eth(*((("q", 9),) if i % 2 else ())) / l3)).reason == Reason.PASS_CLEAN
    moved = _dst_histogram(datapath) - h0
    v4 = np.array([list(ipaddress.ip_address(d).packed) for d in dsts[:250]], np.uint8)
    v6 = np.array([list(ipaddress.ip_address(d).packed) for d in dsts[250:]], np.uint8)
    want = np.bincount(np.concatenate([abi.dst_buckets(v4), abi.dst_buckets(v6)]), minlength=abi.DST_BUCKETS)
    assert moved.tolist() == want.tolist()
    assert (want > 0).sum() > 200  # the addresses spread: the comparison is not of two near-empty arrays


def test_dst_bucket_scalar_and_vectorised_agree():
    rng = np.random.default_rng(3)
    for n in (4, 16):
        a = rng.integers(0, 256, (2000, n), dtype=np.uint8)
        a[:5] = 0
        a[5:10] = 255
        assert abi.dst_buckets(a).tolist() == [abi.dst_bucket(bytes(r)) for r in a]
    assert abi.dst_buckets(np.zeros((0, 4), np.uint8)).shape == (0,)
    for bad in (b"\0" * 5, b""):
        with pytest.raises(ValueError):
            abi.dst_bucket(bad)
    with pytest.raises(ValueError):
        abi.dst_buckets(np.zeros((3, 6), np.uint8))


def test_a_hosts_addresses_land_in_distinct_buckets():
    """What the hash is for: every address of one IPv4 /24 (or IPv6 /120)
    in its own bucket, and a typical host's handful of addresses, IPv4 and
    IPv6 together, in distinct buckets."""
    for net in ("198.18.0.0/24", "198.19.77.0/24", "2001:2::/120", "2001:2:0:ab::1200/120"):
        n = ipaddress.ip_network(net)
        assert len({abi.dst_bucket(a.packed) for a in n}) == 256, net
    host = ["198.18.0.1", "198.18.0.2", "198.18.0.10", "198.18.1.1", "198.19.0.1", "2001:2::1", "2001:2::2",
            "2001:2:0:1::1"]
    assert len({abi.dst_bucket(ipaddress.ip_address(a).packed) for a in host}) == len(host)
