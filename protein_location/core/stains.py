"""One rule for turning a raw stain file into its 8-bit grayscale signal.

One decoder and one resize, written with TensorFlow ops, used wherever raw
files are read: by conversion (`data_prep convert`), `predict --images` and
`explain` (through `raw_images.read_image`), and inside the SavedModel's
`predict_channels` signature, so training and serving see the same pixels.

- Colour files. HPAv18 images, as the common download scripts save them, are
  one RGB-tinted JPEG per stain: the stain's signal is drawn in its own
  colour and the other channels hold only JPEG bleed. A file with three or
  four colour channels is reduced to the channel of its stain's colour:
  red -> R, green -> G, blue -> B, yellow -> R. Yellow is drawn with R and G
  about equal; R is the one that matches HPA's own grayscale file of the same
  field (0.11 grey levels on average, against 0.72 for the mean of R and G
  and 3 to 21 levels for a luminance conversion, which also scales each stain
  differently: tests/data/README.md). A grayscale image saved as RGB has
  R = G = B, so the rule gives it back unchanged. An alpha channel is ignored.
- 16-bit files (HPA 2021 offered them) are scaled to 8 bits by rounding
  v / 257, so 65535 -> 255 and 0 -> 0 exactly, and a 16-bit file made from an
  8-bit one (v * 257) gives back the 8-bit values.
- Formats: what TensorFlow decodes (PNG, JPEG, GIF, BMP, WebP), chosen by
  the content, never by the file name. JPEGs use libjpeg's accurate integer
  IDCT, the one OpenCV and Pillow use. Raw TIFF stains (HPA's own downloads,
  `.tif.gz` too) have no TensorFlow decoder: `tiff_stains` reads them with
  tifffile, grayscale 8- or 16-bit by the same 16-bit rule, for conversion,
  `predict --images` and `explain`; the serving signatures take no TIFF.
- Size: `resize_rgby` area-resamples to the model's side and rounds to
  whole grey levels (what a record stores).
"""

import tensorflow as tf

# Index into R, G, B of the colour that carries each stain.
STAIN_COLOUR = {"red": 0, "green": 1, "blue": 2, "yellow": 0}


def _is_16bit_png(encoded):
    # PNG: 8-byte signature, IHDR length and type, width, height; then the bit depth.
    return tf.logical_and(tf.strings.substr(encoded, 0, 4) == b"\x89PNG", tf.strings.substr(encoded, 24, 1) == b"\x10")


def decode_stain(encoded, channel):
    """Encoded bytes of one stain file (scalar string) -> uint8 [H, W] by the
    rule above, `channel` the stain's name. Graph-friendly: the serving
    signatures call it inside their graph, `raw_images` inside its reader;
    every call runs one traced function (`decode_stain_file`)."""
    return decode_stain_file(encoded, STAIN_COLOUR[channel])


@tf.function(input_signature=[tf.TensorSpec([], tf.string), tf.TensorSpec([], tf.int32)])
def decode_stain_file(encoded, colour):
    """`decode_stain` with the stain's colour as an index into R, G, B: one
    function for the four stains, traced once per process (and stored once
    in a SavedModel), however many files and signatures call it."""

    def decode_16bit():
        pixels = tf.cast(tf.io.decode_png(encoded, channels=0, dtype=tf.uint16), tf.int32)
        return tf.cast((pixels + 128) // 257, tf.uint8)

    def decode_jpeg():
        # The accurate integer IDCT is libjpeg's default, the one OpenCV uses:
        # TF's default, the fast IDCT, is up to 4 grey levels off on HPAv18 JPEGs.
        return tf.io.decode_jpeg(encoded, channels=0, dct_method="INTEGER_ACCURATE")

    def decode_8bit():
        return tf.io.decode_image(encoded, channels=0, dtype=tf.uint8, expand_animations=False)

    is_jpeg = tf.strings.substr(encoded, 0, 3) == b"\xff\xd8\xff"
    pixels = tf.case([(_is_16bit_png(encoded), decode_16bit), (is_jpeg, decode_jpeg)], default=decode_8bit)
    plane = tf.cond(tf.shape(pixels)[-1] >= 3, lambda: tf.gather(pixels, colour, axis=-1), lambda: pixels[..., 0])
    return tf.ensure_shape(plane, [None, None])


def resize_rgby(pixels, size):
    """Images [H, W, C] or [B, H, W, C] of any dtype -> float32 [..., size,
    size, C], area-resampled and rounded to whole grey levels.

    The one resize of the project: conversion stores what it gives (as
    uint8), the serving signatures feed it to the model, so files sent to a
    SavedModel give the pixels it was trained on. (A mean over k x k blocks
    for integer ratios gives the same values here and was slower than
    TensorFlow's area kernel: measured 2048 -> 512, 512 -> 128.)
    """
    pixels = tf.convert_to_tensor(pixels)
    if pixels.shape.rank != 4:
        return _resize_one(pixels, size)
    shape = tf.shape(pixels)
    same_size = tf.reduce_all(tf.stack([shape[1], shape[2]]) == tf.cast(size, tf.int32))
    # Already at the size (records at the model's side): the area kernel would copy each pixel.
    resized = tf.cond(same_size, lambda: tf.round(tf.cast(pixels, tf.float32)), lambda: _resize_batch(pixels, size))
    if isinstance(size, int):
        resized = tf.ensure_shape(resized, [None, size, size, pixels.shape[-1]])
    return resized


def _resize_batch(pixels, size):
    # TensorFlow's area kernel runs on one thread: a batch resized image by
    # image, several at once, uses every core (512 -> 224 at batch 64 on 2
    # cores: 1.76x; bench/resize.py). Each image gets the same kernel, so the
    # values are those of one call on the whole batch.
    return tf.map_fn(
        lambda image: _resize_one(image, size),
        pixels,
        parallel_iterations=16,
        fn_output_signature=tf.TensorSpec([None, None, pixels.shape[-1]], tf.float32),
    )


def _resize_one(image, size):
    # The area kernel takes integer pixels as they are: no float copy of a large image first.
    return tf.round(tf.image.resize(image, [size, size], method="area"))
