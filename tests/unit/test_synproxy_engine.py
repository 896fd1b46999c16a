"""The engine's side of SYN protection (issue 11): a spoofed SYN flood on
a served port turns SYN cookies at the NIC on for that port, never a drop
or a rate limit shared with the customers; renewed while the flood goes
on, forgotten when its time is up; nothing of the kind where the host
cannot have it. The traffic is test_engine's hand-built flows."""

from __future__ import annotations

from seawall.control.detect.engine import SignatureAction, SynProxyAction

from test_detection import Serving
from test_engine import SYN, Run, cfg, flow, legit

SYN_LEGIT = [flow(f"10.0.0.{i}", 2, 6, 41000 + i, 443, 66, SYN) for i in range(1, 201)]


def spoofed(dport=443, n: int = 20000) -> list:
    ports = dport if callable(dport) else (lambda i: dport)
    return [flow(f"172.16.{i // 250}.{i % 250 + 1}", 1, 6, 1024 + i, ports(i), 66, SYN) for i in range(n)]


def run(ok: bool = True, **sections) -> Run:
    r = Run(cfg(**sections))
    r.eng.serving = Serving()
    r.eng.synproxy_ok = ok
    for _ in range(10):
        r.step(legit(r.t + 1) + SYN_LEGIT)
    return r


def synproxy(rep) -> list:
    return [a for a in rep.actions if isinstance(a, SynProxyAction)]


def test_a_syn_flood_on_the_customers_port_turns_syn_cookies_on_for_it():
    """The flood shares port 443 with the customers' SYNs: the signature has
    no port (that histogram did not move), the port is the one that took
    the cycle's packets."""
    r = run()
    rep = r.step(legit(r.t + 1) + SYN_LEGIT + spoofed())
    assert rep.raised
    (act,) = synproxy(rep)
    assert act.port == 443 and act.ttl == r.eng.cfg.ttl.base and "served port 443" in act.reason
    assert not [a for a in rep.actions if isinstance(a, SignatureAction)]  # no drop, no rate limit
    assert rep.findings[0]["synproxy"] == 443 and rep.findings[0]["installed"] is True
    assert "SYN cookies" not in rep.note


def test_it_is_renewed_escalated_while_the_flood_goes_on_and_forgotten_after():
    r = run(ttl={"base": "20s"})
    acts = []
    for _ in range(15):  # the flood goes on: one action at once, the renewal once half its life is gone
        acts += synproxy(r.step(legit(r.t + 1) + SYN_LEGIT + spoofed()))
    assert [a.ttl for a in acts] == [20, 80] and acts[1].evidence["renewed"] is True
    assert 443 in r.eng.synports
    for _ in range(90):  # over: the engine forgets it when its time is up
        assert not synproxy(r.step(legit(r.t + 1) + SYN_LEGIT))
    assert 443 not in r.eng.synports


def test_without_it_the_flood_is_left_to_the_kernels_syncookies():
    for r in (run(ok=False), run(attribution={"synproxy": False})):
        rep = r.step(legit(r.t + 1) + SYN_LEGIT + spoofed())
        assert rep.raised and not rep.actions
        assert "SYN cookies" in rep.note and "not installed" in rep.note


def test_a_syn_flood_on_an_unserved_port_is_dropped_not_proxied():
    """No socket at 27015: nothing a customer sends can match a drop there."""
    r = run()
    rep = r.step(legit(r.t + 1) + SYN_LEGIT + spoofed(27015))
    assert not synproxy(rep)
    (sig,) = [a for a in rep.actions if isinstance(a, SignatureAction)]
    assert sig.signature.dport == 27015 and sig.signature.tcp_flags == SYN


def test_syns_spread_over_many_ports_name_no_port():
    """No port took half the cycle: nothing to protect, nothing dropped."""
    r = run()
    rep = r.step(legit(r.t + 1) + SYN_LEGIT + spoofed(lambda i: 1024 + i % 4000))
    assert not synproxy(rep)
    assert not [a for a in rep.actions if isinstance(a, SignatureAction) and a.signature.dport is None]


def test_a_restarted_daemon_knows_what_is_on():
    r = run()
    r.eng.note_synproxy(443, expires_t=r.t + 290.0, t=float(r.t), ttl=300.0)
    rep = r.step(legit(r.t + 1) + SYN_LEGIT + spoofed())
    assert rep.raised and not synproxy(rep)  # in force and young: not repeated
    assert rep.findings[0]["installed"] is True
