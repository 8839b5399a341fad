"""tf.data pipelines: shards -> interleave -> parse -> decode -> augment -> batch -> prefetch.

One function builds every pipeline (training, evaluation, prediction); the
record layout is known only to `records.parse_example`.
"""

import contextlib
import posixpath
import typing

import numpy as np
import tensorflow as tf

from protein_location.core import manifest as manifest_lib, records, stains
from protein_location.core.errors import ManifestError
from protein_location.core.manifest import DatasetManifest
from protein_location.data import augment

AUTOTUNE = tf.data.AUTOTUNE


def make_dataset(
    dataset,
    split,
    batch_size,
    image_size=None,
    training=False,
    seed=0,
    shuffle_buffer=2048,
    with_ids=False,
    fold=None,
    augment_config=augment.AugmentConfig(),
    oversample_factors=None,
    input_context=None,
    pad_batches=False,
):
    """Batches of (image float32 [B, S, S, 4] on 0-255, labels float32 [B, C]),
    C the number of the dataset's classes (dataset.json `class_names`).

    Args:
        dataset: dataset folder holding dataset.json and the shards, or its
            `DatasetManifest` already read (a run reads it once, `read`).
        split: "train", "val" or "test".
        batch_size: global batch size.
        image_size: side the model takes; images of another size are
            area-resized. None keeps the stored size.
        training: an endless stream, cut into epochs by the caller's steps
            per epoch (one stream across epochs: every example is seen as
            often as intended, however many epochs), with shards and examples
            shuffled and augmented and no partial batch; otherwise one pass in
            the manifest's order, deterministic.
        seed: seeds shuffling and augmentation, so runs repeat.
        shuffle_buffer: examples held for shuffling when training.
        with_ids: also yield the `source_id` strings (for prediction).
        fold: for a dataset converted with --folds, the fold held out as "val".
        augment_config: the augmentations applied when training.
        oversample_factors: when training, per-class repeat factors (from
            `repeat_factors`): each record is repeated by the largest factor of
            its labels, stochastically rounded, in the endless stream (epochs
            keep their length, so a record is seen r / mean(r) times per
            epoch on average). None: every record once per pass.
        input_context: under a tf.distribute strategy, the
            `tf.distribute.InputContext` of this input pipeline (one per
            worker; `strategy.distribute_datasets_from_function` passes it):
            the pipeline reads its share of the split (`share_input`) in
            batches of the per-replica size.
        pad_batches: for evaluation under a strategy with several replicas:
            yields (image, labels, weight) in whole batches only, the last
            filled up with blank examples of weight 0 (`eval_padding`), so
            every example is evaluated exactly once, no replica gets an
            empty or partial batch, and shapes are static (TPU).
    """
    if pad_batches and (training or with_ids):
        raise ValueError("pad_batches is for evaluation: without training or with_ids")
    manifest = read(dataset)
    files, num_examples, _ = manifest.summary(split, fold)
    shard_by_data = False
    pipelines = 1 if input_context is None else input_context.num_input_pipelines
    share_counts = _share_counts(manifest, split, fold, pipelines)
    padding = eval_padding(share_counts, batch_size) if pad_batches else None
    if input_context is not None:
        files, shard_by_data = _pipeline_share(manifest, split, fold, batch_size, input_context)
        num_examples = share_counts[input_context.input_pipeline_id]
        batch_size = input_context.get_per_replica_batch_size(batch_size)
    stored_size = manifest.image_size
    num_classes = manifest.num_classes
    image_size = image_size or stored_size

    dataset = _read_records(files, training, seed, input_context if shard_by_data else None)
    if training:
        dataset = _training_stream(dataset, seed, shuffle_buffer, oversample_factors)
    else:
        # TFRecord files do not know their length; the manifest does. A known
        # cardinality gives Keras a full progress bar and a definite end.
        dataset = dataset.apply(tf.data.experimental.assert_cardinality(num_examples))
        dataset = dataset.map(lambda serialized: (serialized, tf.zeros([2], tf.int64)))
    decode = _model_inputs_fn(num_classes, stored_size, image_size, training and augment_config, with_ids)
    dataset = dataset.map(decode, num_parallel_calls=AUTOTUNE, deterministic=True)
    if padding is not None:
        dataset = _pad_with_blanks(
            dataset, padding.pipeline_examples - num_examples, padding.weight, image_size, num_classes
        )
    dataset = dataset.batch(batch_size, drop_remainder=training or pad_batches)
    return dataset.prefetch(AUTOTUNE)


