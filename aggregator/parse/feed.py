"""The feed parser stage: RSS, Atom and JSON Feed bodies become a ParsedDocument.

XML feeds (RSS 0.9x/1.0/2.0, Atom 0.3/1.0) go through feedparser, which is handed the raw
bytes and the response headers so that it alone decides the character encoding. Before
that, a cheap check refuses documents whose DOCTYPE declares entities (XXE, billion laughs).
JSON Feed 1.0/1.1 is read with the json module.

Bozo policy (feedparser's flag for "something was wrong with this document"):

* survivable, recorded in ParsedDocument.warnings:
  - CharacterEncodingOverride: the declared encoding was wrong, another one worked;
  - NonXMLContentType: served with a non-XML media type (text/html, text/plain, ...);
  - CharacterEncodingUnknown, when entries were still found;
  - not well-formed XML (SAXException, UndeclaredNamespace) when feedparser still
    recognised a feed version and read at least one entry with its lenient parser.
* fatal, raised as ParseError:
  - an empty body;
  - a body feedparser recognises no feed version in (HTML, plain text, other XML);
  - not well-formed XML, an unknown encoding or any other problem with no entries found.

A truncated document (not well-formed, its root element never closed) keeps its complete
entries: the entry it stops in is dropped, and the warning says the feed is cut short; with
no complete entry it is an error. An entry with nothing in it (no id, title, link or
content) is dropped with a warning and does not count as an entry found. A real
feed with zero entries and no fatal problem is a valid, empty ParsedDocument.

JSON Feed: invalid JSON, JSON that is not an object, an object without a JSON Feed
`version` (unless served as application/feed+json) and a missing `items` list are fatal;
items that are not objects are skipped with a warning.
"""

from __future__ import annotations

import codecs
import io
import json
import re
import xml.sax
from collections.abc import Mapping
from dataclasses import replace
from typing import Any
from urllib.parse import urljoin

import feedparser
from feedparser.encodings import RE_XML_PI_ENCODING

from aggregator import sandbox
from aggregator.errors import ParseError
from aggregator.models import ParsedDocument, RawItem
from aggregator.parse.dates import from_struct_time, parse_rfc3339
from aggregator.parse.decode import charset_param, repair_charrefs, xml_encoding
from aggregator.parse.fields import (
    author_name,
    person,
    text_or_none,
    ttl_seconds,
    unique_names,
)
from aggregator.parse.sniff import media_type, peek_text, scan_prolog, sniff
from aggregator.urls import safe_http_url

__all__ = ["DEFAULT_MAX_ITEMS", "parse_feed"]

DEFAULT_MAX_ITEMS = 500
JSON_FEED_VERSION_PREFIX = "https://jsonfeed.org/version/"
JSON_MEDIA_TYPES = frozenset({"application/feed+json", "application/json"})

_PROLOG_WINDOW = 64 * 1024  # no honest feed has a longer prolog
_ENTITY_DECL = re.compile(r"<!ENTITY", re.IGNORECASE)
# Well-formedness trouble: feedparser then re-reads the document with its lenient parser.
_NOT_WELL_FORMED = (xml.sax.SAXException, feedparser.UndeclaredNamespace)


