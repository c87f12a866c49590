"""The SQLite store: WAL, a busy timeout, `BEGIN IMMEDIATE` writes, numbered migrations.

Tables:
- `sources`: one row per source name, its SourceState.
- `entries`: one row per merged post; its id is minted at first sight and never changes.
- `copies`: one row per (source, key): the post as one source shows it, pointing at its entry.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

from aggregator.errors import StorageError
from aggregator.models import Duplicate, Entry, Excerpt, Provenance, SourceState
from aggregator.store import Placement, StoredCopy

SCHEMA_VERSION = 2

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
    # 2: what every refresh asks, answered without reading the whole store: the highest seq
    # (an index) and the number of entries per source (kept up to date by triggers).
    """
    CREATE INDEX entries_seq ON entries (seq);
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
)

_STATE_FIELDS = (
    "url",
    "etag",
    "last_modified",
    "body_hash",
    "effective_url",
    "last_status",
    "last_fetch",
    "last_success",
    "error",
    "error_streak",
    "next_due",
    "redirect_url",
    "redirect_streak",
)
_DATE_STATE_FIELDS = {"last_fetch", "last_success", "next_due"}
_COPY_COLUMNS = "rowid, source, key, entry_id, content_hash, link_key, truncated, text, first_seen"


# Sorts below every real date: undated back-catalogue from a source's first crawl.
_BACKFILL = "0001-01-01T00:00:00.000000+00:00"


def iso(dt: datetime | None) -> str | None:
    """A datetime as fixed-width UTC text, so that text order is time order."""
    if dt is None:
        return None
    if dt.tzinfo is UTC and dt.year >= 1000:  # the common case, without strftime
        return dt.isoformat(timespec="microseconds")
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f+00:00")


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


