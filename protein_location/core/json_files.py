"""JSON records through tf.io.gfile (local, gs://, ram://): dataset.json,
conversion state, thresholds.json, report.json, explain.json."""

import json

import tensorflow as tf


def write_json_atomic(path, payload):
    """Writes JSON through a temporary file renamed into place: never half a file."""
    with tf.io.gfile.GFile(path + ".tmp", "w") as f:
        json.dump(payload, f, indent=2)
    tf.io.gfile.rename(path + ".tmp", path, overwrite=True)


def read_json(path):
    """The parsed JSON file at `path` (json.JSONDecodeError if it is not JSON)."""
    with tf.io.gfile.GFile(path, "r") as f:
        return json.load(f)
