"""The command line: help texts, exit codes, one-line errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import feedparser
import pytest

from aggregator import __version__
from aggregator.cli import main
from tests.helpers import ROOT, LocalServer, command_names, write_config


@pytest.mark.parametrize("command", command_names())
def test_every_command_has_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main([command, "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert f"usage: aggregator {command}" in out
    assert "--config" in out and len(out.splitlines()) > 4


def test_version_and_module_entry_point() -> None:
    run = subprocess.run(
        [sys.executable, "-m", "aggregator", "--version"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 0
    assert run.stdout.strip() == f"aggregator {__version__}"


def test_config_error_is_one_line_exit_2_and_fetches_nothing(
    tmp_path: Path, server: LocalServer, capsys: pytest.CaptureFixture[str]
) -> None:
    url = server.serve("/f.xml", "<rss/>")
    path = write_config(
        tmp_path,
        f"""
[feed]
title = "x"
[[sources]]
name = "a"
url = "{url}"
colour = "blue"
""",
    )
    assert main(["refresh", "-c", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert str(path) in err and "sources[0] ('a').colour" in err and "unknown key" in err
    assert server.requests == []
    assert not (tmp_path / "public").exists()


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            '[feed]\ntitle = "x"\n[[sources]]\nname = "a"\nurl = "ftp://x/y"\n',
            "unsupported URL scheme",
        ),
        (
            '[feed]\ntitle = "x"\n[[sources]]\nname = "a"\nurl = "a"\n'
            '[[sources]]\nname = "a"\nurl = "b"\n',
            "duplicate source name",
        ),
        ("[feed]\n", "feed.title: Field required"),
        ('[feed]\ntitle = "x"\nmax_entries = "ten"\n', "feed.max_entries"),
        (
            '[feed]\ntitle = "x"\n[[sources]]\nname = "a"\nurl = "a"\nkind = "rss"\n',
            "sources[0] ('a').kind",
        ),
        ("[feed\n", "invalid TOML"),
    ],
)
def test_config_mistakes_name_the_key(
    tmp_path: Path, body: str, expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_config(tmp_path, body)
    assert main(["refresh", "-c", str(path)]) == 2
    err = capsys.readouterr().err
    assert expected in err and str(path) in err


def test_missing_config_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["refresh", "-c", str(tmp_path / "nope.toml")]) == 2
    assert "config file not found" in capsys.readouterr().err


def test_refresh_exit_codes_and_lines(
    tmp_path: Path, server: LocalServer, capsys: pytest.CaptureFixture[str]
) -> None:
    good = server.serve(
        "/good.xml",
        '<rss version="2.0"><channel><title>g</title><item><guid>1</guid><title>One</title>'
        "<link>http://g.test/1</link><description>First post.</description></item></channel></rss>",
    )
    path = write_config(
        tmp_path,
        f"""
[feed]
title = "x"
[[sources]]
name = "good"
url = "{good}"
""",
    )
    assert main(["refresh", "-c", str(path)]) == 0
    out = capsys.readouterr().out
    assert "good: new: 1 new" in out
    bad = server.url("/missing.xml")
    path.write_text(path.read_text() + f'[[sources]]\nname = "bad"\nurl = "{bad}"\n')
    assert main(["refresh", "-c", str(path), "--all"]) == 1
    captured = capsys.readouterr()
    assert "bad: error: HTTP 404" in captured.err
    assert "good: unchanged" in captured.out
    feed = feedparser.parse((tmp_path / "public" / "feed.atom").read_bytes())
    assert [e.title for e in feed.entries] == ["One"]


def test_unknown_source_name_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_config(tmp_path, '[feed]\ntitle = "x"\n')
    assert main(["refresh", "-c", str(path), "--source", "nope"]) == 2
    assert "no source named 'nope'" in capsys.readouterr().err


def test_bundled_config_runs_offline(tmp_path: Path) -> None:
    """The README's first command: the shipped config.toml and examples/ work with no network."""
    import shutil

    shutil.copy(ROOT / "config.toml", tmp_path / "config.toml")
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    run = subprocess.run(
        [sys.executable, "-m", "aggregator", "refresh"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    feed = feedparser.parse((tmp_path / "public" / "feed.atom").read_bytes())
    assert not feed.bozo
    assert len(feed.entries) >= 20
    # Each entry's atom:source is titled as its source calls itself (the text capture has no
    # title of its own: its name stands in).
    sources = {e.source.title for e in feed.entries}
    assert len(sources) == 4 and "capture" in sources and "Lab Journal · 实验日记" in sources
