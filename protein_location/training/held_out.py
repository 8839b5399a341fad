"""held_out_predictions.npz: what a `--fold i` run predicts for the fold it
held out, under each of the 8 flips/rotations. Written by the evaluator with
the run's thresholds; read by cross-validation, which gathers the K folds'
files into the out-of-fold predictions of every training image.

    HeldOutPredictions(fold, ids, labels, views).write(model_dir)
    HeldOutPredictions.read(model_dir)
"""

import dataclasses
import io
import posixpath
import zipfile

import numpy as np
import tensorflow as tf

from protein_location.core import output_files

FILE_NAME = "held_out_predictions.npz"


@dataclasses.dataclass
class HeldOutPredictions:
    fold: int
    ids: list  # source_id of each held-out image, in the order the evaluation read them
    labels: np.ndarray  # int8 [n, classes], multi-hot
    views: np.ndarray  # float32 [8, n, classes]: probabilities under each flip/rotation; view 0 as stored

    @classmethod
    def read(cls, model_dir):
        """The file of `model_dir`; ValueError in one line if it is missing or not one."""
        path = posixpath.join(model_dir, FILE_NAME)
        if not tf.io.gfile.exists(path):
            raise ValueError(f"{path}: missing (a --fold run writes it when it evaluates)")
        try:
            with tf.io.gfile.GFile(path, "rb") as f:
                content = np.load(io.BytesIO(f.read()), allow_pickle=False)
                fold, ids, labels, views = (content[key] for key in ("fold", "ids", "labels", "views"))
        except (OSError, KeyError, ValueError, zipfile.BadZipFile) as error:
            raise ValueError(f"{path}: not a held-out predictions file ({error})") from None
        if labels.ndim != 2 or views.shape[1:] != labels.shape or ids.shape != (labels.shape[0],):
            raise ValueError(f"{path}: ids {ids.shape}, labels {labels.shape} and views {views.shape} do not agree")
        return cls(int(fold), [str(image_id) for image_id in ids], labels, views)

    def write(self, model_dir):
        buffer = io.BytesIO()
        np.savez(
            buffer,
            fold=np.int64(self.fold),
            ids=np.asarray(self.ids, dtype=str),
            labels=np.asarray(self.labels, np.int8),
            views=np.asarray(self.views, np.float32),
        )
        output_files.write_atomic(posixpath.join(model_dir, FILE_NAME), buffer.getvalue())
