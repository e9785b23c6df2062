"""In-graph image pre/post-processing for the exported serving signatures.

Everything a TF Serving client sends is encoded bytes, so decoding, validation, resizing
and PNG encoding live in the SavedModel graph: clients stay thin and serving cannot
drift from training (the same Keras model call is inside). Bad bytes fail the signature
with `InvalidArgumentError`, which servers report as INVALID_ARGUMENT.
"""

from __future__ import annotations

import tensorflow as tf

from imfuse.color import LUMA_WEIGHTS, RGB_TO_YIQ, YIQ_TO_RGB

# Same limits as imfuse.images.DEFAULT_LIMITS, enforced in the graph for serving.
MIN_SIDE = 16
MAX_PIXELS = 64_000_000

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_JPEG_MAGIC = b"\xff\xd8\xff"
_GIF_MAGICS = (b"GIF87a", b"GIF89a")

# zlib level 1: ~4x faster than the default (6) on photos for ~7% larger files; on
# stylised pixels the encode otherwise costs more than the network at 512 px.
PNG_COMPRESSION = 1



_HEAD_BYTES = 32  # enough for every header field read below


def _padded_head(data: tf.Tensor) -> tf.Tensor:
    """The first _HEAD_BYTES bytes (scalar string), zero-padded: substr on it never goes out of range."""
    return tf.strings.substr(tf.strings.join([tf.strings.substr(data, 0, _HEAD_BYTES), b"\0" * _HEAD_BYTES]), 0, _HEAD_BYTES)


def _head(data: tf.Tensor) -> tf.Tensor:
    """The first _HEAD_BYTES bytes as int64 [_HEAD_BYTES], zero-padded for short inputs."""
    return tf.cast(tf.io.decode_raw(_padded_head(data), tf.uint8), tf.int64)


def _uint(head: tf.Tensor, offset: int, size: int, big_endian: bool = False) -> tf.Tensor:
    """An unsigned integer of `size` bytes at `offset` of the header (int64 scalar)."""
    weights = [1 << (8 * i) for i in range(size)]
    if big_endian:
        weights.reverse()
    return tf.reduce_sum(head[offset : offset + size] * tf.constant(weights, tf.int64))


def _int32_le(head: tf.Tensor, offset: int) -> tf.Tensor:
    value = _uint(head, offset, 4)
    return tf.where(value >= (1 << 31), value - (1 << 32), value)


def _bmp_pixels(head: tf.Tensor) -> tf.Tensor:
    """BITMAPCOREHEADER (12 bytes): u16 sides; later headers: int32 sides, negative height = top-down."""
    core = tf.equal(_uint(head, 14, 4), 12)
    width = tf.where(core, _uint(head, 18, 2), tf.abs(_int32_le(head, 18)))
    height = tf.where(core, _uint(head, 20, 2), tf.abs(_int32_le(head, 22)))
    return width * height


def _webp_pixels(head: tf.Tensor) -> tf.Tensor:
    """Canvas of a VP8 (lossy), VP8L (lossless) or VP8X (extended) WebP; 0 when unknown."""
    kind = head[12:16]

    def fourcc(text: bytes) -> tf.Tensor:
        return tf.reduce_all(tf.equal(kind, tf.constant(list(text), tf.int64)))

    def low14(value: tf.Tensor) -> tf.Tensor:
        return tf.bitwise.bitwise_and(value, tf.constant(0x3FFF, tf.int64))

    vp8 = low14(_uint(head, 26, 2)) * low14(_uint(head, 28, 2))
    bits = _uint(head, 21, 4)
    vp8l = (low14(bits) + 1) * (low14(tf.bitwise.right_shift(bits, tf.constant(14, tf.int64))) + 1)
    vp8x = (_uint(head, 24, 3) + 1) * (_uint(head, 27, 3) + 1)
    return tf.where(fourcc(b"VP8 "), vp8, tf.where(fourcc(b"VP8L"), vp8l, tf.where(fourcc(b"VP8X"), vp8x, 0)))


def _magics(text: tf.Tensor) -> dict[str, tf.Tensor]:
    """Whether a padded head (_padded_head) starts with each supported format's magic bytes."""

    def at(offset: int, magic: bytes) -> tf.Tensor:
        return tf.strings.substr(text, offset, len(magic)) == magic

    return {
        "png": at(0, _PNG_MAGIC),
        "jpeg": at(0, _JPEG_MAGIC),
        "gif": tf.logical_or(at(0, _GIF_MAGICS[0]), at(0, _GIF_MAGICS[1])),
        "bmp": at(0, b"BM"),
        "webp": tf.logical_and(at(0, b"RIFF"), at(8, b"WEBP")),
    }


