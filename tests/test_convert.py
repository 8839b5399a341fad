import csv
import dataclasses
import inspect
import json
import multiprocessing
import struct
import zlib

import cv2
import numpy as np
import pytest
import tensorflow as tf

from data_prep import convert, verify
from protein_location.core import manifest as manifest_lib, raw_images, records
from protein_location.core.errors import DataPrepError, SourceError
from protein_location.data import input_reader
from tests.helpers import last_error_line, run_cli, write_image_set, write_raw_dataset

KAGGLE_IDS = [
    "00070df0-bbc3-11e8-b2bc-ac1f6b6435d0",
    "000a6c98-bb9b-11e8-b2b9-ac1f6b6435d0",
    "000a9596-bbc4-11e8-b2bc-ac1f6b6435d0",
    "000c99ba-bba4-11e8-b2b9-ac1f6b6435d0",
    "001838f8-bbca-11e8-b2bc-ac1f6b6435d0",
    "001bcdd2-bbb2-11e8-b2ba-ac1f6b6435d0",
]


def _kaggle_like(tmp_path):
    targets = dict(zip(KAGGLE_IDS, ["16 0", "7 1 2 0", "5", "1", "18", "0"]))
    return write_raw_dataset(tmp_path / "raw", targets, size=20)


def _records(path):
    return [records.parse_example(s, 28) for s in tf.data.TFRecordDataset(str(path))]


def _convert_synthetic(synthetic_dir, out, **kwargs):
    # In this process unless a test asks for workers: spawned workers take seconds to start.
    kwargs = {"val_fraction": 0.25, "num_shards": 2, "workers": 1, **kwargs}
    return convert.convert(str(synthetic_dir / "train"), str(out), csv_path=str(synthetic_dir / "train.csv"), **kwargs)


def _shard_bytes(out):
    return {p.name: p.read_bytes() for p in sorted(out.glob("*.tfrecord"))}


def _file_states(out):
    """Every entry of a dataset folder with its bytes and modification time."""
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) if p.is_file() else "dir" for p in sorted(out.iterdir())}


@pytest.fixture
def start_methods(monkeypatch):
    """The start methods of the process pools made while the test runs."""
    methods, get_context = [], multiprocessing.get_context

    def recording_get_context(method=None):
        methods.append(method)
        return get_context(method)

    monkeypatch.setattr(multiprocessing, "get_context", recording_get_context)
    return methods


def test_convert_writes_named_shards_and_manifest(converted_dir):
    manifest = json.loads((converted_dir / "dataset.json").read_text())
    assert sorted(p.name for p in converted_dir.iterdir()) == [
        "dataset.json",
        "train-00000-of-00002.tfrecord",
        "train-00001-of-00002.tfrecord",
        "val-00000-of-00002.tfrecord",
        "val-00001-of-00002.tfrecord",
    ]
    assert manifest["schema_version"] == 1 and manifest["image_size"] == 32 and manifest["image_format"] == "png"
    assert manifest["channels"] == ["red", "green", "blue", "yellow"]
    assert len(manifest["class_names"]) == 28
    train, val = manifest["splits"]["train"]["num_examples"], manifest["splits"]["val"]["num_examples"]
    # Iterative stratification sizes the val split near, not exactly at, 25%.
    assert train + val == 48 and 6 <= val <= 18
    shard = manifest["splits"]["train"]["shards"][0]
    assert shard["sha256"] == manifest_lib.file_sha256(str(converted_dir / shard["file"]))
    assert shard["num_examples"] == len(_records(converted_dir / shard["file"]))
    assert (
        sum(s["label_counts"][0] for s in manifest["splits"]["train"]["shards"])
        == manifest["splits"]["train"]["label_counts"][0]
    )
    assert len(manifest["channel_mean"]) == len(manifest["channel_std"]) == 4


def test_dataset_manifest_reads_and_writes_dataset_json_byte_for_byte(converted_dir, tmp_path):
    manifest = manifest_lib.DatasetManifest.read(str(converted_dir))
    assert manifest.image_size == 32 and manifest.num_classes == 28 and manifest.label_set == "hpa2018"
    assert manifest.num_examples("train") + manifest.num_examples("val") == 48
    assert len(manifest.channel_mean) == 4 and manifest.folds is None and manifest.num_errors == 0
    copy = tmp_path / "copy"
    copy.mkdir()
    dataclasses.replace(manifest, data_dir=str(copy)).write()
    assert (copy / "dataset.json").read_bytes() == (converted_dir / "dataset.json").read_bytes()


