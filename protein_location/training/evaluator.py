"""The evaluator: predicts val under the 8 flips/rotations, tunes thresholds
for one view and for their mean, and writes the run's model.keras,
thresholds.json, report.json and report.png."""

import dataclasses
import posixpath

import numpy as np

from protein_location.core import output_files
from protein_location.data import augment, input_reader
from protein_location.evaluation import report as report_lib, thresholds as thresholds_lib, thresholds_file
from protein_location.evaluation.report_file import ReportFile
from protein_location.training import checkpoints, distribute, held_out


def predict_views(model, dataset, split, batch_size, image_size, fold=None):
    """(labels [n, C], probabilities [8, n, C]) of a split in manifest order,
    under each of the 8 flips/rotations (view 0: the images as stored).

    A model under a strategy with several replicas predicts whole batches
    (blanks pad the last one; `input_reader.eval_padding`) and the blanks' rows are dropped.
    `dataset`: a dataset folder or its DatasetManifest.
    """
    padded = model.distribute_strategy.num_replicas_in_sync > 1
    manifest = input_reader.read(dataset)
    batches = input_reader.make_dataset(manifest, split, batch_size, image_size, fold=fold, pad_batches=padded)
    count = manifest.num_examples(split, fold)
    with input_reader.named_read_errors(manifest, (split,), fold):
        y_true = np.concatenate([labels.numpy() for _, labels, *_ in batches])[:count]
        views = [
            batches.map(lambda image, *_, k=k: (augment.dihedral_view(image, k),))
            for k in range(augment.DIHEDRAL_VIEWS)
        ]
        return y_true, np.stack(
            [model.predict(view, verbose=0, callbacks=[checkpoints.StopAtSignal()])[:count] for view in views]
        )


def write_report(config, plan, model, fit, fit_seconds):
    """Tunes thresholds on val for one view and for the mean of the 8
    flips/rotations; writes model.keras, thresholds.json, report.json (for
    the views the export serves by default, --tta) and report.png.

    Returns (report, single-view Tuned, 8-view Tuned).
    """
    with output_files.atomic_path(
        posixpath.join(config.model_dir, "model.keras"), output_files.weights_bytes(model)
    ) as path:
        model.save(path)
    y_true, y_views = predict_views(model, plan.manifest, "val", config.batch_size, config.image_size, config.fold)
    if config.fold is not None:  # what --cv gathers: this model's predictions of the images it did not train on
        ids = input_reader.split_ids(plan.manifest, "val", config.fold)
        held_out.HeldOutPredictions(config.fold, ids, y_true, y_views).write(config.model_dir)
    train_rates = np.asarray(plan.train_label_counts, np.float64) / plan.train_count
    tuned = {
        1: thresholds_lib.tune_thresholds(y_true, y_views[0], train_rates),
        8: thresholds_lib.tune_thresholds(y_true, y_views.mean(axis=0), train_rates),
    }
    y_prob = y_views[0] if config.tta == 1 else y_views.mean(axis=0)
    class_names = plan.manifest.class_names
    # serving_default's views are the run's --tta; the export serves both kinds.
    thresholds_file.ThresholdsFile(
        tuple(class_names),
        tuned[1].thresholds,
        tuned[8].thresholds,
        views=config.tta,
        rule=thresholds_lib.threshold_rule(),
    ).write(config.model_dir)
    run_info = {
        "arch": config.arch,
        "width": config.width,
        "weights": config.weights,
        "freeze_epochs": config.freeze_epochs,
        "backbone_lr_scale": config.backbone_lr_scale,
        "epochs": config.epochs,
        "batch_size": config.batch_size,
        "loss": config.loss,
        "bias_init": config.bias_init,
        "oversample": config.oversample,
        "ema_momentum": config.ema_momentum,
        "val_tta": config.tta,
        "precision": config.precision,
        "augmentation": dataclasses.asdict(config.augmentation),
        "seed": config.seed,
        "fold": config.fold,
        "strategy": plan.kind,
        "replicas": plan.strategy.num_replicas_in_sync,
        "workers": plan.pipelines,
        # --lr is the peak rate at a global batch of 256; the run used peak_learning_rate.
        "learning_rate": config.learning_rate,
        "reference_batch_size": distribute.REFERENCE_BATCH,
        "peak_learning_rate": config.peak_learning_rate,
        # This process's epochs only: a resumed run does not count the ones before.
        "train_seconds": round(fit_seconds, 1),
        "train_images_per_second": (
            round(len(fit.epoch) * plan.steps_per_epoch * config.batch_size / fit_seconds, 1) if fit.epoch else None
        ),
    }
    report = report_lib.build_report(run_info, y_true, y_prob, tuned[config.tta], class_names)
    other = 8 if config.tta == 1 else 1
    report[f"val_macro_f1_tuned_{other}_views"] = thresholds_lib.macro_f1(
        y_true, (y_views[0] if other == 1 else y_views.mean(axis=0)) >= tuned[other].thresholds
    )
    ReportFile(report).write(config.model_dir)
    report_lib.plot_report(
        report_lib.read_history(posixpath.join(config.model_dir, "history.csv")),
        report,
        posixpath.join(config.model_dir, "report.png"),
    )
    supported = report["val_macro_f1_tuned_min5"]
    print(
        f"val macro F1 ({config.tta} view{'s' if config.tta > 1 else ''}): {report['val_macro_f1_at_0.5']:.4f} "
        f"at 0.5, {report['val_macro_f1_tuned']:.4f} at per-class thresholds tuned on val (optimistic; "
        f"{report[f'val_macro_f1_tuned_{other}_views']:.4f} for {other} view{'s' if other > 1 else ''}); "
        f"tuned over the {report['classes_with_min5_val_examples']} classes with >= 5 val examples: "
        f"{'n/a' if supported is None else f'{supported:.4f}'}"
    )
    held = f", {held_out.FILE_NAME}" if config.fold is not None else ""
    print(
        f"run: {config.model_dir} (run.json, best.weights.h5, best.json, model.keras, history.csv, logs/, "
        f"thresholds.json, report.json, report.png{held})"
    )
    return report, tuned[1], tuned[8]
