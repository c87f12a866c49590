"""Helpers shared by the test modules: plain constants, functions and classes.

Fixtures live in conftest.py; the labelled dedup evaluation corpus is tests/dedup_corpus.py.

- the repository's paths, a real HTTP server on 127.0.0.1 (`LocalServer`) with canned routes,
  writing a config and reading back a snapshot (validated against its JSON Schema);
- the Store implementations the tests run against, and opening one (PostgreSQL databases
  made per test from a template);
- small feeds: `rss_posts` (n numbered posts) and `rss` ((guid, title) items);
- the hostile-server tests' two-source config, reads of the store and the snapshot, a guard
  with a fake DNS, and bodies that drip or never end;
- the command line's subcommands;
- the dedup tests' excerpts, built through normalize, and batches placed and stored;
- a synthetic feed workload (`generate`), which the benchmarks in bench/ serve as well.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit
from xml.sax.saxutils import escape

from aggregator import dedup
from aggregator.cli import build_parser
from aggregator.config import Config, load_config
from aggregator.models import (
    CandidateQuery,
    Decision,
    Excerpt,
    ExcerptOptions,
    RawItem,
    RefreshReport,
    Source,
    SourceResult,
    SourceState,
)
from aggregator.netguard import IPAddress, NetGuard, is_public_address
from aggregator.normalize import normalize
from aggregator.refresh import refresh
from aggregator.store import Store, open_store

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(__file__).resolve().parent / "data"
SHARED = ROOT.parent / "shared"
SCHEMA = ROOT / "aggregator" / "schema" / "snapshot.schema.json"


@dataclass
class Response:
    """A canned response; `body` may be a callable taking the request handler."""

    body: bytes | Callable[[BaseHTTPRequestHandler], bytes | None] = b""
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Request:
    """What the client sent, for assertions on it."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes = b""


