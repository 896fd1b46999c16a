"""Blocklist expiry checked in the kernel, nested prefixes, last-hit stamps,
list edits taking effect on the next packet, and monitor mode."""

from __future__ import annotations

import time

import pytest

from seawall.control.datapath import abi
from seawall.control.addr import Prefix
from seawall.control.datapath.abi import Event, Reason

from frames import XDP_DROP, XDP_PASS, eth, ip4, ip6, tcp, udp

SEC = 1_000_000_000  # ns
BLOCK_EXPIRED_HOPS = 4  # tunables.h default

V4 = "198.18.20.20"
V6 = "2001:2:0:20::20"


def frame(src: str) -> bytes:
    return bytes(eth() / (ip4(src) if ":" not in src else ip6(src)) / tcp())


def verdict(out):
    return out.retval, out.reason


# --- expiry ----------------------------------------------------------------------


@pytest.mark.parametrize("src,host", [(V4, f"{V4}/32"), (V6, f"{V6}/128")], ids=["v4", "v6"])
def test_expired_entry_no_longer_drops(datapath, src, host):
    now = datapath.clock.boot_ns()
    datapath.block_raw(host, now + 60 * SEC)
    out = datapath.run_counted(frame(src))
    assert verdict(out) == (XDP_DROP, Reason.DROP_BLOCK), "a live entry drops"
    assert out.event(Event.BLOCK_EXPIRED) == 0

    datapath.block_raw(host, datapath.clock.boot_ns() - SEC)
    out = datapath.run_counted(frame(src))
    assert verdict(out) == (XDP_PASS, Reason.PASS_CLEAN)
    assert out.event(Event.BLOCK_EXPIRED) == 1
    assert datapath.block_entry(host) is not None, "the kernel skips, the control plane prunes"


def test_never_expiring_entry_drops(datapath):
    datapath.block_raw(f"{V4}/32", 0)
    out = datapath.run_counted(frame(V4))
    assert verdict(out) == (XDP_DROP, Reason.DROP_BLOCK)


def test_ttl_block_expires_without_a_daemon(datapath):
    """ListStore.block_add(ttl=1): drops now, passes after a second with no
    control plane running, counting BLOCK_EXPIRED."""
    datapath.block(f"{V4}/32", ttl=1)
    assert verdict(datapath.run_counted(frame(V4))) == (XDP_DROP, Reason.DROP_BLOCK)
    time.sleep(1.1)
    out = datapath.run_counted(frame(V4))
    assert verdict(out) == (XDP_PASS, Reason.PASS_CLEAN)
    assert out.event(Event.BLOCK_EXPIRED) == 1


#: a jiffy at the slowest tick Linux has (HZ=100), plus scheduling slack
JIFFY_BOUND_NS = 10_000_000 + 5_000_000


@pytest.mark.parametrize("src,host", [(V4, f"{V4}/32"), (V6, f"{V6}/128")], ids=["v4", "v6"])
def test_expiry_is_never_early_and_late_by_at_most_a_jiffy(datapath, src, host):
    """Expiry is decided on the per-CPU jiffy stamp (stamp_ns()), not a
    fresh clock read: an entry must drop until its time and pass within
    one jiffy after it, on every packet of a tight loop around the edge."""
    expires = datapath.clock.boot_ns() + 30_000_000
    datapath.block_raw(host, expires)
    f = frame(src)
    drops_after = []
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        before = datapath.clock.boot_ns()
        v = datapath.run(f)
        after = datapath.clock.boot_ns()
        if v == XDP_PASS:
            assert after >= expires, f"passed {(expires - after) / 1e6:.3f} ms before the entry expired"
            break
        assert v == XDP_DROP
        if before > expires:
            drops_after.append(before - expires)
    else:
        pytest.fail("the entry never expired")
    assert max(drops_after, default=0) < JIFFY_BOUND_NS, \
        f"still dropping {max(drops_after) / 1e6:.3f} ms after expiry"


@pytest.mark.parametrize("src,outer,inner", [
    (V4, "198.18.20.0/24", f"{V4}/32"),
    (V6, "2001:2:0:20::/64", f"{V6}/128"),
], ids=["v4-32-in-24", "v6-128-in-64"])
def test_expired_host_inside_live_prefix_still_drops(datapath, src, outer, inner):
    now = datapath.clock.boot_ns()
    datapath.block_raw(outer, 0)
    datapath.block_raw(inner, now - SEC)
    out = datapath.run_counted(frame(src))
    assert verdict(out) == (XDP_DROP, Reason.DROP_BLOCK)
    assert out.event(Event.BLOCK_EXPIRED) == 1, "the /32 was looked at and skipped"


def test_expired_prefix_inside_expired_prefix_falls_through_to_live_one(datapath):
    now = datapath.clock.boot_ns()
    datapath.block_raw("198.18.0.0/16", now + 60 * SEC)
    datapath.block_raw("198.18.20.0/24", now - SEC)
    datapath.block_raw("198.18.20.16/28", now - SEC)
    datapath.block_raw(f"{V4}/32", now - SEC)
    out = datapath.run_counted(frame(V4))
    assert verdict(out) == (XDP_DROP, Reason.DROP_BLOCK)
    assert out.event(Event.BLOCK_EXPIRED) == 3


