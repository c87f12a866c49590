"""The source-state policy as pure functions: due or not, success, failure, moves, hints."""

from __future__ import annotations

import io
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import pytest
from rich.console import Console

from aggregator import sourcestate, views
from aggregator.config import load_config
from aggregator.errors import FetchError, ParseError
from aggregator.models import FetchResult, ParsedDocument, Source, SourceState
from tests.helpers import write_config

NOW = datetime(2026, 11, 3, 9, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)
SOURCE = Source(name="blog", url="https://blog.test/feed.xml", interval_seconds=3600)


def _ok(status: int = 200, headers: dict[str, str] | None = None) -> FetchResult:
    return FetchResult(url=SOURCE.url, final_url=SOURCE.url, status=status, headers=headers or {})


def _document(ttl: int | None = None) -> ParsedDocument:
    return ParsedDocument(kind="feed", items=(), ttl_seconds=ttl)


def _fetched(headers: dict[str, str] | None = None) -> SourceState:
    """The state after one good fetch at NOW."""
    return sourcestate.after_success(
        SOURCE,
        sourcestate.current(SOURCE, None),
        _ok(headers=headers),
        document=_document(),
        body_hash="h1",
        now=NOW,
    )


def _within_jitter(moment: datetime | None, delay: timedelta) -> bool:
    assert moment is not None
    return NOW + delay * 0.9 <= moment <= NOW + delay


# --- due or not --------------------------------------------------------------------------------


def test_a_source_never_fetched_is_due_now() -> None:
    assert sourcestate.is_due(SOURCE, None, NOW)
    assert sourcestate.next_due(SOURCE, None) is None
    fresh = sourcestate.current(SOURCE, None)
    assert (fresh.name, fresh.url, fresh.next_due) == ("blog", SOURCE.url, None)


def test_a_fetched_source_is_due_after_its_interval() -> None:
    state = _fetched()
    assert _within_jitter(sourcestate.next_due(SOURCE, state), HOUR)
    assert not sourcestate.is_due(SOURCE, state, NOW)
    assert not sourcestate.is_due(SOURCE, state, NOW + HOUR * 0.8)
    assert sourcestate.is_due(SOURCE, state, NOW + HOUR)


def test_due_sources_keeps_the_order_given_and_leaves_out_those_not_due() -> None:
    other = Source(name="other", url="https://other.test/feed.xml")
    third = Source(name="third", url="https://third.test/feed.xml")
    states = {"blog": _fetched()}
    chosen = sourcestate.due_sources([third, SOURCE, other], states, NOW)
    assert [s.name for s in chosen] == ["third", "other"]


def test_a_changed_url_starts_afresh() -> None:
    state = _fetched(headers={"etag": '"v1"', "last-modified": "Tue, 03 Nov 2026 08:00:00 GMT"})
    assert state.etag == '"v1"' and not sourcestate.is_due(SOURCE, state, NOW)
    assert sourcestate.current(SOURCE, state) is state
    moved = Source(name="blog", url="https://blog.test/atom.xml")
    assert sourcestate.is_due(moved, state, NOW)
    assert sourcestate.next_due(moved, state) is None
    fresh = sourcestate.current(moved, state)
    assert fresh == SourceState(name="blog", url="https://blog.test/atom.xml")
    assert fresh.etag is None and fresh.body_hash is None


def test_410_is_never_due_until_the_url_changes() -> None:
    gone = sourcestate.after_failure(
        SOURCE, _fetched(), FetchError("blog", "HTTP 410 Gone", status=410), NOW
    )
    assert gone.last_status == "gone" and gone.error == "HTTP 410 Gone"
    assert sourcestate.is_gone(SOURCE, gone)
    for later in (NOW, NOW + timedelta(days=2), NOW + timedelta(days=3650)):
        assert not sourcestate.is_due(SOURCE, gone, later)
    assert sourcestate.due_sources([SOURCE], {"blog": gone}, NOW + timedelta(days=30)) == []
    elsewhere = Source(name="blog", url="https://blog.test/new-feed.xml")
    assert not sourcestate.is_gone(elsewhere, gone)
    assert sourcestate.is_due(elsewhere, gone, NOW)


