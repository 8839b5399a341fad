"""Training: plan (strategy, precision, data) -> fit -> thresholds and report -> export."""

import dataclasses
import json
import posixpath
import time

import keras
import numpy as np
import tensorflow as tf

from protein_location import augment, distribute, export, input as input_lib, labels as labels_lib
from protein_location import manifest as manifest_lib, model as model_lib, report as report_lib
from protein_location import thresholds as thresholds_lib
from protein_location.errors import TrainError


@dataclasses.dataclass
class TrainConfig:
    data: str
    model_dir: str
    epochs: int = 10
    batch_size: int = 32
    image_size: int | None = None
    arch: str = "seresnet18"
    width: float = 1.0
    # The peak rate at the reference global batch of 256; a run uses
    # learning_rate * batch_size / 256 (distribute.scaled_learning_rate).
    learning_rate: float = 1.6e-2
    weight_decay: float = 1e-4
    warmup_epochs: float = 1.0
    dropout: float = 0.0
    loss: str = "bce"
    bias_init: bool = True
    oversample: float | None = None
    tta: int = 1  # views serving_default averages (thresholds are tuned for 1 and 8)
    focal_gamma: float = 2.0
    focal_alpha: float = 0.25
    label_smoothing: float = 0.0
    precision: str | None = None  # None: distribute.default_precision (mixed_bfloat16 on TPUs, CPUs with bf16)
    jit_compile: bool = False
    augmentation: augment.AugmentConfig = dataclasses.field(default_factory=augment.AugmentConfig)
    shuffle_buffer: int = 2048
    seed: int = 0
    fold: int | None = None
    export_dir: str | None = None
    export_formats: tuple = ()  # also in the version folder: "tflite", "tflite_int8", "onnx" (export_formats.py)
    strategy: str = "auto"  # auto, default, mirrored, multiworker or tpu (distribute.choose_strategy)
    replicas: int | None = None  # mirrored: this many GPUs, or logical CPU devices on a machine without GPUs
    tpu: str | None = None  # the Cloud TPU's name (local on a TPU VM)


def class_log_odds(label_counts, num_examples):
    """Initial head bias: each class's training frequency as log-odds, so the
    first steps are not spent learning that most labels are absent."""
    p = (np.asarray(label_counts, np.float64) + 1.0) / (num_examples + 2.0)
    return np.log(p / (1.0 - p))


def _check_batch(config, train_count, replicas):
    if config.batch_size % replicas:
        raise TrainError(f"--batch-size {config.batch_size} is not divisible by the {replicas} replicas")
    if train_count < config.batch_size:
        raise TrainError(f"{config.data}: the train split has {train_count} examples, fewer than one "
                         f"batch of {config.batch_size}; lower --batch-size")


def build_and_compile(config, manifest, train_label_counts, train_count, steps_per_epoch):
    """The SE-ResNet, AdamW with warmup + cosine decay, BCE, macro F1 and AUC;
    one sigmoid output per class of the dataset's label set."""
    num_classes = len(manifest_lib.class_names(manifest))
    model = model_lib.build_seresnet(
        config.arch,
        image_size=config.image_size or manifest["image_size"],
        num_classes=num_classes,
        width=config.width,
        channel_mean=manifest.get("channel_mean", (0.0,) * 4),
        channel_std=manifest.get("channel_std", (255.0,) * 4),
        output_bias=class_log_odds(train_label_counts, train_count) if config.bias_init else None,
        dropout=config.dropout,
        synchronized_bn=tf.distribute.get_strategy().num_replicas_in_sync > 1,
    )
    total_steps = max(config.epochs * steps_per_epoch, 1)
    warmup_steps = min(int(config.warmup_epochs * steps_per_epoch), total_steps - 1)
    peak_rate = distribute.scaled_learning_rate(config.learning_rate, config.batch_size)
    schedule = keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0 if warmup_steps else peak_rate,
        decay_steps=total_steps - warmup_steps,
        warmup_target=peak_rate if warmup_steps else None,
        warmup_steps=warmup_steps,
    )
    model.compile(
        optimizer=keras.optimizers.AdamW(schedule, weight_decay=config.weight_decay),
        loss=build_loss(config),
        jit_compile=config.jit_compile,
        # Weighted: evaluation under several replicas pads with blanks of weight 0 (input.eval_padding).
        weighted_metrics=[
            # threshold=0.5: without it F1Score takes the argmax (single-label).
            keras.metrics.F1Score(average="macro", threshold=0.5, name="macro_f1"),
            keras.metrics.AUC(multi_label=True, num_labels=num_classes, name="auc"),
        ],
    )
    return model


