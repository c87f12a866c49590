"""What the command line prints: tables drawn without rich in a pipe, as rich would draw them."""

from __future__ import annotations

import io
import re
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from aggregator import views
from aggregator.models import RefreshReport, SourceResult
from tests.helpers import LocalServer, rss_posts, run_python, write_config

ANSI = re.compile(r"\x1b\[[0-9;]*m")
NOW = datetime(2026, 6, 1, tzinfo=UTC)


def _table() -> views.TextTable:
    table = views.TextTable("refresh summary", [("source", "left"), ("n", "right"), ("e", "left")])
    table.add_row("feed", "12", views.Cell("", "red"))
    table.add_row("中文博客", views.Cell("3", "green"), views.Cell("HTTP 404", "red"))
    table.add_row("cafe\u0301", "", "x")
    return table


def _as_rich(table: views.TextTable) -> str:
    from rich.console import Console

    buf = io.StringIO()
    Console(file=buf, width=200, highlight=False, soft_wrap=False).print(table)
    return buf.getvalue()


@pytest.mark.parametrize("rows", [True, False])
def test_a_table_in_a_pipe_is_drawn_as_rich_draws_it(rows: bool) -> None:
    table = _table()
    if not rows:
        table.rows.clear()
    assert "\n".join(table.lines()) + "\n" == _as_rich(table)


def test_on_a_terminal_the_same_table_has_colours() -> None:
    table = _table()
    styled = table.lines(styled=True)
    assert [ANSI.sub("", line) for line in styled] == table.lines()
    assert "\x1b[31mHTTP 404\x1b[0m" in styled[5] and "\x1b[32m3\x1b[0m" in styled[5]
    assert styled[0].startswith("\x1b[3mrefresh summary")  # the title in italics
    assert not any("\x1b" in line for line in table.lines())


def test_a_row_stays_one_line_and_control_characters_become_spaces(
    capsys: pytest.CaptureFixture[str],
) -> None:
    error = "connection reset\n\x1b[2J by peer " + "x" * 300
    report = RefreshReport(
        started=NOW,
        finished=NOW,
        results=(
            SourceResult(source="ok", outcome="unchanged", duration=0.01),
            SourceResult(source="bad", outcome="error", error=error, duration=1.5),
        ),
        feed_written=False,
        snapshot_written=False,
    )
    views.print_table(views.summary_table(report))
    out = capsys.readouterr().out
    assert "\x1b" not in out
    lines = out.splitlines()
    assert len(lines) == 7  # title, three rules, header, two rows
    bad = next(line for line in lines if line.startswith("│ bad "))
    assert "connection reset  [2J by peer " + "x" * 300 in bad
    assert bad.split("│")[2].strip() == "error" and bad.split("│")[7].strip() == "1.50s"
    assert len({len(line) for line in lines[1:]}) == 1  # every border lines up


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.skipif(sys.platform == "win32", reason="ANSI terminals")
def test_on_a_narrow_terminal_rich_folds_a_wide_table(monkeypatch: pytest.MonkeyPatch) -> None:
    screen = _Terminal()
    monkeypatch.setattr(sys, "stdout", screen)
    monkeypatch.setenv("COLUMNS", "60")
    table = _table()
    table.add_row("long", "1", "word " * 30)
    assert table.width() > 60
    views.print_table(table)
    lines = ANSI.sub("", screen.getvalue()).splitlines()
    assert max(views.cell_width(line) for line in lines) <= 60
    assert sum(line.count("word") for line in lines) == 30  # folded, nothing lost


def test_cell_width_counts_terminal_cells() -> None:
    assert views.cell_width("abc") == 3
    assert views.cell_width("中文") == 4
    assert views.cell_width("e\u0301") == 1


def test_refresh_in_a_pipe_does_not_load_rich(tmp_path: Path, server: LocalServer) -> None:
    url = server.serve("/feed.xml", rss_posts(3))
    path = write_config(tmp_path, f'[feed]\ntitle = "x"\n[[sources]]\nname = "a"\nurl = "{url}"\n')
    code = (
        "import sys\n"
        "from aggregator.cli import main\n"
        f"status = main(['refresh', '-c', {str(path)!r}])\n"
        "print('rich loaded:', 'rich' in sys.modules)\n"
        "sys.exit(status)\n"
    )
    run = run_python("-c", code)
    assert run.returncode == 0, run.stderr
    # In a pipe the per-source lines are the summary: no table repeats them.
    assert "a: new: 3 new" in run.stdout and "refresh summary" not in run.stdout
    assert run.stdout.rstrip().endswith("rich loaded: False")
