"""control/duration.py: operator durations. Pure."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from seawall.control.duration import MAX_SECONDS, format_duration, parse_duration, say_duration
from seawall.control.errors import UsageError


@pytest.mark.parametrize("text, seconds", [
    ("90s", 90),
    ("1s", 1),
    ("10m", 600),
    ("4h", 4 * 3600),
    ("1d", 86400),
    ("1w", 7 * 86400),
    ("1h30m", 5400),
    ("1d2h3m4s", 86400 + 7200 + 180 + 4),
    ("2w1d", 15 * 86400),
    ("0h5m", 300),  # a zero part is fine while the whole is positive
    ("90M", 90 * 60),
    ("1H30M", 5400),
    ("  4h\t", 4 * 3600),
    ("\n10m ", 600),
    ("366d", MAX_SECONDS),
    ("90", 90),  # a plain number is seconds, as in systemd, fail2ban and the TOML config
    (" 3600 ", 3600),
    ("2.0", 2),
    ("1000ms", 1),  # milliseconds that make whole seconds
    ("1m500ms", None),  # a fraction: refused below
])
def test_parse(text, seconds):
    if seconds is None:
        with pytest.raises(UsageError, match="whole seconds"):
            parse_duration(text)
    else:
        assert parse_duration(text) == seconds
        assert type(parse_duration(text)) is int


@pytest.mark.parametrize("text, seconds", [
    ("250ms", 0.25), ("100ms", 0.1), ("1s500ms", 1.5), ("0.5", 0.5), ("1.25", 1.25), ("2", 2.0),
    ("10m", 600.0), ("1h30m", 5400.0),
])
def test_subsecond_where_asked(text, seconds):
    """Intervals: the same grammar, fractions of a second allowed."""
    assert parse_duration(text, subsecond=True) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["250ms", "0.5", "1.5", "999ms", "1s1ms"])
def test_fractions_are_refused_for_whole_seconds(text):
    with pytest.raises(UsageError, match="whole seconds") as e:
        parse_duration(text)
    assert repr(text) in str(e.value)


def test_max_is_a_year():
    assert MAX_SECONDS == 366 * 86400


@pytest.mark.parametrize("text", ["0s", "0m", "0h0m", "0d", "0", "0.0", "0ms"])
@pytest.mark.parametrize("subsecond", [False, True])
def test_zero_is_refused(text, subsecond):
    with pytest.raises(UsageError, match="longer than zero"):
        parse_duration(text, subsecond)


@pytest.mark.parametrize("text", [
    "-5m", "-1h", "+5m", "", "  ", "m", "-5", "+5", ".5", "5.", "5x", "1.5s", "0.5ms", "5msm", "5 m", "1.5h", "1e3s", "ten minutes",
    "5m-", "h1", "1y", "5mm", "0x10s", "1h,30m",
])
def test_garbage_is_refused(text):
    with pytest.raises(UsageError, match="not a duration") as e:
        parse_duration(text)
    assert repr(text) in str(e.value)
    assert "90s" in str(e.value)  # the message shows examples


@pytest.mark.parametrize("text", ["367d", "53w", "8785h", "366d1s", "99999999999999999999d", "31622401"])
@pytest.mark.parametrize("subsecond", [False, True])
def test_longer_than_a_year_is_refused(text, subsecond):
    with pytest.raises(UsageError, match="longer than a year"):
        parse_duration(text, subsecond)


@pytest.mark.parametrize("seconds, text", [
    (1, "1s"), (59, "59s"), (60, "1m"), (90, "1m30s"), (3600, "1h"), (5400, "1h30m"),
    (86400, "1d"), (90061, "1d1h1m1s"), (7 * 86400, "7d"), (MAX_SECONDS, "366d"),
    (0, "0s"), (-5, "0s"), (0.4, "0s"), (89.6, "1m30s"), (3599.5, "1h"),
])
def test_format(seconds, text):
    assert format_duration(seconds) == text


@given(st.integers(1, MAX_SECONDS))
def test_round_trip(seconds):
    text = format_duration(seconds)
    assert parse_duration(text) == seconds
    assert parse_duration(text.upper()) == seconds


@pytest.mark.parametrize("seconds, text", [(0.1, "100ms"), (0.25, "250ms"), (1, "1s"), (90, "1m30s")])
def test_say(seconds, text):
    assert say_duration(seconds) == text
    assert parse_duration(text, subsecond=True) == pytest.approx(seconds)


parts = st.lists(st.tuples(st.integers(0, 400), st.sampled_from(["s", "m", "h", "d", "w", "ms"])),
                 min_size=1, max_size=5)
UNIT = {"s": 1000, "m": 60000, "h": 3600000, "d": 86400000, "w": 604800000, "ms": 1}


@given(parts)
def test_parse_is_the_sum_of_its_parts(ps):
    text = "".join(f"{n}{u}" for n, u in ps)
    total_ms = sum(n * UNIT[u] for n, u in ps)
    if 0 < total_ms <= MAX_SECONDS * 1000:
        assert parse_duration(text, subsecond=True) == pytest.approx(total_ms / 1000)
        if total_ms % 1000 == 0:
            assert parse_duration(text) == total_ms // 1000
        else:
            with pytest.raises(UsageError, match="whole seconds"):
                parse_duration(text)
    else:
        with pytest.raises(UsageError):
            parse_duration(text)


@given(st.integers(1, MAX_SECONDS))
def test_plain_seconds_equal_the_s_form(seconds):
    assert parse_duration(str(seconds)) == parse_duration(f"{seconds}s") == seconds


def test_zero_only_where_a_wait_may_be_none():
    assert parse_duration("0", subsecond=True, zero=True) == 0.0
    assert parse_duration("0s", zero=True) == 0
    with pytest.raises(UsageError, match="longer than zero"):
        parse_duration("0s")
