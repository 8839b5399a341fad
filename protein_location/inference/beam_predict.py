"""Batch prediction on Apache Beam (`predict --runner beam`): Beam's
RunInference over raw stain files or converted records, with the SavedModel
loaded by a ModelHandler of ours.

Beam's own TensorFlow handler loads with `tf.keras.models.load_model`, which
cannot read a SavedModel under Keras 3 (apache/beam#30616): ours loads it as
`predict` does (`serving.load_serving_model`), once per worker process, and
calls the same signature on each batch, in the precision `--precision` names
(resolved on each worker, for its own CPU).

The pipeline: the Ids (or the shards) are spread over the workers, which
read and decode the images (`raw_images.read_image`, `records`), run the
model on batches of up to `--batch-size`, and write one JSON line per image
(its probabilities and labels, or the problem of its files) with Beam's
WriteToText under a scratch folder. The command then reads them back, orders
them as local predict does, and writes the same submission and
probabilities files.

Imported only for `--runner beam` (it imports Apache Beam, an extra).
"""

import json
import posixpath
import tempfile
import uuid

import apache_beam as beam
import numpy as np
import tensorflow as tf
from apache_beam.ml.inference.base import ModelHandler, RunInference

from protein_location.core import beam_jobs, device_precision, manifest as manifest_lib, raw_images, records
from protein_location.core.errors import PredictError, SourceError
from protein_location.data import input_reader
from protein_location.inference import serving

RESULTS_NAME = "predictions"


class SavedModelHandler(ModelHandler):
    """RunInference's ModelHandler for our SavedModels: examples are
    (key, uint8 image [S, S, 4]) pairs, predictions (key, probabilities,
    labels) for each."""

    def __init__(self, model_path, tta=None, precision="auto", batch_size=64):
        super().__init__()
        self.model_path, self.tta, self.precision, self.batch_size = model_path, tta, precision, batch_size

    def load_model(self):
        # Resolved where the model runs: `auto` is a matter of the worker's CPU, not the submitting machine's.
        self.resolved_precision, _ = device_precision.inference_precision(
            self.precision, len(tf.config.list_physical_devices("GPU"))
        )
        return _WorkerModel(serving.load_serving_model(self.model_path, self.tta))

    def run_inference(self, batch, model, inference_args=None):
        # The precision applies to the signature's first call, when its graph is optimized (`precision`).
        with device_precision.inference_precision_scope(self.resolved_precision):
            outputs = model.serving_model.serve(image=tf.constant(np.stack([image for _, image in batch])))
        probabilities, labels = outputs["probabilities"].numpy(), outputs["labels"].numpy()
        return [(key, row, row_labels) for (key, _), row, row_labels in zip(batch, probabilities, labels)]

    def batch_elements_kwargs(self):
        return {"min_batch_size": 1, "max_batch_size": self.batch_size}

    def share_model_across_processes(self):
        return False


class _WorkerModel:
    """A worker's loaded model: Beam shares it between the worker's threads through a weak reference,
    which a ServingModel (a named tuple) cannot have."""

    def __init__(self, serving_model):
        self.serving_model = serving_model


def _read_raw(key, images_dir, image_size, max_pixels):
    """(key, image) of one Id's stain files, or its error line."""
    try:
        return [(key, raw_images.read_image(images_dir, key, image_size, max_pixels))]
    except SourceError as error:
        return [("error", key, str(error))]


def _read_shard(shard_index, data_dir, shard_file, num_classes):
    """(key, stored image) of every record of one shard, keyed by (shard, position): the manifest's order."""
    path = posixpath.join(data_dir, shard_file)
    try:
        for position, serialized in enumerate(tf.data.TFRecordDataset(path)):
            example = records.parse_example(serialized, num_classes)
            yield (shard_index, position, example["source_id"].numpy().decode()), example["image"].numpy()
    except tf.errors.OpError as error:
        yield (
            "error",
            path,
            f"{path}: cannot be read ({manifest_lib.op_error_line(error)}); {manifest_lib.repair_hint(data_dir)}",
        )


def _result_line(prediction):
    key, probabilities, labels = prediction
    return json.dumps({"key": key, "probabilities": probabilities.tolist(), "labels": labels.astype(int).tolist()})


def _error_line(error):
    _, key, problem = error
    return json.dumps({"key": key, "error": problem})


def _split_errors(element, _):
    return 1 if element[0] == "error" else 0


class _Pipeline:
    """Builds the prediction pipeline from the units of work (Ids or shards) and their reader."""

    def __init__(self, units, read, handler, results_prefix):
        self.units, self.read, self.handler, self.results_prefix = units, read, handler, results_prefix

    def __call__(self, pipeline):
        examples, errors = (
            pipeline
            | "Units" >> beam.Create(self.units, reshuffle=False)
            | "Spread" >> beam.Reshuffle()
            | "Read" >> beam.FlatMap(self.read)
            | "SplitErrors" >> beam.Partition(_split_errors, 2)
        )
        predictions = examples | "RunInference" >> RunInference(self.handler) | "ToJson" >> beam.Map(_result_line)
        (
            (predictions, errors | "ErrorsToJson" >> beam.Map(_error_line))
            | "Results" >> beam.Flatten()
            | "Write" >> beam.io.WriteToText(self.results_prefix, file_name_suffix=".jsonl")
        )


