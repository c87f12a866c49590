"""A fetched body into a document: its kind (as configured, else sniffed, once), then the
parser of that kind. A page without entries that advertises a feed is read through that feed;
a page with a `next` selector (configured, or found by auto mode on the first page) through
its further pages, each fetched with `get` and read with the first page's rules.

The collect stage imports this with the first body it has to read, so that a refresh that
finds nothing new never loads the parsers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from aggregator.errors import SourceError
from aggregator.models import (
    FetchResult,
    ParsedDocument,
    RawItem,
    SelectRules,
    Source,
    SourceKind,
)
from aggregator.parse.feed import needs_isolation, parse_feed
from aggregator.parse.page import find_next_pages, parse_page
from aggregator.parse.sniff import sniff
from aggregator.parse.text import parse_text

__all__ = ["Get", "document", "kind_of", "needs_isolation"]

# A further request of the same source: (URL) -> response.
Get = Callable[[str], FetchResult]


def kind_of(source: Source, first: FetchResult) -> SourceKind:
    """How the body is read: the configured kind, else what the body looks like."""
    return source.kind if source.kind != "auto" else sniff(first.body, first.content_type)


def document(
    source: Source,
    kind: SourceKind,
    first: FetchResult,
    get: Get,
    *,
    time_limit: float,
    previous_entry: str | None = None,
) -> ParsedDocument:
    """The document in the first response, by its kind: a feed, a text capture, or a page
    (whose advertised feed is read instead when it has no entries, or whose further pages
    are followed). `time_limit` bounds a feed parse that needs isolation; `previous_entry` is
    the entry selector auto mode settled on for the page last time (SourceState.page_entry)."""
    if kind == "feed":
        return _feed(source, first, time_limit)
    if kind == "text":
        return parse_text(
            first.body,
            url=first.final_url,
            headers=first.headers,
            source=source.name,
            header_lines=source.header_lines,
            max_items=source.max_entries,
        )
    page = parse_page(
        first.body,
        url=first.final_url,
        headers=first.headers,
        source=source.name,
        select=source.select,
        max_items=source.max_entries,
        previous_entry=previous_entry,
        # A page source is read from the page; sniffed as a page, it is read through its feed.
        feed_first=source.kind != "page",
    )
    if page.feed_url and not page.items:
        # The page advertises a feed and has no selectors: read the feed instead.
        return _feed(source, get(page.feed_url), time_limit)
    rules = page.auto_select or source.select
    if rules is None or not rules.next:
        return page
    return _follow_pages(source, rules, first, page, get)


def _feed(source: Source, response: FetchResult, time_limit: float) -> ParsedDocument:
    return parse_feed(
        response.body,
        url=response.final_url,
        headers=response.headers,
        source=source.name,
        max_items=source.max_entries,
        time_limit=time_limit,
    )


def _follow_pages(
    source: Source, rules: SelectRules, first: FetchResult, document: ParsedDocument, get: Get
) -> ParsedDocument:
    """The first page's items and those of the pages its `next` links lead to, each page read
    once with `rules`, up to `max_pages` pages and the source's max_entries."""
    items: list[RawItem] = list(document.items)
    warnings = list(document.warnings)
    visited = {first.final_url, first.url}
    pending = list(
        find_next_pages(
            first.body,
            url=first.final_url,
            headers=first.headers,
            select=rules,
        )
    )
    pages = 1
    while pending and pages < rules.max_pages and len(items) < source.max_entries:
        url = pending.pop(0)
        if url in visited:
            continue
        visited.add(url)
        try:
            res = get(url)
            doc = parse_page(
                res.body,
                url=res.final_url,
                headers=res.headers,
                source=source.name,
                select=rules,
                max_items=source.max_entries - len(items),
                position_start=len(items),
                complete=False,
            )
        except SourceError as exc:
            # A later page failing keeps what the first pages gave.
            warnings.append(f"page {url}: {exc.reason}")
            continue
        pages += 1
        items.extend(doc.items)
        pending.extend(
            u
            for u in find_next_pages(
                res.body,
                url=res.final_url,
                headers=res.headers,
                select=rules,
            )
            if u not in visited
        )
    return replace(document, items=tuple(items), warnings=tuple(warnings))
