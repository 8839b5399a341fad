"""The training task: the model, its loss, metrics and optimizer, and the
input pipelines of a run. What a run compiles is what `bench/` compiles.

    model = task.build_and_compile(config, manifest, label_counts, count, steps_per_epoch)
"""

import keras
import numpy as np
import tensorflow as tf

from protein_location import models
from protein_location.core.errors import TrainError, WeightsError
from protein_location.data import input_reader
from protein_location.training.optimizer import ScaledRateAdamW


def class_log_odds(label_counts, num_examples):
    """Initial head bias: each class's training frequency as log-odds, so the
    first steps are not spent learning that most labels are absent."""
    p = (np.asarray(label_counts, np.float64) + 1.0) / (num_examples + 2.0)
    return np.log(p / (1.0 - p))


def pretrained(config):
    """Whether the run starts its backbone from pretrained weights."""
    return config.weights not in (None, "none")


def fine_tuning_phases(config):
    """[(first epoch, end epoch, whether the backbone trains)] of a resolved config (`config.resolve`):
    the head-only warm-up (--freeze-epochs), then everything."""
    phases = [(0, config.freeze_epochs, False), (config.freeze_epochs, config.epochs, True)]
    return [phase for phase in phases if phase[1] > phase[0]]


def build_model(config, manifest, train_label_counts, train_count, load_weights=True):
    """The classifier of `config.arch` at the run's size, one sigmoid output per
    class of the dataset's label set, normalizing with the dataset's
    statistics, its backbone from `config.weights` (unless `load_weights` is
    False: weights set afterwards)."""
    weights = config.weights if load_weights and pretrained(config) else None
    try:
        return models.build_classifier(
            config.arch,
            image_size=config.image_size,
            num_classes=manifest.num_classes,
            width=config.width,
            channel_mean=manifest.channel_mean or (0.0,) * 4,
            channel_std=manifest.channel_std or (255.0,) * 4,
            output_bias=class_log_odds(train_label_counts, train_count) if config.bias_init else None,
            dropout=config.dropout,
            synchronized_bn=tf.distribute.get_strategy().num_replicas_in_sync > 1,
            weights=weights,
        )
    except WeightsError as error:
        raise TrainError(str(error)) from None


def build_optimizer(config, steps_per_epoch, epochs=None, backbone_variables=(), backbone_lr_scale=1.0):
    """AdamW with linear warmup then cosine decay to 0 over `epochs` (default:
    the run's); the peak rate scales linearly with the global batch
    (distribute.scaled_learning_rate), and `backbone_variables` learn at
    `backbone_lr_scale` times it (ScaledRateAdamW). With --ema the optimizer
    keeps the weights' moving average (swapped in by
    `checkpoints.ResumableSwapEMAWeights`)."""
    epochs = config.epochs if epochs is None else epochs
    total_steps = max(epochs * steps_per_epoch, 1)
    warmup_steps = min(int(config.warmup_epochs * steps_per_epoch), total_steps - 1)
    peak_rate = config.peak_learning_rate
    schedule = keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0 if warmup_steps else peak_rate,
        decay_steps=total_steps - warmup_steps,
        warmup_target=peak_rate if warmup_steps else None,
        warmup_steps=warmup_steps,
    )
    averaging = {"use_ema": True, "ema_momentum": config.ema_momentum} if config.ema_momentum is not None else {}
    if backbone_lr_scale == 1.0:
        return keras.optimizers.AdamW(schedule, weight_decay=config.weight_decay, **averaging)
    return ScaledRateAdamW(
        schedule,
        weight_decay=config.weight_decay,
        scaled_variables=backbone_variables,
        rate_scale=backbone_lr_scale,
        **averaging,
    )


def build_metrics(num_classes):
    """Macro F1 at 0.5 and macro ROC AUC, weighted: evaluation under several
    replicas pads with blanks of weight 0 (input.eval_padding)."""
    return [
        # threshold=0.5: without it F1Score takes the argmax (single-label).
        keras.metrics.F1Score(average="macro", threshold=0.5, name="macro_f1"),
        keras.metrics.AUC(multi_label=True, num_labels=num_classes, name="auc"),
    ]


