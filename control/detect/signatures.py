"""The shape of a flood whose sources cannot be blocked. Pure (numpy only).

Given a cycle's histograms, the part of its rate that is over the usual
(the excess) and the baseline's calm share of every bucket, derive the
signature rules that describe the excess: per feature, the bucket that
took most of it ("cover") and how much more concentrated it is there than
in calm traffic ("lift"). A flash crowd spreads its excess like the
baseline (lift about 1) and never makes a signature; a flood piles it on
one bucket.

IP fragments carry no ports after the first one, so a fragmented flood is
two rules: its non-first fragments by protocol and the fragment flag
(their length class too when it is concentrated), and its first fragments,
by their ports like any other packet, once the non-first ones are taken
out of the port histograms' "no port" bucket.

The spoofed packets of a reflection also draw ICMP errors back from the
reflectors' paths (backscatter: time exceeded, unreachable), a few
percent of the flood; each (type, code) holding enough of the excess is a
rule of its own, never "fragmentation needed" (ICMP type 3 code 4) nor
ICMPv6's "packet too big", which path MTU discovery needs. The datapath
keeps an ICMP type where a source port would be and its code where a
destination port would be, so the port histograms count them.

Each candidate comes with `legit`: the calm share of its rarest field, an
upper bound of the share of calm traffic it would have matched (None when
there is no baseline to say). The engine decides whether to install it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from seawall.control.datapath.abi import LEN_CLASS_WIDTH, Feature, FragClass
from seawall.control.signature import Signature

LIFT = 1.15  # a field's bucket holds this much more of the excess than of the calm traffic
STRONG_LIFT = 3.0  # at least one field must be this concentrated
FRAG_SHARE = 0.25  # non-first fragments taking this share of the excess get a rule of their own
BACKSCATTER_SHARE = 0.005  # an ICMP error (type, code) taking this share of the excess gets a rule
#: ICMP errors a spoofed flood draws back, per protocol: (unreachable, time
#: exceeded) types, and the codes never to cut (path MTU discovery)
BACKSCATTER = {1: (3, 11, (4,)), 58: (1, 3, ())}

FIELDS = ((Feature.PROTO, "proto"), (Feature.DPORT, "dport"), (Feature.SPORT, "sport"),
          (Feature.LEN, "len"), (Feature.FLAGS, "tcp_flags"))


#: The largest frame a host's own query normally gets back from these
#: reflection ports (DNS with EDNS, an NTP time answer, ...). Answers from
#: them that are all larger are amplification, whoever asked: a rule on the
#: port and such a length cannot cut the host's own lookups, so it needs
#: no baseline (a daemon started during the flood cuts it).
OWN_ANSWER_MAX = {53: 1280, 123: 128, 161: 512, 389: 512, 1900: 512, 11211: 512, 19: 512, 17: 512,
                  111: 512, 137: 512, 3702: 512, 5353: 512}


def amplified(sig: Signature) -> str:
    """Why sig only matches amplified reflection answers, or ''."""
    top = OWN_ANSWER_MAX.get(sig.sport) if sig.proto == 17 and sig.dport is None else None
    if top is None or sig.len_min is None or sig.len_min < top:
        return ""
    return f"answers of {sig.len_min} bytes or more from udp port {sig.sport}: amplification (own answers are under {top})"


@dataclass
class Candidate:
    signature: Signature
    legit: Optional[float]  # calm share of its rarest field; None: no baseline
    #: the same rule without its length range, when it has other fields
    #: (a reflection's answers come in several sizes): preferred when it is
    #: as safe
    broader: Optional["Candidate"] = None
    #: ICMP errors drawn back by the flood (not the flood itself)
    backscatter: bool = False


def _pick(hist: dict, share: dict, calm: float, dt: float, excess: float, min_share: float,
          features=FIELDS) -> tuple:
    """({field: bucket}, {field: calm share or None}, strong) of the fields
    whose bucket holds at least min_share of the excess."""
    fields, shares, strong = {}, {}, False
    for f, name in features:
        if f not in hist:
            continue
        cur = hist[f].astype(np.float64)
        s = share.get(f)
        s = s if s is not None and s.shape == cur.shape else None
        extra = cur - (s * calm * dt if s is not None else 0.0)
        b = int(np.argmax(extra))
        cover = extra[b] / max(excess * dt, 1.0)
        lift = cover / max(float(s[b]) if s is not None else 0.0, 1e-6)
        if cover >= min_share and (lift >= LIFT or f == Feature.PROTO):
            fields[name] = b
            shares[name] = float(s[b]) if s is not None else None
            strong |= lift >= STRONG_LIFT
    return fields, shares, strong


def _legit(shares: dict, names) -> Optional[float]:
    vals = [shares[k] for k in names if k != "proto"]
    return None if not vals or any(v is None for v in vals) else min(vals)


def _length(fields: dict) -> dict:
    if "len" not in fields:
        return {}
    return {"len_min": fields["len"] * LEN_CLASS_WIDTH, "len_max": (fields["len"] + 1) * LEN_CLASS_WIDTH}


def derive(hist: dict, share: dict, calm: float, dt: float, excess: float, min_share: float) -> list:
    """The Candidates that describe this cycle's excess (packets/s over
    the usual `calm` rate), the fragment rule first."""
    out = []
    hist = dict(hist)
    later = 0.0
    if Feature.FRAG in hist:
        s = share.get(Feature.FRAG)
        calm_later = float(s[FragClass.LATER]) * calm * dt if s is not None and len(s) > FragClass.LATER else 0.0
        later = max(0.0, float(hist[Feature.FRAG][FragClass.LATER]) - calm_later)
    if later >= FRAG_SHARE * excess * dt and later > 0:
        # the non-first fragments: protocol and length among themselves
        # are unknown (the histograms are per feature), so the protocol
        # must hold them all and the length class at least as many
        fields, shares, _ = _pick(hist, share, calm, dt, later / dt, 1.0,
                                  ((Feature.PROTO, "proto"), (Feature.LEN, "len")))
        if "proto" in fields:
            fs = share.get(Feature.FRAG)
            shares["fragment"] = float(fs[FragClass.LATER]) if fs is not None else None
            out.append(Candidate(Signature(fields["proto"], fragment=True, **_length(fields)),
                                 _legit(shares, ("fragment", *fields))))
        # ... and out of the histograms where the first fragments are to be
        # found: the ports' "no port" bucket, and their own length class
        for f, b in ((Feature.DPORT, 0), (Feature.SPORT, 0), (Feature.PROTO, fields.get("proto")),
                     (Feature.LEN, fields.get("len"))):
            if f in hist and b is not None:
                h = hist[f].astype(np.float64)
                h[b] = max(0.0, h[b] - later)
                hist[f] = h
        excess = max(0.0, excess - later / dt)
        if excess * dt < 1.0:
            return out
    fields, shares, strong = _pick(hist, share, calm, dt, excess, min_share)
    if "proto" not in fields or not strong:
        return out
    proto = fields["proto"]
    for port in ("dport", "sport"):
        if proto not in (6, 17) or fields.get(port) == 0:
            fields.pop(port, None)
    if proto != 6:
        fields.pop("tcp_flags", None)
    if not any(k in fields for k in ("dport", "sport", "len", "tcp_flags")):
        return out  # a whole protocol is too broad a signature
    sig = Signature(proto=proto, dport=fields.get("dport"), sport=fields.get("sport"),
                    tcp_flags=fields.get("tcp_flags"), **_length(fields))
    broader = None
    if "len" in fields and any(k in fields for k in ("dport", "sport", "tcp_flags")):
        rest = [k for k in fields if k != "len"]
        broader = Candidate(Signature(proto=proto, dport=fields.get("dport"), sport=fields.get("sport"),
                                      tcp_flags=fields.get("tcp_flags")), _legit(shares, rest))
    out.append(Candidate(sig, _legit(shares, fields), broader))
    return out + backscatter(hist, share, calm, dt, excess)


def backscatter(hist: dict, share: dict, calm: float, dt: float, excess: float) -> list:
    """Candidates for the ICMP errors in this cycle's excess: time exceeded
    whole, unreachable by code (module docstring)."""
    total = max(excess * dt, 1.0)

    def extra(f, b) -> tuple:  # (count over the usual, calm share)
        h = hist.get(f)
        if h is None or b >= len(h):
            return 0.0, None
        s = share.get(f)
        s = s if s is not None and s.shape == h.shape else None
        calm_b = float(s[b]) if s is not None else None
        return float(h[b]) - (calm_b or 0.0) * calm * dt, calm_b

    def strong(n: float, calm_share: Optional[float]) -> bool:
        return n >= BACKSCATTER_SHARE * total and n / total >= STRONG_LIFT * (calm_share or 0.0)

    out = []
    for proto, (unreach, exceeded, keep) in BACKSCATTER.items():
        p, _ = extra(Feature.PROTO, proto)
        if p < BACKSCATTER_SHARE * total:
            continue
        t_ex, s_ex = extra(Feature.SPORT, exceeded)
        t_ex = min(t_ex, p)
        if strong(t_ex, s_ex):
            out.append(Candidate(Signature(proto, sport=exceeded), s_ex, backscatter=True))
        t_un, s_un = extra(Feature.SPORT, unreach)
        t_un = min(t_un, p)
        if not strong(t_un, s_un):
            continue
        for code in range(16):
            if code in keep:
                continue
            n, s_c = extra(Feature.DPORT, code)
            if code == 0:
                n -= max(t_ex, 0.0)  # time exceeded's own code is 0 too
            n = min(n, t_un)
            if strong(n, s_c):
                legit = None if s_un is None or s_c is None else min(s_un, s_c)
                out.append(Candidate(Signature(proto, sport=unreach, dport=code), legit, backscatter=True))
    return out
