"""control/sources.py: IPv4 and IPv6 sources in one vectorised form, prefix
masks, and per-cycle deltas of the kernel's cumulative counters. Pure."""

from __future__ import annotations

import ipaddress

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from seawall.control.addr import Prefix
from seawall.control.addr import Sources, delta

U64 = np.uint64


def as_dict(s: Sources) -> dict:
    """address text -> (packets, bytes, syns)"""
    out = {}
    for i in range(len(s)):
        n = (int(s.hi[i]) << 64) | int(s.lo[i])
        ip = ipaddress.IPv4Address(n) if s.ver[i] == 4 else ipaddress.IPv6Address(n)
        assert str(ip) not in out, f"{ip} twice"
        out[str(ip)] = (int(s.packets[i]), int(s.bytes[i]), int(s.syns[i]))
    return out


def make(rows: dict) -> Sources:
    """{address: (packets, bytes, syns)}"""
    addrs = list(rows)
    return Sources.from_addresses(addrs, [rows[a][0] for a in addrs], [rows[a][1] for a in addrs],
                                  [rows[a][2] for a in addrs])


# --- construction ---------------------------------------------------------------------

def test_from_addresses_v4_and_v6():
    s = Sources.from_addresses(["198.18.0.1", "2001:db8::1", "::ffff:198.18.0.1"], [5, 7, 9])
    assert len(s) == 3
    assert s.ver.dtype == np.uint8 and s.ver.tolist() == [4, 6, 6]
    assert s.hi.dtype == U64 and s.lo.dtype == U64 and s.packets.dtype == U64
    assert s.hi.tolist() == [0, 0x20010DB800000000, 0]
    assert s.lo.tolist() == [0xC6120001, 1, 0x0000FFFFC6120001]  # a mapped address stays IPv6
    assert s.packets.tolist() == [5, 7, 9]
    assert s.bytes.tolist() == [500, 700, 900]  # 100 bytes a packet unless told
    assert s.syns.tolist() == [0, 0, 0]


def test_from_addresses_with_bytes_and_syns():
    s = Sources.from_addresses(["198.18.0.1", "2001:db8::2"], [5, 7], [300, 9000], [1, 2])
    assert (s.bytes.tolist(), s.syns.tolist()) == ([300, 9000], [1, 2])
    assert s.bytes.dtype == U64 and s.syns.dtype == U64


def test_from_addresses_full_range():
    s = Sources.from_addresses(["255.255.255.255", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "::"], [1, 2, 3])
    assert s.lo.tolist() == [2**32 - 1, 2**64 - 1, 0]
    assert s.hi.tolist() == [0, 2**64 - 1, 0]


def test_from_addresses_refuses_garbage():
    with pytest.raises(ValueError):
        Sources.from_addresses(["198.18.0.256"], [1])


def test_empty():
    e = Sources.empty()
    assert len(e) == 0
    assert e.ver.dtype == np.uint8 and e.packets.dtype == U64
    assert e.masked(24, 64)[0].shape == (0,)


def test_from_kernel():
    keys4 = np.array([[198, 18, 0, 1], [10, 0, 0, 255]], np.uint8)
    vals4 = np.array([[5, 500, 1], [6, 600, 0]], U64)
    keys6 = np.frombuffer(ipaddress.IPv6Address("2001:db8::1:2").packed, np.uint8).reshape(1, 16)
    vals6 = np.array([[7, 700, 3]], U64)
    s = Sources.from_kernel(keys4, vals4, keys6, vals6)
    assert as_dict(s) == {"198.18.0.1": (5, 500, 1), "10.0.0.255": (6, 600, 0), "2001:db8::1:2": (7, 700, 3)}
    assert s.ver.tolist() == [4, 4, 6]


