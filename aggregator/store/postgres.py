"""The PostgreSQL store: psycopg 3 over a connection pool, hand-written SQL, numbered migrations.

It keeps what the SQLite store keeps, with the same meaning (store/sqlite.py explains it):
- `sources`: one row per source name, its SourceState.
- `entries`: one row per merged post, its id minted at first sight and never changed; its
  `representative` copy gives it its title, link and excerpt.
- `copies`: one row per (source, key), numbered by `id` in the order they were stored (the
  number dedup reads as a copy's age); `sketch` keeps the copy's candidate-index hashes.
- `bands`: the near-duplicate candidate index, one row per (hash, copy), written with COPY and
  read with one `hash = ANY(...)` look-up per batch. (An int8[] column of copies with a GIN
  index answers the same question, but more slowly, and its plan flips with the statistics.)
- `source_counts`: entries per source, kept by the store as it writes, so that writing the
  outputs does not count through the whole store.
- `schema_version`: the number of migrations applied.

Every write runs in a transaction that first takes one advisory lock, so that writers in any
number of processes and machines take turns: what dedup read inside the transaction is what
its decision is written over, and new copies and entries are numbered after the highest
stored ones. Reads outside a transaction take a pooled connection in autocommit mode.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Self

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
    STATE_FIELDS,
    check_seal,
    content_values,
    created_entries,
    entry_from,
    gained_entries,
)

if TYPE_CHECKING:
    from psycopg import Connection
    from psycopg_pool import ConnectionPool

# Each migration takes the schema from version i to i + 1; never edit a released one.
MIGRATIONS: tuple[str, ...] = (
    # 1: sources, entries and their copies.
    """
    CREATE TABLE sources (
        name text PRIMARY KEY,
        url text, etag text, last_modified text, body_hash text, effective_url text,
        last_status text, last_fetch timestamptz, last_success timestamptz, error text,
        error_streak integer NOT NULL DEFAULT 0, next_due timestamptz,
        redirect_url text, redirect_streak integer NOT NULL DEFAULT 0,
        ttl_seconds integer
    );
    CREATE TABLE entries (
        id text PRIMARY KEY,
        first_seen timestamptz NOT NULL,
        published timestamptz,
        updated timestamptz NOT NULL,
        sort_date timestamptz NOT NULL,
        seq bigint NOT NULL UNIQUE,
        backfill boolean NOT NULL DEFAULT false,
        changed timestamptz,
        representative bigint
    );
    CREATE INDEX entries_order ON entries (sort_date DESC, seq DESC);
    CREATE TABLE copies (
        id bigint PRIMARY KEY,
        source text NOT NULL,
        key text NOT NULL,
        entry_id text NOT NULL REFERENCES entries (id),
        rule text NOT NULL,
        score double precision,
        guid text, title text NOT NULL, link text, link_key text,
        published timestamptz, updated timestamptz, first_seen timestamptz NOT NULL,
        authors text[] NOT NULL, categories text[] NOT NULL,
        excerpt text NOT NULL, truncated boolean NOT NULL,
        fingerprint text NOT NULL, content_hash text NOT NULL,
        position integer NOT NULL, text text NOT NULL,
        sketch bigint[] NOT NULL DEFAULT '{}',
        UNIQUE (source, key)
    );
    CREATE INDEX copies_link ON copies (link_key) WHERE link_key IS NOT NULL;
    CREATE INDEX copies_fingerprint ON copies (fingerprint);
    CREATE INDEX copies_entry ON copies (entry_id);
    """,
    # 2: the near-duplicate candidate index, filled from the hashes each copy keeps, and the
    # entries per source, counted once here and kept up to date by the store from then on.
    """
    CREATE TABLE bands (
        hash bigint NOT NULL,
        copy bigint NOT NULL,
        PRIMARY KEY (hash, copy)
    );
    INSERT INTO bands (hash, copy)
        SELECT DISTINCT h, id FROM copies, unnest(sketch) AS h ORDER BY 1, 2;
    CREATE TABLE source_counts (
        source text PRIMARY KEY,
        entries bigint NOT NULL
    );
    INSERT INTO source_counts (source, entries)
        SELECT source, count(DISTINCT entry_id) FROM copies GROUP BY source;
    """,
    # 3: each source's own title and home page, from its last parse (shown beside its name).
    """
    ALTER TABLE sources ADD COLUMN feed_title text, ADD COLUMN site_link text;
    """,
    # 4: the entry selector auto mode settled on for a page, to notice when the page changes.
    """
    ALTER TABLE sources ADD COLUMN page_entry text;
    """,
    # 5: planner statistics of copies only for the columns its look-ups filter or join by:
    # gathering them for the texts too made ANALYZE of copies four times as long (1.0 s
    # against 0.25 s at 30,000 records).
    """
    ALTER TABLE copies
        ALTER COLUMN title SET STATISTICS 0,
        ALTER COLUMN guid SET STATISTICS 0,
        ALTER COLUMN link SET STATISTICS 0,
        ALTER COLUMN published SET STATISTICS 0,
        ALTER COLUMN updated SET STATISTICS 0,
        ALTER COLUMN authors SET STATISTICS 0,
        ALTER COLUMN categories SET STATISTICS 0,
        ALTER COLUMN excerpt SET STATISTICS 0,
        ALTER COLUMN truncated SET STATISTICS 0,
        ALTER COLUMN content_hash SET STATISTICS 0,
        ALTER COLUMN position SET STATISTICS 0,
        ALTER COLUMN text SET STATISTICS 0,
        ALTER COLUMN rule SET STATISTICS 0,
        ALTER COLUMN score SET STATISTICS 0,
        ALTER COLUMN sketch SET STATISTICS 0;
    """,
    # 6: each copy's source HTML (for full content), and more of what each source's own
    # document says about itself (its id, author and last update, for atom:source).
    """
    ALTER TABLE copies ADD COLUMN html text;
    ALTER TABLE copies ALTER COLUMN html SET STATISTICS 0;
    ALTER TABLE sources ADD COLUMN feed_id text, ADD COLUMN feed_author text,
        ADD COLUMN feed_updated timestamptz;
    """,
    # 7: each source's survivable problems of its last read, and the host of each copy's
    # source's own site, which dedup reads to find the original's copy (unknown for the
    # copies stored so far).
    """
    ALTER TABLE sources ADD COLUMN warnings text[] NOT NULL DEFAULT '{}';
    ALTER TABLE copies ADD COLUMN site_host text;
    ALTER TABLE copies ALTER COLUMN site_host SET STATISTICS 0;
    """,
    # 8: the sealed archive pages of each output (RFC 5005): which entries, in which order;
    # an entry deleted (pruned, merged away, or its only source removed) leaves its page. And
    # what output_entries last answered for each output.
    """
    CREATE TABLE archived (
        output text NOT NULL,
        entry_id text NOT NULL,
        page integer NOT NULL,
        position integer NOT NULL,
        PRIMARY KEY (output, entry_id)
    );
    CREATE INDEX archived_page ON archived (output, page, position);
    CREATE INDEX archived_entry ON archived (entry_id);
    CREATE TABLE archive_pages (
        output text PRIMARY KEY,
        pages integer NOT NULL
    );
    CREATE FUNCTION archived_entry_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        DELETE FROM archived WHERE entry_id = OLD.id;
        RETURN OLD;
    END
    $$;
    CREATE TRIGGER archived_entry_deleted AFTER DELETE ON entries
        FOR EACH ROW EXECUTE FUNCTION archived_entry_deleted();
    CREATE TABLE output_reads (
        output text PRIMARY KEY,
        match text NOT NULL,
        seq bigint NOT NULL,
        copy bigint NOT NULL,
        answer text[] NOT NULL
    );
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)

