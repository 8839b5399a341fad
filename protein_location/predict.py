"""Batch inference with an exported SavedModel -> Kaggle submission CSV."""

import concurrent.futures
import io
import os

import numpy as np
import pandas as pd
import tensorflow as tf
from tqdm import tqdm

from protein_location import augment, export, labels as labels_lib
from protein_location import thresholds as thresholds_lib


class PredictError(ValueError):
    """Bad prediction input (one line naming the file)."""


def load_serving_model(path):
    """SavedModel folder or export base -> (serving function, the model's input side, its thresholds)."""
    path = export.resolve_saved_model(path)
    if not tf.io.gfile.exists(os.path.join(path, "saved_model.pb")):
        raise PredictError(f"{path}: not a SavedModel (no saved_model.pb); export one with train_keras.py --export")
    try:
        loaded = tf.saved_model.load(path)
        serve = loaded.signatures[export.SIGNATURE]
    except (tf.errors.OpError, OSError, KeyError, ValueError) as error:
        raise PredictError(f"{path}: cannot load the SavedModel ({str(error).splitlines()[0]})") from None
    image_size = int(loaded.image_size[0].numpy()) if hasattr(loaded, "image_size") else None
    thresholds = loaded.thresholds[0].numpy() if hasattr(loaded, "thresholds") else 0.5
    return serve, image_size, thresholds


def read_csv(path, columns):
    if not tf.io.gfile.exists(path):
        raise PredictError(f"{path}: CSV not found")
    with tf.io.gfile.GFile(path, "r") as f:
        table = pd.read_csv(io.StringIO(f.read()), dtype=str, keep_default_na=False)
    if not set(columns) <= set(table.columns):
        raise PredictError(f"{path}: expected columns {','.join(columns)}, found {','.join(table.columns)!r}")
    return table


def predict_images(model_path, images_dir, ids, batch_size=64, tta=1):
    """Probabilities [n, 28] and labels [n, 28] of the images `ids` in `images_dir`.

    tta=8 averages the probabilities of the 8 flips/rotations of each image
    and applies the model's thresholds to the average.
    """
    from data_prep import sources  # the raw-layout reader, shared with convert

    if tta not in (1, 8):
        raise PredictError(f"--tta must be 1 or 8, got {tta}")
    serve, image_size, thresholds = load_serving_model(model_path)
    sources.check_images_dir(images_dir)
    probabilities, labels = [], []
    # Reading overlaps inference: OpenCV decodes without holding the GIL.
    with concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool, \
            tqdm(total=len(ids), unit="img", desc="predict", disable=None) as progress:
        for start in range(0, len(ids), batch_size):
            batch_ids = ids[start:start + batch_size]
            images = list(pool.map(lambda i: sources.read_image(images_dir, i, image_size), batch_ids))
            batch = tf.constant(np.stack(images))
            if tta == 1:
                outputs = serve(image=batch)
                probabilities.append(outputs["probabilities"].numpy())
                labels.append(outputs["labels"].numpy())
            else:
                views = augment.dihedral_views(batch)
                mean = np.mean([serve(image=view)["probabilities"].numpy() for view in views], axis=0)
                probabilities.append(mean)
                labels.append((mean >= thresholds).astype(np.int32))
            progress.update(len(batch_ids))
    return np.concatenate(probabilities), np.concatenate(labels)


def write_submission(path, ids, label_matrix):
    """Kaggle submission: `Id,Predicted`, Predicted the space-separated label indices."""
    predicted = [labels_lib.format_target(labels_lib.from_multi_hot(row)) for row in label_matrix]
    with tf.io.gfile.GFile(path, "w") as f:
        pd.DataFrame({"Id": ids, "Predicted": predicted}).to_csv(f, index=False)


def write_probabilities(path, ids, probabilities):
    """`Id` and one column per location (the 28 names), the model's probabilities."""
    table = pd.DataFrame(np.asarray(probabilities), columns=list(labels_lib.CLASS_NAMES))
    table.insert(0, "Id", ids)
    with tf.io.gfile.GFile(path, "w") as f:
        table.to_csv(f, index=False, float_format="%.6f")


def score_submission(submission_path, truth_path):
    """Macro F1 (the Kaggle metric) of a submission against an `Id,Target` CSV."""
    submission = read_csv(submission_path, ["Id", "Predicted"]).set_index("Id")["Predicted"]
    truth = read_csv(truth_path, ["Id", "Target"]).set_index("Id")["Target"]
    missing = truth.index.difference(submission.index)
    if len(missing):
        raise PredictError(f"{submission_path}: no prediction for {len(missing)} Ids, e.g. {missing[0]}")

    def multi_hot(targets, parse):
        return np.stack([labels_lib.to_multi_hot(parse(t)) for t in targets]).astype(int)

    y_true = multi_hot(truth, labels_lib.parse_target)
    y_pred = multi_hot(submission[truth.index], lambda t: labels_lib.parse_target(t) if t.strip() else [])
    return thresholds_lib.macro_f1(y_true, y_pred)
