"""tf.train.Example and TFRecord encoding without importing TensorFlow.

Why not TensorFlow's own classes: Beam workers stay light (no multi-second TensorFlow
import per process). The Example message class is built at run time from the fields of
tensorflow/core/example/{example,feature}.proto, and serialised deterministically
(features in sorted key order; protobuf map order is otherwise unspecified), which the
dataset hash relies on. The output is standard: `tf.train.Example.FromString` and
`tf.data.TFRecordDataset` read it (tests check both).

Features (docs/CONTRACTS.md): `image` (encoded PNG/JPEG), `height`, `width`, `source`,
`sha256` (of the original file bytes), `split`, `kind`. Style examples also carry
`image_large`, `height_large`, `width_large`: the same style at the larger size.
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Iterator, Mapping
from typing import BinaryIO

import google_crc32c
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import DecodeError

from imfuse.errors import DataError

Feature = bytes | str | int | float | list

FEATURES = ("image", "height", "width", "source", "sha256", "split", "kind")
LARGE_FEATURES = ("image_large", "height_large", "width_large")
KINDS = ("content", "style")
SPLITS = {"content": ("train", "eval"), "style": ("train", "eval", "unseen")}


@functools.cache
def example_class():
    """The `tensorflow.Example` message class (proto3: numeric lists packed, as TF writes them)."""
    F = descriptor_pb2.FieldDescriptorProto
    proto = descriptor_pb2.FileDescriptorProto(name="imfuse/tf_example.proto", package="tensorflow", syntax="proto3")

    def message_field(message, name, number, type_name, **kw):
        message.field.add(name=name, number=number, type=F.TYPE_MESSAGE, type_name=f".tensorflow.{type_name}", **kw)

    for name, scalar in (("BytesList", F.TYPE_BYTES), ("FloatList", F.TYPE_FLOAT), ("Int64List", F.TYPE_INT64)):
        proto.message_type.add(name=name).field.add(name="value", number=1, type=scalar, label=F.LABEL_REPEATED)
    feature = proto.message_type.add(name="Feature")
    feature.oneof_decl.add(name="kind")
    for number, name in enumerate(("bytes_list", "float_list", "int64_list"), 1):
        message_field(feature, name, number, name.title().replace("_", ""), oneof_index=0)
    features = proto.message_type.add(name="Features")
    entry = features.nested_type.add(name="FeatureEntry", options=descriptor_pb2.MessageOptions(map_entry=True))
    entry.field.add(name="key", number=1, type=F.TYPE_STRING)
    message_field(entry, "value", 2, "Feature")
    message_field(features, "feature", 1, "Features.FeatureEntry", label=F.LABEL_REPEATED)
    message_field(proto.message_type.add(name="Example"), "features", 1, "Features")
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("tensorflow.Example"))


def _list_kind(values: list) -> str:
    if all(isinstance(v, (bytes, str)) for v in values):
        return "bytes_list"
    if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return "int64_list"
    if all(isinstance(v, (int, float)) for v in values):
        return "float_list"
    raise DataError(f"unsupported feature value {values!r}")


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def encode_example(features: Mapping[str, Feature]) -> bytes:
    """Serialized tf.train.Example with its features in Python's sorted key order.

    Deterministic, and the order every dataset hash so far was computed with: protobuf's own
    deterministic order differs where one key is a prefix of another (`height`,
    `height_large`), so each map entry is serialised alone (a one-entry Features message is
    exactly that entry's bytes) and the sorted entries are wrapped as Example field 1."""
    message = example_class()
    entries = []
    for key in sorted(features):
        values = features[key] if isinstance(features[key], list) else [features[key]]
        one = message().features
        field = getattr(one.feature[key], _list_kind(values))
        field.SetInParent()
        field.value.extend(v.encode("utf-8") if isinstance(v, str) else v for v in values)
        entries.append(one.SerializeToString())
    body = b"".join(entries)
    return b"\x0a" + _varint(len(body)) + body  # field 1 (features), length-delimited


def decode_example(data: bytes) -> dict[str, list]:
    """Parse a serialized tf.train.Example into {name: list of values} (bytes/int/float)."""
    try:
        example = example_class().FromString(data)
    except DecodeError as exc:
        raise DataError(f"corrupt tf.train.Example: {exc}") from None
    out = {}
    for key, feature in example.features.feature.items():
        kind = feature.WhichOneof("kind")
        out[key] = list(getattr(feature, kind).value) if kind else []
    return out


# ------------------------------------------------------------------------ TFRecord framing


def _masked_crc(data: bytes) -> int:
    crc = google_crc32c.value(bytes(data))
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def tfrecord_frame(record: bytes) -> bytes:
    """One TFRecord: length, masked CRC32C of the length, data, masked CRC32C of the data."""
    length = struct.pack("<Q", len(record))
    return length + struct.pack("<I", _masked_crc(length)) + record + struct.pack(
        "<I", _masked_crc(record)
    )


def write_tfrecords(fh: BinaryIO, records: list[bytes]) -> None:
    for record in records:
        fh.write(tfrecord_frame(record))


def read_tfrecords(fh: BinaryIO, name: str = "<tfrecord>") -> Iterator[bytes]:
    """Records of a TFRecord file, checking both CRCs (corruption -> DataError)."""
    while True:
        header = fh.read(12)
        if not header:
            return
        if len(header) < 12:
            raise DataError(f"{name}: truncated TFRecord header")
        length, length_crc = struct.unpack("<QI", header)
        if _masked_crc(header[:8]) != length_crc:
            raise DataError(f"{name}: corrupt TFRecord length checksum")
        data = fh.read(length)
        footer = fh.read(4)
        if len(data) < length or len(footer) < 4:
            raise DataError(f"{name}: truncated TFRecord")
        if _masked_crc(data) != struct.unpack("<I", footer)[0]:
            raise DataError(f"{name}: corrupt TFRecord data checksum")
        yield data
