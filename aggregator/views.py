"""What the command line shows: plain text in a pipe, colours and a progress bar on a terminal.

Tables are drawn here, with the box characters and layout of rich's default table, one line
per row: in a pipe (cron, scripts) as plain text, on a terminal with colours. rich itself is
imported only on a terminal, for the progress bar and for a table wider than the terminal
(which it folds to fit), and by the `latest` and `check` listings. Text from a source never
carries markup or control characters to the screen.
"""

from __future__ import annotations

import os
import shutil
import sys
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Literal

from aggregator import sourcestate
from aggregator.models import Entry, RefreshReport, SourceResult, SourceState, display_title

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

    from aggregator.config import Config

_OUTCOME_STYLE = {"new": "green", "updated": "cyan", "unchanged": "dim", "error": "red"}
# Select Graphic Rendition codes of the styles used here (rich's names).
_SGR = {"bold": "1", "dim": "2", "italic": "3", "red": "31", "green": "32", "cyan": "36"}

Justify = Literal["left", "right"]


@dataclass(frozen=True, slots=True)
class Cell:
    """One table cell: plain text and the style it is shown in on a terminal."""

    text: str  # shown as is: no markup; control characters become spaces
    style: str = ""  # space-separated names from _SGR, or "" for none


@dataclass(slots=True)
class TextTable:
    """A table laid out as rich lays out a table that fits: heavy head, one space of padding."""

    title: str  # above the table, left-justified
    columns: list[tuple[str, Justify]]  # header and justification of each column
    rows: list[list[Cell]] = field(default_factory=list)

    def add_row(self, *cells: Cell | str) -> None:
        self.rows.append([c if isinstance(c, Cell) else Cell(c) for c in cells])

    def __rich__(self) -> Table:
        """The same table for a rich console, which folds columns to fit its width."""
        return _rich_table(self)

    def widths(self) -> list[int]:
        """Each column's width in terminal cells, padding not included."""
        return [
            max([cell_width(name)] + [cell_width(row[i].text) for row in self.rows])
            for i, (name, _) in enumerate(self.columns)
        ]

    def width(self) -> int:
        """The table's width in terminal cells, borders included."""
        return sum(w + 3 for w in self.widths()) + 1

    def lines(self, styled: bool = False) -> list[str]:
        """The table as lines of text; with `styled`, with terminal colour codes."""
        widths = self.widths()

        def rule(left: str, line: str, joint: str, right: str) -> str:
            return left + joint.join(line * (w + 2) for w in widths) + right

        def row(cells: Sequence[Cell], edge: str) -> str:
            out = []
            for (_, justify), w, cell in zip(self.columns, widths, cells, strict=True):
                text = _printable(cell.text)
                pad = " " * (w - cell_width(text))
                text = _style(text, cell.style) if styled else text
                out.append(f" {pad}{text} " if justify == "right" else f" {text}{pad} ")
            return edge + edge.join(out) + edge

        total = sum(w + 3 for w in widths) + 1
        title = _printable(self.title)
        title += " " * (total - cell_width(title))
        return [
            _style(title, "italic") if styled else title,
            rule("┏", "━", "┳", "┓"),
            row([Cell(name, "bold") for name, _ in self.columns], "┃"),
            rule("┡", "━", "╇", "┩"),
            *(row(cells, "│") for cells in self.rows),
            rule("└", "─", "┴", "┘"),
        ]


def cell_width(text: str) -> int:
    """Terminal cells `text` takes: two for a wide (CJK) character, none for a combining one."""
    if text.isascii():
        return len(text)
    return sum(
        0 if unicodedata.combining(ch) else 2 if unicodedata.east_asian_width(ch) in "WF" else 1
        for ch in text
    )


def _printable(text: str) -> str:
    return text if text.isprintable() else "".join(ch if ch.isprintable() else " " for ch in text)


def _style(text: str, style: str) -> str:
    codes = ";".join(_SGR[name] for name in style.split())
    return f"\x1b[{codes}m{text}\x1b[0m" if codes and text else text


def _colours() -> bool:
    """Whether a terminal should get colours (https://no-color.org, and dumb terminals)."""
    return "NO_COLOR" not in os.environ and os.environ.get("TERM") not in ("dumb", "unknown")


def print_table(table: TextTable) -> None:
    if not sys.stdout.isatty():
        # A pipe or cron: plain text, every row on one line however long.
        sys.stdout.write("\n".join(table.lines()) + "\n")
        return
    if sys.platform != "win32" and table.width() <= shutil.get_terminal_size().columns:
        sys.stdout.write("\n".join(table.lines(styled=_colours())) + "\n")
        return
    console().print(table)  # rich folds the widest columns to fit the terminal


def _rich_table(table: TextTable) -> Table:
    from rich.table import Table
    from rich.text import Text

    out = Table(title=Text(table.title), title_justify="left")
    for name, justify in table.columns:
        out.add_column(name, justify=justify)
    for cells in table.rows:
        out.add_row(*(Text(_printable(c.text), style=c.style) for c in cells))
    return out


def console(stderr: bool = False) -> Console:
    from rich.console import Console

    out = Console(stderr=stderr, highlight=False, soft_wrap=False)
    if not out.is_terminal:
        # A pipe or cron: no terminal width to respect, keep lines whole.
        out = Console(stderr=stderr, highlight=False, soft_wrap=False, width=200)
    return out


def _when(value: datetime | None) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M") if value else "never"


