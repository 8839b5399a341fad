"""Image augmentations as tf ops, run inside the tf.data pipeline.

Every op is stateless and takes its seed from the pipeline, so a run repeats
for a seed whatever the parallelism of the map that calls it.
"""

import dataclasses

import tensorflow as tf


@dataclasses.dataclass(frozen=True)
class AugmentConfig:
    """Training augmentations; each off when set to its neutral value.

    Attributes:
        flips: one of the 8 flips/rotations of the square.
        crop_min_area: random crop of at least this share of the image,
            resized back (1.0: off).
        jitter: per-channel brightness/contrast jitter amplitude (0: off).
    """

    # Flips/rotations only by default: at 20 epochs on ~1,000 images the
    # network underfits, and crop and jitter cost held-out macro F1 (docs/training.md,
    # "Defaults"); on more data or longer runs, try them.
    flips: bool = True
    crop_min_area: float = 1.0
    jitter: float = 0.0


def random_dihedral(image, seed):
    """One of the 8 flips/rotations of the square, chosen by a stateless seed.

    Cells have no preferred orientation under the microscope, so every one of
    the 8 symmetries of the image is an equally valid view.
    """
    k = tf.random.stateless_uniform([], seed, minval=0, maxval=4, dtype=tf.int32)
    image = tf.image.rot90(image, k)
    flip_seed = tf.random.experimental.stateless_fold_in(seed, 1)
    return tf.image.stateless_random_flip_left_right(image, flip_seed)


def random_crop_resize(image, seed, min_area):
    """A random crop covering at least `min_area` of the image, resized back."""
    size = tf.shape(image)[:2]
    begin, crop_size, _ = tf.image.stateless_sample_distorted_bounding_box(
        tf.shape(image),
        bounding_boxes=tf.constant([[[0.0, 0.0, 1.0, 1.0]]]),
        seed=seed,
        min_object_covered=min_area,
        aspect_ratio_range=(3 / 4, 4 / 3),
        area_range=(min_area, 1.0),
        use_image_if_no_bounding_boxes=True,
    )
    crop = tf.slice(image, begin, crop_size)
    return tf.image.resize(crop, size, method="bilinear")


def random_channel_jitter(image, seed, amount):
    """Scales (contrast) and shifts (brightness) each stain independently.

    Stain intensities vary between HPA plates and microscopes channel by
    channel, so each channel gets its own factor in [1-amount, 1+amount] and
    shift in [-amount, amount] of the 0-255 range.
    """
    scale_seed, shift_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    scale = tf.random.stateless_uniform([4], scale_seed, 1.0 - amount, 1.0 + amount)
    shift = tf.random.stateless_uniform([4], shift_seed, -amount, amount) * 255.0
    return tf.clip_by_value(image * scale + shift, 0.0, 255.0)


def augment(image, seed, config):
    """float32 [S, S, 4] image on 0-255 -> the augmented image, same shape."""
    flip_seed, crop_seed, jitter_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 3))
    if config.flips:
        image = random_dihedral(image, flip_seed)
    if config.crop_min_area < 1.0:
        image = random_crop_resize(image, crop_seed, config.crop_min_area)
    if config.jitter > 0:
        image = random_channel_jitter(image, jitter_seed, config.jitter)
    return image


DIHEDRAL_VIEWS = 8


def dihedral_view(images, index):
    """[B, H, W, C] -> view `index` (0-7) of the 8 flips/rotations: views
    4-7 are views 0-3 of the mirrored batch; view 0 is the batch itself."""
    flipped = tf.reverse(images, axis=[2]) if index >= 4 else images
    return tf.image.rot90(flipped, index % 4)


def dihedral_views(images):
    """[B, H, W, C] -> the 8 flips/rotations of the batch, [8, B, H, W, C] (for TTA)."""
    return tf.stack([dihedral_view(images, index) for index in range(DIHEDRAL_VIEWS)])
