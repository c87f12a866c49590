"""The source-state policy: when a source is due, and what a fetch leaves in its state.

Pure functions over `SourceState`; the clock is passed in, and only `jitter` draws a random
number. The refresh, the scheduler and the command line's tables all ask here.

- `current`: the state that applies to a source as configured. A configured URL that changed
  starts afresh: validators, moves and "gone" are forgotten.
- `is_due`, `next_due`, `due_sources`, `is_gone`: whether and when a source is fetched. A source
  that answered 410 Gone is never due again until its configured URL changes.
- `after_success`, `after_failure`: the state a fetch leaves behind. A success stores the
  validators of a 200, counts permanent redirects (`moved`: after REDIRECTS_BEFORE_MOVE in a row
  to one place the source lives there) and is due again after its interval, not before the
  server's or the feed's hint. A failure backs off exponentially (`backoff`), not before the
  server's Retry-After.
- `is_healthy`: whether a source succeeded within HEALTHY_INTERVALS of its interval (what
  /healthz reports).
- `retry_after`, `freshness`: what a response's headers ask for; garbage is ignored and any
  wait is clamped to MAX_HINT.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable, Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime

from aggregator.errors import FetchError, SourceError
from aggregator.models import FetchResult, ParsedDocument, Source, SourceState
from aggregator.urls import safe_http_url

__all__ = [
    "HEALTHY_INTERVALS",
    "MAX_BACKOFF",
    "MAX_HINT",
    "REDIRECTS_BEFORE_MOVE",
    "after_failure",
    "after_success",
    "backoff",
    "body_unchanged",
    "current",
    "due_sources",
    "freshness",
    "is_due",
    "is_gone",
    "is_healthy",
    "jitter",
    "moved",
    "next_due",
    "retry_after",
]

MAX_HINT = timedelta(days=7)  # no server hint delays a source longer than this
MAX_BACKOFF = timedelta(days=1)  # errors back off up to this (or the interval, if longer)
REDIRECTS_BEFORE_MOVE = 3  # permanent redirects in a row to one URL before the source moves
HEALTHY_INTERVALS = 3  # a source that succeeded within this many of its intervals is healthy
_MAX_AGE = re.compile(r"(?:^|[,\s])max-age\s*=\s*\"?(\d{1,12})\"?", re.IGNORECASE)
_NO_CACHE = re.compile(r"(?:^|[,\s])(?:no-cache|no-store)(?:$|[,\s=])", re.IGNORECASE)


# --- due or not --------------------------------------------------------------------------------


def current(source: Source, state: SourceState | None) -> SourceState:
    """The state that applies to `source` as configured: a fresh one when nothing is
    remembered, or when what is remembered belongs to another configured URL."""
    if state is None or state.url != source.url:
        return SourceState(name=source.name, url=source.url)
    return state


def is_gone(source: Source, state: SourceState | None) -> bool:
    """Whether the source answered 410 Gone at its configured URL."""
    return current(source, state).last_status == "gone"


def next_due(source: Source, state: SourceState | None) -> datetime | None:
    """When `source` is next due by the clock; None when it is due now (never fetched, or its
    configured URL changed). A gone source is not due even then (`is_gone`)."""
    return current(source, state).next_due


def is_due(source: Source, state: SourceState | None, now: datetime) -> bool:
    """Whether `source` should be fetched at `now`, given what is remembered of it."""
    if not source.enabled or is_gone(source, state):
        return False
    when = next_due(source, state)
    return when is None or when <= now


def due_sources(
    sources: Iterable[Source], states: Mapping[str, SourceState], now: datetime
) -> list[Source]:
    """The sources due at `now`, in the order given."""
    return [s for s in sources if is_due(s, states.get(s.name), now)]


def body_unchanged(state: SourceState, body_hash: str) -> bool:
    """Whether a 200 with this body is "not modified": the same bytes as the last body read.

    Many servers ignore validators; their unchanged body is recognised by its hash.
    """
    return state.body_hash == body_hash and state.last_status in ("ok", "not-modified")


# --- after a fetch -----------------------------------------------------------------------------


def after_success(
    source: Source,
    state: SourceState,
    result: FetchResult,
    *,
    document: ParsedDocument | None,
    body_hash: str | None,
    now: datetime,
) -> SourceState:
    """The state after a fetch that answered: `result` is the first response, `document` what
    was read from it (None when not modified), `body_hash` the hash of a 200's body."""
    etag, last_modified = state.etag, state.last_modified
    if result.status == 200:
        etag = result.headers.get("etag")
        last_modified = result.headers.get("last-modified")
    redirect_url, redirect_streak, effective = moved(state, result)
    ttl = state.ttl_seconds if document is None else document.ttl_seconds
    page_entry = state.page_entry if document is None else auto_entry(document)
    feed_title, site_link = state.feed_title, state.site_link
    feed_id, feed_author, feed_updated = state.feed_id, state.feed_author, state.feed_updated
    if document is not None:
        feed_title = " ".join((document.title or "").split())[:200] or None
        site_link = safe_http_url(document.link)
        feed_id, feed_author = _short(document.feed_id), _short(document.author)
        feed_updated = document.updated
    return replace(
        state,
        url=source.url,
        etag=etag,
        last_modified=last_modified,
        body_hash=body_hash or state.body_hash,
        effective_url=effective,
        last_status="not-modified" if document is None else "ok",
        last_fetch=now,
        last_success=now,
        error=None,
        error_streak=0,
        next_due=_due_after_success(
            now,
            timedelta(seconds=source.interval_seconds),
            headers=result.headers,
            ttl_seconds=ttl,
        ),
        redirect_url=redirect_url,
        redirect_streak=redirect_streak,
        ttl_seconds=ttl,
        page_entry=page_entry,
        feed_title=feed_title,
        site_link=site_link,
        feed_id=feed_id,
        feed_author=feed_author,
        feed_updated=feed_updated,
        warnings=state.warnings if document is None else document.warnings,
    )


