"""Broken input costs only the broken part, and the problems a source survives are kept and
shown: end to end, from hostile fixtures served by a real local server to the store, the
snapshot (against its JSON Schema), `aggregator sources`, the page and /healthz."""

from __future__ import annotations

import http.client
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import lxml.html
import pytest

from aggregator import emit
from aggregator.cli import main
from aggregator.config import Config, load_config
from aggregator.problems import plain_words
from aggregator.refresh import refresh
from aggregator.serve import Server, health_document
from tests.helpers import (
    LocalServer,
    assert_survived,
    refresh_all,
    seeded,
    snapshot,
    state,
    two_sources,
)

_ITEM = (
    "<item><guid isPermaLink='false'>{guid}</guid><title>{title}</title>"
    "<link>https://site.example/{slug}</link><pubDate>Tue, 03 Nov 2026 09:00:00 +0000</pubDate>"
    "<description>{body}</description></item>"
)


def _feed(*items: tuple[str, str, str], tail: str = "</channel></rss>") -> bytes:
    body = "".join(
        _ITEM.format(guid=g, title=t, body=b, slug=t.lower().replace(" ", "-")) for g, t, b in items
    )
    return (
        "<?xml version='1.0' encoding='utf-8'?><rss version='2.0'><channel>"
        f"<title>T</title><link>https://site.example/</link>{body}{tail}"
    ).encode()


def _source_name(row: Any) -> str:
    """The source name in a row of the page's sources table ("Title (name)" or "name")."""
    text: str = row.xpath("td")[0].text_content()
    return text.rsplit("(", 1)[-1].rstrip(")") if text.endswith(")") else text


# --- a bad character reference costs that character ---------------------------------------------


@pytest.mark.parametrize(
    ("reference", "shown"),
    [
        ("&#55357;&#56832;", "\U0001f600"),  # a surrogate pair written as two references
        ("&#xD800;", "\ufffd"),
        ("&#x110000;", "\ufffd"),
        ("&#99999999999999999999;", "\ufffd"),
        ("&#55357;", "\ufffd"),  # a lone high surrogate
    ],
)
def test_a_bad_character_reference_costs_one_character(
    tmp_path: Path, server: LocalServer, reference: str, shown: str
) -> None:
    config = seeded(tmp_path, server, "/feed.xml")
    server.serve(
        "/feed.xml",
        _feed(
            ("c-1", f"Smile {reference} here", f"Text with {reference} in it."),
            ("c-2", "A clean neighbour", "Fine words."),
        ),
        "application/rss+xml",
    )
    results = refresh_all(config)
    assert results["hostile"].outcome == "new", results["hostile"]
    assert results["hostile"].new == 2
    titles = {e["title"] for e in snapshot(config)["entries"] if e["source"] == "hostile"}
    assert f"Smile {shown} here" in titles and "A clean neighbour" in titles
    warnings = state(config, "hostile").warnings
    assert any("character reference" in w for w in warnings), warnings
    assert_survived(config, results)


def test_a_bad_reference_in_a_feed_feedparser_must_read_costs_one_character(
    tmp_path: Path, server: LocalServer
) -> None:
    # Latin-1 and not well-formed: the lxml fast path declines, feedparser's lenient parser reads
    # it, and its handle_charref would raise on the surrogate.
    body = (
        "<?xml version='1.0' encoding='iso-8859-1'?><rss version='2.0'><channel><title>T</title>"
        + _ITEM.format(
            guid="l-1", title="Caf\xe9 &#xD83D; &amp broken", body="Un caf\xe9.", slug="l"
        )
        + "</channel></rss>"
    ).encode("latin-1")
    config = seeded(tmp_path, server, "/feed.xml")
    server.serve("/feed.xml", body, "application/rss+xml")
    results = refresh_all(config)
    assert results["hostile"].outcome == "new", results["hostile"]
    titles = {e["title"] for e in snapshot(config)["entries"] if e["source"] == "hostile"}
    assert any(t.startswith("Café \ufffd") for t in titles), titles


