"""A fast path for the two common feed formats: RSS 2.0 and Atom 1.0, read with lxml.

feedparser stays the reference and the fallback: `parse_fast` returns None for anything it is
not sure to read exactly as feedparser does, and the caller then hands the body to
feedparser. It reads only:

* UTF-8 bodies (no BOM other than UTF-8's, no other declared or served charset; a text/*
  media type needs an explicit charset=utf-8, as RFC 3023 gives text/xml US-ASCII);
* well-formed XML without a DOCTYPE, without xml:base and without a Content-Location;
* `<rss version="2.0">` with items under its channel, or an Atom 1.0 `<feed>`;
* entries whose every child is an element it knows (RSS: title, link, description, guid,
  pubDate, author, category, comments, enclosure, content:encoded, dc:creator, and a few
  that carry nothing read here; Atom: id, title, link, published, updated, author,
  contributor, category, summary, content, rights) with text-only values, Atom text
  constructs of type text or html, dates feedparser's own date parser understands.

Security: the parser never resolves entities, never touches the network, keeps lxml's
default limits (no huge_tree); the caller has already refused DOCTYPEs that declare
entities, and this path refuses every DOCTYPE. The HTML of summaries is passed on
unsanitized: the normalize stage only ever extracts plain text from it.

What the fast path reproduces from feedparser (the differential test checks it): the guid
read as a link when isPermaLink is not "false" (and resolved against the document URL),
Atom ids likewise, the link fix-ups for `&amp;` and stray entity-like sequences, the repair
of UTF-8 read as Latin-1 and of Windows-1252 C1 characters, whitespace stripping, dates
through feedparser's parser.
RSS author strings are read into names as the feedparser path reads them (parse/fields.py).
Where feedparser sanitizes HTML (titles and summaries), the raw HTML differs, but the plain
text the normalize stage extracts from it is the same.
"""

from __future__ import annotations

import contextlib
import re
import threading
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from feedparser.datetimes import _parse_date
from feedparser.html import _cp1252
from feedparser.urls import _urljoin
from lxml import etree

from aggregator.models import ParsedDocument, RawItem
from aggregator.parse.dates import from_struct_time
from aggregator.parse.decode import charset_param, xml_encoding
from aggregator.parse.fields import (
    author_name,
    person,
    text_or_none,
    ttl_seconds,
    unique_names,
)
from aggregator.urls import safe_http_url

__all__ = ["parse_fast"]

ATOM = "{http://www.w3.org/2005/Atom}"
CONTENT = "{http://purl.org/rss/1.0/modules/content/}"
DC = "{http://purl.org/dc/elements/1.1/}"
SY = "{http://purl.org/rss/1.0/modules/syndication/}"
_IGNORED_RSS = frozenset(
    {
        "comments",
        "enclosure",
        "{http://wellformedweb.org/CommentAPI/}commentRss",
        "{http://purl.org/rss/1.0/modules/slash/}comments",
    }
)
_RSS_ITEM = frozenset(
    {"title", "link", "description", "guid", "pubDate", "author", "category", "source"}
    | {CONTENT + "encoded", DC + "creator"}
    | _IGNORED_RSS
)
_ATOM_ENTRY = frozenset(
    ATOM + name
    for name in (
        "id",
        "title",
        "link",
        "published",
        "updated",
        "author",
        "contributor",
        "category",
        "summary",
        "content",
        "rights",
    )
)
_ATOM_REPEATABLE = frozenset(ATOM + n for n in ("link", "author", "contributor", "category"))
_XML_TYPES = frozenset(
    {"application/xml", "application/rss+xml", "application/atom+xml", "text/xml"}
)
_UTF8 = frozenset({"utf-8", "utf8"})
_LINK_ENTITY = re.compile("&([A-Za-z0-9_]+);")
_C1 = re.compile("[\x80-\x9f]")
_TEXT_TYPES = {"text": "text/plain", "html": "text/html", "text/plain": "text/plain"}
_HTML_TYPES = {"text/html"}

_local = threading.local()