# Held by every write transaction (and by migrations): one writer at a time, everywhere.
WRITE_LOCK = 0x61676772_65676174  # "aggregat"

# Batches applied between two looks at how much the tables changed (see _analyze_if_changed),
# and the tables looked at.
ANALYZE_EVERY = 16
_ANALYZED = ("entries", "copies", "bands")

# Sorts below every real date: undated back-catalogue from a source's first crawl.
_BACKFILL = datetime(1, 1, 1, tzinfo=UTC)

# An entry as entry_from reads it.
_ENTRY_ROW = "id, first_seen, published, updated, representative"
_COPY_COLUMNS = (
    "c.id, c.source, c.key, c.entry_id, c.content_hash, c.link_key, c.truncated, c.text, c.title"
)
_CONTENT_COLUMNS = CONTENT_COLUMNS
COPY_TABLE_COLUMNS = (
    "id",
    "source",
    "key",
    "entry_id",
    "rule",
    "score",
    "guid",
    "first_seen",
    "sketch",
    *_CONTENT_COLUMNS,
)
ENTRY_TABLE_COLUMNS = (
    "id",
    "first_seen",
    "published",
    "updated",
    "sort_date",
    "seq",
    "backfill",
    "changed",
    "representative",
)
_SAVE_STATE = (
    f"INSERT INTO sources (name, {', '.join(STATE_FIELDS)}) "
    f"VALUES (%s, {', '.join('%s' for _ in STATE_FIELDS)}) "
    f"ON CONFLICT (name) DO UPDATE SET {', '.join(f'{f} = excluded.{f}' for f in STATE_FIELDS)}"
)
_UPDATE_COPY = (
    "UPDATE copies SET key = %s, guid = %s, sketch = %s::bigint[], "
    + ", ".join(f"{c} = %s" for c in _CONTENT_COLUMNS)
    + " WHERE id = %s"
)


def describe(url: str) -> str:
    """Where a database URL points, without its password: for messages and logs."""
    from psycopg.conninfo import conninfo_to_dict

    try:
        info = conninfo_to_dict(url)
    except Exception:  # an unreadable URL is reported by the connection attempt
        return "postgresql database"
    host = info.get("host") or "localhost"
    port = info.get("port") or "5432"
    user = f"{info['user']}@" if info.get("user") else ""
    return f"postgresql://{user}{host}:{port}/{info.get('dbname') or ''}"


def _same(value: datetime | None) -> datetime | None:
    return value


def _copy(row: Sequence[Any]) -> StoredCopy:
    copy_id, source, key, entry_id, content_hash, link, truncated, text, title = row
    return StoredCopy(copy_id, source, key, entry_id, content_hash, link, truncated, text, title)


def schema_version(conn: Connection[Any]) -> int:
    """The number of migrations the database has had (0: none, or no store at all)."""
    row = conn.execute("SELECT to_regclass('schema_version') IS NOT NULL").fetchone()
    if row is None or not row[0]:
        return 0
    row = conn.execute("SELECT version FROM schema_version").fetchone()
    return int(row[0]) if row else 0


