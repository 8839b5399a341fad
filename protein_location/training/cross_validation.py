"""K-fold cross-validation (`train_keras.py --cv`): the K fold models of a
dataset converted with `--folds K`, thresholds tuned on their out-of-fold
predictions, and one export that averages the K models.

    train_keras.py --data D --model-dir R --cv [--export E]      # every fold, then the ensemble
    train_keras.py --data D --model-dir R --cv --fold i          # fold i alone (one machine of several)

`R/fold-<i>/` is a plain run of `--fold i` (run.json, resume, report) that
also writes `held_out_predictions.npz`: its model's predictions of fold i,
the images it did not train on. Once every fold is trained, `R/` gets:

| file | what |
| --- | --- |
| `run.json` | the settings (as a fold's, without --fold), `status`, the exports made |
| `thresholds.json` | tuned on the out-of-fold predictions of every training image (each run's rule); `folds` |
| `report.json` | the out-of-fold figures (per class too) and each fold's own |
| `report.png` | each fold's learning curves, and per-class out-of-fold F1 |

The same command resumes a killed run at the fold and epoch it reached: a
finished fold says so and is skipped, an unfinished one resumes from its
backup. Folds trained on other machines (`--cv --fold i`, same flags, a
shared --model-dir) are gathered by the command without --fold.
"""

import dataclasses
import posixpath

import numpy as np
import tensorflow as tf

from protein_location import export
from protein_location.core import (
    folder_lock,
    manifest as manifest_lib,
    output_files,
    run_state,
    stop_signals,
)
from protein_location.core.errors import TrainError
from protein_location.core.run_state import EVALUATED, TRAINING, RunState
from protein_location.evaluation import report as report_lib, report_file, thresholds as thresholds_lib, thresholds_file
from protein_location.evaluation.report_file import ReportFile
from protein_location.training import checkpoints, config as config_lib, distribute, held_out, run_folder, trainer

# What a cross-validated run writes in its own folder, beside fold-<i>/: what
# --overwrite removes there (each fold's run removes its own files).
CV_FILES = ("run.json", "thresholds.json", report_file.FILE_NAME, "report.png")


def fold_config(config, fold):
    """The TrainConfig of one fold's run: `--fold fold` in R/fold-<fold>, no export."""
    return dataclasses.replace(
        config,
        cv=False,
        fold=fold,
        model_dir=run_state.fold_dir(config.model_dir, fold),
        export_dir=None,
        export_formats=(),
    )


def cv_settings(config):
    """run.json's settings of the cross-validated run: a fold's flags, --cv, without --fold."""
    settings = config_lib.run_settings(config)
    settings.pop("--fold")
    return settings


def count_folds(config):
    """K, of a dataset converted with --folds K; TrainError in one line otherwise."""
    manifest = manifest_lib.DatasetManifest.read(config.data)
    folds = manifest.folds
    if not folds:
        raise TrainError(
            f"{config.data}: --cv needs a dataset converted with --folds K (this one has a val split); "
            "convert it again with `python -m data_prep convert ... --folds 5`"
        )
    if config.fold is not None and not 0 <= config.fold < folds:
        raise TrainError(f"`fold` {config.fold} is outside 0-{folds - 1} ({config.data} has {folds} folds)")
    return manifest, int(folds)


def train_cross_validated(config, train_fold):
    """Trains the folds of `config` (all, or --fold's) with `train_fold(fold
    config, settled strategy)`, then, when all are trained, tunes thresholds on
    their out-of-fold predictions, writes the report and exports the ensemble.

    Returns the cross-validated report dict (None when only --fold's fold was
    trained, and on a multi-worker run's non-chief workers).
    """
    output_files.check_output_dir(config.model_dir, "--model-dir")
    if config.export_dir:
        output_files.check_output_dir(config.export_dir, "--export")
    manifest, folds = count_folds(config)
    kind = trainer.strategy_kind(config)
    if kind == "tpu":
        distribute.check_tpu_paths(config.data, config.model_dir, config.export_dir)
    strategy = trainer.create_strategy(config, kind)
    chief = distribute.is_chief(strategy)
    state = _open_cv_run(config, chief)
    todo = [] if state.status == EVALUATED else [config.fold] if config.fold is not None else range(folds)
    for fold in todo:
        stop_signals.raise_if_requested()
        print(
            f"cv: fold {fold} of folds 0-{folds - 1} (trained on the other {folds - 1}, validated on it) in "
            f"{run_state.fold_dir(config.model_dir, fold)}"
        )
        train_fold(fold_config(config, fold), (kind, strategy))
    if config.fold is not None and todo:
        print(
            f"cv: fold {config.fold} is trained; once every fold is, the same command without --fold gathers "
            f"them into {config.model_dir} (thresholds, report{', export' if config.export_dir else ''})"
        )
        return None
    if not chief:
        return None
    with folder_lock.FolderLock(config.model_dir, "training"):
        return _finish(config, manifest, folds, state)


