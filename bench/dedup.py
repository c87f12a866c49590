"""Dedup speed and memory on synthetic excerpts.

    python bench/dedup.py --n 100000 [--store PATH] [--skip-store]

Generates N excerpts of about 300 characters of mixed CJK and Latin text (20% exact repeats
of an earlier record, 10% near-duplicates of one: a few characters changed and cut at
another point) and prints, each with records per second:

1. all tiers in memory: dedup.place with every tier against bench/memindex.py's in-memory
   candidate index (the store's look-ups without SQLite), split into dedup's placing (its
   look-ups included) and the index's upkeep; then the peak resident memory so far. The
   placements are checked against those of part 4, through the store: they must be the same;
2. hashing: blake2b of every folded text once (the floor for any exact matching);
3. exact tiers in memory: dedup.place with near-duplicates off against a dict index, and
   that index's writes (a stand-in for the store's); then again with that index frozen from
   the garbage collector (see main). Each is split into dedup's own work, the index's
   look-ups (its answers to dedup's queries) and the index's writes;
4. all tiers through the SQLite store: place + apply in batches of 1,000 (one source per
   batch), 20 batches per transaction, the path a refresh takes, with the candidate index
   (prefix keys and LSH bands) kept in the store, split into dedup's placing (with its
   look-ups in the store), the store's writes and the commits; then the peak resident
   memory of the process;
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
from collections.abc import Collection, Iterable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from hashlib import blake2b
from itertools import islice
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # aggregator and bench

from aggregator import dedup
from aggregator.ids import mint_id
from aggregator.models import Excerpt, SourceState
from aggregator.refresh import GROUP_EXCERPTS, fewer_collections
from aggregator.store import Candidates, StoredCopy
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


# A stored copy as MemoryIndex keeps it: StoredCopy's fields, in order, as a plain tuple.
Row = tuple[int, str, str, str, str, str | None, bool, str, str]


class MemoryIndex:
    """The exact tiers' look-ups in dicts, for their in-memory measurement. The all-tier one
    uses bench/memindex.py, which also keeps texts and sketch hashes: leaner in memory, but
    about three times as slow to write a copy as these dicts.

    Like the store, it holds plain values (tuples, which the garbage collector stops tracking)
    and makes a StoredCopy only for a copy that a look-up returns. The exact tiers never read
    a stored copy's text: it is kept empty. Links are indexed as the store indexes them, each
    link with the copies that have it, oldest first.
    """

    def __init__(self) -> None:
        self.by_key: dict[str, dict[str, Row]] = {}  # source -> key -> copy
        # A text or link maps to its oldest copy; the later ones (rare) are kept apart.
        self.by_fp: dict[str, Row] = {}
        self.more_by_fp: dict[str, list[Row]] = {}
        self.by_link: dict[str, Row] = {}
        self.more_by_link: dict[str, list[Row]] = {}
        self.n = 0
        self.lookup_seconds = 0.0  # spent answering candidates(): the index's share of placing

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
        t = time.perf_counter()
        found = self._candidates(source, keys, links, fingerprints)
        self.lookup_seconds += time.perf_counter() - t
        return found

    def _candidates(
        self,
        source: str,
        keys: Collection[str],
        links: Collection[str],
        fingerprints: Collection[str],
    ) -> Candidates:
        mine = self.by_key.get(source, {})
        by_fp, more_by_fp = self.by_fp, self.more_by_fp
        by_link, more_by_link = self.by_link, self.more_by_link
        return Candidates(
            {k: StoredCopy(*mine[k]) for k in mine.keys() & keys},
            {
                k: [StoredCopy(*by_link[k])]
                if k not in more_by_link
                else [StoredCopy(*r) for r in (by_link[k], *more_by_link[k])]
                for k in by_link.keys() & links
            },
            {
                f: [StoredCopy(*by_fp[f])]
                if f not in more_by_fp
                else [StoredCopy(*r) for r in (by_fp[f], *more_by_fp[f])]
                for f in by_fp.keys() & fingerprints
            },
            {},
        )

    def copy_by_key(self, source: str, key: str) -> StoredCopy | None:
        row = self.by_key.get(source, {}).get(key)
        return StoredCopy(*row) if row is not None else None

    def copies_by_link(self, link: str) -> Sequence[StoredCopy]:
        first = self.by_link.get(link)
        if first is None:
            return []
        return [StoredCopy(*row) for row in (first, *self.more_by_link.get(link, ()))]

    def copies_by_fingerprint(self, fingerprint: str) -> Sequence[StoredCopy]:
        first = self.by_fp.get(fingerprint)
        if first is None:
            return []
        return [StoredCopy(*row) for row in (first, *self.more_by_fp.get(fingerprint, ()))]

    def copies_by_sketch(self, hashes: Sequence[int], *, limit: int) -> Sequence[StoredCopy]:
        return ()

    def apply(self, placements: Iterable[dedup.Placement]) -> None:
        """Store each placed copy, as the store's apply does (the index part of it)."""
        by_fp, by_link = self.by_fp, self.by_link
        n = self.n
        source: str | None = None
        keys: dict[str, Row] = {}
        for p in placements:
            e = p.excerpt
            if e.source != source:  # a batch is one source's
                source = e.source
                keys = self.by_key.setdefault(source, {})
            n += 1
            row = (
                n,
                e.source,
                e.key,
                p.entry_id,
                e.content_hash,
                e.link_key,
                e.truncated,
                "",
                e.title,
            )
            keys[e.key] = row
            if by_fp.setdefault(e.fingerprint, row) is not row:  # a text stored before
                self.more_by_fp.setdefault(e.fingerprint, []).append(row)
            if e.link_key and by_link.setdefault(e.link_key, row) is not row:
                self.more_by_link.setdefault(e.link_key, []).append(row)
        self.n = n


