"""Dedup speed and memory on synthetic excerpts.

    python bench/dedup.py --n 100000 [--store PATH] [--skip-store]

Generates N excerpts of about 300 characters of mixed CJK and Latin text (20% exact repeats
of an earlier record, 10% near-duplicates of one: a few characters changed and cut at
another point) and prints, each with records per second:

1. all tiers in memory: dedup.place with every tier against bench/memindex.py's in-memory
   candidate index (the store's look-ups without SQLite), split into dedup's placing (its
   look-ups included) and the index's upkeep; then the peak resident memory so far. What
   dedup decided (each copy's rule and final entry, the merges, each touched entry's
   representative) is checked against part 4, through the store: it must be the same;
2. hashing: blake2b of every folded text once (the floor for any exact matching);
3. exact tiers in memory: dedup.place with near-duplicates off against a dict index, and
   that index's writes (a stand-in for the store's); then again with that index frozen from
   the garbage collector (see main). Each is split into dedup's own work, the index's
   look-ups (its answers to dedup's queries) and the index's writes;
4. all tiers through the SQLite store: place + apply in batches of 1,000 (one source per
   batch), GROUP_EXCERPTS records per transaction, the path a refresh takes, with the
   candidate index (prefix keys and LSH bands) kept in the store, split into dedup's placing
   (with its look-ups in the store), the store's writes and the commits; then the peak
   resident memory of the process;
5. incremental: ten refreshes of 1,000 new records each against the store just built, and
   against an empty store; once as generated (some repeat stored records) and once with no
   repeats. The mean of the ten, the first and the slowest, and in how many of them the
   store moved its recent candidate-index rows into the main table (a fold, see
   store.sqlite.FOLD_SKETCHES). Then ten re-crawls of 1,000 records the store holds already
   (a source fetched again with nothing new: every record is placed "same").

Records are generated lazily from their number, so the generator holds nothing in memory. The
measured parts see them as a refresh's store thread sees its sources: a group of batches ready at
once (GROUP_EXCERPTS records), generated before any of them is measured. Generating one record
runs several Mersenne Twister generators; between batches that churn pushed the index out of the
CPU caches and counted as placing.
"""

from __future__ import annotations

import argparse
import gc
import random
import resource
import sys
import tempfile
import time
from collections.abc import Collection, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from hashlib import blake2b
from itertools import islice
from operator import itemgetter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # aggregator and bench

from aggregator import dedup
from aggregator.ids import mint_id
from aggregator.models import (
    CandidateQuery,
    Candidates,
    CopyRank,
    Decision,
    Excerpt,
    SourceState,
    StoredCopy,
    StoredEntry,
)
from aggregator.refresh import GROUP_EXCERPTS, fewer_collections
from aggregator.store import Store
from aggregator.store.sqlite import SQLiteStore
from bench.memindex import MemoryCandidateIndex

BATCH = 1000
ROUNDS = 10  # incremental refreshes of 1,000 records, in a row
SOURCES = 50
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _word(i: int) -> str:
    rnd = random.Random(i)
    return "".join(rnd.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(2 + i % 8))


_LATIN = [_word(i) for i in range(3000)]
_CJK = [chr(0x4E00 + i * 7 % 20000) for i in range(4000)]


def base_text(j: int) -> str:
    """Synthetic excerpt j: about 300 characters of Latin words and CJK runs."""
    rnd = random.Random(j * 7919 + 17)
    parts: list[str] = []
    size = 0
    target = rnd.randint(260, 340)
    while size < target:
        if rnd.random() < 0.5:
            s = " ".join(rnd.choice(_LATIN) for _ in range(rnd.randint(3, 8)))
        else:
            s = "".join(rnd.choice(_CJK) for _ in range(rnd.randint(8, 20)))
        parts.append(s)
        size += len(s) + 1
    return " ".join(parts)[:target]


def near_copy(text: str, i: int) -> str:
    """A near-duplicate of `text`: three characters changed, cut 5-25 characters earlier."""
    rnd = random.Random(i)
    chars = list(text)
    for _ in range(3):
        k = rnd.randrange(len(chars))
        chars[k] = rnd.choice(_CJK)
    return "".join(chars)[: len(chars) - rnd.randint(5, 25)]


