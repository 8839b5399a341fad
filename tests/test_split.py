import numpy as np
import pytest

from data_prep import split


def _labels_with_rare_classes(n=300, seed=0):
    rng = np.random.default_rng(seed)
    matrix = (rng.random((n, 28)) < 0.1).astype(int)
    matrix[:, 25:] = 0
    matrix[[5, 77], 27] = 1  # 2 examples: rods & rings-like
    matrix[[3, 4, 9], 26] = 1  # 3 examples
    matrix[[11], 25] = 1  # 1 example: can only sit on one side
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


def _labels_in_groups(n=300, seed=0):
    """Random multi-label matrix whose examples come in groups of 1-4, shuffled."""
    rng = np.random.default_rng(seed)
    matrix = (rng.random((n, 28)) < 0.1).astype(int)
    sizes = []
    while sum(sizes) < n:
        sizes.append(int(rng.integers(1, 5)))
    groups = np.repeat(np.arange(len(sizes)), sizes)[:n]
    return matrix, [f"well{g}" for g in rng.permutation(groups)]


def _assert_no_group_straddles(groups, assignment):
    place = {}
    for key, where in zip(groups, assignment):
        assert place.setdefault(key, where) == where, key


@pytest.mark.parametrize("seed", range(4))
def test_split_keeps_each_group_on_one_side(seed):
    matrix, groups = _labels_in_groups(seed=seed)
    train, val = split.split_train_val(matrix, 0.15, seed, groups=groups)
    assert sorted(np.concatenate([train, val]).tolist()) == list(range(len(matrix)))
    side = np.isin(np.arange(len(matrix)), val)
    _assert_no_group_straddles(groups, side)
    assert 0.08 <= side.mean() <= 0.22


@pytest.mark.parametrize("seed", range(4))
def test_folds_keep_each_group_in_one_fold(seed):
    matrix, groups = _labels_in_groups(seed=seed)
    fold = split.assign_folds(matrix, 5, seed, groups=groups)
    assert sorted(set(fold.tolist())) == [0, 1, 2, 3, 4]
    _assert_no_group_straddles(groups, fold)


def test_classes_in_two_groups_land_on_both_sides():
    matrix, groups = _labels_in_groups(seed=1)
    matrix[:, 27] = 0
    other_group = next(i for i, g in enumerate(groups) if g != groups[0])
    matrix[[0, other_group], 27] = 1  # two groups carry class 27, one image each
    train, val = split.split_train_val(matrix, 0.15, 0, groups=groups)
    assert matrix[train, 27].sum() == 1 and matrix[val, 27].sum() == 1
    fold = split.assign_folds(matrix, 5, 0, groups=groups)
    assert all(matrix[fold != f, 27].sum() >= 1 for f in range(5))


# Outputs of the image-level splitter before groups existed; datasets and
# published figures depend on them, so singleton groups must reproduce them.
_PINNED_VAL = [0, 1, 4, 5, 7, 9, 24, 28]
_PINNED_FOLDS = [
    0,
    2,
    0,
    2,
    3,
    1,
    3,
    2,
    1,
    0,
    0,
    3,
    3,
    2,
    1,
    3,
    0,
    1,
    2,
    1,
    0,
    1,
    1,
    2,
    1,
    0,
    3,
    3,
    3,
    3,
    1,
    1,
    0,
    2,
    0,
    2,
    3,
    2,
    0,
    2,
]


def _pinned_matrix():
    rng = np.random.default_rng(7)
    matrix = (rng.random((40, 6)) < 0.25).astype(int)
    matrix[[3, 30], 5] = 1
    return matrix


@pytest.mark.parametrize("groups", [None, list(range(40)), [f"id{i}" for i in range(40, 0, -1)]])
def test_singleton_groups_give_the_image_level_split(groups):
    matrix = _pinned_matrix()
    train, val = split.split_train_val(matrix, 0.2, 1, groups=groups)
    assert val.tolist() == _PINNED_VAL
    assert train.tolist() == sorted(set(range(40)) - set(_PINNED_VAL))
    assert split.assign_folds(matrix, 4, 2, groups=groups).tolist() == _PINNED_FOLDS


def test_singleton_groups_match_no_groups_on_larger_input():
    matrix = _labels_with_rare_classes(seed=2)
    singletons = [str(i) for i in range(len(matrix))]
    for a, b in zip(split.split_train_val(matrix, 0.1, 2), split.split_train_val(matrix, 0.1, 2, singletons)):
        assert np.array_equal(a, b)
    assert np.array_equal(split.assign_folds(matrix, 5, 2), split.assign_folds(matrix, 5, 2, singletons))


def test_hpav18_ids_group_by_well_and_other_ids_stand_alone():
    assert split.group_of_id("10580_1610_C1_1") == "10580_1610_C1"
    assert split.group_of_id("10580_1610_C1_2") == "10580_1610_C1"
    assert split.group_of_id("10008_57_F11_1") == "10008_57_F11"
    assert split.group_of_id("30741_800_A6_1") == "30741_800_A6"
    uuid = "027a702a-bbca-11e8-b2bc-ac1f6b6435d0"
    assert split.group_of_id(uuid) == uuid
    assert split.groups_of_ids(["1_2_B3_1", "synthetic_0", "1_2_B3_2"]) == ["1_2_B3", "synthetic_0", "1_2_B3"]


def test_stratification_summary_names_the_worst_class():
    matrix = np.zeros((10, 4), int)
    matrix[:, 0] = 1  # 10 examples, 2 in val: 0.2, on target
    matrix[[0, 1, 2, 3], 1] = 1  # 4 examples, 2 in val: 0.5
    matrix[[5, 6], 2] = 1  # 2 examples, none in val: 0.0
    matrix[[7], 3] = 1  # 1 example: not counted
    summary = split.stratification_summary(matrix, [0, 1], 0.2)
    assert summary["classes"] == 3
    assert summary["worst_class"] == 1 and summary["worst_val_fraction"] == 0.5
    assert summary["mean_deviation"] == pytest.approx((0.0 + 0.3 + 0.2) / 3)
    mask = np.zeros(10, bool)
    mask[[0, 1]] = True
    assert split.stratification_summary(matrix, mask, 0.2) == summary


def test_too_few_groups_are_counted_as_groups():
    matrix = np.ones((30, 28), int)
    with pytest.raises(ValueError) as error:
        split.split_train_val(matrix, 0.01, 0, groups=[i // 3 for i in range(30)])
    assert str(error.value) == "10 groups of labeled images are too few to split with --val-fraction 0.01"
    with pytest.raises(ValueError) as error:
        split.split_train_val(matrix, 0.01, 0)
    assert str(error.value) == "30 labeled images are too few to split with --val-fraction 0.01"
    with pytest.raises(ValueError) as error:
        split.assign_folds(matrix, 5, 0, groups=[i // 10 for i in range(30)])
    assert str(error.value) == "--folds must be between 2 and the number of groups of labeled images (3), got 5"
    with pytest.raises(ValueError) as error:
        split.split_train_val(matrix, 0.5, 0, groups=[0] * 29)
    assert str(error.value) == "groups has 29 entries for 30 labeled images"