def _chunks(values: list[str], size: int = 500) -> Iterator[list[str]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


def from_iso(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


def _from_iso(text: str) -> datetime:
    return datetime.fromisoformat(text)


class SQLiteStore:
    """The default Store. One instance per thread; several processes may share the file."""

    def __init__(self, path: str | Path, *, timeout: float = 30.0) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(
                self.path, timeout=timeout, isolation_level=None, check_same_thread=False
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            # 64 MiB of page cache (the default is 2 MiB): index pages of a large store stay in
            # memory instead of being read back for nearly every insert.
            self._db.execute("PRAGMA cache_size=-65536")
            self._db.execute(f"PRAGMA busy_timeout={int(timeout * 1000)}")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._migrate()
        except sqlite3.Error as exc:
            raise StorageError(f"{self.path}: cannot open the store: {exc}") from None
        except OSError as exc:
            raise StorageError(f"{self.path}: cannot create the store: {exc.strerror}") from None

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
        return SourceState(name=name, **values)  # type: ignore[arg-type]

    def save_state(self, state: SourceState) -> None:
        self._write(lambda: self._save_state(state))

    def _save_state(self, state: SourceState) -> None:
        values = [getattr(state, f) for f in _STATE_FIELDS]
        values = [
            iso(v) if f in _DATE_STATE_FIELDS else v  # type: ignore[arg-type]
            for f, v in zip(_STATE_FIELDS, values, strict=True)
        ]
        cols = ", ".join(_STATE_FIELDS)
        marks = ", ".join("?" for _ in _STATE_FIELDS)
        updates = ", ".join(f"{f} = excluded.{f}" for f in _STATE_FIELDS)
        self._db.execute(
            f"INSERT INTO sources (name, {cols}) VALUES (?, {marks}) "
            f"ON CONFLICT (name) DO UPDATE SET {updates}",
            (state.name, *values),
        )

    # --- candidate index ------------------------------------------------------------------

    def copy_by_key(self, source: str, key: str) -> StoredCopy | None:
        row = self._db.execute(
            f"SELECT {_COPY_COLUMNS} FROM copies WHERE source = ? AND key = ?", (source, key)
        ).fetchone()
        return self._copy(row) if row else None

    def copies_by_link(self, link: str) -> list[StoredCopy]:
        rows = self._db.execute(
            f"SELECT {_COPY_COLUMNS} FROM copies WHERE link_key = ? ORDER BY rowid", (link,)
        )
        return [self._copy(r) for r in rows]

    def copies_by_fingerprint(self, fingerprint: str) -> list[StoredCopy]:
        rows = self._db.execute(
            f"SELECT {_COPY_COLUMNS} FROM copies WHERE fingerprint = ? ORDER BY rowid",
            (fingerprint,),
        )
        return [self._copy(r) for r in rows]

    def copies_by_keys(self, source: str, keys: Iterable[str]) -> dict[str, StoredCopy]:
        """copy_by_key for many keys of one source at once: key -> copy."""
        found: dict[str, StoredCopy] = {}
        for chunk in _chunks(sorted(set(keys))):
            marks = ",".join("?" * len(chunk))
            rows = self._db.execute(
                f"SELECT {_COPY_COLUMNS} FROM copies WHERE source = ? AND key IN ({marks})",
                (source, *chunk),
            )
            for row in rows:
                found[row[2]] = self._copy(row)
        return found

    def copies_by_links(self, links: Iterable[str]) -> dict[str, list[StoredCopy]]:
        """copies_by_link for many links at once: link -> copies in rowid order."""
        return self._copies_in("link_key", links)

    def copies_by_fingerprints(self, fingerprints: Iterable[str]) -> dict[str, list[StoredCopy]]:
        """copies_by_fingerprint for many fingerprints at once."""
        return self._copies_in("fingerprint", fingerprints)

    def _copies_in(self, column: str, values: Iterable[str]) -> dict[str, list[StoredCopy]]:
        found: dict[str, list[StoredCopy]] = {}
        for chunk in _chunks(sorted(set(values))):
            marks = ",".join("?" * len(chunk))
            rows = self._db.execute(
                # No ORDER BY: with it the planner may walk the whole table in rowid order.
                f"SELECT {_COPY_COLUMNS}, {column} FROM copies WHERE {column} IN ({marks})",
                chunk,
            )
            for row in rows:
                found.setdefault(row[-1], []).append(self._copy(row[:-1]))
        for copies in found.values():
            copies.sort(key=lambda c: c.rowid)
        return found

    @staticmethod
    def _copy(row: Sequence[object]) -> StoredCopy:
        rowid, source, key, entry_id, content_hash, link, truncated, text, first_seen = row
        return StoredCopy(
            rowid=rowid,  # type: ignore[arg-type]
            source=source,  # type: ignore[arg-type]
            key=key,  # type: ignore[arg-type]
            entry_id=entry_id,  # type: ignore[arg-type]
            content_hash=content_hash,  # type: ignore[arg-type]
            link=link,  # type: ignore[arg-type]
            truncated=bool(truncated),
            text=text,  # type: ignore[arg-type]
            first_seen=_from_iso(first_seen),  # type: ignore[arg-type]
        )

    # --- writing a refresh ----------------------------------------------------------------

    def apply(
        self,
        source: str,
        placements: Iterable[Placement],
        state: SourceState,
        *,
        backfill: bool = False,
    ) -> None:
        """Store one source's placements and its new state in one transaction.

        `backfill` marks a source's first crawl: its undated entries are back-catalogue, so
        they sort below every dated entry instead of flooding the top as "seen just now".
        """
        items = list(placements)
        self._write(lambda: self._apply(items, state, backfill))

    def _write(self, work: object) -> None:
        try:
            self._db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise StorageError(f"{self.path}: cannot start a write: {exc}") from None
        try:
            work()  # type: ignore[operator]
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            self._db.execute("ROLLBACK")
            raise StorageError(f"{self.path}: write failed: {exc}") from None
        except BaseException:
            self._db.execute("ROLLBACK")
            raise

    def _apply(self, placements: list[Placement], state: SourceState, backfill: bool) -> None:
        seq = self._db.execute("SELECT coalesce(max(seq), 0) FROM entries").fetchone()[0]
        ordered = sorted(placements, key=lambda p: -p.excerpt.position)
        fresh = self._fresh_entries(ordered)
        entry_rows: list[tuple[object, ...]] = []
        copy_rows: list[tuple[object, ...]] = []
        # The top of a page is its newest item: give it the highest sequence number.
        for p in ordered:
            e = p.excerpt
            if p.existing is not None and p.existing.source == e.source:
                if p.existing.content_hash != e.content_hash or p.existing.key != e.key:
                    self._flush(entry_rows, copy_rows)
                    self._update_copy(p.existing, e)
                    self._touch_entry(p.existing.entry_id, e.first_seen)
                continue
            if p.entry_id in fresh:
                # A new entry with this one copy: its dates are the copy's, no need to ask.
                seq += 1
                entry_rows.append(_fresh_entry_row(p, seq, backfill))
                copy_rows.append(_copy_row(p))
                continue
            self._flush(entry_rows, copy_rows)
            if not self._db.execute("SELECT 1 FROM entries WHERE id = ?", (p.entry_id,)).fetchone():
                seq += 1
                self._db.execute(
                    "INSERT INTO entries (id, first_seen, published, updated, sort_date, seq, "
                    "backfill) VALUES (?, ?, NULL, ?, ?, ?, ?)",
                    (
                        p.entry_id,
                        iso(e.first_seen),
                        iso(e.first_seen),
                        iso(e.first_seen),
                        seq,
                        int(backfill),
                    ),
                )
            self._insert_copy(p)
            self._refresh_entry_dates(p.entry_id, bumped=None)
        self._flush(entry_rows, copy_rows)
        self._save_state(state)

    def _fresh_entries(self, ordered: list[Placement]) -> set[str]:
        """Entry ids that only this placement's copy will have: new, alone in the batch."""
        counts: dict[str, int] = {}
        for p in ordered:
            counts[p.entry_id] = counts.get(p.entry_id, 0) + 1
        ids = [
            p.entry_id
            for p in ordered
            if p.rule == "new" and p.existing is None and counts[p.entry_id] == 1
        ]
        taken: set[str] = set()
        for chunk in _chunks(ids):
            marks = ",".join("?" * len(chunk))
            taken.update(
                row[0]
                for row in self._db.execute(f"SELECT id FROM entries WHERE id IN ({marks})", chunk)
            )
        return set(ids) - taken

    def _flush(
        self, entry_rows: list[tuple[object, ...]], copy_rows: list[tuple[object, ...]]
    ) -> None:
        """Insert the pending new entries and their copies, in order, in two statements."""
        if entry_rows:
            self._db.executemany(
                "INSERT INTO entries (id, first_seen, published, updated, sort_date, seq, "
                "backfill) VALUES (?, ?, ?, ?, ?, ?, ?)",
                entry_rows,
            )
            entry_rows.clear()
        if copy_rows:
            self._db.executemany(_INSERT_COPY, copy_rows)
            copy_rows.clear()

    def _insert_copy(self, p: Placement) -> None:
        self._db.execute(_INSERT_COPY, _copy_row(p))

    def _update_copy(self, old: StoredCopy, e: Excerpt) -> None:
        self._db.execute(
            "UPDATE copies SET key = ?, guid = ?, title = ?, link = ?, link_key = ?, "
            "published = ?, updated = ?, authors = ?, categories = ?, excerpt = ?, truncated = ?, "
            "fingerprint = ?, content_hash = ?, position = ?, text = ? WHERE rowid = ?",
            (
                e.key,
                e.guid,
                e.title,
                e.link,
                e.link_key,
                iso(e.published),
                iso(e.updated),
                json.dumps(list(e.authors), ensure_ascii=False),
                json.dumps(list(e.categories), ensure_ascii=False),
                e.excerpt,
                int(e.truncated),
                e.fingerprint,
                e.content_hash,
                e.position,
                e.text,
                old.rowid,
            ),
        )

    def _touch_entry(self, entry_id: str, now: datetime) -> None:
        self._refresh_entry_dates(entry_id, bumped=now)

    def _refresh_entry_dates(self, entry_id: str, bumped: datetime | None) -> None:
        """Recompute an entry's dates from its copies.

        published: the earliest trusted date any copy states. updated: the latest date a copy
        states (else first_seen), or the last time we noticed a copy change, if later.
        """
        if bumped is not None:
            self._db.execute("UPDATE entries SET changed = ? WHERE id = ?", (iso(bumped), entry_id))
        first_seen, changed, backfill = self._db.execute(
            "SELECT first_seen, changed, backfill FROM entries WHERE id = ?", (entry_id,)
        ).fetchone()
        published, stated = self._db.execute(
            "SELECT min(published), max(coalesce(updated, published)) FROM copies "
            "WHERE entry_id = ?",
            (entry_id,),
        ).fetchone()
        updated = max(c for c in (stated or first_seen, changed) if c)
        sort_date = published or stated or (_BACKFILL if backfill else first_seen)
        self._db.execute(
            "UPDATE entries SET published = ?, updated = ?, sort_date = ? WHERE id = ?",
            (published, updated, sort_date, entry_id),
        )

    # --- reading for output ---------------------------------------------------------------

    def latest(self, limit: int) -> list[Entry]:
        """The newest `limit` merged entries, newest first."""
        rows = self._db.execute(
            "SELECT id, first_seen, published, updated FROM entries "
            "ORDER BY sort_date DESC, seq DESC LIMIT ?",
            (limit,),
        ).fetchall()
        if not rows:
            return []
        ids = [r[0] for r in rows]
        copies: dict[str, list[tuple[object, ...]]] = {i: [] for i in ids}
        marks = ",".join("?" for _ in ids)
        for row in self._db.execute(
            "SELECT entry_id, source, key, rule, score, title, link, first_seen, authors, "
            "categories, excerpt, truncated FROM copies "
            f"WHERE entry_id IN ({marks}) ORDER BY first_seen, rowid",
            ids,
        ):
            copies[row[0]].append(row[1:])
        return [self._entry(r, copies[r[0]]) for r in rows]

    @staticmethod
    def _entry(row: Sequence[object], copies: list[tuple[object, ...]]) -> Entry:
        entry_id, first_seen, published, updated = row
        # The representative: the longest untruncated excerpt, else the longest one; the
        # earliest copy wins ties so the choice is stable across refreshes.
        best = max(copies, key=lambda c: (not c[10], len(str(c[9]))))
        authors: list[str] = []
        categories: list[str] = []
        seen_cats: set[str] = set()
        for c in copies:
            for a in json.loads(str(c[7])):
                if a not in authors:
                    authors.append(a)
            for cat in json.loads(str(c[8])):
                if cat.casefold() not in seen_cats:
                    seen_cats.add(cat.casefold())
                    categories.append(cat)
        return Entry(
            id=str(entry_id),
            title=str(best[4]),
            link=best[5] if best[5] else next((str(c[5]) for c in copies if c[5]), None),  # type: ignore[arg-type]
            published=from_iso(published),  # type: ignore[arg-type]
            updated=_from_iso(str(updated)),
            first_seen=_from_iso(str(first_seen)),
            excerpt=str(best[9]),
            authors=tuple(authors),
            categories=tuple(categories),
            source=str(best[0]),
            sources=tuple(
                Provenance(source=str(c[0]), link=c[5], first_seen=_from_iso(str(c[6])))  # type: ignore[arg-type]
                for c in copies
            ),
            duplicates=tuple(
                Duplicate(source=str(c[0]), key=str(c[1]), rule=str(c[2]), score=c[3])  # type: ignore[arg-type]
                for c in copies
                if c[2] not in ("new",)
            ),
        )

    def entry_counts(self) -> dict[str, int]:
        # Kept by triggers (migration 2): the same as count(DISTINCT entry_id) per source.
        return dict(self._db.execute("SELECT source, entries FROM source_counts WHERE entries > 0"))


_INSERT_COPY = (
    "INSERT INTO copies (source, key, entry_id, rule, score, guid, title, link, "
    "link_key, published, updated, first_seen, authors, categories, excerpt, "
    "truncated, fingerprint, content_hash, position, text) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def _copy_row(p: Placement) -> tuple[object, ...]:
    e = p.excerpt
    return (
        e.source,
        e.key,
        p.entry_id,
        p.rule,
        p.score,
        e.guid,
        e.title,
        e.link,
        e.link_key,
        iso(e.published),
        iso(e.updated),
        iso(e.first_seen),
        json.dumps(list(e.authors), ensure_ascii=False),
        json.dumps(list(e.categories), ensure_ascii=False),
        e.excerpt,
        int(e.truncated),
        e.fingerprint,
        e.content_hash,
        e.position,
        e.text,
    )


def _fresh_entry_row(p: Placement, seq: int, backfill: bool) -> tuple[object, ...]:
    """The entries row _refresh_entry_dates would leave for an entry with this one copy."""
    e = p.excerpt
    first_seen = iso(e.first_seen)
    published = iso(e.published)
    stated = iso(e.updated) or published
    updated = stated or first_seen
    sort_date = published or stated or (_BACKFILL if backfill else first_seen)
    return (p.entry_id, first_seen, published, updated, sort_date, seq, int(backfill))
