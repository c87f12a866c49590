"""Does a refresh cost what changed, not what is stored? 100 new entries, empty vs 1M store.

    python bench/big_store.py [--stored 1000000] [--feeds 2] [--entries 50]

Seeds a store with `--stored` entries (one copy each, with its candidate-index rows) directly
through SQL, then refreshes `--feeds` local feeds of `--entries` new entries each into it, and
the same feeds into an empty store; prints both wall times (the refresh call, outputs
included).
"""

from __future__ import annotations

import argparse
import hashlib
import random
import sqlite3
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from vs_reader import WORKERS
from workload import generate, serving

from aggregator.config import load_config
from aggregator.refresh import refresh
from aggregator.store.sqlite import SQLiteStore, _packed, fingerprint_key

_TEXT = "seeded entry text " * 20


def seed(path: Path, stored: int) -> float:
    """Fill a new store with `stored` entries of one copy each, directly through SQL, with
    what the store writes for them: the copy is its entry's representative and keeps its
    candidate-index hashes (copies.sketch), and each source's entries are counted."""
    t0 = time.perf_counter()
    rnd = random.Random(1)
    SQLiteStore(path).close()  # the schema
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("BEGIN IMMEDIATE")
    batch = 50_000
    for start in range(0, stored, batch):
        rows = range(start, min(start + batch, stored))
        # The candidate index: about 12 prefix-key and LSH-band rows per copy, as dedup gives
        # them (random hashes, here), and its fingerprint's row, already moved into `sketches`.
        sketches = {i: [rnd.getrandbits(64) - 2**63 for _ in range(12)] for i in rows}
        fingerprints = {i: hashlib.md5(str(i).encode()).hexdigest() for i in rows}
        db.executemany(
            "INSERT INTO entries (id, first_seen, published, updated, sort_date, seq, backfill, "
            "representative) VALUES (?, ?, ?, ?, ?, ?, 0, ?)",
            (
                (f"urn:seed:{i}", "2020-01-01T00:00:00.000000+00:00", d, d, d, i + 1, i + 1)
                for i in rows
                for d in [f"2021-{1 + i % 12:02d}-{1 + i % 28:02d}T00:00:00.000000+00:00"]
            ),
        )
        db.executemany(
            "INSERT INTO copies (rowid, source, key, entry_id, rule, title, link, link_key, "
            "published, updated, first_seen, authors, categories, excerpt, truncated, "
            "fingerprint, content_hash, position, text, sketch) VALUES (?, ?, ?, ?, 'new', ?, "
            "?, ?, NULL, NULL, '2020-01-01T00:00:00.000000+00:00', '[]', '[]', ?, 0, ?, ?, 0, "
            "?, ?)",
            (
                (
                    i + 1,
                    f"seed{i % 500}",
                    f"guid:seed-{i}",
                    f"urn:seed:{i}",
                    f"Seeded entry {i}",
                    f"https://seed{i % 500}.example.org/p/{i}",
                    f"https://seed{i % 500}.example.org/p/{i}",
                    _TEXT,
                    fingerprints[i],
                    hashlib.md5(b"h" + str(i).encode()).hexdigest(),
                    _TEXT,
                    _packed(sketches[i]),
                )
                for i in rows
            ),
        )
        db.executemany(
            "INSERT OR IGNORE INTO sketches (hash, copy) VALUES (?, ?)",
            sorted(
                (h, i + 1) for i in rows for h in (*sketches[i], fingerprint_key(fingerprints[i]))
            ),
        )
    counts = Counter(f"seed{i % 500}" for i in range(stored))
    db.executemany("INSERT INTO source_counts (source, entries) VALUES (?, ?)", counts.items())
    db.execute("COMMIT")
    db.close()
    return time.perf_counter() - t0


def refresh_into(workdir: Path, urls: list[str]) -> tuple[float, int]:
    lines = [
        "[feed]",
        'title = "Big"',
        'link = "https://big.example.org/"',
        "[output]",
        'dir = "public"',
        "[store]",
        'path = "aggregator.db"',
        "[fetch]",
        f"max_workers = {WORKERS}",
        f"per_host = {WORKERS}",
    ]
    for i, url in enumerate(urls):
        lines += ["[[sources]]", f'name = "new{i}"', f'url = "{url}"', 'kind = "feed"']
    (workdir / "config.toml").write_text("\n".join(lines) + "\n", encoding="utf-8")
    config = load_config(workdir / "config.toml")
    t0 = time.perf_counter()
    report = refresh(config, force=True)
    return time.perf_counter() - t0, sum(r.new for r in report.results)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--stored", type=int, default=1_000_000)
    parser.add_argument("--feeds", type=int, default=2)
    parser.add_argument("--entries", type=int, default=50)
    args = parser.parse_args()
    bodies = generate(args.feeds, args.entries, seed=61)
    with tempfile.TemporaryDirectory(prefix="big-store-") as tmp, serving(bodies) as server:
        empty, big = Path(tmp) / "empty", Path(tmp) / "big"
        empty.mkdir()
        big.mkdir()
        seconds = seed(big / "aggregator.db", args.stored)
        print(f"seeded {args.stored} entries in {seconds:.1f} s")
        t_empty, n_empty = refresh_into(empty, server.urls())
        t_big, n_big = refresh_into(big, server.urls())
        print(f"refresh of {n_empty} new entries into an empty store:   {t_empty:.3f} s")
        print(f"refresh of {n_big} new entries into a {args.stored}-entry store: {t_big:.3f} s")
        print(f"ratio big / empty: {t_big / t_empty:.2f}")


if __name__ == "__main__":
    main()
