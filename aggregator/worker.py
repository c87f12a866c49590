"""Crawl workers: the refresh use case spread over processes and machines sharing one
PostgreSQL database, with procrastinate (a job queue kept in that same database) running it.

    tick (every minute) -> crawl(host) per host with due sources -> ingest -> emit

- `tick`: a periodic task, deferred once a minute however many workers run. It puts back the
  jobs of workers that stopped sending heartbeats (killed, or their machine lost), then defers
  one crawl job for each host that has a due source and no crawl job waiting or running. A
  crawl job holds `lock="host:<name>"` (at most one runs per host in the whole cluster) and
  `queueing_lock="host:<name>"` (at most one waits per host, whoever defers it): the
  outstanding crawl jobs stay within one per host, however long a host takes.
- `crawl(host, tick)`: fetches the host's due sources with the refresh's Collector (the same
  conditional GET, address guard, size and time limits, parse pool, and `[fetch] per_host`
  requests at once: with one crawl per host in the cluster, that is also the host's limit
  across the cluster). In one transaction per group of sources it stages their excerpts
  (table `staged`, records as JSON) and saves every source's new state: due time, validators,
  and for a failure its backoff. A source's failure is its own state, never a failed job:
  jobs are not retried by the queue. It then defers `ingest`.
- `ingest`: `lock="ingest"`, so one ingest runs in the cluster at a time. It takes the staged
  batches in order (by tick, then the sources' order in the config) and places each through
  the refresh's placement path (`refresh.place_excerpts`: the same dedup decider, the same
  store writes), deleting the staged row in the same transaction: a batch is placed once,
  even when the worker dies half-way (the transaction rolls back and the batch waits). A
  tick's batches wait until every crawl of that tick is done, so they are placed in the order
  one `aggregator refresh` would place them, and the entries get the same ids.
- `emit`: debounced by `queueing_lock="emit"` and a short delay; renders the outputs, writes
  them to the output folder and stores them in the `outputs` table, where `aggregator serve`
  on any machine reads them.

A worker stops after its running jobs on SIGTERM or SIGINT (procrastinate's own handlers; a
second signal aborts them). Jobs of a worker killed outright stay "doing" until the next tick
finds its heartbeat stale and puts them back to be run by another worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from aggregator import records, sourcestate
from aggregator.collect import Collector
from aggregator.config import Config
from aggregator.errors import ConfigError, ServeError, StorageError
from aggregator.fetch import new_session
from aggregator.models import Source, SourceState
from aggregator.refresh import (
    GROUP_EXCERPTS,
    fewer_collections,
    place_excerpts,
    placed_result,
    read_state,
    settle,
    utcnow,
    write_outputs,
)

if TYPE_CHECKING:
    import procrastinate
    from psycopg import Connection

    from aggregator.store.postgres import PostgresStore

__all__ = [
    "STALLED_AFTER",
    "TASKS",
    "OutputReader",
    "Worker",
    "host_of",
    "migrate_work",
    "run_worker",
]

log = logging.getLogger("aggregator.worker")

TICK_CRON = "* * * * *"  # the tick's period
STALLED_AFTER = 30.0  # seconds without a heartbeat before a worker's jobs are run elsewhere
EMIT_DELAY = 1  # seconds: ingests finishing within this emit once
HELD_BACK_RETRY = 1  # seconds: ingest looks again when a tick's crawls were still running
# Seconds between a worker's looks for jobs whose time has come (emit and a held-back ingest
# are deferred a little into the future; new jobs wake the workers at once by NOTIFY).
POLL_INTERVAL = 0.5
INGEST_ROWS = 64  # staged batches read at once
SERVED = (".atom", ".json", ".html")  # the output folder's files that emit stores
TASKS = {
    "tick": "aggregator.tick",
    "crawl": "aggregator.crawl",
    "ingest": "aggregator.ingest",
    "emit": "aggregator.emit",
}

# The worker's own tables, numbered like the store's migrations: version i -> i + 1.
WORK_MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE staged (
        id bigserial PRIMARY KEY,
        tick text NOT NULL,
        position integer NOT NULL,
        source text NOT NULL,
        backfill boolean NOT NULL,
        excerpts bytea NOT NULL
    );
    CREATE INDEX staged_order ON staged (tick, position, id);
    CREATE TABLE outputs (
        name text PRIMARY KEY,
        body bytea NOT NULL,
        tag text NOT NULL,
        updated timestamptz NOT NULL
    );
    """,
)
WORK_LOCK = 0x6167_7772_6B00  # advisory lock held while the worker tables are migrated


