"""Several feeds from one store, their whole history as RFC 5005 archives, and WebSub pings:
as a feed reader and a hub see them, over real HTTP."""

from __future__ import annotations

import gzip
import http.client
import json
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import feedparser
import jsonschema
import pytest
from lxml import etree

from aggregator import outputs, websub
from aggregator.config import Config, load_config
from aggregator.refresh import refresh, write_outputs
from aggregator.serve import SEALED_CACHE_CONTROL, Server
from aggregator.store import open_store
from tests.helpers import LocalServer, write_config
from tests.test_valid_outputs import JSON_FEED_SCHEMA as SCHEMA_FILE
from tests.test_valid_outputs import assert_valid_atom, assert_valid_json_feed, needs_shared

JSON_FEED_SCHEMA = json.loads(SCHEMA_FILE.read_text())
FH = "{http://purl.org/syndication/history/1.0}"
T0 = datetime(2026, 6, 1, tzinfo=UTC)
ATOM = "{http://www.w3.org/2005/Atom}"


def posts(first: int, last: int, prefix: str = "p") -> str:
    """RSS with posts first..last (newest last), every third one tagged ML, the rest Web."""
    items = "".join(
        f"<item><guid>{prefix}-{i}</guid><title>Post {i}</title>"
        f"<link>http://blog.test/{i}</link>"
        f"<pubDate>{1 + i % 28:02d} Jun 2026 {i % 24:02d}:00:00 GMT</pubDate>"
        f"<category>{'ML' if i % 3 == 0 else 'Web'}</category>"
        f"<description>What post {i} says, in a sentence of its own.</description></item>"
        for i in range(last, first - 1, -1)
    )
    return f'<rss version="2.0"><channel><title>Blog</title>{items}</channel></rss>'


@dataclass
class Site:
    config: Config
    server: Server
    upstream: LocalServer
    hub: LocalServer

    def refresh(self, first: int, last: int) -> None:
        self.upstream.serve("/blog.xml", posts(first, last))
        refresh(self.config, force=True)
        websub.wait()

    def get(self, path: str, **headers: str) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection(self.server.host, self.server.port, timeout=10)
        try:
            conn.request("GET", path, headers={k.replace("_", "-"): v for k, v in headers.items()})
            resp = conn.getresponse()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
        finally:
            conn.close()

    def pings(self) -> list[str]:
        """The feed URLs the hub was told about, in order."""
        out = []
        for r in self.upstream_hub_posts():
            form = parse_qs(r.body.decode())
            assert form["hub.mode"] == ["publish"]
            out.extend(form["hub.url"])
        return out

    def upstream_hub_posts(self) -> list[object]:
        return [r for r in self.hub.requests if r.method == "POST"]


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    upstream, hub = LocalServer(), LocalServer()
    hub.serve("/hub", b"", status=202)
    (tmp_path / "public").mkdir()
    srv = Server(tmp_path / "public", port=0).start()
    path = write_config(
        tmp_path,
        f"""
[feed]
title = "Merged"
link = "{srv.url}"
self_url = "{srv.url}feed.atom"
max_entries = 4
[output]
websub_hub = "{hub.url("/hub")}"
[[outputs]]
name = "ml"
title = "Machine learning"
categories = ["ml"]
max_entries = 2
[[sources]]
name = "blog"
url = "{upstream.url("/blog.xml")}"
""",
    )
    try:
        yield Site(load_config(path), srv, upstream, hub)
    finally:
        srv.stop()
        upstream.close()
        hub.close()


def walk_atom(site: Site, path: str) -> tuple[list[str], list[str]]:
    """Follow prev-archive from `path` over HTTP: every entry id met, and the pages' paths."""
    ids: list[str] = []
    pages: list[str] = []
    url: str | None = site.server.url + path.lstrip("/")
    while url:
        status, _, body = site.get(urlsplit(url).path)
        assert status == 200, url
        doc = feedparser.parse(body)
        assert not doc.bozo, (url, doc.bozo_exception)
        ids.extend(e.id for e in doc.entries)
        root = etree.fromstring(body)
        is_archive = root.find(f"{FH}archive") is not None
        assert is_archive == bool(pages)  # the feed is not an archive; every page is
        prev = [link.href for link in doc.feed.links if link.rel == "prev-archive"]
        url = prev[0] if prev else None
        if url:
            pages.append(urlsplit(url).path)
    return ids, pages


def walk_json(site: Site, path: str) -> list[str]:
    ids: list[str] = []
    url: str | None = site.server.url + path.lstrip("/")
    while url:
        status, _, body = site.get(urlsplit(url).path)
        assert status == 200
        doc = json.loads(body)
        jsonschema.validate(doc, JSON_FEED_SCHEMA)
        ids.extend(item["id"] for item in doc["items"])
        url = doc.get("next_url")
    return ids


def stored_ids(config: Config, category: str | None = None) -> list[str]:
    with open_store(config) as store:
        entries = store.latest(10_000)
    return [
        e.id
        for e in entries
        if category is None or category in (c.casefold() for c in e.categories)
    ]


