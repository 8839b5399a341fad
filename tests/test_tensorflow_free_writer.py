"""A conversion worker writes shards without TensorFlow (`core.file_system`,
`tfrecord_lib`, `stain_reader`): what it writes must be what TensorFlow's
own writer, serializer and resize give, byte for byte, and it must start
without loading TensorFlow."""

import hashlib
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from data_prep import stain_reader, tfrecord_lib
from protein_location.core import records, stains
from tests.helpers import ROOT


def _tensorflow_example(encoded, image_format, height, width, source_id, labels):
    example = tf.train.Example()
    feature = example.features.feature
    feature[records.KEY_ENCODED].bytes_list.value.append(encoded)
    feature[records.KEY_FORMAT].bytes_list.value.append(image_format.encode())
    feature[records.KEY_HEIGHT].int64_list.value.append(height)
    feature[records.KEY_WIDTH].int64_list.value.append(width)
    feature[records.KEY_CHANNELS].int64_list.value.append(4)
    feature[records.KEY_SOURCE_ID].bytes_list.value.append(source_id.encode())
    feature[records.KEY_LABEL].int64_list.value.extend(sorted(labels))
    return example.SerializeToString(deterministic=True)


@pytest.mark.parametrize(
    "num_bytes, labels, source_id, side",
    [
        (0, [], "", 1),
        (5, [0], "a", 127),  # one-byte varints at their edge
        (300, [27, 3, 0, 18], "x" * 200, 128),  # two-byte lengths and varints
        (3 << 20, list(range(28)), "00070df0-bbc3-11e8-b2bc-ac1f6b6435d0", 3072),  # a 3 MiB image: three-byte length
    ],
)
def test_examples_are_serialized_as_tensorflow_serializes_them(num_bytes, labels, source_id, side):
    encoded = np.random.default_rng(num_bytes).bytes(num_bytes)
    assert tfrecord_lib.serialize_encoded(encoded, "raw", side, side + 1, source_id, labels) == _tensorflow_example(
        encoded, "raw", side, side + 1, source_id, labels
    )


def test_a_tfrecord_file_is_framed_as_tensorflow_frames_it(tmp_path):
    payloads = [np.random.default_rng(n).bytes(n) for n in (0, 1, 1000, 1 << 20)]
    with tfrecord_lib.TFRecordFile(str(tmp_path / "ours.tfrecord")) as ours:
        for payload in payloads:
            ours.write(payload)
    with tf.io.TFRecordWriter(str(tmp_path / "tensorflow.tfrecord")) as theirs:
        for payload in payloads:
            theirs.write(payload)
    data = (tmp_path / "ours.tfrecord").read_bytes()
    assert data == (tmp_path / "tensorflow.tfrecord").read_bytes()
    assert ours.sha256 == hashlib.sha256(data).hexdigest()
    assert [r.numpy() for r in tf.data.TFRecordDataset(str(tmp_path / "ours.tfrecord"))] == payloads


@pytest.mark.parametrize("ratio", range(2, stain_reader.MAX_BLOCK_RATIO + 1))
def test_whole_ratio_resize_gives_tensorflows_area_kernel_values(ratio):
    # One pixel of each value 0-255 in a block of zeros (and of 255s, and of 128s) puts every block sum,
    # and so every rounding tie k * k can make, through both resizes.
    side = 16
    image = np.zeros((side * ratio, side * ratio, 4), np.uint8)
    values = np.arange(256, dtype=np.uint8).reshape(side, side)
    image[:, :, 2], image[:, :, 3] = 255, 128
    for channel in range(4):
        image[::ratio, ::ratio, channel] = values
    image[1::ratio, 1::ratio, 1] = 255 - values
    expected = tf.cast(stains.resize_rgby(image, side), tf.uint8).numpy()
    np.testing.assert_array_equal(stain_reader.resize_image(image, side), expected)


def test_a_conversion_worker_imports_no_tensorflow():
    code = (
        "import sys, pickle; import data_prep.shard_writer, data_prep.shard_plan, data_prep.stain_reader; "
        "print(sorted(m for m in ('tensorflow', 'keras', 'sklearn') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