# --- markup is never a text capture -------------------------------------------------------------


def test_a_broken_feed_served_as_text_is_not_read_as_lines(
    tmp_path: Path, server: LocalServer
) -> None:
    config = seeded(tmp_path, server, "/feed.txt")
    broken = (
        "<?xml version='1.0'?>\n<!-- generator: an old CMS --\n"
        '--><feed version="0.3" xmlns="http://purl.org/atom/ns#">\n'
        "<title>Broken</title>\n<entry><title>Half\n"
    )
    server.serve("/feed.txt", broken, "text/plain")
    results = refresh_all(config)
    hostile = results["hostile"]
    # A clear source error, not "ok" with the markup's lines as entries.
    assert hostile.outcome == "error" and hostile.error is not None
    assert "cut short (truncated XML)" in hostile.error
    titles = {e["title"] for e in snapshot(config)["entries"]}
    assert not any("<" in t or "-->" in t for t in titles), titles
    assert_survived(config, results)


def test_markup_is_read_as_text_only_when_configured(tmp_path: Path, server: LocalServer) -> None:
    url = server.serve("/cap.txt", "<b>bold claim</b> made in a capture line\n", "text/plain")
    config = two_sources(tmp_path, server, url, extra='kind = "text"')
    results = refresh_all(config)
    assert results["hostile"].outcome == "new"
    assert "<b>bold claim</b> made in a capture line" in {
        e["excerpt"] for e in snapshot(config)["entries"]
    }


# --- half a feed --------------------------------------------------------------------------------


def test_half_a_feed_keeps_its_complete_items_and_says_so(
    tmp_path: Path, server: LocalServer
) -> None:
    config = seeded(tmp_path, server, "/feed.xml")
    whole = _feed(
        ("h-1", "Half one", "The first whole item."),
        ("h-2", "Half two", "The second whole item."),
        ("h-3", "Half three", "The item the download stops in."),
    )
    cut = whole[: whole.index(b"The item the download")]
    server.serve("/feed.xml", cut, "application/rss+xml")
    results = refresh_all(config)
    assert results["hostile"].outcome == "new" and results["hostile"].new == 2
    titles = {e["title"] for e in snapshot(config)["entries"] if e["source"] == "hostile"}
    assert {"Half one", "Half two"} <= titles and "Half three" not in titles
    source = next(s for s in snapshot(config)["sources"] if s["name"] == "hostile")
    assert source["status"] == "ok"
    assert source["warnings"] == [
        "the feed is cut short (truncated XML); kept its 2 complete entries"
    ]
    assert_survived(config, results)
    # The next whole body replaces the warnings.
    server.serve("/feed.xml", whole, "application/rss+xml")
    refresh_all(config)
    assert state(config, "hostile").warnings == ()
    source = next(s for s in snapshot(config)["sources"] if s["name"] == "hostile")
    assert source["warnings"] == []


# --- problems kept and shown ----------------------------------------------------------------------


def test_repeated_guids_are_kept_as_warnings_and_shown_everywhere(
    tmp_path: Path, server: LocalServer, capsys: pytest.CaptureFixture[str]
) -> None:
    config = seeded(tmp_path, server, "/feed.xml")
    server.serve(
        "/feed.xml",
        _feed(
            ("same", "First of two", "One post under a guid it shares."),
            ("same", "Second of two", "Another post under that very guid."),
        ),
        "application/rss+xml",
    )
    refresh_all(config)
    warning = "2 different items share the guid 'same'; told apart by link or text instead"
    assert state(config, "hostile").warnings == (warning,)
    source = next(s for s in snapshot(config)["sources"] if s["name"] == "hostile")
    assert source["warnings"] == [warning]
    page = lxml.html.fromstring((config.output_dir / emit.INDEX_FILE).read_bytes())
    rows = {_source_name(r): r for r in page.xpath("//tbody/tr")}
    assert [li.text_content() for li in rows["hostile"].xpath(".//ul[@class='warnings']/li")] == [
        warning
    ]
    assert main(["sources", "-c", str(config.path)]) == 0
    out = capsys.readouterr().out
    line = next(line for line in out.splitlines() if "hostile" in line)
    assert "share the guid" in line


