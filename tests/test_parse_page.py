"""Tests for aggregator.parse.page: selectors, links, dates, discovery, paging.

The decoder, the date parser and the link gate it shares with the other parsers are tested
in test_parse_decode.py, test_parse_dates.py and test_urls.py.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from aggregator.errors import ParseError
from aggregator.models import ParsedDocument, SelectRules
from aggregator.parse.page import find_next_pages, parse_page

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data" / "pages"
EXAMPLES = ROOT / "examples"

# The rules documented for examples/home.html.
HOME_RULES = SelectRules(
    entry="section.latest article.post-card",
    title="h3.post-title",
    link="h3.post-title a",
    date="time",
    excerpt=".post-summary",
    category=".post-tag",
    next='nav.pager a[rel="next"]',
    max_pages=3,
)


def _page(html: str | bytes, select: SelectRules | None, **kwargs: Any) -> ParsedDocument:
    body = html.encode("utf-8") if isinstance(html, str) else html
    kwargs.setdefault("url", "https://site.example.com/blog/")
    kwargs.setdefault("headers", {"content-type": "text/html; charset=utf-8"})
    return parse_page(body, source="test", select=select, **kwargs)


# --------------------------------------------------------------------------- data-driven


def _cases() -> list[Path]:
    return sorted(DATA.glob("*.json"))


def _input_for(spec_path: Path) -> Path:
    (html,) = [p for p in DATA.glob(spec_path.stem + ".*") if p.suffix != ".json"]
    return html


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


@pytest.mark.parametrize("spec_path", _cases(), ids=lambda p: p.stem)
def test_page_fixture(spec_path: Path) -> None:
    spec = json.loads(spec_path.read_text(encoding="utf-8"))
    body = _input_for(spec_path).read_bytes()
    select = SelectRules(**spec["select"]) if spec["select"] else None
    kwargs = {"url": spec["url"], "headers": spec["headers"], "select": select}
    if "error" in spec:
        with pytest.raises(ParseError) as caught:
            parse_page(body, source="fixture", **kwargs)
        for fragment in spec["error"]:
            assert fragment in str(caught.value)
        return
    doc = parse_page(body, source="fixture", **kwargs)
    expect = spec["expect"]
    assert doc.kind == "page"
    assert doc.title == expect["title"]
    assert doc.feed_url == expect.get("feed_url")
    assert len(doc.items) == len(expect["items"])
    for item, want in zip(doc.items, expect["items"], strict=True):
        _check_item(item, want)
    if "next_pages" in expect:
        pages = find_next_pages(body, url=spec["url"], headers=spec["headers"], select=select)
        assert list(pages) == expect["next_pages"]


def _check_item(item: Any, want: dict[str, Any]) -> None:
    assert item.guid is None
    for key in ("position", "title", "link", "content", "content_is_html"):
        if key in want:
            assert getattr(item, key) == want[key], key
    for key in ("published", "updated"):
        if key in want:
            assert _iso(getattr(item, key)) == want[key], key
    for key in ("categories", "authors"):
        if key in want:
            assert list(getattr(item, key)) == want[key], key
    for fragment in want.get("content_contains", []):
        assert fragment in item.content
    for fragment in want.get("content_excludes", []):
        assert fragment not in item.content


# --------------------------------------------------------------------------- links


def test_relative_links_on_a_local_page_without_canonical_are_dropped(tmp_path: Path) -> None:
    html = '<div class="e"><h2><a href="post.html">Local</a></h2></div>'
    doc = _page(html, SelectRules(entry="div.e"), url=str(tmp_path / "index.html"), headers={})
    assert doc.items[0].title == "Local"
    assert doc.items[0].link is None
    assert doc.link is None


def test_local_page_links_resolve_against_canonical(tmp_path: Path) -> None:
    html = (
        '<link rel="canonical" href="https://real.example.org/blog/">'
        '<div class="e"><h2><a href="post.html">Local</a></h2></div>'
    )
    doc = _page(html, SelectRules(entry="div.e"), url=str(tmp_path / "index.html"), headers={})
    assert doc.items[0].link == "https://real.example.org/blog/post.html"


def test_canonical_does_not_override_a_web_page_url() -> None:
    html = (
        '<link rel="canonical" href="https://elsewhere.example.org/">'
        '<div class="e"><a href="p.html">P</a></div>'
    )
    doc = _page(html, SelectRules(entry="div.e"))
    assert doc.items[0].link == "https://site.example.com/blog/p.html"


def test_default_link_prefers_the_heading_link_over_a_tag_link() -> None:
    html = (
        '<div class="e"><a href="/tags/go">Go</a>'
        '<h3><a href="/posts/channels">Channels</a></h3></div>'
    )
    doc = _page(html, SelectRules(entry="div.e"))
    assert doc.items[0].title == "Channels"
    assert doc.items[0].link == "https://site.example.com/posts/channels"


def test_default_link_skips_an_unsafe_first_link() -> None:
    html = '<div class="e"><a href="javascript:void(0)">share</a> <a href="p/2">Second</a></div>'
    doc = _page(html, SelectRules(entry="div.e"))
    assert doc.items[0].link == "https://site.example.com/blog/p/2"


def test_an_unsafe_link_rule_match_is_not_replaced_by_a_guess() -> None:
    html = '<div class="e"><a class="t" href="javascript:go()">T</a><a href="/tags/x">x</a></div>'
    doc = _page(html, SelectRules(entry="div.e", link="a.t"))
    assert doc.items[0].link is None


def test_entry_that_is_itself_a_link() -> None:
    html = '<a class="card" href="/p/1"><h4>Card title</h4><p>Body</p></a>'
    doc = _page(html, SelectRules(entry="a.card"))
    assert doc.items[0].link == "https://site.example.com/p/1"
    assert doc.items[0].title == "Card title"


# --------------------------------------------------------------------------- dates


def test_missing_dates_keep_document_order() -> None:
    html = "".join(
        f'<div class="e"><h2><a href="/p/{n}">Post {n}</a></h2>{date}</div>'
        for n, date in [
            (1, '<time datetime="2025-01-01">old date on top</time>'),
            (2, ""),
            (3, '<time datetime="2026-06-01">newer date below</time>'),
            (4, ""),
        ]
    )
    doc = _page(html, SelectRules(entry="div.e", date="time"))
    assert [i.title for i in doc.items] == ["Post 1", "Post 2", "Post 3", "Post 4"]
    assert [i.position for i in doc.items] == [0, 1, 2, 3]
    assert [i.published is None for i in doc.items] == [False, True, False, True]


def test_date_falls_back_from_unreadable_attribute_to_text() -> None:
    html = '<div class="e"><a href="/a">A</a><span class="d" content="n/a">2026/02/01</span></div>'
    doc = _page(html, SelectRules(entry="div.e", date=".d"))
    assert doc.items[0].published == datetime(2026, 2, 1, tzinfo=UTC)


# --------------------------------------------------------------------------- entries


def test_position_start_offsets_positions() -> None:
    html = '<div class="e"><a href="/a">A</a></div><div class="e"><a href="/b">B</a></div>'
    doc = _page(html, SelectRules(entry="div.e"), position_start=7)
    assert [i.position for i in doc.items] == [7, 8]


def test_nested_entry_matches_are_one_entry() -> None:
    html = '<div class="post"><h2>Outer</h2><div class="post"><p>inner part</p></div></div>'
    doc = _page(html, SelectRules(entry=".post"))
    assert len(doc.items) == 1
    assert "inner part" in doc.items[0].content


def test_max_items_caps_entries_and_warns() -> None:
    html = "".join(f'<div class="e"><a href="/p/{n}">P{n}</a></div>' for n in range(5))
    doc = _page(html, SelectRules(entry="div.e"), max_items=2)
    assert [i.title for i in doc.items] == ["P0", "P1"]
    assert any("only the first 2" in w for w in doc.warnings)


def test_scripts_and_styles_never_reach_the_excerpt() -> None:
    html = (
        '<div class="e"><h2>T</h2><style>.x{color:red}</style>'
        "<script>steal()</script><p>kept</p></div>"
    )
    content = _page(html, SelectRules(entry="div.e")).items[0].content
    assert "kept" in content
    assert "steal" not in content and "color:red" not in content


def test_excerpt_is_inner_html_of_the_excerpt_match() -> None:
    html = '<div class="e"><h2>T</h2><div class="s"><p>One <b>bold</b></p></div></div>'
    item = _page(html, SelectRules(entry="div.e", excerpt=".s")).items[0]
    assert item.content == "<p>One <b>bold</b></p>"
    assert item.content_is_html is True


def test_selector_that_matches_in_no_entry_is_a_warning() -> None:
    html = '<div class="e"><h2><a href="/a">A</a></h2></div>'
    doc = _page(html, SelectRules(entry="div.e", date=".published", category=".tag"))
    assert len(doc.items) == 1
    assert any("'.published'" in w for w in doc.warnings)
    assert any("'.tag'" in w for w in doc.warnings)


def test_invalid_selector_is_a_parse_error_naming_it() -> None:
    with pytest.raises(ParseError, match=r"div\[\["):
        _page('<div class="e">x</div>', SelectRules(entry="div[["))
    with pytest.raises(ParseError, match="title"):
        _page('<div class="e">x</div>', SelectRules(entry="div.e", title="h2 >>> ]"))


def test_empty_body_is_a_parse_error() -> None:
    with pytest.raises(ParseError, match="empty"):
        parse_page(b"  \n", url="https://x.example/", headers={}, source="s", select=None)


def test_parse_error_carries_the_source_name() -> None:
    with pytest.raises(ParseError) as caught:
        parse_page(
            b"<p>nothing</p>",
            url="https://x.example/",
            headers={},
            source="my-blog",
            select=SelectRules(entry="article"),
        )
    assert caught.value.source == "my-blog"
    assert "'article'" in caught.value.reason


def test_feed_link_is_ignored_when_select_rules_are_given() -> None:
    html = (
        '<link rel="alternate" type="application/rss+xml" href="/feed.xml">'
        '<div class="e"><a href="/a">A</a></div>'
    )
    doc = _page(html, SelectRules(entry="div.e"))
    assert doc.feed_url is None
    assert len(doc.items) == 1


def test_auto_mode_prefers_a_feed_over_jsonld() -> None:
    html = (
        '<link rel="alternate" type="application/rss+xml" href="/rss">'
        '<script type="application/ld+json">{"@type": "BlogPosting", "headline": "H"}</script>'
    )
    doc = _page(html, None)
    assert doc.feed_url == "https://site.example.com/rss"
    assert doc.items == ()


def test_auto_mode_ignores_unsafe_feed_links() -> None:
    html = '<link rel="alternate" type="application/atom+xml" href="javascript:x()">'
    with pytest.raises(ParseError, match=r"\[sources\.select\]"):
        _page(html, None)


# --------------------------------------------------------------------------- pagination


def test_next_pages_are_absolute_deduped_and_skip_junk() -> None:
    html = (
        '<base href="https://site.example.com/blog/">'
        '<div class="pages"><a href="#">1</a><a href="?page=2">2</a><a href="?page=2#x">2</a>'
        '<a href="JavaScript:more()">more</a><a href="./">self</a>'
        '<span class="nx"><a href="?page=3">next</a></span></div>'
    )
    rules = SelectRules(entry="div", next=".pages a, .pages .nx")
    pages = find_next_pages(
        html.encode(), url="https://site.example.com/blog/", headers={}, select=rules
    )
    assert pages == (
        "https://site.example.com/blog/?page=2",
        "https://site.example.com/blog/?page=3",
    )


def test_no_next_rule_no_pages() -> None:
    body = b'<a rel="next" href="/2">next</a>'
    assert find_next_pages(body, url="https://a.example/", headers={}, select=None) == ()
    rules = SelectRules(entry="div")
    assert find_next_pages(body, url="https://a.example/", headers={}, select=rules) == ()


def test_invalid_next_selector_yields_nothing() -> None:
    rules = SelectRules(entry="div", next="a[[")
    body = b'<a href="/2">2</a>'
    assert find_next_pages(body, url="https://a.example/", headers={}, select=rules) == ()


def test_file_uri_page_gives_local_paths_and_skips_itself(tmp_path: Path) -> None:
    page = tmp_path / "home.html"
    body = b'<nav><a href="home.html">1</a><a href="home-2.html">2</a></nav>'
    rules = SelectRules(entry="div", next="nav a")
    pages = find_next_pages(body, url=page.as_uri(), headers={}, select=rules)
    assert pages == (str(tmp_path / "home-2.html"),)


def test_local_page_pager_links_are_local_paths(tmp_path: Path) -> None:
    body = b'<nav><a href="page%202.html">2</a><a href="file:///etc/passwd">x</a></nav>'
    rules = SelectRules(entry="div", next="nav a")
    pages = find_next_pages(body, url=str(tmp_path / "index.html"), headers={}, select=rules)
    assert pages == (str(tmp_path / "page 2.html"),)


# --------------------------------------------------------------------------- examples


def _read_home(name: str, position_start: int = 0) -> tuple[ParsedDocument, tuple[str, ...]]:
    path = EXAMPLES / name
    body = path.read_bytes()
    doc = parse_page(
        body,
        url=str(path),
        headers={},
        source="home",
        select=HOME_RULES,
        position_start=position_start,
    )
    return doc, find_next_pages(body, url=str(path), headers={}, select=HOME_RULES)


def test_example_home_pages_follow_the_documented_rules() -> None:
    first, next_pages = _read_home("home.html")
    assert next_pages == (str(EXAMPLES / "home-2.html"),)
    second, after = _read_home("home-2.html", position_start=len(first.items))
    assert after == ()
    items = first.items + second.items
    assert (len(first.items), len(second.items)) == (7, 3)
    assert [i.position for i in items] == list(range(10))
    assert all(i.title and i.categories for i in items)
    assert all(i.link and i.link.startswith("https://notes.example.org/posts/") for i in items)
    assert 0 < sum(i.published is None for i in items) < len(items)
    assert any("<pre><code" in i.content for i in items)
    assert any('class="katex"' in i.content or "\\[" in i.content for i in items)
    assert all("addEventListener" not in i.content for i in items)


def test_example_home_repeats_a_capture_post() -> None:
    doc, _ = _read_home("home.html")
    capture = (EXAMPLES / "capture.txt").read_text(encoding="utf-8").splitlines()
    card = doc.items[0]
    assert card.title is not None
    line = next(line for line in capture if line.startswith(card.title))
    assert "用 <code>float16</code> 训练时" in card.content
    assert card.content.rstrip().removesuffix("</p>").endswith("...")
    assert line.startswith(f"{card.title} 用 float16 训练时，很多梯度小到 fp16 表示不了")
