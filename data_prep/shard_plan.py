"""Planning a conversion: what goes to which split and shard, decided before
any image is read, and fingerprinted so that `--resume` can tell a run with
the same arguments from another."""

import dataclasses
import hashlib
import json
import math

import numpy as np

from protein_location.core import labels as labels_lib, manifest as manifest_lib, records, stain_files


@dataclasses.dataclass(frozen=True)
class ConvertOptions:
    """Everything that decides the output; resume requires the same values."""

    images_dirs: tuple  # one folder per source
    csv_paths: tuple = ()  # one labels CSV per source; () for an unlabeled test split
    label_set: str = labels_lib.HPA2018.name
    group_column: str | None = None
    size: int | None = None
    val_fraction: float = 0.1
    folds: int | None = None
    num_shards: int | None = None
    shard_mb: float = 150.0
    seed: int = 0
    on_error: str = "fail"
    max_pixels: int = stain_files.DEFAULT_MAX_PIXELS
    png_compression: int = 0
    image_format: str = records.DEFAULT_IMAGE_FORMAT


@dataclasses.dataclass
class Shard:
    split: str
    index: int
    count: int
    items: list  # (Id, label indices or None, source index)
    fold: int | None = None

    @property
    def name(self):
        return manifest_lib.shard_name(self.split, self.index, self.count)


def label_matrix(entries, label_set):
    """Multi-hot [entries, classes] of labeled entries (Id, labels, source)."""
    return np.stack([labels_lib.to_multi_hot(labels, label_set.num_classes) for _, labels, _ in entries])


def plan_splits(entries, options, matrix=None, groups=None):
    """Entries (Id, labels, source) and their `label_matrix` -> {split: [(Id,
    labels, source, fold)]}, seeded order inside each split.

    Labeled entries go to train/val (stratified over groups: a group's images
    stay on one side) or to k folds of train; unlabeled ones to test, in
    file order.
    """
    # Here, not at the top: the split imports scikit-learn (a second), which workers unpickling a Shard skip.
    from data_prep import split as split_lib

    if entries and entries[0][1] is None:
        return {"test": [(*entry, None) for entry in entries]}
    rng = np.random.default_rng(options.seed)
    if options.folds:
        fold = split_lib.assign_folds(matrix, options.folds, options.seed, groups=groups)
        order = [i for f in range(options.folds) for i in rng.permutation(np.flatnonzero(fold == f))]
        return {"train": [(*entries[i], int(fold[i])) for i in order]}
    if options.val_fraction > 0:
        train, val = split_lib.split_train_val(matrix, options.val_fraction, options.seed, groups=groups)
        return {
            name: [(*entries[i], None) for i in rng.permutation(part)]
            for name, part in (("train", train), ("val", val))
        }
    return {"train": [(*entries[i], None) for i in rng.permutation(len(entries))]}


def shard_count(items, options, bytes_per_example):
    if options.num_shards:
        return min(options.num_shards, len(items))
    return max(1, min(len(items), math.ceil(len(items) * bytes_per_example / (options.shard_mb * 2**20))))


def plan_shards(splits, options, bytes_per_example):
    """Cuts each split (each fold of it) into contiguous shards."""
    shards = []
    for split, items in splits.items():
        groups = {}
        for image_id, labels, source, fold in items:
            groups.setdefault(fold, []).append((image_id, labels, source))
        pieces = []
        for fold, group in groups.items():
            for chunk in np.array_split(np.arange(len(group)), shard_count(group, options, bytes_per_example)):
                pieces.append((fold, [group[i] for i in chunk]))
        shards += [Shard(split, index, len(pieces), chunk, fold) for index, (fold, chunk) in enumerate(pieces)]
    return shards


def fingerprint(options, shards):
    plan = [(s.name, s.fold, [(i, source) for i, _, source in s.items]) for s in shards]
    text = json.dumps([dataclasses.asdict(options), plan], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def describe_split(entries, splits, matrix, groups, options, label_set):
    """What the split decided, for dataset.json (and the CLI's `split:` line):
    the groups and how close each class's val share stays to the target."""
    info = {"val_fraction": options.val_fraction, "seed": options.seed}
    if groups is None:
        return info
    info["groups"] = f"column {options.group_column}" if options.group_column else "HPAv18 well (Id without _<field>)"
    info["num_groups"] = len(set(groups))
    if "val" not in splits:
        return info
    from data_prep import split as split_lib

    val_ids = {image_id for image_id, *_ in splits["val"]}
    in_val = np.array([image_id in val_ids for image_id, _, _ in entries])
    summary = split_lib.stratification_summary(matrix, in_val, options.val_fraction)
    info["val_fraction_mean_deviation"] = round(float(summary["mean_deviation"]), 4)
    if summary["worst_class"] is not None:
        info["worst_class"] = label_set.class_names[summary["worst_class"]]
        info["worst_class_val_fraction"] = round(float(summary["worst_val_fraction"]), 4)
    return info