def migrate(conn: Connection[Any], where: str) -> tuple[int, int]:
    """Bring the schema up to SCHEMA_VERSION. Returns the versions before and after.

    A schema that is up to date is only read: opening a store does not wait for a writer.
    Otherwise the migrations run under the write lock, since other processes may be migrating
    the same database (the version is read again once the lock is held)."""
    before = schema_version(conn)
    if before == SCHEMA_VERSION:
        return before, before
    if before < SCHEMA_VERSION:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK,))
            conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version integer NOT NULL)")
            row = conn.execute("SELECT version FROM schema_version").fetchone()
            if row is None:
                conn.execute("INSERT INTO schema_version (version) VALUES (0)")
            before = row[0] if row else 0
            for version in range(before, SCHEMA_VERSION):
                conn.execute(MIGRATIONS[version])  # several statements, no parameters
                conn.execute("UPDATE schema_version SET version = %s", (version + 1,))
    if before > SCHEMA_VERSION:
        raise StorageError(
            f"{where}: store has schema version {before}, newer than this program "
            f"understands ({SCHEMA_VERSION}); upgrade aggregator"
        )
    return before, SCHEMA_VERSION


class PostgresStore:
    """A Store in a PostgreSQL database. One instance may serve several threads: each takes a
    connection from the pool, and a transaction keeps its connection until it ends."""

    def __init__(self, url: str, *, pool_size: int = 4, timeout: float = 30.0) -> None:
        import psycopg
        from psycopg_pool import ConnectionPool

        self.url = url
        self.where = describe(url)
        self._local = threading.local()  # the connection of this thread's open transaction
        self._applied = 0  # batches applied by this instance
        try:
            with psycopg.connect(url, autocommit=True, connect_timeout=int(timeout)) as conn:
                # The schema versions before and after opening (before 0: created now).
                self.migrated_from, self.schema_version = migrate(conn, self.where)
        except psycopg.Error as exc:
            raise StorageError(f"{self.where}: cannot open the store: {_reason(exc)}") from None
        self._pool: ConnectionPool[Any] = ConnectionPool(
            url,
            min_size=1,
            max_size=pool_size,
            kwargs={"autocommit": True},
            configure=_configure,
            # A connection is checked as it is taken: after the server restarted, or dropped
            # an idle connection, the pool connects again instead of failing the next write.
            check=ConnectionPool.check_connection,
            timeout=timeout,
            open=False,
            name="aggregator-store",
        )
        try:
            self._pool.open(wait=True, timeout=timeout)
        except Exception as exc:
            self._pool.close()
            raise StorageError(f"{self.where}: cannot open the store: {exc}") from None

    def close(self) -> None:
        self._pool.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- connections and transactions -----------------------------------------------------

    @contextmanager
    def connection(self) -> Iterator[Connection[Any]]:
        """This thread's transaction's connection, else one from the pool for the block."""
        import psycopg

        current: Connection[Any] | None = getattr(self._local, "conn", None)
        try:
            if current is not None:
                yield current
            else:
                with self._pool.connection() as conn:
                    yield conn
        except psycopg.Error as exc:
            raise StorageError(f"{self.where}: {_reason(exc)}") from None

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """The Protocol's write transaction: the advisory write lock is taken first, so that
        no other writer stores anything between dedup's reads inside and the commit. This
        thread's calls inside use its connection; nested, psycopg makes it a savepoint."""
        import psycopg

        current: Connection[Any] | None = getattr(self._local, "conn", None)
        if current is not None:
            try:
                with current.transaction():
                    yield
            except psycopg.Error as exc:
                raise StorageError(f"{self.where}: write failed: {_reason(exc)}") from None
            return
        try:
            with self._pool.connection() as conn:
                self._local.conn = conn
                try:
                    with conn.transaction():
                        conn.execute("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK,))
                        yield
                finally:
                    self._local.conn = None
        except psycopg.Error as exc:
            raise StorageError(f"{self.where}: write failed: {_reason(exc)}") from None

    # --- source state ---------------------------------------------------------------------

    def get_state(self, name: str) -> SourceState | None:
        with self.connection() as conn:
            row = conn.execute(
                f"SELECT {', '.join(STATE_FIELDS)} FROM sources WHERE name = %s", (name,)
            ).fetchone()
        return _state(name, row) if row else None

    def states(self, names: Collection[str] | None = None) -> list[SourceState]:
        """Every source's state, or those of `names` (the others are left out)."""
        where, args = ("WHERE name = ANY(%s) ", (list(names),)) if names is not None else ("", ())
        with self.connection() as conn:
            rows = conn.execute(
                f"SELECT name, {', '.join(STATE_FIELDS)} FROM sources {where}ORDER BY name", args
            ).fetchall()
        return [_state(row[0], row[1:]) for row in rows]

    def save_states(self, states: Sequence[SourceState]) -> None:
        if states:
            with self.transaction(), self.connection() as conn:
                self._save_states(conn, states)

    @staticmethod
    def _save_states(conn: Connection[Any], states: Iterable[SourceState]) -> None:
        with conn.cursor() as cur:
            cur.executemany(
                _SAVE_STATE,
                [(st.name, *(_state_value(st, f) for f in STATE_FIELDS)) for st in states],
            )

    # --- the candidate view ---------------------------------------------------------------

    def candidates(self, query: CandidateQuery) -> Candidates:
        """One batch's look-ups: one query each for the keys, the links, the fingerprints and
        the hashes."""
        by_key: dict[tuple[str, str], StoredCopy] = {}
        by_link: dict[str, list[StoredCopy]] = {}
        by_fingerprint: dict[str, list[StoredCopy]] = {}
        with self.connection() as conn:
            if query.keys:
                sources, keys = zip(*query.keys, strict=True)
                for row in conn.execute(
                    f"SELECT {_COPY_COLUMNS} FROM copies c "
                    "JOIN unnest(%s::text[], %s::text[]) AS q (source, key) "
                    "ON c.source = q.source AND c.key = q.key",
                    (list(sources), list(keys)),
                ):
                    c = _copy(row)
                    by_key[c.source, c.key] = c
            if query.links:
                for row in conn.execute(
                    f"SELECT {_COPY_COLUMNS} FROM copies c WHERE c.link_key = ANY(%s) "
                    "ORDER BY c.id",
                    (list(query.links),),
                ):
                    c = _copy(row)
                    by_link.setdefault(c.link or "", []).append(c)
            if query.fingerprints:
                for fingerprint, *row in conn.execute(
                    f"SELECT c.fingerprint, {_COPY_COLUMNS} FROM copies c "
                    "WHERE c.fingerprint = ANY(%s) ORDER BY c.id",
                    (list(query.fingerprints),),
                ):
                    by_fingerprint.setdefault(fingerprint, []).append(_copy(row))
            by_hash = self._by_hash(conn, query.hashes, query.limit) if query.hashes else {}
        return Candidates(by_key, by_link, by_fingerprint, by_hash)

    @staticmethod
    def _by_hash(
        conn: Connection[Any], hashes: Collection[int], limit: int
    ) -> dict[int, list[StoredCopy]]:
        """The copies under each hash, the newest `limit`: the pairs in one look-up of the
        band table, then each copy they name once."""
        pairs = conn.execute(
            "SELECT hash, copy FROM ("
            "  SELECT hash, copy, row_number() OVER (PARTITION BY hash ORDER BY copy DESC) AS n"
            "  FROM bands WHERE hash = ANY(%s::bigint[])"
            ") ranked WHERE n <= %s",
            (_int_array(hashes), limit),
        ).fetchall()
        if not pairs:
            return {}
        copies = {
            c.rowid: c
            for c in map(
                _copy,
                conn.execute(
                    f"SELECT {_COPY_COLUMNS} FROM copies c WHERE c.id = ANY(%s::bigint[])",
                    (_int_array({copy for _, copy in pairs}),),
                ),
            )
        }
        by_hash: dict[int, list[StoredCopy]] = {}
        for h, copy in pairs:
            if copy in copies:
                by_hash.setdefault(h, []).append(copies[copy])
        return by_hash

    def entries(self, ids: Collection[str]) -> Mapping[str, StoredEntry]:
        """One query: the entries and their copies, joined."""
        if not ids:
            return {}
        found: dict[str, tuple[datetime, int, list[CopyRank]]] = {}
        with self.connection() as conn:
            rows = conn.execute(
                "SELECT e.id, e.first_seen, e.seq, c.source, c.key, c.truncated, "
                "length(c.excerpt), c.first_seen, c.id, c.link, c.site_host, c.published "
                "FROM entries e "
                "JOIN copies c ON c.entry_id = e.id "
                "WHERE e.id = ANY(%s) ORDER BY c.first_seen, c.id",
                (list(ids),),
            ).fetchall()
        for entry_id, first_seen, seq, *copy in rows:
            if entry_id not in found:
                found[entry_id] = (first_seen, seq, [])
            found[entry_id][2].append(CopyRank(*copy))
        return {
            entry_id: StoredEntry(entry_id, first_seen, seq, tuple(copies))
            for entry_id, (first_seen, seq, copies) in found.items()
        }

    # --- writing a batch ------------------------------------------------------------------

    def apply(self, decision: Decision, state: SourceState, *, backfill: bool = False) -> None:
        """One batch's decision and its source's state, written in one (sub)transaction."""
        with self.transaction(), self.connection() as conn:
            _Batch(conn, decision, backfill).write()
            self._save_states(conn, (state,))
        self._applied += 1
        if self._applied % ANALYZE_EVERY == 1:
            self._analyze_if_changed()

    def _analyze_if_changed(self) -> None:
        """Gather the planner's statistics of the tables that changed much since they were last
        gathered. Without statistics PostgreSQL guesses that a look-up by a list of values
        matches a large part of a table and scans all of it; autovacuum gathers them in time
        only where it runs, and it may be off."""
        with self.connection() as conn:
            changed = [
                row[0]
                for row in conn.execute(
                    "SELECT relname FROM pg_stat_user_tables WHERE relname = ANY(%s) "
                    "AND n_mod_since_analyze > 500 + 0.1 * n_live_tup",
                    (list(_ANALYZED),),
                )
            ]
            for table in _ANALYZED:
                if table in changed:
                    conn.execute(f"ANALYZE {table}")

    # --- removing -------------------------------------------------------------------------

    def remove_source(self, name: str) -> Removal:
        """Delete a source's copies, its emptied entries and its state (see the Protocol)."""
        with self.transaction(), self.connection() as conn:
            rows = conn.execute(
                "SELECT id, entry_id FROM copies WHERE source = %s", (name,)
            ).fetchall()
            touched = {entry_id for _, entry_id in rows}
            _delete_copies(conn, [copy for copy, _ in rows])
            kept = {
                row[0]
                for row in conn.execute(
                    "SELECT DISTINCT entry_id FROM copies WHERE entry_id = ANY(%s)",
                    (list(touched),),
                )
            }
            conn.execute("DELETE FROM entries WHERE id = ANY(%s)", (list(touched - kept),))
            _after_losing_copies(conn, kept)
            # Entries of other sources lost no copy of theirs: only this source's count goes.
            conn.execute("DELETE FROM sources WHERE name = %s", (name,))
            conn.execute("DELETE FROM source_counts WHERE source = %s", (name,))
        return Removal(name, len(rows), len(touched - kept), tuple(sorted(kept)))

    def set_representatives(self, chosen: Mapping[str, tuple[str, str]]) -> None:
        rows = [(source, key, entry_id) for entry_id, (source, key) in chosen.items()]
        if rows:
            with self.transaction(), self.connection() as conn, conn.cursor() as cur:
                cur.executemany(
                    "UPDATE entries SET representative = "
                    "(SELECT id FROM copies WHERE source = %s AND key = %s) WHERE id = %s",
                    rows,
                )
                _refresh_dates(conn, chosen)  # an entry's dates are its representative's

    def prune(self, before: datetime, keep: int) -> int:
        """Delete the old entries beyond the newest `keep` (see the Protocol)."""
        with self.transaction(), self.connection() as conn:
            old = [
                row[0]
                for row in conn.execute(
                    "SELECT id FROM entries WHERE first_seen < %s AND updated < %s AND id NOT IN "
                    "(SELECT id FROM entries ORDER BY sort_date DESC, seq DESC LIMIT %s)",
                    (before, before, keep),
                )
            ]
            if old:
                # Each source with a copy in a pruned entry counts that entry no more.
                conn.execute(
                    "UPDATE source_counts s SET entries = s.entries - d.n FROM ("
                    "SELECT source, count(DISTINCT entry_id) AS n FROM copies "
                    "WHERE entry_id = ANY(%s) GROUP BY source) d WHERE s.source = d.source",
                    (old,),
                )
                copies = conn.execute(
                    "SELECT id FROM copies WHERE entry_id = ANY(%s)", (old,)
                ).fetchall()
                _delete_copies(conn, [row[0] for row in copies])
                conn.execute("DELETE FROM entries WHERE id = ANY(%s)", (old,))
        return len(old)

    # --- reading for output ---------------------------------------------------------------

    def latest(self, limit: int) -> list[Entry]:
        """Two queries: the entries in output order, then all their copies."""
        with self.connection() as conn:
            rows = conn.execute(
                f"SELECT {_ENTRY_ROW} FROM entries ORDER BY sort_date DESC, seq DESC LIMIT %s",
                (limit,),
            ).fetchall()
            return _with_copies(conn, rows)

    def load_entries(self, ids: Sequence[str]) -> list[Entry]:
        """The entries with these ids, in the order given; unknown ids are left out."""
        wanted = list(dict.fromkeys(ids))
        with self.connection() as conn:
            found = {
                row[0]: row
                for row in conn.execute(
                    f"SELECT {_ENTRY_ROW} FROM entries WHERE id = ANY(%s)", (wanted,)
                )
            }
            return _with_copies(conn, [found[i] for i in wanted if i in found])

    # --- outputs and their archives (RFC 5005) --------------------------------------------

    def output_entries(self, output: str, match: EntryMatch) -> list[str]:
        """The ids of the entries `match` selects that no archive page of `output` holds,
        newest first, ties by the order they were stored in.

        The answer is remembered (`output_reads`): the next call for the same output and
        filter judges only what it answered then and the entries created or given a copy
        since (entries by `seq`, copies by number, both only grow), instead of every entry.
        Categories are compared casefolded here, in Python, as the SQLite store compares
        them (PostgreSQL's lower() folds fewer letters)."""
        key = json.dumps([sorted(match.categories), sorted(match.sources)])
        with self.transaction(), self.connection() as conn:
            # The newest entry and copy before reading: anything stored after is judged next.
            top_seq, top_copy = conn.execute(
                "SELECT (SELECT coalesce(max(seq), 0) FROM entries), "
                "(SELECT coalesce(max(id), 0) FROM copies)"
            ).fetchone() or (0, 0)
            where = [
                "NOT EXISTS (SELECT 1 FROM archived a WHERE a.output = %s AND a.entry_id = e.id)"
            ]
            args: list[object] = [output]
            last = conn.execute(
                "SELECT match, seq, copy, answer FROM output_reads WHERE output = %s", (output,)
            ).fetchone()
            if last is not None and last[0] == key:
                where.append(
                    "(e.id = ANY(%s) OR e.seq > %s "
                    "OR e.id IN (SELECT entry_id FROM copies WHERE id > %s))"
                )
                args += [last[3], last[1], last[2]]
            if match.sources:
                where.append(
                    "EXISTS (SELECT 1 FROM copies c WHERE c.entry_id = e.id AND c.source = ANY(%s))"
                )
                args.append(sorted(match.sources))
            categories = (
                ", (SELECT array_agg(j) FROM copies c, unnest(c.categories) AS j "
                "WHERE c.entry_id = e.id)"
                if match.categories
                else ", NULL"
            )
            ids = [
                entry_id
                for entry_id, names in conn.execute(
                    f"SELECT e.id{categories} FROM entries e WHERE {' AND '.join(where)} "
                    "ORDER BY e.sort_date DESC, e.seq DESC",
                    args,
                )
                if not match.categories
                or any(n.casefold() in match.categories for n in names or ())
            ]
            conn.execute(
                "INSERT INTO output_reads (output, match, seq, copy, answer) "
                "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (output) DO UPDATE SET "
                "match = excluded.match, seq = excluded.seq, copy = excluded.copy, "
                "answer = excluded.answer",
                (output, key, top_seq, top_copy, ids),
            )
        return ids

    def archive_pages(self, output: str) -> int:
        # Counted apart from `archived`: a page whose entries were all pruned still exists.
        with self.connection() as conn:
            row = conn.execute(
                "SELECT pages FROM archive_pages WHERE output = %s", (output,)
            ).fetchone()
        return int(row[0]) if row else 0

    def archive_page(self, output: str, page: int) -> list[str]:
        with self.connection() as conn:
            rows = conn.execute(
                "SELECT entry_id FROM archived WHERE output = %s AND page = %s ORDER BY position",
                (output, page),
            ).fetchall()
        return [row[0] for row in rows]

    def seal_archive(self, output: str, page: int, ids: Sequence[str]) -> None:
        import psycopg

        with self.transaction(), self.connection() as conn:
            check_seal(self.where, output, page, self.archive_pages(output), ids)
            try:
                with conn.transaction(), conn.cursor() as cur:
                    cur.executemany(
                        "INSERT INTO archived (output, entry_id, page, position) "
                        "VALUES (%s, %s, %s, %s)",
                        [(output, entry_id, page, i) for i, entry_id in enumerate(ids)],
                    )
            except psycopg.errors.UniqueViolation:
                raise StorageError(
                    f"{self.where}: archive page {page} of {output!r}: an entry is in another page"
                ) from None
            conn.execute(
                "INSERT INTO archive_pages (output, pages) VALUES (%s, %s) "
                "ON CONFLICT (output) DO UPDATE SET pages = excluded.pages",
                (output, page),
            )

    def entry_counts(self) -> dict[str, int]:
        """Entries per source, from the counts the store keeps (no pass over the store)."""
        with self.connection() as conn:
            rows = conn.execute("SELECT source, entries FROM source_counts WHERE entries > 0")
            return {source: int(n) for source, n in rows}

    def clusters(self, source: str | None = None) -> list[Cluster]:
        """Two queries: the entries with more than one copy, then all their copies."""
        where = ""
        args: list[object] = []
        if source is not None:
            where = "WHERE e.id IN (SELECT entry_id FROM copies WHERE source = %s)"
            args.append(source)
        with self.connection() as conn:
            rows = conn.execute(
                "SELECT e.id, e.first_seen FROM entries e "
                "JOIN (SELECT entry_id FROM copies GROUP BY entry_id HAVING count(*) > 1) m "
                f"ON m.entry_id = e.id {where} ORDER BY e.sort_date DESC, e.seq DESC",
                args,
            ).fetchall()
            copies: dict[str, list[ClusterCopy]] = {entry_id: [] for entry_id, _ in rows}
            for entry_id, *copy in conn.execute(
                "SELECT entry_id, source, key, rule, score, title, link, first_seen FROM copies "
                "WHERE entry_id = ANY(%s) ORDER BY first_seen, id",
                (list(copies),),
            ):
                copies[entry_id].append(ClusterCopy(*copy))
        return [
            Cluster(entry_id, first_seen, tuple(copies[entry_id])) for entry_id, first_seen in rows
        ]


class _Batch:
    """One decision written over one connection, inside the write transaction."""

    def __init__(self, conn: Connection[Any], decision: Decision, backfill: bool) -> None:
        self.conn = conn
        self.decision = decision
        self.backfill = backfill

    def write(self) -> None:
        conn, decision = self.conn, self.decision
        placements = decision.placements
        # Which of the entries the decision names exist already (one query); the others are
        # created by their first copy.
        named = {p.entry_id for p in placements} | {m.into for m in decision.merges}
        known = {
            row[0]
            for row in conn.execute("SELECT id FROM entries WHERE id = ANY(%s)", (list(named),))
        }
        # The new copies are numbered after the highest stored one, in batch order (the write
        # lock is held): an entry created now is inserted with its representative.
        (top,) = conn.execute("SELECT coalesce(max(id), 0) FROM copies").fetchone() or (0,)
        new = [p for p in placements if p.existing is None]
        numbers = {(p.excerpt.source, p.excerpt.key): top + i for i, p in enumerate(new, 1)}
        representatives = {
            entry_id: numbers.get(copy) for entry_id, copy in decision.representatives.items()
        }
        created = self._create_entries(new, known, representatives)
        stale = self._insert_copies(new, top, known)
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
        with conn.cursor() as cur:
            cur.executemany(
                "UPDATE entries SET representative = coalesce(%s, "
                "(SELECT id FROM copies WHERE source = %s AND key = %s)) WHERE id = %s",
                changed,
            )
        stale.update(entry_id for *_, entry_id in changed)
        # An entry's dates are its representative's: computed once, after the last copy.
        _refresh_dates(conn, stale)
        for old, new_id in decision.renames.items():
            self._rename(old, new_id)

    def _rename(self, old: str, new: str) -> None:
        """Give an entry another id (dedup decides when: see Decision.renames). Copies point
        at their entry: the row is copied (its sequence number set aside first: it is unique),
        the copies moved, the old row deleted."""
        fields = ENTRY_TABLE_COLUMNS[1:]
        taken = ", ".join("-seq" if f == "seq" else f for f in fields)
        self.conn.execute("UPDATE entries SET seq = -seq WHERE id = %s", (old,))
        self.conn.execute(
            f"INSERT INTO entries (id, {', '.join(fields)}) SELECT %s, {taken} "
            "FROM entries WHERE id = %s",
            (new, old),
        )
        self.conn.execute("UPDATE copies SET entry_id = %s WHERE entry_id = %s", (new, old))
        self.conn.execute("DELETE FROM entries WHERE id = %s", (old,))

    def _create_entries(
        self, new: Sequence[Placement], known: set[str], representatives: Mapping[str, int | None]
    ) -> set[str]:
        """Insert the entries that the batch's new copies name and the store lacks, dated by
        the representative copy of each (else its first); the top of a page (its newest item)
        gets the highest sequence number. Returns their ids."""
        first = created_entries(new, known, self.decision.representatives)
        if not first:
            return set()
        (seq,) = self.conn.execute("SELECT coalesce(max(seq), 0) FROM entries").fetchone() or (0,)
        rows: list[tuple[object, ...]] = []
        for entry_id, top, e in first:
            seq += 1
            stated = e.updated or e.published
            sort_date = e.published or stated or (_BACKFILL if self.backfill else top.first_seen)
            rows.append(
                (entry_id, top.first_seen, e.published, stated or top.first_seen, sort_date, seq,
                 self.backfill, None, representatives.get(entry_id))
            )  # fmt: skip
        with (
            self.conn.cursor() as cur,
            cur.copy(f"COPY entries ({', '.join(ENTRY_TABLE_COLUMNS)}) FROM STDIN") as copy,
        ):
            for row in rows:
                copy.write_row(row)
        return {entry_id for entry_id, _, _ in first}

    def _insert_copies(self, new: Sequence[Placement], top: int, known: set[str]) -> set[str]:
        """Insert the batch's new copies, numbered from `top` + 1 in order, with their
        candidate-index rows. Returns the entries stored before that gained a copy."""
        if not new:
            return set()
        self._count_new([(p.entry_id, p.excerpt.source) for p in new])
        bands: set[tuple[int, int]] = set()
        gained: set[str] = set()
        with (
            self.conn.cursor() as cur,
            cur.copy(f"COPY copies ({', '.join(COPY_TABLE_COLUMNS)}) FROM STDIN") as copy,
        ):
            for number, p in enumerate(new, top + 1):
                e = p.excerpt
                copy.write_row(
                    (number, e.source, e.key, p.entry_id, p.rule, p.score, e.guid, e.first_seen,
                     _int_array(p.sketch), *content_values(e, _same, _text_array))
                )  # fmt: skip
                bands.update((h, number) for h in p.sketch)
                if p.entry_id in known:
                    gained.add(p.entry_id)
        self._add_bands(bands)
        return gained

    def _add_bands(self, rows: Collection[tuple[int, int]]) -> None:
        if not rows:
            return
        # In index order, as COPY's text lines written at once: two integers need no escaping,
        # and a copy has a dozen rows.
        lines = "".join(f"{h}\t{c}\n" for h, c in sorted(rows))
        with self.conn.cursor() as cur, cur.copy("COPY bands (hash, copy) FROM STDIN") as copy:
            copy.write(lines)

    def _rewrite_copy(self, p: Placement) -> None:
        """A stored copy's new content or key; its candidate-index rows are replaced."""
        old, e = p.existing, p.excerpt
        assert old is not None
        self.conn.execute(
            "DELETE FROM bands WHERE copy = %s "
            "AND hash = ANY((SELECT sketch FROM copies WHERE id = %s)::bigint[])",
            (old.rowid, old.rowid),
        )
        content = content_values(e, _same, list)
        self.conn.execute(_UPDATE_COPY, (e.key, e.guid, _int_array(p.sketch), *content, old.rowid))
        self._add_bands({(h, old.rowid) for h in p.sketch})
        # A copy of the entry changed, noticed now: that counts as an update.
        self.conn.execute(
            "UPDATE entries SET changed = %s WHERE id = %s", (e.first_seen, p.entry_id)
        )

    def _count_new(self, pairs: list[tuple[str, str]]) -> None:
        """Count copies about to be inserted into source_counts: a source gains an entry when
        a copy is the first of that entry from that source."""
        counted = set(
            self.conn.execute(
                "SELECT DISTINCT entry_id, source FROM copies WHERE entry_id = ANY(%s)",
                (list({entry for entry, _ in pairs}),),
            ).fetchall()
        )
        gained = gained_entries(pairs, counted)
        with self.conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO source_counts (source, entries) VALUES (%s, %s) "
                "ON CONFLICT (source) DO UPDATE SET entries = source_counts.entries + "
                "excluded.entries",
                list(gained.items()),
            )

    def _merge(self, loser: str, winner: str, rule: str, score: float | None) -> None:
        """Fold entry `loser` into `winner`: its first copies take the rule (and score) by
        which it was linked, so every copy of the merged entry still says why it is there.
        A source with copies in both now counts one entry fewer."""
        conn = self.conn
        conn.execute(
            "UPDATE source_counts SET entries = entries - 1 WHERE source IN ("
            "SELECT source FROM copies WHERE entry_id = %s "
            "INTERSECT SELECT source FROM copies WHERE entry_id = %s)",
            (loser, winner),
        )
        conn.execute(
            "UPDATE copies SET rule = %s, score = %s WHERE entry_id = %s AND rule = 'new'",
            (rule, score, loser),
        )
        conn.execute("UPDATE copies SET entry_id = %s WHERE entry_id = %s", (winner, loser))
        conn.execute(
            "UPDATE entries SET backfill = entries.backfill AND l.backfill "
            "FROM entries l WHERE l.id = %s AND entries.id = %s",
            (loser, winner),
        )
        # An archive page that held the merged entry holds its survivor, unless the survivor
        # is archived in that output already (the entry's other rows go with it, by trigger).
        conn.execute(
            "UPDATE archived a SET entry_id = %s WHERE a.entry_id = %s AND NOT EXISTS "
            "(SELECT 1 FROM archived b WHERE b.output = a.output AND b.entry_id = %s)",
            (winner, loser, winner),
        )
        conn.execute("DELETE FROM entries WHERE id = %s", (loser,))


