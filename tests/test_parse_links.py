"""Every parser passes its links through the one gate, `urls.safe_http_url`: same href, same link.

Each href is written into an RSS 2.0 and an Atom 1.0 document (read by feedparser and by the
lxml fast path), a JSON Feed and an HTML page, escaped as each format requires, and every
reading must give the link listed here.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from html import escape

import pytest

from aggregator.models import SelectRules
from aggregator.parse.fastfeed import parse_fast
from aggregator.parse.feed import parse_feed
from aggregator.parse.page import parse_page
from aggregator.urls import clean_url

BASE = "https://feeds.example.test/sub/feed.xml"
RSS = {"content-type": "application/rss+xml"}
ATOM = {"content-type": "application/atom+xml"}

CASES = [
    ("javascript:alert(1)", None),
    ("JavaScript:alert(1)", None),
    ("data:text/html;base64,PHNjcmlwdD4=", None),
    ("vbscript:msgbox(1)", None),
    ("ftp://files.example/a", None),
    ("javascript&#58;alert(1)", None),  # the entity survives the format's own escaping
    ("java\u200bscript:alert(1)", None),  # a zero-width space hides the scheme from urljoin
    ("javascript%3Aalert(1)", None),
    ("post/1", "https://feeds.example.test/sub/post/1"),
    ("/root", "https://feeds.example.test/root"),
    ("../up", "https://feeds.example.test/up"),
    ("//cdn.example/x", "https://cdn.example/x"),
    ("  https://example.com/a  ", "https://example.com/a"),
    ("https://example.com/a b", "https://example.com/a%20b"),
    ("https://bücher.example/a", "https://bücher.example/a"),  # clean_url makes it IDNA
    ("https://user:pw@example.com/a", "https://user:pw@example.com/a"),  # clean_url drops it
    ("https://feeds.example.test/sub/Talk:Page", "https://feeds.example.test/sub/Talk:Page"),
    ("http://[::1", None),
]


def _rss(href: str) -> bytes:
    return (
        "<?xml version='1.0' encoding='utf-8'?><rss version='2.0'><channel><title>T</title>"
        f"<item><title>x</title><link>{escape(href, quote=False)}</link>"
        "<guid isPermaLink='false'>g</guid></item></channel></rss>"
    ).encode()


def _atom(href: str) -> bytes:
    return (
        "<?xml version='1.0' encoding='utf-8'?><feed xmlns='http://www.w3.org/2005/Atom'>"
        "<title>T</title><id>urn:f</id><entry><id>urn:e</id><title>x</title>"
        f"<link rel='alternate' type='text/html' href='{escape(href)}'/></entry></feed>"
    ).encode()


def _feedparser(
    document: Callable[[str], bytes], headers: dict[str, str]
) -> Callable[[str], object]:
    def read(href: str) -> object:
        body = document(href)
        return parse_feed(body, url=BASE, headers=headers, source="s", fast=False).items[0].link

    return read


def _fast(document: Callable[[str], bytes], headers: dict[str, str]) -> Callable[[str], object]:
    def read(href: str) -> object:
        found = parse_fast(document(href), url=BASE, headers=headers, max_items=10)
        assert found is not None, "the fast path declined the document"
        return found[0].items[0].link

    return read


def _json_feed(href: str) -> object:
    body = json.dumps(
        {"version": "https://jsonfeed.org/version/1.1", "items": [{"id": "1", "url": href}]}
    ).encode()
    return parse_feed(body, url=BASE, headers={}, source="s").items[0].link


def _page(href: str) -> object:
    body = f"<div class='e'><h2><a href='{escape(href)}'>x</a></h2></div>".encode()
    rules = SelectRules(entry="div.e", link="h2 a")
    doc = parse_page(body, url=BASE, headers={}, source="s", select=rules)
    return doc.items[0].link


READERS = {
    "rss-feedparser": _feedparser(_rss, RSS),
    "rss-fast": _fast(_rss, RSS),
    "atom-feedparser": _feedparser(_atom, ATOM),
    "atom-fast": _fast(_atom, ATOM),
    "json-feed": _json_feed,
    "page": _page,
}


@pytest.mark.parametrize("reader", READERS, ids=str)
@pytest.mark.parametrize(("href", "expected"), CASES, ids=[repr(c[0]) for c in CASES])
def test_every_parser_gives_the_same_link(reader: str, href: str, expected: str | None) -> None:
    assert READERS[reader](href) == expected


def test_a_fragment_only_link_is_kept_by_feeds_and_dropped_by_pages() -> None:
    # In a feed it may name a place in a one-page site; on a page it points back at the page.
    for reader in ("rss-feedparser", "rss-fast", "atom-feedparser", "atom-fast", "json-feed"):
        assert READERS[reader]("#v1.2") == BASE + "#v1.2", reader
    assert READERS["page"]("#v1.2") is None


def test_credentials_and_unicode_hosts_leave_in_the_stored_form() -> None:
    assert clean_url(str(READERS["page"]("https://good.example@evil.example/p"))) == (
        "https://evil.example/p"
    )
    assert clean_url(str(READERS["rss-fast"]("https://bücher.example/a"))) == (
        "https://xn--bcher-kva.example/a"
    )