class _QuietServer(ThreadingHTTPServer):
    """A client closing its keep-alive connection is normal, not a traceback on stderr."""

    def handle_error(self, request: Any, client_address: Any) -> None:
        import sys

        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class LocalServer:
    """A threaded HTTP server on 127.0.0.1:0 (or another loopback address) with routes."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.routes: dict[str, Response] = {}
        self.requests: list[Request] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                size = int(self.headers.get("Content-Length") or 0)
                self.do_GET(sent=self.rfile.read(size))

            def do_GET(self, sent: bytes = b"") -> None:
                server.requests.append(
                    Request(
                        self.command,
                        self.path,
                        {k.lower(): v for k, v in self.headers.items()},
                        sent,
                    )
                )
                route = server.routes.get(self.path.split("?")[0]) or server.routes.get(self.path)
                if route is None:
                    route = Response(b"not found", 404, {"Content-Type": "text/plain"})
                body = route.body(self) if callable(route.body) else route.body
                if body is None:  # the callable wrote the response itself
                    return
                self.send_response(route.status)
                for k, v in route.headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if route.status != 304:
                    self.wfile.write(body)

        self.httpd = _QuietServer((host, 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    @property
    def base(self) -> str:
        host, port = self.httpd.server_address[:2]
        assert isinstance(host, str)
        return f"http://{host}:{port}"

    def url(self, path: str) -> str:
        return self.base + path

    def serve(
        self,
        path: str,
        body: bytes | str,
        content_type: str = "application/xml",
        status: int = 200,
        **headers: str,
    ) -> str:
        data = body.encode("utf-8") if isinstance(body, str) else body
        hdrs = {
            "Content-Type": content_type,
            **{k.replace("_", "-"): v for k, v in headers.items()},
        }
        self.routes[path] = Response(data, status, hdrs)
        return self.url(path)

    def hits(self, path: str) -> list[Request]:
        return [r for r in self.requests if r.path.split("?")[0] == path]

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def write_config(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(body, encoding="utf-8")
    return path


def load_snapshot(path: Path) -> dict[str, Any]:
    import jsonschema

    doc: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator(
        schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    ).validate(doc)
    return doc


# --- stores ---------------------------------------------------------------------------------------

# The PostgreSQL server the PostgreSQL tests use (a database they may create databases from).
PG_URL = os.environ.get("AGGREGATOR_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
_PG_AT = f"{urlsplit(PG_URL).hostname}:{urlsplit(PG_URL).port or 5432}"
PG_SKIP = f"PostgreSQL not reachable at {_PG_AT} (set AGGREGATOR_TEST_PG_URL)"


def _pg_reachable() -> bool:
    try:
        import psycopg

        with psycopg.connect(PG_URL, connect_timeout=3):
            return True
    except Exception:
        return False


PG_REACHABLE = _pg_reachable()

# Every Store implementation the contract suite (tests/test_store_contract.py) and the dedup
# tests run against, by name.
STORES = ("sqlite", "postgresql") if PG_REACHABLE else ("sqlite",)


class PgDatabases:
    """Databases on the test server, named after this process so that test runs side by side
    never meet: a template that holds the current schema, made once, and a fresh database
    copied from it (or an empty one) for each test that asks, dropped after the test."""

    def __init__(self) -> None:
        self.prefix = f"aggtest_{os.getpid()}"
        self.template: str | None = None
        self.created: list[str] = []
        self.by_place: dict[tuple[Path, str], str] = {}

    def url(self, name: str) -> str:
        return urlunsplit(urlsplit(PG_URL)._replace(path="/" + name))

    def _admin(self, sql: str) -> None:
        import psycopg

        for attempt in range(50):
            try:
                with psycopg.connect(PG_URL, autocommit=True) as conn:
                    conn.execute(sql)  # type: ignore[arg-type]
                return
            except psycopg.errors.ObjectInUse:  # a closed connection not gone yet
                if attempt == 49:
                    raise
                time.sleep(0.1)

    def fresh(self, *, schema: bool = True) -> str:
        """The URL of a new database: with the current schema, or empty."""
        from aggregator.store.postgres import PostgresStore

        if not self.created and self.template is None:
            self._drop_stale()
        if schema and self.template is None:
            template = f"{self.prefix}_template"
            self._admin(f"DROP DATABASE IF EXISTS {template} WITH (FORCE)")
            self._admin(f"CREATE DATABASE {template}")
            PostgresStore(self.url(template)).close()
            self.template = template
        name = f"{self.prefix}_{len(self.created)}"
        self._admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        self._admin(f"CREATE DATABASE {name}" + (f" TEMPLATE {self.template}" if schema else ""))
        self.created.append(name)
        return self.url(name)

    def _drop_stale(self) -> None:
        """Drop the databases of test runs on this machine that ended without dropping them
        (killed); a database still in use is left alone."""
        import psycopg

        with psycopg.connect(PG_URL, autocommit=True) as conn:
            names = [
                row[0]
                for row in conn.execute(
                    "SELECT datname FROM pg_database WHERE datname LIKE 'aggtest\\_%'"
                )
            ]
            for name in names:
                pid = name.split("_")[1]
                if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
                    with contextlib.suppress(psycopg.Error):
                        conn.execute(f"DROP DATABASE IF EXISTS {name}")  # type: ignore[arg-type]

    def at(self, tmp_path: Path, name: str) -> str:
        """The database that stands for the store file `name` in `tmp_path`."""
        if (tmp_path, name) not in self.by_place:
            self.by_place[tmp_path, name] = self.fresh()
        return self.by_place[tmp_path, name]

    def drop_created(self) -> None:
        for name in self.created:
            self._admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        self.created.clear()
        self.by_place.clear()

    def drop_template(self) -> None:
        if self.template is not None:
            self._admin(f"DROP DATABASE IF EXISTS {self.template} WITH (FORCE)")
            self.template = None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


PG = PgDatabases()


def open_test_store(kind: str, tmp_path: Path, name: str = "store.db") -> Store:
    """The store of the given implementation kept in `tmp_path` (new and empty at first); for
    PostgreSQL, a database of its own that stands for that place."""
    if kind == "sqlite":
        from aggregator.store.sqlite import SQLiteStore

        return SQLiteStore(tmp_path / name)
    if kind == "postgresql":
        from aggregator.store.postgres import PostgresStore

        return PostgresStore(PG.at(tmp_path, name))
    raise ValueError(f"unknown store kind {kind!r}")


# --- small feeds ----------------------------------------------------------------------------------


def rss_posts(n: int, prefix: str = "Post", extra: str = "") -> str:
    """An RSS 2.0 feed (text) of `n` numbered posts, "<prefix> <i><extra>", each dated."""
    items = "".join(
        f"<item><guid>{prefix}-{i}</guid><title>{prefix} {i}{extra}</title>"
        f"<link>http://blog.test/{prefix.lower()}/{i}</link>"
        f"<pubDate>Mon, {1 + i % 27:02d} Jun 2026 10:00:00 GMT</pubDate>"
        f"<description>Body of {prefix.lower()} {i}, long enough to read.</description></item>"
        for i in range(n)
    )
    return f'<rss version="2.0"><channel><title>t</title>{items}</channel></rss>'


def rss(*items: tuple[str, str], channel: str = "", item_extra: str = "") -> bytes:
    """An RSS 2.0 feed of (guid, title) items, each with a link and a plausible date."""
    body = "".join(
        f"<item><guid isPermaLink='false'>{guid}</guid><title>{title}</title>"
        f"<link>https://site.example/{guid}</link>"
        f"<pubDate>Tue, 03 Nov 2026 09:00:00 +0000</pubDate>"
        f"<description>About {title}, in a few words.</description>{item_extra}</item>"
        for guid, title in items
    )
    return (
        "<?xml version='1.0' encoding='utf-8'?><rss version='2.0'><channel>"
        f"<title>T</title><link>https://site.example/</link>{channel}{body}</channel></rss>"
    ).encode()


# --- the hostile-server tests ---------------------------------------------------------------------

EARLIER = rss(("e-1", "Earlier one"), ("e-2", "Earlier two"))
STEADY = rss(("s-1", "Steady one"), ("s-2", "Steady two"))


# The top of a test config: the merged feed, the outputs in out/, the store in state/.
CONFIG_HEAD = """
[feed]
title = "Merged"
link = "https://merged.test/"
[output]
dir = "out"
[store]
path = "state/agg.db"
"""


def config_source(name: str, url: str, extra: str = "") -> str:
    """A [[sources]] block."""
    return f'[[sources]]\nname = "{name}"\nurl = "{url}"\n{extra}\n'


def two_sources(
    tmp_path: Path, server: LocalServer, hostile_url: str, *, fetch: str = "", extra: str = ""
) -> Config:
    """A config with a well-behaved `steady` source and the `hostile` one under test."""
    server.serve("/steady.xml", STEADY, "application/rss+xml")
    path = write_config(
        tmp_path,
        CONFIG_HEAD
        + f"""[fetch]
