"""End to end: a real local HTTP server, a real SQLite file, feedparser reading the output."""

from __future__ import annotations

import gc
from datetime import UTC, datetime, timedelta
from pathlib import Path

import feedparser
import pytest

from aggregator.config import load_config
from aggregator.refresh import refresh, refresh_if_due
from aggregator.store import Store, open_store
from tests.helpers import DATA, LocalServer, load_snapshot, write_config

SITE = DATA / "site"


def _serve_site(server: LocalServer) -> None:
    server.serve("/alpha.rss", (SITE / "alpha.rss").read_bytes(), "application/rss+xml")
    server.serve("/beta.atom", (SITE / "beta.atom").read_bytes(), "application/atom+xml")
    server.serve("/page.html", (SITE / "page.html").read_bytes(), "text/html; charset=utf-8")
    server.serve("/page-2.html", (SITE / "page-2.html").read_bytes(), "text/html; charset=utf-8")
    server.serve("/capture.txt", (SITE / "crawl-1.txt").read_bytes(), "text/plain; charset=utf-8")


def _config(tmp_path: Path, server: LocalServer, extra: str = "") -> Path:
    return write_config(
        tmp_path,
        f"""
[feed]
title = "Merged"
link = "https://merged.test/"
max_entries = 50
[output]
dir = "out"
[store]
path = "state/agg.db"
[[sources]]
name = "alpha"
url = "{server.url("/alpha.rss")}"
category = "Alpha"
[[sources]]
name = "beta"
url = "{server.url("/beta.atom")}"
kind = "feed"
[[sources]]
name = "gamma"
url = "{server.url("/page.html")}"
kind = "page"
[sources.select]
entry = ".post-card"
title = "h3"
link = "h3 a"
date = "time"
excerpt = ".summary"
category = ".tag"
next = ".pagination a"
max_pages = 3
[[sources]]
name = "capture"
url = "{server.url("/capture.txt")}"
kind = "text"
{extra}
""",
    )


def _titles(feed: feedparser.FeedParserDict) -> list[str]:
    return [e.title for e in feed.entries]


def test_refresh_merges_every_kind_into_one_valid_feed(tmp_path: Path, server: LocalServer) -> None:
    _serve_site(server)
    config = load_config(_config(tmp_path, server))
    report = refresh(config)
    assert [r.outcome for r in report.results] == ["new"] * 4, report.results
    assert report.feed_written and report.snapshot_written

    atom = (tmp_path / "out" / "feed.atom").read_bytes()
    feed = feedparser.parse(atom)
    assert not feed.bozo, feed.bozo_exception
    titles = _titles(feed)
    # The caching post is in two sources (tracking parameters, host case, http/https): once.
    assert titles.count("Shared post about caching") == 1
    assert "Borrow checker notes" in titles and "An older card on page two" in titles
    # alpha 3 + beta 2 - 1 shared + gamma 4 (2 pages) + capture 4
    assert len(feed.entries) == 12
    # Newest first by the entries' own dates.
    dated = [
        e for e in feed.entries if e.title in ("Borrow checker notes", "Profiling a slow import")
    ]
    assert [e.title for e in dated] == ["Borrow checker notes", "Profiling a slow import"]
    # The feed's updated is the newest entry's, not "now".
    newest = max(datetime(*e.updated_parsed[:6], tzinfo=UTC) for e in feed.entries)
    assert datetime(*feed.feed.updated_parsed[:6], tzinfo=UTC) == newest

    snap = load_snapshot(tmp_path / "out" / "snapshot.json")
    assert [e["id"] for e in snap["entries"]] == [e.id for e in feed.entries]
    shared = next(e for e in snap["entries"] if e["title"] == "Shared post about caching")
    assert {s["name"] for s in shared["sources"]} == {"alpha", "beta"}
    # The representative copy (alpha, first seen) gives the link: host case folded, path kept.
    assert shared["link"] == "https://shared.example/posts/caching/"
    assert shared["duplicates"][0]["rule"] == "link"
    slow = next(e for e in snap["entries"] if e["title"] == "Profiling a slow import")
    # Resolved against the feed's URL, tracking parameters gone, the scheme kept.
    assert slow["link"] == server.url("/posts/slow-import")
    assert "[code]" in slow["excerpt"] and "<" not in slow["excerpt"]
    assert "Alpha" in slow["categories"] and "Python" in slow["categories"]
    hostile = next(e for e in snap["entries"] if e["title"] == "A card with a hostile link")
    assert hostile["link"] is None
    assert "javascript" not in atom.decode()
    softmax = next(e for e in snap["entries"] if e["title"] == "Softmax, once more")
    assert "[formula]" in softmax["excerpt"]
    assert softmax["published"] == "2026-10-30T10:00:00Z"
    assert {s["name"]: s["entries"] for s in snap["sources"]} == {
        "alpha": 3,
        "beta": 2,
        "gamma": 4,
        "capture": 4,
    }
    assert all(s["status"] == "ok" for s in snap["sources"])


