"""The PostgreSQL store's own tests: its migrations, its errors, its write lock, moving a SQLite
store into it, and the commands run against it. (What every store must do is in
test_store_contract.py, which runs against PostgreSQL too.)"""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from aggregator.cli import main
from aggregator.config import Config, load_config
from aggregator.errors import StorageError
from aggregator.models import CandidateQuery, SourceState
from aggregator.refresh import emit_outputs, refresh
from aggregator.store import open_store
from aggregator.store.postgres import MIGRATIONS, SCHEMA_VERSION, PostgresStore
from aggregator.store.sqlite import SCHEMA_VERSION as SQLITE_VERSION
from tests.helpers import (
    PG,
    PG_REACHABLE,
    PG_SKIP,
    LocalServer,
    generate,
    load_snapshot,
    rss_posts,
    run_python,
    serving_process,
    write_config,
)

pytestmark = pytest.mark.skipif(not PG_REACHABLE, reason=PG_SKIP)

LATER = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
OUTPUTS = ("feed.atom", "feed.json", "index.html", "snapshot.json")


def _at_version(url: str, version: int) -> None:
    """Lay out the schema as it was at `version`, as an older aggregator left it."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE schema_version (version integer NOT NULL)")
        conn.execute("INSERT INTO schema_version (version) VALUES (%s)", (version,))
        for script in MIGRATIONS[:version]:
            conn.execute(script)  # type: ignore[arg-type]


def _scalar(url: str, sql: str) -> object:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(sql).fetchone()  # type: ignore[arg-type]
    assert row is not None
    return row[0]


def test_an_empty_database_gets_the_whole_schema_once() -> None:
    url = PG.fresh(schema=False)
    with PostgresStore(url) as store:
        assert (store.migrated_from, store.schema_version) == (0, SCHEMA_VERSION)
        assert store.latest(5) == [] and store.states() == []
    with PostgresStore(url) as again:
        assert again.migrated_from == SCHEMA_VERSION  # nothing left to do
    assert _scalar(url, "SELECT count(*) FROM schema_version") == 1


@pytest.mark.parametrize("version", range(1, SCHEMA_VERSION))
def test_every_earlier_schema_is_brought_up_to_date(version: int) -> None:
    url = PG.fresh(schema=False)
    _at_version(url, version)
    import psycopg

    # A post stored by that version: an entry with one copy and its candidate-index hashes.
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO entries (id, first_seen, updated, sort_date, seq, representative) "
            "VALUES ('urn:old', now(), now(), now(), 1, 1)"
        )
        conn.execute(
            "INSERT INTO copies (id, source, key, entry_id, rule, title, first_seen, authors, "
            "categories, excerpt, truncated, fingerprint, content_hash, position, text, sketch) "
            "VALUES (1, 'old', 'k', 'urn:old', 'new', 'Old post', now(), '{}', '{}', 'x', "
            "false, 'fp', 'h', 0, 'x', '{41,42}')"
        )
        if version >= 2:  # and what the store kept beside it from version 2 on
            conn.execute("INSERT INTO bands (hash, copy) VALUES (41, 1), (42, 1)")
            conn.execute("INSERT INTO source_counts (source, entries) VALUES ('old', 1)")
    with PostgresStore(url) as store:
        assert (store.migrated_from, store.schema_version) == (version, SCHEMA_VERSION)
        found = store.candidates(CandidateQuery(hashes=frozenset({41, 42, 43})))
        assert {h: [c.entry_id for c in cs] for h, cs in found.by_hash.items()} == {
            41: ["urn:old"],
            42: ["urn:old"],
        }
        assert store.entry_counts() == {"old": 1}
        assert [e.title for e in store.latest(5)] == ["Old post"]


def test_a_newer_schema_is_refused() -> None:
    url = PG.fresh()
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("UPDATE schema_version SET version = %s", (SCHEMA_VERSION + 1,))
    with pytest.raises(StorageError, match="newer than this program understands"):
        PostgresStore(url)


def test_an_unreachable_database_is_one_clear_error_without_its_password() -> None:
    url = "postgresql://agg:s3cret@127.0.0.1:9/feeds"
    with pytest.raises(StorageError) as exc:
        PostgresStore(url, timeout=5)
    message = str(exc.value)
    assert message.startswith("postgresql://agg@127.0.0.1:9/feeds: cannot open the store:")
    assert "s3cret" not in message


def test_writers_take_turns() -> None:
    """A second writer's transaction starts only once the first one has committed: what dedup
    read inside a transaction is still what is stored when its decision is written."""
    url = PG.fresh()
    with PostgresStore(url) as first, PostgresStore(url) as second:
        started = threading.Event()
        seen: list[SourceState | None] = []

        def write_second() -> None:
            started.set()
            with second.transaction():
                seen.append(second.get_state("a"))

        with first.transaction():
            first.save_states([SourceState(name="a", etag='"1"')])
            thread = threading.Thread(target=write_second)
            thread.start()
            started.wait()
            # The other writer waits on the lock (PostgreSQL shows its request not granted).
            import psycopg

            with psycopg.connect(url, autocommit=True) as watch:
                waiting = (
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
                )
                while watch.execute(waiting).fetchone() != (1,):
                    assert thread.is_alive()
            first.save_states([SourceState(name="a", etag='"2"')])
        thread.join()
    assert seen == [SourceState(name="a", etag='"2"')]


# --- the commands on PostgreSQL -------------------------------------------------------------


def _configs(
    tmp_path: Path, server: LocalServer, feeds: dict[str, bytes], *, schema: bool = True
) -> tuple[Config, Config]:
    """The same sources into a SQLite store and into a new PostgreSQL database (with the
    schema, or empty), each with an output folder of its own."""
    for path, body in feeds.items():
        server.serve(path, body, "application/xml")
    sources = "".join(
        f'[[sources]]\nname = "{path.strip("/").split(".")[0]}"\nurl = "{server.url(path)}"\n'
        for path in sorted(feeds)
    )
    head = '[feed]\ntitle = "Merged"\nlink = "https://merged.example/"\n'
    made = []
    for kind, store in (("sqlite", 'path = "s.db"'), ("pg", f'url = "{PG.fresh(schema=schema)}"')):
        folder = tmp_path / kind
        folder.mkdir()
        made.append(
            load_config(
                write_config(folder, f'{head}[output]\ndir = "out"\n[store]\n{store}\n{sources}')
            )
        )
    return made[0], made[1]


def _outputs(config: Config) -> dict[str, bytes]:
    return {name: (config.output_dir / name).read_bytes() for name in OUTPUTS}


def _as_refreshed(config: Config) -> dict[str, object]:
    """The outputs of a refresh, but for each source's next due time (which has random jitter,
    so that sources spread out), left out of the snapshot; index.html shows them too."""
    outputs: dict[str, object] = dict(_outputs(config))
    del outputs["index.html"]
    snapshot = json.loads(outputs.pop("snapshot.json"))  # type: ignore[arg-type]
    for source in snapshot["sources"]:
        source.pop("next_due")
    outputs["snapshot"] = snapshot
    return outputs


def test_a_sqlite_store_moves_without_a_changed_byte(tmp_path: Path, server: LocalServer) -> None:
    sqlite, pg = _configs(tmp_path, server, generate(4, 30))
    refresh(sqlite, force=True)
    before = _outputs(sqlite)
    merged = [e for e in load_snapshot(sqlite.output_dir / "snapshot.json")["entries"]]
    assert any(len(e["sources"]) > 1 for e in merged)  # the move carries merges

    assert main(["migrate", "-q", "-c", str(pg.path), "--from-sqlite", str(sqlite.store_path)]) == 0
    emit_outputs(pg)
    assert _outputs(pg) == before
    with open_store(sqlite) as a, open_store(pg) as b:
        assert sorted(b.states(), key=lambda st: st.name) == sorted(
            a.states(), key=lambda st: st.name
        )
        assert b.clusters() == a.clusters() and b.entry_counts() == a.entry_counts()
        assert b.latest(1000) == a.latest(1000)
        ids = [e.id for e in a.latest(1000)]
        assert b.entries(ids) == a.entries(ids)  # with every copy's number
    # Moving twice would duplicate everything: refused, and nothing changes.
    assert main(["migrate", "-q", "-c", str(pg.path), "--from-sqlite", str(sqlite.store_path)]) == 3
    emit_outputs(pg)
    assert _outputs(pg) == before

    # The next refreshes go on from the same state: nothing new from unchanged feeds, and a new
    # post in every feed placed alike, so the two stores keep writing the same bytes.
    # (Both at the same clock: the snapshot says when the sources were fetched.)
    for config in (sqlite, pg):
        refresh(config, force=True, clock=lambda: LATER)
    assert _as_refreshed(pg) == _as_refreshed(sqlite)
    unchanged = _outputs(pg)
    assert unchanged["feed.atom"] == before["feed.atom"]
    for path, body in generate(4, 30, newer=1).items():
        server.serve(path, body, "application/xml")
    for config in (sqlite, pg):
        refresh(config, force=True, clock=lambda: LATER + timedelta(hours=1))
    assert _as_refreshed(pg) == _as_refreshed(sqlite)
    assert _outputs(pg)["feed.atom"] != unchanged["feed.atom"]
    with open_store(sqlite) as a, open_store(pg) as b:
        assert a.entry_counts() == b.entry_counts()
        assert a.clusters() == b.clusters()


def test_migrate_creates_and_upgrades_either_store(
    tmp_path: Path, server: LocalServer, capsys: pytest.CaptureFixture[str]
) -> None:
    sqlite, pg = _configs(tmp_path, server, {}, schema=False)
    for config in (sqlite, pg):
        assert main(["migrate", "-c", str(config.path)]) == 0
        assert main(["migrate", "-c", str(config.path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"{sqlite.store_path}: schema version {SQLITE_VERSION}, created"
    assert lines[1] == f"{sqlite.store_path}: schema version {SQLITE_VERSION}, up to date"
    assert lines[2].endswith(f": schema version {SCHEMA_VERSION}, created")
    assert lines[3].endswith(
        ": job queue: job queue schema created (procrastinate); worker tables at version 1 (from 0)"
    )
    assert lines[4].endswith(f": schema version {SCHEMA_VERSION}, up to date")
    assert lines[5].endswith(": job queue up to date")
    assert sqlite.store_path.is_file()
    assert main(["migrate", "-c", str(sqlite.path), "--from-sqlite", "x.db"]) == 2
    assert "[store] url names no PostgreSQL database" in capsys.readouterr().err
    missing = tmp_path / "missing.db"
    assert main(["migrate", "-q", "-c", str(pg.path), "--from-sqlite", str(missing)]) == 3
    assert capsys.readouterr().err == f"aggregator: {missing}: no SQLite store there\n"


def test_the_commands_read_and_write_a_postgresql_store(
    tmp_path: Path, server: LocalServer, capsys: pytest.CaptureFixture[str]
) -> None:
    sqlite, pg = _configs(tmp_path, server, generate(3, 20))
    # refresh as a process of its own, then the reading commands
    run = run_python("-m", "aggregator", "refresh", "-q", "-c", str(pg.path))
    assert run.returncode == 0, run.stderr
    refresh(sqlite, force=True)
    for name in ("feed.atom", "feed.json"):
        assert (pg.output_dir / name).read_bytes() == (sqlite.output_dir / name).read_bytes()
    # What the reading commands print of the stores (fetch times aside) is the same.
    for command in (["latest", "-n", "3"], ["dupes"]):
        assert main([*command, "-c", str(sqlite.path)]) == 0
        expected = capsys.readouterr().out
        assert main([*command, "-c", str(pg.path)]) == 0
        assert capsys.readouterr().out == expected and "feed0" in expected
    assert main(["sources", "-c", str(pg.path)]) == 0
    rows = [line.split("│") for line in capsys.readouterr().out.splitlines() if "│" in line]
    shown = {row[1].strip(): [c.strip() for c in row[2:-1]] for row in rows}
    with open_store(sqlite) as store:
        counts = store.entry_counts()
    assert {name: (row[2], row[5]) for name, row in shown.items() if name != "source"} == {
        name: ("ok", str(n)) for name, n in counts.items()
    }
    with open_store(pg) as store:
        assert sum(store.entry_counts().values()) > 20


def test_serve_answers_from_the_outputs_of_a_postgresql_store(
    tmp_path: Path, server: LocalServer
) -> None:
    import urllib.request

    _, pg = _configs(tmp_path, server, generate(2, 5))
    assert main(["refresh", "-q", "-c", str(pg.path)]) == 0
    with serving_process(pg) as url, urllib.request.urlopen(url + "/feed.atom", timeout=10) as got:
        assert got.read() == (pg.output_dir / "feed.atom").read_bytes()


def test_a_store_reconnects_after_its_connections_were_cut() -> None:
    url = PG.fresh()
    with PostgresStore(url) as store:
        store.save_states([SourceState(name="a", etag='"1"')])
        name = url.rsplit("/", 1)[1]
        import psycopg

        with psycopg.connect(url, autocommit=True) as admin:
            cut = admin.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> pg_backend_pid()",
                (name,),
            ).fetchone()
        assert cut is not None and cut[0] >= 1
        assert store.get_state("a") == SourceState(name="a", etag='"1"')
        store.save_states([SourceState(name="a", etag='"2"')])
        assert store.get_state("a") == SourceState(name="a", etag='"2"')


def test_removing_a_source_from_either_store_writes_the_same_outputs(
    tmp_path: Path, server: LocalServer, capsys: pytest.CaptureFixture[str]
) -> None:
    sqlite, pg = _configs(tmp_path, server, generate(3, 20))
    for config in (sqlite, pg):
        refresh(config, force=True, clock=lambda: LATER)
        assert main(["remove", "-q", "-c", str(config.path), "feed1"]) == 0
    assert _as_refreshed(pg) == _as_refreshed(sqlite)
    with open_store(pg) as store:
        assert set(store.entry_counts()) == {"feed0", "feed2"}
        assert store.get_state("feed1") is None


def test_a_refresh_against_an_unreachable_database_stops_with_one_line(
    tmp_path: Path, server: LocalServer, capsys: pytest.CaptureFixture[str]
) -> None:
    feed = server.serve("/f.xml", rss_posts(2))
    path = write_config(
        tmp_path,
        '[feed]\ntitle = "x"\n[store]\nurl = "postgresql://agg:s3cret@127.0.0.1:9/feeds"\n'
        f'[[sources]]\nname = "f"\nurl = "{feed}"\n',
    )
    assert main(["refresh", "-q", "-c", str(path)]) == 3
    err = capsys.readouterr().err
    assert err.startswith("aggregator: postgresql://agg@127.0.0.1:9/feeds: cannot open the store")
    assert len(err.splitlines()) == 1 and "s3cret" not in err
    assert not (tmp_path / "public").exists()  # nothing written without the store


def test_two_refreshes_at_once_store_each_post_once(tmp_path: Path, server: LocalServer) -> None:
    """Two processes refreshing the same sources into one database take turns at the write
    lock: the second finds what the first stored, and no post is stored twice."""
    import os
    import subprocess
    import sys

    from tests.helpers import ROOT

    sqlite, pg = _configs(tmp_path, server, generate(4, 30))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    runs = [
        subprocess.Popen(
            [sys.executable, "-m", "aggregator", "refresh", "--all", "-q", "-c", str(pg.path)],
            cwd=ROOT,
            env=env,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    for run in runs:
        _, err = run.communicate(timeout=120)
        assert run.returncode == 0, err
    refresh(sqlite, force=True)
    with open_store(sqlite) as a, open_store(pg) as b:
        assert b.entry_counts() == a.entry_counts()
        assert [e.id for e in b.latest(1000)] == [e.id for e in a.latest(1000)]
        # Which copies were merged into which entry (which copy came first, and so which says
        # "new", follows each run's clock and the order the sources finished in).
        merged = [
            {c.entry_id: sorted((x.source, x.key) for x in c.copies) for c in cs}
            for cs in (a.clusters(), b.clusters())
        ]
        assert merged[0] == merged[1] and merged[0]


def test_opening_and_reading_a_store_do_not_wait_for_a_writer() -> None:
    url = PG.fresh()
    with PostgresStore(url) as writer:
        writer.save_states([SourceState(name="a", etag='"1"')])
        with writer.transaction():
            writer.save_states([SourceState(name="a", etag='"2"')])
            # The write lock is held (by this thread, on another connection): a reader opens
            # the store and reads what is committed without waiting for it.
            with PostgresStore(url) as reader:
                assert reader.get_state("a") == SourceState(name="a", etag='"1"')
        assert writer.get_state("a") == SourceState(name="a", etag='"2"')


def test_the_states_of_some_sources_are_read_alone() -> None:
    with PostgresStore(PG.fresh()) as store:
        store.save_states([SourceState(name=n, etag=f'"{n}"') for n in ("a", "b", "c")])
        assert store.states(["c", "a", "unknown"]) == [
            SourceState(name="a", etag='"a"'),
            SourceState(name="c", etag='"c"'),
        ]
        assert store.states([]) == []
        assert [st.name for st in store.states()] == ["a", "b", "c"]
