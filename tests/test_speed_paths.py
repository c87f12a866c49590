"""The paths that make a refresh fast give the same results as the plain ones.

- parsing in worker processes (used for 16 sources or more, from a single-threaded caller);
- per-source entry counts kept as copies are written instead of counted over the whole store.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from aggregator.config import load_config
from aggregator.models import CandidateQuery, Decision, Excerpt, Merge, Placement, SourceState
from aggregator.refresh import refresh
from aggregator.store.sqlite import MIGRATIONS, SCHEMA_VERSION, SQLiteStore
from tests.helpers import ROOT, LocalServer, ex, generate, write_config

_CHILD = """
import json, sys
import aggregator.collect as collect_module
import pytest

from aggregator.config import load_config
from aggregator.refresh import refresh

started = []
real_start = collect_module.start_pool

def spy(sources):
    pool = real_start(sources)
    started.append(pool is not None)
    return pool

collect_module.start_pool = spy
report = refresh(load_config(sys.argv[1]), force=True)
print(json.dumps({"pool": started, "failed": [r.error for r in report.failed]}))
"""


def _config(tmp_path: Path, server: LocalServer, name: str, extra: tuple[str, ...] = ()) -> Path:
    lines = [
        "[feed]",
        'title = "T"',
        'link = "https://t.example/"',
        "max_entries = 1000",
        "[output]",
        f'dir = "{name}-out"',
        "[store]",
        f'path = "{name}.db"',
        *extra,
    ]
    for path in sorted(server.routes):
        lines += ["[[sources]]", f'name = "{path.strip("/")}"', f'url = "{server.url(path)}"']
    folder = tmp_path / name
    folder.mkdir()
    return write_config(folder, "\n".join(lines) + "\n")


def _records(config_path: Path) -> list[tuple[object, ...]]:
    config = load_config(config_path)
    db = sqlite3.connect(config.store_path)
    try:
        return db.execute(
            "SELECT source, key, entry_id, rule, title, link, excerpt, fingerprint, "
            "content_hash, text FROM copies ORDER BY source, key"
        ).fetchall()
    finally:
        db.close()


def test_parsing_in_processes_stores_what_threads_store(
    tmp_path: Path, server: LocalServer
) -> None:
    for path, body in generate(18, 6).items():
        server.serve(
            path, body, "application/rss+xml" if path.endswith(".xml") else "application/atom+xml"
        )
    pooled = _config(tmp_path, server, "pooled")
    threaded = _config(tmp_path, server, "threaded")
    child = subprocess.run(
        [sys.executable, "-c", _CHILD, str(pooled)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
    )
    outcome = json.loads(child.stdout.strip().splitlines()[-1])
    assert outcome == {"pool": [True], "failed": []}
    # In this process the server's thread runs: the refresh parses in its threads.
    report = refresh(load_config(threaded), force=True)
    assert not report.failed
    pooled_rows, threaded_rows = _records(pooled), _records(threaded)
    assert len(pooled_rows) == 18 * 6
    assert pooled_rows == threaded_rows


def test_entry_counts_follow_inserts_merges_updates_and_deletes(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "s.db")
    db = store._db

    def counted() -> dict[str, int]:
        return dict(
            db.execute("SELECT source, count(DISTINCT entry_id) FROM copies GROUP BY source")
        )

    def copy(source: str, n: int) -> Excerpt:
        return ex(source, f"Post number {n} of the count test, long enough to stand alone.",
                  guid=f"k{n}")  # fmt: skip

    def put(source: str, *placements: Placement, merges: tuple[Merge, ...] = ()) -> None:
        store.apply(Decision(placements, merges), SourceState(name=source))

    # Inserts, counted by the store as it writes: two copies of one source in one entry
    # (the second joins an entry created by the first in the same batch), then a copy of
    # another source that joins an entry stored before.
    put("a", Placement(copy("a", 0), "e1", "new"), Placement(copy("a", 1), "e1", "text"),
        Placement(copy("a", 2), "e2", "new"))  # fmt: skip
    assert store.entry_counts() == counted() == {"a": 2}
    put("b", Placement(copy("b", 3), "e1", "text"))
    assert store.entry_counts() == counted() == {"a": 2, "b": 1}
    # A copy that links two entries: e2 is merged into e1, so source a is down to one entry.
    put("b", Placement(copy("b", 4), "e1", "text"), merges=(Merge("e2", "e1", "text"),))
    assert store.entry_counts() == counted() == {"a": 1, "b": 1}
    # Updates and deletes keep their triggers.
    db.execute(
        "INSERT INTO entries (id, first_seen, updated, sort_date, seq) "
        "VALUES ('e9', 'x', 'x', 'x', 9)"
    )
    db.execute("UPDATE copies SET entry_id = 'e9' WHERE key = 'guid:k0'")
    assert store.entry_counts() == counted() == {"a": 2, "b": 1}
    db.execute("UPDATE copies SET source = 'c' WHERE key = 'guid:k3'")
    assert store.entry_counts() == counted() == {"a": 2, "b": 1, "c": 1}
    db.execute("DELETE FROM copies WHERE source = 'a'")
    assert store.entry_counts() == counted() == {"b": 1, "c": 1}
    store.close()


def test_migrations_count_and_index_what_a_version_1_store_holds(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    db = sqlite3.connect(path, isolation_level=None)
    for statement in MIGRATIONS[0].split(";"):
        if statement.strip():
            db.execute(statement)
    db.execute(
        "INSERT INTO entries (id, first_seen, updated, sort_date, seq) "
        "VALUES ('e', 'x', 'x', 'x', 1)"
    )
    for key, source in (("k1", "a"), ("k2", "a"), ("k3", "b")):
        db.execute(
            "INSERT INTO copies (source, key, entry_id, rule, title, first_seen, authors, "
            "categories, excerpt, truncated, fingerprint, content_hash, position, text) "
            "VALUES (?, ?, 'e', 'new', 't', 'x', '[]', '[]', '', 0, 'f', 'h', 0, '')",
            (source, key),
        )
    db.execute("PRAGMA user_version=1")
    db.close()
    store = SQLiteStore(path)
    assert store.entry_counts() == {"a": 1, "b": 1}
    assert store._db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    # Copies stored before the fingerprint rows existed are found by their text all the same.
    found = store.candidates(CandidateQuery(fingerprints=frozenset({"f", "g"})))
    assert [c.key for c in found.by_fingerprint["f"]] == ["k1", "k2", "k3"]
    assert "g" not in found.by_fingerprint
    store.close()


def test_a_small_look_ahead_still_refreshes_every_source_in_order(
    tmp_path: Path, server: LocalServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    import aggregator.collect as collect_module

    for path, body in generate(7, 3).items():
        server.serve(path, body)
    # One fetch thread: a look-ahead of max(1, 4 x 1) = 4 sources, fewer than the 7 here.
    config_path = _config(tmp_path, server, "window", ("[fetch]", "max_workers = 1"))
    monkeypatch.setattr(collect_module, "IN_FLIGHT_MIN", 1)
    config = load_config(config_path)
    seen: list[str] = []
    report = refresh(config, force=True, on_result=lambda r: seen.append(r.source))
    assert [r.outcome for r in report.results] == ["new"] * 7
    assert seen == [s.name for s in config.sources]
    assert len(_records(config_path)) == 21
