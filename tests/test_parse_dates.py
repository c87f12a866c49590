"""The one date parser of the page and text parsers (aggregator/parse/dates.py)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta, timezone

import pytest

from aggregator.parse.dates import (
    from_struct_time,
    is_date,
    parse_date,
    parse_rfc3339,
)
from aggregator.parse.text import classify_line


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-01-11", datetime(2026, 1, 11, tzinfo=UTC)),
        ("2026-01-11T08:30", datetime(2026, 1, 11, 8, 30, tzinfo=UTC)),
        ("2026-01-11T08:30:15Z", datetime(2026, 1, 11, 8, 30, 15, tzinfo=UTC)),
        ("2026-01-11T08:30:00+08:00", datetime(2026, 1, 11, 0, 30, tzinfo=UTC)),
        ("2026-01-11 08:30:00 -0500", datetime(2026, 1, 11, 13, 30, tzinfo=UTC)),
        ("2026-01-11T08:30:00.123Z", datetime(2026, 1, 11, 8, 30, 0, 123000, tzinfo=UTC)),
        ("2026/01/11", datetime(2026, 1, 11, tzinfo=UTC)),
        ("2026/1/9 7:05", datetime(2026, 1, 9, 7, 5, tzinfo=UTC)),
        ("2026年1月11日", datetime(2026, 1, 11, tzinfo=UTC)),
        ("Jan 11, 2026", datetime(2026, 1, 11, tzinfo=UTC)),
        ("January 11th, 2026", datetime(2026, 1, 11, tzinfo=UTC)),
        ("Sept. 3, 2025", datetime(2025, 9, 3, tzinfo=UTC)),
        ("11 January 2026", datetime(2026, 1, 11, tzinfo=UTC)),
        ("Sunday, 11 Jan 2026", datetime(2026, 1, 11, tzinfo=UTC)),
        ("Jan 11, 2026 3:05 PM", datetime(2026, 1, 11, 15, 5, tzinfo=UTC)),
        ("  Jan\n 11,   2026 ", datetime(2026, 1, 11, tzinfo=UTC)),
        ("Sun, 11 Jan 2026 08:30:00 GMT", datetime(2026, 1, 11, 8, 30, tzinfo=UTC)),
        ("Sun, 11 Jan 2026 08:30:00 +0100", datetime(2026, 1, 11, 7, 30, tzinfo=UTC)),
    ],
)
def test_parse_date_formats(text: str, expected: datetime) -> None:
    result = parse_date(text)
    assert result == expected
    assert result is not None and result.utcoffset() is not None


@pytest.mark.parametrize(
    "text",
    [
        None,
        "",
        "yesterday",
        "2026-13-01",
        "2026-02-30",
        "11 Foo 2026",
        "Jan 32, 2026",
        "1800-01-01",
        "12:30",
        "2026",
        "x" * 200,
    ],
)
def test_parse_date_rejects(text: str | None) -> None:
    assert parse_date(text) is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026.1.11", datetime(2026, 1, 11, tzinfo=UTC)),
        ("2026 年 1 月 11 日", datetime(2026, 1, 11, tzinfo=UTC)),
        ("2026年1月11日 08:30", datetime(2026, 1, 11, 8, 30, tzinfo=UTC)),
        ("2026-01-11T08:30:00,5+08", datetime(2026, 1, 11, 0, 30, 0, 500000, tzinfo=UTC)),
        ("2026-01-11t08:30z", datetime(2026, 1, 11, 8, 30, tzinfo=UTC)),
        ("Mon. Jan 12, 2026 at 9:05 a.m.", datetime(2026, 1, 12, 9, 5, tzinfo=UTC)),
        ("12 Jan 2026, 12:00 am", datetime(2026, 1, 12, 0, 0, tzinfo=UTC)),
        ("3rd March 2026", datetime(2026, 3, 3, tzinfo=UTC)),
        ("1970-01-01", datetime(1970, 1, 1, tzinfo=UTC)),
        ("2200-12-31", datetime(2200, 12, 31, tzinfo=UTC)),
    ],
)
def test_more_accepted_shapes(text: str, expected: datetime) -> None:
    assert parse_date(text) == expected


@pytest.mark.parametrize("text", ["Feb 30, 2026", "2201-01-01", "1969-12-31"])
def test_more_rejected(text: str) -> None:
    assert parse_date(text) is None


@pytest.mark.parametrize(
    ("text", "shaped"),
    [
        ("2026-01-11", True),
        ("2026/1/9 7:05", True),
        ("Jan 11, 2026", True),
        ("Sun, 11 Jan 2026 08:30:00 GMT", True),
        ("2026-02-30", True),  # the shape of a date, though no such day exists
        ("1800-01-01", True),
        ("Jan 32, 2026", True),
        ("11 Foo 2026", False),
        ("2026", False),
        ("12:30", False),
        ("Python", False),
        ("", False),
        (None, False),
    ],
)
def test_is_date(text: str | None, shaped: bool) -> None:
    assert is_date(text) is shaped


@pytest.mark.parametrize(
    "line",
    ["2026-01-11", "2026年1月11日", "Jan 11, 2026", "11 January 2026", "2026-01-11 08:30"],
)
def test_the_text_parser_reads_every_shape_as_a_date_line(line: str) -> None:
    assert classify_line(line, frozenset()) == "date"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-01-11T08:30:00+08:00", datetime(2026, 1, 11, 0, 30, tzinfo=UTC)),
        ("2026-01-11T08:30:00Z", datetime(2026, 1, 11, 8, 30, tzinfo=UTC)),
        ("2026-01-11T08:30:00", datetime(2026, 1, 11, 8, 30, tzinfo=UTC)),  # naive: UTC
        ("Sun, 11 Jan 2026 08:30:00 +0100", datetime(2026, 1, 11, 7, 30, tzinfo=UTC)),
        ("next week", None),
        ("", None),
        (20260111, None),
        (None, None),
    ],
)
def test_parse_rfc3339(value: object, expected: datetime | None) -> None:
    result = parse_rfc3339(value)
    assert result == expected
    assert result is None or result.tzinfo == UTC


def test_from_struct_time() -> None:
    moment = datetime(2026, 1, 11, 8, 30, tzinfo=UTC)
    assert from_struct_time(moment.utctimetuple()) == moment
    assert from_struct_time(time.gmtime(0)) == datetime(1970, 1, 1, tzinfo=UTC)
    assert from_struct_time((2026, 1, 11, 8, 30, 0, 6, 11, 0)) is None  # not a struct_time
    assert from_struct_time(None) is None


def test_aware_results_are_utc_whatever_the_offset() -> None:
    result = parse_date("2026-01-11T08:30:00-05:30")
    assert result == datetime(2026, 1, 11, 8, 30, tzinfo=timezone(timedelta(hours=-5, minutes=-30)))
    assert result is not None and result.tzinfo == UTC
