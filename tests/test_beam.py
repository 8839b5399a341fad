"""`--runner beam`: conversion and batch prediction as Apache Beam pipelines,
checked against the local paths on Beam's DirectRunner.

The pipelines with two worker processes (multi_processing) are what a
cluster runs: separate interpreters that import the project. They cost
seconds of start-up each, so one conversion and one prediction run that way;
the other tests use DirectRunner's in-process mode (the default), where a
test can make a worker fail."""

import csv
import hashlib
import sys

import numpy as np
import pytest

from data_prep import convert, shard_writer
from protein_location.core import beam_jobs
from protein_location.core.errors import DataPrepError, OutputError
from tests.helpers import last_error_line, run_cli

apache_beam = pytest.importorskip("apache_beam")

TWO_WORKERS = "--direct_running_mode=multi_processing --direct_num_workers=2"


def _sha256_of_every_file(folder):
    return {
        path.relative_to(folder).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def _with_bad_images(synthetic_dir, tmp_path):
    """The synthetic training set with one truncated file and one missing file (the --on-error skip case)."""
    raw = tmp_path / "raw"
    (raw / "train").mkdir(parents=True)
    for path in (synthetic_dir / "train").iterdir():
        (raw / "train" / path.name).symlink_to(path)
    ids = [row["Id"] for row in csv.DictReader((synthetic_dir / "train.csv").open())]
    truncated = raw / "train" / f"{ids[3]}_green.png"
    truncated.unlink()
    truncated.write_bytes((synthetic_dir / "train" / truncated.name).read_bytes()[:70])
    (raw / "train" / f"{ids[17]}_blue.png").unlink()
    (raw / "train.csv").write_bytes((synthetic_dir / "train.csv").read_bytes())
    return raw


def _convert_cli(raw, out, *extra):
    return run_cli(
        "-m",
        "data_prep",
        "convert",
        "--csv",
        raw / "train.csv",
        "--images",
        raw / "train",
        "--out",
        out,
        "--val-fraction",
        0.25,
        "--shards",
        3,
        "--on-error",
        "skip",
        *extra,
    )


@pytest.mark.slow
def test_beam_conversion_on_two_workers_is_byte_identical_to_one_local_worker(synthetic_dir, tmp_path):
    raw = _with_bad_images(synthetic_dir, tmp_path)
    _convert_cli(raw, tmp_path / "local", "--workers", 1)
    result = _convert_cli(raw, tmp_path / "beam", "--runner", "beam", "--beam-options", TWO_WORKERS)
    assert "Apache Beam" in result.stdout
    local, beam = _sha256_of_every_file(tmp_path / "local"), _sha256_of_every_file(tmp_path / "beam")
    assert sorted(local) == [
        "dataset.json",
        "errors.csv",
        *[f"{split}-0000{i}-of-00003.tfrecord" for split in ("train", "val") for i in range(3)],
    ]
    assert beam == local
    # errors.csv gathers what every worker skipped.
    assert len((tmp_path / "beam" / "errors.csv").read_text().splitlines()) == 3


def _convert_on_beam(synthetic_dir, out, **kwargs):
    return convert.convert(
        str(synthetic_dir / "train"),
        str(out),
        csv_path=str(synthetic_dir / "train.csv"),
        val_fraction=0.25,
        num_shards=2,
        runner="beam",
        **kwargs,
    )


def test_resume_on_beam_reuses_the_shards_written_before_a_full_disk(synthetic_dir, tmp_path, monkeypatch):
    reference = convert.convert(
        str(synthetic_dir / "train"),
        str(tmp_path / "local"),
        csv_path=str(synthetic_dir / "train.csv"),
        val_fraction=0.25,
        num_shards=2,
        workers=1,
    )
    write_shard = shard_writer._write_shard
    written = []

    def full_disk_on_val_1(out_dir, shard, options, size, tmp_path_):
        if shard.name == "val-00001-of-00002.tfrecord":
            raise OSError(28, "No space left on device")
        written.append(shard.name)
        return write_shard(out_dir, shard, options, size, tmp_path_)

    monkeypatch.setattr(shard_writer, "_write_shard", full_disk_on_val_1)
    with pytest.raises(OutputError) as error:
        _convert_on_beam(synthetic_dir, tmp_path / "beam")
    assert str(error.value) == (
        f"{tmp_path / 'beam'}/val-00001-of-00002.tfrecord.tmp: cannot write it: no space left on device; "
        f"{convert.RESUME_HINT}"
    )
    assert sorted(written) == [
        "train-00000-of-00002.tfrecord",
        "train-00001-of-00002.tfrecord",
        "val-00000-of-00002.tfrecord",
    ]
    written.clear()
    monkeypatch.setattr(
        shard_writer,
        "_write_shard",
        lambda out_dir, shard, *rest: written.append(shard.name) or write_shard(out_dir, shard, *rest),
    )
    assert _convert_on_beam(synthetic_dir, tmp_path / "beam", resume=True) == reference
    assert written == ["val-00001-of-00002.tfrecord"]
    assert _sha256_of_every_file(tmp_path / "beam") == _sha256_of_every_file(tmp_path / "local")


def test_a_bad_image_on_beam_fails_in_one_line_and_leaves_no_dataset(synthetic_dir, tmp_path):
    raw = _with_bad_images(synthetic_dir, tmp_path)
    ids = [row["Id"] for row in csv.DictReader((raw / "train.csv").open())]
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
        "--shards",
        2,
        "--runner",
        "beam",
        check=False,
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr
    # Which bad Id a runner meets first is its choice; the converter reads the results in plan order.
    assert last_error_line(result) in (
        f"error: Id {ids[3]}: {raw / 'train' / ids[3]}_green.png: truncated or corrupt image (70 bytes)",
        f"error: Id {ids[17]}: {raw / 'train' / ids[17]}_blue.png: missing channel file",
    )
    assert list((tmp_path / "out").iterdir()) == []


def test_runner_beam_without_beam_installed_fails_in_one_line_before_any_work(synthetic_dir, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "apache_beam", None)
    result = run_cli(
        "-m",
        "data_prep",
        "convert",
        "--csv",
        synthetic_dir / "train.csv",
        "--images",
        synthetic_dir / "train",
        "--out",
        tmp_path / "out",
        "--runner",
        "beam",
        check=False,
    )
    assert result.returncode == 1
    assert last_error_line(result) == f"error: {beam_jobs.BEAM_MISSING}"
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "flags, message",
    [
        (("--runner", "beam", "--beam-options=--projet=P"), "--beam-options: Beam does not know --projet"),
        (
            ("--runner", "beam", "--workers", "2"),
            "--workers is for --runner local; on Beam the runner sizes its "
            "workers (DirectRunner: --direct_num_workers in --beam-options)",
        ),
        (("--beam-options=--runner=DataflowRunner",), "--beam-options needs --runner beam"),
    ],
)
def test_beam_flags_that_cannot_work_are_refused_in_one_line(synthetic_dir, tmp_path, flags, message):
    result = run_cli(
        "-m",
        "data_prep",
        "convert",
        "--csv",
        synthetic_dir / "train.csv",
        "--images",
        synthetic_dir / "train",
        "--out",
        tmp_path / "out",
        *flags,
        check=False,
    )
    assert result.returncode == 1 and last_error_line(result) == f"error: {message}"
    assert not (tmp_path / "out").exists()