def _open_cv_run(config, chief):
    """R/run.json of the cross-validated run: read (refused if its settings
    differ), or written new (TRAINING). --overwrite removes R's own files;
    each fold's run removes its own."""
    settings = cv_settings(config)
    fingerprint = run_state.file_fingerprint(posixpath.join(config.data, manifest_lib.MANIFEST_NAME))
    try:
        state = None if config.overwrite else RunState.read(config.model_dir)
    except ValueError as error:
        raise TrainError(f"{error}; pass `overwrite` to start a new run in {config.model_dir}") from None
    if state is not None:
        differences = state.differences(settings, fingerprint)
        if differences:
            raise TrainError(
                f"{config.model_dir}: holds a run made with other settings ({'; '.join(differences)}); "
                "run its own command to finish it, pass --overwrite to replace it, or pick another "
                "--model-dir"
            )
        return state
    state = RunState(TRAINING, settings, fingerprint)
    if chief:
        _remove_cv_files(config.model_dir)
        tf.io.gfile.makedirs(config.model_dir)
        state.write(config.model_dir)
    return state


def _remove_cv_files(model_dir):
    for name in CV_FILES:
        path = posixpath.join(model_dir, name)
        if tf.io.gfile.exists(path):
            tf.io.gfile.remove(path)


def _finish(config, manifest, folds, state):
    """Gathers the trained folds (once), then exports when --export names a new base."""
    if state.status == EVALUATED:
        report = ReportFile.read(config.model_dir).content
        if not config.export_dir or state.export_to(config.export_dir):
            done = f"; exported as {state.export_to(config.export_dir)}" if config.export_dir else ""
            print(f"cv: {config.model_dir} is complete (run.json){done}; nothing to do (--overwrite trains it again)")
            return report
    else:
        report = gather(config, manifest, folds)
        stop_signals.raise_if_requested()
        state.status = EVALUATED
        state.write(config.model_dir)
    if config.export_dir:
        stop_signals.raise_if_requested()
        model, thresholds, class_names = export.load_run(config.model_dir)
        version = export.export_model(
            model,
            thresholds.single_view,
            config.export_dir,
            config.export_formats,
            class_names=class_names,
            tta_thresholds=thresholds.tta if config.tta == 8 else None,
        )
        print(
            f"cv: the export averages the {folds} fold models in one graph ({folds}x one model's compute"
            f"{', and 8 views each' if config.tta == 8 else ''})"
        )
        run_folder.record_export(config.model_dir, state, config.export_dir, version)
    return report


def check_fold_runs(config, folds):
    """Each fold's run is finished (run.json `evaluated`), with this run's settings and data."""
    fingerprint = run_state.file_fingerprint(posixpath.join(config.data, manifest_lib.MANIFEST_NAME))
    for fold in range(folds):
        fold_dir = run_state.fold_dir(config.model_dir, fold)
        try:
            state = RunState.read(fold_dir)
        except ValueError as error:
            raise TrainError(str(error)) from None
        if state is None or state.status != EVALUATED:
            raise TrainError(
                f"{fold_dir}: fold {fold} is not trained yet; the same command trains it (or `--cv "
                f"--fold {fold}` on another machine), then gathers the folds"
            )
        differences = state.differences(config_lib.run_settings(fold_config(config, fold)), fingerprint)
        if differences:
            raise TrainError(
                f"{fold_dir}: fold {fold} was trained with other settings ({'; '.join(differences)}); "
                f"train it again with `--cv --fold {fold} --overwrite` and this command's flags"
            )


def out_of_fold(predictions, train_count):
    """The K folds' held-out predictions as one set: (ids, labels [n, C],
    views [8, n, C], the fold of each image [n]). TrainError unless every
    training image is predicted exactly once."""
    ids = [image_id for p in predictions for image_id in p.ids]
    if len(set(ids)) != len(ids):
        seen, twice = set(), None
        for image_id in ids:
            if image_id in seen:
                twice = image_id
                break
            seen.add(image_id)
        raise TrainError(
            f"the folds' held-out predictions hold {twice!r} twice: the folds overlap; convert the "
            "dataset again and train every fold on it"
        )
    if len(ids) != train_count:
        raise TrainError(
            f"the folds' held-out predictions cover {len(ids)} images, the training split has "
            f"{train_count}; train every fold on this dataset (--overwrite)"
        )
    labels = np.concatenate([p.labels for p in predictions]).astype(int)
    views = np.concatenate([p.views for p in predictions], axis=1)
    fold_of = np.concatenate([np.full(len(p.ids), p.fold) for p in predictions])
    return ids, labels, views, fold_of


