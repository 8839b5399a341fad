"""Writing shards: worker processes decode, encode and write whole shards
atomically (`.tmp` -> record in .convert/ -> rename), the state that makes a
killed conversion resumable, and the manifest built from the shards' records.

A worker writing a local folder from grayscale PNG or TIFF stains runs
without TensorFlow (`core.file_system`, `tfrecord_lib.TFRecordFile`,
`stain_reader`): it starts in well under a second, and loads TensorFlow only
for an image that needs its decoders or resize, or a gs:// folder."""

import csv
import io
import posixpath

import cv2
import numpy as np

from data_prep import stain_reader, tfrecord_lib, workers as workers_lib
from protein_location.core import (
    file_system,
    labels as labels_lib,
    manifest as manifest_lib,
    output_files,
    records,
    stop_signals,
)
from protein_location.core.errors import OutputError, SourceError
from protein_location.core.json_files import read_json, write_json_atomic
from protein_location.core.lazy_tensorflow import tf

STATE_DIR = ".convert"
ERRORS_NAME = "errors.csv"


def encode_item(task):
    """One Id -> its serialized Example and pixel sums, or its error."""
    images_dir, image_id, labels, size, max_pixels, image_format, png_compression = task
    try:
        image = stain_reader.read_image(images_dir, image_id, size, max_pixels)
    except SourceError as error:
        return {"error": [error.image_id or image_id, error.path or "", error.problem]}
    if image.shape[:2] != (size, size):
        return {
            "error": [
                image_id,
                "",
                f"image is {image.shape[1]}x{image.shape[0]}, others are "
                f"{size}x{size}; pass --size to resize all images",
            ]
        }
    # meanStdDev is ~100x faster than numpy sums in float64 over the pixels.
    mean, std = (v.ravel() for v in cv2.meanStdDev(image))
    pixels = size * size
    encoded = tfrecord_lib.encode_rgby(image, image_format, png_compression)
    return {
        "example": tfrecord_lib.serialize_encoded(encoded, image_format, size, size, image_id, labels or []),
        "sum": (mean * pixels).tolist(),
        "sum_sq": ((np.square(std) + np.square(mean)) * pixels).tolist(),
    }


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
    try:
        return _write_shard(out_dir, shard, options, size, tmp_path)
    except BaseException as error:
        output_files.remove_quietly(tmp_path)
        if isinstance(error, OutputError):
            return {"file": shard.name, "output_error": str(error)}
        reason = output_files.disk_error_reason(error)
        if reason is not None:
            return {"file": shard.name, "output_error": f"{tmp_path}: cannot write it: {reason}"}
        raise


def _write_shard(out_dir, shard, options, size, tmp_path):
    label_counts = np.zeros(labels_lib.label_set_named(options.label_set).num_classes, np.int64)
    source_counts = np.zeros(len(options.images_dirs), np.int64)
    pixel_sum, pixel_sum_sq, errors, count = np.zeros(4), np.zeros(4), [], 0
    with tfrecord_lib.TFRecordFile(tmp_path) as writer:
        for image_id, labels, source in shard.items:
            result = encode_item(
                (
                    options.images_dirs[source],
                    image_id,
                    labels,
                    size,
                    options.max_pixels,
                    options.image_format,
                    options.png_compression,
                )
            )
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
    output_files.sync_file(tmp_path)
    record = {
        "file": shard.name,
        "num_examples": count,
        "sha256": writer.sha256 or manifest_lib.file_sha256(tmp_path),
        "num_bytes": file_system.size(tmp_path),
        "ends_sha256": manifest_lib.shard_ends_sha256(tmp_path),
        "label_counts": label_counts.tolist(),
        **({"fold": shard.fold} if shard.fold is not None else {}),
        "source_counts": source_counts.tolist(),
        "pixel_sum": pixel_sum.tolist(),
        "pixel_sum_sq": pixel_sum_sq.tolist(),
        "errors": errors,
    }
    write_json_atomic(posixpath.join(out_dir, STATE_DIR, shard.name + ".json"), record)
    file_system.rename(tmp_path, posixpath.join(out_dir, shard.name))
    return record


