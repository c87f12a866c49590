"""When a source is next due: its interval with jitter, never earlier than the server asks.

Pure functions of the response headers, the feed's own hint and the clock:

- `retry_after`: a 429/503 `Retry-After`, in seconds or as an HTTP date; garbage is ignored and
  the wait is clamped to at most 7 days.
- `freshness`: `Cache-Control: max-age` (no-cache/no-store give none), else `Expires` against
  the response's `Date`; clamped to at most 7 days.
- `next_due_ok` / `next_due_error`: the next fetch after a success (interval, jittered, but not
  before any hint) or a failure (exponential backoff with jitter up to a cap, not before
  Retry-After).
"""

from __future__ import annotations

import random
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime

__all__ = ["MAX_BACKOFF", "MAX_HINT", "freshness", "next_due_error", "next_due_ok", "retry_after"]

MAX_HINT = timedelta(days=7)  # no server hint delays a source longer than this
MAX_BACKOFF = timedelta(days=1)  # errors back off up to this (or the interval, if longer)
_MAX_AGE = re.compile(r"(?:^|[,\s])max-age\s*=\s*\"?(\d{1,12})\"?", re.IGNORECASE)
_NO_CACHE = re.compile(r"(?:^|[,\s])(?:no-cache|no-store)(?:$|[,\s=])", re.IGNORECASE)


def _http_date(value: str) -> datetime | None:
    try:
        moment = parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def retry_after(value: str | None, now: datetime) -> datetime | None:
    """The time a `Retry-After` value asks us to wait until; None when absent or garbage."""
    if not value:
        return None
    text = value.strip()
    if text.isdigit():
        return now + min(timedelta(seconds=int(text[:12])), MAX_HINT)
    moment = _http_date(text)
    if moment is None or moment <= now:
        return None
    return min(moment, now + MAX_HINT)


def freshness(headers: Mapping[str, str], now: datetime) -> timedelta | None:
    """How long the response says it stays fresh (Cache-Control max-age, else Expires)."""
    cache_control = headers.get("cache-control", "")
    if _NO_CACHE.search(cache_control):
        return None
    match = _MAX_AGE.search(cache_control)
    if match:
        return min(timedelta(seconds=int(match.group(1))), MAX_HINT)
    expires = headers.get("expires")
    if not expires:
        return None
    moment = _http_date(expires)
    if moment is None:
        return None  # "0", "-1" and other garbage mean "already expired"
    date = _http_date(headers.get("date", "")) or now
    age = moment - date
    if age <= timedelta(0):
        return None
    return min(age, MAX_HINT)


def jitter(delay: timedelta) -> timedelta:
    """Spread fetches so that sources added together do not stay in lockstep."""
    return delay * random.uniform(0.9, 1.0)


def next_due_ok(
    now: datetime,
    interval: timedelta,
    *,
    headers: Mapping[str, str] | None = None,
    ttl_seconds: int | None = None,
) -> datetime:
    """After a success: the interval with jitter, never before the server's or feed's hint."""
    due = now + jitter(interval)
    hints = [freshness(headers or {}, now)]
    if ttl_seconds is not None and ttl_seconds > 0:
        hints.append(min(timedelta(seconds=ttl_seconds), MAX_HINT))
    floor = max((h for h in hints if h is not None), default=None)
    return max(due, now + floor) if floor is not None else due


def next_due_error(
    now: datetime, interval: timedelta, streak: int, retry_after_value: str | None = None
) -> datetime:
    """After the `streak`-th failure in a row: exponential backoff, not before Retry-After."""
    delay = min(interval * (2 ** min(max(streak, 1) - 1, 16)), max(MAX_BACKOFF, interval))
    due = now + jitter(delay)
    asked = retry_after(retry_after_value, now)
    return max(due, asked) if asked is not None else due
