"""An in-memory candidate view for dedup, for bench/dedup.py's in-memory measurements.

It answers dedup's look-ups (store.CandidateView) as the SQLite store does: copies by their
(source, key), every copy of a link or a fingerprint (oldest first), the newest `limit` copies
under each sketch hash (prefix keys and LSH bands), and the stored entries a batch touches,
each with every copy's rank. `apply(decision)` keeps what the store keeps of a Decision: new
copies (and the entries they create), rewritten copies, merged entries. So dedup.place decides
the same against either (bench/dedup.py compares them). What it leaves out is persistence: it
measures dedup's own work, the look-ups and the index's upkeep, without SQLite.

Built to hold a million copies and their texts within dedup's memory target of 1.5 GB:
- each copy is one bytes object (its fields, UTF-8, NUL-separated), decoded only when a look-up
  returns it. An entry has no object of its own: its first_seen and creation order are fields
  of the copy that created it, and most entries have that one copy only;
- each kind of look-up is a HashIndex of 64-bit hashes: the recent ones in a dict, the rest
  in two sorted numpy arrays (hash, row), merged into them in bulk. A key, link, fingerprint
  or entry id is hashed with Python's hash() (this process only) and each copy found is
  checked against the value asked for; a sketch hash is itself the 64-bit value, so its rows
  are exact;
- each copy's sketch hashes are kept in one flat array, so that a rewritten copy's old rows
  can be removed, as the store removes them by copies.sketch.
"""

from __future__ import annotations

from array import array
from bisect import insort
from collections.abc import Collection, Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from itertools import repeat

import numpy as np

from aggregator.models import (
    CandidateQuery,
    Candidates,
    CopyRank,
    Decision,
    Excerpt,
    StoredCopy,
    StoredEntry,
)

# A HashIndex merges its recent rows into the sorted arrays once it holds this many. A merge
# is one pass over the arrays, so the sketch hashes (about 13 a copy) merge seldom; a key,
# link, fingerprint or entry id (one a copy) merges sooner, which keeps its dict small: at a
# million copies, dicts of a million entries each were a third of the process's memory.
FOLD_ROWS = 1 << 20
FOLD_ROWS_ONE_PER_COPY = 1 << 17

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


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


# The fields of an encoded copy, in order (see _encode). `entry` is the entry the copy was
# written into (a merge leaves it: MemoryCandidateIndex.moved says where that entry went);
# `seq` is that entry's creation order when this copy created it, else empty.
_SOURCE, _KEY, _ENTRY, _CONTENT, _FINGERPRINT, _LINK, _CUT, _TITLE = range(8)
_SEEN, _LENGTH, _SEQ, _TEXT = range(8, 12)


def _encode(e: Excerpt, entry_id: str, first_seen: datetime, seq: int | None) -> bytes:
    """A copy as MemoryCandidateIndex keeps it (read back by its _copy and _rank)."""
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
            str((first_seen - _EPOCH) // _MICROSECOND),
            str(len(e.excerpt)),
            "" if seq is None else str(seq),
            e.text,
        )
    ).encode("utf-8", "surrogatepass")


def _fields(encoded: bytes) -> list[str]:
    return encoded.decode("utf-8", "surrogatepass").split("\x00", _TEXT)


def _time(microseconds: str) -> datetime:
    return _EPOCH + int(microseconds) * _MICROSECOND


