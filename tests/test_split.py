import numpy as np
import pytest

from data_prep import split


def _labels_with_rare_classes(n=300, seed=0):
    rng = np.random.default_rng(seed)
    matrix = (rng.random((n, 28)) < 0.1).astype(int)
    matrix[:, 25:] = 0
    matrix[[5, 77], 27] = 1          # 2 examples: rods & rings-like
    matrix[[3, 4, 9], 26] = 1        # 3 examples
    matrix[[11], 25] = 1             # 1 example: can only sit on one side
    return matrix


@pytest.mark.parametrize("seed", range(6))
def test_classes_with_two_examples_land_on_both_sides(seed):
    matrix = _labels_with_rare_classes(seed=seed)
    train, val = split.split_train_val(matrix, 0.1, seed)
    assert sorted(np.concatenate([train, val]).tolist()) == list(range(len(matrix)))
    for c in np.flatnonzero(matrix.sum(axis=0) >= 2):
        assert matrix[train, c].sum() >= 1 and matrix[val, c].sum() >= 1, c
    assert 20 <= len(val) <= 45


def test_split_is_deterministic_for_a_seed():
    matrix = _labels_with_rare_classes()
    first, second = split.split_train_val(matrix, 0.2, 3), split.split_train_val(matrix, 0.2, 3)
    assert all(np.array_equal(a, b) for a, b in zip(first, second))


def test_folds_keep_every_class_of_two_or_more_in_training_of_each_fold():
    matrix = _labels_with_rare_classes()
    fold = split.assign_folds(matrix, 5, seed=0)
    assert sorted(set(fold.tolist())) == [0, 1, 2, 3, 4]
    assert np.bincount(fold).min() >= 50
    for f in range(5):
        for c in np.flatnonzero(matrix.sum(axis=0) >= 2):
            assert matrix[fold != f, c].sum() >= 1, (f, c)


def test_split_arguments_are_checked():
    with pytest.raises(ValueError) as error:
        split.split_train_val(np.ones((10, 28)), 1.5, 0)
    assert str(error.value) == "--val-fraction must be between 0 and 1, got 1.5"
    with pytest.raises(ValueError) as error:
        split.assign_folds(np.ones((3, 28)), 5, 0)
    assert str(error.value) == "--folds must be between 2 and the number of labeled images (3), got 5"