def _refresh_dates(conn: Connection[Any], entry_ids: Collection[str]) -> None:
    """Recompute entries' dates from their copies, in one statement; only the rows whose dates
    moved are written.

    The representative copy's dates: published is the date it states, else the earliest any
    copy states; updated is the latest it states, else the latest any copy states, else
    first_seen, or the last time we noticed a copy change, if later."""
    if not entry_ids:
        return
    conn.execute(
        "UPDATE entries e SET published = d.published, updated = d.updated, "
        "sort_date = d.sort_date FROM ("
        "  SELECT e.id, coalesce(r.published, x.published) AS published,"
        "    greatest(coalesce(r.updated, r.published, x.stated, e.first_seen), e.changed)"
        "      AS updated,"
        "    coalesce(r.published, x.published, r.updated, x.stated,"
        "      CASE WHEN e.backfill THEN %s ELSE e.first_seen END) AS sort_date"
        "  FROM entries e JOIN ("
        "    SELECT entry_id, min(published) AS published,"
        "      max(coalesce(updated, published)) AS stated"
        "    FROM copies WHERE entry_id = ANY(%s) GROUP BY entry_id"
        "  ) x ON x.entry_id = e.id"
        "  LEFT JOIN copies r ON r.id = e.representative"
        ") d WHERE e.id = d.id AND (e.published, e.updated, e.sort_date) "
        "IS DISTINCT FROM (d.published, d.updated, d.sort_date)",
        (_BACKFILL, list(entry_ids)),
    )