def read(dataset):
    """`dataset`'s DatasetManifest: itself, or read from the folder it names."""
    return dataset if isinstance(dataset, DatasetManifest) else DatasetManifest.read(dataset)


def split_shards(manifest, splits, fold=None):
    """The shard entries of the `splits` the dataset has (with `fold`: train and val of that fold)."""
    present = set(manifest.splits) if fold is None else {"train", "val"}
    return [shard for split in splits if split in present for shard in manifest.shards(split, fold)]


def check_split_files(manifest, splits, fold=None):
    """Before a run reads `splits`: each shard exists with the size and ends
    dataset.json records (`manifest.check_shard_files`), so a deleted,
    truncated or replaced shard stops it in one line instead of a traceback
    mid-run, or a run on part of the data."""
    manifest_lib.check_shard_files(manifest.data_dir, split_shards(manifest, splits, fold))


# Errors of reading shards (a failed CRC, a cut record, a file gone, a count
# short of the manifest's); any other OpError names a shard only if one is damaged.
READ_ERRORS = (
    tf.errors.DataLossError,
    tf.errors.NotFoundError,
    tf.errors.PermissionDeniedError,
    tf.errors.UnavailableError,
)


@contextlib.contextmanager
def named_read_errors(manifest, splits, fold=None):
    """Turns an error raised while the block reads the shards of `splits` into
    one line naming the damaged shard and what to do (ManifestError). An error
    with no damaged shard behind it: a read error becomes one line saying so,
    any other is raised as it was."""
    try:
        yield
    except tf.errors.OpError as error:
        data_dir = manifest.data_dir
        found = manifest_lib.find_damaged_shard(data_dir, split_shards(manifest, splits, fold))
        if found is not None:
            path, problem = found
            raise ManifestError(
                f"{path}: {problem}; {manifest_lib.repair_hint(data_dir)}; then run the same command again"
            ) from None
        what = manifest_lib.op_error_line(error)
        if isinstance(error, READ_ERRORS):
            raise ManifestError(
                f"{data_dir}: reading the shards failed ({what}), yet every shard reads whole now "
                "(a passing storage error?); run the same command again"
            ) from None
        raise


def split_ids(dataset, split, fold=None):
    """The `source_id` of every example of a split, in the order an evaluation
    (`make_dataset` without training) yields them."""
    manifest = read(dataset)
    files = manifest.summary(split, fold)[0]
    spec = {records.KEY_SOURCE_ID: records.feature_spec()[records.KEY_SOURCE_ID]}
    ids = _read_records(files, False, 0).map(
        lambda serialized: tf.io.parse_single_example(serialized, spec)[records.KEY_SOURCE_ID]
    )
    with named_read_errors(manifest, (split,), fold):
        return [image_id.decode() for image_id in ids.as_numpy_iterator()]


# Shards read at once by a pipeline, one record of each in turn.
INTERLEAVE_CYCLE = 16


def read_order(num_records):
    """(shard index, position in the shard) of every record, in the order a
    one-pass pipeline (`make_dataset`, not training) yields the records of
    shards holding `num_records` each: what predict's outputs follow."""

    def positions(index):
        return tf.data.Dataset.range(tf.gather(tf.constant(num_records, tf.int64), index)).map(
            lambda position: (index, position)
        )

    order = tf.data.Dataset.range(len(num_records)).interleave(
        positions, cycle_length=min(len(num_records), INTERLEAVE_CYCLE), deterministic=True
    )
    return [(int(index), int(position)) for index, position in order.as_numpy_iterator()]


