"""Raw HPA layout -> sharded TFRecords + dataset.json.

Deterministic: the same input, size and seed give byte-identical shards.
Atomic: shards are written under `.tmp` names and renamed when complete, and
dataset.json, written last, marks the dataset as finished. A failed run
removes what it wrote.
"""

import posixpath

import numpy as np
import tensorflow as tf
from tqdm import tqdm

from data_prep import sources, split as split_lib
from protein_location import labels as labels_lib
from protein_location import manifest as manifest_lib
from protein_location import records


def plan_splits(entries, val_fraction, seed):
    """Entries -> {split: [entries]} with a seeded order inside each split.

    Labeled entries go to train/val (stratified), unlabeled ones to test.
    """
    if entries and entries[0][1] is None:
        splits = {"test": list(entries)}
    elif val_fraction > 0:
        matrix = np.stack([labels_lib.to_multi_hot(labels) for _, labels in entries])
        train, val = split_lib.split_train_val(matrix, val_fraction, seed)
        splits = {"train": [entries[i] for i in train], "val": [entries[i] for i in val]}
    else:
        splits = {"train": list(entries)}
    rng = np.random.default_rng(seed)
    # Shuffle inside a split so each shard holds a mix of classes; test keeps
    # its order so predictions come back in file order.
    return {
        name: items if name == "test" else [items[i] for i in rng.permutation(len(items))]
        for name, items in splits.items()
    }


def _check_output_dir(out_dir, overwrite):
    if not tf.io.gfile.isdir(out_dir):
        tf.io.gfile.makedirs(out_dir)
        return
    existing = [n for n in tf.io.gfile.listdir(out_dir) if n.endswith((".tfrecord", ".json", ".tmp"))]
    if existing and not overwrite:
        raise sources.SourceError(
            f"{out_dir}: already holds a dataset ({existing[0]}, ...); pass --overwrite to replace it"
        )
    for name in existing:
        tf.io.gfile.remove(posixpath.join(out_dir, name))


class _ChannelStats:
    """Running per-channel mean and std (0-255 scale) of the training images."""

    def __init__(self):
        self.count, self.total, self.squares = 0, np.zeros(4), np.zeros(4)

    def add(self, image):
        pixels = image.reshape(-1, 4).astype(np.float64)
        self.count += len(pixels)
        self.total += pixels.sum(axis=0)
        self.squares += np.square(pixels).sum(axis=0)

    def result(self):
        mean = self.total / max(self.count, 1)
        std = np.sqrt(np.maximum(self.squares / max(self.count, 1) - mean**2, 0.0))
        return [round(float(m), 4) for m in mean], [round(float(s), 4) for s in std]


def _write_split(out_dir, split, items, images_dir, size, num_shards, stats, written, progress):
    """Writes one split's shards; returns its manifest entry."""
    count = min(num_shards, len(items))
    shards, label_counts = [], np.zeros(labels_lib.NUM_CLASSES, np.int64)
    for index, chunk in enumerate(np.array_split(np.arange(len(items)), count)):
        path = posixpath.join(out_dir, manifest_lib.shard_name(split, index, count))
        written.append(path + ".tmp")
        with tf.io.TFRecordWriter(path + ".tmp") as writer:
            for i in chunk:
                image_id, label_indices = items[i]
                image = sources.read_image(images_dir, image_id, size)
                if size is None:
                    size = image.shape[0]
                if image.shape[:2] != (size, size):
                    raise sources.SourceError(
                        f"Id {image_id}: image is {image.shape[1]}x{image.shape[0]}, others are "
                        f"{size}x{size}; pass --size to resize all images"
                    )
                if stats is not None:
                    stats.add(image)
                label_indices = label_indices or []
                label_counts[label_indices] += 1
                writer.write(records.serialize_example(image, image_id, label_indices))
                progress.update(1)
        tf.io.gfile.rename(path + ".tmp", path, overwrite=True)
        written.append(path)
        shards.append({"file": posixpath.basename(path), "num_examples": len(chunk), "sha256": manifest_lib.file_sha256(path)})
    entry = {"num_examples": len(items), "label_counts": label_counts.tolist(), "shards": shards}
    return entry, size


def convert(images_dir, out_dir, csv_path=None, size=None, val_fraction=0.1, num_shards=4,
            seed=0, overwrite=False):
    """Converts a raw HPA-layout folder into TFRecord shards; returns the manifest.

    Args:
        images_dir: folder of `<Id>_<channel>.<ext>` files.
        out_dir: output folder for shards and dataset.json.
        csv_path: `Id,Target` labels; None converts an unlabeled `test` split.
        size: output side in pixels (area-resized); None keeps the source size,
            which must then be the same for all images.
        val_fraction: share of labeled images held out as `val` (0: none).
        num_shards: shards per split (fewer when a split has fewer examples).
        seed: seeds the split and the order of examples.
        overwrite: replace a dataset already in `out_dir`.
    """
    if num_shards < 1:
        raise ValueError(f"--shards must be at least 1, got {num_shards}")
    sources.check_images_dir(images_dir)
    if csv_path is not None:
        entries = sources.read_labels_csv(csv_path)
    else:
        entries = [(image_id, None) for image_id in sources.list_image_ids(images_dir)]
    splits = plan_splits(entries, val_fraction, seed)
    _check_output_dir(out_dir, overwrite)

    written, stats = [], _ChannelStats()
    manifest = {
        "schema_version": records.SCHEMA_VERSION,
        "class_names": list(labels_lib.CLASS_NAMES),
        "channels": list(labels_lib.CHANNELS),
        "image_format": records.IMAGE_FORMAT,
        "image_size": size,
        "source": {"images": images_dir, "csv": csv_path, "val_fraction": val_fraction, "seed": seed},
        "splits": {},
    }
    try:
        with tqdm(total=len(entries), unit="img", desc=f"convert -> {out_dir}", disable=None) as progress:
            for split, items in splits.items():
                split_stats = stats if split == "train" else None
                manifest["splits"][split], size = _write_split(
                    out_dir, split, items, images_dir, size, num_shards, split_stats, written, progress
                )
    except BaseException:
        for path in written:
            if tf.io.gfile.exists(path):
                tf.io.gfile.remove(path)
        raise
    manifest["image_size"] = size
    if stats.count:
        manifest["channel_mean"], manifest["channel_std"] = stats.result()
    manifest_lib.write_manifest(out_dir, manifest)
    return manifest
