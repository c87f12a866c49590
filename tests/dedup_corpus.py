"""A labelled evaluation corpus for dedup, built from hand-written posts.

tests/data/dedup/posts.toml holds distinct posts (English and Chinese); each is planted in
several sources as every kind of repeat dedup must catch. tests/data/dedup/traps.toml holds
groups of different posts that look alike (a shared preamble, a numbered series, one title
for different episodes, short posts, one topic); they must stay apart.

`run_corpus` feeds every record through normalize and dedup into a real SQLite store, source
by source, and returns the labelled outcome; `score` turns it into precision and recall.

A helper module, not a test module: the corpus is large and of one piece, so it stands apart from
tests/helpers.py; the dedup tests and bench/dedup_quality.py import it.
"""

from __future__ import annotations

import tomllib
from collections import Counter, defaultdict
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from aggregator import dedup
from aggregator.models import CandidateQuery, ExcerptOptions, RawItem, Source, SourceState
from aggregator.normalize import normalize
from aggregator.store.sqlite import SQLiteStore

SHARED_LINK_SOURCE = "daily"  # configured with allow_duplicate_links = true
CORPUS = Path(__file__).resolve().parent / "data" / "dedup"
T0 = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)

# Kinds of planted repeats, and the rule each is expected to be caught by.
REPEAT_RULES = {
    "text": "text",
    "retitle": "text",
    "link": "link",
    "prefix": "prefix",
    "prefix-titled": "prefix",
    "similar-typo": "similar",
    "similar-reword": "similar",
    "churn": "same",
}


@dataclass(frozen=True)
class Record:
    """One planted item: which source shows it, in which fetch, and which post it is."""

    source: str
    fetch: int  # fetches run in order; one source's items of one fetch form one batch
    item: RawItem
    post: str  # ground truth: records with the same post are one post
    kind: str  # original, a repeat kind (REPEAT_RULES) or trap:<kind>


def _cut(text: str, fraction: float) -> str:
    return text[: max(1, int(len(text) * fraction))].rstrip() + "..."


def _typo(text: str) -> str:
    # Swap two neighbouring characters at 40% and at 70% of the text.
    out = text
    for f in (0.4, 0.7):
        j = int(len(out) * f)
        while j + 1 < len(out) and (out[j] == " " or out[j + 1] == " "):
            j += 1
        out = out[:j] + out[j + 1] + out[j] + out[j + 2 :]
    return out


def _reword(text: str, cjk: bool) -> str:
    # Replace a stretch in the middle with a different phrase, then cut at 85%.
    start, end = int(len(text) * 0.5), int(len(text) * 0.58)
    filler = "说实话这一点让我有些意外" if cjk else "which, to be honest, surprised me a little"
    return _cut(text[:start] + filler + text[end:], 0.85)


def _is_cjk(text: str) -> bool:
    return sum(1 for ch in text if "\u4e00" <= ch <= "\u9fff") > len(text) // 3


