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
import PIL.Image
import tensorflow as tf

from protein_location import labels as labels_lib

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff")
# HPAv18 full-size images are 3072x3072 (9.4 MP); far beyond that is a
# decompression bomb, refused before decoding.
DEFAULT_MAX_PIXELS = 40_000_000

# Bad files are reported by SourceError; OpenCV's own stderr warnings only repeat them.
cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
# The pixel cap is ours (checked from the header below), not Pillow's.
PIL.Image.MAX_IMAGE_PIXELS = None


class SourceError(ValueError):
    """Bad raw input: one line naming the Id, the file and the problem."""

    def __init__(self, problem, image_id=None, path=None):
        where = [f"Id {image_id}" if image_id is not None else None, path]
        super().__init__(": ".join([w for w in where if w] + [problem]))
        self.image_id, self.path, self.problem = image_id, path, problem


def read_labels_csv(csv_path, on_error="fail"):
    """`Id,Target` CSV -> (list of (Id, sorted label indices), list of SourceError).

    A file-level problem (missing, empty, wrong columns) always raises. A bad
    row raises with on_error="fail" and is returned among the errors with
    on_error="skip".
    """
    if not tf.io.gfile.exists(csv_path):
        raise SourceError("labels CSV not found", path=csv_path)
    with tf.io.gfile.GFile(csv_path, "r") as f:
        text = f.read()
    try:
        table = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
    except pd.errors.EmptyDataError:
        raise SourceError("empty CSV, expected columns Id,Target", path=csv_path) from None
    if list(table.columns[:2]) != ["Id", "Target"]:
        found = ",".join(map(str, table.columns))
        raise SourceError(f"expected columns Id,Target, found {found!r}", path=csv_path)
    if table.empty:
        raise SourceError("no rows below the Id,Target header", path=csv_path)
    entries, errors, seen = [], [], set()
    for row, (image_id, target) in enumerate(zip(table["Id"], table["Target"]), start=2):
        where = f"{csv_path} line {row}"
        try:
            if not labels_lib.is_valid_id(image_id):
                raise SourceError(f"Id {image_id!r} has characters outside [A-Za-z0-9_-]", path=where)
            if image_id in seen:
                raise SourceError("duplicate Id", image_id, where)
            seen.add(image_id)
            try:
                entries.append((image_id, labels_lib.parse_target(target)))
            except ValueError as error:
                raise SourceError(str(error), image_id, where) from None
        except SourceError as error:
            if on_error == "fail":
                raise
            errors.append(error)
    return entries, errors


def check_images_dir(images_dir):
    if not tf.io.gfile.isdir(images_dir):
        raise SourceError("images folder not found", path=images_dir)


def list_image_ids(images_dir):
    """Sorted Ids of an image folder, from `<Id>_<channel>.<ext>` file names."""
    check_images_dir(images_dir)
    ids = set()
    for name in tf.io.gfile.listdir(images_dir):
        stem, ext = posixpath.splitext(name)
        image_id, _, channel = stem.rpartition("_")
        if ext.lower() in IMAGE_EXTENSIONS and channel in labels_lib.CHANNELS:
            if not labels_lib.is_valid_id(image_id):
                raise SourceError(f"Id {image_id!r} has characters outside [A-Za-z0-9_-]",
                                  path=posixpath.join(images_dir, name))
            ids.add(image_id)
    if not ids:
        raise SourceError("no <Id>_<red|green|blue|yellow>.png files found", path=images_dir)
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
    raise SourceError("missing channel file", image_id, expected)


def decode_channel(data, image_id, path, max_pixels=DEFAULT_MAX_PIXELS):
    """Encoded bytes of one stain -> 2-D uint8 array (16-bit scaled to 8)."""
    if not data:
        raise SourceError("empty file (0 bytes)", image_id, path)
    try:
        # The header alone: refuse decompression bombs before decoding.
        width, height = PIL.Image.open(io.BytesIO(data)).size
    except (PIL.UnidentifiedImageError, OSError, ValueError):
        raise SourceError(f"not an image ({len(data)} bytes)", image_id, path) from None
    if width * height > max_pixels:
        raise SourceError(f"{width}x{height} pixels is over the cap of {max_pixels} (--max-pixels)", image_id, path)
    array = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if array is None:
        raise SourceError(f"truncated or corrupt image ({len(data)} bytes)", image_id, path)
    if array.ndim != 2:
        raise SourceError(f"expected one grayscale channel, found {array.shape[2]} channels", image_id, path)
    if array.dtype == np.uint16:
        array = (array >> 8).astype(np.uint8)
    elif array.dtype != np.uint8:
        raise SourceError(f"unsupported pixel type {array.dtype}", image_id, path)
    return array


def read_image(images_dir, image_id, size=None, max_pixels=DEFAULT_MAX_PIXELS):
    """The four stains of one Id -> uint8 (H, W, 4) RGBY.

    The four stains must share one shape; with `size` each is then
    area-resized to size x size.
    """
    stains, paths = [], []
    for channel in labels_lib.CHANNELS:
        path = find_channel_file(images_dir, image_id, channel)
        with tf.io.gfile.GFile(path, "rb") as f:
            stains.append(decode_channel(f.read(), image_id, path, max_pixels))
        paths.append(path)
    for stain, path in zip(stains[1:], paths[1:]):
        if stain.shape != stains[0].shape:
            raise SourceError(f"{stain.shape[1]}x{stain.shape[0]} differs from the red channel's "
                              f"{stains[0].shape[1]}x{stains[0].shape[0]}", image_id, path)
    if size is not None and stains[0].shape != (size, size):
        stains = [cv2.resize(stain, (size, size), interpolation=cv2.INTER_AREA) for stain in stains]
    return np.stack(stains, axis=-1)
