"""What a training run keeps on disk so that a kill at any instant loses at
most the epoch in progress: the backup (`AtomicBackupAndRestore`), the best
checkpoint (`BestCheckpoint`), the history (`HistoryFile`), the averaged
weights they hold under --ema (`ResumableSwapEMAWeights`), and the stop
between batches on SIGTERM (`StopAtSignal`).

An epoch is committed when the backup's metadata names it: the last write
of the epoch's end, after the best checkpoint and the history. A resumed run
(`restore_run`) starts from the committed state and drops what belongs to
an uncommitted epoch: history rows past it, a best checkpoint of it. Every
file is written under a temporary name and renamed (`output_files`), and
each weights file is bound to its metadata by its sha256, so a pair torn
apart by a kill between two renames is never taken for a whole one.
"""

import csv
import io
import json
import posixpath
import warnings

import keras
import tensorflow as tf

from protein_location.core import output_files, run_state, stop_signals
from protein_location.core.errors import TrainError
from protein_location.core.json_files import read_json, write_json_atomic
from protein_location.core.manifest import file_sha256

BEST_WEIGHTS = "best.weights.h5"
BEST_RECORD = "best.json"
PREVIOUS_BEST_WEIGHTS = "best.previous.weights.h5"
PREVIOUS_BEST_RECORD = "best.previous.json"
HISTORY = "history.csv"


# --- the backup -----------------------------------------------------------------------------------


class AtomicBackupAndRestore(keras.callbacks.BackupAndRestore):
    """Keras' BackupAndRestore with `double_checkpoint=True`, written so that a
    kill at any instant leaves a state it restores.

    Keras' own writes in place: `latest.weights.h5` is copied to `.bkp`, then
    rewritten, then `training_metadata.json` is rewritten. A kill inside the
    weights write leaves a torn file (restored from `.bkp` only if h5py
    raises OSError on it); a kill between the weights and the metadata pairs
    the new weights with the old epoch number (that epoch is trained twice);
    one inside the metadata write leaves an empty JSON that fails the restore.
    Here the current pair is renamed to `.bkp`, the new weights and metadata
    are written under temporary names and renamed, and the metadata records
    its weights' sha256: the restore (`find_backup`) takes the newest
    metadata whose weights file, current or previous, has that digest.

    The backup is kept when fit ends (delete_checkpoint=False): a run killed
    after its last epoch resumes there and only evaluates; the run removes it
    once its model and thresholds are written.
    """

    def __init__(self, backup_dir):
        super().__init__(backup_dir, save_freq="epoch", double_checkpoint=True, delete_checkpoint=False)

    def on_train_begin(self, logs=None):
        found = find_backup(self.backup_dir)
        if found is None:
            return
        epoch, weights_path = found
        if self.model.optimizer is not None and not self.model.optimizer.built:
            self.model.optimizer.build(self.model.trainable_variables)  # its slots are in the file
        load_backup_weights(self.model, weights_path)
        self.model._initial_epoch = epoch  # what Keras' own restore sets; fit starts there

    def _save_model(self):
        tf.io.gfile.makedirs(self.backup_dir)
        for current, previous in (
            (self._weights_path, self._prev_weights_path),
            (self._training_metadata_path, self._prev_training_metadata_path),
        ):
            if tf.io.gfile.exists(current):
                tf.io.gfile.rename(current, previous, overwrite=True)
        needed = output_files.weights_bytes(self.model)
        with output_files.atomic_path(self._weights_path, needed) as temporary:
            self.model.save_weights(temporary, overwrite=True)
        write_json_atomic(
            self._training_metadata_path,
            {
                "epoch": self._current_epoch,
                "batch": self._last_batch_seen,
                "weights_sha256": file_sha256(self._weights_path),
            },
        )