def build() -> list[Record]:
    posts = tomllib.loads((CORPUS / "posts.toml").read_text(encoding="utf-8"))["post"]
    traps = tomllib.loads((CORPUS / "traps.toml").read_text(encoding="utf-8"))["group"]
    out: list[Record] = []

    def add(source: str, fetch: int, post: str, kind: str, **item: object) -> None:
        raw = RawItem(
            guid=item.get("guid"),  # type: ignore[arg-type]
            title=item.get("title"),  # type: ignore[arg-type]
            link=item.get("link"),  # type: ignore[arg-type]
            content=str(item["content"]),
            content_is_html=False,
            position=sum(1 for r in out if r.source == source and r.fetch == fetch),
        )
        out.append(Record(source, fetch, raw, post, kind))

    for i, p in enumerate(posts):
        title, body, post = p["title"], p["body"], f"post-{i}"
        cjk = _is_cjk(body)
        link = f"https://alpha.test/posts/{i}"
        add("alpha", 1, post, "original", guid=f"alpha-{i}", title=title, link=link, content=body)
        beta = {"guid": f"beta-{i}", "link": f"https://beta.test/{i}.html"}
        if i % 3 == 0:
            add("beta", 1, post, "text", title=title, content=body, **beta)
        elif i % 3 == 1:
            add("beta", 1, post, "retitle", title="Repost: " + title, content=body, **beta)
        else:
            add("beta", 1, post, "similar-typo", title=title, content=_typo(body), **beta)
        # A capture line: the title and the start of the body on one line, cut short.
        add("gamma", 1, post, "prefix-titled", content=f"{title} {_cut(body, 0.6)}")
        if i % 2 == 0:
            add(
                "delta",
                1,
                post,
                "link",
                guid=f"delta-{i}",
                title=title,
                link=link + "/?utm_source=rss&utm_medium=feed",
                content=("一句话摘要：" if cjk else "In short: ") + title,
            )
        add(
            "epsilon",
            1,
            post,
            "prefix",
            guid=f"eps-{i}",
            title=title,
            link=f"https://eps.test/{i}",
            content=_cut(body, 0.45),
        )
        add(
            "zeta",
            1,
            post,
            "similar-reword",
            guid=f"zeta-{i}",
            title=title,
            link=f"https://zeta.test/p{i}",
            content=_reword(body, cjk),
        )
        # The feed changes every guid on its next fetch; the links stay.
        add("alpha", 2, post, "churn", guid=f"alpha-v2-{i}", title=title, link=link, content=body)

    for g, group in enumerate(traps):
        kind = group["kind"]
        bodies = group["bodies"]
        titles = group.get("titles") or [None] * len(bodies)
        preamble = group.get("preamble", "")
        for j, (title, body) in enumerate(zip(titles, bodies, strict=True)):
            text = preamble + body
            post = f"trap-{g}-{j}"
            src = f"trap{g}"
            extra: dict[str, object] = {"guid": f"t{g}-{j}"}
            if kind == "repeated-guid":
                extra = {"guid": "same-guid-for-all", "link": f"https://omega.test/{j}"}
            elif kind == "shared-link":
                src = SHARED_LINK_SOURCE
                extra = {"link": "https://daily.test/"}
            add(src, 1, post, f"trap:{kind}", title=title, content=text, **extra)
            if preamble:
                # The same post again, cut shortly after the shared preamble: still only
                # this post's, but its start is everybody's.
                cut = _cut(text, (len(preamble) + len(body) * 0.3) / len(text))
                add(f"{src}x", 1, post, "prefix", guid=f"t{g}-{j}x", title=title, content=cut)
            if preamble and j == 0:
                # Cut right at the end of the preamble, where it could be anybody's post:
                # it must not be merged with any of them (so it is its own post here).
                bare = _cut(preamble + body[:3], 1.0)
                add(f"{src}y", 1, f"{post}-bare", f"trap:{kind}-bare", content=bare)
    return out


@dataclass(frozen=True)
class Outcome:
    records: list[Record]
    entry_of: list[str]  # entry id of each record
    rule_of: list[str]  # rule that placed each record
    # Entries per source as the store keeps them, and as counted over its copies.
    entry_counts: dict[str, int] = field(default_factory=dict)
    counted: dict[str, int] = field(default_factory=dict)


