"""Re-reads every shard of a converted dataset and checks it against dataset.json."""

import posixpath

import tensorflow as tf

from protein_location.core import manifest as manifest_lib, records, stop_signals
from protein_location.core.errors import VerifyError


def verify_dataset(data_dir):
    """Returns {split: examples checked}; raises VerifyError on the first mismatch."""
    manifest = manifest_lib.DatasetManifest.read(data_dir)
    size = manifest.image_size
    num_classes = manifest.num_classes
    checked = {}
    for split, entry in manifest.splits.items():
        for shard in entry["shards"]:
            stop_signals.raise_if_requested()
            path = posixpath.join(data_dir, shard["file"])
            if not tf.io.gfile.exists(path):
                raise VerifyError(f"{path}: shard listed in {manifest_lib.MANIFEST_NAME} is missing")
            # The size first (it says "truncated"); the full sha256 below covers the ends' digest.
            problem = manifest_lib.shard_file_problem(path, shard, ends=False)
            if problem is not None:
                raise VerifyError(f"{path}: {problem}")
            if manifest_lib.file_sha256(path) != shard["sha256"]:
                raise VerifyError(f"{path}: sha256 differs from {manifest_lib.MANIFEST_NAME}")
            count = 0
            try:
                for serialized in tf.data.TFRecordDataset(path):
                    example = records.parse_example(serialized, num_classes)
                    count += 1
                    shape = tuple(example["image"].shape)
                    if shape != (size, size, 4):
                        raise VerifyError(f"{path}: example {count} has shape {shape}, expected {(size, size, 4)}")
                    indices = example["label_indices"].numpy()
                    if ((indices < 0) | (indices >= num_classes)).any():
                        raise VerifyError(
                            f"{path}: example {count} has labels {indices.tolist()} outside 0-{num_classes - 1}"
                        )
            except tf.errors.OpError as error:
                raise VerifyError(
                    f"{path}: unreadable after {count} examples ({error.message.splitlines()[0]})"
                ) from None
            if count != shard["num_examples"]:
                raise VerifyError(
                    f"{path}: {count} examples, {manifest_lib.MANIFEST_NAME} says {shard['num_examples']}"
                )
        checked[split] = sum(shard["num_examples"] for shard in entry["shards"])
        if checked[split] != entry["num_examples"]:
            raise VerifyError(
                f"{data_dir}: {split} shards hold {checked[split]} examples, manifest says {entry['num_examples']}"
            )
    return checked
