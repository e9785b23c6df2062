"""tf.data input pipeline over a prepared dataset (the training and evaluation input).

Training mode shuffles shards and examples, resizes so the shorter side covers the crop,
takes a random square crop and a random left-right flip; eval mode resizes and takes the
centre crop, in file order, so two passes give identical batches. Both parse and decode
in parallel and prefetch, so the training step should not wait on input.
"""

from __future__ import annotations

import random
from pathlib import Path

from imfuse.data.examples import KINDS, SPLITS
from imfuse.data.manifest import read_manifest, shard_entries
from imfuse.errors import ConfigError, DataError


def _check(kind: str, split: str) -> None:
    if kind not in KINDS:
        raise ConfigError(f"kind must be one of {KINDS}, got '{kind}'")
    if split not in SPLITS[kind]:
        raise ConfigError(f"split for {kind} must be one of {SPLITS[kind]}, got '{split}'")


def count_examples(data_dir: str | Path, kind: str, split: str) -> int:
    """Number of examples of `kind`/`split` according to the manifest."""
    _check(kind, split)
    return int(read_manifest(data_dir)["counts"][kind].get(split, 0))


def _listed_shards(data_dir: str | Path, kind: str, split: str) -> list[Path]:
    """The manifest's non-empty shards for kind/split; DataError if one of them is missing."""
    _check(kind, split)
    entries = [e for e in shard_entries(read_manifest(data_dir), kind, split) if e["examples"] > 0]
    paths = [Path(data_dir) / e["path"] for e in entries]
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise DataError(f"{missing[0]}: shard listed in the manifest is missing")
    return paths


def shard_paths(data_dir: str | Path, kind: str, split: str) -> list[str]:
    """Absolute shard paths for kind/split; DataError if the dataset has none or lost some."""
    paths = _listed_shards(data_dir, kind, split)
    if not paths:
        raise DataError(f"{data_dir}: the dataset has no {kind} images in split '{split}'")
    return [str(p) for p in paths]


def read_examples(data_dir: str | Path, kind: str, split: str, limit: int | None = None) -> list[tuple[str, bytes]]:
    """(source, encoded image) of kind/split's examples in shard order, without TensorFlow.

    The evaluation's and benchmarks' reader: a few images each, decoded one by one. An
    empty split gives []; a shard the manifest lists but that is missing is a DataError.
    """
    import gzip

    from imfuse.data.examples import decode_example, read_tfrecords

    out: list[tuple[str, bytes]] = []
    for path in _listed_shards(data_dir, kind, split):
        with (gzip.open if path.suffix == ".gz" else open)(path, "rb") as handle:
            for i, record in enumerate(read_tfrecords(handle, str(path))):
                features = decode_example(record)
                if not features.get("image"):
                    raise DataError(f"{path}: record {i} has no 'image' feature")
                source = features.get("source", [f"{path.name}#{i}".encode()])[0]
                source = source.decode("utf-8", "replace") if isinstance(source, bytes) else str(source)
                out.append((source, bytes(features["image"][0])))
                if limit is not None and len(out) >= limit:
                    return out
    return out


def make_dataset(
    data_dir: str | Path,
    kind: str,
    split: str,
    batch_size: int,
    image_size: int,
    training: bool,
    repeat: bool,
    seed: int | None = None,
    large: bool = False,
    augment: bool = False,
    max_zoom: float = 2.0,
):
    """tf.data.Dataset of float32 (B, image_size, image_size, 3) batches in [0, 1].

    `large=True` reads the style's larger copy (`image_large`). The `unseen` style split
    is refused in training mode: it is the hold-out that training must never see.
    `augment` (training only) multiplies a small corpus: a random scale (1 to `max_zoom`
    times the crop, so strokes and objects appear at several sizes), flips in both axes,
    and for styles a hue rotation.
    """
    import tensorflow as tf

    if batch_size < 1 or image_size < 1:
        raise ConfigError(f"batch_size and image_size must be positive, got {batch_size}, {image_size}")
    if training and split == "unseen":
        raise ConfigError("the 'unseen' style split is a hold-out and cannot be used for training")
    if max_zoom < 1.0:
        raise ConfigError(f"max_zoom must be at least 1 (a crop never zooms out), got {max_zoom}")
    if large and kind != "style":
        raise ConfigError("large=True applies to style images only")
    paths = shard_paths(data_dir, kind, split)
    key = "image_large" if large else "image"
    spec = {key: tf.io.FixedLenFeature([], tf.string)}
    size = tf.constant(image_size, tf.int32)

    def cover(img, zoom=1.0):
        hw = tf.shape(img)[:2]
        scale = zoom * tf.cast(size, tf.float32) / tf.cast(tf.reduce_min(hw), tf.float32)
        new_hw = tf.maximum(size, tf.cast(tf.math.round(tf.cast(hw, tf.float32) * scale), tf.int32))
        resized = tf.image.resize(img, new_hw, method="bilinear", antialias=True)
        return tf.cond(tf.reduce_all(tf.equal(new_hw, hw)), lambda: img, lambda: resized)

    def parse(index, record):
        raw = tf.io.parse_single_example(record, spec)[key]
        img = tf.io.decode_image(raw, channels=3, expand_animations=False)
        img = tf.image.convert_image_dtype(img, tf.float32)
        augmenting = training and augment
        # Stateless ops seeded by (seed, kind, element index): the same seed gives the same
        # batches however the parallel map schedules its work, and content and style
        # streams read with one seed do not share their crops and flips.
        seeds = [tf.stack([base_seed, (index * len(KINDS) + KINDS.index(kind)) * 5 + i]) for i in range(5)]
        zooming = augmenting and max_zoom > 1.0
        img = cover(img, tf.random.stateless_uniform([], seeds[0], 1.0, max_zoom) if zooming else 1.0)
        if training:
            img = tf.image.stateless_random_crop(img, [size, size, 3], seed=seeds[1])
            img = tf.image.stateless_random_flip_left_right(img, seed=seeds[2])
        if augmenting:
            img = tf.image.stateless_random_flip_up_down(img, seed=seeds[3])
            if kind == "style":  # a photo with rotated hues is still a photo; a painting, a new style
                img = tf.image.stateless_random_hue(img, 0.5, seed=seeds[4])
        else:
            img = tf.image.resize_with_crop_or_pad(img, size, size)  # the centre crop (cover made it large enough)
        img = tf.clip_by_value(img, 0.0, 1.0)
        return tf.ensure_shape(img, [image_size, image_size, 3])

    base_seed = tf.constant(seed if seed is not None else random.randrange(2**31), tf.int64)
    files = tf.data.Dataset.from_tensor_slices(paths)
    if training:
        files = files.shuffle(len(paths), seed=seed, reshuffle_each_iteration=True)
    ds = files.interleave(
        tf.data.TFRecordDataset,
        cycle_length=min(len(paths), 8),
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True,
    )
    if training:
        ds = ds.shuffle(512, seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    ds = ds.enumerate().map(parse, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.batch(batch_size, drop_remainder=training)
    return ds.prefetch(tf.data.AUTOTUNE)
