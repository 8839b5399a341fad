"""A run killed at any instant is finished by the same command: every epoch
trained once, the history complete, the best checkpoint right, one export.

The kills are placed where they matter (tests/kill_probe.py): inside the
backup's and the best checkpoint's writes, between the backup's weights and
its metadata, inside the history write, while thresholds are tuned (after
the last epoch), while the export is written; and a SIGTERM mid-epoch. The
writes themselves are cut at every step they take, in process."""

import csv
import hashlib
import json
import os
import signal
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from protein_location.core import file_system, run_state
from protein_location.training import checkpoints, trainer
from tests.helpers import ROOT, last_error_line, run_cli

TINY = ["--batch-size", 8, "--width", 0.125, "--size", 32]


class Cut(BaseException):
    """Where a kill lands: nothing after it runs (a BaseException, as a signal's would be)."""


def _tiny_model(seed):
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile(keras.optimizers.Adam(), "mse")
    model.optimizer.build(model.trainable_variables)
    return model


def _values(model):
    return [np.asarray(v) for v in model.weights]


def _loaded(path):
    model = _tiny_model(99)
    checkpoints.load_backup_weights(model, path)
    return _values(model)


def _cut_at_rename(monkeypatch, at, after):
    """Renames raise Cut at the `at`-th call, before or `after` renaming: tf.io.gfile's and
    `file_system.rename` (every atomic write's, by Python's own call for a local file), one count."""
    gfile_rename, local_rename, calls = tf.io.gfile.rename, file_system.rename, {"n": 0}

    def cut(rename):
        def cut_rename(source, target, *args, **kwargs):
            calls["n"] += 1
            if calls["n"] == at and not after:
                raise Cut()
            rename(source, target, *args, **kwargs)
            if calls["n"] == at:
                raise Cut()

        return cut_rename

    monkeypatch.setattr(tf.io.gfile, "rename", cut(gfile_rename))
    monkeypatch.setattr(file_system, "rename", cut(local_rename))
    return calls


# Renames of one backup: weights and metadata to .bkp, new weights into place, new metadata into place.
BACKUP_RENAMES = 4


@pytest.mark.parametrize("after", [False, True])
@pytest.mark.parametrize("at", range(1, BACKUP_RENAMES + 1))
def test_a_backup_cut_at_any_step_restores_a_whole_epoch(tmp_path, monkeypatch, at, after):
    backup = checkpoints.AtomicBackupAndRestore(str(tmp_path / "backup"))
    model = _tiny_model(1)
    backup.set_model(model)
    backup.on_epoch_end(0)  # epoch 1 backed up whole
    epoch_one = _values(model)
    model.set_weights([w + 1.0 for w in model.get_weights()])
    calls = _cut_at_rename(monkeypatch, at, after)
    with pytest.raises(Cut):
        backup.on_epoch_end(1)
    monkeypatch.undo()
    assert calls["n"] == at
    epochs, path = checkpoints.find_backup(str(tmp_path / "backup"))
    expected = {1: epoch_one, 2: _values(model)}[epochs]
    for restored, wanted in zip(_loaded(path), expected):
        np.testing.assert_array_equal(restored, wanted)
    assert epochs == (2 if (at, after) == (BACKUP_RENAMES, True) else 1)


