"""Raw HPA stain files -> uint8 RGBY images: the one reader for conversion,
`predict --images` and `explain`.

Each stain is a file `<Id>_{red,green,blue,yellow}.<ext>` (`.png`, `.jpg`,
`.jpeg`, `.bmp`, `.gif`, `.webp`, `.tif`, `.tiff`, `.tif.gz`, `.tiff.gz`),
decoded by its content whatever the extension, reduced to 8-bit grayscale
and resized by `stains`' decoder and resize: the TensorFlow ops the
SavedModel's `predict_channels` runs, so a record holds the pixels serving
computes from the same files (conversion decodes grayscale PNGs with OpenCV
for speed, `data_prep.stain_reader`: the same pixels). TIFF, which
TensorFlow does not decode, is read by tifffile (`tiff_stains`, grayscale
8- or 16-bit by the same 16-bit rule) and resized by the same op, so a TIFF
gives the record of a PNG of the same pixels; the serving signatures take
no TIFF. All reads go through `file_system` so `gs://` folders work. The
labels CSVs are read by `labels_csv`.
"""

import numpy as np
import tensorflow as tf

from protein_location.core import labels as labels_lib, stains, tiff_stains
from protein_location.core.errors import SourceError
from protein_location.core.pixel_cap import encoded_image_shape

# Finding and reading the files needs no TensorFlow: `stain_files`, which conversion workers use alone.
from protein_location.core.stain_files import (  # noqa: F401
    DEFAULT_MAX_PIXELS,
    IMAGE_EXTENSIONS,
    TIFF_EXTENSIONS,
    check_images_dir,
    find_channel_file,
    list_image_ids,
    read_stain_files,
    split_extension,
)


@tf.function(input_signature=[tf.TensorSpec([None, None, 4], tf.uint8), tf.TensorSpec([], tf.int32)])
def _resize(image, size):
    return tf.cast(stains.resize_rgby(image, size), tf.uint8)


def decode_channel(data, channel, image_id, path, max_pixels=DEFAULT_MAX_PIXELS):
    """Encoded bytes of one stain -> 2-D uint8 array by `stains`' rule: a colour
    file reduced to the stain's colour, 16-bit scaled to 8 bits; a TIFF by
    `tiff_stains`. The header's size is checked against `max_pixels` before
    anything is decoded."""
    if not data:
        raise SourceError("empty file (0 bytes)", image_id, path)
    if tiff_stains.is_tiff(data):
        return tiff_stains.decode_tiff_stain(data, image_id, path, max_pixels)
    encoded = tf.constant(data)
    height, width = (int(v) for v in encoded_image_shape(encoded).numpy())
    if not height or not width:
        raise SourceError(f"not a PNG, JPEG, GIF, BMP, WebP or TIFF image ({len(data)} bytes)", image_id, path)
    if height * width > max_pixels:
        raise SourceError(f"{width}x{height} pixels is over the cap of {max_pixels} (--max-pixels)", image_id, path)
    try:
        plane = stains.decode_stain(encoded, channel).numpy()
    except tf.errors.OpError:
        raise SourceError(f"truncated or corrupt image ({len(data)} bytes)", image_id, path) from None
    if plane.shape != (height, width):
        raise SourceError(f"truncated or corrupt image ({len(data)} bytes)", image_id, path)
    return plane


@tf.function(
    input_signature=[
        tf.TensorSpec([len(labels_lib.CHANNELS)], tf.string),
        tf.TensorSpec([], tf.int64),
        tf.TensorSpec([], tf.int32),
    ]
)
def _read_four(encoded, max_pixels, size):
    """The common case in one call (TensorFlow's per-call cost is about a
    millisecond): the four headers, and when all are within the cap and of
    one shape, the decoded RGBY image, resized to size x size when size > 0
    and it is not that size already. Otherwise an
    empty image; `read_image` then finds the file at fault one by one."""
    shapes = tf.stack([encoded_image_shape(encoded[i]) for i in range(len(labels_lib.CHANNELS))])
    pixels = shapes[:, 0] * shapes[:, 1]
    fine = tf.reduce_all(pixels > 0) & tf.reduce_all(pixels <= max_pixels) & tf.reduce_all(shapes == shapes[0])

    def decode():
        planes = [stains.decode_stain(encoded[i], c) for i, c in enumerate(labels_lib.CHANNELS)]
        return _to_size(tf.stack(planes, axis=-1), size)

    return tf.cond(fine, decode, lambda: tf.zeros([0, 0, len(labels_lib.CHANNELS)], tf.uint8))


def _to_size(image, size):
    """uint8 [H, W, 4] resized to size x size by `stains.resize_rgby` when
    size > 0 and it is not that size already (in a graph)."""
    resized = tf.logical_and(size > 0, tf.reduce_any(tf.shape(image)[:2] != size))
    return tf.cond(resized, lambda: tf.cast(stains.resize_rgby(image, size), tf.uint8), lambda: image)


