"""Crawl workers against a real PostgreSQL database and real worker processes.

The hosts are real HTTP servers on loopback addresses of their own (127.0.0.2, .3, ...): the
fetch limiter and the crawl jobs key on the host name, so each address is one host. Each server
counts the requests it is answering at once; the per-host limit is what it saw.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest

from aggregator.config import Config, load_config
from aggregator.refresh import refresh
from tests.helpers import (
    PG,
    PG_REACHABLE,
    PG_SKIP,
    LocalServer,
    Response,
    serving_process,
    without_clock,
    write_config,
)

pytestmark = pytest.mark.skipif(not PG_REACHABLE, reason=PG_SKIP)

HOSTS = 4
FEEDS_PER_HOST = 4
POSTS = 5  # own posts per feed; each feed also repeats the first post of the feed before it
PER_HOST = 2


class Host:
    """A loopback HTTP server of its own that counts the requests it answers at once."""

    def __init__(self, address: str, delay: float) -> None:
        self.server = LocalServer(address)
        self.delay = delay
        self._lock = threading.Lock()
        self.in_flight = 0
        self.peak = 0
        self.seen: list[str] = []

    def serve(self, path: str, body: bytes) -> str:
        def answer(handler: BaseHTTPRequestHandler) -> None:
            with self._lock:
                self.in_flight += 1
                self.peak = max(self.peak, self.in_flight)
                self.seen.append(path)
            try:
                time.sleep(self.delay)
                handler.send_response(200)
                handler.send_header("Content-Type", "application/rss+xml")
                handler.send_header("Content-Length", str(len(body)))
                handler.end_headers()
                handler.wfile.write(body)
            finally:
                with self._lock:
                    self.in_flight -= 1

        self.server.routes[path] = Response(answer)
        return self.server.url(path)

    def close(self) -> None:
        self.server.close()


def _post(feed: int, i: int) -> str:
    return (
        f"<item><guid>f{feed}-p{i}</guid><title>Feed {feed} post {i}</title>"
        f"<link>http://site{feed}.test/posts/{i}</link>"
        f"<pubDate>Mon, {1 + (feed * POSTS + i) % 27:02d} Jun 2026 {i:02d}:{feed % 60:02d}:00 GMT"
        f"</pubDate><description>Feed {feed} writes about topic {i} at some length, "
        f"with words of its own: {feed * 31 + i * 7}.</description></item>"
    )


def feed_body(feed: int, feeds: int) -> bytes:
    items = [_post(feed, i) for i in range(POSTS)]
    # A planted repeat: the first post of the feed before, on another host, under a guid
    # of this feed's own (the link and text find it).
    prev = (feed - 1) % feeds
    items.append(_post(prev, 0).replace(f"<guid>f{prev}-p0</guid>", f"<guid>f{feed}-r</guid>"))
    return (
        f'<rss version="2.0"><channel><title>Feed {feed}</title>'
        f"<link>http://site{feed}.test/</link>{''.join(items)}</channel></rss>"
    ).encode()


@pytest.fixture
def hosts() -> Iterator[list[Host]]:
    made = [Host(f"127.0.0.{2 + h}", 1.0 if h == 0 else 0.15) for h in range(HOSTS)]
    try:
        yield made
    finally:
        for h in made:
            h.close()


def sources_toml(hosts: list[Host]) -> str:
    feeds = HOSTS * FEEDS_PER_HOST
    out = []
    for f in range(feeds):
        host = hosts[f % HOSTS]
        url = host.serve(f"/feed{f}.xml", feed_body(f, feeds))
        out.append(f'[[sources]]\nname = "feed{f}"\nurl = "{url}"\ninterval = "1h"\n')
    return "\n".join(out)


def make_config(tmp_path: Path, hosts: list[Host], store: str, extra: str = "") -> Config:
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = write_config(
        tmp_path,
        f"""
