"""Decide, for each new excerpt, which merged entry it belongs to.

The tiers, most certain first:
1. same source and same key (guid, else link, else text): the same copy seen again;
2. same canonical link, from any source (unless the source reuses links);
3. same normalized text (equal fingerprints), from any source; a short text also needs the
   same title, since different short posts can read alike;
4. `prefix`: one text is a truncation of the other: the shorter (its trailing "..." already
   folded away) starts the longer, is long enough to be distinctive (CJK counts twice, see
   sketch.weight), and is marked truncated or nearly as long as the longer. Each text is also
   tried with its title in front, since a capture line carries "title body" where a feed has
   the body alone;
5. `similar`: near-duplicate text. MinHash LSH bands (kept in the store) find candidates;
   the exact Jaccard similarity of character 4-grams confirms them, after trimming the longer
   text to the shorter one's length (a truncation point must not count as a difference).
   Thresholds rise for shorter texts; the shorter text must be truncated or nearly full.

Never merged: texts whose titles carry different numbers ("Part 1" / "Part 2", "第3集"), texts
that share only an opening or a preamble (the shorter is not a prefix of the longer, or is
not cut where the longer goes on), and short texts beyond an exact match.

A copy that matches nothing starts a new entry whose id is the excerpt's own candidate id,
minted once and never changed afterwards. A copy that matches several entries links them: they
become one, and the oldest one's id survives. Each entry the batch creates or changes is
represented by one of its copies, chosen here too by a rule that does not depend on the order
the copies arrived in (`representative_rank`): the original's own copy, then the earliest
published, then the most complete.

Dedup decides and writes nothing: `place()` reads the store through its read-only
CandidateView (the candidates of a whole batch, then the entries the batch touches) and
returns a Decision that the store persists as it is.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from aggregator.config import DedupSettings
from aggregator.ids import mint_id
from aggregator.models import (
    CandidateQuery,
    Candidates,
    CopyRank,
    Decision,
    Excerpt,
    Merge,
    Placement,
    StoredCopy,
    StoredEntry,
)
from aggregator.sketch import (
    PREFIX_CHARS,
    band_hashes,
    jaccard,
    prefix_key,
    weighs_at_least,
    weight,
)
from aggregator.store import CandidateView
from aggregator.textutil import fold
from aggregator.urls import site_host

MIN_PREFIX_WEIGHT = 50  # the shorter text of a prefix match: ~50 Latin or ~25 CJK characters
MIN_PREFIX_BODY = 40  # ...of which its own text (not its title) at least this much
MIN_DISTINCT_WEIGHT = 20  # ...and this much beyond what it shares with other posts' texts
MIN_SIMILAR_WEIGHT = 120  # shorter texts are never matched by similarity
LONG_WEIGHT = 300  # from here on the configured threshold applies; below it, a stricter one
SHORT_PENALTY = 0.05  # added to the threshold for texts below LONG_WEIGHT
SHORT_TEXT_WEIGHT = 40  # an exact text match this short also needs the same title
NEAR_FULL_PREFIX = 0.85  # an untruncated shorter text must be this close to the longer's length
NEAR_FULL_SIMILAR = 0.8
MAX_CANDIDATES = 200  # sketch candidates looked at per excerpt
MAX_MATCHED_ENTRIES = 8  # fuzzy matches to more entries than this are ambiguous

_RULE_RANK = {"same": 0, "guid": 1, "link": 2, "text": 3, "prefix": 4, "similar": 5}
_NUMBERED = re.compile(
    r"\d+|第[一二三四五六七八九十百零两〇]+[集部篇章期讲回节季卷]"
    r"|\b(?:part|episode|chapter|volume|vol|ep|season)\.?\s*(?:[ivxlc]+|one|two|three|four|five)\b"
    r"|[上中下]篇|（[一二三四五六七八九十]+）|\([一二三四五六七八九十]+\)"
)


@dataclass(frozen=True, slots=True)
class DedupOptions:
    """How near-duplicates are matched (`[dedup]`) and how one source is treated."""

    near_duplicates: bool = DedupSettings().near_duplicates  # not only exact repeats ([dedup])
    threshold: float = DedupSettings().threshold  # Jaccard similarity of 4-grams, long texts
    allow_duplicate_links: bool = False  # the source reuses one link for many items


@dataclass(frozen=True, slots=True)
class _Probe:
    """What the candidate look-ups need from one excerpt."""

    title: str | None  # folded title (None: not folded yet, see _title)
    forms: tuple[str, ...]  # the folded text, then "title text" when the text lacks its title
    sketch: tuple[int, ...]  # prefix keys of the forms, then the LSH band hashes
    n_prefix: int  # how many of `sketch` are prefix keys


def place(
    excerpts: Iterable[Excerpt],
    view: CandidateView,
    options: DedupOptions | None = None,
    *,
    sketches: bool = True,
) -> Decision:
    """Decide where each excerpt of a batch goes, against what `view` has stored and against
    each other.

    Reads the view (at most three calls: the batch's keys; the links, fingerprints and
    sketch hashes of the items not stored under their key; the stored entries the batch
    touches) and writes nothing. `sketches=False` runs the exact tiers only (same key, link,
    text) and gives no candidate-index hashes; refresh never does this, the benchmark measures
    it.
    """
    opts = options or DedupOptions()
    items = list(excerpts)
    warnings: list[str] = []
    repeated_guids = 0
    if len({(e.source, e.key) for e in items}) < len(items):
        # Only a repeated key can be a guid shared by two posts.
        items, repeated_guids = _split_repeated_guids(items, opts, warnings)
    # The same item twice in one document (a post listed twice): the first one counts.
    distinct = {(e.source, e.key): e for e in reversed(items)}
    repeated_in_batch = len(items) - len(distinct)
    if repeated_in_batch:
        items = [e for e in items if distinct.get((e.source, e.key)) is e]
    keys = frozenset(distinct)
    # A copy stored under its key is this source's item seen again, placed "same" whatever
    # else it shares. In a re-crawl that is nearly every item: the keys are looked up first,
    # so that those items need no other look-up and, unchanged, no sketch.
    known = view.candidates(CandidateQuery(keys=keys)).by_key if items else {}
    probes = _probes(items, known) if sketches else [_exact_probe(e) for e in items]
    stored = _lookup(items, probes, known, view, opts)
    local = _LocalIndex()
    placed: list[tuple[Placement, tuple[_Link, ...]]] = []
    for e, probe in zip(items, probes, strict=True):
        placement, links = _place_one(e, probe, stored, local, keys, opts)
        local.add(placement, probe.sketch, opts)
        placed.append((placement, links))
    decision = _resolve(placed, view)
    changed_keys = sum(
        1 for p in decision.placements if p.existing is not None and p.existing.key != p.excerpt.key
    )
    if changed_keys:
        warnings.append(
            f"{changed_keys} known entr{'y' if changed_keys == 1 else 'ies'} "
            "came back under a new guid or link; kept their ids, matched by link or text"
        )
    return replace(
        decision,
        repeated_in_batch=repeated_in_batch,
        repeated_guids=repeated_guids,
        changed_keys=changed_keys,
        warnings=tuple(warnings),
    )


def _probes(items: list[Excerpt], known: Mapping[tuple[str, str], StoredCopy]) -> list[_Probe]:
    """Each excerpt's look-up values. One stored under its key with the same content is
    placed "same" and rewrites nothing: it gets no sketch hashes (computing them is most of
    the cost of placing such an item)."""
    todo = [
        i
        for i, e in enumerate(items)
        if (c := known.get((e.source, e.key))) is None or c.content_hash != e.content_hash
    ]
    bands = dict(zip(todo, band_hashes([items[i].text for i in todo]), strict=True))
    return [_probe(e, bands[i]) if i in bands else _exact_probe(e) for i, e in enumerate(items)]


def _lookup(
    items: list[Excerpt],
    probes: list[_Probe],
    known: Mapping[tuple[str, str], StoredCopy],
    view: CandidateView,
    opts: DedupOptions,
) -> Candidates:
    """`known` plus every stored copy that the links, fingerprints and sketch hashes of the
    items not stored under their key find, in one look-up."""
    rest = [i for i, e in enumerate(items) if (e.source, e.key) not in known]
    if not rest:
        return Candidates(known, {}, {}, {})
    found = view.candidates(
        CandidateQuery(
            links=frozenset(
                link
                for i in rest
                if (link := items[i].link_key) is not None and not opts.allow_duplicate_links
            ),
            fingerprints=frozenset(items[i].fingerprint for i in rest),
            hashes=frozenset(h for i in rest for h in _sketch_keys(probes[i], opts)),
            limit=MAX_CANDIDATES,
        )
    )
    return Candidates(known, found.by_link, found.by_fingerprint, found.by_hash)


def _sketch_keys(probe: _Probe, opts: DedupOptions) -> tuple[int, ...]:
    """The hashes whose copies are fuzzy candidates: prefix keys, and LSH bands when
    near-duplicates are matched."""
    return probe.sketch if opts.near_duplicates else probe.sketch[: probe.n_prefix]


def _by_sketch(stored: Candidates, keys: Sequence[int]) -> list[StoredCopy]:
    """The stored copies sharing any of these hashes: the newest MAX_CANDIDATES, oldest first."""
    found = [copies for h in keys if (copies := stored.by_hash.get(h))]
    if not found:
        return []
    seen: dict[int, StoredCopy] = {}
    for copies in found:
        for c in copies:
            seen.setdefault(c.rowid, c)
    return [seen[r] for r in sorted(seen, reverse=True)[:MAX_CANDIDATES]][::-1]


@dataclass(frozen=True, slots=True)
class _Link:
    """Another entry a placed copy matched too: the two are one post."""

    entry_id: str  # the other entry
    rule: str  # how the copy matched it
    score: float | None  # similarity, for rules "similar" and "prefix"


def _split_repeated_guids(
    items: list[Excerpt], opts: DedupOptions, warnings: list[str]
) -> tuple[list[Excerpt], int]:
    """Items sharing one guid but not one link or text are different posts: re-key them.

    Returns the items and how many were re-keyed; says so in `warnings`."""
    groups: dict[tuple[str, str], list[int]] = {}
    for i, e in enumerate(items):
        if e.key.startswith("guid:"):
            groups.setdefault((e.source, e.key), []).append(i)
    out = list(items)
    rekeyed = 0
    for (_, key), idx in groups.items():
        if len(idx) < 2 or len({_fallback_key(items[i], opts) for i in idx}) < 2:
            continue
        for i in idx:
            e = items[i]
            new_key = _fallback_key(e, opts)
            out[i] = replace(
                e, key=new_key, id=mint_id(e.source, new_key, e.published, e.first_seen)
            )
        rekeyed += len(idx)
        warnings.append(
            f"{len(idx)} different items share the guid {key[5:]!r}; "
            "told apart by link or text instead"
        )
    return out, rekeyed


def _fallback_key(e: Excerpt, opts: DedupOptions) -> str:
    if e.link_key and not opts.allow_duplicate_links:
        return "link:" + e.link_key
    return "text:" + e.fingerprint


def _forms(text: str, title: str) -> tuple[str, ...]:
    if title and text and not text.startswith(title):
        return (text, title + " " + text)
    return (text,)


def _exact_probe(e: Excerpt) -> _Probe:
    """What the exact tiers alone look up: no sketch hashes (the title is folded on demand)."""
    return _Probe(None, (e.text,), (), 0)


def _probe(e: Excerpt, bands: tuple[int, ...]) -> _Probe:
    return _probe_of(e.text, e.title, bands)


def _probe_of(text: str, raw_title: str, bands: tuple[int, ...]) -> _Probe:
    title = fold(raw_title)
    forms = _forms(text, title)
    keys = tuple(
        dict.fromkeys(prefix_key(f) for f in forms if weighs_at_least(f, MIN_PREFIX_WEIGHT))
    )
    return _Probe(title, forms, keys + bands, len(keys))


def _place_one(
    e: Excerpt,
    probe: _Probe,
    stored: Candidates,
    local: _LocalIndex,
    batch_keys: frozenset[tuple[str, str]],
    opts: DedupOptions,
) -> tuple[Placement, tuple[_Link, ...]]:
    """Place one excerpt against the stored candidates and the copies placed before it; give
    the other entries it matched too."""
    same = stored.by_key.get((e.source, e.key))
    if same is not None:
        return Placement(e, same.entry_id, "same", existing=same, sketch=probe.sketch), ()
    matches: list[tuple[StoredCopy, str, float | None]] = []
    looked: set[tuple[str, str]] = set()
    links_ok = bool(e.link_key) and not opts.allow_duplicate_links
    stored_links = stored.by_link.get(e.link_key, ()) if links_ok and e.link_key else ()
    for c in (*stored_links, *local.by_link(e.link_key if links_ok else None)):
        looked.add((c.source, c.key))
        matches.append((c, "link", None))
    for c in (*stored.by_fingerprint.get(e.fingerprint, ()), *local.by_fingerprint(e.fingerprint)):
        if (c.source, c.key) not in looked and _exact_ok(e, probe, c):
            looked.add((c.source, c.key))
            matches.append((c, "text", None))
    keys = _sketch_keys(probe, opts)
    # Without sketch hashes (exact tiers only) there are no fuzzy candidates.
    candidates = [*_by_sketch(stored, keys), *local.by_sketch(keys)] if keys else []
    if candidates:
        fuzzy: list[tuple[StoredCopy, str, float | None]] = []
        misses: list[StoredCopy] = []
        certain = {c.entry_id for c, _, _ in matches}
        # compare() reads only a copy's text, title and truncation: copies that agree on
        # those (the same post kept by many sources) get one verdict, computed once.
        verdicts: dict[tuple[str, str, bool], tuple[str, float | None] | None] = {}
        for c in candidates:
            if (c.source, c.key) in looked or c.entry_id in certain:
                continue  # already matched, or in an entry a link or the same text joins
            looked.add((c.source, c.key))
            seen = (c.text, c.title, c.truncated)
            if seen in verdicts:
                verdict = verdicts[seen]
            else:
                verdict = verdicts[seen] = compare(e, probe, c, opts)
            if verdict is not None:
                fuzzy.append((c, *verdict))
            else:
                misses.append(c)
        matches.extend(_unambiguous(e, fuzzy, misses, opts))
    if not matches:
        return Placement(e, e.id, "new", sketch=probe.sketch), ()
    return _from_matches(e, probe, matches, batch_keys, local.rewritten)


def _resolve(placed: list[tuple[Placement, tuple[_Link, ...]]], view: CandidateView) -> Decision:
    """The entry-level decisions of a batch: which entries merge and whose id survives, each
    copy's final entry, and which copy represents each entry the batch creates or changes.

    A copy that matched several entries (its links) makes them one: the oldest survives
    (first seen earliest; at the same moment, a stored entry before one of this batch, then
    the store's order), whatever order the batch linked them in. A stored entry folded away
    becomes a Merge for the store, and its first copy takes the rule by which it was linked;
    an entry this batch created and folded away is never stored: its copies go to the
    survivor, its first copy marked with that rule.
    """
    placements = [p for p, _ in placed]
    created: dict[str, int] = {}  # entry id -> the placement that creates it
    for i, p in enumerate(placements):
        if p.rule == "new":
            created.setdefault(p.entry_id, i)
    # The stored entries the batch changes: those it links, joins or rewrites a copy of.
    named: set[str] = set()
    for p, links in placed:
        if links or (p.rule != "new" and (p.existing is None or p.rewrites)):
            named.add(p.entry_id)
            named.update(link.entry_id for link in links)
    named -= created.keys()
    stored = view.entries(named) if named else {}

    def age(entry_id: str) -> tuple[datetime, int, int]:
        entry = stored.get(entry_id)
        if entry is not None:
            return entry.first_seen, 0, entry.seq
        i = created.get(entry_id)
        if i is not None:
            return placements[i].excerpt.first_seen, 1, i
        return datetime.max.replace(tzinfo=UTC), 2, 0  # not stored: never the survivor

    parent: dict[str, str] = {}

    def find(entry_id: str) -> str:
        while entry_id in parent:
            entry_id = parent[entry_id]
        return entry_id

    folded: dict[str, _Link] = {}  # entry folded away -> the link that folded it, in order
    for p, links in placed:
        if not links:
            continue
        roots = {find(link.entry_id): link for link in links}
        roots.setdefault(find(p.entry_id), _Link(p.entry_id, p.rule, p.score))
        survivor = min(roots, key=age)
        for root, link in roots.items():
            if root != survivor:
                parent[root] = survivor
                folded[root] = link
    final = [_after_merges(p, find, folded) for p in placements] if folded else placements
    merges = tuple(
        Merge(entry_id, find(entry_id), link.rule, link.score)
        for entry_id, link in folded.items()
        if entry_id in stored
    )
    touched = {find(p.entry_id) for p, links in placed if links or p.existing is None or p.rewrites}
    new = sum(1 for p in placements if p.rule == "new")
    joined = sum(1 for p in placements if p.existing is None) - new
    updated = sum(1 for p in placements if p.rewrites)
    representatives = _representatives(final, stored, touched, find)
    final, representatives, renames = _ids_of_one_moment(final, stored, representatives, find)
    return Decision(
        placements=tuple(final),
        merges=merges,
        representatives=representatives,
        renames=renames,
        new=new,
        joined=joined,
        updated=updated,
        unchanged=len(placements) - new - joined - updated,
    )


def _after_merges(
    p: Placement, find: Callable[[str], str], folded: Mapping[str, _Link]
) -> Placement:
    """`p` in the entry its own was folded into; the copy that created a folded entry takes the
    rule by which that entry was linked."""
    entry_id, rule, score = find(p.entry_id), p.rule, p.score
    if rule == "new" and p.entry_id in folded:
        rule, score = folded[p.entry_id].rule, folded[p.entry_id].score
    if (entry_id, rule, score) == (p.entry_id, p.rule, p.score):
        return p
    return replace(p, entry_id=entry_id, rule=rule, score=score)


def _representatives(
    placements: list[Placement],
    stored: Mapping[str, StoredEntry],
    touched: set[str],
    find: Callable[[str], str],
) -> dict[str, tuple[str, str]]:
    """For each touched entry, the copy that represents it (the best by `representative_rank`
    among all its copies, stored and new), whatever order they arrived in."""
    offered: dict[str, list[Excerpt | CopyRank]] = {}
    rewritten = {p.existing.rowid: p.excerpt for p in placements if p.existing and p.rewrites}
    for entry in stored.values():
        root = find(entry.id)
        if root in touched:
            for c in entry.copies:
                # A copy rewritten by the batch ranks by its new content.
                offered.setdefault(root, []).append(rewritten.get(c.rowid) or c)
    for p in placements:
        if p.existing is None and p.entry_id in touched:
            offered.setdefault(p.entry_id, []).append(p.excerpt)
    # Most entries a batch touches are new, with one copy: ranked only when there is a choice.
    chosen = {
        entry_id: copies[0] if len(copies) == 1 else min(copies, key=representative_rank)
        for entry_id, copies in offered.items()
    }
    return {entry_id: (c.source, c.key) for entry_id, c in chosen.items()}


def _ids_of_one_moment(
    placements: list[Placement],
    stored: Mapping[str, StoredEntry],
    representatives: dict[str, tuple[str, str]],
    find: Callable[[str], str],
) -> tuple[list[Placement], dict[str, tuple[str, str]], dict[str, str]]:
    """Entries whose every copy was first seen at this batch's moment (in this refresh) take
    the id of their representative copy, so that copies seen together give the same id
    whichever arrived first. (An entry first seen earlier keeps its id: it may be out.) An entry the
    batch creates is created under that id; a stored one is renamed by the store, after the
    batch's other writes, which name it by its stored id. Returns the placements, the
    representatives and the renames."""
    # entry -> when its copies were first seen, and its representative copy
    seen: dict[str, set[datetime]] = {}
    chosen: dict[str, Excerpt | CopyRank] = {}
    for entry in stored.values():
        root = find(entry.id)
        if root in representatives:
            for c in entry.copies:
                seen.setdefault(root, set()).add(c.first_seen)
                if (c.source, c.key) == representatives[root]:
                    chosen[root] = c
    for p in placements:
        if p.entry_id in representatives:
            e = p.excerpt
            if p.existing is None:  # a stored copy was first seen when it was stored
                seen.setdefault(p.entry_id, set()).add(e.first_seen)
            if (e.source, e.key) == representatives[p.entry_id]:
                chosen[p.entry_id] = e  # new, or a stored copy under its new key
    # The batch's moment: every excerpt of a refresh is first seen at its start.
    moment = {placements[0].excerpt.first_seen} if placements else set()
    moved: dict[str, str] = {}
    for entry_id, copy in chosen.items():
        if seen.get(entry_id) != moment:
            continue  # first seen before this moment: its id may be out already
        minted = (
            copy.id
            if isinstance(copy, Excerpt)
            else mint_id(copy.source, copy.key, copy.published, copy.first_seen)
        )
        if minted != entry_id:
            moved[entry_id] = minted
    renames = {k: v for k, v in moved.items() if k in stored}
    created = {k: v for k, v in moved.items() if k not in stored}
    if created:  # not stored yet: created under the right id
        placements = [
            replace(p, entry_id=created[p.entry_id]) if p.entry_id in created else p
            for p in placements
        ]
        representatives = {created.get(k, k): who for k, who in representatives.items()}
    return placements, representatives, renames


# (not the original's own copy, published or never, truncated, -excerpt length, source, key)
_Rank = tuple[bool, datetime, bool, int, str, str]
_NEVER = datetime.max.replace(tzinfo=UTC)


def representative_rank(copy: Excerpt | CopyRank) -> _Rank:
    """How well a copy stands for its post; the lowest represents the entry.

    1. the original's own copy: from a source whose own site is the host of the copy's link
       (a planet or a reader's shared list links the original elsewhere);
    2. the earliest published (a republication is dated later);
    3. the most complete: untruncated, then the longest excerpt;
    4. the source's name, then the copy's key: never the order the copies arrived in.
    """
    length = len(copy.excerpt) if isinstance(copy, Excerpt) else copy.length
    home = copy.site_host is not None and site_host(copy.link) == copy.site_host
    return (
        not home,
        copy.published or _NEVER,
        copy.truncated,
        -length,
        copy.source,
        copy.key,
    )


def representatives(entries: Mapping[str, StoredEntry]) -> dict[str, tuple[str, str]]:
    """The copy that represents each of these stored entries, by the rule a batch applies
    (`_representatives`): for entries that lost a copy (a source removed) and need one again."""
    return _representatives([], entries, set(entries), lambda entry_id: entry_id)


def _unambiguous(
    e: Excerpt,
    fuzzy: list[tuple[StoredCopy, str, float | None]],
    misses: list[StoredCopy],
    opts: DedupOptions,
) -> list[tuple[StoredCopy, str, float | None]]:
    """Drop prefix/similar matches that other texts contradict.

    A text cut right after a shared preamble is a prefix of several different posts: when the
    matched copies disagree with each other, or the matched entry holds another copy that
    starts like this text but then goes elsewhere, the match is a guess, and guesses are not
    merged.
    """
    if not fuzzy:
        return []
    entries = {c.entry_id for c, _, _ in fuzzy}
    # An entry matched by similarity was judged on the whole text; one matched only because
    # this text is a prefix of one copy (or has one as its prefix) must not conflict with
    # the entry's other copies.
    by_prefix = entries - {c.entry_id for c, rule, _ in fuzzy if rule != "prefix"}
    for c in misses:
        if c.entry_id in by_prefix and _contradicts(e.text, c.text, opts):
            entries.discard(c.entry_id)
    # How far this text runs along with texts of other posts: a shared preamble. A prefix
    # match must go on well beyond it to tell which post the text is.
    others = [c.text for c in misses if c.entry_id not in entries]
    shared = max((_common_prefix(e.text, t) for t in others), default=0)
    kept = [
        m
        for m in fuzzy
        if m[0].entry_id in entries and _distinct_after(e.text, m[0].text, shared, m[1], opts)
    ]
    if len({c.entry_id for c, _, _ in kept}) > MAX_MATCHED_ENTRIES:
        return []  # a text that fits this many posts tells none of them apart
    for i, (a, _, _) in enumerate(kept):
        for b, _, _ in kept[i + 1 :]:
            if a.entry_id != b.entry_id and _contradicts(a.text, b.text, opts):
                return []
    return kept


def _common_prefix(a: str, b: str) -> int:
    n = min(len(a), len(b))
    if a[:n] == b[:n]:
        return n
    lo, hi = 0, n  # a[:lo] == b[:lo] and a[:hi] != b[:hi]
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if a[:mid] == b[:mid]:
            lo = mid
        else:
            hi = mid
    return lo


def _distinct_after(a: str, b: str, shared: int, rule: str, opts: DedupOptions) -> bool:
    """Whether two texts still match once the start they share with other posts is cut off."""
    if shared == 0 or rule not in ("prefix", "similar"):
        return True
    short, long = (a, b) if len(a) <= len(b) else (b, a)
    rest = short[shared:]
    if weight(rest) < MIN_DISTINCT_WEIGHT:
        return False
    return rule == "prefix" or jaccard(rest, long[shared : len(short)]) >= opts.threshold


def _contradicts(a: str, b: str, opts: DedupOptions) -> bool:
    """Two texts that start alike, then diverge: neither a prefix of the other nor similar."""
    if a[:PREFIX_CHARS] != b[:PREFIX_CHARS]:
        return False
    short, long = (a, b) if len(a) <= len(b) else (b, a)
    if long.startswith(short):
        return False
    return jaccard(short, long[: len(short)]) < opts.threshold


def _from_matches(
    e: Excerpt,
    probe: _Probe,
    matches: list[tuple[StoredCopy, str, float | None]],
    batch_keys: frozenset[tuple[str, str]],
    rewritten: set[int],
) -> tuple[Placement, tuple[_Link, ...]]:
    # The most certain match decides the placement; every other stored entry matched is
    # linked by this copy, and merged with it (see _resolve).
    matches.sort(key=lambda m: (_RULE_RANK[m[1]], -(m[2] or 1.0), m[0].rowid < 0, m[0].rowid))
    best_rule = matches[0][1]
    entry_id = matches[0][0].entry_id
    mine = [m for m in matches if m[0].entry_id == entry_id and m[1] == best_rule]
    hit, rule, score = next((m for m in mine if m[0].source == e.source), mine[0])
    links: dict[str, _Link] = {}
    for c, r, s in matches:
        if c.rowid > 0 and c.entry_id != entry_id and c.entry_id not in links:
            links[c.entry_id] = _Link(c.entry_id, r, s)
    # A match within the same source is the same copy under a new key (guid churn, a changed
    # link), unless the stored copy's own key is still in this fetch: then both stay, as two
    # copies of one entry. Across sources it is another copy of the same entry. Copies of
    # this batch (negative rowids) are not stored yet: never an update, and a stored copy that
    # an earlier item of the batch took over is not taken again. A prefix or similar match
    # never overwrites a stored copy either: it joins the entry as a copy of its own, so that
    # a wrong guess could cost a merge, never a text.
    rekey = (
        hit.rowid > 0
        and hit.source == e.source
        and (hit.source, hit.key) not in batch_keys
        and hit.rowid not in rewritten
        and rule in ("link", "text")
    )
    placement = Placement(
        e, hit.entry_id, rule, score=score, existing=hit if rekey else None, sketch=probe.sketch
    )
    return placement, tuple(links.values())


def _title(e: Excerpt, probe: _Probe | None) -> str:
    # The exact tiers alone need the folded title only for short texts: fold it on demand.
    return probe.title if probe is not None and probe.title is not None else fold(e.title)


def _exact_ok(e: Excerpt, probe: _Probe | None, c: StoredCopy) -> bool:
    if weighs_at_least(e.text, SHORT_TEXT_WEIGHT):
        return True
    return _title(e, probe) == fold(c.title)


@functools.lru_cache(maxsize=16384)
def _numbers(title: str) -> tuple[str, ...]:
    # Cached: a batch compares the same titles against many candidates.
    return tuple(sorted(_NUMBERED.findall(title)))


def compare(
    e: Excerpt, probe: _Probe, c: StoredCopy, opts: DedupOptions
) -> tuple[str, float | None] | None:
    """Whether a stored copy is the same post as `e` by the prefix or similarity rule."""
    other_title = fold(c.title)
    if e.text == c.text:
        # Equal texts under another fingerprint (cut elsewhere for display): a short text
        # still needs the same title, as in the exact tier.
        return ("text", None) if _exact_ok(e, probe, c) else None
    mine, theirs = _numbers(_title(e, probe)), _numbers(other_title)
    if mine and theirs and mine != theirs:
        return None  # a numbered series: "Part 1" and "Part 2" are different posts
    for fe in probe.forms:
        for fc in _forms(c.text, other_title):
            if len(fe) <= len(fc):
                short, long, cut, body = fe, fc, e.truncated, e.text
            else:
                short, long, cut, body = fc, fe, c.truncated, c.text
            if not long.startswith(short):
                continue
            if short == long:
                return "text", None
            if (
                weighs_at_least(short, MIN_PREFIX_WEIGHT)
                and weighs_at_least(body, MIN_PREFIX_BODY)
                and (cut or len(short) >= NEAR_FULL_PREFIX * len(long))
            ):
                return "prefix", round(len(short) / len(long), 3)
    if not opts.near_duplicates:
        return None
    if len(e.text) <= len(c.text):
        short, long, cut = e.text, c.text, e.truncated
    else:
        short, long, cut = c.text, e.text, c.truncated
    w = weight(short)
    if w < MIN_SIMILAR_WEIGHT or not (cut or len(short) >= NEAR_FULL_SIMILAR * len(long)):
        return None
    trimmed = long[: len(short)]
    score = jaccard(short, trimmed)
    threshold = opts.threshold + (SHORT_PENALTY if w < LONG_WEIGHT else 0.0)
    if score < min(threshold, 0.99):
        return None
    # Checked only for a pair similar enough to merge (the regex over both texts is the
    # costly part of a comparison): texts that differ in their numbers are a series, or
    # another measurement, never one post.
    if _numbers(short[:-8]) != _numbers(trimmed[:-8]):
        return None
    return "similar", round(score, 3)


class _LocalIndex:
    """The excerpts placed so far in this batch, for matches within one fetch."""

    def __init__(self) -> None:
        # Every placement of the batch, in order. The look-ups below give positions in it of
        # the copies added to them. Most excerpts are never matched by a later one of the
        # batch: their StoredCopy is made when a look-up first returns them, not when added.
        self.placed: list[Placement] = []
        self.rewritten: set[int] = set()  # stored copies a placement of the batch rewrites
        self._copies: dict[int, StoredCopy] = {}
        self.links: dict[str, list[int]] = {}
        self.fingerprints: dict[str, list[int]] = {}
        self.sketches: dict[int, list[int]] = {}

    def add(self, p: Placement, sketch: tuple[int, ...], opts: DedupOptions) -> None:
        i = len(self.placed)
        self.placed.append(p)
        if p.existing is not None:
            self.rewritten.add(p.existing.rowid)
        e = p.excerpt
        if e.link_key and not opts.allow_duplicate_links:
            self.links.setdefault(e.link_key, []).append(i)
        self.fingerprints.setdefault(e.fingerprint, []).append(i)
        for h in sketch:
            self.sketches.setdefault(h, []).append(i)

    def copy(self, i: int) -> StoredCopy:
        copy = self._copies.get(i)
        if copy is None:
            p = self.placed[i]
            e = p.excerpt
            copy = self._copies[i] = StoredCopy(
                rowid=-(i + 1),
                source=e.source,
                key=e.key,
                entry_id=p.entry_id,
                content_hash=e.content_hash,
                link=e.link_key,
                truncated=e.truncated,
                text=e.text,
                title=e.title,
            )
        return copy

    def by_link(self, link: str | None) -> list[StoredCopy]:
        return [self.copy(i) for i in self.links.get(link, ())] if link else []

    def by_fingerprint(self, fingerprint: str) -> list[StoredCopy]:
        return [self.copy(i) for i in self.fingerprints.get(fingerprint, ())]

    def by_sketch(self, keys: Sequence[int]) -> list[StoredCopy]:
        found = [rows for h in keys if (rows := self.sketches.get(h))]
        if not found:
            return []
        seen: dict[int, None] = {}
        for rows in found:
            for i in rows:
                seen[i] = None
        return [self.copy(i) for i in seen]
