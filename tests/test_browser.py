"""A person opens `/` in a real browser (headless Chromium) and sees the latest entries."""

from __future__ import annotations

import http.client
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


def chromium(profile: Path, *args: str) -> str:
    """Run headless Chromium with `args`; its standard output."""
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
            "--hide-scrollbars",
            f"--user-data-dir={profile}",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    return run.stdout


def dump_dom(url: str, profile: Path) -> str:
    """The page's DOM after the browser loaded and rendered it."""
    return chromium(profile, "--dump-dom", url)


def refreshed_and_served(config_path: Path) -> Iterator[Server]:
    """Refresh once with the config at `config_path`, then serve its outputs until closed."""
    config = load_config(config_path)
    refresh(config)
    srv = Server(config.output_dir, port=0).start()
    try:
        yield srv
    finally:
        srv.stop()


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
    yield from refreshed_and_served(path)


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
        r.xpath("td")[0].text_content(): r.xpath("td")[2].text_content()
        for r in dom.xpath("//tbody/tr")
    }
    # A source is shown by its feed's own title, its name beside it when they differ.
    assert status == {"t (blog)": "ok", "capture": "ok"}
    feeds = dom.xpath('//link[@rel="alternate"]/@href')
    assert feeds == ["feed.atom", "feed.json"]


def team_feed(name: str, numbers: range, tags: dict[int, str]) -> str:
    items = "".join(
        f"<item><guid>{name}-{i}</guid><title>Topic {i}</title><link>https://blog.test/{i}</link>"
        f"<pubDate>{1 + i:02d} Jun 2026 10:00:00 GMT</pubDate><category>{tags[i]}</category>"
        f"<description>What topic {i} is about, in a sentence or two.</description></item>"
        for i in numbers
    )
    site = f"<link>https://{name}.example/</link>" if name != "planet" else ""
    return f'<rss version="2.0"><channel><title>{name}</title>{site}{items}</channel></rss>'


@pytest.fixture
def team(tmp_path: Path, server: LocalServer) -> Iterator[Server]:
    """Three sources sharing posts, two more feeds, and more entries than the page shows."""
    tags = {i: "ML" if i % 3 == 0 else "Web" for i in range(12)}
    for name, numbers in (("blog", range(12)), ("planet", range(9, 12)), ("gamma", range(11, 12))):
        server.serve(f"/{name}.xml", team_feed(name, numbers, tags))
    sources = "".join(
        f'[[sources]]\nname = "{n}"\nurl = "{server.url(f"/{n}.xml")}"\n'
        for n in ("blog", "planet", "gamma")
    )
    path = write_config(
        tmp_path,
        f"""
[feed]
title = "Team reading"
max_entries = 5
[[outputs]]
name = "ml"
title = "Machine learning"
categories = ["ml"]
{sources}""",
    )
    yield from refreshed_and_served(path)


def test_the_page_shows_where_else_an_entry_was_seen_and_pages_through_history(
    team: Server, tmp_path: Path
) -> None:
    dom = lxml.html.fromstring(dump_dom(team.url, tmp_path / "profile"))
    items = dom.xpath('//ol[@id="latest"]/li')
    assert [li.xpath(".//strong")[0].text_content() for li in items][:2] == ["Topic 11", "Topic 10"]
    also = items[0].xpath('.//span[@class="also"]')[0]
    assert also.text_content() == "also at: gamma, planet"
    # A source's site is the home page its feed names, else the origin of its address.
    gamma, planet = also.xpath("a/@href")
    assert gamma == "https://gamma.example/" and planet.startswith("http://127.0.0.1:")
    assert dom.xpath('//link[@rel="alternate"]/@href') == [
        "feed.atom",
        "feed.json",
        "ml.atom",
        "ml.json",
    ]
    assert dom.xpath('//p[@id="outputs"]//a/text()')[0] == "Machine learning"
    # 12 entries, 5 a page: the feed, a sealed page (1) and the open page (2).
    (older,) = dom.xpath('//nav[@class="pages"]/a/@href')
    assert older == "archive/feed/2.html"
    page = lxml.html.fromstring(dump_dom(team.url + older, tmp_path / "profile"))
    titles = [s.text_content() for s in page.xpath('//ol[@id="latest"]//strong')]
    assert titles == ["Topic 6", "Topic 5"]
    links = dict(zip(page.xpath("//nav[1]/a/text()"), page.xpath("//nav[1]/a/@href"), strict=True))
    assert links == {"← Newer entries": "../../", "Older entries →": "1.html"}
    first = lxml.html.fromstring(dump_dom(team.url + "archive/feed/1.html", tmp_path / "profile"))
    assert len(first.xpath('//ol[@id="latest"]/li')) == 5


def test_the_category_filter_works_without_javascript(
    team: Server, tmp_path: Path, server: LocalServer
) -> None:
    """The page is loaded (its own scripts forbidden, as served) into a frame of a test page
    that counts the entries the browser actually displays for a chosen category."""
    page = http.client.HTTPConnection(team.host, team.port, timeout=10)
    page.request("GET", "/")
    body = page.getresponse().read()
    server.serve("/page.html", body, content_type="text/html; charset=utf-8")
    dom = lxml.html.fromstring(body)
    ml = next(a.get("href") for a in dom.xpath('//nav[@class="cats"]/a') if a.text == "ML")
    counter = (
        f'<iframe src="page.html{ml}"></iframe><p id="shown"></p><script>'
        "const f = document.querySelector('iframe');"
        "f.onload = () => { const d = f.contentDocument;"
        "const shown = [...d.querySelectorAll('li.entry')]"
        ".filter(li => getComputedStyle(li).display !== 'none')"
        ".map(li => li.querySelector('strong').textContent);"
        "document.getElementById('shown').textContent = shown.join('|'); };</script>"
    )
    server.serve("/count.html", counter, content_type="text/html; charset=utf-8")
    out = chromium(
        tmp_path / "profile", "--virtual-time-budget=5000", "--dump-dom", server.url("/count.html")
    )
    shown = lxml.html.fromstring(out).xpath('//p[@id="shown"]')[0].text_content()
    assert shown.split("|") == ["Topic 9"]  # of the five on the page, the ML one


@pytest.mark.parametrize("width", [1280, 390])
def test_the_page_renders_at_desktop_and_phone_widths(
    team: Server, tmp_path: Path, width: int
) -> None:
    shot = tmp_path / f"page-{width}.png"
    chromium(tmp_path / "profile", f"--window-size={width},1400", f"--screenshot={shot}", team.url)
    png = shot.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert int.from_bytes(png[16:20], "big") == width  # IHDR width
