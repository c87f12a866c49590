"""Moving a SQLite store into an empty PostgreSQL store, with nothing renumbered.

Every entry keeps its id, sequence number, dates, representative copy and backfill mark;
every copy keeps its number, entry, rule and score; every source keeps its state; the
candidate index keeps its rows. The outputs written from the PostgreSQL store afterwards are
the bytes written from the SQLite store before: no subscriber sees a new or changed entry.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aggregator.errors import StorageError
from aggregator.store.postgres import COPY_TABLE_COLUMNS, ENTRY_TABLE_COLUMNS, PostgresStore
from aggregator.store.rows import DATE_STATE_FIELDS, STATE_FIELDS
from aggregator.store.sqlite import SQLiteStore, _unpacked, fingerprint_key, from_iso

if TYPE_CHECKING:
    from psycopg import Connection

__all__ = ["Moved", "move_sqlite"]

# A copy's dates, as SQLite keeps them (text), to read back as datetimes.
_COPY_DATES = frozenset({"first_seen", "published", "updated"})
_STATE_LISTS = frozenset({"warnings"})
_ENTRY_DATES = frozenset({"first_seen", "published", "updated", "sort_date", "changed"})


@dataclass(frozen=True, slots=True)
class Moved:
    """What a move copied."""

    sources: int  # source states
    entries: int  # merged entries
    copies: int  # copies of posts
    bands: int  # rows of the candidate index


def move_sqlite(path: Path, store: PostgresStore) -> Moved:
    """Copy the SQLite store at `path` into `store`, which must hold nothing yet, in one
    transaction. The SQLite store is brought to its current schema first, and is otherwise
    only read. Raises StorageError when either store cannot be used."""
    if not path.is_file():
        raise StorageError(f"{path}: no SQLite store there")
    SQLiteStore(path).close()  # its schema, up to date
    try:
        source = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise StorageError(f"{path}: cannot read the store: {exc}") from None
    try:
        with store.transaction(), store.connection() as conn:
            if conn.execute(
                "SELECT EXISTS (SELECT 1 FROM sources) OR EXISTS (SELECT 1 FROM entries)"
            ).fetchone() != (False,):
                raise StorageError(
                    f"{store.where}: already holds a store; move into an empty database"
                )
            return _copy_all(source, conn)
    except sqlite3.Error as exc:
        raise StorageError(f"{path}: cannot read the store: {exc}") from None
    finally:
        source.close()


def _copy_all(db: sqlite3.Connection, conn: Connection[Any]) -> Moved:
    state_columns = ("name", *STATE_FIELDS)
    states = _copy_rows(
        conn,
        "sources",
        state_columns,
        (
            _typed(state_columns, row, DATE_STATE_FIELDS, frozenset(), lists=_STATE_LISTS)
            for row in db.execute(f"SELECT {', '.join(state_columns)} FROM sources")
        ),
    )
    entries = _copy_rows(
        conn,
        "entries",
        ENTRY_TABLE_COLUMNS,
        (
            _typed(ENTRY_TABLE_COLUMNS, row, _ENTRY_DATES, frozenset({"backfill"}))
            for row in db.execute(
                f"SELECT {', '.join(ENTRY_TABLE_COLUMNS)} FROM entries ORDER BY seq"
            )
        ),
    )
    # The candidate index: every row but those SQLite keeps for a copy's fingerprint (found
    # here by an index of copies instead). A copy stored before copies kept their own hashes
    # takes them from these rows.
    fingerprint_rows: set[tuple[int, int]] = set()
    unsketched: dict[int, list[int]] = {}
    for number, fingerprint, sketch in db.execute("SELECT rowid, fingerprint, sketch FROM copies"):
        fingerprint_rows.add((fingerprint_key(fingerprint), number))
        if sketch is None:
            unsketched[number] = []

    def bands() -> Iterator[tuple[int, int]]:
        for row in db.execute(
            "SELECT hash, copy FROM sketches UNION SELECT hash, copy FROM recent_sketches "
            "ORDER BY 1, 2"
        ):
            if row not in fingerprint_rows:
                if row[1] in unsketched:
                    unsketched[row[1]].append(row[0])
                yield row

    moved_bands = _copy_rows(conn, "bands", ("hash", "copy"), bands())
    sqlite_columns = [c if c != "id" else "rowid" for c in COPY_TABLE_COLUMNS]
    copies = _copy_rows(
        conn,
        "copies",
        COPY_TABLE_COLUMNS,
        (
            _typed(
                COPY_TABLE_COLUMNS,
                row,
                _COPY_DATES,
                frozenset({"truncated"}),
                lists=frozenset({"authors", "categories"}),
                sketches=unsketched,
            )
            for row in db.execute(f"SELECT {', '.join(sqlite_columns)} FROM copies ORDER BY rowid")
        ),
    )
    conn.execute(
        "INSERT INTO source_counts (source, entries) "
        "SELECT source, count(DISTINCT entry_id) FROM copies GROUP BY source"
    )
    # Statistics for the planner now, not when autovacuum gets to the new tables: without
    # them a batch's look-up in the candidate index scans the whole table.
    for table in ("sources", "entries", "copies", "bands"):
        conn.execute(f"ANALYZE {table}")
    return Moved(states, entries, copies, moved_bands)


def _typed(
    columns: tuple[str, ...],
    row: tuple[Any, ...],
    dates: frozenset[str],
    flags: frozenset[str],
    *,
    lists: frozenset[str] = frozenset(),
    sketches: dict[int, list[int]] | None = None,
) -> tuple[object, ...]:
    """A SQLite row with each value as PostgreSQL keeps it: dates, flags, lists, hashes."""
    out: list[object] = []
    for column, value in zip(columns, row, strict=True):
        if column in dates:
            out.append(from_iso(value))
        elif column in flags:
            out.append(bool(value))
        elif column in lists:
            out.append(json.loads(value))
        elif column == "sketch" and sketches is not None:
            out.append(_unpacked(value) if value is not None else sketches.get(row[0], []))
        else:
            out.append(value)
    return tuple(out)


def _copy_rows(conn: Connection[Any], table: str, columns: tuple[str, ...], rows: Any) -> int:
    """COPY rows into a table; returns how many."""
    n = 0
    with conn.cursor() as cur, cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)
            n += 1
    return n