def test_walking_the_archives_collects_every_stored_entry_once(site: Site) -> None:
    site.refresh(0, 9)  # 10 entries: 4 in the feed, a sealed page of 4, 2 in the open page
    ids, pages = walk_atom(site, "/feed.atom")
    assert sorted(ids) == sorted(stored_ids(site.config)) and len(ids) == len(set(ids)) == 10
    assert pages == ["/archive/feed/2.atom", "/archive/feed/1.atom"]
    assert sorted(walk_json(site, "/feed.json")) == sorted(ids)
    # The filtered output has its own history: the ML posts only.
    ml, ml_pages = walk_atom(site, "/ml.atom")
    assert sorted(ml) == sorted(stored_ids(site.config, "ml")) and len(ml) == 4
    assert ml_pages == ["/archive/ml/2.atom", "/archive/ml/1.atom"]
    assert sorted(walk_json(site, "/ml.json")) == sorted(ml)

    sealed = site.get("/archive/feed/1.atom")
    site.refresh(0, 16)  # 7 more: the open page fills and is sealed, a new one opens
    ids, pages = walk_atom(site, "/feed.atom")
    assert sorted(ids) == sorted(stored_ids(site.config)) and len(ids) == len(set(ids)) == 17
    assert pages == ["/archive/feed/4.atom", *(f"/archive/feed/{n}.atom" for n in (3, 2, 1))]
    assert site.get("/archive/feed/1.atom")[2] == sealed[2]  # byte-identical
    ml, _ = walk_atom(site, "/ml.atom")
    assert sorted(ml) == sorted(stored_ids(site.config, "ml"))


def test_archive_pages_link_both_ways_and_sealed_ones_are_cached_for_good(site: Site) -> None:
    site.refresh(0, 13)  # pages 1 and 2 sealed, page 3 open
    out = site.config.output_dir
    first = (out / "archive/feed/1.atom").read_bytes()
    page = etree.fromstring(first)
    links = {link.get("rel"): link.get("href") for link in page.findall(f"{ATOM}link")}
    base = site.server.url
    assert links["self"] == base + "archive/feed/1.atom"
    assert links["next-archive"] == base + "archive/feed/2.atom"
    assert links["current"] == base + "feed.atom"
    assert "prev-archive" not in links
    assert len(page.findall(f"{ATOM}entry")) == 4
    status, headers, _ = site.get("/archive/feed/1.atom")
    assert status == 200 and headers["cache-control"] == SEALED_CACHE_CONTROL
    assert headers["content-type"] == "application/atom+xml; charset=utf-8"
    etag = headers["etag"]
    assert not etag.startswith("W/")
    assert site.get("/archive/feed/1.atom", If_None_Match=etag)[0] == 304
    status, headers, _ = site.get("/archive/feed/3.atom")  # open: may still change
    assert headers["cache-control"] != SEALED_CACHE_CONTROL
    status, headers, body = site.get("/archive/feed/2.json", Accept_Encoding="gzip")
    assert status == 200 and headers["content-type"].startswith("application/feed+json")
    page_json = json.loads(gzip.decompress(body) if headers.get("content-encoding") else body)
    assert page_json["next_url"] == base + "archive/feed/1.json"
    assert page_json["feed_url"] == base + "archive/feed/2.json"

    # A refresh that brings nothing rewrites no feed document (the page and the snapshot
    # say when the sources were fetched); one that seals nothing leaves sealed pages alone.
    def feed_files() -> dict[Path, int]:
        docs = [*out.glob("*.atom"), *out.glob("*.json"), *out.glob("archive/*/*.*")]
        return {p: p.stat().st_mtime_ns for p in docs if p.name != "snapshot.json"}

    mtimes = feed_files()
    # feed and ml (.atom, .json), feed's 3 pages (.atom, .json, .html), ml's 2 pages
    assert len(mtimes) == 2 + 2 + 3 * 3 + 2 * 2
    site.refresh(0, 13)
    assert feed_files() == mtimes
    site.refresh(0, 14)
    assert (out / "archive/feed/1.atom").read_bytes() == first
    status, headers, body = site.get("/archive/feed/1.html")
    assert status == 200 and headers["cache-control"] == SEALED_CACHE_CONTROL
    assert "default-src 'none'" in headers["content-security-policy"]
    assert b'href="2.html"' in body
    assert site.get("/archive/feed/9.atom")[0] == 404
    assert site.get("/archive/../config.toml")[0] == 404
    assert site.get("/archive/feed/0.atom")[0] == 404


def test_an_output_is_served_like_the_main_feed(site: Site) -> None:
    site.refresh(0, 5)
    status, headers, body = site.get("/ml.atom", Accept_Encoding="gzip")
    assert status == 200 and headers["content-encoding"] == "gzip"
    doc = feedparser.parse(gzip.decompress(body))
    assert doc.feed.title == "Machine learning"
    assert [e.title for e in doc.entries] == ["Post 3", "Post 0"]
    assert {link.rel: link.href for link in doc.feed.links}["hub"] == site.hub.url("/hub")
    assert site.get("/ml.atom", If_None_Match=headers["etag"])[0] == 304
    status, headers, body = site.get("/ml.json")
    feed = json.loads(body)
    jsonschema.validate(feed, JSON_FEED_SCHEMA)
    assert feed["hubs"] == [{"type": "WebSub", "url": site.hub.url("/hub")}]
    assert feed["feed_url"] == site.server.url + "ml.json"
    assert site.get("/nope.atom")[0] == 404


