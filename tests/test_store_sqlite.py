"""The SQLite store's own tests: its schema and migrations, the counts it keeps, and its
candidate index (recent sketch rows and folded ones answer alike)."""

from __future__ import annotations

import sqlite3
from collections.abc import Collection, Mapping
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from aggregator import dedup
from aggregator.errors import StorageError
from aggregator.models import (
    CandidateQuery,
    Candidates,
    Decision,
    Excerpt,
    Merge,
    Placement,
    SourceState,
    StoredEntry,
)
from aggregator.store.sqlite import MIGRATIONS, SCHEMA_VERSION, SQLiteStore, fingerprint_key
from tests.dedup_corpus import build, run_corpus, score
from tests.helpers import LONG, LONG_ZH, T0, entry_of, ex, put


def _rows(store: SQLiteStore, table: str) -> set[tuple[int, int]]:
    return set(store._db.execute(f"SELECT hash, copy FROM {table}").fetchall())


@pytest.mark.parametrize("fold", [1, 10**9], ids=["folded", "recent"])
def test_matches_are_found_in_either_table(tmp_path: Path, fold: int) -> None:
    store = SQLiteStore(tmp_path / "store.db", fold_sketches=fold)
    try:
        first = ex("a", LONG, guid="1")
        put(store, first)
        put(store, ex("c", LONG_ZH, guid="3"))
        held = _rows(store, "sketches" if fold == 1 else "recent_sketches")
        assert len(held) > 10 and not _rows(store, "recent_sketches" if fold == 1 else "sketches")
        cut = ex("b", LONG[:120] + "...", guid="2", at=1)
        result = put(store, cut)
        assert [p.rule for p in result.placements] == ["prefix"]
        assert entry_of(store, cut) == first.id
        query = CandidateQuery(hashes=frozenset(result.placements[0].sketch), limit=10)
        assert store.candidates(query).by_hash
    finally:
        store.close()


def test_an_updated_copy_leaves_no_old_sketch_row_in_either_table(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "store.db", fold_sketches=1)
    try:
        put(store, ex("a", LONG, guid="1"))  # folded into sketches
        store.fold_sketches = 10**9
        rewrite = put(store, ex("a", LONG_ZH, guid="1", at=1)).placements[0]  # the same copy
        assert rewrite.rule == "same" and rewrite.existing is not None
        assert rewrite.rewrites and rewrite.sketch
        copy, fingerprint = store._db.execute("SELECT rowid, fingerprint FROM copies").fetchone()
        assert _rows(store, "sketches") == set()  # the old text's rows, its fingerprint's too
        now_rows = {(h, copy) for h in (*rewrite.sketch, fingerprint_key(fingerprint))}
        assert _rows(store, "recent_sketches") == now_rows
        found = store.candidates(CandidateQuery(fingerprints=frozenset({fingerprint})))
        assert found.by_fingerprint[fingerprint][0].rowid == copy
        # Seen again unchanged: placed "same" without sketch hashes, and nothing moves.
        again = put(store, ex("a", LONG_ZH, guid="1", at=2)).placements[0]
        assert again.rule == "same" and again.sketch == ()
        assert _rows(store, "recent_sketches") == now_rows
    finally:
        store.close()


def test_the_corpus_dedups_alike_whenever_sketches_are_folded(tmp_path: Path) -> None:
    records = build()
    rows = []
    for fold in (1, 97, 10**9):
        outcome = run_corpus(tmp_path / f"{fold}.db", records, fold_sketches=fold)
        rows.append(score(outcome))
    assert rows[0] == rows[1] == rows[2]
    assert rows[0].false_merges == [] and rows[0].missed == []


def test_the_corpus_dedups_alike_in_one_transaction_or_many(tmp_path: Path) -> None:
    # Inside one write transaction the store reuses the candidate copies it has read; merges
    # and rewritten copies must not leave it answering with what they changed.
    records = build()
    apart = run_corpus(tmp_path / "apart.db", records)
    assert apart.entry_counts == apart.counted and len(apart.counted) > 3
    rows = [score(apart)]
    for group in (1, 7, 10**9):
        outcome = run_corpus(tmp_path / f"group-{group}.db", records, group=group)
        assert outcome.entry_of == apart.entry_of and outcome.rule_of == apart.rule_of
        assert outcome.entry_counts == outcome.counted  # merges included
        rows.append(score(outcome))
    assert rows[0] == rows[1] == rows[2] == rows[3]
    assert rows[0].false_merges == [] and rows[0].missed == []


