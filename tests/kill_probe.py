"""Runs train_keras.py and ends the process at one chosen point, the way a
preempted machine would, placed deterministically instead of by sleeping
and hoping (tests/test_kill_anywhere.py; bench/soak.py kills at random instants instead).

    python tests/kill_probe.py POINT N -- <train_keras.py arguments>

POINT is where, N the how-many-th time the process passes it (1-based):

- backup-weights-torn: inside the write of the backup's weights: half of
  the file is written, then SIGKILL.
- backup-before-metadata: the backup's new weights are in place, its
  metadata (the epoch's commit) is not yet written: SIGKILL.
- thresholds: training is over, model.keras is written, the thresholds are
  being tuned: SIGKILL.
- export-staged: the SavedModel is written in its temporary folder, not yet
  published as a version: SIGKILL.
- sigterm: SIGTERM to itself after the second batch of epoch N (through the
  command's own handler, as a preempted VM's shutdown would).
"""

import os
import pathlib
import signal
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]

POINTS = ("backup-weights-torn", "backup-before-metadata", "thresholds", "export-staged", "sigterm")


def _kill():
    sys.stdout.flush()
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def _tear(path):
    size = os.path.getsize(path)
    with open(path, "r+b") as f:
        f.truncate(size // 2)


def install(point, count):
    """Patches the project where `point` is, to end the process at its `count`-th pass."""
    import keras

    from protein_location.export import exporter
    from protein_location.training import checkpoints, evaluator, trainer

    passes = {"n": 0}

    def reached():
        passes["n"] += 1
        return passes["n"] == count

    if point == "backup-weights-torn":
        save_weights = keras.Model.save_weights

        def torn_save_weights(self, filepath, *args, **kwargs):
            save_weights(self, filepath, *args, **kwargs)
            if str(filepath).endswith("latest.weights.h5") and reached():
                _tear(str(filepath))
                _kill()

        keras.Model.save_weights = torn_save_weights
    elif point == "backup-before-metadata":
        write_json = checkpoints.write_json_atomic

        def killed_write_json(path, payload):
            if path.endswith("training_metadata.json") and reached():
                _kill()
            return write_json(path, payload)

        checkpoints.write_json_atomic = killed_write_json
    elif point == "thresholds":
        tune = evaluator.thresholds_lib.tune_thresholds

        def killed_tune(*args, **kwargs):
            if reached():
                _kill()
            return tune(*args, **kwargs)

        evaluator.thresholds_lib.tune_thresholds = killed_tune
    elif point == "export-staged":
        write_saved_model = exporter.saved_model.write_saved_model

        def killed_write(*args, **kwargs):
            write_saved_model(*args, **kwargs)
            if reached():
                _kill()

        exporter.saved_model.write_saved_model = killed_write
    elif point == "sigterm":
        callbacks = trainer.callbacks

        class SigtermAt(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                self.epoch = epoch

            def on_train_batch_end(self, batch, logs=None):
                if self.epoch + 1 == count and batch == 1:
                    os.kill(os.getpid(), signal.SIGTERM)

        trainer.callbacks = lambda *args, **kwargs: [SigtermAt(), *callbacks(*args, **kwargs)]
    else:
        raise SystemExit(f"unknown point {point!r}; one of {', '.join(POINTS)}")


def main(argv):
    point, count, separator, *train_args = argv
    assert separator == "--", "usage: kill_probe.py POINT N -- <train_keras.py arguments>"
    install(point, int(count))
    import train_keras

    return train_keras.main(train_args)


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main(sys.argv[1:]))
