"""The refresh use case: the one path from sources to outputs.

    sources (due?) -> fetch -> parse -> normalize -> dedup -> store -> emit

The CLI, the scheduler and the server all call `refresh()`; none of them holds logic of its own.
Fetching and parsing run in worker threads (network-bound, one source never blocks another);
dedup and store writes happen one source at a time on the calling thread, each source in its
own transaction, so a failure leaves every source either fully updated or untouched.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from urllib.parse import urlsplit

import requests

from aggregator import dedup, emit, sourcestate
from aggregator.config import Config
from aggregator.errors import ConfigError, FetchError, ParseError, SourceError
from aggregator.fetch import FetchLimits, fetch, new_session
from aggregator.models import (
    Excerpt,
    FetchResult,
    Outcome,
    ParsedDocument,
    RawItem,
    RefreshReport,
    Source,
    SourceResult,
    SourceState,
)
from aggregator.netguard import NetGuard
from aggregator.normalize import normalize
from aggregator.parse.feed import needs_isolation, parse_feed
from aggregator.parse.page import find_next_pages, parse_page
from aggregator.parse.sniff import sniff
from aggregator.parse.text import parse_text
from aggregator.parsepool import ParsePool, start_pool
from aggregator.robots import MAX_ROBOTS_BYTES, RobotsCache
from aggregator.store import Store, open_store

log = logging.getLogger("aggregator.refresh")

Clock = Callable[[], datetime]
# Dedup reads then writes the store; sources refreshed at once in one process (scheduled jobs)
# take turns for that step so two copies of one post cannot both be minted as new entries.
_STORE_LOCK = threading.Lock()
IN_FLIGHT_MIN = 64  # sources fetched and parsed ahead of the store, at least
GROUP_EXCERPTS = 5_000  # stored in one transaction at most (sources already fetched)


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class _Fetched:
    """What a worker brings back for one source: parsed items, or why there are none."""

    source: Source
    state: SourceState  # the state before this refresh
    result: FetchResult | None = None  # the first response
    document: ParsedDocument | None = None  # None when not modified
    body_hash: str | None = None
    error: SourceError | None = None
    duration: float = 0.0
    excerpts: tuple[Excerpt, ...] = ()  # the document's items, normalized


def refresh(
    config: Config,
    *,
    names: Sequence[str] = (),
    force: bool = False,
    session: requests.Session | None = None,
    clock: Clock = utcnow,
    on_result: Callable[[SourceResult], None] | None = None,
    emit: bool = True,
    guard: NetGuard | None = None,
) -> RefreshReport:
    """Refresh the due sources (or `names`, or all with `force`), then write the outputs.

    With `emit=False` the outputs are left alone (the scheduler writes them once after a burst
    of refreshes with `write_outputs`); the report then says nothing was written. `guard`
    decides which addresses sources may reach and how names resolve; by default the system
    resolver and `[fetch] allow_private`.
    """
    for name in names:
        config.source(name)  # raises ConfigError for an unknown name
    started = clock()
    own_session = session is None
    session = session or new_session(pool_size=max(config.fetch.per_host, 2))
    guard = guard or NetGuard(allow_private=config.fetch.allow_private)
    try:
        with open_store(config) as store:
            states = {st.name: st for st in store.states()}
            if names:
                chosen = [s for s in config.sources if s.name in names]
            elif force:
                chosen = list(config.sources)
            else:
                chosen = sourcestate.due_sources(config.sources, states, started)
            results = []
            # One "now" for every entry first seen in this run, whichever thread or process
            # normalizes it: copies seen together tie, and store order (config order) decides.
            for ready in _fetch_all(config, chosen, states, session, lambda: started, guard):
                # The sources that finished together are stored in one transaction: one commit
                # (one write of the index pages they touched) instead of one per source.
                # A source whose storing fails (a write error, or any unexpected one) is rolled
                # back alone; those before it still commit, then the error stops the refresh.
                stored: list[SourceResult] = []
                failure: Exception | None = None
                with _STORE_LOCK, store.transaction():
                    for fetched in ready:
                        try:
                            stored.append(_store_one(config, store, fetched, clock))
                        except Exception as exc:
                            failure = exc
                            break
                results.extend(stored)
                if on_result is not None:
                    for result in stored:
                        on_result(result)
                if failure is not None:
                    raise failure
            feed_written, snapshot_written = (
                write_outputs(config, store) if emit else (False, False)
            )
            return RefreshReport(
                started=started,
                finished=clock(),
                results=tuple(results),
                feed_written=feed_written,
                snapshot_written=snapshot_written,
            )
    finally:
        if own_session:
            session.close()


def refresh_if_due(
    config: Config,
    name: str,
    *,
    session: requests.Session | None = None,
    clock: Clock = utcnow,
    emit: bool = True,
) -> RefreshReport | None:
    """Refresh one source if it is still due (a cron run may just have done it), else None."""
    source = config.source(name)
    with open_store(config) as store:
        state = store.get_state(name)
    if not sourcestate.is_due(source, state, clock()):
        return None
    return refresh(config, names=(name,), session=session, clock=clock, emit=emit)


@dataclass(frozen=True, slots=True)
class Preview:
    """What one source would give right now, fetched and read but not stored."""

    source: Source
    excerpts: tuple[Excerpt, ...]  # in document order
    kind: str  # what the body turned out to be
    status: int  # HTTP status of the first response (200 for files)
    final_url: str  # after redirects
    warnings: tuple[str, ...] = ()


def preview(
    config: Config,
    name: str,
    *,
    session: requests.Session | None = None,
    clock: Clock = utcnow,
) -> Preview:
    """Fetch, parse and normalize one source unconditionally, storing nothing.

    For tuning page selectors; raises the source's SourceError when it cannot be read.
    """
    source = config.source(name)
    own_session = session is None
    session = session or new_session()
    try:
        limits = FetchLimits(timeout=config.fetch.timeout, max_bytes=config.fetch.max_bytes)
        state = SourceState(name=source.name, url=source.url)
        fetched = _fetch_and_parse(
            source,
            state,
            session,
            limits,
            _HostLimiter(config.fetch.per_host),
            config,
            NetGuard(allow_private=config.fetch.allow_private),
            RobotsCache(),
            clock=clock,
        )
    finally:
        if own_session:
            session.close()
    if fetched.error is not None:
        raise fetched.error
    assert fetched.result is not None and fetched.document is not None
    document = fetched.document
    return Preview(
        source=source,
        excerpts=fetched.excerpts,
        kind=document.kind,
        status=fetched.result.status,
        final_url=fetched.result.final_url,
        warnings=document.warnings,
    )


def due_at(config: Config, name: str) -> datetime | None:
    """When a source is next due, from the store; None when it is due now (or never fetched)."""
    source = config.source(name)
    with open_store(config) as store:
        state = store.get_state(name)
    return sourcestate.next_due(source, state)


def emit_outputs(config: Config) -> tuple[bool, bool]:
    """Write the outputs from what is stored, without fetching anything."""
    with open_store(config) as store:
        return write_outputs(config, store)


def write_outputs(config: Config, store: Store) -> tuple[bool, bool]:
    """Emit feed.atom, feed.json, index.html and snapshot.json from what is stored.

    Returns whether feed.atom and snapshot.json changed (feed.json and index.html follow them).

    The snapshot's generated_at is the latest fetch it reflects, not the wall clock, so a run
    that fetched nothing leaves both files byte-identical.
    """
    meta = emit.FeedMeta(
        title=config.feed.title,
        link=config.feed.link,
        id=config.feed.id,
        subtitle=config.feed.subtitle,
        author=config.feed.author,
        self_url=config.feed.self_url,
    )
    entries = store.latest(config.feed.max_entries)
    by_name = {s.name: s for s in config.sources}
    atom = emit.render_atom(meta, entries, by_name)
    states = {st.name: st for st in store.states()}
    fetched = [st.last_fetch for st in states.values() if st.last_fetch is not None]
    generated_at = max(fetched, default=emit.EPOCH)
    counts = store.entry_counts()
    snapshot = emit.render_snapshot(meta, entries, config.sources, states, counts, generated_at)
    page = emit.render_index(meta, entries, config.sources, states, counts, generated_at)
    json_feed = emit.render_json_feed(meta, entries)
    emit.write_if_changed(config.output_dir, emit.JSON_FEED_FILE, json_feed)
    feed_written = emit.write_if_changed(config.output_dir, emit.FEED_FILE, atom)
    emit.write_if_changed(config.output_dir, emit.INDEX_FILE, page)
    # Last: /healthz reads the snapshot, so it reports a refresh once every file is in place.
    snapshot_written = emit.write_if_changed(config.output_dir, emit.SNAPSHOT_FILE, snapshot)
    return feed_written, snapshot_written


# --- fetch and parse (worker threads) ----------------------------------------------------------


class _HostLimiter:
    """At most `limit` requests in flight to one host."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._lock = threading.Lock()
        self._sems: dict[str, threading.Semaphore] = {}

    @contextmanager
    def hold(self, url: str) -> Iterator[None]:
        host = (urlsplit(url).hostname or "").lower()
        with self._lock:
            sem = self._sems.setdefault(host, threading.Semaphore(self._limit))
        with sem:
            yield


