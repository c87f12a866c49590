"""Auto mode on the page corpus in tests/data/autopage: precision and recall per layout.

    python bench/autopage.py [--runs 20]

For each layout: the entries found against the posts expected, and precision / recall of
posts, titles, links and dates (see tests/autopage_corpus.py), the method and entry selector
auto mode settled on, and the median time to read the page (parse, detect, extract).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.autopage_corpus import Layout, Ratio, layouts, read, score


def _both(pair: tuple[Ratio, Ratio]) -> str:
    return f"{pair[0].value:.2f}/{pair[1].value:.2f}"


def _median_ms(layout: Layout, runs: int) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        read(layout)
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20, help="timed reads per layout")
    args = parser.parse_args()
    print("precision/recall per layout")
    print(
        f"{'layout':<17}{'found':>6}{'exp':>5}{'posts':>11}{'titles':>11}{'links':>11}"
        f"{'dates':>11}{'ms':>7}  method: entry"
    )
    totals: dict[str, list[int]] = {f: [0, 0, 0, 0] for f in ("posts", "titles", "links", "dates")}
    for layout in layouts():
        doc, excerpts = read(layout)
        s = score(layout, excerpts)
        for f in totals:
            precision, recall = getattr(s, f)
            totals[f][0] += precision.right
            totals[f][1] += precision.of
            totals[f][2] += recall.right
            totals[f][3] += recall.of
        chosen = "none found"
        if doc is not None and doc.auto_method:
            entry = doc.auto_select.entry if doc.auto_select else "(JSON-LD)"
            chosen = f"{doc.auto_method}: {entry}"
        print(
            f"{layout.name:<17}{s.found:>6}{s.expected:>5}{_both(s.posts):>11}"
            f"{_both(s.titles):>11}{_both(s.links):>11}{_both(s.dates):>11}"
            f"{_median_ms(layout, args.runs):>7.1f}  {chosen[:60]}"
        )
        for stray in s.strays:
            print(f"{'':<17}stray: {stray}")
    found, expected = totals["posts"][1], totals["posts"][3]
    print(
        f"{'all layouts':<17}{found:>6}{expected:>5}"
        + "".join(
            f"{f'{Ratio(t[0], t[1]).value:.2f}/{Ratio(t[2], t[3]).value:.2f}':>11}"
            for t in totals.values()
        )
    )


if __name__ == "__main__":
    main()
