"""The `aggregator` command line: a thin front-end over the refresh use case.

Exit codes: 0 success; 1 a source failed (the outputs were still written); 2 a usage or
config error (nothing fetched); 3 the store or the outputs could not be written; 130
interrupted (Ctrl-C).

The config file is `-c FILE` (before or after the command), else $AGGREGATOR_CONFIG, else
./config.toml.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aggregator import __version__, views
from aggregator.config import Config, load_config
from aggregator.errors import AggregatorError, ConfigError
from aggregator.models import RefreshReport, SourceResult

if TYPE_CHECKING:
    from aggregator.refresh import Interrupt

EXIT_OK, EXIT_SOURCE_FAILED, EXIT_CONFIG, EXIT_STORAGE = 0, 1, 2, 3
EXIT_INTERRUPTED = 130
CONFIG_ENV = "AGGREGATOR_CONFIG"

DESCRIPTION = """\
Merge RSS/Atom/JSON feeds, HTML pages without a feed and text captures into one
deduplicated Atom feed (feed.atom) and a JSON snapshot (snapshot.json).
"""


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    # Given after the command it overrides one given before: SUPPRESS leaves the value the
    # main parser read when the command's own option is absent.
    common.add_argument(
        "-c",
        "--config",
        default=argparse.SUPPRESS,
        metavar="CONFIG",
        help=f"the config file (default: ${CONFIG_ENV}, else ./config.toml)",
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
    parser.add_argument(
        "-c",
        "--config",
        default=None,
        metavar="CONFIG",
        help=f"the config file (default: ${CONFIG_ENV}, else ./config.toml)",
    )
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

    p.add_argument("--json", action="store_true", help=JSON_HELP)

    p = sub.add_parser(
        "migrate",
        parents=[common],
        help="create or upgrade the store; move a SQLite store into PostgreSQL",
        description=(
            "Create the configured store ([store] path, SQLite, or [store] url, PostgreSQL) "
            "or bring its schema up to date; running it again changes nothing. With "
            "--from-sqlite PATH, then copy the SQLite store at PATH into the PostgreSQL "
            "store named by [store] url, which must be empty: every entry id, copy, source "
            "state and merge is kept, so the outputs written afterwards are the same bytes "
            "and no subscriber sees a new or changed entry. Fetches nothing."
        ),
    )
    p.add_argument(
        "--from-sqlite",
        type=Path,
        metavar="PATH",
        help="the SQLite store file to move into the PostgreSQL store",
    )
    p.set_defaults(func=cmd_migrate)

    _add_serving_commands(sub, common)
    _add_terminal_commands(sub, common)
    _add_source_commands(sub, common)
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
            "304 answers and gzip. Pair it with cron running 'aggregator refresh', or use "
            "'aggregator run' for both. With a PostgreSQL store ([store] url) it serves the "
            "outputs crawl workers stored in the database, on any machine; otherwise it "
            "never touches the database."
        ),
    )
    _server_options(p)
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser(
        "worker",
        parents=[common],
        help="crawl as one of any number of workers sharing a PostgreSQL store",
        description=(
            "Run a crawl worker against the PostgreSQL store of [store] url (prepare it once "
            "with 'aggregator migrate'). Run any number, on any machines: every minute one "
            "of them plans a crawl job per host with due sources; one job per host runs at a "
            "time in the whole cluster, so a host never sees more than [fetch] per_host "
            "requests at once. What they fetch is deduplicated by one ingest job at a time "
            "and the outputs are written to the output folder and stored in the database "
            "for 'aggregator serve'. SIGTERM or SIGINT: finish the running jobs, then exit; "
            "the jobs of a worker that was killed are run by another."
        ),
    )
    p.add_argument(
        "--concurrency",
        type=int,
        default=4,
        metavar="N",
        help="jobs this worker runs at once (default: 4)",
    )
    p.add_argument(
        "--stalled-after",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help=(
            "a worker silent this long is taken for dead and its jobs are run again (default: 30)"
        ),
    )
    p.set_defaults(func=cmd_worker)


def _server_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", help="address to listen on (default: [server] host, 127.0.0.1)")
    p.add_argument(
        "--port",
        type=_port,
        help="port to listen on, 1-65535, or 0 for any free one (default: [server] port)",
    )


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port {port} is outside 1-65535 (0: any free port)")
    return port


JSON_HELP = "print one JSON array instead of a table (fields in README.md)"


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
    p.add_argument("--json", action="store_true", help=JSON_HELP)
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
    p.add_argument("--json", action="store_true", help=JSON_HELP)
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


def _add_source_commands(sub: Any, common: argparse.ArgumentParser) -> None:
    """add, remove, import, export, prune: each with its help, description and arguments."""
    parsers: dict[str, argparse.ArgumentParser] = {}
    for name, (help_text, description, func) in _SOURCE_COMMANDS.items():
        parsers[name] = sub.add_parser(
            name, parents=[common], help=help_text, description=description
        )
        parsers[name].set_defaults(func=func)

    p = parsers["add"]
    p.add_argument("url", metavar="URL", help="the feed's or page's address (or a local file)")
    p.add_argument("--name", help="the source's name (default: made from its title)")
    p.add_argument("--category", help="a category added to every entry of the source")
    p.add_argument(
        "--kind",
        choices=("auto", "feed", "page", "text"),
        default="auto",
        help="read it as this kind instead of telling from the body",
    )

    p = parsers["remove"]
    p.add_argument("name", metavar="NAME", help="the source's name")

    p = parsers["import"]
    p.add_argument("file", metavar="FILE", help="the OPML file")

    p = parsers["export"]
    p.add_argument("-o", "--output", metavar="FILE", help="write here instead of stdout")

    p = parsers["prune"]
    p.add_argument(
        "--older-than",
        metavar="AGE",
        help='an age such as "90d", "12h" (default: [store] keep, else 90d)',
    )


def _setup_logging(args: argparse.Namespace) -> None:
    level = logging.DEBUG if args.verbose else logging.ERROR if args.quiet else logging.WARNING
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", force=True)


def config_path(args: argparse.Namespace) -> Path:
    """-c (before or after the command), else $AGGREGATOR_CONFIG, else ./config.toml."""
    return Path(args.config or os.environ.get(CONFIG_ENV) or "config.toml")


def _load(args: argparse.Namespace) -> Config:
    return load_config(config_path(args))


def _line(r: SourceResult) -> str:
    if r.outcome == "error":
        return f"{r.source}: error: {r.error}"
    counts = f"{r.new} new, {r.joined} joined, {r.updated} updated, {r.unchanged} unchanged"
    if r.excluded:
        counts += f", {r.excluded} excluded"
    extra = (
        f" ({len(r.warnings)} warning{'s' if len(r.warnings) != 1 else ''})" if r.warnings else ""
    )
    return f"{r.source}: {r.outcome}: {counts}{extra}"


def cmd_refresh(args: argparse.Namespace) -> int:
    from aggregator.refresh import Interrupt, refresh

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

    interrupt = Interrupt()
    try:
        if progress is not None:
            progress.start()
        with _CtrlC(interrupt):
            report: RefreshReport = refresh(
                config, names=args.source, force=args.all, on_result=show, interrupt=interrupt
            )
    finally:
        if progress is not None:
            progress.stop()
    if not args.quiet:
        for name in report.removed:
            print(f"{name}: removed (no longer in {config.path.name})")
        if not report.results and not report.interrupted:
            print("no source is due; use --all to refresh anyway")
        elif sys.stdout.isatty():
            # In a pipe the lines printed per source are the summary.
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
    if report.interrupted:
        print("aggregator: interrupted; what completed is stored", file=sys.stderr)
        # Fetches still running are abandoned, not waited for: leave without joining them.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(EXIT_INTERRUPTED)
    return EXIT_SOURCE_FAILED if report.failed else EXIT_OK


class _CtrlC:
    """While a refresh runs: the first Ctrl-C (or SIGTERM) asks it to stop and says so at once;
    the second quits on the spot (exit 130). The store stays whole: SQLite keeps only
    committed transactions."""

    def __init__(self, interrupt: Interrupt) -> None:
        self.interrupt = interrupt
        self.saved: list[object] = []

    def __enter__(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in (signal.SIGINT, signal.SIGTERM):
            self.saved.append(signal.signal(sig, self._on_signal))

    def __exit__(self, *exc: object) -> None:
        for sig, handler in zip((signal.SIGINT, signal.SIGTERM), self.saved, strict=False):
            signal.signal(sig, handler)  # type: ignore[arg-type]

    def _on_signal(self, signum: int, frame: object) -> None:
        if self.interrupt.event.is_set():
            os.write(2, b"aggregator: quit\n")
            os._exit(EXIT_INTERRUPTED)
        self.interrupt.event.set()  # first: a second signal from here on quits
        n = self.interrupt.in_flight()
        message = (
            f"stopping: waiting for {n} fetch{'' if n == 1 else 'es'}, Ctrl-C again to quit now\n"
        )
        os.write(2, message.encode())


def cmd_dupes(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    def cell(value: str) -> Text:
        # Source text is untrusted: no markup, no terminal control sequences.
        return Text("".join(ch if ch.isprintable() else " " for ch in value))

    from aggregator.store import open_store, store_exists

    config = _load(args)
    if args.source is not None:
        config.source(args.source)  # raises ConfigError for an unknown name
    if not store_exists(config):
        if args.json:
            _print_json([])
            return EXIT_OK
        print("nothing stored yet; run 'aggregator refresh' first")
        return EXIT_OK
    with open_store(config) as store:
        clusters = store.clusters(args.source)
    if args.json:
        _print_json(
            [
                {
                    "id": c.entry_id,
                    "title": c.copies[0].title if c.copies else "",
                    "first_seen": _utc(c.first_seen),
                    "copies": [
                        {
                            "source": copy.source,
                            "key": copy.key,
                            "rule": copy.rule,
                            "score": copy.score,
                            "title": copy.title,
                            "link": copy.link,
                            "first_seen": _utc(copy.first_seen),
                        }
                        for copy in c.copies
                    ],
                }
                for c in clusters
            ]
        )
        return EXIT_OK
    console = Console(soft_wrap=False)
    if not clusters:
        console.print("no merged entries", markup=False)
        return EXIT_OK
    for c in clusters:
        heading = c.copies[0].title if c.copies else c.entry_id
        table = Table(title=cell(f"{heading[:100]}  ({c.entry_id})"), title_justify="left")
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


def cmd_migrate(args: argparse.Namespace) -> int:
    from aggregator.store import migrate_store

    config = _load(args)
    if args.from_sqlite is not None and config.store_url is None:
        raise UsageError(
            f"{config.path}: --from-sqlite moves a store into PostgreSQL, and [store] url "
            "names no PostgreSQL database"
        )
    where, before, after = migrate_store(config)
    if not args.quiet:
        done = (
            "created"
            if before == 0
            else "up to date"
            if before == after
            else f"upgraded from version {before}"
        )
        print(f"{where}: schema version {after}, {done}")
    if config.store_url is not None:
        migrate_queue(config.store_url, where, quiet=args.quiet)
    if args.from_sqlite is None:
        return EXIT_OK
    from aggregator.store.move import move_sqlite
    from aggregator.store.postgres import PostgresStore

    assert config.store_url is not None
    with PostgresStore(config.store_url) as store:
        moved = move_sqlite(args.from_sqlite, store)
    if not args.quiet:
        print(
            f"moved {args.from_sqlite} into {where}: {moved.sources} sources, "
            f"{moved.entries} entries, {moved.copies} copies, {moved.bands} index rows"
        )
    return EXIT_OK


def migrate_queue(url: str, where: str, *, quiet: bool) -> None:
    """The crawl workers' job queue (procrastinate's schema) and tables, created or upgraded."""
    import psycopg

    from aggregator.errors import StorageError
    from aggregator.worker import migrate_work

    try:
        with psycopg.connect(url, autocommit=True) as conn:
            done = migrate_work(conn)
    except psycopg.Error as exc:
        raise StorageError(f"{where}: cannot create the job queue: {exc}") from None
    if not quiet:
        print(
            f"{where}: job queue: " + "; ".join(done) if done else f"{where}: job queue up to date"
        )


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
    stored = reader = None
    if config.store_url is not None:
        # Crawl workers keep the outputs in the database: any machine serves them.
        from aggregator.serve import StoredOutputs
        from aggregator.worker import OutputReader

        reader = OutputReader(config.store_url)
        stored = StoredOutputs(reader)
    server = Server(
        config.output_dir,
        host=args.host or config.server_host,
        port=config.server_port if args.port is None else args.port,
        stored=stored,
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
    if reader is not None:
        reader.close()
    return EXIT_OK


def cmd_worker(args: argparse.Namespace) -> int:
    from aggregator.worker import run_worker

    if args.concurrency < 1:
        raise UsageError("--concurrency must be at least 1")
    if args.stalled_after < 1:
        raise UsageError("--stalled-after must be at least 1 second")
    config = _load(args)
    if config.store_url is None:
        raise UsageError(
            "workers need a PostgreSQL store: set [store] url, then run 'aggregator migrate'"
        )
    # A long-running service: timestamped lines, one per job.
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(levelname)s %(message)s", force=True
    )
    if not args.quiet:
        logging.getLogger("aggregator").setLevel(logging.DEBUG if args.verbose else logging.INFO)
    return run_worker(config, concurrency=args.concurrency, stalled_after=args.stalled_after)


def cmd_sources(args: argparse.Namespace) -> int:
    from aggregator.store import open_store

    config = _load(args)
    with open_store(config) as store:
        states = {st.name: st for st in store.states()}
        counts = store.entry_counts()
    if args.json:
        from aggregator import emit

        _print_json(
            [
                {
                    **emit.snapshot_source(s, states.get(s.name), counts.get(s.name, 0)),
                    "category": s.category,
                    "enabled": s.enabled,
                }
                for s in config.sources
            ]
        )
        return EXIT_OK
    views.print_table(views.sources_table(config, states, counts))
    return EXIT_OK


def cmd_latest(args: argparse.Namespace) -> int:
    from aggregator.store import open_store

    if args.n < 1:
        raise UsageError("-n must be at least 1")
    config = _load(args)
    with open_store(config) as store:
        entries = store.latest(args.n)
    if args.json:
        from aggregator import emit

        _print_json([emit.snapshot_entry(e) for e in entries])
        return EXIT_OK
    if not entries:
        if not args.quiet:
            print("nothing stored yet; run 'aggregator refresh' first")
        return EXIT_OK
    views.print_latest(entries)
    return EXIT_OK


def cmd_check(args: argparse.Namespace) -> int:
    from aggregator.checks import findings
    from aggregator.collect import preview
    from aggregator.errors import SourceError

    config = _load(args)
    for name in args.source:
        config.source(name)
    found = findings(config)
    for f in found:
        if f.level == "error" or not args.quiet:
            print(f"{config.path}: {f.source}: {f.level}: {f.message}", file=sys.stderr)
    if any(f.level == "error" for f in found):
        return EXIT_CONFIG
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

    path = config_path(args)
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


def _same_url(url: str) -> str:
    """A URL as compared with those configured: scheme and host in lower case, no trailing /."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url.strip())
    if parts.scheme.lower() not in ("http", "https"):
        return url.strip()
    return urlunsplit(
        (parts.scheme.lower(), parts.netloc.lower(), parts.path.rstrip("/"), parts.query, "")
    )


