"""What every store implementation keeps and reads back the same way: the columns of a
source's state and of a copy's content, and a merged entry assembled from its copies."""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from aggregator.errors import StorageError
from aggregator.models import Duplicate, Entry, Excerpt, Placement, Provenance

# SourceState's fields after its name, in the order the stores keep them as columns.
STATE_FIELDS = (
    "url",
    "etag",
    "last_modified",
    "body_hash",
    "effective_url",
    "last_status",
    "last_fetch",
    "last_success",
    "error",
    "error_streak",
    "next_due",
    "redirect_url",
    "redirect_streak",
    "ttl_seconds",
    "feed_title",
    "site_link",
    "page_entry",
    "feed_id",
    "feed_author",
    "feed_updated",
    "warnings",
)
# The columns of a copy that its excerpt's content fills.
CONTENT_COLUMNS = (
    "title",
    "link",
    "link_key",
    "published",
    "updated",
    "authors",
    "categories",
    "excerpt",
    "truncated",
    "fingerprint",
    "content_hash",
    "position",
    "text",
    "html",
    "site_host",
)


def content_values(
    e: Excerpt,
    date: Callable[[datetime | None], object],
    names: Callable[[Sequence[str]], object],
) -> tuple[object, ...]:
    """The values of CONTENT_COLUMNS for an excerpt, its dates and its lists of names (authors,
    categories) as the store keeps them."""
    return (
        e.title,
        e.link,
        e.link_key,
        date(e.published),
        date(e.updated),
        names(e.authors),
        names(e.categories),
        e.excerpt,
        e.truncated,
        e.fingerprint,
        e.content_hash,
        e.position,
        e.text,
        e.html,
        e.site_host,
    )


DATE_STATE_FIELDS = frozenset({"last_fetch", "last_success", "next_due", "feed_updated"})


def entry_from(row: Sequence[Any], copies: Sequence[Sequence[Any]]) -> Entry:
    """A merged entry for output.

    `row` is the entry's (id, first_seen, published, updated, representative copy number);
    `copies` its copies by source and key, each (source, key, rule, score, title, link,
    first_seen, authors, categories, excerpt, copy number, html), dates as datetimes and
    authors and categories as lists. Its title, link, excerpt, source, authors and HTML
    content are its representative's (the item's own words, never another copy's); the other
    copies follow it by source and key, so the entry reads the same whatever order its copies
    arrived in."""
    entry_id, first_seen, published, updated, representative = row
    best = next((c for c in copies if c[10] == representative), copies[0])
    ordered = [best, *(c for c in copies if c is not best)]
    categories: list[str] = []
    seen_cats: set[str] = set()
    for c in ordered:
        for cat in c[8]:
            if cat.casefold() not in seen_cats:
                seen_cats.add(cat.casefold())
                categories.append(cat)
    # The copy that started the entry says "new"; beside another representative it was merged
    # by the rule that joined the representative to it.
    joined_rule, joined_score = best[2], best[3]
    return Entry(
        id=entry_id,
        title=best[4],
        link=best[5] if best[5] else next((c[5] for c in ordered if c[5]), None),
        published=published,
        updated=updated,
        first_seen=first_seen,
        excerpt=best[9],
        authors=tuple(best[7]),
        categories=tuple(categories),
        source=best[0],
        sources=tuple(Provenance(source=c[0], link=c[5], first_seen=c[6]) for c in ordered),
        duplicates=tuple(
            Duplicate(
                source=c[0],
                key=c[1],
                rule=joined_rule if c[2] == "new" else c[2],
                score=joined_score if c[2] == "new" else c[3],
            )
            for c in ordered[1:]
        ),
        html=best[11],
    )


def created_entries(
    new: Iterable[Placement],
    known: Collection[str],
    representatives: Mapping[str, tuple[str, str]],
) -> list[tuple[str, Excerpt, Excerpt]]:
    """The entries that a batch's new copies name and the store lacks, each with its first
    copy (its first sight) and the copy that dates it (its representative, else that first
    one), in the order they are numbered: the top of a page (its newest item) last, so that it
    gets the highest sequence number."""
    first: dict[str, Excerpt] = {}
    by_key: dict[tuple[str, str], Excerpt] = {}
    for p in new:
        by_key[p.excerpt.source, p.excerpt.key] = p.excerpt
        if p.entry_id not in known:
            first.setdefault(p.entry_id, p.excerpt)
    return [
        (entry_id, top, by_key.get(representatives.get(entry_id, (top.source, top.key)), top))
        for entry_id, top in sorted(first.items(), key=lambda item: -item[1].position)
    ]


def gained_entries(
    pairs: Iterable[tuple[str, str]], counted: Collection[tuple[str, str]]
) -> dict[str, int]:
    """Entries gained per source by new copies, as (entry id, source) pairs: a source gains
    an entry when a copy is the first of that entry from that source (`counted` are the pairs
    of the copies stored already)."""
    seen = set(counted)
    gained: dict[str, int] = {}
    for pair in pairs:
        if pair not in seen:
            seen.add(pair)
            gained[pair[1]] = gained.get(pair[1], 0) + 1
    return gained


def check_seal(where: object, output: str, page: int, sealed: int, ids: Sequence[str]) -> None:
    """Raise StorageError unless `page` is the next archive page of `output` (`sealed` are
    sealed) and `ids` names each entry once."""
    if page != sealed + 1:
        raise StorageError(
            f"{where}: archive page {page} of {output!r} cannot be sealed: {sealed} are sealed"
        )
    if len(set(ids)) != len(ids):
        raise StorageError(f"{where}: archive page {page} of {output!r} repeats ids")
