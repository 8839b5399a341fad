"""Shared fixtures: tiny real datasets on disk, and running the CLIs as a user does."""

import os
import pathlib
import subprocess
import sys

import cv2
import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def run_cli(*args, cwd=None, check=True):
    """Runs `python <args>` in a fresh process, as a user would; returns the result."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=str(ROOT))
    result = subprocess.run([sys.executable, *map(str, args)], cwd=cwd or ROOT, env=env,
                            capture_output=True, text=True, timeout=600)
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


@pytest.fixture(scope="session")
def synthetic_dir(tmp_path_factory):
    """A tiny synthetic HPA-layout dataset (48 train, 8 test images at 32 px)."""
    from data_prep import synthetic

    out = tmp_path_factory.mktemp("synthetic")
    synthetic.generate_dataset(str(out), num_train=48, num_test=8, size=32, seed=0)
    return out


def convert_synthetic(synthetic_dir, out, num_shards):
    """Converts the tiny synthetic dataset to TFRecords: a quarter as val, `num_shards` per split."""
    from data_prep import convert

    convert.convert(str(synthetic_dir / "train"), str(out), csv_path=str(synthetic_dir / "train.csv"),
                    val_fraction=0.25, num_shards=num_shards, seed=0)
    return out


@pytest.fixture(scope="session")
def converted_dir(synthetic_dir, tmp_path_factory):
    """The tiny synthetic dataset converted to TFRecords (train/val, 2 shards each)."""
    return convert_synthetic(synthetic_dir, tmp_path_factory.mktemp("tfrecords") / "tiny", num_shards=2)
