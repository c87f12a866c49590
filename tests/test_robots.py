"""robots.txt is honoured for page sources, once per site per run, and configurable."""

from __future__ import annotations

from pathlib import Path

from aggregator.config import load_config
from aggregator.refresh import refresh
from tests.helpers import DATA, LocalServer, by_name, snapshot, write_config

PAGE = (DATA / "site" / "page.html").read_bytes()
SELECT = """
[sources.select]
entry = ".post-card"
title = "h3"
link = "h3 a"
"""


def _config(tmp_path: Path, server: LocalServer, extra: str = "") -> Path:
    server.serve("/blog/", PAGE, "text/html; charset=utf-8")
    server.serve("/news/", PAGE.replace(b"Borrow", b"Lend"), "text/html; charset=utf-8")
    server.serve("/feed.xml", (DATA / "site" / "alpha.rss").read_bytes(), "application/rss+xml")
    return write_config(
        tmp_path,
        f"""
[feed]
title = "Merged"
[output]
dir = "out"
[store]
path = "agg.db"
[[sources]]
name = "blog"
url = "{server.url("/blog/")}"
kind = "page"
{SELECT}
[[sources]]
name = "news"
url = "{server.url("/news/")}"
kind = "page"
{extra}
{SELECT}
[[sources]]
name = "feed"
url = "{server.url("/feed.xml")}"
""",
    )


def test_disallowed_pages_are_not_fetched_and_keep_their_entries(
    tmp_path: Path, server: LocalServer
) -> None:
    config = load_config(_config(tmp_path, server))
    first = by_name(refresh(config))
    assert {r.outcome for r in first.values()} == {"new"}
    assert len(server.hits("/robots.txt")) == 1  # 404: no rules; asked once for two pages

    server.serve("/robots.txt", b"User-agent: *\nDisallow: /blog/\n", "text/plain")
    results = by_name(refresh(config, force=True))
    assert results["blog"].outcome == "error"
    assert "robots.txt disallows" in (results["blog"].error or "")
    assert results["news"].outcome == "unchanged" and results["feed"].outcome == "unchanged"
    assert len(server.hits("/robots.txt")) == 2  # once more in this run, for both pages
    assert len(server.hits("/blog/")) == 1  # not asked again
    assert server.hits("/robots.txt")[-1].headers["user-agent"].startswith("aggregator/")
    blog = [e for e in snapshot(config)["entries"] if e["source"] == "blog"]
    assert len(blog) == 3


def test_rules_for_the_product_token_and_robots_false(tmp_path: Path, server: LocalServer) -> None:
    server.serve(
        "/robots.txt",
        b"User-agent: aggregator\nDisallow: /news/\n\nUser-agent: *\nDisallow: /\n",
        "text/plain",
    )
    config = load_config(_config(tmp_path, server, extra="robots = false"))
    results = by_name(refresh(config))
    assert results["blog"].outcome == "new"  # only /news/ is closed to aggregator
    assert results["news"].outcome == "new"  # robots = false: fetched anyway
    assert results["feed"].outcome == "new"  # feeds do not consult robots.txt by default


def test_an_unreachable_robots_txt_disallows_the_site(tmp_path: Path, server: LocalServer) -> None:
    server.serve("/robots.txt", b"oops", "text/plain", status=503)
    config = load_config(_config(tmp_path, server))
    results = by_name(refresh(config))
    assert results["blog"].outcome == "error" and results["news"].outcome == "error"
    assert server.hits("/blog/") == [] and server.hits("/news/") == []
    assert results["feed"].outcome == "new"
