"""The control plane's faster paths against the plain code they replace:
list-summary index math, PrefixSet, the engine's grouping and containment
index, and the delta join. Each must give exactly what the simple version
gives (seeded random cases), only sooner. Pure: no root."""

from __future__ import annotations

import ipaddress
import random

import numpy as np
import pytest

from seawall.control.datapath import tries
from seawall.control.addr import Prefix, PrefixSet
from seawall.control.config import Config
from seawall.control.addr import group_labels as _group_labels
from seawall.control.detect.engine import Engine
from seawall.control.addr import Sources, delta
from seawall.control.datapath.summary import V6_HASH, set_spans, spans

LOG2 = 20


def _key(p: Prefix) -> np.ndarray:
    return np.frombuffer(tries.key(p), np.uint8).reshape(1, -1)


def _rand_prefix(rng: random.Random, version: int, plens) -> Prefix:
    bits = 32 if version == 4 else 128
    net = (ipaddress.IPv4Network if version == 4 else ipaddress.IPv6Network)((rng.getrandbits(bits), bits))
    return Prefix.from_network(net.supernet(new_prefix=rng.choice(plens)))


def _inside(rng: random.Random, p: Prefix) -> int:
    bits = len(p.packed) * 8
    return int.from_bytes(p.packed, "big") | (rng.getrandbits(bits) & ((1 << (bits - p.prefixlen)) - 1))


@pytest.mark.parametrize("seed", [1, 2])
def test_a_v4_entry_covers_the_summary_bit_of_every_address_inside_it(seed):
    rng = random.Random(seed)
    for _ in range(500):
        p = _rand_prefix(rng, 4, [0, 1, 8, 12, 19, 20, 21, 24, 31, 32])
        (start,), (end,) = spans(4, _key(p), LOG2)
        assert end - start == 1 << max(0, LOG2 - p.prefixlen)
        for _ in range(8):
            assert start <= _inside(rng, p) >> (32 - LOG2) < end  # seawall.c: ntohl(saddr) >> (32 - LOG2)


@pytest.mark.parametrize("seed", [1, 2])
def test_a_v6_entry_covers_the_summary_bit_of_every_address_inside_it(seed):
    rng = random.Random(seed)
    for _ in range(500):
        p = _rand_prefix(rng, 6, [0, 16, 31, 32, 33, 48, 64, 127, 128])
        (start,), (end,) = spans(6, _key(p), LOG2)
        assert (start, end) == (0, 1 << LOG2) if p.prefixlen < 32 else end - start == 1
        for _ in range(8):
            top = _inside(rng, p) >> 96
            assert start <= ((top * V6_HASH) & 0xFFFFFFFF) >> (32 - LOG2) < end


def test_set_spans_matches_a_big_integer_bitmap():
    rng = random.Random(3)
    for _ in range(200):
        words = np.zeros(1 << (LOG2 - 6), np.uint64)
        ref, starts, ends = 0, [], []
        for _ in range(rng.randint(1, 20)):
            width = rng.choice([0, 1, 3, 6, 7, 12, 20])
            a = rng.getrandbits(LOG2) >> width << width  # runs are aligned, as prefixes are
            starts.append(a)
            ends.append(a + (1 << width))
            ref |= ((1 << (1 << width)) - 1) << a
        set_spans(words, np.array(starts, np.int64), np.array(ends, np.int64))
        assert int.from_bytes(words.astype("<u8").tobytes(), "little") == ref


@pytest.mark.parametrize("seed", [1, 2])
def test_prefix_set_overlaps_as_any_overlaps(seed):
    rng = random.Random(seed)
    for _ in range(200):
        plens = {4: [0, 8, 16, 23, 24, 25, 32], 6: [0, 16, 32, 48, 64, 127, 128]}
        versions = [rng.choice([4, 6]) for _ in range(rng.randint(0, 25))]
        ps = [_rand_prefix(rng, v, plens[v]) for v in versions]
        s = PrefixSet(ps)
        for _ in range(40):
            q = _rand_prefix(rng, rng.choice([4, 6]), [8, 16, 24, 32])  # short enough for both
            if ps and rng.random() < 0.3:  # often inside one of them
                p = rng.choice(ps)
                bits = len(p.packed) * 8
                net = (ipaddress.IPv4Network if bits == 32 else ipaddress.IPv6Network)((_inside(rng, p), bits))
                q = Prefix.from_network(net.supernet(new_prefix=max(p.prefixlen, min(bits, p.prefixlen + 3))))
            assert s.overlaps(q) == any(p.overlaps(q) for p in ps)


