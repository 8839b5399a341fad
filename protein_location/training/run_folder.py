"""A training run's folder across commands: whether a command starts a run,
resumes it, only finishes it (export), or refuses (`open_run`), and the
steps that move its run.json on (`finish_training`, `record_export`).

The same command run again after a kill at any instant finishes the run;
another command refuses in one line naming the settings that differ, unless
--overwrite. So a folder never holds files of two runs, and an export never
mixes them.
"""

import posixpath

import tensorflow as tf

from protein_location.core import manifest as manifest_lib, run_state
from protein_location.core.errors import TrainError
from protein_location.core.run_state import EVALUATED, TRAINING, RunState
from protein_location.training import checkpoints


def open_run(config, settings, chief=True):
    """The RunState a command works from in `config.model_dir`: TRAINING (a new
    run, or one to resume) or EVALUATED (trained: only the export may be
    left). Only the chief writes: a new run's run.json, --overwrite's removal.
    TrainError in one line when the folder holds another run."""
    model_dir = config.model_dir
    fingerprint = run_state.file_fingerprint(posixpath.join(config.data, manifest_lib.MANIFEST_NAME))
    try:
        state = None if config.overwrite else RunState.read(model_dir)
    except ValueError as error:
        raise TrainError(f"{error}; pass `overwrite` to start a new run in {model_dir}") from None
    if config.overwrite:
        if chief:
            run_state.remove_run_files(model_dir)
    elif state is not None:
        differences = state.differences(settings, fingerprint)
        if differences:
            if state.status == EVALUATED:
                raise TrainError(
                    f"{model_dir}: holds a finished run made with other settings "
                    f"({'; '.join(differences)}); pass --overwrite to replace it, or pick another "
                    "--model-dir"
                )
            raise TrainError(
                f"{model_dir}: holds an unfinished run started with other settings "
                f"({'; '.join(differences)}); run its own command to finish it, or pass --overwrite "
                "to start again"
            )
        if state.status == EVALUATED and chief:
            _remove_training_state(model_dir)  # left by a kill between run.json and their removal
        return state
    else:
        _open_folder_without_run_state(model_dir, chief)
    state = RunState(TRAINING, settings, fingerprint)
    if chief:
        tf.io.gfile.makedirs(model_dir)
        state.write(model_dir)
    return state


def _open_folder_without_run_state(model_dir, chief):
    """A folder without run.json: empty (what a run killed before writing it
    left is removed), or written by an earlier version (described by its files)."""
    found = run_state.describe_folder(model_dir)
    if found == "finished":
        raise TrainError(
            f"{model_dir}: holds a finished run (model.keras, no run.json: written by an earlier "
            "version); pass --overwrite to replace it, or pick another --model-dir"
        )
    if found == "unfinished":
        print(
            f"resume: {model_dir} holds an unfinished run of an earlier version (backup/, no run.json); "
            "resuming it with this command's settings"
        )
    elif chief:
        run_state.remove_run_files(model_dir)  # what a run killed before its first epoch left


def finish_training(model_dir, state):
    """After model.keras, thresholds.json and the report are written: the run
    is EVALUATED, and what resuming needed (backup/, the previous best) goes."""
    state.status = EVALUATED
    state.write(model_dir)
    _remove_training_state(model_dir)
    return state


def _remove_training_state(model_dir):
    backup = posixpath.join(model_dir, run_state.BACKUP_DIR)
    if tf.io.gfile.exists(backup):
        tf.io.gfile.rmtree(backup)
    checkpoints.remove_previous_best(model_dir)


def record_export(model_dir, state, export_base, version_path):
    state.exports.append({"base": export_base, "version": version_path})
    state.write(model_dir)
    return state


def describe_progress(model_dir, epochs, export_dir=None):
    """Where a stopped run stands, for its one-line message."""
    try:
        state = RunState.read(model_dir)
    except ValueError:
        state = None
    if state is not None and state.status == EVALUATED:
        if export_dir is None or state.export_to(export_dir):
            return "the run had finished; the same command says so"
        return "training, thresholds and report were done; the same command writes the export"
    try:
        done = checkpoints.committed_epochs(model_dir)
    except TrainError:
        done = 0
    if done >= epochs:
        return (
            f"all {epochs} epochs are saved in {model_dir}/backup; the same command writes the thresholds, "
            "report and export"
        )
    if done:
        saved = f"epoch 1 of {epochs} is" if done == 1 else f"epochs 1-{done} of {epochs} are"
        return f"{saved} saved in {model_dir}/backup; the same command resumes from there"
    return "no epoch had finished; the same command starts the run again"
