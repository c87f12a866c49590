"""Storage behind a small Protocol; SQLite is the default implementation."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from aggregator.models import Entry, Excerpt, SourceState, quick_init


@quick_init
@dataclass(frozen=True, slots=True)
class StoredCopy:
    """What dedup needs to know about a copy already in the store."""

    rowid: int  # the copy's row
    source: str  # the source it came from
    key: str  # its identity within that source
    entry_id: str  # the merged entry it belongs to
    content_hash: str  # to tell an update from a repeat
    link: str | None  # identity form of its link
    truncated: bool  # whether its text is cut short
    text: str  # folded text, for prefix and similarity rules
    title: str = ""  # its title as displayed, for the title checks of the text rules


@quick_init
@dataclass(frozen=True, slots=True)
class Merge:
    """Another stored entry that a new copy matched too: the two entries are one post."""

    entry_id: str  # the entry to fold into the placement's entry (the older id survives)
    rule: str  # how the new copy matched it: link | text | prefix | similar
    score: float | None = None  # similarity, for rule "similar" and "prefix"


@quick_init
@dataclass(frozen=True, slots=True)
class Placement:
    """Where dedup put one new or seen-again excerpt."""

    excerpt: Excerpt  # the normalized record
    entry_id: str  # the merged entry it belongs to (existing or new)
    rule: str  # why: new | same | guid | link | text | prefix | similar
    score: float | None = None  # similarity, for rule "similar"
    existing: StoredCopy | None = None  # the stored copy it updates, if any
    # candidate-index hashes (prefix keys, LSH bands) to store; () when nothing is written
    # (a copy seen again unchanged)
    sketch: tuple[int, ...] = ()
    merges: tuple[Merge, ...] = ()  # other entries this copy links to its own
    replaced_sketch: tuple[int, ...] = ()  # the hashes of `existing` when this rewrites it


@dataclass(frozen=True, slots=True)
class ClusterCopy:
    """One copy of a merged entry, and why it was merged, for `aggregator dupes`."""

    source: str
    key: str
    rule: str  # new (the first copy) | guid | link | text | prefix | similar
    score: float | None
    title: str
    link: str | None
    first_seen: datetime


@dataclass(frozen=True, slots=True)
class Cluster:
    """A merged entry with more than one copy."""

    entry_id: str
    first_seen: datetime
    copies: tuple[ClusterCopy, ...]


@dataclass(frozen=True, slots=True)
class Candidates:
    """Everything stored that one batch of excerpts could match, fetched in a few queries."""

    by_key: Mapping[str, StoredCopy]  # this source's copies with one of the batch's keys
    by_link: Mapping[str, Sequence[StoredCopy]]  # copies per link, oldest first
    by_fingerprint: Mapping[str, Sequence[StoredCopy]]  # copies per fingerprint, oldest first
    by_hash: Mapping[int, Sequence[StoredCopy]]  # copies per sketch hash (the newest `limit`)


class CandidateIndex(Protocol):
    """Look-ups dedup makes against what is stored."""

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
        """All of the look-ups below for a whole batch at once (`limit` copies per hash)."""
        ...

    def copy_by_key(self, source: str, key: str) -> StoredCopy | None: ...

    def copies_by_link(self, link: str) -> Sequence[StoredCopy]: ...

    def copies_by_fingerprint(self, fingerprint: str) -> Sequence[StoredCopy]: ...

    def copies_by_sketch(self, hashes: Sequence[int], *, limit: int) -> Sequence[StoredCopy]:
        """Copies sharing any of these prefix keys or LSH bands, most recent first."""
        ...


class Store(CandidateIndex, Protocol):
    """Everything the refresh use case needs from storage."""

    def get_state(self, name: str) -> SourceState | None: ...

    def states(self) -> Sequence[SourceState]: ...

    def save_state(self, state: SourceState) -> None: ...

    def apply(
        self,
        source: str,
        placements: Iterable[Placement],
        state: SourceState,
        *,
        backfill: bool = False,
    ) -> None: ...

    def latest(self, limit: int) -> list[Entry]: ...

    def entry_counts(self) -> dict[str, int]: ...

    def clusters(self, source: str | None = None) -> list[Cluster]: ...

    def close(self) -> None: ...
