"""Per-class decision thresholds tuned for macro F1."""

import numpy as np
from sklearn.metrics import f1_score, precision_recall_curve

DEFAULT_THRESHOLD = 0.5


def tune_thresholds(y_true, y_prob, default=DEFAULT_THRESHOLD):
    """For each class, the probability cut that maximises that class's F1.

    Args:
        y_true: multi-hot [n, classes].
        y_prob: predicted probabilities [n, classes].
        default: kept for classes with no positive example (nothing to tune on).

    Returns:
        (thresholds float [classes], list of class indices left at `default`).
    """
    y_true, y_prob = np.asarray(y_true), np.asarray(y_prob)
    thresholds = np.full(y_true.shape[1], default, np.float64)
    untuned = []
    for c in range(y_true.shape[1]):
        if y_true[:, c].sum() == 0:
            untuned.append(c)
            continue
        precision, recall, cuts = precision_recall_curve(y_true[:, c], y_prob[:, c])
        f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
        # The last precision/recall pair has no threshold (recall 0).
        thresholds[c] = cuts[int(np.argmax(f1[:-1]))]
    return thresholds, untuned


def macro_f1(y_true, y_pred):
    """Macro F1 over all classes, the Kaggle metric: a class absent from
    both truth and prediction counts 0, as sklearn's zero_division=0 does."""
    return float(f1_score(np.asarray(y_true).astype(int), np.asarray(y_pred).astype(int),
                          average="macro", zero_division=0))