def _configured(config: Config, url: str) -> str | None:
    """The name of the source configured with this URL, if any."""
    wanted = _same_url(url)
    return next((s.name for s in config.sources if _same_url(s.url) == wanted), None)


def cmd_add(args: argparse.Namespace) -> int:
    from aggregator import sourcefile
    from aggregator.discover import discover
    from aggregator.errors import SourceError

    config = _load(args)
    url = args.url.strip()
    local = None
    if not url.startswith(("http://", "https://")):
        local = Path(url.removeprefix("file://")).expanduser().resolve()
        url = str(local)
    names = {s.name for s in config.sources}
    if args.name is not None and args.name in names:
        raise UsageError(f"a source named {args.name!r} is already configured")
    existing = _configured(config, url)
    if existing is not None:
        raise UsageError(f"{url} is already configured as {existing!r}")
    try:
        found = discover(config, url, kind=args.kind)
    except SourceError as exc:
        print(f"aggregator: {url}: {exc.reason}; nothing added", file=sys.stderr)
        return EXIT_SOURCE_FAILED
    existing = _configured(config, found.url)
    if existing is not None:
        raise UsageError(f"{url} advertises {found.url}, already configured as {existing!r}")
    name = args.name or sourcefile.name_for(found.title, found.url, names)
    block: dict[str, Any] = {"name": name, "url": found.url, "kind": found.kind}
    if local is not None and local.is_relative_to(config.path.parent):
        block["url"] = local.relative_to(config.path.parent).as_posix()  # as the file's others
    if args.category:
        block["category"] = args.category
    if found.select:
        block["select"] = dict(found.select)
    sourcefile.add_sources(config.path, [block])
    if args.quiet:
        return EXIT_OK
    print(f"added {name!r} ({found.kind}) to {config.path}: {found.url}")
    if found.url != url:
        print(f"  {url} advertises it")
    for other in found.others:
        print(f"  it also advertises {other} (add it with 'aggregator add {other}')")
    if found.kind == "page":
        if found.select:
            print("  posts found with these selectors (written to the config):")
            print("  [sources.select]")
            for key, value in found.select.items():
                print(f"  {key} = {json.dumps(value, ensure_ascii=False)}")
        else:
            print(
                "  a page without a feed: add a [sources.select] block with CSS selectors for "
                "its posts (README: HTML pages), then run "
                f"'aggregator check --fetch -s {name}'"
            )
    return EXIT_OK


