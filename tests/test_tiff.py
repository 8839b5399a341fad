"""TIFF stain files, as HPA ships them (16-bit TIFF, the image server's
gzip-compressed .tif.gz): conversion and `predict --images`' pipeline read
them as PNGs of the same pixels, and refuse in one line naming the file a
TIFF that is not one grayscale 8- or 16-bit page."""

import gzip
import importlib.util
import io
import struct
import sys

import cv2
import numpy as np
import pytest

from data_prep import convert, stain_reader
from protein_location.core import labels as labels_lib, raw_images, tiff_stains
from protein_location.core.errors import SourceError
from tests.helpers import last_error_line, run_cli

tifffile = pytest.importorskip("tifffile")

CHANNELS = labels_lib.CHANNELS
SIZE = 16


def _tiff(plane, **options):
    file = io.BytesIO()
    tifffile.imwrite(file, plane, **options)
    return file.getvalue()


def _planes(seed, dtype):
    """Four random SIZE x SIZE stains; 16-bit ones not multiples of 257, with the rounding edges in their first row."""
    rng = np.random.default_rng(seed)
    planes = rng.integers(0, np.iinfo(dtype).max, (4, SIZE, SIZE), endpoint=True).astype(dtype)
    if dtype == np.uint16:
        planes[:, 0, :6] = [0, 128, 129, 385, 386, 65535]  # round(v / 257): 0, 0, 1, 1, 2, 255
    return planes


# Id -> (pixel type, how each stain is stored in the TIFF folder: file extension and bytes). The PNG folder holds
# the same pixels as `<Id>_<stain>.png`.
LAYOUTS = {
    "u8": (np.uint8, lambda channel, plane: (".tif", _tiff(plane))),
    "u16": (np.uint16, lambda channel, plane: (".tiff", _tiff(plane))),
    # The image server's download: a gzip-compressed TIFF (here a big-endian one).
    "gz16": (np.uint16, lambda channel, plane: (".tif.gz", gzip.compress(_tiff(plane, byteorder=">")))),
    # BigTIFF, deflate inside, the extension in capitals.
    "big8": (
        np.uint8,
        lambda channel, plane: (".TIF.GZ", gzip.compress(_tiff(plane, bigtiff=True, compression="zlib"))),
    ),
    # TIFF and PNG stains in one Id.
    "mixed": (
        np.uint16,
        lambda channel, plane: (
            (".tif", _tiff(plane))
            if channel in ("green", "yellow")
            else (".png", cv2.imencode(".png", plane)[1].tobytes())
        ),
    ),
}


def _write(folder, image_id, channel, extension, data):
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{image_id}_{channel}{extension}"
    path.write_bytes(data)
    return path


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """(PNG folder, TIFF folder, {Id: expected uint8 RGBY}): the same pixels in both."""
    root = tmp_path_factory.mktemp("tiff")
    expected = {}
    for seed, (image_id, (dtype, store)) in enumerate(LAYOUTS.items()):
        planes = _planes(seed, dtype)
        for channel, plane in zip(CHANNELS, planes):
            _write(root / "png", image_id, channel, ".png", cv2.imencode(".png", plane)[1].tobytes())
            _write(root / "tiff", image_id, channel, *store(channel, plane))
        scaled = planes if dtype == np.uint8 else (planes.astype(np.uint32) + 128) // 257
        expected[image_id] = np.moveaxis(scaled, 0, -1).astype(np.uint8)
    return root / "png", root / "tiff", expected


def test_tiff_ids_are_listed_and_read_as_their_pixels_by_every_reader(folders):
    png_dir, tiff_dir, expected = folders
    assert raw_images.list_image_ids(str(tiff_dir)) == sorted(LAYOUTS)
    for image_id, image in expected.items():
        for reader in (raw_images.read_image, stain_reader.read_image):  # predict/explain, conversion
            np.testing.assert_array_equal(reader(str(tiff_dir), image_id), image)
            np.testing.assert_array_equal(reader(str(tiff_dir), image_id, 8), reader(str(png_dir), image_id, 8))