@pytest.mark.parametrize("fold", [1, 10**9], ids=["folded", "recent"])
def test_a_crowded_hash_gives_its_newest_copies_up_to_the_limit(tmp_path: Path, fold: int) -> None:
    # Posts that open alike share a prefix key; the candidates of a hash are capped.
    store = SQLiteStore(tmp_path / "store.db", fold_sketches=fold)
    try:
        opening = "Weekly notes from the workshop, with everything that changed since then: "
        sketches = [
            put(store, ex(f"s{i}", opening + f"item {i} " * 12, guid=str(i), at=i))
            .placements[0]
            .sketch
            for i in range(6)
        ]
        shared = set.intersection(*(set(s) for s in sketches))
        assert shared  # the prefix key of the common opening
        rows = [r for (r,) in store._db.execute("SELECT rowid FROM copies ORDER BY rowid")]
        found = store.candidates(CandidateQuery(hashes=frozenset(shared), limit=4))
        for h in shared:
            assert sorted(c.rowid for c in found.by_hash[h]) == rows[-4:]
        wide = store.candidates(CandidateQuery(hashes=frozenset(sketches[0]), limit=10))
        assert {c.rowid for h in shared for c in wide.by_hash[h]} == set(rows)
    finally:
        store.close()


class _Asked:
    """A candidate view that notes each batch look-up dedup asks the store for."""

    def __init__(self, store: SQLiteStore) -> None:
        self.store = store
        self.asked: list[CandidateQuery] = []

    def candidates(self, query: CandidateQuery) -> Candidates:
        self.asked.append(query)
        return self.store.candidates(query)

    def entries(self, ids: Collection[str]) -> Mapping[str, StoredEntry]:
        return self.store.entries(ids)


OTHER_POSTS = (
    "Tide tables for the northern harbour are printed every spring by the port office, and "
    "the fishing cooperative pins a copy beside the ice machine so nobody sails out blind.",
    "Our reading group finished the long novel at last; the final chapters split the room "
    "between those who loved the ending and those who wanted the storm to sink everyone.",
)


def test_a_recrawl_looks_up_only_what_its_new_items_could_match(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "store.db")
    try:
        posts = [
            ex("a", text, guid=str(i), at=i) for i, text in enumerate((LONG, LONG_ZH, *OTHER_POSTS))
        ]
        put(store, *posts)
        cut = ex("a", LONG[:150] + "...", guid="new", at=9)  # a new item: LONG, truncated
        asked = _Asked(store)
        result = dedup.place([*posts, cut], asked)
        assert [p.rule for p in result.placements] == ["same"] * 4 + ["prefix"]
        assert result.placements[-1].entry_id == entry_of(store, posts[0])
        # The keys first; then the link, text and sketch hashes of the new item alone.
        keys, rest = asked.asked
        assert keys == CandidateQuery(keys=frozenset((e.source, e.key) for e in [*posts, cut]))
        assert rest.keys == frozenset() and rest.links == frozenset()
        assert rest.fingerprints == {cut.fingerprint}
        assert rest.hashes and rest.hashes <= set(result.placements[-1].sketch)
        # The same placements as with every value looked up at once.
        assert dedup.place([*posts, cut], store).placements == result.placements
        # A re-crawl with nothing new asks for the keys and nothing else.
        asked.asked.clear()
        again = dedup.place(posts, asked)
        assert [p.rule for p in again.placements] == ["same"] * 4
        assert len(asked.asked) == 1
    finally:
        store.close()


def _day(n: int | None) -> datetime | None:
    return None if n is None else T0 + timedelta(days=n)


def test_a_merged_entry_takes_the_earliest_published_and_the_latest_stated_date(
    tmp_path: Path,
) -> None:
    def dated(e: Excerpt, published: int | None, updated: int | None = None) -> Excerpt:
        return replace(e, published=_day(published), updated=_day(updated))

    def dates(store: SQLiteStore) -> tuple[datetime | None, datetime]:
        (entry,) = store.latest(10)
        return entry.published, entry.updated

    store = SQLiteStore(tmp_path / "store.db")
    try:
        put(store, dated(ex("a", LONG, guid="1"), 4))
        assert dates(store) == (_day(4), _day(4))
        # Another source states an earlier date and an update: both count.
        assert put(store, dated(ex("b", LONG, guid="2"), 2, 8)).placements[0].rule == "text"
        assert dates(store) == (_day(2), _day(8))
        # An undated copy joins without moving them.
        assert put(store, ex("c", LONG, guid="3", at=1)).placements[0].rule == "text"
        assert dates(store) == (_day(2), _day(8))
        # A copy whose text changed marks the entry updated when it was noticed, if later.
        edited = dated(ex("a", LONG + " One more line.", guid="1", at=24 * 30), 4)
        assert put(store, edited).placements[0].rule == "same"
        assert dates(store) == (_day(2), _day(30))
    finally:
        store.close()


def test_new_store_is_migrated_to_the_current_version(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "a.db")
    store.close()
    db = sqlite3.connect(tmp_path / "a.db")
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_store_from_a_newer_program_is_refused(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "a.db")
    db.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(StorageError, match="newer than this program"):
        SQLiteStore(tmp_path / "a.db")


def test_state_round_trips(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    store = SQLiteStore(tmp_path / "a.db")
    when = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
    state = SourceState(
        name="x", url="http://x.test/", etag='W/"1"', last_fetch=when, error_streak=2
    )
    store.save_states([state])
    assert store.get_state("x") == state
    assert store.get_state("missing") is None
    store.close()


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