def _scratch_folder(beam_options):
    """Where the workers leave their results: under the job's --temp_location
    when it has one (a service's workers cannot write this machine's disk),
    else a temporary folder here (DirectRunner)."""
    options = beam_jobs.pipeline_options(beam_options, PredictError)
    temp_location = options.get_all_options().get("temp_location")
    if temp_location:
        return posixpath.join(temp_location, f"protein-location-predict-{uuid.uuid4().hex}")
    if beam_jobs.runner_name(options) not in ("DirectRunner", "PrismRunner"):
        raise PredictError(
            f"--runner beam on {beam_jobs.runner_name(options)} needs --temp_location in "
            "--beam-options: the workers leave their predictions there"
        )
    return tempfile.mkdtemp(prefix="protein-location-predict-")


def _run(units, read, model_path, tta, precision, batch_size, beam_options):
    """Runs the pipeline; returns {key: (probabilities, labels)} and the first error of each key."""
    scratch = _scratch_folder(beam_options)
    handler = SavedModelHandler(model_path, tta, precision, batch_size)
    try:
        beam_jobs.run(
            _Pipeline(units, read, handler, posixpath.join(scratch, RESULTS_NAME)), beam_options, PredictError
        )
        results, errors = {}, {}
        for path in sorted(tf.io.gfile.glob(posixpath.join(scratch, RESULTS_NAME) + "*.jsonl")):
            with tf.io.gfile.GFile(path) as f:
                for line in f:
                    row = json.loads(line)
                    key = tuple(row["key"]) if isinstance(row["key"], list) else row["key"]
                    if "error" in row:
                        errors[key] = row["error"]
                    else:
                        results[key] = (np.float32(row["probabilities"]), np.array(row["labels"], np.int32))
    finally:
        if tf.io.gfile.exists(scratch):
            tf.io.gfile.rmtree(scratch)
    return results, errors


def predict_images(
    model, images_dir, ids, batch_size=64, precision="auto", beam_options=None, max_pixels=raw_images.DEFAULT_MAX_PIXELS
):
    """`predict.predict_images` on Beam: probabilities [n, C] and labels
    [n, C] of `ids`, in their order. `model` is a ServingModel loaded here
    (for its side and path); the workers load their own."""
    raw_images.check_images_dir(images_dir)
    ids = list(ids)
    results, errors = _run(
        ids,
        _RawReader(images_dir, model.image_size, max_pixels),
        model.path,
        _tta_of(model),
        precision,
        batch_size,
        beam_options,
    )
    for image_id in ids:  # the first bad Id in the order asked, as local predict names it
        if image_id in errors:
            raise PredictError(errors[image_id])
    missing = [image_id for image_id in ids if image_id not in results]
    if missing:
        raise PredictError(f"the Beam pipeline returned no prediction for {len(missing)} Ids ({missing[0]}, ...)")
    return (
        np.stack([results[i][0] for i in ids]).reshape(len(ids), -1),
        np.stack([results[i][1] for i in ids]).reshape(len(ids), -1),
    )


def predict_records(model, data_dir, split="test", batch_size=64, precision="auto", beam_options=None):
    """`predict.predict_records` on Beam: (Ids, probabilities, labels) of
    every record of `split`, in the manifest's order."""
    from protein_location.inference.predict import check_same_classes

    manifest = manifest_lib.DatasetManifest.read(data_dir)
    shards = manifest.shards(split)
    input_reader.check_split_files(manifest, (split,))
    check_same_classes(model.class_names, manifest.class_names, model.path, data_dir)
    reader = _ShardReader(data_dir, [entry["file"] for entry in shards], manifest.num_classes)
    results, errors = _run(
        list(range(len(shards))), reader, model.path, _tta_of(model), precision, batch_size, beam_options
    )
    if errors:
        raise PredictError(sorted(errors.items())[0][1])
    if not results:
        raise PredictError(f"{data_dir}: the {split!r} split has no records")
    # Local predict's order: shards interleaved as its tf.data pipeline reads them.
    located = {key[:2]: key for key in results}
    keys = [located[place] for place in input_reader.read_order([entry["num_examples"] for entry in shards])]
    return ([key[2] for key in keys], np.stack([results[k][0] for k in keys]), np.stack([results[k][1] for k in keys]))


def _tta_of(model):
    return 1 if model.views == 1 else None


class _RawReader:
    def __init__(self, images_dir, image_size, max_pixels):
        self.images_dir, self.image_size, self.max_pixels = images_dir, image_size, max_pixels

    def __call__(self, image_id):
        return _read_raw(image_id, self.images_dir, self.image_size, self.max_pixels)


class _ShardReader:
    def __init__(self, data_dir, shards, num_classes):
        self.data_dir, self.shards, self.num_classes = data_dir, shards, num_classes

    def __call__(self, shard_index):
        return _read_shard(shard_index, self.data_dir, self.shards[shard_index], self.num_classes)
