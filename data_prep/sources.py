"""Readers for raw HPA layouts: a labels CSV and per-channel image files.

Kaggle HPA: `train.csv` (`Id,Target`) and `<Id>_{red,green,blue,yellow}.png`,
8-bit 512x512. Also read: `.jpg`/`.jpeg` (HPAv18 external data) and
`.tif`/`.tiff`, 16-bit images (scaled to 8 bits), any size (area-resized).
All reads go through tf.io.gfile so `gs://` folders work.
"""

import io
import posixpath

import cv2
import numpy as np
import pandas as pd
import tensorflow as tf

from protein_location import labels as labels_lib

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff")


class SourceError(ValueError):
    """Bad raw input. The message is one line naming the file or Id."""


def read_labels_csv(csv_path):
    """`Id,Target` CSV -> list of (Id, sorted label indices), in file order."""
    if not tf.io.gfile.exists(csv_path):
        raise SourceError(f"{csv_path}: labels CSV not found")
    with tf.io.gfile.GFile(csv_path, "r") as f:
        text = f.read()
    try:
        table = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
    except pd.errors.EmptyDataError:
        raise SourceError(f"{csv_path}: empty CSV, expected columns Id,Target") from None
    if list(table.columns[:2]) != ["Id", "Target"]:
        found = ",".join(map(str, table.columns))
        raise SourceError(f"{csv_path}: expected columns Id,Target, found {found!r}")
    if table.empty:
        raise SourceError(f"{csv_path}: no rows below the Id,Target header")
    entries, seen = [], set()
    for row, (image_id, target) in enumerate(zip(table["Id"], table["Target"]), start=2):
        where = f"{csv_path} line {row}"
        if not labels_lib.is_valid_id(image_id):
            raise SourceError(f"{where}: Id {image_id!r} has characters outside [A-Za-z0-9_-]")
        if image_id in seen:
            raise SourceError(f"{where}: duplicate Id {image_id!r}")
        seen.add(image_id)
        try:
            entries.append((image_id, labels_lib.parse_target(target)))
        except ValueError as error:
            raise SourceError(f"{where}: Id {image_id}: {error}") from None
    return entries


def check_images_dir(images_dir):
    if not tf.io.gfile.isdir(images_dir):
        raise SourceError(f"{images_dir}: images folder not found")


def list_image_ids(images_dir):
    """Sorted Ids of an image folder, from `<Id>_<channel>.<ext>` file names."""
    check_images_dir(images_dir)
    ids = set()
    for name in tf.io.gfile.listdir(images_dir):
        stem, ext = posixpath.splitext(name)
        image_id, _, channel = stem.rpartition("_")
        if ext.lower() in IMAGE_EXTENSIONS and channel in labels_lib.CHANNELS:
            if not labels_lib.is_valid_id(image_id):
                raise SourceError(f"{images_dir}/{name}: Id {image_id!r} has characters outside [A-Za-z0-9_-]")
            ids.add(image_id)
    if not ids:
        raise SourceError(f"{images_dir}: no <Id>_<red|green|blue|yellow>.png files found")
    return sorted(ids)


def find_channel_file(images_dir, image_id, channel):
    """Path of `<Id>_<channel>.<ext>` for the first extension that exists."""
    if not labels_lib.is_valid_id(image_id):
        # Never build a path from an Id like `../../x`.
        raise SourceError(f"Id {image_id!r} has characters outside [A-Za-z0-9_-]")
    for ext in IMAGE_EXTENSIONS:
        path = posixpath.join(images_dir, f"{image_id}_{channel}{ext}")
        if tf.io.gfile.exists(path):
            return path
    expected = posixpath.join(images_dir, f"{image_id}_{channel}.png")
    raise SourceError(f"Id {image_id}: missing channel file {expected}")


def decode_channel(data, path):
    """Encoded bytes of one stain -> 2-D uint8 array (16-bit scaled to 8)."""
    array = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED) if data else None
    if array is None:
        raise SourceError(f"{path}: not a readable image ({len(data)} bytes)")
    if array.ndim != 2:
        raise SourceError(f"{path}: expected one grayscale channel, found shape {array.shape}")
    if array.dtype == np.uint16:
        array = (array >> 8).astype(np.uint8)
    elif array.dtype != np.uint8:
        raise SourceError(f"{path}: unsupported pixel type {array.dtype}")
    return array


def read_image(images_dir, image_id, size=None):
    """The four stains of one Id -> uint8 (H, W, 4) RGBY.

    With `size`, each stain is area-resized to size x size; without it the
    four stains must already share one shape.
    """
    stains = []
    for channel in labels_lib.CHANNELS:
        path = find_channel_file(images_dir, image_id, channel)
        with tf.io.gfile.GFile(path, "rb") as f:
            stain = decode_channel(f.read(), path)
        if size is not None and stain.shape != (size, size):
            stain = cv2.resize(stain, (size, size), interpolation=cv2.INTER_AREA)
        stains.append(stain)
    shapes = {stain.shape for stain in stains}
    if len(shapes) > 1:
        raise SourceError(f"Id {image_id}: channel images differ in size {sorted(shapes)}")
    return np.stack(stains, axis=-1)
