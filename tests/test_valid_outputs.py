"""The merged outputs, as independent consumers judge them.

The W3C Feed Validator (../shared/validators/feedvalidate.py, run offline) reads feed.atom
after real refreshes of the bundled example, the shared seed captures and the hard feeds of
tests/data/valid (served over HTTP and read as local files), with and without `[feed] author`
and with `[output] content = "full"`: 0 errors, and no warning but DuplicateUpdated (sources
that give no dates) and BadCharacters (U+FFFD a source sent). RELAX NG (atom.rng) agrees.
feed.json is held to JSON Feed 1.1 (aggregator/schema/jsonfeed-1.1.schema.json, plus the rules
a schema cannot state), and no output carries a control character.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

import feedparser
import jsonschema
import pytest

from aggregator.config import Config, load_config
from aggregator.refresh import refresh
from tests.helpers import DATA, ROOT, SHARED, LocalServer, load_snapshot, write_config

HARD = DATA / "valid"
SEEDS = SHARED / "seeds"
VALIDATORS = SHARED / "validators"
JSON_FEED_SCHEMA = ROOT / "aggregator" / "schema" / "jsonfeed-1.1.schema.json"
ALLOWED_WARNINGS = {"DuplicateUpdated", "BadCharacters"}
MEDIA = {
    ".rss": "application/rss+xml",
    ".atom": "application/atom+xml",
    ".json": "application/feed+json",
}
CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")

needs_shared = pytest.mark.skipif(
    not (VALIDATORS / "feedvalidate.py").exists(), reason="../shared/validators is not present"
)


@cache
def _validator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("feedvalidate", VALIDATORS / "feedvalidate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _events(feed: Path, self_url: str) -> list[tuple[str, str, str]]:
    # The validator checks rel="self" against the address it read the feed from.
    events: list[tuple[str, str, str]] = _validator().validate(feed.read_bytes(), self_url)
    return [e for e in events if e[0] != "INFO"]


def assert_valid_atom(feed: Path, self_url: str) -> None:
    problems = [
        e for e in _events(feed, self_url) if e[0] == "ERROR" or e[1] not in ALLOWED_WARNINGS
    ]
    assert not problems, problems
    from lxml import etree

    schema = etree.RelaxNG(etree.parse(str(VALIDATORS / "atom.rng")))
    assert schema.validate(etree.parse(str(feed))), schema.error_log


def assert_valid_json_feed(path: Path) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    jsonschema.validate(doc, json.loads(JSON_FEED_SCHEMA.read_text(encoding="utf-8")))
    # What the schema cannot say: ids unique, dates RFC 3339 with a zone, html not empty.
    ids = [item["id"] for item in doc["items"]]
    assert len(ids) == len(set(ids))
    for item in doc["items"]:
        for key in ("date_published", "date_modified"):
            if key in item:
                assert datetime.fromisoformat(item[key]).tzinfo is not None, item[key]
        assert item.get("content_html", "x").strip() or item.get("content_text", "").strip()
    return doc


def assert_no_control_characters(out: Path) -> None:
    for name in ("feed.atom", "feed.json", "snapshot.json", "index.html"):
        text = (out / name).read_text(encoding="utf-8")
        # JSON may spell a control character as an escape: read the values back.
        values = _strings(json.loads(text)) if name.endswith(".json") else [text]
        for value in values:
            bad = CONTROL.search(value.replace("\n", "").replace("\t", "").replace("\r", ""))
            assert bad is None, (name, value)


def _strings(value: object) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield k
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 3, 5, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def _config(
    tmp_path: Path, link: str, sources: str, *, author: bool = False, content: str = "excerpt"
) -> Config:
    """A config writing to tmp_path/out, with `[feed] author` or without."""
    feed = 'author = "The Editors <editors@merged.example>"' if author else ""
    body = f"""
