"""Each cell of a field as a square crop of its own, for a crop-level model.

The 2021 teams trained on single cells as well as on whole fields: a cell
cut out, its neighbours blacked out, at a fixed side, labelled with its
field's (weak) labels. One function makes the crops both for the training
set (`python -m data_prep crops`) and at inference (`cells --crop-model`),
so a crop-level model meets at inference exactly the crops it trained on.
"""

import numpy as np
import tensorflow as tf

# Crop side in pixels when none is given: each cell is resized to it, so a
# 300 px cell of a 2048 px HPA field and a 40 px cell of a 128 px crop alike.
DEFAULT_CROP_SIZE = 64


def crop_boxes(cells):
    """[(top, left, side)] of the cells 1..n of label image `cells` [H, W]:
    the square around each cell's bounding box, centred on it (it may reach
    past the frame, where the crop is black). A value with no pixels gets None."""
    count = int(cells.max()) if cells.size else 0
    boxes = [None] * count
    for index, found in enumerate(_bounding_slices(cells, count)):
        if found is None:
            continue
        rows, cols = found
        side = max(rows.stop - rows.start, cols.stop - cols.start)
        top = (rows.start + rows.stop - side) // 2
        left = (cols.start + cols.stop - side) // 2
        boxes[index] = (top, left, side)
    return boxes


def _bounding_slices(cells, count):
    from scipy import ndimage  # the cells extra, as segmentation

    return ndimage.find_objects(cells.astype(np.int32), max_label=count)


def cell_crops(image, cells, size=DEFAULT_CROP_SIZE):
    """uint8 [n, size, size, channels]: cell i + 1 of label image `cells`
    [H, W] cut from `image` [H, W, channels] as the square around it, every
    pixel not of that cell black, resized (antialiased) to `size`. A cell
    value with no pixels gives a black crop, so row i is always cell i + 1."""
    image = np.asarray(image)
    if image.shape[:2] != cells.shape:
        raise ValueError(
            f"the image is {image.shape[1]}x{image.shape[0]} pixels but its label image is "
            f"{cells.shape[1]}x{cells.shape[0]}"
        )
    boxes = crop_boxes(cells)
    crops = np.zeros((len(boxes), size, size, image.shape[2]), np.uint8)
    height, width = cells.shape
    for index, box in enumerate(boxes):
        if box is None:
            continue
        top, left, side = box
        square = np.zeros((side, side, image.shape[2]), image.dtype)
        rows = slice(max(top, 0), min(top + side, height))
        cols = slice(max(left, 0), min(left + side, width))
        inside = (cells[rows, cols] == index + 1)[..., np.newaxis]
        square[rows.start - top : rows.stop - top, cols.start - left : cols.stop - left] = np.where(
            inside, image[rows, cols], 0
        )
        resized = tf.image.resize(square[np.newaxis].astype(np.float32), (size, size), antialias=True)
        crops[index] = np.clip(np.round(resized.numpy()[0]), 0, 255).astype(np.uint8)
    return crops
