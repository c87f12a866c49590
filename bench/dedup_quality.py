"""Precision and recall of dedup on the labelled corpus in tests/data/dedup, per rule.

    python bench/dedup_quality.py [--threshold 0.7] [--no-near-duplicates]

Recall is per planted kind of repeat (and the rule expected to catch it); precision is per
rule that placed a copy: the share of copies it placed into an entry holding only their post.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aggregator import dedup
from tests.dedup_corpus import REPEAT_RULES, build, run_corpus, score


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threshold", type=float, default=dedup.DedupOptions().threshold)
    parser.add_argument("--no-near-duplicates", action="store_true")
    args = parser.parse_args()
    opts = dedup.DedupOptions(near_duplicates=not args.no_near_duplicates, threshold=args.threshold)
    records = build()
    with tempfile.TemporaryDirectory() as tmp:
        result = score(run_corpus(Path(tmp) / "store.db", records, opts))
    traps = sum(1 for r in records if r.kind.startswith("trap:"))
    print(f"corpus: {len(records)} records, {traps} trap posts; options: {opts}")
    print(f"{'rule':<10}{'placed':>8}{'right':>8}{'precision':>11}")
    for rule, (right, placed) in result.precision_by_rule.items():
        print(f"{rule:<10}{placed:>8}{right:>8}{right / placed:>11.3f}")
    print(f"{'repeat kind':<16}{'rule':<9}{'planted':>8}{'caught':>8}{'recall':>8}")
    for kind, (caught, planted) in result.recall_by_kind.items():
        rule = REPEAT_RULES[kind]
        print(f"{kind:<16}{rule:<9}{planted:>8}{caught:>8}{caught / planted:>8.3f}")
    print(f"false merges (pairs of different posts in one entry): {len(result.false_merges)}")
    for a, b in result.false_merges:
        print(f"  {a} + {b}")
    print(f"missed repeats: {len(result.missed)}")
    for post, kind in result.missed:
        print(f"  {post} ({kind})")


if __name__ == "__main__":
    main()