[feed]
title = "Merged"
link = "{link}"
max_entries = 200
{feed}
[output]
dir = "out"
content = "{content}"
[store]
path = "state/agg.db"
{sources}
"""
    return load_config(write_config(tmp_path, body))


def _hard_config(tmp_path: Path, server: LocalServer, author: bool, content: str) -> Config:
    sources = []
    for path in sorted(HARD.iterdir()):
        if path.suffix in MEDIA:
            server.serve("/" + path.name, path.read_bytes(), MEDIA[path.suffix])
            url = server.url("/" + path.name)
            sources.append(f'[[sources]]\nname = "{path.stem}"\nurl = "{url}"')
            # Named after the served copy, so that the served copy wins the representative's
            # last tie-break (source name) and its atom:source has a self link to check.
            sources.append(f'[[sources]]\nname = "{path.stem}-file"\nurl = "{path}"')
    link = "https://merged.example/news/"
    return _config(tmp_path, link, "\n".join(sources), author=author, content=content)


@needs_shared
@pytest.mark.parametrize(
    ("author", "content"), [(False, "excerpt"), (True, "excerpt"), (False, "full"), (True, "full")]
)
def test_hard_feeds_merge_into_valid_outputs(
    tmp_path: Path, server: LocalServer, author: bool, content: str
) -> None:
    config = _hard_config(tmp_path, server, author, content)
    report = refresh(config, force=True, clock=Clock())
    assert not report.failed, report.failed
    out = config.output_dir
    assert_valid_atom(out / "feed.atom", "https://merged.example/news/feed.atom")
    doc = assert_valid_json_feed(out / "feed.json")
    assert doc["feed_url"] == "https://merged.example/news/feed.json"
    assert doc["home_page_url"] == "https://merged.example/news/"
    assert ("authors" in doc) is author
    assert all(item["authors"] for item in doc["items"])
    assert_no_control_characters(out)
    parsed = feedparser.parse((out / "feed.atom").read_bytes())
    by_title = {e.title: e for e in parsed.entries}
    # The post the planet re-published: its other place is a via link, not a second alternate.
    post = by_title["Consistent hashing in practice"]
    assert [link.rel for link in post.links].count("alternate") == 1
    assert "https://planet.example/r/origin-consistent-hashing" in {
        link.href for link in post.links if link.rel == "via"
    }
    # Its atom:source is the origin feed as it describes itself.
    source = post.source
    assert (source.id, source.title) == ("tag:origin.example,2026:feed", "Origin Engineering")
    assert source.updated == "2026-03-02T10:00:00Z"  # the original copy's own update
    links = {link.rel: link.href for link in source.links}
    assert links == {"self": server.url("/origin.atom"), "alternate": "https://origin.example/"}
    assert (source.author_detail.name, source.author_detail.email) == (
        "Origin Engineering Team",
        "team@origin.example",
    )
    # Author names are names: no markup, no address (a valid one goes to atom:email).
    names = [a.get("name", "") for e in parsed.entries for a in e.get("authors", [])]
    assert "Bob & Co" in names and "Carol Diaz" in names and "Grace Hopper" in names
    assert not [n for n in names if "@" in n or "<" in n or "&amp;" in n]
    if content == "full":
        html = post.content[0].value
        assert "<script" not in html and "onclick" not in html and "<iframe" not in html
        assert "<form" not in html and "style" not in html
        assert 'src="https://origin.example/img/ring.png"' in html
        assert post.summary.startswith("A ring of virtual nodes")
    else:
        # The excerpt is written once: as the summary when there is a link.
        assert "content" not in post and post.summary.startswith("A ring of virtual nodes")


@needs_shared
@pytest.mark.parametrize(
    ("author", "content"), [(False, "excerpt"), (True, "excerpt"), (False, "full")]
)
def test_the_bundled_example_is_valid(tmp_path: Path, author: bool, content: str) -> None:
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    text = (ROOT / "config.toml").read_text(encoding="utf-8")
    if author:
        text = text.replace("[feed]\n", '[feed]\nauthor = "The Editors"\n', 1)
    text = text.replace("[output]\n", f'[output]\ncontent = "{content}"\n', 1)
    (tmp_path / "config.toml").write_text(text, encoding="utf-8")
    config = load_config(tmp_path / "config.toml")
    assert not refresh(config, force=True).failed
    assert_valid_atom(config.output_dir / "feed.atom", config.feed.self_url or "")
    doc = assert_valid_json_feed(config.output_dir / "feed.json")
    assert_no_control_characters(config.output_dir)
    by_source: dict[str, set[str]] = {}
    for item in doc["items"]:
        kind = "content_html" if "content_html" in item else "content_text"
        by_source.setdefault(item["_aggregator"]["source"], set()).add(kind)
    # A page's blocks and a text capture's lines have no HTML of their own: their excerpt.
    assert by_source["home"] == by_source["capture"] == {"content_text"}
    assert ("content_html" in by_source["journal"]) is (content == "full")


@needs_shared
@pytest.mark.skipif(not SEEDS.is_dir(), reason="../shared/seeds is not present")
@pytest.mark.parametrize("author", [False, True])
def test_the_seed_captures_are_valid(tmp_path: Path, server: LocalServer, author: bool) -> None:
    sources = f'[[sources]]\nname = "capture"\nurl = "{server.url("/capture.txt")}"\nkind = "text"'
    config = _config(tmp_path, "https://seeds.test/", sources, author=author)
    clock = Clock()
    for seed in sorted(SEEDS.glob("*.txt")):
        server.serve("/capture.txt", seed.read_bytes(), "text/plain; charset=utf-8")
        clock.now += timedelta(hours=1)
        assert not refresh(config, force=True, clock=clock).failed
        assert_valid_atom(config.output_dir / "feed.atom", "https://seeds.test/feed.atom")
    doc = assert_valid_json_feed(config.output_dir / "feed.json")
    assert doc["feed_url"] == "https://seeds.test/feed.json"


@needs_shared
def test_an_empty_feed_is_dated_by_its_last_fetch(tmp_path: Path) -> None:
    sources = f'[[sources]]\nname = "empty"\nurl = "{HARD / "empty.atom"}"'
    config = _config(tmp_path, "https://empty.test/", sources)
    assert not refresh(config, force=True, clock=Clock()).failed
    feed = config.output_dir / "feed.atom"
    assert "<updated>2026-03-05T09:00:00+00:00</updated>" in feed.read_text(encoding="utf-8")
    assert_valid_atom(feed, "https://empty.test/feed.atom")


@pytest.mark.parametrize(
    ("name", "media"), [("hostile.rss", MEDIA[".rss"]), ("hostile-json.json", MEDIA[".json"])]
)
def test_a_hostile_feed_leaves_no_control_character_in_any_output(
    tmp_path: Path, server: LocalServer, name: str, media: str
) -> None:
    server.serve("/" + name, (HARD / name).read_bytes(), media)
    sources = (
        f'[[sources]]\nname = "hostile"\nurl = "{server.url("/" + name)}"\n'
        f'[[sources]]\nname = "hostile-file"\nurl = "{HARD / name}"'
    )
    config = _config(tmp_path, "https://hostile.test/", sources, content="full")
    assert not refresh(config, force=True, clock=Clock()).failed
    snapshot = load_snapshot(config.output_dir / "snapshot.json")
    # The copy from the second source is a duplicate, listed by its key: the guid, whose
    # control characters JSON can carry into the store, comes out clean.
    keys = [d["key"] for e in snapshot["entries"] for d in e["duplicates"]]
    assert keys and all(k.startswith("guid:guid") for k in keys)
    assert_no_control_characters(config.output_dir)
    assert "Bell" in (config.output_dir / "feed.atom").read_text(encoding="utf-8")


def test_scrub_cleans_every_string_of_a_record() -> None:
    from aggregator.emit import clean_field, scrub
    from aggregator.models import Duplicate

    dup = scrub(Duplicate(source="s\x00", key="guid:a\x01b\x0bc\x9b", rule="guid"))
    assert (dup.source, dup.key) == ("s", "guid:abc")
    assert clean_field("a\tb\nc") == "a b c"
    assert clean_field("<p>a\nb</p>\x00", multiline=True) == "<p>a\nb</p>"
    assert clean_field("lone \ud800 half") == "lone \ufffd half"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Alice Ng", ("Alice Ng", None)),
        ("alice@origin.example (Alice Ng)", ("Alice Ng", "alice@origin.example")),
        ("Alice Ng <alice@origin.example>", ("Alice Ng", "alice@origin.example")),
        ("Alice Ng alice@origin.example", ("Alice Ng", "alice@origin.example")),
        ("alice@origin.example", ("alice", "alice@origin.example")),
        ("<b>Bob &amp; Co</b>", ("Bob & Co", None)),
        ("Frank <i>Ocean</i>", ("Frank Ocean", None)),
        ("  林桥  ", ("林桥", None)),
        ("bob@localhost (Bob)", ("Bob", None)),  # not an address the validator accepts
        ("()", None),
    ],
)
def test_an_author_becomes_a_clean_name_and_a_valid_address(
    raw: str, expected: tuple[str, str | None] | None
) -> None:
    from aggregator.emit import person

    assert person(raw) == expected


def test_a_source_that_says_nothing_of_itself_still_gets_a_complete_atom_source() -> None:
    from aggregator.emit import FeedMeta, render_atom
    from aggregator.models import Entry, Provenance, Source

    when = datetime(2026, 3, 1, tzinfo=UTC)
    entry = Entry(
        id="urn:uuid:00000000-0000-4000-8000-000000000001",
        title="A line of a capture",
        link=None,
        published=None,
        updated=when,
        first_seen=when,
        excerpt="A line of a capture",
        authors=(),
        categories=(),
        source="capture",
        sources=(Provenance("capture", None, when),),
    )
    meta = FeedMeta(title="M", link="https://m.test/", id="https://m.test/")
    local = Source(name="capture", url="/srv/captures/latest.txt", kind="text")
    atom = render_atom(meta, [entry], {"capture": local})
    (got,) = feedparser.parse(atom).entries
    # No path is published: the id is minted from the feed's id and the source's name.
    assert got.source.id.startswith("urn:uuid:") and "srv" not in str(got.source)
    assert (got.source.title, got.source.author) == ("capture", "capture")
    assert got.source.updated == "2026-03-01T00:00:00Z" and not got.source.get("links")
    # Without a link, the excerpt is the content, and is not repeated as a summary.
    assert got.content[0].value == "A line of a capture" and b"<summary" not in atom


def test_a_feed_restating_when_it_was_built_leaves_the_merged_feed_as_it_was(
    tmp_path: Path, server: LocalServer
) -> None:
    body = (HARD / "planet.rss").read_text(encoding="utf-8")
    built = "<lastBuildDate>Tue, 03 Mar 2026 12:00:00 GMT</lastBuildDate>"
    assert built in body
    server.serve("/planet.rss", body, MEDIA[".rss"])
    sources = f'[[sources]]\nname = "planet"\nurl = "{server.url("/planet.rss")}"'
    config = _config(tmp_path, "https://planet-merged.test/", sources)
    clock = Clock()
    first = refresh(config, force=True, clock=clock)
    assert first.feed_written
    atom = (config.output_dir / "feed.atom").read_bytes()
    # The same items, the feed saying it was built again later: a new body, read anew.
    rebuilt = body.replace(built, "<lastBuildDate>Thu, 05 Mar 2026 08:00:00 GMT</lastBuildDate>")
    server.serve("/planet.rss", rebuilt, MEDIA[".rss"])
    clock.now += timedelta(hours=1)
    again = refresh(config, force=True, clock=clock)
    assert [r.outcome for r in again.results] == ["unchanged"]
    assert not again.feed_written
    assert (config.output_dir / "feed.atom").read_bytes() == atom
