"""One writer per folder: a second command refuses in one line naming the
holder, a lock of a dead process is taken over, and a run folder never
holds two runs (run.json), so an export never mixes them."""

import json
import os
import signal
import subprocess
import sys

import keras
import pytest

import train_keras
from protein_location.core import folder_lock, run_state
from protein_location.training import config as config_lib
from tests.helpers import ROOT, last_error_line, run_cli

HOLD = """
import sys, time
from protein_location.core.folder_lock import FolderLock
FolderLock(sys.argv[1], sys.argv[2]).__enter__()
print("locked", flush=True)
time.sleep(600)
"""


@pytest.fixture()
def holder():
    """holder(folder, what) -> a live process of another command holding the lock of `folder`."""
    processes = []

    def hold(folder, what):
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=str(ROOT))
        process = subprocess.Popen(
            [sys.executable, "-c", HOLD, str(folder), what],
            env=env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert process.stdout.readline().strip() == "locked"
        processes.append(process)
        return process

    yield hold
    for process in processes:
        process.kill()
        process.wait()


def _refusal(folder, what, pid):
    host = folder_lock.output_files.host_name()
    return (
        f"error: {folder}: in use by {what} \\(PID {pid} on {host}, since [0-9T:+-]+; lock {folder}/\\.lock\\); "
        "wait for it to finish or stop it, then run this command again"
    )


def test_a_second_training_in_a_locked_model_dir_refuses_naming_the_holder(converted_dir, tmp_path, holder):
    import re

    run = tmp_path / "run"
    training = holder(run, "training")
    result = run_cli("train_keras.py", "--data", converted_dir, "--model-dir", run, "--epochs", 1, check=False)
    assert result.returncode == 1
    assert re.fullmatch(_refusal(run, "training", training.pid), last_error_line(result)), last_error_line(result)
    assert sorted(p.name for p in run.iterdir()) == [".lock"]  # nothing written beside the holder's lock
    export = run_cli("-m", "protein_location", "export", "--model-dir", run, "--out", tmp_path / "export", check=False)
    assert re.fullmatch(_refusal(run, "training", training.pid), last_error_line(export))


def test_two_conversions_into_one_folder_and_a_lock_left_by_a_killed_one(synthetic_dir, tmp_path, holder):
    import re

    out = tmp_path / "data"
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
        1,
        "--workers",
        1,
        "--overwrite",
    ]
    first = holder(out, "conversion")
    refused = run_cli(*args, check=False)
    assert re.fullmatch(_refusal(out, "conversion", first.pid), last_error_line(refused)), last_error_line(refused)
    first.send_signal(signal.SIGKILL)  # killed: its .lock file stays, with its PID in it
    first.wait()
    assert json.loads((out / ".lock").read_text())["pid"] == first.pid
    run_cli(*args)  # the kernel released the dead process's lock: taken over
    assert (out / "dataset.json").exists() and not (out / ".lock").exists()


def _tiny_run_folder(folder, status, settings):
    """A run folder as a run leaves it: model.keras, thresholds.json, run.json (`status`)."""
    folder.mkdir(parents=True)
    inputs = keras.Input((8, 8, 4))
    outputs = keras.layers.Dense(28, activation="sigmoid")(keras.layers.GlobalAveragePooling2D()(inputs))
    keras.Model(inputs, outputs).save(folder / "model.keras")
    (folder / "thresholds.json").write_text(
        json.dumps({"thresholds": [0.5] * 28, "class_names": [str(c) for c in range(28)]})
    )
    run_state.RunState(status, settings).write(str(folder))


def test_a_finished_run_folder_refuses_a_new_training_and_an_unfinished_one_refuses_export(converted_dir, tmp_path):
    args = [
        "train_keras.py",
        "--data",
        converted_dir,
        "--model-dir",
        tmp_path / "run",
        "--epochs",
        1,
        "--batch-size",
        8,
        "--width",
        0.125,
        "--size",
        32,
    ]
    settings = config_lib.run_settings(config_lib.config_from_args(train_keras.parse_args([str(a) for a in args[1:]])))
    _tiny_run_folder(tmp_path / "run", run_state.EVALUATED, {**settings, "--epochs": 3})
    refused = run_cli(*args, check=False)
    assert last_error_line(refused) == (
        f"error: {tmp_path}/run: holds a finished run made with other settings "
        "(--epochs 3 there, 1 here); pass --overwrite to replace it, or pick another "
        "--model-dir"
    )
    assert (tmp_path / "run/model.keras").exists() and not (tmp_path / "run/backup").exists()

    # A training killed in a folder: its run.json says training; the model.keras beside it is not its own.
    _tiny_run_folder(tmp_path / "killed", run_state.TRAINING, settings)
    export = run_cli(
        "-m",
        "protein_location",
        "export",
        "--model-dir",
        tmp_path / "killed",
        "--out",
        tmp_path / "export",
        check=False,
    )
    assert last_error_line(export) == (
        f"error: {tmp_path}/killed: holds an unfinished training (run.json, backup/); "
        "finish it by running its train_keras.py command again, then export"
    )
    assert not (tmp_path / "export").exists()


def test_the_lock_records_its_holder_and_is_reentrant_in_one_process(tmp_path):
    with folder_lock.FolderLock(str(tmp_path), "training"):
        holder = json.loads((tmp_path / ".lock").read_text())
        assert (holder["pid"], holder["host"], holder["command"]) == (
            os.getpid(),
            folder_lock.output_files.host_name(),
            "training",
        )
        with folder_lock.FolderLock(str(tmp_path), "export"):  # the same process: training exports into its folder
            pass
        assert (tmp_path / ".lock").exists()
    assert not (tmp_path / ".lock").exists()
