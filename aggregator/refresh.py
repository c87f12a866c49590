"""The refresh use case: the one path from sources to outputs.

    choose the due sources (sourcestate) -> collect them (collect.py: fetch, sniff, parse,
    follow pages or an advertised feed, normalize) -> place (dedup) -> apply (store) -> emit

The CLI, the scheduler and the server all call `refresh()`; none of them holds logic of its own.
Collecting runs in worker threads (network-bound, one source never blocks another); placing
and storing happen on the calling thread, the sources collected together in one transaction,
so a failure leaves every source either fully updated or untouched.
"""

from __future__ import annotations

import gc
import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

import requests

from aggregator import emit, outputs, sourcestate, websub
from aggregator.collect import Collected, Collector
from aggregator.config import Config
from aggregator.errors import ConfigError, FetchError
from aggregator.fetch import new_session
from aggregator.models import (
    Decision,
    Excerpt,
    Outcome,
    RefreshReport,
    Source,
    SourceResult,
    SourceState,
)
from aggregator.netguard import NetGuard
from aggregator.store import Store, open_store

log = logging.getLogger("aggregator.refresh")

Clock = Callable[[], datetime]
# Dedup reads then writes the store; sources refreshed at once in one process (scheduled jobs)
# take turns for that step so two copies of one post cannot both be minted as new entries.
_STORE_LOCK = threading.Lock()
GROUP_EXCERPTS = 5_000  # stored in one transaction at most (sources already fetched)


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class Interrupt:
    """A way to stop a refresh early, from a signal handler: `event.set()`. The refresh then
    starts no other source, gives the fetches in flight a moment, stores what completed and
    writes the outputs. `in_flight()` tells how many sources are being fetched right now."""

    event: threading.Event = field(default_factory=threading.Event)
    in_flight: Callable[[], int] = field(default=lambda: 0)


# While a refresh runs, the cyclic garbage collector looks at young objects every 50,000 new
# container objects instead of Python's 700. A refresh holds many long-lived objects (parsed
# items, excerpts, candidate copies) and makes few reference cycles; at 700 the collector
# walked them so often that it took about a third of dedup's work (bench/README.md). The
# threshold is process-wide: it is raised when the first refresh of the process starts and put
# back when the last one ends (the scheduler runs several at once).
GC_YOUNG_THRESHOLD = 50_000
_gc_lock = threading.Lock()
_gc_running = 0
_gc_saved = gc.get_threshold()


@contextmanager
def fewer_collections() -> Iterator[None]:
    global _gc_running, _gc_saved
    with _gc_lock:
        if _gc_running == 0:
            _gc_saved = gc.get_threshold()
            gc.set_threshold(max(GC_YOUNG_THRESHOLD, _gc_saved[0]), *_gc_saved[1:])
        _gc_running += 1
    try:
        yield
    finally:
        with _gc_lock:
            _gc_running -= 1
            if _gc_running == 0:
                gc.set_threshold(*_gc_saved)


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
    store: Store | None = None,
    interrupt: Interrupt | None = None,
) -> RefreshReport:
    """Refresh the due sources (or `names`, or all with `force`), then write the outputs.

    With `emit=False` the outputs are left alone (the scheduler writes them once after a burst
    of refreshes with `write_outputs`); the report then says nothing was written. `guard`
    decides which addresses sources may reach and how names resolve; by default the system
    resolver and `[fetch] allow_private`. `store` is the store to use (left open); by default
    the configured one, opened for this refresh.
    """
    from aggregator import manage

    for name in names:
        config.source(name)  # raises ConfigError for an unknown name
    started = clock()
    own_session = session is None
    session = session or new_session(pool_size=max(config.fetch.per_host, 2))
    try:
        with fewer_collections(), _opened(config, store) as store:
            # Sources deleted from the config leave the store (and so the outputs) first.
            removed = () if names else tuple(r.source for r in manage.prune_removed(config, store))
            states = {st.name: st for st in store.states()}
            if names:
                chosen = [s for s in config.sources if s.name in names]
            elif force:
                chosen = [s for s in config.sources if s.enabled]
            else:
                chosen = sourcestate.due_sources(config.sources, states, started)
            # One "now" for every entry first seen in this run, whichever thread or process
            # normalizes it: copies seen together tie, and store order (config order) decides.
            collector = Collector(config.fetch, config.excerpt, session, now=started, guard=guard)
            if interrupt is not None:
                interrupt.in_flight = collector.in_flight
            stop = interrupt.event if interrupt is not None else None
            results = []
            for ready in collector.collect_many(chosen, states, GROUP_EXCERPTS, stop):
                with _STORE_LOCK:
                    stored, failure = _store_group(config, store, ready, clock)
                results.extend(stored)
                if on_result is not None:
                    for result in stored:
                        on_result(result)
                if failure is not None:
                    raise failure
            if config.store_keep_seconds is not None:
                manage.prune_old(config, store, config.store_keep_seconds, started)
            feed_written, snapshot_written = (
                write_outputs(config, store) if emit else (False, False)
            )
            return RefreshReport(
                started=started,
                finished=clock(),
                results=tuple(results),
                feed_written=feed_written,
                snapshot_written=snapshot_written,
                removed=removed,
                interrupted=stop is not None and stop.is_set(),
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
    store: Store | None = None,
) -> RefreshReport | None:
    """Refresh one source if it is still due (a cron run may just have done it), else None."""
    source = config.source(name)
    with _opened(config, store) as store:
        if not sourcestate.is_due(source, store.get_state(name), clock()):
            return None
        return refresh(config, names=(name,), session=session, clock=clock, emit=emit, store=store)