def test_dataset_manifest_reads_a_file_written_before_label_sets_and_schema_versions(converted_dir, tmp_path):
    """The back-compatibility of dataset.json lives in DatasetManifest.from_json alone."""
    content = json.loads((converted_dir / "dataset.json").read_text())
    for key in ("schema_version", "label_set", "class_names", "channels", "image_format", "num_errors"):
        del content[key]
    old = manifest_lib.DatasetManifest.from_json(str(converted_dir), content)
    assert (old.schema_version, old.label_set, old.image_format) == (1, "hpa2018", "png")
    assert old.class_names == manifest_lib.DatasetManifest.read(str(converted_dir)).class_names
    del content["image_size"]
    with pytest.raises(manifest_lib.ManifestError) as error:
        manifest_lib.DatasetManifest.from_json(str(converted_dir), content)
    assert str(error.value) == f"{converted_dir / 'dataset.json'}: no image_size (the side its records are stored at)"


def test_convert_reads_kaggle_ids_and_targets(tmp_path):
    raw = _kaggle_like(tmp_path)
    convert.convert(
        str(raw / "train"), str(tmp_path / "out"), csv_path=str(raw / "train.csv"), val_fraction=0, num_shards=1
    )
    examples = {e["source_id"].numpy().decode(): e for e in _records(tmp_path / "out/train-00000-of-00001.tfrecord")}
    assert sorted(examples) == sorted(KAGGLE_IDS)
    assert examples[KAGGLE_IDS[1]]["label_indices"].numpy().tolist() == [0, 1, 2, 7]
    # Pixels arrive unchanged, in RGBY order.
    red = cv2.imread(str(raw / "train" / f"{KAGGLE_IDS[0]}_red.png"), cv2.IMREAD_UNCHANGED)
    yellow = cv2.imread(str(raw / "train" / f"{KAGGLE_IDS[0]}_yellow.png"), cv2.IMREAD_UNCHANGED)
    image = examples[KAGGLE_IDS[0]]["image"].numpy()
    np.testing.assert_array_equal(image[..., 0], red)
    np.testing.assert_array_equal(image[..., 3], yellow)


@pytest.mark.slow
def test_same_input_and_seed_give_byte_identical_shards_whatever_the_workers(
    synthetic_dir, tmp_path, start_methods, capfd
):
    one = _shard_bytes(_convert_synthetic(synthetic_dir, tmp_path / "a", workers=1) and tmp_path / "a")
    capfd.readouterr()
    two = _shard_bytes(_convert_synthetic(synthetic_dir, tmp_path / "b", workers=2) and tmp_path / "b")
    three = _shard_bytes(_convert_synthetic(synthetic_dir, tmp_path / "c", workers=3) and tmp_path / "c")
    assert one == two == three
    assert start_methods == ["spawn", "spawn"]  # fresh processes (their hash seeds differ), never forks
    # TensorFlow's start-up lines (no log level silences them) are not repeated by every worker.
    assert capfd.readouterr().err == ""
    assert (tmp_path / "a/dataset.json").read_text().replace("/a", "") == (
        tmp_path / "b/dataset.json"
    ).read_text().replace("/b", "")
    _convert_synthetic(synthetic_dir, tmp_path / "d", seed=1)
    assert _shard_bytes(tmp_path / "d") != one


def test_shards_are_sized_by_content_unless_counted(synthetic_dir, tmp_path):
    # 32 px examples are about 3 KB: 0.01 MB shards hold about 3 each.
    small = _convert_synthetic(synthetic_dir, tmp_path / "small", num_shards=None, shard_mb=0.01)
    assert len(small["splits"]["train"]["shards"]) >= 8
    default = _convert_synthetic(synthetic_dir, tmp_path / "default", num_shards=None)
    assert [len(s["shards"]) for s in default["splits"].values()] == [1, 1]


