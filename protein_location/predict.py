"""Batch inference with an exported SavedModel -> Kaggle submission CSV."""

import collections
import concurrent.futures
import io
import os

import numpy as np
import pandas as pd
import tensorflow as tf
from tqdm import tqdm

from protein_location import export, export_versions, labels as labels_lib, labels_csv
from protein_location import thresholds as thresholds_lib


class PredictError(ValueError):
    """Bad prediction input (one line naming the file)."""


# What prediction needs of a loaded SavedModel: the signature chosen, the
# views it averages, and the thresholds its labels use.
ServingModel = collections.namedtuple("ServingModel",
                                      ["serve", "image_size", "thresholds", "class_names", "path", "views"])


def load_saved_model(path, signature=export.SIGNATURE):
    """SavedModel folder or export base -> (the loaded object, its `signature` function)."""
    path = export_versions.resolve_saved_model(path)
    if not tf.io.gfile.exists(os.path.join(path, "saved_model.pb")):
        raise PredictError(f"{path}: not a SavedModel (no saved_model.pb); export one with train_keras.py --export")
    try:
        loaded = tf.saved_model.load(path)
    except (tf.errors.OpError, OSError, KeyError, ValueError) as error:
        raise PredictError(f"{path}: cannot load the SavedModel ({str(error).splitlines()[0]})") from None
    if signature not in loaded.signatures:
        raise PredictError(f"{path}: the SavedModel has no {signature!r} signature (it has "
                           f"{', '.join(sorted(loaded.signatures)) or 'none'}); re-export it with "
                           "`python -m protein_location export --model-dir RUN --out DIR`")
    return loaded, loaded.signatures[signature]


EXPORT_HINT = "export it with train_keras.py --export or python -m protein_location export"


def saved_model_variable(loaded, name, path):
    """The value of the variable `name` a SavedModel of this project carries
    (`loaded.<name>[0]`, export.py's metadata), as a numpy value; a one-line
    PredictError when it is not there (a SavedModel of another tool)."""
    try:
        return getattr(loaded, name)[0].numpy()
    except (AttributeError, IndexError, KeyError, TypeError, ValueError):
        raise PredictError(f"{path}: the SavedModel has no {name} variable; {EXPORT_HINT}") from None


def check_variables(loaded, names, path):
    """Refuses, in one line naming all of them, a SavedModel without the variables `names`."""
    missing = [name for name in names if not _has_variable(loaded, name)]
    if missing:
        noun = "variable" if len(missing) == 1 else "variables"
        raise PredictError(f"{path}: the SavedModel has no {', '.join(missing)} {noun}; {EXPORT_HINT}")


def _has_variable(loaded, name):
    try:
        return isinstance(getattr(loaded, name)[0], tf.Variable)
    except (AttributeError, IndexError, KeyError, TypeError, ValueError):
        return False


def class_names_of(loaded, path="the SavedModel"):
    """The class names a loaded SavedModel of this project carries (its label set)."""
    names = saved_model_variable(loaded, "class_names", path)
    if names.ndim != 1 or names.dtype != object or not names.size:
        raise PredictError(f"{path}: the SavedModel's class_names variable is not a list of names; {EXPORT_HINT}")
    return [name.decode() for name in names]


def check_serving_signature(serve, signature, num_classes, path):
    """The signature must take `image` uint8 [batch, H, W, 4] and return
    `probabilities` and `labels` [batch, num_classes], as export.py writes it."""
    inputs = serve.structured_input_signature[1]
    outputs = serve.structured_outputs
    image = inputs.get("image")
    takes_image = (set(inputs) == {"image"} and image.dtype == tf.uint8 and image.shape.rank == 4
                   and image.shape[-1] in (None, 4))
    gives = isinstance(outputs, dict) and all(
        key in outputs and outputs[key].shape.rank == 2 and outputs[key].shape[-1] in (None, num_classes)
        for key in ("probabilities", "labels"))
    if not (takes_image and gives):
        def describe(specs):
            return ", ".join(f"{key} {spec.dtype.name} {spec.shape}" for key, spec in sorted(specs.items())) \
                if isinstance(specs, dict) else str(specs)
        raise PredictError(f"{path}: its {signature!r} signature takes ({describe(inputs)}) and returns "
                           f"({describe(outputs)}), not image uint8 [batch, height, width, 4] -> probabilities and "
                           f"labels [batch, {num_classes}]; {EXPORT_HINT}")


