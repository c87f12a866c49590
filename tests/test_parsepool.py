"""The parse workers end with the refresh that started them, even one killed with SIGKILL.

A refresh of MIN_SOURCES sources or more forks its parse workers before it fetches. The feeds
here are held back by the server until the test lets them go, so the refresh is caught
mid-run with its workers started; it is then killed outright, as the OOM killer or
`timeout -s KILL` would, and none of its child processes may outlive it. Processes are read
from /proc, so these tests run where it exists.
"""

from __future__ import annotations

import multiprocessing
import os
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from aggregator.parsepool import MIN_SOURCES
from tests.helpers import LocalServer, Response, load_snapshot, rss, write_config

PROC = Path("/proc")
pytestmark = pytest.mark.skipif(not (PROC / "self" / "stat").exists(), reason="needs /proc")


def _stat(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name (state first), or None if gone."""
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return text[text.rindex(")") + 2 :].split()


def _children(pid: int) -> dict[int, str]:
    """The processes whose parent is `pid`, each with its start time (its identity with pid)."""
    found: dict[int, str] = {}
    for entry in PROC.iterdir():
        if entry.name.isdigit():
            fields = _stat(int(entry.name))
            if fields is not None and fields[1] == str(pid):
                found[int(entry.name)] = fields[19]
    return found


def _running(processes: dict[int, str]) -> dict[int, str]:
    """Those of `processes` still running: not gone, not a zombie, not a new process's pid."""
    running = {}
    for pid, started in processes.items():
        fields = _stat(pid)
        if fields is not None and fields[0] != "Z" and fields[19] == started:
            running[pid] = started
    return running


def _wait_for(condition: Callable[[], object], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.02)


def _refresh(config: Path) -> list[str]:
    return [sys.executable, "-m", "aggregator", "refresh", "--all", "-c", str(config)]


def test_a_killed_refresh_leaves_no_process_behind(tmp_path: Path, server: LocalServer) -> None:
    if (os.cpu_count() or 1) < 2:
        pytest.skip("the parse workers start only with two CPUs or more")
    release = threading.Event()

    def held(name: str) -> Callable[[BaseHTTPRequestHandler], bytes]:
        def body(handler: BaseHTTPRequestHandler) -> bytes:
            release.wait(60)
            return rss((f"{name}-1", f"First of {name}"), (f"{name}-2", f"Second of {name}"))

        return body

    lines = ['[feed]\ntitle = "T"\nlink = "https://t.example/"\n[output]\ndir = "out"']
    lines.append('[store]\npath = "agg.db"\n[fetch]\ntimeout = 60')
    for i in range(MIN_SOURCES):
        server.routes[f"/f{i}.xml"] = Response(
            held(f"f{i}"), headers={"Content-Type": "application/rss+xml"}
        )
        lines.append(f'[[sources]]\nname = "f{i}"\nurl = "{server.url(f"/f{i}.xml")}"')
    config = write_config(tmp_path, "\n".join(lines) + "\n")

    # Its output goes to a file: a pipe would stay open as long as any child holds it.
    with (tmp_path / "stderr.txt").open("w+") as stderr:
        refresh = subprocess.Popen(
            _refresh(config), cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=stderr
        )
        try:
            # The workers are forked before the first fetch: once a request arrives, they run.
            _wait_for(lambda: server.requests or refresh.poll() is not None, 60)
            children = _children(refresh.pid)
            mid_run = refresh.poll() is None
        finally:
            refresh.kill()  # SIGKILL, as the OOM killer sends: no handler, no cleanup
            refresh.wait()
            release.set()
        stderr.seek(0)
        assert mid_run and server.requests, stderr.read()
    assert children, "the refresh started no parse workers"

    _wait_for(lambda: not _running(children), 10)
    assert _running(children) == {}

    # The store took no harm: the next refresh completes and the database checks out.
    again = subprocess.run(_refresh(config), cwd=tmp_path, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    db = sqlite3.connect(tmp_path / "agg.db")
    try:
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    finally:
        db.close()
    entries = load_snapshot(tmp_path / "out" / "snapshot.json")["entries"]
    assert {e["source"] for e in entries} == {f"f{i}" for i in range(MIN_SOURCES)}


_ORPHAN = """
import multiprocessing, os, signal
from aggregator.parsepool import _watch_parent

if __name__ == "__main__":
    worker = multiprocessing.get_context("fork").Process(target=_watch_parent, args=(os.getpid(),))
    worker.start()
    print(worker.pid, flush=True)
    signal.pause()  # until the test kills this process
"""


@pytest.mark.skipif(
    "fork" not in multiprocessing.get_all_start_methods(), reason="the pool forks its workers"
)
def test_a_worker_without_the_death_signal_watches_for_its_parent() -> None:
    # The fallback where PR_SET_PDEATHSIG is missing: the watching thread's loop, run here as
    # the worker's only work, so that the worker lives exactly as long as the watch does.
    parent = subprocess.Popen([sys.executable, "-c", _ORPHAN], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        with parent.stdout:  # the worker holds the pipe too: read its pid, then let go
            worker = int(parent.stdout.readline())
        watched = _children(parent.pid)
        assert worker in watched
    finally:
        parent.kill()  # SIGKILL
        parent.wait()
    _wait_for(lambda: not _running(watched), 10)
    assert _running(watched) == {}