def test_second_refresh_changes_nothing(tmp_path: Path, server: LocalServer) -> None:
    _serve_site(server)
    config = load_config(_config(tmp_path, server))
    refresh(config)
    atom_path = tmp_path / "out" / "feed.atom"
    first_atom = atom_path.read_bytes()
    first_snap = load_snapshot(tmp_path / "out" / "snapshot.json")
    first_mtime = atom_path.stat().st_mtime_ns

    report = refresh(config, force=True)
    assert {r.outcome for r in report.results} == {"unchanged"}
    assert not report.feed_written
    assert atom_path.read_bytes() == first_atom
    assert atom_path.stat().st_mtime_ns == first_mtime
    second_snap = load_snapshot(tmp_path / "out" / "snapshot.json")
    assert second_snap["entries"] == first_snap["entries"]


def test_not_due_sources_are_skipped_until_forced(tmp_path: Path, server: LocalServer) -> None:
    _serve_site(server)
    config = load_config(_config(tmp_path, server))
    refresh(config)
    before = len(server.requests)
    assert refresh(config).results == ()
    assert len(server.requests) == before
    later = datetime.now(UTC) + timedelta(hours=2)
    report = refresh(config, clock=lambda: later)
    assert len(report.results) == 4


def test_repeated_crawls_of_a_page_store_each_post_once(
    tmp_path: Path, server: LocalServer
) -> None:
    config = load_config(_config(tmp_path, server))
    _serve_site(server)
    seen_ids: dict[str, str] = {}
    for crawl in ("crawl-1.txt", "crawl-2.txt", "crawl-3.txt", "crawl-1.txt"):
        server.serve("/capture.txt", (SITE / crawl).read_bytes(), "text/plain; charset=utf-8")
        refresh(config, names=["capture"])
        snap = load_snapshot(tmp_path / "out" / "snapshot.json")
        for e in snap["entries"]:
            # An id, once given, never changes.
            assert seen_ids.setdefault(e["excerpt"][:40], e["id"]) == e["id"]
    snap = load_snapshot(tmp_path / "out" / "snapshot.json")
    capture = [e for e in snap["entries"] if e["source"] == "capture"]
    # crawl-1: 4 posts; crawl-2 adds 1; crawl-3 adds 2 that share only their opening words.
    assert len(capture) == 7
    assert len({e["id"] for e in capture}) == 7
    dated = [e for e in capture if e["published"]]
    assert len(dated) == 1 and dated[0]["published"] == "2026-01-11T00:00:00Z"
    assert dated[0]["categories"] == ["Python"]
    with open_store(config) as store:
        copies = [p for e in store.latest(10**6) for p in e.sources if p.source == "capture"]
    assert len(copies) == 7


def test_broken_source_fails_alone(tmp_path: Path, server: LocalServer) -> None:
    _serve_site(server)
    server.serve("/broken.xml", b"<rss><channel><item><title>x", "application/rss+xml", 500)
    extra = f"""
[[sources]]
name = "broken"
url = "{server.url("/broken.xml")}"
"""
    config = load_config(_config(tmp_path, server, extra))
    report = refresh(config)
    by_name = {r.source: r for r in report.results}
    assert by_name["broken"].outcome == "error"
    assert "HTTP 500" in (by_name["broken"].error or "")
    assert all(by_name[n].outcome == "new" for n in ("alpha", "beta", "gamma", "capture"))
    feed = feedparser.parse((tmp_path / "out" / "feed.atom").read_bytes())
    assert len(feed.entries) == 12
    snap = load_snapshot(tmp_path / "out" / "snapshot.json")
    broken = next(s for s in snap["sources"] if s["name"] == "broken")
    assert broken["status"] == "error" and "HTTP 500" in broken["error"]


def test_a_failure_later_keeps_what_was_stored(tmp_path: Path, server: LocalServer) -> None:
    _serve_site(server)
    config = load_config(_config(tmp_path, server))
    refresh(config)
    server.serve("/alpha.rss", b"<html><body>maintenance</body></html>", "text/html")
    server.serve("/beta.atom", b"", "application/atom+xml")
    report = refresh(config, force=True)
    by_name = {r.source: r for r in report.results}
    # alpha is kind = auto: an HTML page with neither a feed nor selectors.
    assert by_name["alpha"].outcome == "error" and "HTML page" in (by_name["alpha"].error or "")
    assert by_name["beta"].outcome == "error" and "empty" in (by_name["beta"].error or "")
    feed = feedparser.parse((tmp_path / "out" / "feed.atom").read_bytes())
    assert "Profiling a slow import" in _titles(feed)
    assert len(feed.entries) == 12