def load_serving_model(path, tta=None):
    """SavedModel folder or export base -> ServingModel; a ServingModel is
    returned as it is, so callers load once.

    tta: None for `serving_default` (the views and thresholds the run chose),
    1 for `serving_single_view`, 8 for a SavedModel whose serving_default
    averages the 8 flips/rotations. Labels always come from thresholds tuned
    on probabilities computed as the chosen signature computes them.
    """
    if isinstance(path, ServingModel):
        return path
    if tta not in (None, 1, 8):
        raise PredictError(f"--tta must be 1 or 8, got {tta}")
    loaded, serve = load_saved_model(path)
    # A SavedModel of another tool has none of what labels need: say so now,
    # not with a traceback from a later step.
    version = export_versions.resolve_saved_model(path)
    check_variables(loaded, ("image_size", "views", "thresholds", "class_names"), version)
    views = int(saved_model_variable(loaded, "views", version))
    if tta == 8 and views != 8:
        raise PredictError(f"{path}: this SavedModel serves one view, with thresholds tuned for one view; for 8 "
                           "re-export its run with `python -m protein_location export --model-dir RUN --out DIR "
                           "--tta 8`")
    signature, thresholds_name = export.SIGNATURE, "thresholds"
    if tta == 1 and views != 1:
        check_variables(loaded, ("single_view_thresholds",), version)
        loaded, serve = load_saved_model(path, export.SINGLE_VIEW_SIGNATURE)
        signature, thresholds_name, views = export.SINGLE_VIEW_SIGNATURE, "single_view_thresholds", 1
    class_names = class_names_of(loaded, version)
    thresholds = saved_model_variable(loaded, thresholds_name, version)
    if thresholds.shape != (len(class_names),):
        raise PredictError(f"{version}: the SavedModel has {thresholds.size} {thresholds_name} for "
                           f"{len(class_names)} class names; {EXPORT_HINT}")
    check_serving_signature(serve, signature, len(class_names), version)
    image_size = int(saved_model_variable(loaded, "image_size", version))
    return ServingModel(serve, image_size, thresholds, class_names, path, views)


def read_csv(path, columns):
    if not tf.io.gfile.exists(path):
        raise PredictError(f"{path}: CSV not found")
    try:
        with tf.io.gfile.GFile(path, "r") as f:
            table = pd.read_csv(io.StringIO(f.read()), dtype=str, keep_default_na=False)
    except UnicodeDecodeError:
        raise PredictError(f"{path}: not a text CSV (not UTF-8)") from None
    except pd.errors.EmptyDataError:
        raise PredictError(f"{path}: empty CSV, expected columns {','.join(columns) or 'Id'}") from None
    except pd.errors.ParserError as error:
        raise PredictError(f"{path}: not a CSV ({str(error).strip().splitlines()[0]})") from None
    if not set(columns) <= set(table.columns):
        raise PredictError(f"{path}: expected columns {','.join(columns)}, found {','.join(table.columns)!r}")
    return table


def _predict_batch(serve, batch):
    """(probabilities, labels) of one uint8 batch."""
    outputs = serve(image=batch)
    return outputs["probabilities"].numpy(), outputs["labels"].numpy()


def predict_images(model_path, images_dir, ids, batch_size=64, tta=None):
    """Probabilities [n, C] and labels [n, C] of the images `ids` in `images_dir`,
    C the SavedModel's classes (`model_path`: its folder, or a ServingModel;
    `tta` as `load_serving_model`).
    """
    from protein_location import raw_images  # OpenCV only where raw files are read, as in convert

    serve, image_size, *_ = load_serving_model(model_path, tta)
    raw_images.check_images_dir(images_dir)
    probabilities, labels = [], []
    # Reading overlaps inference: OpenCV decodes without holding the GIL.
    with concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool, \
            tqdm(total=len(ids), unit="img", desc="predict", disable=None) as progress:
        for start in range(0, len(ids), batch_size):
            batch_ids = ids[start:start + batch_size]
            images = list(pool.map(lambda i: raw_images.read_image(images_dir, i, image_size), batch_ids))
            batch_probabilities, batch_labels = _predict_batch(serve, tf.constant(np.stack(images)))
            probabilities.append(batch_probabilities)
            labels.append(batch_labels)
            progress.update(len(batch_ids))
    return np.concatenate(probabilities), np.concatenate(labels)


def predict_records(model_path, data_dir, split="test", batch_size=64, tta=None):
    """(Ids, probabilities [n, C], labels [n, C]) of every record of a split
    of a converted dataset (`data_prep convert`), in the manifest's order
    (`model_path`: the SavedModel's folder, or a ServingModel; `tta` as
    `load_serving_model`).

    Streams through `input.make_dataset`: shards are read in parallel and
    decoded while the model runs; the images go in at their stored size, as
    uint8, and `serving_default` resizes them.
    """
    from protein_location import input as input_lib, manifest as manifest_lib

    manifest = manifest_lib.load_manifest(data_dir)
    _, num_examples, _ = manifest_lib.split_summary(data_dir, manifest, split)
    model = load_serving_model(model_path, tta)
    check_same_classes(model.class_names, manifest_lib.class_names(manifest), model.path, data_dir)
    dataset = input_lib.make_dataset(data_dir, split, batch_size, with_ids=True)
    ids, probabilities, labels = [], [], []
    with tqdm(total=num_examples, unit="img", desc=f"predict {split}", disable=None) as progress:
        for images, _, source_ids in dataset:
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
        model_set, data_set = labels_lib.label_set_of_classes(model_classes), labels_lib.label_set_of_classes(data_classes)
        raise PredictError(f"{data_dir}: the dataset's classes ({data_set}, {len(data_classes)}) are not the model's "
                           f"({model_set}, {len(model_classes)}, {model_path}); use a model trained on this label set")


