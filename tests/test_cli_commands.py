"""The terminal commands: refresh's summary, sources, latest, check, init, --quiet."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from aggregator.cli import main
from aggregator.config import load_config
from tests.helpers import ROOT, LocalServer, command_names, rss_posts, run_python, write_config

PAGE = """<html><body>
<article class="card"><h3><a href="/p/1">First card</a></h3><p class="sum">One.</p></article>
<article class="card"><h3><a href="/p/2">Second card</a></h3><p class="sum">Two.</p></article>
</body></html>"""


@pytest.fixture
def config_path(tmp_path: Path, server: LocalServer) -> Path:
    feed = server.serve("/feed.xml", rss_posts(4))
    page = server.serve("/page.html", PAGE, content_type="text/html")
    return write_config(
        tmp_path,
        f"""
[feed]
title = "x"
[[sources]]
name = "feed"
url = "{feed}"
category = "Blogs"
[[sources]]
name = "page"
url = "{page}"
kind = "page"
[sources.select]
entry = "article.card"
excerpt = ".sum"
[[sources]]
name = "broken"
url = "{server.url("/gone.xml")}"
""",
    )


def test_refresh_in_a_pipe_prints_one_line_per_source(
    config_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["refresh", "-c", str(config_path)]) == 1
    out, err = capsys.readouterr()
    # The failing source once, on stderr; no log line, no table row repeating it.
    assert err.splitlines() == ["broken: error: HTTP 404 Not Found"]
    assert "broken" not in out and "refresh summary" not in out
    lines = out.splitlines()
    assert lines[:2] == [
        "feed: new: 4 new, 0 joined, 0 updated, 0 unchanged",
        "page: new: 2 new, 0 joined, 0 updated, 0 unchanged",
    ]
    assert lines[2].startswith("outputs in ") and len(lines) == 3


def test_verbose_adds_the_detail(config_path: Path) -> None:
    done = run_python("-m", "aggregator", "refresh", "-v", "-c", str(config_path))
    assert done.returncode == 1
    assert "broken: error: HTTP 404 Not Found" in done.stderr
    assert "DEBUG aggregator.refresh: broken: HTTP 404" in done.stderr


def test_the_summary_table_on_a_terminal(config_path: Path) -> None:
    from aggregator import views
    from aggregator.refresh import refresh

    report = refresh(load_config(config_path))
    table = "\n".join(views.summary_table(report).lines())
    rows = {line.split("│")[1].strip(): line for line in table.splitlines() if "│" in line}
    assert rows.keys() == {"feed", "page", "broken"}
    assert [c.strip() for c in rows["feed"].split("│")[2:6]] == ["new", "4", "0", "0"]
    assert "error" in rows["broken"] and "HTTP 404" in rows["broken"]


def test_quiet_prints_errors_only(config_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["refresh", "-q", "-c", str(config_path)]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.strip() == "broken: error: HTTP 404 Not Found"


def test_sources_table(config_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sources", "-c", str(config_path)]) == 0
    before = capsys.readouterr().out
    assert before.count("never") >= 3 and " new " in before
    main(["refresh", "-q", "-c", str(config_path)])
    capsys.readouterr()
    assert main(["sources", "-c", str(config_path)]) == 0
    out = capsys.readouterr().out
    rows = {line.split("│")[1].strip(): line for line in out.splitlines() if "│" in line}
    feed = [c.strip() for c in rows["feed"].split("│")[1:-1]]
    assert feed[1] == "auto" and feed[3] == "ok" and feed[4] == "0" and feed[6] == "4"
    assert feed[8] == "t"  # the feed's own title
    broken = [c.strip() for c in rows["broken"].split("│")[1:-1]]
    assert broken[3].startswith("error: HTTP 404") and broken[4] == "1"
    assert broken[5] != "now"  # backed off to a due time


def test_latest_lists_newest_first(config_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["latest", "-c", str(config_path)]) == 0
    assert "nothing stored yet" in capsys.readouterr().out
    main(["refresh", "-q", "-c", str(config_path)])
    capsys.readouterr()
    assert main(["latest", "-n", "2", "-c", str(config_path)]) == 0
    out = capsys.readouterr().out
    blocks = out.strip().split("\n\n")
    assert len(blocks) == 2
    head, title, excerpt, link = blocks[0].splitlines()
    assert head.startswith("2026-06-") and "Blogs" in head and head.endswith("feed")
    assert title.startswith("Post ") and excerpt.startswith("Body of post")
    assert link.startswith("http://blog.test/post/")
    assert main(["latest", "-n", "0", "-c", str(config_path)]) == 2


def test_check_validates_and_previews_without_storing(
    config_path: Path, capsys: pytest.CaptureFixture[str], server: LocalServer
) -> None:
    assert main(["check", "-c", str(config_path)]) == 0
    assert "ok, 3 sources" in capsys.readouterr().out
    assert server.requests == []  # without --fetch nothing is fetched

    assert main(["check", "--fetch", "-c", str(config_path)]) == 1
    out, err = capsys.readouterr()
    assert "page: 2 entries (page, HTTP 200)" in out
    assert "First card" in out and "Second card" in out and "One." in out
    assert "feed: 4 entries (feed, HTTP 200)" in out and "... and 1 more" in out
    assert err.strip() == "broken: error: HTTP 404 Not Found"
    config = load_config(config_path)
    assert not config.store_path.exists() and not config.output_dir.exists()

    assert main(["check", "--fetch", "-s", "page", "-c", str(config_path)]) == 0
    assert "feed:" not in capsys.readouterr().out
    assert main(["check", "--fetch", "-s", "nope", "-c", str(config_path)]) == 2


def test_init_writes_a_valid_starter_and_refuses_to_overwrite(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "config.toml"
    assert main(["init", "-c", str(target)]) == 0
    text = target.read_text()
    assert text.startswith("#") and "[[sources]]" in text
    config = load_config(target)
    assert config.sources and config.server_host == "127.0.0.1"
    target.write_text("# mine\n")
    assert main(["init", "-c", str(target)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert target.read_text() == "# mine\n"


def test_init_in_the_current_folder(tmp_path: Path) -> None:
    run = run_python("-m", "aggregator", "init", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "config.toml").exists()
    check = run_python("-m", "aggregator", "check", cwd=tmp_path)
    assert check.returncode == 0 and "ok, 1 sources" in check.stdout


@pytest.mark.parametrize("command", ["sources", "latest", "check", "run", "serve"])
def test_config_errors_are_one_line_everywhere(
    tmp_path: Path, command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([command, "-c", str(tmp_path / "missing.toml")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "config file not found" in err


@pytest.mark.parametrize("command", ["refresh", "sources", "latest", "check", "run", "serve"])
def test_verbose_and_quiet_are_accepted_everywhere(command: str) -> None:
    from aggregator.cli import build_parser

    parser = build_parser()
    for flag in ("-v", "-q", "--verbose", "--quiet"):
        args = parser.parse_args([command, flag])
        assert args.verbose or args.quiet


def test_readme_documents_every_command() -> None:
    readme = (ROOT / "README.md").read_text()
    for command in command_names():
        assert f"`aggregator {command}" in readme, command
    for needed in ("cron", "[Service]", "ExecStart=", "/feed.atom", "/healthz"):
        assert needed in readme


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX terminals and signals")
def test_refresh_on_a_terminal_shows_progress_then_the_summary(config_path: Path) -> None:
    import pty

    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "aggregator", "refresh", "-c", str(config_path)],
        stdin=subprocess.DEVNULL,
        stdout=follower,
        stderr=follower,
        cwd=ROOT,
        env={**os.environ, "TERM": "xterm", "COLUMNS": "120"},
    )
    os.close(follower)
    chunks = []
    while True:
        try:
            data = os.read(leader, 65536)
        except OSError:  # the terminal closed: the child is done
            break
        if not data:
            break
        chunks.append(data)
    os.close(leader)
    assert proc.wait(timeout=60) == 1
    out = b"".join(chunks).decode("utf-8", "replace")
    assert "refreshing" in out and "3/3" in out  # the progress bar reached the end
    assert "refresh summary" in out and "broken: error: HTTP 404" in out
    assert "feed: new: 4 new" not in out  # no plain per-source lines on a terminal


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_serve_command_serves_until_sigterm(
    config_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import signal

    import feedparser

    main(["refresh", "-q", "-c", str(config_path)])
    capsys.readouterr()
    proc = subprocess.Popen(
        [sys.executable, "-m", "aggregator", "serve", "-c", str(config_path), "--port", "0"],
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        assert " on http://127.0.0.1:" in line
        url = line.rsplit(" on ", 1)[1].strip()
        feed = feedparser.parse(url + "feed.atom")
        assert feed.status == 200 and len(feed.entries) == 6
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