@pytest.mark.parametrize("columns", [3, 4])
def test_from_kernel_one_family_empty(columns):
    """vals may carry more columns than packets, bytes, syns (a later ABI)."""
    keys4 = np.array([[198, 18, 0, 1]], np.uint8)
    vals4 = np.array([[5, 500, 1, 123][:columns]], U64)
    s = Sources.from_kernel(keys4, vals4, np.zeros((0, 16), np.uint8), np.zeros((0, columns), U64))
    assert as_dict(s) == {"198.18.0.1": (5, 500, 1)}
    keys6 = np.frombuffer(ipaddress.IPv6Address("2001:db8::9").packed, np.uint8).reshape(1, 16)
    s = Sources.from_kernel(np.zeros((0, 4), np.uint8), np.zeros((0, columns), U64), keys6, vals4.copy())
    assert as_dict(s) == {"2001:db8::9": (5, 500, 1)}


def test_take():
    s = make({"198.18.0.1": (1, 2, 3), "2001:db8::1": (4, 5, 6), "198.18.0.2": (7, 8, 9)})
    t = s.take(np.array([2, 0]))
    assert list(as_dict(t).items()) == [("198.18.0.2", (7, 8, 9)), ("198.18.0.1", (1, 2, 3))]


# --- prefixes and masks ----------------------------------------------------------------

def test_prefix_host():
    s = Sources.from_addresses(["198.18.7.9", "2001:db8:1:2:3:4:5:6"], [1, 1])
    assert s.prefix(0) == Prefix.parse("198.18.7.9/32")
    assert s.prefix(1) == Prefix.parse("2001:db8:1:2:3:4:5:6/128")


@pytest.mark.parametrize("addr, plen, want", [
    ("198.18.7.9", 24, "198.18.7.0/24"),
    ("198.18.7.9", 16, "198.18.0.0/16"),
    ("198.18.7.9", 8, "198.0.0.0/8"),
    ("198.18.7.9", 32, "198.18.7.9/32"),
    ("2001:db8:1:2:3:4:5:6", 64, "2001:db8:1:2::/64"),
    ("2001:db8:1:2:3:4:5:6", 96, "2001:db8:1:2:3:4::/96"),
    ("2001:db8:1:2:3:4:5:6", 48, "2001:db8:1::/48"),
    ("2001:db8:1:2:3:4:5:6", 128, "2001:db8:1:2:3:4:5:6/128"),
])
def test_prefix_supernet(addr, plen, want):
    assert Sources.from_addresses([addr], [1]).prefix(0, plen) == Prefix.parse(want)


def masked_text(s: Sources, plen4: int, plen6: int) -> list:
    hi, lo = s.masked(plen4, plen6)
    out = []
    for v, h, low in zip(s.ver.tolist(), hi.tolist(), lo.tolist()):
        n = (h << 64) | low
        out.append(str(ipaddress.IPv4Address(n) if v == 4 else ipaddress.IPv6Address(n)))
    return out