def due_at(config: Config, name: str, store: Store | None = None) -> datetime | None:
    """When a source is next due, from the store; None when it is due now (or never fetched)."""
    source = config.source(name)
    with _opened(config, store) as store:
        return sourcestate.next_due(source, store.get_state(name))


def emit_outputs(config: Config, store: Store | None = None) -> tuple[bool, bool]:
    """Write the outputs from what is stored, without fetching anything."""
    with _opened(config, store) as store:
        return write_outputs(config, store)


@contextmanager
def _opened(config: Config, store: Store | None) -> Iterator[Store]:
    """The store handed in, left open; else the configured one, open for the `with` block."""
    if store is not None:
        yield store
        return
    with open_store(config) as opened:
        yield opened


def write_outputs(config: Config, store: Store) -> tuple[bool, bool]:
    """Emit every feed (outputs.py: feed.atom, feed.json, each [[outputs]] feed and their
    archive pages), then index.html and snapshot.json, from what is stored; then tell the
    WebSub hub which feeds changed, in the background.

    Returns whether feed.atom and snapshot.json changed.

    The snapshot's generated_at is the latest fetch it reflects, not the wall clock, so a run
    that fetched nothing leaves every file byte-identical.
    """
    # Sealing may wait for the store's write lock; what the files say is read after it.
    plans = [(o, outputs.seal(store, o)) for o in outputs.outputs_of(config)]
    states = {st.name: st for st in store.states()}
    fetched = [st.last_fetch for st in states.values() if st.last_fetch is not None]
    generated_at = max(fetched, default=emit.EPOCH)
    # A feed without entries is dated by its last fetch (never 1970), or now before any.
    empty_updated = max(fetched, default=None) or utcnow()
    written = [
        outputs.write_output(config, store, o, plan, states, empty_updated) for o, plan in plans
    ]
    main = written[0]
    entries = main.current
    counts = store.entry_counts()
    snapshot = emit.render_snapshot(
        main.meta, entries, config.sources, states, counts, generated_at
    )
    page = emit.render_index(
        main.meta,
        entries,
        config.sources,
        states,
        counts,
        generated_at,
        outputs=[(o.name, o.title) for o in config.outputs],
        history=main.newest,
    )
    # Everything is rendered before the first file is replaced: the files change together.
    changed = [(w, w.write(config.output_dir)) for w in written]
    emit.write_if_changed(config.output_dir, emit.INDEX_FILE, page)
    # Last: /healthz reads the snapshot, so it reports a refresh once every file is in place.
    snapshot_written = emit.write_if_changed(config.output_dir, emit.SNAPSHOT_FILE, snapshot)
    urls = [w.url(name) for w, names in changed for name in names]
    if config.websub_hub and urls:
        websub.publish(config.websub_hub, urls)
    return emit.FEED_FILE in changed[0][1], snapshot_written


# --- store (calling thread) --------------------------------------------------------------------


def _store_group(
    config: Config, store: Store, ready: Sequence[Collected], clock: Clock
) -> tuple[list[SourceResult], Exception | None]:
    """Store the sources that finished together, in one transaction: one commit (one write of
    the index pages they touched) instead of one per source.

    The sources that brought nothing to place (not modified, or failed) have only their state
    saved, all in one write. A source whose storing fails (a write error, or any unexpected
    one) is rolled back alone; those before it still commit, and the failure is returned for
    the caller to raise once their results are reported.
    """
    results: list[SourceResult] = []
    settled: list[SourceState] = []  # states of the sources with nothing to place, not saved yet
    failure: Exception | None = None
    with store.transaction():
        try:
            for fetched in ready:
                if fetched.document is None:
                    result, state = settle(fetched, clock())
                    settled.append(state)
                else:
                    store.save_states(settled)
                    settled.clear()
                    result = _place(config, store, fetched, clock())
                results.append(result)
            store.save_states(settled)
        except Exception as exc:
            # What was saved before stays (save_states and _place each roll back their own
            # writes); the sources whose states were not saved yet are simply due again.
            failure = exc
            results = results[: len(results) - len(settled)]
    return results, failure


