"""CPU cost per entry of each stage of a first refresh, on the vs_reader workload, in one process.

    python bench/stage_costs.py [--feeds 200] [--entries 50]

No network and no pool: the feeds are parsed, normalized, placed by dedup and stored one
source at a time, as the refresh's store thread does, and each stage's CPU time (this
process only) is divided by the number of entries. Printed: parse, normalize (and inside it
html_to_text and fold of the kept text), dedup placement, store apply and commit. Placement
and apply run on the refresh's single store thread; parse and normalize run in the pool.
Sources are stored GROUP to a transaction, each in a savepoint, as a refresh stores the
sources that are ready together.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from workload import generate

from aggregator import dedup
from aggregator.models import ExcerptOptions, Source, SourceState
from aggregator.normalize import FOLDED_TEXT_LIMIT, normalize
from aggregator.parse.feed import parse_feed
from aggregator.refresh import fewer_collections
from aggregator.store.sqlite import SQLiteStore
from aggregator.textutil import fold, html_to_text

GROUP = 20  # sources stored in one transaction (a refresh groups those ready together)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--feeds", type=int, default=200)
    parser.add_argument("--entries", type=int, default=50)
    args = parser.parse_args()
    bodies = generate(args.feeds, args.entries)
    options = ExcerptOptions()
    placeholders = (options.code_placeholder, options.formula_placeholder)
    now = datetime.now(UTC)
    sources = [
        Source(name=f"feed{i}", url="http://127.0.0.1" + path, kind="feed")
        for i, path in enumerate(bodies)
    ]
    stages = ["parse", "normalize", "  html_to_text", "  fold (kept text)"]
    stages += ["dedup place", "store apply", "store commit"]
    cost: dict[str, float] = dict.fromkeys(stages, 0.0)

    def timed(stage: str, start: float) -> float:
        now_cpu = time.process_time()
        cost[stage] += now_cpu - start
        return now_cpu

    batches = []
    for source, body in zip(sources, bodies.values(), strict=True):
        t = time.process_time()
        document = parse_feed(body, url=source.url, headers={}, source=source.name)
        t = timed("parse", t)
        excerpts = [normalize(i, source=source, now=now, options=options) for i in document.items]
        t = timed("normalize", t)
        texts = [
            html_to_text(
                i.content,
                code_placeholder=options.code_placeholder,
                formula_placeholder=options.formula_placeholder,
            )
            for i in document.items
        ]
        t = timed("  html_to_text", t)
        for text in texts:
            fold(text[: 2 * FOLDED_TEXT_LIMIT], placeholders)
        timed("  fold (kept text)", t)
        batches.append((source, excerpts))
    entries = sum(len(e) for _, e in batches)
    with tempfile.TemporaryDirectory(prefix="stage-costs-") as tmp:
        store = SQLiteStore(Path(tmp) / "aggregator.db")
        try:
            # As a refresh stores them: GROUP sources per transaction, each in a savepoint.
            # The outer transaction's begin and commit count as "store commit".
            for start in range(0, len(batches), GROUP):
                t = time.process_time()
                with store.transaction():
                    timed("store commit", t)
                    for source, excerpts in batches[start : start + GROUP]:
                        t = time.process_time()
                        with store.transaction():
                            decision = dedup.place(excerpts, store)
                            t = timed("dedup place", t)
                            state = SourceState(name=source.name)
                            store.apply(decision, state, backfill=True)
                        timed("store apply", t)
                    t = time.process_time()
                timed("store commit", t)
        finally:
            store.close()
    print(f"{args.feeds} feeds x {args.entries} entries = {entries} entries; CPU per entry:")
    for stage, seconds in cost.items():
        print(f"  {stage:<20} {seconds / entries * 1e6:8.1f} µs")


if __name__ == "__main__":
    with fewer_collections():  # the collector set as a refresh sets it
        main()