def cmd_remove(args: argparse.Namespace) -> int:
    from aggregator import manage, sourcefile
    from aggregator.refresh import write_outputs
    from aggregator.store import open_store

    config = _load(args)
    config.source(args.name)  # raises ConfigError (exit 2) for an unknown name
    sourcefile.remove_source(config.path, args.name)
    config = load_config(config.path)
    with open_store(config) as store:
        removals = manage.remove_sources(store, [args.name])
        write_outputs(config, store)
    if not args.quiet:
        print(f"removed {args.name!r} from {config.path}")
        print(manage.summary(removals))
    return EXIT_OK


def cmd_import(args: argparse.Namespace) -> int:
    from urllib.parse import urlsplit
    from urllib.request import url2pathname

    from aggregator import sourcefile
    from aggregator.opml import OpmlError, read_opml

    config = _load(args)
    try:
        opml = read_opml(Path(args.file))
    except OpmlError as exc:
        raise UsageError(f"{exc}; nothing imported") from None
    taken = {s.name for s in config.sources}
    known = {_same_url(s.url) for s in config.sources}
    blocks: list[dict[str, Any]] = []
    configured = unusable = 0
    for feed in opml.feeds:
        url, kind = feed.url, "feed"
        if url.startswith("file://"):
            # A local file, as `export` writes one: read by its kind, sniffed.
            url, kind = url2pathname(urlsplit(url).path), "auto"
        elif not url.startswith(("http://", "https://")):
            unusable += 1
            continue
        if _same_url(url) in known:
            configured += 1
            continue
        known.add(_same_url(url))
        name = sourcefile.name_for(feed.title, url, taken)
        taken.add(name)
        block: dict[str, Any] = {"name": name, "url": url, "kind": kind}
        if feed.category:
            block["category"] = feed.category
        if feed.title and feed.title != name:
            block["title"] = feed.title
        blocks.append(block)
    sourcefile.add_sources(config.path, blocks)
    if not args.quiet:
        print(
            f"imported {len(blocks)} feed{'' if len(blocks) == 1 else 's'} into {config.path}; "
            f"skipped {configured} already configured, {opml.skipped} without xmlUrl"
            + (f", {unusable} not http(s)" if unusable else "")
        )
    return EXIT_OK


