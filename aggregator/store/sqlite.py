"""The SQLite store: WAL, a busy timeout, `BEGIN IMMEDIATE` writes, numbered migrations.

Tables:
- `sources`: one row per source name, its SourceState.
- `entries`: one row per merged post; its id is minted at first sight and never changes.
- `copies`: one row per (source, key): the post as one source shows it, pointing at its entry.
- `sketches`: the dedup candidate index: prefix keys and MinHash LSH bands of each copy, so
  that finding near-duplicates costs a few index look-ups, not a pass over the store.
- `recent_sketches`: the same for the copies written lately. Sketch hashes are random, so each
  row written straight into a large `sketches` dirtied a page of its own, and every commit
  wrote them all. Rows gather in this smaller table instead and move into `sketches` in index
  order, many thousands at a time (FOLD_SKETCHES); look-ups read both tables. The bound keeps
  recent_sketches small, so that the rows of a refresh's new copies land on few of its pages.
  `sketch_counts` keeps the number of recent rows (as written: a rewritten copy's deleted rows
  are not subtracted, which only moves them a little sooner).
  Neither table has an index by copy: a copy keeps the hashes of its own rows (`copies.sketch`,
  packed signed 64-bit integers), and a rewritten copy's old rows are deleted by them. (A copy
  stored before that column existed has none: its old rows stay, and only ever offer dedup
  a candidate that its comparison of the texts then rejects.)
- The same two tables also hold one row per copy for its fingerprint (`fingerprint_key`), in
  place of an index of `copies` by fingerprint (fingerprints are random: such an index
  dirties a page of its own for nearly every new copy). The rows find the copies that may
  have a fingerprint; `copies.fingerprint` itself decides.
- `entries.representative`: the copy that gives the entry its title, link, authors, excerpt
  and HTML content, as dedup chose it.
- `archived`: the sealed archive pages of each output (RFC 5005): for each entry in a page, the
  page and its position there. An entry is in at most one page of an output. `archive_pages`
  counts each output's pages (a page all of whose entries were pruned still counts).
- `output_reads`: what `output_entries` last answered for each output (its filter, the newest
  entry and copy then, the ids), so that the next call judges only the entries that are new or
  gained a copy since, not the whole store.

The store decides nothing about posts: what dedup decided (`Decision`) is written as it is.
"""

from __future__ import annotations

import json
import sqlite3
import time
from array import array
from collections import Counter
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from hashlib import blake2b
from operator import itemgetter
from pathlib import Path
from types import TracebackType
from typing import Self

from aggregator.errors import StorageError
from aggregator.models import (
    CandidateQuery,
    Candidates,
    Cluster,
    ClusterCopy,
    CopyRank,
    Decision,
    Entry,
    EntryMatch,
    Placement,
    Removal,
    SourceState,
    StoredCopy,
    StoredEntry,
)
from aggregator.store.rows import (
    CONTENT_COLUMNS,
    DATE_STATE_FIELDS,
    STATE_FIELDS,
    check_seal,
    content_values,
    created_entries,
    entry_from,
    gained_entries,
)

SCHEMA_VERSION = 14

