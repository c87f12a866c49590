"""What removing a source and pruning cost on a store of a realistic size.

    python bench/remove_source.py [--feeds 200] [--entries 100]

bench/workload.py's feeds (one entry in ten a repeat of the previous feed's, so a removed
source shares some entries with another) are refreshed once into a fresh SQLite store. Then,
timed each:
1. `aggregator remove`'s store work for one source (manage.remove_sources: its copies, their
   candidate-index rows, the entries only it had, the representatives of the shared ones);
2. the same for ten more sources in one call;
3. pruning by age with every entry old, keeping the outputs' newest 100 (store.prune).
Printed: the store's size and each time.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from workload import generate, serving


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--feeds", type=int, default=200)
    parser.add_argument("--entries", type=int, default=100)
    args = parser.parse_args()

    from aggregator import manage
    from aggregator.config import load_config
    from aggregator.refresh import refresh
    from aggregator.store import open_store

    bodies = generate(args.feeds, args.entries)
    with tempfile.TemporaryDirectory() as tmp, serving(bodies) as server:
        path = Path(tmp) / "config.toml"
        sources = "".join(
            f'[[sources]]\nname = "feed{i}"\nurl = "{url}"\n' for i, url in enumerate(server.urls())
        )
        path.write_text(
            f'[feed]\ntitle = "bench"\nmax_entries = 100\n[fetch]\nallow_private = true\n{sources}',
            encoding="utf-8",
        )
        config = load_config(path)
        report = refresh(config, force=True)
        with open_store(config) as store:
            entries = sum(1 for _ in store.latest(10**9))
            pairs = sum(store.entry_counts().values())
            print(f"store: {len(report.results)} sources, {entries} entries, {pairs} copies")

            started = time.perf_counter()
            (one,) = manage.remove_sources(store, ["feed1"])
            took = time.perf_counter() - started
            print(
                f"remove 1 source ({one.copies} copies, {one.entries_removed} entries gone, "
                f"{len(one.entries_kept)} kept): {took * 1000:.1f} ms"
            )

            names = [f"feed{i}" for i in range(2, 12)]
            started = time.perf_counter()
            removed = manage.remove_sources(store, names)
            took = time.perf_counter() - started
            gone = sum(r.copies for r in removed)
            print(f"remove 10 sources ({gone} copies) in one call: {took * 1000:.1f} ms")

            old = max(e.first_seen for e in store.latest(1)) + timedelta(days=1)
            started = time.perf_counter()
            pruned = store.prune(old, keep=100)
            took = time.perf_counter() - started
            print(f"prune (all old, keep 100): {pruned} entries, {took * 1000:.1f} ms")


if __name__ == "__main__":
    main()