def record(i: int, unique: bool = False) -> Excerpt:
    """Record i: 20% exact repeats and 10% near-duplicates of an earlier record (none of them
    with `unique`)."""
    rnd = random.Random(i)
    roll = 1.0 if unique else rnd.random()
    truncated = False
    if i > 10 and roll < 0.2:
        text = base_text(rnd.randrange(i // 2, i))  # an exact repeat (its base text)
    elif i > 10 and roll < 0.3:
        text = near_copy(base_text(rnd.randrange(i // 2, i)), i)
        truncated = True
    else:
        text = base_text(i)
    fp = blake2b(text.encode(), digest_size=16).hexdigest()
    source = f"s{(i // BATCH) % SOURCES}"
    first_seen = T0 + timedelta(seconds=i)
    return Excerpt(
        id=mint_id(source, f"guid:{i}", None, first_seen),  # as normalize mints it
        source=source,
        key=f"guid:{i}",
        guid=str(i),
        title=text[:30],
        link=f"https://{source}.test/{i}",
        published=None,
        updated=None,
        first_seen=first_seen,
        authors=(),
        categories=(),
        excerpt=text,
        truncated=truncated,
        fingerprint=fp,
        content_hash=fp,
        text=text,
        link_key=f"https://{source}.test/{i}",
    )


def batches(start: int, stop: int, unique: bool = False) -> Iterator[list[Excerpt]]:
    for b in range(start, stop, BATCH):
        yield [record(i, unique) for i in range(b, min(b + BATCH, stop))]


def groups(start: int, stop: int, unique: bool = False) -> Iterator[list[list[Excerpt]]]:
    """The batches of records start..stop, as groups of GROUP_EXCERPTS records (the sources a
    refresh stores in one transaction), each generated in full before it is handed on."""
    pending = batches(start, stop, unique)
    while group := list(islice(pending, GROUP_EXCERPTS // BATCH)):
        yield group


# A stored copy as MemoryIndex keeps it, a plain tuple: StoredCopy's fields in order, with the
# copy's fingerprint where StoredCopy has its text (the exact tiers never read a stored text).
Row = tuple[int, str, str, str, str, str | None, bool, str, str]
# A copy as its entry ranks it: CopyRank's fields, in order.
Rank = tuple[str, str, bool, int, datetime, int]


class MemoryIndex:
    """The exact tiers' look-ups in dicts, for their in-memory measurement. The all-tier one
    uses bench/memindex.py, which also keeps texts and sketch hashes: leaner in memory, but
    about three times as slow to write a copy as these dicts.

    Like the store, it holds plain values (tuples, which the garbage collector stops tracking)
    and makes a StoredCopy or StoredEntry only for what a look-up returns. Links and
    fingerprints are indexed as the store indexes them, each with the copies that have it,
    oldest first.
    """

    def __init__(self) -> None:
        self.by_key: dict[str, dict[str, Row]] = {}  # source -> key -> copy
        # A text or link maps to its oldest copy; the later ones (rare) are kept apart.
        self.by_fp: dict[str, Row] = {}
        self.more_by_fp: dict[str, list[Row]] = {}
        self.by_link: dict[str, Row] = {}
        self.more_by_link: dict[str, list[Row]] = {}
        # entry id -> its first_seen, its creation order, and its copies
        self.by_entry: dict[str, tuple[datetime, int, tuple[Rank, ...]]] = {}
        self.moved: dict[str, str] = {}  # entry folded into another -> that one
        self.rewritten: dict[int, Row] = {}  # rowid -> the copy as last rewritten (rare)
        self.n = 0
        self.lookup_seconds = 0.0  # spent answering dedup's look-ups: the index's share

    def _entry(self, entry_id: str) -> str:
        while entry_id in self.moved:
            entry_id = self.moved[entry_id]
        return entry_id

    def _stored(self, row: Row) -> StoredCopy:
        entry_id = self._entry(row[3]) if self.moved else row[3]
        return StoredCopy(row[0], row[1], row[2], entry_id, row[4], row[5], row[6], "", row[8])

    # --- the candidate view ---------------------------------------------------------------

    def candidates(self, query: CandidateQuery) -> Candidates:
        t = time.perf_counter()
        found = self._candidates(query)
        self.lookup_seconds += time.perf_counter() - t
        return found

    def _candidates(self, query: CandidateQuery) -> Candidates:
        stored = self._stored
        by_key: dict[tuple[str, str], StoredCopy] = {}
        for source, key in query.keys:
            row = self.by_key.get(source, {}).get(key)
            if row is not None:
                by_key[source, key] = stored(row)
        by_fp, more_by_fp = self.by_fp, self.more_by_fp
        by_link, more_by_link = self.by_link, self.more_by_link
        return Candidates(
            by_key,
            {
                k: (stored(by_link[k]), *map(stored, more_by_link.get(k, ())))
                for k in by_link.keys() & query.links
            },
            {
                f: (stored(by_fp[f]), *map(stored, more_by_fp.get(f, ())))
                for f in by_fp.keys() & query.fingerprints
            },
            {},
        )

    def entries(self, ids: Collection[str]) -> Mapping[str, StoredEntry]:
        t = time.perf_counter()
        found = {}
        for entry_id in ids:
            entry = self.by_entry.get(entry_id)
            if entry is not None:
                first_seen, seq, ranks = entry
                copies = tuple(CopyRank(*r) for r in sorted(ranks, key=itemgetter(4, 5)))
                found[entry_id] = StoredEntry(entry_id, first_seen, seq, copies)
        self.lookup_seconds += time.perf_counter() - t
        return found

    # --- writing a batch ------------------------------------------------------------------

    def apply(self, decision: Decision) -> None:
        """Store a batch's decision, as the store's apply does (the index part of it): new
        copies and the entries they create, rewritten copies, merged entries."""
        by_fp, by_link, entries = self.by_fp, self.by_link, self.by_entry
        n = self.n
        source: str | None = None
        keys: dict[str, Row] = {}
        for p in decision.placements:
            e = p.excerpt
            if p.existing is not None:
                if p.rewrites:
                    self._rewrite(p.existing, e)
                continue  # else: seen again unchanged, nothing to write
            if e.source != source:  # a batch is one source's
                source = e.source
                keys = self.by_key.setdefault(source, {})
            n += 1
            row = (n, e.source, e.key, p.entry_id, e.content_hash, e.link_key, e.truncated,
                   e.fingerprint, e.title)  # fmt: skip
            keys[e.key] = row
            if by_fp.setdefault(e.fingerprint, row) is not row:  # a text stored before
                self.more_by_fp.setdefault(e.fingerprint, []).append(row)
            if e.link_key and by_link.setdefault(e.link_key, row) is not row:
                self.more_by_link.setdefault(e.link_key, []).append(row)
            rank = (e.source, e.key, e.truncated, len(e.excerpt), e.first_seen, n)
            entry = entries.get(p.entry_id)
            if entry is None:
                # Its first copy creates it; the creation order is that copy's row (the store
                # orders a batch's new entries by position, and the bench's are all at 0).
                entries[p.entry_id] = (e.first_seen, n, (rank,))
            else:
                entries[p.entry_id] = (entry[0], entry[1], (*entry[2], rank))
        self.n = n
        for m in decision.merges:
            self.moved[m.entry_id] = m.into
            first_seen, seq, ranks = entries[m.into]
            entries[m.into] = (first_seen, seq, (*ranks, *entries.pop(m.entry_id)[2]))

    def _rewrite(self, old: StoredCopy, e: Excerpt) -> None:
        """A stored copy's new content or key, in its row (the same rowid, entry and first
        sight): found under its new key, link and fingerprint, no longer under the old ones."""
        mine = self.by_key[old.source]
        # The row as it is now: an earlier copy of the same batch may have rewritten it already.
        was = self.rewritten.get(old.rowid) or mine[old.key]
        del mine[was[2]]
        row = (was[0], was[1], e.key, was[3], e.content_hash, e.link_key, e.truncated,
               e.fingerprint, e.title)  # fmt: skip
        mine[e.key] = self.rewritten[old.rowid] = row
        _drop(self.by_fp, self.more_by_fp, was[7], was)
        _insert(self.by_fp, self.more_by_fp, e.fingerprint, row)
        if was[5]:
            _drop(self.by_link, self.more_by_link, was[5], was)
        if e.link_key:
            _insert(self.by_link, self.more_by_link, e.link_key, row)
        first_seen, seq, ranks = self.by_entry[old.entry_id]
        self.by_entry[old.entry_id] = (first_seen, seq, tuple(
            (e.source, e.key, e.truncated, len(e.excerpt), r[4], r[5]) if r[5] == row[0] else r
            for r in ranks
        ))  # fmt: skip


def _drop(first: dict[str, Row], more: dict[str, list[Row]], value: str, row: Row) -> None:
    """Take a copy out of a value's copies."""
    rest = more.get(value)
    if first[value] is row:
        if rest:
            first[value] = rest.pop(0)
        else:
            del first[value]
    elif rest is not None:
        rest.remove(row)
    if rest == []:
        del more[value]


def _insert(first: dict[str, Row], more: dict[str, list[Row]], value: str, row: Row) -> None:
    """Put a copy among a value's copies by its rowid (a rewritten copy keeps its old one)."""
    rows = sorted((*((first[value],) if value in first else ()), *more.get(value, ()), row))
    first[value] = rows[0]
    if len(rows) > 1:
        more[value] = rows[1:]


def _recent_rows(store: SQLiteStore) -> int:
    """The sketch rows the store holds apart until its next fold (see store.sqlite)."""
    return int(store._db.execute("SELECT recent FROM sketch_counts").fetchone()[0])


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rate(n: int, seconds: float) -> str:
    return f"{n / seconds:>10,.0f} records/s ({seconds:.2f} s for {n:,})"


def digest(decision: Decision, into: blake2b) -> None:
    """Feed what dedup decided into a hash: each copy's rule and final entry, the entries
    merged, and the copy that represents each entry the batch touched."""
    placed = [(p.rule, p.entry_id) for p in decision.placements]
    into.update(repr((placed, decision.merges, sorted(decision.representatives.items()))).encode())


def merged(decision: Decision) -> int:
    """The copies placed into an entry by a rule that matched another copy."""
    return sum(1 for p in decision.placements if p.rule not in ("new", "same"))


def all_in_memory(n: int) -> tuple[dict[str, float], int, str]:
    """All tiers against the in-memory index: the time by part, the copies merged, and a
    digest of the placements."""
    parts = {"place": 0.0, "index": 0.0}
    copies_merged = 0
    index = MemoryCandidateIndex()
    decided = blake2b()
    for group in groups(0, n):
        for batch in group:
            t = time.perf_counter()
            decision = dedup.place(batch, index)
            t1 = time.perf_counter()
            index.apply(decision)
            t2 = time.perf_counter()
            parts["place"] += t1 - t
            parts["index"] += t2 - t1
            copies_merged += merged(decision)
            digest(decision, decided)
    return parts, copies_merged, decided.hexdigest()


def through_store(
    store: Store, start: int, stop: int, unique: bool = False, decided: blake2b | None = None
) -> tuple[float, int, dict[str, float]]:
    """Place and store records as a refresh does: one batch per source, the batches of
    sources that are ready together (GROUP_EXCERPTS records) in one transaction.

    Returns the time spent, the copies merged, and the time by part: dedup's placing (with
    its candidate look-ups in the store), the store's writes, and the commits."""
    parts = {"place": 0.0, "write": 0.0, "commit": 0.0}
    copies_merged = 0
    for group in groups(start, stop, unique):
        with store.transaction():
            for batch in group:
                t = time.perf_counter()
                decision = dedup.place(batch, store)
                t1 = time.perf_counter()
                store.apply(decision, SourceState(name=batch[0].source))
                t2 = time.perf_counter()
                parts["place"] += t1 - t
                parts["write"] += t2 - t1
                copies_merged += merged(decision)
                if decided is not None:
                    digest(decision, decided)
        parts["commit"] += time.perf_counter() - t2
    return sum(parts.values()), copies_merged, parts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--store", type=Path, help="SQLite file to build (default: a temp dir)")
    parser.add_argument("--skip-store", action="store_true", help="only the in-memory parts")
    args = parser.parse_args()
    n = args.n
    print(f"N = {n:,} synthetic excerpts (~300 chars, mixed CJK/Latin, 20% exact, 10% near)")

    parts, merged_in_memory, decided_in_memory = all_in_memory(n)
    spent = sum(parts.values())
    print(f"all tiers, in memory:          {rate(n, spent)}; {merged_in_memory:,} copies merged")
    print(
        "  of which, in us per record: "
        + ", ".join(f"{part} {seconds / n * 1e6:.0f}" for part, seconds in parts.items())
    )
    print(f"peak memory so far: {peak_mb():,.0f} MB")
    gc.collect()

    t_hash, t_exact = 0.0, {False: 0.0, True: 0.0}
    t_writes = {False: 0.0, True: 0.0}  # of t_exact: the in-memory index's own writes
    t_lookups = {False: 0.0, True: 0.0}  # of t_exact: the in-memory index's look-ups
    exact_opts = dedup.DedupOptions(near_duplicates=False)
    for frozen in (False, True):
        # The in-memory stand-in for the store grows by a tuple per record, and the cyclic
        # garbage collector walks all of them in every full collection (the more records, the
        # more it costs). A real store keeps them in SQLite, not on the Python heap: the second
        # pass freezes the index after each batch (gc.freeze) so that what is measured is
        # dedup's own work.
        index = MemoryIndex()
        for items in (batch for group in groups(0, n) for batch in group):
            if not frozen:
                t = time.perf_counter()
                for e in items:
                    blake2b(e.text.encode(), digest_size=16).digest()
                t_hash += time.perf_counter() - t
            t = time.perf_counter()
            decision = dedup.place(items, index, exact_opts, sketches=False)
            t1 = time.perf_counter()
            index.apply(decision)
            t2 = time.perf_counter()
            t_exact[frozen] += t2 - t
            t_writes[frozen] += t2 - t1
            if frozen:
                gc.freeze()
        t_lookups[frozen] = index.lookup_seconds
        del index, decision
        gc.unfreeze()
        gc.collect()
    t = time.perf_counter()
    for _ in batches(0, min(n, 20_000)):
        pass
    t_gen = (time.perf_counter() - t) * n / min(n, 20_000)
    print(f"generating (not counted):      {rate(n, t_gen)}")
    print(f"hashing the text once:         {rate(n, t_hash)}")
    for frozen, label in (
        (False, "exact tiers, in memory:      "),
        (True, "...index frozen from the gc: "),
    ):
        ratio = t_exact[frozen] / t_hash
        print(f"{label}  {rate(n, t_exact[frozen])}  = {ratio:.1f}x hashing")
        own = t_exact[frozen] - t_writes[frozen] - t_lookups[frozen]
        print(
            f"  of which dedup's own work {own / t_hash:.1f}x hashing, the index's look-ups "
            f"{t_lookups[frozen] / t_hash:.1f}x and writes {t_writes[frozen] / t_hash:.1f}x"
        )
    print(f"peak memory so far: {peak_mb():,.0f} MB")
    if args.skip_store:
        return

    with tempfile.TemporaryDirectory() as tmp:
        path = args.store or Path(tmp) / "bench.db"
        store = SQLiteStore(path)
        decided = blake2b()
        spent, copies_merged, parts = through_store(store, 0, n, decided=decided)
        print(f"all tiers, SQLite store:       {rate(n, spent)}; {copies_merged:,} copies merged")
        same = decided.hexdigest() == decided_in_memory
        print(f"  placements the same as in memory: {'yes' if same else 'NO'}")
        print(
            "  of which, in us per record: "
            + ", ".join(f"{part} {seconds / n * 1e6:.0f}" for part, seconds in parts.items())
        )
        size = sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))
        print(f"store size: {size / 2**20:,.0f} MB; peak memory: {peak_mb():,.0f} MB")
        # Refreshes of 1,000 more records each, ten in a row (a checkpoint of the WAL comes
        # every few of them, so the first alone says little), against this store and against
        # an empty one: as generated (30% of them repeat stored records: against the large
        # store they match and merge, against an empty one they are new), then records that
        # repeat nothing (the same work against either store).
        start = n
        for label, unique in (("as generated", False), ("none repeats", True)):
            empty = SQLiteStore(Path(tmp) / f"empty-{start}.db")
            t_big, t_small = [], []
            folds = 0  # rounds in which the store moved its recent sketch rows (a fold)
            for _ in range(ROUNDS):
                before = _recent_rows(store)
                t_big.append(through_store(store, start, start + 1000, unique)[0])
                folds += _recent_rows(store) < before
                t_small.append(through_store(empty, start, start + 1000, unique)[0])
                start += 1000
            empty.close()
            big, small = sum(t_big) / ROUNDS, sum(t_small) / ROUNDS
            print(
                f"1,000 new ({label}), mean of {ROUNDS}, vs a store of {n:,}: {big:.3f} s", end=""
            )
            print(f"  (first {t_big[0]:.3f} s, slowest {max(t_big):.3f} s; {folds} with a fold)")
            print(
                f"1,000 new ({label}), mean of {ROUNDS}, vs an empty store: {small:.3f} s", end=""
            )
            print(f"  (first {t_small[0]:.3f} s, slowest {max(t_small):.3f} s)")
            print(f"  ratio of the means {big / small:.2f}")
        # Re-crawls: each time 1,000 stored records of one source come again unchanged.
        first = n // 2 // BATCH * BATCH
        rounds = range(first, min(n, first + ROUNDS * BATCH), BATCH)
        t_seen = [through_store(store, b, b + BATCH)[0] for b in rounds]
        if t_seen:
            print(
                f"1,000 stored records again (a re-crawl), mean of {len(t_seen)}, "
                f"vs a store of {n:,}: {sum(t_seen) / len(t_seen):.3f} s"
                f"  (first {t_seen[0]:.3f} s, slowest {max(t_seen):.3f} s)"
            )
        store.close()


if __name__ == "__main__":
    with fewer_collections():  # the collector set as a refresh sets it
        main()
