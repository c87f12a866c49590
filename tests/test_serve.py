"""The HTTP server as feed readers and browsers see it: real waitress on 127.0.0.1:0."""

from __future__ import annotations

import gzip
import http.client
import json
import threading
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import feedparser
import jsonschema
import lxml.html
import pytest

from aggregator import emit
from aggregator.config import load_config
from aggregator.refresh import refresh
from aggregator.serve import Server
from tests.helpers import DATA, LocalServer, Slowloris, rss_posts, write_config

JSON_FEED_SCHEMA = json.loads((DATA / "jsonfeed" / "jsonfeed-1.1.schema.json").read_text())


@pytest.fixture
def site(tmp_path: Path, server: LocalServer) -> Iterator[tuple[Server, Path]]:
    """Outputs of one refresh over two sources (one failing), served on a free port."""
    good = server.serve(
        "/good.xml",
        rss_posts(
            30, extra=" &amp;lt;script&amp;gt;alert(1)&amp;lt;/script&amp;gt; &amp;amp; more"
        ),
    )
    bad = server.url("/missing.xml")
    path = write_config(
        tmp_path,
        f"""
[feed]
title = "Merged <feed> & friends"
link = "http://127.0.0.1/"
self_url = "http://127.0.0.1/feed.atom"
[[sources]]
name = "good"
url = "{good}"
category = "Blogs"
[[sources]]
name = "bad"
url = "{bad}"
""",
    )
    config = load_config(path)
    refresh(config)
    srv = Server(config.output_dir, port=0).start()
    try:
        yield srv, config.output_dir
    finally:
        srv.stop()


def request(
    srv: Server, path: str, method: str = "GET", **headers: str
) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection(srv.host, srv.port, timeout=10)
    try:
        conn.request(method, path, headers={k.replace("_", "-"): v for k, v in headers.items()})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def test_feed_reader_polls_and_gets_304(site: tuple[Server, Path]) -> None:
    srv, out = site
    first = feedparser.parse(srv.url + "feed.atom")
    assert first.status == 200 and not first.bozo
    assert len(first.entries) == 30
    assert first.entries[0].title.startswith("Post ")
    assert first.headers["content-type"] == "application/atom+xml; charset=utf-8"
    again = feedparser.parse(srv.url + "feed.atom", etag=first.etag)
    assert again.status == 304 and again.entries == []
    by_date = feedparser.parse(srv.url + "feed.atom", modified=first.modified)
    assert by_date.status == 304
    # The feed changes on disk: the old ETag no longer matches.
    emit.write_if_changed(out, emit.FEED_FILE, (out / emit.FEED_FILE).read_bytes() + b"\n")
    changed = feedparser.parse(srv.url + "feed.atom", etag=first.etag)
    assert changed.status == 200 and changed.etag != first.etag and len(changed.entries) == 30


@pytest.mark.parametrize(
    ("path", "content_type"),
    [
        ("/", "text/html; charset=utf-8"),
        ("/feed.atom", "application/atom+xml; charset=utf-8"),
        ("/feed.json", "application/feed+json; charset=utf-8"),
        ("/snapshot.json", "application/json; charset=utf-8"),
    ],
)
def test_every_file_has_validators_head_and_gzip(
    site: tuple[Server, Path], path: str, content_type: str
) -> None:
    srv, out = site
    name = emit.INDEX_FILE if path == "/" else path[1:]
    status, headers, body = request(srv, path)
    assert status == 200
    assert body == (out / name).read_bytes()
    assert headers["content-type"] == content_type
    etag = headers["etag"]
    assert etag.startswith('"') and not etag.startswith("W/")
    assert "max-age=" in headers["cache-control"]
    assert headers["last-modified"].endswith("GMT")
    assert headers["x-content-type-options"] == "nosniff"

    status, head_headers, head_body = request(srv, path, "HEAD")
    assert status == 200 and head_body == b""
    assert head_headers["content-length"] == str(len(body)) and head_headers["etag"] == etag

    status, _, empty = request(srv, path, If_None_Match=etag)
    assert status == 304 and empty == b""
    status, _, _ = request(srv, path, If_Modified_Since=headers["last-modified"])
    assert status == 304
    status, _, _ = request(srv, path, If_None_Match='"something-else"')
    assert status == 200

    status, gz_headers, gz_body = request(srv, path, Accept_Encoding="gzip, deflate")
    assert status == 200 and gz_headers["content-encoding"] == "gzip"
    assert gzip.decompress(gz_body) == body and len(gz_body) < len(body)
    assert gz_headers["etag"] != etag and gz_headers["vary"] == "Accept-Encoding"
    status, _, _ = request(srv, path, Accept_Encoding="gzip", If_None_Match=gz_headers["etag"])
    assert status == 304
    status, plain_headers, _ = request(srv, path, Accept_Encoding="gzip;q=0")
    assert "content-encoding" not in plain_headers


@pytest.mark.parametrize(
    "path",
    [
        "/config.toml",
        "/../config.toml",
        "/%2e%2e/config.toml",
        "/data/aggregator.db",
        "//etc/passwd",
        "/feed.atom/../../config.toml",
        "/.feed.atom.tmp",
        "/public/feed.atom",
    ],
)
def test_nothing_outside_the_known_files_is_served(site: tuple[Server, Path], path: str) -> None:
    srv, _ = site
    status, _, body = request(srv, path)
    assert status == 404
    assert b"[feed]" not in body and b"SQLite" not in body


def test_only_get_and_head(site: tuple[Server, Path]) -> None:
    srv, _ = site
    status, headers, _ = request(srv, "/feed.atom", "POST")
    assert status == 405 and headers["allow"] == "GET, HEAD"