def test_pipeline_options_default_to_the_direct_runner_and_keep_the_users_runner():
    assert beam_jobs.runner_name(beam_jobs.pipeline_options(None, DataPrepError)) == "DirectRunner"
    options = beam_jobs.pipeline_options(
        "--runner=DataflowRunner --project=P --region=R --temp_location=gs://B/tmp", DataPrepError
    )
    assert beam_jobs.runner_name(options) == "DataflowRunner"
    assert options.get_all_options()["project"] == "P"
    with pytest.raises(DataPrepError, match="No closing quotation"):
        beam_jobs.pipeline_options('--project="P', DataPrepError)


# --- predict --runner beam: RunInference with our ModelHandler, the outputs of local predict ------


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    """A 32 px SE-ResNet exported as `train_keras.py --export` does; spread output biases give varied labels."""
    import numpy as np

    from protein_location import export, models
    from protein_location.core import labels as labels_lib

    model = models.build_seresnet(
        "seresnet18", image_size=32, width=0.125, output_bias=np.linspace(-4.0, 1.0, labels_lib.NUM_CLASSES)
    )
    return export.export_saved_model(
        model, np.full(labels_lib.NUM_CLASSES, 0.3), str(tmp_path_factory.mktemp("beam-export")), labels_lib.CLASS_NAMES
    )


