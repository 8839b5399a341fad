"""THE TFRecord schema: the one place that knows how an example is laid out.

The keys, their types (FEATURE_SPEC) and the parse side live here; the
writer (`data_prep.tfrecord_lib`, which conversion calls) builds its
features from these keys, and a test round-trips the two. Readers (the
tf.data pipeline, `verify`, the exported `serve_examples` signature) call
`parse_example`. Keys follow the TF Model Garden `tf_example` convention.

Each record names the format of its image (`image/format`): `png` (schema
1, the default: a standard RGBA PNG whose channels are R, G, B, Y) or `raw`
(schema 2: the H x W x 4 uint8 bytes in row-major RGBY order, as numpy lays
them out). Raw records are the size of uncompressed PNGs and decode 2x
faster (docs/benchmarks.md); PNG is the documented contract other TF code
reads with `tf.io.decode_png`, and the only one that compresses. A dataset's
schema version is that of its format, so a PNG dataset is what schema-1
readers have always read.
"""

import functools

from protein_location.core.lazy_tensorflow import tf

IMAGE_FORMATS = ("png", "raw")
DEFAULT_IMAGE_FORMAT = "png"
SCHEMA_VERSIONS = {"png": 1, "raw": 2}  # the version a dataset of each format declares
READABLE_SCHEMA_VERSIONS = tuple(sorted(set(SCHEMA_VERSIONS.values())))

KEY_ENCODED = "image/encoded"
KEY_FORMAT = "image/format"
KEY_HEIGHT = "image/height"
KEY_WIDTH = "image/width"
KEY_CHANNELS = "image/channels"
KEY_SOURCE_ID = "image/source_id"
KEY_LABEL = "image/class/label"


@functools.cache
def feature_spec():
    """The keys and types a record is parsed with (`tf.io.parse_single_example`)."""
    return {
        KEY_ENCODED: tf.io.FixedLenFeature([], tf.string),
        KEY_FORMAT: tf.io.FixedLenFeature([], tf.string, default_value="png"),  # schema 1 wrote only png
        KEY_HEIGHT: tf.io.FixedLenFeature([], tf.int64),
        KEY_WIDTH: tf.io.FixedLenFeature([], tf.int64),
        KEY_CHANNELS: tf.io.FixedLenFeature([], tf.int64),
        KEY_SOURCE_ID: tf.io.FixedLenFeature([], tf.string),
        KEY_LABEL: tf.io.VarLenFeature(tf.int64),
    }


def __getattr__(name):
    # `records.FEATURE_SPEC`, built on first use: writing records needs no TensorFlow (`core.lazy_tensorflow`).
    if name == "FEATURE_SPEC":
        return feature_spec()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def parse_example(serialized, num_classes):
    """Serialized Example -> dict with `image` uint8 (H, W, 4), `source_id`,
    `label_indices` int64 [k] and `labels` float32 multi-hot [num_classes]
    (the dataset's `class_names` count, from dataset.json).

    Works on one scalar string tensor (use inside `Dataset.map`).
    """
    parsed = tf.io.parse_single_example(serialized, feature_spec())
    image = decode_image(parsed[KEY_ENCODED], parsed[KEY_FORMAT], parsed[KEY_HEIGHT], parsed[KEY_WIDTH])
    label_indices = tf.sparse.to_dense(parsed[KEY_LABEL])
    return {
        "image": image,
        "source_id": parsed[KEY_SOURCE_ID],
        "label_indices": label_indices,
        "labels": multi_hot(label_indices, num_classes),
    }


def decode_image(encoded, image_format, height, width):
    """A record's `image/encoded` -> uint8 [H, W, 4] RGBY, by its `image/format`:
    `raw` bytes reshaped to height x width x 4 (an error if their count
    differs), or a PNG."""
    image = tf.cond(
        image_format == "raw",
        lambda: tf.reshape(tf.io.decode_raw(encoded, tf.uint8), tf.stack([height, width, 4])),
        lambda: tf.io.decode_png(encoded, channels=4, dtype=tf.uint8),
    )
    return tf.ensure_shape(image, [None, None, 4])


def parse_label_indices(serialized):
    """Serialized Example -> its label indices int64 [k], without decoding the
    image (cheap enough to run on every record, e.g. to weight sampling)."""
    parsed = tf.io.parse_single_example(serialized, {KEY_LABEL: feature_spec()[KEY_LABEL]})
    return tf.sparse.to_dense(parsed[KEY_LABEL])


def multi_hot(label_indices, num_classes):
    """int label indices [k] -> float32 multi-hot [num_classes] (zeros when k=0)."""
    one_hot = tf.one_hot(label_indices, num_classes, dtype=tf.float32)
    # A sum, not a max: the max of an empty [0, C] tensor is -inf, not 0.
    return tf.minimum(tf.reduce_sum(one_hot, axis=0), 1.0)