def migrate_work(conn: Connection[Any]) -> list[str]:
    """Create or upgrade procrastinate's schema and the worker tables; idempotent. Returns what
    was done, one line each (nothing when all was in place)."""
    from procrastinate.schema import SchemaManager

    done: list[str] = []
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (WORK_LOCK,))
        row = conn.execute("SELECT to_regclass('procrastinate_jobs')").fetchone()
        if row is None or row[0] is None:
            conn.execute(SchemaManager.get_schema().encode())
            done.append("job queue schema created (procrastinate)")
        conn.execute("CREATE TABLE IF NOT EXISTS work_schema_version (version integer NOT NULL)")
        got = conn.execute("SELECT version FROM work_schema_version").fetchone()
        if got is None:
            conn.execute("INSERT INTO work_schema_version (version) VALUES (0)")
        before = got[0] if got else 0
        for version in range(before, len(WORK_MIGRATIONS)):
            conn.execute(WORK_MIGRATIONS[version].encode())
            conn.execute("UPDATE work_schema_version SET version = %s", (version + 1,))
        if before < len(WORK_MIGRATIONS):
            done.append(f"worker tables at version {len(WORK_MIGRATIONS)} (from {before})")
    return done


def host_of(source: Source, state: SourceState | None) -> str:
    """The host a source's next fetch goes to: the key of its crawl job and lock."""
    url = sourcestate.current(source, state).effective_url or source.url
    if not source.is_remote:
        return "file:"
    return _hostname(url)


@functools.lru_cache(maxsize=65536)
def _hostname(url: str) -> str:
    """A URL's host, lowercased (cached: every crawl job asks it of every source's URL)."""
    return (urlsplit(url).hostname or "").lower()


def _tick_text(when: datetime) -> str:
    """A tick as sortable text: UTC, always with microseconds."""
    return when.astimezone(UTC).isoformat(timespec="microseconds")


@dataclass(frozen=True, slots=True)
class Staged:
    """What a crawl job did, for its log line and the test's assertions."""

    fetched: int  # sources fetched
    staged: int  # of them, with excerpts staged for ingest