def test_conditional_get_sends_validators_back(tmp_path: Path, server: LocalServer) -> None:
    _serve_site(server)
    server.serve(
        "/alpha.rss",
        (SITE / "alpha.rss").read_bytes(),
        "application/rss+xml",
        ETag='"v1"',
        Last_Modified="Tue, 03 Nov 2026 09:00:00 GMT",
    )
    config = load_config(_config(tmp_path, server))
    refresh(config)
    first = server.hits("/alpha.rss")[-1]
    assert "if-none-match" not in first.headers
    assert first.headers["user-agent"].startswith("aggregator/")
    refresh(config, names=["alpha"])
    second = server.hits("/alpha.rss")[-1]
    assert second.headers["if-none-match"] == '"v1"'
    assert second.headers["if-modified-since"] == "Tue, 03 Nov 2026 09:00:00 GMT"


def test_updated_entry_keeps_its_id(tmp_path: Path, server: LocalServer) -> None:
    _serve_site(server)
    config = load_config(_config(tmp_path, server))
    refresh(config)
    snap = load_snapshot(tmp_path / "out" / "snapshot.json")
    old = next(e for e in snap["entries"] if e["title"] == "Profiling a slow import")
    body = (
        (SITE / "alpha.rss")
        .read_text()
        .replace("Profiling a slow import", "Profiling a slow import (fixed)")
    )
    server.serve("/alpha.rss", body, "application/rss+xml")
    report = refresh(config, names=["alpha"])
    assert report.results[0].outcome == "updated" and report.results[0].updated == 1
    snap = load_snapshot(tmp_path / "out" / "snapshot.json")
    new = next(e for e in snap["entries"] if e["title"] == "Profiling a slow import (fixed)")
    assert new["id"] == old["id"]
    assert len(snap["entries"]) == 12


@pytest.mark.parametrize("name", ["atom"])
def test_feed_is_valid_rfc4287(tmp_path: Path, server: LocalServer, name: str) -> None:
    rng = Path(__file__).resolve().parents[2] / "shared" / "validators" / "atom.rng"
    if not rng.exists():
        pytest.skip("../shared/validators/atom.rng is not present")
    from lxml import etree

    _serve_site(server)
    refresh(load_config(_config(tmp_path, server)))
    schema = etree.RelaxNG(etree.parse(str(rng)))
    doc = etree.parse(str(tmp_path / "out" / "feed.atom"))
    assert schema.validate(doc), schema.error_log


def test_a_source_repeating_known_posts_counts_them_as_joined(
    tmp_path: Path, server: LocalServer
) -> None:
    _serve_site(server)
    server.serve("/mirror.rss", (SITE / "alpha.rss").read_bytes(), "application/rss+xml")
    extra = f'[[sources]]\nname = "mirror"\nurl = "{server.url("/mirror.rss")}"\n'
    config = load_config(_config(tmp_path, server, extra))
    results = {r.source: r for r in refresh(config).results}
    alpha, mirror = results["alpha"], results["mirror"]
    assert alpha.new > 0 and alpha.joined == 0
    # The mirror's items are alpha's posts: new to the mirror, no new entry in the feed.
    assert mirror.outcome == "new"
    assert (mirror.new, mirror.joined) == (0, alpha.new)
    snap = load_snapshot(tmp_path / "out" / "snapshot.json")
    mirrored = [e for e in snap["entries"] if "mirror" in {s["name"] for s in e["sources"]}]
    assert len(mirrored) == alpha.new


def test_a_refresh_leaves_the_process_collector_settings_as_they_were(
    tmp_path: Path, server: LocalServer
) -> None:
    _serve_site(server)
    config = load_config(_config(tmp_path, server))
    before = gc.get_threshold()
    gc.set_threshold(1234, 7, 9)  # a program's own setting, which a refresh must not keep
    try:
        report = refresh(config)
        assert report.results and not report.failed
        assert gc.get_threshold() == (1234, 7, 9)
    finally:
        gc.set_threshold(*before)


def test_a_refresh_uses_the_store_it_is_handed_and_leaves_it_open(
    tmp_path: Path, server: LocalServer, store: Store
) -> None:
    _serve_site(server)
    config = load_config(_config(tmp_path, server))
    report = refresh(config, store=store)
    assert report.results and not report.failed
    stored = store.latest(100)  # still open, and holding what the refresh found
    assert stored and {r.source for r in report.results} <= set(store.entry_counts())
    assert not config.store_path.exists()  # the configured store was never opened
    assert refresh_if_due(config, report.results[0].source, store=store) is None  # not due
    assert store.latest(100) == stored