def test_json_feed_is_valid_and_matches_the_atom(site: tuple[Server, Path]) -> None:
    srv, _ = site
    status, _, body = request(srv, "/feed.json")
    assert status == 200
    doc = json.loads(body)
    jsonschema.Draft202012Validator(JSON_FEED_SCHEMA).validate(doc)
    assert doc["feed_url"] == "http://127.0.0.1/feed.json"
    atom = feedparser.parse(request(srv, "/feed.atom")[2])
    assert [i["id"] for i in doc["items"]] == [e.id for e in atom.entries]
    assert [i["title"] for i in doc["items"]] == [e.title for e in atom.entries]
    first = doc["items"][0]
    assert first["tags"] == ["Blogs"] and first["url"].startswith("http://blog.test/post/")
    assert datetime.fromisoformat(first["date_published"]).tzinfo is not None


def test_healthz_reads_the_snapshot(site: tuple[Server, Path], tmp_path: Path) -> None:
    srv, out = site
    status, headers, body = request(srv, "/healthz")
    assert status == 200 and headers["cache-control"] == "no-cache"
    doc = json.loads(body)
    snapshot = json.loads((out / emit.SNAPSHOT_FILE).read_text())
    assert doc["ok"] is True
    assert doc["last_refresh"] == snapshot["generated_at"]
    assert [e["name"] for e in doc["errors"]] == ["bad"]
    assert "404" in doc["errors"][0]["error"]
    # Feed requests never touch the database: without it everything is still served.
    (tmp_path / "data" / "aggregator.db").unlink()
    assert request(srv, "/feed.atom")[0] == 200


def test_healthz_without_outputs_is_503(tmp_path: Path) -> None:
    srv = Server(tmp_path, port=0).start()
    try:
        status, _, body = request(srv, "/healthz")
        assert status == 503 and json.loads(body)["ok"] is False
        status, _, body = request(srv, "/feed.atom")
        assert status == 404 and b"refresh" in body
    finally:
        srv.stop()


def test_page_escapes_everything_and_advertises_the_feeds(site: tuple[Server, Path]) -> None:
    srv, _ = site
    status, headers, body = request(srv, "/")
    assert status == 200
    assert "default-src 'none'" in headers["content-security-policy"]
    assert b"<script>" not in body and b"<feed>" not in body
    doc = lxml.html.fromstring(body)
    alternates = {
        link.get("type"): link.get("href") for link in doc.xpath('//link[@rel="alternate"]')
    }
    assert alternates == {
        "application/atom+xml": "feed.atom",
        "application/feed+json": "feed.json",
    }
    assert doc.findtext(".//title") == "Merged <feed> & friends"
    items = doc.xpath('//ol[@id="latest"]/li')
    assert len(items) == 30
    first = items[0]
    assert first.xpath(".//a")[0].text_content().endswith("<script>alert(1)</script> & more")
    source = first.xpath('.//span[@class="source"]')[0]
    assert source.text_content() == "good"
    (site,) = source.xpath("a/@href")  # the source's site
    assert site.startswith("http://127.0.0.1:") and site.endswith("/") and "good" not in site
    assert first.xpath(".//time")[0].get("datetime").startswith("2026-06-")
    rows = {
        r.xpath("td")[0].text_content(): r.xpath("td")[2].text_content()
        for r in doc.xpath("//tbody/tr")
    }
    # Shown by its feed's own title ("t"), the name beside it; a source never read by its name.
    assert rows["t (good)"] == "ok" and rows["bad"] == "error: not found (404)"


def test_a_request_during_a_rewrite_gets_a_whole_file(site: tuple[Server, Path]) -> None:
    srv, out = site
    versions = [rss_posts(5).encode(), rss_posts(60, prefix="Other").encode()]
    allowed = [*versions, (out / emit.FEED_FILE).read_bytes()]
    stop = threading.Event()

    def rewrite() -> None:
        i = 0
        while not stop.is_set():
            emit.write_if_changed(out, emit.FEED_FILE, versions[i % 2])
            i += 1

    writer = threading.Thread(target=rewrite)
    writer.start()
    seen = set()
    try:
        for _ in range(150):
            status, headers, body = request(srv, "/feed.atom")
            assert status == 200
            assert body in allowed
            assert headers["content-length"] == str(len(body))
            seen.add(body)
    finally:
        stop.set()
        writer.join()
    assert seen & set(versions)  # the rewrites were seen, each one whole


def test_a_taken_port_is_one_clear_line(
    site: tuple[Server, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from aggregator.cli import main

    srv, _ = site
    (tmp_path / "c").mkdir()
    path = write_config(tmp_path / "c", '[feed]\ntitle = "x"\n')
    assert main(["serve", "-c", str(path), "--port", str(srv.port)]) == 3
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert f"cannot listen on 127.0.0.1:{srv.port}" in err and "in use" in err


def test_a_reader_is_answered_while_a_slow_client_holds_connections(
    site: tuple[Server, Path],
) -> None:
    """300 connections trickling header lines from one address do not keep a reader out."""
    srv, _ = site
    slow = Slowloris(srv.host, srv.port, connections=300, every=1.0).start()
    try:
        assert slow.opened >= 300  # the kernel accepted them all; the server holds 16
        status, _, body = request(srv, "/feed.atom")
        assert status == 200 and body.startswith(b"<?xml")
        # Connections over the client's share are closed on arrival, and reopened: the slow
        # client keeps trying, and readers keep getting answers.
        status, _, _ = request(srv, "/feed.json")
        assert status == 200
    finally:
        slow.stop()