class RestoreFromChief(AtomicBackupAndRestore):
    """A non-chief worker's backup callback: it restores from the chief's
    backup (so every worker resumes at the same epoch with the same state) and
    never writes or deletes it. Keras' own callback has no chief/worker logic."""

    def on_train_batch_end(self, batch, logs=None):
        pass

    def on_epoch_end(self, epoch, logs=None):
        pass

    def on_train_end(self, logs=None):
        pass


def find_backup(backup_dir):
    """(epochs finished, weights file) of the newest whole state in `backup_dir`,
    or None when it holds none (a fresh run, or one killed before its first
    epoch was committed). TrainError if it holds states but none is whole."""
    callback = keras.callbacks.BackupAndRestore(backup_dir)  # for its file names only
    weights = [p for p in (callback._weights_path, callback._prev_weights_path) if tf.io.gfile.exists(p)]
    records = []
    for path in (callback._training_metadata_path, callback._prev_training_metadata_path):
        try:
            records.append(read_json(path))
        except (FileNotFoundError, tf.errors.NotFoundError, json.JSONDecodeError, UnicodeDecodeError):
            continue
    records = [r for r in records if isinstance(r, dict) and isinstance(r.get("epoch"), int)]
    if not records:
        return None
    digests = {}
    for record in sorted(records, key=lambda r: r["epoch"], reverse=True):
        wanted = record.get("weights_sha256")
        if wanted is None and callback._weights_path in weights:
            # Written by Keras' own BackupAndRestore (a run of an earlier version): its pairing, unchecked.
            return record["epoch"], callback._weights_path
        for path in weights:
            if path not in digests:
                digests[path] = file_sha256(path)
            if digests[path] == wanted:
                return record["epoch"], path
    raise TrainError(
        f"{backup_dir}: holds no whole backup (every weights file differs from the sha256 its "
        "metadata records: damaged after it was written); train again with --overwrite"
    )


def load_backup_weights(model, path):
    """Loads a weights file the run wrote (the backup, the best checkpoint):
    the previous backup (`latest.weights.h5.bkp`) through a copy under a name
    Keras reads (it goes by the ending)."""
    if path.endswith(".weights.h5"):
        _load_weights(model, path)
        return
    copy = output_files.temporary_path(path[: -len(".bkp")])
    try:
        tf.io.gfile.copy(path, copy, overwrite=True)
        _load_weights(model, copy)
    finally:
        output_files.remove_quietly(copy)


def _load_weights(model, path):
    with warnings.catch_warnings():
        # Each fine-tuning phase compiles a new optimizer: a file written in the head-only phase holds that
        # phase's slots, and the next phase starts its own, as a run that never stopped does.
        warnings.filterwarnings("ignore", message="Skipping variable loading for optimizer")
        model.load_weights(path)


def committed_epochs(model_dir):
    """Epochs a run in `model_dir` has finished and backed up (0 for a fresh run)."""
    found = find_backup(posixpath.join(model_dir, run_state.BACKUP_DIR))
    return 0 if found is None else found[0]


# --- the best checkpoint --------------------------------------------------------------------------


class BestCheckpoint(keras.callbacks.ModelCheckpoint):
    """ModelCheckpoint(save_best_only=True, save_weights_only=True) of
    `folder/best.weights.h5`, written whole or not at all, with `best.json`
    ({"epoch": N, "<monitor>": value, "sha256": digest}) beside it.

    Keras' own writes the file in place (a kill mid-write leaves it torn,
    with nothing to fall back on). Here Keras writes a temporary file and the
    checkpoint is promoted: the current pair becomes `best.previous.*`, the
    new file is renamed into place, and best.json is written. The previous
    pair is what `restore_best` falls back to when the new best belongs to an
    epoch that was never committed.
    """

    def __init__(self, folder, monitor, initial_value_threshold=None):
        self.folder = folder
        super().__init__(
            posixpath.join(folder, BEST_WEIGHTS),
            monitor=monitor,
            mode="max",
            save_best_only=True,
            save_weights_only=True,
            initial_value_threshold=initial_value_threshold,
        )
        self._pending = None

    def _get_file_path(self, epoch, batch, logs):
        self._pending = output_files.temporary_path(self.filepath)
        return self._pending

    def on_epoch_end(self, epoch, logs=None):
        pending = None
        # Checked whether or not this epoch improves: a disk too full for the checkpoint stops the run now.
        output_files.check_free_space(self.filepath, output_files.weights_bytes(self.model))
        try:
            super().on_epoch_end(epoch, logs)
            pending, self._pending = self._pending, None
            if pending is not None and tf.io.gfile.exists(pending):
                output_files.sync_file(pending)
                promote_best(self.folder, pending, epoch + 1, self.monitor, float(logs[self.monitor]))
        except BaseException as error:
            output_files.abandon_write(error, self.filepath, pending, self._pending)
            raise


