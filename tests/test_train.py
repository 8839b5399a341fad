"""Training as a user runs it: repeatable for a seed, resumable after kill -9,
and the imbalance/precision options all reach the end of a run."""

import csv
import json
import os
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest

from protein_location import models
from protein_location.core import device_precision, manifest as manifest_lib
from protein_location.data import augment, input_reader
from protein_location.training import checkpoints, config as config_lib, evaluator, task, trainer
from tests.helpers import ROOT, run_cli

TINY = ["--batch-size", 8, "--width", 0.125, "--size", 32]


def _train_args(data, run, epochs, *extra):
    return ["train_keras.py", "--data", data, "--model-dir", run, "--epochs", epochs, *TINY, *extra]


def _history(run):
    return list(csv.DictReader((run / "history.csv").open()))


@pytest.mark.slow
def test_same_command_twice_gives_the_same_metrics(converted_dir, tmp_path, monkeypatch):
    # A run reads dataset.json once (trainer.plan_run) and passes it along: pipelines, evaluator, Ids.
    reads, read = [], manifest_lib.DatasetManifest.read.__func__
    monkeypatch.setattr(
        manifest_lib.DatasetManifest, "read", classmethod(lambda cls, path: reads.append(path) or read(cls, path))
    )
    for name in ("a", "b"):
        run_cli(*_train_args(converted_dir, tmp_path / name, 2, "--seed", 5))
    assert reads == [str(converted_dir)] * 2
    assert _history(tmp_path / "a") == _history(tmp_path / "b")
    assert (tmp_path / "a/thresholds.json").read_text() == (tmp_path / "b/thresholds.json").read_text()
    # Without --precision the machine decides: mixed_bfloat16 where bfloat16 pays (device_precision.bfloat16_pays), so
    # repeatability holds in the precision the demo trains in.
    report = json.loads((tmp_path / "a/report.json").read_text())
    assert report["precision"] == device_precision.default_precision("default")[0]


