"""Raw HPA stain files -> uint8 RGBY images: the reader for conversion,
`predict --images` and `explain`.

Each stain is a file `<Id>_{red,green,blue,yellow}.<ext>` (`.png`, `.jpg`,
`.jpeg`, `.tif`, `.tiff`), decoded by its content whatever the extension,
reduced to 8-bit grayscale by `stains`' rule (colour files to the stain's
colour, 16-bit by round(v / 257)), any size area-resized. All reads go
through tf.io.gfile so `gs://` folders work. The labels CSVs are read by
`labels_csv`.
"""

import io
import posixpath

import cv2
import numpy as np
import PIL.Image
import tensorflow as tf

from protein_location import labels as labels_lib, stains
from protein_location.errors import SourceError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff")
# HPAv18 full-size images are 3072x3072 (9.4 MP); far beyond that is a
# decompression bomb, refused before decoding.
DEFAULT_MAX_PIXELS = 40_000_000

# Bad files are reported by SourceError; OpenCV's own stderr warnings only repeat them.
cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)


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


def decode_channel(data, channel, image_id, path, max_pixels=DEFAULT_MAX_PIXELS):
    """Encoded bytes of one stain -> 2-D uint8 array by `stains`' rule: a colour
    file reduced to the stain's colour, 16-bit scaled to 8 bits."""
    if not data:
        raise SourceError("empty file (0 bytes)", image_id, path)
    try:
        # The header alone (OpenCV decodes): refuse decompression bombs before decoding.
        width, height = PIL.Image.open(io.BytesIO(data)).size
    except PIL.Image.DecompressionBombError:
        raise SourceError(_over_pillow_limit(max_pixels), image_id, path) from None
    except (PIL.UnidentifiedImageError, OSError, ValueError):
        raise SourceError(f"not an image ({len(data)} bytes)", image_id, path) from None
    if width * height > max_pixels:
        raise SourceError(f"{width}x{height} pixels is over the cap of {max_pixels} (--max-pixels)", image_id, path)
    array = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if array is None:
        raise SourceError(f"truncated or corrupt image ({len(data)} bytes)", image_id, path)
    if array.dtype not in (np.uint8, np.uint16):
        raise SourceError(f"unsupported pixel type {array.dtype}", image_id, path)
    if array.ndim == 3 and array.shape[2] >= 3:
        array = array[..., 2::-1]  # OpenCV's BGR(A) -> RGB
    # Reduce first, then scale: only one plane is converted.
    return np.ascontiguousarray(stains.to_8bit(stains.stain_signal(array, channel)))


def _over_pillow_limit(max_pixels):
    """The problem of a header Pillow refused. Its guard stays on for the
    whole process (we never change PIL.Image.MAX_IMAGE_PIXELS): above that it
    warns, above twice that it refuses, before our own cap is checked."""
    limit = 2 * PIL.Image.MAX_IMAGE_PIXELS
    if max_pixels <= limit:
        return f"more than {limit} pixels is over the cap of {max_pixels} (--max-pixels)"
    return (f"more than {limit} pixels is over Pillow's decompression-bomb limit (twice PIL.Image.MAX_IMAGE_PIXELS), "
            f"which --max-pixels {max_pixels} does not raise")


def read_image(images_dir, image_id, size=None, max_pixels=DEFAULT_MAX_PIXELS):
    """The four stains of one Id -> uint8 (H, W, 4) RGBY.

    The four stains must share one shape; with `size` each is then
    area-resized to size x size.
    """
    planes, paths = [], []
    for channel in labels_lib.CHANNELS:
        path = find_channel_file(images_dir, image_id, channel)
        with tf.io.gfile.GFile(path, "rb") as f:
            planes.append(decode_channel(f.read(), channel, image_id, path, max_pixels))
        paths.append(path)
    for plane, path in zip(planes[1:], paths[1:]):
        if plane.shape != planes[0].shape:
            raise SourceError(f"{plane.shape[1]}x{plane.shape[0]} differs from the red channel's "
                              f"{planes[0].shape[1]}x{planes[0].shape[0]}", image_id, path)
    if size is not None and planes[0].shape != (size, size):
        planes = [cv2.resize(plane, (size, size), interpolation=cv2.INTER_AREA) for plane in planes]
    return np.stack(planes, axis=-1)