def _best_paths(folder):
    return {
        name: posixpath.join(folder, name)
        for name in (BEST_WEIGHTS, BEST_RECORD, PREVIOUS_BEST_WEIGHTS, PREVIOUS_BEST_RECORD)
    }


def promote_best(folder, new_weights, epoch, monitor, value):
    """Makes `new_weights` the best checkpoint of epoch `epoch` (1-based), the current one the previous."""
    paths = _best_paths(folder)
    for current, previous in ((BEST_WEIGHTS, PREVIOUS_BEST_WEIGHTS), (BEST_RECORD, PREVIOUS_BEST_RECORD)):
        if tf.io.gfile.exists(paths[current]):
            tf.io.gfile.rename(paths[current], paths[previous], overwrite=True)
    tf.io.gfile.rename(new_weights, paths[BEST_WEIGHTS], overwrite=True)
    write_json_atomic(paths[BEST_RECORD], {"epoch": epoch, monitor: value, "sha256": file_sha256(paths[BEST_WEIGHTS])})


def restore_best(folder, epochs_done, monitor):
    """Leaves in `folder` the best checkpoint among the first `epochs_done`
    epochs (best.weights.h5 and best.json), whichever slot holds it, and
    nothing else of the best checkpoint's; returns its `monitor` value, or
    None when no committed epoch has one."""
    paths = _best_paths(folder)
    digests = {
        name: file_sha256(paths[name])
        for name in (BEST_WEIGHTS, PREVIOUS_BEST_WEIGHTS)
        if tf.io.gfile.exists(paths[name])
    }
    candidates = []
    for name in (BEST_RECORD, PREVIOUS_BEST_RECORD):
        try:
            record = read_json(paths[name])
        except (FileNotFoundError, tf.errors.NotFoundError, json.JSONDecodeError, UnicodeDecodeError):
            continue
        if not isinstance(record, dict) or not isinstance(record.get("epoch"), int) or record["epoch"] > epochs_done:
            continue
        weights = next((w for w, digest in digests.items() if digest == record.get("sha256")), None)
        if weights is not None and isinstance(record.get(monitor), (int, float)):
            candidates.append((record[monitor], record["epoch"], weights, record))
    if not candidates:
        for path in paths.values():
            output_files.remove_quietly(path)
        return None
    value, _, weights, record = max(candidates, key=lambda c: (c[0], c[1]))
    if weights != BEST_WEIGHTS:
        tf.io.gfile.rename(paths[weights], paths[BEST_WEIGHTS], overwrite=True)
    write_json_atomic(paths[BEST_RECORD], record)
    for name in (PREVIOUS_BEST_WEIGHTS, PREVIOUS_BEST_RECORD):
        output_files.remove_quietly(paths[name])
    return value


def read_best(folder):
    """best.json of a run folder: {"epoch": N, "<monitor>": value, "sha256": ...}, or None."""
    try:
        return read_json(posixpath.join(folder, BEST_RECORD))
    except (FileNotFoundError, tf.errors.NotFoundError, json.JSONDecodeError, UnicodeDecodeError):
        return None


