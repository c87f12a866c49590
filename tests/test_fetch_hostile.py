"""A hostile local server, case by case, through the whole refresh.

Each test asserts what was stored and reported, that the earlier entries of the source survived,
that the other source of the same run completed, and, where it matters, what the client sent.
"""

from __future__ import annotations

import gzip
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler
from pathlib import Path

from aggregator import USER_AGENT
from aggregator.refresh import refresh
from tests.helpers import (
    EARLIER,
    LocalServer,
    Response,
    assert_survived,
    by_name,
    drip,
    endless,
    refresh_all,
    rss,
    seeded,
    snapshot,
    state,
    titles_of,
    two_sources,
)

# --- polite and cheap -----------------------------------------------------------------------


def test_304_sends_validators_parses_nothing_and_keeps_entries(
    tmp_path: Path, server: LocalServer
) -> None:
    def conditional(handler: BaseHTTPRequestHandler) -> bytes | None:
        if handler.headers.get("If-None-Match") == '"v1"':
            handler.send_response(304)
            handler.send_header("ETag", '"v1"')
            handler.end_headers()
            return None
        return EARLIER

    server.routes["/feed.xml"] = Response(
        conditional,
        200,
        {
            "Content-Type": "application/rss+xml",
            "ETag": '"v1"',
            "Last-Modified": "Tue, 03 Nov 2026 09:00:00 GMT",
        },
    )
    config = two_sources(tmp_path, server, server.url("/feed.xml"))
    first = refresh_all(config)
    assert first["hostile"].outcome == "new" and first["hostile"].new == 2
    sent = server.hits("/feed.xml")[-1].headers
    assert "if-none-match" not in sent and "if-modified-since" not in sent
    assert sent["user-agent"] == USER_AGENT
    assert "aggregator/" in USER_AGENT and "https://" in USER_AGENT

    results = refresh_all(config)
    sent = server.hits("/feed.xml")[-1].headers
    assert sent["if-none-match"] == '"v1"'
    assert sent["if-modified-since"] == "Tue, 03 Nov 2026 09:00:00 GMT"
    assert sent["user-agent"] == USER_AGENT
    assert results["hostile"].outcome == "unchanged" and results["hostile"].status == 304
    assert results["hostile"].new == results["hostile"].unchanged == 0  # nothing parsed
    st = state(config, "hostile")
    assert st.last_status == "not-modified" and st.etag == '"v1"'
    assert_survived(config, results)


def test_same_body_200_is_not_modified(tmp_path: Path, server: LocalServer) -> None:
    config = seeded(tmp_path, server, "/feed.xml")
    results = refresh_all(config)
    assert results["hostile"].outcome == "unchanged" and results["hostile"].status == 200
    assert results["hostile"].unchanged == 0  # skipped before parsing
    assert state(config, "hostile").last_status == "not-modified"
    assert_survived(config, results)


def test_301_chain_is_followed_and_adopted_after_three_runs(
    tmp_path: Path, server: LocalServer
) -> None:
    server.serve("/old.xml", b"", status=301, Location="/older.xml")
    server.serve("/older.xml", b"", status=308, Location=server.url("/new.xml"))
    server.serve("/new.xml", EARLIER, "application/rss+xml")
    config = two_sources(tmp_path, server, server.url("/old.xml"))
    for run in range(3):
        results = refresh_all(config)
        assert results["hostile"].outcome == ("new" if run == 0 else "unchanged")
        assert results["steady"].outcome in ("new", "unchanged")
    st = state(config, "hostile")
    assert st.redirect_url == server.url("/new.xml") and st.redirect_streak == 3
    assert st.effective_url == server.url("/new.xml")
    shown = next(s for s in snapshot(config)["sources"] if s["name"] == "hostile")
    assert shown["moved_to"] == server.url("/new.xml") and shown["url"] == server.url("/old.xml")
    hits_before = len(server.hits("/old.xml"))
    refresh_all(config)
    assert len(server.hits("/old.xml")) == hits_before  # the new URL is used directly
    assert server.hits("/new.xml")[-1].headers["user-agent"] == USER_AGENT
    assert titles_of(config, "hostile") == {"Earlier one", "Earlier two"}


