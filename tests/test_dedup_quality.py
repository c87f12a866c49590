"""Dedup against the labelled corpus: no false merge, every planted repeat caught."""

from __future__ import annotations

from pathlib import Path

from aggregator import dedup
from tests.dedup_corpus import REPEAT_RULES, build, run_corpus, score


def test_corpus_has_every_kind_of_repeat_and_trap() -> None:
    records = build()
    kinds = {r.kind for r in records}
    assert set(REPEAT_RULES) <= kinds
    traps = {k for k in kinds if k.startswith("trap:")}
    assert {
        "trap:preamble",
        "trap:preamble-bare",
        "trap:series",
        "trap:same-title",
        "trap:short",
        "trap:same-topic",
        "trap:repeated-guid",
        "trap:shared-link",
    } <= traps
    assert len(records) >= 200
    # English and Chinese both.
    assert any("\u4e00" <= ch <= "\u9fff" for r in records for ch in r.item.content[:5])
    assert any(r.item.content[:1].isascii() for r in records)


def test_no_false_merge_and_full_recall(tmp_path: Path) -> None:
    result = score(run_corpus(tmp_path / "store.db", build()))
    assert result.false_merges == []
    assert result.missed == []
    for rule, (right, placed) in result.precision_by_rule.items():
        assert right == placed, rule
    # Each fuzzy rule did real work on the corpus.
    assert result.precision_by_rule["prefix"][1] > 20
    assert result.precision_by_rule["similar"][1] > 0


def test_without_near_duplicates_only_similar_repeats_are_missed(tmp_path: Path) -> None:
    opts = dedup.DedupOptions(near_duplicates=False)
    result = score(run_corpus(tmp_path / "store.db", build(), opts))
    assert result.false_merges == []
    assert "similar" not in result.precision_by_rule
    assert {kind for _, kind in result.missed} <= {"similar-typo", "similar-reword"}
    assert result.recall_by_kind["similar-typo"][0] < result.recall_by_kind["similar-typo"][1]
