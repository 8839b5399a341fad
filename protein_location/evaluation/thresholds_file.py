"""`thresholds.json`, a training run's per-class thresholds: one class owns
the file both ways (written after training and by `--cv`'s gathering, read
by every export), with the files of earlier versions read in one place.

    {"label_set": "hpa2018", "class_names": [...], "views": 1,
     "thresholds": [...],              serving_default's (those of `views`)
     "single_view_thresholds": [...],  tuned on one view's probabilities
     "tta_thresholds": [...],          tuned on the mean of the 8 flips/rotations
     "rule": "...",                    how they were tuned, in words
     "folds": K, "tuned_on": "..."}    a --cv run's only
"""

import dataclasses
import posixpath

import numpy as np

from protein_location.core import json_files, labels as labels_lib

FILE_NAME = "thresholds.json"


@dataclasses.dataclass(frozen=True)
class ThresholdsFile:
    """A run's thresholds.

    Attributes:
        class_names: the model's classes, in its output order.
        single_view: float32 [classes], tuned on single-view probabilities.
        tta: float32 [classes] tuned on the mean of the 8 flips/rotations, or
            None (a file written before they were tuned).
        views: the views serving_default applies (the run's --tta): 1 or 8.
        rule: the tuning rule in words (`thresholds.threshold_rule`), or None.
        folds: K for a cross-validated run, whose model is its K fold models; else 0.
        tuned_on: what they were tuned on, in words (a --cv run's), or None.
    """

    class_names: tuple
    single_view: np.ndarray
    tta: np.ndarray | None
    views: int = 1
    rule: str | None = None
    folds: int = 0
    tuned_on: str | None = None

    @property
    def serving(self):
        """The thresholds serving_default labels with: those of its views."""
        return self.tta if self.views == 8 else self.single_view

    def write(self, model_dir):
        """Writes `<model_dir>/thresholds.json` whole or not at all."""
        content = {
            "label_set": labels_lib.label_set_of_classes(list(self.class_names)),
            "class_names": list(self.class_names),
            "views": self.views,
            "thresholds": np.asarray(self.serving).tolist(),
            "single_view_thresholds": np.asarray(self.single_view).tolist(),
            "tta_thresholds": None if self.tta is None else np.asarray(self.tta).tolist(),
            "rule": self.rule,
        }
        if self.folds:
            content.update(folds=self.folds, tuned_on=self.tuned_on)
        json_files.write_json_atomic(path_in(model_dir), content)

    @classmethod
    def read(cls, model_dir):
        """The file of `model_dir`; a ValueError naming what is wrong in one
        that is not a thresholds file. Files of earlier versions: without
        `single_view_thresholds`, `thresholds` are the single view's; without
        `tta_thresholds`, None; without `views`, 1; without `folds`, 0."""
        try:
            content = json_files.read_json(path_in(model_dir))
            single_view = np.asarray(content.get("single_view_thresholds", content["thresholds"]), np.float32)
            tta = content.get("tta_thresholds")
            return cls(
                class_names=tuple(str(name) for name in content["class_names"]),
                single_view=single_view,
                tta=None if tta is None else np.asarray(tta, np.float32),
                views=int(content.get("views", 1)),
                rule=content.get("rule"),
                folds=int(content.get("folds") or 0),
                tuned_on=content.get("tuned_on"),
            )
        except (KeyError, TypeError, ValueError) as error:  # json.JSONDecodeError is a ValueError
            raise ValueError(f"not a thresholds file ({error})") from None


def path_in(model_dir):
    """Where a run folder keeps its thresholds.json."""
    return posixpath.join(model_dir, FILE_NAME)