def test_redirect_loop_is_an_error_and_keeps_entries(tmp_path: Path, server: LocalServer) -> None:
    config = seeded(tmp_path, server, "/feed.xml")
    server.serve("/feed.xml", b"", status=302, Location="/loop.xml")
    server.serve("/loop.xml", b"", status=302, Location="/feed.xml")
    results = refresh_all(config)
    assert results["hostile"].outcome == "error"
    assert "more than 5 redirects" in (results["hostile"].error or "")
    assert len(server.hits("/feed.xml")) + len(server.hits("/loop.xml")) == 1 + 6
    st = state(config, "hostile")
    assert st.last_status == "error" and st.error_streak == 1
    assert_survived(config, results)


def test_410_gone_is_not_polled_again_until_the_url_changes(
    tmp_path: Path, server: LocalServer
) -> None:
    config = seeded(tmp_path, server, "/feed.xml")
    server.serve("/feed.xml", b"gone", "text/plain", status=410)
    results = refresh_all(config)
    assert results["hostile"].outcome == "error" and results["hostile"].status == 410
    assert state(config, "hostile").last_status == "gone"
    assert_survived(config, results)
    hits = len(server.hits("/feed.xml"))
    far = datetime.now(UTC) + timedelta(days=30)
    later = by_name(refresh(config, clock=lambda: far))
    assert "hostile" not in later and "steady" in later
    assert len(server.hits("/feed.xml")) == hits
    assert snapshot(config)["sources"][1]["status"] == "gone"
    # A new URL in the config is a new start.
    server.serve("/moved.xml", EARLIER, "application/rss+xml")
    moved = two_sources(tmp_path, server, server.url("/moved.xml"))
    again = by_name(refresh(moved, clock=lambda: far))
    assert again["hostile"].outcome == "unchanged"
    assert state(moved, "hostile").last_status == "ok"


def test_429_retry_after_seconds_delays_the_next_fetch(tmp_path: Path, server: LocalServer) -> None:
    config = seeded(tmp_path, server, "/feed.xml")
    server.serve("/feed.xml", b"slow down", "text/plain", status=429, Retry_After="18000")
    before = datetime.now(UTC)
    results = refresh_all(config)
    assert results["hostile"].outcome == "error" and results["hostile"].status == 429
    st = state(config, "hostile")
    assert st.next_due is not None and st.next_due >= before + timedelta(hours=5)
    assert st.error_streak == 1
    assert_survived(config, results)
    # Not due an hour later (its interval), though an error would otherwise back off 1 h.
    hour = datetime.now(UTC) + timedelta(hours=1, minutes=1)
    assert "hostile" not in by_name(refresh(config, clock=lambda: hour))


def test_429_retry_after_http_date_and_garbage_and_clamp(
    tmp_path: Path, server: LocalServer
) -> None:
    config = seeded(tmp_path, server, "/feed.xml")
    when = (datetime.now(UTC) + timedelta(days=2)).replace(microsecond=0)
    server.serve(
        "/feed.xml", b"", "text/plain", status=429, Retry_After=format_datetime(when, usegmt=True)
    )
    refresh_all(config)
    st = state(config, "hostile")
    assert st.next_due is not None and st.next_due >= when

    server.serve("/feed.xml", b"", "text/plain", status=503, Retry_After="soon, maybe")
    before = datetime.now(UTC)
    results = refresh_all(config)
    assert results["hostile"].status == 503
    st = state(config, "hostile")
    # Garbage is ignored: the ordinary backoff (2nd error: 2 h, jittered) applies.
    assert st.error_streak == 2
    assert st.next_due is not None
    assert before + timedelta(hours=1.75) <= st.next_due <= before + timedelta(hours=2, minutes=1)

    server.serve("/feed.xml", b"", "text/plain", status=429, Retry_After="99999999999")
    before = datetime.now(UTC)
    refresh_all(config)
    st = state(config, "hostile")
    assert st.next_due is not None and st.next_due <= before + timedelta(days=7, minutes=1)
    assert_survived(config, by_name(refresh(config, names=["steady"])))


