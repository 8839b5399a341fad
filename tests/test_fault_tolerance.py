"""A run that goes wrong stops in one line saying what happened and what to
do: a NaN loss, a missing best checkpoint, a model file that would run code."""

import json

import keras
import numpy as np
import pytest

from protein_location.core.errors import TrainError
from protein_location.training import trainer
from tests.helpers import last_error_line, run_cli

pytestmark = pytest.mark.slow  # trains or exports


def test_a_nan_loss_stops_the_run_in_one_line_and_exports_nothing(converted_dir, tmp_path):
    # A peak rate of 3e28: the first update blows the weights up.
    result = run_cli(
        "train_keras.py",
        "--data",
        converted_dir,
        "--model-dir",
        tmp_path / "run",
        "--epochs",
        2,
        "--batch-size",
        8,
        "--size",
        32,
        "--width",
        0.125,
        "--lr",
        1e30,
        "--export",
        tmp_path / "export",
        check=False,
    )
    assert result.returncode == 1, result.stderr
    assert last_error_line(result) == (
        "error: the training loss became nan in epoch 1 and the run stopped (TerminateOnNaN); lower --lr "
        "(peak 3.125e+28 here) or train with --precision float32; nothing was exported"
    )
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "export").exists() and not (tmp_path / "run/thresholds.json").exists()


def test_a_run_without_a_best_checkpoint_stops_instead_of_exporting_its_last_weights(tmp_path):
    fit = keras.callbacks.History()
    fit.epoch, fit.history = [0, 1], {"loss": [0.3, 0.2], "val_auc": [0.6, 0.7]}
    best = tmp_path / "best.weights.h5"
    with pytest.raises(TrainError) as error:
        trainer.check_fit(fit, str(best), 2e-3)
    assert str(error.value) == (
        f"{best}: no best checkpoint: no epoch of this run beat the best val_auc in its "
        "history.csv, and the file that held it is gone; train again with a new --model-dir"
    )
    best.write_bytes(b"")
    trainer.check_fit(fit, str(best), 2e-3)  # a finite loss and a checkpoint: the run goes on
    fit.history["loss"][-1] = np.inf
    with pytest.raises(TrainError, match=r"^the training loss became inf in epoch 2 and the run stopped"):
        trainer.check_fit(fit, str(best), 2e-3)


def test_a_run_folder_whose_model_would_run_python_code_is_refused(tmp_path):
    """model.keras is loaded with safe_mode=True: a Lambda layer's Python
    function is never deserialized (a SavedModel, which runs its own graph,
    must come from a trusted source: docs/fault-tolerance.md)."""
    inputs = keras.Input((32, 32, 4))
    pooled = keras.layers.GlobalAveragePooling2D()(keras.layers.Lambda(lambda image: image * 2.0)(inputs))
    keras.Model(inputs, keras.layers.Dense(28, activation="sigmoid")(pooled)).save(tmp_path / "model.keras")
    (tmp_path / "thresholds.json").write_text(
        json.dumps({"thresholds": [0.5] * 28, "class_names": [str(c) for c in range(28)]})
    )
    result = run_cli(
        "-m", "protein_location", "export", "--model-dir", tmp_path, "--out", tmp_path / "export", check=False
    )
    assert result.returncode == 1
    assert last_error_line(result) == (
        f"error: {tmp_path}/model.keras: cannot load the Keras model (Requested the deserialization of a `Lambda` "
        "layer whose `function` is a Python lambda. This carries a potential risk of arbitrary code execution and "
        "thus it is disallowed by default. If you trust the source of the artifact, you can override this error by "
        "passing `safe_mode=False` to the loading function, or calling "
        "`keras.config.enable_unsafe_deserialization().)"
    )
    assert not (tmp_path / "export").exists()
