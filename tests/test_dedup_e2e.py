"""Dedup end to end: refreshes over a real local server and store, read back from the outputs."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import feedparser
import pytest

from aggregator.cli import main
from aggregator.config import load_config
from aggregator.refresh import refresh
from tests.helpers import ROOT, LocalServer, load_snapshot, write_config

SEEDS = Path(__file__).resolve().parents[2] / "shared" / "seeds"


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 1, 11, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def _text_config(tmp_path: Path, server: LocalServer) -> Path:
    return write_config(
        tmp_path,
        f"""
[feed]
title = "Seeds"
link = "https://seeds.test/"
max_entries = 200
[output]
dir = "out"
[store]
path = "state/agg.db"
[[sources]]
name = "capture"
url = "{server.url("/capture.txt")}"
kind = "text"
""",
    )


@pytest.mark.skipif(not SEEDS.is_dir(), reason="the shared seed captures are not present")
def test_seed_captures_collapse_to_one_entry_per_post(tmp_path: Path, server: LocalServer) -> None:
    config = load_config(_text_config(tmp_path, server))
    clock = Clock()
    ids: dict[str, str] = {}  # post (its excerpt's start) -> entry id, across refreshes
    for seed in sorted(SEEDS.glob("*.txt")):
        server.serve("/capture.txt", seed.read_bytes(), "text/plain; charset=utf-8")
        clock.now += timedelta(hours=1)
        report = refresh(config, force=True, clock=clock)
        assert [r.outcome for r in report.results] != ["error"], report.results
        doc = load_snapshot(tmp_path / "out" / "snapshot.json")
        starts = [e["excerpt"][:40] for e in doc["entries"]]
        # Each post once, however many captures showed it.
        assert len(starts) == len(set(starts)), [s for s in starts if starts.count(s) > 1]
        for e in doc["entries"]:
            # Ids never change once minted.
            assert ids.setdefault(e["excerpt"][:40], e["id"]) == e["id"]
    # Every distinct post line of every capture is one entry, no more, no fewer.
    lines = {
        line
        for seed in SEEDS.glob("*.txt")
        for line in seed.read_text(encoding="utf-8").splitlines()
        if len(line) > 40
    }
    assert len(doc["entries"]) == len(lines)
    # The posts that open with the same words stay apart.
    intro = [e for e in doc["entries"] if e["excerpt"].startswith("引言与背景")]
    assert len(intro) >= 2
    assert len({e["id"] for e in intro}) == len(intro)


def test_bundled_examples_merge_the_post_two_sources_truncate_differently(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shutil.copy(ROOT / "config.toml", tmp_path / "config.toml")
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    config = load_config(tmp_path / "config.toml")
    refresh(config)
    doc = load_snapshot(config.output_dir / "snapshot.json")
    amp = [e for e in doc["entries"] if "loss scaling" in e["title"]]
    assert len(amp) == 1, [e["title"] for e in amp]
    entry = amp[0]
    assert {s["name"] for s in entry["sources"]} == {"home", "capture"}
    assert [(d["source"], d["rule"]) for d in entry["duplicates"]] == [("capture", "prefix")]
    assert 0 < entry["duplicates"][0]["score"] < 1
    # The capture has no link of its own: the merged entry links to the home page's post.
    feed = feedparser.parse((config.output_dir / "feed.atom").read_bytes())
    atom = next(e for e in feed.entries if e.id == entry["id"])
    assert atom.link == "https://notes.example.org/posts/2026/amp-loss-scaling.html"
    # Posts the two sources summarise differently stay apart (nothing else merged).
    titles = [e["title"] for e in doc["entries"]]
    assert sum("RMSNorm" in t for t in titles) == 2

    assert main(["dupes", "-c", str(tmp_path / "config.toml"), "--source", "capture"]) == 0
    out = capsys.readouterr().out
    assert "prefix" in out and "capture" in out and "home" in out
    assert "1 merged entry" in out


def test_ids_survive_guid_churn_and_a_repeated_guid_is_reported(
    tmp_path: Path, server: LocalServer
) -> None:
    def rss(guids: list[str]) -> str:
        items = "".join(
            f"<item><guid isPermaLink='false'>{g}</guid><title>Post {n}</title>"
            f"<link>https://blog.test/posts/{n}</link>"
            f"<description>Body of post number {n}, different from all the others: "
            f"{'abcdefghij'[n] * 30}</description></item>"
            for n, g in enumerate(guids)
        )
        return f"<rss version='2.0'><channel><title>B</title>{items}</channel></rss>"

    path = write_config(
        tmp_path,
        f"""
[feed]
title = "Blog"
link = "https://blog.test/"
[output]
dir = "out"
[store]
path = "state/agg.db"
[[sources]]
name = "blog"
url = "{server.url("/feed.rss")}"
""",
    )
    config = load_config(path)
    clock = Clock()
    server.serve("/feed.rss", rss(["a1", "a2", "a3"]))
    refresh(config, force=True, clock=clock)
    first = {
        e["link"]: e["id"] for e in load_snapshot(tmp_path / "out" / "snapshot.json")["entries"]
    }
    assert len(first) == 3

    # Every guid changes on the next fetch: same posts, same ids, one warning.
    clock.now += timedelta(hours=1)
    server.serve("/feed.rss", rss(["b1", "b2", "b3"]))
    report = refresh(config, force=True, clock=clock)
    again = {
        e["link"]: e["id"] for e in load_snapshot(tmp_path / "out" / "snapshot.json")["entries"]
    }
    assert again == first
    assert any("new guid" in w for w in report.results[0].warnings)

    # One guid on every item: three posts still, told apart by link, and reported.
    clock.now += timedelta(hours=1)
    server.serve("/feed.rss", rss(["same", "same", "same"]))
    report = refresh(config, force=True, clock=clock)
    latest = {
        e["link"]: e["id"] for e in load_snapshot(tmp_path / "out" / "snapshot.json")["entries"]
    }
    assert latest == first
    assert any("share the guid 'same'" in w for w in report.results[0].warnings)
