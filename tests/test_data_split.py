"""imfuse.data.split: deterministic hash splits with small-dataset guarantees."""

from __future__ import annotations

import hashlib
from collections import Counter

import pytest

from imfuse.data.split import assign_splits, hash_position

STYLE = {"unseen": 0.2, "eval": 0.1}


def _hashes(n: int, offset: int = 0) -> list[str]:
    return [hashlib.sha256(f"img{i}".encode()).hexdigest() for i in range(offset, offset + n)]


def test_fractions_are_respected_on_many_images():
    counts = Counter(assign_splits(_hashes(4000), STYLE).values())
    assert counts["unseen"] / 4000 == pytest.approx(0.2, abs=0.03)
    assert counts["eval"] / 4000 == pytest.approx(0.1, abs=0.03)
    assert counts["train"] / 4000 == pytest.approx(0.7, abs=0.03)


def test_deterministic_and_independent_of_order():
    hs = _hashes(50)
    assert assign_splits(hs, STYLE) == assign_splits(list(reversed(hs)), STYLE)
    assert hash_position(hs[0]) == hash_position(hs[0])
    assert hash_position(hs[0]) != hash_position(hs[0], salt="other")


@pytest.mark.parametrize("n", [2, 3, 4, 5, 9, 13])
def test_small_sets_get_every_split(n):
    splits = assign_splits(_hashes(n, offset=100 * n), STYLE)
    counts = Counter(splits.values())
    assert counts["train"] >= 1 and counts["unseen"] >= 1
    if n >= 3:
        assert counts["eval"] >= 1
    content = Counter(assign_splits(_hashes(n, offset=100 * n), {"eval": 0.1}).values())
    assert content["train"] >= 1 and content["eval"] >= 1


def test_single_image_goes_to_train_and_zero_fraction_splits_stay_empty():
    assert list(assign_splits(_hashes(1), STYLE).values()) == ["train"]
    assert set(assign_splits(_hashes(30), {"eval": 0.0}).values()) == {"train"}


def test_adding_images_does_not_move_existing_ones_in_large_sets():
    base = assign_splits(_hashes(300), STYLE)
    grown = assign_splits(_hashes(400), STYLE)
    assert all(grown[h] == s for h, s in base.items())