def _predict(saved_model, out, *source, runner="local", beam_options=None, check=True):
    extra = ["--runner", runner] + ([f"--beam-options={beam_options}"] if beam_options else [])
    out.mkdir(exist_ok=True)
    return run_cli(
        "-m",
        "protein_location",
        "predict",
        "--model",
        saved_model,
        *source,
        "--out",
        out / "sub.csv",
        "--probabilities",
        out / "probabilities.csv",
        "--batch-size",
        3,
        *extra,
        check=check,
    )


def _outputs(out):
    return (out / "sub.csv").read_text(), (out / "probabilities.csv").read_text()


@pytest.mark.slow
def test_beam_predict_on_two_workers_writes_the_outputs_of_local_predict(saved_model, synthetic_dir, tmp_path):
    source = ("--images", synthetic_dir / "test", "--csv", synthetic_dir / "sample_submission.csv")
    _predict(saved_model, tmp_path / "local", *source)
    _predict(saved_model, tmp_path / "beam", *source, runner="beam", beam_options=TWO_WORKERS)
    submission, probabilities = _outputs(tmp_path / "beam")
    assert (submission, probabilities) == _outputs(tmp_path / "local")
    assert len(submission.splitlines()) == 1 + 8 and len(probabilities.splitlines()) == 1 + 8


def test_beam_predict_over_records_writes_the_outputs_of_local_predict(saved_model, converted_dir, tmp_path):
    _predict(saved_model, tmp_path / "local", "--records", converted_dir, "--split", "val")
    result = _predict(saved_model, tmp_path / "beam", "--records", converted_dir, "--split", "val", runner="beam")
    assert _outputs(tmp_path / "beam") == _outputs(tmp_path / "local")
    assert f"val records of {converted_dir}, one view each on Apache Beam -> " in result.stdout


def test_beam_predict_names_a_bad_stain_file_in_one_line(saved_model, synthetic_dir, tmp_path):
    images = tmp_path / "test"
    images.mkdir()
    for path in (synthetic_dir / "test").iterdir():
        (images / path.name).symlink_to(path)
    bad = sorted(images.glob("*_yellow.png"))[2]
    bad.unlink()
    bad.write_bytes(b"<html>404</html>")
    image_id = bad.name.removesuffix("_yellow.png")
    local = _predict(saved_model, tmp_path / "local", "--images", images, check=False)
    beam = _predict(saved_model, tmp_path / "beam", "--images", images, runner="beam", check=False)
    assert beam.returncode == local.returncode == 1 and "Traceback" not in beam.stderr
    assert (
        last_error_line(beam)
        == last_error_line(local)
        == (f"error: Id {image_id}: {bad}: not a PNG, JPEG, GIF, BMP, WebP or TIFF image (16 bytes)")
    )
    assert not (tmp_path / "beam" / "sub.csv").exists()


def test_predict_reads_tiff_stains_by_name_or_by_content_locally_and_on_beam(saved_model, synthetic_dir, tmp_path):
    import cv2
    import tifffile

    images = tmp_path / "test"
    images.mkdir()
    for path in (synthetic_dir / "test").iterdir():
        (images / path.name).symlink_to(path)
    ids = sorted({path.name.rsplit("_", 1)[0] for path in images.iterdir()})
    for image_id, channel, name in ((ids[0], "red", f"{ids[0]}_red.tif"), (ids[1], "green", f"{ids[1]}_green.png")):
        png = images / f"{image_id}_{channel}.png"
        plane = cv2.imread(str(png), cv2.IMREAD_UNCHANGED)
        png.unlink()
        tifffile.imwrite(images / name, plane.astype(np.uint16) * 257)  # 16-bit; a TIFF under a .png name too
    _predict(saved_model, tmp_path / "png", "--images", synthetic_dir / "test")
    _predict(saved_model, tmp_path / "tiff", "--images", images)
    _predict(saved_model, tmp_path / "beam", "--images", images, runner="beam")
    assert _outputs(tmp_path / "tiff") == _outputs(tmp_path / "beam") == _outputs(tmp_path / "png")
