"""Training: plan (strategy, precision, data) -> fit -> thresholds and report -> export.

| module | job |
| --- | --- |
| `config` | `TrainConfig` and the flags generated from it |
| `task` | the model, loss, metrics, optimizer and input pipelines |
| `trainer` | the run's plan, callbacks, fit and resume |
| `checkpoints` | backup, best checkpoint and history, each written whole; stop on SIGTERM |
| `run_folder` | run.json: start, resume, finish or refuse a run folder |
| `evaluator` | 8-view prediction of val, thresholds, report |
| `held_out` | a `--fold` run's predictions of its held-out fold (held_out_predictions.npz) |
| `cross_validation` | `--cv`: the K folds, thresholds on their out-of-fold predictions, the ensemble export |
"""

import contextlib

from protein_location import export
from protein_location.core import folder_lock, output_files, stop_signals
from protein_location.core.run_state import TRAINING
from protein_location.evaluation.report_file import ReportFile
from protein_location.training import config as config_lib, cross_validation, distribute, evaluator, run_folder, trainer
from protein_location.training.config import TrainConfig

__all__ = ["TrainConfig", "train"]


def train(config, settled_strategy=None):
    """Trains, tunes thresholds on val, writes the report and (optionally) the export.

    `settled_strategy`: a (kind, strategy) pair made earlier in this process
    (`trainer.plan_run`); cross-validation trains its folds under one.

    Run again after a kill at any instant, the same command finishes the run:
    it resumes from the last finished epoch, or only evaluates, or only
    exports (`run_folder`). A SIGTERM stops it at the next batch with
    `stop_signals.StopRequested` saying where it stands.

    With `config.cv`, the K folds of a dataset converted with --folds K
    and their ensemble (`cross_validation`).

    Returns the report dict (None on a multi-worker run's non-chief workers:
    the chief writes the model, report and export).
    """
    if config.cv:
        return cross_validation.train_cross_validated(config, train)
    settings = config_lib.run_settings(config)
    output_files.check_output_dir(config.model_dir, "--model-dir")
    if config.export_dir:
        output_files.check_output_dir(config.export_dir, "--export")
    config, plan = trainer.plan_run(config, settled_strategy)
    stop_signals.raise_if_requested()
    chief = distribute.is_chief(plan.strategy)
    with folder_lock.FolderLock(config.model_dir, "training") if chief else contextlib.nullcontext():
        try:
            state = run_folder.open_run(config, settings, chief)
            return _finish(config, plan, state, chief)
        except stop_signals.StopRequested as stop:
            progress = run_folder.describe_progress(config.model_dir, config.epochs, config.export_dir)
            raise stop.with_message(f"stopped by {stop.name}; {progress}") from None


def _finish(config, plan, state, chief):
    """Trains and evaluates a TRAINING run; exports when --export names a base
    this run has not been exported to."""
    if state.status == TRAINING:
        fitted = trainer.fit_model(config, plan)
        if fitted is None:
            return None
        model, fit, fit_seconds = fitted
        stop_signals.raise_if_requested()
        report, single_view, tta = evaluator.write_report(config, plan, model, fit, fit_seconds)
        stop_signals.raise_if_requested()
        state = run_folder.finish_training(config.model_dir, state)
        thresholds, tta_thresholds = single_view.thresholds, tta.thresholds
    elif not chief:
        return None
    else:
        report = ReportFile.read(config.model_dir).content
        if not config.export_dir or state.export_to(config.export_dir):
            done = f"; exported as {state.export_to(config.export_dir)}" if config.export_dir else ""
            print(f"run: {config.model_dir} is complete (run.json){done}; nothing to do (--overwrite trains it again)")
            return report
        print(f"run: {config.model_dir} is trained and evaluated (run.json); exporting it")
        model, run_thresholds, _ = export.load_run(config.model_dir)
        thresholds, tta_thresholds = run_thresholds.single_view, run_thresholds.tta
    if config.export_dir:
        stop_signals.raise_if_requested()
        version = export.export_model(
            model,
            thresholds,
            config.export_dir,
            config.export_formats,
            class_names=plan.manifest.class_names,
            tta_thresholds=tta_thresholds if config.tta == 8 else None,
        )
        run_folder.record_export(config.model_dir, state, config.export_dir, version)
    return report