@pytest.mark.slow
def test_killed_run_resumes_from_its_last_epoch(converted_dir, tmp_path):
    run, epochs = tmp_path / "run", 8
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=str(ROOT))
    process = subprocess.Popen(
        [sys.executable, *map(str, _train_args(converted_dir, run, epochs))],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and process.poll() is None:
        if (run / "history.csv").exists() and len(_history(run)) >= 2:
            break
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL, "training finished before it could be killed"
    done_before = len(_history(run))
    assert 2 <= done_before < epochs

    # The best epoch so far scored higher than any later epoch can: the
    # checkpoint written before the kill must survive the resumed epochs.
    resumed_at = checkpoints.committed_epochs(str(run))
    checkpoints.restore_best(str(run), resumed_at, trainer.SELECTION_METRIC)
    best = json.loads((run / "best.json").read_text())
    (run / "best.json").write_text(json.dumps({**best, trainer.SELECTION_METRIC: 1.5}))
    best_before = (run / "best.weights.h5").read_bytes()

    resumed = run_cli(*_train_args(converted_dir, run, epochs))
    assert "Epoch 1/8" not in resumed.stdout
    assert f"resume: from the end of epoch {resumed_at} ({run}/backup)" in resumed.stdout
    assert f"Epoch {resumed_at + 1}/8" in resumed.stdout
    assert [int(row["epoch"]) for row in _history(run)] == list(range(epochs))
    assert not (run / "backup").exists()  # removed once training completed
    assert (run / "best.weights.h5").read_bytes() == best_before


def test_a_resumed_run_draws_new_batches_instead_of_replaying_epoch_one(converted_dir):
    def first_batch(start_epoch):
        seed = task.data_seed(4, start_epoch)
        dataset = input_reader.make_dataset(str(converted_dir), "train", 8, training=True, seed=seed, with_ids=True)
        images, _, ids = next(iter(dataset))
        return ids.numpy().tolist(), images.numpy()

    assert task.data_seed(4, 0) == 4  # a fresh run keeps its seed, so published runs repeat
    fresh_ids, resumed_ids = first_batch(0)[0], first_batch(3)[0]
    assert resumed_ids != fresh_ids
    assert first_batch(3)[0] == resumed_ids  # a resume repeats for a seed and epoch


def test_checkpoint_selection_carries_the_best_value_over_from_the_best_checkpoint(tmp_path):
    (tmp_path / "best.weights.h5").write_bytes(b"weights of epoch 2")
    (tmp_path / "best.json").write_text(
        json.dumps({"epoch": 2, "val_auc": 0.83, "sha256": _sha256(tmp_path / "best.weights.h5")})
    )
    value = checkpoints.restore_best(str(tmp_path), 3, "val_auc")
    checkpoint = next(
        c
        for c in trainer.callbacks(str(tmp_path), initial_best=value)
        if isinstance(c, keras.callbacks.ModelCheckpoint)
    )
    assert checkpoint.monitor == "val_auc" and checkpoint.best == 0.83
    assert checkpoints.restore_best(str(tmp_path / "none"), 3, "val_auc") is None


def _sha256(path):
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.slow
def test_focal_oversampling_ema_mixed_bfloat16_and_xla_run_to_a_report(converted_dir, tmp_path):
    run = tmp_path / "run"
    result = run_cli(
        *_train_args(
            converted_dir,
            run,
            1,
            "--loss",
            "focal",
            "--label-smoothing",
            0.05,
            "--precision",
            "mixed_bfloat16",
            "--jit-compile",
            "--no-augment-flips",
            "--augment-crop",
            1,
            "--augment-jitter",
            0,
            "--oversample",
            "--no-bias-init",
            "--tta",
            8,
            "--ema",
        )
    )
    assert "mixed_bfloat16, XLA, loss focal" in result.stdout
    assert "precision: mixed_bfloat16 (--precision)" in result.stdout
    # Thresholds are tuned on, and model.keras holds, the float32 computation of the trained weights.
    saved = keras.models.load_model(run / "model.keras")
    assert {layer.dtype_policy.name for layer in saved.layers} == {"float32"}
    assert "AugmentConfig(flips=False, crop_min_area=1.0, jitter=0.0)" in result.stdout
    report = json.loads((run / "report.json").read_text())
    assert report["loss"] == "focal" and report["precision"] == "mixed_bfloat16"
    assert report["oversample"] == 0.1 and report["bias_init"] is False and report["val_tta"] == 8
    assert report["ema_momentum"] == 0.99
    assert "oversample: classes rarer than 0.1 of training images repeated up to" in result.stdout
    assert set(report["paper_table_tuned"]) == {
        "binary_accuracy",
        "macro_f1",
        "macro_precision",
        "macro_recall",
        "sample_iou",
    }
    assert (run / "report.png").read_bytes()[:4] == b"\x89PNG"


def test_head_bias_starts_at_the_class_log_odds_unless_bias_init_is_off():
    counts, examples = [50] + [2] * 27, 100
    manifest = manifest_lib.DatasetManifest(
        data_dir="unused", image_size=32, splits={}, class_names=tuple(f"class {c}" for c in range(28))
    )
    heads = {}
    for bias_init in (True, False):
        config = config_lib.TrainConfig(
            data="unused", model_dir="unused", width=0.125, bias_init=bias_init, image_size=32
        )
        model = task.build_and_compile(config, manifest, counts, examples, steps_per_epoch=1)
        heads[bias_init] = model.get_layer("probabilities").bias.numpy()
    np.testing.assert_allclose(heads[True], task.class_log_odds(counts, examples), rtol=1e-6)
    assert heads[True][0] > heads[True][1] and not heads[False].any()


def test_val_probabilities_are_predicted_under_each_of_the_8_views(converted_dir):
    model = models.build_seresnet("seresnet18", image_size=32, width=0.125)
    y_true, views = evaluator.predict_views(model, str(converted_dir), "val", 4, 32)
    images = np.concatenate([batch.numpy() for batch, _ in input_reader.make_dataset(str(converted_dir), "val", 4)])
    expected = np.stack([model.predict(augment.dihedral_view(images, k), verbose=0) for k in range(8)])
    assert views.shape == (8, *y_true.shape)
    np.testing.assert_allclose(views, expected, atol=1e-5)
    assert not np.allclose(views[0], views.mean(axis=0), atol=1e-5)


def test_compile_model_compiles_any_multi_label_model_as_a_run_does():
    """What bench/ compiles its keras.applications peer with: the run's
    optimizer, loss and weighted metrics, on a model that is not ours."""
    inputs = keras.Input((8, 8, 4))
    outputs = keras.layers.Dense(28, activation="sigmoid")(keras.layers.GlobalAveragePooling2D()(inputs))
    model = task.compile_model(
        keras.Model(inputs, outputs), config_lib.TrainConfig(data="", model_dir=""), steps_per_epoch=4
    )
    assert isinstance(model.optimizer, keras.optimizers.AdamW)
    logs = model.train_on_batch(np.ones((2, 8, 8, 4), np.float32), np.zeros((2, 28), np.float32), return_dict=True)
    assert {"loss", "macro_f1", "auc"} <= set(logs)


@pytest.mark.slow
def test_fit_creates_no_variables_so_the_train_step_is_traced_once(converted_dir):
    """task.build_training_state: under the default strategy Keras would create
    the optimizer's slots and F1's variables inside the first trace of the
    train step, and tf.function would then trace the step a second time."""
    import tensorflow as tf

    manifest = manifest_lib.DatasetManifest.read(str(converted_dir))
    config = config_lib.TrainConfig(data=str(converted_dir), model_dir="unused", width=0.125, image_size=32)
    model = task.build_and_compile(config, manifest, [1] * 28, 34, steps_per_epoch=1)
    assert model.optimizer.built
    created = []

    def creator(next_creator, **kwargs):
        created.append(kwargs.get("name"))
        return next_creator(**kwargs)

    dataset = input_reader.make_dataset(str(converted_dir), "train", 8, training=True, seed=0)
    with tf.variable_creator_scope(creator):
        model.fit(dataset, steps_per_epoch=1, epochs=1, verbose=0)
    assert created == []
