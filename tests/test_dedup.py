"""The dedup rules one by one, through normalize and a real SQLite store."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from aggregator.dedup import representative_rank
from aggregator.models import CandidateQuery
from aggregator.sketch import band_hashes, jaccard, weight
from aggregator.store import Store
from tests.helpers import LONG, LONG_ZH, entry_of, ex, put


def stored_keys(store: Store, source: str, link_key: str) -> list[str]:
    """The keys of `source`'s stored copies with this identity link."""
    found = store.candidates(CandidateQuery(links=frozenset({link_key})))
    return [c.key for c in found.by_link.get(link_key, ()) if c.source == source]


def test_weight_counts_cjk_twice_and_jaccard_trims_nothing() -> None:
    assert weight("abc") == 3
    assert weight("引言与背景") == 10
    assert jaccard(LONG, LONG) == 1.0
    assert jaccard(LONG, LONG_ZH) == 0.0


def test_band_hashes_are_stable_and_short_texts_get_none() -> None:
    a, b, short = band_hashes([LONG, LONG, "tiny"])
    assert a == b and len(a) == 10 and short == ()
    # Fixed across processes: stored hashes must keep matching after an upgrade.
    assert band_hashes([LONG])[0] == a


def test_band_hashes_keep_their_stored_values() -> None:
    # The store keeps these hashes: a change to how they are computed must not move them.
    # One head shorter than sketch.HEAD (most of its shingle positions empty), one minimal.
    mixed, minimal = band_hashes(
        ["A post about rivers and 河流的故事, told in two languages at once.", "x" * 16]
    )
    assert mixed == (
        4142737088524624605, -2830584882286799046, 5364034116919153311, -3659305823798646701,
        -6061859356825500920, 8725341631508795811, -2017069085122366594, 5506856184569135013,
        -730610927902595871, -7379600528540790062,
    )  # fmt: skip
    assert minimal == (
        107352977193392873, 3439788510305438119, 8162956653594913277, -4911411113981550223,
        3240425862061386388, 5936096172998075074, 267492290517864010, -2067160921130769354,
        8467910268358874554, 5624547790239168364,
    )  # fmt: skip


