"""Export: keep the speaker's routes equal to what the lists hold.

`Exporter.update(blocks, signatures)` is what `seawall fleet sync` calls
once, and what the daemon calls after every cycle that changed the lists.
Its first call (and the first after a speaker failure) reads the speaker's
routes and syncs against them, so a restarted seawall neither drops nor
duplicates an announcement; later calls announce and withdraw only what
changed since the previous one, with no read, and no call at all when
nothing changed. A decision that gives no route is logged once, not every cycle;
so is a speaker failure, under try_update (the daemon's call).
"""

from __future__ import annotations

import logging
from typing import Iterable, Optional

from seawall.control.addr import Prefix
from seawall.control.errors import SeawallError
from seawall.control.fleet.rtbh import BLACKHOLE, blackhole_routes, parse_community
from seawall.control.fleet.translate import export_routes

log = logging.getLogger("seawall.fleet")


class Exporter:
    """`speaker`: a speaker.GoBGP (or anything with its announce, withdraw,
    local_routes and local_blackholes). `protect`: the destinations of
    every FlowSpec route. `rtbh`: also announce each blocked prefix as a
    blackhole with `community` (rtbh.py). Off, no unicast route is read or
    touched: blackholes left from a run with it on stay until a run with it
    on withdraws them (a speaker FastNetMon shares is never disturbed)."""

    def __init__(self, speaker, protect: Iterable[Prefix], export_blocks: bool = True,
                 export_signatures: bool = True, rtbh: bool = False, community: str = BLACKHOLE):
        self.speaker = speaker
        self.protect = list(protect)
        self.export_blocks, self.export_signatures = export_blocks, export_signatures
        self.rtbh, self.community = rtbh, parse_community(community)
        self.held: Optional[dict] = None  # {nlri: FlowRoute or Blackhole} the speaker holds for us; None: not known
        self._said: set = set()  # skip reasons and errors already logged

    def plan(self, blocks: Iterable[Prefix], signatures: Iterable) -> tuple:
        """(announce, withdraw, wanted): the routes an update would
        announce and withdraw, and every route the decisions give ({nlri:
        FlowRoute}). Reads the speaker's routes when they are not known."""
        blocks = list(blocks)
        export = export_routes(blocks, signatures, self.protect, self.export_blocks, self.export_signatures)
        want, skips = dict(export.routes), list(export.skipped)
        if self.rtbh:
            holes, more = blackhole_routes(blocks, self.protect, self.community)
            want.update(holes)
            skips += more
        skipped = {f"not announced: {what}: {why}" for what, why in skips}
        for msg in sorted(skipped - self._said):
            log.warning("%s", msg)
        self._said = skipped | {s for s in self._said if s.startswith("the speaker failed")}
        if self.held is None:
            held = self.speaker.local_routes() + (self.speaker.local_blackholes(self.community) if self.rtbh else [])
            self.held = {r.nlri: r for r in held}
        withdraw = [r for k, r in self.held.items() if k not in want]
        announce = [r for k, r in want.items() if k not in self.held or self.held[k].action != r.action]
        return announce, withdraw, want

    def update(self, blocks: Iterable[Prefix], signatures: Iterable) -> tuple:
        """Announce and withdraw until the speaker holds exactly the routes
        of `blocks` and `signatures`. Returns (announced, withdrawn), the
        routes each. A speaker failure is raised (SeawallError), and the
        next call starts again from the speaker's own routes."""
        try:
            announce, withdraw, _ = self.plan(blocks, signatures)
            for r in withdraw:
                self.speaker.withdraw(r)
                del self.held[r.nlri]
            for r in announce:
                self.speaker.announce(r)
                self.held[r.nlri] = r
        except SeawallError:
            self.held = None
            raise
        return announce, withdraw

    def try_update(self, blocks: Iterable[Prefix], signatures: Iterable) -> bool:
        """update() for the daemon's cycle: a speaker failure is logged
        (once while it lasts) instead of raised. True when in step."""
        try:
            self.update(blocks, signatures)
        except SeawallError as e:
            self._once(f"the speaker failed: {e}", logging.ERROR)
            return False
        self._said = {s for s in self._said if not s.startswith("the speaker failed")}
        return True

    def _once(self, msg: str, level: int = logging.WARNING) -> None:
        if msg not in self._said:
            self._said.add(msg)
            log.log(level, "%s", msg)
