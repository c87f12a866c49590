"""`aggregator run`: APScheduler wiring around the refresh use case, and the server beside it.

One job per source at its interval (with jitter), first run at the source's stored next due
time so a restart does not refetch everything; at most one instance per source, coalesced.
Each job calls `refresh_if_due(..., emit=False)`; the outputs are written by one debounced
job after a burst of refreshes. Jobs run on a thread pool, fetches have a total deadline, so
one slow or failing source never holds up the others. No refresh logic lives here.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from datetime import UTC, datetime, timedelta
from types import FrameType

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger

from aggregator import manage, sourcestate
from aggregator.config import Config
from aggregator.errors import AggregatorError
from aggregator.models import SourceResult
from aggregator.refresh import due_at, emit_outputs, refresh_if_due
from aggregator.serve import Server
from aggregator.store import open_store

log = logging.getLogger("aggregator.run")

EMIT_JOB = "emit outputs"
MAX_JITTER = 300  # seconds


def fetch_line(r: SourceResult) -> str:
    """One log line per fetch: source, status, counts, duration."""
    http = f" http={r.status}" if r.status is not None else ""
    line = (
        f"{r.source}: {r.outcome}{http} new={r.new} joined={r.joined} updated={r.updated} "
        f"unchanged={r.unchanged} in {r.duration:.2f}s"
    )
    return f"{line}: {r.error}" if r.error else line


class Runner:
    """The scheduler, the debounced emitter and (optionally) the HTTP server of one config."""

    def __init__(
        self,
        config: Config,
        *,
        serve: bool = True,
        host: str | None = None,
        port: int | None = None,
        debounce: float = 2.0,
        max_wait: float = 30.0,
    ) -> None:
        self.config = config
        self.debounce = debounce
        self.max_wait = max(max_wait, debounce)
        self.scheduler = BackgroundScheduler(
            executors={
                "default": ThreadPoolExecutor(max(1, config.fetch.max_workers)),
                "emit": ThreadPoolExecutor(1),
            },
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
            timezone=UTC,
        )
        self.server = (
            Server(
                config.output_dir,
                host=host or config.server_host,
                port=config.server_port if port is None else port,
            )
            if serve
            else None
        )
        self.stopped = threading.Event()
        self._lock = threading.Lock()  # guards _stopping and _pending_since
        self._emit_lock = threading.Lock()  # one emit at a time
        self._stopping = False
        self._pending_since: float | None = None

    # --- lifecycle ------------------------------------------------------------------------

    def start(self) -> Runner:
        with open_store(self.config) as store:
            # Sources deleted from the config leave the store and the outputs, as at a refresh.
            removed = manage.prune_removed(self.config, store)
            states = {st.name: st for st in store.states()}
        if removed:
            log.info("%s", manage.summary(removed))
        emit_outputs(self.config)  # outputs exist (and match the store) before the first job
        now = datetime.now(UTC)
        for source in self.config.sources:
            if not source.enabled:
                continue
            due = sourcestate.next_due(source, states.get(source.name))
            first = due if due is not None and due > now else now
            interval = source.interval_seconds
            self.scheduler.add_job(
                self._job,
                IntervalTrigger(
                    seconds=interval,
                    start_date=first,
                    jitter=min(interval // 10, MAX_JITTER),
                    timezone=UTC,
                ),
                args=(source.name,),
                id=f"source:{source.name}",
                name=source.name,
                next_run_time=first,
            )
        self.scheduler.start()
        if self.server is not None:
            self.server.start()
            log.info("serving %s on %s", self.config.output_dir, self.server.url)
        log.info("%d sources scheduled", len(self.config.sources))
        return self

    def stop(self) -> None:
        """Take no new jobs, let running fetches finish or hit their deadline, write outputs."""
        with self._lock:
            if self._stopping:
                return
            self._stopping = True
        log.info("stopping: waiting for running fetches (signal again to quit now)")
        self.scheduler.shutdown(wait=True)
        with self._lock:
            pending = self._pending_since is not None
        if pending:
            self._emit()
        if self.server is not None:
            self.server.stop()
        self.stopped.set()
        log.info("stopped")

    def run_forever(self) -> int:
        """Start, then wait for SIGINT or SIGTERM and stop cleanly. Returns the exit status."""
        wake = threading.Event()

        def on_signal(signum: int, frame: FrameType | None) -> None:
            wake.set()

        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, on_signal)
        self.start()
        while not wake.wait(1.0):
            pass
        # A second signal ends the process at once (the store and the outputs are written
        # transactionally and by rename, so even that leaves them consistent).
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        self.stop()
        return 0

    # --- jobs -----------------------------------------------------------------------------

    def _job(self, name: str) -> None:
        with self._lock:
            if self._stopping:
                return
        try:
            report = refresh_if_due(self.config, name, emit=False)
        except AggregatorError as exc:
            log.error("%s: %s", name, exc)
            return
        if report is None:
            # Fetched meanwhile (by cron, or backing off after errors): wait for its due time.
            self._reschedule(name)
            return
        for r in report.results:
            if r.outcome == "error":
                log.warning("%s", fetch_line(r))
            else:
                log.info("%s", fetch_line(r))
        self._emit_soon()

    def _reschedule(self, name: str) -> None:
        try:
            when = due_at(self.config, name)
        except AggregatorError as exc:
            log.error("%s: %s", name, exc)
            return
        if when is None or when <= datetime.now(UTC):
            return
        with self._lock:
            if self._stopping:
                return
            self.scheduler.modify_job(f"source:{name}", next_run_time=when)
        log.debug("%s: not due yet, next at %s", name, when.isoformat(timespec="seconds"))

    def _emit_soon(self) -> None:
        """(Re)arm the emit job: quiet for `debounce` seconds, but never later than `max_wait`."""
        with self._lock:
            now = time.monotonic()
            if self._pending_since is None:
                self._pending_since = now
            if self._stopping:
                return  # stop() writes the outputs once the running jobs are done
            waited = now - self._pending_since
            delay = max(0.0, min(self.debounce, self.max_wait - waited))
            self.scheduler.add_job(
                self._emit,
                "date",
                run_date=datetime.now(UTC) + timedelta(seconds=delay),
                id=EMIT_JOB,
                name=EMIT_JOB,
                executor="emit",
                replace_existing=True,
            )

    def _emit(self) -> None:
        with self._emit_lock:
            with self._lock:
                self._pending_since = None
            try:
                feed, snapshot = emit_outputs(self.config)
            except AggregatorError as exc:
                log.error("%s", exc)
                return
            if feed or snapshot:
                log.info("outputs written to %s", self.config.output_dir)
