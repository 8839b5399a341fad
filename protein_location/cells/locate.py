"""`python -m protein_location cells`: every cell's locations from an
image-level SavedModel, written as the HPA 2021 submission.

For each field: the cells are segmented (`segmentation`, or label images
from another segmenter with `masks_dir`), the SavedModel's `gradcam`
signature gives the image's probabilities and one class activation map per
class, and each cell gets a confidence per class (`cell_confidences`). The
submission (`ID,ImageWidth,ImageHeight,PredictionString`) repeats
`class confidence mask` for every cell and class; a per-cell table and,
on request, overlay pictures go beside it.
"""

import csv
import os
import posixpath

import numpy as np
import tensorflow as tf
from tqdm import tqdm

from protein_location.cells import crops as crops_lib, masks as masks_lib, overlays, segmentation
from protein_location.core import file_system, output_files, raw_images, stop_signals
from protein_location.core.errors import CellsError
from protein_location.export import signatures
from protein_location.inference import serving

# How a cell's confidence in a class is made from the image-level model (`cell_confidences`).
CELL_SCORES = ("blend", "cam", "image", "crop")
# Crops sent through the crop-level model at once.
CROP_BATCH = 64
SUBMISSION_COLUMNS = ("ID", "ImageWidth", "ImageHeight", "PredictionString")


def cell_confidences(heatmaps, probabilities, cells, cell_scores="blend", crop_probabilities=None):
    """[number of cells, classes] confidences of the cells 1..n of label image `cells` [H, W].

    heatmaps: the class activation maps [S, S, classes] over the whole field
    (the `gradcam` signature's, at the model's input side); probabilities:
    the image's [classes].

    - "image": every cell gets the image's probability (the baseline: it
      cannot tell the cells apart).
    - "cam": the image's probability times the cell's mean activation over
      that of the most active cell of the field, so the cell that shows the
      pattern keeps the image's confidence and the others get their share;
      a class with no positive activation anywhere leaves every cell at the
      image's probability. The image's probability makes confidences rank
      across images, as mAP pools them.
    - "blend" (the default without a crop-level model): the mean of the
      two. The activation maps are coarse (the backbone's last grid, 32
      pixels of the model's input per step), so they move half of the
      image's probability between cells.
    - "crop": the geometric mean of the image's probability and the cell's
      own, `crop_probabilities` [cells, classes] from a crop-level model:
      the cell must show the class and its field must too.
    """
    count = int(cells.max())
    probabilities = np.asarray(probabilities, np.float32)
    if cell_scores == "crop":
        if crop_probabilities is None:
            raise CellsError("`cell_scores` crop needs the crop-level model's probabilities")
        return np.sqrt(probabilities * np.asarray(crop_probabilities, np.float32))
    if cell_scores == "image" or count == 0:
        return np.tile(probabilities, (count, 1))
    activation = cell_means(np.asarray(heatmaps, np.float32), cells)
    peak = activation.max(axis=0)
    share = np.where(peak > 0, activation / np.where(peak > 0, peak, 1), 1.0)
    if cell_scores == "blend":
        share = (1.0 + share) / 2
    return probabilities * share


def cell_means(maps, cells):
    """[cells, channels]: each cell's mean of `maps` [S, S, channels] over the field's grid.

    The label image is sampled at the centres of the S x S grid; a cell too
    small to cover a grid point takes the point nearest its centre.
    """
    side, height, width = maps.shape[0], cells.shape[0], cells.shape[1]
    rows = np.minimum(((np.arange(side) + 0.5) * height / side).astype(int), height - 1)
    cols = np.minimum(((np.arange(maps.shape[1]) + 0.5) * width / maps.shape[1]).astype(int), width - 1)
    grid = cells[np.ix_(rows, cols)].ravel()
    count = int(cells.max())
    flat = maps.reshape(-1, maps.shape[-1])
    pixels = np.bincount(grid, minlength=count + 1)[1:]
    sums = np.stack([np.bincount(grid, weights=flat[:, k], minlength=count + 1)[1:] for k in range(flat.shape[1])], 1)
    means = sums / np.maximum(pixels, 1)[:, None]
    for value in np.flatnonzero(pixels == 0) + 1:
        y, x = np.argwhere(cells == value).mean(axis=0)
        means[value - 1] = maps[
            min(int(y * side / height), side - 1), min(int(x * maps.shape[1] / width), maps.shape[1] - 1)
        ]
    return means


def read_mask_image(masks_dir, image_id, shape):
    """The label image `<masks_dir>/<Id>.png` (0: background), checked against the field's [H, W]."""
    path = posixpath.join(masks_dir, f"{image_id}.png")
    labels = masks_lib.read_label_image(path, image_id, "in --masks")
    if labels.shape != tuple(shape):
        raise CellsError(
            f"Id {image_id}: {path} is {labels.shape[1]}x{labels.shape[0]} pixels but the image is "
            f"{shape[1]}x{shape[0]}"
        )
    return segmentation.relabel(labels)  # a segmenter's values may skip: numbered 1..n


