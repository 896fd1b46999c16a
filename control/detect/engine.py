"""Detection and attribution: the daemon's brain. Pure (numpy only).

Each cycle the engine gets an Observation (per-cycle feature histograms and
per-source counts of the packets the filter let through) and returns what
it decided. The daemon feeds it from the kernel maps; the evaluation
harness and `seawall replay` feed it from simulations and captures.
Nothing here does I/O.

How it decides (README "How seawall decides" explains it for operators):
1. Volume, judged by ratio. For the total packet rate and for each
   protocol, destination port, source port, destination address and
   fragment class, the cycle's rate is divided by its reference: the
   host's learnt busy rate (a high quantile of calm cycles, baseline.py),
   never less than the floor min_pps. The largest ratio is the volume
   score; it needs no warm-up: a daemon started during a flood judges it
   against the floor.
2. Mix. Once warmup seconds of calm traffic are learnt, the entropy of
   each feature is compared with its calm mean; the largest deviation,
   in standard deviations, scaled so that entropy_z reads as the
   threshold, is the mix score. It catches what volume misses: a flood
   that copies the host's usual rate but not its make-up.
3. score = max(volume, mix). At or above threshold the cycle is
   anomalous, and attribution looks for an attacker:
   - heavy sources: far above the usual busiest source (or a regular far
     above its own usual rate), never a source holding an established
     TCP connection; aggregated to a /24 or /64 only when every active
     member of the prefix offends and none was busy in the baseline;
   - otherwise, a signature: the bucket of each feature that took the
     excess, when concentrated far beyond its calm share. It is
     installed as a drop only when it would have matched at most
     signature_max_legit of the calm traffic, or when no socket on the
     host serves (or asked for) what it matches. Otherwise nothing is
     installed, and the report says why: no rule shared with customers.
     A flood of plain SYNs to a served port is the exception: SYN cookies
     at the NIC for that port (synproxy), which answer customers and
     flood alike, while the flood lasts.
   An anomaly with an attacker raises the alarm; one without (a flash
   crowd) is a surge: reported once, nothing done. Calm cycles are learnt
   (baseline.py); the alarm clears after clear_after s under threshold/2.
5. Every automatic decision has a TTL, multiplied for repeat offenders.
   A block or signature that dropped packets in the second half of its
   life is renewed, escalated, instead of expiring; a known offender
   seen again after its block expired is blocked again at once.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np

from seawall.control.addr import Prefix, Sources, group_labels
from seawall.control.config import Config
from seawall.control.datapath.abi import Feature
from seawall.control.detect.baseline import VOLUME_FEATURES, Baseline, Ewma, Regulars  # noqa: F401 (re-exported)
from seawall.control.detect import signatures
from seawall.control.detect.actions import BlockAction, CycleReport, SignatureAction, SynProxyAction  # noqa: F401
from seawall.control.detect.actions import dimension as _dimension, moved as _moved
from seawall.control.signature import Signature

FEATURE_NAMES = {f: f.name.lower() for f in Feature}
Z_CLIP = 10.0
HEAVY_SHARE = 0.2  # heavy sources together carry at least this share of the excess
SURGE_NOTE_AFTER = 1.0  # seconds an anomaly without an attacker lasts before it is reported


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
    #: for decisions about to expire (Engine.expiring): the time of their
    #: last drop, on the same clock as t (the kernel's own stamps)
    last_hits: dict = field(default_factory=dict)
    #: False when `sources` may miss active sources (a large table not yet
    #: read round once): then no prefix is blocked whole
    members_known: bool = True

    @property
    def packets(self) -> float:
        return float(self.hist[Feature.PROTO].sum())


def _covered(in_force: dict, prefix: Prefix) -> bool:
    """Prefix.contains(prefix) for any block of Engine._in_force()."""
    bits = 32 if prefix.version == 4 else 128
    n = int.from_bytes(prefix.packed, "big")
    for (version, plen), nets in in_force.items():
        if version == prefix.version and plen <= prefix.prefixlen and (n >> (bits - plen)) << (bits - plen) in nets:
            return True
    return False


class Engine:
    def __init__(self, cfg: Config, allowed: Optional[Callable[[Prefix], bool]] = None,
                 baseline: Optional[Baseline] = None):
        self.cfg = cfg
        self.allowed = allowed or (lambda p: False)
        d = cfg.detection
        self.base = baseline or Baseline(d.baseline_window, d.quantile, d.mix_window)
        #: what the host serves (detect/serving.py's Serving), when known
        self.serving = None
        self.suspects = Sources.empty()  # sources over their limit in the previous cycle
        self.alarm = False
        self.calm_since: Optional[float] = None
        self.surge_since: Optional[float] = None
        self._surge_said = False
        self._surge_refs: Optional[tuple] = None  # the references when the surge began
        self.active: dict = {}  # Prefix -> (expiry t, ttl) of automatic blocks in force
        self.sigs: dict = {}  # Signature matcher -> (expiry t, ttl, Signature)
        self.synports: dict = {}  # TCP port -> (expiry t, ttl) of automatic SYN protection in force
        #: SYN protection can be turned on here (the daemon checked what it
        #: needs); when False a SYN flood on a served port is left to the
        #: kernel's syncookies, with no rule shared with the customers
        self.synproxy_ok = False
        self.offences: dict = {}  # Prefix or Signature matcher -> (count, last t)
        self._next_expiry = math.inf
        self._offenders: Optional[tuple] = None  # (hosts, {plen: nets}) as Sources; None: rebuild

    # --- scoring -----------------------------------------------------------

    def _rates(self, obs: Observation) -> dict:
        return {f: obs.hist[f] / obs.dt for f in VOLUME_FEATURES if f in obs.hist}

    def volume(self, obs: Observation) -> tuple:
        """(ratio, where): the cycle's largest rate over its reference."""
        floor = self.cfg.detection.min_pps
        rates = self._rates(obs)
        tot_ref, refs = self.base.volumes.reference(floor, {f: len(r) for f, r in rates.items()})
        best, where = (obs.packets / obs.dt) / tot_ref, "total"
        for f, r in rates.items():
            ratio = r / refs[f]
            b = int(np.argmax(ratio))
            if ratio[b] > best:
                best, where = float(ratio[b]), _dimension(f, b)
        return best, where

    def step(self, obs: Observation) -> CycleReport:
        d = self.cfg.detection
        self._expire(obs.t)
        ent = {f: entropy(obs.hist[f]) for f in Feature if f in obs.hist}
        pps = obs.packets / obs.dt if obs.dt > 0 else 0.0
        volume, where = self.volume(obs) if obs.dt > 0 else (0.0, "total")
        z = {}
        if self.base.seconds >= d.warmup:
            for f, v in ent.items():
                e = self.base.h[f]
                if e.n:
                    z[FEATURE_NAMES[f]] = (v - e.mean) / max(e.std, d.min_sigma)
        mix = d.threshold * min(max((abs(v) for v in z.values()), default=0.0), Z_CLIP * d.entropy_z) / d.entropy_z
        if obs.packets < 50:
            mix = 0.0  # a handful of packets has no meaningful mix
        score = max(volume, mix)
        anomalous = score >= d.threshold

        actions = self._renew(obs) + self._returning(obs)
        findings: list = []
        # under alarm, attribution goes on down to the clearing level: what
        # is left of an attack after its first blocks is still the attack
        if anomalous or (self.alarm and score >= d.threshold / 2):
            found, findings = self._attribute(obs, z, score, pps)
            actions += found
        else:
            self.suspects = Sources.empty()  # "the previous cycle" means the previous cycle

        raised = cleared = False
        note = ""
        if anomalous and findings and not self.alarm:
            self.alarm = raised = True
            self.calm_since = None
        elif self.alarm:
            if score < d.threshold / 2:
                self.calm_since = self.calm_since if self.calm_since is not None else obs.t
                if obs.t - self.calm_since >= d.clear_after:
                    self.alarm = False
                    cleared = True
            else:
                self.calm_since = None
        surge = anomalous and not findings and not self.alarm
        if not surge:
            self.surge_since = None
            self._surge_said = False
        elif self.surge_since is None:
            self.surge_since = obs.t
            tot, per = self.base.volumes.reference(d.min_pps, {f: len(r) for f, r in self._rates(obs).items()})
            self._surge_refs = (tot, {f: r.copy() for f, r in per.items()})
        elif obs.t - self.surge_since >= SURGE_NOTE_AFTER and not self._surge_said:
            self._surge_said = True
            note = (f"surge without an attributable attacker (flash crowd?): {where} at {volume:.1f}x "
                    f"its reference, score {score:.1f}; no action")
        for f in findings:
            if f.get("note"):
                note = (note + "; " if note else "") + f["note"]
        # A surge (no attacker) is learnt at once by a baseline still in its
        # first warmup seconds (a daemon meeting a busy host for the first
        # time), and by any baseline once it has lasted surge_learn_after.
        # ... a lasting one only up to learn_ratio times the reference it
        # met: a step the host keeps (a new busy level) is learnt, a climb
        # that goes on (slow poisoning) is not followed.
        young = self.base.seconds < d.warmup
        learn = not self.alarm and not cleared and (not anomalous or surge and (
            young or obs.t - self.surge_since >= d.surge_learn_after))
        if learn:
            self.base.learn(obs.t, obs.dt, obs.hist, ent, obs.sources, d.min_pps, d.learn_ratio,
                            self._surge_refs if surge and not young else None)
        return CycleReport(obs.t, pps, {FEATURE_NAMES[f]: v for f, v in ent.items()}, z, score,
                           self.alarm, raised, cleared, learn, actions, note, volume, where,
                           [{k: v for k, v in f.items() if k != "note"} for f in findings])

    # --- attribution -------------------------------------------------------

    def _customers(self, src: Sources) -> np.ndarray:
        """Sources holding an established TCP connection to this host."""
        if self.serving is None or not len(src):
            return np.zeros(len(src), bool)
        return np.asarray(self.serving.customers(src), bool)

    def _attribute(self, obs: Observation, z: dict, score: float, pps: float) -> tuple:
        """(actions, findings) of an anomalous cycle."""
        a = self.cfg.attribution
        actions: list = []
        findings: list = []
        src = obs.sources
        calm = self.base.calm_pps.mean if self.base.calm_pps.n else 0.0
        excess = max(0.0, pps - calm)
        ref, _ = self.base.volumes.reference(self.cfg.detection.min_pps, {})
        # heavy sources must carry a real part of what is over the usual:
        # the busiest customers of a host the baseline has not caught up
        # with yet, or of a host under a spoofed flood, are not the attack
        explain = HEAVY_SHARE * max(pps - ref, excess)
        heavy_pps = 0.0
        if len(src):
            rate = src.packets.astype(np.float64) / obs.dt
            # a source the baseline never saw busy must beat the usual busy
            # source (p99) by heavy_new_factor; a regular must beat its own
            # usual rate by heavy_factor
            floor = max(a.heavy_min_pps, a.heavy_new_factor * self.base.top_rate.mean)
            # A source over its limit in one cycle only is noise as often as
            # not (a regular tripling in a flash crowd has Poisson spikes);
            # it must be over in two consecutive cycles, or twice over now.
            cand = np.flatnonzero(rate >= floor)
            cand = cand[~self._customers(src.take(cand))]
            cs = src.take(cand)
            usual = self.base.regulars.usual(cs)
            limit = np.where(np.isnan(usual), floor, np.maximum(floor, a.heavy_factor * np.nan_to_num(usual)))
            over = rate[cand] >= limit
            again = cs.find(self.suspects) >= 0
            heavy = cand[over & ((rate[cand] >= 2 * limit) | again)].astype(np.int64)
            if rate[cand[over]].sum() < explain:
                over[:] = False
                heavy = heavy[:0]
            self.suspects = cs.take(over)
            heavy_pps = float(rate[heavy].sum()) if len(heavy) else 0.0
            if len(heavy):
                findings.append({"kind": "heavy sources", "sources": int(len(heavy)), "pps": round(heavy_pps)})
                actions += self._block_heavy(obs, src, rate, heavy, z, score)
            elif over.any():  # blocked next cycle if they keep it up
                findings.append({"kind": "heavy sources (suspected)", "sources": int(over.sum()),
                                 "pps": round(float(rate[cand[over]].sum()))})
        else:
            self.suspects = Sources.empty()
        # spoofed or reflected: the heavy sources do not explain the excess
        if a.signatures and excess > 0 and excess >= 0.5 * calm and heavy_pps < 0.5 * excess:
            acts, found = self._signature(obs, z, score, excess)
            actions += acts
            findings += found
        return actions, findings

    def _block_heavy(self, obs, src, rate, heavy, z, score) -> list:
        a = self.cfg.attribution
        out = []
        # aggregate: prefixes holding >= aggregate_min offenders, no other
        # active source, no customer and no source busy in the baseline
        masked = src.network(a.aggregate_v4, a.aggregate_v6)
        is_heavy = np.zeros(len(src), bool)
        is_heavy[heavy] = True
        inv, n_groups = group_labels(masked.ver, masked.hi, masked.lo)
        n_all = np.bincount(inv, minlength=n_groups)
        n_heavy = np.bincount(inv, weights=is_heavy, minlength=n_groups)
        agg = (n_heavy >= a.aggregate_min) & (n_heavy == n_all) & obs.members_known
        if agg.any():  # the good: busy in the baseline, or customers now (silent this cycle or not)
            good = [self.base.regulars.sources] + ([self.serving.peers] if self.serving is not None else [])
            nets = Sources.concat([g.network(a.aggregate_v4, a.aggregate_v6) for g in good])
            agg &= np.bincount(inv, weights=masked.find(nets) >= 0, minlength=n_groups) == 0
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
            self._put(self.active, prefix, obs.t, ttl)
            in_force.setdefault((prefix.version, prefix.prefixlen), set()).add(int.from_bytes(prefix.packed, "big"))
            what = f"{members} heavy sources" if members > 1 else "heavy source"
            out.append(BlockAction(prefix, ttl, f"{what}: {r:.0f} pps, score {score:.1f}",
                                   {"score": round(score, 2), "pps": round(r), "members": members,
                                    "moved": _moved(z)}))
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

    def _signature(self, obs, z, score, excess) -> tuple:
        """(actions, findings): the excess's signatures (signatures.py), each
        installed as a drop only if it cannot cut customers."""
        a = self.cfg.attribution
        base = self.base
        calm = base.calm_pps.mean if base.calm_pps.n else 0.0
        mature = base.seconds >= self.cfg.detection.warmup
        actions, findings = [], []
        flood_cut = False  # a rule of this cycle's flood itself was found safe
        for cand in signatures.derive(obs.hist, base.share, calm, obs.dt, excess, a.signature_min_share):
            wide = cand.broader
            if wide is not None and (self._unserved(wide.signature) or wide.legit is not None and mature
                                     and wide.legit <= a.signature_max_legit):
                cand = wide  # as safe without the length: it takes every size
            sig, legit = cand.signature, cand.legit
            finding = {"kind": "signature", "rule": sig.describe(), "excess_pps": round(excess)}
            port = self._synproxy_port(sig, obs)
            if port is not None:
                # SYNs to a served port: no rule tells the flood from the
                # customers, cookies at the NIC answer both
                finding.update(synproxy=port, installed=port in self.synports)
                act = self._synproxy(port, obs.t, score, excess, legit, z)
                if act is not None:
                    finding["installed"] = True
                    actions.append(act)
                findings.append(finding)
                flood_cut = True
                continue
            if sig.cuts_path_mtu():  # whatever the baseline says: every customer behind a small MTU stalls
                findings.append({**finding, "installed": False, "note": f"signature {sig.describe()} not "
                                 "installed: it would drop the ICMP path MTU discovery needs"})
                continue
            # What no socket serves cannot cut a customer; else the calm
            # share of the rule's rarest field bounds what it would match.
            unserved = self._unserved(sig)
            if unserved:
                finding["why"] = unserved
            elif legit is not None and mature:
                if legit > a.signature_max_legit:
                    finding["installed"] = False
                    finding["note"] = (f"signature {sig.describe()} not installed: it matched {legit:.2%} of the "
                                       "calm traffic" + ("; SYNs are left to the kernel's SYN cookies (SYN "
                                                         "protection at the NIC is off or unavailable)"
                                                         if sig.proto == 6 and sig.tcp_flags == 0x02 else ""))
                    findings.append(finding)
                    continue
                finding["legit_share"] = round(legit, 6)
            elif amplified := signatures.amplified(sig):  # no baseline to ask
                unserved = finding["why"] = amplified
            elif cand.backscatter and flood_cut:  # the errors the flood just cut draws back
                unserved = finding["why"] = "ICMP errors drawn back by the flood's spoofed packets"
            else:
                continue  # nothing to tell a flood from the host's own traffic: no attacker
            flood_cut = flood_cut or not cand.backscatter
            findings.append(finding)
            key = sig.matcher()
            if key in self.sigs or len(self.sigs) >= a.max_signatures:
                continue
            ttl = self._ttl(key, obs.t)
            self._put(self.sigs, key, obs.t, ttl, sig)
            finding["installed"] = True
            actions.append(SignatureAction(sig, ttl, f"spoofed/reflected flood: {sig.describe()}, score {score:.1f}",
                                           {"score": round(score, 2), "excess_pps": round(excess),
                                            "legit_share": None if legit is None else round(legit, 6),
                                            "unserved": unserved or None, "moved": _moved(z)}))
        return actions, findings

    def _synproxy_port(self, sig: Signature, obs: Observation) -> Optional[int]:
        """The port of a flood of plain SYNs to one port a socket may serve,
        else None. A flood on the port the customers use has no port in its
        signature (that field did not move): the port that took most of the
        cycle's packets, if it took at least signature_min_share of them."""
        if not (self.synproxy_ok and self.cfg.attribution.synproxy and sig.proto == 6 and sig.tcp_flags == 0x02
                and sig.sport is None):
            return None
        port = sig.dport
        if port is None:
            h = obs.hist.get(Feature.DPORT)
            if h is None or not h.sum():
                return None
            top = int(np.argmax(h))
            if not top or h[top] < self.cfg.attribution.signature_min_share * h.sum():
                return None
            port = top
        return None if self._unserved(dataclasses.replace(sig, dport=port)) else port

    def _synproxy(self, port: int, t: float, score: float, excess: float, legit, z: dict):
        """SYN protection of port turned on, or renewed (escalated) once in
        the second half of its life while the flood goes on; None while
        it is in force and young."""
        cur = self.synports.get(port)
        if cur is not None and t < cur[0] - cur[1] / 2:
            return None
        key = ("synproxy", port)
        ttl = self._ttl(key, t)
        self._put(self.synports, port, t, ttl)
        ev = {"score": round(score, 2), "excess_pps": round(excess), "offence": self.offences[key][0],
              "legit_share": None if legit is None else round(legit, 6), "moved": _moved(z)}
        if cur is not None:
            ev["renewed"] = True
            return SynProxyAction(port, ttl, f"renewed: SYN flood on port {port} still on", ev)
        return SynProxyAction(port, ttl, f"SYN flood on served port {port}: {excess:.0f} pps over the usual, "
                                         f"score {score:.1f}", ev)

    def _unserved(self, sig: Signature) -> str:
        """Why no customer can send what sig matches, or '' (serving.py's
        no_collateral: no socket at its port, or reflection answers no
        socket there asked for; never certain without a port)."""
        if self.serving is None or sig.proto not in (6, 17) or sig.dport is None:
            return ""
        return self.serving.no_collateral(sig.proto, sig.dport, sig.sport) or ""

    # --- time: expiry, renewal, repeat offenders -------------------------------

    def _put(self, table: dict, key, t: float, ttl: float, *extra) -> None:
        table[key] = (t + ttl, ttl, *extra)
        self._next_expiry = min(self._next_expiry, t + ttl)

    def _expire(self, t: float) -> None:
        if t >= self._next_expiry:
            self.active = {k: v for k, v in self.active.items() if v[0] > t}
            self.sigs = {k: v for k, v in self.sigs.items() if v[0] > t}
            self.synports = {k: v for k, v in self.synports.items() if v[0] > t}
            self._next_expiry = min((v[0] for v in (*self.active.values(), *self.sigs.values(),
                                                    *self.synports.values())), default=math.inf)
            self._offenders = None
        # An offence older than [ttl] memory no longer escalates anything
        # (_ttl starts the count again): forget it, or weeks of attacks from
        # ever-new prefixes grow this without bound. Amortised: only once
        # it has doubled past what is in force.
        if len(self.offences) > 2 * (len(self.active) + len(self.sigs) + len(self.synports)) + 1024:
            memory = self.cfg.ttl.memory
            self.offences = {k: v for k, v in self.offences.items() if t - v[1] <= memory}
            self._offenders = None

    def _ttl(self, key, t: float) -> float:
        tc = self.cfg.ttl
        count, last = self.offences.get(key, (0, -math.inf))
        if t - last > tc.memory:
            count = 0
        ttl = min(tc.max, tc.base * (tc.escalation ** count))
        self.offences[key] = (count + 1, t)
        self._offenders = None
        return ttl

    def expiring(self, t: float, within: float) -> list:
        """The decisions in force that expire within `within` seconds: the
        daemon looks up their last drop for the next Observation."""
        if t + within < self._next_expiry:
            return []
        return [k for table in (self.active, self.sigs) for k, v in table.items() if v[0] <= t + within]

    def _renew(self, obs: Observation) -> list:
        """A decision that dropped in the second half of its life is
        renewed, escalated: the attack it stops is still on."""
        out = []
        for key, hit in obs.last_hits.items():
            table = self.active if isinstance(key, Prefix) else self.sigs
            cur = table.get(key)
            if cur is None or hit is None or hit < cur[0] - cur[1] / 2:
                continue
            ttl = self._ttl(key, obs.t)
            self._put(table, key, obs.t, ttl, *cur[2:])
            ev = {"renewed": True, "offence": self.offences[key][0], "last_drop_ago": round(obs.t - hit, 2)}
            if isinstance(key, Prefix):
                out.append(BlockAction(key, ttl, f"renewed: still dropping {obs.t - hit:.1f} s ago", ev))
            else:
                out.append(SignatureAction(cur[2], ttl, f"renewed: still dropping {obs.t - hit:.1f} s ago", ev))
        return out

    def _returning(self, obs: Observation) -> list:
        """Known offenders seen again after their block expired: blocked
        again at once (escalated), before any alarm."""
        src = obs.sources
        a = self.cfg.attribution
        if not len(src) or not self.offences:
            return []
        if self._offenders is None:
            self._offenders = self._offender_tables(obs.t)
        hosts, nets = self._offenders
        if not len(hosts) and not nets:
            return []
        rate = src.packets.astype(np.float64) / obs.dt
        cand = np.flatnonzero(rate >= a.returning_min_pps)
        cand = cand[~self._customers(src.take(cand))]
        if not len(cand):
            return []
        cs = src.take(cand)
        found = []
        for i in np.flatnonzero(cs.find(hosts) >= 0):
            found.append((cs.prefix(int(i)), float(rate[cand[i]])))
        for (p4, p6), table in nets.items():
            idx = cs.network(p4, p6).find(table)
            for i in np.flatnonzero(idx >= 0):
                found.append((cs.prefix(int(i), p4 if cs.ver[i] == 4 else p6), float(rate[cand[i]])))
        out = []
        for prefix, r in found:
            if prefix in self.active or self.allowed(prefix) or len(self.active) >= a.max_auto_blocks:
                continue
            ttl = self._ttl(prefix, obs.t)
            self._put(self.active, prefix, obs.t, ttl)
            out.append(BlockAction(prefix, ttl, f"returning offender (offence {self.offences[prefix][0]}): {r:.0f} pps",
                                   {"returning": True, "pps": round(r), "offence": self.offences[prefix][0]}))
        return out

    def _offender_tables(self, t: float) -> tuple:
        memory = self.cfg.ttl.memory
        a = self.cfg.attribution
        hosts, nets = [], {}
        for k, (count, last) in self.offences.items():
            if not isinstance(k, Prefix) or k in self.active or t - last > memory:
                continue
            if k.is_host:
                hosts.append(k)
            elif k.prefixlen == (a.aggregate_v4 if k.version == 4 else a.aggregate_v6):
                nets.setdefault((a.aggregate_v4, a.aggregate_v6), []).append(k)
        return Sources.of_prefixes(hosts), {p: Sources.of_prefixes(v) for p, v in nets.items()}

    # --- state from outside --------------------------------------------------

    def note_block(self, prefix: Prefix, expires_t: float, offences: int = 1, t: float = 0.0,
                   ttl: Optional[float] = None) -> None:
        """Tell the engine about an automatic block in force (restored from
        the journal at start), so it is neither repeated nor forgotten."""
        self.active[prefix] = (expires_t, ttl if ttl is not None else max(expires_t - t, 0.0))
        self._next_expiry = min(self._next_expiry, expires_t)
        self.offences[prefix] = (offences, t)
        self._offenders = None

    def note_synproxy(self, port: int, expires_t: float, offences: int = 1, t: float = 0.0,
                      ttl: Optional[float] = None) -> None:
        """Tell the engine about automatic SYN protection in force (restored at start)."""
        self.synports[port] = (expires_t, ttl if ttl is not None else max(expires_t - t, 0.0))
        self._next_expiry = min(self._next_expiry, expires_t)
        self.offences[("synproxy", port)] = (offences, t)

    def note_signature(self, sig: Signature, expires_t: float, offences: int = 1, t: float = 0.0,
                       ttl: Optional[float] = None) -> None:
        key = sig.matcher()
        self.sigs[key] = (expires_t, ttl if ttl is not None else max(expires_t - t, 0.0), sig)
        self._next_expiry = min(self._next_expiry, expires_t)
        self.offences[key] = (offences, t)
