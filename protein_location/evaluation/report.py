"""What a run reached, as JSON (report.json) and as a picture (report.png)."""

import csv
import io

import matplotlib

matplotlib.use("Agg")  # files only; no display on training machines
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from sklearn import metrics  # noqa: E402

from protein_location.core import output_files  # noqa: E402
from protein_location.evaluation import thresholds as thresholds_lib  # noqa: E402

# F1 of a class with a handful of val examples moves by 0.1-0.3 with one
# example; macro F1 over the classes with at least this many is the steadier figure.
MIN_SUPPORT = 5


def paper_table(y_true, y_pred):
    """The seed paper's table (Chen, 2020): binary accuracy, macro F1,
    precision and recall, and sample-averaged IoU (its "63.07%")."""
    y_true, y_pred = np.asarray(y_true).astype(int), np.asarray(y_pred).astype(int)
    return {
        "binary_accuracy": float((y_true == y_pred).mean()),
        "macro_f1": thresholds_lib.macro_f1(y_true, y_pred),
        "macro_precision": float(metrics.precision_score(y_true, y_pred, average="macro", zero_division=0)),
        "macro_recall": float(metrics.recall_score(y_true, y_pred, average="macro", zero_division=0)),
        "sample_iou": float(metrics.jaccard_score(y_true, y_pred, average="samples", zero_division=0)),
    }


def macro_auc(y_true, y_prob):
    """ROC AUC averaged over the classes that have both outcomes in y_true."""
    present = [c for c in range(y_true.shape[1]) if 0 < y_true[:, c].sum() < len(y_true)]
    if not present:
        return None
    return float(metrics.roc_auc_score(y_true[:, present], y_prob[:, present], average="macro"))


def build_report(run_info, y_true, y_prob, tuned, class_names):
    """report.json's content from val labels, probabilities and the thresholds
    tuned on them (`thresholds.Tuned`); `class_names` are the dataset's (its label set)."""
    y_true = np.asarray(y_true).astype(int)
    thresholds = tuned.thresholds
    classes = range(len(class_names))
    at_half = (y_prob >= thresholds_lib.DEFAULT_THRESHOLD).astype(int)
    predicted = (y_prob >= np.asarray(thresholds)).astype(int)
    precision, recall, f1, support = metrics.precision_recall_fscore_support(
        y_true, predicted, average=None, labels=classes, zero_division=0
    )
    f1_half = metrics.f1_score(y_true, at_half, average=None, labels=classes, zero_division=0)
    supported = support >= MIN_SUPPORT
    return {
        **run_info,
        "class_names": list(class_names),
        "val_examples": int(len(y_true)),
        "val_macro_f1_at_0.5": float(np.mean(f1_half)),
        # Tuned and scored on the same val split: an optimistic estimate.
        "val_macro_f1_tuned": float(np.mean(f1)),
        f"val_macro_f1_tuned_min{MIN_SUPPORT}": float(np.mean(f1[supported])) if supported.any() else None,
        f"val_macro_f1_at_0.5_min{MIN_SUPPORT}": float(np.mean(f1_half[supported])) if supported.any() else None,
        f"classes_with_min{MIN_SUPPORT}_val_examples": int(supported.sum()),
        "val_macro_auc": macro_auc(y_true, y_prob),
        "paper_table_at_0.5": paper_table(y_true, at_half),
        "paper_table_tuned": paper_table(y_true, predicted),
        "classes_without_val_examples": [class_names[c] for c in np.flatnonzero(tuned.positives == 0)],
        "classes_with_rate_matched_thresholds": [class_names[c] for c in tuned.rate_matched_classes],
        "threshold_rule": thresholds_lib.threshold_rule(),
        "per_class": [
            {
                "index": c,
                "name": class_names[c],
                "val_support": int(support[c]),
                "threshold": float(thresholds[c]),
                "precision": float(precision[c]),
                "recall": float(recall[c]),
                "f1_tuned": float(f1[c]),
                "f1_at_0.5": float(f1_half[c]),
            }
            for c in classes
        ],
    }


