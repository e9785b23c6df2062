"""imfuse.data.examples: Example/TFRecord bytes written without TensorFlow match TensorFlow's."""

from __future__ import annotations

import io

import pytest

from imfuse.data.examples import (
    decode_example,
    encode_example,
    read_tfrecords,
    tfrecord_frame,
    write_tfrecords,
)
from imfuse.errors import DataError

FEATURES = {
    "image": b"\x89PNG\r\n\x00\xff",
    "height": 256,
    "width": 341,
    "source": "gs://bucket/dir/my photo ü.jpg",
    "sha256": "ab" * 32,
    "split": "train",
    "kind": "content",
    "neg": [-1, 2**40],
    "floats": [0.5, -2.25],
}


def test_example_parses_with_tensorflow_and_matches_its_deterministic_bytes():
    tf = pytest.importorskip("tensorflow")
    data = encode_example(FEATURES)
    ex = tf.train.Example.FromString(data)
    f = ex.features.feature
    assert f["image"].bytes_list.value == [FEATURES["image"]]
    assert f["height"].int64_list.value == [256]
    assert f["source"].bytes_list.value[0].decode() == FEATURES["source"]
    assert list(f["neg"].int64_list.value) == [-1, 2**40]
    assert list(f["floats"].float_list.value) == [0.5, -2.25]
    assert ex.SerializeToString(deterministic=True) == data


def test_style_example_bytes_keep_the_order_every_dataset_hash_was_computed_with():
    """Keys that prefix others (height, height_large) stay in Python's sorted order, not
    protobuf's deterministic map order: the digest is that of the bytes the hand-written
    encoder before commit 47942c1 wrote, so dataset hashes did not change with the encoder."""
    import hashlib

    style = {"height": 256, "height_large": 512, "image": b"\x89PNG", "image_large": b"\x89PNG2", "kind": "style",
             "source": "s.jpg", "split": "train", "sha256": "ab" * 32, "width": 341, "width_large": 683}
    data = encode_example(style)
    assert hashlib.sha256(data).hexdigest() == "ab9c74c983c0b186cdea3d405a706d413f0010e9864106d58d3214ea7590b592"
    assert decode_example(data)["height_large"] == [512]


def test_decode_example_round_trip_and_key_order_does_not_matter():
    data = encode_example(FEATURES)
    assert data == encode_example(dict(reversed(list(FEATURES.items()))))
    back = decode_example(data)
    assert back["height"] == [256] and back["neg"] == [-1, 2**40]
    assert back["source"] == [FEATURES["source"].encode()]
    assert back["floats"] == [0.5, -2.25]


def test_unsupported_feature_value_and_corrupt_bytes():
    with pytest.raises(DataError):
        encode_example({"x": [object()]})
    with pytest.raises(DataError, match="corrupt tf.train.Example"):
        decode_example(encode_example(FEATURES)[:-3])


def test_tfrecord_framing_read_by_tf_data(tmp_path):
    tf = pytest.importorskip("tensorflow")
    records = [encode_example(FEATURES), b"", b"x" * 100_000]
    path = tmp_path / "a.tfrecord"
    with open(path, "wb") as fh:
        write_tfrecords(fh, records)
    assert [r.numpy() for r in tf.data.TFRecordDataset(str(path))] == records
    with open(path, "rb") as fh:
        assert list(read_tfrecords(fh)) == records


def test_tfrecord_corruption_is_detected():
    frame = bytearray(tfrecord_frame(b"hello world"))
    frame[14] ^= 1
    with pytest.raises(DataError, match="checksum"):
        list(read_tfrecords(io.BytesIO(bytes(frame))))
    with pytest.raises(DataError, match="truncated"):
        list(read_tfrecords(io.BytesIO(tfrecord_frame(b"hello")[:-2])))