# Each migration takes the schema from version i to i + 1; never edit a released one.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE sources (
        name TEXT PRIMARY KEY,
        url TEXT, etag TEXT, last_modified TEXT, body_hash TEXT, effective_url TEXT,
        last_status TEXT, last_fetch TEXT, last_success TEXT, error TEXT,
        error_streak INTEGER NOT NULL DEFAULT 0, next_due TEXT,
        redirect_url TEXT, redirect_streak INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE entries (
        id TEXT PRIMARY KEY,
        first_seen TEXT NOT NULL,
        published TEXT,
        updated TEXT NOT NULL,
        sort_date TEXT NOT NULL,
        seq INTEGER NOT NULL,
        backfill INTEGER NOT NULL DEFAULT 0,
        changed TEXT
    );
    CREATE INDEX entries_order ON entries (sort_date DESC, seq DESC);
    CREATE TABLE copies (
        rowid INTEGER PRIMARY KEY,
        source TEXT NOT NULL,
        key TEXT NOT NULL,
        entry_id TEXT NOT NULL REFERENCES entries (id),
        rule TEXT NOT NULL,
        score REAL,
        guid TEXT, title TEXT NOT NULL, link TEXT, link_key TEXT,
        published TEXT, updated TEXT, first_seen TEXT NOT NULL,
        authors TEXT NOT NULL, categories TEXT NOT NULL,
        excerpt TEXT NOT NULL, truncated INTEGER NOT NULL,
        fingerprint TEXT NOT NULL, content_hash TEXT NOT NULL,
        position INTEGER NOT NULL, text TEXT NOT NULL,
        UNIQUE (source, key)
    );
    CREATE INDEX copies_link ON copies (link_key) WHERE link_key IS NOT NULL;
    CREATE INDEX copies_fingerprint ON copies (fingerprint);
    CREATE INDEX copies_entry ON copies (entry_id);
    """,
    # 2: the feed's own refresh hint (<ttl>, sy:updatePeriod), kept for 304 responses.
    """
    ALTER TABLE sources ADD COLUMN ttl_seconds INTEGER;
    """,
    # 3: the dedup candidate index (prefix keys and MinHash LSH bands of each copy), and
    # entries by sequence number so that the next one is not found by a scan.
    """
    CREATE TABLE sketches (
        hash INTEGER NOT NULL,
        copy INTEGER NOT NULL,
        PRIMARY KEY (hash, copy)
    ) WITHOUT ROWID;
    CREATE INDEX sketches_copy ON sketches (copy);
    CREATE INDEX entries_seq ON entries (seq);
    """,
    # 4: the number of entries per source, kept up to date by triggers, so that writing the
    # outputs does not count through the whole store.
    """
    CREATE TABLE source_counts (
        source TEXT PRIMARY KEY,
        entries INTEGER NOT NULL
    );
    INSERT INTO source_counts (source, entries)
        SELECT source, count(DISTINCT entry_id) FROM copies GROUP BY source;
    CREATE TRIGGER source_counts_insert AFTER INSERT ON copies
    WHEN NOT EXISTS (
        SELECT 1 FROM copies
        WHERE entry_id = NEW.entry_id AND source = NEW.source AND rowid != NEW.rowid
    )
    BEGIN
        INSERT INTO source_counts (source, entries) VALUES (NEW.source, 1)
        ON CONFLICT (source) DO UPDATE SET entries = entries + 1;
    END;
    CREATE TRIGGER source_counts_delete AFTER DELETE ON copies
    WHEN NOT EXISTS (
        SELECT 1 FROM copies WHERE entry_id = OLD.entry_id AND source = OLD.source
    )
    BEGIN
        UPDATE source_counts SET entries = entries - 1 WHERE source = OLD.source;
    END;
    CREATE TRIGGER source_counts_update_old AFTER UPDATE OF source, entry_id ON copies
    WHEN (OLD.source != NEW.source OR OLD.entry_id != NEW.entry_id) AND NOT EXISTS (
        SELECT 1 FROM copies WHERE entry_id = OLD.entry_id AND source = OLD.source
    )
    BEGIN
        UPDATE source_counts SET entries = entries - 1 WHERE source = OLD.source;
    END;
    CREATE TRIGGER source_counts_update_new AFTER UPDATE OF source, entry_id ON copies
    WHEN (OLD.source != NEW.source OR OLD.entry_id != NEW.entry_id) AND NOT EXISTS (
        SELECT 1 FROM copies
        WHERE entry_id = NEW.entry_id AND source = NEW.source AND rowid != NEW.rowid
    )
    BEGIN
        INSERT INTO source_counts (source, entries) VALUES (NEW.source, 1)
        ON CONFLICT (source) DO UPDATE SET entries = entries + 1;
    END;
    """,
    # 5: sketch rows of recent copies, kept apart until they are moved into `sketches` in
    # bulk (see the module docstring).
    """
    CREATE TABLE recent_sketches (
        hash INTEGER NOT NULL,
        copy INTEGER NOT NULL,
        PRIMARY KEY (hash, copy)
    ) WITHOUT ROWID;
    CREATE INDEX recent_sketches_copy ON recent_sketches (copy);
    """,
    # 6: no index of sketch rows by copy (see the module docstring): it was one more random
    # write for every row of the candidate index.
    """
    DROP INDEX sketches_copy;
    DROP INDEX recent_sketches_copy;
    CREATE TABLE sketch_counts (recent INTEGER NOT NULL);
    INSERT INTO sketch_counts (recent) SELECT count(*) FROM recent_sketches;
    """,
    # 7: new copies are counted into source_counts by the store as it inserts them, a batch at
    # a time (see SQLiteStore._count_new): the trigger's look-up for every inserted row was a
    # quarter of the cost of storing a copy. Updates and deletes (rare) keep their triggers.
    """
    DROP TRIGGER source_counts_insert;
    """,
    # 8: copies by fingerprint through rows of the candidate index, not an index of copies
    # (see the module docstring); fingerprint_key is a function the store defines.
    """
    INSERT OR IGNORE INTO sketches (hash, copy)
        SELECT fingerprint_key(fingerprint), rowid FROM copies ORDER BY 1, 2;
    DROP INDEX copies_fingerprint;
    """,
    # 9: each copy's own candidate-index hashes, and each entry's representative copy (chosen
    # by dedup from now on; for the entries stored so far, by the rule dedup applies: the
    # longest untruncated excerpt, else the longest, the copy seen first on a tie).
    """
    ALTER TABLE copies ADD COLUMN sketch BLOB;
    ALTER TABLE entries ADD COLUMN representative INTEGER;
    UPDATE entries SET representative = (
        SELECT rowid FROM copies c WHERE c.entry_id = entries.id
        ORDER BY c.truncated, length(c.excerpt) DESC, c.first_seen, c.rowid LIMIT 1
    );
    """,
    # 10: each source's own title and home page, from its last parse (shown beside its name).
    """
    ALTER TABLE sources ADD COLUMN feed_title TEXT;
    ALTER TABLE sources ADD COLUMN site_link TEXT;
    """,
    # 11: the entry selector auto mode settled on for a page, to notice when the page changes.
    """
    ALTER TABLE sources ADD COLUMN page_entry TEXT;
    """,
    # 12: each copy's source HTML (for full content), and more of what each source's own
    # document says about itself (its id, author and last update, for atom:source).
    """
    ALTER TABLE copies ADD COLUMN html TEXT;
    ALTER TABLE sources ADD COLUMN feed_id TEXT;
    ALTER TABLE sources ADD COLUMN feed_author TEXT;
    ALTER TABLE sources ADD COLUMN feed_updated TEXT;
    """,
    # 13: each source's survivable problems of its last read (a JSON list of strings), and the
    # host of each copy's source's own site, which dedup reads to find the original's copy
    # (unknown for the copies stored so far).
    """
    ALTER TABLE sources ADD COLUMN warnings TEXT NOT NULL DEFAULT '[]';
    ALTER TABLE copies ADD COLUMN site_host TEXT;
    """,
    # 14: the sealed archive pages of each output (RFC 5005): which entries, in which order;
    # an entry deleted (pruned, or its only source removed) leaves its page. And what
    # output_entries last answered for each output.
    """
    CREATE TABLE archived (
        output TEXT NOT NULL,
        entry_id TEXT NOT NULL,
        page INTEGER NOT NULL,
        position INTEGER NOT NULL,
        PRIMARY KEY (output, entry_id)
    ) WITHOUT ROWID;
    CREATE INDEX archived_page ON archived (output, page, position);
    CREATE INDEX archived_entry ON archived (entry_id);
    CREATE TABLE archive_pages (
        output TEXT PRIMARY KEY,
        pages INTEGER NOT NULL
    );
    CREATE TRIGGER archived_entry_deleted AFTER DELETE ON entries BEGIN
        DELETE FROM archived WHERE entry_id = old.id;
    END;
    CREATE TABLE output_reads (
        output TEXT PRIMARY KEY,
        match TEXT NOT NULL,
        seq INTEGER NOT NULL,
        copy INTEGER NOT NULL,
        answer TEXT NOT NULL
    );
    """,
)

# recent_sketches is moved into sketches once it holds this many rows (about 12 per copy):
# small enough that recent_sketches stays in the page cache and a refresh's new rows dirty few
# of its pages, large enough that each page of sketches is written once for many rows. A move
# writes most pages of sketches, so its cost grows with the store (bench/README.md).
FOLD_SKETCHES = 300_000

# Candidate copies kept by one write transaction, at most (about 2 KB each).
SEEN_COPIES = 20_000

_STATE_FIELDS = STATE_FIELDS
_DATE_STATE_FIELDS = DATE_STATE_FIELDS
_SAVE_STATE = (
    f"INSERT INTO sources (name, {', '.join(_STATE_FIELDS)}) "
    f"VALUES (?, {', '.join('?' for _ in _STATE_FIELDS)}) "
    f"ON CONFLICT (name) DO UPDATE SET {', '.join(f'{f} = excluded.{f}' for f in _STATE_FIELDS)}"
)
# The columns of `entries` besides its id.
_ENTRY_FIELDS = "first_seen, published, updated, sort_date, seq, backfill, changed, representative"
_COPY_COLUMNS = "rowid, source, key, entry_id, content_hash, link_key, truncated, text, title"


# Sorts below every real date: undated back-catalogue from a source's first crawl.
_BACKFILL = "0001-01-01T00:00:00.000000+00:00"


def iso(dt: datetime | None) -> str | None:
    """A datetime as fixed-width UTC text, so that text order is time order."""
    if dt is None:
        return None
    if dt.tzinfo is UTC and dt.year >= 1000:  # the common case, without strftime
        return dt.isoformat(timespec="microseconds")
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f+00:00")


def _state_value(state: SourceState, field: str) -> object:
    """A SourceState field as its `sources` column holds it."""
    value = getattr(state, field)
    if field in _DATE_STATE_FIELDS:
        return iso(value)
    if field == "warnings":
        return json.dumps(list(value), ensure_ascii=False)
    return value


def _statements(script: str) -> Iterator[str]:
    """The statements of a migration script; a trigger body's semicolons do not split it."""
    pending = ""
    for piece in script.split(";"):
        pending += piece + ";"
        if sqlite3.complete_statement(pending):
            if pending.strip(" \n;"):
                yield pending
            pending = ""
    if pending.strip(" \n;"):
        yield pending


