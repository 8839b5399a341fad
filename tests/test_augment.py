import numpy as np
import tensorflow as tf

from protein_location.data import augment


def _image(size=32):
    return tf.constant(np.random.default_rng(0).uniform(0, 255, (size, size, 4)).astype("float32"))


def test_augment_keeps_shape_and_range_and_repeats_for_a_seed():
    image, config = _image(), augment.AugmentConfig(flips=True, crop_min_area=0.7, jitter=0.1)  # all on
    first = augment.augment(image, tf.constant([1, 2], tf.int64), config).numpy()
    again = augment.augment(image, tf.constant([1, 2], tf.int64), config).numpy()
    other = augment.augment(image, tf.constant([3, 4], tf.int64), config).numpy()
    assert first.shape == (32, 32, 4) and first.min() >= 0 and first.max() <= 255
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)


def test_every_augmentation_can_be_switched_off():
    image = _image()
    off = augment.AugmentConfig(flips=False, crop_min_area=1.0, jitter=0.0)
    for seed in range(5):
        np.testing.assert_array_equal(
            augment.augment(image, tf.constant([seed, 0], tf.int64), off).numpy(), image.numpy()
        )


def test_flips_only_give_one_of_the_8_symmetries():
    image = _image().numpy()
    symmetries = [np.rot90(m, k) for m in (image, image[:, ::-1]) for k in range(4)]
    flips_only = augment.AugmentConfig(flips=True, crop_min_area=1.0, jitter=0.0)
    seen = set()
    for seed in range(40):
        out = augment.augment(tf.constant(image), tf.constant([seed, 7], tf.int64), flips_only).numpy()
        matches = [i for i, s in enumerate(symmetries) if np.array_equal(out, s)]
        assert len(matches) == 1
        seen.add(matches[0])
    assert len(seen) == 8


def test_jitter_moves_each_channel_on_its_own():
    image = tf.fill([16, 16, 4], 100.0)
    jitter_only = augment.AugmentConfig(flips=False, crop_min_area=1.0, jitter=0.2)
    out = augment.augment(image, tf.constant([5, 5], tf.int64), jitter_only).numpy()
    channel_values = out.reshape(-1, 4)[0]
    assert np.all(out == channel_values)  # uniform within a channel
    assert len(set(channel_values.round(3))) == 4  # different per channel
    assert np.all(np.abs(channel_values - 100) <= 0.2 * 100 + 0.2 * 255)


def test_crop_zooms_in():
    # A centred bright square grows when a crop is resized back to full size.
    image = np.zeros((32, 32, 4), "float32")
    image[12:20, 12:20] = 255
    crop_only = augment.AugmentConfig(flips=False, crop_min_area=0.3, jitter=0.0)
    bright = [
        (augment.augment(tf.constant(image), tf.constant([s, 1], tf.int64), crop_only).numpy() > 128).sum()
        for s in range(10)
    ]
    assert max(bright) > (image > 128).sum()


def test_dihedral_views_are_the_8_symmetries_of_the_batch():
    batch = np.random.default_rng(1).integers(0, 255, (2, 8, 8, 4)).astype("uint8")
    views = augment.dihedral_views(tf.constant(batch)).numpy()
    assert views.shape == (8, 2, 8, 8, 4)
    expected = [np.rot90(m, k, axes=(1, 2)) for m in (batch, batch[:, :, ::-1]) for k in range(4)]
    for view in expected:
        assert any(np.array_equal(view, v) for v in views)
