"""Per-class decision thresholds tuned for macro F1."""

import collections

import numpy as np
from sklearn.metrics import f1_score, precision_recall_curve

DEFAULT_THRESHOLD = 0.5
# How many val positives the pooled cut counts as: a class's own F1-optimal
# cut sits on a few examples' scores when it has few positives, and does not
# carry over to new images; shrunk toward the pooled cut by this weight it does
# (bench: thresholds on held-out images, README "Thresholds").
PRIOR_WEIGHT = 5

# thresholds [classes]; the pooled cut; each class's val positives.
Tuned = collections.namedtuple("Tuned", ["thresholds", "pooled_threshold", "positives"])


def threshold_rule(prior_weight=PRIOR_WEIGHT):
    """The rule `tune_thresholds` applies, in words (report.json, thresholds.json)."""
    return (f"each class: (n * own + {prior_weight} * pooled) / (n + {prior_weight}), n its val positives, own the "
            "cut that maximises its val F1, pooled the cut that maximises F1 over all classes' val predictions "
            "together (a class without val positives takes the pooled cut); each cut halfway between the val "
            "scores it separates")


def best_f1_cut(y_true, y_prob):
    """The probability cut that maximises F1 of one binary problem, placed
    halfway between the lowest score it accepts and the next lower score, so
    new images near a val example's score are not decided by that one example."""
    precision, recall, cuts = precision_recall_curve(y_true, y_prob)
    f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
    # The last precision/recall pair has no threshold (recall 0).
    best = int(np.argmax(f1[:-1]))
    return float(cuts[best] if best == 0 else (cuts[best - 1] + cuts[best]) / 2)


def tune_thresholds(y_true, y_prob, prior_weight=PRIOR_WEIGHT):
    """Per-class cuts for macro F1, each shrunk toward the pooled cut by its
    support (rule: `threshold_rule`).

    Args:
        y_true: multi-hot [n, classes].
        y_prob: predicted probabilities [n, classes].
        prior_weight: the val positives the pooled cut counts as (0: every
            class with positives keeps its own cut).

    Returns:
        Tuned(thresholds float [classes], the pooled cut, val positives per class).
    """
    y_true, y_prob = np.asarray(y_true), np.asarray(y_prob)
    pooled = best_f1_cut(y_true.ravel(), y_prob.ravel()) if y_true.any() else DEFAULT_THRESHOLD
    positives = y_true.sum(axis=0).astype(int)
    thresholds = np.full(y_true.shape[1], pooled, np.float64)
    for c in np.flatnonzero(positives):
        own = best_f1_cut(y_true[:, c], y_prob[:, c])
        thresholds[c] = (positives[c] * own + prior_weight * pooled) / (positives[c] + prior_weight)
    return Tuned(thresholds, pooled, positives)


def macro_f1(y_true, y_pred):
    """Macro F1 over all classes, the Kaggle metric: a class absent from
    both truth and prediction counts 0, as sklearn's zero_division=0 does."""
    return float(f1_score(np.asarray(y_true).astype(int), np.asarray(y_pred).astype(int),
                          average="macro", zero_division=0))