def from_iso(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


def _from_iso(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _casefold(value: str | None) -> str | None:
    return value.casefold() if isinstance(value, str) else None


def fingerprint_key(fingerprint: str) -> int:
    """The candidate-index hash under which a copy's fingerprint is found: a signed 64-bit
    hash. It shares the index with dedup's hashes; a collision only finds a copy whose
    fingerprint then does not match."""
    digest = blake2b(("f\x00" + fingerprint).encode("utf-8", "surrogatepass"), digest_size=8)
    return int.from_bytes(digest.digest(), "big", signed=True)


def _packed(hashes: Sequence[int]) -> bytes:
    """A copy's candidate-index hashes as stored in copies.sketch."""
    return array("q", hashes).tobytes()


def _unpacked(blob: bytes | None) -> list[int]:
    values = array("q")
    if blob:
        values.frombytes(blob)
    return values.tolist()


# The candidate index: the main table and the recent rows (see the module docstring).
_SKETCH_TABLES = ("sketches", "recent_sketches")


def _indexed(columns: str, wanted: str, *, distinct: bool = False) -> str:
    """A compound SELECT of `columns` over the rows of both candidate-index tables whose hash
    is IN `wanted`, the name of a table of values (a WITH clause of the query)."""
    union = " UNION " if distinct else " UNION ALL "
    return union.join(f"SELECT {columns} FROM {t} WHERE hash IN {wanted}" for t in _SKETCH_TABLES)


def _json_list(values: Collection[object]) -> str:
    """Values as a JSON array: a column's list (authors, categories), or the values of a
    look-up, read back with json_each."""
    return json.dumps(list(values), ensure_ascii=False) if values else "[]"


_CONTENT_COLUMNS = CONTENT_COLUMNS
_INSERT_COPY = (
    "INSERT INTO copies (rowid, source, key, entry_id, rule, score, guid, first_seen, sketch, "
    + ", ".join(_CONTENT_COLUMNS)
    + ") VALUES ("
    + ", ".join("?" * (9 + len(_CONTENT_COLUMNS)))
    + ")"
)
_UPDATE_COPY = (
    "UPDATE copies SET key = ?, guid = ?, sketch = ?, "
    + ", ".join(f"{c} = ?" for c in _CONTENT_COLUMNS)
    + " WHERE rowid = ?"
)


def _copy_row(rowid: int, p: Placement, first_seen: str | None) -> tuple[object, ...]:
    """The values of _INSERT_COPY for a new copy."""
    e = p.excerpt
    return (rowid, e.source, e.key, p.entry_id, p.rule, p.score, e.guid, first_seen,
            _packed(p.sketch), *content_values(e, iso, _json_list))  # fmt: skip


class SQLiteStore:
    """The default Store. One instance per thread; several processes may share the file."""

    def __init__(
        self, path: str | Path, *, timeout: float = 30.0, fold_sketches: int = FOLD_SKETCHES
    ) -> None:
        self.path = Path(path)
        self.fold_sketches = fold_sketches  # see FOLD_SKETCHES
        # Candidate copies read in the current write transaction, by row, and their rows by
        # entry: valid while the write lock is held, updated as this store rewrites a copy or
        # moves copies to another entry, forgotten when the transaction or a savepoint ends.
        self._seen: dict[int, StoredCopy] = {}
        self._seen_by_entry: dict[str, set[int]] = {}
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(
                self.path, timeout=timeout, isolation_level=None, check_same_thread=False
            )
            self._wal_mode(timeout)
            self._db.execute("PRAGMA synchronous=NORMAL")
            # 64 MiB of page cache (the default is 2 MiB): index pages of a large store stay in
            # memory instead of being read back for nearly every insert.
            self._db.execute("PRAGMA cache_size=-65536")
            self._db.execute(f"PRAGMA busy_timeout={int(timeout * 1000)}")
            self._db.execute("PRAGMA foreign_keys=ON")
            # Checkpoint the WAL into the database every 10,000 pages (40 MiB), not the default
            # 1,000: a refresh of 1,000 new copies dirties a few thousand pages of the indexes,
            # and the default made nearly every commit also copy all of them into the file and
            # sync it. Pages rewritten by several refreshes between checkpoints are copied once.
            self._db.execute("PRAGMA wal_autocheckpoint=10000")
            self._db.create_function("fingerprint_key", 1, fingerprint_key, deterministic=True)
            self._db.create_function("casefold", 1, _casefold, deterministic=True)
            self._migrate()
        except sqlite3.Error as exc:
            raise StorageError(f"{self.path}: cannot open the store: {exc}") from None
        except OSError as exc:
            raise StorageError(f"{self.path}: cannot create the store: {exc.strerror}") from None

    def _wal_mode(self, timeout: float) -> None:
        """Switch to (or confirm) WAL journaling. SQLite answers "database is locked" at once,
        without waiting out the busy timeout, while another process holds the file to set up
        or tear down its WAL (creating the store, or closing the last connection to it): that
        is retried until the timeout."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self._db.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.01)

    # --- schema ---------------------------------------------------------------------------

    def _migrate(self) -> None:
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise StorageError(
                f"{self.path}: store has schema version {version}, newer than this program "
                f"understands ({SCHEMA_VERSION}); upgrade aggregator"
            )
        while version < SCHEMA_VERSION:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                # Another process may have migrated while we waited for the lock.
                current = self._db.execute("PRAGMA user_version").fetchone()[0]
                if current == version:
                    for statement in _statements(MIGRATIONS[version]):
                        self._db.execute(statement)
                    self._db.execute(f"PRAGMA user_version={version + 1}")
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            version = self._db.execute("PRAGMA user_version").fetchone()[0]

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # --- source state ---------------------------------------------------------------------

    def get_state(self, name: str) -> SourceState | None:
        row = self._db.execute(
            f"SELECT {', '.join(_STATE_FIELDS)} FROM sources WHERE name = ?", (name,)
        ).fetchone()
        return self._state(name, row) if row else None

    def states(self) -> list[SourceState]:
        rows = self._db.execute(f"SELECT name, {', '.join(_STATE_FIELDS)} FROM sources")
        return [self._state(row[0], row[1:]) for row in rows]

    @staticmethod
    def _state(name: str, row: Sequence[object]) -> SourceState:
        values = dict(zip(_STATE_FIELDS, row, strict=True))
        for f in _DATE_STATE_FIELDS:
            values[f] = from_iso(values[f])  # type: ignore[arg-type]
        values["warnings"] = tuple(json.loads(str(values["warnings"])))
        return SourceState(name=name, **values)  # type: ignore[arg-type]

    def save_states(self, states: Sequence[SourceState]) -> None:
        if states:
            self._write(lambda: self._save_states(states))

    def _save_states(self, states: Sequence[SourceState]) -> None:
        self._db.executemany(
            _SAVE_STATE,
            [
                (
                    state.name,
                    *(_state_value(state, f) for f in _STATE_FIELDS),
                )
                for state in states
            ],
        )

    # --- the candidate view ---------------------------------------------------------------

    def candidates(self, query: CandidateQuery) -> Candidates:
        """One batch's look-ups: a query per source for the keys, one each for the links, the
        fingerprints and the hashes, each over a JSON array of the values."""
        by_key: dict[tuple[str, str], StoredCopy] = {}
        per_source: dict[str, list[str]] = {}
        for source, key in query.keys:
            per_source.setdefault(source, []).append(key)
        for source, keys in per_source.items():
            for c in map(
                self._copy,
                self._db.execute(
                    f"SELECT {_COPY_COLUMNS} FROM copies WHERE source = ? "
                    "AND key IN (SELECT value FROM json_each(?))",
                    (source, _json_list(keys)),
                ),
            ):
                by_key[c.source, c.key] = c
        by_link: dict[str, list[StoredCopy]] = {}
        for c in map(
            self._copy,
            self._db.execute(
                f"SELECT {_COPY_COLUMNS} FROM copies "
                "WHERE link_key IN (SELECT value FROM json_each(?)) ORDER BY rowid",
                (_json_list(query.links),),
            )
            if query.links
            else (),
        ):
            by_link.setdefault(c.link or "", []).append(c)
        by_fingerprint: dict[str, list[StoredCopy]] = {}
        for row in (
            self._db.execute(
                "WITH wanted AS (SELECT value FROM json_each(?)) "
                f"SELECT fingerprint, {_COPY_COLUMNS} FROM copies "
                f"WHERE rowid IN ({_indexed('copy', 'wanted')}) "
                "AND fingerprint IN (SELECT value FROM json_each(?)) ORDER BY rowid",
                (
                    _json_list({fingerprint_key(f) for f in query.fingerprints}),
                    _json_list(query.fingerprints),
                ),
            )
            if query.fingerprints
            else ()
        ):
            by_fingerprint.setdefault(row[0], []).append(self._copy(row[1:]))
        return Candidates(by_key, by_link, by_fingerprint, self._by_hash(query.hashes, query.limit))

    def _by_hash(self, hashes: Collection[int], limit: int) -> dict[int, list[StoredCopy]]:
        """The copies under each hash, the newest `limit`."""
        pairs = (
            self._db.execute(
                "WITH wanted AS (SELECT value FROM json_each(?)) "
                + _indexed("hash, copy", "wanted", distinct=True),
                (_json_list(hashes),),
            ).fetchall()
            if hashes
            else []
        )
        # Only a common opening has more than `limit` copies, so the pairs are counted here
        # rather than ranked by the query (a sort of all of them).
        crowded = (
            {h for h, n in Counter(h for h, _ in pairs).items() if n > limit}
            if len(pairs) > limit
            else set()
        )
        if crowded:
            newest: dict[int, list[int]] = {}
            for h, copy in pairs:
                if h in crowded:
                    newest.setdefault(h, []).append(copy)
            pairs = [p for p in pairs if p[0] not in crowded] + [
                (h, copy) for h, cs in newest.items() for copy in sorted(cs)[-limit:]
            ]
        # A common opening is shared by many stored copies, and each source of a refresh asks
        # for them again: inside one write transaction, a copy is read once (see _seen).
        if len(self._seen) > SEEN_COPIES:
            self._forget_seen()  # memory stays bounded however many copies are read
        copies = self._seen if self._db.in_transaction else {}
        missing = {copy for _, copy in pairs if copy not in copies}
        if missing:
            for c in map(
                self._copy,
                self._db.execute(
                    f"SELECT {_COPY_COLUMNS} FROM copies "
                    "WHERE rowid IN (SELECT value FROM json_each(?))",
                    (_json_list(missing),),
                ),
            ):
                copies[c.rowid] = c
                if copies is self._seen:
                    self._seen_by_entry.setdefault(c.entry_id, set()).add(c.rowid)
        by_hash: dict[int, list[StoredCopy]] = {}
        for h, copy in pairs:
            if copy in copies:
                by_hash.setdefault(h, []).append(copies[copy])
        return by_hash

    def entries(self, ids: Collection[str]) -> Mapping[str, StoredEntry]:
        """The stored entries among `ids`, each with every copy, oldest first."""
        if not ids:
            return {}
        found: dict[str, tuple[datetime, int, list[CopyRank]]] = {}
        for entry_id, first_seen, seq, *copy in self._db.execute(
            "SELECT e.id, e.first_seen, e.seq, c.source, c.key, c.truncated, length(c.excerpt), "
            "c.first_seen, c.rowid, c.link, c.site_host, c.published "
            "FROM entries e JOIN copies c ON c.entry_id = e.id "
            "WHERE e.id IN (SELECT value FROM json_each(?)) ORDER BY c.first_seen, c.rowid",
            (_json_list(ids),),
        ):
            if entry_id not in found:
                found[entry_id] = (_from_iso(first_seen), seq, [])
            source, key, truncated, length, copy_seen, rowid, link, site, published = copy
            found[entry_id][2].append(
                CopyRank(
                    source,
                    key,
                    bool(truncated),
                    length,
                    _from_iso(copy_seen),
                    rowid,
                    link,
                    site,
                    from_iso(published),
                )
            )
        return {
            entry_id: StoredEntry(entry_id, first_seen, seq, tuple(copies))
            for entry_id, (first_seen, seq, copies) in found.items()
        }

    @staticmethod
    def _copy(row: Sequence[object]) -> StoredCopy:
        rowid, source, key, entry_id, content_hash, link, truncated, text, title = row
        return StoredCopy(
            rowid=rowid,  # type: ignore[arg-type]
            source=source,  # type: ignore[arg-type]
            key=key,  # type: ignore[arg-type]
            entry_id=entry_id,  # type: ignore[arg-type]
            content_hash=content_hash,  # type: ignore[arg-type]
            link=link,  # type: ignore[arg-type]
            truncated=bool(truncated),
            text=text,  # type: ignore[arg-type]
            title=title,  # type: ignore[arg-type]
        )

    # --- writing a batch ------------------------------------------------------------------

    def apply(self, decision: Decision, state: SourceState, *, backfill: bool = False) -> None:
        """Store one batch's decision and its source's new state in one transaction.

        `backfill` marks a source's first crawl: its undated entries are back-catalogue, so
        they sort below every dated entry instead of flooding the top as "seen just now".
        """
        self._write(lambda: self._apply(decision, state, backfill))

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Hold the write lock across reads and writes: what is read inside (dedup candidates)
        cannot be changed by another process before the writes inside commit. Writes inside
        join this transaction; any failure rolls all of it back. Nested inside another
        transaction(), it is a savepoint: a failure undoes its own writes and propagates."""
        if self._db.in_transaction:
            self._db.execute("SAVEPOINT nested")
            try:
                yield
            except BaseException:
                self._forget_seen()
                if self._db.in_transaction:  # SQLite may have rolled it all back already
                    self._db.execute("ROLLBACK TO nested")
                    self._db.execute("RELEASE nested")
                raise
            self._db.execute("RELEASE nested")
            return
        try:
            self._db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise StorageError(f"{self.path}: cannot start a write: {exc}") from None
        self._forget_seen()
        try:
            yield
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            self._db.execute("ROLLBACK")
            raise StorageError(f"{self.path}: write failed: {exc}") from None
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        finally:
            self._forget_seen()

    def _forget_seen(self) -> None:
        self._seen.clear()
        self._seen_by_entry.clear()

    def _write(self, work: Callable[[], None]) -> None:
        """Run `work` in a write transaction of its own, or in a savepoint of the current one."""
        with self.transaction():
            try:
                work()
            except sqlite3.Error as exc:
                raise StorageError(f"{self.path}: write failed: {exc}") from None

    def _apply(self, decision: Decision, state: SourceState, backfill: bool) -> None:
        placements = decision.placements
        # Which of the entries the decision names exist already (one query); the others are
        # created by their first copy.
        named = {p.entry_id for p in placements} | {m.into for m in decision.merges}
        known = {
            row[0]
            for row in self._db.execute(
                "SELECT id FROM entries WHERE id IN (SELECT value FROM json_each(?))",
                (_json_list(named),),
            )
        }
        # The new copies get the rowids SQLite would give them one by one, in batch order (the
        # write lock is held): an entry created now is inserted with its representative.
        rowid = self._db.execute("SELECT coalesce(max(rowid), 0) FROM copies").fetchone()[0]
        new = [p for p in placements if p.existing is None]
        rowids = {(p.excerpt.source, p.excerpt.key): rowid + i for i, p in enumerate(new, 1)}
        representatives = {
            entry_id: rowids.get(copy) for entry_id, copy in decision.representatives.items()
        }
        created = self._create_entries(new, known, backfill, representatives, decision)
        stale = self._insert_copies(new, rowid, known)
        for p in placements:
            if p.rewrites:
                self._rewrite_copy(p)
                stale.add(p.entry_id)
        for m in decision.merges:
            self._merge(m.entry_id, m.into, m.rule, m.score)
            stale.add(m.into)
        changed = [
            (representatives[entry_id], source, key, entry_id)
            for entry_id, (source, key) in decision.representatives.items()
            if entry_id not in created
        ]
        self._db.executemany(
            "UPDATE entries SET representative = "
            "coalesce(?, (SELECT rowid FROM copies WHERE source = ? AND key = ?)) WHERE id = ?",
            changed,
        )
        stale.update(entry_id for *_, entry_id in changed)
        # An entry's dates are its representative's: computed once, after the last copy.
        self._refresh_dates(stale)
        for old, new_id in decision.renames.items():
            self._rename(old, new_id)
        self._save_states((state,))

    def _create_entries(
        self,
        new: Sequence[Placement],
        known: set[str],
        backfill: bool,
        representatives: Mapping[str, int | None],
        decision: Decision,
    ) -> set[str]:
        """Insert the entries that the batch's new copies name and the store lacks, dated by
        the representative copy of each (else its first); the top of a page (its newest item)
        gets the highest sequence number. Returns their ids."""
        first = created_entries(new, known, decision.representatives)
        if not first:
            return set()
        seq = self._db.execute("SELECT coalesce(max(seq), 0) FROM entries").fetchone()[0]
        rows: list[tuple[object, ...]] = []
        for entry_id, top, e in first:
            seq += 1
            first_seen = iso(top.first_seen)
            published = iso(e.published)
            stated = iso(e.updated or e.published)
            sort_date = published or stated or (_BACKFILL if backfill else first_seen)
            rows.append(
                (entry_id, first_seen, published, stated or first_seen, sort_date, seq,
                 int(backfill), representatives.get(entry_id))
            )  # fmt: skip
        self._db.executemany(
            "INSERT INTO entries (id, first_seen, published, updated, sort_date, seq, backfill, "
            "representative) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
        return {entry_id for entry_id, _, _ in first}

    def _insert_copies(self, new: Sequence[Placement], rowid: int, known: set[str]) -> set[str]:
        """Insert the batch's new copies, numbered from `rowid` + 1 in order, with their
        candidate-index rows. Returns the entries stored before that gained a copy."""
        rows: list[tuple[object, ...]] = []
        sketches: list[tuple[int, int]] = []
        gained: set[str] = set()
        for p in new:
            rowid += 1
            rows.append(_copy_row(rowid, p, iso(p.excerpt.first_seen)))
            sketches.extend((h, rowid) for h in p.sketch)
            sketches.append((fingerprint_key(p.excerpt.fingerprint), rowid))
            if p.entry_id in known:
                gained.add(p.entry_id)
        if not rows:
            return gained
        self._count_new([(p.entry_id, p.excerpt.source) for p in new])
        self._db.executemany(_INSERT_COPY, rows)
        self._add_sketches(sketches)
        return gained

    def _add_sketches(self, rows: list[tuple[int, int]]) -> None:
        # In index order: each insert lands next to the previous one in the b-tree.
        rows.sort(key=itemgetter(0))
        self._db.executemany(
            "INSERT OR IGNORE INTO recent_sketches (hash, copy) VALUES (?, ?)", rows
        )
        self._fold_sketches(len(rows))

    def _rewrite_copy(self, p: Placement) -> None:
        """A stored copy's new content or key; its candidate-index rows are replaced."""
        old, e = p.existing, p.excerpt
        assert old is not None
        fingerprint, blob = self._db.execute(
            "SELECT fingerprint, sketch FROM copies WHERE rowid = ?", (old.rowid,)
        ).fetchone()
        old_rows = [(h, old.rowid) for h in _unpacked(blob)]
        old_rows.append((fingerprint_key(fingerprint), old.rowid))
        for table in _SKETCH_TABLES:
            self._db.executemany(f"DELETE FROM {table} WHERE hash = ? AND copy = ?", old_rows)
        content = content_values(e, iso, _json_list)
        self._db.execute(_UPDATE_COPY, (e.key, e.guid, _packed(p.sketch), *content, old.rowid))
        self._seen.pop(old.rowid, None)  # its _seen_by_entry row goes with the entry's
        rows = [(h, old.rowid) for h in p.sketch]
        rows.append((fingerprint_key(e.fingerprint), old.rowid))
        self._add_sketches(rows)
        # A copy of the entry changed, noticed now: that counts as an update.
        self._db.execute(
            "UPDATE entries SET changed = ? WHERE id = ?", (iso(e.first_seen), p.entry_id)
        )

    def _count_new(self, pairs: list[tuple[str, str]]) -> None:
        """Count copies about to be inserted into source_counts: a source gains an entry when
        a copy is the first of that entry from that source (one query for the copies stored
        already). Called right before the insert, so that the update triggers of a merge that
        follows see the counts they adjust."""
        counted = set(
            self._db.execute(
                "SELECT DISTINCT entry_id, source FROM copies "
                "WHERE entry_id IN (SELECT value FROM json_each(?))",
                (_json_list({entry for entry, _ in pairs}),),
            )
        )
        gained = gained_entries(pairs, counted)
        self._db.executemany(
            "INSERT INTO source_counts (source, entries) VALUES (?, ?) "
            "ON CONFLICT (source) DO UPDATE SET entries = entries + excluded.entries",
            gained.items(),
        )

    def _fold_sketches(self, added: int) -> None:
        """Move the recent sketch rows into `sketches` once there are enough of them."""
        (recent,) = self._db.execute(
            "UPDATE sketch_counts SET recent = recent + ? RETURNING recent", (added,)
        ).fetchone()
        if recent < self.fold_sketches:
            return
        self._db.execute(
            "INSERT OR IGNORE INTO sketches (hash, copy) "
            "SELECT hash, copy FROM recent_sketches ORDER BY hash, copy"
        )
        self._db.execute("DELETE FROM recent_sketches")
        self._db.execute("UPDATE sketch_counts SET recent = 0")

    def _merge(self, loser: str, winner: str, rule: str, score: float | None) -> None:
        """Fold entry `loser` into `winner`: its first copies take the rule (and score) by
        which it was linked, so every copy of the merged entry still says why it is there."""
        self._db.execute(
            "UPDATE copies SET rule = ?, score = ? WHERE entry_id = ? AND rule = 'new'",
            (rule, score, loser),
        )
        self._db.execute("UPDATE copies SET entry_id = ? WHERE entry_id = ?", (winner, loser))
        for rowid in self._seen_by_entry.pop(loser, ()):
            self._seen.pop(rowid, None)
        self._db.execute(
            "UPDATE entries SET backfill = min(backfill, "
            "(SELECT backfill FROM entries WHERE id = ?)) WHERE id = ?",
            (loser, winner),
        )
        # An archive page that held the merged entry holds its survivor, unless the survivor
        # is archived in that output already (the entry's other rows go with it, by trigger).
        self._db.execute(
            "UPDATE OR IGNORE archived SET entry_id = ? WHERE entry_id = ?", (winner, loser)
        )
        self._db.execute("DELETE FROM entries WHERE id = ?", (loser,))

    def _rename(self, old: str, new: str) -> None:
        """Give an entry another id (dedup decides when: see Decision.renames)."""
        # Copies point at their entry: the row is copied, the copies moved, the old row deleted.
        self._db.execute(
            f"INSERT INTO entries (id, {_ENTRY_FIELDS}) SELECT ?, {_ENTRY_FIELDS} FROM entries "
            "WHERE id = ?",
            (new, old),
        )
        self._db.execute("UPDATE copies SET entry_id = ? WHERE entry_id = ?", (new, old))
        self._db.execute("DELETE FROM entries WHERE id = ?", (old,))
        for rowid in self._seen_by_entry.pop(old, ()):
            self._seen.pop(rowid, None)

    def _refresh_dates(self, entry_ids: Collection[str]) -> None:
        """Recompute entries' dates from their copies, in one query; write only those that moved.

        The representative copy's dates: published is the date it states, else the earliest
        any copy states; updated is the latest it states, else the latest any copy states,
        else first_seen, or the last time we noticed a copy change, if later. A copy joining an
        entry seldom moves them: leaving those rows alone spares a write to a random page of
        entries and of its order.
        """
        if not entry_ids:
            return
        changed: list[tuple[object, ...]] = []
        for (
            entry_id,
            first_seen,
            noticed,
            backfill,
            *stored,
            own_published,
            own_stated,
            any_published,
            any_stated,
        ) in self._db.execute(
            "SELECT e.id, e.first_seen, e.changed, e.backfill, e.published, e.updated, "
            "e.sort_date, r.published, coalesce(r.updated, r.published), min(c.published), "
            "max(coalesce(c.updated, c.published)) "
            "FROM entries e JOIN copies c ON c.entry_id = e.id "
            "LEFT JOIN copies r ON r.rowid = e.representative "
            "WHERE e.id IN (SELECT value FROM json_each(?)) GROUP BY e.id",
            (_json_list(entry_ids),),
        ):
            published = own_published or any_published
            stated = own_stated or any_stated
            updated = max(c for c in (stated or first_seen, noticed) if c)
            sort_date = published or stated or (_BACKFILL if backfill else first_seen)
            if [published, updated, sort_date] != stored:
                changed.append((published, updated, sort_date, entry_id))
        self._db.executemany(
            "UPDATE entries SET published = ?, updated = ?, sort_date = ? WHERE id = ?", changed
        )

    # --- removing -------------------------------------------------------------------------

    def remove_source(self, name: str) -> Removal:
        """Delete a source's copies, its emptied entries and its state (see the Protocol)."""
        out: list[Removal] = []
        self._write(lambda: out.append(self._remove_source(name)))
        return out[0]

    def _remove_source(self, name: str) -> Removal:
        rows = self._db.execute(
            "SELECT rowid, entry_id FROM copies WHERE source = ?", (name,)
        ).fetchall()
        touched = {entry_id for _, entry_id in rows}
        self._delete_copies([rowid for rowid, _ in rows])
        kept = {
            row[0]
            for row in self._db.execute(
                "SELECT DISTINCT entry_id FROM copies "
                "WHERE entry_id IN (SELECT value FROM json_each(?))",
                (_json_list(touched),),
            )
        }
        self._delete_entries(touched - kept)
        self._after_losing_copies(kept)
        self._db.execute("DELETE FROM sources WHERE name = ?", (name,))
        self._db.execute("DELETE FROM source_counts WHERE source = ?", (name,))
        return Removal(name, len(rows), len(touched - kept), tuple(sorted(kept)))

    def set_representatives(self, chosen: Mapping[str, tuple[str, str]]) -> None:
        rows = [(source, key, entry_id) for entry_id, (source, key) in chosen.items()]

        def work() -> None:
            self._db.executemany(
                "UPDATE entries SET representative = "
                "(SELECT rowid FROM copies WHERE source = ? AND key = ?) WHERE id = ?",
                rows,
            ).close()
            self._refresh_dates(chosen)  # an entry's dates are its representative's

        if rows:
            self._write(work)

    def prune(self, before: datetime, keep: int) -> int:
        """Delete the old entries beyond the newest `keep` (see the Protocol)."""
        out: list[int] = []
        self._write(lambda: out.append(self._prune(iso(before) or "", keep)))
        return out[0]

    def _prune(self, before: str, keep: int) -> int:
        old = [
            row[0]
            for row in self._db.execute(
                "SELECT id FROM entries WHERE first_seen < ? AND updated < ? "
                "AND id NOT IN (SELECT id FROM entries ORDER BY sort_date DESC, seq DESC LIMIT ?)",
                (before, before, keep),
            )
        ]
        if old:
            rowids = [
                row[0]
                for row in self._db.execute(
                    "SELECT rowid FROM copies WHERE entry_id IN (SELECT value FROM json_each(?))",
                    (_json_list(old),),
                )
            ]
            self._delete_copies(rowids)
            self._delete_entries(old)
        return len(old)

    def _delete_copies(self, rowids: Collection[int]) -> None:
        """Delete copies with their candidate-index rows (the delete trigger keeps the counts)."""
        index_rows: list[tuple[int, int]] = []
        for rowid, fingerprint, blob in self._db.execute(
            "SELECT rowid, fingerprint, sketch FROM copies "
            "WHERE rowid IN (SELECT value FROM json_each(?))",
            (_json_list(rowids),),
        ):
            index_rows.extend((h, rowid) for h in _unpacked(blob))
            index_rows.append((fingerprint_key(fingerprint), rowid))
        for table in _SKETCH_TABLES:
            self._db.executemany(f"DELETE FROM {table} WHERE hash = ? AND copy = ?", index_rows)
        self._db.execute(
            "DELETE FROM copies WHERE rowid IN (SELECT value FROM json_each(?))",
            (_json_list(rowids),),
        )
        self._forget_seen()

    def _delete_entries(self, ids: Collection[str]) -> None:
        self._db.execute(
            "DELETE FROM entries WHERE id IN (SELECT value FROM json_each(?))", (_json_list(ids),)
        )

    def _after_losing_copies(self, ids: Collection[str]) -> None:
        """Entries that lost copies: their first sight is their earliest copy's, that copy is
        the first one (rule "new") when the first is gone, and their dates follow the rest."""
        if not ids:
            return
        wanted = _json_list(ids)
        self._db.execute(
            "UPDATE entries SET first_seen = (SELECT min(first_seen) FROM copies c "
            "WHERE c.entry_id = entries.id) WHERE id IN (SELECT value FROM json_each(?))",
            (wanted,),
        )
        self._db.execute(
            "UPDATE copies SET rule = 'new', score = NULL WHERE rowid IN ("
            "SELECT (SELECT c.rowid FROM copies c WHERE c.entry_id = e.id "
            "ORDER BY c.first_seen, c.rowid LIMIT 1) FROM entries e "
            "WHERE e.id IN (SELECT value FROM json_each(?)) AND NOT EXISTS "
            "(SELECT 1 FROM copies n WHERE n.entry_id = e.id AND n.rule = 'new'))",
            (wanted,),
        )
        self._refresh_dates(ids)

    # --- reading for output ---------------------------------------------------------------

    def latest(self, limit: int) -> list[Entry]:
        """The newest `limit` merged entries, newest first."""
        rows = self._db.execute(
            "SELECT id, first_seen, published, updated, representative FROM entries "
            "ORDER BY sort_date DESC, seq DESC LIMIT ?",
            (limit,),
        ).fetchall()
        return self._with_copies(rows)

    def _with_copies(self, rows: Sequence[Sequence[object]]) -> list[Entry]:
        """Entries from their rows (id, first_seen, published, updated, representative)."""
        if not rows:
            return []
        ids = [str(r[0]) for r in rows]
        copies: dict[str, list[tuple[object, ...]]] = {i: [] for i in ids}
        marks = ",".join("?" for _ in ids)
        for row in self._db.execute(
            "SELECT entry_id, source, key, rule, score, title, link, first_seen, authors, "
            "categories, excerpt, rowid, html FROM copies "
            f"WHERE entry_id IN ({marks}) ORDER BY source, key",
            ids,
        ):
            copies[row[0]].append(row[1:])
        return [self._entry(r, copies[str(r[0])]) for r in rows]

    def load_entries(self, ids: Sequence[str]) -> list[Entry]:
        """The entries with these ids, in the order given; unknown ids are left out."""
        found: dict[str, Sequence[object]] = {}
        for start in range(0, len(ids), 500):
            for row in self._db.execute(
                "SELECT id, first_seen, published, updated, representative FROM entries "
                "WHERE id IN (SELECT value FROM json_each(?))",
                (_json_list(ids[start : start + 500]),),
            ):
                found[row[0]] = row
        rows = [found[i] for i in dict.fromkeys(ids) if i in found]
        out: list[Entry] = []
        for start in range(0, len(rows), 500):
            out.extend(self._with_copies(rows[start : start + 500]))
        return out

    def output_entries(self, output: str, match: EntryMatch) -> list[str]:
        """The ids of the entries `match` selects that no archive page of `output` holds,
        newest first, ties by the order they were stored in.

        The answer is remembered (`output_reads`): the next call for the same output and
        filter judges only what it answered then and the entries created or given a copy
        since (entries by `seq`, copies by rowid, both only grow), instead of every entry."""
        key = json.dumps([sorted(match.categories), sorted(match.sources)])
        # The newest entry and copy before reading: anything stored after is judged next time.
        top_seq, top_copy = self._db.execute(
            "SELECT (SELECT coalesce(max(seq), 0) FROM entries), "
            "(SELECT coalesce(max(rowid), 0) FROM copies)"
        ).fetchone()
        where = ["NOT EXISTS (SELECT 1 FROM archived a WHERE a.output = ? AND a.entry_id = e.id)"]
        args: list[object] = [output]
        last = self._db.execute(
            "SELECT match, seq, copy, answer FROM output_reads WHERE output = ?", (output,)
        ).fetchone()
        if last is not None and last[0] == key:
            where.append(
                "e.id IN (SELECT value FROM json_each(?) UNION ALL "
                "SELECT id FROM entries WHERE seq > ? UNION ALL "
                "SELECT entry_id FROM copies WHERE rowid > ?)"
            )
            args += [last[3], last[1], last[2]]
        if match.sources:
            where.append(
                "EXISTS (SELECT 1 FROM copies c WHERE c.entry_id = e.id "
                "AND c.source IN (SELECT value FROM json_each(?)))"
            )
            args.append(_json_list(sorted(match.sources)))
        if match.categories:
            where.append(
                "EXISTS (SELECT 1 FROM copies c, json_each(c.categories) j "
                "WHERE c.entry_id = e.id AND casefold(j.value) IN (SELECT value FROM json_each(?)))"
            )
            args.append(_json_list(sorted(match.categories)))
        ids = [
            row[0]
            for row in self._db.execute(
                f"SELECT e.id FROM entries e WHERE {' AND '.join(where)} "
                "ORDER BY e.sort_date DESC, e.seq DESC",
                args,
            )
        ]
        row = (output, key, top_seq, top_copy, _json_list(ids))
        self._write(lambda: self._remember_read(row))
        return ids

    def _remember_read(self, row: tuple[object, ...]) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO output_reads (output, match, seq, copy, answer) "
            "VALUES (?, ?, ?, ?, ?)",
            row,
        )

    def archive_pages(self, output: str) -> int:
        # Counted apart from `archived`: a page whose entries were all pruned still exists.
        row = self._db.execute(
            "SELECT pages FROM archive_pages WHERE output = ?", (output,)
        ).fetchone()
        return int(row[0]) if row else 0

    def archive_page(self, output: str, page: int) -> list[str]:
        return [
            row[0]
            for row in self._db.execute(
                "SELECT entry_id FROM archived WHERE output = ? AND page = ? ORDER BY position",
                (output, page),
            )
        ]

    def seal_archive(self, output: str, page: int, ids: Sequence[str]) -> None:
        def work() -> None:
            check_seal(self.path, output, page, self.archive_pages(output), ids)
            try:
                self._db.executemany(
                    "INSERT INTO archived (output, entry_id, page, position) VALUES (?, ?, ?, ?)",
                    [(output, entry_id, page, i) for i, entry_id in enumerate(ids)],
                )
                self._db.execute(
                    "INSERT INTO archive_pages (output, pages) VALUES (?, ?) "
                    "ON CONFLICT (output) DO UPDATE SET pages = excluded.pages",
                    (output, page),
                )
            except sqlite3.IntegrityError:
                raise StorageError(
                    f"{self.path}: archive page {page} of {output!r}: an entry is in another page"
                ) from None

        self._write(work)

    @staticmethod
    def _entry(row: Sequence[object], copies: list[tuple[object, ...]]) -> Entry:
        """An entry from its row and its copies (by source and key): its title, link, excerpt,
        source and authors are its representative's; the other copies follow it, by source
        and key, so the entry reads the same whatever order its copies arrived in."""
        entry_id, first_seen, published, updated, representative = row
        return entry_from(
            (entry_id, _from_iso(str(first_seen)), from_iso(published), _from_iso(str(updated)),  # type: ignore[arg-type]
             representative),
            [(*c[:6], _from_iso(str(c[6])), json.loads(str(c[7])), json.loads(str(c[8])), *c[9:])
             for c in copies],
        )  # fmt: skip

    def entry_counts(self) -> dict[str, int]:
        """Entries per source, from the counts the triggers keep (no pass over the store)."""
        return dict(self._db.execute("SELECT source, entries FROM source_counts WHERE entries > 0"))

    def clusters(self, source: str | None = None) -> list[Cluster]:
        """Merged entries with more than one copy (those with a copy from `source`), newest
        first, each copy with the rule that merged it."""
        where = "WHERE n > 1"
        args: list[object] = []
        if source is not None:
            where += " AND id IN (SELECT entry_id FROM copies WHERE source = ?)"
            args.append(source)
        rows = self._db.execute(
            "SELECT id, first_seen FROM (SELECT e.id, e.first_seen, e.sort_date, e.seq, "
            "(SELECT count(*) FROM copies c WHERE c.entry_id = e.id) AS n FROM entries e) "
            f"{where} ORDER BY sort_date DESC, seq DESC",
            args,
        ).fetchall()
        out = []
        for entry_id, first_seen in rows:
            copies = tuple(
                ClusterCopy(
                    source=r[0],
                    key=r[1],
                    rule=r[2],
                    score=r[3],
                    title=r[4],
                    link=r[5],
                    first_seen=_from_iso(r[6]),
                )
                for r in self._db.execute(
                    "SELECT source, key, rule, score, title, link, first_seen FROM copies "
                    "WHERE entry_id = ? ORDER BY first_seen, rowid",
                    (entry_id,),
                )
            )
            out.append(Cluster(entry_id, _from_iso(first_seen), copies))
        return out