def _read_records(files, shuffled, seed, shard_context=None):
    """Serialized records of `files`, interleaved (file order shuffled when
    training); with `shard_context`, this pipeline's share by record (DATA policy)."""
    dataset = tf.data.Dataset.from_tensor_slices(files)
    if shuffled:
        dataset = dataset.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.interleave(
        tf.data.TFRecordDataset,
        cycle_length=min(len(files), INTERLEAVE_CYCLE),
        num_parallel_calls=AUTOTUNE,
        deterministic=True,
    )
    if shard_context is not None:  # every pipeline shuffled the files alike: the records of each are disjoint
        dataset = dataset.shard(shard_context.num_input_pipelines, shard_context.input_pipeline_id)
    return dataset


def _training_stream(records_dataset, seed, shuffle_buffer, oversample_factors):
    """(serialized, per-example seed pair), shuffled pass after pass, one endless
    stream: an epoch does not restart it, so every example (the end of each
    shard too) is seen as often as intended, and without oversampling once
    per pass."""
    if oversample_factors is not None:
        records_dataset = _oversample(records_dataset, oversample_factors, seed)
    records_dataset = records_dataset.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True).repeat()
    # One stateless seed pair per example: augmentation repeats for a
    # seed whatever the parallelism of the map that decodes.
    seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
    return tf.data.Dataset.zip(records_dataset, seeds)


def _model_inputs_fn(num_classes, stored_size, image_size, augment_config, with_ids):
    """(serialized, seed) -> (image float32 on 0-255, labels[, source_id]);
    augmented when `augment_config` is an AugmentConfig (training)."""

    def to_model_inputs(serialized, example_seed):
        example = records.parse_example(serialized, num_classes)
        image = tf.cast(example["image"], tf.float32)
        if image_size != stored_size:  # the serving signatures' resize (stains.resize_rgby), rounded alike
            image = stains.resize_rgby(image, image_size)
        image = tf.ensure_shape(image, [image_size, image_size, 4])
        if augment_config:
            image = augment.augment(image, example_seed, augment_config)
        if with_ids:
            return image, example["labels"], example["source_id"]
        return image, example["labels"]

    return to_model_inputs


class EvalPadding(typing.NamedTuple):
    """Evaluation in whole batches on every input pipeline (`eval_padding`)."""

    pipeline_examples: int  # each pipeline's share filled up with blanks to this many
    steps: int  # whole global batches
    weight: float  # of a real example: all examples over real ones; blanks weigh 0


