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
from typing import Any

from aggregator import __version__, views
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

    _add_serving_commands(sub, common)
    _add_terminal_commands(sub, common)
    return parser


def _add_serving_commands(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "run",
        parents=[common],
        help="crawl on schedule and serve the outputs until stopped",
        description=(
            "Keep running: fetch every source at its interval (first at its stored next due "
            "time, so a restart does not refetch everything), rewrite the outputs once after "
            "each burst of changes, and serve them over HTTP (unless --no-serve). SIGINT or "
            "SIGTERM stops taking new fetches, lets running ones finish, writes the outputs "
            "and exits 0. Logs one line per fetch."
        ),
    )
    p.add_argument("--no-serve", action="store_true", help="do not start the HTTP server")
    _server_options(p)
    p.add_argument(
        "--debounce",
        type=float,
        default=2.0,
        metavar="SECONDS",
        help="write the outputs once no source changed for this long (default: 2)",
    )
    p.set_defaults(func=cmd_run)

    p = sub.add_parser(
        "serve",
        parents=[common],
        help="serve the output folder to feed readers and browsers",
        description=(
            "Serve the output folder over HTTP: / (an HTML page of the latest entries), "
            "/feed.atom, /feed.json, /snapshot.json and /healthz, with ETag, Last-Modified, "
            "304 answers and gzip. Never touches the database; pair it with cron running "
            "'aggregator refresh', or use 'aggregator run' for both."
        ),
    )
    _server_options(p)
    p.set_defaults(func=cmd_serve)


def _server_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", help="address to listen on (default: [server] host, 127.0.0.1)")
    p.add_argument(
        "--port", type=int, help="port to listen on, 0 for any free one (default: [server] port)"
    )


def _add_terminal_commands(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "sources",
        parents=[common],
        help="show every source's state",
        description=(
            "A table of every configured source: kind, last fetch, status, error streak, "
            "next due time, stored entries, and where it moved to after permanent redirects."
        ),
    )
    p.set_defaults(func=cmd_sources)

    p = sub.add_parser(
        "latest",
        parents=[common],
        help="print the latest merged entries",
        description=(
            "Print the latest merged entries, newest first: date, category, source, title "
            "and excerpt, as stored (no fetching)."
        ),
    )
    p.add_argument("-n", type=int, default=20, metavar="N", help="how many entries (default: 20)")
    p.set_defaults(func=cmd_latest)

    p = sub.add_parser(
        "check",
        parents=[common],
        help="validate the config; with --fetch, show what each source gives",
        description=(
            "Validate the config file. With --fetch, fetch each source once (or those named "
            "with --source) WITHOUT storing anything and show how many entries it gives and "
            "the first few, to tune page selectors. Exit status 1 when a source fails."
        ),
    )
    p.add_argument("--fetch", action="store_true", help="fetch and read each source once")
    p.add_argument(
        "-s",
        "--source",
        action="append",
        default=[],
        metavar="NAME",
        help="with --fetch: only this source (repeatable)",
    )
    p.add_argument(
        "--show", type=int, default=3, metavar="N", help="entries shown per source (default: 3)"
    )
    p.set_defaults(func=cmd_check)

    p = sub.add_parser(
        "init",
        parents=[common],
        help="write a commented starter config.toml",
        description=(
            "Write a commented starter config file (./config.toml, or the --config path). "
            "Refuses to overwrite an existing file."
        ),
    )
    p.set_defaults(func=cmd_init)


def _setup_logging(args: argparse.Namespace) -> None:
    level = logging.DEBUG if args.verbose else logging.ERROR if args.quiet else logging.WARNING
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", force=True)


def _load(args: argparse.Namespace) -> Config:
    return load_config(Path(args.config))


def _line(r: SourceResult) -> str:
    if r.outcome == "error":
        return f"{r.source}: error: {r.error}"
    counts = f"{r.new} new, {r.joined} joined, {r.updated} updated, {r.unchanged} unchanged"
    extra = (
        f" ({len(r.warnings)} warning{'s' if len(r.warnings) != 1 else ''})" if r.warnings else ""
    )
    return f"{r.source}: {r.outcome}: {counts}{extra}"


