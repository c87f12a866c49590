"""An in-memory candidate index for dedup, for bench/dedup.py's in-memory measurements.

It answers dedup's look-ups (store.CandidateIndex) as the SQLite store does: this source's
copies by key, every copy of a link or a fingerprint (oldest first), and the newest `limit`
copies under each sketch hash (prefix keys and LSH bands), so that dedup.place gives the same
placements against either (bench/dedup.py compares them). What it leaves out is persistence:
it measures dedup's own work, the look-ups and the index's upkeep, without SQLite.

Built to hold a million copies and their texts within dedup's memory target of 1.5 GB:
- each copy is one bytes object (its fields, UTF-8, NUL-separated), decoded only when a look-up
  returns it;
- each kind of look-up is a HashIndex of 64-bit hashes: the recent ones in a dict, the rest
  in two sorted numpy arrays (hash, row), merged into them in bulk. A key, link or fingerprint
  is hashed with Python's hash() (this process only) and each copy found is checked against
  the value asked for; a sketch hash is itself the 64-bit value, so its rows are exact.
"""

from __future__ import annotations

from bisect import insort
from collections.abc import Collection, Iterable, Sequence
from itertools import repeat

import numpy as np

from aggregator.models import Excerpt
from aggregator.store import Candidates, Placement, StoredCopy

# A HashIndex merges its recent rows into the sorted arrays once it holds this many. A merge
# is one pass over the arrays, so the sketch hashes (about 13 a copy) merge seldom; a key,
# link or fingerprint (one a copy) merges sooner, which keeps its dict small: at a million
# copies, dicts of a million entries each were a third of the process's memory.
FOLD_ROWS = 1 << 20
FOLD_ROWS_ONE_PER_COPY = 1 << 17


class HashIndex:
    """Rows (ascending ints) under 64-bit hashes; a hash may hold many rows."""

    def __init__(self, fold_rows: int = FOLD_ROWS) -> None:
        self.fold_rows = fold_rows
        # hash -> its row added since the last fold, or a list of its rows when several
        self.recent: dict[int, int | list[int]] = {}
        self.added_hashes: list[int] = []  # the same pairs, in the order added
        self.added_rows: list[int] = []
        self.hashes = np.empty(0, dtype=np.int64)  # sorted; equal hashes by ascending row
        self.rows = np.empty(0, dtype=np.int32)
        # A rewritten copy keeps its row (see MemoryCandidateIndex.apply): its old pairs may
        # be removed and new ones added out of row order. Both are rare, and kept apart.
        self.dead: set[tuple[int, int]] = set()  # (hash, row) pairs removed
        self.late: dict[int, list[int]] = {}  # hash -> rows added after newer rows

    def add(self, h: int, row: int) -> None:
        """Add one row, greater than every row added before."""
        self.add_all((h,), row)

    def add_all(self, hashes: Sequence[int], row: int) -> None:
        """Add one row under each of these hashes."""
        recent = self.recent
        self.added_hashes += hashes
        self.added_rows += repeat(row, len(hashes))
        for h in hashes:
            had = recent.setdefault(h, row)
            if had is not row:  # the hash has rows already (rare but for common openings)
                if type(had) is int:
                    recent[h] = [had, row]
                else:
                    had.append(row)  # type: ignore[union-attr]

    def maybe_fold(self) -> None:
        if len(self.added_hashes) >= self.fold_rows:
            self.fold()

    def fold(self) -> None:
        """Merge the recent rows into the sorted arrays (one linear pass over them)."""
        if not self.added_hashes:
            return
        new_hashes = np.array(self.added_hashes, dtype=np.int64)
        order = np.argsort(new_hashes, kind="stable")  # each hash's rows stay ascending
        new_hashes = new_hashes[order]
        new_rows = np.array(self.added_rows, dtype=np.int32)[order]
        # Every recent row is newer than every folded one: after the equal hashes.
        at = np.searchsorted(self.hashes, new_hashes, side="right") + np.arange(len(new_hashes))
        size = len(self.hashes) + len(new_hashes)
        old = np.ones(size, dtype=bool)
        old[at] = False
        hashes = np.empty(size, dtype=np.int64)
        rows = np.empty(size, dtype=np.int32)
        hashes[at], rows[at] = new_hashes, new_rows
        hashes[old], rows[old] = self.hashes, self.rows
        self.hashes, self.rows = hashes, rows
        self.recent = {}
        self.added_hashes, self.added_rows = [], []

    def remove(self, h: int, row: int) -> None:
        self.dead.add((h, row))

    def add_again(self, hashes: Iterable[int], row: int) -> None:
        """Add an older row under these hashes (a rewritten copy): a pair it has already is
        kept once, as the store's (hash, copy) key keeps it."""
        for h in hashes:
            if (h, row) in self.dead:
                self.dead.discard((h, row))
            elif row not in self.lookup((h,)).get(h, ()):
                insort(self.late.setdefault(h, []), row)

    def lookup(self, wanted: Collection[int], limit: int | None = None) -> dict[int, list[int]]:
        """The rows of each wanted hash that has any, ascending: the newest `limit` of them."""
        if not self.dead and not self.late:
            return self._lookup(wanted, limit)
        found = self._lookup(wanted, None)
        for h in self.late.keys() & wanted:
            found[h] = sorted({*found.get(h, ()), *self.late[h]})
        if self.dead:
            found = {h: [r for r in rows if (h, r) not in self.dead] for h, rows in found.items()}
        return {
            h: rows[-limit:] if limit is not None else rows for h, rows in found.items() if rows
        }

    def _lookup(self, wanted: Collection[int], limit: int | None) -> dict[int, list[int]]:
        out: dict[int, list[int]] = {}
        if len(self.hashes) and wanted:
            asked = sorted(wanted)  # sorted: each search starts where the last one ended
            q = np.array(asked, dtype=np.int64)
            lo = np.searchsorted(self.hashes, q, side="left")
            found = np.flatnonzero(self.hashes[np.minimum(lo, len(self.hashes) - 1)] == q)
            if len(found):
                hi = np.searchsorted(self.hashes, q[found], side="right")
                rows = self.rows
                for j, a, b in zip(found.tolist(), lo[found].tolist(), hi.tolist(), strict=True):
                    if limit is not None:
                        a = max(a, b - limit)
                    out[asked[j]] = rows[a:b].tolist()
        recent = self.recent
        for h in recent.keys() & wanted:
            mine = recent[h]
            rows_h = [*out.get(h, ()), *mine] if type(mine) is list else [*out.get(h, ()), mine]
            out[h] = rows_h[-limit:] if limit is not None else rows_h
        return out


