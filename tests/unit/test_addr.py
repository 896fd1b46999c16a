"""control/addr.py: prefix parsing, canonical form, LPM keys. Pure."""

from __future__ import annotations

import ctypes
import ipaddress
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from seawall.control.datapath import abi, tries
from seawall.control.addr import Prefix
from seawall.control.errors import UsageError


@pytest.mark.parametrize("text, version, packed, plen, canon", [
    ("198.18.0.0/15", 4, bytes([198, 18, 0, 0]), 15, "198.18.0.0/15"),
    ("198.18.7.0/24", 4, bytes([198, 18, 7, 0]), 24, "198.18.7.0/24"),
    ("0.0.0.0/0", 4, bytes(4), 0, "0.0.0.0/0"),
    ("198.18.0.5", 4, bytes([198, 18, 0, 5]), 32, "198.18.0.5/32"),
    ("  198.18.0.5/32\n", 4, bytes([198, 18, 0, 5]), 32, "198.18.0.5/32"),
    ("2001:2::/48", 6, bytes.fromhex("20010002") + bytes(12), 48, "2001:2::/48"),
    ("2001:DB8:0:0::/64", 6, bytes.fromhex("20010db8") + bytes(12), 64, "2001:db8::/64"),
    ("2001:db8::1", 6, bytes.fromhex("20010db8") + bytes(11) + b"\x01", 128, "2001:db8::1/128"),
    ("::/0", 6, bytes(16), 0, "::/0"),
])
def test_parse(text, version, packed, plen, canon):
    p = Prefix.parse(text)
    assert (p.version, p.packed, p.prefixlen) == (version, packed, plen)
    assert str(p) == canon
    assert p.family == f"v{version}"
    assert p.is_host == (plen == len(packed) * 8)


def test_bare_address_is_a_host_prefix():
    assert Prefix.parse("198.18.0.5") == Prefix.parse("198.18.0.5/32")
    assert Prefix.parse("2001:db8::1") == Prefix.parse("2001:db8::1/128")
    assert Prefix.parse("198.18.0.5").is_host
    assert not Prefix.parse("198.18.0.0/31").is_host


@pytest.mark.parametrize("text, fixed", [
    ("198.18.0.1/24", "198.18.0.0/24"),
    ("198.18.7.9/15", "198.18.0.0/15"),
    ("2001:db8::1/64", "2001:db8::/64"),
    ("10.1.2.3/0", "0.0.0.0/0"),
])
def test_host_bits_are_refused_with_the_fix(text, fixed):
    with pytest.raises(UsageError) as e:
        Prefix.parse(text)
    msg = str(e.value)
    assert "host bits" in msg
    assert f"did you mean {fixed}?" in msg
    assert text in msg


@pytest.mark.parametrize("text", [
    "", "   ", "foo", "300.1.2.3", "198.18.0.5/33", "2001:db8::/129", "198.18.0.5/",
    "198.18.0", "1.2.3.4.5", "01.2.3.4", "198.18.0.5/-1", "198.18.0.5 24", "::g",
    "2001:db8:::1", "198.18.0.0/15/16", "eth0",
])
def test_garbage_is_refused(text):
    with pytest.raises(UsageError) as e:
        Prefix.parse(text)
    assert "host bits" not in str(e.value)
    if text.strip():
        assert "not an IPv4/IPv6 address or CIDR" in str(e.value)
        assert repr(text.strip()) in str(e.value)


def test_usage_error_is_not_a_value_error():
    # the CLI maps UsageError to exit 2; an escaping ValueError would be a traceback
    with pytest.raises(UsageError):
        Prefix.parse("not-an-address")
    assert not issubclass(UsageError, ValueError)


# --- LPM keys -----------------------------------------------------------------

def test_lpm_key_layout_v4():
    key = tries.key(Prefix.parse("198.18.7.0/24"))
    assert key == (24).to_bytes(4, sys.byteorder) + bytes([198, 18, 7, 0])
    assert len(key) == ctypes.sizeof(abi.SwLpmV4)
    s = abi.SwLpmV4.from_buffer_copy(key)
    assert s.prefixlen == 24
    assert bytes(s.addr) == bytes([198, 18, 7, 0])  # network byte order


def test_lpm_key_layout_v6():
    key = tries.key(Prefix.parse("2001:db8:1::/48"))
    assert key == (48).to_bytes(4, sys.byteorder) + bytes.fromhex("20010db80001") + bytes(10)
    assert len(key) == ctypes.sizeof(abi.SwLpmV6)
    s = abi.SwLpmV6.from_buffer_copy(key)
    assert s.prefixlen == 48
    assert bytes(s.addr) == ipaddress.ip_address("2001:db8:1::").packed


