"""The trainer: settles a run's strategy, precision and data (`plan_run`),
then fits the task's model with checkpoints, resume after a kill,
TensorBoard logs and NaN stops (`fit_model`)."""

import dataclasses
import posixpath
import time

import keras
import numpy as np
import tensorflow as tf

from protein_location import models
from protein_location.core import manifest as manifest_lib, output_files, run_state, stop_signals
from protein_location.core.errors import TrainError
from protein_location.data import input_reader
from protein_location.training import checkpoints, config as config_lib, distribute, task

# The checkpoint kept is the epoch of best val macro ROC AUC: it does not
# depend on a threshold, where macro F1 at 0.5 is the wrong cut for focal loss
# and rare classes (thresholds are tuned after training).
SELECTION_METRIC = "val_auc"


def callbacks(model_dir, write_dir=None, initial_best=None):
    """The run's callbacks, in the order their epoch-end writes must happen:
    the best checkpoint and the history first, the backup last (it commits
    the epoch: `checkpoints`). Multi-worker: every worker restores from the
    chief's backup in model_dir, only the chief writes it; the others write
    their history, logs and best weights to their own write_dir
    (distribute.write_dir)."""
    write_dir = write_dir or model_dir
    chief = write_dir == model_dir
    backup = posixpath.join(model_dir, run_state.BACKUP_DIR)
    return [
        checkpoints.StopAtSignal(),
        keras.callbacks.TerminateOnNaN(),
        checkpoints.BestCheckpoint(write_dir, SELECTION_METRIC, initial_value_threshold=initial_best),
        checkpoints.HistoryFile(posixpath.join(write_dir, checkpoints.HISTORY)),
        keras.callbacks.TensorBoard(posixpath.join(write_dir, "logs"), profile_batch=0),
        checkpoints.AtomicBackupAndRestore(backup) if chief else checkpoints.RestoreFromChief(backup),
    ]


def phase_callbacks(config, run_callbacks, first, end, start_epoch):
    """The callbacks of the fit of epochs [first, end) in a run resumed at
    `start_epoch`: under --ema, the weights' average swapped in first, before
    the best checkpoint and the backup are written; it is in the restored
    model when the fit resumes after an epoch end of its own phase."""
    if config.ema_momentum is None:
        return run_callbacks
    return [checkpoints.ResumableSwapEMAWeights(averaged_in_backup=first < start_epoch < end), *run_callbacks]


def restore_run(model_dir, write_dir):
    """Brings a run folder back to its last committed epoch before fit:
    history rows and a best checkpoint of a later (uncommitted) epoch are
    dropped. Returns (epochs done, the best checkpoint's val_auc or None)."""
    epochs_done = checkpoints.committed_epochs(model_dir)
    checkpoints.truncate_history(posixpath.join(write_dir, checkpoints.HISTORY), epochs_done)
    best = checkpoints.restore_best(write_dir, epochs_done, SELECTION_METRIC)
    output_files.remove_stale_temporaries(write_dir)
    output_files.remove_stale_temporaries(posixpath.join(model_dir, run_state.BACKUP_DIR))
    return epochs_done, best


def check_batch(config, train_count, replicas):
    if config.batch_size % replicas:
        raise TrainError(f"`batch_size` {config.batch_size} is not divisible by the {replicas} replicas")
    if train_count < config.batch_size:
        raise TrainError(
            f"{config.data}: the train split has {train_count} examples, fewer than one "
            f"batch of {config.batch_size}; lower --batch-size"
        )


def check_fit(fit, best_path, peak_rate):
    """Stops a run that cannot go on to thresholds and an export, in one line
    saying what happened and what to do (TrainError), rather than with a
    traceback from a later step or an export of weights nobody chose."""
    losses = fit.history.get("loss", [])
    if losses and not np.isfinite(losses[-1]):
        raise TrainError(
            f"the training loss became {losses[-1]} in epoch {fit.epoch[-1] + 1} and the run stopped "
            f"(TerminateOnNaN); lower --lr (peak {peak_rate:.4g} here) or train with --precision float32; "
            "nothing was exported"
        )
    if not tf.io.gfile.exists(best_path):
        raise TrainError(
            f"{best_path}: no best checkpoint: no epoch of this run beat the best {SELECTION_METRIC} in "
            "its history.csv, and the file that held it is gone; train again with a new --model-dir"
        )