def crop_probabilities(crop_model, image, cells):
    """[cells, classes]: each cell's crop (`crops.cell_crops` at the crop
    model's side) through `crop_model` (a serving.ServingModel)."""
    crops = crops_lib.cell_crops(image, cells, crop_model.image_size)
    found = [
        crop_model.serve(image=tf.constant(crops[start : start + CROP_BATCH]))["probabilities"].numpy()
        for start in range(0, len(crops), CROP_BATCH)
    ]
    return np.concatenate(found) if found else np.zeros((0, len(crop_model.class_names)), np.float32)


def load_crop_model(crop_model_path, class_names):
    """The crop-level SavedModel as a serving.ServingModel, refused unless it has the image model's classes."""
    crop_model = serving.load_serving_model(crop_model_path)
    if list(crop_model.class_names) != list(class_names):
        raise CellsError(
            f"{crop_model_path}: the crop-level model's classes ({len(crop_model.class_names)}: "
            f"{crop_model.class_names[0]}, ...) are not the image-level model's ({len(class_names)}: "
            f"{class_names[0]}, ...); train both on one label set"
        )
    return crop_model


def locate_cells(
    model_path,
    images_dir,
    ids,
    out_path,
    table_path,
    overlays_dir=None,
    masks_dir=None,
    cell_scores=None,
    min_confidence=0.0,
    params=segmentation.SegmentationParams(),
    crop_model=None,
):
    """Writes the submission `out_path` and the per-cell table `table_path`
    for the Ids `ids`; returns {"images": n, "cells": total}. `cell_scores`
    (one of CELL_SCORES) defaults to "crop" with a crop-level SavedModel
    `crop_model`, else to "blend"."""
    cell_scores = cell_scores or ("crop" if crop_model else "blend")
    if cell_scores not in CELL_SCORES:
        raise CellsError(f"`cell_scores` must be one of {', '.join(CELL_SCORES)}, got {cell_scores!r}")
    if cell_scores == "crop" and not crop_model:
        raise CellsError("`cell_scores` crop needs a crop-level model (`crop_model`)")
    loaded, gradcam = serving.load_saved_model(model_path, signatures.GRADCAM_SIGNATURE)
    class_names = serving.class_names_of(loaded, model_path)
    crop_serving = load_crop_model(crop_model, class_names) if cell_scores == "crop" else None
    raw_images.check_images_dir(images_dir)
    if overlays_dir:
        file_system.makedirs(overlays_dir)
    total = 0
    with output_files.atomic_open(out_path) as out, output_files.atomic_open(table_path) as table_file:
        submission = csv.writer(out, lineterminator="\n")
        submission.writerow(SUBMISSION_COLUMNS)
        table = csv.writer(table_file, lineterminator="\n")
        table.writerow(["ID", "Cell", "XMin", "YMin", "XMax", "YMax", "Area", *class_names])
        for image_id in tqdm(ids, unit="img", desc="cells", disable=None):
            stop_signals.raise_if_requested()
            image = raw_images.read_image(images_dir, image_id)
            if masks_dir:
                cells = read_mask_image(masks_dir, image_id, image.shape[:2])
            else:
                cells = segmentation.segment_cells(image, params=params)[0]
            outputs = gradcam(image=tf.constant(image[np.newaxis]))
            own = crop_probabilities(crop_serving, image, cells) if crop_serving else None
            confidences = cell_confidences(
                outputs["heatmaps"].numpy()[0], outputs["probabilities"].numpy()[0], cells, cell_scores, own
            )
            entries = []
            for value, row in enumerate(confidences, start=1):
                mask = cells == value
                encoded = masks_lib.encode_mask(mask)
                entries += [f"{k} {row[k]:.6f} {encoded}" for k in np.flatnonzero(row >= min_confidence)]
                ys, xs = np.nonzero(mask)
                table.writerow(
                    [
                        image_id,
                        value,
                        xs.min(),
                        ys.min(),
                        xs.max() + 1,
                        ys.max() + 1,
                        ys.size,
                        *(f"{c:.6f}" for c in row),
                    ]
                )
            submission.writerow([image_id, image.shape[1], image.shape[0], " ".join(entries)])
            total += len(confidences)
            if overlays_dir:
                texts = {
                    value: [f"{class_names[k]} {row[k]:.2f}" for k in np.argsort(-row)[:2]]
                    for value, row in enumerate(confidences, start=1)
                }
                overlays.write(
                    posixpath.join(overlays_dir, f"{image_id}.png"),
                    image,
                    cells,
                    texts,
                    title=f"{image_id}: {len(confidences)} cells",
                )
    return {"images": len(ids), "cells": total}


def default_table_path(out_path):
    """The per-cell table beside the submission: cells.csv -> cells_per_cell.csv."""
    root, _ = os.path.splitext(out_path)
    return f"{root}_per_cell.csv"
