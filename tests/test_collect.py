"""The collect stage against a real local server: what it asks, what it reads, what it skips."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

import aggregator.parse.read as read_module
from aggregator import sourcestate
from aggregator.collect import Collected, Collector, preview
from aggregator.config import FetchSettings, load_config
from aggregator.errors import FetchError, ParseError
from aggregator.fetch import new_session
from aggregator.models import ExcerptOptions, SelectRules, Source, SourceState
from aggregator.parse.sniff import sniff
from tests.helpers import DATA, LocalServer, Response, write_config

SITE = DATA / "site"
NOW = datetime(2026, 11, 5, 12, 0, tzinfo=UTC)
ALPHA_TITLES = ["Profiling a slow import", "Shared post about caching", "An entry without a date"]
CARDS = SelectRules(entry=".post-card", title="h3", link="h3 a", next=".pagination a")
ADVERTISING = (
    b'<html><head><link rel="alternate" type="application/rss+xml" href="/alpha.rss">'
    b"</head><body><p>Nothing to list here.</p></body></html>"
)


@pytest.fixture
def collector() -> Iterator[Collector]:
    session = new_session()
    try:
        yield Collector(FetchSettings(), ExcerptOptions(), session, now=NOW)
    finally:
        session.close()


def _alpha(server: LocalServer, **headers: str) -> Source:
    body = (SITE / "alpha.rss").read_bytes()
    server.routes["/alpha.rss"] = Response(
        body, 200, {"Content-Type": "application/rss+xml", **headers}
    )
    return Source(name="alpha", url=server.url("/alpha.rss"))


def _pages(server: LocalServer, select: SelectRules = CARDS) -> Source:
    server.serve("/page-2.html", (SITE / "page-2.html").read_bytes(), "text/html; charset=utf-8")
    url = server.serve("/page.html", (SITE / "page.html").read_bytes(), "text/html; charset=utf-8")
    return Source(name="gamma", url=url, kind="page", select=select)


def _after(collected: Collected) -> SourceState:
    """The state a refresh would store after `collected`."""
    assert collected.result is not None
    return sourcestate.after_success(
        collected.source,
        collected.state,
        collected.result,
        document=collected.document,
        body_hash=collected.body_hash,
        now=NOW,
    )


def _titles(collected: Collected) -> list[str]:
    return [e.title for e in collected.excerpts]


# --- one source --------------------------------------------------------------------------------


def test_a_first_fetch_asks_unconditionally_and_reads_every_item(
    collector: Collector, server: LocalServer
) -> None:
    source = _alpha(server, ETag='"v1"')
    collected = collector.collect(source)
    assert collected.error is None and collected.result is not None
    assert collected.result.status == 200 and collected.body_hash
    assert collected.document is not None and collected.document.kind == "feed"
    assert _titles(collected) == ALPHA_TITLES
    assert {e.first_seen for e in collected.excerpts} == {NOW}
    assert {e.source for e in collected.excerpts} == {"alpha"}
    assert collected.state == SourceState(name="alpha", url=source.url)
    assert "if-none-match" not in server.hits("/alpha.rss")[0].headers


def test_conditional_get_sends_the_validators_and_a_304_reads_nothing(
    collector: Collector, server: LocalServer
) -> None:
    modified = "Tue, 03 Nov 2026 09:00:00 GMT"
    source = _alpha(server, ETag='"v1"', **{"Last-Modified": modified})
    state = _after(collector.collect(source))
    assert state.etag == '"v1"'
    server.serve("/alpha.rss", b"", "application/rss+xml", 304)
    again = collector.collect(source, state)
    sent = server.hits("/alpha.rss")[-1].headers
    assert sent["if-none-match"] == '"v1"' and sent["if-modified-since"] == modified
    assert again.error is None and again.result is not None and again.result.not_modified
    assert again.document is None and again.excerpts == () and again.body_hash is None
    assert again.state is state


def test_validators_of_another_configured_url_are_not_sent(
    collector: Collector, server: LocalServer
) -> None:
    source = _alpha(server, ETag='"v1"')
    old = SourceState(name="alpha", url="http://elsewhere.test/feed", etag='"old"', body_hash="x")
    collected = collector.collect(source, old)
    assert "if-none-match" not in server.hits("/alpha.rss")[-1].headers
    assert collected.state == SourceState(name="alpha", url=source.url)
    assert _titles(collected) == ALPHA_TITLES


def test_the_same_bytes_again_are_not_modified(collector: Collector, server: LocalServer) -> None:
    source = _alpha(server)  # no validators: the server answers 200 every time
    first = collector.collect(source)
    state = _after(first)
    again = collector.collect(source, state)
    assert len(server.hits("/alpha.rss")) == 2
    assert again.error is None and again.result is not None and again.result.status == 200
    assert again.document is None and again.excerpts == ()
    assert again.body_hash == first.body_hash
    # After a failure the same bytes are read again: the last read did not succeed.
    failed = sourcestate.after_failure(source, state, ParseError("alpha", "bad"), NOW)
    assert _titles(collector.collect(source, failed)) == ALPHA_TITLES
    # Other bytes are read.
    body = (SITE / "alpha.rss").read_text().replace("slow import", "slow start")
    server.serve("/alpha.rss", body, "application/rss+xml")
    changed = collector.collect(source, state)
    assert changed.body_hash != first.body_hash
    assert "Profiling a slow start" in _titles(changed)


def test_a_body_is_sniffed_once(
    collector: Collector, server: LocalServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[bytes] = []

    def counting_sniff(body: bytes, content_type: str) -> str:
        seen.append(body)
        return sniff(body, content_type)

    monkeypatch.setattr(read_module, "sniff", counting_sniff)
    assert _titles(collector.collect(_alpha(server))) == ALPHA_TITLES
    assert len(seen) == 1
    page = Source(name="home", url=server.serve("/home.html", ADVERTISING, "text/html"))
    assert _titles(collector.collect(page)) == ALPHA_TITLES
    assert len(seen) == 2 and seen[-1] == ADVERTISING  # the advertised feed is not sniffed
    # A source of a set kind is not sniffed at all.
    feed = Source(name="feed", url=server.url("/alpha.rss"), kind="feed")
    assert _titles(collector.collect(feed)) == ALPHA_TITLES
    assert len(seen) == 2


def test_a_page_without_entries_reads_the_feed_it_advertises(
    collector: Collector, server: LocalServer
) -> None:
    _alpha(server)
    url = server.serve("/home.html", ADVERTISING, "text/html; charset=utf-8")
    collected = collector.collect(Source(name="home", url=url))
    assert collected.error is None and collected.result is not None
    assert collected.result.final_url == url  # the first response is the page's
    assert collected.document is not None and collected.document.kind == "feed"
    assert _titles(collected) == ALPHA_TITLES
    assert {e.source for e in collected.excerpts} == {"home"}
    assert len(server.hits("/home.html")) == 1 and len(server.hits("/alpha.rss")) == 1


def test_further_pages_are_followed_each_once(collector: Collector, server: LocalServer) -> None:
    collected = collector.collect(_pages(server))
    assert collected.error is None and collected.document is not None
    assert collected.document.warnings == ()
    titles = _titles(collected)
    assert titles[:3] == [
        "Borrow checker notes",
        "A card without a date",
        "A card with a hostile link",
    ]
    assert "An older card on page two" in titles and len(titles) == 4
    assert [e.position for e in collected.excerpts] == [0, 1, 2, 3]
    # page-2 links back to the first page: it is not read again.
    assert len(server.hits("/page.html")) == 1 and len(server.hits("/page-2.html")) == 1


def test_pages_stop_at_max_pages_and_a_failing_page_is_a_warning(
    collector: Collector, server: LocalServer
) -> None:
    one_page = replace(CARDS, max_pages=1)
    assert len(collector.collect(_pages(server, one_page)).excerpts) == 3
    assert server.hits("/page-2.html") == []
    source = _pages(server)
    server.serve("/page-2.html", b"down", "text/plain", 500)
    collected = collector.collect(source)
    assert collected.error is None and collected.document is not None
    assert len(collected.excerpts) == 3
    assert collected.document.warnings == (
        f"page {server.url('/page-2.html')}: HTTP 500 Internal Server Error",
    )


def test_robots_txt_is_asked_once_per_site_and_obeyed(
    collector: Collector, server: LocalServer
) -> None:
    server.serve("/robots.txt", b"User-agent: *\nDisallow: /page-2.html\n", "text/plain")
    collected = collector.collect(_pages(server))
    # The first page is allowed; the second is refused like a failing page.
    assert len(collected.excerpts) == 3 and collected.document is not None
    assert collected.document.warnings == (
        f"page {server.url('/page-2.html')}: robots.txt disallows "
        f"{server.url('/page-2.html')} (set robots = false to fetch)",
    )
    blocked = Source(name="p2", url=server.url("/page-2.html"), kind="page", select=CARDS)
    refused = collector.collect(blocked)
    assert isinstance(refused.error, FetchError) and refused.result is None
    assert refused.error.reason.startswith("robots.txt disallows")
    assert len(server.hits("/robots.txt")) == 1 and server.hits("/page-2.html") == []


def test_a_failure_is_the_source_s_result_not_raised(
    collector: Collector, server: LocalServer
) -> None:
    broken = Source(name="broken", url=server.serve("/broken.xml", b"oops", "text/plain", 500))
    collected = collector.collect(broken)
    assert isinstance(collected.error, FetchError) and collected.error.status == 500
    assert collected.error.reason == "HTTP 500 Internal Server Error"
    assert collected.result is None and collected.document is None and collected.excerpts == ()
    assert collected.duration >= 0
    empty = Source(name="empty", url=server.serve("/empty.xml", b"  \n", "application/rss+xml"))
    failed = collector.collect(empty)
    assert isinstance(failed.error, ParseError) and failed.error.reason == "empty response body"


# --- many sources ------------------------------------------------------------------------------


def test_collect_many_yields_in_the_order_given(collector: Collector, server: LocalServer) -> None:
    alpha = _alpha(server)
    gamma = _pages(server)
    broken = Source(name="broken", url=server.serve("/broken.xml", b"x", "text/plain", 404))
    beta_url = server.serve("/beta.atom", (SITE / "beta.atom").read_bytes(), "application/atom+xml")
    beta = Source(name="beta", url=beta_url)
    sources = [gamma, broken, alpha, beta]
    states = {"alpha": SourceState(name="alpha", url="http://old.test/")}
    groups = list(collector.collect_many(sources, states, group_excerpts=5_000))
    flat = [c for group in groups for c in group]
    assert [c.source.name for c in flat] == ["gamma", "broken", "alpha", "beta"]
    assert all(group for group in groups)
    assert [c.error is None for c in flat] == [True, False, True, True]
    assert [len(c.excerpts) for c in flat] == [4, 0, 3, 2]
    assert flat[2].state == SourceState(name="alpha", url=alpha.url)  # its URL changed
    # A group takes no more once it holds `group_excerpts`: here, one source each.
    singles = list(collector.collect_many(sources, {}, group_excerpts=0))
    assert [len(group) for group in singles] == [1, 1, 1, 1]
    assert list(collector.collect_many([], {}, group_excerpts=5_000)) == []


# --- preview -----------------------------------------------------------------------------------


def test_preview_reads_a_source_without_a_store(tmp_path: Path, server: LocalServer) -> None:
    _pages(server)
    server.serve("/gone.xml", b"", "text/plain", 410)
    page, gone = server.url("/page.html"), server.url("/gone.xml")
    select = '[sources.select]\nentry = ".post-card"\ntitle = "h3"\nnext = ".pagination a"\n'
    body = '[feed]\ntitle = "x"\n[store]\npath = "agg.db"\n[[sources]]\nname = "gamma"\n'
    body += f'url = "{page}"\nkind = "page"\n{select}[[sources]]\nname = "gone"\nurl = "{gone}"\n'
    config = load_config(write_config(tmp_path, body))
    shown = preview(config, "gamma", now=NOW)
    assert (shown.kind, shown.status, shown.final_url) == ("page", 200, page)
    assert len(shown.excerpts) == 4 and shown.warnings == ()
    assert {e.first_seen for e in shown.excerpts} == {NOW}
    with pytest.raises(FetchError, match="HTTP 410"):
        preview(config, "gone")
    assert not (tmp_path / "agg.db").exists()