def _recent_rows(store: SQLiteStore) -> int:
    """The sketch rows the store holds apart until its next fold (see store.sqlite)."""
    return int(store._db.execute("SELECT recent FROM sketch_counts").fetchone()[0])


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rate(n: int, seconds: float) -> str:
    return f"{n / seconds:>10,.0f} records/s ({seconds:.2f} s for {n:,})"


def digest(placements: Iterable[dedup.Placement], into: blake2b) -> None:
    """Feed what dedup decided for each copy (rule, entry, merges) into a hash."""
    into.update(repr([(p.rule, p.entry_id, p.merges) for p in placements]).encode())


def all_in_memory(n: int) -> tuple[dict[str, float], int, str]:
    """All tiers against the in-memory index: the time by part, the copies merged, and a
    digest of the placements."""
    parts = {"place": 0.0, "index": 0.0}
    merged = 0
    index = MemoryCandidateIndex()
    decided = blake2b()
    for group in groups(0, n):
        for batch in group:
            t = time.perf_counter()
            result = dedup.place(batch, index)
            t1 = time.perf_counter()
            index.apply(result.placements)
            t2 = time.perf_counter()
            parts["place"] += t1 - t
            parts["index"] += t2 - t1
            merged += sum(1 for p in result.placements if p.rule not in ("new", "same"))
            digest(result.placements, decided)
    return parts, merged, decided.hexdigest()


def through_store(
    store: SQLiteStore, start: int, stop: int, unique: bool = False, decided: blake2b | None = None
) -> tuple[float, int, dict[str, float]]:
    """Place and store records as a refresh does: one batch per source, the batches of
    sources that are ready together (GROUP_EXCERPTS records) in one transaction.

    Returns the time spent, the copies merged, and the time by part: dedup's placing (with
    its candidate look-ups in the store), the store's writes, and the commits."""
    parts = {"place": 0.0, "write": 0.0, "commit": 0.0}
    merged = 0
    for group in groups(start, stop, unique):
        with store.exclusive():
            for batch in group:
                t = time.perf_counter()
                result = dedup.place(batch, store)
                t1 = time.perf_counter()
                source = batch[0].source
                store.apply(source, result.placements, SourceState(name=source))
                t2 = time.perf_counter()
                parts["place"] += t1 - t
                parts["write"] += t2 - t1
                merged += sum(1 for p in result.placements if p.rule not in ("new", "same"))
                if decided is not None:
                    digest(result.placements, decided)
        parts["commit"] += time.perf_counter() - t2
    return sum(parts.values()), merged, parts


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
            result = dedup.place(items, index, options=exact_opts, sketches=False)
            t1 = time.perf_counter()
            index.apply(result.placements)
            t2 = time.perf_counter()
            t_exact[frozen] += t2 - t
            t_writes[frozen] += t2 - t1
            if frozen:
                gc.freeze()
        t_lookups[frozen] = index.lookup_seconds
        del index, result
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
        spent, merged, parts = through_store(store, 0, n, decided=decided)
        print(f"all tiers, SQLite store:       {rate(n, spent)}; {merged:,} copies merged")
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