def cross_tuned_macro_f1(y_true, y_prob, fold_of, train_rates):
    """Macro F1 of the out-of-fold probabilities with each fold labelled under
    thresholds tuned on the other folds' out-of-fold probabilities: no image
    decides its own cut (the honest figure; tuning on all of them and
    scoring the same images is optimistic)."""
    predicted = np.zeros_like(y_true)
    for fold in np.unique(fold_of):
        mine = fold_of == fold
        cuts = thresholds_lib.tune_thresholds(y_true[~mine], y_prob[~mine], train_rates).thresholds
        predicted[mine] = y_prob[mine] >= cuts
    return thresholds_lib.macro_f1(y_true, predicted)


def gather(config, manifest, folds):
    """Tunes thresholds on the out-of-fold predictions, writes R's
    thresholds.json, report.json and report.png; returns the report."""
    check_fold_runs(config, folds)
    fold_dirs = [run_state.fold_dir(config.model_dir, fold) for fold in range(folds)]
    try:
        predictions = [held_out.HeldOutPredictions.read(fold_dir) for fold_dir in fold_dirs]
    except ValueError as error:
        raise TrainError(f"{error}; train that fold again with `--cv --fold i --overwrite`") from None
    _, train_count, train_label_counts = manifest.summary("train")
    ids, y_true, views, fold_of = out_of_fold(predictions, train_count)
    train_rates = np.asarray(train_label_counts, np.float64) / train_count
    probabilities = {1: views[0], 8: views.mean(axis=0)}
    tuned = {n: thresholds_lib.tune_thresholds(y_true, probabilities[n], train_rates) for n in (1, 8)}
    class_names = manifest.class_names
    thresholds_file.ThresholdsFile(
        tuple(class_names),
        tuned[1].thresholds,
        tuned[8].thresholds,
        views=config.tta,
        rule=thresholds_lib.threshold_rule(),
        folds=folds,
        tuned_on=f"the out-of-fold predictions of all {len(ids)} training images",
    ).write(config.model_dir)
    fold_reports = [ReportFile.read(fold_dir) for fold_dir in fold_dirs]
    per_fold = [
        report.fold_summary(fold, (checkpoints.read_best(fold_dir) or {}).get("epoch"))
        for fold, (report, fold_dir) in enumerate(zip(fold_reports, fold_dirs))
    ]
    y_prob = probabilities[config.tta]
    run_info = fold_reports[0].run_settings()
    run_info.update(
        {
            "cv_folds": folds,
            "val_tta": config.tta,
            "evaluated_on": (
                f"out-of-fold predictions: each of the {len(ids)} training images predicted once, by the "
                "fold model that did not train on it (val_* figures below are of these)"
            ),
        }
    )
    report = report_lib.build_report(run_info, y_true, y_prob, tuned[config.tta], class_names)
    other = 8 if config.tta == 1 else 1
    report[f"val_macro_f1_tuned_{other}_views"] = thresholds_lib.macro_f1(
        y_true, probabilities[other] >= tuned[other].thresholds
    )
    report["out_of_fold"] = {
        "images": len(ids),
        "macro_auc": report["val_macro_auc"],
        "macro_f1_at_0.5": report["val_macro_f1_at_0.5"],
        # Thresholds tuned and scored on the same images: optimistic, less so with K times the positives.
        "macro_f1_tuned": report["val_macro_f1_tuned"],
        "macro_f1_cross_tuned": cross_tuned_macro_f1(y_true, y_prob, fold_of, train_rates),
    }
    report["folds"] = per_fold
    ReportFile(report).write(config.model_dir)
    histories = [report_lib.read_history(posixpath.join(fold_dir, checkpoints.HISTORY)) for fold_dir in fold_dirs]
    report_lib.plot_cv_report(histories, report, posixpath.join(config.model_dir, "report.png"))
    oof = report["out_of_fold"]
    print(
        f"cv: out-of-fold ({len(ids)} images, {config.tta} view{'s' if config.tta > 1 else ''}): macro AUC "
        f"{oof['macro_auc']:.4f}, macro F1 {oof['macro_f1_cross_tuned']:.4f} under thresholds tuned on the other "
        f"folds, {oof['macro_f1_tuned']:.4f} under those tuned on all (optimistic); per fold: "
        + ", ".join(f"{f['val_macro_auc']:.3f}" for f in per_fold)
        + " val macro AUC"
    )
    print(f"cv: {config.model_dir} (run.json, thresholds.json, report.json, report.png; fold-0 ... fold-{folds - 1})")
    return report