def test_500_backs_off_exponentially_and_keeps_entries(tmp_path: Path, server: LocalServer) -> None:
    config = seeded(tmp_path, server, "/feed.xml")
    server.serve("/feed.xml", b"<h1>oops</h1>", "text/html", status=500)
    delays = []
    for _ in range(3):
        before = datetime.now(UTC)
        results = refresh_all(config)
        assert results["hostile"].outcome == "error" and "HTTP 500" in (
            results["hostile"].error or ""
        )
        st = state(config, "hostile")
        assert st.next_due is not None
        delays.append((st.next_due - before) / timedelta(hours=1))
    assert st.error_streak == 3 and st.last_status == "error"
    assert 0.85 < delays[0] <= 1.01 and 1.75 < delays[1] <= 2.01 and 3.5 < delays[2] <= 4.01
    assert_survived(config, results)
    snap = snapshot(config)
    hostile = next(s for s in snap["sources"] if s["name"] == "hostile")
    assert hostile["status"] == "error" and "HTTP 500" in hostile["error"]
    assert hostile["entries"] == 2


def test_cache_control_max_age_and_feed_ttl_delay_the_next_fetch(
    tmp_path: Path, server: LocalServer
) -> None:
    server.serve("/feed.xml", EARLIER, "application/rss+xml", Cache_Control="public, max-age=7200")
    config = two_sources(tmp_path, server, server.url("/feed.xml"))
    before = datetime.now(UTC)
    refresh_all(config)
    st = state(config, "hostile")
    assert st.next_due is not None and st.next_due >= before + timedelta(hours=2)
    steady = state(config, "steady")
    assert steady.next_due is not None and steady.next_due <= before + timedelta(hours=1, minutes=1)

    ttl_feed = rss(("t-1", "Ttl one"), channel="<ttl>300</ttl>")
    server.serve("/feed.xml", ttl_feed, "application/rss+xml")
    before = datetime.now(UTC)
    refresh_all(config)
    st = state(config, "hostile")
    assert st.ttl_seconds == 300 * 60
    assert st.next_due is not None and st.next_due >= before + timedelta(hours=5)
    # The same body again (not parsed): the stored ttl still applies.
    before = datetime.now(UTC)
    results = refresh_all(config)
    assert results["hostile"].outcome == "unchanged"
    st = state(config, "hostile")
    assert st.next_due is not None and st.next_due >= before + timedelta(hours=5)
    # Expires in the past and garbage Expires: the interval alone.
    server.serve("/feed.xml", EARLIER, "application/rss+xml", Expires="0")
    before = datetime.now(UTC)
    refresh_all(config)
    st = state(config, "hostile")
    assert st.next_due is not None and st.next_due <= before + timedelta(hours=1, minutes=1)


# --- hardened: slow, big and endless bodies -------------------------------------------------


def test_a_drip_is_stopped_by_the_deadline(tmp_path: Path, server: LocalServer) -> None:
    config = seeded(tmp_path, server, "/feed.xml", fetch="")
    server.routes["/feed.xml"] = Response(drip)
    results = refresh_all(config)
    assert results["hostile"].outcome == "error"
    assert "not complete within" in (results["hostile"].error or "")
    assert_survived(config, results)


def test_a_gzip_bomb_stops_at_the_size_cap(tmp_path: Path, server: LocalServer) -> None:
    config = seeded(tmp_path, server, "/feed.xml", fetch="max_bytes = 1048576")
    bomb = gzip.compress(b"<rss>" + b" " * (50 * 1024 * 1024), compresslevel=9)
    assert len(bomb) < 100 * 1024
    server.serve("/feed.xml", bomb, "application/rss+xml", Content_Encoding="gzip")
    results = refresh_all(config)
    assert results["hostile"].outcome == "error"
    assert "larger than the limit of 1048576 bytes" in (results["hostile"].error or "")
    assert "gzip" in server.hits("/feed.xml")[-1].headers["accept-encoding"]
    assert_survived(config, results)


