"""Finding and reading the stain files of an Id: `<Id>_{red,green,blue,yellow}.<ext>`
in an images folder (local or gs://, `file_system`), without TensorFlow.
Decoding them is `raw_images`' (and conversion's `data_prep.stain_reader`)."""

import posixpath

from protein_location.core import file_system, labels as labels_lib
from protein_location.core.errors import SourceError

# TensorFlow's decoders read the first six, tifffile the TIFFs (`tiff_stains`); the content, not the name,
# picks one. In this order of preference when an Id has a stain under two names.
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".tif.gz", ".tiff.gz")
TIFF_EXTENSIONS = (".tif", ".tiff", ".tif.gz", ".tiff.gz")
# Longest first: `.tif.gz` is a double extension, which posixpath.splitext would cut at `.gz`.
_EXTENSIONS_LONGEST_FIRST = sorted(IMAGE_EXTENSIONS, key=len, reverse=True)
# HPAv18 full-size images are 3072x3072 (9.4 MP); far beyond that is a
# decompression bomb, refused from the header before decoding.
DEFAULT_MAX_PIXELS = 40_000_000


def check_images_dir(images_dir):
    if not file_system.isdir(images_dir):
        raise SourceError("images folder not found", path=images_dir)


def split_extension(name):
    """(stem, extension) of a file name that ends in one of IMAGE_EXTENSIONS
    in any case (`a_red.TIF.gz` -> `a_red`, `.tif.gz`), else (name, None)."""
    lower = name.lower()
    extension = next((e for e in _EXTENSIONS_LONGEST_FIRST if lower.endswith(e)), None)
    return (name[: -len(extension)], extension) if extension else (name, None)


def list_image_ids(images_dir):
    """Sorted Ids of an image folder, from `<Id>_<channel>.<ext>` file names."""
    check_images_dir(images_dir)
    ids = set()
    for name in file_system.listdir(images_dir):
        stem, extension = split_extension(name)
        image_id, _, channel = stem.rpartition("_")
        if extension and channel in labels_lib.CHANNELS:
            if not labels_lib.is_valid_id(image_id):
                raise SourceError(
                    f"Id {image_id!r} has characters outside [A-Za-z0-9_-]", path=posixpath.join(images_dir, name)
                )
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
        if file_system.exists(path):
            return path
    # An extension in other case (`_red.PNG`, as `list_image_ids` accepts): one listing, only on a miss.
    stem = f"{image_id}_{channel}"
    for name in sorted(file_system.listdir(images_dir)) if file_system.isdir(images_dir) else []:
        base, extension = split_extension(name)
        if base == stem and extension:
            return posixpath.join(images_dir, name)
    expected = posixpath.join(images_dir, f"{image_id}_{channel}.png")
    raise SourceError("missing channel file", image_id, expected)


def read_stain_files(images_dir, image_id):
    """(paths, encoded bytes) of the four stain files of one Id, in RGBY order."""
    paths = [find_channel_file(images_dir, image_id, channel) for channel in labels_lib.CHANNELS]
    files = []
    for path in paths:
        with file_system.open_file(path, "rb") as f:
            files.append(f.read())
    return paths, files
