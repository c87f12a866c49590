"""CPU cost of writing the outputs, per output, on a store of the vs_reader workload.

    python bench/emit_cost.py [--feeds 20] [--entries 50] [--max-entries 100] [--runs 30]

A refresh (every refresh, even one that found nothing new) ends by rendering all four
outputs from the store's newest `--max-entries` entries. The feeds are read from local
files into a fresh store once; then each step is timed `--runs` times (CPU time of this
process) and its median printed: reading the entries, the Atom feed in each content mode,
the JSON Feed, the snapshot, the page, and the whole write_outputs. Full content is
timed as a scheduler renders it again (its sanitized HTML remembered) and from scratch.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from workload import generate

from aggregator import emit
from aggregator.config import load_config
from aggregator.refresh import refresh, write_outputs
from aggregator.store import open_store


def fresh_full(*args: object) -> object:
    """The full-content Atom feed with the sanitized HTML of no earlier run remembered."""
    emit._sanitized.cache_clear()
    return emit.render_atom(*args)  # type: ignore[arg-type]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--feeds", type=int, default=20)
    parser.add_argument("--entries", type=int, default=50)
    parser.add_argument("--max-entries", type=int, default=100)
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        sources = []
        for i, body in enumerate(generate(args.feeds, args.entries).values()):
            path = folder / f"feed{i}.xml"
            path.write_bytes(body)
            sources.append(f'[[sources]]\nname = "feed{i}"\nurl = "{path}"\nkind = "feed"\n')
        (folder / "config.toml").write_text(
            f'[feed]\ntitle = "W"\nlink = "https://w.test/"\nmax_entries = {args.max_entries}\n'
            '[output]\ndir = "out"\n[store]\npath = "store.db"\n' + "\n".join(sources),
            encoding="utf-8",
        )
        config = load_config(folder / "config.toml")
        refresh(config, force=True)

        def timed(label: str, work: Callable[[], object]) -> None:
            times = []
            for _ in range(args.runs):
                start = time.process_time()
                work()
                times.append(time.process_time() - start)
            print(f"  {label:28} {statistics.median(times) * 1000:7.2f} ms")

        with open_store(config) as store:
            entries = store.latest(args.max_entries)
            states = {st.name: st for st in store.states()}
            counts = store.entry_counts()
            by_name = {s.name: s for s in config.sources}
            meta = emit.FeedMeta(
                title="W",
                link="https://w.test/",
                id="https://w.test/",
                self_url="https://w.test/feed.atom",
            )
            full = replace(meta, content="full")
            at = emit.EPOCH
            print(f"{len(entries)} entries, CPU per run (median of {args.runs}):")
            timed("read the entries", lambda: store.latest(args.max_entries))
            timed("Atom, excerpt", lambda: emit.render_atom(meta, entries, by_name, states))
            timed("Atom, full content", lambda: emit.render_atom(full, entries, by_name, states))
            timed("  the same, sanitizing anew", lambda: fresh_full(full, entries, by_name, states))
            timed(
                "JSON Feed, excerpt", lambda: emit.render_json_feed(meta, entries, by_name, states)
            )
            timed(
                "snapshot",
                lambda: emit.render_snapshot(meta, entries, config.sources, states, counts, at),
            )
            timed(
                "page", lambda: emit.render_index(meta, entries, config.sources, states, counts, at)
            )
            timed("write_outputs (excerpt)", lambda: write_outputs(config, store))


if __name__ == "__main__":
    main()
