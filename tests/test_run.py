"""`aggregator run`: the scheduler, the debounced emit, signals, and cron beside it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import feedparser
import pytest

from aggregator import emit
from aggregator.config import Config, load_config
from aggregator.refresh import refresh
from aggregator.schedule import Runner
from aggregator.store import open_store
from tests.helpers import ROOT, LocalServer, Response, load_snapshot, rss_posts, write_config

DEADLINE = 20.0  # seconds a condition may take before the test fails


def wait_for(condition: Callable[[], object], what: str) -> None:
    end = time.monotonic() + DEADLINE
    while not condition():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def make_config(tmp_path: Path, server: LocalServer, n_sources: int = 3, extra: str = "") -> Path:
    body = '[feed]\ntitle = "Run"\n[fetch]\ntimeout = 2\n' + extra
    for i in range(n_sources):
        url = server.serve(f"/s{i}.xml", rss_posts(5, prefix=f"S{i}"))
        body += f'[[sources]]\nname = "s{i}"\nurl = "{url}"\n'
    return write_config(tmp_path, body)


def feed_titles(config: Config) -> list[str]:
    path = config.output_dir / emit.FEED_FILE
    if not path.exists():
        return []
    return [e.title for e in feedparser.parse(path.read_bytes()).entries]


def test_runner_fetches_each_source_once_and_restart_honours_next_due(
    tmp_path: Path, server: LocalServer
) -> None:
    path = make_config(tmp_path, server)
    path.write_text(path.read_text() + f'[[sources]]\nname = "bad"\nurl = "{server.url("/404")}"\n')
    config = load_config(path)
    runner = Runner(config, port=0, debounce=0.05).start()
    try:
        assert runner.server is not None
        health = runner.server.url + "healthz"
        wait_for(lambda: len(feed_titles(config)) == 15, "all entries in feed.atom")
        wait_for(
            lambda: json.loads(urllib.request.urlopen(health, timeout=5).read())["errors"],
            "the failing source in /healthz",
        )
    finally:
        runner.stop()
    assert runner.stopped.is_set()
    for i in range(3):
        assert len(server.hits(f"/s{i}.xml")) == 1
    snapshot = load_snapshot(config.output_dir / emit.SNAPSHOT_FILE)
    assert {s["name"]: s["status"] for s in snapshot["sources"]} == {
        "s0": "ok",
        "s1": "ok",
        "s2": "ok",
        "bad": "error",
    }

    # A restart schedules every source at its stored next due time, not now.
    with open_store(config) as store:
        due = {st.name: st.next_due for st in store.states()}
    again = Runner(config, serve=False, debounce=0.05).start()
    try:
        jobs = {j.name: j.next_run_time for j in again.scheduler.get_jobs()}
    finally:
        again.stop()
    soon = datetime.now(UTC) + timedelta(minutes=5)
    for name in ("s0", "s1", "s2", "bad"):
        stored = due[name]
        assert stored is not None and stored > soon
        assert jobs[name] == stored
    assert all(len(server.hits(f"/s{i}.xml")) == 1 for i in range(3))


def test_a_source_deleted_from_the_config_leaves_when_the_runner_starts(
    tmp_path: Path, server: LocalServer
) -> None:
    path = make_config(tmp_path, server)
    refresh(load_config(path))
    assert len(feed_titles(load_config(path))) == 15
    text = path.read_text()
    path.write_text(text[: text.index('[[sources]]\nname = "s2"')])
    config = load_config(path)
    runner = Runner(config, serve=False, debounce=0.05).start()
    try:
        titles = feed_titles(config)
        with open_store(config) as store:
            names = {st.name for st in store.states()}
    finally:
        runner.stop()
    assert len(titles) == 10 and not [t for t in titles if t.startswith("S2")]
    assert names == {"s0", "s1"}


def test_one_hanging_source_does_not_hold_up_the_others(
    tmp_path: Path, server: LocalServer
) -> None:
    release = threading.Event()

    def hang(handler: BaseHTTPRequestHandler) -> bytes | None:
        release.wait(10)
        return None  # write nothing: the client hits its deadline

    path = make_config(tmp_path, server, n_sources=2)
    server.routes["/hang.xml"] = Response(hang)
    path.write_text(
        path.read_text().replace("timeout = 2", "timeout = 1")
        + f'[[sources]]\nname = "hang"\nurl = "{server.url("/hang.xml")}"\n'
    )
    config = load_config(path)
    runner = Runner(config, serve=False, debounce=0.05).start()
    try:
        wait_for(lambda: len(feed_titles(config)) == 10, "the other sources' entries")
        wait_for(lambda: server.hits("/hang.xml"), "the hanging source to be asked")
    finally:
        runner.stop()  # waits for the hanging fetch to hit its 1 s deadline
        release.set()
    snapshot = load_snapshot(config.output_dir / emit.SNAPSHOT_FILE)
    hang_state = next(s for s in snapshot["sources"] if s["name"] == "hang")
    assert hang_state["status"] == "error"


def test_outputs_wait_for_the_burst_and_stop_writes_them(
    tmp_path: Path, server: LocalServer
) -> None:
    config = load_config(make_config(tmp_path, server))
    runner = Runner(config, serve=False, debounce=3600, max_wait=3600).start()
    try:
        # The startup emit wrote empty outputs; the refreshed entries wait for the debounce.
        assert feed_titles(config) == []
        wait_for(lambda: all(server.hits(f"/s{i}.xml") for i in range(3)), "every source fetched")
        with open_store(config) as store:
            wait_for(lambda: len(store.entry_counts()) == 3, "every source stored")
        assert feed_titles(config) == []
    finally:
        runner.stop()
    assert len(feed_titles(config)) == 15


def start_run(path: Path, *extra: str) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "aggregator", "run", "-c", str(path), "--port", "0", *extra],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.stderr is not None
    url = ""
    end = time.monotonic() + DEADLINE
    while not url and time.monotonic() < end:
        line = proc.stderr.readline()
        if not line:
            break
        if " on http://" in line:
            url = line.rsplit(" on ", 1)[1].strip()
    if not url:
        proc.kill()
        raise AssertionError("aggregator run did not start serving")
    # Keep draining stderr so the child never blocks on a full pipe.
    threading.Thread(target=proc.stderr.read, daemon=True).start()
    return proc, url


def healthz(url: str) -> dict[str, object]:
    try:
        with urllib.request.urlopen(url + "healthz", timeout=5) as resp:
            return dict(json.loads(resp.read()))
    except OSError:
        return {}


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_run_serves_and_exits_0_on_sigterm(tmp_path: Path, server: LocalServer) -> None:
    path = make_config(tmp_path, server)
    proc, url = start_run(path, "--debounce", "0.05")
    try:
        wait_for(lambda: healthz(url).get("entries") == 15, "15 entries behind /healthz")
        feed = feedparser.parse(url + "feed.atom")
        assert feed.status == 200 and len(feed.entries) == 15
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=DEADLINE) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert len(feed_titles(load_config(path))) == 15


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_cron_refresh_while_run_is_active(tmp_path: Path, server: LocalServer) -> None:
    """Both share one store: every process succeeds and each post is stored once."""
    path = make_config(tmp_path, server, n_sources=6)
    proc, url = start_run(path, "--debounce", "0.05")
    try:
        crons = [
            subprocess.Popen(
                [sys.executable, "-m", "aggregator", "refresh", "-q", "--all", "-c", str(path)],
                cwd=ROOT,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(3)
        ]
        for cron in crons:
            _, err = cron.communicate(timeout=60)
            assert cron.returncode == 0, err
            assert err == ""
        wait_for(lambda: healthz(url).get("entries") == 30, "30 entries behind /healthz")
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=DEADLINE) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    config = load_config(path)
    titles = feed_titles(config)
    assert len(titles) == len(set(titles)) == 30
    snapshot = load_snapshot(config.output_dir / emit.SNAPSHOT_FILE)
    assert all(s["status"] in ("ok", "not-modified") for s in snapshot["sources"])


def test_a_tick_for_a_source_not_due_waits_for_its_due_time(
    tmp_path: Path, server: LocalServer
) -> None:
    """A cron refresh (or a back-off) moved next_due: the job skips and re-arms for it."""
    config = load_config(make_config(tmp_path, server, n_sources=1))
    runner = Runner(config, serve=False, debounce=0.05).start()
    try:
        wait_for(lambda: len(feed_titles(config)) == 5, "the first fetch")
        with open_store(config) as store:
            state = store.get_state("s0")
        assert state is not None and state.next_due is not None
        runner.scheduler.modify_job("source:s0", next_run_time=datetime.now(UTC))
        wait_for(
            lambda: runner.scheduler.get_job("source:s0").next_run_time == state.next_due,
            "the job re-armed at the stored due time",
        )
    finally:
        runner.stop()
    assert len(server.hits("/s0.xml")) == 1


def test_a_restart_fetches_at_once_a_source_whose_url_changed(
    tmp_path: Path, server: LocalServer
) -> None:
    path = make_config(tmp_path, server, n_sources=2)
    refresh(load_config(path))
    with open_store(load_config(path)) as store:
        due = {st.name: st.next_due for st in store.states()}
    moved = server.serve("/s1-moved.xml", rss_posts(5, prefix="S1"))
    path.write_text(path.read_text().replace(server.url("/s1.xml"), moved))
    config = load_config(path)
    runner = Runner(config, serve=False, debounce=0.05).start()
    try:
        jobs = {j.name: j.next_run_time for j in runner.scheduler.get_jobs()}
        assert jobs["s0"] == due["s0"]  # its stored due time, an hour away
        wait_for(lambda: server.hits("/s1-moved.xml"), "the moved source fetched now")
    finally:
        runner.stop()
    assert len(server.hits("/s0.xml")) == 1 and len(server.hits("/s1.xml")) == 1