class Worker:
    """What one worker process shares between its jobs: the config, the store, and the work
    of each task as a plain method (the procrastinate tasks call these in a thread)."""

    def __init__(self, config: Config, store: PostgresStore) -> None:
        self.config = config
        self.store = store
        self.positions = {s.name: i for i, s in enumerate(config.sources)}

    # --- tick -----------------------------------------------------------------------------

    def due_hosts(self, now: datetime) -> list[str]:
        """The hosts with a due source and no crawl job waiting or running (that job fetches
        what is due when it runs), in the order of their first due source."""
        states = {st.name: st for st in self.store.states()}
        due = sourcestate.due_sources(self.config.sources, states, now)
        with self.store.connection() as conn:
            busy = {
                row[0]
                for row in conn.execute(
                    "SELECT DISTINCT args->>'host' FROM procrastinate_jobs "
                    "WHERE task_name = %s AND status IN ('todo', 'doing')",
                    (TASKS["crawl"],),
                )
            }
        hosts = dict.fromkeys(host_of(s, states.get(s.name)) for s in due)
        return [h for h in hosts if h not in busy]

    def staged_waiting(self) -> bool:
        with self.store.connection() as conn:
            row = conn.execute("SELECT EXISTS (SELECT 1 FROM staged)").fetchone()
        return bool(row and row[0])

    # --- crawl ----------------------------------------------------------------------------

    def crawl(self, host: str, tick: datetime) -> Staged:
        """Fetch `host`'s due sources; stage what they gave and save their states."""
        mine = self._sources_of(host)
        states = {st.name: st for st in self.store.states([s.name for s in mine])}
        chosen = [
            s
            for s in sourcestate.due_sources(mine, states, utcnow())
            if host_of(s, states.get(s.name)) == host  # unless it moved since
        ]
        if not chosen:
            return Staged(0, 0)
        settings = self.config.fetch
        session = new_session(pool_size=max(settings.per_host, 2))
        fetched = staged = 0
        try:
            collector = Collector(settings, self.config.excerpt, session, now=tick)
            with fewer_collections():
                for ready in collector.collect_many(chosen, states, GROUP_EXCERPTS):
                    new_states: list[SourceState] = []
                    rows: list[tuple[Any, ...]] = []
                    for got in ready:
                        if got.document is None:
                            result, state = settle(got, utcnow())
                            log.info(
                                "%s: %s (%.3f s)", got.source.name, result.outcome, got.duration
                            )
                        else:
                            state = read_state(got, utcnow())
                            log.info(
                                "%s: read, %d staged (%.3f s)",
                                got.source.name,
                                len(got.excerpts),
                                got.duration,
                            )
                            rows.append(
                                (
                                    _tick_text(tick),
                                    self.positions[got.source.name],
                                    got.source.name,
                                    got.state.last_success is None,
                                    _encode_batch(got.excerpts),
                                )
                            )
                        new_states.append(state)
                    with self.store.transaction(), self.store.connection() as conn:
                        if rows:
                            with conn.cursor() as cur:
                                cur.executemany(
                                    "INSERT INTO staged (tick, position, source, backfill, "
                                    "excerpts) VALUES (%s, %s, %s, %s, %s)",
                                    rows,
                                )
                        self.store.save_states(new_states)
                    fetched += len(ready)
                    staged += len(rows)
        finally:
            session.close()
        return Staged(fetched, staged)

    def _sources_of(self, host: str) -> list[Source]:
        """The configured sources whose next fetch goes to `host`, judged by their URLs alone
        (one light read of every source's URLs), so that a crawl job reads the full states of
        its own host's sources only."""
        with self.store.connection() as conn:
            urls = {
                name: SourceState(name=name, url=url, effective_url=effective_url)
                for name, url, effective_url in conn.execute(
                    "SELECT name, url, effective_url FROM sources"
                )
            }
        return [s for s in self.config.sources if host_of(s, urls.get(s.name)) == host]

    # --- ingest ---------------------------------------------------------------------------

    def ingest(self) -> tuple[int, bool]:
        """Place the staged batches whose tick is complete, in order. Returns how many were
        placed, and whether batches wait for crawls of their tick still running."""
        placed = 0
        while True:
            with self.store.connection() as conn:
                rows = conn.execute(
                    """
                    SELECT id, source, backfill FROM staged
                    WHERE tick < coalesce(
                        (SELECT min(args->>'tick') FROM procrastinate_jobs
                         WHERE task_name = %s AND status IN ('todo', 'doing')),
                        'infinity')
                    ORDER BY tick, position, id LIMIT %s
                    """,
                    (TASKS["crawl"], INGEST_ROWS),
                ).fetchall()
            if not rows:
                break
            for row_id, name, backfill in rows:
                placed += self._place_staged(row_id, name, backfill)
        return placed, self.staged_waiting()

    def _place_staged(self, row_id: int, name: str, backfill: bool) -> int:
        """Place one staged batch and delete it, in one transaction; 0 when it was gone."""
        try:
            source: Source | None = self.config.source(name)
        except ConfigError:  # removed from the config since it was crawled
            source = None
        with self.store.transaction(), self.store.connection() as conn:
            got = conn.execute(
                "DELETE FROM staged WHERE id = %s RETURNING excerpts", (row_id,)
            ).fetchone()
            if got is None or source is None:
                return 0
            excerpts = _decode_batch(bytes(got[0]))
            state = self.store.get_state(name) or sourcestate.current(source, None)
            decision, state = place_excerpts(
                self.config, self.store, source, excerpts, state, backfill=backfill
            )
        result = placed_result(name, decision, state, status=None, duration=0.0)
        log.info(
            "%s: %s: %d new, %d joined, %d updated, %d unchanged",
            name,
            result.outcome,
            result.new,
            result.joined,
            result.updated,
            result.unchanged,
        )
        return 1

    # --- emit -----------------------------------------------------------------------------

    def emit(self) -> int:
        """Write the outputs to this machine's output folder, then store in the database every
        served file that changed (the feeds, the page, the snapshot, the archive pages).
        Returns how many stored files changed."""
        import hashlib

        write_outputs(self.config, self.store)
        folder = self.config.output_dir
        changed = 0
        with self.store.transaction(), self.store.connection() as conn:
            for path in sorted(folder.rglob("*")):
                if path.suffix not in SERVED or path.name.startswith(".") or not path.is_file():
                    continue
                body = path.read_bytes()
                tag = hashlib.blake2b(body, digest_size=16).hexdigest()
                cur = conn.execute(
                    """
                    INSERT INTO outputs (name, body, tag, updated) VALUES (%s, %s, %s, now())
                    ON CONFLICT (name) DO UPDATE
                    SET body = excluded.body, tag = excluded.tag, updated = excluded.updated
                    WHERE outputs.tag <> excluded.tag
                    """,
                    (path.relative_to(folder).as_posix(), body, tag),
                )
                changed += cur.rowcount
        return changed