def _paged_source(
    tmp_path: Path, server: LocalServer, second: str, second_body: str, robots: str = ""
) -> Config:
    """A page source whose first page (one post) links to `second` as its next page."""
    first = (
        "<html><body><article><h2><a href='/p/1'>Page post one</a></h2>"
        "<p>The first post of the first page, with enough words to read.</p></article>"
        f"<a class='next' href='{second}'>older</a></body></html>"
    )
    server.serve("/list/1", first, "text/html")
    server.serve(second, second_body, "text/html")
    select = '[sources.select]\nentry = "article"\nnext = "a.next"'
    return two_sources(
        tmp_path, server, server.url("/list/1"), extra=f'kind = "page"\n{robots}{select}'
    )


def _one_warning(config: Config) -> str:
    results = refresh_all(config)
    assert results["hostile"].outcome == "new" and results["hostile"].new == 1
    (warning,) = state(config, "hostile").warnings
    source = next(s for s in snapshot(config)["sources"] if s["name"] == "hostile")
    assert source["status"] == "ok" and source["warnings"] == [warning]
    return warning


def test_a_later_page_that_matches_nothing_is_a_warning(
    tmp_path: Path, server: LocalServer
) -> None:
    redesigned = "<html><body><p>Redesigned, nothing here</p></body></html>"
    config = _paged_source(tmp_path, server, "/list/2", redesigned, "robots = false\n")
    warning = _one_warning(config)
    assert warning.startswith(f"page {server.url('/list/2')}:") and "matched nothing" in warning


def test_robots_txt_refusing_a_later_page_is_a_warning(tmp_path: Path, server: LocalServer) -> None:
    server.serve("/robots.txt", b"User-agent: *\nDisallow: /private/\n", "text/plain")
    hidden = "<html><body><article>hidden</article></body></html>"
    config = _paged_source(tmp_path, server, "/private/2", hidden)
    warning = _one_warning(config)
    assert warning.startswith(f"page {server.url('/private/2')}: robots.txt disallows")
    assert server.hits("/private/2") == []


def test_the_page_shows_plain_words_and_sources_shows_the_detail(
    tmp_path: Path, server: LocalServer, capsys: pytest.CaptureFixture[str]
) -> None:
    server.serve("/missing.xml", b"no", "text/plain", status=404)
    config = two_sources(tmp_path, server, "http://127.0.0.1:9/refused.xml")
    refresh_all(config)
    error = state(config, "hostile").error
    assert error is not None and error.startswith("cannot connect")
    page = lxml.html.fromstring((config.output_dir / emit.INDEX_FILE).read_bytes())
    rows = {_source_name(r): r.xpath("td")[2].text_content() for r in page.xpath("//tbody/tr")}
    assert rows["hostile"] == "error: the server refused the connection"
    assert "Errno" not in (config.output_dir / emit.INDEX_FILE).read_text()
    assert main(["sources", "-c", str(config.path)]) == 0
    assert "cannot connect" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("error", "words"),
    [
        ("cannot connect: [Errno 111] Connection refused", "the server refused the connection"),
        ("cannot connect: cannot resolve nowhere.test: x", "the server's name could not be found"),
        ("connection timed out after 10s", "the server did not answer in time"),
        ("no response within 30s", "the server did not answer in time"),
        ("response stalled for 30s", "the server did not answer in time"),
        ("HTTP 404 Not Found", "not found (404)"),
        ("HTTP 410 Gone", "gone for good (410)"),
        ("HTTP 503 Service Unavailable", "the server had a problem (503)"),
        ("HTTP 418 I'm a teapot", "the server answered 418"),
        ("TLS error: certificate verify failed", "the secure connection failed"),
        ("not a feed (looks like plain text)", "the feed could not be read"),
        ("not well-formed XML and no entries (mismatched tag)", "the feed could not be read"),
        (
            "robots.txt disallows http://x/ (set robots = false to fetch)",
            "the site's robots.txt does not allow it",
        ),
        (
            "selector 'article' ([sources.select] entry) matched nothing",
            "the page no longer looks as expected",
        ),
        ("internal error: ValueError: boom", "an internal error (see the log)"),
    ],
)
def test_plain_words_for_errors(error: str, words: str) -> None:
    assert plain_words(error) == words


