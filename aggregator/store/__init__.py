"""Storage behind one Protocol, and the factory that opens the configured store.

Everything outside this package receives a `Store` from `open_store(config)` and uses it as a
context manager; none of it knows which implementation it holds. The Protocol is batch-shaped:
dedup asks for the candidates of a whole batch in one `candidates()` call (and the entries the
batch touches in one `entries()` call), and the store writes a whole batch's `Decision` in one
`apply()`. SQLite (`store/sqlite.py`) is the default implementation, PostgreSQL
(`store/postgres.py`) the one for a shared database; `tests/test_store_contract.py`
states what every implementation must do.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from types import TracebackType
from typing import TYPE_CHECKING, Protocol, Self

from aggregator.models import (
    CandidateQuery,
    Candidates,
    Cluster,
    Decision,
    Entry,
    EntryMatch,
    Removal,
    SourceState,
    StoredEntry,
)

if TYPE_CHECKING:
    from aggregator.config import Config

__all__ = ["CandidateView", "Store", "migrate_store", "open_store", "store_exists"]


class CandidateView(Protocol):
    """The read-only view of what is stored that dedup decides from."""

    def candidates(self, query: CandidateQuery) -> Candidates:
        """Every stored copy that one of the query's values finds, in one go."""
        ...

    def entries(self, ids: Collection[str]) -> Mapping[str, StoredEntry]:
        """The stored entries with these ids (unknown ids are left out), with their copies."""
        ...


class Store(CandidateView, Protocol):
    """Everything the use cases need from storage."""

    def __enter__(self) -> Self: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    def close(self) -> None: ...

    # --- source state ---------------------------------------------------------------------

    def get_state(self, name: str) -> SourceState | None: ...

    def states(self) -> Sequence[SourceState]: ...

    def save_states(self, states: Sequence[SourceState]) -> None:
        """Several sources' states in one write."""
        ...

    # --- a batch --------------------------------------------------------------------------

    def transaction(self) -> AbstractContextManager[None]:
        """Hold the write lock from dedup's reads to the commit of what they decided: nobody
        else stores copies in between. Writes inside join it; a failure rolls all of it back.
        Nested, it is a savepoint: a failure undoes its own writes and propagates."""
        ...

    def apply(self, decision: Decision, state: SourceState, *, backfill: bool = False) -> None:
        """Persist one batch's decision and its source's new state, in one transaction.

        `backfill` marks a source's first crawl: its undated entries are back-catalogue, so
        they sort below every dated entry instead of flooding the top as "seen just now"."""
        ...

    # --- removing -------------------------------------------------------------------------

    def remove_source(self, name: str) -> Removal:
        """Delete a source's copies and its state, in one write (a savepoint inside a
        transaction). An entry left without copies goes with them; an entry another source
        also has stays, with its dates, first copy and counts recomputed from the copies left,
        and is listed in `entries_kept`: its representative is chosen again by the caller
        (dedup's rule) and written with `set_representatives`, in the same transaction."""
        ...

    def set_representatives(self, chosen: Mapping[str, tuple[str, str]]) -> None:
        """Entry id -> (source, key) of the copy that represents it from now on; the entry's
        dates follow it (see `latest`)."""
        ...

    def prune(self, before: datetime, keep: int) -> int:
        """Delete the entries (with their copies) first seen and last updated before `before`
        that are not among the newest `keep` entries of the outputs' order. Returns how many
        entries left."""
        ...

    # --- reading for output ---------------------------------------------------------------

    def latest(self, limit: int) -> list[Entry]:
        """The newest `limit` merged entries, newest first. An entry's title, link, excerpt,
        authors, source and dates are its representative copy's (its dates, when that copy
        states none, its copies'); its sources list the representative first, then the other
        copies by source and key, and its duplicates those others (the copy that started the
        entry under the rule that joined the representative to it)."""
        ...

    def entry_counts(self) -> dict[str, int]:
        """Entries per source name."""
        ...

    def clusters(self, source: str | None = None) -> list[Cluster]:
        """Merged entries with more than one copy (those with a copy from `source`), newest
        first, each copy with the rule that merged it."""
        ...

    # --- outputs and their archives (RFC 5005) --------------------------------------------

    def load_entries(self, ids: Sequence[str]) -> list[Entry]:
        """The entries with these ids, in the order given; unknown ids are left out."""
        ...

    def output_entries(self, output: str, match: EntryMatch) -> list[str]:
        """The ids of the entries `match` selects that no archive page of `output` holds, in
        the feed's order: newest first (as `latest`), ties by the order they were stored in.

        An implementation may remember its answer for `output` and, asked again with the same
        filter, judge only those ids and the entries created or given a copy since: an entry's
        categories and sources only change when it gains a copy (or one is rewritten in place,
        which such an implementation may notice only at the entry's next copy)."""
        ...

    def archive_pages(self, output: str) -> int:
        """How many archive pages of `output` are sealed (numbered 1 to that, oldest first)."""
        ...

    def archive_page(self, output: str, page: int) -> list[str]:
        """The ids sealed in page `page` of `output`, in the order they were sealed in. An
        entry merged into another since is replaced by the one it went into, or left out
        when that one is in a page of `output` already."""
        ...

    def seal_archive(self, output: str, page: int, ids: Sequence[str]) -> None:
        """Seal the next page of `output` (`page` is one more than the pages sealed) with these
        entries; none of them may be in a page of `output` already. Raises StorageError
        otherwise, writing nothing."""
        ...


def open_store(config: Config) -> Store:
    """The store the config names, opened (created or migrated as needed).

    `[store] url` names a PostgreSQL database; otherwise the SQLite file at `[store] path`.
    Raises StorageError when it cannot be opened."""
    if config.store_url is not None:
        from aggregator.store.postgres import PostgresStore

        return PostgresStore(config.store_url)
    from aggregator.store.sqlite import SQLiteStore

    return SQLiteStore(config.store_path)


def store_exists(config: Config) -> bool:
    """Whether the configured store may hold something: the SQLite file exists, or a database
    is named (whose schema opening it creates if need be)."""
    return config.store_url is not None or config.store_path.exists()


def migrate_store(config: Config) -> tuple[str, int, int]:
    """Create the configured store, or bring its schema up to date; nothing else is written.

    Returns where the store is (a PostgreSQL URL without its password) and its schema version
    before (0: there was none) and after. Raises StorageError when it cannot be opened."""
    if config.store_url is not None:
        from aggregator.store.postgres import PostgresStore

        with PostgresStore(config.store_url) as pg:
            return pg.where, pg.migrated_from, pg.schema_version
    import sqlite3

    from aggregator.store.sqlite import SCHEMA_VERSION, SQLiteStore

    path = config.store_path
    before = 0
    if path.is_file():
        try:
            db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
            try:
                before = db.execute("PRAGMA user_version").fetchone()[0]
            finally:
                db.close()
        except sqlite3.Error:
            pass  # opening the store below reports what is wrong with it
    SQLiteStore(path).close()
    return str(path), before, SCHEMA_VERSION