def test_the_hub_hears_of_each_changed_feed_and_of_nothing_else(site: Site) -> None:
    base = site.server.url
    site.refresh(0, 2)  # post 0 is the only ML post
    assert sorted(site.pings()) == sorted(
        [base + "feed.atom", base + "feed.json", base + "ml.atom", base + "ml.json"]
    )
    headers = site.hub.requests[0].headers
    assert headers["content-type"] == "application/x-www-form-urlencoded"
    site.refresh(0, 2)
    assert len(site.pings()) == 4  # nothing changed: no ping
    site.refresh(0, 4)  # posts 3 and 4: an ML post too
    assert len(site.pings()) == 8
    site.refresh(0, 5)  # post 5 is Web: the ML feed is unchanged
    assert sorted(site.pings()[8:]) == [base + "feed.atom", base + "feed.json"]


@pytest.mark.parametrize("answer", ["error", "unreachable"])
def test_a_failing_hub_is_a_warning_not_a_failed_refresh(
    site: Site, answer: str, caplog: pytest.LogCaptureFixture
) -> None:
    if answer == "error":
        site.hub.serve("/hub", b"no", status=500)
    else:
        site.hub.close()
    site.upstream.serve("/blog.xml", posts(0, 2))
    with caplog.at_level(logging.WARNING, logger="aggregator.websub"):
        report = refresh(site.config, force=True)
        websub.wait()
    assert report.feed_written and all(r.outcome == "new" for r in report.results)
    warnings = [r.getMessage() for r in caplog.records if r.name == "aggregator.websub"]
    assert len(warnings) == 4
    assert all(site.hub.url("/hub") in w for w in warnings)
    assert ("HTTP 500" if answer == "error" else "cannot connect") in warnings[0]


@needs_shared
def test_every_document_passes_the_w3c_validator(site: Site) -> None:
    site.refresh(0, 13)
    out = site.config.output_dir
    docs = [out / "feed.atom", out / "ml.atom", *sorted((out / "archive").rglob("*.atom"))]
    assert len(docs) == 2 + 3 + 2  # feed and ml, 3 pages of feed, 2 of ml
    for doc in docs:
        assert_valid_atom(doc, site.server.url + str(doc.relative_to(out)))
        assert_valid_json_feed(doc.with_suffix(".json"))
    # The open page of a feed whose entries fill it: empty, still valid, dated by the feed.
    site.refresh(0, 15)
    # The page links to the newest page with entries, not to the empty one.
    assert b'href="archive/feed/3.html"' in (out / "index.html").read_bytes()
    empty = out / "archive" / "feed" / "4.atom"
    assert len(etree.parse(str(empty)).findall(f"{ATOM}entry")) == 0
    assert_valid_atom(empty, site.server.url + "archive/feed/4.atom")
    before = empty.read_bytes()
    site.refresh(0, 15)
    assert empty.read_bytes() == before


def test_a_long_history_sealed_at_once_appears_newest_page_first(site: Site) -> None:
    site.upstream.serve("/blog.xml", posts(0, 16))  # 17 entries: pages 1-3 sealed at once
    refresh(site.config, force=True, emit=False)
    main = outputs.outputs_of(site.config)[0]
    pages = site.config.output_dir / "archive" / "feed"
    with open_store(site.config) as store:
        plan = outputs.seal(store, main)
        written = outputs.write_output(site.config, store, main, plan, {}, T0, missing_pages=1)
        assert written.pages == 4
        assert sorted(p.name for p in pages.glob("*.atom")) == ["1.atom", "3.atom", "4.atom"]
        plan = outputs.seal(store, main)
        written = outputs.write_output(site.config, store, main, plan, {}, T0, missing_pages=1)
    assert (pages / "2.atom").exists()
    assert written.write(site.config.output_dir) == ["feed.json", "feed.atom"]
    ids, _ = walk_atom(site, "/feed.atom")
    assert sorted(ids) == sorted(stored_ids(site.config))


def test_two_writers_at_once_seal_each_page_once(site: Site) -> None:
    """A refresh from cron beside the scheduler's: both write the outputs of one store."""
    site.upstream.serve("/blog.xml", posts(0, 40))
    refresh(site.config, force=True, emit=False)
    errors: list[BaseException] = []

    def write() -> None:
        try:
            with open_store(site.config) as store:
                write_outputs(site.config, store)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=write) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    ids, pages = walk_atom(site, "/feed.atom")
    assert sorted(ids) == sorted(stored_ids(site.config)) and len(ids) == len(set(ids)) == 41
    assert len(pages) == 10
