"""Multi-label stratified train/val splits and k folds (iterative stratification).

A plain random split of HPA loses its rarest classes (rods & rings: 11 of
31,072 images) from one side; iterative stratification keeps each class's
share close to the requested fraction on both sides, and a last pass moves
single examples so that a class with at least two examples is never missing
from a side.

Splits are group-aware: images that share a group (by default the fields of
one HPAv18 well, see `group_of_id`) show the same antibody in the same dish,
so putting one field in train and another in val leaks the answer.  Both
splitters therefore stratify whole groups - a group's labels are the union of
its images' labels - and expand the result back to images.  With no groups,
or only singleton groups, every image is its own group and the result is
exactly the image-level split of earlier versions.
"""

import re

import numpy as np
from iterstrat.ml_stratifiers import MultilabelStratifiedKFold, MultilabelStratifiedShuffleSplit

from protein_location.core.errors import DataPrepError

# <antibody folder>_<plate>_<well>_<field>, e.g. 10580_1610_C1_1.
_HPAV18_ID = re.compile(r"^([0-9]+_[0-9]+_[A-Za-z]+[0-9]+)_[0-9]+$")


def group_of_id(image_id):
    """HPA Id -> its default group: the well for HPAv18 Ids, else the Id itself.

    Fields `_1`, `_2` of one HPAv18 well are near-duplicates for the model
    (same antibody, same dish), so they must not be split apart.  Kaggle UUIDs
    and any other Id carry no well, so each is its own group.
    """
    match = _HPAV18_ID.match(image_id)
    return match.group(1) if match else image_id


def groups_of_ids(ids):
    """Ids -> list of `group_of_id` for each, in order."""
    return [group_of_id(image_id) for image_id in ids]


def _group_index(groups, n):
    """Group keys per example -> (group number per example, number of groups).

    Groups are numbered in order of first appearance, so singleton groups
    number the examples 0..n-1 in their own order (and `groups=None` is the
    same as singletons): that keeps the group-space split identical to the
    image-level one.
    """
    if groups is None:
        return np.arange(n), n
    if len(groups) != n:
        raise DataPrepError(f"groups has {len(groups)} entries for {n} labeled images")
    number = {}
    index = np.array([number.setdefault(key, len(number)) for key in groups], dtype=int)
    return index, len(number)


def _group_label_matrix(label_matrix, group_index, n_groups):
    """Image label rows -> one row per group: the union of its images' labels."""
    group_matrix = np.zeros((n_groups, label_matrix.shape[1]), dtype=label_matrix.dtype)
    np.maximum.at(group_matrix, group_index, label_matrix)
    return group_matrix


def _give_each_side_every_class(label_matrix, side):
    """`side` (0/1 per example) -> same, with every class of >=2 examples on both sides.

    Moves the example with the fewest labels (ties: the lowest index), so the
    other classes' balance changes least; deterministic.  Called on group
    rows, "example" means group.
    """
    side = side.copy()
    label_counts = label_matrix.sum(axis=1)
    for c in np.flatnonzero(label_matrix.sum(axis=0) >= 2):
        members = np.flatnonzero(label_matrix[:, c])
        for missing in (0, 1):
            if not (side[members] == missing).any():
                donors = members[side[members] != missing]
                # Only move an example whose departure empties no other class.
                candidates = [
                    d
                    for d in donors[np.argsort(label_counts[donors], kind="stable")]
                    if all((label_matrix[side != missing][:, k].sum() > 1) for k in np.flatnonzero(label_matrix[d]))
                ]
                side[(candidates or list(donors))[0]] = missing
    return side


def split_train_val(label_matrix, val_fraction, seed, groups=None):
    """Multi-hot matrix [n, classes] -> (train indices, val indices), sorted.

    `groups`: one hashable key per example (None: each example alone); all
    examples of a group land on the same side.  `val_fraction` is then the
    share of groups, so the share of images drifts a little with group sizes.
    """
    label_matrix = np.asarray(label_matrix).astype(int)
    if not 0.0 < val_fraction < 1.0:
        raise DataPrepError(f"--val-fraction must be between 0 and 1, got {val_fraction}")
    group_index, n = _group_index(groups, len(label_matrix))
    if round(n * val_fraction) < 1 or round(n * (1 - val_fraction)) < 1:
        what = "labeled images" if groups is None else "groups of labeled images"
        raise DataPrepError(f"{n} {what} are too few to split with --val-fraction {val_fraction}")
    group_matrix = _group_label_matrix(label_matrix, group_index, n)
    splitter = MultilabelStratifiedShuffleSplit(n_splits=1, test_size=val_fraction, random_state=seed)
    _, val = next(splitter.split(np.zeros((n, 1)), group_matrix))
    side = np.zeros(n, int)
    side[val] = 1
    side = _give_each_side_every_class(group_matrix, side)[group_index]
    return np.flatnonzero(side == 0), np.flatnonzero(side == 1)


def assign_folds(label_matrix, folds, seed, groups=None):
    """Multi-hot matrix [n, classes] -> fold index (0..folds-1) per example.

    Every class with at least two examples (groups, when `groups` is given)
    keeps an example outside each fold, so training on the other folds always
    sees it.  All examples of a group share a fold.
    """
    label_matrix = np.asarray(label_matrix).astype(int)
    group_index, n = _group_index(groups, len(label_matrix))
    if folds < 2 or folds > n:
        what = "labeled images" if groups is None else "groups of labeled images"
        raise DataPrepError(f"--folds must be between 2 and the number of {what} ({n}), got {folds}")
    group_matrix = _group_label_matrix(label_matrix, group_index, n)
    splitter = MultilabelStratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    fold = np.zeros(n, int)
    for index, (_, held_out) in enumerate(splitter.split(np.zeros((n, 1)), group_matrix)):
        fold[held_out] = index
    for f in range(folds):
        in_fold = (fold == f).astype(int)
        moved = _give_each_side_every_class(group_matrix, in_fold)
        # Only moves out of fold f matter here (a class wholly inside it);
        # a group leaving goes to the next fold.
        leaving = (in_fold == 1) & (moved == 0)
        fold[leaving] = (f + 1) % folds
    return fold[group_index]


def stratification_summary(label_matrix, val, val_fraction):
    """How close each class's val share came to `val_fraction`, in images.

    `val`: val indices or a boolean val mask.  Only classes with at least two
    images count (a single image can only sit on one side).  Returns
    {"classes": how many counted, "mean_deviation": mean |val share - target|,
    "worst_class": index of the largest deviation (ties: lowest) or None,
    "worst_val_fraction": that class's val share or None}, enough for a line
    like "per-class val fractions within 0.031 of 0.15 on average, worst:
    class 27 at 0.000".  Group splits move whole groups, so this is the check
    that stratification still held.
    """
    label_matrix = np.asarray(label_matrix).astype(int)
    val = np.asarray(val)
    in_val = val if val.dtype == bool else np.isin(np.arange(len(label_matrix)), val)
    totals = label_matrix.sum(axis=0)
    counted = np.flatnonzero(totals >= 2)
    if not len(counted):
        return {"classes": 0, "mean_deviation": 0.0, "worst_class": None, "worst_val_fraction": None}
    shares = label_matrix[in_val][:, counted].sum(axis=0) / totals[counted]
    deviations = np.abs(shares - val_fraction)
    worst = int(np.argmax(deviations))
    return {
        "classes": len(counted),
        "mean_deviation": float(deviations.mean()),
        "worst_class": int(counted[worst]),
        "worst_val_fraction": float(shares[worst]),
    }