timeout = 2
{fetch}
[[sources]]
name = "steady"
url = "{server.url("/steady.xml")}"
[[sources]]
name = "hostile"
url = "{hostile_url}"
{extra}
""",
    )
    return load_config(path)


def by_name(report: RefreshReport) -> dict[str, SourceResult]:
    return {r.source: r for r in report.results}


def state(config: Config, name: str) -> SourceState:
    with open_store(config) as store:
        st = store.get_state(name)
    assert st is not None
    return st


def snapshot(config: Config) -> dict[str, Any]:
    return load_snapshot(config.output_dir / "snapshot.json")


def titles_of(config: Config, source: str) -> set[str]:
    return {e["title"] for e in snapshot(config)["entries"] if e["source"] == source}


def refresh_all(config: Config, **kw: Any) -> dict[str, SourceResult]:
    return by_name(refresh(config, force=True, **kw))


def seeded(tmp_path: Path, server: LocalServer, path: str, **kw: Any) -> Config:
    """Serve EARLIER at `path`, refresh once, and return the config (both sources stored)."""
    server.serve(path, EARLIER, "application/rss+xml")
    config = two_sources(tmp_path, server, server.url(path), **kw)
    results = refresh_all(config)
    assert results["hostile"].outcome == "new" and results["steady"].outcome == "new"
    return config


def assert_survived(config: Config, results: dict[str, SourceResult]) -> None:
    """The earlier entries of `hostile` are still stored and shown; `steady` completed."""
    assert results["steady"].outcome in ("new", "unchanged"), results["steady"]
    assert titles_of(config, "hostile") >= {"Earlier one", "Earlier two"}
    assert titles_of(config, "steady") == {"Steady one", "Steady two"}


def fake_dns(
    names: dict[str, list[str]], public: Iterable[str] = (), *, allow_private: bool = True
) -> NetGuard:
    """A guard where `names` resolve as given and the `public` loopback addresses count as
    public, so that tests play "a public site" while connecting only to 127.0.0.x."""
    public_set = {str(p) for p in public}

    def resolver(host: str, port: int) -> list[str]:
        answers = names.get(host.lower())
        if answers is None:
            raise socket.gaierror(socket.EAI_NONAME, f"{host}: unknown test name")
        return list(answers)

    def is_public(address: IPAddress) -> bool:
        return str(address) in public_set or is_public_address(address)

    return NetGuard(allow_private=allow_private, resolver=resolver, is_public=is_public)


def drip(handler: BaseHTTPRequestHandler) -> None:
    """Headers, then one byte at a time, until the client goes away."""
    import time

    handler.send_response(200)
    handler.send_header("Content-Type", "application/rss+xml")
    handler.send_header("Content-Length", "100000")
    handler.end_headers()
    try:
        for _ in range(100000):
            handler.wfile.write(b" ")
            handler.wfile.flush()
            time.sleep(0.05)
    except OSError:
        pass


def endless(handler: BaseHTTPRequestHandler) -> None:
    """A body without a length that never ends (until the client goes away)."""
    handler.send_response(200)
    handler.send_header("Content-Type", "application/rss+xml")
    handler.send_header("Connection", "close")
    handler.end_headers()
    chunk = b"<item><title>x</title></item>" * 2000
    try:
        handler.wfile.write(b"<?xml version='1.0'?><rss version='2.0'><channel>")
        while True:
            handler.wfile.write(chunk)
    except OSError:
        pass
    handler.close_connection = True


def aware(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


# --- the command line -----------------------------------------------------------------------------


def command_names() -> list[str]:
    """The command line's subcommands, sorted."""
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert isinstance(sub.choices, dict)
    return sorted(sub.choices)