def test_a_torn_backup_weights_file_restores_the_epoch_before(tmp_path):
    """The issue's probe: truncate latest.weights.h5 after a run stopped; the previous state is restored."""
    backup = checkpoints.AtomicBackupAndRestore(str(tmp_path / "backup"))
    model = _tiny_model(1)
    backup.set_model(model)
    backup.on_epoch_end(0)
    epoch_one = _values(model)
    model.set_weights([w + 1.0 for w in model.get_weights()])
    backup.on_epoch_end(1)
    latest = tmp_path / "backup/latest.weights.h5"
    os.truncate(latest, latest.stat().st_size // 2)
    epochs, path = checkpoints.find_backup(str(tmp_path / "backup"))
    assert epochs == 1 and path.endswith(".bkp")
    for restored, wanted in zip(_loaded(path), epoch_one):
        np.testing.assert_array_equal(restored, wanted)
    (tmp_path / "backup/latest.weights.h5.bkp").write_bytes(b"damaged too")
    with pytest.raises(checkpoints.TrainError, match="holds no whole backup"):
        checkpoints.find_backup(str(tmp_path / "backup"))


def test_a_backup_of_the_head_only_phase_restores_quietly_into_the_next_phases_new_optimizer(tmp_path, recwarn):
    """A fine-tuning run's second phase compiles a new optimizer over more
    variables; the first phase's backup gives it the weights, not the slots."""
    keras.utils.set_random_seed(2)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4), keras.layers.Dense(2)])
    model.layers[0].trainable = False  # the backbone, frozen in the head-only phase
    model.compile(keras.optimizers.Adam(), "mse")
    model.optimizer.build(model.trainable_variables)
    backup = checkpoints.AtomicBackupAndRestore(str(tmp_path / "backup"))
    backup.set_model(model)
    backup.on_epoch_end(0)
    head_phase = _values(model)
    model.layers[0].trainable = True
    model.compile(keras.optimizers.Adam(), "mse")
    model.set_weights([w + 1.0 for w in model.get_weights()])
    backup.on_train_begin()
    assert model._initial_epoch == 1 and model.optimizer.built
    for restored, wanted in zip(_values(model), head_phase):
        np.testing.assert_array_equal(restored, wanted)
    assert not [w for w in recwarn if "Skipping variable loading" in str(w.message)]


# Renames of one promotion: weights and record to best.previous.*, the new weights into place, the new record.
BEST_RENAMES = 4


@pytest.mark.parametrize("after", [False, True])
@pytest.mark.parametrize("at", range(1, BEST_RENAMES + 1))
def test_a_best_checkpoint_cut_at_any_step_falls_back_to_the_committed_best(tmp_path, monkeypatch, at, after):
    """Epoch 1 is the committed best; epoch 2 improves, and its promotion is
    cut before the backup commits epoch 2: the resumed run keeps epoch 1's."""
    folder = str(tmp_path)
    for epoch, content in ((1, b"weights of epoch 1"), (2, b"weights of epoch 2")):
        new = tmp_path / f".tmp-host-1-0000000{epoch}-best.weights.h5"
        new.write_bytes(content)
        if epoch == 2:
            _cut_at_rename(monkeypatch, at, after)
            with pytest.raises(Cut):
                checkpoints.promote_best(folder, str(new), epoch, "val_auc", 0.5 + 0.1 * epoch)
            monkeypatch.undo()
        else:
            checkpoints.promote_best(folder, str(new), epoch, "val_auc", 0.5 + 0.1 * epoch)
    assert checkpoints.restore_best(folder, 1, "val_auc") == pytest.approx(0.6)
    assert (tmp_path / "best.weights.h5").read_bytes() == b"weights of epoch 1"
    assert checkpoints.read_best(folder)["epoch"] == 1
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".tmp-")) == [
        "best.json",
        "best.weights.h5",
    ]


def test_history_rows_of_uncommitted_epochs_are_dropped_on_resume(tmp_path):
    path = str(tmp_path / "history.csv")
    history = checkpoints.HistoryFile(path)
    for epoch in range(3):
        history.on_epoch_end(epoch, {"loss": 1.0 / (epoch + 1), "val_auc": 0.5 + epoch / 10})
    checkpoints.truncate_history(path, 2)
    rows = list(csv.DictReader(open(path)))
    assert [row["epoch"] for row in rows] == ["0", "1"] and rows[1]["val_auc"] == "0.6"
    history.on_epoch_end(2, {"loss": 0.3, "val_auc": 0.9})
    assert [row["epoch"] for row in csv.DictReader(open(path))] == ["0", "1", "2"]


# --- whole runs, killed where it matters -----------------------------------------------------------