def parse_feed(
    body: bytes,
    *,
    url: str,
    headers: Mapping[str, str],
    source: str,
    max_items: int = DEFAULT_MAX_ITEMS,
    time_limit: float | None = None,
    fast: bool = True,
) -> ParsedDocument:
    """Read an RSS, Atom or JSON Feed body; raise ParseError when it is not a usable feed.

    `url` is the document's URL (the base for relative links), `headers` the response
    headers, `source` the source name for error messages; at most `max_items` items are kept.

    With a `time_limit` (seconds), a large XML body (over ISOLATE_BYTES) or one with a DOCTYPE
    is parsed in a child process that is killed when the limit passes (ParseError); small
    ordinary feeds, nearly all of them, are parsed in-process and pay nothing for it.

    With `fast`, plain RSS 2.0 and Atom 1.0 are read by the lxml fast path (parse/fastfeed.py)
    and only the rest by feedparser; `fast=False` always uses feedparser, the reference.
    """
    lowered = {name.lower(): value for name, value in headers.items()}
    content_type = lowered.get("content-type", "")
    if not body.strip().removeprefix(codecs.BOM_UTF8).strip():
        raise ParseError(source, "empty body")
    view = peek_text(body[:_PROLOG_WINDOW]).lstrip()
    if view.startswith("{") or (
        media_type(content_type) in JSON_MEDIA_TYPES and not view.startswith("<")
    ):
        return _parse_json_feed(
            body, url=url, content_type=content_type, source=source, max_items=max_items
        )
    _refuse_entity_declarations(body, content_type, source)
    body, repaired = repair_charrefs(body)
    document = _parse_xml(body, url, lowered, source, max_items, time_limit, fast)
    if repaired:
        warning = (
            f"{repaired} character reference{'s' if repaired > 1 else ''} to no character "
            "(a surrogate, beyond Unicode, a forbidden control) repaired: U+FFFD, dropped, "
            "or the character a surrogate pair spells"
        )
        document = replace(document, warnings=(*document.warnings, warning))
    return document


def _parse_xml(
    body: bytes,
    url: str,
    headers: dict[str, str],
    source: str,
    max_items: int,
    time_limit: float | None,
    fast: bool,
) -> ParsedDocument:
    if fast:
        # Imported here, not at the top: lxml is loaded only once a body is to be parsed.
        from aggregator.parse.fastfeed import parse_fast

        found = parse_fast(body, url=url, headers=headers, max_items=max_items)
        if found is not None:
            return _finish_fast(*found, max_items=max_items)
    if time_limit is not None and needs_isolation(body):
        return _parse_xml_isolated(body, url, headers, source, max_items, time_limit)
    return _parse_xml_feed(body, url=url, headers=headers, source=source, max_items=max_items)


# --- a time limit for large or unusual documents ----------------------------------------------

ISOLATE_BYTES = 256 * 1024  # feedparser reads ~250 KB/s: from here a parse takes ~1 s
_DOCTYPE = re.compile(rb"<!DOCTYPE", re.IGNORECASE)


def needs_isolation(body: bytes) -> bool:
    """Whether a parse of `body` should run under the time limit in a child process."""
    return len(body) > ISOLATE_BYTES or _DOCTYPE.search(body[:_PROLOG_WINDOW]) is not None


def _parse_in_child(
    body: bytes, url: str, headers: dict[str, str], source: str, max_items: int
) -> tuple[str, Any]:
    try:
        doc = _parse_xml_feed(body, url=url, headers=headers, source=source, max_items=max_items)
    except ParseError as exc:
        return ("refused", exc.reason)
    return ("ok", doc)


def _parse_xml_isolated(
    body: bytes,
    url: str,
    headers: dict[str, str],
    source: str,
    max_items: int,
    time_limit: float,
) -> ParsedDocument:
    try:
        status, value = sandbox.run_limited(
            _parse_in_child, body, url, headers, source, max_items, time_limit=time_limit
        )
    except sandbox.TimeLimitExceeded:
        raise ParseError(
            source, f"parsing took longer than {time_limit:g}s ({len(body)} bytes); stopped"
        ) from None
    except sandbox.ChildFailed as exc:
        raise ParseError(source, f"the parser failed: {exc.kind}: {exc.payload[0]}") from None
    if status == "ok" and isinstance(value, ParsedDocument):
        return value
    raise ParseError(source, str(value))


# --- security check ---------------------------------------------------------------------


