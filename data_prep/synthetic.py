"""Synthetic Human Protein Atlas images in the Kaggle competition layout.

The cells' geometry and optics are `synthetic_scene`, the 28 green patterns
`synthetic_patterns`; this module draws labels, composes an image and writes
the dataset.

No real HPA images live on this machine, so the demo trains on this stand-in:
cells drawn with the three reference stains (red microtubules, blue nucleus,
yellow ER) and a green protein channel that carries one pattern per label,
drawn relative to the cell geometry so that a small CNN can learn them.

Layout written by `generate_dataset` (Kaggle's, plus one file):

    train.csv                  Id,Target   ("16 0": space-separated indices)
    train/<Id>_<channel>.png   8-bit grayscale, channel in red/green/blue/yellow
    test/<Id>_<channel>.png
    sample_submission.csv      Id,Predicted ("0" on every row)
    test_labels.csv            Id,Target of the test images. Synthetic only:
                               Kaggle keeps these hidden; here they let the
                               demo score its submission honestly.
"""

import functools
import os
import pathlib
import uuid

import cv2
import numpy as np
import pandas as pd
from tqdm import tqdm

from data_prep import workers as workers_lib
from data_prep.synthetic_patterns import ONE_CELL, PATTERNS
from data_prep.synthetic_scene import Scene, finish, place_cells, reference_stains
from protein_location.core import stop_signals
from protein_location.core.errors import DataPrepError
from protein_location.core.labels import CHANNELS, HPA_TRAIN_COUNTS, NUM_CLASSES, format_target

_SPLIT_CODES = {"train": 0, "test": 1}

# The real HPA label shape mixed with a uniform floor (30% of the draws): rare
# classes stay the rarest but still reach ~1.8% of the images.
_COUNTS = np.asarray(HPA_TRAIN_COUNTS, float)
_LABEL_PROBS = 0.7 * _COUNTS / _COUNTS.sum() + 0.3 / NUM_CLASSES
_NUM_LABELS_PROBS = (0.55, 0.35, 0.10)  # 1, 2 or 3 labels per image


def sample_labels(rng):
    """Draw 1-3 distinct label indices for one image, sorted.

    Args:
        rng: numpy Generator.
    """
    k = rng.choice(len(_NUM_LABELS_PROBS), p=_NUM_LABELS_PROBS) + 1
    labels = rng.choice(NUM_CLASSES, size=k, replace=False, p=_LABEL_PROBS)
    return sorted(int(i) for i in labels)


def render_cells(rng, labels, size, subsets=False):
    """Render one 4-channel image whose green channel shows `labels`.

    Args:
        rng: numpy Generator; the image is a pure function of its state.
        labels: label indices (0..27), each drawn into every cell (the
            cytokinetic bridge and the mitotic spindle into one cell only).
        size: side of the square image in pixels (>= 32).
        subsets: each cell shows each label with probability 0.6, at least
            one cell per label (per-cell truth, `synth --cells`); off, every
            cell shows every label and the image is as it always was.

    Returns:
        (image, masks): image is uint8 (size, size, 4) in RGBY order; masks
        maps "cell", "nucleus" and "cytoplasm" to boolean (size, size) unions
        over the cells, "cells" to their label image (`cell_labels`), and
        "expressing" to {label: the cell values that show it}.
    """
    if size < 32:
        raise DataPrepError(f"size {size} is too small to draw cells; use >= 32")
    scene = Scene(rng, size)
    place_cells(scene)
    red, blue, yellow = reference_stains(scene)
    green = scene.layer()
    expressing = {}
    for label in labels:  # max, not sum: patterns stay separable where they overlap
        strength = rng.uniform(0.55, 1.0)
        cells = scene.cells[:1] if label in ONE_CELL else scene.cells
        if subsets and len(cells) > 1:  # each cell on its own; at least one cell shows the label
            shown = rng.random(len(cells)) < 0.6
            shown[rng.integers(len(cells))] = True
            cells = [cell for cell, show in zip(cells, shown) if show]
        expressing[label] = [scene.cells.index(cell) + 1 for cell in cells]
        for cell in cells:
            layer = PATTERNS[label](scene, cell, scene.layer())
            np.maximum(green, strength * rng.uniform(0.8, 1.0) * layer, out=green)
    image = np.stack([finish(scene, ch) for ch in (red, green, blue, yellow)], axis=-1)

    def shrink(mask):
        mask = cv2.resize(mask.astype(np.float32), (size, size), interpolation=cv2.INTER_AREA)
        return mask >= 0.5

    cell = shrink(np.any([c.frac <= 1 for c in scene.cells], axis=0))
    nucleus = shrink(scene.nuclei)
    return image, {
        "cell": cell,
        "nucleus": nucleus,
        "cytoplasm": cell & ~nucleus,
        "cells": cell_labels(scene, shrink),
        "expressing": expressing,
    }


def cell_labels(scene, shrink):
    """Label image [size, size] uint16 of the scene's cells (1..n, 0: background).

    Where cells overlap, a pixel is the cell whose rim is relatively farther
    (the smaller `frac`); a pixel belongs to a cell when most of its area does.
    """
    fracs = np.stack([np.where(c.frac <= 1, np.maximum(c.frac, 0), np.inf) for c in scene.cells])
    owner = np.where(np.isfinite(fracs.min(0)), np.argmin(fracs, 0) + 1, 0)
    labels = np.zeros((scene.size, scene.size), np.uint16)
    for value in range(1, len(scene.cells) + 1):
        labels[shrink(owner == value)] = value
    return labels