def auto_entry(document: ParsedDocument) -> str | None:
    """The entry selector auto mode found for the document's page (not one from the config)."""
    if document.auto_select is None or document.auto_method == "given":
        return None
    return document.auto_select.entry


def _short(text: str | None) -> str | None:
    """A value a source gave about itself, on one line and at most 500 characters."""
    return " ".join((text or "").split())[:500] or None


def after_failure(
    source: Source, state: SourceState, error: SourceError, now: datetime
) -> SourceState:
    """The state after a fetch or parse that failed with `error` (410 Gone: the source is gone)."""
    streak = state.error_streak + 1
    gone = isinstance(error, FetchError) and error.status == 410
    asked = error.retry_after if isinstance(error, FetchError) else None
    return replace(
        state,
        url=source.url,
        last_status="gone" if gone else "error",
        last_fetch=now,
        error=error.reason,
        error_streak=streak,
        next_due=_due_after_failure(now, timedelta(seconds=source.interval_seconds), streak, asked),
    )


def is_healthy(last_success: datetime | None, interval_seconds: int, now: datetime) -> bool:
    """Whether a source last fetched without error at `last_success` counts as healthy at
    `now`: it did, within HEALTHY_INTERVALS of its interval."""
    if last_success is None:
        return False
    return now - last_success <= HEALTHY_INTERVALS * timedelta(seconds=interval_seconds)


def moved(state: SourceState, result: FetchResult) -> tuple[str | None, int, str | None]:
    """Permanent redirects counted: (where the last fetch was sent for good, how many fetches
    in a row were sent there, where the source now lives). The source moves once
    REDIRECTS_BEFORE_MOVE fetches in a row were sent to one place."""
    target = result.permanent_redirect
    if target is None:
        return None, 0, state.effective_url
    streak = state.redirect_streak + 1 if target == state.redirect_url else 1
    effective = target if streak >= REDIRECTS_BEFORE_MOVE else state.effective_url
    return target, streak, effective


# --- due times ---------------------------------------------------------------------------------


def jitter(delay: timedelta) -> timedelta:
    """Spread fetches so that sources added together do not stay in lockstep."""
    return delay * random.uniform(0.9, 1.0)


def backoff(interval: timedelta, streak: int) -> timedelta:
    """The wait after the `streak`-th failure in a row, before jitter: the interval doubled
    per failure after the first, up to MAX_BACKOFF (or the interval, if longer)."""
    return min(interval * (1 << min(max(streak, 1) - 1, 16)), max(MAX_BACKOFF, interval))


def _due_after_success(
    now: datetime,
    interval: timedelta,
    *,
    headers: Mapping[str, str] | None = None,
    ttl_seconds: int | None = None,
) -> datetime:
    """The interval with jitter, never before the server's or the feed's hint."""
    due = now + jitter(interval)
    hints = [freshness(headers or {}, now)]
    if ttl_seconds is not None and ttl_seconds > 0:
        hints.append(min(timedelta(seconds=ttl_seconds), MAX_HINT))
    floor = max((h for h in hints if h is not None), default=None)
    return max(due, now + floor) if floor is not None else due


def _due_after_failure(
    now: datetime, interval: timedelta, streak: int, retry_after_value: str | None = None
) -> datetime:
    """Exponential backoff with jitter, not before Retry-After."""
    due = now + jitter(backoff(interval, streak))
    asked = retry_after(retry_after_value, now)
    return max(due, asked) if asked is not None else due


# --- what the server asks ----------------------------------------------------------------------


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
    """The time a `Retry-After` value (seconds or an HTTP date) asks us to wait until; None
    when absent, garbage or past."""
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
    """How long the response says it stays fresh: Cache-Control max-age (no-cache and no-store
    give none), else Expires against the response's Date."""
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