def _refuse_entity_declarations(body: bytes, content_type: str, source: str) -> None:
    """Raise ParseError when the prolog declares entities (XXE, entity expansion bombs).

    Only the prolog is scanned. When the scan cannot reach a root element (garbage before
    it, or a truncated body) the whole inspected window is searched instead.
    """
    window = body[:_PROLOG_WINDOW]
    for text in _inspection_views(window, content_type):
        prolog = scan_prolog(text)
        if prolog.root is None and prolog.end >= len(text) and len(body) > len(window):
            raise ParseError(source, f"refused: XML prolog longer than {_PROLOG_WINDOW} bytes")
        region = text[: prolog.end] if prolog.root is not None else text
        if _ENTITY_DECL.search(region):
            raise ParseError(
                source, "refused: the DOCTYPE declares entities (possible XXE or entity bomb)"
            )


def _inspection_views(window: bytes, content_type: str) -> list[str]:
    """Text views of the window for the entity check (inspection only, never parsed).

    The byte-pattern view covers ASCII-compatible encodings, UTF-16/32 and EBCDIC. A charset
    declared in the Content-Type or the XML declaration gets its own view as well, because
    feedparser honours it and some (UTF-7, say) can spell "<" without the byte "<". So does
    the encoding pseudo-attribute of any processing instruction that opens the document
    (`<?foo encoding="utf-7"?>`): feedparser reads that one too, with its own pattern.
    """
    views = [peek_text(window)]
    opening = RE_XML_PI_ENCODING.match(views[0].encode("utf-8", errors="replace"))
    labels = (
        charset_param(content_type),
        xml_encoding(views[0]),
        opening.group(1).decode("ascii", errors="replace") if opening else None,
    )
    for label in labels:
        if label is None:
            continue
        try:
            view = window.decode(label, errors="replace")
        except (LookupError, UnicodeError):  # unknown, or not a text encoding
            continue
        if view not in views:
            views.append(view)
    return views


# --- XML feeds through feedparser ----------------------------------------------------------

# feedparser's result is a tree of FeedParserDict (a dict subclass), lists, strings and
# struct_times, untyped. It is read only through the accessors below, which check each value's
# type, and with dict.get, never FeedParserDict.get: that one maps missing keys to others
# (updated → published, description → summary/subtitle), which would blur what the source said.
_Node = Mapping[str, object]


def _field(node: _Node, key: str) -> object:
    return dict.get(node, key) if isinstance(node, dict) else node.get(key)


def _string(node: _Node, key: str) -> str:
    value = _field(node, key)
    return value if isinstance(value, str) else ""


def _nodes(node: _Node, key: str) -> list[_Node]:
    value = _field(node, key)
    if not isinstance(value, list):
        return []
    return [child for child in value if isinstance(child, Mapping)]