def test_an_unchanged_body_is_recognised_only_after_a_good_read() -> None:
    state = _fetched()
    assert sourcestate.body_unchanged(state, "h1")
    assert not sourcestate.body_unchanged(state, "h2")
    failed = sourcestate.after_failure(SOURCE, state, ParseError("blog", "bad XML"), NOW)
    assert failed.body_hash == "h1" and not sourcestate.body_unchanged(failed, "h1")


# --- after a success ---------------------------------------------------------------------------


def test_a_200_stores_its_validators_and_a_304_keeps_them() -> None:
    headers = {"etag": '"v1"', "last-modified": "Tue, 03 Nov 2026 08:00:00 GMT"}
    state = _fetched(headers=headers)
    assert (state.etag, state.last_modified) == ('"v1"', "Tue, 03 Nov 2026 08:00:00 GMT")
    assert state.last_status == "ok" and state.body_hash == "h1"
    assert state.last_fetch == NOW and state.last_success == NOW
    later = NOW + HOUR
    again = sourcestate.after_success(
        SOURCE, state, _ok(status=304), document=None, body_hash=None, now=later
    )
    assert (again.etag, again.last_modified, again.body_hash) == ('"v1"', state.last_modified, "h1")
    assert again.last_status == "not-modified" and again.last_success == later
    # A 200 without validators drops the old ones: they no longer describe the body.
    bare = sourcestate.after_success(
        SOURCE, state, _ok(), document=_document(), body_hash="h2", now=later
    )
    assert (bare.etag, bare.last_modified, bare.body_hash) == (None, None, "h2")


def test_a_success_clears_the_error_and_its_streak() -> None:
    failed = sourcestate.after_failure(SOURCE, _fetched(), FetchError("blog", "HTTP 500"), NOW)
    failed = sourcestate.after_failure(SOURCE, failed, FetchError("blog", "HTTP 500"), NOW)
    assert failed.error_streak == 2 and failed.last_status == "error"
    ok = sourcestate.after_success(
        SOURCE, failed, _ok(status=304), document=None, body_hash=None, now=NOW
    )
    assert ok.error is None and ok.error_streak == 0 and ok.last_status == "not-modified"
    assert _within_jitter(ok.next_due, HOUR)


def test_cache_control_and_the_feed_ttl_delay_a_success_but_never_hasten_it() -> None:
    cached = _fetched(headers={"cache-control": "public, max-age=18000"})
    assert cached.next_due == NOW + timedelta(hours=5)
    short = _fetched(headers={"cache-control": "max-age=60"})
    assert _within_jitter(short.next_due, HOUR)
    ttl = sourcestate.after_success(
        SOURCE,
        SourceState(name="blog", url=SOURCE.url),
        _ok(),
        document=_document(ttl=3 * 3600),
        body_hash="h",
        now=NOW,
    )
    assert ttl.next_due == NOW + timedelta(hours=3) and ttl.ttl_seconds == 3 * 3600
    # A 304 keeps the ttl the feed gave last time.
    kept = sourcestate.after_success(
        SOURCE, ttl, _ok(status=304), document=None, body_hash=None, now=NOW
    )
    assert kept.ttl_seconds == 3 * 3600 and kept.next_due == NOW + timedelta(hours=3)


def test_three_permanent_redirects_in_a_row_move_the_source() -> None:
    target = "https://new.blog.test/feed.xml"
    redirected = FetchResult(
        url=SOURCE.url, final_url=target, status=200, permanent_redirect=target
    )
    state = sourcestate.current(SOURCE, None)
    streaks = []
    for _ in range(sourcestate.REDIRECTS_BEFORE_MOVE):
        assert state.effective_url is None
        state = sourcestate.after_success(
            SOURCE, state, redirected, document=_document(), body_hash="h", now=NOW
        )
        streaks.append(state.redirect_streak)
    assert streaks == [1, 2, 3]
    assert state.effective_url == target and state.redirect_url == target
    # A redirect elsewhere starts a new count and keeps where the source lives.
    elsewhere = "https://x.test/"
    other = FetchResult(url=target, final_url=elsewhere, status=200, permanent_redirect=elsewhere)
    assert sourcestate.moved(state, other) == (elsewhere, 1, target)
    # No redirect: the count ends, the move stays.
    assert sourcestate.moved(state, _ok()) == (None, 0, target)


