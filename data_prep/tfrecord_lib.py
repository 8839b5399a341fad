"""Writing examples in the TFRecord schema of `protein_location.core.records`
(keys and types live there): encode an RGBY image (raw bytes or PNG),
serialize a tf.train.Example, write TFRecord files. The data-creation side,
as TF Model Garden's `official/vision/data/tfrecord_lib.py` is beside its
decoders.

Without TensorFlow: a conversion worker imports this module and starts in
a fraction of a second (`core.file_system`). The Example is encoded by
hand in protobuf's wire format, as `SerializeToString(deterministic=True)`
writes it, and a local TFRecord file is framed here (length, data, each
with its masked CRC-32C, by google-crc32c's C code); tests compare both
with TensorFlow's, byte for byte. Other paths (gs://) go through
`tf.io.TFRecordWriter`.
"""

import hashlib
import struct

import cv2
import google_crc32c
import numpy as np

from protein_location.core import file_system
from protein_location.core.lazy_tensorflow import tf
from protein_location.core.records import (
    DEFAULT_IMAGE_FORMAT,
    KEY_CHANNELS,
    KEY_ENCODED,
    KEY_FORMAT,
    KEY_HEIGHT,
    KEY_LABEL,
    KEY_SOURCE_ID,
    KEY_WIDTH,
)


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
    1.6x larger (measured on 512 px images, docs/benchmarks.md); 1-9 trade speed for size.
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
    return serialize_encoded(encode_rgby(image, image_format), image_format, height, width, source_id, label_indices)


def serialize_encoded(encoded, image_format, height, width, source_id, label_indices):
    """The same from an already encoded RGBY image (what conversion workers send):
    the bytes of `tf.train.Example.SerializeToString(deterministic=True)`."""
    features = {
        KEY_ENCODED: _bytes_feature(encoded),
        KEY_FORMAT: _bytes_feature(image_format.encode()),
        KEY_HEIGHT: _int64_feature([height]),
        KEY_WIDTH: _int64_feature([width]),
        KEY_CHANNELS: _int64_feature([4]),
        KEY_SOURCE_ID: _bytes_feature(source_id.encode()),
        KEY_LABEL: _int64_feature(sorted(label_indices)),
    }
    # `features` is a protobuf map: deterministic serialization writes its entries in key order.
    entries = b"".join(
        _field(1, _field(1, key.encode()) + _field(2, feature)) for key, feature in sorted(features.items())
    )
    return _field(1, entries)


# Protobuf's wire format, the three shapes an Example needs: varints, length-delimited fields, packed int64s.
def _varint(value):
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _field(number, payload):
    """A length-delimited field (wire type 2): a message, bytes or a packed list."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _bytes_feature(value):
    return _field(1, _field(1, value))  # Feature.bytes_list (1) -> BytesList.value (1)


def _int64_feature(values):
    # Feature.int64_list (3) -> Int64List.value (1, packed); non-negative values here (sizes, label indices).
    packed = b"".join(_varint(int(v)) for v in values)
    return _field(3, _field(1, packed) if values else b"")


def _masked_crc32c(data):
    crc = google_crc32c.value(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


class TFRecordFile:
    """Writes records to `path` in the TFRecord framing, and the sha256 of
    what it wrote (`sha256`, once closed): a local file by hand, any other
    path through `tf.io.TFRecordWriter`, whose bytes are the same."""

    def __init__(self, path):
        self.path = path
        self._digest = hashlib.sha256() if file_system.is_local(path) else None
        self._file = open(path, "wb") if self._digest is not None else tf.io.TFRecordWriter(path)
        self.sha256 = None

    def write(self, record):
        if self._digest is None:
            self._file.write(record)
            return
        length = struct.pack("<Q", len(record))
        for chunk in (
            length,
            struct.pack("<I", _masked_crc32c(length)),
            record,
            struct.pack("<I", _masked_crc32c(record)),
        ):
            self._file.write(chunk)
            self._digest.update(chunk)

    def close(self):
        self._file.close()
        if self._digest is not None:
            self.sha256 = self._digest.hexdigest()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()