def cmd_export(args: argparse.Namespace) -> int:
    from aggregator.emit import public_url
    from aggregator.opml import Subscription, write_opml
    from aggregator.store import open_store, store_exists

    config = _load(args)
    sites: dict[str, str] = {}
    if store_exists(config):
        with open_store(config) as store:
            sites = {st.name: st.site_link for st in store.states() if st.site_link}
    feeds = [
        Subscription(
            url=public_url(s) or Path(s.url).as_uri(),
            title=s.title or s.name,
            site=sites.get(s.name),
            category=s.category,
        )
        for s in config.sources
    ]
    data = write_opml(config.feed.title, feeds, datetime.now(UTC))
    if args.output:
        try:
            Path(args.output).write_bytes(data)
        except OSError as exc:
            raise UsageError(f"{args.output}: cannot write: {exc.strerror}") from None
    else:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
    return EXIT_OK


def cmd_prune(args: argparse.Namespace) -> int:
    from aggregator import manage
    from aggregator.config import parse_interval
    from aggregator.refresh import write_outputs
    from aggregator.store import open_store

    config = _load(args)
    if args.older_than is not None:
        try:
            age = parse_interval(args.older_than)
        except ValueError as exc:
            raise UsageError(f"--older-than: {exc}") from None
    else:
        age = config.store_keep_seconds or 90 * 86400
    with open_store(config) as store:
        removals = manage.prune_removed(config, store)
        pruned = manage.prune_old(config, store, age, datetime.now(UTC))
        write_outputs(config, store)
    if not args.quiet:
        if removals:
            print(manage.summary(removals))
        older = args.older_than or f"{age // 86400}d"
        print(f"pruned {pruned} entr{'y' if pruned == 1 else 'ies'} older than {older}")
    return EXIT_OK