def test_an_endless_body_stops_at_the_size_cap(tmp_path: Path, server: LocalServer) -> None:
    config = seeded(tmp_path, server, "/feed.xml", fetch="max_bytes = 1048576")
    server.routes["/feed.xml"] = Response(endless)
    results = refresh_all(config)
    assert results["hostile"].outcome == "error"
    assert "larger than the limit" in (results["hostile"].error or "")
    assert_survived(config, results)


# --- hostile bytes --------------------------------------------------------------------------


def test_wrong_charset_still_reads_the_entries(tmp_path: Path, server: LocalServer) -> None:
    config = seeded(tmp_path, server, "/feed.xml")
    latin1 = rss(("w-1", "Café crème"), ("w-2", "Déjà vu")).replace(
        b"encoding='utf-8'", b"encoding='iso-8859-1'"
    )
    latin1 = latin1.decode("utf-8").encode("iso-8859-1")
    # The header says UTF-8, the bytes are ISO-8859-1 (and say so in the declaration).
    server.serve("/feed.xml", latin1, "application/rss+xml; charset=utf-8")
    results = refresh_all(config)
    assert results["hostile"].outcome == "new" and results["hostile"].new == 2
    titles = titles_of(config, "hostile")
    assert {"Café crème", "Déjà vu"} <= titles
    assert any("declared as utf-8" in w for w in results["hostile"].warnings)
    assert not any("Ã" in t for t in titles)  # no mojibake
    assert_survived(config, results)


def test_empty_200_is_an_error_and_keeps_entries(tmp_path: Path, server: LocalServer) -> None:
    config = seeded(tmp_path, server, "/feed.xml")
    server.serve("/feed.xml", b"", "application/rss+xml")
    results = refresh_all(config)
    assert results["hostile"].outcome == "error" and "empty" in (results["hostile"].error or "")
    assert state(config, "hostile").error_streak == 1
    assert_survived(config, results)


def test_truncated_xml_keeps_what_is_whole(tmp_path: Path, server: LocalServer) -> None:
    config = seeded(tmp_path, server, "/feed.xml")
    whole = rss(("e-1", "Earlier one"), ("e-2", "Earlier two"), ("e-3", "Third, cut off"))
    server.serve("/feed.xml", whole[: whole.index(b"Third") + 3], "application/rss+xml")
    results = refresh_all(config)
    hostile = results["hostile"]
    # The whole items are kept, the one the body stops in is not, and the source says why.
    assert hostile.outcome == "unchanged" and hostile.unchanged == 2
    assert hostile.warnings == (
        "the feed is cut short (truncated XML); kept its 2 complete entries",
    )
    assert state(config, "hostile").warnings == hostile.warnings
    assert "Third" not in str(titles_of(config, "hostile"))
    assert_survived(config, results)


def test_html_served_as_a_feed_is_an_error(tmp_path: Path, server: LocalServer) -> None:
    config = seeded(tmp_path, server, "/feed.xml", extra='kind = "feed"')
    server.serve(
        "/feed.xml", b"<!doctype html><html><body><p>Login</p></body></html>", "application/rss+xml"
    )
    results = refresh_all(config)
    assert results["hostile"].outcome == "error"
    assert "not a feed (looks like HTML)" in (results["hostile"].error or "")
    assert_survived(config, results)


