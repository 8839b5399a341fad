"""tf.data pipelines: shards -> interleave -> parse -> decode -> augment -> batch -> prefetch.

One function builds every pipeline (training, evaluation, prediction); the
record layout is known only to `records.parse_example`.
"""

import tensorflow as tf

from protein_location import augment, manifest as manifest_lib, records

AUTOTUNE = tf.data.AUTOTUNE


def make_dataset(
    data_dir,
    split,
    batch_size,
    image_size=None,
    training=False,
    seed=0,
    shuffle_buffer=2048,
    with_ids=False,
    fold=None,
    augment_config=augment.AugmentConfig(),
):
    """Batches of (image float32 [B, S, S, 4] on 0-255, labels float32 [B, 28]).

    Args:
        data_dir: dataset folder holding dataset.json and the shards.
        split: "train", "val" or "test".
        batch_size: global batch size.
        image_size: side the model takes; images of another size are
            area-resized. None keeps the stored size.
        training: shuffle shards and examples, augment, drop the last partial
            batch; otherwise the order is the manifest's and deterministic.
        seed: seeds shuffling and augmentation, so runs repeat.
        shuffle_buffer: examples held for shuffling when training.
        with_ids: also yield the `source_id` strings (for prediction).
        fold: for a dataset converted with --folds, the fold held out as "val".
        augment_config: the augmentations applied when training.
    """
    manifest = manifest_lib.load_manifest(data_dir)
    files, num_examples, _ = manifest_lib.split_summary(data_dir, manifest, split, fold)
    stored_size = manifest["image_size"]
    image_size = image_size or stored_size

    dataset = tf.data.Dataset.from_tensor_slices(files)
    if training:
        dataset = dataset.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.interleave(
        tf.data.TFRecordDataset,
        cycle_length=min(len(files), 16),
        num_parallel_calls=AUTOTUNE,
        deterministic=True,
    )
    # TFRecord files do not know their length; the manifest does. A known
    # cardinality gives Keras a full progress bar and a definite epoch end.
    dataset = dataset.apply(tf.data.experimental.assert_cardinality(num_examples))
    if training:
        dataset = dataset.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
        # One stateless seed pair per example, new each epoch: augmentation
        # repeats for a seed whatever the parallelism of the map below.
        seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
        dataset = tf.data.Dataset.zip(dataset, seeds)
    else:
        dataset = dataset.map(lambda serialized: (serialized, tf.zeros([2], tf.int64)))

    def to_model_inputs(serialized, example_seed):
        example = records.parse_example(serialized)
        image = tf.cast(example["image"], tf.float32)
        if image_size != stored_size:
            image = tf.image.resize(image, [image_size, image_size], method="area")
        image = tf.ensure_shape(image, [image_size, image_size, 4])
        if training:
            image = augment.augment(image, example_seed, augment_config)
        if with_ids:
            return image, example["labels"], example["source_id"]
        return image, example["labels"]

    dataset = dataset.map(to_model_inputs, num_parallel_calls=AUTOTUNE, deterministic=True)
    dataset = dataset.batch(batch_size, drop_remainder=training)
    return dataset.prefetch(AUTOTUNE)
