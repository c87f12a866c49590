"""A person opens `/` in a real browser (headless Chromium) and sees the latest entries."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import lxml.html
import pytest

from aggregator.config import load_config
from aggregator.refresh import refresh
from aggregator.serve import Server
from tests.helpers import LocalServer, rss_posts, write_config

BROWSER = next(
    (shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)),
    None,
)

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(BROWSER is None, reason="no headless Chromium installed"),
]


def dump_dom(url: str, profile: Path) -> str:
    """The page's DOM after the browser loaded and rendered it."""
    assert BROWSER is not None
    run = subprocess.run(
        [
            BROWSER,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            f"--user-data-dir={profile}",
            "--dump-dom",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    return run.stdout


@pytest.fixture
def served(tmp_path: Path, server: LocalServer) -> Iterator[Server]:
    feed = server.serve("/feed.xml", rss_posts(12))
    capture = server.serve(
        "/capture.txt",
        "LATEST UPDATES\nNotes\n2026-07-01\n今天读完了一篇关于注意力缩放的文章，记下要点。\n",
        content_type="text/plain; charset=utf-8",
    )
    path = write_config(
        tmp_path,
        f"""
[feed]
title = "Browser <check>"
[[sources]]
name = "blog"
url = "{feed}"
[[sources]]
name = "capture"
url = "{capture}"
kind = "text"
""",
    )
    config = load_config(path)
    refresh(config)
    srv = Server(config.output_dir, port=0).start()
    try:
        yield srv
    finally:
        srv.stop()


def test_the_page_shows_the_latest_entries(served: Server, tmp_path: Path) -> None:
    dom = lxml.html.fromstring(dump_dom(served.url, tmp_path / "profile"))
    assert dom.findtext(".//h1") == "Browser <check>"
    items = dom.xpath('//ol[@id="latest"]/li')
    assert len(items) == 13
    titles = [li.xpath(".//strong")[0].text_content() for li in items]
    assert titles[0].startswith("今天读完了")  # the newest entry first
    assert "Post 11" in titles and "Post 0" in titles
    sources = {li.xpath('.//span[@class="source"]')[0].text_content() for li in items}
    assert sources == {"blog", "capture"}
    link = items[1].xpath(".//a")[0].get("href")
    assert link.startswith("http://blog.test/post/")
    status = {
        r.xpath("td")[0].text: r.xpath("td")[2].text_content() for r in dom.xpath("//tbody/tr")
    }
    assert status == {"blog": "ok", "capture": "ok"}
    feeds = dom.xpath('//link[@rel="alternate"]/@href')
    assert feeds == ["feed.atom", "feed.json"]