@pytest.mark.parametrize("text", ["198.18.7.0/24", "198.18.0.5", "0.0.0.0/0", "2001:2::/48", "::1", "::/0"])
def test_lpm_key_round_trip(text):
    p = Prefix.parse(text)
    back = tries.prefix(tries.key(p))
    assert back == p
    assert str(back) == str(p)


def test_from_lpm_key_accepts_a_ctypes_struct():
    s = abi.SwLpmV6(prefixlen=64)
    s.addr[:] = list(bytes.fromhex("20010db8000000070000000000000000"))
    assert tries.prefix(bytes(s)) == Prefix.parse("2001:db8:0:7::/64")


networks = st.one_of(
    st.tuples(st.ip_addresses(v=4), st.integers(0, 32)),
    st.tuples(st.ip_addresses(v=6), st.integers(0, 128)),
).map(lambda t: ipaddress.ip_network(f"{t[0]}/{t[1]}", strict=False))


@given(networks)
def test_any_network_round_trips(net):
    p = Prefix.from_network(net)
    assert p.network == net
    assert tries.prefix(tries.key(p)) == p
    assert Prefix.parse(str(net)) == p
    assert Prefix.parse(str(p)) == p
    assert len(tries.key(p)) == 4 + (4 if net.version == 4 else 16)


# --- contains / overlaps ------------------------------------------------------

P = Prefix.parse


@pytest.mark.parametrize("a, b, contains, overlaps", [
    ("198.18.0.0/15", "198.18.7.0/24", True, True),
    ("198.18.7.0/24", "198.18.0.0/15", False, True),
    ("198.18.7.0/24", "198.18.7.0/24", True, True),
    ("198.18.7.0/24", "198.18.8.0/24", False, False),
    ("198.18.7.0/25", "198.18.7.128/25", False, False),
    ("0.0.0.0/0", "198.18.0.5", True, True),
    ("198.18.0.5", "198.18.0.5", True, True),
    ("198.18.0.5", "198.18.0.6", False, False),
    ("2001:2::/48", "2001:2:0:1::/64", True, True),
    ("2001:2:0:1::/64", "2001:2::/48", False, True),
    ("2001:2::/48", "2001:3::/48", False, False),
    # families never match, and never raise
    ("0.0.0.0/0", "::/0", False, False),
    ("::/0", "198.18.0.5", False, False),
    ("::ffff:198.18.0.0/120", "198.18.0.0/24", False, False),
])
def test_contains_overlaps(a, b, contains, overlaps):
    assert P(a).contains(P(b)) is contains
    assert P(a).overlaps(P(b)) is overlaps
    assert P(b).overlaps(P(a)) is overlaps


@given(networks, networks)
def test_contains_implies_overlaps(x, y):
    a, b = Prefix.from_network(x), Prefix.from_network(y)
    if a.contains(b):
        assert a.overlaps(b) and b.overlaps(a)
        assert a.prefixlen <= b.prefixlen
    if a.contains(b) and b.contains(a):
        assert a == b


# --- IPv4-mapped IPv6 -------------------------------------------------------------

@pytest.mark.parametrize("text, unmapped", [
    ("::ffff:198.18.0.9", "198.18.0.9/32"),
    ("::ffff:198.18.0.0/120", "198.18.0.0/24"),
    ("::ffff:c612:0/112", "198.18.0.0/16"),
    ("::ffff:0:0/96", "0.0.0.0/0"),  # then the size guard asks for --force
    # not mapped: left as they are
    ("::/0", "::/0"),
    ("::/64", "::/64"),  # holds the mapped range, and much else
    ("::198.18.0.9", "::c612:9/128"),  # IPv4-compatible (deprecated), not mapped
    ("::fffe:198.18.0.9", "::fffe:c612:9/128"),
    ("2001:2::ffff:198.18.0.9", "2001:2::ffff:c612:9/128"),
    ("198.18.0.9", "198.18.0.9/32"),
])
def test_unmapped(text, unmapped):
    p = Prefix.parse(text).unmapped()
    assert str(p) == unmapped
    assert p == Prefix.parse(unmapped)
    assert p.unmapped() == p  # once is enough


@given(st.integers(0, 2**32 - 1), st.integers(0, 32))
def test_unmapped_is_the_ipv4_prefix(n, plen):
    v4 = ipaddress.ip_network((n, plen), strict=False)
    mapped = ipaddress.ip_network((int(ipaddress.ip_address(f"::ffff:{v4.network_address}")), plen + 96))
    assert Prefix.from_network(mapped).unmapped() == Prefix.from_network(v4)