def test_tiff_folder_converts_to_the_shards_of_pngs_of_the_same_pixels(folders, tmp_path):
    png_dir, tiff_dir, _ = folders
    convert.convert(str(png_dir), str(tmp_path / "png"), size=8, num_shards=1, workers=1)
    result = run_cli(
        "-m",
        "data_prep",
        "convert",
        "--images",
        tiff_dir,
        "--out",
        tmp_path / "tiff",
        "--size",
        8,
        "--shards",
        1,
        "--workers",
        1,
    )
    assert result.returncode == 0
    shard = "test-00000-of-00001.tfrecord"
    assert (tmp_path / "tiff" / shard).read_bytes() == (tmp_path / "png" / shard).read_bytes()


@pytest.mark.parametrize("size", [SIZE, 8])
def test_predict_pipeline_reads_tiff_ids_as_their_pngs(folders, size):
    """`raw_images.image_dataset`, what `predict --images` streams: the same
    images, in order, every one ok, at the source size and resized."""
    png_dir, tiff_dir, _ = folders
    ids = sorted(LAYOUTS)
    from_png, from_tiff = (
        [(image.numpy(), bool(ok)) for image, ok in raw_images.image_dataset(str(d), ids, size)]
        for d in (png_dir, tiff_dir)
    )
    assert [ok for _, ok in from_tiff] == [True] * len(ids)
    for (png_image, _), (tiff_image, _) in zip(from_png, from_tiff):
        np.testing.assert_array_equal(tiff_image, png_image)


def test_png_is_preferred_and_tiff_names_are_found_in_any_case(tmp_path):
    plane = np.zeros((4, 4), np.uint8)
    for name in ("a_red.tif", "a_red.png", "b_green.TIFF.gz", "c_blue.tif.gz.bak", "d_yellow.gz"):
        (tmp_path / name).write_bytes(b"")
    cv2.imwrite(str(tmp_path / "a_red.png"), plane)
    assert raw_images.find_channel_file(str(tmp_path), "a", "red") == str(tmp_path / "a_red.png")
    assert raw_images.find_channel_file(str(tmp_path), "b", "green") == str(tmp_path / "b_green.TIFF.gz")
    assert raw_images.list_image_ids(str(tmp_path)) == ["a", "b"]


def _tiff_header(width, height):
    """An 8-bit grayscale TIFF whose tags declare width x height pixels, and no pixels."""
    tags = [
        (256, width),
        (257, height),
        (258, 8),
        (259, 1),
        (262, 1),
        (273, 8 + 2 + 9 * 12 + 4),
        (277, 1),
        (278, height),
        (279, width * height),
    ]  # ImageWidth ... StripByteCounts, each one LONG
    ifd = struct.pack("<H", len(tags)) + b"".join(struct.pack("<HHII", tag, 4, 1, v) for tag, v in tags)
    return b"II*\0" + struct.pack("<I", 8) + ifd + struct.pack("<I", 0)


ONE_PAGE = _tiff(np.zeros((20, 20), np.uint8))
BAD_TIFFS = {
    "multi-page": (
        _tiff(np.zeros((3, 20, 20), np.uint8), photometric="minisblack"),
        "a multi-page TIFF (3 pages); stains are one grayscale page each",
    ),
    "colour": (_tiff(np.zeros((20, 20, 3), np.uint8)), "a colour TIFF (3 samples per pixel); stains are grayscale"),
    "float": (_tiff(np.zeros((20, 20), np.float32)), "a TIFF of float32 pixels; stains are 8- or 16-bit"),
    "int32": (_tiff(np.zeros((20, 20), np.int32)), "a TIFF of int32 pixels; stains are 8- or 16-bit"),
    "white is zero": (
        _tiff(np.zeros((20, 20), np.uint8), photometric="miniswhite"),
        "a TIFF of photometric MINISWHITE; stains are grayscale with 0 black (MINISBLACK)",
    ),
    "truncated in its pixels": (ONE_PAGE[:-40], f"truncated or corrupt TIFF ({len(ONE_PAGE) - 40} bytes)"),
    # Cut short in its tags, of which tifffile logs every one it cannot read: not printed, the line says it.
    "truncated in its tags": (ONE_PAGE[:200], "truncated or corrupt TIFF (200 bytes)"),
    "truncated gzip": (
        gzip.compress(ONE_PAGE)[:-6],
        f"truncated or corrupt TIFF ({len(gzip.compress(ONE_PAGE)) - 6} bytes)",
    ),
    # Refused from the tags: decoding them would find no pixels ("truncated or corrupt").
    "over the pixel cap": (_tiff_header(30, 20), "30x20 pixels is over the cap of 590 (--max-pixels)"),
    "a 200-megapixel header, gzipped": (
        gzip.compress(_tiff_header(20_000, 10_000)),
        "20000x10000 pixels is over the cap of 590 (--max-pixels)",
    ),
    # A .tif.gz is decompressed in memory: a gzip bomb is refused at the cap's worth of bytes.
    "gzip bomb": (
        gzip.compress(b"II*\0" + bytes(2 * 590 + tiff_stains.TAG_ROOM)),
        f"over {2 * 590 + tiff_stains.TAG_ROOM} bytes decompressed, more than a 16-bit TIFF within the cap "
        "of 590 pixels (--max-pixels)",
    ),
}