def _probe(point, count, args):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=str(ROOT))
    return subprocess.run(
        [sys.executable, str(ROOT / "tests/kill_probe.py"), point, str(count), "--", *map(str, args)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def _history_epochs(run):
    return [int(row["epoch"]) for row in csv.DictReader((run / "history.csv").open())]


def _check_finished_run(run, epochs, export=None):
    """Every epoch once, the best checkpoint that of the best val_auc in the
    history, nothing of the training state or of a temporary write left."""
    assert _history_epochs(run) == list(range(epochs))
    rows = list(csv.DictReader((run / "history.csv").open()))
    values = [float(row[trainer.SELECTION_METRIC]) for row in rows]
    best = checkpoints.read_best(str(run))
    assert best["epoch"] == int(np.argmax(values)) + 1 and best[trainer.SELECTION_METRIC] == pytest.approx(max(values))
    assert best["sha256"] == hashlib.sha256((run / "best.weights.h5").read_bytes()).hexdigest()
    state = run_state.RunState.read(str(run))
    assert state.status == run_state.EVALUATED
    names = sorted(p.name for p in run.iterdir())
    assert names == [
        "best.json",
        "best.weights.h5",
        "history.csv",
        "logs",
        "model.keras",
        "report.json",
        "report.png",
        "run.json",
        "thresholds.json",
    ], names
    if export is not None:
        assert sorted(p.name for p in export.iterdir()) == ["1"]
        assert state.exports == [{"base": str(export), "version": str(export / "1")}]


@pytest.mark.slow
def test_a_run_killed_inside_each_write_is_finished_by_the_same_command(converted_dir, tmp_path):
    run, export = tmp_path / "run", tmp_path / "export"
    args = ["train_keras.py", "--data", converted_dir, "--model-dir", run, "--epochs", 3, *TINY, "--export", export]
    # (The best checkpoint's and the history's writes are cut at every step in the tests above.)
    kills = [
        ("backup-weights-torn", 2, 1),  # epoch 2's backup half written: epoch 1 committed
        ("backup-before-metadata", 2, 2),  # resumed at 1: epoch 3's weights and history row in place, no metadata
        ("thresholds", 1, 3),  # after the last epoch, while thresholds are tuned
        ("export-staged", 1, None),
    ]  # evaluated; the SavedModel written, not yet published
    outputs = []
    for point, count, committed in kills:
        killed = _probe(point, count, args[1:])
        assert killed.returncode == -signal.SIGKILL, (point, killed.stdout, killed.stderr)
        if committed is None:
            assert run_state.RunState.read(str(run)).status == run_state.EVALUATED
            assert not (run / "backup").exists()
        else:
            assert checkpoints.committed_epochs(str(run)) == committed, point
        assert not (export / "1").exists(), point
        outputs.append(killed.stdout)
    assert f"resume: from the end of epoch 1 ({run}/backup)" in outputs[1]
    assert f"resume: from the end of epoch 2 ({run}/backup)" in outputs[2] and "Epoch 3/3" in outputs[2]
    assert "Epoch " not in outputs[3]  # all 3 epochs were committed: it only evaluated

    finished = run_cli(*args)
    assert "Epoch " not in finished.stdout  # every epoch was done before: only the export is left
    assert f"export: removed {export}/.tmp-1-" in finished.stdout  # what the killed export left
    _check_finished_run(run, 3, export)
    assert not (run / "backup").exists()

    again = run_cli(*args)
    assert again.stdout.splitlines()[-1] == (
        f"run: {run} is complete (run.json); exported as {export}/1; nothing to do (--overwrite trains it again)"
    )


@pytest.mark.slow
def test_sigterm_stops_at_the_next_batch_in_one_line_and_a_torn_backup_resumes_an_epoch_earlier(
    converted_dir, tmp_path
):
    run = tmp_path / "run"
    args = ["--data", converted_dir, "--model-dir", run, "--epochs", 3, *TINY]
    stopped = _probe("sigterm", 3, args)  # SIGTERM in epoch 3: epochs 1-2 are committed
    assert stopped.returncode == 128 + signal.SIGTERM, stopped.stderr
    assert last_error_line(stopped) == (
        f"error: stopped by SIGTERM; epochs 1-2 of 3 are saved in {run}/backup; the same command resumes from there"
    )
    assert "Traceback" not in stopped.stderr
    assert checkpoints.committed_epochs(str(run)) == 2 and _history_epochs(run) == [0, 1]

    latest = run / "backup/latest.weights.h5"  # the probe: a torn backup
    os.truncate(latest, latest.stat().st_size // 2)
    resumed = run_cli("train_keras.py", *args)
    assert f"resume: from the end of epoch 1 ({run}/backup)" in resumed.stdout
    assert "Epoch 2/3" in resumed.stdout and "Epoch 1/3" not in resumed.stdout
    _check_finished_run(run, 3)
    assert json.loads((run / "report.json").read_text())["epochs"] == 3
