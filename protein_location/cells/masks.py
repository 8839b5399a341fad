"""One cell's mask as HPA 2021's submission writes it: base64 of zlib (best
compression) of the COCO compressed RLE (pycocotools) of the binary mask at
the image's original size; and back."""

import base64
import zlib

import numpy as np

from protein_location.core.errors import CellsError

try:
    from pycocotools import mask as coco_mask
except ImportError:  # pragma: no cover - the message is what a user without the extra sees
    coco_mask = None

MISSING = "single cells need pycocotools and scikit-image: pip install 'protein-location[cells]'"


def coco_api():
    """pycocotools' mask module, or the one-line error naming the extra that installs it."""
    if coco_mask is None:
        raise CellsError(MISSING)
    return coco_mask


def rle_of_mask(mask):
    """A boolean mask [H, W] -> its COCO compressed RLE dict."""
    return coco_api().encode(np.asfortranarray(np.asarray(mask, dtype=np.uint8)[:, :, np.newaxis]))[0]


def encode_mask(mask):
    """A boolean mask [H, W] -> its submission string (ASCII)."""
    counts = rle_of_mask(mask)["counts"]
    return base64.b64encode(zlib.compress(counts, zlib.Z_BEST_COMPRESSION)).decode("ascii")


def rle_of(text, height, width):
    """A submission string -> the COCO RLE dict of an image of height x width."""
    try:
        counts = zlib.decompress(base64.b64decode(text, validate=True))
    except (ValueError, zlib.error) as error:
        raise CellsError(f"a mask is not base64 of zlib-compressed COCO RLE ({error})") from None
    return {"size": [int(height), int(width)], "counts": counts}


def decode_mask(text, height, width):
    """A submission string -> the boolean mask [height, width] it encodes."""
    rle = rle_of(text, height, width)
    try:
        return coco_api().decode(rle).astype(bool)
    except Exception as error:  # pycocotools raises bare exceptions on a malformed RLE
        raise CellsError(f"a mask does not decode to a {height}x{width} image ({error})") from None


def read_label_image(path, image_id, wanted_for):
    """A label image file (`<Id>.png`, 8- or 16-bit, 0: background) -> int32
    [H, W]; a missing one is named with what it is `wanted_for`."""
    import tensorflow as tf

    from protein_location.core import file_system

    if not file_system.exists(path):
        raise CellsError(f"Id {image_id}: no mask file {path} {wanted_for}")
    try:
        with file_system.open_file(path, "rb") as f:
            return tf.io.decode_png(f.read(), channels=1, dtype=tf.uint16).numpy()[..., 0].astype(np.int32)
    except tf.errors.OpError:
        raise CellsError(f"Id {image_id}: {path} is not a PNG label image") from None


def cell_rles(label_image):
    """{cell value: COCO RLE} of every cell (non-zero value) of a label image [H, W]."""
    label_image = np.asarray(label_image)
    return {int(value): rle_of_mask(label_image == value) for value in np.unique(label_image) if value != 0}
