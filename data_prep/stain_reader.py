"""Conversion's reader of the four stain files: `core.raw_images.read_image`
with grayscale PNGs (the Kaggle 2018 and HPA 2021 releases) decoded by
OpenCV, faster than TensorFlow's decoder on the real Kaggle files
(docs/benchmarks.md has the figure). PNG is lossless and the 16-bit rule is the same
(round(v / 257)), so the pixels are those of the TensorFlow decoder the
SavedModel runs (tests/test_real_samples.py checks it on every real sample);
any other file, and any that OpenCV does not decode to its header's shape,
takes the library's path, which names a bad file: TensorFlow's decoders,
and tifffile for TIFF stains (`.tif`, `.tiff`, `.tif.gz`: `core.tiff_stains`,
the same 16-bit rule and resize, so TIFF and PNG stains of one Id mix).
Here, in the data creation stage, because the library decodes with
TensorFlow and tifffile alone.
"""

import cv2
import numpy as np

from protein_location.core import stain_files, tiff_stains
from protein_location.core.errors import SourceError

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Whole-number ratios up to this are resized here, in numpy, to the values of
# TensorFlow's area kernel (a test compares every block sum for each ratio).
MAX_BLOCK_RATIO = 16


def read_image(images_dir, image_id, size=None, max_pixels=stain_files.DEFAULT_MAX_PIXELS):
    """The four stains of one Id -> uint8 (H, W, 4) RGBY, as `raw_images.read_image`.

    Grayscale PNGs and TIFFs, resized by a whole-number ratio, are read here
    without TensorFlow (a conversion worker that meets only those never
    loads it); anything else, and every file with a problem to name, takes
    `raw_images`' path."""
    paths, files = stain_files.read_stain_files(images_dir, image_id)
    image = _decode_without_tensorflow(files, paths, image_id, max_pixels)
    if image is None:
        from protein_location.core import raw_images  # TensorFlow's decoders: loaded when a file needs them

        return raw_images.decode_stain_files(files, paths, image_id, size, max_pixels)
    return resize_image(image, size)


def resize_image(image, size):
    """uint8 (H, W, 4) -> (size, size, 4) by the project's resize (`stains.resize_rgby`, TensorFlow's area
    kernel); a square image `size` times a whole number of 2-16 is averaged over blocks here instead."""
    if size is None or image.shape[:2] == (size, size):
        return image
    ratio, remainder = divmod(image.shape[0], size)
    if image.shape[0] != image.shape[1] or remainder or not 2 <= ratio <= MAX_BLOCK_RATIO:
        from protein_location.core import raw_images

        return raw_images.resize_image(image, size)
    # TensorFlow's area kernel for a whole ratio k: the sum of each k x k block times the float32 1 / (k * k),
    # rounded half to even (tf.round). The sums are exact in uint16 (at most 16 * 16 * 255 < 2**16), added
    # as k strided rows then k strided columns: 0.9 ms at 512 -> 256, against 1.9 ms for TensorFlow's kernel.
    rows = image[0::ratio].astype(np.uint16)
    for offset in range(1, ratio):
        rows += image[offset::ratio]
    sums = rows[:, 0::ratio].copy()
    for offset in range(1, ratio):
        sums += rows[:, offset::ratio]
    return np.round(sums.astype(np.float32) * (np.float32(1) / (np.float32(ratio) * np.float32(ratio)))).astype(
        np.uint8
    )


def _decode_without_tensorflow(files, paths, image_id, max_pixels):
    """The four stains when each is a grayscale PNG (`_decode_grayscale_pngs`)
    or a TIFF (`tiff_stains`) and all decode, to one shape; None otherwise
    (the library's path then decodes them, or names the bad one in order)."""
    tiffs = [tiff_stains.is_tiff(data) for data in files]  # once each: a .gz is inflated to tell
    if not any(tiffs):
        return _decode_grayscale_pngs(files, max_pixels)
    planes = []
    for data, path, tiff in zip(files, paths, tiffs):
        try:
            plane = (
                tiff_stains.decode_tiff_stain(data, image_id, path, max_pixels)
                if tiff
                else _decode_grayscale_pngs([data], max_pixels)
            )
        except SourceError:
            return None
        if plane is None:
            return None
        planes.append(plane if plane.ndim == 2 else plane[..., 0])
    if len({plane.shape for plane in planes}) != 1:
        return None
    return cv2.merge(planes)


def _grayscale_png_shape(data):
    """(height, width, bit depth) from the IHDR of an 8- or 16-bit grayscale
    PNG (colour type 0), else None."""
    if len(data) < 26 or data[:8] != _PNG_SIGNATURE or data[12:16] != b"IHDR":
        return None
    if data[25] != 0 or data[24] not in (8, 16):
        return None
    return int.from_bytes(data[20:24], "big"), int.from_bytes(data[16:20], "big"), data[24]


def _decode_grayscale_pngs(files, max_pixels):
    """The four stains decoded by OpenCV when all are grayscale PNGs of one
    shape within the cap and all decode to it; None otherwise."""
    shapes = [_grayscale_png_shape(data) for data in files]
    if None in shapes or len(set(shapes)) != 1 or shapes[0][0] * shapes[0][1] > max_pixels:
        return None
    height, width, depth = shapes[0]
    planes = []
    for data in files:
        plane = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
        if plane is None or plane.shape != (height, width) or plane.dtype != (np.uint8 if depth == 8 else np.uint16):
            return None
        # stains' 16-bit rule: round(v / 257), so 65535 -> 255 and v * 257 -> v.
        planes.append(plane if depth == 8 else ((plane.astype(np.uint32) + 128) // 257).astype(np.uint8))
    return cv2.merge(planes)  # interleaves in one pass: 0.05 ms at 512², numpy's strided copies 0.28
