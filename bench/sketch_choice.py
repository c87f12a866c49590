"""Our MinHash LSH bands (aggregator.sketch) against datasketch's MinHash, on the same texts.

    python bench/sketch_choice.py [--n 2000]

Both sketch the first 128 characters of each text by 40 MinHash values over character
4-grams, cut into 10 bands of 4. Printed, for each: microseconds per text, and how often a
pair shares a band (becomes a dedup candidate) among near-duplicate pairs (three characters
changed, cut 5-25 characters earlier: they should) and unrelated pairs (they should not).
The texts are bench/dedup.py's synthetic excerpts. datasketch is in the bench extra.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import datasketch
from dedup import base_text, near_copy

from aggregator.sketch import BANDS, HEAD, ROWS, SHINGLE, band_hashes

Bands = list[tuple[int | bytes, ...]]


def ours(texts: Sequence[str]) -> Bands:
    return list(band_hashes(texts))


def _shingles(text: str) -> list[bytes]:
    head = text[:HEAD]
    return [head[i : i + SHINGLE].encode() for i in range(len(head) - SHINGLE + 1)]


def theirs_bulk(texts: Sequence[str]) -> Bands:
    """datasketch's batch API: one MinHash per text, numpy across the permutations."""
    sketches = datasketch.MinHash.bulk([_shingles(t) for t in texts], num_perm=BANDS * ROWS)
    return [_split(m) for m in sketches]


def theirs_one_by_one(texts: Sequence[str]) -> Bands:
    out: Bands = []
    for t in texts:
        m = datasketch.MinHash(num_perm=BANDS * ROWS)
        m.update_batch(_shingles(t))
        out.append(_split(m))
    return out


def _split(m: datasketch.MinHash) -> tuple[bytes, ...]:
    """A datasketch MinHash's values cut into LSH bands, as aggregator.sketch cuts ours."""
    return tuple(m.hashvalues[b * ROWS : (b + 1) * ROWS].tobytes() for b in range(BANDS))


def shared_rate(bands: Bands, pairs: Sequence[tuple[int, int]]) -> float:
    return sum(1 for a, b in pairs if set(bands[a]) & set(bands[b])) / len(pairs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="base texts (and as many near ones)")
    n = parser.parse_args().n
    bases = [base_text(j) for j in range(n)]
    texts = bases + [near_copy(t, j) for j, t in enumerate(bases)]
    near_pairs = [(j, n + j) for j in range(n)]
    unrelated = [(j, (j + 1) % n) for j in range(n)]
    tools: list[tuple[str, Callable[[Sequence[str]], Bands]]] = [
        ("aggregator.sketch (numpy, whole batch)", ours),
        ("datasketch MinHash.bulk", theirs_bulk),
        ("datasketch MinHash.update_batch", theirs_one_by_one),
    ]
    print(f"{len(texts):,} texts; {BANDS} bands of {ROWS} over {SHINGLE}-grams of {HEAD} chars")
    for label, sketch in tools:
        t = time.perf_counter()
        bands = sketch(texts)
        us = (time.perf_counter() - t) / len(texts) * 1e6
        print(
            f"{label:40} {us:7.1f} us per text; candidates: "
            f"near-duplicate pairs {shared_rate(bands, near_pairs):.3f}, "
            f"unrelated pairs {shared_rate(bands, unrelated):.3f}"
        )


if __name__ == "__main__":
    main()
