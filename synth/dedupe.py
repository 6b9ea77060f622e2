"""Pure near-duplicate detection: MinHash signatures with LSH banding.

Two tasks whose query texts (or whose PRs' added patch lines) have an estimated Jaccard
similarity of ``threshold`` or more are twins; the newer one is flagged with the id of the
older one.
"""

from __future__ import annotations

import hashlib
import operator
import re
import struct
from dataclasses import dataclass

NUM_PERM = 64
BANDS, ROWS = 16, 4  # 16 bands x 4 rows: pairs above ~0.6 similarity almost always meet
_MASK = (1 << 61) - 1
_WORD = re.compile(r"\w+")


def shingles(text: str, k: int = 5) -> set[int]:
    words = _WORD.findall(text.lower())
    if len(words) < k:
        grams = {" ".join(words)} if words else set()
    else:
        grams = {" ".join(words[i:i + k]) for i in range(len(words) - k + 1)}
    return {struct.unpack("<Q", hashlib.blake2b(g.encode(), digest_size=8).digest())[0]
            for g in grams}


def signature(items: set[int]) -> tuple[int, ...] | None:
    """One-permutation MinHash: each 64-bit shingle hash goes to one of NUM_PERM bins by its
    low bits and each bin keeps its smallest value; empty bins borrow from the next full one
    (rotation densification). One pass over the shingles instead of NUM_PERM passes."""
    if not items:
        return None
    empty = _MASK + 1
    sig = [empty] * NUM_PERM
    for h in items:
        b = h % NUM_PERM
        v = h // NUM_PERM
        if v < sig[b]:
            sig[b] = v
    if empty in sig:
        full = [i for i, v in enumerate(sig) if v != empty]
        for i in range(NUM_PERM):
            if sig[i] == empty:
                j = next((f for f in full if f > i), full[0])
                sig[i] = sig[j] + (((j - i) % NUM_PERM) << 58)  # marks the borrowed distance
    return tuple(sig)


def similarity(s1: tuple[int, ...], s2: tuple[int, ...]) -> float:
    return sum(map(operator.eq, s1, s2)) / len(s1)


@dataclass(frozen=True)
class Twin:
    item: str
    twin_of: str
    similarity: float


def find_twins(items: list[tuple[str, str]], threshold: float = 0.8) -> list[Twin]:
    """``items`` are (id, text) oldest first; each later near-copy points at its best twin."""
    return twins_from_signatures([(i, signature(shingles(t))) for i, t in items], threshold)


def twins_from_signatures(items: list[tuple[str, tuple[int, ...] | None]],
                          threshold: float = 0.8) -> list[Twin]:
    """Like find_twins, from precomputed signatures (oldest first)."""
    sigs: dict[str, tuple[int, ...]] = {}
    order: dict[str, int] = {}
    buckets: dict[tuple[int, tuple[int, ...]], list[str]] = {}
    twins: list[Twin] = []
    for pos, (item, sig) in enumerate(items):
        if not sig:
            continue
        sig = tuple(sig)
        sigs[item] = sig
        order[item] = pos
        best: tuple[float, int, str] | None = None
        seen: set[str] = set()
        for band in range(BANDS):
            key = (band, sig[band * ROWS:(band + 1) * ROWS])
            for other in buckets.get(key, ()):
                if other in seen:
                    continue
                seen.add(other)
                sim = similarity(sig, sigs[other])
                if sim >= threshold and (best is None or (sim, -order[other]) > (best[0], -best[1])):
                    best = (sim, order[other], other)
            buckets.setdefault(key, []).append(item)
        if best:
            twins.append(Twin(item, best[2], best[0]))
    return twins