def remove_previous_best(folder):
    paths = _best_paths(folder)
    for name in (PREVIOUS_BEST_WEIGHTS, PREVIOUS_BEST_RECORD):
        output_files.remove_quietly(paths[name])


# --- the history ----------------------------------------------------------------------------------


class HistoryFile(keras.callbacks.Callback):
    """history.csv, one row per finished epoch (columns `epoch`, 0-based, then
    the logged metrics), rewritten whole at every epoch's end.

    Keras' CSVLogger appends to an open file: a kill mid-line leaves a row
    that no reader parses, and a row of an epoch that the backup never
    committed stays when the run resumes (the epoch then appears twice).
    Here the file is rewritten whole (`output_files`), and a resumed run
    first drops the rows of epochs past its backup (`truncate_history`).
    """

    def __init__(self, path):
        super().__init__()
        self.path = path

    def on_epoch_end(self, epoch, logs=None):
        rows = [row for row in read_history_rows(self.path) if int(float(row["epoch"])) < epoch]
        rows.append({"epoch": epoch, **{key: value for key, value in (logs or {}).items()}})
        write_history_rows(self.path, rows)


def read_history_rows(path):
    """history.csv -> list of dicts of strings ([] when there is none)."""
    if not tf.io.gfile.exists(path):
        return []
    with tf.io.gfile.GFile(path, "r") as f:
        return list(csv.DictReader(io.StringIO(f.read())))


def write_history_rows(path, rows):
    keys = sorted({key for row in rows for key in row if key != "epoch"})
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, ["epoch", *keys], restval="", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    output_files.write_atomic(path, buffer.getvalue())


def truncate_history(path, epochs_done):
    """Drops the rows of epochs past the first `epochs_done` (their training was
    not committed to the backup and is done again)."""
    rows = read_history_rows(path)
    kept = [row for row in rows if int(float(row["epoch"])) < epochs_done]
    if len(kept) != len(rows):
        write_history_rows(path, kept)


# --- weight averaging (--ema) ---------------------------------------------------------------------


class ResumableSwapEMAWeights(keras.callbacks.SwapEMAWeights):
    """Keras' `SwapEMAWeights(swap_on_epoch=True)`, for a run that resumes from
    its backup: val metrics, the best checkpoint and the backup see the moving
    average of the weights, and training goes on from the raw weights.

    At an epoch's end the average is swapped into the model (the raw weights
    into the optimizer's average slots), and the backup is written so. A new
    process that restores that backup starts with the average in the model,
    but Keras' callback starts each fit believing the raw weights are there
    and would train on from the average. `averaged_in_backup` tells it the
    truth: True when this fit resumes inside its phase from a backup of an
    epoch end. A fit starting a phase needs False: at a phase's last epoch
    the callback makes the slots equal to the model, and the next phase's new
    optimizer starts its average at its first step.

    Args:
        averaged_in_backup: whether the model restored for this fit holds the
            average (the fit resumes after an epoch end of its own phase).
    """

    def __init__(self, averaged_in_backup=False):
        super().__init__(swap_on_epoch=True)
        self.averaged_in_backup = averaged_in_backup

    def on_train_begin(self, logs=None):
        self._ema_weights_in_model = self.averaged_in_backup


# --- SIGTERM --------------------------------------------------------------------------------------


class StopAtSignal(keras.callbacks.Callback):
    """Raises `stop_signals.StopRequested` at the first batch boundary after a
    SIGTERM or SIGINT (fit, evaluate, predict). Raising, not `stop_training`:
    an epoch cut short must not be committed as done."""

    def on_train_batch_end(self, batch, logs=None):
        stop_signals.raise_if_requested()

    def on_test_batch_end(self, batch, logs=None):
        stop_signals.raise_if_requested()

    def on_predict_batch_end(self, batch, logs=None):
        stop_signals.raise_if_requested()

    def on_epoch_begin(self, epoch, logs=None):
        stop_signals.raise_if_requested()
