"""control/tools/replay.Progress: the replay's one terminal line, on a
fake clock. (tests/bpf/test_replay.py runs the command on a real pty.)"""

from __future__ import annotations

from seawall.control.tools.replay import Progress


class Clock:
    def __init__(self):
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def make(hz=4.0):
    out, clock = [], Clock()
    return Progress(out.append, "replay", clock, hz), out, clock


def test_first_call_shows_at_once_then_at_most_hz_a_second():
    p, out, clock = make()
    for i in range(1000):  # 10 s of calls every 10 ms
        p(i * 0.01, i * 10, 10_000)
        clock.t += 0.01
    assert len(out) == 40  # 4 a second over 10 s
    assert out[0] == "\rreplay: 0 of 10,000 packets (0.0%)\x1b[K"  # no rate before any time has passed
    assert all(s.startswith("\rreplay: ") and s.endswith("\x1b[K") and "\n" not in s for s in out)


def test_share_and_rate():
    p, out, clock = make()
    p(0.0, 0, 2_000_000)
    clock.t += 2.0
    p(1.0, 100_000, 2_000_000)
    assert out[-1] == "\rreplay: 100,000 of 2,000,000 packets (5.0%), 50,000 packets/s\x1b[K"


def test_warm_up_and_reading():
    p, out, clock = make()
    p.reading(65536)
    clock.t += 1
    p(-12.4, 0, 10)
    assert out == ["\rreplay: reading, 65,536 packets\x1b[K", "\rreplay: warm-up, 12 s before the capture\x1b[K"]


def test_done_clears_only_a_line_it_wrote():
    p, out, _ = make()
    p.done()
    assert out == []
    p(0.0, 1, 1)
    p.done()
    assert out[-1] == "\r\x1b[K"