class _Unsure(Exception):
    """Something feedparser may read differently: fall back to it."""


def _parser() -> etree.XMLParser:
    parser = getattr(_local, "parser", None)
    if parser is None:
        parser = etree.XMLParser(
            resolve_entities=False,
            no_network=True,
            huge_tree=False,
            load_dtd=False,
            recover=False,
            remove_comments=True,
            remove_pis=True,
        )
        _local.parser = parser
    return parser


def parse_fast(
    body: bytes, *, url: str, headers: Mapping[str, str], max_items: int
) -> tuple[ParsedDocument, int] | None:
    """The document and its number of entries before the cap, or None to use feedparser.

    `headers` have lower-cased names. The caller has refused entity declarations already.
    """
    if not _plain_utf8(body, headers) or b"xml:base" in body or "content-location" in headers:
        return None
    try:
        root = etree.fromstring(body, _parser())
    except (etree.XMLSyntaxError, ValueError):
        return None  # not well-formed: feedparser's lenient reading decides
    if root.getroottree().docinfo.doctype:
        return None
    try:
        if root.tag == "rss" and root.get("version") == "2.0":
            return _rss(root, url, max_items)
        if root.tag == ATOM + "feed":
            return _atom(root, url, max_items)
    except _Unsure:
        return None
    return None


def _plain_utf8(body: bytes, headers: Mapping[str, str]) -> bool:
    content_type = headers.get("content-type", "application/xml")
    media = content_type.split(";")[0].strip().lower()
    if media not in _XML_TYPES:
        return False
    served = charset_param(content_type)
    if served is not None and served.lower() not in _UTF8:
        return False
    if media.startswith("text/") and served is None:
        return False
    head = body.removeprefix(b"\xef\xbb\xbf")
    if not head.lstrip().startswith(b"<"):
        return False  # UTF-16/32, EBCDIC, or garbage before the root
    declared = xml_encoding(head[:1024].decode("latin-1"))
    return declared is None or declared.lower() in _UTF8


# --- values as feedparser leaves them -----------------------------------------------------


def _fix(text: str) -> str:
    """feedparser's last touches on every value of a UTF-8 document."""
    text = text.strip()
    if text.isascii():
        return text
    with contextlib.suppress(UnicodeEncodeError, UnicodeDecodeError):
        text = text.encode("iso-8859-1").decode("utf-8")  # UTF-8 once misread as Latin-1
    if _C1.search(text) is None:
        return text  # translate() walks every character in Python-level lookups: skip it
    return text.translate(_cp1252)


def _value(el: Any) -> str:
    """The text of an element that must hold text only."""
    if len(el):
        raise _Unsure
    return _fix(el.text or "")


def _date(el: Any) -> datetime | None:
    text = _value(el)
    parsed = _parse_date(text)
    if parsed is None:
        if text:
            raise _Unsure  # let feedparser have its say on strange dates
        return None
    return from_struct_time(parsed)


def _join(base: str, uri: str) -> str:
    """feedparser's own way of resolving a link against the document URL."""
    joined: str = _urljoin(base, uri)
    return joined


def _link_fix(link: str) -> str:
    return _LINK_ENTITY.sub(r"&\g<1>", link.replace("&amp;", "&"))


def _text_construct(el: Any) -> tuple[str, str]:
    """An Atom text construct: its value and media type."""
    kind = _TEXT_TYPES.get(el.get("type", "text"))
    if kind is None or el.get("src") is not None:
        raise _Unsure  # xhtml, base64, out-of-line: feedparser's business
    return _value(el), kind


# --- RSS 2.0 --------------------------------------------------------------------------------


