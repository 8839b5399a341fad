"""Multi-label stratified train/val split (iterative stratification).

A plain random split of HPA loses its rarest classes (rods & rings: 11 of
31,072 images) from one side; iterative stratification keeps each class's
share close to the requested fraction on both sides.
"""

import numpy as np
from iterstrat.ml_stratifiers import MultilabelStratifiedShuffleSplit


def split_train_val(label_matrix, val_fraction, seed):
    """Multi-hot matrix [n, classes] -> (train indices, val indices), sorted."""
    label_matrix = np.asarray(label_matrix)
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"--val-fraction must be between 0 and 1, got {val_fraction}")
    n = len(label_matrix)
    if round(n * val_fraction) < 1 or round(n * (1 - val_fraction)) < 1:
        raise ValueError(f"{n} labeled images are too few to split with --val-fraction {val_fraction}")
    splitter = MultilabelStratifiedShuffleSplit(n_splits=1, test_size=val_fraction, random_state=seed)
    train, val = next(splitter.split(np.zeros((n, 1)), label_matrix))
    return np.sort(train), np.sort(val)
