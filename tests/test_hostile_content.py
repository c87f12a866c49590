"""Hostile characters, dates and encodings, end to end: served, stored, emitted, read back."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import feedparser
from lxml import etree

from tests.helpers import LocalServer, aware, refresh_all, seeded, snapshot, state, two_sources


def _words(seed: str) -> str:
    """Text unlike any other seed's, so that dedup keeps the entries apart."""
    return " ".join(hashlib.sha1(f"{seed}{i}".encode()).hexdigest()[:8] for i in range(8))


_BAD = "\x00\x01\x08\x0b\x1b\x7f\u202e\u2066\u200b\ufeff\ufffe"


def test_control_bidi_and_surrogate_characters_never_reach_the_outputs(
    tmp_path: Path, server: LocalServer
) -> None:
    config = seeded(tmp_path, server, "/feed.json")
    # JSON can carry what XML cannot: NUL, C0 controls, a lone surrogate, bidi overrides.
    doc = {
        "version": "https://jsonfeed.org/version/1.1",
        "title": "J",
        "items": [
            {
                "id": "n-1",
                "title": f"Nul{_BAD}title \ud800 here",
                "url": "https://site.example/n-1",
                "content_text": f"Body with{_BAD} controls \udfff inside.",
                "authors": [{"name": "Ann\x00\u202eIe"}],
                "tags": ["t\x00ag", "\u202e"],
            },
            {"id": "n-2", "title": "A clean neighbour", "content_text": "Fine."},
        ],
    }
    body = json.dumps(doc, ensure_ascii=True).encode()  # \u0000 and \ud800 escapes
    server.serve("/feed.json", body, "application/feed+json")
    results = refresh_all(config)
    assert results["hostile"].outcome == "new" and results["hostile"].new == 2
    atom = (config.output_dir / "feed.atom").read_bytes()
    etree.fromstring(atom)  # strict XML parse: one bad character would fail the whole feed
    parsed = feedparser.parse(atom)
    assert not parsed.bozo, parsed.bozo_exception
    titles = [e.title for e in parsed.entries]
    assert "A clean neighbour" in titles and "Earlier one" in titles and "Steady one" in titles
    nul = next(e for e in parsed.entries if e.title.startswith("Nul"))
    assert nul.title == "Nultitle here" or nul.title.replace(" ", "") == "Nultitlehere"
    text = atom.decode("utf-8")
    for ch in _BAD + "\ud800\udfff":
        assert ch not in text
        assert f"&#{ord(ch)};" not in text and f"&#x{ord(ch):x};" not in text.lower()
    raw = (config.output_dir / "snapshot.json").read_text(encoding="utf-8")
    snap = json.loads(raw)
    dumped = json.dumps(snap, ensure_ascii=False)
    assert not any(ch in dumped for ch in _BAD)
    assert "\\u0000" not in raw and "\\ud800" not in raw.lower()
    entry = next(e for e in snap["entries"] if e["title"].startswith("Nul"))
    assert entry["authors"] == ["AnnIe"] and entry["categories"] == ["tag"]


def test_absurd_and_future_dates_fall_back_to_first_seen(
    tmp_path: Path, server: LocalServer
) -> None:
    future = (datetime.now(UTC) + timedelta(days=30)).strftime("%a, %d %b %Y %H:%M:%S +0000")
    dates = {
        "year-0": "Sat, 01 Jan 0000 00:00:00 +0000",
        "year-9999": "Fri, 31 Dec 9999 23:59:59 +0000",
        "epoch-digits": "1700000000",
        "garbage": "the day after tomorrow",
        "future": future,
        "iso-year-0": "0000-01-01T00:00:00Z",
        "good": "Tue, 03 Nov 2026 09:00:00 +0000",
    }
    items = "".join(
        f"<item><guid>{k}</guid><title>Date {k}</title><pubDate>{v}</pubDate>"
        f"<description>{_words(k)}</description></item>"
        for k, v in dates.items()
    )
    body = (
        f"<?xml version='1.0'?><rss version='2.0'><channel><title>T</title>{items}</channel></rss>"
    ).encode()
    server.serve("/dates.xml", body, "application/rss+xml")
    config = two_sources(tmp_path, server, server.url("/dates.xml"))
    before = datetime.now(UTC)
    results = refresh_all(config)
    assert results["hostile"].new == len(dates)
    snap = snapshot(config)
    by_title = {e["title"]: e for e in snap["entries"] if e["source"] == "hostile"}
    for key in dates:
        entry = by_title[f"Date {key}"]
        if key == "good":
            assert entry["published"] == "2026-11-03T09:00:00Z"
            continue
        assert entry["published"] is None, (key, entry["published"])
        first_seen = aware(entry["first_seen"])
        assert before - timedelta(seconds=5) <= first_seen <= datetime.now(UTC)
        assert aware(entry["updated"]) <= datetime.now(UTC) + timedelta(seconds=5)
    parsed = feedparser.parse((config.output_dir / "feed.atom").read_bytes())
    assert not parsed.bozo
    for e in parsed.entries:
        assert 2000 < e.updated_parsed.tm_year < 2100
    assert state(config, "hostile").last_status == "ok"


def test_html_without_a_charset_is_decoded_by_meta_and_detection(
    tmp_path: Path, server: LocalServer
) -> None:
    card = "<div class='c'><h3><a href='/p/{n}'>{t}</a></h3><p>{t} — résumé</p></div>"
    meta_page = (
        "<html><head><meta charset='windows-1251'></head><body>"
        + card.format(n=1, t="Привет мир")
        + "</body></html>"
    ).encode("windows-1251", errors="replace")
    sniffed = (
        "<html><head><title>x</title></head><body>"
        + card.format(n=2, t="Grüße aus Köln, straße, Äpfel und Öl")
        + "</body></html>"
    ).encode("utf-8")
    bom = b"\xef\xbb\xbf" + (
        "<html><body>" + card.format(n=3, t="日本語のタイトル") + "</body></html>"
    ).encode("utf-8")
    server.serve("/meta.html", meta_page, "text/html")  # no charset in the header
    server.serve("/sniffed.html", sniffed, "text/html")
    server.serve("/bom.html", bom, "text/html; charset=iso-8859-1")  # the BOM wins
    select = '\nkind = "page"\n[sources.select]\nentry = ".c"\ntitle = "h3"\nlink = "h3 a"\n'
    extra = "".join(
        f'\n[[sources]]\nname = "{n}"\nurl = "{server.url(f"/{n}.html")}"{select}'
        for n in ("meta", "sniffed")
    )
    config = two_sources(tmp_path, server, server.url("/bom.html"), extra=select + extra)
    results = refresh_all(config)
    assert {r.outcome for r in results.values()} == {"new"}, results
    titles = {e["source"]: e["title"] for e in snapshot(config)["entries"]}
    assert titles["meta"] == "Привет мир"
    assert titles["sniffed"] == "Grüße aus Köln, straße, Äpfel und Öl"
    assert titles["hostile"] == "日本語のタイトル"