def _rss(root: Any, base: str, max_items: int) -> tuple[ParsedDocument, int]:
    channels = [c for c in root if c.tag == "channel"]
    if len(channels) != 1 or any(c.tag == "item" for c in root):
        raise _Unsure
    channel = channels[0]
    title = link = None
    ttl = period = frequency = None
    about = _About()
    items: list[RawItem] = []
    count = 0
    for child in channel:
        tag = child.tag
        if tag == "item":
            if count < max_items:
                items.append(_rss_item(child, base, count))
            count += 1
        elif tag == "title":
            title = _value(child)
        elif tag == "link":
            link = _link_fix(_join(base, _value(child)))
        elif tag == "ttl":
            ttl = _value(child)
        elif tag == "managingEditor":
            about.name = _value(child)  # as written: "email (Name)", "Name <email>", ...
        elif tag == "lastBuildDate":
            about.updated = _date(child)
        elif tag == "pubDate":
            about.published = _date(child)
        elif tag == SY + "updatePeriod":
            period = _value(child)
        elif tag == SY + "updateFrequency":
            frequency = _value(child)
        elif tag in (ATOM + "link", "textInput", "textinput") and child.get("rel") != "self":
            raise _Unsure  # feedparser may take its link for the channel's
    return _document(items, title, link, base, ttl, period, frequency, about), count


def _rss_item(item: Any, base: str, position: int) -> RawItem:
    guid = link = guid_link = None
    title = None
    summary: tuple[str, str] | None = None
    contents: list[tuple[str, str]] = []
    published = updated = None
    authors: list[str] = []
    categories: list[str] = []
    seen: set[str] = set()
    for child in item:
        tag = child.tag
        if tag not in _RSS_ITEM:
            raise _Unsure
        if tag in _IGNORED_RSS:
            continue
        if tag in seen and tag in ("title", "link", "description", "guid", "pubDate"):
            raise _Unsure  # repeats: feedparser's precedence rules are subtle
        seen.add(tag)
        if tag == "title":
            title = _value(child)
        elif tag == "link":
            link = _link_fix(_join(base, _value(child)))
        elif tag == "guid":
            is_link = child.get("isPermaLink", "true") == "true"
            if child.get("ispermalink") is not None:
                raise _Unsure
            guid = _value(child)
            if is_link:
                guid = _join(base, guid)
                guid_link = guid
        elif tag == "description":
            summary = (_value(child), "text/html")
        elif tag == CONTENT + "encoded":
            contents.append((_value(child), "text/html"))
        elif tag == "pubDate":
            published = _date(child)
        elif tag in ("author", DC + "creator"):
            name = author_name(_value(child))
            if name:
                authors.append(name)
        elif tag == "category":
            value = _value(child)
            if value:
                categories.append(value)
        elif tag == "source" and len(child):
            raise _Unsure
    if link is None:
        link = guid_link
    return _item(
        base,
        guid,
        title,
        link,
        contents,
        summary,
        published,
        updated,
        authors,
        categories,
        position,
    )


# --- Atom 1.0 -------------------------------------------------------------------------------


def _atom(root: Any, base: str, max_items: int) -> tuple[ParsedDocument, int]:
    title = link = None
    period = frequency = None
    about = _About()
    inherited: list[str] = []
    items: list[RawItem] = []
    count = 0
    entries = []
    for child in root:
        tag = child.tag
        if tag == ATOM + "entry":
            entries.append(child)
        elif tag == ATOM + "title":
            value, _ = _text_construct(child)
            title = value
        elif tag == ATOM + "link":
            href = _alternate(child, base)
            if href is not None:
                link = href
        elif tag == ATOM + "author":
            name = _atom_author(child)
            if name:
                inherited.append(name)
            if about.name is None and about.email is None:
                about.name, about.email = _atom_person(child)
        elif tag == ATOM + "id":
            about.id = _value(child)
        elif tag == ATOM + "updated":
            about.updated = _date(child)
        elif tag == SY + "updatePeriod":
            period = _value(child)
        elif tag == SY + "updateFrequency":
            frequency = _value(child)
    for entry in entries:
        if count < max_items:
            items.append(_atom_entry(entry, base, count, tuple(inherited)))
        count += 1
    return _document(items, title, link, base, None, period, frequency, about), count