def build_loss(config):
    """BCE, or focal BCE for class imbalance (alpha weighting switched on:
    Keras applies alpha only with apply_class_balancing=True)."""
    if config.loss == "focal":
        return keras.losses.BinaryFocalCrossentropy(apply_class_balancing=True, alpha=config.focal_alpha,
                                                    gamma=config.focal_gamma, label_smoothing=config.label_smoothing)
    if config.loss == "bce":
        return keras.losses.BinaryCrossentropy(label_smoothing=config.label_smoothing)
    raise TrainError(f"--loss must be bce or focal, got {config.loss!r}")


# The checkpoint kept is the epoch of best val macro ROC AUC: it does not
# depend on a threshold, where macro F1 at 0.5 is the wrong cut for focal loss
# and rare classes (thresholds are tuned after training).
SELECTION_METRIC = "val_auc"


def resumed_epoch(model_dir):
    """The epoch a run in `model_dir` resumes at (0 for a fresh run), from the
    state BackupAndRestore keeps in model_dir/backup."""
    path = posixpath.join(model_dir, "backup", "training_metadata.json")
    if not tf.io.gfile.exists(path):
        return 0
    with tf.io.gfile.GFile(path, "r") as f:
        return int(json.load(f)["epoch"])


def best_logged_value(history_path, metric=SELECTION_METRIC):
    """The best `metric` in a resumed run's history.csv (None if it has none), so
    the first epoch after a restart does not overwrite a better checkpoint."""
    if not tf.io.gfile.exists(history_path):
        return None
    values = [row[metric] for row in report_lib.read_history(history_path) if metric in row]
    return max(values) if values else None


def data_seed(seed, start_epoch):
    """The training stream's seed: `seed` for a fresh run; a resumed run draws a
    new order and new augmentations instead of replaying those of epoch 1."""
    if start_epoch == 0:
        return seed
    return int(np.random.SeedSequence([seed, start_epoch]).generate_state(1)[0])


def _callbacks(model_dir, best_path, write_dir=None):
    """Multi-worker: every worker restores from the chief's backup in model_dir,
    only the chief writes it; the others write their history, logs and best
    weights to their own write_dir (distribute.write_dir)."""
    write_dir = write_dir or model_dir
    chief = write_dir == model_dir
    backup = posixpath.join(model_dir, "backup")
    history = posixpath.join(write_dir, "history.csv")
    # A resumed run appends to its history; a fresh one starts it anew.
    if not tf.io.gfile.exists(backup) and tf.io.gfile.exists(history):
        tf.io.gfile.remove(history)
    return [
        keras.callbacks.BackupAndRestore(backup) if chief else distribute.RestoreFromChief(backup),
        keras.callbacks.ModelCheckpoint(best_path, monitor=SELECTION_METRIC, mode="max",
                                        save_best_only=True, save_weights_only=True,
                                        initial_value_threshold=best_logged_value(history)),
        keras.callbacks.TensorBoard(posixpath.join(write_dir, "logs"), profile_batch=0),
        keras.callbacks.CSVLogger(history, append=True),
        keras.callbacks.TerminateOnNaN(),
    ]


def predict_views(model, data_dir, split, batch_size, image_size, fold=None):
    """(labels [n, C], probabilities [8, n, C]) of a split in manifest order,
    under each of the 8 flips/rotations (view 0: the images as stored).

    A model under a strategy with several replicas predicts whole batches
    (blanks pad the last one; `input.eval_padding`) and the blanks' rows are dropped.
    """
    padded = model.distribute_strategy.num_replicas_in_sync > 1
    dataset = input_lib.make_dataset(data_dir, split, batch_size, image_size, fold=fold, pad_batches=padded)
    count = manifest_lib.split_summary(data_dir, manifest_lib.load_manifest(data_dir), split, fold)[1]
    y_true = np.concatenate([labels.numpy() for _, labels, *_ in dataset])[:count]
    views = [dataset.map(lambda image, *_, k=k: (augment.dihedral_view(image, k),))
             for k in range(augment.DIHEDRAL_VIEWS)]
    return y_true, np.stack([model.predict(view, verbose=0)[:count] for view in views])


