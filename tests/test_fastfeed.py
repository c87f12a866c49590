"""The lxml fast path against feedparser, the reference: same records from the same bytes.

Every fixture feed (tests/data/feeds, tests/data/site, examples/) and a slice of the benchmark
workload go through both paths. Where the fast path reads a document, its items must equal
feedparser's field by field, except the raw markup of titles and contents (feedparser
sanitizes it): for those the normalized records, which keep only plain text, must be equal.
"""

from __future__ import annotations

import ast
import json
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from aggregator.errors import ParseError
from aggregator.models import ExcerptOptions, ParsedDocument, Source
from aggregator.normalize import normalize
from aggregator.parse.fastfeed import parse_fast
from aggregator.parse.feed import parse_feed
from tests.helpers import generate

ROOT = Path(__file__).resolve().parent.parent
URL = "https://feeds.example.test/sub/feed.xml"
NOW = datetime(2026, 11, 23, tzinfo=UTC)
SOURCE = Source(name="test", url=URL)


def _fixtures() -> list[object]:
    cases: list[object] = []
    for path in sorted((ROOT / "tests" / "data" / "feeds").glob("*.*")):
        if path.name.endswith(".expected.json") or path.suffix == ".json":
            continue
        request = json.loads(path.with_name(path.stem + ".expected.json").read_text())["request"]
        cases.append(
            pytest.param(path.read_bytes(), request["url"], request["headers"], id=path.stem)
        )
    for folder in ("tests/data/site", "examples"):
        for path in sorted((ROOT / folder).glob("*")):
            if path.suffix in (".rss", ".atom", ".xml"):
                cases.append(pytest.param(path.read_bytes(), URL, {}, id=f"{folder}/{path.name}"))
    for name, body in list(generate(4, 12).items()):
        kind = "application/rss+xml" if name.endswith(".xml") else "application/atom+xml"
        cases.append(pytest.param(body, URL, {"content-type": kind}, id=f"workload{name}"))
    return cases


def _both(body: bytes, url: str, headers: dict[str, str]) -> tuple[ParsedDocument, ParsedDocument]:
    fast = parse_feed(body, url=url, headers=headers, source="test")
    slow = parse_feed(body, url=url, headers=headers, source="test", fast=False)
    return fast, slow


def _assert_same(fast: ParsedDocument, slow: ParsedDocument) -> None:
    assert (fast.title, fast.link, fast.ttl_seconds, fast.warnings) == (
        slow.title,
        slow.link,
        slow.ttl_seconds,
        slow.warnings,
    )
    assert (fast.feed_id, fast.author, fast.updated) == (slow.feed_id, slow.author, slow.updated)
    assert len(fast.items) == len(slow.items)
    options = ExcerptOptions()
    for a, b in zip(fast.items, slow.items, strict=True):
        # Raw markup may differ (feedparser sanitizes it); plain titles must not.
        if "<" not in (b.title or ""):
            assert a.title == b.title
        assert replace(a, title=None, content="") == replace(b, title=None, content="")
        na = normalize(a, source=SOURCE, now=NOW, options=options)
        nb = normalize(b, source=SOURCE, now=NOW, options=options)
        # The HTML kept for full content is raw markup too: sanitized where it is emitted.
        assert (na.html is None) == (nb.html is None)
        assert replace(na, html=None) == replace(nb, html=None)


@pytest.mark.parametrize(("body", "url", "headers"), _fixtures())
def test_fast_path_matches_feedparser(body: bytes, url: str, headers: dict[str, str]) -> None:
    try:
        fast, slow = _both(body, url, headers)
    except ParseError:
        with pytest.raises(ParseError):
            parse_feed(body, url=url, headers=headers, source="test", fast=False)
        return
    _assert_same(fast, slow)


def test_fast_path_reads_the_common_fixtures() -> None:
    """The differential test is not vacuous: the fast path does read these."""
    read = []
    for name in ("rss2_basic.xml", "atom10.xml", "rss2_dup_categories.xml"):
        body = (ROOT / "tests" / "data" / "feeds" / name).read_bytes()
        if parse_fast(body, url=URL, headers={"content-type": "application/xml"}, max_items=500):
            read.append(name)
    for path, body in generate(2, 3).items():
        if parse_fast(body, url=URL, headers={}, max_items=500):
            read.append(path)
    assert len(read) >= 4, read


def _rss(items: str, extra_ns: str = "") -> bytes:
    return (
        f'<?xml version="1.0" encoding="utf-8"?>\n<rss version="2.0"{extra_ns}><channel>'
        f"<title>T</title><link>https://t.example/</link>{items}</channel></rss>"
    ).encode()


