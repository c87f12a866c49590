"""Every merged entry in its original's words, whatever order its copies arrive in.

Five sources carry copies of the same two posts, served by a real local server: the original
blog (RSS, its author as "email (Name)"), a planet that republishes it later under a prefixed
title with its editors as author, a digest that truncates it, a social account whose link
carries tracking parameters, and a mirror of the original site (Atom, a feed-level author,
summaries only). Every order of the five (5! = 120) is refreshed into a fresh store, and
every order gives byte-identical entries, snapshot entries and feed.atom.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import feedparser
import pytest

from aggregator.config import load_config
from aggregator.models import Entry
from aggregator.refresh import refresh
from aggregator.store import open_store
from tests.helpers import LocalServer, write_config

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
LINK = "https://origin.example/posts/consistent-hashing"
LINK_2 = "https://origin.example/posts/rendezvous-hashing"
TITLE = "Consistent hashing in practice"
TITLE_2 = "Rendezvous hashing, briefly"
BODY = (
    "Consistent hashing maps keys and servers onto one ring, so that adding a server moves only "
    "the keys between it and its neighbour. We measured how evenly three hundred virtual nodes "
    "spread load over twelve caches, and what a failed cache costs the others."
)
BODY_2 = (
    "Rendezvous hashing gives every key a score per server and picks the highest; nothing "
    "moves but the keys of a server that leaves. It needs no ring and no virtual nodes, and "
    "with a few dozen servers its cost per look-up does not matter."
)
PUB = "Tue, 17 Nov 2026 09:00:00 +0000"
PUB_2 = "Mon, 09 Nov 2026 09:00:00 +0000"
REPUB = "Wed, 18 Nov 2026 07:30:00 +0000"


def _rss(home: str, items: str, channel: str = "") -> str:
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n'
        '<rss version="2.0" xmlns:dc="http://purl.org/dc/elements/1.1/"><channel>'
        f"<title>{home}</title><link>{home}</link>{channel}{items}</channel></rss>"
    )


def _item(guid: str, title: str, link: str, body: str, date: str, author: str = "") -> str:
    return (
        f"<item><guid isPermaLink='false'>{guid}</guid><title>{title}</title>"
        f"<link>{link}</link><pubDate>{date}</pubDate>{author}"
        f"<description>{body}</description></item>"
    )


FEEDS = {
    # The original: its own site is the host of the post's link.
    "origin": _rss(
        "https://origin.example/",
        _item("o-1", TITLE, LINK, BODY, PUB, "<author>alice@origin.example (Alice Ng)</author>")
        + _item("o-2", TITLE_2, LINK_2, BODY_2, PUB_2, "<dc:creator>Alice Ng</dc:creator>"),
    ),
    # A planet: prefixed titles, its editors as author, republished a day later.
    "planet": _rss(
        "https://planet.example/",
        _item(
            "p-1",
            f"Origin Engineering: {TITLE}",
            LINK,
            BODY,
            REPUB,
            "<dc:creator>Planet Editors</dc:creator>",
        )
        + _item(
            "p-2",
            f"Origin Engineering: {TITLE_2}",
            LINK_2,
            BODY_2,
            REPUB,
            "<dc:creator>Planet Editors</dc:creator>",
        ),
        "<managingEditor>editors@planet.example (Planet Editors)</managingEditor>",
    ),
    # A digest: the text cut short, the original's date.
    "digest": _rss(
        "https://digest.example/",
        _item("d-1", TITLE, LINK, BODY[:140] + "...", PUB, "<author>Digest Bot</author>"),
    ),
    # A social account: the link with tracking parameters, no author.
    "social": _rss(
        "https://social.example/",
        _item("s-1", TITLE, LINK + "?utm_source=social&amp;utm_medium=feed", BODY, PUB),
    ),
}
# The original's mirror: the same site (www.), summaries only, a feed-level author.
FEEDS["mirror"] = (
    '<?xml version="1.0" encoding="utf-8"?>\n<feed xmlns="http://www.w3.org/2005/Atom">'
    "<title>Origin mirror</title><id>https://www.origin.example/</id>"
    '<link rel="alternate" href="https://www.origin.example/"/>'
    "<updated>2026-11-17T09:00:00Z</updated><author><name>Origin Team</name></author>"
    f'<entry><id>m-1</id><title>{TITLE}</title><link rel="alternate" href="{LINK}"/>'
    "<published>2026-11-17T09:00:00Z</published><updated>2026-11-17T09:00:00Z</updated>"
    f"<summary>{BODY[:100]}...</summary></entry></feed>"
)
ORDERS = list(itertools.permutations(sorted(FEEDS)))


@pytest.fixture(scope="module")
def served() -> Iterator[dict[str, str]]:
    server = LocalServer()
    try:
        yield {
            name: server.serve(f"/{name}.xml", body, "application/rss+xml")
            for name, body in FEEDS.items()
        }
    finally:
        server.close()


def _config(tmp_path: Path, urls: dict[str, str], order: tuple[str, ...]) -> Path:
    sources = "".join(f'[[sources]]\nname = "{n}"\nurl = "{urls[n]}"\n' for n in order)
    tmp_path.mkdir(parents=True, exist_ok=True)
    return write_config(
        tmp_path,
        '[feed]\ntitle = "Merged"\nlink = "https://merged.example/"\n'
        '[output]\ndir = "out"\n[store]\npath = "agg.db"\n' + sources,
    )


def _run(
    tmp_path: Path, urls: dict[str, str], order: tuple[str, ...], *, one_by_one: bool
) -> tuple[list[Entry], list[Any], bytes]:
    config = load_config(_config(tmp_path, urls, order))
    if one_by_one:  # each source in a refresh of its own, in this order, at one moment
        for name in order:
            refresh(config, names=(name,), clock=lambda: NOW)
    else:  # all in one refresh: placed in config order
        refresh(config, force=True, clock=lambda: NOW)
    with open_store(config) as store:
        entries = store.latest(50)
    snapshot = json.loads((config.output_dir / "snapshot.json").read_text(encoding="utf-8"))
    atom = (config.output_dir / "feed.atom").read_bytes()
    return entries, snapshot["entries"], atom


def test_every_order_gives_the_same_entries_and_feed(
    tmp_path: Path, served: dict[str, str]
) -> None:
    assert len(ORDERS) == 120
    first = _run(tmp_path / "first", served, ORDERS[0], one_by_one=False)
    entries, snap, atom = first
    # The original's words: its title, link, author and date, from its own copy.
    post, post_2 = entries
    assert (post.title, post.link, post.source) == (TITLE, LINK, "origin")
    assert post.authors == ("Alice Ng",)
    assert post.published == datetime(2026, 11, 17, 9, 0, tzinfo=UTC)
    assert [p.source for p in post.sources] == ["origin", "digest", "mirror", "planet", "social"]
    assert {d.rule for d in post.duplicates} == {"link"}
    assert (post_2.title, post_2.source, post_2.authors) == (TITLE_2, "origin", ("Alice Ng",))
    parsed = feedparser.parse(atom)
    assert [e.title for e in parsed.entries] == [TITLE, TITLE_2]
    assert "Planet Editors" not in atom.decode() and "Origin Team" not in atom.decode()
    for i, order in enumerate(ORDERS[1:], 1):
        again = _run(tmp_path / str(i), served, order, one_by_one=False)
        assert again[0] == entries, order
        assert again[1] == snap, order
        assert again[2] == atom, order


@pytest.mark.parametrize("order", ORDERS[::7], ids="-".join)
def test_sources_refreshed_one_by_one_give_the_same_feed(
    tmp_path: Path, served: dict[str, str], order: tuple[str, ...]
) -> None:
    reference = _run(tmp_path / "reference", served, ORDERS[0], one_by_one=False)
    assert _run(tmp_path / "run", served, order, one_by_one=True) == reference


def test_a_better_copy_seen_later_gives_its_words_but_keeps_the_id(
    tmp_path: Path, served: dict[str, str]
) -> None:
    """An id, once out, never changes: the planet's copy, first seen a day earlier, named the
    entry; the original's copy, seen later, gives it its words."""
    config = load_config(_config(tmp_path, served, ("planet", "origin")))
    refresh(config, names=("planet",), clock=lambda: NOW - timedelta(days=1))
    with open_store(config) as store:
        before = {e.link: e for e in store.latest(10)}
    assert before[LINK].title == f"Origin Engineering: {TITLE}"
    refresh(config, names=("origin",), clock=lambda: NOW)
    with open_store(config) as store:
        after = {e.link: e for e in store.latest(10)}
    assert after[LINK].id == before[LINK].id
    assert (after[LINK].title, after[LINK].authors) == (TITLE, ("Alice Ng",))
    assert after[LINK].published == datetime(2026, 11, 17, 9, 0, tzinfo=UTC)
