"""Writing examples in the TFRecord schema of `protein_location.core.records`
(keys and types live there): PNG-encode an RGBY image, serialize a
tf.train.Example. The data-creation side, as TF Model Garden's
`official/vision/data/tfrecord_lib.py` is beside its decoders."""

import cv2
import numpy as np
import tensorflow as tf

from protein_location.core.records import (IMAGE_FORMAT, KEY_CHANNELS, KEY_ENCODED, KEY_FORMAT, KEY_HEIGHT,
                                           KEY_LABEL, KEY_SOURCE_ID, KEY_WIDTH)


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
