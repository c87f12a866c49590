"""Parse and normalize feeds in worker processes, so that a refresh uses every core.

The fetch threads hand a body to the pool and wait for its excerpts; only bytes and small
records cross the process boundary (the body and headers in; the document's metadata and
the Excerpt tuples out). The pool is used when there is enough work to pay for starting it.

Workers are forked from the calling thread before any fetch thread exists, and only when it is
the process's only thread (forking a process whose other threads may hold locks is unsafe);
otherwise the refresh parses in its threads as before.

Workers end with the process that started them, even when it is killed outright (SIGKILL, the
OOM killer) and never gets to shut the pool down: see `_end_with_parent`.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from datetime import datetime

from aggregator.errors import ParseError
from aggregator.models import Excerpt, ExcerptOptions, ParsedDocument, Source

__all__ = ["MIN_SOURCES", "PROCESSES", "ParsePool", "start_pool"]

MIN_SOURCES = 16  # fewer sources than this: starting processes costs more than it saves
PROCESSES = 2


def start_pool(sources: int) -> ParsePool | None:
    """A started pool for a refresh of `sources` sources, or None when it would not pay."""
    cpus = os.cpu_count() or 1
    if sources < MIN_SOURCES or cpus < 2 or threading.active_count() > 1:
        return None
    if "fork" not in multiprocessing.get_all_start_methods():
        return None
    executor = ProcessPoolExecutor(
        max_workers=min(PROCESSES, cpus),
        mp_context=multiprocessing.get_context("fork"),
        initializer=_end_with_parent,
        initargs=(os.getpid(),),
    )
    executor.submit(int).result()  # fork every worker now, while this is the only thread
    return ParsePool(executor)


class ParsePool:
    """Feed bodies in, documents and excerpts out."""

    def __init__(self, executor: ProcessPoolExecutor) -> None:
        self._executor = executor

    def feed(
        self,
        source: Source,
        body: bytes,
        *,
        url: str,
        headers: dict[str, str],
        now: datetime,
        options: ExcerptOptions,
    ) -> tuple[ParsedDocument, tuple[Excerpt, ...]]:
        """Parse a feed body and normalize its items; raise ParseError as parse_feed does.

        The returned document has no items (they stay in the worker): its excerpts come with it.
        """
        future = self._executor.submit(_feed_job, source, body, url, headers, now, options)
        outcome = future.result()
        if isinstance(outcome, str):
            raise ParseError(source.name, outcome)
        return outcome

    def close(self, wait: bool = True) -> None:
        """Stop the workers; without `wait`, a parse still running is left to finish alone."""
        self._executor.shutdown(wait=wait, cancel_futures=True)


_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
_WATCH_SECONDS = 0.5  # how often a worker without PR_SET_PDEATHSIG looks for its parent


def _end_with_parent(parent: int) -> None:
    """Worker initializer: make this worker end when `parent`, the process that forked it, ends.

    On Linux the kernel sends the worker SIGKILL when its parent dies (PR_SET_PDEATHSIG). The
    signal is tied to the thread that forked the worker: the caller of `start_pool`, the
    process's only thread, which outlives the pool. The parent may have died between the fork
    and this call, so its pid is checked afterwards: an orphaned process has another parent.
    Elsewhere, a daemon thread polls the parent pid instead.
    """
    if _set_death_signal():
        if os.getppid() != parent:
            os._exit(1)
    else:
        threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()


def _set_death_signal() -> bool:
    """Ask Linux to SIGKILL this process when its parent dies; False where that is unavailable."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        prctl = ctypes.CDLL(None).prctl
    except (OSError, AttributeError):
        return False
    return bool(prctl(_PR_SET_PDEATHSIG, ctypes.c_ulong(signal.SIGKILL)) == 0)


def _watch_parent(parent: int) -> None:
    """Exit this process as soon as `parent` is no longer its parent (it died)."""
    while os.getppid() == parent:
        time.sleep(_WATCH_SECONDS)
    os._exit(1)


def _feed_job(
    source: Source,
    body: bytes,
    url: str,
    headers: dict[str, str],
    now: datetime,
    options: ExcerptOptions,
) -> tuple[ParsedDocument, tuple[Excerpt, ...]] | str:
    from aggregator.normalize import normalize_items  # in the worker, with its first feed
    from aggregator.parse.feed import parse_feed

    try:
        document = parse_feed(
            body, url=url, headers=headers, source=source.name, max_items=source.max_entries
        )
    except ParseError as exc:  # its constructor does not survive pickling: send the reason
        return exc.reason
    excerpts = normalize_items(
        document.items, source=source, now=now, options=options, site=document.link
    )
    return replace(document, items=()), excerpts