@contextmanager
def serving_process(config: Config) -> Iterator[str]:
    """`aggregator serve` for `config` as a process of its own, on a free port: its URL."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "aggregator", "serve", "-c", str(config.path), "--port", "0"],
        cwd=ROOT,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        yield line.rsplit(" on ", 1)[1].strip()
    finally:
        proc.terminate()
        proc.wait(timeout=30)


# Snapshot fields that say when things happened by the wall clock, not what was stored.
CLOCK_FIELDS = frozenset({"first_seen", "last_fetch", "last_success", "next_due", "generated_at"})


def without_clock(value: Any) -> Any:
    """A snapshot (or any part of it) without its CLOCK_FIELDS, to compare two stores' runs."""
    if isinstance(value, dict):
        return {k: without_clock(v) for k, v in value.items() if k not in CLOCK_FIELDS}
    if isinstance(value, list):
        return [without_clock(v) for v in value]
    return value


def run_python(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    """`python *args` in a fresh interpreter that imports this checkout's package."""
    return subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


# --- the dedup tests ------------------------------------------------------------------------------

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
LONG = (
    "Gradient noise scale tells you how large a batch can get before extra samples stop "
    "helping. Measure it early in training with two batch sizes, compare the gradient norms, "
    "and you have a cheap estimate that guides the choice of batch size for the rest of the run."
)
LONG_ZH = (
    "梯度噪声尺度告诉我们批大小增大到什么程度之后，额外的样本就不再有帮助。在训练早期用两个不同的批大小"
    "分别测量梯度范数并加以比较，就能得到一个成本很低的估计，用来指导整个训练过程中批大小的选择。"
)


def ex(
    source: str,
    content: str,
    *,
    title: str | None = "A post",
    guid: str | None = None,
    link: str | None = None,
    at: int = 0,
    categories: tuple[str, ...] = (),
    allow_duplicate_links: bool = False,
) -> Excerpt:
    src = Source(name=source, url="https://x.test/", allow_duplicate_links=allow_duplicate_links)
    item = RawItem(
        guid=guid,
        title=title,
        link=link,
        content=content,
        content_is_html=False,
        categories=categories,
    )
    return normalize(item, source=src, now=T0 + timedelta(hours=at), options=ExcerptOptions())


def put(store: Store, *excerpts: Excerpt, **options: object) -> Decision:
    """Place one batch and store what dedup decided, as a refresh does."""
    opts = dedup.DedupOptions(**options)  # type: ignore[arg-type]
    with store.transaction():
        decision = dedup.place(list(excerpts), store, opts)
        store.apply(decision, SourceState(name=excerpts[0].source))
    return decision


def entry_of(store: Store, e: Excerpt) -> str:
    """The entry the stored copy of `e` (by source and key) belongs to."""
    found = store.candidates(CandidateQuery(keys=frozenset({(e.source, e.key)})))
    return found.by_key[e.source, e.key].entry_id


# --- a synthetic feed workload --------------------------------------------------------------------

# N feeds x M entries, alternating RSS 2.0 and Atom 1.0. Each entry carries an HTML summary of
# 2-4 KB mixing English and Chinese paragraphs, a code block and an image. About one entry in
# ten is a repeat of an entry of the previous feed (same link, its own guid), as happens when
# a post is syndicated to several places.
#
# With `newer=1`, each feed has published one more post since: the same feed with a new entry
# on top and its oldest one gone (a crawl that finds one new item per feed).

_EN = [
    "the",
    "model",
    "training",
    "data",
    "learning",
    "rate",
    "warmup",
    "schedule",
    "transformer",
    "layer",
    "attention",
    "gradient",
    "batch",
    "size",
    "memory",
    "cache",
    "latency",
    "throughput",
    "benchmark",
    "parser",
    "feed",
    "entry",
    "server",
    "client",
    "request",
    "response",
    "database",
    "index",
    "query",
    "storage",
    "network",
    "kernel",
    "thread",
    "process",
    "pool",
    "compile",
    "runtime",
    "profile",
    "measure",
    "result",
    "figure",
    "table",
    "paper",
    "draft",
    "note",
]
_ZH = (
    "我们在这篇文章中讨论了模型训练的学习率预热策略以及注意力层的实现细节，"
    "实验结果表明批量大小对内存占用和吞吐量有显著影响。数据库索引的设计决定了查询延迟，"
    "而线程池和进程池的选择取决于任务是受限于计算还是输入输出。本文最后给出了基准测试的数字。"
)
BASE_DATE = datetime(2026, 11, 1, tzinfo=UTC)


def _vocabulary(size: int, seed: int = 11) -> list[str]:
    """Pseudo-words from syllables: real prose draws on thousands of words, not a few dozen
    (with a few dozen, every summary shares most of its character n-grams with every other,
    which no real pair of posts does)."""
    rng = random.Random(seed)
    onsets = ["b", "c", "d", "f", "g", "h", "k", "l", "m", "n", "p", "r", "s", "t", "v", "w"]
    vowels = ["a", "e", "i", "o", "u", "ai", "ou", "ea"]
    codas = ["", "n", "r", "s", "t", "l", "nd", "st"]
    words = set(_EN)
    while len(words) < size:
        syllables = rng.randint(1, 3)
        words.add(
            "".join(
                rng.choice(onsets) + rng.choice(vowels) + rng.choice(codas)
                for _ in range(syllables)
            )
        )
    ordered = sorted(words)
    rng.shuffle(ordered)  # which words are common is arbitrary, not alphabetical
    return ordered


_VOCAB = _vocabulary(5000)
# Zipf-like weights: common words recur, as in prose; the long tail keeps posts distinct.
_WEIGHTS = [1.0 / (rank + 1) for rank in range(len(_VOCAB))]
_HANZI = "".join(sorted(set(_ZH))) + "".join(chr(c) for c in range(0x4E00, 0x4E00 + 2500, 3))


def _english(rng: random.Random, words: int) -> str:
    text = " ".join(rng.choices(_VOCAB, weights=_WEIGHTS, k=words))
    return text[0].upper() + text[1:] + "."


def _chinese(rng: random.Random, chars: int) -> str:
    # A sentence of the fixed paragraph for its punctuation and common words, then characters
    # drawn from a few thousand, so that two posts' Chinese text differs as real posts do.
    start = rng.randrange(len(_ZH) - 20)
    head = _ZH[start : start + 20]
    tail = "".join(rng.choice(_HANZI) for _ in range(max(0, chars - len(head))))
    return (head + tail)[:chars]


def summary_html(rng: random.Random) -> str:
    """An HTML summary of 2-4 KB: paragraphs in two languages, code, an image, a link."""
    target = rng.randint(2048, 4096)
    parts: list[str] = []
    size = 0
    n = 0
    while size < target:
        n += 1
        if n % 4 == 1:
            block = f"<p>{_english(rng, rng.randint(25, 50))} <a href='/post/{n}'>more</a></p>"
        elif n % 4 == 2:
            block = f"<p>{_chinese(rng, rng.randint(60, 140))}</p>"
        elif n % 4 == 3:
            block = (
                "<pre><code class='language-python'>def step(x, lr=0.001):\n"
                "    return x - lr * grad(x)  # &lt;update&gt;\n</code></pre>"
            )
        else:
            block = (
                f"<figure><img src='https://img.example.org/{rng.randrange(10**6)}.png' "
                f"alt='figure {n}' width='640'><figcaption>{_english(rng, 8)}</figcaption>"
                "</figure>"
            )
        parts.append(block)
        size += len(block.encode("utf-8"))
    return "".join(parts)


def _entry(feed: int, i: int, rng: random.Random) -> dict[str, Any]:
    when = BASE_DATE - timedelta(hours=feed * 7 + i * 3)
    return {
        "guid": f"https://feed{feed}.example.org/posts/{i}",
        "link": f"https://feed{feed}.example.org/posts/{i}",
        "title": f"{_english(rng, 6)[:-1]} {_chinese(rng, 6)} #{feed}-{i}",
        "summary": summary_html(rng),
        "date": when,
        "author": f"Author {feed % 17}",
        "tags": (rng.choice(_EN), rng.choice(_EN)),
    }


def _rss_feed(feed: int, entries: list[dict[str, Any]]) -> str:
    items = "".join(
        "<item>"
        f"<title>{escape(e['title'])}</title><link>{escape(e['link'])}</link>"
        f"<guid isPermaLink='false'>{escape(e['guid'])}</guid>"
        f"<pubDate>{format_datetime(e['date'])}</pubDate>"
        f"<author>author{feed}@example.org ({escape(e['author'])})</author>"
        + "".join(f"<category>{escape(t)}</category>" for t in e["tags"])
        + f"<description>{escape(e['summary'])}</description></item>\n"
        for e in entries
    )
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n<rss version="2.0"><channel>'
        f"<title>Feed {feed}</title><link>https://feed{feed}.example.org/</link>"
        f"<description>Feed number {feed}</description>\n{items}</channel></rss>\n"
    )


