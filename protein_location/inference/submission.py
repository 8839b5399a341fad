"""Submissions: the Kaggle CSV (`Id,Predicted`), a probabilities CSV, the
Ids of a sample submission, and the macro F1 of a submission against known labels."""

import io

import numpy as np
import pandas as pd
import tensorflow as tf

from protein_location.core import labels as labels_lib, labels_csv, output_files
from protein_location.core.errors import PredictError
from protein_location.evaluation import thresholds as thresholds_lib


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
    output_files.write_atomic(path, pd.DataFrame({"Id": ids, "Predicted": predicted}).to_csv(index=False))


def write_probabilities(path, ids, probabilities, class_names):
    """`Id` and one column per class (the model's class names), the model's probabilities."""
    table = pd.DataFrame(np.asarray(probabilities), columns=list(class_names))
    table.insert(0, "Id", ids)
    output_files.write_atomic(path, table.to_csv(index=False, float_format="%.6f"))


def read_ids(path):
    """The Ids of a sample submission, in its order: column `Id` (2018) or `ID` (2021)."""
    table = read_csv(path, [])
    column = next((c for c in ("Id", "ID") if c in table.columns), None)
    if column is None:
        raise PredictError(f"{path}: expected an Id (or ID) column, found {','.join(table.columns)!r}")
    ids = list(table[column])
    if not ids:
        raise PredictError(f"{path}: no Ids (a header and no rows); nothing to predict")
    first_line = {}
    for line, image_id in enumerate(ids, start=2):
        if image_id in first_line:
            raise PredictError(
                f"{path} line {line}: duplicate Id {image_id} (first on line {first_line[image_id]}); "
                "a submission has one row per Id"
            )
        first_line[image_id] = line
    return ids


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
            raise PredictError(f"{submission_path} line {line}: Id {image_id!r} has characters outside [A-Za-z0-9_-]")
        if image_id in first_line:
            raise PredictError(
                f"Id {image_id}: {submission_path} line {line}: duplicate Id (first on line {first_line[image_id]})"
            )
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
    y_pred = np.stack(
        [labels_lib.to_multi_hot(predicted(image_id), chosen.num_classes) for image_id, _ in truth]
    ).astype(int)
    return thresholds_lib.macro_f1(y_true, y_pred), chosen.name
