"""Raw HPA layout -> sharded TFRecords + dataset.json: reads the sources,
plans (`shard_plan`), writes (`shard_writer`).

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
import dataclasses
import functools
import posixpath

import numpy as np
import tensorflow as tf
from tqdm import tqdm

from data_prep import beam_convert, shard_plan, shard_writer, split as split_lib, stain_reader, workers as workers_lib
from data_prep.shard_plan import ConvertOptions
from protein_location.core import (
    beam_jobs,
    folder_lock,
    labels as labels_lib,
    labels_csv,
    output_files,
    raw_images,
    records,
    stop_signals,
)
from protein_location.core.errors import DataPrepError, OutputError, SourceError

SAMPLE_FOR_SHARD_SIZE = 8


def _source_size(entries, options):
    """The common side of the source images when no --size is given."""
    for image_id, _, source in entries:
        try:
            image = stain_reader.read_image(options.images_dirs[source], image_id, None, options.max_pixels)
        except SourceError:
            if options.on_error == "fail":
                raise
            continue
        if image.shape[0] != image.shape[1]:
            raise SourceError(f"image is {image.shape[1]}x{image.shape[0]}, not square; pass --size", image_id)
        return image.shape[0]
    raise SourceError("no readable image", path=", ".join(options.images_dirs))


def _bytes_per_example(splits, options, size):
    """Mean record size over a few evenly spaced examples (deterministic)."""
    items = [item for split_items in splits.values() for item in split_items]
    picks = np.linspace(0, len(items) - 1, min(SAMPLE_FOR_SHARD_SIZE, len(items))).astype(int)
    sizes = [
        len(result["example"])
        for result in (
            shard_writer.encode_item(
                (
                    options.images_dirs[items[i][2]],
                    *items[i][:2],
                    size,
                    options.max_pixels,
                    options.image_format,
                    options.png_compression,
                )
            )
            for i in picks
        )
        if "example" in result
    ]
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
        raise DataPrepError(
            f"--csv and --images pair up in order: got {len(csv_paths)} --csv and {len(images_dirs)} --images"
        )
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
                "or name one with --label-set"
            )
    return entries, errors, label_set or (found_sets[0] if found_sets else labels_lib.HPA2018)


def entry_groups(entries, csv_paths, group_column):
    """The split group of each entry: from `group_column` of its source's CSV,
    else `split.group_of_id` (an HPAv18 Id without its `_<field>`)."""
    if group_column is None:
        return split_lib.groups_of_ids([image_id for image_id, _, _ in entries])
    columns = [labels_csv.read_csv_column(csv_path, group_column) for csv_path in csv_paths]
    return [columns[source][image_id] for image_id, _, source in entries]


def convert(
    images_dir,
    out_dir,
    csv_path=None,
    size=None,
    val_fraction=0.1,
    folds=None,
    num_shards=None,
    shard_mb=150.0,
    seed=0,
    workers=None,
    on_error="fail",
    max_pixels=raw_images.DEFAULT_MAX_PIXELS,
    png_compression=0,
    overwrite=False,
    resume=False,
    label_set=None,
    group_column=None,
    image_format=records.DEFAULT_IMAGE_FORMAT,
    runner="local",
    beam_options=None,
):
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
        png_compression: with image_format "png", the zlib level of the stored
            PNGs, 0 (fastest, largest) to 9.
        overwrite: replace a dataset already in `out_dir`.
        resume: finish an interrupted conversion started with the same arguments;
            on the finished dataset of the same arguments, do nothing and
            return its manifest with `"already_complete": True`.
        label_set: "hpa2018" or "hpa2021"; None detects it from the CSV header
            (`Id,Target` -> hpa2018, `ID,Label` -> hpa2021).
        group_column: a CSV column whose values group images that must stay on
            one side of the split; None groups HPAv18 fields of one well.
        image_format: how records store the image (`records.IMAGE_FORMATS`):
            "png" (schema 1, smaller with png_compression 1-9) or "raw"
            bytes (schema 2: faster to write and to decode).
        runner: "local" (this machine's worker processes) or "beam": the same
            plan as an Apache Beam pipeline, one element per shard
            (`data_prep.beam_convert`); the output is byte-identical.
        beam_options: with runner "beam", Beam's pipeline options as one
            string of flags (`--runner=DataflowRunner --project=...`); None
            runs on Beam's DirectRunner.
    """
    _check_flags(num_shards, on_error, image_format, png_compression, group_column, csv_path)
    beam_jobs.check_runner(runner, beam_options, DataPrepError)
    if runner == "beam" and workers is not None:
        raise DataPrepError(
            "--workers is for --runner local; on Beam the runner sizes its workers "
            "(DirectRunner: --direct_num_workers in --beam-options)"
        )
    if runner == "beam" and out_dir.startswith("ram://"):
        raise DataPrepError("--runner beam cannot write ram://: TensorFlow's RAM filesystem lives in one process")
    output_files.check_output_dir(out_dir, "--out")
    images_dirs, csv_paths = _as_tuple(images_dir), _as_tuple(csv_path)
    if out_dir.startswith("ram://"):
        workers = 1  # TensorFlow's RAM filesystem lives in one process: workers' writes would vanish
    entries, errors, chosen_set = read_sources(
        images_dirs, csv_paths, on_error, label_set and labels_lib.label_set_named(label_set)
    )
    if runner == "beam":
        write_shards = functools.partial(beam_convert.write_shards, beam_options=beam_options)
    else:
        write_shards = functools.partial(
            shard_writer.write_shards, workers=workers or workers_lib.default_workers(len(entries))
        )
    options = ConvertOptions(
        images_dirs,
        csv_paths,
        chosen_set.name,
        group_column,
        size,
        0.0 if folds else val_fraction,
        folds,
        num_shards,
        shard_mb,
        seed,
        on_error,
        max_pixels,
        png_compression,
        image_format,
    )
    options, shards, split_info, fingerprint = _plan(entries, options, chosen_set)
    # Locked once the plan stands (reading the sources writes nothing): one conversion writes --out at a time.
    with folder_lock.FolderLock(out_dir, "conversion"):
        return _write_dataset(
            out_dir, shards, options, write_shards, split_info, fingerprint, errors, resume, overwrite
        )