def _atom_feed(feed: int, entries: list[dict[str, Any]]) -> str:
    items = "".join(
        "<entry>"
        f"<title>{escape(e['title'])}</title><link rel='alternate' href='{escape(e['link'])}'/>"
        f"<id>{escape(e['guid'])}</id><updated>{e['date'].isoformat()}</updated>"
        f"<published>{e['date'].isoformat()}</published>"
        f"<author><name>{escape(e['author'])}</name></author>"
        + "".join(f"<category term='{escape(t)}'/>" for t in e["tags"])
        + f"<summary type='html'>{escape(e['summary'])}</summary></entry>\n"
        for e in entries
    )
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n<feed xmlns="http://www.w3.org/2005/Atom">'
        f"<title>Feed {feed}</title><id>https://feed{feed}.example.org/</id>"
        f"<link href='https://feed{feed}.example.org/'/>"
        f"<updated>{BASE_DATE.isoformat()}</updated>\n{items}</feed>\n"
    )


def generate(feeds: int, entries: int, seed: int = 6, newer: int = 0) -> dict[str, bytes]:
    """Path -> body for every feed of the workload; `newer` posts published since on top."""
    rng = random.Random(seed)
    bodies: dict[str, bytes] = {}
    previous: list[dict[str, Any]] = []
    for f in range(feeds):
        own = [_entry(f, i, rng) for i in range(entries)]
        for i in range(5, entries, 10):  # one in ten: a copy of the previous feed's own post
            if previous:
                # One of its own posts (not a repost itself), which that feed did publish.
                copy = dict(previous[(i + 1) % len(previous)])
                copy["guid"] = f"tag:feed{f}.example.org,2026:repost-{i}"
                own[i] = copy
        previous = own
        # Newer posts draw from a generator of their own: the older entries stay byte-equal.
        later = random.Random(seed * 100_003 + f)
        shown = [_entry(f, -1 - i, later) for i in reversed(range(newer))] + own
        shown = shown[:entries]
        if f % 2 == 0:
            bodies[f"/feed{f}.xml"] = _rss_feed(f, shown).encode("utf-8")
        else:
            bodies[f"/feed{f}.atom"] = _atom_feed(f, shown).encode("utf-8")
    return bodies