def test_a_redirect_streak_broken_in_the_middle_does_not_move_the_source() -> None:
    target = "https://new.blog.test/feed.xml"
    redirected = FetchResult(
        url=SOURCE.url, final_url=target, status=200, permanent_redirect=target
    )
    state = sourcestate.current(SOURCE, None)
    for result in (redirected, redirected, _ok(), redirected, redirected):
        state = sourcestate.after_success(
            SOURCE, state, result, document=_document(), body_hash="h", now=NOW
        )
    assert state.redirect_streak == 2 and state.effective_url is None


# --- after a failure ---------------------------------------------------------------------------


def test_backoff_doubles_per_failure_and_stops_at_the_cap() -> None:
    delays = [sourcestate.backoff(HOUR, streak) for streak in range(1, 9)]
    assert delays[:5] == [HOUR, 2 * HOUR, 4 * HOUR, 8 * HOUR, 16 * HOUR]
    assert delays[5:] == [sourcestate.MAX_BACKOFF] * 3
    assert sourcestate.backoff(HOUR, 0) == HOUR
    assert sourcestate.backoff(HOUR, 10_000) == sourcestate.MAX_BACKOFF
    # An interval longer than the cap is the cap.
    weekly = timedelta(days=7)
    assert sourcestate.backoff(weekly, 5) == weekly


def test_failures_in_a_row_back_off_the_next_fetch() -> None:
    state = _fetched()
    for streak, delay in ((1, HOUR), (2, 2 * HOUR), (3, 4 * HOUR), (7, sourcestate.MAX_BACKOFF)):
        while state.error_streak < streak:
            state = sourcestate.after_failure(SOURCE, state, FetchError("blog", "HTTP 500"), NOW)
        assert state.error_streak == streak and state.last_status == "error"
        assert state.error == "HTTP 500" and state.last_fetch == NOW
        assert _within_jitter(state.next_due, delay)
    # What the last success left stays: validators, body hash, last success.
    assert state.body_hash == "h1" and state.last_success == NOW


def test_retry_after_is_respected_after_a_failure() -> None:
    asked = FetchError("blog", "HTTP 429", status=429, retry_after="18000")
    state = sourcestate.after_failure(SOURCE, _fetched(), asked, NOW)
    assert state.next_due == NOW + timedelta(hours=5)
    when = NOW + timedelta(hours=3)
    dated = FetchError("blog", "HTTP 503", status=503, retry_after=format_datetime(when, True))
    assert sourcestate.after_failure(SOURCE, _fetched(), dated, NOW).next_due == when
    # Shorter than the backoff, or garbage: the backoff decides.
    soon = FetchError("blog", "HTTP 429", status=429, retry_after="5")
    assert _within_jitter(sourcestate.after_failure(SOURCE, _fetched(), soon, NOW).next_due, HOUR)
    junk = FetchError("blog", "HTTP 429", status=429, retry_after="soon, please")
    assert _within_jitter(sourcestate.after_failure(SOURCE, _fetched(), junk, NOW).next_due, HOUR)


# --- what the server asks ----------------------------------------------------------------------


def test_retry_after_reads_seconds_and_dates_and_clamps() -> None:
    assert sourcestate.retry_after("120", NOW) == NOW + timedelta(seconds=120)
    assert sourcestate.retry_after(" 120 ", NOW) == NOW + timedelta(seconds=120)
    later = NOW + timedelta(hours=2)
    assert sourcestate.retry_after(format_datetime(later, usegmt=True), NOW) == later
    assert sourcestate.retry_after("99999999999", NOW) == NOW + sourcestate.MAX_HINT
    far = NOW + timedelta(days=60)
    assert sourcestate.retry_after(format_datetime(far, usegmt=True), NOW) == (
        NOW + sourcestate.MAX_HINT
    )
    past = NOW - timedelta(hours=1)
    for value in (None, "", "-5", "tomorrow", "1.5", format_datetime(past, usegmt=True)):
        assert sourcestate.retry_after(value, NOW) is None, value


