"""control/duration.py: operator durations. Pure."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from seawall.control.duration import MAX_SECONDS, format_duration, parse_duration
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
])
def test_parse(text, seconds):
    assert parse_duration(text) == seconds


def test_max_is_a_year():
    assert MAX_SECONDS == 366 * 86400


@pytest.mark.parametrize("text", ["90", "0", "3600", " 10 "])
def test_bare_numbers_are_refused(text):
    with pytest.raises(UsageError, match="not a duration"):
        parse_duration(text)


@pytest.mark.parametrize("text", ["0s", "0m", "0h0m", "0d"])
def test_zero_is_refused(text):
    with pytest.raises(UsageError, match="longer than zero"):
        parse_duration(text)


@pytest.mark.parametrize("text", [
    "-5m", "-1h", "+5m", "", "  ", "m", "5", "5x", "5 m", "1.5h", "1e3s", "ten minutes",
    "5m-", "h1", "1y", "5mm", "0x10s", "1h,30m",
])
def test_garbage_is_refused(text):
    with pytest.raises(UsageError, match="not a duration") as e:
        parse_duration(text)
    assert repr(text) in str(e.value)
    assert "90s" in str(e.value)  # the message shows examples


@pytest.mark.parametrize("text", ["367d", "53w", "8785h", "366d1s", "99999999999999999999d"])
def test_longer_than_a_year_is_refused(text):
    with pytest.raises(UsageError, match="longer than a year"):
        parse_duration(text)


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


parts = st.lists(st.tuples(st.integers(0, 400), st.sampled_from("smhdw")), min_size=1, max_size=5)
UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


@given(parts)
def test_parse_is_the_sum_of_its_parts(ps):
    text = "".join(f"{n}{u}" for n, u in ps)
    total = sum(n * UNIT[u] for n, u in ps)
    if 0 < total <= MAX_SECONDS:
        assert parse_duration(text) == total
    else:
        with pytest.raises(UsageError):
            parse_duration(text)
