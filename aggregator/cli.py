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
