"""The normalize stage: RawItem -> Excerpt.

Table-driven cases live in tests/data/normalize/*.json, one case a file:

    {"description": "...",
     "source": {Source fields, optional; default name "test"},
     "options": {ExcerptOptions fields, optional},
     "now": "ISO datetime",
     "item": {RawItem fields; datetimes as ISO strings, naive when without offset},
     "expected": {Excerpt fields to check; datetimes as ISO strings or null;
                  a value {"prefix": "..."} checks only the start of a string}}
"""

from __future__ import annotations

import json
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from aggregator.models import Excerpt, ExcerptOptions, RawItem, Source
from aggregator.normalize import FOLDED_TEXT_LIMIT, mint_id, normalize
from aggregator.textutil import fold

CASES = Path(__file__).resolve().parent / "data" / "normalize"
NOW = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)
SOURCE = Source(name="test", url="https://example.com/feed")
OPTIONS = ExcerptOptions()
DATE_FIELDS = ("published", "updated")


def _date(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def _item(fields: dict[str, Any]) -> RawItem:
    fields = dict(fields)
    for name in DATE_FIELDS:
        if name in fields:
            fields[name] = _date(fields[name])
    for name in ("authors", "categories"):
        if name in fields:
            fields[name] = tuple(fields[name])
    return RawItem(**fields)


def _shown(value: Any) -> Any:
    """An Excerpt field in the form the JSON files use."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, tuple):
        return list(value)
    return value


def _case_files() -> list[Path]:
    return sorted(CASES.glob("*.json"))


def test_case_folder_is_not_empty() -> None:
    assert len(_case_files()) >= 20


@pytest.mark.parametrize("path", _case_files(), ids=lambda p: p.stem)
def test_normalize_case(path: Path) -> None:
    case = json.loads(path.read_text(encoding="utf-8"))
    source = Source(**{"name": "test", "url": "https://example.com/feed", **case.get("source", {})})
    options = ExcerptOptions(**case.get("options", {}))
    now = datetime.fromisoformat(case["now"])
    excerpt = normalize(_item(case["item"]), source=source, now=now, options=options)
    for name, expected in case["expected"].items():
        actual = _shown(getattr(excerpt, name))
        if isinstance(expected, dict) and "prefix" in expected:
            assert actual.startswith(expected["prefix"]), (name, actual)
        else:
            assert actual == expected, (name, case["description"])
    _check_invariants(excerpt, options)


def _check_invariants(excerpt: Excerpt, options: ExcerptOptions) -> None:
    assert excerpt.title
    assert excerpt.first_seen.tzinfo is not None
    assert len(excerpt.excerpt) <= options.max_chars + len(options.ellipsis)
    assert excerpt.id == mint_id(excerpt.source, excerpt.key, excerpt.published, excerpt.first_seen)
    assert len(excerpt.fingerprint) == 32
    assert len(excerpt.content_hash) == 32
    assert len(excerpt.text) <= FOLDED_TEXT_LIMIT
    for moment in (excerpt.published, excerpt.updated):
        assert moment is None or moment.utcoffset() == timedelta(0)


def run(item: RawItem, source: Source = SOURCE, options: ExcerptOptions = OPTIONS) -> Excerpt:
    return normalize(item, source=source, now=NOW, options=options)


def raw(**fields: Any) -> RawItem:
    base: dict[str, Any] = {"guid": None, "title": "Title", "link": None, "content": "Body"}
    return RawItem(**{**base, **fields})


# --- cutting ---------------------------------------------------------------------------------


def test_cjk_cut_bound() -> None:
    content = "<p>" + "这是一个没有空格的中文句子" * 50 + "</p>"
    excerpt = run(raw(content=content))
    assert excerpt.truncated
    assert excerpt.excerpt.endswith("...")
    assert len(excerpt.excerpt) <= OPTIONS.max_chars + 3


def test_latin_cut_at_word_boundary() -> None:
    words = " ".join(f"word{i}" for i in range(200))
    excerpt = run(raw(content=words))
    body = excerpt.excerpt.removesuffix("...")
    assert excerpt.truncated
    assert (words + " ").startswith(body + " ")  # ends on a whole word


def test_no_ellipsis_when_nothing_was_cut() -> None:
    excerpt = run(raw(content="<p>Short.</p>"))
    assert excerpt.excerpt == "Short."
    assert not excerpt.truncated


# --- links -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "href",
    [
        "javascript:alert(1)",
        " JAVASCRIPT:alert(1)",
        "java\nscript:alert(1)",
        "java\x00script:alert(1)",
        "javascript&#58;alert(1)",
        "&#x6A;avascript:alert(1)",
        "vbscript:x",
        "data:text/html,x",
    ],
)
def test_unsafe_link_is_dropped(href: str) -> None:
    excerpt = run(raw(link=href))
    assert excerpt.link is None
    assert excerpt.link_key is None
    assert excerpt.key.startswith("text:")


def test_tracking_removed_host_folded_and_https_key() -> None:
    excerpt = run(raw(link="http://BLOG.Example.com/a/?utm_source=rss&fbclid=x&p=2#top"))
    assert excerpt.link == "http://blog.example.com/a/?p=2"
    assert excerpt.link_key == "https://blog.example.com/a?p=2"
    assert excerpt.key == "link:https://blog.example.com/a?p=2"


def test_http_and_https_copies_share_the_key() -> None:
    one = run(raw(link="http://example.com/post/"))
    two = run(raw(link="https://example.com/post?utm_medium=feed"))
    assert one.key == two.key
    assert one.id == two.id


# --- dates -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("published", "expected"),
    [
        (datetime(1994, 12, 31, tzinfo=UTC), None),
        (datetime(1995, 1, 1, tzinfo=UTC), datetime(1995, 1, 1, tzinfo=UTC)),
        (NOW + timedelta(hours=23), NOW + timedelta(hours=23)),
        (NOW + timedelta(days=1, seconds=1), None),
        (datetime(2024, 5, 1, 8, 0), datetime(2024, 5, 1, 8, 0, tzinfo=UTC)),  # naive: UTC
        (
            datetime(2024, 5, 1, 8, 0, tzinfo=UTC).astimezone(
                datetime.now(UTC).astimezone().tzinfo
            ),
            datetime(2024, 5, 1, 8, 0, tzinfo=UTC),
        ),
    ],
)
def test_dates(published: datetime, expected: datetime | None) -> None:
    excerpt = run(raw(published=published, updated=published))
    assert excerpt.published == expected
    assert excerpt.updated == expected
    assert excerpt.first_seen == NOW
    if expected is not None:
        assert excerpt.published is not None and excerpt.published.tzinfo == UTC


def test_sort_date_falls_back_to_first_seen() -> None:
    excerpt = run(raw(published=datetime(1970, 1, 1, tzinfo=UTC)))
    assert excerpt.sort_date == NOW


# --- titles and cleaning ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "title"),
    [
        ("<p>Big news today. More below.</p>", "Big news today"),
        ("<p>Is it done? Yes.</p>", "Is it done?"),
        ("<p>今天发布了新版本。详情如下</p>", "今天发布了新版本"),
        ("<p>真的吗！是的</p>", "真的吗！"),
        ("", "(untitled)"),
    ],
)
def test_title_from_first_sentence(content: str, title: str) -> None:
    assert run(raw(title=None, content=content)).title == title
    assert run(raw(title="", content=content)).title == title


def test_nul_bidi_and_lone_surrogate_removed() -> None:
    dirty = "A\x00B\u202eC\u2066D\u2069\ud800E\u200bF"
    excerpt = run(raw(title=dirty, content=f"<p>{dirty}</p>", content_is_html=True))
    assert excerpt.title == "ABCDEF"
    assert excerpt.excerpt == "ABCDEF"
    plain = run(raw(title=dirty, content=dirty, content_is_html=False))
    assert plain.excerpt == "ABCDEF"


def test_pre_code_becomes_placeholder_and_custom_placeholders() -> None:
    content = "<p>a</p><pre><code>x = 1\n</code></pre><p>b</p><math><mi>x</mi></math>"
    assert run(raw(content=content)).excerpt == "a [code] b [formula]"
    custom = ExcerptOptions(code_placeholder="⟨code⟩", formula_placeholder="⟨math⟩")
    excerpt = run(raw(content=content), options=custom)
    assert excerpt.excerpt == "a ⟨code⟩ b ⟨math⟩"
    assert excerpt.text == "a b"


def test_script_and_style_dropped() -> None:
    content = "<script>var x = 1;</script><style>.a{}</style><p>Shown</p>"
    assert run(raw(content=content)).excerpt == "Shown"


def test_categories_start_with_the_source_category() -> None:
    source = replace(SOURCE, category="News")
    excerpt = run(raw(categories=("news", "World", "world", "Sport")), source=source)
    assert excerpt.categories == ("News", "World", "Sport")


# --- identity --------------------------------------------------------------------------------


def test_same_input_same_id() -> None:
    item = raw(guid="abc", content="<p>Same</p>")
    assert run(item).id == run(item).id
    # Undated: the id starts with when the post was first seen (this run's clock).
    assert uuid.UUID(run(item).id.removeprefix("urn:uuid:")).int >> 80 == int(
        NOW.timestamp() * 1000
    )
    dated = raw(guid="abc", content="<p>Same</p>", published=NOW - timedelta(days=3))
    assert uuid.UUID(run(dated).id.removeprefix("urn:uuid:")).int >> 80 == int(
        (NOW - timedelta(days=3)).timestamp() * 1000
    )


def test_different_source_different_id() -> None:
    item = raw(guid="abc")
    other = replace(SOURCE, name="other")
    assert run(item).id != run(item, source=other).id
    assert run(item).key == run(item, source=other).key


def test_key_precedence_guid_link_text() -> None:
    assert run(raw(guid=" g ", link="https://x.com/a")).key == "guid:g"
    assert run(raw(guid="  ", link="https://x.com/a")).key == "link:https://x.com/a"
    text_keyed = run(raw(guid=None, link=None, content="Body"))
    assert text_keyed.key == "text:" + text_keyed.fingerprint


def test_text_key_is_stable_across_markup_changes() -> None:
    one = run(raw(content="<p>Hello <b>world</b></p>"))
    two = run(raw(content="Hello   world", content_is_html=False))
    assert one.fingerprint == two.fingerprint
    assert one.key == two.key


def test_content_hash_follows_displayed_fields() -> None:
    base = run(raw(guid="g", content="Body"))
    assert run(raw(guid="g", content="Body")).content_hash == base.content_hash
    assert run(raw(guid="g", title="Other", content="Body")).content_hash != base.content_hash
    assert run(raw(guid="g", content="Body 2")).content_hash != base.content_hash
    assert run(raw(guid="g", authors=("A",))).content_hash != base.content_hash
    moved = run(raw(guid="g", content="Body", position=5))
    assert moved.content_hash == base.content_hash  # position is not displayed


def test_author_and_category_fields_do_not_run_together() -> None:
    one = run(raw(guid="g", authors=("a", "b"), categories=()))
    two = run(raw(guid="g", authors=("a",), categories=("b",)))
    assert one.content_hash != two.content_hash


# --- folded text -----------------------------------------------------------------------------


def test_truncated_copy_folds_to_a_prefix_of_the_full_copy() -> None:
    full = "<p>The Quick Brown Fox jumps over the lazy dog. " + "More words here. " * 40 + "</p>"
    teaser = "The quick brown fox jumps over the lazy dog. More words here. More..."
    full_excerpt = run(raw(content=full))
    teaser_excerpt = run(raw(content=teaser, content_is_html=False))
    assert teaser_excerpt.truncated
    assert full_excerpt.text.startswith(teaser_excerpt.text)
    assert fold(teaser) == teaser_excerpt.text


def test_folded_text_is_limited() -> None:
    content = "<p>" + "lorem ipsum dolor " * 2000 + "</p>"
    excerpt = run(raw(content=content))
    assert len(excerpt.text) == FOLDED_TEXT_LIMIT
    assert excerpt.text == fold("lorem ipsum dolor " * 2000)[:FOLDED_TEXT_LIMIT]


def test_folded_text_limit_with_mostly_placeholders() -> None:
    content = "<pre>x</pre>" * 3000 + "<p>tail text</p>"
    assert run(raw(content=content)).text == "tail text"


def test_lone_surrogates_in_guid_and_link_stay_encodable() -> None:
    excerpt = run(raw(guid="id\ud800", link="https://example.com/a\udfffb"))
    assert excerpt.guid == "id\ufffd"
    assert excerpt.key == "guid:id\ufffd"
    assert excerpt.link == "https://example.com/ab"
    for value in (excerpt.id, excerpt.key, excerpt.guid, excerpt.link):
        value.encode("utf-8")


def test_mint_id_is_the_date_then_a_hash_of_source_and_key() -> None:
    day = datetime(2026, 3, 1, 12, tzinfo=UTC)
    minted = mint_id("blog", "link:https://example.com/a", None, day)
    value = uuid.UUID(minted.removeprefix("urn:uuid:"))
    assert minted.startswith("urn:uuid:")
    assert value.version == 8 and value.variant == uuid.RFC_4122
    assert value.int >> 80 == int(day.timestamp() * 1000)
    # The published date, when there is one, is the date; the clock is not.
    assert mint_id("blog", "k", day, day + timedelta(hours=5)) == mint_id("blog", "k", day, day)
    # The same post from the same source and date: the same id, as in a store built anew.
    assert minted == mint_id("blog", "link:https://example.com/a", None, day)
    others = {
        mint_id("blog", "link:https://example.com/b", None, day),
        mint_id("news", "link:https://example.com/a", None, day),
        mint_id("blog", "link:https://example.com/a", None, day + timedelta(milliseconds=1)),
    }
    assert minted not in others and len(others) == 3
    # Later dates sort after earlier ones as text: new entries go to the end of an index.
    ids = [mint_id("blog", f"guid:{i}", None, day + timedelta(seconds=i)) for i in range(200)]
    assert sorted(ids) == ids
    # A lone surrogate (possible in a JSON Feed guid) makes uuid.uuid5 raise; mint_id does not.
    lone = mint_id("a", "guid:\udc80", None, day)
    assert lone == mint_id("a", "guid:\udc80", None, day) != mint_id("a", "guid:\udc81", None, day)