def _fetch_all(
    config: Config,
    sources: Sequence[Source],
    states: dict[str, SourceState],
    session: requests.Session,
    clock: Clock,
    guard: NetGuard | None = None,
) -> Iterator[list[_Fetched]]:
    """Fetch and parse every source in a thread pool; yield results in config order, those
    that are ready together in one list."""
    if not sources:
        return
    limiter = _HostLimiter(config.fetch.per_host)
    robots = RobotsCache()
    limits = FetchLimits(timeout=config.fetch.timeout, max_bytes=config.fetch.max_bytes)
    workers = min(config.fetch.max_workers, len(sources))
    parse_pool = start_pool(len(sources))  # before the fetch threads: it forks
    try:
        yield from _fetch_in_threads(
            config,
            sources,
            states,
            session,
            clock,
            limiter,
            limits,
            workers,
            parse_pool,
            guard,
            robots,
        )
    finally:
        if parse_pool is not None:
            parse_pool.close()


def _fetch_in_threads(
    config: Config,
    sources: Sequence[Source],
    states: dict[str, SourceState],
    session: requests.Session,
    clock: Clock,
    limiter: _HostLimiter,
    limits: FetchLimits,
    workers: int,
    parse_pool: ParsePool | None,
    guard: NetGuard | None,
    robots: RobotsCache,
) -> Iterator[list[_Fetched]]:
    # At most `window` sources are fetched or parsed ahead of the one being stored, so that
    # memory stays bounded however many sources there are.
    window = max(IN_FLIGHT_MIN, 4 * workers)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fetch") as pool:
        futures: deque[Future[_Fetched]] = deque()
        remaining = iter(sources)

        def submit_next() -> None:
            s = next(remaining, None)
            if s is None:
                return
            state = sourcestate.current(s, states.get(s.name))
            futures.append(
                pool.submit(
                    _fetch_and_parse,
                    s,
                    state,
                    session,
                    limits,
                    limiter,
                    config,
                    guard,
                    robots,
                    parse_pool,
                    clock,
                )
            )

        for _ in range(window):
            submit_next()
        while futures:
            ready = [futures.popleft().result()]
            # With it, whatever else has finished in order, up to a bounded amount of work.
            size = len(ready[0].excerpts)
            while futures and futures[0].done() and size < GROUP_EXCERPTS:
                ready.append(futures.popleft().result())
                size += len(ready[-1].excerpts)
            yield ready
            # Only now, with the group stored, do sources take its places in the window:
            # fetched or parsed documents in memory stay within `window`.
            for _ in ready:
                submit_next()