def _encode_batch(excerpts: Iterable[Any]) -> bytes:
    return json.dumps([records.encode_excerpt(e) for e in excerpts]).encode("utf-8")


def _decode_batch(data: bytes) -> list[Any]:
    return [records.decode_excerpt(doc) for doc in json.loads(data)]


class OutputReader:
    """Reads the outputs `emit` stored, for `aggregator serve` (serve.StoredOutputs): a small
    connection pool, one short query per request."""

    def __init__(self, url: str) -> None:
        from psycopg_pool import ConnectionPool

        self._pool: ConnectionPool[Any] = ConnectionPool(
            url, min_size=1, max_size=4, kwargs={"autocommit": True}, open=False, name="serve"
        )
        self._pool.open(wait=False)

    def __call__(self, name: str, known_tag: str | None) -> tuple[str, float, bytes | None] | None:
        """The output's tag, when it changed (POSIX time) and its body, left out (None) when
        its tag is `known_tag`; None when it is not stored yet."""
        import psycopg
        from psycopg_pool import PoolTimeout

        try:
            with self._pool.connection(timeout=5) as conn:
                row = conn.execute(
                    "SELECT tag, updated, CASE WHEN tag = %s THEN NULL ELSE body END "
                    "FROM outputs WHERE name = %s",
                    (known_tag or "", name),
                ).fetchone()
        except psycopg.errors.UndefinedTable:
            return None  # no worker tables (never migrated for workers): nothing stored
        except (psycopg.Error, PoolTimeout) as exc:
            raise ServeError(f"cannot read {name} from the database: {exc}") from None
        if row is None:
            return None
        tag, updated, body = row
        return str(tag), updated.timestamp(), None if body is None else bytes(body)

    def close(self) -> None:
        self._pool.close()


# --- the procrastinate app -------------------------------------------------------------------


def build_app(config: Config, worker: Worker, *, stalled_after: float) -> procrastinate.App:
    """The procrastinate app with the four tasks bound to `worker`."""
    import procrastinate
    from procrastinate import exceptions

    assert config.store_url is not None
    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=config.store_url))

    async def defer(name: str, **options: Any) -> None:
        """Defer a task's job, unless one already waits under its queueing lock."""
        kwargs = options.pop("kwargs", {})
        with contextlib.suppress(exceptions.AlreadyEnqueued):
            await app.tasks[TASKS[name]].configure(**options).defer_async(**kwargs)

    @app.periodic(cron=TICK_CRON, periodic_id="tick")
    @app.task(name=TASKS["tick"], lock="tick", queueing_lock="tick", pass_context=False)
    async def tick(timestamp: int) -> None:
        await recover_stalled(app, stalled_after)
        now = datetime.fromtimestamp(timestamp, UTC)
        hosts = await asyncio.to_thread(worker.due_hosts, utcnow())
        crawl = app.tasks[TASKS["crawl"]]
        batch = [
            crawl.configure(lock=f"host:{host}", queueing_lock=f"host:{host}").make_new_job(
                host=host, tick=_tick_text(now)
            )
            for host in hosts
        ]
        # All of the tick's crawl jobs in one statement: a tick interrupted half-way defers none
        # (it runs again whole), so every crawl of a tick stages under the same tick.
        if batch:
            with contextlib.suppress(exceptions.AlreadyEnqueued):
                await app.job_manager.batch_defer_jobs_async(batch)
        if await asyncio.to_thread(worker.staged_waiting):
            await defer("ingest", lock="ingest", queueing_lock="ingest")

    @app.task(name=TASKS["crawl"])
    async def crawl(host: str, tick: str) -> None:
        done = await asyncio.to_thread(worker.crawl, host, datetime.fromisoformat(tick))
        log.info("crawl %s: %d fetched, %d staged", host or "(files)", done.fetched, done.staged)
        if done.staged:
            await defer("ingest", lock="ingest", queueing_lock="ingest")
        elif done.fetched:  # states changed (shown in the outputs), nothing to place
            await defer(
                "emit", lock="emit", queueing_lock="emit", schedule_in={"seconds": EMIT_DELAY}
            )

    @app.task(name=TASKS["ingest"])
    async def ingest() -> None:
        placed, waiting = await asyncio.to_thread(worker.ingest)
        if placed:
            await defer(
                "emit", lock="emit", queueing_lock="emit", schedule_in={"seconds": EMIT_DELAY}
            )
        if waiting:
            await defer(
                "ingest",
                lock="ingest",
                queueing_lock="ingest",
                schedule_in={"seconds": HELD_BACK_RETRY},
            )

    @app.task(name=TASKS["emit"])
    async def emit() -> None:
        await asyncio.to_thread(worker.emit)

    return app


