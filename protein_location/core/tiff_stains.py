"""TIFF stain files -> 8-bit grayscale planes, read with tifffile: HPA's own
downloads are grayscale TIFF (the HPA 2021 release's 16-bit training
images, the image server's gzip-compressed `.tif.gz`), and TensorFlow has no
TIFF decoder.

The one TIFF reader of the project: `raw_images` calls it for conversion,
`predict --images` and `explain`. A file is a TIFF by its content (`II*\\0`,
`MM\\0*`, BigTIFF `II+\\0`, `MM\\0+`), plain or gzip-compressed, whatever its
name. A stain is one grayscale page of 8- or 16-bit pixels; 16 bits are
scaled by `stains`' rule, round(v / 257), so a TIFF gives the pixels of a PNG
of the same values. Anything else (several pages, colour, other pixel types)
is refused in one line naming the file, and the page's size is checked
against the pixel cap before its pixels are decoded. tifffile is imported
when a TIFF is met: the rest of the project runs without it. The serving
signatures decode with TensorFlow ops alone and take no TIFF.
"""

import gzip
import io
import logging
import threading
import zlib

import numpy as np

from protein_location.core.errors import SourceError

# Little- and big-endian TIFF (42), then BigTIFF (43: 64-bit offsets).
TIFF_SIGNATURES = (b"II*\0", b"MM\0*", b"II+\0", b"MM\0+")
GZIP_SIGNATURE = b"\x1f\x8b"
INSTALL_HINT = "reading TIFF needs tifffile: pip install 'protein-location[tiff]'"
# A .tif.gz is decompressed in memory: beyond two bytes a pixel of the cap (an
# uncompressed 16-bit TIFF) and this much room for its tags, it is a gzip bomb.
TAG_ROOM = 1 << 20
_BLACK_IS_ZERO = 1  # PhotometricInterpretation MINISBLACK, the grayscale of microscopy and PNG

# Set while this module reads a file: tifffile logs what it finds wrong with
# damaged bytes, which reach the user as the one SourceError line instead.
_reading = threading.local()


class _QuietWhileReading(logging.Filter):
    def filter(self, record):
        return not getattr(_reading, "active", False)


_QUIET = _QuietWhileReading()


def is_tiff(data):
    """True for the bytes of a TIFF, plain or gzip-compressed."""
    if data[:4] in TIFF_SIGNATURES:
        return True
    if data[:2] != GZIP_SIGNATURE:
        return False
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(data)) as file:
            return file.read(4) in TIFF_SIGNATURES
    except (OSError, EOFError, zlib.error):
        return False


def decode_tiff_stain(data, image_id, path, max_pixels):
    """The bytes of a TIFF stain (`is_tiff`) -> 2-D uint8 array. Raises the
    SourceError naming the file for a TIFF that is not one grayscale 8- or
    16-bit page within `max_pixels` pixels, or that does not decode."""
    tifffile = _import_tifffile(image_id, path)
    size = len(data)
    if data[:2] == GZIP_SIGNATURE:
        data = _gunzip(data, image_id, path, max_pixels)
    _reading.active = True
    try:
        with tifffile.TiffFile(io.BytesIO(data)) as tiff:
            page = tiff.pages[0]
            _check_page(tifffile, page, len(tiff.pages), image_id, path, max_pixels)
            plane = page.asarray()
    except (SourceError, MemoryError):
        raise
    except Exception:  # tifffile's many errors on damaged bytes: TiffFileError, struct.error, IndexError, ...
        raise _corrupt(size, image_id, path) from None
    finally:
        _reading.active = False
    if plane.shape != page.shape:
        raise _corrupt(size, image_id, path)
    # stains' 16-bit rule: round(v / 257), so 65535 -> 255 and v * 257 -> v.
    return plane if plane.dtype == np.uint8 else ((plane.astype(np.uint32) + 128) // 257).astype(np.uint8)


def _import_tifffile(image_id, path):
    try:
        import tifffile
    except ImportError:
        raise SourceError(INSTALL_HINT, image_id, path) from None
    logging.getLogger("tifffile").addFilter(_QUIET)  # once: a filter already there is not added again
    return tifffile


def _corrupt(size, image_id, path):
    return SourceError(f"truncated or corrupt TIFF ({size} bytes)", image_id, path)


def _gunzip(data, image_id, path, max_pixels):
    limit = 2 * max_pixels + TAG_ROOM
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(data)) as file:
            tiff = file.read(limit + 1)  # to the end of the stream, checking its CRC, unless it is over the limit
    except (OSError, EOFError, zlib.error):
        raise _corrupt(len(data), image_id, path) from None
    if len(tiff) > limit:
        raise SourceError(
            f"over {limit} bytes decompressed, more than a 16-bit TIFF within the cap of {max_pixels} "
            "pixels (--max-pixels)",
            image_id,
            path,
        )
    return tiff


def _check_page(tifffile, page, num_pages, image_id, path, max_pixels):
    """Refuses, from the tags alone, a TIFF that is not one grayscale 8- or
    16-bit page within the cap, or whose compression tifffile cannot decode."""
    problem = None
    if num_pages > 1:
        problem = f"a multi-page TIFF ({num_pages} pages); stains are one grayscale page each"
    elif page.samplesperpixel > 1:
        problem = f"a colour TIFF ({page.samplesperpixel} samples per pixel); stains are grayscale"
    elif page.photometric != _BLACK_IS_ZERO:
        problem = f"a TIFF of photometric {_name(page.photometric)}; stains are grayscale with 0 black (MINISBLACK)"
    elif page.dtype not in (np.uint8, np.uint16) or page.bitspersample not in (8, 16):
        # A dtype of None: bits tifffile does not unpack. (None == np.dtype("float64") is True: `is` it.)
        known = page.dtype is not None and page.dtype not in (np.uint8, np.uint16)
        pixels = page.dtype.name if known else f"{page.bitspersample}-bit"
        problem = f"a TIFF of {pixels} pixels; stains are 8- or 16-bit"
    elif len(page.shape) != 2:
        problem = f"a TIFF volume of {page.imagedepth} slices; stains are one grayscale page each"
    elif page.shape[0] * page.shape[1] > max_pixels:
        problem = f"{page.shape[1]}x{page.shape[0]} pixels is over the cap of {max_pixels} (--max-pixels)"
    else:
        try:
            tifffile.TIFF.DECOMPRESSORS[page.compression]
        except KeyError as error:
            needs_codecs = "imagecodecs" in str(error)
            problem = f"a TIFF compressed with {_name(page.compression)}, which tifffile " + (
                "decodes only with imagecodecs: pip install imagecodecs" if needs_codecs else "does not decode"
            )
    if problem:
        raise SourceError(problem, image_id, path)


def _name(tag_value):
    """An enumerated tag's name (LZW, MINISWHITE), or its number when tifffile does not know it."""
    return getattr(tag_value, "name", tag_value)
