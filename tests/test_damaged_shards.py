"""Training and `predict --records` check the shards before reading them
(size and ends against dataset.json), name the shard behind a read error
mid-run, and `convert --resume` rewrites a damaged shard of a finished dataset."""

import re
import shutil
import struct

import numpy as np
import pytest

from protein_location import export, models
from protein_location.core import labels as labels_lib, manifest as manifest_lib
from tests.helpers import last_error_line, run_cli

pytestmark = pytest.mark.slow  # trains or exports

TRAIN = ["--epochs", 1, "--batch-size", 8, "--width", 0.125, "--size", 32]


def _convert_args(synthetic_dir, out, *extra):
    # 96 px records: a shard of several hundred KiB, so a byte in its middle is beyond the ends the check digests.
    return [
        "-m",
        "data_prep",
        "convert",
        "--csv",
        synthetic_dir / "train.csv",
        "--images",
        synthetic_dir / "train",
        "--out",
        out,
        "--size",
        96,
        "--shards",
        1,
        "--val-fraction",
        0.25,
        "--workers",
        1,
        "--seed",
        2,
        *extra,
    ]


@pytest.fixture(scope="module")
def dataset(synthetic_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("shards") / "data"
    run_cli(*_convert_args(synthetic_dir, out))
    return out


@pytest.fixture()
def copy(dataset, tmp_path):
    return shutil.copytree(dataset, tmp_path / "data")


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    model = models.build_seresnet("seresnet18", image_size=32, width=0.125)
    return export.export_saved_model(
        model, np.full(labels_lib.NUM_CLASSES, 0.5), str(tmp_path_factory.mktemp("model")), labels_lib.CLASS_NAMES
    )


def _record_ends(path):
    """Offsets where each TFRecord of a file ends (length, its CRC, data, its CRC)."""
    data, offset, ends = path.read_bytes(), 0, []
    while offset < len(data):
        (length,) = struct.unpack("<Q", data[offset : offset + 8])
        offset += 8 + 4 + length + 4
        ends.append(offset)
    return ends


def _hint(data):
    return (
        f"check every shard with `python -m data_prep verify {data}`, and rewrite the damaged ones with the "
        "`python -m data_prep convert` command that made the dataset plus --resume"
    )


def test_a_flipped_byte_stops_training_in_one_line_naming_the_shard_and_resume_rewrites_it(
    synthetic_dir, copy, tmp_path
):
    shard = copy / "train-00000-of-00001.tfrecord"
    data = bytearray(shard.read_bytes())
    assert len(data) > 4 * manifest_lib.ENDS_BYTES
    data[len(data) // 2] ^= 0x01
    shard.write_bytes(bytes(data))
    result = run_cli("train_keras.py", "--data", copy, "--model-dir", tmp_path / "run", *TRAIN, check=False)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert re.fullmatch(
        rf"error: {shard}: unreadable after [0-9]+ records \(corrupted record at [0-9]+\); "
        rf"{re.escape(_hint(copy))}; then run the same command again",
        last_error_line(result),
    )

    repaired = run_cli(*_convert_args(synthetic_dir, copy, "--resume"))
    assert repaired.stdout.splitlines()[-1] == (
        f"convert: {copy}: rewrote 1 missing or damaged shard(s) "
        "(train-00000-of-00001.tfrecord); every shard matches dataset.json "
        "again"
    )
    assert run_cli("-m", "data_prep", "verify", copy).returncode == 0


def test_a_shard_cut_at_a_record_boundary_is_refused_before_training_and_predict(copy, tmp_path, saved_model):
    shard = copy / "val-00000-of-00001.tfrecord"
    recorded = shard.stat().st_size
    ends = _record_ends(shard)
    shard.write_bytes(shard.read_bytes()[: ends[len(ends) // 2 - 1]])  # half the records, each whole
    expected = (
        f"error: {shard}: {shard.stat().st_size} bytes, dataset.json records {recorded}: truncated or "
        f"replaced; {_hint(copy)}"
    )
    trained = run_cli("train_keras.py", "--data", copy, "--model-dir", tmp_path / "run", *TRAIN, check=False)
    assert (trained.returncode, last_error_line(trained)) == (1, expected)
    assert not (tmp_path / "run").exists()
    predicted = run_cli(
        "-m",
        "protein_location",
        "predict",
        "--model",
        saved_model,
        "--records",
        copy,
        "--split",
        "val",
        "--out",
        tmp_path / "submission.csv",
        check=False,
    )
    assert (predicted.returncode, last_error_line(predicted)) == (1, expected)
    assert not (tmp_path / "submission.csv").exists()


def test_a_deleted_or_replaced_shard_is_refused_in_one_line(copy, dataset, tmp_path):
    shard = copy / "train-00000-of-00001.tfrecord"
    shard.unlink()
    deleted = run_cli("train_keras.py", "--data", copy, "--model-dir", tmp_path / "run", *TRAIN, check=False)
    assert last_error_line(deleted) == f"error: {shard}: missing (listed in dataset.json); {_hint(copy)}"
    # Another shard of the same size (the same records in another order, as another --seed writes them): what a
    # size alone lets through.
    original = (dataset / "train-00000-of-00001.tfrecord").read_bytes()
    ends = _record_ends(dataset / "train-00000-of-00001.tfrecord")
    records = [original[start:end] for start, end in zip([0, *ends[:-1]], ends)]
    shard.write_bytes(b"".join(reversed(records)))
    assert shard.stat().st_size == len(original)
    replaced = run_cli("train_keras.py", "--data", copy, "--model-dir", tmp_path / "run", *TRAIN, check=False)
    assert last_error_line(replaced) == (
        f"error: {shard}: its first and last bytes differ from what dataset.json "
        f"records: replaced or overwritten; {_hint(copy)}"
    )


def test_predict_names_a_shard_that_fails_mid_read(copy, tmp_path, saved_model):
    shard = copy / "val-00000-of-00001.tfrecord"
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0x01
    shard.write_bytes(bytes(data))
    result = run_cli(
        "-m",
        "protein_location",
        "predict",
        "--model",
        saved_model,
        "--records",
        copy,
        "--split",
        "val",
        "--out",
        tmp_path / "submission.csv",
        check=False,
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert re.fullmatch(
        rf"error: {shard}: unreadable after [0-9]+ records \(corrupted record at [0-9]+\); .*", last_error_line(result)
    )
    assert not (tmp_path / "submission.csv").exists()