def read_history(path):
    """history.csv (Keras CSVLogger) -> list of dicts of floats."""
    with tf.io.gfile.GFile(path, "r") as f:
        return [{k: float(v) for k, v in row.items() if v != ""} for row in csv.DictReader(io.StringIO(f.read()))]


def plot_report(history, report, path):
    """report.png: learning curves beside per-class F1 with the class names."""
    figure, (curves, bars) = plt.subplots(
        1, 2, figsize=(15, max(6.5, 0.23 * len(report["per_class"]))), gridspec_kw={"width_ratios": [1, 1.3]}
    )
    epochs = [row["epoch"] + 1 for row in history]
    f1_axis = curves.twinx()  # loss and F1 live on different scales
    for axis, key, style in (
        (curves, "loss", "C0-"),
        (curves, "val_loss", "C0--"),
        (f1_axis, "macro_f1", "C1-"),
        (f1_axis, "val_macro_f1", "C1--"),
        (f1_axis, "val_auc", "C3--"),
    ):  # val AUC picks the checkpoint
        if history and key in history[0]:
            axis.plot(epochs, [row[key] for row in history], style, label=key)
    curves.set(xlabel="epoch", ylabel="loss", title="learning curves (macro F1 at threshold 0.5; val AUC)")
    f1_axis.set(ylabel="macro F1, AUC", ylim=(0, 1))
    curves.grid(alpha=0.3)
    figure.legend(loc="upper center", bbox_to_anchor=(0.25, 0.93), ncols=3)
    _per_class_bars(bars, report, "val F1", "val support")
    _save(figure, path)


def plot_cv_report(fold_histories, report, path):
    """report.png of a cross-validated run: each fold's val curves beside
    per-class out-of-fold F1."""
    figure, (curves, bars) = plt.subplots(
        1, 2, figsize=(15, max(6.5, 0.23 * len(report["per_class"]))), gridspec_kw={"width_ratios": [1, 1.3]}
    )
    for fold, history in enumerate(fold_histories):
        epochs = [row["epoch"] + 1 for row in history]
        for key, style in (("val_auc", "-"), ("val_macro_f1", "--")):
            if history and key in history[0]:
                curves.plot(
                    epochs, [row[key] for row in history], style, color=f"C{fold % 10}", label=f"fold {fold} {key}"
                )
    curves.set(
        xlabel="epoch",
        ylabel="val macro AUC, val macro F1 at 0.5",
        ylim=(0, 1),
        title=f"each fold's model on its held-out fold ({len(fold_histories)} folds)",
    )
    curves.grid(alpha=0.3)
    curves.legend(loc="lower right", fontsize=8, ncols=2)
    _per_class_bars(bars, report, "out-of-fold F1", "images")
    _save(figure, path)


def _per_class_bars(bars, report, xlabel, support):
    per_class = report["per_class"]
    positions = np.arange(len(per_class))
    bars.barh(positions, [c["f1_tuned"] for c in per_class], color="C2", label="tuned thresholds")
    bars.barh(positions, [c["f1_at_0.5"] for c in per_class], color="none", edgecolor="k", label="threshold 0.5")
    bars.set_yticks(positions, [f"{c['name']} ({c['val_support']})" for c in per_class], fontsize=8)
    bars.invert_yaxis()
    bars.set(
        xlim=(0, 1),
        xlabel=xlabel,
        title=f"per-class F1, macro {report['val_macro_f1_tuned']:.3f} tuned / "
        f"{report['val_macro_f1_at_0.5']:.3f} at 0.5 ({support})",
    )
    bars.legend(loc="lower right")


def _save(figure, path):
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    plt.close(figure)
    output_files.write_atomic(path, buffer.getvalue())
