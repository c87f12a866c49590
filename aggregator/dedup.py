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
minted once and never changed afterwards. A copy that matches several stored entries links
them: the store merges them into the oldest, whose id survives.
"""

from __future__ import annotations

import functools
import re
from collections import Counter
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from itertools import repeat
from operator import attrgetter
from typing import TypeVar

from aggregator.ids import mint_id
from aggregator.models import Excerpt
from aggregator.sketch import (
    PREFIX_CHARS,
    band_hashes,
    jaccard,
    prefix_key,
    weighs_at_least,
    weight,
)
from aggregator.store import CandidateIndex, Candidates, Merge, Placement, StoredCopy
from aggregator.textutil import fold

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

T = TypeVar("T")

_KEY = attrgetter("key")
_SOURCE = attrgetter("source")
_LINK = attrgetter("link_key")
_FINGERPRINT = attrgetter("fingerprint")
_RULE_RANK = {"same": 0, "guid": 1, "link": 2, "text": 3, "prefix": 4, "similar": 5}
_NUMBERED = re.compile(
    r"\d+|第[一二三四五六七八九十百零两〇]+[集部篇章期讲回节季卷]"
    r"|\b(?:part|episode|chapter|volume|vol|ep|season)\.?\s*(?:[ivxlc]+|one|two|three|four|five)\b"
    r"|[上中下]篇|（[一二三四五六七八九十]+）|\([一二三四五六七八九十]+\)"
)


@dataclass(frozen=True, slots=True)
class DedupOptions:
    """How near-duplicates are matched (`[dedup]`) and how one source is treated."""

    near_duplicates: bool = True  # match near-duplicate text, not only exact repeats
    threshold: float = 0.7  # Jaccard similarity of 4-grams for long texts
    allow_duplicate_links: bool = False  # the source reuses one link for many items


@dataclass(slots=True)
class BatchResult:
    """Placements for one source's excerpts, plus what was folded inside the batch."""

    placements: list[Placement] = field(default_factory=list)  # one per distinct copy
    repeated_in_batch: int = 0  # items that repeated another item of the same fetch
    repeated_guids: int = 0  # distinct items that shared one guid, told apart by link/text
    changed_keys: int = 0  # known copies that came back under a new guid, link or text
    warnings: list[str] = field(default_factory=list)  # what to report for the source


@dataclass(frozen=True, slots=True)
class _Probe:
    """What the candidate look-ups need from one excerpt."""

    title: str | None  # folded title (None: not folded yet, see _title)
    forms: tuple[str, ...]  # the folded text, then "title text" when the text lacks its title
    sketch: tuple[int, ...]  # prefix keys of the forms, then the LSH band hashes
    n_prefix: int  # how many of `sketch` are prefix keys


def place(
    excerpts: Iterable[Excerpt],
    index: CandidateIndex,
    *,
    allow_duplicate_links: bool = False,
    options: DedupOptions | None = None,
    sketches: bool = True,
) -> BatchResult:
    """Place one source's excerpts against the stored index and each other.

    `sketches=False` runs the exact tiers only (same key, link, text) and stores no
    candidate-index hashes; refresh never does this, the benchmark measures it.
    """
    opts = options or DedupOptions(allow_duplicate_links=allow_duplicate_links)
    if allow_duplicate_links and not opts.allow_duplicate_links:
        opts = replace(opts, allow_duplicate_links=True)
    result = BatchResult()
    items = list(excerpts)
    batch_keys = set(map(_KEY, items))
    if len(batch_keys) < len(items):  # only a repeated key can be a guid shared by two posts
        items = _split_repeated_guids(items, opts, result)
        batch_keys = set(map(_KEY, items))
    sources = set(map(_SOURCE, items))
    source = sources.pop() if len(sources) == 1 else None
    # A copy stored under its key is this source's item seen again, placed "same" whatever
    # else it shares. In a re-crawl that is nearly every item: the keys are looked up first,
    # so that those items need no other look-up (see _prefetch) and, unchanged, no sketch.
    known = (
        index.candidates(source, batch_keys, (), (), (), limit=MAX_CANDIDATES).by_key
        if source is not None
        else None
    )
    probes = _probes(items, known) if sketches else None
    # One source's batch (the usual one) is looked up at once: its distinct values are what
    # the look-up asks for and (unless some items are dropped below) tell whether any two
    # items share one.
    values = (
        _Values(
            set(map(_FINGERPRINT, items)),
            {link for link in map(_LINK, items) if link}
            if not opts.allow_duplicate_links
            else set(),
        )
        if known is not None
        else None
    )
    found = _prefetch(source, items, probes, known, index, opts, values)
    if len(batch_keys) < len(items):
        # The same item twice in one document (a post listed twice): the first one counts.
        first: dict[str, int] = {}
        for i, e in enumerate(items):
            first.setdefault(e.key, i)
        kept = list(first.values())
        result.repeated_in_batch = len(items) - len(kept)
        items = [items[i] for i in kept]
        probes = [probes[i] for i in kept] if probes is not None else None
        values = None
    result.placements = _place_all(items, probes, found, index, batch_keys, opts, values)
    if sketches:
        result.placements = [_with_replaced_sketch(p) for p in result.placements]
    result.changed_keys = sum(
        1 for p in result.placements if p.existing is not None and p.existing.key != p.excerpt.key
    )
    if result.changed_keys:
        result.warnings.append(
            f"{result.changed_keys} known entr{'y' if result.changed_keys == 1 else 'ies'} "
            "came back under a new guid or link; kept their ids, matched by link or text"
        )
    return result


