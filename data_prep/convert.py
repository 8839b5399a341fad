"""Raw HPA layout -> sharded TFRecords + dataset.json.

- Parallel and deterministic: W worker processes decode, resize and encode;
  one writer takes their results in input order, so the same input and seed
  give byte-identical shards whatever W is.
- Streaming: examples flow through the workers a shard at a time; memory does
  not grow with the dataset.
- Atomic and resumable: a shard is written under a `.tmp` name, its record
  (sha256, counts) goes to `.convert/` and only then is it renamed into place;
  dataset.json, written last, marks the dataset finished and records the
  fingerprint of the arguments and plan. `resume=True` with the same
  arguments reuses every shard whose record and sha256 agree, and on the
  finished dataset of the same arguments does nothing.
"""

import contextlib
import csv
import dataclasses
import hashlib
import io
import json
import math
import posixpath

import cv2
import numpy as np
import tensorflow as tf
from tqdm import tqdm

from data_prep import split as split_lib, workers as workers_lib
from protein_location import labels as labels_lib
from protein_location import labels_csv, manifest as manifest_lib, raw_images
from protein_location import records
from protein_location.errors import SourceError

STATE_DIR = ".convert"
ERRORS_NAME = "errors.csv"
SAMPLE_FOR_SHARD_SIZE = 8


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
    max_pixels: int = raw_images.DEFAULT_MAX_PIXELS
    png_compression: int = 0


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


# ---------------------------------------------------------------- planning


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
    if entries and entries[0][1] is None:
        return {"test": [(*entry, None) for entry in entries]}
    rng = np.random.default_rng(options.seed)
    if options.folds:
        fold = split_lib.assign_folds(matrix, options.folds, options.seed, groups=groups)
        order = [i for f in range(options.folds) for i in rng.permutation(np.flatnonzero(fold == f))]
        return {"train": [(*entries[i], int(fold[i])) for i in order]}
    if options.val_fraction > 0:
        train, val = split_lib.split_train_val(matrix, options.val_fraction, options.seed, groups=groups)
        return {name: [(*entries[i], None) for i in rng.permutation(part)]
                for name, part in (("train", train), ("val", val))}
    return {"train": [(*entries[i], None) for i in rng.permutation(len(entries))]}


def _shard_count(items, options, bytes_per_example):
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
            for chunk in np.array_split(np.arange(len(group)), _shard_count(group, options, bytes_per_example)):
                pieces.append((fold, [group[i] for i in chunk]))
        shards += [Shard(split, index, len(pieces), chunk, fold) for index, (fold, chunk) in enumerate(pieces)]
    return shards