def _delete_copies(conn: Connection[Any], ids: Collection[int]) -> None:
    """Delete copies with their rows of the candidate index (found by each copy's hashes)."""
    if not ids:
        return
    wanted = _int_array(ids)
    conn.execute(
        "DELETE FROM bands b USING (SELECT id, unnest(sketch) AS hash FROM copies "
        "WHERE id = ANY(%s::bigint[])) x WHERE b.hash = x.hash AND b.copy = x.id",
        (wanted,),
    )
    conn.execute("DELETE FROM copies WHERE id = ANY(%s::bigint[])", (wanted,))


def _after_losing_copies(conn: Connection[Any], ids: Collection[str]) -> None:
    """Entries that lost copies: their first sight is their earliest copy's, that copy is the
    first one (rule "new") when the first is gone, and their dates follow the rest."""
    if not ids:
        return
    wanted = list(ids)
    conn.execute(
        "UPDATE entries e SET first_seen = x.first_seen FROM (SELECT entry_id, "
        "min(first_seen) AS first_seen FROM copies WHERE entry_id = ANY(%s) GROUP BY entry_id) x "
        "WHERE e.id = x.entry_id",
        (wanted,),
    )
    conn.execute(
        "UPDATE copies SET rule = 'new', score = NULL WHERE id IN ("
        "SELECT (SELECT c.id FROM copies c WHERE c.entry_id = e.id "
        "ORDER BY c.first_seen, c.id LIMIT 1) FROM entries e "
        "WHERE e.id = ANY(%s) AND NOT EXISTS "
        "(SELECT 1 FROM copies n WHERE n.entry_id = e.id AND n.rule = 'new'))",
        (wanted,),
    )
    _refresh_dates(conn, ids)