def test_xxe_is_refused_and_leaks_nothing(tmp_path: Path, server: LocalServer) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-VALUE")
    config = seeded(tmp_path, server, "/feed.xml")
    xxe = (
        f"<?xml version='1.0'?><!DOCTYPE rss [<!ENTITY x SYSTEM 'file://{secret}'>]>"
        "<rss version='2.0'><channel><title>T</title><item><guid>x</guid>"
        "<title>&x;</title></item></channel></rss>"
    ).encode()
    server.serve("/feed.xml", xxe, "application/rss+xml")
    results = refresh_all(config)
    assert results["hostile"].outcome == "error"
    assert "declares entities" in (results["hostile"].error or "")
    assert b"TOP-SECRET" not in (config.output_dir / "feed.atom").read_bytes()
    assert b"TOP-SECRET" not in (config.output_dir / "snapshot.json").read_bytes()
    assert_survived(config, results)


def test_billion_laughs_is_refused(tmp_path: Path, server: LocalServer) -> None:
    config = seeded(tmp_path, server, "/feed.xml")
    lol = "".join(
        f"<!ENTITY l{i} '{('&l' + str(i - 1) + ';') * 10}'>" for i in range(1, 10)
    ).encode()
    bomb = (
        b"<?xml version='1.0'?><!DOCTYPE rss [<!ENTITY l0 'lol'>" + lol + b"]>"
        b"<rss version='2.0'><channel><title>&l9;</title><item><title>&l9;</title>"
        b"</item></channel></rss>"
    )
    server.serve("/feed.xml", bomb, "application/rss+xml")
    results = refresh_all(config)
    assert results["hostile"].outcome == "error"
    assert "declares entities" in (results["hostile"].error or "")
    assert_survived(config, results)


def test_javascript_links_are_dropped_everywhere(tmp_path: Path, server: LocalServer) -> None:
    config = seeded(tmp_path, server, "/feed.xml")
    body = (
        b"<?xml version='1.0'?><rss version='2.0'><channel><title>T</title>"
        b"<item><guid>j-1</guid><title>Plain js</title><link>javascript:alert(1)</link>"
        b"<description>one</description></item>"
        b"<item><guid>j-2</guid><title>Encoded js</title>"
        b"<link>javascript&amp;#58;alert(2)</link><description>two</description></item>"
        b"<item><guid>j-3</guid><title>Data url</title>"
        b"<link>data:text/html;base64,PHNjcmlwdD4=</link><description>three</description></item>"
        b"<item><guid>j-4</guid><title>Vb</title><link>VBScript:msgbox</link>"
        b"<description>&lt;a href='javascript:x()'&gt;four&lt;/a&gt;</description></item>"
        b"</channel></rss>"
    )
    server.serve("/feed.xml", body, "application/rss+xml")
    results = refresh_all(config)
    assert results["hostile"].outcome == "new" and results["hostile"].new == 4
    snap = snapshot(config)
    mine = [e for e in snap["entries"] if e["source"] == "hostile" and e["title"] != "x"]
    assert {e["title"] for e in mine} >= {"Plain js", "Encoded js", "Data url", "Vb"}
    for e in mine:
        if e["title"] in ("Plain js", "Encoded js", "Data url", "Vb"):
            assert e["link"] is None
    atom = (config.output_dir / "feed.atom").read_text().lower()
    assert "javascript" not in atom and "vbscript" not in atom and "data:text" not in atom
    assert_survived(config, results)


def test_duplicate_guids_in_one_feed_are_stored_once(tmp_path: Path, server: LocalServer) -> None:
    config = seeded(tmp_path, server, "/feed.xml")
    body = rss(("d-1", "Same guid first"), ("d-1", "Same guid again"), ("e-1", "Earlier one"))
    server.serve("/feed.xml", body, "application/rss+xml")
    results = refresh_all(config)
    assert results["hostile"].outcome in ("new", "updated")
    snap = snapshot(config)
    mine = [e for e in snap["entries"] if e["source"] == "hostile"]
    assert sum(e["title"].startswith("Same guid") for e in mine) == 1
    assert len({e["id"] for e in mine}) == len(mine)
    assert_survived(config, results)


def _big_feed(n: int) -> bytes:
    # xml:base keeps it off the lxml fast path (C, bounded by libxml2's own limits): the time
    # limit guards feedparser, the pure-Python reader of everything unusual.
    body = rss(*((f"b-{i}", f"Big post {i}") for i in range(n)))
    return body.replace(b"<channel>", b'<channel xml:base="http://127.0.0.1/">', 1)


