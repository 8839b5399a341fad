import numpy as np

from protein_location import thresholds


def test_tuned_thresholds_separate_classes_that_0_5_does_not():
    rng = np.random.default_rng(0)
    y_true = (rng.random((200, 28)) < 0.3).astype(int)
    y_true[:, 27] = 0  # a class absent from val
    # Positives score 0.2-0.3, negatives 0-0.1: a fixed 0.5 finds nothing.
    y_prob = np.where(y_true, 0.2 + 0.1 * rng.random(y_true.shape), 0.1 * rng.random(y_true.shape))
    cuts, untuned = thresholds.tune_thresholds(y_true, y_prob)
    assert untuned == [27]
    assert cuts[27] == 0.5
    assert np.all((cuts[:27] > 0.1) & (cuts[:27] <= 0.3))
    assert thresholds.macro_f1(y_true, y_prob >= 0.5) == 0.0
    # 27 classes perfect, the absent one counts 0 (the Kaggle macro F1).
    assert abs(thresholds.macro_f1(y_true, y_prob >= cuts) - 27 / 28) < 1e-9
