"""Conversion on Apache Beam (`convert --runner beam`): the same plan as the
local converter, one element per shard, each written by
`shard_writer.write_shard` on a Beam worker.

A shard's bytes depend only on its planned items, so whichever worker
writes it, and however often a runner retries it, the shards and
dataset.json are byte-identical to `--workers 1`'s. The workers hand their
results back through the output folder, not through Beam: a written shard's
record is already in `.convert/<shard>.json` (what `--resume` reads), and a
shard that failed (bad input with `--on-error fail`, a full disk) leaves
`.convert/<shard>.failed.json`. The converter, once the pipeline is done,
reads them in plan order and goes on as after its own pool: it raises the
first failure, or builds dataset.json and errors.csv from every record.
"""

import os
import posixpath

import tensorflow as tf

from data_prep import shard_writer, workers as workers_lib
from protein_location.core import beam_jobs
from protein_location.core.errors import DataPrepError, OutputError
from protein_location.core.json_files import read_json, write_json_atomic

FAILED_SUFFIX = ".failed.json"


def _failed_path(out_dir, shard_name):
    return posixpath.join(out_dir, shard_writer.STATE_DIR, shard_name + FAILED_SUFFIX)


def write_shard_element(task):
    """The pipeline's one step: writes the shard of `task` (`shard_writer.write_shard`)
    and leaves a failure's record where the converter finds it."""
    out_dir, shard, _, _ = task
    record = shard_writer.write_shard(task)
    if "fatal" in record or "output_error" in record:
        write_json_atomic(_failed_path(out_dir, shard.name), record)
    return shard.name


class _WriteShards:
    """Builds the pipeline: the tasks, spread over the workers, each written."""

    def __init__(self, tasks):
        self.tasks = tasks

    def __call__(self, pipeline):
        import apache_beam as beam

        # Reshuffle: without it a runner may keep every shard in the bundle of the Create, on one worker.
        (
            pipeline
            | "Shards" >> beam.Create(self.tasks, reshuffle=False)
            | "Spread" >> beam.Reshuffle()
            | "WriteShard" >> beam.Map(_write_on_worker, os.getpid())
        )


def _write_on_worker(task, converter_pid):
    # A DirectRunner worker process is the converter's child: it must not go on
    # writing into --out once the converter, and its lock on the folder, are gone.
    if os.getppid() == converter_pid:
        workers_lib.die_with_parent(converter_pid)
    return write_shard_element(task)


def write_shards(tasks, beam_options):
    """Runs the pipeline over `tasks` (as `shard_writer.write_shards` takes
    them) and yields each shard's record in task order: the written shard's
    record, or the failure it left."""
    if not tasks:
        return
    out_dir = tasks[0][0]
    for _, shard, _, _ in tasks:  # an earlier run's failures are not this run's
        if tf.io.gfile.exists(_failed_path(out_dir, shard.name)):
            tf.io.gfile.remove(_failed_path(out_dir, shard.name))
    beam_jobs.run(_WriteShards(tasks), beam_options, DataPrepError)
    for _, shard, _, _ in tasks:
        yield _result(out_dir, shard)


def _result(out_dir, shard):
    failed = _failed_path(out_dir, shard.name)
    if tf.io.gfile.exists(failed):
        return read_json(failed)
    record_path = posixpath.join(out_dir, shard_writer.STATE_DIR, shard.name + ".json")
    path = posixpath.join(out_dir, shard.name)
    if not (tf.io.gfile.exists(record_path) and tf.io.gfile.exists(path)):
        raise OutputError(
            f"{path}: the Beam pipeline finished without writing it (nor a failure); see the runner's worker logs"
        )
    record = read_json(record_path)
    if tf.io.gfile.stat(path).length != record["num_bytes"]:
        raise OutputError(
            f"{path}: {tf.io.gfile.stat(path).length} bytes, its record says {record['num_bytes']}: "
            "another process wrote it meanwhile"
        )
    return record