def test_group_labels_group_as_unique_does():
    rng = np.random.default_rng(4)
    for _ in range(50):
        n = int(rng.integers(1, 400))
        ver = rng.choice(np.array([4, 6], np.uint8), n)
        hi = np.where(ver == 6, rng.integers(0, 5, n), 0).astype(np.uint64)
        lo = np.where((ver == 6) & (rng.random(n) < 0.5), 0, rng.integers(0, 7, n)).astype(np.uint64)
        labels, count = _group_labels(ver, hi, lo)
        rows = np.empty(n, dtype=[("ver", np.uint8), ("hi", np.uint64), ("lo", np.uint64)])
        rows["ver"], rows["hi"], rows["lo"] = ver, hi, lo
        uniq, inv = np.unique(rows, return_inverse=True)
        assert count == len(uniq)
        same = labels[:, None] == labels[None, :]
        assert (same == (inv.reshape(-1)[:, None] == inv.reshape(-1)[None, :])).all()


def test_covered_is_contains_of_any_block_in_force():
    rng = random.Random(5)
    eng = Engine(Config())
    for _ in range(200):
        eng.active = {Prefix.from_network(ipaddress.ip_network(
            f"10.{rng.randint(0, 3)}.{rng.randint(0, 3)}.0/24").supernet(new_prefix=rng.choice([8, 16, 22, 24]))): 1.0
            for _ in range(5)}
        for _ in range(30):
            q = Prefix.from_network(ipaddress.ip_network(
                f"10.{rng.randint(0, 4)}.{rng.randint(0, 4)}.{rng.randint(0, 255)}/32").supernet(
                new_prefix=rng.choice([16, 23, 24, 30, 32])))
            assert eng._covered(q) == any(k.contains(q) for k in eng.active)


def _plain_delta(cur: Sources, prev: Sources) -> list:
    ck, pk = cur.key64(), prev.key64()
    order = np.argsort(pk, kind="stable")
    pk_sorted = pk[order]
    pos = np.minimum(np.searchsorted(pk_sorted, ck), len(pk_sorted) - 1)
    found = pk_sorted[pos] == ck
    idx = order[pos]
    out = []
    for name in ("packets", "bytes", "syns"):
        c = getattr(cur, name)
        p = np.where(found, getattr(prev, name)[idx], np.uint64(0))
        out.append(c - np.where(p > c, np.uint64(0), p))
    return out


def test_delta_joins_as_the_plain_sort_join_even_with_equal_keys():
    rng = np.random.default_rng(6)
    pool = rng.integers(0, 40, 200, dtype=np.uint64)  # few values: many equal keys

    def snapshot(k: int) -> Sources:
        ver = rng.choice(np.array([4, 6], np.uint8), k)
        hi = np.where(ver == 6, rng.choice(pool, k), 0).astype(np.uint64)
        lo = rng.choice(pool, k).astype(np.uint64)
        pk = rng.integers(0, 100, k, dtype=np.uint64)
        return Sources(ver, hi, lo, pk, pk * 10, pk // 3)

    for _ in range(200):
        prev, cur = snapshot(int(rng.integers(1, 200))), snapshot(int(rng.integers(1, 200)))
        got = delta(cur, prev)
        for a, b in zip((got.packets, got.bytes, got.syns), _plain_delta(cur, prev)):
            assert np.array_equal(a, b)
    same = snapshot(100)
    assert not delta(same, same).packets.any()  # the same table, the same order: nothing happened
