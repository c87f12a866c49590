"""What the command line shows: rich tables and progress on a terminal, plain text otherwise.

Every value is wrapped in `rich.text.Text`, so nothing from a source is read as markup.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from aggregator import sourcestate
from aggregator.config import Config
from aggregator.models import Entry, RefreshReport, SourceResult, SourceState

_OUTCOME_STYLE = {"new": "green", "updated": "cyan", "unchanged": "dim", "error": "red"}


def console(stderr: bool = False) -> Console:
    out = Console(stderr=stderr, highlight=False, soft_wrap=False)
    if not out.is_terminal:
        # A pipe or cron: no terminal width to respect, keep table rows on one line.
        out = Console(stderr=stderr, highlight=False, soft_wrap=False, width=200)
    return out


def print_table(table: Table) -> None:
    console().print(table)


def _when(value: datetime | None) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M") if value else "never"


def _cut(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3].rstrip() + "..."


class RefreshProgress:
    """A progress bar over the sources being refreshed, for a terminal."""

    def __init__(self, config: Config, names: Sequence[str], force: bool) -> None:
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
        self.progress.update(self.task, advance=1, description=escape(r.source))
        if r.outcome == "error":
            # On stderr like every error; the live display keeps it above the bar.
            print(f"{r.source}: error: {r.error}", file=sys.stderr)


def summary_table(report: RefreshReport) -> Table:
    table = Table(title="refresh summary", title_justify="left")
    table.add_column("source")
    table.add_column("result")
    table.add_column("new", justify="right")
    table.add_column("joined", justify="right")
    table.add_column("updated", justify="right")
    table.add_column("unchanged", justify="right")
    table.add_column("time", justify="right")
    table.add_column("error")
    for r in report.results:
        table.add_row(
            Text(r.source),
            Text(r.outcome, style=_OUTCOME_STYLE.get(r.outcome, "")),
            str(r.new),
            str(r.joined),
            str(r.updated),
            str(r.unchanged),
            f"{r.duration:.2f}s",
            Text(r.error or "", style="red"),
        )
    return table


def sources_table(
    config: Config, states: Mapping[str, SourceState], counts: Mapping[str, int]
) -> Table:
    table = Table(title=f"sources in {config.path.name}", title_justify="left")
    for name in ("source", "kind", "last fetch", "status", "errors", "next due", "entries"):
        table.add_column(
            name,
            justify="right" if name in ("errors", "entries") else "left",
            no_wrap=name in ("last fetch", "next due"),
        )
    table.add_column("moved to")
    for s in config.sources:
        st = sourcestate.current(s, states.get(s.name))  # a changed URL starts afresh
        status = st.last_status or "new"
        style = "red" if status in ("error", "gone") else ""
        status_text = Text(status, style=style)
        if st.error:
            status_text.append(f": {_cut(st.error, 60)}", style=style)
        due = sourcestate.next_due(s, st)
        table.add_row(
            Text(s.name),
            s.kind,
            _when(st.last_fetch),
            status_text,
            str(st.error_streak),
            "never" if sourcestate.is_gone(s, st) else _when(due) if due else "now",
            str(counts.get(s.name, 0)),
            Text(st.effective_url or ""),
        )
    return table


def print_latest(entries: Sequence[Entry]) -> None:
    """Like the "LATEST UPDATES" list of a capture: date, category, source, title, excerpt."""
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
