"""A CandidateIndex answered from a few batched queries instead of three per excerpt.

Before dedup places one source's excerpts, everything it could ask the store about them is
read in one query per kind (keys of this source, canonical links, fingerprints). The answers
are those the store gives at that moment, which is what dedup sees anyway: it writes nothing
until the whole batch is placed.
"""

from __future__ import annotations

from collections.abc import Sequence

from aggregator.models import Excerpt
from aggregator.store import StoredCopy
from aggregator.store.sqlite import SQLiteStore

__all__ = ["PrefetchedIndex"]


class PrefetchedIndex:
    """The store's candidate index for one batch of excerpts of one source."""

    def __init__(self, store: SQLiteStore, source: str, excerpts: Sequence[Excerpt]) -> None:
        self._source = source
        self._by_key = store.copies_by_keys(source, (e.key for e in excerpts))
        self._by_link = store.copies_by_links(e.link_key for e in excerpts if e.link_key)
        self._by_fingerprint = store.copies_by_fingerprints(e.fingerprint for e in excerpts)

    def copy_by_key(self, source: str, key: str) -> StoredCopy | None:
        if source != self._source:
            raise ValueError(f"prefetched for source {self._source!r}, asked for {source!r}")
        return self._by_key.get(key)

    def copies_by_link(self, link: str) -> Sequence[StoredCopy]:
        return self._by_link.get(link, ())

    def copies_by_fingerprint(self, fingerprint: str) -> Sequence[StoredCopy]:
        return self._by_fingerprint.get(fingerprint, ())