ADDRS = ["198.18.7.9", "2001:db8:1:2:aaaa:bbbb:cccc:dddd", "10.255.255.255", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"]


def test_masked_v4_24_v6_64():
    s = Sources.from_addresses(ADDRS, [1] * 4)
    assert masked_text(s, 24, 64) == ["198.18.7.0", "2001:db8:1:2::", "10.255.255.0", "ffff:ffff:ffff:ffff::"]


def test_masked_v6_96():
    s = Sources.from_addresses(ADDRS, [1] * 4)
    assert masked_text(s, 24, 96) == ["198.18.7.0", "2001:db8:1:2:aaaa:bbbb::", "10.255.255.0",
                                      "ffff:ffff:ffff:ffff:ffff:ffff::"]


def test_masked_other_lengths():
    s = Sources.from_addresses(ADDRS, [1] * 4)
    assert masked_text(s, 32, 128) == [str(ipaddress.ip_address(a)) for a in ADDRS]
    assert masked_text(s, 8, 16) == ["198.0.0.0", "2001::", "10.0.0.0", "ffff::"]
    assert masked_text(s, 16, 48) == ["198.18.0.0", "2001:db8:1::", "10.255.0.0", "ffff:ffff:ffff::"]


def test_masked_leaves_the_sources_alone():
    s = Sources.from_addresses(ADDRS, [1] * 4)
    hi, lo = s.hi.copy(), s.lo.copy()
    s.masked(8, 16)
    assert np.array_equal(s.hi, hi) and np.array_equal(s.lo, lo)


v4 = st.integers(0, 2**32 - 1).map(lambda n: str(ipaddress.IPv4Address(n)))
v6 = st.integers(0, 2**128 - 1).map(lambda n: str(ipaddress.IPv6Address(n)))


@given(st.lists(v4 | v6, min_size=1, max_size=20), st.integers(8, 32), st.integers(16, 128))
def test_masked_agrees_with_ipaddress(addrs, plen4, plen6):
    s = Sources.from_addresses(addrs, [1] * len(addrs))
    want = []
    for a in addrs:
        ip = ipaddress.ip_address(a)
        want.append(str(ipaddress.ip_network((ip, plen4 if ip.version == 4 else plen6), strict=False).network_address))
    assert masked_text(s, plen4, plen6) == want
    for i, a in enumerate(addrs):
        ip = ipaddress.ip_address(a)
        p = plen4 if ip.version == 4 else plen6
        assert str(s.prefix(i, p)) == str(ipaddress.ip_network((ip, p), strict=False))


# --- delta -------------------------------------------------------------------------

def test_delta_without_a_previous_snapshot():
    cur = make({"198.18.0.1": (5, 500, 1)})
    assert delta(cur, None) is cur
    assert as_dict(delta(cur, Sources.empty())) == {"198.18.0.1": (5, 500, 1)}


def test_delta_of_an_empty_snapshot():
    prev = make({"198.18.0.1": (5, 500, 1)})
    assert len(delta(Sources.empty(), prev)) == 0


def test_delta_counts_the_increase():
    prev = make({"198.18.0.1": (5, 500, 1), "198.18.0.2": (10, 1000, 0)})
    cur = make({"198.18.0.1": (8, 800, 2), "198.18.0.2": (10, 1000, 0)})
    assert as_dict(delta(cur, prev)) == {"198.18.0.1": (3, 300, 1), "198.18.0.2": (0, 0, 0)}


def test_delta_new_source_counts_from_zero():
    prev = make({"198.18.0.1": (5, 500, 1)})
    cur = make({"198.18.0.1": (6, 600, 1), "198.18.0.9": (4, 400, 4)})
    assert as_dict(delta(cur, prev)) == {"198.18.0.1": (1, 100, 0), "198.18.0.9": (4, 400, 4)}


def test_delta_forgets_vanished_sources():
    prev = make({"198.18.0.1": (5, 500, 1), "198.18.0.2": (7, 700, 0), "2001:db8::1": (9, 900, 9)})
    cur = make({"198.18.0.2": (9, 900, 0)})
    assert as_dict(delta(cur, prev)) == {"198.18.0.2": (2, 200, 0)}


def test_delta_counter_went_backwards_counts_from_zero():
    """Evicted and re-admitted between two reads: the kernel restarted it."""
    prev = make({"198.18.0.1": (500, 50000, 40), "198.18.0.2": (10, 1000, 0)})
    cur = make({"198.18.0.1": (3, 300, 1), "198.18.0.2": (12, 1200, 0)})
    assert as_dict(delta(cur, prev)) == {"198.18.0.1": (3, 300, 1), "198.18.0.2": (2, 200, 0)}


def test_delta_never_wraps():
    prev = make({"198.18.0.1": (2**64 - 1, 2**64 - 1, 2**64 - 1)})
    cur = make({"198.18.0.1": (1, 2, 3)})
    assert as_dict(delta(cur, prev)) == {"198.18.0.1": (1, 2, 3)}


def test_delta_v4_and_v6_with_equal_low_bits_stay_apart():
    """198.18.0.1 and ::c612:1 share lo; 2001:db8::c612:1 shares it too."""
    prev = make({"198.18.0.1": (10, 1000, 1), "::c612:1": (20, 2000, 2), "2001:db8::c612:1": (30, 3000, 3)})
    cur = make({"2001:db8::c612:1": (31, 3100, 3), "198.18.0.1": (15, 1500, 1), "::c612:1": (22, 2200, 2)})
    assert as_dict(delta(cur, prev)) == {"2001:db8::c612:1": (1, 100, 0), "198.18.0.1": (5, 500, 0),
                                         "::c612:1": (2, 200, 0)}


def test_delta_keeps_the_current_order():
    prev = make({"2001:db8::2": (1, 1, 1), "198.18.0.3": (1, 1, 1), "198.18.0.1": (1, 1, 1)})
    cur = make({"198.18.0.1": (2, 2, 2), "2001:db8::2": (3, 3, 3), "198.18.0.3": (4, 4, 4)})
    d = delta(cur, prev)
    assert list(as_dict(d)) == ["198.18.0.1", "2001:db8::2", "198.18.0.3"]
    assert np.array_equal(d.ver, cur.ver) and np.array_equal(d.lo, cur.lo) and np.array_equal(d.hi, cur.hi)


counts = st.tuples(st.integers(0, 2**40), st.integers(0, 2**50), st.integers(0, 2**40))


@given(
    st.dictionaries(v4 | v6, st.tuples(counts, counts), max_size=30),  # kept: (snapshot, increment)
    st.dictionaries(v4 | v6, counts, max_size=10),  # vanished: snapshot only
    st.dictionaries(v4 | v6, counts, max_size=10),  # new: increment only
    st.randoms(use_true_random=False),
)
def test_delta_of_snapshot_plus_increments_is_the_increments(kept, vanished, new, rnd):
    vanished = {a: c for a, c in vanished.items() if a not in kept}
    new = {a: c for a, c in new.items() if a not in kept and a not in vanished}
    prev_rows = {a: snap for a, (snap, _) in kept.items()} | vanished
    cur_rows = {a: tuple(s + i for s, i in zip(snap, inc)) for a, (snap, inc) in kept.items()} | new
    prev_order, cur_order = list(prev_rows), list(cur_rows)
    rnd.shuffle(prev_order)
    rnd.shuffle(cur_order)
    prev = make({a: prev_rows[a] for a in prev_order})
    cur = make({a: cur_rows[a] for a in cur_order})
    want = {a: inc for a, (_, inc) in kept.items()} | new
    d = delta(cur, prev)
    assert as_dict(d) == {a: want[a] for a in cur_order}
    assert list(as_dict(d)) == cur_order


@given(st.dictionaries(v4 | v6, st.tuples(counts, counts), min_size=1, max_size=20))
def test_delta_of_a_restarted_counter_is_its_current_value(rows):
    """prev > cur for every field: each counter restarted from zero."""
    prev = make({a: tuple(c + p + 1 for c, p in zip(cur, pre)) for a, (cur, pre) in rows.items()})
    cur = make({a: c for a, (c, _) in rows.items()})
    assert as_dict(delta(cur, prev)) == {a: c for a, (c, _) in rows.items()}


# --- a large table's partial reads (detect/observe.seen_rows) ---------------


def test_seen_rows_are_the_recently_active_not_hot_sources_one_packet_each():
    from seawall.control.detect.observe import seen_rows

    swept = Sources.from_addresses(["198.18.0.1", "198.18.0.2", "198.18.0.3", "2001:2::9"],
                                   [10, 4, 7, 3], [10 * 600, 4 * 80, 7 * 1500, 3 * 100], [0, 4, 1, 0])
    hot = Sources.from_addresses(["198.18.0.3"], [5])
    last = np.array([12, 9, 12, 11], np.uint32)
    got = seen_rows(swept, last, 11, hot)
    assert [str(got.prefix(i)) for i in range(len(got))] == ["198.18.0.1/32", "2001:2::9/128"]
    assert got.packets.tolist() == [1, 1]
    assert got.bytes.tolist() == [600, 100], "each at its mean packet size"
    assert got.syns.tolist() == [0, 0]
    syn = seen_rows(swept, last, 0, Sources.empty())
    assert syn.syns.tolist() == [0, 1, 0, 0], "a source of mostly SYNs counts as one SYN"
    assert len(seen_rows(swept, last, 13, hot)) == 0