def _write_image(index, folder, split, size, seed, cells_folder=None):
    """Render and write image `index` of a split; returns (Id, labels), and
    with `cells_folder` (Id, labels, {cell: its labels}) after writing the
    cell label image `<cells_folder>/<Id>.png` (16-bit)."""
    # Own stream per image: an image never depends on order, count or process.
    rng = np.random.default_rng([seed, _SPLIT_CODES[split], index])
    image_id = str(uuid.UUID(bytes=rng.bytes(16), version=1))  # shaped like Kaggle's
    labels = sample_labels(rng)
    image, drawn = render_cells(rng, labels, size, subsets=cells_folder is not None)
    for c, name in enumerate(CHANNELS):
        path = folder / f"{image_id}_{name}.png"
        if not cv2.imwrite(str(path), np.ascontiguousarray(image[:, :, c])):
            raise OSError(f"could not write {path}")
    if cells_folder is None:
        return image_id, labels
    return image_id, labels, write_cell_image(cells_folder, image_id, drawn["cells"], drawn["expressing"])


def write_cell_image(folder, image_id, cells, expressing):
    """Writes the cell label image `<folder>/<Id>.png` (16-bit); returns
    {cell: its labels} for the cells it shows (a cell hidden under its
    neighbours has no pixels and no entry), from {label: the cells showing it}."""
    path = os.path.join(str(folder), f"{image_id}.png")
    if not cv2.imwrite(path, np.asarray(cells, np.uint16)):
        raise OSError(f"could not write {path}")
    return {
        int(cell): sorted(label for label, shown in expressing.items() if cell in shown)
        for cell in np.unique(cells)
        if cell
    }


def _write_split(out_dir, split, count, size, seed, workers, cells=False):
    """Render and write `count` images; returns [(Id, labels)] in index order
    (with `cells`: [(Id, labels, {cell: labels})], label images in <split>_cells/)."""
    folder = out_dir / split
    folder.mkdir(parents=True, exist_ok=True)
    cells_folder = out_dir / f"{split}_cells" if cells else None
    if cells:
        cells_folder.mkdir(parents=True, exist_ok=True)
    write = functools.partial(_write_image, folder=folder, split=split, size=size, seed=seed, cells_folder=cells_folder)
    progress = functools.partial(tqdm, total=count, desc=f"synthetic {split}", unit="img", disable=None)
    if workers <= 1 or count < 2:
        return list(progress(map(write, _between_stop_checks(range(count)))))
    # Spawned, not forked: the caller may have TensorFlow loaded (the data_prep
    # CLI does). This module imports no TensorFlow: a worker starts in 0.6 s.
    with workers_lib.process_pool(min(workers, count)) as pool, stop_signals.interruptible():
        return list(progress(pool.imap(write, range(count), chunksize=16)))


def _between_stop_checks(indices):
    for index in indices:
        stop_signals.raise_if_requested()
        yield index


def generate_dataset(out_dir, num_train, num_test, size=64, seed=0, workers=None, cells=False):
    """Write a synthetic HPA dataset in the Kaggle layout (see the module docstring).

    Files of the same names are overwritten; nothing else is deleted.

    Args:
        out_dir: folder to write into (created if missing).
        num_train: number of labelled training images.
        num_test: number of test images (their labels go to test_labels.csv).
        size: image side in pixels (>= 32).
        seed: non-negative int; the same seed gives byte-identical files.
        workers: rendering processes (default: all cores); never changes
            the output. More than one are spawned (`data_prep.workers`): a
            script calling this needs the `if __name__ == "__main__":` guard.
        cells: per-cell truth for the test images: each cell shows each of
            its image's labels with probability 0.6 (at least one cell per
            label), the label images go to test_cells/<Id>.png (16-bit, 0:
            background) and the cells' labels to test_cells.csv
            (Id,Cell,Target). The training images are as without it.

    Returns:
        dict with out_dir, num_train, num_test, size, seed and
        train_label_counts (images per class in train, a list of 28 ints).
    """
    if num_train < 0 or num_test < 0:
        raise DataPrepError("num_train and num_test must be >= 0")
    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    workers = workers or os.cpu_count() or 1
    train = _write_split(out, "train", num_train, size, seed, workers)
    test = _write_split(out, "test", num_test, size, seed, workers, cells=cells)
    if cells:
        write_cell_truth(out, test)
        test = [(image_id, labels) for image_id, labels, _ in test]
    counts = write_label_csvs(out, train, test)
    summary = dict(out_dir=str(out), num_train=num_train, num_test=num_test, size=size, seed=seed)
    return {**summary, "train_label_counts": counts.tolist()}


def write_cell_truth(out, test):
    """test_cells.csv (Id,Cell,Target) from [(Id, labels, {cell: its labels})]; a cell without labels has no row."""
    rows = [
        (image_id, cell, format_target(labels))
        for image_id, _, per_cell in test
        for cell, labels in per_cell.items()
        if labels
    ]
    pd.DataFrame(rows, columns=["Id", "Cell", "Target"]).to_csv(pathlib.Path(out) / "test_cells.csv", index=False)


def write_label_csvs(out, train, test):
    """The layout's CSVs from (Id, label indices) rows: train.csv and
    test_labels.csv (Id,Target), sample_submission.csv (Id,Predicted "0").
    Returns the images per class in train."""
    for name, rows in (("train.csv", train), ("test_labels.csv", test)):
        table = [(i, format_target(t)) for i, t in rows]
        pd.DataFrame(table, columns=["Id", "Target"]).to_csv(out / name, index=False)
    submission = pd.DataFrame({"Id": [i for i, _ in test], "Predicted": "0"})
    submission.to_csv(out / "sample_submission.csv", index=False)
    counts = np.zeros(NUM_CLASSES, int)
    for _, labels in train:
        counts[labels] += 1
    return counts