def _fingerprint(options, shards):
    plan = [(s.name, s.fold, [(i, source) for i, _, source in s.items]) for s in shards]
    text = json.dumps([dataclasses.asdict(options), plan], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


# ---------------------------------------------------------------- workers


def encode_item(task):
    """One Id -> its serialized Example and pixel sums, or its error."""
    images_dir, image_id, labels, size, max_pixels, png_compression = task
    try:
        image = raw_images.read_image(images_dir, image_id, size, max_pixels)
    except SourceError as error:
        return {"error": [error.image_id or image_id, error.path or "", error.problem]}
    if image.shape[:2] != (size, size):
        return {"error": [image_id, "", f"image is {image.shape[1]}x{image.shape[0]}, others are "
                                        f"{size}x{size}; pass --size to resize all images"]}
    # meanStdDev is ~100x faster than numpy sums in float64 over the pixels.
    mean, std = (v.ravel() for v in cv2.meanStdDev(image))
    pixels = size * size
    encoded = records.encode_rgby_png(image, png_compression)
    return {"example": records.serialize_encoded(encoded, size, size, image_id, labels or []),
            "sum": (mean * pixels).tolist(),
            "sum_sq": ((np.square(std) + np.square(mean)) * pixels).tolist()}


def write_shard(task):
    """Worker: writes one whole shard, atomically; returns its record.

    A shard's bytes depend only on its planned items, so which process
    writes it never changes the output, and no image crosses processes.
    Steps: `.tmp` file -> record in .convert/ -> rename into place. With
    on_error="fail" the first bad item ends the shard and is returned as
    `fatal` (an exception with a custom __init__ does not cross processes).
    """
    out_dir, shard, options, size = task
    tmp_path = posixpath.join(out_dir, shard.name + ".tmp")
    label_counts = np.zeros(labels_lib.label_set_named(options.label_set).num_classes, np.int64)
    source_counts = np.zeros(len(options.images_dirs), np.int64)
    pixel_sum, pixel_sum_sq, errors, count = np.zeros(4), np.zeros(4), [], 0
    with tf.io.TFRecordWriter(tmp_path) as writer:
        for image_id, labels, source in shard.items:
            result = encode_item((options.images_dirs[source], image_id, labels, size, options.max_pixels,
                                  options.png_compression))
            if "error" in result:
                if options.on_error == "fail":
                    return {"file": shard.name, "fatal": result["error"]}
                errors.append(result["error"])
                continue
            writer.write(result["example"])
            label_counts[labels or []] += 1
            source_counts[source] += 1
            pixel_sum += result["sum"]
            pixel_sum_sq += result["sum_sq"]
            count += 1
    record = {
        "file": shard.name, "num_examples": count, "sha256": manifest_lib.file_sha256(tmp_path),
        "label_counts": label_counts.tolist(), **({"fold": shard.fold} if shard.fold is not None else {}),
        "source_counts": source_counts.tolist(),
        "pixel_sum": pixel_sum.tolist(), "pixel_sum_sq": pixel_sum_sq.tolist(), "errors": errors,
    }
    manifest_lib.write_json_atomic(posixpath.join(out_dir, STATE_DIR, shard.name + ".json"), record)
    tf.io.gfile.rename(tmp_path, posixpath.join(out_dir, shard.name), overwrite=True)
    return record


def _write_shards(tasks, workers):
    """Yields each shard's record as it completes, from W processes (or this one)."""
    if workers <= 1 or len(tasks) <= 1:
        yield from map(write_shard, tasks)
        return
    # Spawned, not forked (this process has TensorFlow loaded). Each worker
    # imports this module, TensorFlow included (it writes through tf.io), once.
    with workers_lib.process_pool(min(workers, len(tasks)), preload=__name__) as pool:
        yield from pool.imap_unordered(write_shard, tasks)


# ---------------------------------------------------------------- writing


def _read_json(path):
    with tf.io.gfile.GFile(path, "r") as f:
        return json.load(f)


def _completed(out_dir, shard):
    """A shard's record from an earlier run, if the shard on disk matches it."""
    record_path = posixpath.join(out_dir, STATE_DIR, shard.name + ".json")
    path = posixpath.join(out_dir, shard.name)
    if not (tf.io.gfile.exists(record_path) and tf.io.gfile.exists(path)):
        return None
    record = _read_json(record_path)
    return record if manifest_lib.file_sha256(path) == record["sha256"] else None


def _finished_dataset(out_dir, fingerprint):
    """The manifest of the finished dataset in out_dir if the same arguments
    and inputs made it, None if there is none; refuses any other."""
    if not tf.io.gfile.exists(posixpath.join(out_dir, manifest_lib.MANIFEST_NAME)):
        return None
    manifest = manifest_lib.load_manifest(out_dir)
    if manifest.get("fingerprint") == fingerprint:
        return manifest
    why = ("was made with different arguments or inputs" if "fingerprint" in manifest
           else "does not record the arguments that made it")
    raise SourceError(f"holds a finished dataset (dataset.json) that {why}; pass --overwrite to replace it",
                      path=out_dir)


def _prepare_output(out_dir, fingerprint, overwrite, resume):
    """Refuses to mix runs; returns True when an unfinished run is resumed."""
    state = posixpath.join(out_dir, STATE_DIR)
    plan_path = posixpath.join(state, "plan.json")
    if overwrite and tf.io.gfile.isdir(out_dir):
        _remove_dataset_files(out_dir)
    if tf.io.gfile.exists(posixpath.join(out_dir, manifest_lib.MANIFEST_NAME)):
        raise SourceError("already holds a finished dataset (dataset.json); pass --overwrite to replace it",
                                  path=out_dir)
    if tf.io.gfile.exists(plan_path):
        same = _read_json(plan_path)["fingerprint"] == fingerprint
        if resume and same:
            return True
        hint = ("it was started with different arguments or inputs; rerun it with its own, or pass --overwrite"
                if resume else "pass --resume (same arguments) to finish it, or --overwrite to start again")
        raise SourceError(f"holds an unfinished conversion; {hint}", path=out_dir)
    if tf.io.gfile.isdir(out_dir) and any(n.endswith((".tfrecord", ".tmp")) for n in tf.io.gfile.listdir(out_dir)):
        raise SourceError("already holds TFRecord shards; pass --overwrite to replace them", path=out_dir)
    tf.io.gfile.makedirs(state)
    manifest_lib.write_json_atomic(plan_path, {"fingerprint": fingerprint})
    return False


def _remove_dataset_files(out_dir):
    """Deletes what a conversion writes in out_dir, and nothing else."""
    state = posixpath.join(out_dir, STATE_DIR)
    if tf.io.gfile.isdir(state):
        tf.io.gfile.rmtree(state)
    for name in tf.io.gfile.listdir(out_dir):
        if name.endswith((".tfrecord", ".tfrecord.tmp")) or name in (manifest_lib.MANIFEST_NAME, ERRORS_NAME):
            tf.io.gfile.remove(posixpath.join(out_dir, name))


def _write_errors(out_dir, errors):
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["Id", "file", "problem"])
    writer.writerows(errors)
    with tf.io.gfile.GFile(posixpath.join(out_dir, ERRORS_NAME), "w") as f:
        f.write(buffer.getvalue())


