"""Labels CSVs of the raw HPA layouts, read by `data_prep convert` and by
`score` (the image files are read by `raw_images`).

The three releases users download (tests/data/hpa/README.md):
- Kaggle 2018: `train.csv` (`Id,Target`) and `<Id>_{red,green,blue,yellow}.png`,
  8-bit grayscale 512x512;
- HPAv18 external data: `Id,Target`, one RGB-tinted JPEG per stain, 1728-3072 px;
- HPA 2021: `train.csv` (`ID,Label`, 19 classes), grayscale PNG, 8- or 16-bit,
  1728-3072 px.
All reads go through tf.io.gfile so `gs://` files work.
"""

import io

import pandas as pd
import tensorflow as tf

from protein_location.core import labels as labels_lib
from protein_location.core.errors import SourceError


def read_labels_csv(csv_path, on_error="fail", label_set=None):
    """A labels CSV -> (entries, errors, label set).

    The release is detected from the header (`Id,Target` -> hpa2018, `ID,Label`
    -> hpa2021); `label_set` (a LabelSet) overrides the class list it implies.
    entries: list of (Id, sorted label indices). A file-level problem (missing,
    empty, unknown columns) always raises. A bad row raises with
    on_error="fail" and is returned among the errors with on_error="skip".
    """
    table = _read_table(csv_path)
    detected = labels_lib.label_set_of_header(table.columns)
    if detected is None:
        found = ",".join(map(str, table.columns))
        raise SourceError(f"expected columns {labels_lib.expected_headers()}, found {found!r}", path=csv_path)
    label_set = label_set or detected
    if table.empty:
        raise SourceError(f"no rows below the {detected.id_column},{detected.label_column} header", path=csv_path)
    entries, errors, seen = [], [], set()
    rows = zip(table[detected.id_column], table[detected.label_column])
    for row, (image_id, target) in enumerate(rows, start=2):
        where = f"{csv_path} line {row}"
        try:
            if not labels_lib.is_valid_id(image_id):
                raise SourceError(f"Id {image_id!r} has characters outside [A-Za-z0-9_-]", path=where)
            if image_id in seen:
                raise SourceError("duplicate Id", image_id, where)
            seen.add(image_id)
            try:
                entries.append((image_id, labels_lib.parse_target(target, label_set.num_classes)))
            except ValueError as error:
                raise SourceError(f"{error} ({label_set.name})", image_id, where) from None
        except SourceError as error:
            if on_error == "fail":
                raise
            errors.append(error)
    return entries, errors, label_set


def read_csv_column(csv_path, column):
    """{Id: value} of one more column of a labels CSV (e.g. --group-column)."""
    table = _read_table(csv_path)
    label_set = labels_lib.label_set_of_header(table.columns)
    if column not in table.columns or label_set is None:
        raise SourceError(f"no column {column!r} (columns: {','.join(map(str, table.columns))})", path=csv_path)
    return dict(zip(table[label_set.id_column], table[column]))


def _read_table(csv_path):
    if not tf.io.gfile.exists(csv_path):
        raise SourceError("labels CSV not found", path=csv_path)
    with tf.io.gfile.GFile(csv_path, "r") as f:
        text = f.read()
    try:
        return pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
    except pd.errors.EmptyDataError:
        raise SourceError(f"empty CSV, expected columns {labels_lib.expected_headers()}", path=csv_path) from None
