"""A training run folder (`train_keras.py --model-dir`) as export reads it:
its model.keras (loaded with safe_mode=True), or a cross-validated run's K
fold models as one ensemble, and thresholds.json, once its run.json says
training is over."""

import posixpath

import keras
import tensorflow as tf

from protein_location import models
from protein_location.core import run_state
from protein_location.core.errors import ExportError
from protein_location.evaluation import thresholds_file


def load_run(model_dir):
    """A training run folder -> (its model, its thresholds.json as a
    core.thresholds_file.ThresholdsFile, their class names). The model is
    the run's model.keras (loaded with safe_mode=True), or for a
    cross-validated run (`--cv`) the
    `models.EnsembleClassifier` of its K folds' model.keras files."""
    thresholds_path = thresholds_file.path_in(model_dir)
    check_run_finished(model_dir)
    if not tf.io.gfile.exists(thresholds_path):
        # A run writes model.keras first: a folder without both is no run at all.
        missing = "thresholds.json" if tf.io.gfile.exists(posixpath.join(model_dir, "model.keras")) else "model.keras"
        raise ExportError(f"{model_dir}: no {missing} here; train a run with `train_keras.py --model-dir` first")
    try:
        thresholds = thresholds_file.ThresholdsFile.read(model_dir)
    except ValueError as error:
        raise ExportError(f"{thresholds_path}: {error}") from None
    folds, single_view, tta, class_names = (
        thresholds.folds,
        thresholds.single_view,
        thresholds.tta,
        list(thresholds.class_names),
    )
    if folds:
        members = []
        for fold in range(folds):
            check_run_finished(run_state.fold_dir(model_dir, fold))
            members.append(_load_model(run_state.fold_dir(model_dir, fold)))
        model = models.EnsembleClassifier(members)
    else:
        model = _load_model(model_dir)
    width = int(model.output_shape[-1])
    if single_view.shape != (width,) or len(class_names) != width or (tta is not None and tta.shape != (width,)):
        raise ExportError(
            f"{thresholds_path}: expected {width} thresholds and class names (the model's outputs), "
            f"found {single_view.size} and {len(class_names)}"
        )
    return model, thresholds, class_names


def _load_model(model_dir):
    model_path = posixpath.join(model_dir, "model.keras")
    if not tf.io.gfile.exists(model_path):
        raise ExportError(f"{model_dir}: no model.keras here; train a run with `train_keras.py --model-dir` first")
    try:
        return keras.models.load_model(model_path, safe_mode=True, compile=False)
    except Exception as error:  # Keras raises many types for a bad archive
        raise ExportError(f"{model_path}: cannot load the Keras model ({str(error).splitlines()[0]})") from None


def check_run_finished(model_dir):
    """Refuses a run folder whose training is not over (run.json says training,
    or an earlier version's backup/ is there): its model.keras, if any, is of
    another run or of none."""
    try:
        state = run_state.RunState.read(model_dir)
    except ValueError as error:
        raise ExportError(str(error)) from None
    unfinished = (
        state.status == run_state.TRAINING
        if state is not None
        else run_state.describe_folder(model_dir) == "unfinished"
    )
    if unfinished:
        raise ExportError(
            f"{model_dir}: holds an unfinished training (run.json, backup/); finish it by running its "
            "train_keras.py command again, then export"
        )
