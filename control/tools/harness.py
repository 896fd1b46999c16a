"""Evaluation harness: seeded simulations of legitimate traffic and attacks,
run through the real scoring engine and a model of the kernel's verdicts.
Pure Python and numpy; `seawall evaluate` prints its table and
tests/unit/test_harness.py asserts each scenario's bounds.

Model, kept deliberately plain:
- Legitimate traffic: `clients` addresses in 198.18.0.0/16 with
  Zipf-distributed activity (exponent 0.9), Poisson packet counts per cycle,
  a web mix (TCP 443/80, QUIC, DNS, ICMP) with realistic sizes and flags.
- The kernel: blocked prefixes drop (longest match irrelevant here),
  signature rules drop or rate-limit, survivors are counted into the same
  histograms the XDP program keeps; a source becomes visible to the daemon
  from its second packet (the doorkeeper), at most ADMIT per second; each
  decision's last drop is stamped, as the kernel's last_hit_ns.
- The host's sockets (SimServing): it serves TCP 80 and 443, UDP 443 and
  53; the legitimate clients hold established TCP connections, the
  attackers (raw-packet floods, no handshake) do not.
- Attacks use 198.19.0.0/16 (spoofed floods draw from the whole
  198.18.0.0/15, so they may forge legitimate clients' addresses).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np

from seawall.control.config import Config
from seawall.control.datapath.abi import Feature, FEATURE_SIZES, LEN_CLASS_WIDTH, LEN_CLASSES, SRC_BUCKETS
from seawall.control.detect.engine import BlockAction, Engine, Observation, SignatureAction
from seawall.control.addr import Sources

V4_LEGIT = 0xC6120000  # 198.18.0.0/16
V4_ATTACK = 0xC6130000  # 198.19.0.0/16
ADMIT = 8192  # sources admitted per second (2 CPUs x 4096)


@dataclass
class Packets:
    src: np.ndarray  # uint64 IPv4 address (all simulated traffic is IPv4)
    proto: np.ndarray
    sport: np.ndarray
    dport: np.ndarray
    length: np.ndarray
    flags: np.ndarray
    attack: np.ndarray  # bool

    @classmethod
    def concat(cls, parts):
        parts = [p for p in parts if p is not None and len(p.src)]
        if not parts:
            z = np.zeros(0, np.int64)
            return cls(z.astype(np.uint64), z, z, z, z, z, z.astype(bool))
        return cls(*(np.concatenate([getattr(p, f) for p in parts])
                     for f in ("src", "proto", "sport", "dport", "length", "flags", "attack")))

    def take(self, m):
        return Packets(self.src[m], self.proto[m], self.sport[m], self.dport[m], self.length[m],
                       self.flags[m], self.attack[m])


def src_bucket(src: np.ndarray) -> np.ndarray:
    """The kernel's hash_v4 bucket, on host-order addresses converted to
    the network-order u32 the program multiplies."""
    be = src.astype(np.uint32).byteswap()
    h = (be.astype(np.uint64) * np.uint64(2654435761)) & np.uint64(0xFFFFFFFF)
    return ((h >> np.uint64(16)) & np.uint64(SRC_BUCKETS - 1)).astype(np.int64)


def web_mix(rng, src, attack: bool) -> Packets:
    """The legitimate traffic mix, for given per-packet sources."""
    n = len(src)
    kind = rng.choice(5, n, p=[0.70, 0.12, 0.10, 0.05, 0.03])
    proto = np.choose(kind, [6, 6, 17, 17, 1])
    dport = np.choose(kind, [443, 80, 443, 53, 0])
    sport = np.where(proto == 1, 8, rng.integers(32768, 61000, n))
    tcp_len = rng.choice(3, n, p=[0.5, 0.3, 0.2])
    length = np.where(
        proto == 6,
        np.choose(tcp_len, [np.full(n, 66), rng.integers(200, 600, n), rng.integers(1400, 1515, n)]),
        np.where(dport == 53, rng.integers(70, 120, n), np.where(proto == 1, 98, rng.integers(1200, 1350, n))),
    )
    fl = rng.choice(3, n, p=[0.05, 0.80, 0.15])
    flags = np.where(proto == 6, np.choose(fl, [0x02, 0x10, 0x18]), 0)
    if proto.size:
        dport = np.where(proto == 1, 0, dport)
    return Packets(src.astype(np.uint64), proto, sport, dport, length, flags, np.full(n, attack))


class Legit:
    def __init__(self, rng, clients=5000, pps=10000.0, zipf=0.9, rates=None, exclude=None):
        self.rng = rng
        pool = np.setdiff1d(np.arange(1 << 16, dtype=np.uint64) + np.uint64(V4_LEGIT),
                            exclude if exclude is not None else np.zeros(0, np.uint64))
        self.addrs = rng.choice(pool, clients, replace=False).astype(np.uint64)
        if rates is None:
            w = 1.0 / np.arange(1, clients + 1) ** zipf
            self.w = rng.permutation(w / w.sum())
            self.pps = pps
        else:
            self.w = rates / rates.sum()
            self.pps = float(rates.sum())

    @classmethod
    def crowd(cls, rng, clients, mean_pps, exclude):
        """New visitors: ordinary browsers, lognormal rates capped at 50 pps."""
        rates = np.minimum(rng.lognormal(math.log(mean_pps) - 0.5, 1.0, clients), 50.0)
        return cls(rng, clients, rates=rates, exclude=exclude)

    def gen(self, dt, scale=1.0) -> Packets:
        n = self.rng.poisson(self.pps * scale * dt)
        src = self.addrs[self.rng.choice(len(self.addrs), n, p=self.w)]
        return web_mix(self.rng, src, False)


def flood(rng, srcs, pps, dt, proto, dport=None, sport=None, length=(60, 61), flags=0, weights=None):
    n = rng.poisson(pps * dt)
    src = srcs[rng.choice(len(srcs), n, p=weights)] if len(srcs) else srcs
    return Packets(
        src.astype(np.uint64),
        np.full(n, proto),
        rng.integers(1024, 65536, n) if sport is None else np.full(n, sport),
        rng.integers(1024, 65536, n) if dport is None else np.full(n, dport),
        rng.integers(length[0], length[1], n),
        np.full(n, flags),
        np.ones(n, bool),
    )


# --- scenarios ------------------------------------------------------------------

@dataclass
class Scenario:
    name: str
    describe: str
    attack: Callable  # (rng, t, dt) -> Packets or None
    active: Callable  # t -> bool (attack on)
    legit_scale: Callable = lambda t: 1.0
    extra_legit: Optional[dict] = None  # flash crowd: {"clients": n, "pps": x, "from": t0, "to": t1}
    expect_detect: bool = True
    max_delay: float = 1.0  # seconds from attack start to alarm
    min_dropped: float = 0.9  # fraction of attack packets dropped
    max_legit_dropped: float = 0.001  # fraction of legitimate packets dropped
    note: str = ""


START, STOP, END = 60.0, 120.0, 150.0


def _on(t):
    return START <= t < STOP


def scenarios() -> list:
    def single(rng_):
        src = np.array([V4_ATTACK + 0x0542], np.uint64)
        return lambda rng, t, dt: flood(rng, src, 50000, dt, 17, dport=27015, length=(1200, 1201))

    def botnet(rng_):
        scattered = V4_ATTACK + rng_.choice(1 << 16, 200, replace=False).astype(np.uint64)
        nets = rng_.choice(256, 10, replace=False)
        dense = np.concatenate([V4_ATTACK + np.uint64(n << 8) + rng_.choice(256, 20, replace=False).astype(np.uint64)
                                for n in nets])
        bots = np.unique(np.concatenate([scattered, dense]))
        return lambda rng, t, dt: _tcp_http_flood(rng, bots, 200.0 * len(bots), dt)

    def spoofed(rng_):
        space = np.arange(0xC6120000, 0xC6140000, dtype=np.uint64)
        return lambda rng, t, dt: flood(rng, space, 80000, dt, 6, dport=443, length=(60, 61), flags=0x02)

    def reflection(rng_):
        refl = V4_ATTACK + rng_.choice(1 << 16, 1500, replace=False).astype(np.uint64)
        return lambda rng, t, dt: flood(rng, refl, 60000, dt, 17, sport=161, length=(1300, 1450))

    def pulse(rng_):
        bots = V4_ATTACK + rng_.choice(1 << 16, 50, replace=False).astype(np.uint64)
        return lambda rng, t, dt: flood(rng, bots, 50000, dt, 17, dport=80, length=(500, 900))

    def lowrate(rng_):
        bots = V4_ATTACK + rng_.choice(1 << 16, 10, replace=False).astype(np.uint64)
        return lambda rng, t, dt: flood(rng, bots, 1000, dt, 17, dport=80, length=(500, 900))

    def mimic(rng_):
        bots = V4_ATTACK + rng_.choice(1 << 16, 300, replace=False).astype(np.uint64)
        return lambda rng, t, dt: web_mix(rng, bots[rng.choice(300, rng.poisson(240000 * dt))], True)

    def pulse_on(t):
        # three 20-second pulses, 40 seconds apart
        return any(START + k * 60 <= t < START + k * 60 + 20 for k in range(3))

    return [
        Scenario("single-source", "one source, UDP 50k pps", single, _on),
        Scenario("botnet", "400 bots x 200 pps, HTTP-like TCP to 443; 10 dense /24s", botnet, _on),
        Scenario("spoofed-syn", "80k pps SYN to 443, random source every packet", spoofed, _on,
                 min_dropped=0.0,
                 note="port 443 carries customers too: no rule is shared with them; the SYNs are left "
                      "to the kernel's SYN cookies (detected, not dropped)"),
        Scenario("reflection", "1500 SNMP reflectors, UDP sport 161, 60k pps", reflection, _on),
        Scenario("pulse", "50 bots, 3 pulses of 20 s, 40 s apart", pulse, pulse_on),
        Scenario("low-rate", "10 sources x 100 pps (+10% load)", lowrate, _on, expect_detect=False,
                 min_dropped=0.0, note="below the volume floor by design: not a flood"),
        Scenario("flash-crowd", "tenfold legitimate surge: regulars x3, 20k new visitors", lambda r: (lambda rng, t, dt: None),
                 lambda t: False, legit_scale=lambda t: 3.0 if START <= t < STOP else 1.0,
                 extra_legit={"clients": 20000, "pps": 3.5},
                 expect_detect=False, min_dropped=0.0, max_legit_dropped=0.0,
                 note="an alarm may rise on volume; nothing may be blocked"),
        Scenario("mimic", "300 bots copying the legitimate mix (ports, sizes, flags), 240k pps", mimic, _on),
    ]


def _tcp_http_flood(rng, bots, pps, dt):
    p = web_mix(rng, bots[rng.choice(len(bots), rng.poisson(pps * dt))], True)
    return p


# --- kernel model and run ------------------------------------------------------------

@dataclass
class Result:
    name: str
    detected: bool
    delay: Optional[float]  # attack start -> alarm, seconds
    mitigation_delay: Optional[float]  # attack start -> first block or signature
    attack_packets: int
    attack_dropped: float  # fraction
    legit_packets: int
    legit_dropped: float  # fraction
    legit_blocked: int  # distinct legitimate addresses ever covered by a block
    blocks: int
    signatures: list = field(default_factory=list)
    ok: bool = True
    failures: list = field(default_factory=list)
    note: str = ""

    def to_json(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


class SimServing:
    """The simulated host's sockets, with detect/serving.Serving's queries."""

    TCP, UDP = {80, 443}, {53, 443}

    def __init__(self, customers: np.ndarray):
        self.customer_addrs = np.sort(customers.astype(np.uint64))
        n = len(self.customer_addrs)
        z = np.zeros(n, np.uint64)
        self.peers = Sources(np.full(n, 4, np.uint8), z, self.customer_addrs, z, z, z)

    def customers(self, src: Sources) -> np.ndarray:
        i = np.minimum(np.searchsorted(self.customer_addrs, src.lo), max(len(self.customer_addrs) - 1, 0))
        return (src.ver == 4) & (self.customer_addrs[i] == src.lo) if len(self.customer_addrs) else src.ver < 0

    def no_collateral(self, proto: int, dport: int, sport=None):
        if dport not in (self.TCP if proto == 6 else self.UDP if proto == 17 else set()):
            return f"no {'TCP' if proto == 6 else 'UDP'} socket at port {dport}"
        return None


class KernelModel:
    def __init__(self):
        self.blocks: dict = {}  # (net, plen) -> [expiry t, last hit t, Prefix]
        self.sigs: dict = {}  # Signature -> [expiry, last hit t]
        self.tracked: set = set()

    def apply(self, t, acts):
        for a in acts:
            if isinstance(a, BlockAction):
                p = a.prefix
                k = (int.from_bytes(p.packed, "big"), p.prefixlen)
                self.blocks[k] = [t + a.ttl, self.blocks.get(k, [0, None])[1], p]
            elif isinstance(a, SignatureAction):
                self.sigs[a.signature] = [t + a.ttl, self.sigs.get(a.signature, [0, None])[1]]

    def last_hits(self, keys: list) -> dict:
        """{engine key: t of its last drop} for the keys the engine asks about."""
        want = set(keys)
        out = {v[2]: v[1] for v in self.blocks.values() if v[2] in want}
        out.update({s.matcher(): v[1] for s, v in self.sigs.items() if s.matcher() in want})
        return out

    def verdict(self, rng, pk: Packets, t, dt) -> np.ndarray:
        drop = np.zeros(len(pk.src), bool)
        self.blocks = {k: v for k, v in self.blocks.items() if v[0] > t}
        self.sigs = {k: v for k, v in self.sigs.items() if v[0] > t}
        by_len: dict = {}
        for net, plen in self.blocks:
            by_len.setdefault(plen, []).append(net)
        for plen, nets in by_len.items():
            mask = np.uint64(((1 << 32) - 1) ^ ((1 << (32 - plen)) - 1))
            nets = np.asarray(nets, np.uint64)
            hit = np.isin(pk.src & mask, nets)
            drop |= hit
            for net in np.unique(pk.src[hit] & mask).tolist():
                self.blocks[(net, plen)][1] = t + dt
        for sig, v in self.sigs.items():
            m = sig.matches(pk.proto, pk.sport, pk.dport, pk.length, pk.flags) & ~drop
            if m.any():
                v[1] = t + dt
            if sig.rate_pps == 0:
                drop |= m
            else:
                idx = np.nonzero(m)[0]
                allow = int(sig.rate_pps * dt)
                if len(idx) > allow:
                    drop[rng.choice(idx, len(idx) - allow, replace=False)] = True
        return drop

    def observe(self, pk: Packets, t, dt) -> Observation:
        hist = {
            Feature.SRC: np.bincount(src_bucket(pk.src), minlength=FEATURE_SIZES[Feature.SRC]),
            Feature.DPORT: np.bincount(pk.dport, minlength=65536),
            Feature.SPORT: np.bincount(pk.sport, minlength=65536),
            Feature.PROTO: np.bincount(pk.proto, minlength=256),
            Feature.LEN: np.bincount(np.minimum(pk.length // LEN_CLASS_WIDTH, LEN_CLASSES - 1), minlength=LEN_CLASSES),
            Feature.FLAGS: np.bincount(pk.flags & 0x3F, minlength=64),
        }
        u, cnt = np.unique(pk.src, return_counts=True)
        syn = np.bincount(np.searchsorted(u, pk.src), weights=(pk.flags == 0x02), minlength=len(u))
        byt = np.bincount(np.searchsorted(u, pk.src), weights=pk.length, minlength=len(u))
        # doorkeeper: visible from the second packet, admissions capped
        known = np.fromiter((x in self.tracked for x in u.tolist()), bool, len(u)) if self.tracked else np.zeros(len(u), bool)
        new = np.nonzero(~known & (cnt >= 2))[0][: int(ADMIT * dt)]
        self.tracked.update(u[new].tolist())
        vis = known.copy()
        vis[new] = True
        src = Sources(np.full(int(vis.sum()), 4, np.uint8), np.zeros(int(vis.sum()), np.uint64), u[vis],
                      cnt[vis].astype(np.uint64), byt[vis].astype(np.uint64), syn[vis].astype(np.uint64))
        return Observation(t, dt, hist, src)


def run(sc: Scenario, cfg: Optional[Config] = None, seed: int = 1, dt: float = 0.25) -> Result:
    cfg = cfg or Config()
    rng = np.random.default_rng(seed)
    legit = Legit(rng)
    crowd = (Legit.crowd(rng, sc.extra_legit["clients"], sc.extra_legit["pps"], legit.addrs)
             if sc.extra_legit else None)
    attack = sc.attack(rng)
    legit_set = set(legit.addrs.tolist()) | (set(crowd.addrs.tolist()) if crowd else set())
    legit_sorted = np.array(sorted(legit_set), np.uint64)
    allow = lambda p: False  # noqa: E731
    eng = Engine(cfg, allow)
    eng.serving = SimServing(legit_sorted)
    kern = KernelModel()
    t = 0.0
    first_on = None
    alarm_t = mit_t = None
    a_tot = a_drop = l_tot = l_drop = 0
    blocked_legit: set = set()
    n_blocks = 0
    sigs = []
    while t < END - 1e-9:
        t_end = t + dt
        on = sc.active(t)
        parts = [legit.gen(dt, sc.legit_scale(t))]
        if crowd is not None and START <= t < STOP:
            parts.append(crowd.gen(dt))
        if on:
            first_on = t if first_on is None else first_on
            parts.append(attack(rng, t, dt))
        pk = Packets.concat(parts)
        drop = kern.verdict(rng, pk, t, dt)
        a_tot += int(pk.attack.sum())
        a_drop += int((drop & pk.attack).sum())
        l_tot += int((~pk.attack).sum())
        l_drop += int((drop & ~pk.attack).sum())
        obs = kern.observe(pk.take(~drop), t_end, dt)
        obs.last_hits = kern.last_hits(eng.expiring(t_end, 2 * dt))
        rep = eng.step(obs)
        if rep.raised and first_on is not None and alarm_t is None:
            alarm_t = t_end
        if rep.actions:
            if first_on is not None and mit_t is None:
                mit_t = t_end
            kern.apply(t_end, rep.actions)
            for a in rep.actions:
                if isinstance(a, BlockAction):
                    n_blocks += 1
                    net = int.from_bytes(a.prefix.packed, "big")
                    size = 1 << (32 - a.prefix.prefixlen)
                    lo = np.searchsorted(legit_sorted, net)
                    hi = np.searchsorted(legit_sorted, net + size)
                    blocked_legit.update(legit_sorted[lo:hi].tolist())
                else:
                    sigs.append(a.signature.describe())
        t = t_end
    res = Result(
        sc.name, alarm_t is not None,
        None if alarm_t is None else round(alarm_t - first_on, 3),
        None if mit_t is None else round(mit_t - first_on, 3),
        a_tot, round(a_drop / a_tot, 4) if a_tot else 0.0,
        l_tot, round(l_drop / l_tot, 6) if l_tot else 0.0,
        len(blocked_legit), n_blocks, sigs, note=sc.note,
    )
    check(sc, res)
    return res


def check(sc: Scenario, r: Result) -> None:
    f = []
    if sc.expect_detect:
        if not r.detected:
            f.append("not detected")
        elif r.delay is not None and r.delay > sc.max_delay:
            f.append(f"detected after {r.delay}s > {sc.max_delay}s")
    if r.attack_dropped < sc.min_dropped:
        f.append(f"dropped {r.attack_dropped:.1%} of the attack < {sc.min_dropped:.0%}")
    if r.legit_blocked:
        f.append(f"{r.legit_blocked} legitimate sources blocked")
    if r.legit_dropped > sc.max_legit_dropped:
        f.append(f"dropped {r.legit_dropped:.3%} of legitimate packets > {sc.max_legit_dropped:.3%}")
    r.failures = f
    r.ok = not f


def run_all(cfg: Optional[Config] = None, seed: int = 1, dt: float = 0.25, say=None) -> list:
    """Every scenario's result; say(str), if given, hears which one runs."""
    out, scs = [], scenarios()
    for i, sc in enumerate(scs, 1):
        if say:
            say(f"scenario {i} of {len(scs)}: {sc.name}")
        out.append(run(sc, cfg, seed, dt))
    return out


def table(results: list) -> str:
    head = "| scenario | detected | alarm after | first decision after | attack dropped | legit blocked | legit dropped | bound |\n" \
           "|---|---|---|---|---|---|---|---|\n"
    rows = []
    for r in results:
        rows.append(f"| {r.name} | {'yes' if r.detected else 'no'} | "
                    f"{'-' if r.delay is None else f'{r.delay:.2f} s'} | "
                    f"{'-' if r.mitigation_delay is None else f'{r.mitigation_delay:.2f} s'} | {r.attack_dropped:.1%} | "
                    f"{r.legit_blocked} | {r.legit_dropped:.3%} | {'met' if r.ok else 'MISSED: ' + '; '.join(r.failures)} |")
    return head + "\n".join(rows)
