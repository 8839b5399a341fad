"""Per-class decision thresholds tuned for macro F1."""

import collections

import numpy as np
from sklearn.metrics import f1_score, precision_recall_curve

DEFAULT_THRESHOLD = 0.5  # the untuned cut report.json compares with
# A class needs this many val positives for a cut tuned on them: with fewer,
# the F1-optimal cut sits on one or two examples' scores and does not carry
# over to new images. Such a class gets the cut that labels as many val images
# positive as its training frequency predicts (bench/sweep.py measured the
# rules on held-out images: docs/training.md, "Defaults").
MIN_SUPPORT = 5

# thresholds [classes]; each class's val positives; the classes given the rate-matched cut.
Tuned = collections.namedtuple("Tuned", ["thresholds", "positives", "rate_matched_classes"])


def threshold_rule(min_support=MIN_SUPPORT):
    """The rule `tune_thresholds` applies, in words (report.json, thresholds.json)."""
    return (
        f"a class with at least {min_support} val positives: the cut that maximises its val F1, halfway "
        "between the val scores it separates; any other class: the cut that labels its training frequency "
        "of the val images positive"
    )


def best_f1_cut(y_true, y_prob):
    """The probability cut that maximises F1 of one binary problem, placed
    halfway between the lowest score it accepts and the next lower score, so
    new images near a val example's score are not decided by that one example."""
    precision, recall, cuts = precision_recall_curve(y_true, y_prob)
    f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
    # The last precision/recall pair has no threshold (recall 0).
    best = int(np.argmax(f1[:-1]))
    return float(cuts[best] if best == 0 else (cuts[best - 1] + cuts[best]) / 2)


def rate_matched_cut(y_prob, rate):
    """The cut that labels a share `rate` of the scores `y_prob` positive (none
    for a class never seen in training)."""
    return float(np.quantile(y_prob, 1.0 - rate)) if rate > 0 else 1.0


def tune_thresholds(y_true, y_prob, train_rates, min_support=MIN_SUPPORT):
    """Per-class cuts for macro F1 (rule: `threshold_rule`).

    Args:
        y_true: multi-hot [n, classes].
        y_prob: predicted probabilities [n, classes].
        train_rates: each class's share of the training images [classes].
        min_support: val positives a class needs for a cut tuned on them.

    Returns:
        Tuned(thresholds float [classes], val positives per class, the class
        indices given the rate-matched cut).
    """
    y_true, y_prob = np.asarray(y_true), np.asarray(y_prob)
    positives = y_true.sum(axis=0).astype(int)
    thresholds = np.empty(y_true.shape[1], np.float64)
    rate_matched = []
    for c in range(y_true.shape[1]):
        if positives[c] >= max(min_support, 1):
            thresholds[c] = best_f1_cut(y_true[:, c], y_prob[:, c])
        else:
            thresholds[c] = rate_matched_cut(y_prob[:, c], train_rates[c])
            rate_matched.append(c)
    return Tuned(thresholds, positives, rate_matched)


def macro_f1(y_true, y_pred):
    """Macro F1 over all classes, the Kaggle metric: a class absent from
    both truth and prediction counts 0, as sklearn's zero_division=0 does."""
    return float(
        f1_score(np.asarray(y_true).astype(int), np.asarray(y_pred).astype(int), average="macro", zero_division=0)
    )
