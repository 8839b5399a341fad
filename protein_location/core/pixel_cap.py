"""The pixel cap of the serving signatures, checked before anything is
decoded or resized: from an image tensor's shape, or from the header of
encoded image bytes (what `tf.io.decode_image` reads)."""

import tensorflow as tf


def assert_pixel_cap(height, width, max_pixels, what="image"):
    """The op refusing an image of height x width pixels over `max_pixels`,
    with the message "<what> of HxW pixels is over the cap of N pixels".
    A shape check only; height and width are checked one by one first, so
    their product cannot overflow."""
    height, width, max_pixels = (tf.cast(v, tf.int64) for v in (height, width, max_pixels))
    within = tf.logical_and(tf.logical_and(height <= max_pixels, width <= max_pixels), height * width <= max_pixels)
    message = tf.strings.format(what + " of {}x{} pixels is over the cap of {} pixels", (height, width, max_pixels))
    return tf.debugging.Assert(within, [message])


def _unsigned(encoded, offset, size, little_endian):
    data = tf.cast(tf.io.decode_raw(tf.strings.substr(encoded, offset, size), tf.uint8), tf.int64)
    weights = [256**i for i in range(size)]
    return tf.reduce_sum(data * tf.constant(weights if little_endian else weights[::-1], tf.int64))


@tf.function(input_signature=[tf.TensorSpec([], tf.string)])
def encoded_image_shape(encoded):
    """[height, width] int64 of encoded image bytes, read from the header
    alone: PNG (IHDR), JPEG (`tf.io.extract_jpeg_shape`), GIF (logical
    screen), BMP, WebP (VP8, VP8L, VP8X) -- what `tf.io.decode_image` reads.
    [0, 0] for anything else, which the decoder then refuses itself. One
    traced function, whichever file or signature calls it."""
    length = tf.strings.length(encoded)

    def starts(magic, offset=0):
        # substr fails on a position past the end: clipped, and the length checked.
        return tf.logical_and(
            length >= offset + len(magic), tf.strings.substr(encoded, tf.minimum(offset, length), len(magic)) == magic
        )

    def sized(minimum, condition):
        return tf.logical_and(length >= minimum, condition)

    def bitfield(value, shift, bits):
        return tf.bitwise.bitwise_and(tf.bitwise.right_shift(value, shift), (1 << bits) - 1)

    def signed32(offset):
        value = _unsigned(encoded, offset, 4, little_endian=True)
        return tf.abs(tf.where(value >= 2**31, value - 2**32, value))

    webp = tf.logical_and(starts(b"RIFF"), starts(b"WEBP", 8))
    cases = [
        (
            sized(24, starts(b"\x89PNG\r\n\x1a\n")),
            lambda: tf.stack([_unsigned(encoded, 20, 4, False), _unsigned(encoded, 16, 4, False)]),
        ),
        (starts(b"\xff\xd8\xff"), lambda: tf.cast(tf.io.extract_jpeg_shape(encoded)[:2], tf.int64)),
        (
            sized(10, starts(b"GIF8")),
            lambda: tf.stack([_unsigned(encoded, 8, 2, True), _unsigned(encoded, 6, 2, True)]),
        ),
        (sized(26, starts(b"BM")), lambda: tf.stack([signed32(22), signed32(18)])),
        (
            sized(30, tf.logical_and(webp, starts(b"VP8 ", 12))),
            lambda: tf.stack(
                [bitfield(_unsigned(encoded, 28, 2, True), 0, 14), bitfield(_unsigned(encoded, 26, 2, True), 0, 14)]
            ),
        ),
        (
            sized(25, tf.logical_and(webp, starts(b"VP8L", 12))),
            lambda: tf.stack(
                [
                    bitfield(_unsigned(encoded, 21, 4, True), 14, 14) + 1,
                    bitfield(_unsigned(encoded, 21, 4, True), 0, 14) + 1,
                ]
            ),
        ),
        (
            sized(30, tf.logical_and(webp, starts(b"VP8X", 12))),
            lambda: tf.stack([_unsigned(encoded, 27, 3, True) + 1, _unsigned(encoded, 24, 3, True) + 1]),
        ),
    ]
    return tf.case(cases, default=lambda: tf.zeros([2], tf.int64))
