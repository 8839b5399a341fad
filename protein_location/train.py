"""Training: strategy scope -> compile -> fit -> thresholds -> report -> export."""

import dataclasses
import json
import posixpath
import time

import keras
import numpy as np
import tensorflow as tf

from protein_location import distribute, export, input as input_lib, labels as labels_lib
from protein_location import manifest as manifest_lib, model as model_lib, thresholds as thresholds_lib


class TrainError(ValueError):
    """A training request that cannot run as asked (one line, names the flag)."""


@dataclasses.dataclass
class TrainConfig:
    data: str
    model_dir: str
    epochs: int = 10
    batch_size: int = 64
    image_size: int | None = None
    arch: str = "seresnet18"
    width: float = 1.0
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    warmup_epochs: float = 1.0
    dropout: float = 0.0
    shuffle_buffer: int = 2048
    seed: int = 0
    fold: int | None = None
    export_dir: str | None = None


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
    """The SE-ResNet, AdamW with warmup + cosine decay, BCE, macro F1 and AUC."""
    model = model_lib.build_seresnet(
        config.arch,
        image_size=config.image_size or manifest["image_size"],
        width=config.width,
        channel_mean=manifest.get("channel_mean", (0.0,) * 4),
        channel_std=manifest.get("channel_std", (255.0,) * 4),
        output_bias=class_log_odds(train_label_counts, train_count),
        dropout=config.dropout,
        synchronized_bn=tf.distribute.get_strategy().num_replicas_in_sync > 1,
    )
    total_steps = max(config.epochs * steps_per_epoch, 1)
    warmup_steps = min(int(config.warmup_epochs * steps_per_epoch), total_steps - 1)
    schedule = keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0 if warmup_steps else config.learning_rate,
        decay_steps=total_steps - warmup_steps,
        warmup_target=config.learning_rate if warmup_steps else None,
        warmup_steps=warmup_steps,
    )
    model.compile(
        optimizer=keras.optimizers.AdamW(schedule, weight_decay=config.weight_decay),
        loss=keras.losses.BinaryCrossentropy(),
        metrics=[
            # threshold=0.5: without it F1Score takes the argmax (single-label).
            keras.metrics.F1Score(average="macro", threshold=0.5, name="macro_f1"),
            keras.metrics.AUC(multi_label=True, num_labels=labels_lib.NUM_CLASSES, name="auc"),
        ],
    )
    return model


def _callbacks(model_dir, best_path):
    return [
        keras.callbacks.BackupAndRestore(posixpath.join(model_dir, "backup")),
        keras.callbacks.ModelCheckpoint(best_path, monitor="val_macro_f1", mode="max",
                                        save_best_only=True, save_weights_only=True),
        keras.callbacks.TensorBoard(posixpath.join(model_dir, "logs"), profile_batch=0),
        keras.callbacks.CSVLogger(posixpath.join(model_dir, "history.csv")),
        keras.callbacks.TerminateOnNaN(),
    ]


def predict_split(model, data_dir, split, batch_size, image_size, fold=None):
    """(labels [n, 28], probabilities [n, 28]) of a split, in manifest order."""
    dataset = input_lib.make_dataset(data_dir, split, batch_size, image_size, fold=fold)
    y_true = np.concatenate([labels.numpy() for _, labels in dataset])
    y_prob = model.predict(dataset.map(lambda image, _: image), verbose=0)
    return y_true, y_prob


def build_report(config, y_true, y_prob, thresholds, untuned, fit_seconds, images_seen):
    from sklearn.metrics import f1_score

    def per_class_f1(cut):
        y_pred = (y_prob >= cut).astype(int)
        return f1_score(y_true.astype(int), y_pred, average=None, zero_division=0)

    at_half, tuned = per_class_f1(thresholds_lib.DEFAULT_THRESHOLD), per_class_f1(thresholds)
    return {
        "arch": config.arch,
        "width": config.width,
        "epochs": config.epochs,
        "batch_size": config.batch_size,
        "val_examples": int(len(y_true)),
        "val_macro_f1_at_0.5": float(np.mean(at_half)),
        # Tuned and scored on the same val split: an optimistic estimate.
        "val_macro_f1_tuned": float(np.mean(tuned)),
        "classes_without_val_examples": [labels_lib.CLASS_NAMES[c] for c in untuned],
        "train_seconds": round(fit_seconds, 1),
        "train_images_per_second": round(images_seen / max(fit_seconds, 1e-9), 1),
        "per_class": [
            {"index": c, "name": labels_lib.CLASS_NAMES[c], "val_support": int(y_true[:, c].sum()),
             "threshold": float(thresholds[c]), "f1_at_0.5": float(at_half[c]), "f1_tuned": float(tuned[c])}
            for c in range(labels_lib.NUM_CLASSES)
        ],
    }


