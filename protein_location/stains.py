"""One rule for turning a raw stain file into its 8-bit grayscale signal.

Used wherever raw files are read: by `data_prep` (conversion, `predict
--images`, `explain`, through OpenCV) and by the SavedModel's
`predict_channels` signature (through TensorFlow), so training and serving
see the same pixels.

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
"""

import numpy as np
import tensorflow as tf

# Index into R, G, B of the colour that carries each stain.
STAIN_COLOUR = {"red": 0, "green": 1, "blue": 2, "yellow": 0}


def to_8bit(array):
    """uint16 -> uint8 by round(v / 257) (integer arithmetic); uint8 as is."""
    if array.dtype == np.uint8:
        return array
    return ((array.astype(np.uint32) + 128) // 257).astype(np.uint8)


def stain_signal(array, channel):
    """A decoded stain file, (H, W) or (H, W, C) in RGB(A) order -> (H, W): the
    channel of the stain's colour when C >= 3, the gray channel otherwise."""
    if array.ndim == 2:
        return array
    if array.shape[2] >= 3:
        return array[..., STAIN_COLOUR[channel]]
    return array[..., 0]  # gray + alpha


def _is_16bit_png(encoded):
    # PNG: 8-byte signature, IHDR length and type, width, height; then the bit depth.
    return tf.logical_and(tf.strings.substr(encoded, 0, 4) == b"\x89PNG",
                          tf.strings.substr(encoded, 24, 1) == b"\x10")


def decode_stain_tf(encoded, channel):
    """Encoded PNG/JPEG/BMP/GIF bytes of one stain -> uint8 [H, W], by the rule
    above, with TensorFlow ops (for serving signatures). The decoder is chosen
    from the content, never from a file name."""

    def decode_16bit():
        pixels = tf.cast(tf.io.decode_png(encoded, channels=0, dtype=tf.uint16), tf.int32)
        return tf.cast((pixels + 128) // 257, tf.uint8)

    def decode_jpeg():
        # The accurate integer IDCT is libjpeg's default, the one OpenCV uses:
        # it gives the conversion's pixels bit for bit (TF's default, the fast
        # IDCT, is up to 4 grey levels off on HPAv18 JPEGs).
        return tf.io.decode_jpeg(encoded, channels=0, dct_method="INTEGER_ACCURATE")

    def decode_8bit():
        return tf.io.decode_image(encoded, channels=0, dtype=tf.uint8, expand_animations=False)

    is_jpeg = tf.strings.substr(encoded, 0, 3) == b"\xff\xd8\xff"
    pixels = tf.case([(_is_16bit_png(encoded), decode_16bit), (is_jpeg, decode_jpeg)], default=decode_8bit)
    colour = STAIN_COLOUR[channel]
    return tf.cond(tf.shape(pixels)[-1] >= 3, lambda: pixels[..., colour], lambda: pixels[..., 0])
