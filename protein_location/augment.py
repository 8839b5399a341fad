"""Image augmentations as tf ops, run inside the tf.data pipeline."""

import tensorflow as tf


def random_dihedral(image, seed):
    """One of the 8 flips/rotations of the square, chosen by a stateless seed.

    Cells have no preferred orientation under the microscope, so every one of
    the 8 symmetries of the image is an equally valid view.
    """
    k = tf.random.stateless_uniform([], seed, minval=0, maxval=4, dtype=tf.int32)
    image = tf.image.rot90(image, k)
    flip_seed = tf.random.experimental.stateless_fold_in(seed, 1)
    return tf.image.stateless_random_flip_left_right(image, flip_seed)