def _probes(items: list[Excerpt], known: Mapping[str, StoredCopy] | None) -> list[_Probe]:
    """Each excerpt's look-up values. One stored under its key with the same content is
    placed "same" and rewrites nothing: it gets no sketch hashes (computing them is most of
    the cost of placing such an item)."""
    todo = (
        [
            i
            for i, e in enumerate(items)
            if (c := known.get(e.key)) is None or c.content_hash != e.content_hash
        ]
        if known
        else range(len(items))
    )
    bands = dict(zip(todo, band_hashes([items[i].text for i in todo]), strict=True))
    return [_probe(e, bands[i]) if i in bands else _exact_probe(e) for i, e in enumerate(items)]


@dataclass(frozen=True, slots=True)
class _Values:
    """The distinct fingerprints and links of a batch (links: none if the source reuses them)."""

    fingerprints: set[str]
    links: set[str]


def _prefetch(
    source: str | None,
    items: list[Excerpt],
    probes: list[_Probe] | None,
    known: Mapping[str, StoredCopy] | None,
    index: CandidateIndex,
    opts: DedupOptions,
    values: _Values | None,
) -> Candidates | None:
    """Fetch every stored candidate of one source's batch at once (a few queries in all):
    `known`, the copies stored under the batch's keys, and the copies that the other items'
    links, fingerprints and sketch hashes find.

    None for a batch of several sources: those are looked up one excerpt at a time.
    """
    if source is None or known is None or values is None:
        return None
    rest = [i for i, e in enumerate(items) if e.key not in known]
    if not rest:
        return Candidates(known, {}, {}, {})
    others = [items[i] for i in rest] if known else items
    if others is items:
        links, fingerprints = values.links, values.fingerprints
    else:
        links = (
            {link for link in map(_LINK, others) if link}
            if not opts.allow_duplicate_links
            else set()
        )
        fingerprints = set(map(_FINGERPRINT, others))
    hashes = (
        {
            h
            for i in rest
            for h in (
                probes[i].sketch if opts.near_duplicates else probes[i].sketch[: probes[i].n_prefix]
            )
        }
        if probes is not None
        else set()
    )
    found = index.candidates(source, (), links, fingerprints, hashes, limit=MAX_CANDIDATES)
    return Candidates(known, found.by_link, found.by_fingerprint, found.by_hash)


