"""What writing the outputs costs once a store holds a long history (archives, [[outputs]]).

    python bench/outputs.py [--stored 200000]

Seeds a store with `--stored` entries (bench/big_store.py's seed), then times
`write_outputs` (the main feed with 100 entries a page and one [[outputs]] feed filtered by
category, as a refresh writes them):

1. the first time: the whole history is sealed into archive pages, and the newest pages
   rendered (at most outputs.MISSING_PAGES a refresh);
2. the refreshes after it that render the remaining pages, and their count;
3. a refresh with nothing new (every archive page rendered);
4. after 100 new entries.
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from big_store import seed

from aggregator.config import load_config
from aggregator.refresh import write_outputs
from aggregator.store.sqlite import SQLiteStore

TAGGED = '["seeded"]'  # the category of one entry in ten, and of each new one
CONFIG = """
[feed]
title = "Big"
link = "https://big.example.org/"
[store]
path = "aggregator.db"
[[outputs]]
name = "seeded"
title = "One category"
categories = ["seeded"]
"""


def add_entries(path: Path, n: int) -> None:
    """`n` more entries, one copy each, straight into the store's tables (as seed does)."""
    db = sqlite3.connect(path, isolation_level=None)
    top = db.execute("SELECT max(seq) FROM entries").fetchone()[0]
    copy = db.execute("SELECT max(rowid) FROM copies").fetchone()[0]
    db.execute("BEGIN IMMEDIATE")
    for i in range(1, n + 1):
        d = "2026-01-01T00:00:00.000000+00:00"
        db.execute(
            "INSERT INTO entries (id, first_seen, published, updated, sort_date, seq, backfill, "
            "representative) VALUES (?, ?, ?, ?, ?, ?, 0, ?)",
            (f"urn:new:{i}", d, d, d, d, top + i, copy + i),
        )
        db.execute(
            "INSERT INTO copies (rowid, source, key, entry_id, rule, title, first_seen, authors, "
            "categories, excerpt, truncated, fingerprint, content_hash, position, text) "
            "VALUES (?, 'new', ?, ?, 'new', 'New', ?, '[]', ?, 'x', 0, ?, ?, 0, 'x')",
            (copy + i, f"k{i}", f"urn:new:{i}", d, TAGGED, f"f{i}", f"h{i}"),
        )
    db.execute("COMMIT")
    db.close()


def timed(config_path: Path) -> float:
    config = load_config(config_path)
    t0 = time.perf_counter()
    with SQLiteStore(config.store_path) as store:
        write_outputs(config, store)
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--stored", type=int, default=200_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="outputs-") as tmp:
        work = Path(tmp)
        (work / "config.toml").write_text(CONFIG, encoding="utf-8")
        seconds = seed(work / "aggregator.db", args.stored)
        db = sqlite3.connect(work / "aggregator.db")
        db.execute("UPDATE copies SET categories = ? WHERE rowid % 10 = 0", (TAGGED,))
        db.commit()
        db.close()
        print(f"seeded {args.stored} entries in {seconds:.1f} s")
        first = timed(work / "config.toml")
        print(f"first write (history sealed, newest pages rendered): {first:.2f} s")
        rest, runs = 0.0, 0
        pages = work / "public" / "archive" / "feed"
        while True:
            before = len(list(pages.glob("*.atom")))
            took = timed(work / "config.toml")
            if len(list(pages.glob("*.atom"))) == before:
                break
            rest, runs = rest + took, runs + 1
        print(f"the remaining pages: {runs} more writes, {rest:.1f} s in all; {before} pages")
        print(f"nothing new: {timed(work / 'config.toml') * 1000:.1f} ms")
        add_entries(work / "aggregator.db", 100)
        print(f"100 new entries: {timed(work / 'config.toml') * 1000:.1f} ms")
        print(f"nothing new again: {timed(work / 'config.toml') * 1000:.1f} ms")


if __name__ == "__main__":
    main()
