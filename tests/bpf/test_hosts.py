"""The blocklist's host mirrors (block_host_v4/v6, xdp/maps.h;
lists.HostMirror): /32 and /128 blocks again in an exact-match hash the
datapath reads before walking the trie. Every write path keeps them in
step, and a mirror that is behind, or ahead in expiry, never changes a
verdict: the trie stays the list."""

from __future__ import annotations

import numpy as np
import pytest

from seawall.control.datapath import abi, tries
from seawall.control.addr import Prefix
from seawall.control.datapath.abi import Event, Reason

from frames import XDP_DROP, XDP_PASS, eth, ip4, ip6, udp

SEC = 1_000_000_000
V4, V6 = "198.18.30.30", "2001:2:0:30::30"


def frame(src: str) -> bytes:
    return bytes(eth() / (ip4(src) if ":" not in src else ip6(src)) / udp())


def mirrored(datapath, version: int) -> set:
    m = datapath.lists.maps.mirrors[version].map()
    return {bytes(k) for k in m.keys()}


def packed(addr: str) -> bytes:
    return Prefix.parse(addr).packed


@pytest.mark.parametrize("src,host", [(V4, f"{V4}/32"), (V6, f"{V6}/128")], ids=["v4", "v6"])
def test_every_write_path_keeps_the_mirror_in_step(datapath, src, host):
    version = 4 if ":" not in src else 6
    datapath.block(host, ttl=600)
    assert datapath.host_entry(host) is not None
    trie = datapath.lists.maps.trie("block", version).lookup(tries.key(Prefix.parse(host)))
    assert bytes(datapath.host_entry(host)) == trie, "the same value as its twin"
    datapath.block(host)  # replaced, now permanent
    assert datapath.host_entry(host).expires_ns == 0
    datapath.lists.block_del([Prefix.parse(host)])
    assert datapath.host_entry(host) is None
    assert mirrored(datapath, version) == set()


def test_only_hosts_are_mirrored_and_bulk_writes_and_flush_follow(datapath):
    hosts = [Prefix.parse(f"198.18.{i // 250}.{i % 250 + 1}/32") for i in range(1000)]
    nets = [Prefix.parse(f"198.19.{i}.0/24") for i in range(50)]
    v6 = [Prefix.parse(f"2001:2:0:40::{i + 1:x}/128") for i in range(20)] + [Prefix.parse("2001:2:0:50::/64")]
    assert len(datapath.lists.block_add(hosts + nets + v6, ttl=600, reason="bulk")) == 1071
    assert mirrored(datapath, 4) == {p.packed for p in hosts}
    assert mirrored(datapath, 6) == {p.packed for p in v6 if p.prefixlen == 128}
    datapath.lists.block_del(hosts[:10] + nets[:2])
    assert mirrored(datapath, 4) == {p.packed for p in hosts[10:]}
    datapath.lists.block_flush()
    assert mirrored(datapath, 4) == set() and mirrored(datapath, 6) == set()


def test_the_datapath_drops_a_host_from_its_mirror(datapath):
    """White box: an entry in the mirror alone (which the control plane
    never makes) drops, so the drop path really reads the mirror."""
    datapath.lists.rebuild_derived()  # no bit left over from earlier tests
    m = datapath.lists.maps.mirrors[4].map()
    m.update(packed(V4), bytes(abi.SwBlock(expires_ns=0, prefixlen=32)))
    try:
        out = datapath.run_counted(frame(V4))
        # the summary bit is clear (no trie entry was written): the mirror
        # is behind the summary check, as the trie is
        assert (out.retval, out.reason) == (XDP_PASS, Reason.PASS_CLEAN)
        datapath.lists.maps.summaries.mark("block", 4, np.frombuffer(tries.key(Prefix.parse(f"{V4}/32")),
                                                                np.uint8).reshape(1, -1))
        out = datapath.run_counted(frame(V4))
        assert (out.retval, out.reason) == (XDP_DROP, Reason.DROP_BLOCK)
        assert datapath.host_entry(f"{V4}/32").last_hit_ns > 0, "the hit is stamped on the mirror"
    finally:
        m.delete(packed(V4))


def test_a_mirror_behind_the_trie_still_drops(datapath):
    datapath.block(f"{V4}/32")
    datapath.lists.maps.mirrors[4].map().delete(packed(V4))
    out = datapath.run_counted(frame(V4))
    assert (out.retval, out.reason) == (XDP_DROP, Reason.DROP_BLOCK), "a miss walks the trie"


def test_an_expired_mirror_entry_leaves_the_verdict_to_the_trie(datapath):
    """Mid-write the mirror may hold the old value for a moment: an expired
    one there must not pass a host the trie still blocks, nor count the
    expiry (the trie counts what it skips)."""
    now = datapath.clock.boot_ns()
    datapath.block_raw(f"{V4}/32", now + 60 * SEC)
    datapath.lists.maps.mirrors[4].map().update(packed(V4), bytes(abi.SwBlock(expires_ns=now - SEC, prefixlen=32)))
    out = datapath.run_counted(frame(V4))
    assert (out.retval, out.reason) == (XDP_DROP, Reason.DROP_BLOCK)
    assert out.event(Event.BLOCK_EXPIRED) == 0

    datapath.block_raw(f"{V4}/32", now - SEC)  # both expired now: one expiry counted
    out = datapath.run_counted(frame(V4))
    assert (out.retval, out.reason) == (XDP_PASS, Reason.PASS_CLEAN)
    assert out.event(Event.BLOCK_EXPIRED) == 1


def test_a_rebuild_brings_the_mirror_back_in_line(datapath):
    datapath.block(f"{V4}/32")
    datapath.block("198.18.30.31/32")
    m = datapath.lists.maps.mirrors[4].map()
    m.delete(packed("198.18.30.31"))
    m.update(packed("198.18.30.99"), bytes(abi.SwBlock(expires_ns=0, prefixlen=32)))  # a stray
    datapath.lists.rebuild_derived()
    assert mirrored(datapath, 4) == {packed(V4), packed("198.18.30.31")}


def test_block_list_shows_the_last_hit_the_mirror_got(datapath):
    datapath.block(f"{V4}/32", ttl=600)
    assert datapath.run(frame(V4)) == XDP_DROP
    (entry,) = [e for e in datapath.lists.block_list() if str(e.prefix) == f"{V4}/32"]
    assert entry.last_hit_at is not None