def _source_size(entries, options):
    """The common side of the source images when no --size is given."""
    for image_id, _, source in entries:
        try:
            image = raw_images.read_image(options.images_dirs[source], image_id, None, options.max_pixels)
        except SourceError:
            if options.on_error == "fail":
                raise
            continue
        if image.shape[0] != image.shape[1]:
            raise SourceError(f"image is {image.shape[1]}x{image.shape[0]}, not square; pass --size",
                                      image_id)
        return image.shape[0]
    raise SourceError("no readable image", path=", ".join(options.images_dirs))


def _bytes_per_example(splits, options, size):
    """Mean record size over a few evenly spaced examples (deterministic)."""
    items = [item for split_items in splits.values() for item in split_items]
    picks = np.linspace(0, len(items) - 1, min(SAMPLE_FOR_SHARD_SIZE, len(items))).astype(int)
    sizes = [len(result["example"]) for result in
             (encode_item((options.images_dirs[items[i][2]], *items[i][:2], size, options.max_pixels,
                           options.png_compression))
              for i in picks)
             if "example" in result]
    return np.mean(sizes) if sizes else 1.0


def _as_tuple(value):
    if value is None:
        return ()
    return (value,) if isinstance(value, str) else tuple(value)


def read_sources(images_dirs, csv_paths, on_error, label_set=None):
    """Every source's entries -> (entries [(Id, labels or None, source index)],
    row errors, the LabelSet).

    Sources are (images folder, labels CSV) pairs, in the order given; with no
    CSV each folder's Ids are an unlabeled test split. One dataset has one
    label set: sources whose CSV headers imply different ones are refused
    (unless `label_set` names the set for all), and so is an Id found in two
    sources.
    """
    for images_dir in images_dirs:
        raw_images.check_images_dir(images_dir)
    if csv_paths and len(csv_paths) != len(images_dirs):
        raise ValueError(f"--csv and --images pair up in order: got {len(csv_paths)} --csv and "
                         f"{len(images_dirs)} --images")
    entries, errors, found_sets, owner = [], [], [], {}
    for source, images_dir in enumerate(images_dirs):
        if csv_paths:
            rows, row_errors, source_set = labels_csv.read_labels_csv(csv_paths[source], on_error, label_set)
            errors += [[e.image_id or "", e.path or "", e.problem] for e in row_errors]
            found_sets.append(source_set)
        else:
            rows = [(image_id, None) for image_id in raw_images.list_image_ids(images_dir)]
        origin = csv_paths[source] if csv_paths else images_dir
        for image_id, labels in rows:
            if image_id in owner:
                raise SourceError(f"the Id is in two sources: {owner[image_id]} and {origin}", image_id)
            owner[image_id] = origin
            entries.append((image_id, labels, source))
    for source_set, csv_path in zip(found_sets[1:], csv_paths[1:]):
        if source_set != found_sets[0]:
            first = found_sets[0]
            raise SourceError(
                f"sources of different label sets: {csv_paths[0]} is {first.name} ({first.num_classes} classes), "
                f"{csv_path} is {source_set.name} ({source_set.num_classes}); convert them into separate datasets "
                "or name one with --label-set")
    return entries, errors, label_set or (found_sets[0] if found_sets else labels_lib.HPA2018)