async def recover_stalled(app: procrastinate.App, stalled_after: float) -> list[int]:
    """Put the jobs of workers silent for `stalled_after` seconds back in the queue. A job
    whose host (or ingest, or emit) already has a job waiting is closed as failed instead:
    the waiting one does the same work. Returns the ids of the jobs put back."""
    from procrastinate import exceptions, jobs

    manager = app.job_manager
    back: list[int] = []
    for job in await manager.get_stalled_jobs(seconds_since_heartbeat=stalled_after):
        assert job.id is not None
        try:
            await manager.retry_job(job)
        except exceptions.ConnectorException as exc:
            await manager.finish_job_by_id_async(job.id, jobs.Status.FAILED, delete_job=False)
            log.warning(
                "job %d (%s) of a stalled worker: closed, another waits (%s)",
                job.id,
                job.task_name,
                exc.__cause__ or exc,
            )
            continue
        log.warning("job %d (%s) of a stalled worker: queued again", job.id, job.task_name)
        back.append(job.id)
    return back


def run_worker(config: Config, *, concurrency: int, stalled_after: float = STALLED_AFTER) -> int:
    """Run a worker until SIGTERM or SIGINT (it then finishes its running jobs). Returns 0."""
    import procrastinate  # noqa: F401 (fail here, clearly, when it is not installed)

    from aggregator.store.postgres import PostgresStore

    if config.store_url is None:
        raise StorageError(
            "workers need a PostgreSQL store: set [store] url and run 'aggregator migrate'"
        )
    with PostgresStore(config.store_url, pool_size=concurrency + 2) as store:
        with store.connection() as conn:
            row = conn.execute(
                "SELECT to_regclass('staged'), to_regclass('procrastinate_jobs')"
            ).fetchone()
        if row is None or row[0] is None or row[1] is None:
            raise StorageError(f"{store.where}: no job queue yet; run 'aggregator migrate'")
        worker = Worker(config, store)
        app = build_app(config, worker, stalled_after=stalled_after)

        async def main() -> None:
            async with app.open_async():
                await app.run_worker_async(
                    concurrency=concurrency,
                    delete_jobs="successful",
                    fetch_job_polling_interval=POLL_INTERVAL,
                    stalled_worker_timeout=stalled_after,
                    update_heartbeat_interval=max(stalled_after / 3, 0.5),
                )

        asyncio.run(main())
    return 0


def defer_tick(config: Config, when: datetime | None = None) -> None:
    """Defer a tick now, as the periodic schedule would at the next minute."""
    import procrastinate
    from procrastinate import exceptions

    assert config.store_url is not None
    app = procrastinate.App(connector=procrastinate.SyncPsycopgConnector(conninfo=config.store_url))
    with app.open(), contextlib.suppress(exceptions.AlreadyEnqueued):
        app.configure_task(TASKS["tick"], queueing_lock="tick").defer(
            timestamp=int((when or utcnow()).timestamp())
        )