@pytest.mark.parametrize(
    ("headers", "fresh"),
    [
        ({"cache-control": "max-age=600"}, timedelta(minutes=10)),
        ({"cache-control": 'public, max-age="600"'}, timedelta(minutes=10)),
        ({"cache-control": "max-age=99999999"}, sourcestate.MAX_HINT),
        ({"cache-control": "no-cache, max-age=600"}, None),
        ({"cache-control": "no-store"}, None),
        (
            {
                "expires": "Tue, 03 Nov 2026 12:00:00 GMT",
                "date": "Tue, 03 Nov 2026 10:00:00 GMT",
            },
            timedelta(hours=2),
        ),
        ({"expires": "Tue, 03 Nov 2026 12:00:00 GMT"}, timedelta(hours=3)),  # against now
        ({"expires": "0"}, None),
        ({"expires": "Tue, 03 Nov 2026 08:00:00 GMT"}, None),
        ({}, None),
    ],
)
def test_freshness_from_cache_control_or_expires(
    headers: dict[str, str], fresh: timedelta | None
) -> None:
    assert sourcestate.freshness(headers, NOW) == fresh


def test_jitter_stays_within_a_tenth_below_the_delay() -> None:
    for _ in range(200):
        assert HOUR * 0.9 <= sourcestate.jitter(HOUR) <= HOUR


# --- the callers -------------------------------------------------------------------------------


def test_the_sources_table_shows_the_policy_s_due_times(tmp_path: Path) -> None:
    urls = {
        "blog": SOURCE.url,
        "moved": "https://moved.test/new.xml",
        "gone": "https://gone.test/feed.xml",
    }
    body = '[feed]\ntitle = "x"\n' + "".join(
        f'[[sources]]\nname = "{name}"\nurl = "{url}"\n' for name, url in urls.items()
    )
    config = load_config(write_config(tmp_path, body))
    by_name = {s.name: s for s in config.sources}
    gone = sourcestate.after_failure(
        by_name["gone"],
        sourcestate.current(by_name["gone"], None),
        FetchError("gone", "HTTP 410 Gone", status=410),
        NOW,
    )
    states = {
        "blog": _fetched(),
        "moved": replace(_fetched(), name="moved", url="https://moved.test/old.xml"),
        "gone": gone,
    }
    text = io.StringIO()
    Console(file=text, width=200).print(views.sources_table(config, states, {}))
    rows = {
        line.split("│")[1].strip(): [c.strip() for c in line.split("│")[1:-1]]
        for line in text.getvalue().splitlines()
        if "│" in line
    }
    assert rows["blog"][5] == _when(sourcestate.next_due(by_name["blog"], states["blog"]))
    assert rows["blog"][3] == "ok"
    assert rows["moved"][3] == "new" and rows["moved"][5] == "now"
    assert rows["gone"][3].startswith("gone") and rows["gone"][5] == "never"


def _when(moment: datetime | None) -> str:
    assert moment is not None
    return moment.strftime("%Y-%m-%d %H:%M")


def test_what_a_feed_says_about_itself_is_kept_until_its_next_parse() -> None:
    said = replace(
        _document(),
        title="Blog",
        link="https://blog.test/",
        feed_id="tag:blog.test,2026:feed",
        author="  Ann   Lee <ann@blog.test> ",
        updated=NOW - HOUR,
    )
    state = sourcestate.after_success(
        SOURCE, SourceState(name="blog"), _ok(), document=said, body_hash="a", now=NOW
    )
    assert (state.feed_id, state.feed_author, state.feed_updated) == (
        "tag:blog.test,2026:feed",
        "Ann Lee <ann@blog.test>",
        NOW - HOUR,
    )
    # Not modified: nothing was read, so nothing changes.
    later = sourcestate.after_success(
        SOURCE, state, _ok(304), document=None, body_hash=None, now=NOW + HOUR
    )
    assert (later.feed_id, later.feed_author, later.feed_updated) == (
        state.feed_id,
        state.feed_author,
        state.feed_updated,
    )
    # A new parse that says nothing of itself clears them.
    bare = sourcestate.after_success(
        SOURCE, later, _ok(), document=_document(), body_hash="b", now=NOW + 2 * HOUR
    )
    assert (bare.feed_id, bare.feed_author, bare.feed_updated) == (None, None, None)
