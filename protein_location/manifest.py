"""dataset.json: what a converted dataset holds, beside its TFRecord shards.

Written last by `data_prep convert` (its presence means the dataset is
complete) and read by every consumer of the shards.
"""

import hashlib
import json
import posixpath

import tensorflow as tf

MANIFEST_NAME = "dataset.json"
SPLITS = ("train", "val", "test")


class ManifestError(ValueError):
    """A dataset folder without a usable dataset.json."""


def shard_name(split, index, count):
    return f"{split}-{index:05d}-of-{count:05d}.tfrecord"


def load_manifest(data_dir):
    path = posixpath.join(data_dir, MANIFEST_NAME)
    if not tf.io.gfile.exists(path):
        raise ManifestError(
            f"{data_dir}: no {MANIFEST_NAME} here; convert a dataset first with "
            "`python -m data_prep convert`"
        )
    with tf.io.gfile.GFile(path, "r") as f:
        try:
            return json.load(f)
        except json.JSONDecodeError as error:
            raise ManifestError(f"{path}: not valid JSON ({error})") from None


def write_manifest(data_dir, manifest):
    """Write dataset.json atomically: a temporary file renamed into place."""
    path = posixpath.join(data_dir, MANIFEST_NAME)
    with tf.io.gfile.GFile(path + ".tmp", "w") as f:
        json.dump(manifest, f, indent=2)
    tf.io.gfile.rename(path + ".tmp", path, overwrite=True)


def shard_paths(data_dir, manifest, split):
    """Full paths of a split's shards, in manifest order."""
    if split not in manifest.get("splits", {}):
        present = ", ".join(manifest.get("splits", {})) or "none"
        raise ManifestError(f"{data_dir}: the dataset has no {split!r} split (splits: {present})")
    return [posixpath.join(data_dir, shard["file"]) for shard in manifest["splits"][split]["shards"]]


def file_sha256(path):
    """sha256 hex digest of a file, read in 1 MiB chunks through tf.io.gfile."""
    digest = hashlib.sha256()
    with tf.io.gfile.GFile(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()