def _fetch_and_parse(
    source: Source,
    state: SourceState,
    session: requests.Session,
    limits: FetchLimits,
    limiter: _HostLimiter,
    config: Config,
    guard: NetGuard | None = None,
    robots: RobotsCache | None = None,
    parse_pool: ParsePool | None = None,
    clock: Clock = utcnow,
) -> _Fetched:
    t0 = time.monotonic()
    url = state.effective_url or source.url

    robots_limits = replace(limits, max_bytes=min(limits.max_bytes, MAX_ROBOTS_BYTES))

    def request(u: str, conditional: bool, hop_limits: FetchLimits) -> FetchResult:
        with limiter.hold(u):
            return fetch(
                source.name,
                u,
                session=session,
                state=state,
                limits=hop_limits,
                conditional=conditional,
                guard=guard,
                origin=source.url,
            )

    def get_robots(u: str) -> FetchResult:
        return request(u, False, robots_limits)

    def get(u: str, conditional: bool) -> FetchResult:
        if robots is not None and source.honours_robots and not robots.allowed(u, get_robots):
            raise FetchError(source.name, f"robots.txt disallows {u} (set robots = false to fetch)")
        return request(u, conditional, limits)

    try:
        first = get(url, True)
        if first.not_modified:
            return _Fetched(source, state, first, duration=time.monotonic() - t0)
        body_hash = hashlib.blake2b(first.body, digest_size=16).hexdigest()
        if sourcestate.body_unchanged(state, body_hash):
            return _Fetched(
                source, state, first, body_hash=body_hash, duration=time.monotonic() - t0
            )
        kind = source.kind if source.kind != "auto" else sniff(first.body, first.content_type)
        if (
            parse_pool is not None
            and kind == "feed"
            and first.body.strip()
            and not needs_isolation(first.body)
        ):
            document, excerpts = parse_pool.feed(
                source,
                first.body,
                url=first.final_url,
                headers=dict(first.headers),
                now=clock(),
                options=config.excerpt,
            )
            return _Fetched(
                source,
                state,
                replace(first, body=b""),  # parsed: the bytes need not wait for the store
                document,
                body_hash,
                duration=time.monotonic() - t0,
                excerpts=excerpts,
            )
        document = _parse(source, first, get, config.fetch.parse_timeout)
        # Normalized here, in the fetch thread: per-entry work stays off the store thread, and
        # a failure in it is this source's error, not the run's.
        excerpts = tuple(_normalize_all(config, source, document, clock()))
        return _Fetched(
            source,
            state,
            first,
            document,
            body_hash,
            duration=time.monotonic() - t0,
            excerpts=excerpts,
        )
    except SourceError as exc:
        return _Fetched(source, state, error=exc, duration=time.monotonic() - t0)
    except Exception as exc:  # a bug; keep the traceback in the log, spare the other sources
        log.exception("%s: unexpected error", source.name)
        err = SourceError(source.name, f"internal error: {type(exc).__name__}: {exc}")
        return _Fetched(source, state, error=err, duration=time.monotonic() - t0)