def test_a_parse_that_runs_too_long_is_stopped(tmp_path: Path, server: LocalServer) -> None:
    """A large feed parses in a child process; past parse_timeout it is killed, nothing else."""
    config = seeded(tmp_path, server, "/feed.xml", fetch="parse_timeout = 0.05")
    body = _big_feed(12000)  # ~3 MB: seconds of feedparser work, far beyond 0.05 s
    server.serve("/feed.xml", body, "application/rss+xml")
    results = refresh_all(config)
    assert results["hostile"].outcome == "error"
    assert "parsing took longer than 0.05s" in (results["hostile"].error or "")
    assert state(config, "hostile").error_streak == 1
    assert_survived(config, results)


def test_isolated_parse_gives_the_same_document() -> None:
    from aggregator.parse.feed import ISOLATE_BYTES, parse_feed

    body = _big_feed(1500)
    assert len(body) > ISOLATE_BYTES
    kw = {"url": "http://127.0.0.1/feed.xml", "headers": {}, "source": "s", "max_items": 5000}
    here = parse_feed(body, **kw)  # type: ignore[arg-type]
    there = parse_feed(body, time_limit=60, **kw)  # type: ignore[arg-type]
    assert there == here and len(there.items) == 1500
    doctype = (
        b"<?xml version='1.0'?><!DOCTYPE rss SYSTEM 'rss.dtd'>"
        + rss(("x", "Tiny")).split(b"?>", 1)[1]
    )
    assert parse_feed(doctype, time_limit=60, **kw).items[0].title == "Tiny"  # type: ignore[arg-type]


def test_markup_in_titles_is_text_and_entries_are_capped(
    tmp_path: Path, server: LocalServer
) -> None:
    config = seeded(tmp_path, server, "/feed.xml", extra="max_entries = 3")
    items = [(f"m-{i}", f"Plain {i}") for i in range(10)]
    items[0] = ("m-0", "&lt;b&gt;Bold&lt;/b&gt; &amp;amp; &lt;script&gt;alert(1)&lt;/script&gt;")
    server.serve("/feed.xml", rss(*items), "application/rss+xml")
    results = refresh_all(config)
    assert results["hostile"].new == 3
    assert any("kept the first 3 of 10" in w for w in results["hostile"].warnings)
    titles = titles_of(config, "hostile")
    assert {"Plain 1", "Plain 2"} <= titles and "Plain 3" not in titles
    bold = next(t for t in titles if t.startswith("Bold"))
    assert "<" not in bold and "alert" not in bold
    atom = (config.output_dir / "feed.atom").read_text()
    assert "<script" not in atom and "<b>" not in atom
    assert_survived(config, results)


def test_at_most_two_requests_at_once_per_host(tmp_path: Path, server: LocalServer) -> None:
    import threading

    lock = threading.Lock()
    in_flight = [0]
    peak = [0]
    release = threading.Event()

    def counted(handler: BaseHTTPRequestHandler) -> bytes:
        with lock:
            in_flight[0] += 1
            peak[0] = max(peak[0], in_flight[0])
        release.wait(0.05)  # hold the request briefly so that others would overlap
        with lock:
            in_flight[0] -= 1
        return rss((handler.path, f"Post of {handler.path}"))

    extra = ""
    for n in range(8):
        server.routes[f"/c{n}.xml"] = Response(
            counted, 200, {"Content-Type": "application/rss+xml"}
        )
        extra += f'\n[[sources]]\nname = "c{n}"\nurl = "{server.url(f"/c{n}.xml")}"\n'
    config = two_sources(tmp_path, server, server.url("/c0.xml"), extra=extra.split("\n", 4)[4])
    results = refresh_all(config)
    assert all(r.outcome == "new" for r in results.values()), results
    assert peak[0] == 2  # per_host default: overlapping, but never more than two