@pytest.mark.parametrize("how", list(BAD_TIFFS))
def test_bad_tiff_is_one_line_naming_the_file_in_every_reader(tmp_path, caplog, how):
    data, problem = BAD_TIFFS[how]
    for channel in CHANNELS:
        cv2.imwrite(str(tmp_path / f"good_{channel}.png"), np.zeros((20, 20), np.uint8))
        cv2.imwrite(str(tmp_path / f"bad_{channel}.png"), np.zeros((20, 20), np.uint8))
    (tmp_path / "bad_green.png").unlink()
    path = _write(tmp_path, "bad", "green", ".tif.gz" if data[:2] == b"\x1f\x8b" else ".tif", data)
    for reader in (stain_reader.read_image, raw_images.read_image):
        with pytest.raises(SourceError) as error:
            reader(str(tmp_path), "bad", max_pixels=590)
        assert str(error.value) == f"Id bad: {path}: {problem}"
    # predict --images: the bad Id is not ok (`read_image` then names it), in its place.
    ok = [bool(ok) for _, ok in raw_images.image_dataset(str(tmp_path), ["good", "bad", "good"], 8, 590)]
    assert ok == [True, False, True]
    assert not [r for r in caplog.records if r.name == "tifffile"]  # the one line, not tifffile's log too


def test_lzw_tiff_reads_with_imagecodecs_and_says_so_without(tmp_path):
    """OpenCV, Fiji and others write LZW TIFF, which tifffile decodes only with imagecodecs."""
    plane = _planes(0, np.uint8)[0]
    for channel in CHANNELS:
        cv2.imwrite(str(tmp_path / f"a_{channel}.tif"), plane)
    if importlib.util.find_spec("imagecodecs"):
        np.testing.assert_array_equal(raw_images.read_image(str(tmp_path), "a"), np.stack([plane] * 4, -1))
    else:
        with pytest.raises(SourceError) as error:
            raw_images.read_image(str(tmp_path), "a")
        assert str(error.value) == (
            f"Id a: {tmp_path / 'a_red.tif'}: a TIFF compressed with LZW, which tifffile "
            "decodes only with imagecodecs: pip install imagecodecs"
        )


def test_without_tifffile_a_tiff_is_one_line_and_pngs_still_convert(folders, tmp_path, monkeypatch):
    png_dir, tiff_dir, _ = folders
    monkeypatch.setitem(sys.modules, "tifffile", None)  # `import tifffile` fails as where it is not installed
    arguments = ("--size", 8, "--shards", 1, "--workers", 1)
    assert (
        run_cli("-m", "data_prep", "convert", "--images", png_dir, "--out", tmp_path / "png", *arguments).returncode
        == 0
    )
    result = run_cli(
        "-m", "data_prep", "convert", "--images", tiff_dir, "--out", tmp_path / "tiff", *arguments, check=False
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert last_error_line(result) == (
        f"error: Id big8: {tiff_dir / 'big8_red.TIF.GZ'}: reading TIFF needs tifffile: "
        "pip install 'protein-location[tiff]'"
    )