def check_fit(fit, best_path, peak_rate):
    """Stops a run that cannot go on to thresholds and an export, in one line
    saying what happened and what to do (TrainError), rather than with a
    traceback from a later step or an export of weights nobody chose."""
    losses = fit.history.get("loss", [])
    if losses and not np.isfinite(losses[-1]):
        raise TrainError(f"the training loss became {losses[-1]} in epoch {fit.epoch[-1] + 1} and the run stopped "
                         f"(TerminateOnNaN); lower --lr (peak {peak_rate:.4g} here) or train with --precision float32; "
                         "nothing was exported")
    if not tf.io.gfile.exists(best_path):
        raise TrainError(f"{best_path}: no best checkpoint: no epoch of this run beat the best {SELECTION_METRIC} in "
                         "its history.csv, and the file that held it is gone; train again with a new --model-dir")


@dataclasses.dataclass
class RunPlan:
    """What a run settles before it builds anything: the strategy, the data and the steps."""
    kind: str
    strategy: tf.distribute.Strategy
    manifest: dict
    image_size: int
    train_count: int
    train_label_counts: np.ndarray
    pipelines: int  # input pipelines, one per worker
    steps_per_epoch: int
    peak_rate: float
    oversample_factors: np.ndarray | None


def plan_run(config):
    """Chooses the strategy and precision, reads the dataset's counts, prints the set-up.

    Returns (config with its precision settled, RunPlan).
    """
    # The strategy comes first: logical CPU devices and multi-worker
    # collectives can only be set up before the TensorFlow runtime starts.
    num_gpus = len(tf.config.list_physical_devices("GPU"))
    kind = distribute.choose_strategy(config.strategy, tpu=config.tpu, replicas=config.replicas,
                                      tf_config=distribute.read_tf_config(), num_gpus=num_gpus)
    if kind == "tpu":
        distribute.check_tpu_paths(config.data, config.model_dir, config.export_dir)
    precision_reason = "--precision"
    if config.precision is None:
        precision, precision_reason = distribute.default_precision(kind, num_gpus)
        config = dataclasses.replace(config, precision=precision)
    manifest = manifest_lib.load_manifest(config.data)
    strategy = distribute.create_strategy(kind, replicas=config.replicas, tpu=config.tpu)
    keras.utils.set_random_seed(config.seed)
    keras.mixed_precision.set_global_policy(config.precision)
    replicas = strategy.num_replicas_in_sync
    _, train_count, train_label_counts = manifest_lib.split_summary(config.data, manifest, "train", config.fold)
    _, val_count, _ = manifest_lib.split_summary(config.data, manifest, "val", config.fold)
    _check_batch(config, train_count, replicas)
    image_size = config.image_size or manifest["image_size"]
    pipelines = distribute.num_input_pipelines(strategy)
    shard_counts = [s["num_examples"] for s in manifest_lib.select_shards(config.data, manifest, "train", config.fold)]
    policy, shares, epoch_examples = input_lib.share_input(shard_counts, pipelines, config.batch_size // pipelines)
    steps_per_epoch = epoch_examples // (config.batch_size // pipelines)
    peak_rate = distribute.scaled_learning_rate(config.learning_rate, config.batch_size)
    held_out = f" (fold {config.fold} held out)" if config.fold is not None else ""
    print(f"strategy: {distribute.describe(strategy)}")
    print(f"precision: {config.precision} ({precision_reason})")
    print(f"data: {config.data}: train {train_count}, val {val_count}{held_out} "
          f"examples at {image_size}px; global batch {config.batch_size} "
          f"({config.batch_size // replicas} per replica), {steps_per_epoch} steps per epoch")
    print(f"learning rate: peak {peak_rate:.4g} = --lr {config.learning_rate:g} x global batch "
          f"{config.batch_size} / {distribute.REFERENCE_BATCH} (linear scaling)")
    if pipelines > 1:
        how = ("whole shards to each" if policy == tf.data.experimental.AutoShardPolicy.FILE
               else f"1 record in {pipelines} of every shard to each")
        share = shares[0] if len(set(shares)) == 1 else shares
        print(f"input: AutoShardPolicy.{policy.name}: {len(shard_counts)} train shards over {pipelines} workers, "
              f"{how}; every worker reads {epoch_examples} examples per epoch (its share: {share})")
    elif kind != "default":
        print(f"input: one pipeline, no sharding; each step gives each of the {replicas} replicas "
              f"{config.batch_size // replicas} distinct examples")
    oversample_factors = None
    if config.oversample:
        oversample_factors = input_lib.repeat_factors(train_label_counts, train_count, config.oversample)
        print(f"oversample: classes rarer than {config.oversample:g} of training images repeated up to "
              f"{oversample_factors.max():.1f}x per epoch (repeat-factor sampling)")
    return config, RunPlan(kind, strategy, manifest, image_size, train_count, train_label_counts, pipelines,
                           steps_per_epoch, peak_rate, oversample_factors)


def make_datasets(config, plan, start_epoch=0):
    """(train, val, val steps: None for one replica) datasets. The training
    stream is endless, cut into epochs by fit's steps_per_epoch; under a
    strategy each input pipeline (one per worker) reads its own share of the
    training shards."""
    seed = data_seed(config.seed, start_epoch)

    def train_dataset(input_context=None):
        return input_lib.make_dataset(config.data, "train", config.batch_size, plan.image_size, training=True,
                                      seed=seed, shuffle_buffer=config.shuffle_buffer, fold=config.fold,
                                      augment_config=config.augmentation,
                                      oversample_factors=plan.oversample_factors, input_context=input_context)

    train_data = (train_dataset() if plan.kind == "default"
                  else plan.strategy.distribute_datasets_from_function(train_dataset))
    def val_dataset(input_context=None):
        if input_context is None:
            return input_lib.make_dataset(config.data, "val", config.batch_size, plan.image_size, fold=config.fold)
        # Endless, cut by fit's validation_steps (one pass each): Keras may
        # reuse the iterator of the last evaluation.
        return input_lib.make_dataset(config.data, "val", config.batch_size, plan.image_size, fold=config.fold,
                                      input_context=input_context, pad_batches=True).repeat()

    # Several replicas evaluate whole padded batches: a partial last batch
    # would leave a replica an empty one (which oneDNN's conv2d mishandles,
    # README "Fault tolerance"), and a TPU needs static shapes.
    if plan.strategy.num_replicas_in_sync == 1:
        return train_data, val_dataset(), None
    val_steps = input_lib.split_padding(config.data, "val", config.batch_size, plan.pipelines, config.fold).steps
    return train_data, plan.strategy.distribute_datasets_from_function(val_dataset), val_steps


def fit_model(config, plan):
    """Builds the model under the strategy and fits it.

    Returns (model with the best epoch's weights in float32, Keras History,
    seconds), or None on a multi-worker run's non-chief workers.
    """
    start_epoch = resumed_epoch(config.model_dir)
    if start_epoch:
        print(f"resume: from the end of epoch {start_epoch} ({config.model_dir}/backup)")
    train_data, val_data, val_steps = make_datasets(config, plan, start_epoch)
    with plan.strategy.scope():
        model = build_and_compile(config, plan.manifest, plan.train_label_counts, plan.train_count,
                                  plan.steps_per_epoch)
    print(f"model: {model.name}, {model.count_params():,} parameters, input {model.input_shape[1:]}, "
          f"{config.precision}{', XLA' if config.jit_compile else ''}, loss {config.loss}; "
          f"augment {config.augmentation}")

    tf.io.gfile.makedirs(config.model_dir)
    write_dir = distribute.write_dir(config.model_dir, plan.strategy)
    best_path = posixpath.join(write_dir, "best.weights.h5")
    start = time.perf_counter()
    fit = model.fit(train_data, validation_data=val_data, epochs=config.epochs, shuffle=False,  # shuffled in tf.data
                    steps_per_epoch=plan.steps_per_epoch, validation_steps=val_steps,
                    callbacks=_callbacks(config.model_dir, best_path, write_dir))
    fit_seconds = time.perf_counter() - start
    if distribute.local_replicas(plan.strategy) > 1:
        # The export takes the first replica's copy: all copies must be equal
        # (BatchNormalization(synchronized=True) keeps the moving statistics so).
        drift = distribute.replica_disagreement(model)
        print(f"replicas: the {len(model.variables)} variables' copies on this worker's replicas differ by at "
              f"most {drift:.3g}{' (WARNING: they drifted apart; the export takes the first)' if drift > 1e-6 else ''}")
    if write_dir != config.model_dir:
        distribute.remove_write_dir(config.model_dir, write_dir)
        print(f"worker: training done; the chief writes the model, report and export to {config.model_dir}")
        return None
    check_fit(fit, best_path, plan.peak_rate)
    model.load_weights(best_path)
    if distribute.is_multi_worker(plan.strategy):
        # The chief goes on alone: a plain copy of its replica predicts and exports without the other workers.
        trained, model = model, build_and_compile(config, plan.manifest, plan.train_label_counts, plan.train_count,
                                                  plan.steps_per_epoch)
        model.set_weights(trained.get_weights())
    # Mixed precision was for speed: thresholds are tuned on the float32
    # computation, the one the export serves (model.float32_twin).
    return model_lib.float32_twin(model), fit, fit_seconds


def write_report(config, plan, model, fit, fit_seconds):
    """Tunes thresholds on val for one view and for the mean of the 8
    flips/rotations; writes model.keras, thresholds.json, report.json (for
    the views the export serves by default, --tta) and report.png.

    Returns (report, single-view Tuned, 8-view Tuned).
    """
    model.save(posixpath.join(config.model_dir, "model.keras"))
    y_true, y_views = predict_views(model, config.data, "val", config.batch_size, plan.image_size, config.fold)
    train_rates = np.asarray(plan.train_label_counts, np.float64) / plan.train_count
    tuned = {1: thresholds_lib.tune_thresholds(y_true, y_views[0], train_rates),
             8: thresholds_lib.tune_thresholds(y_true, y_views.mean(axis=0), train_rates)}
    y_prob = y_views[0] if config.tta == 1 else y_views.mean(axis=0)
    class_names = manifest_lib.class_names(plan.manifest)
    manifest_lib.write_json_atomic(posixpath.join(config.model_dir, "thresholds.json"), {
        "label_set": labels_lib.label_set_of_classes(class_names),
        "class_names": class_names,
        # serving_default's views and thresholds; the export serves both kinds.
        "views": config.tta, "thresholds": tuned[config.tta].thresholds.tolist(),
        "single_view_thresholds": tuned[1].thresholds.tolist(),
        "tta_thresholds": tuned[8].thresholds.tolist(),
        "rule": thresholds_lib.threshold_rule(),
    })
    run_info = {
        "arch": config.arch, "width": config.width, "epochs": config.epochs, "batch_size": config.batch_size,
        "loss": config.loss, "bias_init": config.bias_init, "oversample": config.oversample,
        "val_tta": config.tta,
        "precision": config.precision, "augmentation": dataclasses.asdict(config.augmentation),
        "seed": config.seed, "fold": config.fold,
        "strategy": plan.kind, "replicas": plan.strategy.num_replicas_in_sync, "workers": plan.pipelines,
        # --lr is the peak rate at a global batch of 256; the run used peak_learning_rate.
        "learning_rate": config.learning_rate, "reference_batch_size": distribute.REFERENCE_BATCH,
        "peak_learning_rate": plan.peak_rate,
        # This process's epochs only: a resumed run does not count the ones before.
        "train_seconds": round(fit_seconds, 1),
        "train_images_per_second": round(len(fit.epoch) * plan.steps_per_epoch * config.batch_size / fit_seconds, 1),
    }
    report = report_lib.build_report(run_info, y_true, y_prob, tuned[config.tta], class_names)
    other = 8 if config.tta == 1 else 1
    report[f"val_macro_f1_tuned_{other}_views"] = thresholds_lib.macro_f1(
        y_true, (y_views[0] if other == 1 else y_views.mean(axis=0)) >= tuned[other].thresholds)
    manifest_lib.write_json_atomic(posixpath.join(config.model_dir, "report.json"), report)
    report_lib.plot_report(report_lib.read_history(posixpath.join(config.model_dir, "history.csv")), report,
                           posixpath.join(config.model_dir, "report.png"))
    supported = report["val_macro_f1_tuned_min5"]
    print(f"val macro F1 ({config.tta} view{'s' if config.tta > 1 else ''}): {report['val_macro_f1_at_0.5']:.4f} "
          f"at 0.5, {report['val_macro_f1_tuned']:.4f} at per-class thresholds tuned on val (optimistic; "
          f"{report[f'val_macro_f1_tuned_{other}_views']:.4f} for {other} view{'s' if other > 1 else ''}); tuned over the "
          f"{report['classes_with_min5_val_examples']} classes with >= 5 val examples: "
          f"{'n/a' if supported is None else f'{supported:.4f}'}")
    print(f"run: {config.model_dir} (best.weights.h5, model.keras, history.csv, logs/, thresholds.json, "
          f"report.json, report.png)")
    return report, tuned[1], tuned[8]


def train(config):
    """Trains, tunes thresholds on val, writes the report and (optionally) the export.

    Returns the report dict (None on a multi-worker run's non-chief workers:
    the chief writes the model, report and export).
    """
    config, plan = plan_run(config)
    fitted = fit_model(config, plan)
    if fitted is None:
        return None
    model, fit, fit_seconds = fitted
    report, single_view, tta = write_report(config, plan, model, fit, fit_seconds)
    if config.export_dir:
        export.export_model(model, single_view.thresholds, config.export_dir, config.export_formats,
                            class_names=manifest_lib.class_names(plan.manifest),
                            tta_thresholds=tta.thresholds if config.tta == 8 else None)
    return report
