"""The `aggregator` command line: a thin front-end over the refresh use case.

Exit codes: 0 success; 1 a source failed (the outputs were still written); 2 a usage or
config error (nothing fetched); 3 the store or the outputs could not be written.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from aggregator import __version__
from aggregator.config import Config, load_config
from aggregator.errors import AggregatorError, ConfigError
from aggregator.models import RefreshReport, SourceResult

EXIT_OK, EXIT_SOURCE_FAILED, EXIT_CONFIG, EXIT_STORAGE = 0, 1, 2, 3

DESCRIPTION = """\
Merge RSS/Atom/JSON feeds, HTML pages without a feed and text captures into one
deduplicated Atom feed (feed.atom) and a JSON snapshot (snapshot.json).
"""


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "-c",
        "--config",
        default="config.toml",
        metavar="CONFIG",
        help="the config file (default: ./config.toml)",
    )
    loud = common.add_mutually_exclusive_group()
    loud.add_argument("-v", "--verbose", action="store_true", help="log every step")
    loud.add_argument("-q", "--quiet", action="store_true", help="print errors only")

    parser = argparse.ArgumentParser(
        prog="aggregator",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"aggregator {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser(
        "refresh",
        parents=[common],
        help="fetch the due sources, store new entries, write the outputs",
        description=(
            "Fetch the sources that are due (or those named with --source, or all with "
            "--all), store what is new, and write feed.atom and snapshot.json. Exit status: "
            "0 all fetched sources succeeded, 1 a source failed (the outputs are still "
            "written from what is stored), 2 config error, 3 store or output error."
        ),
    )
    p.add_argument(
        "-s",
        "--source",
        action="append",
        default=[],
        metavar="NAME",
        help="refresh only this source (repeatable); ignores due times",
    )
    p.add_argument("--all", action="store_true", help="refresh every source, due or not")
    p.set_defaults(func=cmd_refresh)

    p = sub.add_parser(
        "dupes",
        parents=[common],
        help="print the merged entries and why each copy was merged",
        description=(
            "Print every stored entry that merges more than one copy: each copy's source, "
            "the rule that merged it (guid, link, text, prefix, similar) and, for the "
            "fuzzy rules, its score. Reads the store only; fetches nothing."
        ),
    )
    p.add_argument(
        "-s",
        "--source",
        metavar="NAME",
        help="only entries with a copy from this source",
    )
    p.set_defaults(func=cmd_dupes)
    return parser


def _setup_logging(args: argparse.Namespace) -> None:
    level = logging.DEBUG if args.verbose else logging.ERROR if args.quiet else logging.WARNING
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", force=True)


def _load(args: argparse.Namespace) -> Config:
    return load_config(Path(args.config))


def _line(r: SourceResult) -> str:
    if r.outcome == "error":
        return f"{r.source}: error: {r.error}"
    counts = f"{r.new} new, {r.updated} updated, {r.unchanged} unchanged"
    extra = (
        f" ({len(r.warnings)} warning{'s' if len(r.warnings) != 1 else ''})" if r.warnings else ""
    )
    return f"{r.source}: {r.outcome}: {counts}{extra}"


def cmd_refresh(args: argparse.Namespace) -> int:
    from aggregator.refresh import refresh

    config = _load(args)

    def show(r: SourceResult) -> None:
        if r.outcome == "error":
            print(_line(r), file=sys.stderr)
        elif not args.quiet:
            print(_line(r))

    report: RefreshReport = refresh(config, names=args.source, force=args.all, on_result=show)
    if not args.quiet:
        if not report.results:
            print("no source is due; use --all to refresh anyway")
        wrote = [
            n
            for n, w in (
                ("feed.atom", report.feed_written),
                ("snapshot.json", report.snapshot_written),
            )
            if w
        ]
        print(
            f"outputs in {config.output_dir}: "
            + (", ".join(wrote) + " written" if wrote else "unchanged")
        )
    return EXIT_SOURCE_FAILED if report.failed else EXIT_OK


def cmd_dupes(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    def cell(value: str) -> Text:
        # Source text is untrusted: no markup, no terminal control sequences.
        return Text("".join(ch if ch.isprintable() else " " for ch in value))

    from aggregator.store.sqlite import SQLiteStore

    config = _load(args)
    if args.source is not None:
        config.source(args.source)  # raises ConfigError for an unknown name
    if not Path(config.store_path).exists():
        print("nothing stored yet; run 'aggregator refresh' first")
        return EXIT_OK
    store = SQLiteStore(config.store_path)
    try:
        clusters = store.clusters(args.source)
    finally:
        store.close()
    console = Console(soft_wrap=False)
    if not clusters:
        console.print("no merged entries", markup=False)
        return EXIT_OK
    for c in clusters:
        table = Table(title=cell(c.entry_id), title_justify="left")
        for column in ("source", "rule", "score", "first seen", "title", "link or key"):
            table.add_column(column, overflow="fold")
        for copy in c.copies:
            table.add_row(
                cell(copy.source),
                "first" if copy.rule == "new" else copy.rule,
                "" if copy.score is None else f"{copy.score:.3f}",
                copy.first_seen.strftime("%Y-%m-%d %H:%M"),
                cell(copy.title[:60]),
                cell(copy.link or copy.key),
            )
        console.print(table)
    console.print(f"{len(clusters)} merged entr{'y' if len(clusters) == 1 else 'ies'}")
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _setup_logging(args)
    try:
        return int(args.func(args))
    except ConfigError as exc:
        print(f"aggregator: config error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except AggregatorError as exc:
        print(f"aggregator: {exc}", file=sys.stderr)
        return EXIT_STORAGE
    except KeyboardInterrupt:
        print("aggregator: interrupted", file=sys.stderr)
        return 130
