"""The auto-mode corpus (tests/data/autopage): pages in the shapes of common blog engines, each
with the posts a reader expects beside it, and the scoring shared by the suite and
bench/autopage.py.

A found entry matches an expected post by its link. Per layout:

- posts: precision = matched / found, recall = matched / expected;
- titles, links: entries whose title (link) is that of an expected post, over found and over
  expected;
- dates: entries whose date (the day, UTC) is their post's, over the found entries that have
  a date and over the expected posts that have one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aggregator.errors import ParseError
from aggregator.models import Excerpt, ExcerptOptions, ParsedDocument, Source
from aggregator.normalize import normalize_items
from aggregator.parse.page import parse_page

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "tests" / "data" / "autopage"
NOW = datetime(2026, 4, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Layout:
    name: str
    url: str
    html: bytes
    posts: tuple[dict[str, Any], ...]
    description: str
    spec: dict[str, Any] = field(repr=False, default_factory=dict)


def layouts() -> list[Layout]:
    out = []
    for spec_path in sorted(CORPUS.glob("*.json")):
        spec = json.loads(spec_path.read_text(encoding="utf-8"))
        out.append(
            Layout(
                name=spec_path.stem,
                url=spec["url"],
                html=spec_path.with_suffix(".html").read_bytes(),
                posts=tuple(spec["posts"]),
                description=spec["description"],
                spec=spec,
            )
        )
    return out


def read(layout: Layout) -> tuple[ParsedDocument | None, tuple[Excerpt, ...]]:
    """The layout's page read in auto mode and normalized; (None, ()) when nothing is found."""
    try:
        doc = parse_page(
            layout.html,
            url=layout.url,
            headers={"content-type": "text/html; charset=utf-8"},
            source=layout.name,
            select=None,
        )
    except ParseError:
        return None, ()
    source = Source(name=layout.name, url=layout.url, kind="page")
    return doc, normalize_items(doc.items, source=source, now=NOW, options=ExcerptOptions())


@dataclass(frozen=True)
class Ratio:
    right: int
    of: int

    @property
    def value(self) -> float:
        return self.right / self.of if self.of else 1.0

    def __str__(self) -> str:
        return f"{self.value:.2f} ({self.right}/{self.of})"


@dataclass(frozen=True)
class Score:
    layout: str
    found: int
    expected: int
    posts: tuple[Ratio, Ratio]  # precision, recall
    titles: tuple[Ratio, Ratio]
    links: tuple[Ratio, Ratio]
    dates: tuple[Ratio, Ratio]
    strays: tuple[str, ...]  # links of found entries that are no expected post


def _day(moment: datetime | None) -> str | None:
    return moment.astimezone(UTC).strftime("%Y-%m-%d") if moment else None


def score(layout: Layout, excerpts: tuple[Excerpt, ...]) -> Score:
    by_link = {p["link"]: p for p in layout.posts}
    titles = {p["title"] for p in layout.posts}
    matched = {e.link for e in excerpts if e.link in by_link}
    title_hits = [e for e in excerpts if e.title in titles]
    dated = [e for e in excerpts if e.published is not None]
    date_hits = {
        e.link for e in dated if e.link in by_link and _day(e.published) == by_link[e.link]["date"]
    }
    expected_dated = sum(1 for p in layout.posts if p["date"])
    n, m = len(excerpts), len(layout.posts)
    return Score(
        layout=layout.name,
        found=n,
        expected=m,
        posts=(Ratio(sum(e.link in by_link for e in excerpts), n), Ratio(len(matched), m)),
        titles=(Ratio(len(title_hits), n), Ratio(len({e.title for e in title_hits}), m)),
        links=(Ratio(sum(e.link in by_link for e in excerpts), n), Ratio(len(matched), m)),
        dates=(
            Ratio(sum(e.link in date_hits for e in dated), len(dated)),
            Ratio(len(date_hits), expected_dated),
        ),
        strays=tuple(e.link or e.title for e in excerpts if e.link not in by_link),
    )