def raise_for_record(record):
    """Raises what a worker's record reports instead of a shard: bad input
    (SourceError) or a write that failed (OutputError). Exceptions with their
    own __init__ do not cross processes; the record carries their words."""
    if "fatal" in record:
        image_id, path, problem = record["fatal"]
        raise SourceError(problem, image_id, path or None)
    if "output_error" in record:
        raise OutputError(record["output_error"])


def write_shards(tasks, workers):
    """Yields each shard's record as it completes, from W processes (or this one)."""
    if workers <= 1 or len(tasks) <= 1:
        for task in tasks:
            stop_signals.raise_if_requested()  # between shards: this process is the writer
            yield write_shard(task)
        return
    # Spawned, not forked (this process has TensorFlow loaded). Each worker
    # imports this module, once: TensorFlow only when a task needs it.
    with workers_lib.process_pool(min(workers, len(tasks)), preload=__name__) as pool:
        records = pool.imap_unordered(write_shard, tasks)
        while True:
            with stop_signals.interruptible():  # waiting on the workers: a stop signal ends the wait at once
                record = next(records, None)
            if record is None:
                return
            yield record


def completed_record(out_dir, shard):
    """A shard's record from an earlier run, if the shard on disk matches it."""
    record_path = posixpath.join(out_dir, STATE_DIR, shard.name + ".json")
    path = posixpath.join(out_dir, shard.name)
    if not (tf.io.gfile.exists(record_path) and tf.io.gfile.exists(path)):
        return None
    record = read_json(record_path)
    return record if manifest_lib.file_sha256(path) == record["sha256"] else None


def finished_dataset(out_dir, fingerprint):
    """The manifest of the finished dataset in out_dir if the same arguments
    and inputs made it, None if there is none; refuses any other."""
    if not tf.io.gfile.exists(posixpath.join(out_dir, manifest_lib.MANIFEST_NAME)):
        return None
    manifest = manifest_lib.DatasetManifest.read(out_dir)
    if manifest.fingerprint == fingerprint:
        return manifest
    why = (
        "was made with different arguments or inputs"
        if manifest.fingerprint is not None
        else "does not record the arguments that made it"
    )
    raise SourceError(
        f"holds a finished dataset (dataset.json) that {why}; pass --overwrite to replace it", path=out_dir
    )


def prepare_output(out_dir, fingerprint, overwrite, resume):
    """Refuses to mix runs; returns True when an unfinished run is resumed."""
    state = posixpath.join(out_dir, STATE_DIR)
    plan_path = posixpath.join(state, "plan.json")
    if overwrite and tf.io.gfile.isdir(out_dir):
        remove_dataset_files(out_dir)
    if tf.io.gfile.exists(posixpath.join(out_dir, manifest_lib.MANIFEST_NAME)):
        raise SourceError(
            "already holds a finished dataset (dataset.json); pass --overwrite to replace it", path=out_dir
        )
    if tf.io.gfile.exists(plan_path):
        same = read_json(plan_path)["fingerprint"] == fingerprint
        if resume and same:
            return True
        hint = (
            "it was started with different arguments or inputs; rerun it with its own, or pass --overwrite"
            if resume
            else "pass --resume (same arguments) to finish it, or --overwrite to start again"
        )
        raise SourceError(f"holds an unfinished conversion; {hint}", path=out_dir)
    if tf.io.gfile.isdir(out_dir) and any(n.endswith((".tfrecord", ".tmp")) for n in tf.io.gfile.listdir(out_dir)):
        raise SourceError("already holds TFRecord shards; pass --overwrite to replace them", path=out_dir)
    tf.io.gfile.makedirs(state)
    write_json_atomic(plan_path, {"fingerprint": fingerprint})
    return False


def remove_dataset_files(out_dir):
    """Deletes what a conversion writes in out_dir, and nothing else."""
    state = posixpath.join(out_dir, STATE_DIR)
    if tf.io.gfile.isdir(state):
        tf.io.gfile.rmtree(state)
    for name in tf.io.gfile.listdir(out_dir):
        if name.endswith((".tfrecord", ".tfrecord.tmp")) or name in (manifest_lib.MANIFEST_NAME, ERRORS_NAME):
            tf.io.gfile.remove(posixpath.join(out_dir, name))
    output_files.remove_stale_temporaries(out_dir)