def _place_all(
    items: list[Excerpt],
    probes: list[_Probe] | None,
    found: Candidates | None,
    index: CandidateIndex,
    batch_keys: set[str],
    opts: DedupOptions,
    values: _Values | None,
) -> list[Placement]:
    """Place distinct copies in batch order, each against the store and the copies before it.

    A copy can match only a copy that shares one of its values: a stored copy (the prefetch
    found every stored copy with the batch's keys, and with the links, fingerprints and
    sketch hashes of the copies not stored under their key: a copy that is, is placed "same"
    at once) or an earlier copy of the batch with the same link, fingerprint or sketch hash.
    A copy seen again unchanged has no sketch hashes; a later copy sharing one finds its
    stored copy instead, through its own look-up. Most copies
    share nothing: `_place_one` would find no candidate and place them "new" under their own
    id, so this loop does that directly. And no later copy can find such a copy either: the
    batch index holds only the copies that share a value, which is all that its look-ups
    (by the batch's values) can ever return. The other copies are placed as before, in the
    common cases without the candidate lists (see _one_text_match).
    """
    local = _LocalIndex()
    placements = local.placed
    if found is None:
        for i, e in enumerate(items):
            probe = probes[i] if probes is not None else _exact_probe(e)
            local.add(_place_one(e, probe, index, local, batch_keys, opts), probe.sketch, opts)
        return placements
    view = _Prefetched(found)
    stored_keys = found.by_key
    stored_links = found.by_link
    stored_fingerprints = found.by_fingerprint
    stored_hashes = found.by_hash.keys()
    links_ok = not opts.allow_duplicate_links
    sketches = [p.sketch for p in probes] if probes is not None else None
    # The values some other copy, stored or in this batch, may share.
    # (No two items share a value when there are as many distinct values as items.)
    watched_fingerprints = (
        set()
        if values is not None and len(values.fingerprints) == len(items)
        else _shared(list(map(_FINGERPRINT, items)))
    ) | stored_fingerprints.keys()
    watched_links = (
        (
            set()
            if values is not None and len(values.links) == len(items)
            else _shared([link for link in map(_LINK, items) if link])
        )
        | stored_links.keys()
        if links_ok
        else set()
    )
    watched_hashes = _shared([h for s in sketches for h in s]) if sketches else set()
    for i, (e, sketch) in enumerate(zip(items, sketches or repeat((), len(items)), strict=True)):
        link = e.link_key if links_ok else None
        fingerprint = e.fingerprint
        if (
            fingerprint not in watched_fingerprints
            and link not in watched_links
            and e.key not in stored_keys
            and (
                not sketch
                or (watched_hashes.isdisjoint(sketch) and stored_hashes.isdisjoint(sketch))
            )
        ):
            # Positional: keyword arguments would cost a dict per call.
            placements.append(Placement(e, e.id, "new", None, None, sketch))
            continue
        probe = probes[i] if probes is not None else None
        same = stored_keys.get(e.key)
        stored = stored_fingerprints.get(fingerprint, ())
        earlier = local.fingerprints.get(fingerprint, ())
        if same is not None:
            p = Placement(e, same.entry_id, "same", existing=same, sketch=sketch)
        elif (
            probe is None
            and len(stored) + len(earlier) == 1
            and not (link and (link in stored_links or link in local.links))
        ):
            p = _one_text_match(e, stored[0] if stored else local.copy(earlier[0]), batch_keys)
        else:
            p = _place_one(e, probe or _exact_probe(e), view, local, batch_keys, opts)
        local.add(p, sketch, opts)
    return placements


def _shared(values: list[T]) -> set[T]:
    """The values that occur more than once in `values`."""
    if len(set(values)) == len(values):
        return set()
    return {v for v, n in Counter(values).items() if n > 1}


def _one_text_match(e: Excerpt, c: StoredCopy, batch_keys: set[str]) -> Placement:
    """Place `e` whose only candidate, with the exact tiers alone, is `c` with the same text.

    As _place_one would: "text" if the texts match (a short one also needs the same title),
    else "new"; one match links no other entry, and it updates `c` if `c` is a stored copy of
    this source whose key this fetch no longer has.
    """
    if not _exact_ok(e, None, c):
        return Placement(e, e.id, "new")
    rekey = c.rowid > 0 and c.source == e.source and c.key not in batch_keys
    return Placement(e, c.entry_id, "text", None, c if rekey else None)


class _Prefetched:
    """A CandidateIndex answering from one batch's prefetched candidates."""

    def __init__(self, found: Candidates) -> None:
        self.found = found

    def candidates(
        self,
        source: str,
        keys: Collection[str],
        links: Collection[str],
        fingerprints: Collection[str],
        hashes: Collection[int],
        *,
        limit: int,
    ) -> Candidates:
        return self.found

    def copy_by_key(self, source: str, key: str) -> StoredCopy | None:
        return self.found.by_key.get(key)

    def copies_by_link(self, link: str) -> Sequence[StoredCopy]:
        return self.found.by_link.get(link, ())

    def copies_by_fingerprint(self, fingerprint: str) -> Sequence[StoredCopy]:
        return self.found.by_fingerprint.get(fingerprint, ())

    def copies_by_sketch(self, hashes: Sequence[int], *, limit: int) -> Sequence[StoredCopy]:
        seen: dict[int, StoredCopy] = {}
        for h in hashes:
            for c in self.found.by_hash.get(h, ()):
                seen.setdefault(c.rowid, c)
        return [seen[r] for r in sorted(seen, reverse=True)[:limit]][::-1]


def _split_repeated_guids(
    items: list[Excerpt], opts: DedupOptions, result: BatchResult
) -> list[Excerpt]:
    """Items sharing one guid but not one link or text are different posts: re-key them."""
    groups: dict[str, list[int]] = {}
    for i, e in enumerate(items):
        if e.key.startswith("guid:"):
            groups.setdefault(e.key, []).append(i)
    out = list(items)
    for key, idx in groups.items():
        if len(idx) < 2 or len({_fallback_key(items[i], opts) for i in idx}) < 2:
            continue
        for i in idx:
            e = items[i]
            new_key = _fallback_key(e, opts)
            out[i] = replace(
                e, key=new_key, id=mint_id(e.source, new_key, e.published, e.first_seen)
            )
        result.repeated_guids += len(idx)
        result.warnings.append(
            f"{len(idx)} different items share the guid {key[5:]!r}; "
            "told apart by link or text instead"
        )
    return out