def entry_groups(entries, csv_paths, group_column):
    """The split group of each entry: from `group_column` of its source's CSV,
    else `split.group_of_id` (an HPAv18 Id without its `_<field>`)."""
    if group_column is None:
        return split_lib.groups_of_ids([image_id for image_id, _, _ in entries])
    columns = [labels_csv.read_csv_column(csv_path, group_column) for csv_path in csv_paths]
    return [columns[source][image_id] for image_id, _, source in entries]


def _describe_split(entries, splits, matrix, groups, options, label_set):
    """What the split decided, for dataset.json (and the CLI's `split:` line):
    the groups and how close each class's val share stays to the target."""
    info = {"val_fraction": options.val_fraction, "seed": options.seed}
    if groups is None:
        return info
    info["groups"] = f"column {options.group_column}" if options.group_column else "HPAv18 well (Id without _<field>)"
    info["num_groups"] = len(set(groups))
    if "val" not in splits:
        return info
    val_ids = {image_id for image_id, *_ in splits["val"]}
    in_val = np.array([image_id in val_ids for image_id, _, _ in entries])
    summary = split_lib.stratification_summary(matrix, in_val, options.val_fraction)
    info["val_fraction_mean_deviation"] = round(float(summary["mean_deviation"]), 4)
    if summary["worst_class"] is not None:
        info["worst_class"] = label_set.class_names[summary["worst_class"]]
        info["worst_class_val_fraction"] = round(float(summary["worst_val_fraction"]), 4)
    return info


def convert(images_dir, out_dir, csv_path=None, size=None, val_fraction=0.1, folds=None, num_shards=None,
            shard_mb=150.0, seed=0, workers=None, on_error="fail", max_pixels=raw_images.DEFAULT_MAX_PIXELS,
            png_compression=0, overwrite=False, resume=False, label_set=None, group_column=None):
    """Converts raw HPA-layout folders into TFRecord shards; returns the manifest.

    Args:
        images_dir: folder of `<Id>_<channel>.<ext>` files, or a list of
            folders (several sources, e.g. Kaggle train + HPAv18 external).
        out_dir: output folder for shards and dataset.json.
        csv_path: labels CSV (`Id,Target` or `ID,Label`), or a list paired in
            order with `images_dir`; None converts an unlabeled `test` split.
        size: output side in pixels (area-resized); None keeps the source size,
            which must then be the same for all images.
        val_fraction: share of labeled images held out as `val` (0: none).
        folds: instead of val, k stratified folds of `train` (shards carry a
            `fold`; training picks one with --fold).
        num_shards: shards per split (per fold); None sizes shards by content.
        shard_mb: target shard size in MB when num_shards is None.
        seed: seeds the split and the order of examples.
        workers: decoding processes (default: `workers.default_workers`); never changes the output.
            More than one are spawned (`data_prep.workers`): a script calling
            this needs the `if __name__ == "__main__":` guard.
        on_error: "fail" stops at the first bad input; "skip" leaves bad
            examples out and lists them in errors.csv.
        max_pixels: images with more pixels are refused before decoding.
        png_compression: zlib level of the stored PNGs, 0 (fastest, largest) to 9.
        overwrite: replace a dataset already in `out_dir`.
        resume: finish an interrupted conversion started with the same arguments;
            on the finished dataset of the same arguments, do nothing and
            return its manifest with `"already_complete": True`.
        label_set: "hpa2018" or "hpa2021"; None detects it from the CSV header
            (`Id,Target` -> hpa2018, `ID,Label` -> hpa2021).
        group_column: a CSV column whose values group images that must stay on
            one side of the split; None groups HPAv18 fields of one well.
    """
    if num_shards is not None and num_shards < 1:
        raise ValueError(f"--shards must be at least 1, got {num_shards}")
    if on_error not in ("fail", "skip"):
        raise ValueError(f"--on-error must be fail or skip, got {on_error!r}")
    if not 0 <= png_compression <= 9:
        raise ValueError(f"--png-compression must be 0-9, got {png_compression}")
    images_dirs, csv_paths = _as_tuple(images_dir), _as_tuple(csv_path)
    if group_column is not None and not csv_paths:
        raise ValueError("--group-column needs --csv")
    if out_dir.startswith("ram://"):
        workers = 1  # TensorFlow's RAM filesystem lives in one process: workers' writes would vanish
    entries, errors, chosen_set = read_sources(images_dirs, csv_paths, on_error,
                                               label_set and labels_lib.label_set_named(label_set))
    workers = workers or workers_lib.default_workers(len(entries))
    options = ConvertOptions(images_dirs, csv_paths, chosen_set.name, group_column, size,
                             0.0 if folds else val_fraction, folds, num_shards, shard_mb, seed, on_error, max_pixels,
                             png_compression)
    matrix, groups = None, None
    if csv_paths:
        matrix, groups = label_matrix(entries, chosen_set), entry_groups(entries, csv_paths, group_column)
    splits = plan_splits(entries, options, matrix, groups)
    split_info = _describe_split(entries, splits, matrix, groups, options, chosen_set)
    size = size or _source_size(entries, options)
    bytes_per_example = _bytes_per_example(splits, options, size) if num_shards is None else None
    shards = plan_shards(splits, options, bytes_per_example)
    fingerprint = _fingerprint(dataclasses.replace(options, size=size), shards)
    finished = _finished_dataset(out_dir, fingerprint) if resume and not overwrite else None
    if finished is not None:
        return {**finished, "already_complete": True}
    resuming = _prepare_output(out_dir, fingerprint, overwrite, resume)

    done = {s.name: _completed(out_dir, s) for s in shards} if resuming else {}
    todo = [s for s in shards if not done.get(s.name)]
    try:
        # closing(): on a fatal record the pool is stopped before the cleanup below.
        with tqdm(total=sum(len(s.items) for s in todo), unit="img", desc=f"convert -> {out_dir}",
                  disable=None) as progress, \
                contextlib.closing(_write_shards([(out_dir, s, options, size) for s in todo], workers)) as written:
            for record in written:
                if "fatal" in record:
                    image_id, path, problem = record["fatal"]
                    raise SourceError(problem, image_id, path or None)
                done[record["file"]] = record
                progress.update(record["num_examples"] + len(record["errors"]))
    except Exception:
        _remove_dataset_files(out_dir)  # bad input: leave nothing that looks like a dataset
        raise
    shard_records = [(s, done[s.name]) for s in shards]

    manifest = _build_manifest(options, size, shard_records, split_info, fingerprint)
    errors += [e for _, record in shard_records for e in record["errors"]]
    manifest["num_errors"] = len(errors)
    if options.on_error == "skip":
        _write_errors(out_dir, errors)
    manifest_lib.write_manifest(out_dir, manifest)
    tf.io.gfile.rmtree(posixpath.join(out_dir, STATE_DIR))
    return manifest


