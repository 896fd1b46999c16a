"""Detection and attribution: the daemon's brain. Pure (numpy only).

Each cycle the engine gets an Observation (per-cycle feature histograms and
per-source counts) and returns what it decided. The daemon feeds it from
the kernel maps; the evaluation harness and `seawall replay` feed it from
simulations and captures. Nothing here does I/O.

How it decides (README "How seawall decides" explains it for operators):
1. Per feature f (source bucket, destination port, source port, protocol,
   length class, TCP flags) the normalised Shannon entropy
   H_f = -sum p log2 p / log2(min(N, K_f)) of this cycle's histogram.
2. A baseline: EWMA mean and variance of each H_f and of log10(packets/s),
   learnt while calm, frozen while an alarm is raised (an attacker cannot
   teach it his flood).
3. Deviations z_f = (H_f - mean) / max(std, floor); the anomaly score is
   max(0, z_volume) + RMS(|z_f|) (each |z_f| clipped at 10).
4. score >= threshold (and the rate above a floor) raises the alarm;
   score < threshold / 2 for `clear_after` seconds clears it.
5. Under alarm, attribution: heavy sources (far above the usual busiest
   source, or far above their own regular rate) are blocked, aggregated to
   a /24 or /64 only when the prefix holds enough offenders and almost no
   other active sources; when the excess is not explained by heavy
   sources (spoofing, reflection), the features whose entropy collapsed
   give a signature rule (protocol + port, reflection source port, length,
   TCP flags): dropped if such packets were absent from the baseline,
   rate-limited to twice their baseline rate otherwise.
6. Every automatic decision has a TTL, multiplied for repeat offenders.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np

from seawall.control.addr import Prefix, Sources
from seawall.control.config import Config
from seawall.control.datapath.abi import Feature, LEN_CLASS_WIDTH
from seawall.control.signature import Signature

FEATURE_NAMES = {f: f.name.lower() for f in Feature}
Z_CLIP = 10.0
SIG_LIFT = 1.15  # a signature field's bucket holds this much more of the excess than of the baseline
SIG_STRONG_LIFT = 3.0  # at least one field must be this concentrated


def entropy(counts: np.ndarray) -> float:
    """Normalised Shannon entropy in [0, 1]: divided by log2(min(N, K)),
    the most that N packets over K buckets can reach."""
    c = counts[counts > 0].astype(np.float64)
    n = c.sum()
    k = min(n, len(counts))
    if n < 2 or k < 2:
        return 0.0
    p = c / n
    return float(-(p * np.log2(p)).sum() / math.log2(k))


@dataclass
class Observation:
    t: float  # end of the cycle, seconds (any clock; the capture's in replay)
    dt: float  # cycle length, seconds
    hist: dict  # Feature -> per-cycle packet counts per bucket
    sources: Sources  # per-cycle counts of tracked sources

    @property
    def packets(self) -> float:
        return float(self.hist[Feature.PROTO].sum())


@dataclass
class BlockAction:
    prefix: Prefix
    ttl: float
    reason: str
    evidence: dict


@dataclass
class SignatureAction:
    signature: Signature
    ttl: float
    reason: str
    evidence: dict


@dataclass
class CycleReport:
    t: float
    pps: float
    entropy: dict  # feature name -> H
    z: dict  # feature name -> z, plus "volume"
    score: float
    alarm: bool
    raised: bool  # alarm raised this cycle
    cleared: bool
    learning: bool  # still in warm-up
    actions: list = field(default_factory=list)
    note: str = ""


def _group_labels(ver: np.ndarray, hi: np.ndarray, lo: np.ndarray) -> tuple:
    """(labels, count): equal (ver, hi, lo) rows get equal labels, as the
    inverse of np.unique over a structured array would give, without
    sorting one (2.4 s for a million rows; a u64 sort takes 15 ms)."""
    inv = np.empty(len(ver), np.intp)
    n = 0
    for v in np.unique(ver):
        sel = np.flatnonzero(ver == v)
        h, l = hi[sel], lo[sel]
        if not h.any():
            key = l  # IPv4, or IPv6 masked to /64 or shorter has lo == 0 ...
        elif not l.any():
            key = h  # ... so one half is the whole key
        else:
            key = np.empty(len(sel), dtype=[("hi", np.uint64), ("lo", np.uint64)])
            key["hi"], key["lo"] = h, l
        u, i = np.unique(key, return_inverse=True)
        inv[sel] = i.reshape(-1) + n
        n += len(u)
    return inv, n


def _covered(in_force: dict, prefix: Prefix) -> bool:
    """Prefix.contains(prefix) for any block of Engine._in_force()."""
    bits = 32 if prefix.version == 4 else 128
    n = int.from_bytes(prefix.packed, "big")
    for (version, plen), nets in in_force.items():
        if version == prefix.version and plen <= prefix.prefixlen and (n >> (bits - plen)) << (bits - plen) in nets:
            return True
    return False


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


class Engine:
    def __init__(self, cfg: Config, allowed: Optional[Callable[[Prefix], bool]] = None):
        self.cfg = cfg
        self.allowed = allowed or (lambda p: False)
        self.t0: Optional[float] = None
        self.h = {f: Ewma() for f in Feature}
        self.vol = Ewma()
        # baseline share of each bucket, per feature (for signatures)
        self.share: dict = {}
        self.top_rate = Ewma()  # p99 per-source packets/s while calm
        self.regulars = Regulars()  # busy calm sources and their usual rate
        self.suspects = Sources.empty()  # sources over their limit in the previous cycle
        self.alarm = False
        self.calm_since: Optional[float] = None
        self.active: dict = {}  # Prefix -> expiry t (automatic blocks in force)
        self.sigs: dict = {}  # Signature (rate-less: its matcher) -> expiry t
        self.offences: dict = {}  # Prefix or Signature matcher -> (count, last t)

    # --- baseline ----------------------------------------------------------

    def _alpha(self, dt: float) -> float:
        return min(1.0, dt / self.cfg.detection.baseline_window)

    def _learn(self, obs: Observation, ent: dict, logv: float) -> None:
        a = self._alpha(obs.dt)
        for f, v in ent.items():
            self.h[f].update(v, a)
        self.vol.update(logv, a)
        n = obs.packets
        if n > 0:
            for f, c in obs.hist.items():
                cur = c.astype(np.float64) / n
                prev = self.share.get(f)
                self.share[f] = cur if prev is None else prev + max(a, 1.0 / self.vol.n) * (cur - prev)
        src = obs.sources
        if len(src):
            rate = src.packets.astype(np.float64) / obs.dt
            self.top_rate.update(float(np.percentile(rate, 99)), a)
            k = min(len(rate), 2000)
            top = np.argpartition(rate, -k)[-k:]
            self.regulars.learn(src.take(top), rate[top], a)

    # --- scoring -----------------------------------------------------------

    def step(self, obs: Observation) -> CycleReport:
        d = self.cfg.detection
        if self.t0 is None:
            self.t0 = obs.t - obs.dt
        self._expire(obs.t)
        ent = {f: entropy(obs.hist[f]) for f in Feature if f in obs.hist}
        pps = obs.packets / obs.dt if obs.dt > 0 else 0.0
        logv = math.log10(pps + 1.0)
        learning = (obs.t - self.t0) < d.warmup or self.vol.n < 3

        z = {}
        for f, v in ent.items():
            e = self.h[f]
            z[FEATURE_NAMES[f]] = 0.0 if e.n == 0 else (v - e.mean) / max(e.std, d.min_sigma)
        zv = 0.0 if self.vol.n == 0 else (logv - self.vol.mean) / max(self.vol.std, d.min_volume_sigma)
        z["volume"] = zv
        zs = [min(abs(v), Z_CLIP) for k, v in z.items() if k != "volume"]
        rms = math.sqrt(sum(x * x for x in zs) / len(zs)) if zs else 0.0
        score = max(0.0, min(zv, 3 * Z_CLIP)) + rms

        raised = cleared = False
        if learning:
            self._learn(obs, ent, logv)
        elif not self.alarm:
            if score >= d.threshold and pps >= d.min_pps:
                self.alarm = raised = True
                self.calm_since = None
            else:
                self._learn(obs, ent, logv)
        else:
            if score < d.threshold / 2:
                self.calm_since = self.calm_since if self.calm_since is not None else obs.t
                if obs.t - self.calm_since >= d.clear_after:
                    self.alarm = False
                    cleared = True
            else:
                self.calm_since = None

        rep = CycleReport(obs.t, pps, {FEATURE_NAMES[f]: v for f, v in ent.items()}, z, score,
                          self.alarm, raised, cleared, learning)
        # act only on cycles that are themselves anomalous: once the attack
        # is blocked the alarm lingers for clear_after, on normal traffic
        if self.alarm and not cleared and score >= d.threshold:
            rep.actions = self._attribute(obs, z, score, pps)
            if not rep.actions and raised:
                rep.note = "alarm without an attributable attacker (flash crowd?): no action"
        else:
            self.suspects = Sources.empty()  # "the previous cycle" means the previous cycle
        return rep

    # --- attribution -------------------------------------------------------

    def _expire(self, t: float) -> None:
        self.active = {k: v for k, v in self.active.items() if v > t}
        self.sigs = {k: v for k, v in self.sigs.items() if v > t}
        # An offence older than [ttl] memory no longer escalates anything
        # (_ttl starts the count again): forget it, or weeks of attacks from
        # ever-new prefixes grow this without bound. Amortised: only once
        # it has doubled past what is in force.
        if len(self.offences) > 2 * (len(self.active) + len(self.sigs)) + 1024:
            memory = self.cfg.ttl.memory
            self.offences = {k: v for k, v in self.offences.items() if t - v[1] <= memory}

    def _ttl(self, key, t: float) -> float:
        tc = self.cfg.ttl
        count, last = self.offences.get(key, (0, -math.inf))
        if t - last > tc.memory:
            count = 0
        ttl = min(tc.max, tc.base * (tc.escalation ** count))
        self.offences[key] = (count + 1, t)
        return ttl

    def _moved(self, z: dict) -> dict:
        return {k: round(v, 2) for k, v in z.items() if abs(v) >= 2.0}

    def _attribute(self, obs: Observation, z: dict, score: float, pps: float) -> list:
        a = self.cfg.attribution
        actions: list = []
        src = obs.sources
        excess = max(0.0, pps - 10 ** self.vol.mean)
        heavy_pps = 0.0
        if len(src):
            rate = src.packets.astype(np.float64) / obs.dt
            # a source the baseline never saw busy must beat the usual busy
            # source (p99) by heavy_new_factor; a regular must beat its own
            # usual rate by heavy_factor
            floor = max(a.heavy_min_pps, a.heavy_new_factor * self.top_rate.mean)
            # A source over its limit in one cycle only is noise as often as
            # not (a regular tripling in a flash crowd has Poisson spikes);
            # it must be over in two consecutive cycles, or twice over now.
            cand = np.nonzero(rate >= floor)[0]
            cs = src.take(cand)
            usual = self.regulars.usual(cs)
            limit = np.where(np.isnan(usual), floor, np.maximum(floor, a.heavy_factor * np.nan_to_num(usual)))
            over = rate[cand] >= limit
            again = cs.find(self.suspects) >= 0
            heavy = cand[over & ((rate[cand] >= 2 * limit) | again)].astype(np.int64)
            self.suspects = cs.take(over)
            heavy_pps = float(rate[heavy].sum()) if len(heavy) else 0.0
            if len(heavy):
                actions += self._block_heavy(obs, src, rate, heavy, z, score)
        else:
            self.suspects = Sources.empty()
        # spoofed or reflected: the heavy sources do not explain the excess
        # unexplained excess of at least half the baseline rate
        if a.signatures and excess >= 0.5 * 10 ** self.vol.mean and heavy_pps < 0.5 * excess:
            actions += self._signature(obs, z, score, pps, excess)
        return actions

    def _block_heavy(self, obs, src, rate, heavy, z, score) -> list:
        a = self.cfg.attribution
        out = []
        # aggregate: prefixes holding >= aggregate_min offenders and (almost)
        # no other active sources
        hi, lo = src.masked(a.aggregate_v4, a.aggregate_v6)
        is_heavy = np.zeros(len(src), bool)
        is_heavy[heavy] = True
        inv, n_groups = _group_labels(src.ver, hi, lo)
        n_all = np.bincount(inv, minlength=n_groups)
        n_heavy = np.bincount(inv, weights=is_heavy, minlength=n_groups)
        agg = (n_heavy >= a.aggregate_min) & (n_heavy >= 0.9 * n_all)
        # each group's heavy members, in index order, as contiguous runs
        by_group = heavy[np.argsort(inv[heavy], kind="stable")]
        group_of = inv[by_group]
        def chosen():  # (prefix, pps, members), heaviest first; made only as far as they are used
            done_groups = set()
            for i in heavy[np.argsort(-rate[heavy])]:
                g = inv[i]
                if agg[g]:
                    if g in done_groups:
                        continue
                    done_groups.add(g)
                    members = by_group[np.searchsorted(group_of, g):np.searchsorted(group_of, g, side="right")]
                    plen = a.aggregate_v4 if src.ver[i] == 4 else a.aggregate_v6
                    yield src.prefix(i, plen), float(rate[members].sum()), len(members)
                else:
                    yield src.prefix(i), float(rate[i]), 1

        in_force = self._in_force()
        for prefix, r, members in chosen():
            if len(out) >= a.max_new_blocks or len(self.active) >= a.max_auto_blocks:
                break
            if prefix in self.active or _covered(in_force, prefix):
                continue
            if self.allowed(prefix):
                continue  # never block an allowlisted address
            ttl = self._ttl(prefix, obs.t)
            self.active[prefix] = obs.t + ttl
            in_force.setdefault((prefix.version, prefix.prefixlen), set()).add(int.from_bytes(prefix.packed, "big"))
            what = f"{members} heavy sources" if members > 1 else "heavy source"
            out.append(BlockAction(prefix, ttl, f"{what}: {r:.0f} pps, score {score:.1f}",
                                   {"score": round(score, 2), "pps": round(r), "members": members,
                                    "moved": self._moved(z)}))
        return out

    def _covered(self, prefix: Prefix) -> bool:
        """Is prefix inside a block in force?"""
        return _covered(self._in_force(), prefix)

    def _in_force(self) -> dict:
        """The blocks in force as {(version, prefix length): {network as an
        int}}, so that containment is one set lookup per prefix length in
        use, not a parse and a comparison per block (50,000 of them at
        most, for each of up to 256 candidates a cycle)."""
        idx: dict = {}
        for p in self.active:
            idx.setdefault((p.version, p.prefixlen), set()).add(int.from_bytes(p.packed, "big"))
        return idx

    def _signature(self, obs, z, score, pps, excess) -> list:
        a = self.cfg.attribution
        if len(self.sigs) >= a.max_signatures:
            return []
        base_pps = 10 ** self.vol.mean
        # Per feature: the bucket that took most of the excess packets
        # ("cover") and how concentrated that is compared with the bucket's
        # baseline share ("lift"). A flash crowd spreads its excess like the
        # baseline (lift ~1); a flood piles it on one bucket.
        fields = {}
        legit_share = 1.0
        strong = False
        for f, name in ((Feature.PROTO, "proto"), (Feature.DPORT, "dport"), (Feature.SPORT, "sport"),
                        (Feature.LEN, "len"), (Feature.FLAGS, "tcp_flags")):
            if f not in obs.hist or f not in self.share:
                continue
            cur = obs.hist[f].astype(np.float64)
            expected = self.share[f] * base_pps * obs.dt
            extra = cur - expected
            b = int(np.argmax(extra))
            cover = extra[b] / max(excess * obs.dt, 1.0)
            share = float(self.share[f][b])
            lift = cover / max(share, 1e-6)
            if cover >= a.signature_min_share and (lift >= SIG_LIFT or f == Feature.PROTO):
                fields[name] = b
                legit_share = min(legit_share, share)
                strong |= lift >= SIG_STRONG_LIFT
        if "proto" not in fields or not strong:
            return []
        if not any(k in fields for k in ("dport", "sport", "len", "tcp_flags")):
            return []  # a whole protocol is too broad a signature
        proto = fields["proto"]
        if proto not in (6, 17) or fields.get("dport") == 0:
            fields.pop("dport", None)
        if proto not in (6, 17) or fields.get("sport") == 0:
            fields.pop("sport", None)
        if proto != 6:
            fields.pop("tcp_flags", None)
        legit_pps = legit_share * base_pps
        rate = 0 if legit_share < 0.01 else int(max(2 * legit_pps, 100))
        sig = Signature(
            proto=proto,
            dport=fields.get("dport"),
            sport=fields.get("sport"),
            len_min=fields["len"] * LEN_CLASS_WIDTH if "len" in fields else None,
            len_max=(fields["len"] + 1) * LEN_CLASS_WIDTH if "len" in fields else None,
            tcp_flags=fields.get("tcp_flags"),
            rate_pps=rate,
        )
        key = sig.matcher()
        if key in self.sigs:
            return []
        ttl = self._ttl(key, obs.t)
        self.sigs[key] = obs.t + ttl
        return [SignatureAction(sig, ttl, f"spoofed/reflected flood: {sig.describe()}, score {score:.1f}",
                                {"score": round(score, 2), "excess_pps": round(excess),
                                 "legit_share": round(legit_share, 4), "moved": self._moved(z)})]

    # --- state from outside --------------------------------------------------

    def note_block(self, prefix: Prefix, expires_t: float, offences: int = 1, t: float = 0.0) -> None:
        """Tell the engine about an automatic block in force (restored from
        the journal at start), so it is neither repeated nor forgotten."""
        self.active[prefix] = expires_t
        self.offences[prefix] = (offences, t)

    def note_signature(self, sig: Signature, expires_t: float, offences: int = 1, t: float = 0.0) -> None:
        self.sigs[sig.matcher()] = expires_t
        self.offences[sig.matcher()] = (offences, t)
