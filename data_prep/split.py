"""Multi-label stratified train/val splits and k folds (iterative stratification).

A plain random split of HPA loses its rarest classes (rods & rings: 11 of
31,072 images) from one side; iterative stratification keeps each class's
share close to the requested fraction on both sides, and a last pass moves
single examples so that a class with at least two examples is never missing
from a side.
"""

import numpy as np
from iterstrat.ml_stratifiers import MultilabelStratifiedKFold, MultilabelStratifiedShuffleSplit


def _give_each_side_every_class(label_matrix, side):
    """`side` (0/1 per example) -> same, with every class of >=2 examples on both sides.

    Moves the example with the fewest labels (ties: the lowest index), so the
    other classes' balance changes least; deterministic.
    """
    side = side.copy()
    label_counts = label_matrix.sum(axis=1)
    for c in np.flatnonzero(label_matrix.sum(axis=0) >= 2):
        members = np.flatnonzero(label_matrix[:, c])
        for missing in (0, 1):
            if not (side[members] == missing).any():
                donors = members[side[members] != missing]
                # Only move an example whose departure empties no other class.
                candidates = [d for d in donors[np.argsort(label_counts[donors], kind="stable")]
                              if all((label_matrix[side != missing][:, k].sum() > 1)
                                     for k in np.flatnonzero(label_matrix[d]))]
                side[(candidates or list(donors))[0]] = missing
    return side


def split_train_val(label_matrix, val_fraction, seed):
    """Multi-hot matrix [n, classes] -> (train indices, val indices), sorted."""
    label_matrix = np.asarray(label_matrix).astype(int)
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"--val-fraction must be between 0 and 1, got {val_fraction}")
    n = len(label_matrix)
    if round(n * val_fraction) < 1 or round(n * (1 - val_fraction)) < 1:
        raise ValueError(f"{n} labeled images are too few to split with --val-fraction {val_fraction}")
    splitter = MultilabelStratifiedShuffleSplit(n_splits=1, test_size=val_fraction, random_state=seed)
    _, val = next(splitter.split(np.zeros((n, 1)), label_matrix))
    side = np.zeros(n, int)
    side[val] = 1
    side = _give_each_side_every_class(label_matrix, side)
    return np.flatnonzero(side == 0), np.flatnonzero(side == 1)


def assign_folds(label_matrix, folds, seed):
    """Multi-hot matrix [n, classes] -> fold index (0..folds-1) per example.

    Every class with at least two examples keeps an example outside each fold,
    so training on the other folds always sees it.
    """
    label_matrix = np.asarray(label_matrix).astype(int)
    if folds < 2 or folds > len(label_matrix):
        raise ValueError(f"--folds must be between 2 and the number of labeled images ({len(label_matrix)}), got {folds}")
    splitter = MultilabelStratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    fold = np.zeros(len(label_matrix), int)
    for index, (_, held_out) in enumerate(splitter.split(np.zeros((len(label_matrix), 1)), label_matrix)):
        fold[held_out] = index
    for f in range(folds):
        in_fold = (fold == f).astype(int)
        moved = _give_each_side_every_class(label_matrix, in_fold)
        # Only moves out of fold f matter here (a class wholly inside it);
        # an example leaving goes to the next fold.
        leaving = (in_fold == 1) & (moved == 0)
        fold[leaving] = (f + 1) % folds
    return fold
