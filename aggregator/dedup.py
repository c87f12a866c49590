"""Decide, for each new excerpt, which merged entry it belongs to.

The tiers, most certain first:
1. same source and same key (guid, else link, else text): the same copy seen again;
2. same canonical link, from any source (unless the source reuses links);
3. same normalized text (equal fingerprints), from any source.
A copy that matches nothing starts a new entry whose id is the excerpt's own candidate id,
minted once and never changed afterwards.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from aggregator.models import Excerpt
from aggregator.store import CandidateIndex, Placement, StoredCopy


@dataclass(slots=True)
class BatchResult:
    """Placements for one source's excerpts, plus what was folded inside the batch."""

    placements: list[Placement] = field(default_factory=list)  # one per distinct copy
    repeated_in_batch: int = 0  # items that repeated another item of the same fetch


def place(
    excerpts: Iterable[Excerpt],
    index: CandidateIndex,
    *,
    allow_duplicate_links: bool = False,
) -> BatchResult:
    """Place one source's excerpts against the stored index and each other."""
    result = BatchResult()
    items = list(excerpts)
    batch_keys = {e.key for e in items}
    by_key: dict[str, Placement] = {}
    by_link: dict[str, str] = {}
    by_fingerprint: dict[str, str] = {}
    for e in items:
        if e.key in by_key:
            # The same item twice in one document (a repeated guid, a post listed twice).
            result.repeated_in_batch += 1
            continue
        p = _place_one(e, index, by_link, by_fingerprint, batch_keys, allow_duplicate_links)
        by_key[e.key] = p
        if e.link_key and not allow_duplicate_links:
            by_link.setdefault(e.link_key, p.entry_id)
        by_fingerprint.setdefault(e.fingerprint, p.entry_id)
        result.placements.append(p)
    return result


def _place_one(
    e: Excerpt,
    index: CandidateIndex,
    batch_links: dict[str, str],
    batch_fingerprints: dict[str, str],
    batch_keys: set[str],
    allow_duplicate_links: bool,
) -> Placement:
    same = index.copy_by_key(e.source, e.key)
    if same is not None:
        return Placement(e, same.entry_id, "same", existing=same)
    if e.link_key and not allow_duplicate_links:
        hit = _pick(index.copies_by_link(e.link_key), e.source)
        if hit is not None:
            return _join(e, hit, "link", batch_keys)
        if e.link_key in batch_links:
            return Placement(e, batch_links[e.link_key], "link")
    hit = _pick(index.copies_by_fingerprint(e.fingerprint), e.source)
    if hit is not None:
        return _join(e, hit, "text", batch_keys)
    if e.fingerprint in batch_fingerprints:
        return Placement(e, batch_fingerprints[e.fingerprint], "text")
    return Placement(e, e.id, "new")


def _pick(copies: Iterable[StoredCopy], source: str) -> StoredCopy | None:
    """Prefer a copy from the same source (then it is an update of that copy), else the oldest."""
    first: StoredCopy | None = None
    for c in copies:
        if c.source == source:
            return c
        if first is None:
            first = c
    return first


def _join(e: Excerpt, hit: StoredCopy, rule: str, batch_keys: set[str]) -> Placement:
    # A match within the same source is the same copy under a new key (guid churn, a changed
    # link), unless the stored copy's own key is still in this fetch: then both stay, as two
    # copies of one entry. Across sources it is another copy of the same entry.
    rekey = hit.source == e.source and hit.key not in batch_keys
    existing = hit if rekey else None
    return Placement(e, hit.entry_id, rule, existing=existing)