def _with_copies(conn: Connection[Any], rows: Sequence[Sequence[Any]]) -> list[Entry]:
    """Entries from their rows (_ENTRY_ROW), with every copy, in one more query."""
    if not rows:
        return []
    copies: dict[str, list[tuple[Any, ...]]] = {r[0]: [] for r in rows}
    for entry_id, *copy in conn.execute(
        "SELECT entry_id, source, key, rule, score, title, link, first_seen, authors, "
        "categories, excerpt, id, html FROM copies "
        # byte order, as SQLite sorts text, whatever the database's collation
        'WHERE entry_id = ANY(%s) ORDER BY source COLLATE "C", key COLLATE "C"',
        (list(copies),),
    ):
        copies[entry_id].append(tuple(copy))
    return [entry_from(row, copies[row[0]]) for row in rows]


def _state(name: str, row: Sequence[Any]) -> SourceState:
    values = dict(zip(STATE_FIELDS, row, strict=True))
    values["warnings"] = tuple(values["warnings"])
    return SourceState(name=name, **values)


def _state_value(state: SourceState, field: str) -> object:
    """A SourceState field as its `sources` column takes it (a list for an array)."""
    value = getattr(state, field)
    return list(value) if isinstance(value, tuple) else value


def _configure(conn: Connection[Any]) -> None:
    """Every pooled connection reads and writes times in UTC, and compiles no query to machine
    code: PostgreSQL starts JIT compilation for queries it estimates costly, a batch's
    look-up among them, and the milliseconds it takes are not won back by queries this
    short."""
    conn.execute("SET TIME ZONE 'UTC'")
    conn.execute("SET jit = off")


def _int_array(values: Iterable[int]) -> str:
    """Integers as a PostgreSQL array literal: cheaper to send than a list adapted value by
    value, for the thousands of hashes of a batch."""
    return "{" + ",".join(map(str, values)) + "}"


def _text_array(values: Sequence[str]) -> str:
    """Strings as a PostgreSQL array literal, each quoted (COPY escapes the whole value)."""
    quoted = (v.replace("\\", "\\\\").replace('"', '\\"') for v in values)
    return "{" + ",".join(f'"{v}"' for v in quoted) + "}"


def _reason(exc: Exception) -> str:
    """A database error as one line."""
    return " ".join(str(exc).split()) or type(exc).__name__
