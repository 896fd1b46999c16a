"""What the host's calm traffic looks like: learnt from calm cycles only,
judged by ratio, kept across restarts. Pure (numpy only; the daemon does
the file I/O with to_arrays / from_arrays).

Volumes. For the total packet rate, and for every bucket of the
per-protocol, per-destination-port, per-source-port, per-destination-
address and per-fragment-class histograms, a weighted histogram of the
rates seen in calm, non-empty cycles, on log-spaced bins (40 a decade,
6% apart). The reference of a dimension is its `quantile` (0.99): the
host's busy rate, not its average, and not its silent start. A cycle's
weight grows as exp(t / window), so a cycle a window old counts e times
less than one now: a daily swing is remembered for days, a quiet night
does not erase the day. Weights are only ever added, never rescaled
per cycle; every stored weight is in units of the reference time t_ref.

A cycle is learnt only when the engine says it is calm, and each of its
rates is counted at most `learn_ratio` times the current reference: the
reference rises by at most that factor each time 1% of the window's
weight has been spent above it (about a quarter of an hour in a day-old
baseline). A rate that climbs faster than that (slow poisoning at 20% a
minute) leaves the reference behind and is judged; a host's own growth,
slower, is learnt.

The mix (entropy of each feature, each bucket's share of the packets)
and the sources that are busy while calm (Regulars) are EWMAs with a
shorter horizon (mix_window): they describe what normal traffic is made
of, for attribution and for signatures.
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np

from seawall.control.addr import Sources
from seawall.control.datapath.abi import Feature

#: Bins: 0 holds rates under 1 pps; bin b >= 1 holds [10^((b-1)/40), 10^(b/40)).
BINS_PER_DECADE = 40
NBINS = 9 * BINS_PER_DECADE + 1  # up to 1e9 packets/s
#: The histograms whose buckets are volume dimensions of their own.
VOLUME_FEATURES = (Feature.PROTO, Feature.DPORT, Feature.SPORT, Feature.DST, Feature.FRAG)
#: At most this many buckets are tracked per feature (the busiest).
MAX_KEYS = 512
FORMAT = 1  # of to_arrays()


def rate_bin(rate):
    """The bin of a rate (packets/s), vectorised."""
    r = np.asarray(rate, np.float64)
    with np.errstate(divide="ignore"):
        b = np.floor(np.log10(np.maximum(r, 1e-12)) * BINS_PER_DECADE) + 1
    return np.clip(b, 0, NBINS - 1).astype(np.intp)


def bin_top(b):
    """The upper edge of bin b, packets/s."""
    return 10.0 ** (np.asarray(b, np.float64) / BINS_PER_DECADE)


def _quantile_bins(hist: np.ndarray, total: float, q: float) -> np.ndarray:
    """Per row of hist (weights per bin; the rest of `total` is at zero), the
    bin holding the q-quantile: the lowest bin b with at most (1-q) of the
    total weight above it."""
    if total <= 0:
        return np.zeros(hist.shape[0], np.intp)
    above = np.cumsum(hist[:, ::-1], axis=1)[:, ::-1]  # above[b]: weight in bins >= b
    above = np.concatenate([above[:, 1:], np.zeros((hist.shape[0], 1))], axis=1)  # weight in bins > b
    ok = above <= (1.0 - q) * total * (1 + 1e-12)
    return np.argmax(ok, axis=1)


class Volumes:
    """The volume baseline: rate histograms per dimension (see the module)."""

    def __init__(self, window: float, quantile: float):
        self.window = window
        self.quantile = quantile
        self.t_ref: Optional[float] = None
        self.total = np.zeros(NBINS)  # weights of the total rate
        self.weight = 0.0  # of every learnt cycle (each dimension's zero bin is the rest)
        self.seconds = 0.0  # of calm traffic learnt, unweighted
        self.keys: dict = {}  # Feature -> bucket numbers tracked
        self.hist: dict = {}  # Feature -> (len(keys), NBINS) weights
        self._refs: Optional[tuple] = None

    def _w(self, t: float, dt: float) -> float:
        if self.t_ref is None:
            self.t_ref = t
        x = (t - self.t_ref) / self.window
        if x > 30:  # keep the weights finite: express them all in units of now
            self.rescale(math.exp(-x))
            self.t_ref, x = t, 0.0
        return dt * math.exp(x)

    def rescale(self, k: float) -> None:
        self.total *= k
        self.weight *= k
        for f in self.hist:
            self.hist[f] *= k

    def reference(self, floor: float, sizes: dict) -> tuple:
        """(total reference, {Feature: per-bucket reference array}): each the
        learnt busy rate, never under floor. Cached per floor, the total and
        each feature's array apart (callers ask for different features),
        until the next learn."""
        if self._refs is None or self._refs[0] != floor:
            tot = floor
            if self.weight > 0:
                tot = max(floor, float(bin_top(_quantile_bins(self.total[None, :], self.weight, self.quantile)[0])))
            self._refs = (floor, tot, {})
        _, tot, cache = self._refs
        per = {}
        for f, k in sizes.items():
            if (f, k) not in cache:
                ref = np.full(k, floor)
                keys = self.keys.get(f)
                if keys is not None and len(keys) and self.weight > 0:
                    b = _quantile_bins(self.hist[f], self.weight, self.quantile)
                    ref[keys] = np.maximum(floor, np.where(b > 0, bin_top(b), 0.0))
                cache[(f, k)] = ref
            per[f] = cache[(f, k)]
        return tot, per

    def learn(self, t: float, dt: float, total_rate: float, rates: dict, floor: float,
              learn_ratio: float, refs: Optional[tuple] = None) -> None:
        """Count one calm cycle: its total rate and the rates of its busy
        buckets (rates: {Feature: packets/s per bucket}), each at most
        learn_ratio times its reference: the current one, or `refs` (a
        reference() taken earlier: a lasting surge is learnt only up to
        learn_ratio times what the reference was when it began)."""
        tot_ref, refs = refs or self.reference(floor, {f: len(r) for f, r in rates.items()})
        w = self._w(t, dt)
        self.total[rate_bin(min(total_rate, learn_ratio * tot_ref))] += w
        for f, r in rates.items():
            busy = np.flatnonzero(r >= floor / 2)  # quieter buckets sit under the floor anyway
            if not len(busy):
                continue
            vals = np.minimum(r[busy], learn_ratio * refs[f][busy])
            self._add(f, busy, rate_bin(vals), w)
        self.weight += w
        self.seconds += dt
        self._refs = None

    def _add(self, f, buckets: np.ndarray, bins: np.ndarray, w: float) -> None:
        keys = self.keys.get(f, np.zeros(0, np.int64))
        hist = self.hist.get(f, np.zeros((0, NBINS)))
        rows = np.full(len(buckets), -1, np.intp)
        if len(keys):
            order = np.argsort(keys)
            pos = np.minimum(np.searchsorted(keys[order], buckets), len(keys) - 1)
            found = keys[order][pos] == buckets
            rows[found] = order[pos][found]
        new = rows < 0
        if new.any():
            rows[new] = len(keys) + np.arange(int(new.sum()))
            keys = np.concatenate([keys, buckets[new].astype(np.int64)])
            hist = np.concatenate([hist, np.zeros((int(new.sum()), NBINS))])
        np.add.at(hist, (rows, bins), w)
        if len(keys) > MAX_KEYS:  # keep the buckets that carried most traffic
            mass = (hist * bin_top(np.arange(NBINS))).sum(axis=1)
            keep = np.sort(np.argsort(-mass, kind="stable")[:MAX_KEYS])
            keys, hist = keys[keep], hist[keep]
        self.keys[f], self.hist[f] = keys, hist


class Ewma:
    """Exponentially weighted mean and variance (West's update)."""

    def __init__(self):
        self.n = 0
        self.mean = 0.0
        self.var = 0.0

    def update(self, x: float, alpha: float) -> None:
        self.n += 1
        a = max(alpha, 1.0 / self.n)  # plain running mean until the window fills
        d = x - self.mean
        self.mean += a * d
        self.var = (1 - a) * (self.var + a * d * d)

    @property
    def std(self) -> float:
        return math.sqrt(max(self.var, 0.0))


class Regulars:
    """The sources that were busy while calm, with their usual rate (EWMA
    packets/s): rows in first-seen order, the sources in their one form
    (addr.Sources), looked up vectorised."""

    CAP, KEEP = 20000, 10000  # past CAP rows, keep the KEEP busiest

    def __init__(self):
        self.sources = Sources.empty()
        self.rate = np.zeros(0)

    def __len__(self) -> int:
        return len(self.rate)

    def usual(self, src: Sources) -> np.ndarray:
        """Each source's usual rate, NaN for one the baseline never saw busy."""
        idx = src.find(self.sources)
        return np.where(idx >= 0, self.rate[np.maximum(idx, 0)] if len(self.rate) else np.nan, np.nan)

    def learn(self, src: Sources, rate: np.ndarray, alpha: float) -> None:
        """Move each source's usual rate towards this cycle's; a new one
        starts at it."""
        idx = src.find(self.sources)
        known = idx >= 0
        old = self.rate[idx[known]]
        self.rate[idx[known]] = old + alpha * (rate[known] - old)
        new = np.flatnonzero(~known)
        if len(new):
            # a source met twice in one cycle (on two interfaces): its first row
            _, first = np.unique(src.take(new).key64(), return_index=True)
            new = new[np.sort(first)]
            self.sources = Sources.concat([self.sources, src.take(new)])
            self.rate = np.concatenate([self.rate, rate[new]])
        if len(self) > self.CAP:  # keep the busiest (ties in first-seen order)
            keep = np.argsort(-self.rate, kind="stable")[:self.KEEP]
            self.sources, self.rate = self.sources.take(keep), self.rate[keep]


class Baseline:
    """Everything learnt from calm cycles: volumes, mix, busy sources."""

    def __init__(self, window: float, quantile: float, mix_window: float):
        self.volumes = Volumes(window, quantile)
        self.mix_window = mix_window
        self.h = {f: Ewma() for f in Feature}  # entropy per feature
        self.share: dict = {}  # Feature -> each bucket's share of the packets
        self.calm_pps = Ewma()  # the usual total rate (what a flood is in excess of)
        self.top_rate = Ewma()  # p99 per-source packets/s
        self.regulars = Regulars()

    @property
    def seconds(self) -> float:
        """Calm traffic learnt, seconds."""
        return self.volumes.seconds

    def learn(self, t: float, dt: float, hist: dict, ent: dict, sources: Sources, floor: float,
              learn_ratio: float, refs: Optional[tuple] = None) -> None:
        n = float(hist[Feature.PROTO].sum())
        if n <= 0 or dt <= 0:
            return  # silence teaches nothing
        rates = {f: hist[f] / dt for f in VOLUME_FEATURES if f in hist}
        self.volumes.learn(t, dt, n / dt, rates, floor, learn_ratio, refs)
        a = min(1.0, dt / self.mix_window)
        self.calm_pps.update(n / dt, a)
        if n >= 50:  # a handful of packets has no meaningful mix
            for f, v in ent.items():
                self.h[f].update(v, a)
            for f, c in hist.items():
                cur = c.astype(np.float64) / n
                prev = self.share.get(f)
                self.share[f] = cur if prev is None or prev.shape != cur.shape else prev + max(a, 1.0 / self.h[Feature.PROTO].n) * (cur - prev)
        if len(sources):
            rate = sources.packets.astype(np.float64) / dt
            self.top_rate.update(float(np.percentile(rate, 99)), a)
            k = min(len(rate), 2000)
            top = np.argpartition(rate, -k)[-k:]
            self.regulars.learn(sources.take(top), rate[top], a)

    # --- kept across restarts ------------------------------------------------

    def to_arrays(self, t: float) -> dict:
        """The baseline as named numpy arrays (np.savez), weights expressed
        in units of time t."""
        v = self.volumes
        k = math.exp(-(t - v.t_ref) / v.window) if v.t_ref is not None else 1.0
        out = {"format": np.array([FORMAT]), "total": v.total * k,
               "scalars": np.array([v.weight * k, v.seconds, self.calm_pps.mean, self.calm_pps.var, self.calm_pps.n,
                                    self.top_rate.mean, self.top_rate.var, self.top_rate.n]),
               "entropy": np.array([[f, e.mean, e.var, e.n] for f, e in self.h.items()], np.float64)}
        for f in v.keys:
            out[f"keys_{int(f)}"] = v.keys[f]
            out[f"hist_{int(f)}"] = v.hist[f] * k
        for f, s in self.share.items():
            out[f"share_{int(f)}"] = s
        r = self.regulars
        out.update(reg_ver=r.sources.ver, reg_hi=r.sources.hi, reg_lo=r.sources.lo, reg_rate=r.rate)
        return out

    @classmethod
    def from_arrays(cls, a: dict, t: float, age: float, window: float, quantile: float,
                    mix_window: float) -> "Baseline":
        """The baseline saved `age` seconds ago, in units of time t. Raises
        ValueError for anything that is not such a baseline."""
        if int(np.asarray(a["format"]).reshape(-1)[0]) != FORMAT:
            raise ValueError(f"baseline format {a['format']} is not {FORMAT}")
        b = cls(window, quantile, mix_window)
        v = b.volumes
        k = math.exp(-max(age, 0.0) / window)
        total = np.asarray(a["total"], np.float64)
        if total.shape != (NBINS,) or not np.isfinite(total).all() or (total < 0).any():
            raise ValueError("baseline totals are damaged")
        v.t_ref, v.total = t, total * k
        s = np.asarray(a["scalars"], np.float64)
        if s.shape != (8,) or not np.isfinite(s).all():
            raise ValueError("baseline scalars are damaged")
        v.weight, v.seconds = float(s[0]) * k, float(s[1])
        b.calm_pps.mean, b.calm_pps.var, b.calm_pps.n = float(s[2]), float(s[3]), int(s[4])
        b.top_rate.mean, b.top_rate.var, b.top_rate.n = float(s[5]), float(s[6]), int(s[7])
        for row in np.asarray(a["entropy"], np.float64).reshape(-1, 4):
            f = Feature(int(row[0]))
            b.h[f].mean, b.h[f].var, b.h[f].n = float(row[1]), float(row[2]), int(row[3])
        for name in a:
            if name.startswith("keys_"):
                f = Feature(int(name[5:]))
                keys = np.asarray(a[name], np.int64)
                hist = np.asarray(a[f"hist_{int(f)}"], np.float64)
                if hist.shape != (len(keys), NBINS) or (keys < 0).any():
                    raise ValueError(f"baseline histogram of {f.name.lower()} is damaged")
                v.keys[f], v.hist[f] = keys, hist * k
            elif name.startswith("share_"):
                b.share[Feature(int(name[6:]))] = np.asarray(a[name], np.float64)
        n = len(a["reg_rate"])
        b.regulars.sources = Sources(np.asarray(a["reg_ver"], np.uint8), np.asarray(a["reg_hi"], np.uint64),
                                     np.asarray(a["reg_lo"], np.uint64), *(np.zeros(n, np.uint64) for _ in range(3)))
        b.regulars.rate = np.asarray(a["reg_rate"], np.float64)
        return b
