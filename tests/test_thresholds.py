import numpy as np

from protein_location import thresholds


def test_tuned_thresholds_separate_classes_that_0_5_does_not():
    rng = np.random.default_rng(0)
    y_true = (rng.random((200, 28)) < 0.3).astype(int)
    y_true[:, 27] = 0  # a class absent from val
    # Positives score 0.2-0.3, negatives 0-0.1: a fixed 0.5 finds nothing.
    y_prob = np.where(y_true, 0.2 + 0.1 * rng.random(y_true.shape), 0.1 * rng.random(y_true.shape))
    cuts, pooled, positives = thresholds.tune_thresholds(y_true, y_prob)
    assert positives[27] == 0 and positives[:27].min() > 30
    assert 0.1 < pooled <= 0.2 and cuts[27] == pooled  # the absent class takes the pooled cut, not 0.5
    assert np.all((cuts[:27] > 0.1) & (cuts[:27] <= 0.2))  # halfway between the classes' scores
    assert thresholds.macro_f1(y_true, y_prob >= 0.5) == 0.0
    # 27 classes perfect, the absent one counts 0 (the Kaggle macro F1).
    assert abs(thresholds.macro_f1(y_true, y_prob >= cuts) - 27 / 28) < 1e-9


def test_the_cut_lies_halfway_between_the_scores_it_separates():
    assert thresholds.best_f1_cut(np.array([0, 1, 1, 0]), np.array([0.2, 0.6, 0.8, 0.1])) == 0.4
    assert thresholds.best_f1_cut(np.array([1, 1]), np.array([0.3, 0.7])) == 0.3  # nothing below to split from


def test_a_class_with_few_val_positives_is_shrunk_toward_the_pooled_cut():
    y_true = np.zeros((40, 3), int)
    y_true[:10, 0] = y_true[10:20, 1] = 1
    y_true[[30, 31], 2] = 1  # two val positives only
    y_prob = np.where(y_true, 0.45, 0.05)
    y_prob[[30, 31], 2] = [0.93, 0.97]  # its own cut: halfway from 0.05 to 0.93
    tuned = thresholds.tune_thresholds(y_true, y_prob, prior_weight=5)
    assert tuned.pooled_threshold == 0.25
    np.testing.assert_allclose(tuned.thresholds[2], (2 * 0.49 + 5 * 0.25) / 7)
    np.testing.assert_allclose(tuned.thresholds[0], (10 * 0.25 + 5 * 0.25) / 15)
    np.testing.assert_allclose(thresholds.tune_thresholds(y_true, y_prob, prior_weight=0).thresholds[2], 0.49)


def test_shrunk_cuts_of_rare_classes_score_higher_on_new_images_than_their_own():
    """Many draws of a class with 1-3 val positives beside a common one, from
    fixed score distributions: on held-out images the shrunk cut beats the
    class's own cut at one example's score (the rule before)."""
    rng = np.random.default_rng(1)

    def draw(n):
        y = (rng.random((n, 2)) < [0.3, 0.02]).astype(int)
        return y, np.clip(np.where(y, rng.normal(0.6, 0.2, y.shape), rng.normal(0.2, 0.12, y.shape)), 0, 1)

    held_out = {"own": [], "shrunk": []}
    for trial in range(300):
        y_val, p_val = draw(100)
        positives = 1 + trial % 3
        y_val[:, 1] = 0
        y_val[:positives, 1] = 1
        p_val[:positives, 1] = rng.normal(0.6, 0.2, positives).clip(0, 1)
        y_test, p_test = draw(2000)
        for rule, weight in (("own", 0), ("shrunk", thresholds.PRIOR_WEIGHT)):
            cut = thresholds.tune_thresholds(y_val, p_val, prior_weight=weight).thresholds[1]
            held_out[rule].append(thresholds.macro_f1(y_test[:, 1], p_test[:, 1] >= cut))
    assert np.mean(held_out["shrunk"]) > np.mean(held_out["own"]) + 0.02