def _cut(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3].rstrip() + "..."


class RefreshProgress:
    """A progress bar over the sources being refreshed, for a terminal."""

    def __init__(self, config: Config, names: Sequence[str], force: bool) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        self.total = len(set(names)) if names else len(config.sources) if force else None
        if self.total is None:
            from aggregator.store import open_store

            with open_store(config) as store:
                states = {st.name: st for st in store.states()}
            self.total = len(sourcestate.due_sources(config.sources, states, datetime.now(UTC)))
        self.progress = Progress(
            TextColumn("[bold]refreshing"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.description}"),
            console=console(),
            transient=True,
        )
        self.task = self.progress.add_task("", total=self.total)

    def start(self) -> None:
        self.progress.start()

    def stop(self) -> None:
        self.progress.stop()

    def advance(self, r: SourceResult) -> None:
        from rich.markup import escape

        self.progress.update(self.task, advance=1, description=escape(r.source))
        if r.outcome == "error":
            # On stderr like every error; the live display keeps it above the bar.
            print(f"{r.source}: error: {r.error}", file=sys.stderr)


def summary_table(report: RefreshReport) -> TextTable:
    table = TextTable(
        "refresh summary",
        [
            ("source", "left"),
            ("result", "left"),
            ("new", "right"),
            ("joined", "right"),
            ("updated", "right"),
            ("unchanged", "right"),
            ("time", "right"),
            ("error", "left"),
        ],
    )
    for r in report.results:
        table.add_row(
            r.source,
            Cell(r.outcome, _OUTCOME_STYLE.get(r.outcome, "")),
            str(r.new),
            str(r.joined),
            str(r.updated),
            str(r.unchanged),
            f"{r.duration:.2f}s",
            Cell(r.error or "", "red"),
        )
    return table


def sources_table(
    config: Config, states: Mapping[str, SourceState], counts: Mapping[str, int]
) -> TextTable:
    table = TextTable(
        f"sources in {config.path.name}",
        [
            ("source", "left"),
            ("kind", "left"),
            ("last fetch", "left"),
            ("status", "left"),
            ("errors", "right"),
            ("next due", "left"),
            ("entries", "right"),
            ("moved to", "left"),
            ("title", "left"),
            ("site", "left"),
            ("warnings", "left"),
        ],
    )
    for s in config.sources:
        st = sourcestate.current(s, states.get(s.name))  # a changed URL starts afresh
        status = st.last_status or "new"
        style = "red" if status in ("error", "gone") else ""
        if st.error:
            status += f": {_cut(st.error, 60)}"
        due = sourcestate.next_due(s, st)
        table.add_row(
            s.name if s.enabled else f"{s.name} (disabled)",
            s.kind,
            _when(st.last_fetch),
            Cell(status, style),
            str(st.error_streak),
            "never" if sourcestate.is_gone(s, st) else _when(due) if due else "now",
            str(counts.get(s.name, 0)),
            st.effective_url or "",
            _cut(display_title(s, st), 40),
            st.site_link or "",
            Cell(_cut("; ".join(st.warnings), 80), "yellow" if st.warnings else ""),
        )
    return table


def print_latest(entries: Sequence[Entry]) -> None:
    """Like the "LATEST UPDATES" list of a capture: date, category, source, title, excerpt."""
    from rich.text import Text

    out = console()
    width = max(40, min(out.width, 120))
    for i, e in enumerate(entries):
        if i:
            out.print()
        when = e.published or e.updated
        head = Text(when.astimezone(UTC).strftime("%Y-%m-%d"), style="bold")
        if e.categories:
            head.append("  " + ", ".join(e.categories), style="magenta")
        head.append(f"  {e.source}", style="dim")
        out.print(head)
        out.print(Text(e.title, style="bold"))
        if e.excerpt and e.excerpt != e.title:
            out.print(Text(_cut(e.excerpt, width * 2)))
        if e.link:
            out.print(Text(e.link, style="blue"))


def print_preview(preview: object, show: int) -> None:
    """What `check --fetch` found for one source."""
    from rich.text import Text

    from aggregator.collect import Preview

    assert isinstance(preview, Preview)
    out = console()
    n = len(preview.excerpts)
    head = Text(f"{preview.source.name}: ", style="bold")
    head.append(
        f"{n} entr{'y' if n == 1 else 'ies'} ({preview.kind}, HTTP {preview.status})",
        style="green" if n else "yellow",
    )
    if preview.source.is_remote and preview.final_url != preview.source.url:
        head.append(f" from {preview.final_url}", style="dim")
    out.print(head)
    for w in preview.warnings:
        out.print(Text(f"  warning: {w}", style="yellow"))
    if preview.auto_method:
        from aggregator.parse.autopage import auto_report

        for row in auto_report(preview.auto_select, preview.auto_method).splitlines():
            out.print(Text(f"  {row}", style="cyan"))
    for e in preview.excerpts[:show]:
        when = e.published or e.updated
        line = Text("  - ")
        line.append(e.title, style="bold")
        if when:
            line.append(f"  {when.astimezone(UTC).strftime('%Y-%m-%d')}", style="dim")
        out.print(line)
        if e.link:
            out.print(Text(f"    {e.link}", style="blue"))
        if e.excerpt and e.excerpt != e.title:
            out.print(Text(f"    {_cut(e.excerpt, 140)}"))
    if n > show:
        out.print(Text(f"  ... and {n - show} more", style="dim"))