def _read_four_in_python(encoded, max_pixels, size):
    """`_read_four` for an Id with a TIFF stain, which no TensorFlow op
    decodes: `decode_stain_files` in a py_function, then the same resize in
    the graph. An empty image for files it refuses."""

    def decode(files):
        try:
            return decode_stain_files(list(files.numpy()), [None] * len(labels_lib.CHANNELS), None, None, max_pixels)
        except SourceError:  # `read_image` names the file
            return np.zeros([0, 0, len(labels_lib.CHANNELS)], np.uint8)

    image = tf.ensure_shape(tf.py_function(decode, [encoded], tf.uint8), [None, None, len(labels_lib.CHANNELS)])
    return tf.cond(tf.size(image) > 0, lambda: _to_size(image, size), lambda: image)


def image_dataset(images_dir, ids, size, max_pixels=DEFAULT_MAX_PIXELS):
    """tf.data of (uint8 [size, size, 4] image, ok) for each Id of `ids`, in
    order, read and decoded in parallel (what `predict --images` streams).

    `ok` is False for an Id whose files the fast path refused (a header over
    the cap, stains of different shapes, an empty file): its image is zeros
    and `read_image` on it raises the SourceError naming the file. A file
    that does not decode as its header says raises an OpError when its batch
    is read. An Id with a TIFF stain (by name) is read by the Python reader
    in a py_function, `ok` False for any file it refuses; the others never
    leave the graph.
    """
    paths = [[find_channel_file(images_dir, image_id, channel) for channel in labels_lib.CHANNELS] for image_id in ids]

    def finish(image):
        ok = tf.size(image) > 0
        image = tf.cond(ok, lambda: image, lambda: tf.zeros([size, size, len(labels_lib.CHANNELS)], tf.uint8))
        return tf.ensure_shape(image, [size, size, len(labels_lib.CHANNELS)]), ok

    def read(four_paths):
        return tf.stack([tf.io.read_file(four_paths[i]) for i in range(len(labels_lib.CHANNELS))])

    def dataset(id_paths, decode):
        return tf.data.Dataset.from_tensor_slices(tf.constant(id_paths, tf.string, shape=[len(id_paths), 4])).map(
            lambda four_paths: finish(decode(read(four_paths), max_pixels, size)),
            num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=True,
        )

    # Ids with a TIFF stain (by its name) go through the Python reader, in a
    # pipeline of their own: a py_function in the others' map slows it (4 %).
    # A TIFF under another name is refused by the graph's decoders (`ok`
    # False), and `predict` reads it with `read_image`.
    in_python = [any(split_extension(path)[1] in TIFF_EXTENSIONS for path in four) for four in paths]
    if not any(in_python):
        return dataset(paths, _read_four)
    graph = dataset([p for p, python in zip(paths, in_python) if not python], _read_four)
    python = dataset([p for p, python in zip(paths, in_python) if python], _read_four_in_python)
    return tf.data.Dataset.choose_from_datasets(
        [graph, python], tf.data.Dataset.from_tensor_slices(tf.constant(in_python, tf.int64))
    )


def read_image(images_dir, image_id, size=None, max_pixels=DEFAULT_MAX_PIXELS):
    """The four stains of one Id -> uint8 (H, W, 4) RGBY.

    The four stains must share one shape; with `size` the image is then
    area-resized to size x size by `stains.resize_rgby` (the serving
    signatures' resize).
    """
    paths, files = read_stain_files(images_dir, image_id)
    return decode_stain_files(files, paths, image_id, size, max_pixels)


def decode_stain_files(files, paths, image_id, size=None, max_pixels=DEFAULT_MAX_PIXELS):
    """`read_image` from the files' bytes (`read_stain_files`)."""
    if any(tiff_stains.is_tiff(data) for data in files):
        # tifffile reads TIFF outside TensorFlow's graph: stain by stain, then the same resize.
        return _read_one_by_one(files, paths, image_id, size, max_pixels)
    if all(files):
        try:
            image = _read_four(tf.constant(files), max_pixels, size or 0).numpy()
        except tf.errors.OpError:  # a file that does not decode as its header says: found below
            image = None
        if image is not None and image.size:
            return image
    return _read_one_by_one(files, paths, image_id, size, max_pixels)


def resize_image(image, size):
    """uint8 (H, W, 4) -> uint8 (size, size, 4) by `stains.resize_rgby`."""
    return _resize(image, size).numpy()


def _read_one_by_one(files, paths, image_id, size, max_pixels):
    """`read_image`'s slow path, for an Id one of whose files is bad: decodes
    the stains one by one, raising the SourceError of the first bad file."""
    planes = [
        decode_channel(data, channel, image_id, path, max_pixels)
        for data, channel, path in zip(files, labels_lib.CHANNELS, paths)
    ]
    for plane, path in zip(planes[1:], paths[1:]):
        if plane.shape != planes[0].shape:
            raise SourceError(
                f"{plane.shape[1]}x{plane.shape[0]} differs from the red channel's "
                f"{planes[0].shape[1]}x{planes[0].shape[0]}",
                image_id,
                path,
            )
    image = np.stack(planes, axis=-1)
    if size is not None and image.shape[:2] != (size, size):
        image = resize_image(image, size)
    return image