def write_errors(out_dir, errors):
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["Id", "file", "problem"])
    writer.writerows(errors)
    output_files.write_atomic(posixpath.join(out_dir, ERRORS_NAME), buffer.getvalue())


def build_manifest(out_dir, options, size, shard_records, split_info, fingerprint, num_errors):
    """The DatasetManifest of the written shards (`shard_records`: (shard, its record) pairs)."""
    label_set = labels_lib.label_set_named(options.label_set)
    splits, pixel_sum, pixel_sum_sq = {}, np.zeros(4), np.zeros(4)
    source_counts = np.zeros(len(options.images_dirs), np.int64)
    for shard, record in shard_records:
        source_counts += record["source_counts"]
        entry = splits.setdefault(
            shard.split, {"num_examples": 0, "label_counts": [0] * label_set.num_classes, "shards": []}
        )
        entry["num_examples"] += record["num_examples"]
        entry["label_counts"] = [a + b for a, b in zip(entry["label_counts"], record["label_counts"])]
        entry["shards"].append(
            {
                k: record[k]
                for k in ("file", "num_examples", "sha256", "num_bytes", "ends_sha256", "label_counts", "fold")
                if k in record
            }
        )
        if shard.split == "train":
            pixel_sum += record["pixel_sum"]
            pixel_sum_sq += record["pixel_sum_sq"]
    pixels = splits.get("train", {}).get("num_examples", 0) * size * size
    mean = std = None
    if pixels:
        mean = pixel_sum / pixels
        std = np.sqrt(np.maximum(pixel_sum_sq / pixels - mean**2, 0.0))
        mean, std = tuple(round(float(m), 4) for m in mean), tuple(round(float(s), 4) for s in std)
    return manifest_lib.DatasetManifest(
        data_dir=out_dir,
        schema_version=records.SCHEMA_VERSIONS[options.image_format],
        label_set=label_set.name,
        class_names=tuple(label_set.class_names),
        channels=tuple(labels_lib.CHANNELS),
        image_format=options.image_format,
        image_size=size,
        sources=tuple(
            {
                "images": images_dir,
                "csv": options.csv_paths[index] if options.csv_paths else None,
                "num_examples": int(source_counts[index]),
            }
            for index, images_dir in enumerate(options.images_dirs)
        ),
        split=split_info,
        folds=options.folds or None,
        splits=splits,
        fingerprint=fingerprint,  # of the arguments and plan: what --resume compares
        channel_mean=mean,
        channel_std=std,
        num_errors=num_errors,
    )


def _recorded_shards(manifest):
    """{file name: its dataset.json entry} of every shard of a finished dataset."""
    return {entry["file"]: entry for split in manifest.splits.values() for entry in split["shards"]}


def damaged_shards(out_dir, manifest, shards):
    """The planned `shards` of a finished dataset whose file is missing or
    differs from its sha256 in dataset.json."""
    recorded = _recorded_shards(manifest)
    damaged = []
    for shard in shards:
        path = posixpath.join(out_dir, shard.name)
        entry = recorded.get(shard.name)
        if entry is None or not tf.io.gfile.exists(path) or manifest_lib.file_sha256(path) != entry["sha256"]:
            damaged.append(shard)
    return damaged


def rewrite_shards(out_dir, manifest, shards, options, size, write):
    """Writes `shards` of a finished dataset again with `write` (`write_shards`
    with its workers, or Beam's): their bytes depend only on
    the plan, so they come out as dataset.json records them; SourceError
    if one does not, because the raw images changed since."""
    recorded = _recorded_shards(manifest)
    tf.io.gfile.makedirs(posixpath.join(out_dir, STATE_DIR))
    try:
        for record in write([(out_dir, shard, options, size) for shard in shards]):
            raise_for_record(record)
            if record["sha256"] != recorded[record["file"]]["sha256"]:
                raise SourceError(
                    f"rewrote {record['file']}, and it differs from the one dataset.json records: the "
                    "raw images changed since the conversion; convert again with --overwrite",
                    path=out_dir,
                )
    finally:
        tf.io.gfile.rmtree(posixpath.join(out_dir, STATE_DIR))