def compile_model(model, config, steps_per_epoch, epochs=None, train_backbone=True):
    """Compiles any multi-label model (ours, or a peer in bench/) as a run does,
    for `epochs` (default: the run's). A `MultiLabelClassifier`'s backbone is
    frozen unless `train_backbone` (Keras then runs its BatchNorm in
    inference mode), and learns at config.backbone_lr_scale of the rate."""
    scaled, scale = (), 1.0
    backbone = getattr(model, "backbone", None)
    if backbone is not None:
        backbone.trainable = train_backbone
        if train_backbone and config.backbone_lr_scale not in (None, 1.0):
            scaled, scale = backbone.trainable_variables, config.backbone_lr_scale
    optimizer = build_optimizer(config, steps_per_epoch, epochs, scaled, scale)
    model.compile(
        optimizer=optimizer,
        loss=build_loss(config),
        jit_compile=config.jit_compile,
        weighted_metrics=build_metrics(int(model.output_shape[-1])),
    )
    build_training_state(model)
    return model


def build_training_state(model):
    """Creates the optimizer's slots and the metrics' variables of a compiled
    model now, outside any tf.function.

    Under the default strategy Keras defers them to the first trace of the
    train step (Trainer._maybe_symbolic_build builds only under an explicit
    strategy), and a tf.function that creates variables is traced a second
    time, seconds per run for nothing. Under an explicit strategy
    Keras builds them itself, in the strategy's scope.
    """
    if tf.distribute.has_strategy():
        return
    model.optimizer.build(model.trainable_variables)
    blank = np.zeros((1, int(model.output_shape[-1])), np.float32)
    model.compute_metrics(None, blank, blank, sample_weight=np.zeros((1,), np.float32))
    model.reset_metrics()


def build_and_compile(config, manifest, train_label_counts, train_count, steps_per_epoch, load_weights=True):
    """`build_model`, compiled by `compile_model` for the whole run."""
    model = build_model(config, manifest, train_label_counts, train_count, load_weights)
    return compile_model(model, config, steps_per_epoch)


def build_loss(config):
    """BCE, or focal BCE for class imbalance (alpha weighting switched on:
    Keras applies alpha only with apply_class_balancing=True)."""
    if config.loss == "focal":
        return keras.losses.BinaryFocalCrossentropy(
            apply_class_balancing=True,
            alpha=config.focal_alpha,
            gamma=config.focal_gamma,
            label_smoothing=config.label_smoothing,
        )
    if config.loss == "bce":
        return keras.losses.BinaryCrossentropy(label_smoothing=config.label_smoothing)
    raise TrainError(f"`loss` must be bce or focal, got {config.loss!r}")


def data_seed(seed, start_epoch):
    """The training stream's seed: `seed` for a fresh run; a resumed run draws a
    new order and new augmentations instead of replaying those of epoch 1."""
    if start_epoch == 0:
        return seed
    return int(np.random.SeedSequence([seed, start_epoch]).generate_state(1)[0])


def make_datasets(config, plan, start_epoch=0):
    """(train, val, val steps: None for one replica) datasets. The training
    stream is endless, cut into epochs by fit's steps_per_epoch; under a
    strategy each input pipeline (one per worker) reads its own share of the
    training shards."""
    seed = data_seed(config.seed, start_epoch)

    def train_dataset(input_context=None):
        return input_reader.make_dataset(
            plan.manifest,
            "train",
            config.batch_size,
            config.image_size,
            training=True,
            seed=seed,
            shuffle_buffer=config.shuffle_buffer,
            fold=config.fold,
            augment_config=config.augmentation,
            oversample_factors=plan.oversample_factors,
            input_context=input_context,
        )

    train_data = (
        train_dataset() if plan.kind == "default" else plan.strategy.distribute_datasets_from_function(train_dataset)
    )

    def val_dataset(input_context=None):
        if input_context is None:
            return input_reader.make_dataset(
                plan.manifest, "val", config.batch_size, config.image_size, fold=config.fold
            )
        # Endless, cut by fit's validation_steps (one pass each): Keras may
        # reuse the iterator of the last evaluation.
        return input_reader.make_dataset(
            plan.manifest,
            "val",
            config.batch_size,
            config.image_size,
            fold=config.fold,
            input_context=input_context,
            pad_batches=True,
        ).repeat()

    # Several replicas evaluate whole padded batches: a partial last batch
    # would leave a replica an empty one (which oneDNN's conv2d mishandles,
    # docs/fault-tolerance.md), and a TPU needs static shapes.
    if plan.strategy.num_replicas_in_sync == 1:
        return train_data, val_dataset(), None
    val_steps = input_reader.split_padding(plan.manifest, "val", config.batch_size, plan.pipelines, config.fold).steps
    return train_data, plan.strategy.distribute_datasets_from_function(val_dataset), val_steps
