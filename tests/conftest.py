"""Shared fixtures: tiny real datasets on disk (helpers in tests/helpers.py)."""

import pytest

from tests.helpers import convert_synthetic


@pytest.fixture(scope="session")
def synthetic_dir(tmp_path_factory):
    """A tiny synthetic HPA-layout dataset (48 train, 8 test images at 32 px)."""
    from data_prep import synthetic

    out = tmp_path_factory.mktemp("synthetic")
    synthetic.generate_dataset(str(out), num_train=48, num_test=8, size=32, seed=0)
    return out


@pytest.fixture(scope="session")
def converted_dir(synthetic_dir, tmp_path_factory):
    """The tiny synthetic dataset converted to TFRecords (train/val, 2 shards each)."""
    return convert_synthetic(synthetic_dir, tmp_path_factory.mktemp("tfrecords") / "tiny", num_shards=2)