def run_corpus(
    path: Path,
    records: list[Record],
    options: dedup.DedupOptions | None = None,
    *,
    fold_sketches: int | None = None,
    group: int | None = None,
) -> Outcome:
    """Feed the records through normalize, dedup and a SQLite store, fetch by fetch.

    With `group`, that many fetches are placed and stored in one write transaction (as a
    refresh stores the sources that finished together), each in a savepoint of its own.
    """
    store = (
        SQLiteStore(path)
        if fold_sketches is None
        else SQLiteStore(path, fold_sketches=fold_sketches)
    )
    opts = options or dedup.DedupOptions()
    entry_of: list[str] = [""] * len(records)
    rule_of: list[str] = [""] * len(records)
    try:
        batches: dict[tuple[int, str], list[int]] = defaultdict(list)
        for i, r in enumerate(records):
            batches[(r.fetch, r.source)].append(i)
        ordered = sorted(batches.items())
        transaction = ExitStack()
        for n, ((fetch, source), idx) in enumerate(ordered):
            if group is not None and n % group == 0:
                transaction.enter_context(store.transaction())
            now = T0 + timedelta(hours=fetch, minutes=idx[0])
            src = Source(name=source, url=f"https://{source}.test/")
            excerpts = [
                normalize(records[i].item, source=src, now=now, options=ExcerptOptions())
                for i in idx
            ]
            if source == SHARED_LINK_SOURCE:
                src = Source(name=source, url=src.url, allow_duplicate_links=True)
                excerpts = [
                    normalize(records[i].item, source=src, now=now, options=ExcerptOptions())
                    for i in idx
                ]
            with store.transaction():
                batch = dedup.place(
                    excerpts, store, replace(opts, allow_duplicate_links=src.allow_duplicate_links)
                )
                store.apply(batch, SourceState(name=source))
            if group is not None and (n % group == group - 1 or n == len(ordered) - 1):
                transaction.close()  # commits the group
            by_key = {p.excerpt.key: p for p in batch.placements}
            for i, e in zip(idx, excerpts, strict=True):
                rule_of[i] = by_key[e.key].rule if e.key in by_key else "batch"
        # Read back where every record ended up (merges may have moved earlier ones).
        for i, r in enumerate(records):
            src = Source(
                name=r.source,
                url=f"https://{r.source}.test/",
                allow_duplicate_links=r.source == SHARED_LINK_SOURCE,
            )
            e = normalize(r.item, source=src, now=T0, options=ExcerptOptions())
            found = store.candidates(
                CandidateQuery(
                    keys=frozenset({(r.source, e.key)}),
                    links=frozenset({e.link_key} if e.link_key else ()),
                )
            )
            copy = found.by_key.get((r.source, e.key))
            if copy is None:  # re-keyed: the copy it updated carries its new key
                copy = next(
                    (c for c in found.by_link.get(e.link_key or "", ()) if c.source == r.source),
                    None,
                )
            entry_of[i] = copy.entry_id if copy else ""
        kept = store.entry_counts()
        # The entries each source has a copy of, counted from what the outputs show.
        counted = dict(
            Counter(
                name for entry in store.latest(10**9) for name in {s.source for s in entry.sources}
            )
        )
    finally:
        store.close()
    return Outcome(records, entry_of, rule_of, kept, counted)


@dataclass(frozen=True)
class Score:
    false_merges: list[tuple[str, str]]  # pairs of different posts in one entry
    missed: list[tuple[str, str]]  # (post, kind) of planted repeats not in their post's entry
    recall_by_kind: dict[str, tuple[int, int]]  # kind -> (caught, planted)
    precision_by_rule: dict[str, tuple[int, int]]  # rule -> (right, placed by it)


def score(outcome: Outcome) -> Score:
    records, entry_of = outcome.records, outcome.entry_of
    posts_in_entry: dict[str, set[str]] = defaultdict(set)
    for r, entry in zip(records, entry_of, strict=True):
        posts_in_entry[entry].add(r.post)
    false_merges = [
        (a, b)
        for posts in posts_in_entry.values()
        for a in sorted(posts)
        for b in sorted(posts)
        if a < b
    ]
    home: dict[str, str] = {}
    for r, entry in zip(records, entry_of, strict=True):
        if r.kind in ("original",) or r.kind.startswith("trap:"):
            home.setdefault(r.post, entry)
    caught: Counter[str] = Counter()
    planted: Counter[str] = Counter()
    missed = []
    for r, entry in zip(records, entry_of, strict=True):
        if r.kind in REPEAT_RULES:
            planted[r.kind] += 1
            if entry and entry == home.get(r.post):
                caught[r.kind] += 1
            else:
                missed.append((r.post, r.kind))
    right: Counter[str] = Counter()
    placed: Counter[str] = Counter()
    for r, entry, rule in zip(records, entry_of, outcome.rule_of, strict=True):
        if rule in ("new", "batch", ""):
            continue
        placed[rule] += 1
        if posts_in_entry[entry] == {r.post}:
            right[rule] += 1
    return Score(
        false_merges=false_merges,
        missed=missed,
        recall_by_kind={k: (caught[k], planted[k]) for k in sorted(planted)},
        precision_by_rule={k: (right[k], placed[k]) for k in sorted(placed)},
    )