def _write_json(path, payload):
    with tf.io.gfile.GFile(path, "w") as f:
        json.dump(payload, f, indent=2)


def train(config):
    """Trains, tunes thresholds on val, writes the report and (optionally) the export.

    Returns the report dict.
    """
    keras.utils.set_random_seed(config.seed)
    manifest = manifest_lib.load_manifest(config.data)
    strategy = distribute.select_strategy()
    replicas = strategy.num_replicas_in_sync
    _, train_count, train_label_counts = manifest_lib.split_summary(config.data, manifest, "train", config.fold)
    _, val_count, _ = manifest_lib.split_summary(config.data, manifest, "val", config.fold)
    _check_batch(config, train_count, replicas)
    image_size = config.image_size or manifest["image_size"]
    steps_per_epoch = train_count // config.batch_size
    held_out = f" (fold {config.fold} held out)" if config.fold is not None else ""
    print(f"strategy: {distribute.describe(strategy)}")
    print(f"data: {config.data}: train {train_count}, val {val_count}{held_out} "
          f"examples at {image_size}px; global batch {config.batch_size} "
          f"({config.batch_size // replicas} per replica), {steps_per_epoch} steps per epoch")

    train_data = input_lib.make_dataset(config.data, "train", config.batch_size, image_size, training=True,
                                        seed=config.seed, shuffle_buffer=config.shuffle_buffer, fold=config.fold)
    val_data = input_lib.make_dataset(config.data, "val", config.batch_size, image_size, fold=config.fold)
    with strategy.scope():
        model = build_and_compile(config, manifest, train_label_counts, train_count, steps_per_epoch)
    print(f"model: {model.name}, {model.count_params():,} parameters, input {model.input_shape[1:]}")

    tf.io.gfile.makedirs(config.model_dir)
    best_path = posixpath.join(config.model_dir, "best.weights.h5")
    start = time.perf_counter()
    model.fit(train_data, validation_data=val_data, epochs=config.epochs, shuffle=False,  # shuffled in tf.data
              callbacks=_callbacks(config.model_dir, best_path))
    fit_seconds = time.perf_counter() - start
    if tf.io.gfile.exists(best_path):
        model.load_weights(best_path)
    model.save(posixpath.join(config.model_dir, "model.keras"))

    y_true, y_prob = predict_split(model, config.data, "val", config.batch_size, image_size, config.fold)
    thresholds, untuned = thresholds_lib.tune_thresholds(y_true, y_prob)
    _write_json(posixpath.join(config.model_dir, "thresholds.json"), {
        "class_names": list(labels_lib.CLASS_NAMES), "thresholds": thresholds.tolist(),
        "untuned_classes": untuned,
    })
    report = build_report(config, y_true, y_prob, thresholds, untuned, fit_seconds,
                          config.epochs * steps_per_epoch * config.batch_size)
    _write_json(posixpath.join(config.model_dir, "report.json"), report)
    print(f"val macro F1: {report['val_macro_f1_at_0.5']:.4f} at 0.5, "
          f"{report['val_macro_f1_tuned']:.4f} at per-class thresholds tuned on val (optimistic)")
    print(f"run: {config.model_dir} (best.weights.h5, model.keras, history.csv, logs/, thresholds.json, report.json)")
    if config.export_dir:
        export.export_saved_model(model, thresholds, config.export_dir)
        print(f"export: SavedModel in {config.export_dir}")
    return report
