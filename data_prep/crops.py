"""`python -m data_prep crops`: a training set of single cells, for a crop-level model.

Each field of a labelled raw folder is segmented (`protein_location.cells.
segmentation`, or label images from another segmenter with `masks_dir`),
and every cell is written as an image of its own in the same raw layout
(`<Id>_cell<k>_<stain>.png`, `protein_location.cells.crops`: the square
around the cell, the other cells black, resized to `size`), labelled with its
field's labels: the weak labels the HPA 2021 teams trained their cell models
on. The labels CSV keeps the field's header (Id,Target or ID,Label) and adds
`Group` (the field, or its HPAv18 well), so that `convert --group-column
Group` keeps a field's cells on one side of the split:

    python -m data_prep crops --csv raw/train.csv --images raw/train --out raw/crops
    python -m data_prep convert --csv raw/crops/train.csv --images raw/crops/train \
        --out tfrecords/crops --group-column Group
    python train_keras.py --data tfrecords/crops --model-dir runs/crops --export export/crops

`python -m protein_location cells --crop-model export/crops` then scores
every cell with it.
"""

import csv
import functools
import os
import pathlib

import cv2
import numpy as np
from tqdm import tqdm

from data_prep import split as split_lib, workers as workers_lib
from protein_location.core import labels as labels_lib, labels_csv, output_files, stop_signals
from protein_location.core.errors import DataPrepError

GROUP_COLUMN = "Group"
# A worker imports TensorFlow (the image decoding, the crops' resize): seconds
# to start, so one per this many fields.
FIELDS_PER_WORKER = 50


def crop_id(image_id, cell):
    """The Id of cell `cell` (1..n) of field `image_id`."""
    return f"{image_id}_cell{cell}"


def write_field_crops(image_id, images_dir, out_folder, size, masks_dir=None):
    """Segments (or reads the mask of) one field and writes its cells' crops; returns how many."""
    from protein_location.cells import crops as crops_lib, locate, segmentation
    from protein_location.core import raw_images

    image = raw_images.read_image(images_dir, image_id)
    if masks_dir:
        cells = locate.read_mask_image(masks_dir, image_id, image.shape[:2])
    else:
        cells = segmentation.segment_cells(image)[0]
    crops = crops_lib.cell_crops(image, cells, size)
    for cell, crop in enumerate(crops, start=1):
        for channel, stain in enumerate(labels_lib.CHANNELS):
            path = os.path.join(out_folder, f"{crop_id(image_id, cell)}_{stain}.png")
            if not cv2.imwrite(path, np.ascontiguousarray(crop[:, :, channel])):
                raise OSError(f"could not write {path}")
    return len(crops)


def write_crops(images_dir, csv_path, out_dir, size=None, masks_dir=None, workers=None):
    """Writes `<out_dir>/train/<Id>_cell<k>_<stain>.png` for every cell of
    every field `csv_path` labels, and `<out_dir>/train.csv` (the field's
    labels, its `Group`); returns {"fields": n, "cells": total, "empty": [Ids without a cell]}.

    Args:
        images_dir: the fields, any layout `convert` reads.
        csv_path: their labels (Id,Target or ID,Label).
        out_dir: created if missing; files of the same names are overwritten.
        size: the crops' side (default `crops.DEFAULT_CROP_SIZE`).
        masks_dir: label images `<Id>.png` from another segmenter instead of
            segmenting (0: background).
        workers: processes (default: one per 50 fields, up to the cores);
            never changes the output. More than one are spawned: a script
            calling this needs the `if __name__ == "__main__":` guard.
    """
    from protein_location.cells import crops as crops_lib

    size = size or crops_lib.DEFAULT_CROP_SIZE
    if size < 8:
        raise DataPrepError(f"the crop size must be at least 8 pixels, got {size}")
    entries, _, label_set = labels_csv.read_labels_csv(csv_path)
    out = pathlib.Path(out_dir)
    folder = out / "train"
    folder.mkdir(parents=True, exist_ok=True)
    write = functools.partial(
        write_field_crops, images_dir=images_dir, out_folder=str(folder), size=size, masks_dir=masks_dir
    )
    ids = [image_id for image_id, _ in entries]
    workers = workers or max(1, min(os.cpu_count() or 1, len(ids) // FIELDS_PER_WORKER))
    progress = functools.partial(tqdm, total=len(ids), desc="crops", unit="field", disable=None)
    if workers <= 1:
        counts = []
        for image_id in progress(ids):
            stop_signals.raise_if_requested()
            counts.append(write(image_id))
    else:
        with (
            workers_lib.process_pool(workers, preload="protein_location.cells.crops") as pool,
            stop_signals.interruptible(),
        ):
            counts = list(progress(pool.imap(write, ids, chunksize=4)))
    with output_files.atomic_open(str(out / "train.csv")) as f:
        table = csv.writer(f, lineterminator="\n")
        table.writerow([label_set.id_column, label_set.label_column, GROUP_COLUMN])
        for (image_id, labels), count in zip(entries, counts):
            group = split_lib.group_of_id(image_id)
            # HPA 2021 writes its labels with |, 2018 with spaces: the header's release, its separator.
            target = labels_lib.format_target(labels)
            target = target.replace(" ", "|") if label_set is labels_lib.HPA2021 else target
            table.writerows([crop_id(image_id, cell), target, group] for cell in range(1, count + 1))
    return {
        "fields": len(ids),
        "cells": int(sum(counts)),
        "empty": [image_id for image_id, count in zip(ids, counts) if not count],
    }
