"""Paged archives as pure decisions: every entry in one place, sealed pages never move."""

from __future__ import annotations

import random

import pytest

from aggregator import archive


def ids(n: int, start: int = 0) -> list[str]:
    """`n` ids, newest first (higher numbers are newer)."""
    return [f"e{i}" for i in range(start + n - 1, start - 1, -1)]


def test_a_small_output_has_no_archives() -> None:
    p = archive.plan(ids(3), sealed=0, size=5)
    assert p.current == tuple(ids(3))
    assert (p.new_pages, p.open, p.pages, p.open_page) == ((), (), 0, None)
    assert archive.feed_links(p.pages).prev_archive is None


def test_what_leaves_the_feed_waits_in_the_open_page() -> None:
    p = archive.plan(ids(7), sealed=0, size=5)
    assert p.current == tuple(ids(7)[:5])
    assert p.open == ("e1", "e0") and p.new_pages == () and p.pages == 1


def test_a_full_page_is_sealed_oldest_first_and_an_empty_page_opens() -> None:
    p = archive.plan(ids(10), sealed=0, size=5)
    assert p.new_pages == (("e4", "e3", "e2", "e1", "e0"),)
    assert p.open == () and p.pages == 2 and p.open_page == 2
    # A whole back-catalogue at once: several pages, the oldest entries in page 1.
    p = archive.plan(ids(23), sealed=0, size=5)
    assert [page[-1] for page in p.new_pages] == ["e0", "e5", "e10"]
    assert p.open == ("e17", "e16", "e15") and p.pages == 4


def test_pages_sealed_before_keep_their_numbers() -> None:
    p = archive.plan(ids(6, start=100), sealed=3, size=5)
    assert p.new_pages == () and p.open == ("e100",) and p.pages == 4
    p = archive.plan([], sealed=3, size=5)
    assert p.current == () and p.open == () and p.pages == 4


def test_links_walk_from_the_feed_to_the_oldest_page() -> None:
    assert archive.feed_links(4) == archive.PageLinks(4, None, False)
    assert archive.page_links(4, 4) == archive.PageLinks(3, None, True)
    assert archive.page_links(2, 4) == archive.PageLinks(1, 3, True)
    assert archive.page_links(1, 4) == archive.PageLinks(None, 2, True)
    with pytest.raises(ValueError):
        archive.page_links(5, 4)
    assert archive.page_path("ml", 3, "atom") == "archive/ml/3.atom"


def test_refreshes_never_lose_repeat_or_move_a_sealed_entry() -> None:
    """Entries arrive in bursts (some with dates older than what is stored); after every
    refresh each stored entry is in the feed or in exactly one page, and sealed pages are
    the same as when they were sealed."""
    rng = random.Random(5)
    size = 4
    stored: dict[str, float] = {}  # id -> sort date
    sealed: list[tuple[str, ...]] = []
    for n in range(60):
        for k in range(rng.randint(0, 6)):
            stored[f"r{n}-{k}"] = rng.choice([n, n - rng.randint(0, 30)])
        in_pages = {i for page in sealed for i in page}
        unsealed = sorted((i for i in stored if i not in in_pages), key=lambda i: -stored[i])
        before = list(sealed)
        p = archive.plan(unsealed, len(sealed), size)
        sealed.extend(p.new_pages)
        assert sealed[: len(before)] == before
        assert all(len(page) == size for page in sealed)
        placed = [*p.current, *p.open, *(i for page in sealed for i in page)]
        assert sorted(placed) == sorted(stored)
        assert len(p.current) <= size and len(p.open) < size
        assert p.pages == (len(sealed) + 1 if sealed or p.open else 0)