def _parse(
    source: Source,
    first: FetchResult,
    get: Callable[[str, bool], FetchResult],
    time_limit: float | None = None,
) -> ParsedDocument:
    kind = source.kind
    if kind == "auto":
        kind = sniff(first.body, first.content_type)
    if not first.body.strip():
        raise ParseError(source.name, "empty response body")
    base = first.final_url
    if kind == "feed":
        return parse_feed(
            first.body,
            url=base,
            headers=first.headers,
            source=source.name,
            max_items=source.max_entries,
            time_limit=time_limit,
        )
    if kind == "text":
        return parse_text(
            first.body,
            url=base,
            headers=first.headers,
            source=source.name,
            header_lines=source.header_lines,
            max_items=source.max_entries,
        )
    document = parse_page(
        first.body,
        url=base,
        headers=first.headers,
        source=source.name,
        select=source.select,
        max_items=source.max_entries,
    )
    if document.feed_url and not document.items:
        # The page advertises a feed and has no selectors: read the feed instead.
        feed = get(document.feed_url, False)
        return parse_feed(
            feed.body,
            url=feed.final_url,
            headers=feed.headers,
            source=source.name,
            max_items=source.max_entries,
            time_limit=time_limit,
        )
    if source.select is None or not source.select.next:
        return document
    return _follow_pages(source, first, document, get)