def settle(fetched: Collected, now: datetime) -> tuple[SourceResult, SourceState]:
    """The result and new state of a source that failed, or whose body had not changed."""
    source, state = fetched.source, fetched.state
    if fetched.error is not None:
        # Reported by the caller (the command line, the scheduler) once; the detail under -v.
        log.debug("%s", fetched.error)
        status = fetched.error.status if isinstance(fetched.error, FetchError) else None
        result = SourceResult(
            source=source.name,
            outcome="error",
            error=fetched.error.reason,
            status=status,
            duration=fetched.duration,
        )
        return result, sourcestate.after_failure(source, state, fetched.error, now)
    assert fetched.result is not None
    result = SourceResult(
        source=source.name,
        outcome="unchanged",
        status=fetched.result.status,
        duration=fetched.duration,
    )
    new_state = sourcestate.after_success(
        source, state, fetched.result, document=None, body_hash=fetched.body_hash, now=now
    )
    return result, new_state


def read_state(fetched: Collected, now: datetime) -> SourceState:
    """The new state of a source whose body was read (it has excerpts to place)."""
    from aggregator.parse.autopage import LAYOUT_CHANGED  # loaded with the body that was read

    document, result = fetched.document, fetched.result
    assert document is not None and result is not None
    for warning in document.warnings:
        if warning.startswith(LAYOUT_CHANGED):  # a page that needs a look: said in the log too
            log.warning("%s: %s", fetched.source.name, warning)
    return sourcestate.after_success(
        fetched.source,
        fetched.state,
        result,
        document=document,
        body_hash=fetched.body_hash,
        now=now,
    )


def place_excerpts(
    config: Config,
    store: Store,
    source: Source,
    excerpts: Sequence[Excerpt],
    state: SourceState,
    *,
    backfill: bool,
) -> tuple[Decision, SourceState]:
    """Place one source's excerpts (dedup) and store the decision with its new state, to which
    dedup's warnings are added; returns both.

    The one placement path: a refresh calls it for each source it read, and the crawl workers'
    ingest for each batch they staged. `backfill` marks the source's first successful read.
    """
    from aggregator import dedup  # numpy and the sketches, only when there is something to place

    options = dedup.DedupOptions(
        near_duplicates=config.dedup.near_duplicates,
        threshold=config.dedup.threshold,
        allow_duplicate_links=source.allow_duplicate_links,
    )
    # Placement reads what is stored; holding the write lock from there to the commit keeps
    # another process (a cron refresh beside the scheduler) from storing the same copies.
    with store.transaction():
        decision = dedup.place(excerpts, store, options)
        if decision.warnings:
            state = replace(state, warnings=(*state.warnings, *decision.warnings))
        store.apply(decision, state, backfill=backfill)
    return decision, state


def placed_result(
    source: str, decision: Decision, state: SourceState, *, status: int | None, duration: float
) -> SourceResult:
    """What placing a source's excerpts did, as its result (`state`: the state stored)."""
    # Items new to this source are "new" for it, whether or not another source had them.
    outcome: Outcome = (
        "new" if decision.new or decision.joined else "updated" if decision.updated else "unchanged"
    )
    return SourceResult(
        source=source,
        outcome=outcome,
        new=decision.new,
        joined=decision.joined,
        updated=decision.updated,
        unchanged=decision.unchanged,
        status=status,
        duration=duration,
        warnings=state.warnings,
    )


def _place(config: Config, store: Store, fetched: Collected, now: datetime) -> SourceResult:
    """Place a source's excerpts and store the decision with its new state."""
    assert fetched.result is not None
    decision, state = place_excerpts(
        config,
        store,
        fetched.source,
        fetched.excerpts,
        read_state(fetched, now),
        backfill=fetched.state.last_success is None,
    )
    result = placed_result(
        fetched.source.name,
        decision,
        state,
        status=fetched.result.status,
        duration=fetched.duration,
    )
    return replace(result, excluded=fetched.excluded)


__all__ = [
    "ConfigError",
    "Interrupt",
    "due_at",
    "emit_outputs",
    "place_excerpts",
    "placed_result",
    "read_state",
    "refresh",
    "refresh_if_due",
    "settle",
    "utcnow",
    "write_outputs",
]
