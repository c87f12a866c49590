"""Properties of dedup through a real SQLite store, on variants of hand-written posts.

Each record comes from its own source and is placed on its own (as a refresh places one
source after another). Dedup must be deterministic, independent of the order records
arrive in, idempotent, and must put every record in exactly one entry: the right one.
"""

from __future__ import annotations

import tempfile
import tomllib
from datetime import timedelta
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from aggregator import dedup
from aggregator.models import CandidateQuery, Excerpt, ExcerptOptions, RawItem, Source, SourceState
from aggregator.normalize import normalize
from aggregator.store import Store
from tests.dedup_corpus import CORPUS, T0, _cut, _typo
from tests.helpers import open_test_store

_POSTS = tomllib.loads((CORPUS / "posts.toml").read_text(encoding="utf-8"))["post"]
_CHOSEN = [_POSTS[i] for i in (0, 4, 8, 12, 17, 21)]
VARIANTS = ("original", "exact", "cut45", "cut70", "typo", "capture")


def _item(post: int, variant: str) -> RawItem:
    p = _CHOSEN[post]
    title, body = p["title"], p["body"]
    content = {
        "original": body,
        "exact": body,
        "cut45": _cut(body, 0.45),
        "cut70": _cut(body, 0.7),
        "typo": _typo(body),
        "capture": f"{title} {_cut(body, 0.6)}",
    }[variant]
    return RawItem(
        guid=None,
        title=None if variant == "capture" else title,
        link=None,
        content=content,
        content_is_html=False,
    )


def _excerpt(post: int, variant: str, n: int) -> Excerpt:
    source = Source(name=f"src-{post}-{variant}", url="https://example.test/")
    now = T0 + timedelta(minutes=n)
    return normalize(_item(post, variant), source=source, now=now, options=ExcerptOptions())


def _run(records: list[tuple[int, str]], store: Store, start: int = 0) -> list[str]:
    """Place records one source at a time; return each record's rule."""
    rules = []
    for n, (post, variant) in enumerate(records, start=start):
        e = _excerpt(post, variant, n)
        with store.transaction():
            batch = dedup.place([e], store)
            store.apply(batch, SourceState(name=e.source))
        rules.append(batch.placements[0].rule)
    return rules


def _entries(records: list[tuple[int, str]], store: Store) -> dict[tuple[int, str], str]:
    out = {}
    for post, variant in records:
        e = _excerpt(post, variant, 0)
        copy = store.candidates(CandidateQuery(keys=frozenset({(e.source, e.key)}))).by_key.get(
            (e.source, e.key)
        )
        assert copy is not None, f"record {post}/{variant} is not stored"
        assert store.entries({copy.entry_id}), f"record {post}/{variant} has no entry"
        out[(post, variant)] = copy.entry_id
    return out


def _partition(entries: dict[tuple[int, str], str]) -> set[frozenset[tuple[int, str]]]:
    groups: dict[str, set[tuple[int, str]]] = {}
    for record, entry in entries.items():
        groups.setdefault(entry, set()).add(record)
    return {frozenset(g) for g in groups.values()}


records_st = st.lists(
    st.tuples(st.integers(0, len(_CHOSEN) - 1), st.sampled_from(VARIANTS)),
    min_size=1,
    max_size=10,
    unique=True,
)


@settings(max_examples=30, deadline=None)
@given(records=records_st, data=st.data())
def test_dedup_properties(records: list[tuple[int, str]], data: st.DataObject) -> None:
    order = data.draw(st.permutations(records))
    with tempfile.TemporaryDirectory() as tmp:
        first = open_test_store("sqlite", Path(tmp) / "a")
        again = open_test_store("sqlite", Path(tmp) / "b")
        shuffled = open_test_store("sqlite", Path(tmp) / "c")
        try:
            _run(records, first)
            _run(records, again)
            _run(list(order), shuffled)
            entries = _entries(records, first)
            # Every record is in exactly one entry, and the entries are the posts.
            assert _partition(entries) == {
                frozenset(r for r in records if r[0] == post) for post, _ in records
            }
            # Deterministic: the same input gives the same entries, ids included.
            assert _entries(records, again) == entries
            # Independent of order: the same clusters (ids are minted by whoever came first).
            assert _partition(_entries(records, shuffled)) == _partition(entries)
            # Idempotent: placing everything again changes nothing.
            rules = _run(records, first, start=len(records))
            assert set(rules) == {"same"}
            assert _entries(records, first) == entries
            count = sum(len(entry.sources) for entry in first.latest(10**9))
            assert count == len(records)
        finally:
            first.close()
            again.close()
            shuffled.close()