def declared_pixels(data: tf.Tensor) -> tf.Tensor:
    """Pixel count the header declares (PNG, JPEG, GIF, BMP, WebP), 0 when unknown.

    Checked before decoding so a tiny file claiming 60000x60000 px (a decompression
    bomb) is refused instead of allocating gigabytes inside the server.
    imfuse.serving.limits.declared_size reads the same fields on the server side.
    """
    length = tf.strings.length(data)
    head = _head(data)
    magic = _magics(_padded_head(data))
    is_png = tf.logical_and(length >= 24, magic["png"])
    is_jpeg = tf.logical_and(length >= 4, magic["jpeg"])
    is_gif = tf.logical_and(length >= 10, magic["gif"])
    is_bmp = tf.logical_and(length >= 26, magic["bmp"])
    is_webp = tf.logical_and(length >= 20, magic["webp"])  # shorter fields read as zeros from the padded head

    def png():
        return _uint(head, 16, 4, big_endian=True) * _uint(head, 20, 4, big_endian=True)

    def jpeg():
        hw = tf.cast(tf.image.extract_jpeg_shape(data), tf.int64)
        return hw[0] * hw[1]

    def gif():
        return _uint(head, 6, 2) * _uint(head, 8, 2)

    return tf.case(
        [(is_png, png), (is_jpeg, jpeg), (is_gif, gif), (is_bmp, lambda: _bmp_pixels(head)),
         (is_webp, lambda: _webp_pixels(head))],
        default=lambda: tf.constant(0, tf.int64),
        exclusive=False,
    )


def is_supported_format(data: tf.Tensor) -> tf.Tensor:
    """True when the magic bytes are JPEG, PNG, GIF, BMP or WebP (so errors can name the input)."""
    # On the padded head, so short inputs fail the check rather than substr's range check.
    return tf.reduce_any(tf.stack(list(_magics(_padded_head(data)).values())))


def _decode_within_limit(data: tf.Tensor, channels: int, message: str) -> tf.Tensor:
    """tf.io.decode_image (uint8, first frame) once the header declares at most MAX_PIXELS."""
    check = tf.debugging.assert_less_equal(declared_pixels(data), tf.constant(MAX_PIXELS, tf.int64), message=message)
    with tf.control_dependencies([check]):
        return tf.io.decode_image(data, channels=channels, expand_animations=False, dtype=tf.uint8)


def decode_rgb(data: tf.Tensor, what: str) -> tf.Tensor:
    """Encoded bytes (scalar string) -> float32 (H, W, 3) in [0, 1]; first frame of animations.

    JPEG, PNG, GIF, BMP and WebP are accepted (tf.io.decode_image). Unknown/corrupt data,
    images over MAX_PIXELS or with a side under MIN_SIDE raise InvalidArgumentError.
    """
    # The first bytes are quoted as numbers: raw bytes in an error message are not text,
    # and TensorFlow then fails to raise the error at all (UnicodeDecodeError).
    known = tf.debugging.Assert(
        is_supported_format(data),
        [f"{what}: not an image in a supported format (JPEG, PNG, GIF, BMP, WebP); first byte values:",
         tf.io.decode_raw(tf.strings.substr(data, 0, 16), tf.uint8)],
        summarize=16,
    )
    with tf.control_dependencies([known]):
        image = _decode_within_limit(data, 3, f"{what}: declared image size is over the {MAX_PIXELS}-pixel limit")
    shape = tf.shape(image)
    small = tf.debugging.assert_greater_equal(
        tf.minimum(shape[0], shape[1]),
        MIN_SIDE,
        message=f"{what}: image is too small; the shorter side must be at least {MIN_SIDE} px",
    )
    with tf.control_dependencies([small]):
        image = tf.reshape(image, (shape[0], shape[1], 3))
    return tf.cast(image, tf.float32) / 255.0


