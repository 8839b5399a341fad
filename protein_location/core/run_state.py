"""run.json: what a training run folder (`train_keras.py --model-dir`) holds
and how far its run got. Written by training, read by training (to resume,
finish or refuse) and by export (to refuse an unfinished run).

    {"status": "training" | "evaluated",
     "settings": {"--epochs": 20, ...},     # the flags that define the run
     "data_fingerprint": "<sha256 of dataset.json>",
     "exports": [{"base": "export/demo", "version": "export/demo/1"}]}

- `training`: epochs are being trained; `backup/` holds the last finished
  epoch. The same command resumes it; another refuses (names the flags that
  differ), unless --overwrite.
- `evaluated`: training is over; model.keras, thresholds.json, report.json
  and report.png are written. The same command only exports (if --export
  names a base this run has not exported to) or says it is complete.

A folder written before run.json existed is described by its files
(`describe_folder`): backup/ means an unfinished run, model.keras a finished one.
"""

import dataclasses
import hashlib
import json
import posixpath

import tensorflow as tf

from protein_location.core import output_files
from protein_location.core.json_files import read_json, write_json_atomic

RUN_STATE_NAME = "run.json"
TRAINING, EVALUATED = "training", "evaluated"
BACKUP_DIR = "backup"
# A cross-validated run (--cv) holds one run folder per fold: fold-0, fold-1, ...
FOLD_PREFIX = "fold-"
# Everything a run writes in its folder (TensorBoard's logs/ too): what --overwrite removes, and nothing else.
RUN_FILES = (
    "run.json",
    "backup",
    "best.weights.h5",
    "best.json",
    "best.previous.weights.h5",
    "best.previous.json",
    "history.csv",
    "logs",
    "model.keras",
    "thresholds.json",
    "report.json",
    "report.png",
    "held_out_predictions.npz",
)


@dataclasses.dataclass
class RunState:
    status: str
    settings: dict
    data_fingerprint: str | None = None
    exports: list = dataclasses.field(default_factory=list)

    @classmethod
    def read(cls, model_dir):
        """The run.json of `model_dir`, or None if it has none; ValueError if it is not one."""
        path = posixpath.join(model_dir, RUN_STATE_NAME)
        if not tf.io.gfile.exists(path):
            return None
        try:
            content = read_json(path)
            state = cls(
                content["status"],
                dict(content["settings"]),
                content.get("data_fingerprint"),
                list(content.get("exports", [])),
            )
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError) as error:
            raise ValueError(f"{path}: not a run state file ({error})") from None
        if state.status not in (TRAINING, EVALUATED):
            raise ValueError(f"{path}: unknown status {state.status!r}")
        return state

    def write(self, model_dir):
        write_json_atomic(posixpath.join(model_dir, RUN_STATE_NAME), dataclasses.asdict(self))

    def differences(self, settings, data_fingerprint):
        """What differs between this run and a request: ["--epochs 3 there, 5 here", ...]."""
        found = [
            f"{flag} {_shown(self.settings.get(flag))} there, {_shown(value)} here"
            for flag, value in settings.items()
            if self.settings.get(flag) != value
        ]
        found += [
            f"{flag} {_shown(value)} there, not set here"
            for flag, value in self.settings.items()
            if flag not in settings
        ]
        if self.data_fingerprint and data_fingerprint and self.data_fingerprint != data_fingerprint:
            found.append("the dataset's dataset.json changed (converted again?)")
        return found

    def export_to(self, export_base):
        """The version this run exported to `export_base`, or None."""
        for entry in self.exports:
            if entry.get("base") == export_base:
                return entry.get("version")
        return None


def _shown(value):
    return "unset" if value is None else json.dumps(value) if isinstance(value, (list, dict)) else str(value)


def file_fingerprint(path):
    """sha256 of a (small) file's bytes, e.g. dataset.json: a run resumes only on the data it started on."""
    with tf.io.gfile.GFile(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def fold_dir(model_dir, fold):
    """The run folder of fold `fold` inside a cross-validated run's folder (`--cv`)."""
    return posixpath.join(model_dir, f"{FOLD_PREFIX}{fold}")


def describe_folder(model_dir):
    """What a run folder without a readable run.json holds: "empty", "unfinished"
    (backup/ of a training), or "finished" (model.keras)."""
    if tf.io.gfile.exists(posixpath.join(model_dir, BACKUP_DIR)):
        return "unfinished"
    if tf.io.gfile.exists(posixpath.join(model_dir, "model.keras")):
        return "finished"
    return "empty"


def remove_run_files(model_dir):
    """Deletes what a training run writes in `model_dir`, and nothing else."""
    if not tf.io.gfile.isdir(model_dir):
        return
    for name in tf.io.gfile.listdir(model_dir):
        name = name.rstrip("/")
        path = posixpath.join(model_dir, name)
        if name in RUN_FILES or name.startswith("workertemp_"):
            if tf.io.gfile.isdir(path):
                tf.io.gfile.rmtree(path)
            else:
                tf.io.gfile.remove(path)
    output_files.remove_stale_temporaries(model_dir)
