"""An output's whole history as paged feed archives (RFC 5005 section 4): pure decisions.

An output's entries are either in its feed document or in exactly one archive page. Archive
pages are numbered from 1, the oldest. The entries not sealed into a page are read newest first
(`Store.output_entries`); the newest `size` of them are the feed document, the rest wait in the
newest page, which stays open (its entries may still move) until it holds `size` entries: then
it is sealed, its set of entries fixed for good, and the next page opens. Once any page exists,
the open page always exists, even empty, so that each sealed page's `next-archive` link names
a page that is there, and a sealed page never has to change.

A client that walks `prev-archive` from the feed document collects every entry once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

ARCHIVE_DIR = "archive"


@dataclass(frozen=True, slots=True)
class Plan:
    """What an output's documents hold after this refresh."""

    current: tuple[str, ...]  # the feed document's entries, newest first
    sealed: int  # pages sealed before this refresh
    new_pages: tuple[tuple[str, ...], ...]  # pages to seal now, oldest first, from sealed + 1
    open: tuple[str, ...]  # the open (newest) page's entries, newest first
    pages: int  # pages there are after this refresh, the open one included; 0: no archives

    @property
    def open_page(self) -> int | None:
        """The open page's number, when there are archives."""
        return self.pages or None


def plan(unsealed: Sequence[str], sealed: int, size: int) -> Plan:
    """Split the unsealed entries (newest first) into the feed document, the pages to seal now
    (the oldest entries first, `size` to a page) and the open page."""
    if size < 1:
        raise ValueError("an archive page holds at least one entry")
    current = tuple(unsealed[:size])
    rest = list(unsealed[size:])
    new_pages: list[tuple[str, ...]] = []
    while len(rest) >= size:
        new_pages.append(tuple(rest[-size:]))
        del rest[-size:]
    total = sealed + len(new_pages)
    pages = total + 1 if total or rest else 0
    return Plan(current, sealed, tuple(new_pages), tuple(rest), pages)


@dataclass(frozen=True, slots=True)
class PageLinks:
    """The RFC 5005 neighbours of one document, as page numbers (None: no such link)."""

    prev_archive: int | None  # the next older page
    next_archive: int | None  # the next newer page (archive pages only)
    archive: bool  # the document is an archive page (fh:archive, and a `current` link)


def feed_links(pages: int) -> PageLinks:
    """The feed document's links: `prev-archive` to the newest page."""
    return PageLinks(prev_archive=pages or None, next_archive=None, archive=False)


def page_links(page: int, pages: int) -> PageLinks:
    """Page `page`'s links. A sealed page (below `pages`) always has its newer neighbour."""
    if not 1 <= page <= pages:
        raise ValueError(f"no archive page {page} of {pages}")
    return PageLinks(
        prev_archive=page - 1 or None,
        next_archive=page + 1 if page < pages else None,
        archive=True,
    )


def page_path(output: str, page: int, ext: str) -> str:
    """The page's file (and URL path) below the output folder: archive/<output>/<page>.<ext>."""
    return f"{ARCHIVE_DIR}/{output}/{page}.{ext}"