def _fallback_key(e: Excerpt, opts: DedupOptions) -> str:
    if e.link_key and not opts.allow_duplicate_links:
        return "link:" + e.link_key
    return "text:" + e.fingerprint


def _with_replaced_sketch(p: Placement) -> Placement:
    """A placement that rewrites a stored copy carries that copy's candidate-index hashes,
    recomputed from its stored text and title, for the store to remove."""
    old = p.existing
    if old is None or (old.content_hash == p.excerpt.content_hash and old.key == p.excerpt.key):
        return p
    return replace(p, replaced_sketch=sketch_of(old.text, old.title))


def sketch_of(text: str, title: str) -> tuple[int, ...]:
    """The candidate-index hashes stored for a copy with this folded text and this title."""
    return _probe_of(text, title, band_hashes([text])[0]).sketch


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
    index: CandidateIndex,
    local: _LocalIndex,
    batch_keys: set[str],
    opts: DedupOptions,
) -> Placement:
    same = index.copy_by_key(e.source, e.key)
    if same is not None:
        return Placement(e, same.entry_id, "same", existing=same, sketch=probe.sketch)
    matches: list[tuple[StoredCopy, str, float | None]] = []
    looked: set[tuple[str, str]] = set()
    links_ok = bool(e.link_key) and not opts.allow_duplicate_links
    stored_links = index.copies_by_link(e.link_key) if links_ok and e.link_key else ()
    for c in (*stored_links, *local.by_link(e.link_key if links_ok else None)):
        looked.add((c.source, c.key))
        matches.append((c, "link", None))
    for c in (*index.copies_by_fingerprint(e.fingerprint), *local.by_fingerprint(e.fingerprint)):
        if (c.source, c.key) not in looked and _exact_ok(e, probe, c):
            looked.add((c.source, c.key))
            matches.append((c, "text", None))
    keys = probe.sketch if opts.near_duplicates else probe.sketch[: probe.n_prefix]
    if keys:  # without sketch hashes (exact tiers only) there are no fuzzy candidates
        candidates = [
            *index.copies_by_sketch(keys, limit=MAX_CANDIDATES),
            *local.by_sketch(keys),
        ]
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
        return Placement(e, e.id, "new", sketch=probe.sketch)
    return _from_matches(e, probe, matches, batch_keys)


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
    batch_keys: set[str],
) -> Placement:
    # The most certain match decides the placement; every other stored entry matched is
    # linked by this copy and is merged into it (the store keeps the oldest id).
    matches.sort(key=lambda m: (_RULE_RANK[m[1]], -(m[2] or 1.0), m[0].rowid < 0, m[0].rowid))
    best_rule = matches[0][1]
    entry_id = matches[0][0].entry_id
    mine = [m for m in matches if m[0].entry_id == entry_id and m[1] == best_rule]
    hit, rule, score = next((m for m in mine if m[0].source == e.source), mine[0])
    merges: dict[str, Merge] = {}
    for c, r, s in matches:
        if c.rowid > 0 and c.entry_id != entry_id and c.entry_id not in merges:
            merges[c.entry_id] = Merge(c.entry_id, r, s)
    # A match within the same source is the same copy under a new key (guid churn, a changed
    # link), unless the stored copy's own key is still in this fetch: then both stay, as two
    # copies of one entry. Across sources it is another copy of the same entry. Copies of
    # this batch (negative rowids) are not stored yet: never an update. A prefix or similar
    # match never overwrites a stored copy either: it joins the entry as a copy of its own,
    # so that a wrong guess could cost a merge, never a text.
    rekey = (
        hit.rowid > 0
        and hit.source == e.source
        and hit.key not in batch_keys
        and rule in ("link", "text")
    )
    return Placement(
        e,
        hit.entry_id,
        rule,
        score=score,
        existing=hit if rekey else None,
        sketch=probe.sketch,
        merges=tuple(merges.values()),
    )


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
        # the copies added to them: those that share a value with another copy of the batch
        # (see _place_all). Most excerpts are never matched by a later one of the batch:
        # their StoredCopy is made when a look-up first returns them, not when they are added.
        self.placed: list[Placement] = []
        self._copies: dict[int, StoredCopy] = {}
        self.links: dict[str, list[int]] = {}
        self.fingerprints: dict[str, list[int]] = {}
        self.sketches: dict[int, list[int]] = {}

    def add(self, p: Placement, sketch: tuple[int, ...], opts: DedupOptions) -> None:
        i = len(self.placed)
        self.placed.append(p)
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
        seen: dict[int, None] = {}
        for h in keys:
            for i in self.sketches.get(h, ()):
                seen[i] = None
        return [self.copy(i) for i in seen]
