"""How the daemon reads one interface's counters each cycle.

A source table of the default size (65,536 + 16,384 entries) is read whole
every cycle: one batch read, under 40 ms. A table built for a million
sources would take half a second so (BENCHMARKS.md), longer than a cycle.
Then the reader asks the program for hot marks (config.hot_pkts): a source
that sends that many packets on one CPU in one epoch is counted again in
the hot table from then on, and the epoch is the daemon's cycle. Each
cycle reads the hot table whole (its size is bounded) and one slice of the
big table; the slice yields the other sources active since the reader was
last there (their last epoch, kept by the program), which the engine sees
as one packet each (detect/observe.py). Until the slices have gone round
the table once, the cycle says its sources are not complete, and no
prefix is blocked whole.

The hot threshold is set from the smallest rate the engine acts on (a past
offender returning at `returning_min_pps`): such a source has at least its
share on one CPU, so it is hot within its first cycle.
"""

from __future__ import annotations

import math

from seawall.control.datapath.counters import IfaceCounters
from seawall.control.detect.observe import Snapshot, seen_rows

#: tables up to this many sources are read whole each cycle
FULL_READ_MAX = 131072
#: entries read of a large table per cycle (about 15 ms)
SLICE = 32768


def hot_threshold(min_pps: float, interval: float, ncpu: int) -> int:
    """Packets on one CPU in one cycle that make a source hot: a source at
    min_pps spread evenly over every CPU still reaches it."""
    return max(1, int(math.floor(min_pps * interval / max(1, ncpu))))


class SourceReader:
    """One interface's counters, read as a cycle needs them."""

    def __init__(self, counters: IfaceCounters, interval: float, min_pps: float):
        self.counters = counters
        self.partial = counters.hot_marks and counters.source_capacity() > FULL_READ_MAX
        ncpu = counters.sources[4].ncpu
        self.hot_pkts = hot_threshold(min_pps, interval, ncpu) if self.partial else 0
        self.epoch = 0
        self._cursor = None
        self._family = 4
        self._laps = 0  # full turns since the hot marks began
        # epochs at which the current and the previous lap began: every
        # part of the table was last read after the previous lap's start
        self._lap_start = self._prev_lap_start = 1
        if self.partial:
            self._next_epoch()
        else:
            counters.write_epoch(0, 0)  # no hot marks (a large build's reader may have left them on)

    def _next_epoch(self) -> None:
        self.epoch += 1
        self.counters.write_epoch(self.epoch, self.hot_pkts)

    def read(self) -> Snapshot:
        c = self.counters
        features = c.read_features()
        if not self.partial:
            return Snapshot(features, c.read_sources())
        hot = c.read_hot()
        self._next_epoch()
        swept, last, self._cursor = c.read_slice(self._family, self._cursor, SLICE)
        # active since this part was last read (during the previous lap),
        # or since the marks began: a source from before them has epoch 0
        seen = seen_rows(swept, last, self._prev_lap_start, hot)
        if self._cursor is None:  # this family's end: the other one next
            if self._family == 6:
                self._laps += 1
                self._prev_lap_start, self._lap_start = self._lap_start, self.epoch
            self._family = 6 if self._family == 4 else 4
        return Snapshot(features, hot, seen, complete=self._laps > 0)

    def close(self) -> None:
        """Hot marks off: the program stops keeping epochs when nobody reads them."""
        if self.partial:
            try:
                self.counters.write_epoch(self.epoch, 0)
            except OSError:
                pass