def _build_manifest(options, size, shard_records, split_info, fingerprint):
    label_set = labels_lib.label_set_named(options.label_set)
    splits, pixel_sum, pixel_sum_sq = {}, np.zeros(4), np.zeros(4)
    source_counts = np.zeros(len(options.images_dirs), np.int64)
    for shard, record in shard_records:
        source_counts += record["source_counts"]
        entry = splits.setdefault(shard.split, {"num_examples": 0, "label_counts": [0] * label_set.num_classes,
                                                "shards": []})
        entry["num_examples"] += record["num_examples"]
        entry["label_counts"] = [a + b for a, b in zip(entry["label_counts"], record["label_counts"])]
        entry["shards"].append({k: record[k] for k in ("file", "num_examples", "sha256", "label_counts", "fold")
                                if k in record})
        if shard.split == "train":
            pixel_sum += record["pixel_sum"]
            pixel_sum_sq += record["pixel_sum_sq"]
    manifest = {
        "schema_version": records.SCHEMA_VERSION,
        "label_set": label_set.name,
        "class_names": list(label_set.class_names),
        "channels": list(labels_lib.CHANNELS),
        "image_format": records.IMAGE_FORMAT,
        "image_size": size,
        "sources": [{"images": images_dir, "csv": options.csv_paths[index] if options.csv_paths else None,
                     "num_examples": int(source_counts[index])}
                    for index, images_dir in enumerate(options.images_dirs)],
        "split": split_info,
        **({"folds": options.folds} if options.folds else {}),
        "splits": splits,
        "fingerprint": fingerprint,  # of the arguments and plan: what --resume compares
    }
    pixels = splits.get("train", {}).get("num_examples", 0) * size * size
    if pixels:
        mean = pixel_sum / pixels
        std = np.sqrt(np.maximum(pixel_sum_sq / pixels - mean**2, 0.0))
        manifest["channel_mean"] = [round(float(m), 4) for m in mean]
        manifest["channel_std"] = [round(float(s), 4) for s in std]
    return manifest