def test_folds_are_written_to_the_manifest_and_shards(synthetic_dir, tmp_path):
    manifest = _convert_synthetic(synthetic_dir, tmp_path / "folds", folds=3, num_shards=1)
    assert manifest["folds"] == 3 and list(manifest["splits"]) == ["train"]
    shards = manifest["splits"]["train"]["shards"]
    assert sorted(s["fold"] for s in shards) == [0, 1, 2]
    assert sum(s["num_examples"] for s in shards) == 48
    assert all(10 <= s["num_examples"] <= 22 for s in shards)


def test_folder_without_csv_becomes_an_unlabeled_test_split(synthetic_dir, tmp_path):
    manifest = convert.convert(str(synthetic_dir / "test"), str(tmp_path / "test"), num_shards=1)
    assert list(manifest["splits"]) == ["test"]
    examples = _records(tmp_path / "test" / "test-00000-of-00001.tfrecord")
    assert len(examples) == 8
    assert all(e["label_indices"].numpy().size == 0 for e in examples)


def test_16_bit_jpeg_bmp_and_other_sizes_are_scaled_to_8_bit_and_size(tmp_path):
    write_image_set(tmp_path / "img", "a16", size=40, dtype=np.uint16)
    write_image_set(tmp_path / "img", "b_jpg", size=24, ext=".jpg")
    write_image_set(tmp_path / "img", "10580_1610_C1_1", size=32, ext=".bmp")
    (tmp_path / "labels.csv").write_text("Id,Target\na16,1\nb_jpg,2 3\n10580_1610_C1_1,27\n")
    manifest = convert.convert(
        str(tmp_path / "img"),
        str(tmp_path / "out"),
        csv_path=str(tmp_path / "labels.csv"),
        size=16,
        val_fraction=0,
        num_shards=1,
    )
    assert manifest["image_size"] == 16
    images = [e["image"].numpy() for e in _records(tmp_path / "out/train-00000-of-00001.tfrecord")]
    assert len(images) == 3
    assert all(image.shape == (16, 16, 4) and image.dtype == np.uint8 for image in images)
    assert max(image.max() for image in images) > 128  # 16-bit range mapped onto 0-255


def test_gfile_output_is_verified_and_read_by_the_training_pipeline(synthetic_dir):
    out = "ram://datasets/tiny"
    _convert_synthetic(synthetic_dir, out)
    checked = verify.verify_dataset(out)
    assert sorted(checked) == ["train", "val"] and sum(checked.values()) == 48
    images, labels = next(iter(input_reader.make_dataset(out, "train", 4, training=True)))
    assert images.shape == (4, 32, 32, 4) and labels.shape == (4, 28)