def _encode(e: Excerpt, entry_id: str) -> bytes:
    """A copy as MemoryCandidateIndex keeps it (read back by its _copy)."""
    return "\x00".join(
        (
            e.source,
            e.key,
            entry_id,
            e.content_hash,
            e.fingerprint,
            e.link_key or "",
            "1" if e.truncated else "",
            e.title,
            e.text,
        )
    ).encode("utf-8", "surrogatepass")


class MemoryCandidateIndex:
    """dedup's CandidateIndex in memory (see the module docstring)."""

    def __init__(self) -> None:
        self.copies: list[bytes] = []  # row -> the copy, encoded (see _encode)
        self.keys = HashIndex(FOLD_ROWS_ONE_PER_COPY)  # hash(key); the copy tells its source
        self.links = HashIndex(FOLD_ROWS_ONE_PER_COPY)  # hash(link)
        self.fingerprints = HashIndex(FOLD_ROWS_ONE_PER_COPY)  # hash(fingerprint)
        self.sketches = HashIndex(FOLD_ROWS)  # prefix keys and LSH bands, as they are
        # Entries merged into another -> that one. The oldest entry survives, as in the store:
        # entry ids start with their post's date (ids.mint_id), so the least id is the oldest.
        self.moved: dict[str, str] = {}

    def _copy(self, row: int) -> tuple[StoredCopy, str]:
        """The stored copy of a row, and its fingerprint."""
        source, key, entry_id, content_hash, fp, link, cut, title, text = (
            self.copies[row].decode("utf-8", "surrogatepass").split("\x00", 8)
        )
        copy = StoredCopy(row + 1, source, key, self._entry(entry_id), content_hash, link or None,
                          bool(cut), text, title)  # fmt: skip
        return copy, fp

    def _entry(self, entry_id: str) -> str:
        moved = self.moved
        while entry_id in moved:
            entry_id = moved[entry_id]
        return entry_id

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
        made: dict[int, tuple[StoredCopy, str]] = {}

        def copy(row: int) -> tuple[StoredCopy, str]:
            got = made.get(row)
            if got is None:
                got = made[row] = self._copy(row)
            return got

        by_key: dict[str, StoredCopy] = {}
        for rows in self.keys.lookup({hash(k) for k in keys}).values():
            for c, _ in map(copy, rows):
                if c.source == source and c.key in keys:
                    by_key[c.key] = c
        # Every copy of a link or fingerprint, oldest first: a value's copies are the rows
        # under its one hash, which come ascending; a row whose value differs is a collision.
        by_link: dict[str, list[StoredCopy]] = {}
        for rows in self.links.lookup({hash(link) for link in links}).values():
            for c, _ in map(copy, rows):
                if c.link in links:
                    by_link.setdefault(c.link, []).append(c)  # type: ignore[arg-type]
        by_fingerprint: dict[str, list[StoredCopy]] = {}
        for rows in self.fingerprints.lookup({hash(f) for f in fingerprints}).values():
            for c, fp in map(copy, rows):
                if fp in fingerprints:
                    by_fingerprint.setdefault(fp, []).append(c)
        by_hash = {
            h: [copy(row)[0] for row in rows]
            for h, rows in self.sketches.lookup(hashes, limit).items()
        }
        return Candidates(by_key, by_link, by_fingerprint, by_hash)

    def copy_by_key(self, source: str, key: str) -> StoredCopy | None:
        return self.candidates(source, (key,), (), (), (), limit=0).by_key.get(key)

    def copies_by_link(self, link: str) -> Sequence[StoredCopy]:
        return self.candidates("", (), (link,), (), (), limit=0).by_link.get(link, [])

    def copies_by_fingerprint(self, fingerprint: str) -> Sequence[StoredCopy]:
        found = self.candidates("", (), (), (fingerprint,), (), limit=0)
        return found.by_fingerprint.get(fingerprint, [])

    def copies_by_sketch(self, hashes: Sequence[int], *, limit: int) -> Sequence[StoredCopy]:
        rows = sorted({r for rs in self.sketches.lookup(hashes, limit).values() for r in rs})
        return [self._copy(r)[0] for r in rows[-limit:]]

    def apply(self, placements: Iterable[Placement]) -> None:
        """Keep each placed copy as the store's apply does (its candidate-index part): a new
        copy gets a row of its own under its key, link, fingerprint and sketch hashes; a copy
        that rewrites a stored one of its source takes that row (its old sketch hashes go);
        a copy that links entries merges them into the oldest."""
        copies = self.copies
        keys, links, fingerprints, sketches = (
            self.keys,
            self.links,
            self.fingerprints,
            self.sketches,
        )
        for p in placements:
            e = p.excerpt
            old = p.existing
            if old is not None and old.source == e.source:
                if old.content_hash == e.content_hash and old.key == e.key:
                    if p.merges:
                        self._merge(p)
                    continue  # seen again unchanged: nothing to write
                # The store rewrites the copy in its row: its old sketch rows go, its new
                # values are added (a key, link or fingerprint found under an old value is
                # told apart by the check against the copy).
                row = old.rowid - 1
                for h in p.replaced_sketch:
                    sketches.remove(h, row)
                copies[row] = _encode(e, old.entry_id)
                keys.add_again((hash(e.key),), row)
                if e.link_key:
                    links.add_again((hash(e.link_key),), row)
                fingerprints.add_again((hash(e.fingerprint),), row)
                sketches.add_again(p.sketch, row)
            else:
                row = len(copies)
                copies.append(_encode(e, p.entry_id))
                keys.add(hash(e.key), row)
                if e.link_key:
                    links.add(hash(e.link_key), row)
                fingerprints.add(hash(e.fingerprint), row)
                if p.sketch:
                    sketches.add_all(p.sketch, row)
            if p.merges:
                self._merge(p)
        for index in (keys, links, fingerprints, sketches):
            index.maybe_fold()

    def _merge(self, p: Placement) -> None:
        ids = {self._entry(p.entry_id), *(self._entry(m.entry_id) for m in p.merges)}
        winner = min(ids)
        for loser in ids - {winner}:
            self.moved[loser] = winner