class MemoryCandidateIndex:
    """dedup's CandidateView in memory (see the module docstring)."""

    def __init__(self) -> None:
        self.copies: list[bytes] = []  # row -> the copy, encoded (see _encode)
        self.keys = HashIndex(FOLD_ROWS_ONE_PER_COPY)  # hash(key); the copy tells its source
        self.links = HashIndex(FOLD_ROWS_ONE_PER_COPY)  # hash(link)
        self.fingerprints = HashIndex(FOLD_ROWS_ONE_PER_COPY)  # hash(fingerprint)
        self.entries_of = HashIndex(FOLD_ROWS_ONE_PER_COPY)  # hash(the entry a copy went into)
        self.sketches = HashIndex(FOLD_ROWS)  # prefix keys and LSH bands, as they are
        # Each copy's sketch hashes: row r's are sketch_hashes[sketch_at[r]:sketch_at[r + 1]],
        # or those in `resketched` once the copy was rewritten.
        self.sketch_hashes = array("q")
        self.sketch_at = array("q", [0])
        self.resketched: dict[int, tuple[int, ...]] = {}
        # Entries folded into another -> that one, and back (merges are rare).
        self.moved: dict[str, str] = {}
        self.folded: dict[str, list[str]] = {}
        self.seq = 0  # the last entry's creation order

    def _copy(self, row: int) -> tuple[StoredCopy, str]:
        """The stored copy of a row, and its fingerprint."""
        f = _fields(self.copies[row])
        copy = StoredCopy(row + 1, f[_SOURCE], f[_KEY], self._entry(f[_ENTRY]), f[_CONTENT],
                          f[_LINK] or None, bool(f[_CUT]), f[_TEXT], f[_TITLE])  # fmt: skip
        return copy, f[_FINGERPRINT]

    def _entry(self, entry_id: str) -> str:
        moved = self.moved
        while entry_id in moved:
            entry_id = moved[entry_id]
        return entry_id

    def _sketch(self, row: int) -> Sequence[int]:
        hashes = self.resketched.get(row)
        if hashes is not None:
            return hashes
        return self.sketch_hashes[self.sketch_at[row] : self.sketch_at[row + 1]]

    # --- the candidate view ---------------------------------------------------------------

    def candidates(self, query: CandidateQuery) -> Candidates:
        made: dict[int, tuple[StoredCopy, str]] = {}

        def copy(row: int) -> tuple[StoredCopy, str]:
            got = made.get(row)
            if got is None:
                got = made[row] = self._copy(row)
            return got

        keys = query.keys
        by_key: dict[tuple[str, str], StoredCopy] = {}
        for rows in self.keys.lookup({hash(k) for _, k in keys}).values():
            for c, _ in map(copy, rows):
                if (c.source, c.key) in keys:
                    by_key[c.source, c.key] = c
        # Every copy of a link or fingerprint, oldest first: a value's copies are the rows
        # under its one hash, which come ascending; a row whose value differs is a collision.
        links = query.links
        by_link: dict[str, list[StoredCopy]] = {}
        for rows in self.links.lookup({hash(link) for link in links}).values():
            for c, _ in map(copy, rows):
                if c.link in links:
                    by_link.setdefault(c.link, []).append(c)
        fingerprints = query.fingerprints
        by_fingerprint: dict[str, list[StoredCopy]] = {}
        for rows in self.fingerprints.lookup({hash(f) for f in fingerprints}).values():
            for c, fp in map(copy, rows):
                if fp in fingerprints:
                    by_fingerprint.setdefault(fp, []).append(c)
        by_hash = {
            h: tuple(copy(row)[0] for row in rows)
            for h, rows in self.sketches.lookup(query.hashes, query.limit).items()
        }
        return Candidates(
            by_key,
            {k: tuple(v) for k, v in by_link.items()},
            {k: tuple(v) for k, v in by_fingerprint.items()},
            by_hash,
        )

    def entries(self, ids: Collection[str]) -> Mapping[str, StoredEntry]:
        """The stored entries among `ids`, each with every copy, oldest first: the copies
        written into it and into the entries folded into it."""
        wanted = set(ids)
        names = list(wanted)
        for name in names:  # grows as it goes: the entries folded into those folded in
            names.extend(self.folded.get(name, ()))
        found: dict[str, tuple[datetime, int]] = {}
        ranks: dict[str, list[CopyRank]] = {}
        for rows in self.entries_of.lookup({hash(name) for name in names}).values():
            for row in rows:
                f = _fields(self.copies[row])
                entry_id = self._entry(f[_ENTRY])
                if entry_id not in wanted:
                    continue  # a collision of hashes, or an entry folded elsewhere
                seen = _time(f[_SEEN])
                if f[_SEQ] and f[_ENTRY] == entry_id:
                    found[entry_id] = (seen, int(f[_SEQ]))
                rank = CopyRank(f[_SOURCE], f[_KEY], bool(f[_CUT]), int(f[_LENGTH]), seen, row + 1)
                ranks.setdefault(entry_id, []).append(rank)
        return {
            entry_id: StoredEntry(
                entry_id,
                first_seen,
                seq,
                tuple(sorted(ranks[entry_id], key=lambda c: (c.first_seen, c.rowid))),
            )
            for entry_id, (first_seen, seq) in found.items()
        }

    def _stored_entries(self, ids: Collection[str]) -> set[str]:
        """Which of these entries are stored (not folded into another)."""
        out = set()
        for rows in self.entries_of.lookup({hash(i) for i in ids}).values():
            for row in rows:
                raw = self.copies[row].split(b"\x00", _ENTRY + 1)[_ENTRY]
                entry_id = raw.decode("utf-8", "surrogatepass")
                if entry_id in ids and entry_id not in self.moved:
                    out.add(entry_id)
        return out

    # --- writing a batch ------------------------------------------------------------------

    def apply(self, decision: Decision) -> None:
        """Keep a batch's decision as the store's apply does (what dedup reads of it): a new
        copy gets a row of its own under its key, link, fingerprint, entry and sketch hashes,
        and creates its entry when that is not stored yet; a copy that rewrites a stored one
        takes that row (its old sketch hashes go); a merged entry's copies go to the entry it
        is folded into."""
        placements = decision.placements
        known = self._stored_entries({p.entry_id for p in placements if p.existing is None})
        # The first new copy of each entry not stored creates it; the top of a page (its
        # newest item) gets the highest creation order, as in the store.
        creators: dict[str, int] = {}
        for i, p in enumerate(placements):
            if p.existing is None and p.entry_id not in known:
                creators.setdefault(p.entry_id, i)
        seqs: dict[int, int] = {}
        for i in sorted(creators.values(), key=lambda i: -placements[i].excerpt.position):
            self.seq += 1
            seqs[i] = self.seq
        copies, keys, links = self.copies, self.keys, self.links
        fingerprints, entries_of, sketches = self.fingerprints, self.entries_of, self.sketches
        for i, p in enumerate(placements):
            e = p.excerpt
            old = p.existing
            if old is not None:
                if p.rewrites:
                    self._rewrite(old.rowid - 1, e, p.sketch)
                continue  # else: seen again unchanged, nothing to write
            row = len(copies)
            copies.append(_encode(e, p.entry_id, e.first_seen, seqs.get(i)))
            keys.add(hash(e.key), row)
            if e.link_key:
                links.add(hash(e.link_key), row)
            fingerprints.add(hash(e.fingerprint), row)
            entries_of.add(hash(p.entry_id), row)
            if p.sketch:
                sketches.add_all(p.sketch, row)
            self.sketch_hashes.extend(p.sketch)
            self.sketch_at.append(len(self.sketch_hashes))
        for m in decision.merges:
            self.moved[m.entry_id] = m.into
            self.folded.setdefault(m.into, []).append(m.entry_id)
        for index in (keys, links, fingerprints, entries_of, sketches):
            index.maybe_fold()

    def _rewrite(self, row: int, e: Excerpt, sketch: tuple[int, ...]) -> None:
        """A stored copy's new content or key, in its row: it stays in its entry and keeps its
        first sight; its old sketch rows go, its new values are added (a key, link or
        fingerprint found under an old value is told apart by the check against the copy)."""
        f = _fields(self.copies[row])
        for h in self._sketch(row):
            self.sketches.remove(h, row)
        seq = int(f[_SEQ]) if f[_SEQ] else None
        self.copies[row] = _encode(e, f[_ENTRY], _time(f[_SEEN]), seq)
        self.keys.add_again((hash(e.key),), row)
        if e.link_key:
            self.links.add_again((hash(e.link_key),), row)
        self.fingerprints.add_again((hash(e.fingerprint),), row)
        self.sketches.add_again(sketch, row)
        self.resketched[row] = sketch