def _follow_pages(
    source: Source,
    first: FetchResult,
    document: ParsedDocument,
    get: Callable[[str, bool], FetchResult],
) -> ParsedDocument:
    assert source.select is not None
    items: list[RawItem] = list(document.items)
    warnings = list(document.warnings)
    visited = {first.final_url, first.url}
    pending = list(
        find_next_pages(
            first.body,
            url=first.final_url,
            headers=first.headers,
            select=source.select,
        )
    )
    pages = 1
    while pending and pages < source.select.max_pages and len(items) < source.max_entries:
        url = pending.pop(0)
        if url in visited:
            continue
        visited.add(url)
        try:
            res = get(url, False)
            doc = parse_page(
                res.body,
                url=res.final_url,
                headers=res.headers,
                source=source.name,
                select=source.select,
                max_items=source.max_entries - len(items),
                position_start=len(items),
            )
        except SourceError as exc:
            # A later page failing keeps what the first pages gave.
            warnings.append(f"page {url}: {exc.reason}")
            continue
        pages += 1
        items.extend(doc.items)
        pending.extend(
            u
            for u in find_next_pages(
                res.body,
                url=res.final_url,
                headers=res.headers,
                select=source.select,
            )
            if u not in visited
        )
    return replace(document, items=tuple(items), warnings=tuple(warnings))


# --- store (calling thread) --------------------------------------------------------------------


def _store_one(config: Config, store: Store, fetched: _Fetched, clock: Clock) -> SourceResult:
    source, state = fetched.source, fetched.state
    now = clock()
    if fetched.error is not None:
        new_state = sourcestate.after_failure(source, state, fetched.error, now)
        store.save_state(new_state)
        log.warning("%s", fetched.error)
        status = fetched.error.status if isinstance(fetched.error, FetchError) else None
        return SourceResult(
            source=source.name,
            outcome="error",
            error=fetched.error.reason,
            status=status,
            duration=fetched.duration,
        )
    assert fetched.result is not None
    ok_state = sourcestate.after_success(
        source,
        state,
        fetched.result,
        document=fetched.document,
        body_hash=fetched.body_hash,
        now=now,
    )
    if fetched.document is None:
        store.save_state(ok_state)
        return SourceResult(
            source=source.name,
            outcome="unchanged",
            status=fetched.result.status,
            duration=fetched.duration,
        )
    options = dedup.DedupOptions(
        near_duplicates=config.dedup.near_duplicates,
        threshold=config.dedup.threshold,
        allow_duplicate_links=source.allow_duplicate_links,
    )
    # Placement reads what is stored; holding the write lock from there to the commit keeps
    # another process (a cron refresh beside the scheduler) from storing the same copies.
    with store.transaction():
        decision = dedup.place(fetched.excerpts, store, options)
        store.apply(decision, ok_state, backfill=state.last_success is None)
    # Items new to this source are "new" for it, whether or not another source had them.
    outcome: Outcome = (
        "new" if decision.new or decision.joined else "updated" if decision.updated else "unchanged"
    )
    return SourceResult(
        source=source.name,
        outcome=outcome,
        new=decision.new,
        joined=decision.joined,
        updated=decision.updated,
        unchanged=decision.unchanged,
        status=fetched.result.status,
        duration=fetched.duration,
        warnings=(*fetched.document.warnings, *decision.warnings),
    )


def _normalize_all(
    config: Config, source: Source, document: ParsedDocument, now: datetime
) -> list[Excerpt]:
    return [
        normalize(item, source=source, now=now, options=config.excerpt)
        for item in document.items[: source.max_entries]
    ]


__all__ = [
    "ConfigError",
    "Preview",
    "due_at",
    "emit_outputs",
    "preview",
    "refresh",
    "refresh_if_due",
    "utcnow",
    "write_outputs",
]
