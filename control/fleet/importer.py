"""Import: what to change in the lists so they hold exactly the accepted routes. Pure.

`Importer.plan(routes, ours, held_blocks, held_sigs, allowed)` takes the
routes the speaker learnt from its peers and what the lists hold now, and
returns an ImportPlan: the blocks and signature rules to add (each with its
origin, `bgp:<peer>`), the `bgp:*` entries to delete (their route was
withdrawn, or is no longer accepted), and the routes refused with a reason.

Only entries whose source is `bgp:*` are ever deleted or replaced: a block or
rule this host made itself (auto, manual) for the same match stays as it is,
and the route is not taken ("held locally"). A route whose source overlaps the
allowlist is refused. Each refusal is new to the log once (`fresh`), so a
route refused at every look is reported once, not every look.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Optional, Sequence

from seawall.control.addr import Prefix
from seawall.control.fleet.translate import Refused, plan_import

_NO_CAP = 1 << 62
BGP = "bgp:"  # the prefix of an imported entry's source: bgp:<peer>


def origin(peer: str) -> str:
    """An imported entry's source, as `block list` and `sig list` show it."""
    return f"{BGP}{peer or '?'}"


def imported(source: str) -> bool:
    return source.startswith(BGP)


@dataclass(frozen=True)
class ImportPlan:
    add_blocks: tuple  # ((Prefix, source), ...)
    del_blocks: tuple  # (Prefix, ...)
    add_sigs: tuple  # ((Signature, source), ...)
    del_sigs: tuple  # (rule key, ...)
    accepted: int  # routes taken (held already or added now)
    refused: tuple  # (Refused, ...): every route refused at this look
    fresh: tuple  # (Refused, ...): those not refused for the same reason at the previous look

    @property
    def changes(self) -> int:
        return len(self.add_blocks) + len(self.del_blocks) + len(self.add_sigs) + len(self.del_sigs)


class Importer:
    """Judges the speaker's learnt routes against the lists, remembering
    which refusals it has reported. `cap`: imported rules at most
    ([fleet] max_import)."""

    def __init__(self, cap: int):
        self.cap = cap
        self._said: set = set()  # (nlri, peer, reason) reported and still refused

    def plan(self, routes: Iterable, ours: Sequence[Prefix], held_blocks: dict, held_sigs: dict,
             allowed: Optional[Callable[[Prefix], bool]] = None) -> ImportPlan:
        """`held_blocks`: {Prefix: source} of the live blocks; `held_sigs`:
        {rule key: (Signature, source)} of the live rules; `allowed(prefix)`:
        True when the allowlist overlaps it."""
        verdicts = plan_import(routes, ours, _NO_CAP)  # the cap counts only what this host would take
        refused = list(verdicts.refused)
        add_b, add_s, want_b, want_s = [], [], set(), set()
        for v in verdicts.accepted:
            src = origin(v.route.peer)
            if len(want_b) + len(want_s) >= self.cap and _takes(v, held_blocks, held_sigs, allowed):
                refused.append(Refused(v.route, f"over the cap of {self.cap} imported rules"))
                continue
            if v.block is not None:
                have = held_blocks.get(v.block)
                if have is not None and not imported(have):
                    refused.append(Refused(v.route, f"block {v.block} is held locally ({have})"))
                    continue
                if allowed is not None and allowed(v.block):
                    refused.append(Refused(v.route, f"source {v.block} is allowlisted"))
                    continue
                want_b.add(v.block)
                if have is None:
                    add_b.append((v.block, src))
                continue
            sig = v.signature
            have = held_sigs.get(sig.key)
            if have is not None and not imported(have[1]):
                refused.append(Refused(v.route, f"rule {sig.key} is held locally ({have[1]})"))
                continue
            want_s.add(sig.key)
            if have is None or have[0] != sig:
                add_s.append((sig, src))
        del_b = tuple(p for p, s in held_blocks.items() if imported(s) and p not in want_b)
        del_s = tuple(k for k, (_, s) in held_sigs.items() if imported(s) and k not in want_s)
        now = {(r.route.nlri, r.route.peer, r.reason) for r in refused}
        fresh = tuple(r for r in refused if (r.route.nlri, r.route.peer, r.reason) not in self._said)
        self._said = now
        return ImportPlan(tuple(add_b), del_b, tuple(add_s), del_s, len(want_b) + len(want_s), tuple(refused), fresh)


def _takes(v, held_blocks: dict, held_sigs: dict, allowed) -> bool:
    """Whether an accepted route would be taken (not refused as held
    locally or allowlisted): only those count towards the cap."""
    if v.block is not None:
        have = held_blocks.get(v.block)
        return (have is None or imported(have)) and not (allowed is not None and allowed(v.block))
    have = held_sigs.get(v.signature.key)
    return have is None or imported(have[1])
