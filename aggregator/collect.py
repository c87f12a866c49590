"""The collect stage: a due source becomes its excerpts, or the error that stopped it.

    fetch (conditional GET) -> not modified? -> sniff -> parse -> advertised feed | pages
        -> normalize

A `Collector` holds what the sources of one run share: the HTTP session, the fetch limits, the
per-host limiter, the robots.txt cache, the address guard and, while `collect_many` runs, the
parse pool. It stores nothing: the refresh use case decides what the results become.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import threading
import time
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from functools import partial
from urllib.parse import urlsplit

import requests

from aggregator import sourcestate
from aggregator.config import Config, FetchSettings
from aggregator.errors import FetchError, ParseError, SourceError
from aggregator.fetch import FetchLimits, fetch, new_session
from aggregator.models import (
    Excerpt,
    ExcerptOptions,
    FetchResult,
    ParsedDocument,
    SelectRules,
    Source,
    SourceState,
)
from aggregator.netguard import NetGuard
from aggregator.parsepool import ParsePool, start_pool
from aggregator.robots import MAX_ROBOTS_BYTES, RobotsCache

__all__ = ["IN_FLIGHT_MIN", "Collected", "Collector", "HostLimiter", "Preview", "preview"]

log = logging.getLogger("aggregator.collect")

IN_FLIGHT_MIN = 64  # sources fetched and parsed ahead of the one being stored, at least
STOP_GRACE = 1.0  # seconds fetches in flight get to finish once a stop is asked for


@dataclass(frozen=True, slots=True)
class Collected:
    """What collecting one source gave: its excerpts, or why there are none."""

    source: Source
    state: SourceState  # the state before this refresh (fresh when the configured URL changed)
    result: FetchResult | None = None  # the first response; None after an error
    document: ParsedDocument | None = None  # what was read; None when not modified or failed
    body_hash: str | None = None  # hash of the first response's body (a 200)
    error: SourceError | None = None  # why nothing was read
    duration: float = 0.0  # seconds spent collecting
    excerpts: tuple[Excerpt, ...] = ()  # the document's items, normalized, in document order
    excluded: int = 0  # items the source's include / exclude filters left out of `excerpts`


class HostLimiter:
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


class Collector:
    """Collects sources for one run; `now` is the first-seen time of every excerpt it makes."""

    def __init__(
        self,
        settings: FetchSettings,
        excerpt: ExcerptOptions,
        session: requests.Session,
        *,
        now: datetime,
        guard: NetGuard | None = None,
    ) -> None:
        self._settings = settings
        self._excerpt = excerpt
        self._session = session
        self._now = now
        self._guard = guard or NetGuard(allow_private=settings.allow_private)
        self._limits = FetchLimits(timeout=settings.timeout, max_bytes=settings.max_bytes)
        self._robots_limits = replace(
            self._limits, max_bytes=min(settings.max_bytes, MAX_ROBOTS_BYTES)
        )
        self._hosts = HostLimiter(settings.per_host)
        self._robots = RobotsCache()
        self._pool: ParsePool | None = None  # set while collect_many runs
        self._flight = 0  # sources in collect() now
        self._flight_lock = threading.Lock()

    # --- many sources ----------------------------------------------------------------------

    def collect_many(
        self,
        sources: Sequence[Source],
        states: Mapping[str, SourceState],
        group_excerpts: int,
        stop: threading.Event | None = None,
    ) -> Iterator[list[Collected]]:
        """Collect every source in a thread pool; yield the results in the order of `sources`,
        those ready together in one list of about `group_excerpts` excerpts at most.

        Once `stop` is set, no further source starts; those in flight get STOP_GRACE seconds,
        the ones done by then are yielded, and the rest are abandoned to their threads (which
        end at their own deadline; nothing of theirs is yielded)."""
        if not sources:
            return
        stop = stop or threading.Event()
        workers = min(self._settings.max_workers, len(sources))
        # At most `window` sources are fetched or parsed ahead of the one being stored, so that
        # memory stays bounded however many sources there are.
        window = max(IN_FLIGHT_MIN, 4 * workers)
        futures: deque[Future[Collected]] = deque()
        remaining = iter(sources)
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fetch")
        try:
            with self._parse_pool(len(sources), stop):

                def submit_next() -> None:
                    s = next(remaining, None)
                    if s is not None and not stop.is_set():
                        futures.append(pool.submit(self.collect, s, states.get(s.name)))

                for _ in range(window):
                    submit_next()
                while futures:
                    while not futures[0].done() and not stop.is_set():
                        wait([futures[0]], timeout=0.1, return_when=FIRST_COMPLETED)
                    if stop.is_set():
                        yield from self._finish_early(futures)
                        break
                    ready = [futures.popleft().result()]
                    # With it, whatever else has finished in order, up to a bounded amount of work.
                    size = len(ready[0].excerpts)
                    while futures and futures[0].done() and size < group_excerpts:
                        ready.append(futures.popleft().result())
                        size += len(ready[-1].excerpts)
                    yield ready
                    # Only now, with the group stored, do sources take its places in the window:
                    # fetched or parsed documents in memory stay within `window`.
                    for _ in ready:
                        submit_next()
        finally:
            # Stopped early, the fetches still running are not waited for.
            pool.shutdown(wait=not stop.is_set(), cancel_futures=True)

    @staticmethod
    def _finish_early(futures: deque[Future[Collected]]) -> Iterator[list[Collected]]:
        """After a stop: the sources not started are dropped; those in flight get STOP_GRACE
        seconds, and the ones done by then are yielded, in order."""
        for f in futures:
            f.cancel()
        running = [f for f in futures if not f.cancelled()]
        if running:
            wait(running, timeout=STOP_GRACE)
        done = [f.result() for f in running if f.done()]
        if done:
            yield done

    def in_flight(self) -> int:
        """Sources being fetched or parsed right now (for a stop's acknowledgement)."""
        with self._flight_lock:
            return self._flight

    @contextmanager
    def _parse_pool(self, sources: int, stop: threading.Event) -> Iterator[None]:
        """Feeds are parsed in worker processes while this lasts, if `sources` pay for them.

        Entered before any fetch thread exists: the pool forks its workers as it starts. After
        a stop, a parse still running is not waited for.
        """
        self._pool = start_pool(sources)
        try:
            yield
        finally:
            if self._pool is not None:
                self._pool.close(wait=not stop.is_set())
            self._pool = None

    # --- one source ------------------------------------------------------------------------

    def collect(self, source: Source, state: SourceState | None = None) -> Collected:
        """Fetch, read and normalize one source. A SourceError is its result, not raised."""
        with self._flight_lock:
            self._flight += 1
        try:
            return self._collect_one(source, state)
        finally:
            with self._flight_lock:
                self._flight -= 1

    def _collect_one(self, source: Source, state: SourceState | None) -> Collected:
        state = sourcestate.current(source, state)
        started = time.monotonic()
        try:
            collected = self._collect(source, state)
        except SourceError as exc:
            collected = Collected(source, state, error=exc)
        except Exception as exc:  # a bug; keep the traceback in the log, spare the other sources
            log.exception("%s: unexpected error", source.name)
            err = SourceError(source.name, f"internal error: {type(exc).__name__}: {exc}")
            collected = Collected(source, state, error=err)
        return replace(collected, duration=time.monotonic() - started)

    def _collect(self, source: Source, state: SourceState) -> Collected:
        first = self._get(source, state, state.effective_url or source.url, conditional=True)
        if first.not_modified:
            return Collected(source, state, first)
        body_hash = hashlib.blake2b(first.body, digest_size=16).hexdigest()
        if sourcestate.body_unchanged(state, body_hash):
            return Collected(source, state, first, body_hash=body_hash)
        if not first.body.strip():
            raise ParseError(source.name, "empty response body")
        # The parsers and normalize load with the first body to read: a refresh that finds
        # nothing new never needs them.
        from aggregator.normalize import normalize_items
        from aggregator.parse import read

        kind = read.kind_of(source, first)
        if kind == "feed" and self._pool is not None and not read.needs_isolation(first.body):
            document, excerpts = self._pool.feed(
                source,
                first.body,
                url=first.final_url,
                headers=dict(first.headers),
                now=self._now,
                options=self._excerpt,
            )
            # Parsed: the bytes need not wait for the store.
            first = replace(first, body=b"")
        else:
            document = read.document(
                source,
                kind,
                first,
                partial(self._get, source, state),
                time_limit=self._settings.parse_timeout,
                previous_entry=state.page_entry,
            )
            # Normalized here, in the fetch thread: per-entry work stays off the store thread,
            # and a failure in it is this source's error, not the run's.
            # A page's entry blocks are listing cards, not the posts: only a feed's HTML is
            # kept for full content.
            excerpts = normalize_items(
                document.items,
                source=source,
                now=self._now,
                options=self._excerpt,
                keep_html=document.kind == "feed",
                site=document.link,
            )
        kept = filtered(source, excerpts)
        return Collected(
            source,
            state,
            first,
            document,
            body_hash,
            excerpts=kept,
            excluded=len(excerpts) - len(kept),
        )

    def _get(
        self, source: Source, state: SourceState, url: str, conditional: bool = False
    ) -> FetchResult:
        """One request for `source`, once its site's robots.txt allows it (if it honours it)."""
        if source.honours_robots and not self._robots.allowed(
            url,
            partial(self._request, source, state, conditional=False, limits=self._robots_limits),
        ):
            raise FetchError(
                source.name, f"robots.txt disallows {url} (set robots = false to fetch)"
            )
        return self._request(source, state, url, conditional=conditional, limits=self._limits)

    def _request(
        self,
        source: Source,
        state: SourceState,
        url: str,
        *,
        conditional: bool,
        limits: FetchLimits,
    ) -> FetchResult:
        with self._hosts.hold(url):
            return fetch(
                source.name,
                url,
                session=self._session,
                state=state,
                limits=limits,
                conditional=conditional,
                guard=self._guard,
                origin=source.url,
                extra_headers=request_headers(source),
            )


_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def request_headers(source: Source) -> dict[str, str]:
    """A source's extra request headers, each `${NAME}` replaced by that environment variable.

    The values may be secrets: a message names the variable, never a value."""
    out: dict[str, str] = {}
    for name, template in source.headers:

        def value(m: re.Match[str], header: str = name) -> str:
            found = os.environ.get(m.group(1))
            if found is None:
                raise FetchError(
                    source.name, f"header {header}: environment variable {m.group(1)} is not set"
                )
            return found

        out[name] = _ENV.sub(value, template)
    return out


def filtered(source: Source, excerpts: Sequence[Excerpt]) -> tuple[Excerpt, ...]:
    """The excerpts the source's filters let through: with `include`, those whose title,
    excerpt or a category matches one of its expressions; then none that matches `exclude`."""
    if not source.include and not source.exclude:
        return tuple(excerpts)
    include = [re.compile(p) for p in source.include]
    exclude = [re.compile(p) for p in source.exclude]

    def matches(patterns: list[re.Pattern[str]], e: Excerpt) -> bool:
        fields = (e.title, e.excerpt, *e.categories)
        return any(p.search(f) for p in patterns for f in fields)

    return tuple(
        e for e in excerpts if (not include or matches(include, e)) and not matches(exclude, e)
    )


# --- preview -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Preview:
    """What one source would give right now, fetched and read but not stored."""

    source: Source
    excerpts: tuple[Excerpt, ...]  # in document order, after the source's filters
    kind: str  # what the body turned out to be
    status: int  # HTTP status of the first response (200 for files)
    final_url: str  # after redirects
    warnings: tuple[str, ...] = ()
    auto_select: SelectRules | None = None  # the rules auto mode found or completed
    auto_method: str | None = None  # how auto mode found the post list (see ParsedDocument)


def preview(
    config: Config,
    name: str,
    *,
    session: requests.Session | None = None,
    now: datetime | None = None,
) -> Preview:
    """Fetch, parse and normalize one source unconditionally, storing nothing.

    For tuning page selectors; raises the source's SourceError when it cannot be read. `now` is
    the excerpts' first-seen time (default: the current time).
    """
    source = config.source(name)
    own_session = session is None
    session = session or new_session()
    now = now or datetime.now(UTC)
    try:
        collected = Collector(config.fetch, config.excerpt, session, now=now).collect(source)
    finally:
        if own_session:
            session.close()
    if collected.error is not None:
        raise collected.error
    assert collected.result is not None and collected.document is not None
    return Preview(
        source=source,
        excerpts=collected.excerpts,
        kind=collected.document.kind,
        status=collected.result.status,
        final_url=collected.result.final_url,
        warnings=collected.document.warnings,
        auto_select=collected.document.auto_select,
        auto_method=collected.document.auto_method,
    )
