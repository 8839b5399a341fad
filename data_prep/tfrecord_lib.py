"""Writing examples in the TFRecord schema of `protein_location.core.records`
(keys and types live there): encode an RGBY image (raw bytes or PNG),
serialize a tf.train.Example. The data-creation side, as TF Model Garden's
`official/vision/data/tfrecord_lib.py` is beside its decoders."""

import cv2
import numpy as np
import tensorflow as tf

from protein_location.core.records import (DEFAULT_IMAGE_FORMAT, KEY_CHANNELS, KEY_ENCODED, KEY_FORMAT, KEY_HEIGHT,
                                           KEY_LABEL, KEY_SOURCE_ID, KEY_WIDTH)


def _check_rgby(image):
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 4:
        raise ValueError(f"expected a uint8 (H, W, 4) image, got {image.dtype} {image.shape}")


def encode_rgby(image, image_format=DEFAULT_IMAGE_FORMAT, png_compression=0):
    """uint8 (H, W, 4) RGBY -> the bytes of `image/encoded` in `image_format`
    (records.IMAGE_FORMATS): `raw` (the array's bytes) or `png`."""
    if image_format == "raw":
        _check_rgby(image)
        return np.ascontiguousarray(image).tobytes()
    if image_format == "png":
        return encode_rgby_png(image, png_compression)
    raise ValueError(f"unknown image format {image_format!r}")


def encode_rgby_png(image, compression=0):
    """uint8 (H, W, 4) RGBY -> PNG bytes that `tf.io.decode_png` reads as RGBY.

    OpenCV writes 4-channel arrays as BGRA, so R and B are swapped going in.
    compression 0 stores pixels unfiltered and uncompressed: about 6x faster
    to encode and faster to decode than OpenCV's default, for shards about
    1.6x larger (measured on 512 px images, README); 1-9 trade speed for size.
    """
    _check_rgby(image)
    params = [cv2.IMWRITE_PNG_COMPRESSION, compression]
    if compression == 0:
        params += [cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_NONE]
    ok, encoded = cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGBA2BGRA), params)
    if not ok:
        raise ValueError("PNG encoding failed")
    return encoded.tobytes()


def serialize_example(image, source_id, label_indices, image_format=DEFAULT_IMAGE_FORMAT):
    """One HPA image (uint8 RGBY) and its labels -> serialized tf.train.Example."""
    height, width, _ = image.shape
    return serialize_encoded(encode_rgby(image, image_format), image_format, height, width, source_id,
                             label_indices)


def serialize_encoded(encoded, image_format, height, width, source_id, label_indices):
    """The same from an already encoded RGBY image (what conversion workers send)."""
    # Filled in place: nested messages passed to constructors are copied, and
    # four copies of a 1 MB image cost 1.5 ms, more than encoding it.
    example = tf.train.Example()
    features = example.features.feature
    features[KEY_ENCODED].bytes_list.value.append(encoded)
    features[KEY_FORMAT].bytes_list.value.append(image_format.encode())
    features[KEY_HEIGHT].int64_list.value.append(height)
    features[KEY_WIDTH].int64_list.value.append(width)
    features[KEY_CHANNELS].int64_list.value.append(4)
    features[KEY_SOURCE_ID].bytes_list.value.append(source_id.encode())
    features[KEY_LABEL].int64_list.value.extend(sorted(label_indices))
    # `features` is a protobuf map: without deterministic=True its entries are
    # written in a per-process hash order, and shards differ from run to run.
    return example.SerializeToString(deterministic=True)
