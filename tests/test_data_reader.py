"""imfuse.data.reader: tf.data batches from a prepared dataset (shared fixture)."""

from __future__ import annotations

import numpy as np
import pytest

from imfuse.data.reader import count_examples, make_dataset, shard_paths
from imfuse.errors import ConfigError, DataError

tf = pytest.importorskip("tensorflow")


def test_count_examples_matches_manifest_and_shards(prepared_dataset):
    from imfuse.data.examples import read_tfrecords

    for kind, split in [("content", "train"), ("content", "eval"), ("style", "train"), ("style", "unseen")]:
        n = count_examples(prepared_dataset, kind, split)
        assert n >= 1
        records = 0
        for path in shard_paths(prepared_dataset, kind, split):
            with open(path, "rb") as fh:
                records += sum(1 for _ in read_tfrecords(fh))
        assert records == n


def test_training_batches_shapes_ranges_and_augmentation(prepared_dataset):
    ds = make_dataset(prepared_dataset, "style", "train", batch_size=4, image_size=48,
                      training=True, repeat=True, seed=3)
    batches = [b.numpy() for b in ds.take(6)]
    for b in batches:
        assert b.shape == (4, 48, 48, 3) and b.dtype == np.float32
        assert 0.0 <= b.min() and b.max() <= 1.0 and b.std() > 0.01
    # repeat=True keeps going past one epoch; random crops differ between passes
    assert len(batches) == 6
    again = [b.numpy() for b in ds.take(6)]
    assert any(not np.array_equal(a, b) for a, b in zip(batches, again))


def test_training_crop_is_random_and_flip_happens(prepared_dataset):
    # Square images stored at 64x64 read at 64 px: the crop is the whole image, so a
    # training sample is either the eval image or its mirror; both must occur.
    evals = [b.numpy()[0] for b in make_dataset(prepared_dataset, "content", "train", 1, 64,
                                                training=False, repeat=False)]
    ds = make_dataset(prepared_dataset, "content", "train", batch_size=1, image_size=64,
                      training=True, repeat=True)
    samples = [b.numpy()[0] for b in ds.take(80)]
    plain = sum(any(np.allclose(s, e, atol=1e-6) for e in evals) for s in samples)
    mirrored = sum(any(np.allclose(s, e[:, ::-1], atol=1e-6) for e in evals) for s in samples)
    assert plain >= 1 and mirrored >= 1
    assert len({s.tobytes() for s in samples}) > 10  # non-square images: random crops


def test_augment_zooms_flips_and_rotates_style_hues_only(prepared_dataset):
    """augment=True: samples are no longer plain crops or mirrors of the stored images
    (random zoom, vertical flips); styles also get new hues, photos keep theirs."""
    from imfuse.color import rgb_to_yiq

    def samples(kind, augment):
        ds = make_dataset(prepared_dataset, kind, "train", batch_size=1, image_size=64, training=True,
                          repeat=True, seed=5, augment=augment)
        return [b.numpy()[0] for b in ds.take(40)]

    evals = [b.numpy()[0] for b in make_dataset(prepared_dataset, "content", "train", 1, 64,
                                                training=False, repeat=False)]
    zoomed = samples("content", True)
    plain = sum(any(np.allclose(s, e, atol=1e-4) or np.allclose(s, e[:, ::-1], atol=1e-4) for e in evals)
                for s in zoomed)
    assert plain < len(zoomed) // 2
    for s in zoomed:
        assert s.shape == (64, 64, 3) and 0.0 <= s.min() and s.max() <= 1.0

    def chroma_angles(images):
        yiq = [rgb_to_yiq(im).reshape(-1, 3).mean(0) for im in images]
        return np.array([np.arctan2(q, i) for _, i, q in yiq])

    # rotated hues spread the styles' mean chroma angles wider than their plain crops
    assert np.ptp(chroma_angles(samples("style", True))) > np.ptp(chroma_angles(samples("style", False)))


def test_training_batches_repeat_exactly_for_one_seed(prepared_dataset):
    """Parallel decoding and augmentation still give the same batches for the same seed
    (stateless ops keyed by element index), and other batches for another seed."""

    def batches(seed):
        ds = make_dataset(prepared_dataset, "style", "train", batch_size=3, image_size=32,
                          training=True, repeat=True, seed=seed, augment=True)
        return np.stack([b.numpy() for b in ds.take(4)])

    first = batches(11)
    np.testing.assert_array_equal(first, batches(11))
    assert np.abs(first - batches(12)).mean() > 0.01


def test_eval_is_deterministic_centre_crop_with_upscaling(prepared_dataset):
    n = count_examples(prepared_dataset, "content", "train")
    ds = make_dataset(prepared_dataset, "content", "train", batch_size=3, image_size=80,
                      training=False, repeat=False)
    first = [b.numpy() for b in ds]
    second = [b.numpy() for b in ds]
    assert sum(b.shape[0] for b in first) == n  # no drop_remainder in eval
    assert all(b.shape[1:] == (80, 80, 3) for b in first)  # 64 px stored -> resized up
    assert all(np.array_equal(a, b) for a, b in zip(first, second))


def test_large_style_copy(prepared_dataset):
    ds = make_dataset(prepared_dataset, "style", "eval", batch_size=1, image_size=96,
                      training=False, repeat=False, large=True)
    (batch, *_) = list(ds)
    assert batch.shape == (1, 96, 96, 3)


def test_refusals(prepared_dataset, tmp_path):
    with pytest.raises(ConfigError, match="hold-out"):
        make_dataset(prepared_dataset, "style", "unseen", 2, 32, training=True, repeat=True)
    with pytest.raises(ConfigError, match="split"):
        make_dataset(prepared_dataset, "content", "unseen", 2, 32, training=False, repeat=False)
    with pytest.raises(ConfigError):
        make_dataset(prepared_dataset, "content", "train", 2, 32, training=False, repeat=False, large=True)
    with pytest.raises(DataError, match="no manifest"):
        make_dataset(tmp_path, "content", "train", 2, 32, training=True, repeat=True)