def cmd_refresh(args: argparse.Namespace) -> int:
    from aggregator.refresh import refresh

    config = _load(args)
    progress = None
    if _show_progress(args):
        progress = views.RefreshProgress(config, args.source, args.all)

    def show(r: SourceResult) -> None:
        if progress is not None:
            progress.advance(r)
        elif r.outcome == "error":
            print(_line(r), file=sys.stderr)
        elif not args.quiet:
            print(_line(r))

    try:
        if progress is not None:
            progress.start()
        report: RefreshReport = refresh(config, names=args.source, force=args.all, on_result=show)
    finally:
        if progress is not None:
            progress.stop()
    if not args.quiet:
        if not report.results:
            print("no source is due; use --all to refresh anyway")
        else:
            views.print_table(views.summary_table(report))
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

    from aggregator.store import open_store

    config = _load(args)
    if args.source is not None:
        config.source(args.source)  # raises ConfigError for an unknown name
    if not Path(config.store_path).exists():
        print("nothing stored yet; run 'aggregator refresh' first")
        return EXIT_OK
    with open_store(config) as store:
        clusters = store.clusters(args.source)
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


def _show_progress(args: argparse.Namespace) -> bool:
    return not args.quiet and sys.stdout.isatty()


def cmd_run(args: argparse.Namespace) -> int:
    from aggregator.schedule import Runner

    config = _load(args)
    if not args.quiet:
        # A long-running service: timestamped lines, one per fetch.
        logging.basicConfig(
            level=logging.WARNING,
            format="%(asctime)s %(levelname)s %(message)s",
            force=True,
        )
        logging.getLogger("aggregator").setLevel(logging.DEBUG if args.verbose else logging.INFO)
    runner = Runner(
        config,
        serve=not args.no_serve,
        host=args.host,
        port=args.port,
        debounce=max(0.0, args.debounce),
    )
    return runner.run_forever()


def cmd_serve(args: argparse.Namespace) -> int:
    import signal
    import threading

    from aggregator.serve import Server

    config = _load(args)
    server = Server(
        config.output_dir,
        host=args.host or config.server_host,
        port=config.server_port if args.port is None else args.port,
    )
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda signum, frame: stop.set())
    server.start()
    if not args.quiet:
        print(f"serving {config.output_dir} on {server.url}", file=sys.stderr, flush=True)
    while not stop.wait(1.0):
        pass
    server.stop()
    return EXIT_OK


def cmd_sources(args: argparse.Namespace) -> int:
    from aggregator.store import open_store

    config = _load(args)
    with open_store(config) as store:
        states = {st.name: st for st in store.states()}
        counts = store.entry_counts()
    views.print_table(views.sources_table(config, states, counts))
    return EXIT_OK


def cmd_latest(args: argparse.Namespace) -> int:
    from aggregator.store import open_store

    if args.n < 1:
        raise UsageError("-n must be at least 1")
    config = _load(args)
    with open_store(config) as store:
        entries = store.latest(args.n)
    if not entries:
        if not args.quiet:
            print("nothing stored yet; run 'aggregator refresh' first")
        return EXIT_OK
    views.print_latest(entries)
    return EXIT_OK


def cmd_check(args: argparse.Namespace) -> int:
    from aggregator.collect import preview
    from aggregator.errors import SourceError

    config = _load(args)
    for name in args.source:
        config.source(name)
    if not args.quiet:
        print(f"{config.path}: ok, {len(config.sources)} sources")
    if not args.fetch:
        return EXIT_OK
    failed = 0
    for source in config.sources:
        if args.source and source.name not in args.source:
            continue
        try:
            result = preview(config, source.name)
        except SourceError as exc:
            failed += 1
            print(f"{source.name}: error: {exc.reason}", file=sys.stderr)
            continue
        if not args.quiet:
            views.print_preview(result, max(0, args.show))
    return EXIT_SOURCE_FAILED if failed else EXIT_OK


def cmd_init(args: argparse.Namespace) -> int:
    from importlib.resources import files

    path = Path(args.config)
    text = files("aggregator").joinpath("templates/config.toml").read_text(encoding="utf-8")
    try:
        with path.open("x", encoding="utf-8") as fh:
            fh.write(text)
    except FileExistsError:
        raise UsageError(f"{path}: already exists; not overwriting it") from None
    except OSError as exc:
        raise UsageError(f"{path}: cannot write: {exc.strerror}") from None
    if not args.quiet:
        print(f"wrote {path}; edit it, then run 'aggregator check --fetch'")
    return EXIT_OK


class UsageError(AggregatorError):
    """A command was given something it cannot use (exit status 2)."""


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _setup_logging(args)
    try:
        return int(args.func(args))
    except ConfigError as exc:
        print(f"aggregator: config error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except UsageError as exc:
        print(f"aggregator: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except AggregatorError as exc:
        print(f"aggregator: {exc}", file=sys.stderr)
        return EXIT_STORAGE
    except KeyboardInterrupt:
        print("aggregator: interrupted", file=sys.stderr)
        return 130
    finally:
        # A WebSub hub still being told of changed feeds gets a few seconds more.
        from aggregator import websub

        websub.wait()
