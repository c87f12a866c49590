"""Dates as the parsers find them, made aware UTC datetimes.

`parse_date` reads the free-text dates of pages and text captures (and of JSON-LD);
`is_date` tells whether a line is written as such a date at all; `parse_rfc3339` reads JSON
Feed dates; `from_struct_time` turns feedparser's parsed dates into datetimes.
"""

from __future__ import annotations

import calendar
import re
import time
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

__all__ = ["as_utc", "from_struct_time", "is_date", "parse_date", "parse_rfc3339"]

_ISO = re.compile(
    r"^\d{4}-\d{2}-\d{2}"  # date
    r"(?:[T ]\d{2}:\d{2}(?::\d{2}(?:[.,]\d{1,9})?)?)?"  # optional time
    r"\s*(?:Z|[+-]\d{2}(?::?\d{2})?)?$"  # optional zone
)
_YMD = re.compile(
    r"^(\d{4})\s*(?:[-/.]|年)\s*(\d{1,2})\s*(?:[-/.]|月)\s*(\d{1,2})\s*日?"
    r"(?:[ T]+(\d{1,2}):(\d{2})(?::(\d{2}))?)?$"
)
_WEEKDAY = r"(?:(?:mon|tue|wed|thu|fri|sat|sun)[a-z]*\.?,?\s+)?"
_TIME = r"(?:,?\s+(?:at\s+)?(\d{1,2}):(\d{2})(?::(\d{2}))?\s*([ap]\.?m\.?)?)?"
_MONTH_FIRST = re.compile(
    rf"^{_WEEKDAY}([a-z]{{3,9}})\.?\s+(\d{{1,2}})(?:st|nd|rd|th)?,?\s+(\d{{4}}){_TIME}$",
    re.IGNORECASE,
)
_DAY_FIRST = re.compile(
    rf"^{_WEEKDAY}(\d{{1,2}})(?:st|nd|rd|th)?\s+([a-z]{{3,9}})\.?,?\s+(\d{{4}}){_TIME}$",
    re.IGNORECASE,
)
_CLOCK = re.compile(r"\d{1,2}:\d{2}")
_MONTHS = (
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
)
_MAX_CHARS = 80  # longer text is a sentence, not a date
_MIN_YEAR, _MAX_YEAR = 1970, 2200


class _Impossible(ValueError):
    """Written as a date, but no such date exists (2026-02-30), or out of range."""


def parse_date(value: str | None) -> datetime | None:
    """Parse a date as pages write it; aware UTC, naive read as UTC, None when unreadable.

    Accepts ISO 8601 (`2026-01-11`, `2026-01-11T08:30:00+08:00`, `...Z`), `2026/01/11`,
    `2026.1.11`, `2026年1月11日` (these three optionally with a time), `Jan 11, 2026`,
    `11 January 2026` (optionally with a weekday and a time) and RFC 822
    (`Sun, 11 Jan 2026 08:30:00 GMT`). Years outside 1970-2200 are refused.
    """
    try:
        return _read(value)
    except _Impossible:
        return None


def is_date(value: str | None) -> bool:
    """Whether `value` is written in one of parse_date's shapes, even as an impossible date."""
    try:
        return _read(value) is not None
    except _Impossible:
        return True


def _read(value: str | None) -> datetime | None:
    """The date; None when `value` has none of the shapes; _Impossible when it has one but
    names no date in range."""
    if not value:
        return None
    text = " ".join(value.split())
    if not text or len(text) > _MAX_CHARS:
        return None
    shaped = False
    for reader in (_read_iso, _read_ymd, _read_month_name, _read_rfc822):
        try:
            result = reader(text)
        except (ValueError, OverflowError):
            shaped = True  # this reader's shape, no such date: another reader may know better
            continue
        if result is not None:
            if not _MIN_YEAR <= result.year <= _MAX_YEAR:
                raise _Impossible(text)
            return as_utc(result)
    if shaped:
        raise _Impossible(text)
    return None


def as_utc(moment: datetime) -> datetime:
    """An aware UTC datetime; a naive one is read as UTC, never as local time."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def _read_iso(text: str) -> datetime | None:
    text = text.upper()
    if not _ISO.match(text):
        return None
    text = re.sub(r"\s+(?=[Z+-])", "", text).replace(",", ".")
    return datetime.fromisoformat(text)


def _read_ymd(text: str) -> datetime | None:
    match = _YMD.match(text)
    if not match:
        return None
    year, month, day, hour, minute, second = (int(g) if g else 0 for g in match.groups())
    return datetime(year, month, day, hour, minute, second)


def _read_month_name(text: str) -> datetime | None:
    match = _MONTH_FIRST.match(text)
    if match:
        month_name, day, year, *clock = match.groups()
    else:
        match = _DAY_FIRST.match(text)
        if not match:
            return None
        day, month_name, year, *clock = match.groups()
    month = _month_number(month_name)
    if month is None:
        return None
    hour, minute, second = _clock(*clock)
    return datetime(int(year), month, int(day), hour, minute, second)


def _month_number(name: str) -> int | None:
    name = name.lower()
    for number, full in enumerate(_MONTHS, start=1):
        if full.startswith(name):
            return number
    return None


def _clock(
    hour: str | None, minute: str | None, second: str | None, ampm: str | None
) -> tuple[int, int, int]:
    if hour is None:
        return 0, 0, 0
    h = int(hour)
    if ampm:
        if h > 12:
            raise ValueError("12-hour clock out of range")
        pm = ampm.lower().startswith("p")
        h = (h % 12) + (12 if pm else 0)
    return h, int(minute or 0), int(second or 0)


def _read_rfc822(text: str) -> datetime | None:
    if not _CLOCK.search(text):
        return None  # parsedate without a clock guesses too much
    try:
        return parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None  # email.utils cannot tell "not a date" from "no such date"


def parse_rfc3339(value: object) -> datetime | None:
    """A JSON Feed date (RFC 3339); RFC 822, which some generators write there, too."""
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip()
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        try:
            moment = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
    return as_utc(moment)


def from_struct_time(value: object) -> datetime | None:
    """feedparser's *_parsed values are UTC struct_times."""
    if not isinstance(value, time.struct_time):
        return None
    try:
        return datetime.fromtimestamp(calendar.timegm(value), tz=UTC)
    except (OverflowError, ValueError, OSError):
        return None