def eval_padding(share_counts, global_batch):
    """How pipelines with `share_counts` examples each evaluate in whole steps.

    Each pipeline fills its share up to `steps` whole batches of its part of
    the global batch. A real example weighs all examples / real ones: Keras
    divides the val loss by all the examples it was given, blanks included,
    so with that weight the loss is the mean over the real ones, and F1 and
    AUC, ratios of weighted counts, do not change.
    """
    pipeline_batch = global_batch // len(share_counts)
    steps = -(-max(share_counts) // pipeline_batch)
    padded = steps * pipeline_batch
    return EvalPadding(padded, steps, padded * len(share_counts) / max(sum(share_counts), 1))


def _pad_with_blanks(dataset, count, weight, image_size, num_classes):
    """(image, labels) -> (image, labels, `weight`), then `count` blanks of weight 0."""
    blank = (tf.zeros([image_size, image_size, 4]), tf.zeros([num_classes]), tf.constant(0.0))
    weighted = dataset.map(lambda image, labels: (image, labels, tf.constant(weight, tf.float32)))
    return weighted.concatenate(tf.data.Dataset.from_tensors(blank).repeat(count))


def repeat_factors(label_counts, num_examples, threshold=0.1):
    """Per-class repeat factors of repeat-factor sampling (Gupta et al., LVIS,
    2019): r_c = max(1, sqrt(threshold / f_c)), f_c the share of training
    images that carry class c. Classes rarer than `threshold` are seen more
    often; the rest as often as before. A class absent from training gets 1.
    """
    frequency = np.asarray(label_counts, np.float64) / max(num_examples, 1)
    with np.errstate(divide="ignore"):
        factors = np.sqrt(threshold / frequency)
    return np.where(frequency > 0, np.maximum(factors, 1.0), 1.0)


def _oversample(serialized_records, class_factors, seed):
    """One pass over the records with each repeated floor(r) or ceil(r) times
    (mean r, r the largest factor of its labels), newly drawn on every pass."""
    class_factors = tf.constant(class_factors, tf.float32)
    draws = tf.data.Dataset.random(seed=seed + 1, rerandomize_each_iteration=True)

    def copies(serialized, draw):
        label_factors = tf.gather(class_factors, records.parse_label_indices(serialized))
        factor = tf.reduce_max(tf.concat([[1.0], label_factors], axis=0))
        uniform = tf.random.stateless_uniform([], tf.stack([draw, tf.constant(seed, tf.int64)]))
        count = tf.floor(factor) + tf.cast(uniform < factor - tf.floor(factor), tf.float32)
        return tf.data.Dataset.from_tensors(serialized).repeat(tf.cast(count, tf.int64))

    return tf.data.Dataset.zip(serialized_records, draws).flat_map(copies)


def share_input(shard_counts, num_pipelines, pipeline_batch):
    """How `num_pipelines` input pipelines (one per worker) share a split whose
    shards hold `shard_counts` examples, by Model Garden's rule: whole shards
    (AutoShardPolicy.FILE: pipeline i reads shards i, i + n, ...) when there
    are at least as many shards as pipelines, else every n-th record of every
    shard (DATA). So no two replicas see the same example in an epoch. Every
    pipeline reads the same number of examples per epoch, in whole batches of
    `pipeline_batch`, so the workers step in lockstep.

    Returns (policy, examples in each pipeline's share, examples each reads per epoch).
    """
    total = sum(shard_counts)
    if num_pipelines == 1:
        policy, counts = tf.data.experimental.AutoShardPolicy.OFF, [total]
    elif len(shard_counts) >= num_pipelines:
        policy = tf.data.experimental.AutoShardPolicy.FILE
        counts = [sum(shard_counts[index::num_pipelines]) for index in range(num_pipelines)]
    else:
        policy = tf.data.experimental.AutoShardPolicy.DATA
        counts = [len(range(index, total, num_pipelines)) for index in range(num_pipelines)]
    return policy, counts, min(counts) // pipeline_batch * pipeline_batch


def split_padding(dataset, split, global_batch, num_pipelines=1, fold=None):
    """The `eval_padding` of a split read by `num_pipelines` input pipelines."""
    return eval_padding(_share_counts(read(dataset), split, fold, num_pipelines), global_batch)


def _share_counts(manifest, split, fold, num_pipelines):
    """Examples in each input pipeline's share of a split."""
    counts = [s["num_examples"] for s in manifest.shards(split, fold)]
    return share_input(counts, num_pipelines, 1)[1]


def _pipeline_share(manifest, split, fold, batch_size, input_context):
    """(files, shard records?) of one input pipeline."""
    shards = manifest.shards(split, fold)
    count, index = input_context.num_input_pipelines, input_context.input_pipeline_id
    policy, _, _ = share_input([s["num_examples"] for s in shards], count, batch_size // count)
    files = [posixpath.join(manifest.data_dir, s["file"]) for s in shards]
    if policy == tf.data.experimental.AutoShardPolicy.FILE:
        files = files[index::count]
    return files, policy == tf.data.experimental.AutoShardPolicy.DATA
