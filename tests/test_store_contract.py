"""What every Store must do, stated through the Protocol alone and run against each
implementation (conftest.STORES). Decisions are written by hand here: the store persists what
it is given, whoever decided it."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from aggregator import dedup
from aggregator.errors import StorageError
from aggregator.models import (
    CandidateQuery,
    Decision,
    EntryMatch,
    Excerpt,
    ExcerptOptions,
    Merge,
    Placement,
    RawItem,
    Source,
    SourceState,
    StoredCopy,
)
from aggregator.normalize import normalize
from aggregator.store import Store
from tests.helpers import STORES, open_test_store

T0 = datetime(2026, 5, 1, 8, 0, tzinfo=UTC)
TEXT = (
    "A store keeps every copy of a post, the entry it belongs to and why it was merged there, "
    "so that the outputs can say where each post was seen and the next refresh can find it."
)


def copy_of(
    source: str,
    n: int,
    *,
    text: str = TEXT,
    link: str | None = None,
    at: int = 0,
    published: datetime | None = None,
    categories: tuple[str, ...] = (),
) -> Excerpt:
    """An excerpt of post `n` as `source` shows it, first seen `at` hours after T0."""
    item = RawItem(
        guid=f"{source}-{n}",
        title=f"Post {n}",
        link=link,
        content=f"{text} ({n})",
        content_is_html=False,
        published=published,
        categories=categories,
    )
    src = Source(name=source, url=f"https://{source}.test/")
    return normalize(item, source=src, now=T0 + timedelta(hours=at), options=ExcerptOptions())


def new(e: Excerpt, sketch: tuple[int, ...] = ()) -> Placement:
    return Placement(e, e.id, "new", sketch=sketch)


def write(store: Store, *placements: Placement, **fields: object) -> None:
    """Apply a decision for these placements; each entry represented by its first copy."""
    reps = fields.pop("representatives", None) or {
        p.entry_id: (p.excerpt.source, p.excerpt.key) for p in reversed(placements)
    }
    decision = Decision(tuple(placements), representatives=reps, **fields)  # type: ignore[arg-type]
    source = placements[0].excerpt.source if placements else "none"
    with store.transaction():
        store.apply(decision, SourceState(name=source))


def fold(store: Store, bridge: Excerpt, loser: str, winner: Excerpt, score: float) -> None:
    """A copy joins `winner` by its link and brings entry `loser` into it (rule "similar")."""
    write(
        store,
        Placement(bridge, winner.id, "link"),
        merges=(Merge(loser, winner.id, "similar", score),),
        representatives={winner.id: (winner.source, winner.key)},
    )


def one_post(store: Store, first: Excerpt, *others: Excerpt, representative: Excerpt) -> None:
    """`first` stored alone, then `others` joining its entry by link, one copy representing."""
    write(store, new(first))
    write(
        store,
        *(Placement(e, first.id, "link") for e in others),
        representatives={first.id: (representative.source, representative.key)},
    )


def stored(store: Store, e: Excerpt) -> StoredCopy:
    return store.candidates(CandidateQuery(keys=frozenset({(e.source, e.key)}))).by_key[
        e.source, e.key
    ]


def test_a_new_store_is_empty(store: Store) -> None:
    assert list(store.states()) == []
    assert store.get_state("a") is None
    assert store.latest(10) == []
    assert store.entry_counts() == {}
    assert store.clusters() == []
    empty = store.candidates(CandidateQuery(keys=frozenset({("a", "k")}), links=frozenset({"l"})))
    assert (empty.by_key, empty.by_link, empty.by_fingerprint, empty.by_hash) == ({}, {}, {}, {})
    assert store.entries({"urn:x"}) == {}


def test_source_state_round_trips(store: Store) -> None:
    state = SourceState(
        name="a",
        url="https://a.test/feed",
        etag='"v1"',
        last_modified="Fri, 01 May 2026 08:00:00 GMT",
        body_hash="abc",
        effective_url="https://a.test/moved",
        last_status="ok",
        last_fetch=T0,
        last_success=T0,
        error=None,
        error_streak=0,
        next_due=T0 + timedelta(hours=1),
        redirect_url="https://a.test/moved",
        redirect_streak=2,
        ttl_seconds=600,
        feed_title="A's own title",
        site_link="https://a.test/",
        feed_id="tag:a.test,2026:feed",
        feed_author="Ann Lee <ann@a.test>",
        feed_updated=T0 - timedelta(hours=2),
        warnings=("not well-formed XML, read leniently: mismatched tag", 'ünïcode ✓ "quoted"'),
    )
    store.save_states([state])
    assert store.get_state("a") == state
    # Warnings are replaced whole, never merged; an empty list reads back as ().
    store.save_states([replace(state, warnings=())])
    assert store.get_state("a") == replace(state, warnings=())
    store.save_states([state])
    failed = replace(state, last_status="error", error="timed out", error_streak=3)
    store.save_states([failed])
    assert store.get_state("a") == failed
    assert list(store.states()) == [failed]
    # Several at once: new ones added, known ones replaced.
    others = [SourceState(name="b", etag='"b"'), replace(failed, error_streak=4)]
    store.save_states(others)
    assert sorted(store.states(), key=lambda st: st.name) == [others[1], others[0]]
    store.save_states([])
    assert len(store.states()) == 2


def test_a_batch_stores_its_source_s_warnings(store: Store) -> None:
    e = copy_of("a", 1)
    state = SourceState(name="a", last_status="ok", warnings=("the feed is cut short",))
    with store.transaction():
        store.apply(Decision((new(e),), representatives={e.id: ("a", e.key)}), state)
    assert store.get_state("a") == state
    assert [st.warnings for st in store.states()] == [("the feed is cut short",)]


def test_candidates_are_found_by_each_value(store: Store) -> None:
    first = copy_of("a", 1, link="https://a.test/1")
    second = copy_of("b", 2, link="https://a.test/1")
    write(store, new(first, (11, 12)))
    write(store, new(second, (12, 13)))
    found = store.candidates(
        CandidateQuery(
            keys=frozenset({("a", first.key), ("a", second.key), ("b", second.key)}),
            links=frozenset({first.link_key or ""}),
            fingerprints=frozenset({first.fingerprint, "no such text"}),
            hashes=frozenset({11, 12, 99}),
        )
    )
    # A key belongs to its source: a's key asked under b, or b's under a, finds nothing.
    assert set(found.by_key) == {("a", first.key), ("b", second.key)}
    assert found.by_key["a", first.key].entry_id == first.id
    assert [c.source for c in found.by_link[first.link_key or ""]] == ["a", "b"]  # oldest first
    assert [c.key for c in found.by_fingerprint[first.fingerprint]] == [first.key]
    assert set(found.by_fingerprint) == {first.fingerprint}
    assert sorted(c.source for c in found.by_hash[12]) == ["a", "b"]
    assert [c.source for c in found.by_hash[11]] == ["a"]
    assert 99 not in found.by_hash
    c = found.by_key["b", second.key]
    assert (c.content_hash, c.link, c.truncated, c.text, c.title) == (
        second.content_hash,
        second.link_key,
        second.truncated,
        second.text,
        second.title,
    )


def test_a_crowded_hash_gives_its_newest_copies(store: Store) -> None:
    for n in range(6):
        write(store, new(copy_of(f"s{n}", n, at=n), (7,)))
    found = store.candidates(CandidateQuery(hashes=frozenset({7}), limit=4))
    assert sorted(c.source for c in found.by_hash[7]) == ["s2", "s3", "s4", "s5"]


def test_entries_come_with_every_copy_oldest_first(store: Store) -> None:
    a, b = copy_of("a", 1), copy_of("b", 1, text=TEXT[:60], at=1)
    write(store, new(a))
    write(store, Placement(b, a.id, "prefix", 0.5))
    (entry,) = store.entries({a.id, "urn:unknown"}).values()
    assert entry.id == a.id and entry.first_seen == a.first_seen
    assert [(c.source, c.key, c.length) for c in entry.copies] == [
        ("a", a.key, len(a.excerpt)),
        ("b", b.key, len(b.excerpt)),
    ]
    later = copy_of("c", 3, at=2)
    write(store, new(later))
    entries = store.entries({a.id, later.id})
    assert entries[a.id].seq < entries[later.id].seq


def test_a_batch_writes_entries_copies_and_counts(store: Store) -> None:
    a1, a2 = copy_of("a", 1), copy_of("a", 2, published=T0 - timedelta(days=1))
    write(store, new(a1), new(a2))
    b1 = copy_of("b", 1, at=1)
    write(store, Placement(b1, a1.id, "text"), representatives={a1.id: ("a", a1.key)})
    assert store.entry_counts() == {"a": 2, "b": 1}
    latest = store.latest(10)
    assert [e.id for e in latest] == [a1.id, a2.id]  # the undated one was seen after a2's date
    assert [p.source for p in latest[0].sources] == ["a", "b"]
    assert [(d.source, d.rule) for d in latest[0].duplicates] == [("b", "text")]
    (cluster,) = store.clusters()
    assert [(c.source, c.rule) for c in cluster.copies] == [("a", "new"), ("b", "text")]
    assert store.clusters("b") == [cluster] and store.clusters("zzz") == []
    assert store.latest(1) == latest[:1]


def test_the_representative_gives_the_entry_its_words(store: Store) -> None:
    a = replace(copy_of("a", 1), authors=("Al",))
    b = replace(copy_of("b", 1, at=1), title="The original title", link="https://b.test/1")
    write(store, new(a))
    (entry,) = store.latest(10)
    assert (entry.title, entry.source) == (a.title, "a")
    b = replace(b, authors=("Bea",), html="<p>The original words</p>")
    write(store, Placement(b, a.id, "text"), representatives={a.id: ("b", b.key)})
    (entry,) = store.latest(10)
    assert (entry.title, entry.link, entry.source, entry.excerpt) == (
        "The original title",
        "https://b.test/1",
        "b",
        b.excerpt,
    )
    # Its authors and HTML content too: another copy's are another feed's words.
    assert (entry.authors, entry.html) == (("Bea",), "<p>The original words</p>")
    assert entry.id == a.id


def test_an_entry_reads_the_same_whatever_order_its_copies_came_in(store: Store) -> None:
    """Its representative gives its words, authors and dates; the other copies follow by
    source and key; the copy that started the entry is listed by the rule that joined it."""
    day = timedelta(days=1)

    def copy(source: str, authors: tuple[str, ...], published: datetime) -> Excerpt:
        return replace(
            copy_of(source, 1, link="https://origin.test/p/1", published=published),
            authors=authors,
            categories=(source.upper(),),
        )

    planet = copy("planet", ("Planet Editors",), T0)
    origin = copy("origin", ("Alice Ng",), T0 - day)
    mirror = copy("mirror", (), T0 - day)
    one_post(store, planet, origin, mirror, representative=origin)
    (entry,) = store.latest(10)
    assert (entry.id, entry.source, entry.title) == (planet.id, "origin", origin.title)
    assert entry.authors == ("Alice Ng",)  # never the planet's editors
    assert entry.published == T0 - day
    assert [p.source for p in entry.sources] == ["origin", "mirror", "planet"]
    assert [(d.source, d.rule) for d in entry.duplicates] == [
        ("mirror", "link"),
        ("planet", "link"),
    ]
    assert entry.categories == ("ORIGIN", "MIRROR", "PLANET")


def test_a_renamed_entry_keeps_its_copies_dates_and_counts(store: Store) -> None:
    a, b = copy_of("a", 1), copy_of("b", 1)
    other = copy_of("c", 2, text="Another post entirely, with words of its own to tell apart.")
    write(store, new(a), new(other))
    before = {e.id: e for e in store.latest(10)}
    # b joins a's entry and represents it; the entry takes b's id, after the other writes.
    write(
        store,
        Placement(b, a.id, "text"),
        representatives={a.id: ("b", b.key)},
        renames={a.id: b.id},
    )
    after = {e.id: e for e in store.latest(10)}
    assert set(after) == {b.id, other.id}
    renamed = after[b.id]
    assert (renamed.source, renamed.first_seen, renamed.published, renamed.updated) == (
        "b",
        before[a.id].first_seen,
        before[a.id].published,
        before[a.id].updated,
    )
    assert sorted(p.source for p in renamed.sources) == ["a", "b"]
    assert after[other.id] == before[other.id]
    assert store.entries({a.id}) == {}
    assert [c.source for c in store.entries({b.id})[b.id].copies] == ["a", "b"]
    assert stored(store, a).entry_id == b.id and stored(store, b).entry_id == b.id
    assert store.entry_counts() == {"a": 1, "b": 1, "c": 1}
    assert [c.entry_id for c in store.clusters()] == [b.id]


def test_a_rewritten_copy_replaces_its_content_and_index_rows(store: Store) -> None:
    old = copy_of("a", 1)
    write(store, new(old, (21, 22)))
    edited = replace(
        copy_of("a", 1, text="An edited text that reads nothing like the first version.", at=5)
    )
    assert edited.key == old.key and edited.content_hash != old.content_hash
    p = Placement(edited, old.id, "same", existing=stored(store, old), sketch=(22, 23))
    assert p.rewrites
    write(store, p)
    found = store.candidates(
        CandidateQuery(
            fingerprints=frozenset({old.fingerprint, edited.fingerprint}),
            hashes=frozenset({21, 22, 23}),
        )
    )
    assert set(found.by_fingerprint) == {edited.fingerprint}
    assert set(found.by_hash) == {22, 23}
    (entry,) = store.latest(10)
    assert entry.excerpt == edited.excerpt
    assert entry.updated == edited.first_seen  # noticed as an update when it was seen
    assert store.entry_counts() == {"a": 1}


def test_a_copy_seen_again_under_a_new_key_keeps_its_entry(store: Store) -> None:
    old = copy_of("a", 1, link="https://a.test/1")
    write(store, new(old))
    rekeyed = replace(old, key="link:a.test/1", guid=None)
    write(store, Placement(rekeyed, old.id, "link", existing=stored(store, old)))
    found = store.candidates(CandidateQuery(keys=frozenset({("a", old.key), ("a", rekeyed.key)})))
    assert list(found.by_key) == [("a", rekeyed.key)]
    assert found.by_key["a", rekeyed.key].entry_id == old.id


def test_merges_fold_entries_into_the_survivor(store: Store) -> None:
    a, b = copy_of("a", 1), copy_of("b", 2, at=1)
    write(store, new(a))
    write(store, new(b))
    fold(store, copy_of("c", 3, at=2), b.id, a, 0.8)
    (entry,) = store.latest(10)
    assert entry.id == a.id
    assert sorted((d.source, d.rule, d.score) for d in entry.duplicates) == [
        ("b", "similar", 0.8),
        ("c", "link", None),
    ]
    assert store.entries({b.id}) == {}
    assert stored(store, b).entry_id == a.id
    assert store.entry_counts() == {"a": 1, "b": 1, "c": 1}


def test_a_first_crawl_puts_undated_back_catalogue_below_dated_posts(store: Store) -> None:
    dated = copy_of("a", 1, published=T0 - timedelta(days=30))
    write(store, new(dated))
    undated = copy_of("b", 2, at=1)
    with store.transaction():
        store.apply(
            Decision((new(undated),), representatives={undated.id: ("b", undated.key)}),
            SourceState(name="b"),
            backfill=True,
        )
    assert [e.id for e in store.latest(10)] == [dated.id, undated.id]


def test_a_failed_transaction_leaves_nothing_behind(store: Store) -> None:
    kept = copy_of("a", 1)
    write(store, new(kept))
    lost = copy_of("a", 2)
    with pytest.raises(RuntimeError), store.transaction():
        store.apply(Decision((new(lost),)), SourceState(name="a", etag='"x"'))
        raise RuntimeError("a failure after the write")
    assert [e.id for e in store.latest(10)] == [kept.id]
    assert store.get_state("a") == SourceState(name="a")
    # Nested: the inner failure undoes its own writes, the outer ones stay.
    with store.transaction():
        store.save_states([SourceState(name="outer")])
        with pytest.raises(RuntimeError), store.transaction():
            store.apply(Decision((new(lost),)), SourceState(name="inner"))
            raise RuntimeError("inner")
    assert [st.name for st in store.states()] == ["a", "outer"]
    assert [e.id for e in store.latest(10)] == [kept.id]


def test_what_dedup_decides_is_what_the_store_shows(store: Store) -> None:
    # One pass through the real decider: a copy linking two stored entries merges them.
    a = copy_of("a", 1, link="https://a.test/1")
    b = copy_of("b", 2, link="https://b.test/2", at=1)
    for e in (a, b):
        with store.transaction():
            store.apply(dedup.place([e], store), SourceState(name=e.source))
    bridge = replace(copy_of("c", 3, at=2), text=a.text, fingerprint=a.fingerprint)
    bridge = replace(bridge, link="https://b.test/2", link_key=b.link_key)
    with store.transaction():
        decision = dedup.place([bridge], store)
        store.apply(decision, SourceState(name="c"))
    assert [(m.entry_id, m.into) for m in decision.merges] == [(b.id, a.id)]
    (entry,) = store.latest(10)
    assert entry.id == a.id and {p.source for p in entry.sources} == {"a", "b", "c"}


@pytest.mark.parametrize("kind", STORES)
def test_a_store_reopens_with_what_it_held(kind: str, tmp_path: Path) -> None:
    e = copy_of("a", 1)
    with open_test_store(kind, tmp_path) as first:
        write(first, new(e))
        first.save_states([SourceState(name="a", etag='"1"')])
    with open_test_store(kind, tmp_path) as again:
        assert [x.id for x in again.latest(10)] == [e.id]
        assert again.get_state("a") == SourceState(name="a", etag='"1"')


def test_names_come_back_as_written(store: Store) -> None:
    awkward = ('Ann "the" Author', "back\\slash", "NULL", "{a,b}", "tab\there", "line\nbreak", "")
    e = replace(copy_of("a", 1), authors=awkward, categories=("Ünïcode 中文", "a,b"))
    write(store, new(e))
    (entry,) = store.latest(1)
    assert (entry.authors, entry.categories) == (awkward, ("Ünïcode 中文", "a,b"))


def test_a_write_the_store_refuses_is_a_storage_error_that_undoes_only_itself(
    store: Store,
) -> None:
    kept = copy_of("a", 1)
    write(store, new(kept))
    again = replace(copy_of("a", 1, at=1), title="Stored twice")  # the same (source, key)
    with store.transaction():
        store.save_states([SourceState(name="before")])
        with pytest.raises(StorageError):
            write(store, new(again))
        store.save_states([SourceState(name="after")])
    assert [e.title for e in store.latest(10)] == [kept.title]
    assert sorted(st.name for st in store.states()) == ["a", "after", "before"]


# --- outputs and their archives -----------------------------------------------------------------


def test_an_output_selects_by_category_and_source_newest_first(store: Store) -> None:
    ml = copy_of("a", 1, categories=("ML",), at=1)
    web = copy_of("a", 2, categories=("web",), at=2)
    both = copy_of("b", 3, categories=("Web", "ml"), at=3)
    none = copy_of("b", 4, at=4)
    for e in (ml, web, both, none):
        write(store, new(e))
    assert store.output_entries("all", EntryMatch()) == [none.id, both.id, web.id, ml.id]
    assert store.output_entries("x", EntryMatch.of(categories=["ml"])) == [both.id, ml.id]
    assert store.output_entries("x", EntryMatch.of(categories=["WEB", "none"])) == [
        both.id,
        web.id,
    ]
    assert store.output_entries("x", EntryMatch.of(sources=["b"])) == [none.id, both.id]
    assert store.output_entries("x", EntryMatch.of(["ml"], ["a"])) == [ml.id]
    assert store.output_entries("x", EntryMatch.of(sources=["zzz"])) == []
    # A copy from another source brings its categories and its source to the entry.
    write(store, Placement(copy_of("c", 5, categories=("ml",), at=5), web.id, "text"))
    assert store.output_entries("x", EntryMatch.of(sources=["c"])) == [web.id]
    assert store.output_entries("x", EntryMatch.of(categories=["ml"])) == [both.id, web.id, ml.id]
    # What the store selects, the record's own test selects too.
    entries = store.load_entries(store.output_entries("all", EntryMatch()))
    match = EntryMatch.of(categories=["ml"])
    assert [e.id for e in entries if match.selects(e)] == [both.id, web.id, ml.id]


def test_entries_load_in_the_order_asked(store: Store) -> None:
    a, b, c = (copy_of("a", n, at=n) for n in range(3))
    write(store, new(a), new(b), new(c))
    loaded = store.load_entries([c.id, "urn:unknown", a.id, b.id])
    assert [e.id for e in loaded] == [c.id, a.id, b.id]
    assert loaded == [next(e for e in store.latest(10) if e.id == i) for i in (c.id, a.id, b.id)]
    assert store.load_entries([]) == []


def test_sealed_pages_leave_the_output_and_keep_their_order(store: Store) -> None:
    posts = [copy_of("a", n, at=n) for n in range(5)]
    write(store, *(new(e) for e in posts))
    assert store.archive_pages("feed") == 0
    store.seal_archive("feed", 1, [posts[1].id, posts[0].id])
    store.seal_archive("feed", 2, [posts[3].id, posts[2].id])
    assert store.archive_pages("feed") == 2
    assert store.archive_page("feed", 1) == [posts[1].id, posts[0].id]
    assert store.archive_page("feed", 2) == [posts[3].id, posts[2].id]
    assert store.archive_page("feed", 3) == []
    assert store.output_entries("feed", EntryMatch()) == [posts[4].id]
    # Each output has its own pages.
    assert store.archive_pages("other") == 0
    assert len(store.output_entries("other", EntryMatch())) == 5


@pytest.mark.parametrize(
    ("page", "ids"),
    [(3, ["p1"]), (2, ["p0", "p1"]), (2, ["p1", "p1"])],
    ids=["skips a page", "an entry sealed twice", "repeats an id"],
)
def test_a_page_that_breaks_the_order_is_refused_whole(
    store: Store, page: int, ids: list[str]
) -> None:
    posts = {f"p{n}": copy_of("a", n, at=n) for n in range(3)}
    write(store, *(new(e) for e in posts.values()))
    store.seal_archive("feed", 1, [posts["p0"].id])
    with pytest.raises(StorageError):
        store.seal_archive("feed", page, [posts[i].id for i in ids])
    assert store.archive_pages("feed") == 1
    assert store.archive_page("feed", 1) == [posts["p0"].id]


def test_a_merged_entry_leaves_its_page_to_the_survivor(store: Store) -> None:
    a, b, c = (copy_of(s, n, at=n) for n, s in enumerate("abc"))
    write(store, new(a), new(b), new(c))
    store.seal_archive("feed", 1, [b.id, a.id])
    # b (archived) folds into c (not archived): c takes b's place in the page.
    fold(store, copy_of("d", 9, at=5), b.id, c, 0.9)
    assert store.archive_page("feed", 1) == [c.id, a.id]
    assert store.output_entries("feed", EntryMatch()) == []
    # c (archived now) folds into a (archived in the same page): a stays, once.
    fold(store, copy_of("e", 10, at=6), c.id, a, 0.9)
    assert store.archive_page("feed", 1) == [a.id]


def test_asked_again_an_output_sees_what_changed_since(store: Store) -> None:
    ml = EntryMatch.of(categories=["ml"])
    a = copy_of("a", 1, categories=("ML",), at=1)
    b = copy_of("a", 2, categories=("web",), at=2)
    write(store, new(a), new(b))
    assert store.output_entries("ml", ml) == [a.id]
    assert store.output_entries("ml", ml) == [a.id]  # asked again: the same
    c = copy_of("a", 3, categories=("ml",), at=3)
    write(store, new(c))  # a new entry
    assert store.output_entries("ml", ml) == [c.id, a.id]
    # An entry stored earlier gains a copy that brings the category: it is selected now.
    write(store, Placement(copy_of("b", 4, categories=("ml",), at=4), b.id, "text"))
    assert store.output_entries("ml", ml) == [c.id, b.id, a.id]
    store.seal_archive("ml", 1, [a.id])
    assert store.output_entries("ml", ml) == [c.id, b.id]
    # c folds into b: only b is left.
    fold(store, copy_of("d", 5, at=5), c.id, b, 0.9)
    assert store.output_entries("ml", ml) == [b.id]
    # Another filter for the same output is judged afresh.
    assert store.output_entries("ml", EntryMatch()) == [b.id]
    assert store.output_entries("ml", EntryMatch.of(sources=["a"])) == [b.id]
    assert store.output_entries("ml", EntryMatch.of(sources=["zzz"])) == []


# --- removing a source and pruning ---------------------------------------------------------------


def repick(store: Store, kept: tuple[str, ...]) -> None:
    """Choose the kept entries' representatives again by dedup's rule, as `remove` does."""
    store.set_representatives(dedup.representatives(store.entries(kept)))


def test_removing_a_source_deletes_what_only_it_had(store: Store) -> None:
    only = copy_of("gone", 1)
    other = copy_of("stays", 2, at=1)
    write(store, new(only, (31, 32)))
    write(store, new(other))
    store.save_states([SourceState(name="gone", etag='"g"'), SourceState(name="stays")])
    with store.transaction():
        removal = store.remove_source("gone")
        repick(store, removal.entries_kept)
    assert (removal.source, removal.copies, removal.entries_removed) == ("gone", 1, 1)
    assert removal.entries_kept == ()
    assert [e.id for e in store.latest(10)] == [other.id]
    assert store.entry_counts() == {"stays": 1}
    assert store.get_state("gone") is None and store.get_state("stays") is not None
    found = store.candidates(
        CandidateQuery(
            keys=frozenset({("gone", only.key)}),
            fingerprints=frozenset({only.fingerprint}),
            hashes=frozenset({31, 32}),
        )
    )
    assert (found.by_key, found.by_fingerprint, found.by_hash) == ({}, {}, {})


def test_a_shared_entry_stays_represented_by_a_remaining_copy(store: Store) -> None:
    # "first" has the longer, untruncated text: it represents the entry until it is removed.
    first = copy_of("first", 1, text=TEXT + " It goes on for a while longer than the other.")
    second = copy_of("second", 1, link="https://second.test/1", at=2)
    write(store, new(first))
    write(
        store,
        Placement(second, first.id, "similar", 0.9),
        representatives={first.id: ("first", first.key)},
    )
    assert store.latest(1)[0].source == "first"
    with store.transaction():
        removal = store.remove_source("first")
        repick(store, removal.entries_kept)
    assert removal.entries_kept == (first.id,) and removal.entries_removed == 0
    (entry,) = store.latest(10)
    assert entry.id == first.id  # the id never changes
    assert (entry.source, entry.title, entry.link) == ("second", second.title, second.link)
    assert entry.first_seen == second.first_seen
    assert [p.source for p in entry.sources] == ["second"] and entry.duplicates == ()
    assert store.entry_counts() == {"second": 1}
    assert [c.copies[0].source for c in store.clusters()] == []


def test_a_new_representative_after_a_removal_gives_its_dates(store: Store) -> None:
    def copy(source: str, days: int, site: str) -> Excerpt:
        e = copy_of(source, 1, link="https://origin.test/p", published=T0 - timedelta(days=days))
        return replace(e, site_host=site)

    first, second, elsewhere = (
        copy("a", 2, "origin.test"),
        copy("b", 1, "origin.test"),
        copy("c", 3, "planet.test"),
    )
    one_post(store, first, second, elsewhere, representative=first)
    assert store.latest(1)[0].published == T0 - timedelta(days=2)
    with store.transaction():
        removal = store.remove_source("a")
        repick(store, removal.entries_kept)
    (entry,) = store.latest(10)
    # The original's other copy represents it now, and dates it: not the planet's earlier date.
    assert (entry.source, entry.published) == ("b", T0 - timedelta(days=1))


def test_removing_an_unknown_source_changes_nothing(store: Store) -> None:
    e = copy_of("a", 1)
    write(store, new(e))
    removal = store.remove_source("nobody")
    assert (removal.copies, removal.entries_removed, removal.entries_kept) == (0, 0, ())
    assert [x.id for x in store.latest(10)] == [e.id]


def test_prune_keeps_the_newest_entries_and_the_recent_ones(store: Store) -> None:
    day = timedelta(days=1)
    old = [copy_of("a", n, published=T0 - (100 + n) * day) for n in range(4)]
    recent = copy_of("a", 9, published=T0 - 2 * day)
    for e in (*old, recent):
        write(store, new(e))
    # Entries first seen at T0: none is old by first sight until the cut is after T0.
    assert store.prune(T0 - 30 * day, keep=1) == 0
    cut = T0 + timedelta(hours=1)
    assert store.prune(cut, keep=2) == 3  # the newest two stay, whatever their age
    assert [e.id for e in store.latest(10)] == [recent.id, old[0].id]
    assert store.entry_counts() == {"a": 2}
    found = store.candidates(CandidateQuery(keys=frozenset({("a", old[3].key)})))
    assert found.by_key == {}
    assert store.prune(cut, keep=5) == 0


def test_an_entry_removed_or_pruned_leaves_its_page(store: Store) -> None:
    a, b, c = copy_of("a", 1, at=1), copy_of("b", 2, at=2), copy_of("c", 3, at=3)
    for e in (a, b, c):
        write(store, new(e))
    store.seal_archive("feed", 1, [c.id, b.id, a.id])
    with store.transaction():
        store.remove_source("b")
    assert store.archive_page("feed", 1) == [c.id, a.id]
    assert store.prune(T0 + timedelta(days=1), keep=1) == 1  # a, the oldest
    assert store.archive_page("feed", 1) == [c.id]
    store.seal_archive("feed", 2, [])
    assert store.prune(T0 + timedelta(days=1), keep=0) == 1  # c: page 1 is empty now
    assert store.archive_page("feed", 1) == []
    # The pages still count: the next one sealed is page 3.
    assert store.archive_pages("feed") == 2
    with pytest.raises(StorageError):
        store.seal_archive("feed", 1, [])
