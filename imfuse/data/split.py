"""Deterministic hash-based splits with small-dataset guarantees.

Each image's split depends only on its content hash (so adding images does not move
existing ones) except when a split would otherwise be empty: then the image whose hash
position is nearest to that split's interval moves into it, taken from the largest
split. That repair is a pure function of the set of hashes, so it is deterministic too.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable, Mapping

SPLIT_SALT = "imfuse-split-v1"


def hash_position(sha256_hex: str, salt: str = SPLIT_SALT) -> float:
    """Uniform position in [0, 1) derived from an image's content hash."""
    digest = hashlib.sha256(f"{salt}:{sha256_hex}".encode("ascii")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def split_intervals(fractions: Mapping[str, float]) -> dict[str, tuple[float, float]]:
    """Consecutive [lo, hi) intervals in the order given; the remainder goes to "train"."""
    out: dict[str, tuple[float, float]] = {}
    lo = 0.0
    for name, frac in fractions.items():
        if name == "train":
            continue
        out[name] = (lo, lo + frac)
        lo += frac
    out["train"] = (lo, 1.0)
    return out


def assign_splits(
    hashes: Iterable[str], fractions: Mapping[str, float], salt: str = SPLIT_SALT
) -> dict[str, str]:
    """Map each content hash to a split name.

    `fractions` gives the held-out splits, e.g. {"unseen": 0.2, "eval": 0.1}; "train"
    takes the rest. Splits with a positive fraction (and train) are guaranteed at least
    one image whenever there are enough images for all of them, train first.
    """
    unique = sorted(set(hashes))
    intervals = split_intervals(fractions)
    pos = {h: hash_position(h, salt) for h in unique}
    split_of = {
        h: next(name for name, (lo, hi) in intervals.items() if lo <= p < hi or (hi == 1.0 and p >= lo))
        for h, p in pos.items()
    }
    required = ["train"] + [n for n, f in fractions.items() if n != "train" and f > 0]
    required = required[: len(unique)]  # with fewer images than splits, fill in order
    for name in required:
        sizes = Counter(split_of.values())
        if sizes[name]:
            continue
        lo, hi = intervals[name]
        centre = (lo + hi) / 2
        donors = [h for h, s in split_of.items() if sizes[s] > 1 or s not in required]
        if not donors:
            continue
        # Take from the largest split; ties broken by distance to this split, then hash.
        chosen = min(donors, key=lambda h: (-sizes[split_of[h]], abs(pos[h] - centre), h))
        split_of[chosen] = name
    return split_of