@pytest.mark.parametrize("body", [LONG, LONG_ZH])
def test_truncated_copy_joins_by_prefix_with_a_score(store: Store, body: str) -> None:
    full = ex("a", body, guid="1")
    cut = ex("b", body[: len(body) // 2] + "...", guid="2", at=1)
    put(store, full)
    result = put(store, cut)
    p = result.placements[0]
    assert (p.rule, p.entry_id) == ("prefix", full.id)
    assert p.score is not None and 0.3 < p.score < 0.7
    entry = store.latest(10)[0]
    assert entry.id == full.id and entry.excerpt == full.excerpt  # the untruncated excerpt
    assert [(d.source, d.rule) for d in entry.duplicates] == [("b", "prefix")]


def test_a_short_cut_or_an_untruncated_prefix_stays_apart(store: Store) -> None:
    put(store, ex("a", LONG, guid="1"))
    # Too short to tell one post from another.
    tiny = put(store, ex("b", LONG[:30] + "...", guid="2"))
    assert tiny.placements[0].rule == "new"
    # Not cut, and much shorter: a different, shorter post that happens to start alike.
    whole = put(store, ex("c", LONG[:150], guid="3"))
    assert whole.placements[0].rule == "new"


def test_typo_and_different_cut_join_as_similar(store: Store) -> None:
    put(store, ex("a", LONG, guid="1"))
    edited = LONG.replace("cheap estimate", "cheep estimate").replace("Measure", "Measured")
    p = put(store, ex("b", edited[:-20] + "...", guid="2")).placements[0]
    assert p.rule == "similar" and p.score is not None and 0.7 <= p.score < 1


def test_numbered_titles_never_merge(store: Store) -> None:
    put(store, ex("a", LONG, title="Batch size, part 1", guid="1"))
    p = put(store, ex("b", LONG[:-5] + "...", title="Batch size, part 2", guid="2")).placements[0]
    assert p.rule == "new"
    p = put(store, ex("c", LONG_ZH, title="批大小（一）", guid="3")).placements[0]
    q = put(store, ex("d", LONG_ZH[:-9] + "...", title="批大小（二）", guid="4")).placements[0]
    assert p.rule == "new" and q.rule == "new"


def test_near_duplicates_off_leaves_similar_copies_apart(store: Store) -> None:
    put(store, ex("a", LONG, guid="1"))
    edited = LONG.replace("cheap estimate", "cheep estimate")
    p = put(store, ex("b", edited, guid="2"), near_duplicates=False).placements[0]
    assert p.rule == "new"


def test_short_equal_texts_need_equal_titles(store: Store) -> None:
    put(store, ex("a", "Slides are online.", title="Talk in Berlin", guid="1"))
    other = put(store, ex("b", "Slides are online.", title="Talk in Lisbon", guid="2"))
    same = put(store, ex("c", "Slides are online.", title="Talk in Berlin", guid="3"))
    assert other.placements[0].rule == "new"
    assert same.placements[0].rule == "text"


def test_a_copy_linking_two_entries_merges_them_into_the_older(store: Store) -> None:
    older = ex("a", LONG, guid="1", link="https://a.test/p", at=0, categories=("ml",))
    newer = ex("b", LONG_ZH, guid="2", link="https://b.test/p", at=1, categories=("ML", "zh"))
    put(store, older)
    put(store, newer)
    assert len(store.latest(10)) == 2
    # Same link as the newer entry, same text as the older one: both are one post.
    bridge = ex("c", LONG, guid="3", link="https://b.test/p", at=2)
    decision = put(store, bridge)
    p = decision.placements[0]
    assert p.rule == "link" and [(m.entry_id, m.into) for m in decision.merges] == [
        (newer.id, older.id)
    ]
    (entry,) = store.latest(10)
    assert entry.id == older.id  # the older id survives
    assert entry.first_seen == older.first_seen
    assert entry.categories == ("ml", "zh")  # union, case-insensitive
    assert {s.source for s in entry.sources} == {"a", "b", "c"}
    # b's copy is there because the bridge matched it by link; a's copy is the first.
    assert {(d.source, d.rule) for d in entry.duplicates} == {("b", "link"), ("c", "link")}
    assert entry_of(store, newer) == older.id
    # Seen again, nothing moves.
    assert put(store, bridge).placements[0].rule == "same"
    assert [e.id for e in store.latest(10)] == [older.id]


def test_allow_duplicate_links_keeps_items_of_one_link_apart(store: Store) -> None:
    items = [
        ex("daily", LONG, guid=None, link="https://d.test/", allow_duplicate_links=True),
        ex("daily", LONG_ZH, guid=None, link="https://d.test/", allow_duplicate_links=True),
    ]
    result = put(store, *items, allow_duplicate_links=True)
    assert [p.rule for p in result.placements] == ["new", "new"]
    # Another source sharing that home-page link is not merged through it either.
    other = ex("daily", "Completely different text about tokenizers and merges, long enough.")
    assert put(store, other, allow_duplicate_links=True).placements[0].rule == "new"


def test_repeated_guid_items_are_told_apart_and_reported(store: Store) -> None:
    items = [
        ex("f", LONG, guid="same", link="https://f.test/1"),
        ex("f", LONG_ZH, guid="same", link="https://f.test/2"),
        ex("f", LONG, guid="same", link="https://f.test/1"),  # a true repeat
    ]
    result = put(store, *items)
    assert [p.rule for p in result.placements] == ["new", "new"]
    assert result.repeated_in_batch == 1 and result.repeated_guids == 3
    assert any("share the guid 'same'" in w for w in result.warnings)
    assert len(store.latest(10)) == 2


def test_guid_churn_keeps_the_id(store: Store) -> None:
    first = ex("f", LONG, guid="v1", link="https://f.test/1")
    put(store, first)
    result = put(store, ex("f", LONG, guid="v2", link="https://f.test/1", at=1))
    assert result.changed_keys == 1 and result.warnings
    (entry,) = store.latest(10)
    assert entry.id == first.id
    assert stored_keys(store, "f", first.link_key or "") == ["guid:v2"]


def test_two_items_never_take_over_one_stored_copy(store: Store) -> None:
    first = ex("f", LONG, guid="v1", link="https://f.test/1")
    put(store, first)
    # Both come back under new guids with the stored copy's link: the first takes the stored
    # copy over, the second is kept as a copy of its own in the same entry.
    a = ex("f", LONG, guid="v2", link="https://f.test/1", at=1)
    b = ex("f", LONG_ZH, guid="v3", link="https://f.test/1", at=1)
    result = put(store, a, b)
    assert [p.existing is not None for p in result.placements] == [True, False]
    assert (result.updated, result.joined) == (1, 1)
    assert sorted(stored_keys(store, "f", first.link_key or "")) == ["guid:v2", "guid:v3"]
    assert {entry_of(store, e) for e in (a, b)} == {first.id}


def test_clusters_lists_merged_entries_and_filters_by_source(store: Store) -> None:
    put(store, ex("a", LONG, guid="1"))
    put(store, ex("b", LONG[:120] + "...", guid="2"))
    put(store, ex("c", LONG_ZH, guid="3"))
    (cluster,) = store.clusters()
    assert [(c.source, c.rule) for c in cluster.copies] == [("a", "new"), ("b", "prefix")]
    assert store.clusters("b") == [cluster]
    assert store.clusters("c") == []


def test_a_merge_inside_one_batch_carries_the_batch_along(store: Store) -> None:
    older = ex("a", LONG, guid="1", link="https://a.test/p")
    put(store, older)
    # Two items of one fetch share a link; the second also has the stored post's text. The
    # batch's own entry is folded into the older one, and the first item must follow it.
    first = ex("b", LONG_ZH, guid="2", link="https://b.test/p", at=1)
    second = ex("b", LONG, guid="3", link="https://b.test/p", at=1)
    first, second = replace(first, position=0), replace(second, position=1)
    result = put(store, first, second)
    # The first item started an entry of its own, which the second linked to the older one:
    # it joins that entry, as the link made it (never stored apart, so no Merge for the store).
    assert (result.new, result.joined, result.merges) == (1, 1, ())
    assert [p.rule for p in result.placements] == ["link", "link"]
    assert [p.entry_id for p in result.placements] == [older.id, older.id]
    assert {entry_of(store, e) for e in (older, first, second)} == {older.id}
    assert [e.id for e in store.latest(10)] == [older.id]


# --- the representative copy -------------------------------------------------------------------


def test_the_representative_is_the_original_s_then_the_earliest_then_the_most_complete() -> None:
    link = "https://origin.test/p/1"
    day1, day2 = datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 3, 2, tzinfo=UTC)
    base = ex("planet", LONG, link=link)
    planet = replace(base, site_host="planet.test", published=day1)
    origin = replace(base, source="origin", site_host="origin.test", published=day2)
    www = replace(origin, source="www", link="https://www.origin.test/p/1", excerpt="short")
    early = replace(base, source="early", site_host="early.test", published=day1)
    later = replace(base, source="later", site_host="later.test", published=day2)
    cut = replace(early, source="cut", truncated=True)
    shorter = replace(early, source="shorter", excerpt=early.excerpt[:50])
    ranked = sorted([later, shorter, cut, planet, www, origin, early], key=representative_rank)
    # The original's site (www. or not) first, however late it dates the post; the longer
    # excerpt wins between those two; then the earliest date, then the whole, longest text;
    # then names.
    assert [e.source for e in ranked] == [
        "origin",
        "www",
        "early",
        "planet",
        "shorter",
        "cut",
        "later",
    ]