def _parse_xml_feed(
    body: bytes, *, url: str, headers: dict[str, str], source: str, max_items: int
) -> ParsedDocument:
    response_headers = dict(headers)
    response_headers.setdefault("content-location", url)  # base for relative links
    # Without a Content-Type feedparser flags every local file as NonXMLContentType and
    # falls back to ISO-8859-1; as XML it follows the XML rules (declaration, else UTF-8).
    response_headers.setdefault("content-type", "application/xml")
    # A BytesIO, never the bytes themselves: feedparser would try a bytes value as a path.
    parsed: _Node = feedparser.parse(
        io.BytesIO(body),
        response_headers=response_headers,
        resolve_relative_uris=True,
        sanitize_html=True,
    )
    version = _string(parsed, "version")
    if not version:  # feedparser found no RSS/Atom root: never "a feed with no entries"
        description = _describe(body, headers.get("content-type", ""))
        raise ParseError(source, f"not a feed ({description})")
    feed = _field(parsed, "feed")
    if not isinstance(feed, Mapping):
        feed = {}
    entries = _nodes(parsed, "entries")
    cut_short = _field(parsed, "bozo") and _cut_short(body)
    if cut_short and entries and _last_entry_open(body):
        entries = entries[:-1]  # the entry the document stops in is not whole: not kept
    atom = version.startswith("atom")
    inherited = _author_names(feed) if atom else ()  # RFC 4287 4.2.1
    items = [
        _entry_item(entry, position, url, inherited, atom=atom)
        for position, entry in enumerate(entries[:max_items])
    ]
    kept = tuple(item for item in items if not _is_blank(item))
    if cut_short:
        if not kept:
            raise ParseError(source, "the feed is cut short (truncated XML) before its first entry")
        warnings = [
            f"the feed is cut short (truncated XML); kept its {len(kept)} complete "
            f"entr{'y' if len(kept) == 1 else 'ies'}"
        ]
    else:
        warnings = _bozo_warnings(parsed, has_entries=bool(kept), source=source)
    if len(kept) < len(items):
        # e.g. the cut-off last entry of a truncated document: nothing to show or identify
        warnings.append(f"skipped {len(items) - len(kept)} empty entries")
    if len(entries) > max_items:
        warnings.append(f"kept the first {max_items} of {len(entries)} entries")
    return ParsedDocument(
        kind="feed",
        items=kept,
        title=text_or_none(_field(feed, "title")),
        link=safe_http_url(text_or_none(_field(feed, "link")), url),
        ttl_seconds=ttl_seconds(
            _field(feed, "ttl"), _field(feed, "sy_updateperiod"), _field(feed, "sy_updatefrequency")
        ),
        warnings=tuple(warnings),
        feed_id=text_or_none(_field(feed, "id")),
        author=_feed_author(feed, atom=version.startswith("atom")),
        updated=from_struct_time(_field(feed, "updated_parsed"))
        or from_struct_time(_field(feed, "published_parsed")),
    )


def _feed_author(feed: _Node, *, atom: bool) -> str | None:
    """The feed's own first author: an Atom author's name and e-mail as fields.person writes
    them; RSS's managingEditor as written (feedparser's split of it can cut the address)."""
    if not atom:
        return text_or_none(_field(feed, "author"))
    for author in _nodes(feed, "authors"):
        found = person(_field(author, "name"), _field(author, "email"))
        if found:
            return found
    return None


_ENTRY_OPEN = re.compile(r"<(?:[A-Za-z_][\w.\-]*:)?(?:item|entry)[\s>/]")
_ENTRY_CLOSE = re.compile(r"</(?:[A-Za-z_][\w.\-]*:)?(?:item|entry)\s*>")


def _cut_short(body: bytes) -> bool:
    """Whether the document stops before its root element closes: a truncated download or a
    half-written file. (The caller asks only about a body that is not well-formed.)"""
    text = peek_text(body)
    root = scan_prolog(text.lstrip()).root
    if root is None:
        return False
    closing = re.compile(rf"</{re.escape(root)}\s*>", re.IGNORECASE)
    return closing.search(text, max(len(text) - 4096, 0)) is None


def _last_entry_open(body: bytes) -> bool:
    """Whether the last <item> or <entry> of a cut-short document never closes."""
    text = peek_text(body)
    opened = [m.start() for m in _ENTRY_OPEN.finditer(text, max(len(text) - 256 * 1024, 0))]
    closed = [m.start() for m in _ENTRY_CLOSE.finditer(text, max(len(text) - 256 * 1024, 0))]
    return bool(opened) and (not closed or opened[-1] > closed[-1])


def _finish_fast(document: ParsedDocument, count: int, *, max_items: int) -> ParsedDocument:
    """The same blank-entry and cap rules as for feedparser's result."""
    kept = tuple(item for item in document.items if not _is_blank(item))
    warnings = []
    if len(kept) < len(document.items):
        warnings.append(f"skipped {len(document.items) - len(kept)} empty entries")
    if count > max_items:
        warnings.append(f"kept the first {max_items} of {count} entries")
    return replace(document, items=kept, warnings=tuple(warnings))