def select_ids(ids, probabilities, label_matrix, wanted, source):
    """The rows of `wanted` Ids, in that order (a sample submission's)."""
    index = {image_id: row for row, image_id in enumerate(ids)}
    missing = [image_id for image_id in wanted if image_id not in index]
    if missing:
        raise PredictError(f"{source}: {len(missing)} Ids of the CSV are not in the records, e.g. {missing[0]}")
    rows = [index[image_id] for image_id in wanted]
    return list(wanted), probabilities[rows], label_matrix[rows]


def write_submission(path, ids, label_matrix):
    """Kaggle submission: `Id,Predicted`, Predicted the space-separated label indices."""
    predicted = [labels_lib.format_target(labels_lib.from_multi_hot(row)) for row in label_matrix]
    with tf.io.gfile.GFile(path, "w") as f:
        pd.DataFrame({"Id": ids, "Predicted": predicted}).to_csv(f, index=False)


def write_probabilities(path, ids, probabilities, class_names):
    """`Id` and one column per class (the model's class names), the model's probabilities."""
    table = pd.DataFrame(np.asarray(probabilities), columns=list(class_names))
    table.insert(0, "Id", ids)
    with tf.io.gfile.GFile(path, "w") as f:
        table.to_csv(f, index=False, float_format="%.6f")


def read_ids(path):
    """The Ids of a sample submission, in its order: column `Id` (2018) or `ID` (2021)."""
    table = read_csv(path, [])
    for column in ("Id", "ID"):
        if column in table.columns:
            return list(table[column])
    raise PredictError(f"{path}: expected an Id (or ID) column, found {','.join(table.columns)!r}")


def score_submission(submission_path, truth_path, label_set=None):
    """Macro F1 (the Kaggle metric) of a submission against known labels:
    `Id,Target` (hpa2018) or `ID,Label` (hpa2021), detected from the header;
    `label_set` ("hpa2018"/"hpa2021") overrides the class count it implies.
    Returns (macro F1, the label set's name).

    Refused in one line (PredictError or SourceError): a duplicate Id in
    either file, an Id of the submission that the truth lacks or the reverse,
    a label that is not an integer of the label set.
    """
    table = read_csv(submission_path, ["Id", "Predicted"])
    first_line = {}
    for line, image_id in enumerate(table["Id"], start=2):
        if not labels_lib.is_valid_id(image_id):
            raise PredictError(f"{submission_path} line {line}: Id {image_id!r} has characters outside "
                               "[A-Za-z0-9_-]")
        if image_id in first_line:
            raise PredictError(f"Id {image_id}: {submission_path} line {line}: duplicate Id (first on line "
                               f"{first_line[image_id]})")
        first_line[image_id] = line
    submission = table.set_index("Id")["Predicted"]
    # The truth is read as convert reads labels: the same header detection, Id and label checks
    # (a duplicate Id there is refused too).
    named = labels_lib.label_set_named(label_set) if label_set else None
    truth, _, chosen = labels_csv.read_labels_csv(truth_path, label_set=named)
    known = {image_id for image_id, _ in truth}
    unknown = [image_id for image_id in submission.index if image_id not in known]
    if unknown:
        raise PredictError(f"{submission_path}: {len(unknown)} Ids are not in {truth_path}, e.g. {unknown[0]}")
    missing = [image_id for image_id, _ in truth if image_id not in submission.index]
    if missing:
        raise PredictError(f"{submission_path}: no prediction for {len(missing)} Ids, e.g. {missing[0]}")

    def predicted(image_id):
        target = submission[image_id]
        try:
            return labels_lib.parse_target(target, chosen.num_classes) if target.strip() else []
        except ValueError as error:
            raise PredictError(f"{submission_path}: Id {image_id}: {error} ({chosen.name})") from None

    y_true = np.stack([labels_lib.to_multi_hot(indices, chosen.num_classes) for _, indices in truth]).astype(int)
    y_pred = np.stack([labels_lib.to_multi_hot(predicted(image_id), chosen.num_classes)
                       for image_id, _ in truth]).astype(int)
    return thresholds_lib.macro_f1(y_true, y_pred), chosen.name
