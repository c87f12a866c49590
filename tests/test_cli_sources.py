"""The source-managing commands against a real local server and a real config file: add,
remove, import, export, prune; and the command line's -c, $AGGREGATOR_CONFIG, --json, --port,
check's local validation and Ctrl-C (in a real subprocess)."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from aggregator.cli import build_parser, main
from aggregator.config import load_config
from aggregator.discover import discover
from aggregator.errors import FetchError
from aggregator.store import open_store
from tests.helpers import (
    CONFIG_HEAD,
    DATA,
    ROOT,
    LocalServer,
    command_names,
    config_source,
    drip,
    fake_dns,
    rss,
    snapshot,
    write_config,
)
from tests.helpers import Response as Route

OPML = DATA / "opml"

# A config as a person keeps it: comments, an odd key order, blank lines.
KEPT = """# my feeds, kept by hand
[feed]
title = "Merged"      # shown in readers
link = "https://merged.test/"

[output]
dir = "out"
[store]
path = "state/agg.db"

# the first one
[[sources]]
url = "{url}"
name = "first"        # keep this comment
"""


def feed(title: str, *items: tuple[str, str], site: str = "https://site.example/") -> bytes:
    body = rss(*items).replace(b"<title>T</title>", f"<title>{title}</title>".encode())
    return body.replace(b"<link>https://site.example/</link>", f"<link>{site}</link>".encode())


@pytest.fixture
def kept(tmp_path: Path, server: LocalServer) -> Path:
    url = server.serve("/first.xml", feed("First", ("f1", "First post")), "application/rss+xml")
    return write_config(tmp_path, KEPT.format(url=url))


def sources_of(path: Path) -> list[dict[str, object]]:
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    return list(data.get("sources", []))


# --- add ----------------------------------------------------------------------------------------


def test_add_a_feed_keeps_the_file_as_written(
    kept: Path, server: LocalServer, capsys: pytest.CaptureFixture[str]
) -> None:
    before = kept.read_text(encoding="utf-8")
    url = server.serve(
        "/py.xml", feed("Python Insider", ("p1", "Python news")), "application/rss+xml"
    )
    assert main(["add", url, "-c", str(kept), "--category", "Python"]) == 0
    after = kept.read_text(encoding="utf-8")
    assert after.startswith(before)  # comments, order, spacing: untouched
    added = sources_of(kept)[-1]
    assert added == {"name": "python-insider", "url": url, "kind": "feed", "category": "Python"}
    assert "added 'python-insider' (feed)" in capsys.readouterr().out
    # The new source refreshes like any other.
    assert main(["refresh", "-q", "-c", str(kept)]) == 0
    assert {e["source"] for e in snapshot(load_config(kept))["entries"]} == {
        "first",
        "python-insider",
    }


def test_add_a_page_takes_the_first_feed_it_advertises(
    kept: Path, server: LocalServer, capsys: pytest.CaptureFixture[str]
) -> None:
    main_feed = server.serve("/blog/feed.xml", feed("The Blog", ("b1", "Post")))
    server.serve("/blog/comments.xml", feed("Comments", ("c1", "Comment")))
    server.serve("/blog/tag.xml", feed("A tag", ("t1", "Tagged")))
    page = server.serve(
        "/blog/",
        "<html><head><title>The Blog</title>"
        '<link rel="alternate" type="application/rss+xml" href="/blog/comments.xml">'
        '<link rel="alternate" type="application/rss+xml" href="/blog/feed.xml">'
        '<link rel="alternate" type="application/atom+xml" href="tag.xml">'
        "</head><body><p>Hello</p></body></html>",
        "text/html",
    )
    assert main(["add", page, "-c", str(kept), "--name", "blog"]) == 0
    assert sources_of(kept)[-1] == {"name": "blog", "url": main_feed, "kind": "feed"}
    out = capsys.readouterr().out
    assert f"also advertises {server.url('/blog/tag.xml')}" in out
    assert f"also advertises {server.url('/blog/comments.xml')}" in out


def test_add_a_page_without_a_feed_asks_for_selectors(
    kept: Path, server: LocalServer, capsys: pytest.CaptureFixture[str]
) -> None:
    page = server.serve(
        "/plain.html",
        "<html><head><title>Plain Page</title></head><body><h2>News</h2></body></html>",
        "text/html",
    )
    assert main(["add", page, "-c", str(kept)]) == 0
    assert sources_of(kept)[-1] == {"name": "plain-page", "url": page, "kind": "page"}
    out = capsys.readouterr().out
    assert "[sources.select]" in out and "aggregator check --fetch -s plain-page" in out


def test_add_refuses_a_url_already_configured(
    kept: Path, server: LocalServer, capsys: pytest.CaptureFixture[str]
) -> None:
    before = kept.read_text(encoding="utf-8")
    url = server.url("/first.xml")
    assert main(["add", url + "/", "-c", str(kept)]) == 2
    assert "already configured as 'first'" in capsys.readouterr().err
    assert kept.read_text(encoding="utf-8") == before
    assert server.hits("/first.xml") == []  # refused before any fetch


def test_add_a_url_that_fails_adds_nothing(
    kept: Path, server: LocalServer, capsys: pytest.CaptureFixture[str]
) -> None:
    before = kept.read_text(encoding="utf-8")
    assert main(["add", server.url("/missing.xml"), "-c", str(kept)]) == 1
    assert "HTTP 404" in capsys.readouterr().err
    assert kept.read_text(encoding="utf-8") == before


def test_add_goes_through_the_address_guard(tmp_path: Path, server: LocalServer) -> None:
    # A public site that redirects to a private address is refused, as in a refresh.
    public = LocalServer("127.0.0.2")
    try:
        port = public.httpd.server_address[1]
        public.serve("/r.xml", b"", status=302, Location=server.url("/ok.xml"))
        server.serve("/ok.xml", feed("OK", ("o1", "One")))
        config = load_config(write_config(tmp_path, CONFIG_HEAD))
        guard = fake_dns({"public.test": ["127.0.0.2"]}, public=["127.0.0.2"])
        with pytest.raises(FetchError, match="refused"):
            discover(config, f"http://public.test:{port}/r.xml", guard=guard)
        assert len(public.hits("/r.xml")) == 1 and server.hits("/ok.xml") == []
    finally:
        public.close()


# --- remove -------------------------------------------------------------------------------------


def test_remove_takes_the_source_out_of_the_file_store_and_outputs(
    tmp_path: Path, server: LocalServer, capsys: pytest.CaptureFixture[str]
) -> None:
    shared = ("shared", "A post both carry")
    a = server.serve("/a.xml", feed("A", shared, ("a1", "Only A")), "application/rss+xml")
    b = server.serve("/b.xml", feed("B", shared, ("b1", "Only B")), "application/rss+xml")
    path = write_config(tmp_path, CONFIG_HEAD + config_source("a", a) + config_source("b", b))
    assert main(["refresh", "-q", "-c", str(path)]) == 0
    before = {e["title"]: e for e in snapshot(load_config(path))["entries"]}
    assert before["A post both carry"]["source"] == "a"
    assert main(["remove", "a", "-c", str(path)]) == 0
    out = capsys.readouterr().out
    assert "a: removed 2 copies; 1 entry left the outputs, 1 kept" in out
    assert [s["name"] for s in sources_of(path)] == ["b"]
    after = {e["title"]: e for e in snapshot(load_config(path))["entries"]}
    assert set(after) == {"A post both carry", "Only B"}
    assert after["A post both carry"]["id"] == before["A post both carry"]["id"]
    assert after["A post both carry"]["source"] == "b"
    feed_atom = (tmp_path / "out" / "feed.atom").read_text(encoding="utf-8")
    assert "Only A" not in feed_atom and "Only B" in feed_atom


def test_remove_an_unknown_name_exits_2(kept: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = kept.read_text(encoding="utf-8")
    assert main(["remove", "nobody", "-c", str(kept)]) == 2
    assert "no source named 'nobody'" in capsys.readouterr().err
    assert kept.read_text(encoding="utf-8") == before


# --- import and export --------------------------------------------------------------------------


def test_import_reads_what_readers_export(kept: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["import", str(OPML / "newsboat.opml"), "-c", str(kept)]) == 0
    assert "imported 3 feeds" in capsys.readouterr().out
    assert main(["import", str(OPML / "miniflux.opml"), "-c", str(kept)]) == 0
    # The blog came with newsboat's file already.
    assert "imported 2 feeds" in capsys.readouterr().out
    assert main(["import", str(OPML / "freshrss.opml"), "-c", str(kept)]) == 0
    out = capsys.readouterr().out
    assert "imported 2 feeds" in out
    assert "skipped 1 already configured, 1 without xmlUrl" in out
    got = {s["url"]: s for s in sources_of(kept)}
    assert got["https://lwn.example/headlines/rss"] == {
        "name": "lwn-example-headlines",
        "url": "https://lwn.example/headlines/rss",
        "kind": "feed",
        "title": "LWN.example headlines",
    }
    assert got["https://podcasts.example.net/show.xml"]["name"] == "podcasts-example-net"
    assert got["https://numbers.example.com/index.xml"]["category"] == "All"
    assert got["https://numbers.example.com/index.xml"]["title"] == "Numbers & Notes"
    assert got["https://cells.example.edu/rss"]["category"] == "Science"
    assert got["https://rust.example.org/releases.xml"]["category"] == "Dev"
    assert got["https://llvm.example.org/notes.rss"]["category"] == "Dev/Compilers"
    assert len(got) == 1 + 3 + 2 + 2
    load_config(kept)  # still a valid config


def test_a_malformed_opml_file_changes_nothing(
    kept: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = kept.read_text(encoding="utf-8")
    assert main(["import", str(OPML / "broken.opml"), "-c", str(kept)]) == 2
    err = capsys.readouterr().err
    assert f"{OPML / 'broken.opml'}:5:" in err and "not well-formed" in err
    assert kept.read_text(encoding="utf-8") == before


def test_export_imports_back_to_the_same_sources(
    tmp_path: Path, kept: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("newsboat", "miniflux", "freshrss"):
        assert main(["import", str(OPML / f"{name}.opml"), "-c", str(kept)]) == 0
    capture = tmp_path / "my capture.txt"
    capture.write_text("LATEST UPDATES\nOne line\n", encoding="utf-8")
    with kept.open("a", encoding="utf-8") as fh:
        fh.write(f'[[sources]]\nname = "capture"\nurl = "{capture.name}"\ncategory = "Local"\n')
    exported = tmp_path / "out.opml"
    assert main(["export", "-o", str(exported), "-c", str(kept)]) == 0
    assert b'<opml version="2.0">' in exported.read_bytes()
    other = tmp_path / "again"
    other.mkdir()
    again = write_config(other, CONFIG_HEAD)
    capsys.readouterr()
    assert main(["import", str(exported), "-c", str(again)]) == 0

    def shape(path: Path) -> set[tuple[object, ...]]:
        return {(s.name, s.url, s.category, s.title or s.name) for s in load_config(path).sources}

    assert ("capture", str(capture), "Local", "capture") in shape(kept)
    assert shape(again) == shape(kept)


def test_export_to_stdout_names_the_site_once_known(
    kept: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["refresh", "-q", "-c", str(kept)]) == 0
    capsys.readouterr()
    assert main(["export", "-c", str(kept)]) == 0
    out = capsys.readouterr().out
    assert 'htmlUrl="https://site.example/"' in out and 'title="first"' in out


# --- prune --------------------------------------------------------------------------------------


def test_prune_keeps_what_the_outputs_show(
    tmp_path: Path, server: LocalServer, capsys: pytest.CaptureFixture[str]
) -> None:
    items = [(f"g{i}", f"Post {i}") for i in range(5)]
    url = server.serve("/many.xml", feed("Many", *items), "application/rss+xml")
    body = CONFIG_HEAD.replace('link = "https://merged.test/"', 'link = "x"\nmax_entries = 2')
    path = write_config(tmp_path, body + config_source("many", url))
    assert main(["refresh", "-q", "-c", str(path)]) == 0
    assert main(["prune", "--older-than", "1d", "-c", str(path)]) == 0
    assert "pruned 0 entries older than 1d" in capsys.readouterr().out  # first seen just now
    with open_store(load_config(path)) as store:
        assert store.entry_counts() == {"many": 5}
    assert main(["prune", "--older-than", "soon", "-c", str(path)]) == 2
    assert "--older-than: not an interval" in capsys.readouterr().err


# --- the command line ---------------------------------------------------------------------------


def test_config_before_or_after_the_command_or_from_the_environment(
    kept: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["-c", str(kept), "check"]) == 0
    assert main(["check", "-c", str(kept)]) == 0
    assert main(["-c", "nowhere.toml", "check", "-c", str(kept)]) == 0  # the later one wins
    monkeypatch.setenv("AGGREGATOR_CONFIG", str(kept))
    assert main(["check"]) == 0
    assert capsys.readouterr().out.count(f"{kept}: ok, 1 sources") == 4
    monkeypatch.delenv("AGGREGATOR_CONFIG")
    monkeypatch.chdir(kept.parent / "..")
    assert main(["check"]) == 2
    assert "config file not found: create one with `aggregator init`" in capsys.readouterr().err


def test_json_output(kept: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["latest", "--json", "-c", str(kept)]) == 0
    assert json.loads(capsys.readouterr().out) == []
    assert main(["refresh", "-q", "-c", str(kept)]) == 0
    assert main(["latest", "--json", "-c", str(kept)]) == 0
    (entry,) = json.loads(capsys.readouterr().out)
    assert entry["title"] == "First post" and entry["source"] == "first"
    assert set(entry) == set(snapshot(load_config(kept))["entries"][0])
    assert main(["sources", "--json", "-c", str(kept)]) == 0
    (src,) = json.loads(capsys.readouterr().out)
    assert (src["name"], src["title"], src["status"], src["entries"]) == ("first", "First", "ok", 1)
    assert src["site_link"] == "https://site.example/" and src["enabled"] is True
    assert main(["dupes", "--json", "-c", str(kept)]) == 0
    assert json.loads(capsys.readouterr().out) == []


def test_dupes_json_and_table_head_with_the_title(
    tmp_path: Path, server: LocalServer, capsys: pytest.CaptureFixture[str]
) -> None:
    shared = ("s", "The shared post")
    a = server.serve("/a.xml", feed("A", shared), "application/rss+xml")
    b = server.serve("/b.xml", feed("B", shared), "application/rss+xml")
    path = write_config(tmp_path, CONFIG_HEAD + config_source("a", a) + config_source("b", b))
    assert main(["refresh", "-q", "-c", str(path)]) == 0
    assert main(["dupes", "--json", "-c", str(path)]) == 0
    (cluster,) = json.loads(capsys.readouterr().out)
    assert cluster["title"] == "The shared post"
    assert [(c["source"], c["rule"]) for c in cluster["copies"]] == [("a", "new"), ("b", "link")]
    assert main(["dupes", "-c", str(path)]) == 0
    assert capsys.readouterr().out.startswith("The shared post  (")


@pytest.mark.parametrize("port", ["99999", "-1", "65536", "http"])
def test_a_port_outside_the_range_exits_2(
    port: str, kept: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["serve", "--port", port, "-c", str(kept)])
    assert exc.value.code == 2
    assert "--port" in capsys.readouterr().err


def test_check_validates_local_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "capture.txt").write_text("LATEST UPDATES\nA line\n", encoding="utf-8")
    body = (
        CONFIG_HEAD
        + config_source("capture", "capture.txt", 'kind = "text"')
        + config_source("page", "https://page.example/", 'kind = "page"')
    )
    path = write_config(tmp_path, body)
    assert main(["check", "-c", str(path)]) == 0
    err = capsys.readouterr().err
    assert "page:" not in err  # a page without selectors is read by auto mode
    path.write_text(body + config_source("typo", "example.com/feed.xml"), encoding="utf-8")
    assert main(["check", "-c", str(path)]) == 2
    err = capsys.readouterr().err
    assert "typo: error: local file not found" in err and "needs http:// or https://" in err


def test_every_command_has_help() -> None:
    parser = build_parser()
    for name in command_names():
        sub = parser._subparsers._group_actions[0].choices[name]  # type: ignore[union-attr]
        assert sub.description and len(sub.format_help()) > 200, name


# --- Ctrl-C, in a real process ------------------------------------------------------------------


def _slow_refresh(tmp_path: Path, server: LocalServer) -> tuple[Path, subprocess.Popen[str]]:
    """A refresh in a process of its own, interrupted once while a slow source is in flight."""
    fast = server.serve("/fast.xml", feed("Fast", ("q1", "Quick one"), ("q2", "Quick two")))
    server.routes["/slow.xml"] = Route(drip)  # headers, then a byte now and then, for minutes
    path = write_config(
        tmp_path,
        CONFIG_HEAD
        + "[fetch]\ntimeout = 120\n"
        + config_source("fast", fast)
        + config_source("slow", server.url("/slow.xml")),
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "aggregator", "refresh", "-c", str(path)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"},
    )
    assert proc.stdout is not None and proc.stderr is not None
    line = proc.stdout.readline()  # the fast source is stored while the slow one drips
    assert line.startswith("fast: new: 2 new"), line
    proc.send_signal(signal.SIGINT)
    # Acknowledged at once, before the fetch in flight ends.
    assert proc.stderr.readline() == "stopping: waiting for 1 fetch, Ctrl-C again to quit now\n"
    return path, proc


def _stored(path: Path) -> dict[str, int]:
    config = load_config(path)
    db = sqlite3.connect(config.store_path)
    try:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    finally:
        db.close()
    with open_store(config) as store:
        return store.entry_counts()


def test_ctrl_c_stops_the_refresh_and_keeps_what_completed(
    tmp_path: Path, server: LocalServer
) -> None:
    path, proc = _slow_refresh(tmp_path, server)
    # Well before the slow source's 120 s deadline.
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130
    assert "interrupted; what completed is stored" in err
    assert "outputs in" in out
    assert _stored(path) == {"fast": 2}
    assert {e["source"] for e in snapshot(load_config(path))["entries"]} == {"fast"}


def test_a_second_ctrl_c_quits_at_once_with_the_store_intact(
    tmp_path: Path, server: LocalServer
) -> None:
    path, proc = _slow_refresh(tmp_path, server)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130
    assert "aggregator: quit" in err and "what completed is stored" not in err
    assert _stored(path) == {"fast": 2}
