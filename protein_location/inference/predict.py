"""Batch inference with an exported SavedModel, from raw stain files or
converted TFRecords: probabilities and labels per image (see `submission`
for the CSVs)."""

import numpy as np
import tensorflow as tf
from tqdm import tqdm

from protein_location.core import labels as labels_lib, manifest as manifest_lib, raw_images, stop_signals
from protein_location.core.errors import PredictError
from protein_location.data import input_reader
from protein_location.inference import serving


def _predict_batch(serve, batch):
    """(probabilities, labels) of one uint8 batch."""
    outputs = serve(image=batch)
    return outputs["probabilities"].numpy(), outputs["labels"].numpy()


def predict_images(model_path, images_dir, ids, batch_size=64, tta=None):
    """Probabilities [n, C] and labels [n, C] of the images `ids` in `images_dir`,
    C the SavedModel's classes (`model_path`: its folder, or a ServingModel;
    `tta` as `serving.load_serving_model`).

    One tf.data pipeline: the files of the next batches are read, decoded and
    resized to the model's side in parallel while the model runs on this one.
    """
    serve, image_size, *_ = serving.load_serving_model(model_path, tta)
    raw_images.check_images_dir(images_dir)
    ids = list(ids)
    batches = iter(raw_images.image_dataset(images_dir, ids, image_size).batch(batch_size).prefetch(2))
    probabilities, labels = [], []
    with tqdm(total=len(ids), unit="img", desc="predict", disable=None) as progress:
        for start in range(0, len(ids), batch_size):
            batch_ids = ids[start : start + batch_size]
            stop_signals.raise_if_requested()
            try:
                images, ok = next(batches)
            except tf.errors.OpError as error:
                _raise_for_bad_image(images_dir, batch_ids, image_size, error.message)
            if not ok.numpy().all():
                images = _read_refused(images_dir, batch_ids, images.numpy(), ok.numpy(), image_size)
            batch_probabilities, batch_labels = _predict_batch(serve, images)
            probabilities.append(batch_probabilities)
            labels.append(batch_labels)
            progress.update(len(batch_ids))
    return np.concatenate(probabilities), np.concatenate(labels)


def _read_refused(images_dir, batch_ids, images, ok, image_size):
    """The batch with the images its pipeline refused (`ok` False) read by
    `raw_images.read_image`: a file over the cap or damaged raises its
    SourceError there, naming it; a TIFF under another name (which only the
    Python reader decodes) is read."""
    for index in np.flatnonzero(~ok):
        images[index] = raw_images.read_image(images_dir, batch_ids[index], image_size)
    return images


def _raise_for_bad_image(images_dir, batch_ids, image_size, what):
    """Reads a batch that failed in the pipeline one Id at a time: the bad
    file raises its SourceError (raw_images.read_image)."""
    for image_id in batch_ids:
        raw_images.read_image(images_dir, image_id, image_size)
    raise PredictError(
        f"{images_dir}: the Ids {batch_ids[0]} to {batch_ids[-1]} failed to read ({what}), yet each reads alone"
    )


def predict_records(model_path, data_dir, split="test", batch_size=64, tta=None):
    """(Ids, probabilities [n, C], labels [n, C]) of every record of a split
    of a converted dataset (`data_prep convert`), in the manifest's order
    (`model_path`: the SavedModel's folder, or a ServingModel; `tta` as
    `serving.load_serving_model`).

    Streams through `input_reader.make_dataset`: shards are read in parallel and
    decoded while the model runs; the images go in at their stored size, as
    uint8, and `serving_default` resizes them.
    """
    manifest = manifest_lib.DatasetManifest.read(data_dir)
    num_examples = manifest.num_examples(split)
    input_reader.check_split_files(manifest, (split,))
    model = serving.load_serving_model(model_path, tta)
    check_same_classes(model.class_names, manifest.class_names, model.path, data_dir)
    dataset = input_reader.make_dataset(manifest, split, batch_size, with_ids=True)
    ids, probabilities, labels = [], [], []
    with (
        tqdm(total=num_examples, unit="img", desc=f"predict {split}", disable=None) as progress,
        input_reader.named_read_errors(manifest, (split,)),
    ):
        for images, _, source_ids in dataset:
            stop_signals.raise_if_requested()
            # Stored pixels are whole numbers on 0-255: the cast is exact.
            batch_probabilities, batch_labels = _predict_batch(model.serve, tf.cast(images, tf.uint8))
            ids.extend(i.decode() for i in source_ids.numpy())
            probabilities.append(batch_probabilities)
            labels.append(batch_labels)
            progress.update(len(batch_probabilities))
    if not ids:
        raise PredictError(f"{data_dir}: the {split!r} split has no records")
    return ids, np.concatenate(probabilities), np.concatenate(labels)


def check_same_classes(model_classes, data_classes, model_path, data_dir):
    """A model trained on one label set refuses data of another (their indices mean different classes)."""
    if list(model_classes) != list(data_classes):
        model_set, data_set = (
            labels_lib.label_set_of_classes(model_classes),
            labels_lib.label_set_of_classes(data_classes),
        )
        raise PredictError(
            f"{data_dir}: the dataset's classes ({data_set}, {len(data_classes)}) are not the model's "
            f"({model_set}, {len(model_classes)}, {model_path}); use a model trained on this label set"
        )
