"""The same dedup workload through the SQLite store and the PostgreSQL store.

    python bench/store_pg.py [--n 50000] [--url postgresql://postgres@127.0.0.1:5432/test]

bench/dedup.py's synthetic records (about 300 characters of mixed CJK and Latin text, 20%
exact repeats, 10% near-duplicates), placed and stored as a refresh does (one source of 1,000
records per batch, GROUP_EXCERPTS records per transaction), into a new SQLite file and into a
new PostgreSQL database made on the server at --url (and dropped after). For each store it
prints:

1. the build: records per second, and microseconds per record for dedup's placing (with its
   candidate look-ups in the store), the store's writes and the commits;
2. whether dedup decided the same on both (each copy's rule and entry, the merges, the
   representatives);
3. ten refreshes of 1,000 new records against the store just built, the mean, the first and
   the slowest; then ten re-crawls of 1,000 stored records (every one placed "same");
4. writing the outputs' reads: latest(100), the source states and the entry counts, mean of
   ten;
5. for SQLite, the time `aggregator migrate --from-sqlite` takes to move that store into an
   empty PostgreSQL database.

PostgreSQL runs on the same machine (a server process beside the benchmark); both stores sync
their commits as they do by default.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from hashlib import blake2b
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # aggregator and bench

from aggregator.refresh import fewer_collections
from aggregator.store import Store
from aggregator.store.move import move_sqlite
from aggregator.store.postgres import PostgresStore, describe
from aggregator.store.sqlite import SQLiteStore
from bench.dedup import BATCH, ROUNDS, rate, through_store

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/test"


def _admin(url: str, sql: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql)


def _mean_of(rounds: int, work: Callable[[], object]) -> float:
    spent = []
    for _ in range(rounds):
        t = time.perf_counter()
        work()
        spent.append(time.perf_counter() - t)
    return sum(spent) / len(spent)


def measure(label: str, store: Store, n: int) -> str:
    """Print the figures of one store; return the digest of what dedup decided."""
    decided = blake2b()
    spent, merged, parts = through_store(store, 0, n, decided=decided)
    print(f"{label}: build           {rate(n, spent)}; {merged:,} copies merged")
    print(
        "  of which, in us per record: "
        + ", ".join(f"{part} {seconds / n * 1e6:.0f}" for part, seconds in parts.items())
    )
    new = [through_store(store, b, b + BATCH)[0] for b in range(n, n + ROUNDS * BATCH, BATCH)]
    print(
        f"  1,000 new, mean of {ROUNDS}: {sum(new) / ROUNDS:.3f} s"
        f"  (first {new[0]:.3f} s, slowest {max(new):.3f} s)"
    )
    first = n // 2 // BATCH * BATCH
    seen = [
        through_store(store, b, b + BATCH)[0]
        for b in range(first, min(n, first + ROUNDS * BATCH), BATCH)
    ]
    if seen:
        print(
            f"  1,000 stored again (a re-crawl), mean of {len(seen)}: {sum(seen) / len(seen):.3f} s"
            f"  (first {seen[0]:.3f} s, slowest {max(seen):.3f} s)"
        )
    reads = _mean_of(ROUNDS, lambda: (store.latest(100), store.states(), store.entry_counts()))
    print(f"  latest(100) + states + entry counts, mean of {ROUNDS}: {reads * 1000:.1f} ms")
    return decided.hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=50_000)
    parser.add_argument("--url", default=DEFAULT_URL, help="a database on the PostgreSQL server")
    args = parser.parse_args()
    n = args.n
    print(f"N = {n:,} synthetic excerpts (~300 chars, mixed CJK/Latin, 20% exact, 10% near)")
    name = f"aggbench_{os.getpid()}"
    url = urlunsplit(urlsplit(args.url)._replace(path="/" + name))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.db"
        sqlite = SQLiteStore(path)
        try:
            on_sqlite = measure("SQLite", sqlite, n)
        finally:
            sqlite.close()
        _admin(args.url, f"CREATE DATABASE {name}")
        try:
            with PostgresStore(url) as pg:
                t = time.perf_counter()
                moved = move_sqlite(path, pg)
                spent = time.perf_counter() - t
            print(
                f"migrate --from-sqlite of that store ({path.stat().st_size / 2**20:,.0f} MB: "
                f"{moved.copies:,} copies, {moved.entries:,} entries, {moved.bands:,} band rows): "
                f"{spent:.1f} s"
            )
        finally:
            _admin(args.url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    _admin(args.url, f"CREATE DATABASE {name}")
    try:
        pg = PostgresStore(url)
        try:
            on_pg = measure(f"PostgreSQL ({describe(url)})", pg, n)
        finally:
            pg.close()
    finally:
        _admin(args.url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    print(f"dedup decided the same on both: {'yes' if on_sqlite == on_pg else 'NO'}")


if __name__ == "__main__":
    with fewer_collections():  # the collector set as a refresh sets it
        main()
