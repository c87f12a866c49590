"""Auto mode: pages without (or with partial) selectors find their post list by themselves.

The corpus (tests/data/autopage, scored by tests/autopage_corpus.py, figures printed by
bench/autopage.py) holds pages in the shapes of common blog engines; each must give every
expected post and nothing else. The seed-shaped card list is also read end to end, paginated,
through a real server, the store and the snapshot.
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import replace
from pathlib import Path

import pytest

from aggregator.cli import main
from aggregator.collect import Collector
from aggregator.config import FetchSettings, load_config
from aggregator.errors import ParseError
from aggregator.fetch import new_session
from aggregator.models import ExcerptOptions, ParsedDocument, SelectRules, Source
from aggregator.parse.autopage import (
    AUTO_SELECTORS,
    LAYOUT_CHANGED,
    auto_report,
    content_link,
    is_generic_link_text,
    select_block,
)
from aggregator.parse.page import page_rules, parse_page, suggest_select
from aggregator.refresh import refresh
from aggregator.store import open_store
from tests.autopage_corpus import CORPUS, NOW, Layout, layouts, read, score
from tests.helpers import CONFIG_HEAD, LocalServer, load_snapshot, write_config

LAYOUTS = {layout.name: layout for layout in layouts()}
HEADERS = {"content-type": "text/html; charset=utf-8"}


def _parse(
    layout: Layout, select: SelectRules | None = None, *, complete: bool = True
) -> ParsedDocument:
    return parse_page(
        layout.html,
        url=layout.url,
        headers=HEADERS,
        source=layout.name,
        select=select,
        complete=complete,
    )


# --------------------------------------------------------------------------- the corpus


def test_corpus_covers_the_layouts_asked_for() -> None:
    assert set(LAYOUTS) >= {
        "wordpress",
        "hugo",
        "jekyll",
        "hexo-cards",
        "ghost",
        "medium",
        "substack",
        "plain-ul",
        "popular-sidebar",
        "one-post",
        "no-posts",
    }


@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_every_expected_post_is_found_and_nothing_else(name: str) -> None:
    layout = LAYOUTS[name]
    _, excerpts = read(layout)
    result = score(layout, excerpts)
    assert result.strays == (), "entries that are no post (navigation, widgets, footers)"
    for field in ("posts", "titles", "links", "dates"):
        precision, recall = getattr(result, field)
        assert precision.value == 1.0, (field, precision)
        assert recall.value == 1.0, (field, recall)
    assert [e.link for e in excerpts] == [p["link"] for p in layout.posts]  # page order


def test_categories_come_with_the_posts() -> None:
    layout = LAYOUTS["hexo-cards"]
    _, excerpts = read(layout)
    assert [list(e.categories) for e in excerpts] == [p["categories"] for p in layout.posts]
    wordpress = _parse(LAYOUTS["wordpress"])
    assert [i.categories for i in wordpress.items][:2] == [("Tooling",), ("Performance",)]


def test_a_page_without_posts_is_an_error_naming_the_fix() -> None:
    with pytest.raises(ParseError) as caught:
        _parse(LAYOUTS["no-posts"])
    assert "found no post list" in caught.value.reason
    assert "[sources.select]" in caught.value.reason


def test_the_choice_is_reported_and_deterministic() -> None:
    layout = LAYOUTS["wordpress"]
    first, second = _parse(layout), _parse(layout)
    assert first.auto_method == "structure"
    assert first.auto_select == second.auto_select
    assert first.auto_select == SelectRules(
        entry="#main > article",
        title="h2",
        link="h2 a[href]",
        date=".entry-date",
        excerpt=".entry-summary",
        category='a[rel~="tag"]',
        next="a.next",
    )


@pytest.mark.parametrize("name", sorted(n for n in LAYOUTS if n != "no-posts"))
def test_the_printed_block_pins_the_same_entries(name: str, tmp_path: Path) -> None:
    layout = LAYOUTS[name]
    auto = _parse(layout)
    assert auto.auto_select is not None and auto.auto_method is not None
    block = select_block(auto.auto_select, method=auto.auto_method)
    # Pasted under a [[sources]] table, the block is valid config giving the same rules ...
    path = write_config(
        tmp_path,
        f'[feed]\ntitle = "t"\nlink = "https://t.example/"\n'
        f'[[sources]]\nname = "s"\nurl = "{layout.url}"\nkind = "page"\n{block}',
    )
    pinned = load_config(path).source("s").select
    assert pinned is not None
    assert replace(pinned, max_pages=auto.auto_select.max_pages) == auto.auto_select
    # ... and the pinned rules read the same entries.
    again = _parse(layout, pinned, complete=False)
    assert again.items == auto.items
    assert again.auto_select is None


def test_page_rules_and_the_check_report_for_other_front_ends() -> None:
    layout = LAYOUTS["jekyll"]
    found = page_rules(layout.html, url=layout.url, headers=HEADERS)
    assert found is not None and found.method == "structure" and found.entries == 8
    report = auto_report(found.rules, found.method)
    assert report.splitlines()[0] == f"{AUTO_SELECTORS} (structure)"
    table = tomllib.loads(report.split("\n", 1)[1])
    assert table["sources"]["select"]["entry"] == "ul.post-list > li"
    assert page_rules(LAYOUTS["no-posts"].html, url="https://x.example/", headers={}) is None
    assert suggest_select(layout.html, url=layout.url, headers=HEADERS) == report
    assert suggest_select(LAYOUTS["no-posts"].html, url="https://x.example/", headers={}) is None


def test_select_block_escapes_what_toml_needs() -> None:
    rules = SelectRules(entry='a[title="x\\y"]', next="a.next", max_pages=5)
    table = tomllib.loads(select_block(rules))
    assert table["sources"]["select"] == {
        "entry": 'a[title="x\\y"]',
        "next": "a.next",
        "max_pages": 5,
    }


# --------------------------------------------------------------------------- config wins


def test_given_selectors_win_and_missing_ones_are_filled() -> None:
    layout = LAYOUTS["wordpress"]
    given = SelectRules(entry="article.post", title=".entry-meta .byline")
    doc = _parse(layout, given)
    assert doc.auto_method == "given"
    assert doc.auto_select is not None
    assert doc.auto_select.entry == "article.post"
    assert doc.auto_select.title == ".entry-meta .byline"  # the config's, although odd
    assert doc.auto_select.date == ".entry-date" and doc.auto_select.next == "a.next"
    assert {i.title for i in doc.items} == {"by Mira"}
    assert len(doc.items) == 6 and all(i.published is not None for i in doc.items)


def test_a_partial_table_without_entry_is_completed() -> None:
    layout = LAYOUTS["ghost"]
    doc = _parse(layout, SelectRules(max_pages=7, date=None))
    assert doc.auto_method == "structure"
    assert doc.auto_select is not None and doc.auto_select.max_pages == 7
    assert len(doc.items) == 6


def test_complete_rules_are_left_alone() -> None:
    layout = LAYOUTS["jekyll"]
    rules = SelectRules(
        entry="li",
        title="span.post-meta",
        link="a",
        date="h3",
        excerpt="p",
        category="span",
        next="a.none",
    )
    doc = _parse(layout, rules)
    assert doc.auto_select is None and doc.auto_method is None
    assert doc.items[0].title == "Mar 24, 2026"  # the config's rule, however wrong


def test_a_config_without_selectors_loads() -> None:
    source = Source(name="s", url="https://x.example/", kind="page")
    assert source.selectors == "auto"
    assert replace(source, select=SelectRules(entry="li")).selectors == "config+auto"
    assert replace(source, kind="feed").selectors is None


# ------------------------------------------------------------- the seed shape, paginated


def _page_config(tmp_path: Path, url: str) -> Path:
    return write_config(
        tmp_path, CONFIG_HEAD + f'[[sources]]\nname = "blog"\nurl = "{url}"\nkind = "page"\n'
    )


def _serve_hexo(server: LocalServer) -> tuple[str, dict[str, list[str]]]:
    spec = json.loads((CORPUS / "hexo-cards.json").read_text(encoding="utf-8"))
    site = spec["url"].rstrip("/")

    def local(html: bytes) -> bytes:
        # The corpus pages name their site; served here, their links stay on this server.
        return html.replace(site.encode(), b"")

    server.serve("/page/2/", local((CORPUS / "hexo-cards-2.html").read_bytes()), "text/html")
    url = server.serve("/", local((CORPUS / "hexo-cards.html").read_bytes()), "text/html")
    posts = [*spec["posts"], *spec["page2"]["posts"]]
    expected = {
        "titles": [p["title"] for p in posts],
        "links": [server.url(p["link"].removeprefix(site)) for p in posts],
    }
    return url, expected


def test_seed_shaped_pages_give_every_post_once(server: LocalServer) -> None:
    url, expected = _serve_hexo(server)
    source = Source(name="cards", url=url, kind="page")
    session = new_session()
    try:
        collector = Collector(FetchSettings(), ExcerptOptions(), session, now=NOW)
        collected = collector.collect(source)
    finally:
        session.close()
    assert collected.error is None and collected.document is not None
    assert collected.document.auto_select is not None
    assert collected.document.auto_select.next == "div.pager a"
    assert [e.title for e in collected.excerpts] == expected["titles"]
    assert [e.link for e in collected.excerpts] == expected["links"]
    opening = [e for e in collected.excerpts if e.title.startswith("引言与背景")]
    assert len(opening) == 3 and len({e.link for e in opening}) == 3
    # Page 2 links back to page 1: each page is fetched once.
    assert len(server.hits("/")) == 1 and len(server.hits("/page/2/")) == 1


def test_seed_shaped_source_refreshes_into_the_snapshot(
    tmp_path: Path, server: LocalServer
) -> None:
    url, expected = _serve_hexo(server)
    path = _page_config(tmp_path, url)
    config = load_config(path)
    report = refresh(config, force=True)
    assert [r.outcome for r in report.results] == ["new"]
    snap = load_snapshot(config.output_dir / "snapshot.json")
    assert snap["sources"][0]["selectors"] == "auto"
    assert snap["sources"][0]["entries"] == len(expected["links"])
    titles = [e["title"] for e in snap["entries"]]
    assert sorted(titles) == sorted(expected["titles"])
    assert sum(t.startswith("引言与背景") for t in titles) == 3


# --------------------------------------------------------------------------- a changed layout


def _local(layout: Layout) -> bytes:
    return layout.html.replace(layout.url.rstrip("/").encode(), b"")


def test_a_changed_layout_is_reported_and_loses_nothing(
    tmp_path: Path, server: LocalServer, caplog: pytest.LogCaptureFixture
) -> None:
    url = server.serve("/", _local(LAYOUTS["jekyll"]), "text/html")
    config = load_config(_page_config(tmp_path, url))
    first = refresh(config, force=True).results[0]
    assert first.outcome == "new" and first.warnings == ()
    with open_store(config) as store:
        remembered = store.get_state("blog")
    assert remembered is not None and remembered.page_entry == "ul.post-list > li"

    # A new theme: the old post list is gone, auto mode finds the new one and says so.
    server.serve("/", _local(LAYOUTS["substack"]), "text/html")
    second = refresh(config, force=True).results[0]
    assert second.outcome == "new"
    changed = [w for w in second.warnings if w.startswith(LAYOUT_CHANGED)]
    assert len(changed) == 1
    assert "'ul.post-list > li'" in changed[0] and "matches nothing now" in changed[0]
    assert "'div.portable-archive-list > div'" in changed[0]
    assert f"blog: {changed[0]}" in caplog.messages

    # The same page again: nothing more to say.
    server.serve("/", _local(LAYOUTS["substack"]).replace(b"Theo", b"Theodor"), "text/html")
    third = refresh(config, force=True).results[0]
    assert not [w for w in third.warnings if w.startswith(LAYOUT_CHANGED)]

    # No post list at all: an error naming the lost one; what was stored stays.
    server.serve("/", _local(LAYOUTS["no-posts"]), "text/html")
    fourth = refresh(config, force=True).results[0]
    assert fourth.outcome == "error" and fourth.error is not None
    assert fourth.error.startswith(LAYOUT_CHANGED)
    assert "'div.portable-archive-list > div'" in fourth.error
    snap = load_snapshot(config.output_dir / "snapshot.json")
    assert snap["sources"][0]["entries"] == 8 + 7


# --------------------------------------------------------------------------- hostile pages


def test_deeply_nested_pages_are_refused_calmly() -> None:
    posts = "".join(
        f'<article><h2><a href="/p/{i}">Post {i}</a></h2><p>{"word " * 20}</p></article>'
        for i in range(30)
    )
    for opener, closer in (('<div class="post">', "</div>"), ("<ul><li>", "</li></ul>")):
        html = (opener * 3000 + posts + closer * 3000).encode()
        with pytest.raises(ParseError, match="found no post list"):
            parse_page(html, url="https://x.example/", headers={}, source="s", select=None)
    shallow = (('<div class="post">' * 20) + posts + "</div>" * 20).encode()
    doc = parse_page(shallow, url="https://x.example/", headers={}, source="s", select=None)
    assert len(doc.items) == 30


def test_a_long_list_is_read_up_to_max_entries() -> None:
    rows = "".join(
        f'<li><a href="/p/{i}">Post number {i} about things</a> 2026-01-{i % 28 + 1:02d}</li>'
        for i in range(5000)
    )
    html = f"<ul>{rows}</ul>".encode()
    doc = parse_page(
        html, url="https://x.example/", headers={}, source="s", select=None, max_items=100
    )
    assert len(doc.items) == 100
    assert doc.items[99].link == "https://x.example/p/99"
    assert doc.warnings == ("page has 5000 entries; only the first 100 read",)


# --------------------------------------------------------------------------- page or feed


def test_a_page_source_reads_the_page_and_an_auto_source_its_feed(server: LocalServer) -> None:
    feed = server.serve(
        "/feed.xml",
        '<rss version="2.0"><channel><title>F</title><item><title>From the feed</title>'
        "<link>https://x.example/f</link></item></channel></rss>",
        "application/rss+xml",
    )
    link = f'<link rel="alternate" type="application/rss+xml" href="{feed}">'.encode()
    layout = LAYOUTS["jekyll"]
    home = server.serve("/", _local(layout).replace(b"<head>", b"<head>" + link), "text/html")
    bare = server.serve("/about/", _local(LAYOUTS["no-posts"]).replace(b"<head>", b"<head>" + link))
    session = new_session()
    try:
        collector = Collector(FetchSettings(), ExcerptOptions(), session, now=NOW)
        as_page = collector.collect(Source(name="p", url=home, kind="page"))
        as_auto = collector.collect(Source(name="a", url=home))
        no_list = collector.collect(Source(name="n", url=bare, kind="page"))
    finally:
        session.close()
    assert as_page.document is not None and as_page.document.kind == "page"
    assert [e.title for e in as_page.excerpts] == [p["title"] for p in layout.posts]
    assert [e.title for e in as_auto.excerpts] == ["From the feed"]
    assert [e.title for e in no_list.excerpts] == ["From the feed"]  # no list: its feed


# --------------------------------------------------------------------------- check --fetch


def test_check_fetch_prints_a_block_that_pins_the_choice(
    tmp_path: Path, server: LocalServer, capsys: pytest.CaptureFixture[str]
) -> None:
    url, expected = _serve_hexo(server)
    path = _page_config(tmp_path, url)
    assert main(["check", "--fetch", "-c", str(path)]) == 0
    out = capsys.readouterr().out
    assert f"blog: {len(expected['links'])} entries (page, HTTP 200)" in out
    lines = out.splitlines()
    start = lines.index(f"  {AUTO_SELECTORS} (structure)") + 1
    block = []
    for line in lines[start:]:
        if not line.startswith("  ") or line.startswith("  - "):
            break
        block.append(line.strip())
    assert block[0].startswith("[sources.select]")
    assert 'next = "div.pager a"' in block
    # Pasted into the config, the block pins the same entries: no auto mode any more.
    path.write_text(path.read_text(encoding="utf-8") + "\n".join(block) + "\n", encoding="utf-8")
    config = load_config(path)
    assert config.source("blog").selectors == "config+auto"  # the page has no title element
    assert main(["check", "--fetch", "-c", str(path)]) == 0
    again = capsys.readouterr().out
    assert f"blog: {len(expected['links'])} entries (page, HTTP 200)" in again
    assert AUTO_SELECTORS not in again


# --------------------------------------------------------------------------- links and pagers


@pytest.mark.parametrize(
    ("href", "expected"),
    [
        ("/2026/03/notes-on-wal/", "https://x.example/2026/03/notes-on-wal/"),
        ("/?p=123", "https://x.example/?p=123"),  # a WordPress post without pretty links
        ("/p/a#comments", None),
        ("/p/a#respond", None),
        ("/p/a#section-2", "https://x.example/p/a"),
        ("/tag/python/", None),
        ("/category/ops/", None),
        ("/categories/深度学习/", None),
        ("/author/mira/", None),
        ("/2026/03/", None),
        ("/page/2/", None),
        ("/?paged=2", None),
        ("/archives/", None),
        ("/feed/", None),
        ("/", None),
        ("https://x.example/", None),
        ("https://www.x.example/p/b", "https://www.x.example/p/b"),
        ("https://elsewhere.example/p/b", None),
        ("javascript:alert(1)", None),
    ],
)
def test_what_counts_as_a_post_link(href: str, expected: str | None) -> None:
    assert content_link(href, "https://x.example/", "https://x.example/") == expected


@pytest.mark.parametrize(
    ("text", "generic"),
    [
        ("Read more", True),
        ("Continue reading Notes on WAL", True),
        ("阅读全文 »", True),
        ("3 Comments", True),
        ("More", True),
        ("»", True),
        ("More than a cache", False),
        ("Reading a flame graph", False),
        ("Notes on SQLite WAL mode", False),
    ],
)
def test_read_more_links_do_not_name_posts(text: str, generic: bool) -> None:
    assert is_generic_link_text(text) is generic


def _cards(extra: str) -> bytes:
    cards = "".join(
        f'<div class="card"><h2><a href="/p/{i}">Post {i} title</a></h2><p>{"word " * 20}</p></div>'
        for i in range(4)
    )
    return f'<main><div class="list">{cards}</div>{extra}</main>'.encode()


@pytest.mark.parametrize(
    ("extra", "pager"),
    [
        ('<a rel="next" href="/page/2/">›</a>', 'a[rel~="next"]'),
        ('<a class="older-posts" href="/page/2/">Older</a>', "a.older-posts"),
        ('<ul class="pg"><li class="next"><a href="/page/2/">x</a></li></ul>', "li.next a"),
        (
            '<div class="pages"><a href="/page/2/">2</a> <a href="/page/3/">3</a></div>',
            "div.pages a",
        ),
        ('<p class="nav"><a href="/page/2/">Older posts »</a></p>', "p.nav a"),
        # A menu with a "Next" item is no pager; nor is a next link to another site.
        ('<div class="m"><a href="/about/">About</a> <a href="/next/">Next</a></div>', None),
        ('<p class="x"><a href="https://other.example/page/2/">Next</a></p>', None),
    ],
)
def test_the_pager_is_found_by_rel_class_text_or_numbers(extra: str, pager: str | None) -> None:
    found = page_rules(_cards(extra), url="https://x.example/", headers={})
    assert found is not None and found.rules.entry == "div.list > div"
    assert found.rules.next == pager


# ------------------------------------------------------------ against hand-written rules


def test_auto_mode_reads_the_example_pages_like_their_documented_rules() -> None:
    from tests.test_parse_page import EXAMPLES, HOME_RULES

    def fields(doc: ParsedDocument) -> list[tuple[object, ...]]:
        return [(i.title, i.link, i.published, i.categories, i.content) for i in doc.items]

    for name in ("home.html", "home-2.html"):
        path = EXAMPLES / name
        body, url = path.read_bytes(), str(path)
        auto = parse_page(body, url=url, headers={}, source="home", select=None)
        hand = parse_page(body, url=url, headers={}, source="home", select=HOME_RULES)
        assert auto.auto_method == "structure"
        assert fields(auto) == fields(hand) and len(hand.items) in (7, 3)


# --------------------------------------------------------------------------- aggregator add


def test_add_writes_the_selectors_auto_mode_found(
    tmp_path: Path, server: LocalServer, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_config(tmp_path, '[feed]\ntitle = "t"\nlink = "https://t.example/"\n')
    page = server.serve("/", _local(LAYOUTS["jekyll"]), "text/html")
    assert main(["add", page, "-c", str(path)]) == 0
    out = capsys.readouterr().out
    assert "posts found with these selectors" in out
    assert 'entry = "ul.post-list > li"' in out
    source = load_config(path).sources[-1]
    assert source.kind == "page" and source.select is not None
    assert source.select.entry == "ul.post-list > li" and source.select.title == "h3"
    # The pinned selectors read every post.
    assert main(["check", "--fetch", "-c", str(path)]) == 0
    assert f"{source.name}: 8 entries (page, HTTP 200)" in capsys.readouterr().out
