import numpy as np
import pytest
import tensorflow as tf

from data_prep import tfrecord_lib
from protein_location.core import records


def _rgby_image(height=12, width=10):
    image = np.zeros((height, width, 4), np.uint8)
    for channel, value in enumerate((10, 80, 160, 240)):  # R, G, B, Y distinct
        image[..., channel] = value
    image[0, 0] = (1, 2, 3, 4)
    return image


@pytest.mark.parametrize("image_format", records.IMAGE_FORMATS)
def test_serialize_parse_round_trip_keeps_pixels_channel_order_and_labels(image_format):
    image = _rgby_image()
    serialized = tfrecord_lib.serialize_example(image, "00070df0-bbc3-11e8-b2bc-ac1f6b6435d0", [16, 0], image_format)
    parsed = records.parse_example(tf.constant(serialized), 28)
    np.testing.assert_array_equal(parsed["image"].numpy(), image)
    assert parsed["source_id"].numpy() == b"00070df0-bbc3-11e8-b2bc-ac1f6b6435d0"
    assert parsed["label_indices"].numpy().tolist() == [0, 16]
    multi_hot = parsed["labels"].numpy()
    assert multi_hot.dtype == np.float32 and multi_hot.shape == (28,)
    assert np.flatnonzero(multi_hot).tolist() == [0, 16]


def test_example_has_the_documented_keys():
    example = tf.train.Example.FromString(tfrecord_lib.serialize_example(_rgby_image(), "x1", [3]))
    feature = example.features.feature
    assert sorted(feature) == sorted(
        [
            "image/encoded",
            "image/format",
            "image/height",
            "image/width",
            "image/channels",
            "image/source_id",
            "image/class/label",
        ]
    )
    assert feature["image/format"].bytes_list.value == [b"png"]  # the default
    assert feature["image/height"].int64_list.value == [12]
    assert feature["image/width"].int64_list.value == [10]
    assert feature["image/channels"].int64_list.value == [4]
    # Stored as a standard RGBA PNG whose channels are R, G, B, Y.
    decoded = tf.io.decode_png(feature["image/encoded"].bytes_list.value[0], channels=4).numpy()
    assert decoded[5, 5].tolist() == [10, 80, 160, 240]


def test_raw_records_hold_the_array_bytes():
    example = tf.train.Example.FromString(tfrecord_lib.serialize_example(_rgby_image(), "x1", [3], "raw"))
    assert example.features.feature["image/format"].bytes_list.value == [b"raw"]
    # The H x W x 4 bytes in row-major order, channels R, G, B, Y.
    assert example.features.feature["image/encoded"].bytes_list.value[0] == _rgby_image().tobytes()


def test_records_without_a_format_parse_as_png():
    """Records of foreign writers may leave out image/format: they parse as
    PNG, as schema 1 has always read them."""
    image = _rgby_image()
    example = tf.train.Example.FromString(tfrecord_lib.serialize_example(image, "x1", [3], "png"))
    del example.features.feature["image/format"]
    parsed = records.parse_example(tf.constant(example.SerializeToString()), 28)
    np.testing.assert_array_equal(parsed["image"].numpy(), image)


def test_a_raw_record_whose_bytes_do_not_fill_its_shape_is_an_error():
    example = tf.train.Example.FromString(tfrecord_lib.serialize_example(_rgby_image(), "x1", [3], "raw"))
    example.features.feature["image/height"].int64_list.value[0] = 13
    with pytest.raises(tf.errors.InvalidArgumentError, match="Input to reshape is a tensor with 480 values"):
        records.parse_example(tf.constant(example.SerializeToString()), 28)


def test_unlabeled_example_parses_to_all_zero_labels():
    parsed = records.parse_example(tf.constant(tfrecord_lib.serialize_example(_rgby_image(), "test1", [])), 28)
    assert parsed["label_indices"].numpy().size == 0
    assert parsed["labels"].numpy().tolist() == [0.0] * 28
