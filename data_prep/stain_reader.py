"""Conversion's reader of the four stain files: `core.raw_images.read_image`
with grayscale PNGs (the Kaggle 2018 and HPA 2021 releases) decoded by
OpenCV, 1.6x faster than TensorFlow's decoder on the real Kaggle files
(README, "Benchmarks"). PNG is lossless and the 16-bit rule is the same
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

from protein_location.core import raw_images

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def read_image(images_dir, image_id, size=None, max_pixels=raw_images.DEFAULT_MAX_PIXELS):
    """The four stains of one Id -> uint8 (H, W, 4) RGBY, as `raw_images.read_image`."""
    paths, files = raw_images.read_stain_files(images_dir, image_id)
    image = _decode_grayscale_pngs(files, max_pixels)
    if image is None:
        return raw_images.decode_stain_files(files, paths, image_id, size, max_pixels)
    return image if size is None or image.shape[:2] == (size, size) else raw_images.resize_image(image, size)


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
