"""What the tests share: running the command-line tools as a user does, and
tiny raw datasets on disk. Fixtures live in conftest.py; import these."""

import contextlib
import importlib
import io
import os
import pathlib
import subprocess
import sys

import cv2
import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# The command-line tools that run in this process unless a test asks for a
# fresh one: argv[0] as a user types it -> the module whose main(argv) it runs.
IN_PROCESS = {
    ("train_keras.py",): "train_keras",
    ("-m", "data_prep"): "data_prep.__main__",
    ("-m", "protein_location"): "protein_location.__main__",
}
# Flags whose set-up lasts a whole process (logical CPU devices, collectives).
NEEDS_OWN_PROCESS = {"--replicas", "multiworker", "mirrored"}


class Result:
    """What a command gave: returncode, stdout, stderr (as subprocess.CompletedProcess)."""

    def __init__(self, args, returncode, stdout, stderr):
        self.args, self.returncode, self.stdout, self.stderr = args, returncode, stdout, stderr


def _in_process(module_name, argv):
    import keras

    out, err = io.StringIO(), io.StringIO()
    policy = keras.mixed_precision.global_policy()  # training sets it for the whole process
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = importlib.import_module(module_name).main(argv)
        except SystemExit as exit_:  # argparse: a usage error exits 2
            code = exit_.code if isinstance(exit_.code, int) else 1
        finally:
            keras.mixed_precision.set_global_policy(policy)
    return code or 0, out.getvalue(), err.getvalue()


def run_cli(*args, cwd=None, check=True, isolated=False):
    """Runs `python <args>` as a user would; returns the Result.

    The project's own tools (train_keras.py, -m data_prep, -m
    protein_location) run in this process through their `main(argv)`: the
    same code, without a second TensorFlow start-up. Anything else, a test
    that asks (`isolated=True`), and runs whose distribution set-up lasts a
    process (`--replicas`, mirrored, multiworker) get a fresh process.
    """
    args = [str(a) for a in args]
    module = next((name for prefix, name in IN_PROCESS.items() if tuple(args[: len(prefix)]) == prefix), None)
    if module and not isolated and cwd is None and not NEEDS_OWN_PROCESS & set(args):
        prefix = next(p for p in IN_PROCESS if tuple(args[: len(p)]) == p)
        code, stdout, stderr = _in_process(module, args[len(prefix) :])
        result = Result(args, code, stdout, stderr)
    else:
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=str(ROOT))
        completed = subprocess.run(
            [sys.executable, *args], cwd=cwd or ROOT, env=env, capture_output=True, text=True, timeout=600
        )
        result = Result(args, completed.returncode, completed.stdout, completed.stderr)
    if check and result.returncode != 0:
        raise AssertionError(f"{args} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


def last_error_line(result):
    """The CLI's one-line error (the last stderr line)."""
    return result.stderr.strip().splitlines()[-1]


def write_image_set(folder, image_id, size=16, seed=0, dtype=np.uint8, ext=".png", skip=()):
    """Writes the four channel files of one Id with random content."""
    rng = np.random.default_rng(seed)
    folder = pathlib.Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    high = 65535 if dtype == np.uint16 else 255
    for channel in ("red", "green", "blue", "yellow"):
        if channel not in skip:
            cv2.imwrite(str(folder / f"{image_id}_{channel}{ext}"), rng.integers(0, high, (size, size)).astype(dtype))


def write_raw_dataset(root, targets, size=16):
    """A Kaggle-layout folder: train.csv (Id,Target) and train/<Id>_<channel>.png."""
    root = pathlib.Path(root)
    rows = ["Id,Target"]
    for index, (image_id, target) in enumerate(targets.items()):
        write_image_set(root / "train", image_id, size=size, seed=index)
        rows.append(f"{image_id},{target}")
    (root / "train.csv").write_text("\n".join(rows) + "\n")
    return root


def convert_synthetic(synthetic_dir, out, num_shards):
    """Converts the tiny synthetic dataset to TFRecords: a quarter as val, `num_shards` per split."""
    from data_prep import convert

    convert.convert(
        str(synthetic_dir / "train"),
        str(out),
        csv_path=str(synthetic_dir / "train.csv"),
        val_fraction=0.25,
        num_shards=num_shards,
        seed=0,
    )
    return out
