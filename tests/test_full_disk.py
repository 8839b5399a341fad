"""A full disk ends a command in one line naming the path, exit 1, nothing
half-written left, and the same command (convert: with --resume) finishes
once there is space. The disk is a real one: a small tmpfs (skipped where
this process may not mount one)."""

import csv
import re
import subprocess
import types

import numpy as np
import pytest

from protein_location import export, models
from protein_location.core import labels as labels_lib
from protein_location.core.errors import OutputError
from tests.helpers import last_error_line, run_cli

pytestmark = pytest.mark.slow  # trains or exports

RETRY = "free space \\(or fix the folder's permissions\\) and run the same command again"


@pytest.fixture()
def disk(tmp_path):
    """disk.mount(KiB) -> a tmpfs of that size; disk.resize(KiB) grows it (the user frees space)."""
    mounted = []

    def mount(kib):
        path = tmp_path / "disk"
        path.mkdir()
        result = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={kib}k", "tmpfs", str(path)], capture_output=True, text=True
        )
        if result.returncode:
            pytest.skip(f"cannot mount a small tmpfs here ({result.stderr.strip()})")
        mounted.append(path)
        return path

    def resize(kib):
        subprocess.run(["mount", "-o", f"remount,size={kib}k", str(mounted[0])], check=True)

    yield types.SimpleNamespace(mount=mount, resize=resize)
    for path in mounted:
        subprocess.run(["umount", "-l", str(path)], check=False)


def _fill(folder, leave_bytes):
    """Fills the file system of `folder` up to `leave_bytes` free."""
    filler = folder / "filler"
    filler.touch()
    for block in (65536, 4096, 1):
        try:
            with open(filler, "ab", buffering=0) as f:
                while True:
                    f.write(b"\0" * block)
        except OSError:
            pass
    if leave_bytes:
        with open(filler, "r+b") as f:
            f.truncate(max(filler.stat().st_size - leave_bytes, 0))


def _leftovers(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if ".tmp" in p.name)


def test_training_on_a_full_disk_stops_in_one_line_and_resumes_once_there_is_space(converted_dir, disk):
    run = disk.mount(4096) / "run"
    args = [
        "train_keras.py",
        "--data",
        converted_dir,
        "--model-dir",
        run,
        "--epochs",
        2,
        "--batch-size",
        8,
        "--width",
        0.125,
        "--size",
        32,
    ]
    full = run_cli(*args, check=False, isolated=True)  # its own process: a crash at exit would show
    assert full.returncode == 1, full.stderr
    assert re.fullmatch(
        rf"error: {run}/(backup/latest|best)\.weights\.h5: cannot write it: no space left on device \(it needs about "
        rf"[0-9.]+ MiB, [0-9.]+ MiB are free\); {RETRY}",
        last_error_line(full),
    ), last_error_line(full)
    assert "Traceback" not in full.stderr and not _leftovers(run)
    if (run / "history.csv").exists():  # whole: every row parses
        assert all(row["epoch"].isdigit() for row in csv.DictReader((run / "history.csv").open()))

    disk.resize(64 << 10)
    finished = run_cli(*args)
    assert "resume:" in finished.stdout or "Epoch 1/2" in finished.stdout
    assert [int(row["epoch"]) for row in csv.DictReader((run / "history.csv").open())] == [0, 1]
    assert (run / "model.keras").exists() and not _leftovers(run)


def test_predict_on_a_full_disk_leaves_no_partial_file(converted_dir, disk, tmp_path):
    model = models.build_seresnet("seresnet18", image_size=32, width=0.125)
    saved = export.export_saved_model(
        model, np.full(labels_lib.NUM_CLASSES, 0.5), str(tmp_path / "model"), labels_lib.CLASS_NAMES
    )
    out = disk.mount(256)
    _fill(out, 8192)  # two pages: the submission fits, the probabilities (36 rows of 28 classes) do not
    result = run_cli(
        "-m",
        "protein_location",
        "predict",
        "--model",
        saved,
        "--records",
        converted_dir,
        "--split",
        "train",
        "--out",
        out / "submission.csv",
        "--probabilities",
        out / "probabilities.csv",
        check=False,
    )
    assert result.returncode == 1
    assert re.fullmatch(
        rf"error: {out}/probabilities.csv: cannot write it: no space left on device; nothing was left half-written; "
        rf"{RETRY}",
        last_error_line(result),
    ), last_error_line(result)
    assert not (out / "probabilities.csv").exists() and not _leftovers(out)
    _fill(out, 0)
    refused = run_cli(
        "-m",
        "protein_location",
        "predict",
        "--model",
        saved,
        "--records",
        converted_dir,
        "--out",
        out / "again.csv",
        check=False,
    )  # a disk already full: refused before any inference
    assert last_error_line(refused) == f"error: {out}: cannot write in the --out folder: no space left on device"


def test_conversion_on_a_full_disk_keeps_its_shards_and_resumes_once_there_is_space(synthetic_dir, disk):
    out = disk.mount(160) / "data"
    args = [
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
        4,
        "--val-fraction",
        0.25,
        "--workers",
        1,
    ]
    full = run_cli(*args, check=False)
    assert full.returncode == 1
    assert re.fullmatch(
        rf"error: {out}/[a-z]+-0000[0-9]-of-00004\.tfrecord\.tmp: cannot write it: no space left on device; the "
        "finished shards are kept: rerun the same command with --resume to finish the conversion",
        last_error_line(full),
    ), last_error_line(full)
    assert not (out / "dataset.json").exists() and not _leftovers(out)

    disk.resize(4096)
    run_cli(*args, "--resume")
    assert run_cli("-m", "data_prep", "verify", out).returncode == 0


def test_an_export_on_a_full_disk_writes_no_version(disk):
    base = disk.mount(512) / "export"
    model = models.build_seresnet("seresnet18", image_size=32, width=0.125)
    with pytest.raises(OutputError) as error:
        export.export_saved_model(model, np.full(labels_lib.NUM_CLASSES, 0.5), str(base), labels_lib.CLASS_NAMES)
    assert str(error.value) == (
        f"{base}: cannot write the export: no space left on device; no version written; free "
        "space (or fix the folder's permissions) and run the same command again"
    )
    assert sorted(p.name for p in base.iterdir()) == []