QUIRKS = {
    "relative permalink guid becomes the link": _rss(
        "<item><title>a</title><guid>posts/1</guid><description>x</description></item>"
    ),
    "guid not a permalink stays as is": _rss(
        "<item><title>a</title><guid isPermaLink='false'>posts/1</guid></item>"
    ),
    "link beats guid": _rss(
        "<item><guid>https://g.example/1</guid><link>/p?a=1&amp;b=2</link></item>"
    ),
    "author with e-mail": _rss(
        "<item><title>a</title><author>jo@example.org (Jo Ann)</author>"
        "<author>only@example.org</author></item>"
    ),
    "content longer than description": _rss(
        "<item><title>a</title><description>short</description>"
        "<content:encoded><![CDATA[<p>much <b>longer</b> text here</p>]]></content:encoded></item>",
        ' xmlns:content="http://purl.org/rss/1.0/modules/content/"',
    ),
    "mojibake and C1 controls": _rss(
        "<item><title>caf\u00c3\u00a9 \u0093quoted\u0094</title><description>d</description></item>"
    ),
    "odd dates": _rss(
        "<item><title>a</title><pubDate>Tue, 10 Jun 2003 04:00:00 EST</pubDate></item>"
        "<item><title>b</title><pubDate>2003-06-10T04:00:00Z</pubDate></item>"
        "<item><title>c</title><pubDate>not a date</pubDate></item>"
    ),
    "markup in title": _rss("<item><title>AT&amp;T &lt;b&gt;bold&lt;/b&gt;</title></item>"),
    "empty item is dropped": _rss("<item></item><item><title>x</title></item>"),
    "atom id as link and inherited author": (
        b'<feed xmlns="http://www.w3.org/2005/Atom"><title>F</title><author><name>Feed A'
        b"</name></author><entry><id>entry/1</id><title type='html'>&lt;i&gt;t&lt;/i&gt;"
        b"</title><updated>2026-01-02T03:04:05.678+02:00</updated>"
        b"<link rel='enclosure' href='/a.mp3'/><summary type='text'>a &lt; b</summary>"
        b"</entry><entry><id>tag:x,2026:2</id><link href='/two'/>"
        b"<content type='html'>&lt;p&gt;two&lt;/p&gt;</content></entry></feed>"
    ),
}


@pytest.mark.parametrize("name", list(QUIRKS))
def test_feedparser_quirks_are_matched(name: str) -> None:
    body = QUIRKS[name]
    fast, slow = _both(body, URL, {"content-type": "application/xml"})
    _assert_same(fast, slow)


@pytest.mark.parametrize(
    ("body", "headers"),
    [
        (_rss("<item><title>a</title></item>"), {"content-type": "text/html"}),
        (_rss("<item><title>a</title></item>"), {"content-type": "text/xml"}),
        (
            _rss("<item><title>a</title></item>"),
            {"content-type": "application/xml; charset=latin1"},
        ),
        (
            _rss(
                "<item><title>a</title><media:title>b</media:title></item>",
                ' xmlns:media="http://search.yahoo.com/mrss/"',
            ),
            {},
        ),
        (_rss("<item><title>a</title>").replace(b"</channel></rss>", b""), {}),
        (
            b'<?xml version="1.0"?><!DOCTYPE rss SYSTEM "x.dtd"><rss version="2.0"><channel>'
            b"</channel></rss>",
            {},
        ),
        (b'<rss version="0.91"><channel><item><title>a</title></item></channel></rss>', {}),
        (
            b'<feed xmlns="http://www.w3.org/2005/Atom" xml:base="/x/"><entry><id>1</id>'
            b"</entry></feed>",
            {},
        ),
    ],
    ids=[
        "html type",
        "text/xml no charset",
        "latin1",
        "unknown element",
        "not well-formed",
        "doctype",
        "rss 0.91",
        "xml:base",
    ],
)
def test_fast_path_declines_what_it_cannot_vouch_for(body: bytes, headers: dict[str, str]) -> None:
    assert parse_fast(body, url=URL, headers=headers, max_items=500) is None


def _imports(path: Path) -> list[ast.ImportFrom]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [node for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)]


def test_the_fast_path_never_imports_the_feed_parser_back() -> None:
    modules = {node.module for node in _imports(ROOT / "aggregator" / "parse" / "fastfeed.py")}
    assert "aggregator.parse.feed" not in modules
    assert "aggregator.parse.fields" in modules  # what both readers share lives there


def test_no_parser_imports_private_names_of_the_package() -> None:
    for path in sorted((ROOT / "aggregator" / "parse").glob("*.py")):
        for node in _imports(path):
            if (node.module or "").startswith("aggregator"):
                private = [alias.name for alias in node.names if alias.name.startswith("_")]
                assert not private, f"{path.name} imports {private} from {node.module}"