def _write_dataset(out_dir, shards, options, write_shards, split_info, fingerprint, errors, resume, overwrite):
    """Writes the planned shards with `write_shards` (tasks -> their records,
    `shard_writer.write_shards` or `beam_convert.write_shards`), then dataset.json."""
    try:
        finished = shard_writer.finished_dataset(out_dir, fingerprint) if resume and not overwrite else None
        if finished is not None:
            return _repair(out_dir, finished, shards, options, write_shards)
        resuming = shard_writer.prepare_output(out_dir, fingerprint, overwrite, resume)
        shard_records = _write(out_dir, shards, options, write_shards, resuming)
        errors += [e for _, record in shard_records for e in record["errors"]]
        manifest = shard_writer.build_manifest(
            out_dir, options, options.size, shard_records, split_info, fingerprint, num_errors=len(errors)
        )
        if options.on_error == "skip":
            shard_writer.write_errors(out_dir, errors)
        manifest.write()
    except OutputError as error:
        raise OutputError(f"{error}; {RESUME_HINT}") from None
    except stop_signals.StopRequested as stop:
        raise stop.with_message(f"stopped by {stop.name}; {RESUME_HINT}") from None
    tf.io.gfile.rmtree(posixpath.join(out_dir, shard_writer.STATE_DIR))
    return manifest.to_json()


RESUME_HINT = "the finished shards are kept: rerun the same command with --resume to finish the conversion"


def _repair(out_dir, finished, shards, options, write_shards):
    """convert --resume on a finished dataset: rewrites the shards that are
    missing or damaged (their sha256 differs from dataset.json), if any."""
    damaged = shard_writer.damaged_shards(out_dir, finished, shards)
    if not damaged:
        return {**finished.to_json(), "already_complete": True}
    shard_writer.rewrite_shards(out_dir, finished, damaged, options, options.size, write_shards)
    return {**finished.to_json(), "repaired": [shard.name for shard in damaged]}


def _check_flags(num_shards, on_error, image_format, png_compression, group_column, csv_path):
    if num_shards is not None and num_shards < 1:
        raise DataPrepError(f"--shards must be at least 1, got {num_shards}")
    if on_error not in ("fail", "skip"):
        raise DataPrepError(f"--on-error must be fail or skip, got {on_error!r}")
    if image_format not in records.IMAGE_FORMATS:
        raise DataPrepError(f"--image-format must be {' or '.join(records.IMAGE_FORMATS)}, got {image_format!r}")
    if not 0 <= png_compression <= 9:
        raise DataPrepError(f"--png-compression must be 0-9, got {png_compression}")
    if png_compression and image_format != "png":
        raise DataPrepError(
            f"--png-compression {png_compression} needs --image-format png ({image_format} records are not compressed)"
        )
    if group_column is not None and not csv_path:
        raise DataPrepError("--group-column needs --csv")


def _plan(entries, options, label_set):
    """(options with the size settled, shards, the split's description, the fingerprint)."""
    matrix, groups = None, None
    if options.csv_paths:
        matrix = shard_plan.label_matrix(entries, label_set)
        groups = entry_groups(entries, options.csv_paths, options.group_column)
    splits = shard_plan.plan_splits(entries, options, matrix, groups)
    split_info = shard_plan.describe_split(entries, splits, matrix, groups, options, label_set)
    options = dataclasses.replace(options, size=options.size or _source_size(entries, options))
    bytes_per_example = _bytes_per_example(splits, options, options.size) if options.num_shards is None else None
    shards = shard_plan.plan_shards(splits, options, bytes_per_example)
    return options, shards, split_info, shard_plan.fingerprint(options, shards)


def _write(out_dir, shards, options, write_shards, resuming):
    """Writes every shard not already complete; returns [(shard, its record)] in plan order."""
    done = {s.name: shard_writer.completed_record(out_dir, s) for s in shards} if resuming else {}
    todo = [s for s in shards if not done.get(s.name)]
    tasks = [(out_dir, s, options, options.size) for s in todo]
    try:
        # closing(): on a fatal record the pool is stopped before the cleanup below.
        with (
            tqdm(
                total=sum(len(s.items) for s in todo), unit="img", desc=f"convert -> {out_dir}", disable=None
            ) as progress,
            contextlib.closing(write_shards(tasks)) as written,
        ):
            for record in written:
                shard_writer.raise_for_record(record)
                done[record["file"]] = record
                progress.update(record["num_examples"] + len(record["errors"]))
    except OutputError:
        raise  # a full disk: the finished shards stay for --resume
    except Exception:
        shard_writer.remove_dataset_files(out_dir)  # bad input: leave nothing that looks like a dataset
        raise
    return [(s, done[s.name]) for s in shards]