def _bozo_warnings(parsed: _Node, *, has_entries: bool, source: str) -> list[str]:
    """Apply the bozo policy (module docstring): warnings to keep, or ParseError."""
    if not _field(parsed, "bozo"):
        return []
    problem = _field(parsed, "bozo_exception")
    detail = str(problem) or type(problem).__name__
    if isinstance(problem, feedparser.NonXMLContentType):
        return [f"content type: {detail}"]
    if isinstance(problem, feedparser.CharacterEncodingOverride):
        return [f"encoding: {detail}"]
    if isinstance(problem, _NOT_WELL_FORMED):
        if has_entries:
            return [f"not well-formed XML, read leniently: {detail}"]
        raise ParseError(source, f"not well-formed XML and no entries ({detail})")
    if isinstance(problem, feedparser.CharacterEncodingUnknown):
        if has_entries:
            return [f"encoding: {detail}"]
        raise ParseError(source, f"unknown character encoding and no entries ({detail})")
    # Anything else feedparser may report: the same rule as for not well-formed XML.
    if has_entries:
        return [f"feed problem: {detail}"]
    raise ParseError(source, f"unreadable feed and no entries ({detail})")


def _describe(body: bytes, content_type: str) -> str:
    kind = sniff(body, content_type)
    if kind == "page":
        return "looks like HTML"
    root = scan_prolog(peek_text(body[:4096]).lstrip()).root
    if root is not None:
        return f"XML with root element <{root}>"
    return "looks like plain text"


def _entry_item(
    entry: _Node, position: int, base: str, inherited: tuple[str, ...], *, atom: bool
) -> RawItem:
    content, is_html = _entry_content(entry)
    return RawItem(
        guid=text_or_none(_field(entry, "id")),
        title=text_or_none(_field(entry, "title")),
        link=safe_http_url(text_or_none(_field(entry, "link")), base),
        content=content,
        content_is_html=is_html,
        published=from_struct_time(_field(entry, "published_parsed")),
        updated=from_struct_time(_field(entry, "updated_parsed")),
        authors=(_author_names(entry) if atom else _rss_author_names(entry)) or inherited,
        categories=unique_names(
            _field(tag, "term") or _field(tag, "label") for tag in _nodes(entry, "tags")
        ),
        position=position,
    )


def _is_blank(item: RawItem) -> bool:
    return not (item.guid or item.title or item.link or item.content.strip())


def _entry_content(entry: _Node) -> tuple[str, bool]:
    """The longest of content[*] and summary, and whether it is HTML."""
    candidates = [
        (_string(part, "value"), _string(part, "type")) for part in _nodes(entry, "content")
    ]
    summary = _string(entry, "summary")
    if summary:
        detail = _field(entry, "summary_detail")
        kind = _string(detail, "type") if isinstance(detail, Mapping) else ""
        candidates.append((summary, kind))
    if not candidates:
        return "", True
    # max() keeps the first of equal lengths, so full content wins a tie with the summary.
    value, kind = max(candidates, key=lambda candidate: len(candidate[0]))
    return value, kind != "text/plain"


def _author_names(node: _Node) -> tuple[str, ...]:
    authors = _nodes(node, "authors")
    names = unique_names(_field(author, "name") or _field(author, "email") for author in authors)
    if not names:
        names = unique_names([_field(node, "author")])
    return names


def _rss_author_names(entry: _Node) -> tuple[str, ...]:
    """RSS `author` and `dc:creator` names. feedparser splits these strings into name and
    e-mail with a pattern that cuts addresses short ("alice@origin.example (Alice Ng)" gives
    the name "ple (Alice Ng"), so they are split again from the verbatim string it keeps of
    the last one (parse/fields.py). An earlier one is rebuilt from feedparser's parts: its
    name with the leftovers of a cut address ("ple (Alice Ng") dropped."""
    details = _nodes(entry, "authors")
    raw = _string(entry, "author")
    names: list[str | None] = []
    for i, detail in enumerate(details):
        name, email = _field(detail, "name"), _field(detail, "email")
        if i == len(details) - 1 and raw:
            names.append(author_name(raw))
        elif isinstance(name, str) and name:
            if isinstance(email, str) and email and "(" in name:
                name = name.rpartition("(")[2]
            fallback = email if isinstance(email, str) else None
            names.append(author_name(name.strip(" ()<>")) or fallback)
        elif isinstance(email, str):
            names.append(email)
    if not details and raw:
        names.append(author_name(raw))
    return unique_names(names)