class Slowloris:
    """A real slow client: opens `connections` connections to `host:port` from `source`
    (another loopback address), sends a request line into each, then one more header line into
    each every `every` seconds, never finishing a request; it reconnects whatever the server
    closes, until `stop()`."""

    def __init__(
        self,
        host: str,
        port: int,
        connections: int = 300,
        every: float = 1.0,
        source: str = "127.0.0.2",
    ) -> None:
        import socket
        import threading

        self._socket = socket
        self.host, self.port, self.every, self.source = host, port, every, source
        self.wanted = connections
        self.opened = 0  # connections opened so far, reconnects included
        self._socks: list[Any] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="slowloris", daemon=True)

    def _connect(self) -> Any:
        s = self._socket.socket(self._socket.AF_INET, self._socket.SOCK_STREAM)
        s.settimeout(0.5)
        try:
            s.bind((self.source, 0))
            s.connect((self.host, self.port))
            s.sendall(b"GET /feed.atom HTTP/1.1\r\nHost: slow\r\n")
        except OSError:
            s.close()
            return None
        self.opened += 1
        return s

    def start(self) -> Slowloris:
        for _ in range(self.wanted):
            s = self._connect()
            if s is not None:
                self._socks.append(s)
        self._thread.start()
        return self

    def _run(self) -> None:
        n = 0
        while not self._stop.wait(self.every):
            n += 1
            alive = []
            for s in self._socks:
                try:
                    s.sendall(f"X-Slow-{n}: {n}\r\n".encode())
                    alive.append(s)
                except OSError:
                    s.close()
            while len(alive) < self.wanted and not self._stop.is_set():
                s = self._connect()
                if s is None:
                    break
                alive.append(s)
            self._socks = alive

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        for s in self._socks:
            s.close()
