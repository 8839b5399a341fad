"""THE TFRecord schema: the one place that knows how an example is laid out.

Writers (`data_prep.convert`) call `serialize_example`; readers (the tf.data
pipeline, `verify`, the exported `serve_examples` path later) call
`parse_example`. Keys follow the TF Model Garden `tf_example` convention.
"""

import cv2
import numpy as np
import tensorflow as tf

SCHEMA_VERSION = 1
IMAGE_FORMAT = "png"

KEY_ENCODED = "image/encoded"
KEY_FORMAT = "image/format"
KEY_HEIGHT = "image/height"
KEY_WIDTH = "image/width"
KEY_CHANNELS = "image/channels"
KEY_SOURCE_ID = "image/source_id"
KEY_LABEL = "image/class/label"

FEATURE_SPEC = {
    KEY_ENCODED: tf.io.FixedLenFeature([], tf.string),
    KEY_FORMAT: tf.io.FixedLenFeature([], tf.string, default_value=IMAGE_FORMAT),
    KEY_HEIGHT: tf.io.FixedLenFeature([], tf.int64),
    KEY_WIDTH: tf.io.FixedLenFeature([], tf.int64),
    KEY_CHANNELS: tf.io.FixedLenFeature([], tf.int64),
    KEY_SOURCE_ID: tf.io.FixedLenFeature([], tf.string),
    KEY_LABEL: tf.io.VarLenFeature(tf.int64),
}


def encode_rgby_png(image, compression=0):
    """uint8 (H, W, 4) RGBY -> PNG bytes that `tf.io.decode_png` reads as RGBY.

    OpenCV writes 4-channel arrays as BGRA, so R and B are swapped going in.
    compression 0 stores pixels unfiltered and uncompressed: about 6x faster
    to encode and faster to decode than OpenCV's default, for shards about
    1.6x larger (measured on 512 px images, README); 1-9 trade speed for size.
    """
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 4:
        raise ValueError(f"expected a uint8 (H, W, 4) image, got {image.dtype} {image.shape}")
    params = [cv2.IMWRITE_PNG_COMPRESSION, compression]
    if compression == 0:
        params += [cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_NONE]
    ok, encoded = cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGBA2BGRA), params)
    if not ok:
        raise ValueError("PNG encoding failed")
    return encoded.tobytes()


def serialize_example(image, source_id, label_indices):
    """One HPA image (uint8 RGBY) and its labels -> serialized tf.train.Example."""
    height, width, _ = image.shape
    return serialize_encoded(encode_rgby_png(image), height, width, source_id, label_indices)


def serialize_encoded(encoded_png, height, width, source_id, label_indices):
    """The same from an already encoded RGBY PNG (what conversion workers send)."""

    def _bytes(value):
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))

    def _ints(values):
        return tf.train.Feature(int64_list=tf.train.Int64List(value=list(values)))

    features = {
        KEY_ENCODED: _bytes(encoded_png),
        KEY_FORMAT: _bytes(IMAGE_FORMAT.encode()),
        KEY_HEIGHT: _ints([height]),
        KEY_WIDTH: _ints([width]),
        KEY_CHANNELS: _ints([4]),
        KEY_SOURCE_ID: _bytes(source_id.encode()),
        KEY_LABEL: _ints(sorted(label_indices)),
    }
    example = tf.train.Example(features=tf.train.Features(feature=features))
    # `features` is a protobuf map: without deterministic=True its entries are
    # written in a per-process hash order, and shards differ from run to run.
    return example.SerializeToString(deterministic=True)


def parse_example(serialized, num_classes):
    """Serialized Example -> dict with `image` uint8 (H, W, 4), `source_id`,
    `label_indices` int64 [k] and `labels` float32 multi-hot [num_classes]
    (the dataset's `class_names` count, from dataset.json).

    Works on one scalar string tensor (use inside `Dataset.map`).
    """
    parsed = tf.io.parse_single_example(serialized, FEATURE_SPEC)
    image = tf.io.decode_png(parsed[KEY_ENCODED], channels=4, dtype=tf.uint8)
    image = tf.ensure_shape(image, [None, None, 4])
    label_indices = tf.sparse.to_dense(parsed[KEY_LABEL])
    return {
        "image": image,
        "source_id": parsed[KEY_SOURCE_ID],
        "label_indices": label_indices,
        "labels": multi_hot(label_indices, num_classes),
    }


def parse_label_indices(serialized):
    """Serialized Example -> its label indices int64 [k], without decoding the
    image (cheap enough to run on every record, e.g. to weight sampling)."""
    parsed = tf.io.parse_single_example(serialized, {KEY_LABEL: FEATURE_SPEC[KEY_LABEL]})
    return tf.sparse.to_dense(parsed[KEY_LABEL])


def multi_hot(label_indices, num_classes):
    """int label indices [k] -> float32 multi-hot [num_classes] (zeros when k=0)."""
    one_hot = tf.one_hot(label_indices, num_classes, dtype=tf.float32)
    # A sum, not a max: the max of an empty [0, C] tensor is -inf, not 0.
    return tf.minimum(tf.reduce_sum(one_hot, axis=0), 1.0)
