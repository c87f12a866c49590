"""The least that deduplicating N records with this design can cost in Python, piece by piece.

    python bench/dedup_floor.py --n 1000000

bench/dedup.py measures dedup as it is. This measures, on the same synthetic records, only
the work that any Python implementation of its tiers has to do for every record, each piece
alone and without any of dedup's decisions (no matching, merging, rewriting or counting):

1. hash: blake2b of the folded text once (what the exact tiers are compared against);
2. sketch: the MinHash LSH bands of the text (sketch.band_hashes, numpy, a batch at a time),
   its prefix key and its folded title: what the prefix and similar tiers look up;
3. confirm: the exact 4-gram Jaccard similarity (sketch.jaccard) of one pair of texts for
   each near-duplicate (10% of the records): what keeps a band collision from being a merge;
4. place: one Placement record per copy and one Decision per batch, naming each new entry's
   representative copy (the contract between dedup and the store);
5. write: each copy's row (the store's columns), an entry row and its ~13 candidate-index
   rows (sketch hashes and fingerprint) appended with executemany to tables without any
   index, a commit every GROUP_EXCERPTS records: the cheapest way to put them in SQLite;
6. index: the candidate index built once at the end, by one sort of all its rows (keeping an
   index up to date as rows come costs more);
7. look-up: one query per batch of 1,000 for the batch's sketch hashes, against the finished
   index.

The sum is a floor under bench/dedup.py's "all tiers, SQLite store" figure, and pieces 1-4
under its "all tiers, in memory" one (which also keeps an in-memory index). The look-ups run
against an index of all N records where a real run's grow with it: one B-tree level more at
most, so they are near a floor, not under it.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import tempfile
import time
from hashlib import blake2b
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # aggregator and bench

from aggregator.models import Decision, Placement
from aggregator.refresh import fewer_collections
from aggregator.sketch import band_hashes, jaccard, prefix_key
from aggregator.store.sqlite import (
    _CONTENT_COLUMNS,
    _INSERT_COPY,
    _copy_row,
    fingerprint_key,
    iso,
)
from aggregator.textutil import fold
from bench.dedup import groups

TARGET_SECONDS = 60.0  # the dedup target: a million records through all tiers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    n = parser.parse_args().n
    print(f"N = {n:,} synthetic excerpts, as bench/dedup.py generates them")
    t = dict.fromkeys(("hash", "sketch", "confirm", "place", "write", "index", "look-up"), 0.0)
    with tempfile.TemporaryDirectory() as tmp:
        db = sqlite3.connect(Path(tmp) / "floor.db", isolation_level=None)
        for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "cache_size=-65536"):
            db.execute(f"PRAGMA {pragma}")
        # The store's columns, and not one index: appending rows is the cheapest write.
        columns = ", ".join(
            ("source", "key", "entry_id", "rule", "score", "guid", "first_seen", "sketch")
        )
        db.execute(
            f"CREATE TABLE copies (rowid INTEGER PRIMARY KEY, {columns}, "
            f"{', '.join(_CONTENT_COLUMNS)})"
        )
        db.execute(
            "CREATE TABLE entries "
            "(id, first_seen, published, updated, sort_date, seq, representative)"
        )
        db.execute("CREATE TABLE sketches (hash INTEGER NOT NULL, copy INTEGER NOT NULL)")
        wanted: list[str] = []  # each batch's sketch hashes, looked up at the end
        rowid = 0
        for group in groups(0, n):
            db.execute("BEGIN IMMEDIATE")
            for batch in group:
                t0 = time.perf_counter()
                for e in batch:
                    blake2b(e.text.encode(), digest_size=16).digest()
                t1 = time.perf_counter()
                bands = band_hashes([e.text for e in batch])
                sketches = [(prefix_key(e.text), *b) for e, b in zip(batch, bands, strict=True)]
                for e in batch:
                    fold(e.title)
                t2 = time.perf_counter()
                for i in range(1, len(batch), 10):
                    short = batch[i].text
                    jaccard(short, batch[i - 1].text[: len(short)])
                t3 = time.perf_counter()
                decision = Decision(
                    placements=tuple(
                        Placement(e, e.id, "new", None, None, s)
                        for e, s in zip(batch, sketches, strict=True)
                    ),
                    representatives={e.id: (e.source, e.key) for e in batch},
                    new=len(batch),
                )
                t4 = time.perf_counter()
                copies: list[tuple[object, ...]] = []
                entries: list[tuple[object, ...]] = []
                index_rows: list[tuple[int, int]] = []
                for p in decision.placements:
                    e = p.excerpt
                    rowid += 1
                    seen = iso(e.first_seen)  # as the store writes dates
                    copies.append(_copy_row(rowid, p, seen))
                    entries.append((p.entry_id, seen, None, seen, seen, rowid, rowid))
                    index_rows.extend((h, rowid) for h in p.sketch)
                    index_rows.append((fingerprint_key(e.fingerprint), rowid))
                db.executemany("INSERT INTO entries VALUES (?, ?, ?, ?, ?, ?, ?)", entries)
                db.executemany(_INSERT_COPY, copies)
                db.executemany("INSERT INTO sketches VALUES (?, ?)", index_rows)
                t5 = time.perf_counter()
                t["hash"] += t1 - t0
                t["sketch"] += t2 - t1
                t["confirm"] += t3 - t2
                t["place"] += t4 - t3
                t["write"] += t5 - t4
                wanted.append(json.dumps([h for s in sketches for h in s]))
            t0 = time.perf_counter()
            db.execute("COMMIT")
            t["write"] += time.perf_counter() - t0
        # The candidate index built once, by one sort: cheaper than keeping it up to date.
        t0 = time.perf_counter()
        db.execute("CREATE INDEX sketches_hash ON sketches (hash, copy)")
        t["index"] = time.perf_counter() - t0
        # Each batch's look-up, against the finished index (all N records' rows in it).
        t0 = time.perf_counter()
        for hashes in wanted:
            db.execute(
                "SELECT hash, copy FROM sketches WHERE hash IN (SELECT value FROM json_each(?))",
                (hashes,),
            ).fetchall()
        t["look-up"] = time.perf_counter() - t0
        db.close()
    for part, seconds in t.items():
        print(f"  {part:<8} {seconds / n * 1e6:6.1f} us per record   {seconds:7.1f} s")
    in_memory = t["hash"] + t["sketch"] + t["confirm"] + t["place"]
    total = sum(t.values())
    print(f"pieces 1-4 (no index at all): {in_memory:7.1f} s")
    print(f"all pieces (SQLite):          {total:7.1f} s  (target {TARGET_SECONDS:.0f} s)")


if __name__ == "__main__":
    with fewer_collections():  # the collector set as a refresh sets it
        main()
