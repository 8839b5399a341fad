"""`report.json`, what a training run reached: one class owns the file both
ways (written after training by the evaluator and by `--cv`'s gathering; read
when a finished run is run again, and by `--cv` for each fold's figures).

Its content is `report.build_report`'s (the paper's table, macro F1 at 0.5 and
at the tuned thresholds, macro AUC, per-class figures) plus what the writer
adds: the run's settings and timing, and for `--cv` the out-of-fold figures
and each fold's own (docs/formats.md).
"""

import dataclasses
import json
import posixpath

from protein_location.core import json_files
from protein_location.core.errors import TrainError

FILE_NAME = "report.json"
# The run settings a --cv report takes from its folds' reports.
RUN_SETTINGS = ("arch", "width", "weights", "epochs", "batch_size", "loss", "precision", "learning_rate", "seed")


@dataclasses.dataclass(frozen=True)
class ReportFile:
    """A run's report.json; `content` is the JSON object, keys as written."""

    content: dict

    @classmethod
    def read(cls, run_dir):
        """The report.json of `run_dir`; TrainError in one line when it is
        missing or not a report."""
        path = posixpath.join(run_dir, FILE_NAME)
        try:
            content = json_files.read_json(path)
        except FileNotFoundError:
            raise TrainError(
                f"{path}: missing; the run was not evaluated (train it again with the same command)"
            ) from None
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise TrainError(f"{path}: not valid JSON ({error})") from None
        if not isinstance(content, dict) or "val_macro_f1_tuned" not in content:
            raise TrainError(f"{path}: not a run's report (no val_macro_f1_tuned)")
        return cls(content)

    def write(self, run_dir):
        """Writes report.json into `run_dir` whole or not at all."""
        json_files.write_json_atomic(posixpath.join(run_dir, FILE_NAME), self.content)

    def fold_summary(self, fold, best_epoch):
        """This fold model's line in its --cv run's report (`folds`)."""
        return {
            "fold": fold,
            "val_examples": self.content["val_examples"],
            "val_macro_auc": self.content["val_macro_auc"],
            "val_macro_f1_tuned": self.content["val_macro_f1_tuned"],
            "val_macro_f1_at_0.5": self.content["val_macro_f1_at_0.5"],
            "best_epoch": best_epoch,
            "train_seconds": self.content.get("train_seconds"),
        }

    def run_settings(self):
        """{setting: value} of RUN_SETTINGS (None where the report has none)."""
        return {key: self.content.get(key) for key in RUN_SETTINGS}