[feed]
title = "Merged"
link = "https://merged.test/"
max_entries = 500
[output]
dir = "out"
[store]
{store}
[fetch]
timeout = 10
per_host = {PER_HOST}
{sources_toml(hosts)}
{extra}
""",
    )
    return load_config(path)


def pg_config(tmp_path: Path, hosts: list[Host], extra: str = "") -> Config:
    url = PG.fresh()
    config = make_config(tmp_path, hosts, f'url = "{url}"', extra)
    assert aggregator("migrate", "-c", str(config.path)).returncode == 0
    return config


def aggregator(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "aggregator", *args], capture_output=True, text=True, timeout=60
    )


def start_worker(config: Config, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as fh:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "aggregator",
                "worker",
                "-c",
                str(config.path),
                "--concurrency",
                "3",
                "--stalled-after",
                "3",
            ],
            stdout=fh,
            stderr=subprocess.STDOUT,
        )


def query(config: Config, sql: str) -> list[tuple[Any, ...]]:
    import psycopg

    assert config.store_url is not None
    with psycopg.connect(config.store_url, autocommit=True) as conn:
        return conn.execute(sql.encode()).fetchall()


def settled(config: Config) -> bool:
    """Every source fetched, nothing staged, no job waiting or running, the outputs stored."""
    (row,) = query(
        config,
        """
        SELECT (SELECT count(*) FROM sources WHERE last_fetch IS NOT NULL),
               (SELECT count(*) FROM staged),
               (SELECT count(*) FROM procrastinate_jobs WHERE status IN ('todo', 'doing')),
               (SELECT count(*) FROM outputs)
        """,
    )
    return row[0] == len(config.sources) and row[1] == 0 and row[2] == 0 and row[3] == 4


def wait_settled(config: Config, workers: list[subprocess.Popen[bytes]], log: Path) -> None:
    from aggregator.worker import defer_tick

    deadline = time.monotonic() + 90
    while not settled(config):
        for w in workers:
            assert w.poll() is None, log.read_text(errors="replace")
        assert time.monotonic() < deadline, log.read_text(errors="replace")
        defer_tick(config)  # as the minute's tick would; one waits at most
        time.sleep(1.0)


def stored_snapshot(config: Config) -> dict[str, Any]:
    ((body,),) = query(config, "SELECT body FROM outputs WHERE name = 'snapshot.json'")
    return dict(json.loads(bytes(body)))


def test_workers_crawl_every_host_once_within_its_limit_and_survive_a_kill(
    tmp_path: Path, hosts: list[Host]
) -> None:
    config = pg_config(tmp_path / "pg", hosts)
    log = tmp_path / "workers.log"
    slow = hosts[0]
    # One worker alone first; it is killed while the slow host is answering it.
    doomed = start_worker(config, log)
    from aggregator.worker import defer_tick

    defer_tick(config)
    deadline = time.monotonic() + 30
    while not slow.seen:
        assert doomed.poll() is None and time.monotonic() < deadline, log.read_text()
        time.sleep(0.05)
    doomed.send_signal(signal.SIGKILL)
    doomed.wait(10)
    workers = [start_worker(config, log), start_worker(config, log)]
    try:
        wait_settled(config, workers, log)
    finally:
        for w in workers:
            w.send_signal(signal.SIGTERM)
        codes = [w.wait(30) for w in workers]
    assert codes == [0, 0], log.read_text()

    # Every feed was fetched, and no host saw more than per_host requests at once.
    for f in range(HOSTS * FEEDS_PER_HOST):
        assert f"/feed{f}.xml" in hosts[f % HOSTS].seen
    assert all(1 <= h.peak <= PER_HOST for h in hosts), [h.peak for h in hosts]
    # The killed worker's job ran again elsewhere: the slow host's feeds were all stored.
    feeds = HOSTS * FEEDS_PER_HOST
    snap = stored_snapshot(config)
    assert len(snap["entries"]) == feeds * POSTS  # each post once; repeats merged
    assert all(s["status"] == "ok" for s in snap["sources"])
    copies = query(config, "SELECT source, key, count(*) FROM copies GROUP BY 1, 2")
    assert len(copies) == feeds * (POSTS + 1) and all(n == 1 for *_, n in copies)
    merged = [e for e in snap["entries"] if len(e["sources"]) > 1]
    assert len(merged) == feeds
    # The same input through one SQLite refresh gives the same snapshot, ids included.
    local = make_config(tmp_path / "sqlite", hosts, 'path = "agg.db"')
    refresh(local, force=True)
    expected = json.loads((local.output_dir / "snapshot.json").read_text(encoding="utf-8"))
    assert without_clock(snap) == without_clock(expected)
    # The worker wrote the same outputs to its own output folder too.
    assert json.loads((config.output_dir / "snapshot.json").read_bytes()) == snap


def test_sigterm_ends_a_worker_after_its_running_jobs(tmp_path: Path, hosts: list[Host]) -> None:
    from aggregator.worker import defer_tick

    config = pg_config(tmp_path, hosts)
    log = tmp_path / "worker.log"
    worker = start_worker(config, log)
    defer_tick(config)
    slow = hosts[0]
    deadline = time.monotonic() + 60
    while not slow.seen:
        assert worker.poll() is None and time.monotonic() < deadline, log.read_text()
        time.sleep(0.05)
    worker.send_signal(signal.SIGTERM)  # while it waits on the slow host
    assert worker.wait(60) == 0, log.read_text()
    # The crawl it was running finished: every source of the slow host was fetched and saved.
    slow_sources = [s.name for i, s in enumerate(config.sources) if i % HOSTS == 0]
    fetched = query(config, "SELECT name FROM sources WHERE last_status = 'ok'")
    assert set(slow_sources) <= {name for (name,) in fetched}
    assert sorted(slow.seen) == sorted(
        f"/feed{i}.xml" for i in range(0, HOSTS * FEEDS_PER_HOST, HOSTS)
    )


def test_concurrent_ingests_place_each_staged_batch_once(tmp_path: Path, hosts: list[Host]) -> None:
    from aggregator.store.postgres import PostgresStore
    from aggregator.worker import Worker, host_of

    config = pg_config(tmp_path, hosts)
    assert config.store_url is not None
    tick = datetime.now(UTC)
    with PostgresStore(config.store_url) as store:
        crawler = Worker(config, store)
        for host in dict.fromkeys(host_of(s, None) for s in config.sources):
            assert crawler.crawl(host, tick).staged == FEEDS_PER_HOST
    placed: list[int] = []
    errors: list[BaseException] = []

    def ingest() -> None:
        try:
            with PostgresStore(config.store_url or "") as store:
                placed.append(Worker(config, store).ingest()[0])
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=ingest) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    feeds = HOSTS * FEEDS_PER_HOST
    assert sum(placed) == feeds  # each staged batch placed by exactly one of them
    assert query(config, "SELECT count(*) FROM staged") == [(0,)]
    assert query(config, "SELECT count(*) FROM entries") == [(feeds * POSTS,)]
    assert query(config, "SELECT count(*) FROM copies") == [(feeds * (POSTS + 1),)]


def test_migrate_is_idempotent_and_serve_reads_stored_outputs(
    tmp_path: Path, hosts: list[Host]
) -> None:
    import urllib.request

    config = pg_config(tmp_path, hosts)
    again = aggregator("migrate", "-c", str(config.path))
    assert again.returncode == 0, again.stderr
    from aggregator.store.postgres import PostgresStore
    from aggregator.worker import Worker, host_of

    assert config.store_url is not None
    with PostgresStore(config.store_url) as store:
        w = Worker(config, store)
        w.crawl(host_of(config.sources[1], None), datetime.now(UTC))
        assert w.ingest()[0] == FEEDS_PER_HOST
        assert w.emit() >= 4  # feed.atom, feed.json, index.html, snapshot.json, archives
        assert w.emit() == 0  # nothing changed: nothing rewritten
    # Another machine: no output folder, the database only.
    os.rename(config.output_dir, tmp_path / "elsewhere")
    with serving_process(config) as url:
        with urllib.request.urlopen(url + "feed.atom") as resp:
            tag = resp.headers["ETag"]
            body = resp.read()
        assert b"Feed 1 post 0" in body
        req = urllib.request.Request(url + "feed.atom", headers={"If-None-Match": tag})
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(req)
        assert err.value.code == 304


def test_a_failing_source_backs_off_and_its_crawl_job_succeeds(
    tmp_path: Path, hosts: list[Host]
) -> None:
    from aggregator.store.postgres import PostgresStore
    from aggregator.worker import Worker, host_of

    missing = hosts[1].server.url("/gone.xml")  # 404
    config = pg_config(tmp_path, hosts, f'[[sources]]\nname = "broken"\nurl = "{missing}"\n')
    assert config.store_url is not None
    with PostgresStore(config.store_url) as store:
        worker = Worker(config, store)
        done = worker.crawl(host_of(config.source("broken"), None), datetime.now(UTC))
        assert (done.fetched, done.staged) == (FEEDS_PER_HOST + 1, FEEDS_PER_HOST)
        state = store.get_state("broken")
        assert state is not None and state.error_streak == 1 and state.last_status == "error"
        assert state.next_due is not None and state.next_due > datetime.now(UTC)
        # Not due again before its backoff: the next tick plans no crawl for it.
        assert host_of(config.source("broken"), state) not in worker.due_hosts(datetime.now(UTC))