def test_all_covering_prefixes_expired_passes(datapath):
    now = datapath.clock.boot_ns()
    datapath.block_raw("198.18.20.0/24", now - SEC)
    datapath.block_raw(f"{V4}/32", now - SEC)
    out = datapath.run_counted(frame(V4))
    assert verdict(out) == (XDP_PASS, Reason.PASS_CLEAN)
    assert out.event(Event.BLOCK_EXPIRED) == 2


def test_expired_hops_bound(datapath):
    """BLOCK_EXPIRED_HOPS (4) nested expired entries are skipped per packet
    and no more (a verifier bound; the control plane prunes expired ones):
    a live /16 under four expired longer prefixes is not reached."""
    now = datapath.clock.boot_ns()
    datapath.block_raw("198.18.0.0/16", 0)
    expired = [f"{V4}/32", "198.18.20.20/31", "198.18.20.20/30", "198.18.20.16/29"]
    for cidr in expired[:BLOCK_EXPIRED_HOPS - 1]:
        datapath.block_raw(cidr, now - SEC)
    out = datapath.run_counted(frame(V4))
    assert verdict(out) == (XDP_DROP, Reason.DROP_BLOCK), "within the bound the /16 is reached"
    assert out.event(Event.BLOCK_EXPIRED) == BLOCK_EXPIRED_HOPS - 1

    datapath.block_raw(expired[BLOCK_EXPIRED_HOPS - 1], now - SEC)
    out = datapath.run_counted(frame(V4))
    assert verdict(out) == (XDP_PASS, Reason.PASS_CLEAN)
    assert out.event(Event.BLOCK_EXPIRED) == BLOCK_EXPIRED_HOPS


def test_drop_stamps_last_hit_at_most_once_a_second(datapath):
    datapath.block(f"{V4}/32")
    assert datapath.block_entry(f"{V4}/32").last_hit_ns == 0
    t0 = datapath.clock.boot_ns()
    assert datapath.run(frame(V4)) == XDP_DROP
    t1 = datapath.clock.boot_ns()
    hit = datapath.block_entry(f"{V4}/32").last_hit_ns
    assert t0 - JIFFY_BOUND_NS <= hit <= t1, "a jiffy stamp"
    assert datapath.run(frame(V4)) == XDP_DROP
    assert datapath.block_entry(f"{V4}/32").last_hit_ns == hit, "rewritten within the granularity"


def test_expired_entry_keeps_its_last_hit(datapath):
    datapath.block_raw(f"{V4}/32", datapath.clock.boot_ns() - SEC)
    datapath.run(frame(V4))
    assert datapath.block_entry(f"{V4}/32").last_hit_ns == 0


# --- list edits take effect on the next packet --------------------------------


@pytest.mark.parametrize("src,cidr", [(V4, "198.18.20.0/24"), (V6, "2001:2:0:20::/64")], ids=["v4", "v6"])
def test_block_then_unblock(datapath, src, cidr):
    assert verdict(datapath.run_counted(frame(src))) == (XDP_PASS, Reason.PASS_CLEAN)
    datapath.block(cidr)
    assert verdict(datapath.run_counted(frame(src))) == (XDP_DROP, Reason.DROP_BLOCK)
    assert datapath.lists.block_del([Prefix.parse(cidr)]) == [True]
    assert verdict(datapath.run_counted(frame(src))) == (XDP_PASS, Reason.PASS_CLEAN)


def test_allow_then_unallow(datapath):
    datapath.block(f"{V4}/32")
    datapath.allow("198.18.20.0/24")
    assert verdict(datapath.run_counted(frame(V4))) == (XDP_PASS, Reason.PASS_ALLOW)
    assert datapath.lists.allow_del([Prefix.parse("198.18.20.0/24")]) == [True]
    assert verdict(datapath.run_counted(frame(V4))) == (XDP_DROP, Reason.DROP_BLOCK)


# --- monitor mode ---------------------------------------------------------------


@pytest.mark.parametrize("src,cidr", [(V4, f"{V4}/32"), (V6, "2001:2:0:20::/64")], ids=["v4", "v6"])
def test_monitor_mode_flips_without_reload(datapath, src, cidr):
    datapath.block(cidr)
    fd = datapath.prog_fd
    assert verdict(datapath.run_counted(frame(src))) == (XDP_DROP, Reason.DROP_BLOCK)
    datapath.set_config(abi.CfgFlag.MONITOR)
    assert verdict(datapath.run_counted(frame(src))) == (XDP_PASS, Reason.MON_BLOCK)
    datapath.set_config(0)
    assert verdict(datapath.run_counted(frame(src))) == (XDP_DROP, Reason.DROP_BLOCK)
    assert datapath.prog_fd == fd


def test_monitor_mode_leaves_other_verdicts_alone(datapath):
    datapath.block(f"{V4}/32")
    datapath.block("198.18.21.1/32")
    datapath.allow("198.18.21.1/32")
    datapath.set_config(abi.CfgFlag.MONITOR)
    assert verdict(datapath.run_counted(frame("198.18.21.2"))) == (XDP_PASS, Reason.PASS_CLEAN)
    assert verdict(datapath.run_counted(frame("198.18.21.1"))) == (XDP_PASS, Reason.PASS_ALLOW)
    out = datapath.run_counted(bytes(eth(("q", 3)) / ip4(V4) / udp()))
    assert verdict(out) == (XDP_PASS, Reason.MON_BLOCK)