def decode_mask(data: tf.Tensor, height: tf.Tensor, width: tf.Tensor) -> tf.Tensor:
    """Mask bytes -> float32 (H, W) in [0, 1] at the content size: alpha if present, else luminance.

    Empty bytes mean "no mask" (all ones), so a batch can mix masked and unmasked images.
    """

    def none():
        return tf.ones((height, width), tf.float32)

    def decoded():
        image = tf.cast(_decode_within_limit(data, 0, "mask_image: over the pixel limit"), tf.float32) / 255.0
        channels = tf.shape(image)[-1]
        luminance = tf.constant(LUMA_WEIGHTS, tf.float32)
        gray = tf.switch_case(
            tf.clip_by_value(channels - 1, 0, 3),
            branch_fns=[
                lambda: image[..., 0],  # L
                lambda: image[..., 1],  # LA: alpha
                lambda: tf.tensordot(image[..., :3], luminance, 1),  # RGB
                lambda: image[..., 3],  # RGBA: alpha
            ],
        )
        resized = tf.image.resize(gray[..., None], (height, width), method="bilinear", antialias=True)
        return tf.clip_by_value(resized[..., 0], 0.0, 1.0)

    return tf.cond(tf.strings.length(data) > 0, decoded, none)


def encode_png(rgb: tf.Tensor) -> tf.Tensor:
    """float (H, W, 3) in [0, 1] -> PNG bytes, rounding like imfuse.images.to_uint8."""
    clean = tf.where(tf.math.is_nan(rgb), tf.zeros_like(rgb), rgb)
    pixels = tf.cast(tf.clip_by_value(clean, 0.0, 1.0) * 255.0 + 0.5, tf.uint8)
    return tf.io.encode_png(pixels, compression=PNG_COMPRESSION)


def preserve_color(content: tf.Tensor, stylized: tf.Tensor) -> tf.Tensor:
    """Stylised luminance + content chroma (YIQ), as imfuse.color.preserve_color."""
    to_yiq = tf.constant(RGB_TO_YIQ.T, tf.float32)
    merged = tf.concat([tf.tensordot(stylized, to_yiq, 1)[..., :1], tf.tensordot(content, to_yiq, 1)[..., 1:]], axis=-1)
    return tf.clip_by_value(tf.tensordot(merged, tf.constant(YIQ_TO_RGB.T, tf.float32), 1), 0.0, 1.0)


def apply_mask(content: tf.Tensor, stylized: tf.Tensor, mask: tf.Tensor) -> tf.Tensor:
    """Stylised where mask is 1, content where 0, as imfuse.stylize.apply_mask."""
    m = mask[..., None]
    blended = m * stylized + (1.0 - m) * content
    return tf.where(tf.equal(m, 0.0), content, blended)


def broadcast_batch(values: tf.Tensor, batch: tf.Tensor, name: str) -> tf.Tensor:
    """Length-1 inputs apply to the whole batch; otherwise the length must equal the batch."""
    n = tf.shape(values)[0]
    ok = tf.logical_or(tf.equal(n, 1), tf.equal(n, batch))
    check = tf.debugging.Assert(
        ok, [f"input '{name}' must have 1 or batch-size entries; got", n, "for batch", batch]
    )
    with tf.control_dependencies([check]):
        target = tf.concat([[batch], tf.shape(values)[1:]], axis=0)
        return tf.broadcast_to(values, target)


def decode_batch(images: tf.Tensor, what: str) -> tuple[tf.RaggedTensor, tf.Tensor]:
    """A [B] string batch -> (flat pixels ragged [B, None], shapes int32 [B, 3]).

    Images in one request may differ in size, so they are decoded one by one; the caller
    batches them through the network when all shapes agree and loops otherwise.
    """

    def one(data):
        rgb = decode_rgb(data, what)
        shape = tf.shape(rgb)
        # tf.stack: a plain int tensor (a raw Shape output trips TF's type inference in map_fn).
        return tf.reshape(rgb, [-1]), tf.stack([shape[0], shape[1], shape[2]])

    return tf.map_fn(
        one,
        images,
        fn_output_signature=(
            tf.RaggedTensorSpec(shape=[None], dtype=tf.float32, ragged_rank=0),
            tf.TensorSpec([3], tf.int32),
        ),
    )


def square_resize(rgb: tf.Tensor, size: int) -> tf.Tensor:
    """Centre square crop + resize of one (H, W, 3) image (networks.preprocess_style on one item)."""
    from imfuse.networks.model import preprocess_style

    return preprocess_style(rgb[None], size)[0]
