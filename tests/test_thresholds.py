import numpy as np

from protein_location.evaluation import thresholds


def test_tuned_thresholds_separate_classes_that_0_5_does_not():
    rng = np.random.default_rng(0)
    y_true = (rng.random((200, 28)) < 0.3).astype(int)
    y_true[:, 27] = 0  # a class absent from val
    # Positives score 0.2-0.3, negatives 0-0.1: a fixed 0.5 finds nothing.
    y_prob = np.where(y_true, 0.2 + 0.1 * rng.random(y_true.shape), 0.1 * rng.random(y_true.shape))
    cuts, positives, rate_matched = thresholds.tune_thresholds(y_true, y_prob, np.full(28, 0.3))
    assert rate_matched == [27] and positives[27] == 0 and positives[:27].min() > 30
    assert cuts[27] == np.quantile(y_prob[:, 27], 0.7)  # labels 30% of val, its training frequency
    assert np.all((cuts[:27] > 0.1) & (cuts[:27] <= 0.2))  # halfway between the classes' scores
    assert thresholds.macro_f1(y_true, y_prob >= 0.5) == 0.0
    # 27 classes perfect, the absent one counts 0 (the Kaggle macro F1).
    assert abs(thresholds.macro_f1(y_true, y_prob >= cuts) - 27 / 28) < 1e-9


def test_the_cut_lies_halfway_between_the_scores_it_separates():
    assert thresholds.best_f1_cut(np.array([0, 1, 1, 0]), np.array([0.2, 0.6, 0.8, 0.1])) == 0.4
    assert thresholds.best_f1_cut(np.array([1, 1]), np.array([0.3, 0.7])) == 0.3  # nothing below to split from


def test_a_class_with_fewer_val_positives_than_the_minimum_labels_its_training_frequency():
    y_prob = np.linspace(0.0, 0.99, 100)[:, None].repeat(2, axis=1)
    y_true = np.zeros((100, 2), int)
    y_true[-20:, 0] = 1  # 20 positives: a cut of its own
    y_true[[50, 97], 1] = 1  # 2 positives: the rate-matched cut
    tuned = thresholds.tune_thresholds(y_true, y_prob, train_rates=np.array([0.2, 0.1]), min_support=5)
    assert tuned.rate_matched_classes == [1]
    assert np.isclose(tuned.thresholds[0], (y_prob[79, 0] + y_prob[80, 0]) / 2)
    assert (y_prob[:, 1] >= tuned.thresholds[1]).sum() == 10
    assert thresholds.tune_thresholds(y_true, y_prob, np.array([0.2, 0.0])).thresholds[1] == 1.0  # never trained


def test_rate_matched_cuts_of_rare_classes_score_higher_on_new_images_than_tuned_ones():
    """Many draws of a class with 1-4 val positives (2% of images) beside a
    common one, from fixed score distributions: on held-out images the
    rate-matched cut beats the cut tuned on those few positives."""
    rng = np.random.default_rng(1)

    def draw(n):
        y = (rng.random((n, 2)) < [0.3, 0.02]).astype(int)
        return y, np.clip(np.where(y, rng.normal(0.6, 0.2, y.shape), rng.normal(0.2, 0.12, y.shape)), 0, 1)

    held_out = {"tuned": [], "rate_matched": []}
    for trial in range(300):
        y_val, p_val = draw(150)
        positives = 1 + trial % 4
        y_val[:, 1] = 0
        y_val[:positives, 1] = 1
        p_val[:positives, 1] = rng.normal(0.6, 0.2, positives).clip(0, 1)
        y_test, p_test = draw(2000)
        for rule, min_support in (("tuned", 1), ("rate_matched", thresholds.MIN_SUPPORT)):
            cut = thresholds.tune_thresholds(y_val, p_val, [0.3, 0.02], min_support=min_support).thresholds[1]
            held_out[rule].append(thresholds.macro_f1(y_test[:, 1], p_test[:, 1] >= cut))
    assert np.mean(held_out["rate_matched"]) > np.mean(held_out["tuned"]) + 0.02
