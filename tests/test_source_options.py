"""Per-source options through a real refresh: enabled, include / exclude, request headers from
the environment, sources deleted from the config, and `[store] keep`."""

from __future__ import annotations

import logging
from datetime import timedelta
from pathlib import Path

import pytest

from aggregator.config import load_config
from aggregator.refresh import refresh
from aggregator.store import open_store
from tests.helpers import CONFIG_HEAD as HEAD
from tests.helpers import LocalServer, by_name, rss, snapshot, write_config
from tests.helpers import config_source as source


def test_a_disabled_source_is_not_fetched(tmp_path: Path, server: LocalServer) -> None:
    url = server.serve("/a.xml", rss(("a1", "One")), "application/rss+xml")
    off = server.serve("/off.xml", rss(("o1", "Off")), "application/rss+xml")
    config = load_config(
        write_config(tmp_path, HEAD + source("a", url) + source("off", off, "enabled = false"))
    )
    report = refresh(config, force=True)
    assert [r.source for r in report.results] == ["a"]
    assert server.hits("/off.xml") == []
    # Named on its own, it is fetched: the user asked for it.
    assert [r.source for r in refresh(config, names=["off"]).results] == ["off"]


def test_filters_keep_items_out_and_count_them(tmp_path: Path, server: LocalServer) -> None:
    body = rss(
        ("p1", "Python 3.14 released"),
        ("p2", "Sponsored: buy Python hats"),
        ("r1", "Rust news"),
        ("p3", "More python tips"),
    )
    url = server.serve("/mixed.xml", body, "application/rss+xml")
    extra = 'include = "(?i)python"\nexclude = ["^Sponsored"]'
    config = load_config(write_config(tmp_path, HEAD + source("mixed", url, extra)))
    result = by_name(refresh(config, force=True))["mixed"]
    assert (result.new, result.excluded) == (2, 2)
    assert {e["title"] for e in snapshot(config)["entries"]} == {
        "Python 3.14 released",
        "More python tips",
    }


def test_header_values_come_from_the_environment_and_stay_secret(
    tmp_path: Path,
    server: LocalServer,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    secret = "s3cr3t-token-value"
    monkeypatch.setenv("AGG_TEST_TOKEN", secret)
    url = server.serve("/private.xml", rss(("x1", "Members only")), "application/rss+xml")
    extra = 'headers = { Authorization = "Bearer ${AGG_TEST_TOKEN}", X-Plain = "yes" }'
    config = load_config(write_config(tmp_path, HEAD + source("private", url, extra)))
    with caplog.at_level(logging.DEBUG):
        assert by_name(refresh(config, force=True))["private"].outcome == "new"
    (hit,) = server.hits("/private.xml")
    assert hit.headers["authorization"] == f"Bearer {secret}"
    assert hit.headers["x-plain"] == "yes"
    assert secret not in caplog.text
    for f in config.output_dir.iterdir():
        assert secret not in f.read_text(encoding="utf-8")
    assert secret not in config.path.read_text(encoding="utf-8")
    # Unset: the source fails, naming the variable, not a value; the others go on.
    monkeypatch.delenv("AGG_TEST_TOKEN")
    failed = by_name(refresh(config, force=True))["private"]
    assert failed.outcome == "error"
    assert failed.error is not None and "AGG_TEST_TOKEN is not set" in failed.error


def test_a_header_is_not_sent_to_another_origin(tmp_path: Path, server: LocalServer) -> None:
    other = LocalServer()
    try:
        target = other.serve("/moved.xml", rss(("m1", "Moved")), "application/rss+xml")
        server.serve("/start.xml", b"", status=302, Location=target)
        extra = 'headers = { Authorization = "Bearer fixed" }'
        config = load_config(
            write_config(tmp_path, HEAD + source("s", server.url("/start.xml"), extra))
        )
        assert by_name(refresh(config, force=True))["s"].outcome == "new"
        assert server.hits("/start.xml")[0].headers["authorization"] == "Bearer fixed"
        assert "authorization" not in other.hits("/moved.xml")[0].headers
    finally:
        other.close()


def test_a_source_deleted_from_the_config_leaves_at_the_next_refresh(
    tmp_path: Path, server: LocalServer
) -> None:
    shared = ("shared", "A post both sources carry")
    keep_url = server.serve("/keep.xml", rss(shared, ("k1", "Only kept")), "application/rss+xml")
    gone_url = server.serve("/gone.xml", rss(shared, ("g1", "Only gone")), "application/rss+xml")
    path = write_config(tmp_path, HEAD + source("gone", gone_url) + source("keep", keep_url))
    config = load_config(path)
    refresh(config, force=True)
    titles = {e["title"]: e for e in snapshot(config)["entries"]}
    assert set(titles) == {"A post both sources carry", "Only kept", "Only gone"}
    shared_id = titles["A post both sources carry"]["id"]
    assert titles["A post both sources carry"]["source"] == "gone"

    path.write_text(HEAD + source("keep", keep_url), encoding="utf-8")
    config = load_config(path)
    report = refresh(config)  # nothing is due: only the pruning happens
    assert report.removed == ("gone",) and report.results == ()
    entries = {e["title"]: e for e in snapshot(config)["entries"]}
    assert set(entries) == {"A post both sources carry", "Only kept"}
    assert entries["A post both sources carry"]["id"] == shared_id
    assert entries["A post both sources carry"]["source"] == "keep"
    assert [s["name"] for s in snapshot(config)["sources"]] == ["keep"]
    with open_store(config) as store:
        assert store.get_state("gone") is None
        assert store.entry_counts() == {"keep": 2}


def test_store_keep_prunes_old_entries_beyond_the_outputs(
    tmp_path: Path, server: LocalServer
) -> None:
    items = "".join(
        f"<item><guid>o{i}</guid><title>Old {i}</title><link>https://o.test/{i}</link>"
        f"<pubDate>Mon, 0{i + 1} Jan 2024 10:00:00 GMT</pubDate><description>Old post {i}"
        "</description></item>"
        for i in range(5)
    )
    url = server.serve(
        "/old.xml", f"<rss version='2.0'><channel><title>O</title>{items}</channel></rss>"
    )
    body = HEAD.replace('title = "Merged"', 'title = "Merged"\nmax_entries = 2').replace(
        'path = "state/agg.db"', 'path = "state/agg.db"\nkeep = "30d"'
    )
    config = load_config(write_config(tmp_path, body + source("old", url)))
    refresh(config, force=True)
    with open_store(config) as store:
        # First seen now: nothing is old yet by first sight.
        assert store.entry_counts() == {"old": 5}
        later = refresh(config, clock=lambda: store.latest(1)[0].first_seen + timedelta(days=31))
        assert [r.outcome for r in later.results] == ["unchanged"]
        assert store.entry_counts() == {"old": 2}
        assert [e.title for e in store.latest(10)] == ["Old 4", "Old 3"]