# --- JSON Feed ------------------------------------------------------------------------------


def _parse_json_feed(
    body: bytes, *, url: str, content_type: str, source: str, max_items: int
) -> ParsedDocument:
    try:
        document = json.loads(body)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise ParseError(source, f"not a feed (invalid JSON: {exc})") from None
    if not isinstance(document, dict):
        raise ParseError(source, "not a feed (JSON, but not a JSON Feed object)")
    warnings: list[str] = []
    version = document.get("version")
    if not (isinstance(version, str) and version.startswith(JSON_FEED_VERSION_PREFIX)):
        # Only a body served as a JSON Feed gets the benefit of the doubt.
        if media_type(content_type) != "application/feed+json":
            raise ParseError(source, "not a feed (JSON without a JSON Feed version)")
        warnings.append("JSON Feed without a version")
    entries = document.get("items")
    if not isinstance(entries, list):
        raise ParseError(source, "JSON Feed without an items list")
    base = _json_base(document, url)
    inherited = _json_authors(document)
    items: list[RawItem] = []
    for entry in entries:
        if len(items) == max_items:
            warnings.append(f"kept the first {max_items} of {len(entries)} entries")
            break
        if not isinstance(entry, dict):
            warnings.append("skipped a JSON Feed item that is not an object")
            continue
        items.append(_json_item(entry, len(items), base, inherited))
    return ParsedDocument(
        kind="feed",
        items=tuple(items),
        title=text_or_none(document.get("title")),
        link=safe_http_url(text_or_none(document.get("home_page_url")), url),
        warnings=tuple(warnings),
        author=next(iter(inherited), None),
    )


def _json_base(document: Mapping[str, Any], url: str) -> str:
    """Relative item URLs resolve against home_page_url, else feed_url, else the URL."""
    for key in ("home_page_url", "feed_url"):
        value = text_or_none(document.get(key))
        if value:
            return urljoin(url, value)
    return url


def _json_item(
    entry: Mapping[str, Any], position: int, base: str, inherited: tuple[str, ...]
) -> RawItem:
    content, is_html = _json_content(entry)
    identifier = entry.get("id")
    if isinstance(identifier, int | float) and not isinstance(identifier, bool):
        identifier = str(identifier)  # the spec says readers coerce ids to strings
    tags = entry.get("tags")
    return RawItem(
        guid=text_or_none(identifier),
        title=text_or_none(entry.get("title")),
        link=safe_http_url(
            text_or_none(entry.get("url")) or text_or_none(entry.get("external_url")), base
        ),
        content=content,
        content_is_html=is_html,
        published=parse_rfc3339(entry.get("date_published")),
        updated=parse_rfc3339(entry.get("date_modified")),
        authors=_json_authors(entry) or inherited,
        categories=unique_names(tags if isinstance(tags, list) else ()),
        position=position,
    )


def _json_content(entry: Mapping[str, Any]) -> tuple[str, bool]:
    """content_html, else content_text, else the plain-text summary."""
    for key, is_html in (("content_html", True), ("content_text", False), ("summary", False)):
        value = entry.get(key)
        if isinstance(value, str) and value.strip():
            return value, is_html
    return "", True


def _json_authors(node: Mapping[str, Any]) -> tuple[str, ...]:
    """`authors` (1.1) or `author` (1.0): their names."""
    authors = node.get("authors")
    if not isinstance(authors, list):
        authors = [node.get("author")]
    return unique_names(author.get("name") for author in authors if isinstance(author, dict))
