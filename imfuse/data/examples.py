"""tf.train.Example and TFRecord encoding without importing TensorFlow.

Why hand-written: Beam workers stay light (no multi-second TensorFlow import per
process), and the bytes are deterministic (features written in sorted key order;
protobuf map order is otherwise unspecified), which the dataset hash relies on.
The output is standard: `tf.train.Example.FromString` and `tf.data.TFRecordDataset`
read it (tests check both).

Features (docs/CONTRACTS.md): `image` (encoded PNG/JPEG), `height`, `width`, `source`,
`sha256` (of the original file bytes), `split`, `kind`. Style examples also carry
`image_large`, `height_large`, `width_large`: the same style at the larger size.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Mapping
from typing import BinaryIO

from imfuse.errors import DataError

Feature = bytes | str | int | float | list

FEATURES = ("image", "height", "width", "source", "sha256", "split", "kind")
LARGE_FEATURES = ("image_large", "height_large", "width_large")
KINDS = ("content", "style")
SPLITS = {"content": ("train", "eval"), "style": ("train", "eval", "unseen")}


# ------------------------------------------------------------------ protobuf wire format


def _varint(value: int) -> bytes:
    value &= (1 << 64) - 1  # negative int64 -> two's complement, as protobuf does
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    return _varint((number << 3) | 2) + _varint(len(payload)) + payload


def _feature(value: Feature) -> bytes:
    values = value if isinstance(value, list) else [value]
    if all(isinstance(v, (bytes, str)) for v in values):
        items = b"".join(_field(1, v.encode("utf-8") if isinstance(v, str) else v) for v in values)
        return _field(1, items)  # bytes_list
    if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return _field(3, _field(1, b"".join(_varint(v) for v in values)))  # int64_list, packed
    if all(isinstance(v, (int, float)) for v in values):
        return _field(2, _field(1, struct.pack(f"<{len(values)}f", *values)))  # float_list
    raise DataError(f"unsupported feature value {value!r}")


def encode_example(features: Mapping[str, Feature]) -> bytes:
    """Serialized tf.train.Example with features in sorted key order (deterministic)."""
    entries = b"".join(
        _field(1, _field(1, key.encode("utf-8")) + _field(2, _feature(features[key])))
        for key in sorted(features)
    )
    return _field(1, entries)


def _read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise DataError("truncated protobuf varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _fields(buf: bytes) -> Iterator[tuple[int, int, bytes | int]]:
    pos = 0
    while pos < len(buf):
        key, pos = _read_varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 2:
            length, pos = _read_varint(buf, pos)
            yield number, wire, buf[pos : pos + length]
            pos += length
        elif wire == 0:
            value, pos = _read_varint(buf, pos)
            yield number, wire, value
        elif wire == 5:
            yield number, wire, buf[pos : pos + 4]
            pos += 4
        else:
            raise DataError(f"unexpected protobuf wire type {wire}")


def _signed(v: int) -> int:
    return v - (1 << 64) if v >= 1 << 63 else v


def _decode_feature(buf: bytes) -> list:
    for number, _, payload in _fields(buf):
        values: list = []
        for _, wire, item in _fields(payload):
            if number == 1:
                values.append(bytes(item))
            elif number == 3 and wire == 0:
                values.append(_signed(item))
            elif number == 3:
                pos = 0
                while pos < len(item):
                    v, pos = _read_varint(item, pos)
                    values.append(_signed(v))
            elif number == 2 and wire == 5:
                values.append(struct.unpack("<f", item)[0])
            elif number == 2:
                values.extend(struct.unpack(f"<{len(item) // 4}f", item))
        return values
    return []


def decode_example(data: bytes) -> dict[str, list]:
    """Parse a serialized tf.train.Example into {name: list of values} (bytes/int/float)."""
    out: dict[str, list] = {}
    for _, _, features in _fields(data):
        for _, _, entry in _fields(features):
            key, value = "", b""
            for number, _, payload in _fields(entry):
                if number == 1:
                    key = bytes(payload).decode("utf-8")
                elif number == 2:
                    value = payload
            out[key] = _decode_feature(value)
    return out


# ------------------------------------------------------------------------ TFRecord framing


def _crc32c_function():
    try:
        import google_crc32c

        return lambda data: google_crc32c.value(bytes(data))
    except ImportError:  # pure-Python fallback: slow, still correct
        table = []
        for i in range(256):
            crc = i
            for _ in range(8):
                crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
            table.append(crc)

        def crc32c(data: bytes) -> int:
            crc = 0xFFFFFFFF
            for b in data:
                crc = table[(crc ^ b) & 0xFF] ^ (crc >> 8)
            return crc ^ 0xFFFFFFFF

        return crc32c


_crc32c = _crc32c_function()


def _masked_crc(data: bytes) -> int:
    crc = _crc32c(data)
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
