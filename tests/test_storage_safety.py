"""The store and the outputs under concurrency, a failure mid-refresh and a full disk."""

from __future__ import annotations

import os
import resource
import signal
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from aggregator import emit
from aggregator.config import load_config
from aggregator.errors import EmitError, StorageError
from aggregator.refresh import refresh
from aggregator.store import open_store
from tests.helpers import ROOT, LocalServer, open_test_store, rss, snapshot, state, write_config

N_SOURCES = 24


def _many(tmp_path: Path, server: LocalServer, version: int = 1) -> Path:
    parts = [
        '[feed]\ntitle = "Merged"\nmax_entries = 500\n[output]\ndir = "out"\n'
        '[store]\npath = "agg.db"\n'
    ]
    for n in range(N_SOURCES):
        items = [(f"s{n}-{i}", f"Source {n} post {i} v{version}") for i in range(8)]
        server.serve(f"/f{n}.xml", rss(*items), "application/rss+xml")
        parts.append(f'[[sources]]\nname = "s{n}"\nurl = "{server.url(f"/f{n}.xml")}"\n')
    return write_config(tmp_path, "".join(parts))


def test_two_processes_refreshing_one_store_never_see_a_locked_database(
    tmp_path: Path, server: LocalServer
) -> None:
    path = _many(tmp_path, server)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "aggregator", "refresh", "--all", "-q", "-c", str(path)]
    stop = threading.Event()
    reads: list[int] = []
    errors: list[BaseException] = []

    def reader() -> None:  # plays the server: reads the store while both refreshes write
        db_path = tmp_path / "agg.db"
        while not stop.wait(0.01):
            if not db_path.exists():
                continue
            try:
                with open_test_store("sqlite", tmp_path, "agg.db") as store:
                    reads.append(len(store.latest(500)))
            except (StorageError, sqlite3.Error) as exc:
                errors.append(exc)
                return

    t = threading.Thread(target=reader)
    t.start()
    try:
        # A cold store: both create and migrate it, then both write every source.
        procs = [
            subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            for _ in range(2)
        ]
        outs = [p.communicate(timeout=60) for p in procs]
        for p, (_, err) in zip(procs, outs, strict=True):
            assert p.returncode == 0, err.decode()
            assert b"locked" not in err and b"busy" not in err
    finally:
        stop.set()
        t.join()
    assert errors == [] and reads
    db = sqlite3.connect(tmp_path / "agg.db")
    assert db.execute("SELECT count(*) FROM copies").fetchone()[0] == N_SOURCES * 8
    assert db.execute("SELECT count(*) FROM entries").fetchone()[0] == N_SOURCES * 8
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_a_failure_mid_refresh_leaves_each_source_whole_or_untouched(
    tmp_path: Path, server: LocalServer
) -> None:
    config = load_config(_many(tmp_path, server))
    refresh(config)
    before = {f"s{n}": state(config, f"s{n}") for n in range(N_SOURCES)}
    atom_before = (config.output_dir / "feed.atom").read_bytes()
    # The next crawl changes every title; the store fails (as a full disk or an I/O error
    # would) in the middle of source s5's transaction, after some of its rows were written.
    _many(tmp_path, server, version=2)
    db = sqlite3.connect(config.store_path)
    db.execute(
        "CREATE TRIGGER boom BEFORE UPDATE ON copies WHEN NEW.title = 'Source 5 post 3 v2' "
        "BEGIN SELECT RAISE(ABORT, 'simulated I/O error'); END"
    )
    db.commit()
    db.close()
    with pytest.raises(StorageError, match="simulated I/O error"):
        refresh(config, force=True)
    with open_store(config) as store:
        entries = store.latest(10**6)
        for n in range(N_SOURCES):
            name = f"s{n}"
            titles = {e.title for e in entries if e.source == name}
            st = store.get_state(name)
            assert st is not None
            if n < 5:  # stored before the failure: fully updated
                assert titles == {f"Source {n} post {i} v2" for i in range(8)}
                assert st.last_fetch != before[name].last_fetch
            else:  # the failing source and those after it: untouched
                assert titles == {f"Source {n} post {i} v1" for i in range(8)}, name
                assert st == before[name]
    assert (config.output_dir / "feed.atom").read_bytes() == atom_before


@contextmanager
def file_size_limit(limit: int) -> Iterator[None]:
    """Files this process writes may not grow past `limit` bytes: writes fail with EFBIG,
    as they would with ENOSPC on a full disk (no tiny tmpfs is needed)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)


def test_a_full_disk_while_writing_an_output_keeps_the_previous_one(
    tmp_path: Path, server: LocalServer
) -> None:
    config = load_config(_many(tmp_path, server))
    refresh(config)
    out = config.output_dir
    old_atom = (out / "feed.atom").read_bytes()
    old_snapshot = snapshot(config)
    assert len(old_atom) > 64 * 1024  # the next version of it cannot fit under the limit
    bigger = old_atom.replace(b"</feed>", b"<!--" + b"x" * 1024 + b"--></feed>")
    with file_size_limit(64 * 1024), pytest.raises(EmitError, match="cannot write"):
        emit.write_if_changed(out, emit.FEED_FILE, bigger)
    assert (out / "feed.atom").read_bytes() == old_atom
    assert snapshot(config) == old_snapshot
    assert [p.name for p in out.iterdir() if p.name.endswith(".tmp")] == []
    # With room again, the same write goes through.
    assert emit.write_if_changed(out, emit.FEED_FILE, bigger)
    assert (out / "feed.atom").read_bytes() == bigger


def test_a_process_killed_mid_refresh_leaves_each_source_whole_or_untouched(
    tmp_path: Path, server: LocalServer
) -> None:
    from tests.helpers import Response, drip

    path = _many(tmp_path, server)
    config = load_config(path)
    refresh(config)
    atom_before = (config.output_dir / "feed.atom").read_bytes()
    before = {f"s{n}": state(config, f"s{n}") for n in range(N_SOURCES)}
    _many(tmp_path, server, version=2)
    server.routes["/f6.xml"] = Response(drip)  # s6 hangs; results are stored in config order
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "aggregator", "refresh", "--all", "-c", str(path)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    assert proc.stdout is not None
    stored = [proc.stdout.readline() for _ in range(6)]  # s0 ... s5 reported, so committed
    proc.kill()  # SIGKILL: no cleanup, no rollback by the program itself
    proc.wait(timeout=30)
    assert [line.split(b":")[0] for line in stored] == [f"s{n}".encode() for n in range(6)]
    db = sqlite3.connect(config.store_path)
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"  # the file itself
    db.close()
    with open_store(config) as store:
        entries = store.latest(10**6)
        for n in range(N_SOURCES):
            name = f"s{n}"
            titles = {e.title for e in entries if e.source == name}
            version = "v2" if n < 6 else "v1"
            assert titles == {f"Source {n} post {i} {version}" for i in range(8)}, name
            if n >= 6:
                assert store.get_state(name) == before[name]
    assert (config.output_dir / "feed.atom").read_bytes() == atom_before