@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_verify_names_a_damaged_shard(synthetic_dir, tmp_path, damage):
    out = tmp_path / "data"
    _convert_synthetic(synthetic_dir, out)
    shard = out / "val-00001-of-00002.tfrecord"
    data = bytearray(shard.read_bytes())
    recorded = len(data)
    if damage == "flip":
        data[len(data) // 2] ^= 0xFF
    else:
        del data[len(data) // 2 :]
    shard.write_bytes(bytes(data))
    with pytest.raises(verify.VerifyError) as error:
        verify.verify_dataset(str(out))
    if damage == "flip":
        assert str(error.value) == f"{shard}: sha256 differs from dataset.json"
    else:
        assert str(error.value) == f"{shard}: {len(data)} bytes, dataset.json records {recorded}: truncated or replaced"


# ------------------------------------------------------------ bad input


@pytest.mark.parametrize(
    "csv_text, message",
    [
        (
            "Image,Label\na,1\n",
            "{csv}: expected columns Id,Target (hpa2018) or ID,Label (hpa2021), found 'Image,Label'",
        ),
        ("", "{csv}: empty CSV, expected columns Id,Target (hpa2018) or ID,Label (hpa2021)"),
        ("ID,Label\n", "{csv}: no rows below the ID,Label header"),
        ("ID,Label\nok1,1|19\n", "Id ok1: {csv} line 2: label 19 is outside 0-18 (hpa2021)"),
        ("Id,Target\n", "{csv}: no rows below the Id,Target header"),
        ("Id,Target\nok1,1\nok2,28\n", "Id ok2: {csv} line 3: label 28 is outside 0-27 (hpa2018)"),
        ("Id,Target\nok1,1\nok2,two\n", "Id ok2: {csv} line 3: label 'two' is not an integer in 0-27 (hpa2018)"),
        ("Id,Target\nok1,1\nok1,2\n", "Id ok1: {csv} line 3: duplicate Id"),
        ("Id,Target\n../../x,1\n", "{csv} line 2: Id '../../x' has characters outside [A-Za-z0-9_-]"),
        ("Id,Target\nok1,\n", "Id ok1: {csv} line 2: empty Target '' (hpa2018)"),
    ],
)
def test_bad_csv_gets_one_line_naming_file_and_row(tmp_path, csv_text, message):
    write_image_set(tmp_path / "img", "ok1")
    write_image_set(tmp_path / "img", "ok2")
    csv_path = tmp_path / "labels.csv"
    csv_path.write_text(csv_text)
    with pytest.raises(SourceError) as error:
        convert.convert(str(tmp_path / "img"), str(tmp_path / "out"), csv_path=str(csv_path), val_fraction=0)
    assert str(error.value) == message.format(csv=csv_path)
    assert not (tmp_path / "out").exists()


def _break(folder, image_id, how):
    """Damages one channel file of `image_id` in one of the ways real downloads do."""
    path = folder / f"{image_id}_green.png"
    if how == "missing":
        path.unlink()
    elif how == "zero-byte":
        path.write_bytes(b"")
    elif how == "truncated":
        path.write_bytes(path.read_bytes()[:60])
    elif how == "not an image":
        path.write_bytes(b"<html>404 Not Found</html>")
    elif how == "colour TIFF":
        # TIFF content under the .png name: read by content, as the TIFF it is, and refused as colour
        # (a grayscale one reads: tests/test_tiff.py).
        path.write_bytes(cv2.imencode(".tiff", np.zeros((20, 20, 3), np.uint8))[1].tobytes())
    elif how == "other size":
        cv2.imwrite(str(path), np.zeros((24, 24), np.uint8))
    elif how == "over the pixel cap":
        cv2.imwrite(str(path), np.zeros((20, 30), np.uint8))  # 600 pixels, over the test's cap of 590
    elif how == "a 200-megapixel header":
        path.write_bytes(_png_header(20_000, 10_000))
    return path


def _png_header(width, height):
    """A PNG whose header declares width x height 8-bit gray pixels, and no pixels."""

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", b"") + chunk(b"IEND", b"")


BAD_FILES = {
    "missing": "missing channel file",
    "zero-byte": "empty file (0 bytes)",
    "truncated": "truncated or corrupt image (60 bytes)",
    "not an image": "not a PNG, JPEG, GIF, BMP, WebP or TIFF image (26 bytes)",
    "colour TIFF": "a colour TIFF (3 samples per pixel); stains are grayscale",
    "other size": "24x24 differs from the red channel's 20x20",
    "over the pixel cap": "30x20 pixels is over the cap of 590 (--max-pixels)",
    # Refused from the header, before anything is decoded or allocated.
    "a 200-megapixel header": "20000x10000 pixels is over the cap of 590 (--max-pixels)",
}


@pytest.mark.parametrize("how", list(BAD_FILES))
def test_bad_image_fails_with_id_file_and_problem_and_leaves_no_dataset(tmp_path, how):
    raw = _kaggle_like(tmp_path)
    path = _break(raw / "train", KAGGLE_IDS[3], how)
    with pytest.raises(SourceError) as error:
        convert.convert(
            str(raw / "train"),
            str(tmp_path / "out"),
            csv_path=str(raw / "train.csv"),
            val_fraction=0,
            num_shards=2,
            workers=1,
            max_pixels=590,
        )
    assert str(error.value) == f"Id {KAGGLE_IDS[3]}: {path}: {BAD_FILES[how]}"
    assert list((tmp_path / "out").iterdir()) == []


@pytest.mark.slow
def test_a_bad_image_stops_spawned_workers_and_leaves_no_dataset(tmp_path, start_methods):
    raw = _kaggle_like(tmp_path)
    path = _break(raw / "train", KAGGLE_IDS[3], "truncated")
    with pytest.raises(SourceError) as error:
        convert.convert(
            str(raw / "train"),
            str(tmp_path / "out"),
            csv_path=str(raw / "train.csv"),
            val_fraction=0,
            num_shards=3,
            workers=2,
        )
    assert start_methods == ["spawn"]
    assert str(error.value) == f"Id {KAGGLE_IDS[3]}: {path}: truncated or corrupt image (60 bytes)"
    assert list((tmp_path / "out").iterdir()) == []


def test_cli_refuses_a_200_megapixel_header_in_one_line_at_the_default_cap(tmp_path):
    raw = _kaggle_like(tmp_path)
    path = _break(raw / "train", KAGGLE_IDS[3], "a 200-megapixel header")
    result = run_cli(
        "-m",
        "data_prep",
        "convert",
        "--csv",
        raw / "train.csv",
        "--images",
        raw / "train",
        "--out",
        tmp_path / "out",
        "--val-fraction",
        0,
        "--shards",
        1,
        "--workers",
        1,
        check=False,
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert last_error_line(result) == (
        f"error: Id {KAGGLE_IDS[3]}: {path}: 20000x10000 pixels is over the cap of 40000000 (--max-pixels)"
    )


def test_skip_leaves_bad_examples_out_and_lists_them(tmp_path):
    raw = _kaggle_like(tmp_path)
    _break(raw / "train", KAGGLE_IDS[1], "truncated")
    _break(raw / "train", KAGGLE_IDS[4], "missing")
    (raw / "train.csv").write_text((raw / "train.csv").read_text() + "bad_label,29\n")
    manifest = convert.convert(
        str(raw / "train"),
        str(tmp_path / "out"),
        csv_path=str(raw / "train.csv"),
        val_fraction=0,
        num_shards=2,
        workers=1,
        on_error="skip",
    )
    assert manifest["splits"]["train"]["num_examples"] == 4 and manifest["num_errors"] == 3
    kept = [
        e["source_id"].numpy().decode()
        for s in manifest["splits"]["train"]["shards"]
        for e in _records(tmp_path / "out" / s["file"])
    ]
    assert sorted(kept) == sorted(KAGGLE_IDS[i] for i in (0, 2, 3, 5))
    rows = list(csv.DictReader((tmp_path / "out/errors.csv").open()))
    assert {row["Id"]: row["problem"] for row in rows} == {
        "bad_label": "label 29 is outside 0-27 (hpa2018)",
        KAGGLE_IDS[1]: "truncated or corrupt image (60 bytes)",
        KAGGLE_IDS[4]: "missing channel file",
    }
    assert verify.verify_dataset(str(tmp_path / "out")) == {"train": 4}


def test_existing_dataset_is_kept_unless_overwrite(synthetic_dir, tmp_path):
    out = tmp_path / "data"
    _convert_synthetic(synthetic_dir, out)
    before = _shard_bytes(out)
    with pytest.raises(SourceError) as error:
        _convert_synthetic(synthetic_dir, out, seed=5)
    assert str(error.value) == f"{out}: already holds a finished dataset (dataset.json); pass --overwrite to replace it"
    assert _shard_bytes(out) == before
    _convert_synthetic(synthetic_dir, out, seed=5, overwrite=True)
    assert _shard_bytes(out) != before


def test_missing_images_folder(tmp_path):
    with pytest.raises(SourceError) as error:
        convert.convert(str(tmp_path / "nowhere"), str(tmp_path / "out"))
    assert str(error.value) == f"{tmp_path / 'nowhere'}: images folder not found"


def test_convert_flags_are_generated_from_the_arguments_of_convert_with_its_defaults():
    """ConvertRequest's fields are convert()'s parameters, in name and default, and
    `data_prep convert`'s flags are generated from them: the CLI restates nothing."""
    from data_prep.__main__ import _parser
    from data_prep.convert_request import ConvertRequest

    parameters = inspect.signature(convert.convert).parameters
    fields = {field.name: field for field in dataclasses.fields(ConvertRequest)}
    assert set(fields) == set(parameters)
    for name, parameter in parameters.items():
        default = fields[name].default
        assert default == (dataclasses.MISSING if parameter.default is inspect.Parameter.empty else parameter.default)
    args = _parser().parse_args(["convert", "--images", "x", "--out", "y", "--shards", "3"])
    assert (args.images_dir, args.out_dir, args.num_shards) == (["x"], "y", 3)
    assert args.max_pixels == raw_images.DEFAULT_MAX_PIXELS and args.image_format == records.DEFAULT_IMAGE_FORMAT
    assert tuple(fields["image_format"].metadata["argparse"]["choices"]) == records.IMAGE_FORMATS


@pytest.mark.parametrize("image_format, compression, schema_version", [("raw", 0, 2), ("png", 1, 1)])
def test_each_image_format_stores_the_same_pixels(
    synthetic_dir, converted_dir, tmp_path, image_format, compression, schema_version
):
    """raw and compressed png: the same records as the default (png level 0)
    but for the encoding, so training reads the same pixels from any of them."""
    out = tmp_path / "data"
    manifest = _convert_synthetic(synthetic_dir, out, image_format=image_format, png_compression=compression)
    assert manifest["image_format"] == image_format and manifest["schema_version"] == schema_version
    for shard in ("train-00000-of-00002.tfrecord", "val-00001-of-00002.tfrecord"):
        stored = [(r["source_id"].numpy(), r["image"].numpy()) for r in _records(out / shard)]
        reference = [(r["source_id"].numpy(), r["image"].numpy()) for r in _records(converted_dir / shard)]
        assert [i for i, _ in stored] == [i for i, _ in reference]
        for (_, image), (_, expected) in zip(stored, reference):
            np.testing.assert_array_equal(image, expected)
    formats = {
        tf.train.Example.FromString(r.numpy()).features.feature[records.KEY_FORMAT].bytes_list.value[0]
        for r in tf.data.TFRecordDataset(str(out / "train-00000-of-00002.tfrecord"))
    }
    assert formats == {image_format.encode()}
    verify.verify_dataset(str(out))
    batches = [
        next(iter(input_reader.make_dataset(str(d), "val", 4, image_size=16, training=False)))
        for d in (out, converted_dir)
    ]
    np.testing.assert_array_equal(batches[0][0], batches[1][0])  # the pipeline training reads


def test_png_compression_needs_the_png_format(synthetic_dir, tmp_path):
    with pytest.raises(DataPrepError) as error:
        _convert_synthetic(synthetic_dir, tmp_path / "data", image_format="raw", png_compression=1)
    assert str(error.value) == "--png-compression 1 needs --image-format png (raw records are not compressed)"


# ------------------------------------------------------------ resume through the CLI


def _cli_convert(synthetic_dir, out, *extra):
    return run_cli(
        "-m",
        "data_prep",
        "convert",
        "--csv",
        synthetic_dir / "train.csv",
        "--images",
        synthetic_dir / "train",
        "--out",
        out,
        "--shards",
        2,
        "--val-fraction",
        0.25,
        "--workers",
        1,
        *extra,
        check=False,
    )


@pytest.fixture(scope="module")
def cli_dataset(synthetic_dir, tmp_path_factory):
    """The tiny synthetic dataset converted by the CLI (the resume tests only read it)."""
    out = tmp_path_factory.mktemp("cli") / "data"
    result = _cli_convert(synthetic_dir, out)
    assert result.returncode == 0, result.stderr
    return out


def test_resume_of_a_finished_dataset_does_nothing_and_says_so(synthetic_dir, cli_dataset):
    before = _file_states(cli_dataset)
    result = _cli_convert(synthetic_dir, cli_dataset, "--resume")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        f"convert: {cli_dataset}: already complete (dataset.json, every shard's sha256 matches); nothing to do"
    ]
    assert _file_states(cli_dataset) == before


def test_resume_of_a_finished_dataset_with_other_arguments_is_refused(synthetic_dir, cli_dataset):
    before = _file_states(cli_dataset)
    result = _cli_convert(synthetic_dir, cli_dataset, "--resume", "--seed", 1)
    assert result.returncode == 1
    assert last_error_line(result) == (
        f"error: {cli_dataset}: holds a finished dataset (dataset.json) that was made "
        "with different arguments or inputs; pass --overwrite to replace it"
    )
    assert _file_states(cli_dataset) == before


def test_resume_refuses_a_finished_dataset_that_does_not_record_its_arguments(synthetic_dir, tmp_path):
    out = tmp_path / "data"
    _convert_synthetic(synthetic_dir, out)
    manifest = json.loads((out / "dataset.json").read_text())
    del manifest["fingerprint"]  # as written before dataset.json recorded it
    (out / "dataset.json").write_text(json.dumps(manifest))
    with pytest.raises(SourceError) as error:
        _convert_synthetic(synthetic_dir, out, resume=True)
    assert str(error.value) == (
        f"{out}: holds a finished dataset (dataset.json) that does not record the arguments "
        "that made it; pass --overwrite to replace it"
    )
