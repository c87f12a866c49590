"""Text sketches for the dedup stage: lengths that count CJK fairly, prefix keys, MinHash bands.

A helper module (like textutil): pure functions over folded text, no knowledge of stages.

- `weight` measures how distinctive a text is: a CJK character carries about as much as two
  Latin letters, so it counts twice.
- `prefix_keys` are hashes of a text's first characters: two texts where one is a truncation
  of the other share one.
- `band_hashes` are MinHash LSH bands over character 4-grams of a text's head: texts whose
  heads are similar share at least one band with high probability, unrelated texts almost
  never. Computed with numpy for a whole batch at once, deterministic across processes.
- `jaccard` is the exact similarity of two texts' 4-gram sets, used to confirm a candidate.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache
from hashlib import blake2b

import numpy as np

SHINGLE = 4  # characters per shingle: works for CJK and Latin alike
HEAD = 128  # characters of a text's start that its MinHash describes
BANDS = 10  # LSH bands per text
ROWS = 4  # MinHash values per band: P(candidate) = 1 - (1 - s**4)**10
PREFIX_CHARS = 24  # characters hashed into a prefix key

_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]")

_rng = np.random.default_rng(20260123)  # fixed: the bands are stored, they must never change
_PERM_A = _rng.integers(1, 2**63, size=BANDS * ROWS, dtype=np.uint64) | np.uint64(1)
_PERM_B = _rng.integers(0, 2**63, size=BANDS * ROWS, dtype=np.uint64)
_MIX = (
    np.uint64(0x9E3779B97F4A7C15),
    np.uint64(0xC2B2AE3D27D4EB4F),
    np.uint64(0x165667B19E3779F9),
    np.uint64(0xD6E8FEB86659FD93),
)
_BAND_SEEDS = _rng.integers(1, 2**63, size=BANDS, dtype=np.uint64)


def weight(text: str) -> int:
    """How distinctive a text is by length: characters, CJK counted twice."""
    return len(text) + len(_CJK.findall(text))


def weighs_at_least(text: str, minimum: int) -> bool:
    """weight(text) >= minimum, without counting CJK when the length alone is enough."""
    return len(text) >= minimum or weight(text) >= minimum


def tagged_key(tag: str, value: str) -> int:
    """A signed 64-bit hash of `value`, apart from other tags' (a candidate-index hash)."""
    digest = blake2b((tag + "\x00" + value).encode("utf-8", "surrogatepass"), digest_size=8)
    return int.from_bytes(digest.digest(), "big", signed=True)


def prefix_key(text: str) -> int:
    """A signed 64-bit hash of the text's first PREFIX_CHARS characters."""
    return tagged_key("p", text[:PREFIX_CHARS])


@lru_cache(maxsize=1024)
def shingles(text: str) -> frozenset[str]:
    """The character 4-grams of a text (the whole text when shorter)."""
    if len(text) <= SHINGLE:
        return frozenset((text,) if text else ())
    return frozenset({text[i : i + SHINGLE] for i in range(len(text) - SHINGLE + 1)})


def jaccard(a: str, b: str) -> float:
    """Exact Jaccard similarity of two texts' shingle sets."""
    sa, sb = shingles(a), shingles(b)
    if not sa or not sb:
        return 0.0
    common = len(sa & sb)
    return common / (len(sa) + len(sb) - common)  # the size of the union, without building it


def band_hashes(texts: Sequence[str]) -> list[tuple[int, ...]]:
    """The LSH band hashes (signed 64-bit ints) of each text's head; () for texts too short."""
    out: list[tuple[int, ...]] = [() for _ in texts]
    todo = [i for i, t in enumerate(texts) if len(t) >= SHINGLE * 4]
    for start in range(0, len(todo), 1024):
        chunk = todo[start : start + 1024]
        bands = _bands([texts[i][:HEAD] for i in chunk])
        for i, row in zip(chunk, bands.tolist(), strict=True):
            out[i] = tuple(row)
    return out


def _bands(heads: list[str]) -> np.ndarray:
    n = len(heads)
    padded = "".join(h.ljust(HEAD, "\x00") for h in heads)
    codes = np.frombuffer(padded.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    codes = codes.reshape(n, HEAD).astype(np.uint64)
    width = HEAD - SHINGLE + 1
    with np.errstate(over="ignore"):
        h = np.zeros((n, width), dtype=np.uint64)
        for k in range(SHINGLE):
            h ^= codes[:, k : k + width] * _MIX[k]
            h = (h << np.uint64(7)) | (h >> np.uint64(57))
        h ^= h >> np.uint64(31)
        h *= _MIX[0]
        h ^= h >> np.uint64(29)
        lengths = np.fromiter((len(x) for x in heads), dtype=np.int64, count=n)
        invalid = np.arange(width)[None, :] > (lengths - SHINGLE)[:, None]
        # A head shorter than HEAD repeats its first shingle in the places it has none: a
        # repeated value leaves every minimum as it was, and no permutation needs a mask.
        h = np.where(invalid, h[:, :1], h)
        mins = np.empty((n, BANDS * ROWS), dtype=np.uint64)
        v = np.empty_like(h)
        for p in range(BANDS * ROWS):
            np.multiply(h, _PERM_A[p], out=v)
            v += _PERM_B[p]
            v.min(axis=1, out=mins[:, p])
        bands = np.empty((n, BANDS), dtype=np.uint64)
        for b in range(BANDS):
            x = np.full(n, _BAND_SEEDS[b], dtype=np.uint64)
            for r in range(ROWS):
                x = (x ^ mins[:, b * ROWS + r]) * _MIX[1]
                x ^= x >> np.uint64(32)
            bands[:, b] = x
    return bands.view(np.int64)