@dataclasses.dataclass
class RunPlan:
    """What a run settles before it builds anything: the strategy, the data and the steps."""

    kind: str
    strategy: tf.distribute.Strategy
    manifest: manifest_lib.DatasetManifest  # dataset.json, read once for the run
    train_count: int
    train_label_counts: np.ndarray
    pipelines: int  # input pipelines, one per worker
    steps_per_epoch: int
    oversample_factors: np.ndarray | None


def strategy_kind(config):
    """The strategy kind of a run's --strategy, --replicas, --tpu and TF_CONFIG."""
    return distribute.choose_strategy(
        config.strategy,
        tpu=config.tpu,
        replicas=config.replicas,
        tf_config=distribute.read_tf_config(),
        num_gpus=len(tf.config.list_physical_devices("GPU")),
    )


def create_strategy(config, kind):
    """The tf.distribute strategy of `kind` (`strategy_kind`) with the run's --replicas and --tpu."""
    return distribute.create_strategy(kind, replicas=config.replicas, tpu=config.tpu)


def plan_run(config, settled_strategy=None):
    """Chooses the strategy (or takes `settled_strategy`, a (kind, strategy)
    pair: the K folds of --cv share one, as logical CPU devices and
    multi-worker collectives are set up once per process) and precision,
    reads the dataset's counts, prints the set-up.

    Returns (the config as `config_lib.resolve` settled it, every default
    decided, RunPlan).
    """
    # The strategy comes first: logical CPU devices and multi-worker
    # collectives can only be set up before the TensorFlow runtime starts.
    num_gpus = len(tf.config.list_physical_devices("GPU"))
    kind, strategy = settled_strategy or (strategy_kind(config), None)
    if kind == "tpu":
        distribute.check_tpu_paths(config.data, config.model_dir, config.export_dir)
    manifest = manifest_lib.DatasetManifest.read(config.data)
    config, precision_reason = config_lib.resolve(config, kind, manifest.image_size, num_gpus)
    if strategy is None:
        strategy = create_strategy(config, kind)
    keras.utils.set_random_seed(config.seed)
    keras.mixed_precision.set_global_policy(config.precision)
    replicas = strategy.num_replicas_in_sync
    _, train_count, train_label_counts = manifest.summary("train", config.fold)
    val_count = manifest.num_examples("val", config.fold)
    input_reader.check_split_files(manifest, ("train", "val"), config.fold)
    check_batch(config, train_count, replicas)
    pipelines = distribute.num_input_pipelines(strategy)
    shard_counts = [s["num_examples"] for s in manifest.shards("train", config.fold)]
    policy, shares, epoch_examples = input_reader.share_input(shard_counts, pipelines, config.batch_size // pipelines)
    steps_per_epoch = epoch_examples // (config.batch_size // pipelines)
    held_out = f" (fold {config.fold} held out)" if config.fold is not None else ""
    print(f"strategy: {distribute.describe(strategy)}")
    print(f"precision: {config.precision} ({precision_reason})")
    print(
        f"data: {config.data}: train {train_count}, val {val_count}{held_out} "
        f"examples at {config.image_size}px; global batch {config.batch_size} "
        f"({config.batch_size // replicas} per replica), {steps_per_epoch} steps per epoch"
    )
    if task.pretrained(config):
        warm_up = f"head only for {config.freeze_epochs} epoch(s), then " if config.freeze_epochs else ""
        print(
            f"weights: {config.arch} from {config.weights}; {warm_up}the backbone at "
            f"{config.backbone_lr_scale:g}x the head's rate"
        )
    print(
        f"learning rate: peak {config.peak_learning_rate:.4g} = --lr {config.learning_rate:g} x global batch "
        f"{config.batch_size} / {distribute.REFERENCE_BATCH} (linear scaling)"
    )
    if pipelines > 1:
        how = (
            "whole shards to each"
            if policy == tf.data.experimental.AutoShardPolicy.FILE
            else f"1 record in {pipelines} of every shard to each"
        )
        share = shares[0] if len(set(shares)) == 1 else shares
        print(
            f"input: AutoShardPolicy.{policy.name}: {len(shard_counts)} train shards over {pipelines} workers, "
            f"{how}; every worker reads {epoch_examples} examples per epoch (its share: {share})"
        )
    elif kind != "default":
        print(
            f"input: one pipeline, no sharding; each step gives each of the {replicas} replicas "
            f"{config.batch_size // replicas} distinct examples"
        )
    oversample_factors = None
    if config.oversample:
        oversample_factors = input_reader.repeat_factors(train_label_counts, train_count, config.oversample)
        print(
            f"oversample: classes rarer than {config.oversample:g} of training images repeated up to "
            f"{oversample_factors.max():.1f}x per epoch (repeat-factor sampling)"
        )
    return config, RunPlan(
        kind,
        strategy,
        manifest,
        train_count,
        train_label_counts,
        pipelines,
        steps_per_epoch,
        oversample_factors,
    )


def fit_model(config, plan):
    """Builds the model under the strategy and fits it.

    Returns (model with the best epoch's weights in float32, Keras History,
    seconds), or None on a multi-worker run's non-chief workers.
    """
    tf.io.gfile.makedirs(config.model_dir)
    write_dir = distribute.write_dir(config.model_dir, plan.strategy)
    start_epoch, initial_best = restore_run(config.model_dir, write_dir)
    if start_epoch:
        print(f"resume: from the end of epoch {start_epoch} ({config.model_dir}/backup)")
    train_data, val_data, val_steps = task.make_datasets(config, plan, start_epoch)
    with plan.strategy.scope():
        model = task.build_model(config, plan.manifest, plan.train_label_counts, plan.train_count)
    print(
        f"model: {model.name}, {model.count_params():,} parameters, input {model.input_shape[1:]}, "
        f"{config.precision}{', XLA' if config.jit_compile else ''}, loss {config.loss}; "
        f"augment {config.augmentation}"
    )

    best_path = posixpath.join(write_dir, checkpoints.BEST_WEIGHTS)
    # One set of callbacks for every phase: the best checkpoint, history and
    # logs run on across the head-only warm-up and the rest.
    run_callbacks = callbacks(config.model_dir, write_dir, initial_best)
    start = time.perf_counter()
    fits = []
    for first, end, train_backbone in task.fine_tuning_phases(config):
        if end <= start_epoch and end < config.epochs:
            continue  # a resumed run past this phase (BackupAndRestore holds the later state)
        with plan.strategy.scope():
            task.compile_model(model, config, plan.steps_per_epoch, epochs=end - first, train_backbone=train_backbone)
        if not train_backbone:
            print(
                f"fine-tuning: epochs {first + 1}-{end} train the head only "
                f"({len(model.trainable_variables)} variables), the backbone frozen"
            )
        stop_signals.raise_if_requested()
        # A stop signal waits for the next batch boundary (StopAtSignal); a read error names its shard.
        with input_reader.named_read_errors(plan.manifest, ("train", "val"), config.fold):
            fit = model.fit(
                train_data,
                validation_data=val_data,
                initial_epoch=first,
                epochs=end,
                shuffle=False,  # shuffled in tf.data
                steps_per_epoch=plan.steps_per_epoch,
                validation_steps=val_steps,
                callbacks=phase_callbacks(config, run_callbacks, first, end, start_epoch),
            )
        fits.append(fit)
    fit_seconds = time.perf_counter() - start
    for earlier in fits[:-1]:  # one History for the run: the phases' epochs in order
        fit.epoch = earlier.epoch + fit.epoch
        fit.history = {key: earlier.history.get(key, []) + values for key, values in fit.history.items()}
    if distribute.local_replicas(plan.strategy) > 1:
        # The export takes the first replica's copy: all copies must be equal
        # (BatchNormalization(synchronized=True) keeps the moving statistics so).
        drift = distribute.replica_disagreement(model)
        print(
            f"replicas: the {len(model.variables)} variables' copies on this worker's replicas differ by at "
            f"most {drift:.3g}{' (WARNING: they drifted apart; the export takes the first)' if drift > 1e-6 else ''}"
        )
    if write_dir != config.model_dir:
        distribute.remove_write_dir(config.model_dir, write_dir)
        print(f"worker: training done; the chief writes the model, report and export to {config.model_dir}")
        return None
    check_fit(fit, best_path, config.peak_learning_rate)
    checkpoints.load_backup_weights(model, best_path)
    if distribute.is_multi_worker(plan.strategy):
        # The chief goes on alone: a plain copy of its replica predicts and exports without the other workers.
        trained, model = (
            model,
            task.build_and_compile(
                config,
                plan.manifest,
                plan.train_label_counts,
                plan.train_count,
                plan.steps_per_epoch,
                load_weights=False,
            ),
        )
        model.set_weights(trained.get_weights())
    # Mixed precision was for speed: thresholds are tuned on the float32
    # computation, the one the export serves (model.float32_twin).
    return models.float32_twin(model), fit, fit_seconds