def _alternate(el: Any, base: str) -> str | None:
    """The href of an alternate HTML link, resolved as feedparser does; None otherwise."""
    href = el.get("href")
    if href is None:
        raise _Unsure
    rel = el.get("rel", "alternate")
    kind = el.get("type", "text/html")
    if rel == "alternate" and kind in ("text/html", "application/xhtml+xml"):
        return _join(base, href.strip())
    if rel == "alternate" and kind in ("html", "xhtml", "text"):
        raise _Unsure
    return None


def _atom_author(el: Any) -> str | None:
    name, email = _atom_person(el)
    return name or email


def _atom_person(el: Any) -> tuple[str | None, str | None]:
    name = email = None
    for child in el:
        if child.tag == ATOM + "name":
            name = _value(child)
        elif child.tag == ATOM + "email":
            email = _value(child)
        elif child.tag != ATOM + "uri":
            raise _Unsure
    return name, email


def _atom_entry(entry: Any, base: str, position: int, inherited: tuple[str, ...]) -> RawItem:
    guid = link = id_link = None
    title = None
    summary: tuple[str, str] | None = None
    contents: list[tuple[str, str]] = []
    published = updated = None
    authors: list[str] = []
    categories: list[str] = []
    seen: set[str] = set()
    for child in entry:
        tag = child.tag
        if tag not in _ATOM_ENTRY:
            raise _Unsure
        if tag in seen and tag not in _ATOM_REPEATABLE:
            raise _Unsure
        seen.add(tag)
        if tag == ATOM + "id":
            guid = _join(base, _value(child))
            id_link = guid
        elif tag == ATOM + "title":
            title, _ = _text_construct(child)
        elif tag == ATOM + "link":
            href = _alternate(child, base)
            if href is not None:
                link = href
        elif tag == ATOM + "summary":
            summary = _text_construct(child)
        elif tag == ATOM + "content":
            contents.append(_text_construct(child))
        elif tag == ATOM + "published":
            published = _date(child)
        elif tag == ATOM + "updated":
            updated = _date(child)
        elif tag == ATOM + "author":
            name = _atom_author(child)
            if name:
                authors.append(name)
        elif tag == ATOM + "category":
            term = child.get("term") or child.get("label")
            if term:
                categories.append(term)
    if link is None:
        link = id_link
    return _item(
        base,
        guid,
        title,
        link,
        contents,
        summary,
        published,
        updated,
        authors or list(inherited),
        categories,
        position,
    )


# --- shared -----------------------------------------------------------------------------------


def _item(
    base: str,
    guid: str | None,
    title: str | None,
    link: str | None,
    contents: list[tuple[str, str]],
    summary: tuple[str, str] | None,
    published: datetime | None,
    updated: datetime | None,
    authors: list[str],
    categories: list[str],
    position: int,
) -> RawItem:
    candidates = list(contents)
    if summary is not None and summary[0]:
        candidates.append(summary)
    elif summary is None and contents and contents[0][0]:
        candidates.append(contents[0])  # feedparser copies content into summary
    content, is_html = "", True
    if candidates:
        value, kind = max(candidates, key=lambda candidate: len(candidate[0]))
        content, is_html = value, kind != "text/plain"
    return RawItem(
        guid=text_or_none(guid),
        title=text_or_none(title),
        link=safe_http_url(link, base),
        content=content,
        content_is_html=is_html,
        published=published,
        updated=updated,
        authors=unique_names(authors),
        categories=unique_names(categories),
        position=position,
    )


def _document(
    items: list[RawItem],
    title: str | None,
    link: str | None,
    base: str,
    ttl: str | None,
    period: str | None,
    frequency: str | None,
    about: _About,
) -> ParsedDocument:
    return ParsedDocument(
        kind="feed",
        items=tuple(items),
        title=text_or_none(title),
        link=safe_http_url(link, base),
        ttl_seconds=ttl_seconds(ttl, period, frequency),
        feed_id=text_or_none(about.id),
        author=person(about.name, about.email),
        updated=about.updated or about.published,
    )


class _About:
    """What a feed says about itself, gathered from its top-level elements."""

    def __init__(self) -> None:
        self.id: str | None = None
        self.name: str | None = None
        self.email: str | None = None
        self.updated: datetime | None = None
        self.published: datetime | None = None