def _print_json(value: object) -> None:
    sys.stdout.write(json.dumps(value, ensure_ascii=False, indent=2) + "\n")


def _utc(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


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


# The source-managing commands: name -> (help, description, function).
_SOURCE_COMMANDS: dict[str, tuple[str, str, Any]] = {
    "add": (
        "add a source to the config file",
        "Fetch URL once (with the limits and address rules of a refresh) and append a "
        "[[sources]] block for it to the config file, keeping the file's comments and layout. "
        'A feed is added as kind = "feed", named after its title; a page that advertises '
        "feeds adds the first of them and lists the others; a page without one is added as "
        'kind = "page" with the [sources.select] selectors auto mode finds for its posts '
        "(when it finds none, write them; then run 'aggregator check --fetch'). A URL "
        "already configured is refused (exit 2).",
        cmd_add,
    ),
    "remove": (
        "remove a source from the config file and the store",
        "Remove the [[sources]] block named NAME from the config file and its copies from the "
        "store, then rewrite the outputs: entries only it had leave them; entries another "
        "source also has stay, shown from that source's copy. Exit 2 for an unknown name.",
        cmd_remove,
    ),
    "import": (
        "add the feeds of an OPML file",
        "Append a [[sources]] block to the config file for every feed of an OPML 1.0 or 2.0 "
        "file (as feed readers export it). Folders become categories; outlines without "
        "xmlUrl are skipped; URLs already configured are skipped and counted. A malformed "
        "file is refused (exit 2) with its line and column, the config untouched. Nothing is "
        "fetched.",
        cmd_import,
    ),
    "export": (
        "write every source as OPML 2.0",
        "Write an OPML 2.0 subscription list of every source (title, xmlUrl, htmlUrl when "
        "known, one folder per category) that feed readers, and 'aggregator import', read "
        "back.",
        cmd_export,
    ),
    "prune": (
        "delete old entries from the store",
        "Delete the entries first seen and last updated longer ago than --older-than "
        "(default: [store] keep, else 90d), except the newest [feed] max_entries, which the "
        "outputs show; also what the store holds of sources no longer configured. Then "
        "rewrite the outputs.",
        cmd_prune,
    ),
}