# --- /healthz ----------------------------------------------------------------------------------


def _snapshot_bytes(config_sources: list[dict[str, object]]) -> bytes:
    return json.dumps(
        {"generated_at": "2026-12-01T00:00:00Z", "sources": config_sources, "entries": []}
    ).encode()


def _source(name: str, last_success: datetime | None, interval: int = 3600) -> dict[str, object]:
    return {
        "name": name,
        "status": "ok" if last_success else "error",
        "error": None if last_success else "HTTP 500 Internal Server Error",
        "warnings": [],
        "last_fetch": "2026-12-01T00:00:00Z",
        "last_success": last_success.isoformat() if last_success else None,
        "interval_seconds": interval,
    }


def test_healthz_is_ok_while_one_source_succeeded_within_three_intervals() -> None:
    now = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    fresh = now - timedelta(hours=2, minutes=59)
    stale = now - timedelta(hours=3, minutes=1)
    ok, body = health_document(
        _snapshot_bytes([_source("a", None), _source("b", stale), _source("c", fresh)]), now
    )
    doc = json.loads(body)
    assert ok and doc["ok"] is True and doc["healthy"] == 1
    assert [(s["name"], s["healthy"]) for s in doc["sources"]] == [
        ("a", False),
        ("b", False),
        ("c", True),
    ]
    ok, body = health_document(_snapshot_bytes([_source("a", None), _source("b", stale)]), now)
    assert not ok and "within 3 of its intervals" in json.loads(body)["problem"]
    # A daily source is judged by its own interval.
    daily = _source("d", now - timedelta(days=2), interval=86400)
    assert health_document(_snapshot_bytes([daily]), now)[0]


def test_healthz_answers_503_when_five_of_six_fail_and_the_sixth_is_stale(
    tmp_path: Path, server: LocalServer
) -> None:
    long_ago = datetime.now(UTC) - timedelta(days=10)
    server.serve(
        "/ok.xml", _feed(("o-1", "Old but fine", "Fetched long ago.")), "application/rss+xml"
    )
    sources = "".join(
        f'[[sources]]\nname = "dead{i}"\nurl = "http://127.0.0.1:9/{i}.xml"\n' for i in range(5)
    )
    config_path = tmp_path / "config.toml"
    config_path.write_text(
        '[feed]\ntitle = "H"\nlink = "https://h.test/"\n[output]\ndir = "out"\n'
        '[store]\npath = "agg.db"\n[fetch]\ntimeout = 2\n'
        f'[[sources]]\nname = "fine"\nurl = "{server.url("/ok.xml")}"\n{sources}',
        encoding="utf-8",
    )
    config = load_config(config_path)
    refresh(config, force=True, clock=lambda: long_ago)
    status, doc = request_healthz(config.output_dir)
    assert status == 503 and doc["ok"] is False
    assert {s["name"]: s["healthy"] for s in doc["sources"]}["fine"] is False
    refresh(config, force=True)
    status, doc = request_healthz(config.output_dir)
    assert status == 200 and doc["healthy"] == 1
    assert len(doc["errors"]) == 5


def request_healthz(directory: Path) -> tuple[int, dict[str, Any]]:
    """GET /healthz from a real server on the output folder."""
    srv = Server(directory, port=0).start()
    try:
        conn = http.client.HTTPConnection(srv.host, srv.port, timeout=10)
        try:
            conn.request("GET", "/healthz")
            resp = conn.getresponse()
            return resp.status, json.loads(resp.read())
        finally:
            conn.close()
    finally:
        srv.stop()
