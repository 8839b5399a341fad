"""`train_keras.py --cv`: K fold models, thresholds tuned on their
out-of-fold predictions, one SavedModel averaging them; folds trained one
at a time (as on several machines) and a run killed between folds."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import keras
import numpy as np
import pytest

from protein_location.core import manifest as manifest_lib
from protein_location.data import input_reader
from protein_location.evaluation import thresholds as thresholds_lib
from protein_location.training import held_out
from tests.helpers import ROOT, last_error_line, run_cli

pytestmark = pytest.mark.slow  # trains and exports

FOLDS = 2
TRAIN_FLAGS = ("--epochs", 1, "--batch-size", 8, "--width", 0.125, "--seed", 2)


def _convert_folds(synthetic_dir, out, folds):
    run_cli(
        "-m",
        "data_prep",
        "convert",
        "--csv",
        synthetic_dir / "train.csv",
        "--images",
        synthetic_dir / "train",
        "--out",
        out,
        "--folds",
        folds,
        "--shards",
        1,
        "--seed",
        0,
    )
    return out


@pytest.fixture(scope="module")
def cv_run(synthetic_dir, tmp_path_factory):
    """Fold 0 trained alone (`--cv --fold 0`, one machine of several), then
    `--cv --export` trains fold 1 and gathers the two."""
    work = tmp_path_factory.mktemp("cv")
    data, run, export = _convert_folds(synthetic_dir, work / "folds", FOLDS), work / "run", work / "export"
    first = run_cli(
        "train_keras.py", "--data", data, "--model-dir", run, "--cv", "--fold", 0, *TRAIN_FLAGS, "--export", export
    )
    rest = run_cli("train_keras.py", "--data", data, "--model-dir", run, "--cv", *TRAIN_FLAGS, "--export", export)
    return {"work": work, "data": data, "run": run, "export": export, "first": first, "rest": rest}


def _fold_dir(cv_run, fold):
    return cv_run["run"] / f"fold-{fold}"


def test_one_fold_alone_then_the_rest_and_the_gathering(cv_run):
    run = cv_run["run"]
    first, rest = cv_run["first"].stdout, cv_run["rest"].stdout
    assert f"cv: fold 0 of folds 0-1 (trained on the other 1, validated on it) in {run / 'fold-0'}" in first
    assert "cv: fold 1" not in first and "cv: out-of-fold" not in first and "export: " not in first
    assert (
        f"cv: fold 0 is trained; once every fold is, the same command without --fold gathers them into {run} "
        "(thresholds, report, export)"
    ) in first
    assert f"run: {run / 'fold-0'} is complete (run.json); nothing to do" in rest
    assert rest.count("\nmodel: ") == 1  # fold 1 built and trained, fold 0 not again
    assert "cv: out-of-fold (48 images, 1 view): macro AUC " in rest
    assert f"export: SavedModel in {cv_run['export'] / '1'}" in rest
    assert "cv: the export averages the 2 fold models in one graph (2x one model's compute)" in rest
    state = json.loads((run / "run.json").read_text())
    assert state["status"] == "evaluated" and state["settings"]["--cv"] is True and "--fold" not in state["settings"]
    assert state["exports"] == [{"base": str(cv_run["export"]), "version": str(cv_run["export"] / "1")}]

    again = run_cli(
        "train_keras.py",
        "--data",
        cv_run["data"],
        "--model-dir",
        run,
        "--cv",
        *TRAIN_FLAGS,
        "--export",
        cv_run["export"],
    ).stdout
    assert f"cv: {run} is complete (run.json); exported as {cv_run['export'] / '1'}; nothing to do" in again
    assert "strategy: " not in again  # no fold is opened again


def test_every_training_image_is_predicted_once_by_the_model_that_did_not_train_on_it(cv_run):
    data = str(cv_run["data"])
    all_ids = input_reader.split_ids(data, "train")
    predicted = []
    for fold in range(FOLDS):
        found = held_out.HeldOutPredictions.read(str(_fold_dir(cv_run, fold)))
        assert found.fold == fold
        assert found.ids == input_reader.split_ids(data, "val", fold)
        assert not set(found.ids) & set(input_reader.split_ids(data, "train", fold))
        predicted += found.ids
        # The probabilities are the fold model's own, on the images as stored (view 0).
        model = keras.models.load_model(_fold_dir(cv_run, fold) / "model.keras", compile=False)
        images = np.concatenate([x for x, _ in input_reader.make_dataset(data, "val", 8, fold=fold)])
        np.testing.assert_allclose(found.views[0], model.predict(images, verbose=0), atol=1e-5)
        assert found.views.shape == (8, len(found.ids), 28)
    assert len(predicted) == len(set(predicted)) == len(all_ids) == 48
    assert set(predicted) == set(all_ids)


def test_thresholds_come_from_the_out_of_fold_set(cv_run):
    import tensorflow as tf

    data, run = str(cv_run["data"]), cv_run["run"]
    folds = [held_out.HeldOutPredictions.read(str(_fold_dir(cv_run, fold))) for fold in range(FOLDS)]
    labels = np.concatenate([f.labels for f in folds])
    views = np.concatenate([f.views for f in folds], axis=1)
    _, count, label_counts = manifest_lib.DatasetManifest.read(data).summary("train")
    rates = np.asarray(label_counts, np.float64) / count
    written = json.loads((run / "thresholds.json").read_text())
    assert written["folds"] == FOLDS and written["views"] == 1
    assert written["tuned_on"] == "the out-of-fold predictions of all 48 training images"
    np.testing.assert_array_equal(
        written["single_view_thresholds"], thresholds_lib.tune_thresholds(labels, views[0], rates).thresholds
    )
    np.testing.assert_array_equal(
        written["tta_thresholds"], thresholds_lib.tune_thresholds(labels, views.mean(axis=0), rates).thresholds
    )
    loaded = tf.saved_model.load(str(cv_run["export"] / "1"))
    np.testing.assert_allclose(loaded.thresholds[0].numpy(), written["single_view_thresholds"], rtol=1e-6)


def test_the_ensemble_savedmodel_is_the_mean_of_the_fold_models(cv_run):
    """Read by a process that imports only TensorFlow."""
    images = np.random.default_rng(5).integers(0, 255, (4, 40, 40, 4)).astype(np.uint8)
    np.save(cv_run["work"] / "images.npy", images)
    script = textwrap.dedent(f"""
        import sys
        import numpy as np, tensorflow as tf
        loaded = tf.saved_model.load({str(cv_run["export"] / "1")!r})
        images = tf.constant(np.load({str(cv_run["work"] / "images.npy")!r}))
        out = loaded.signatures["serving_default"](image=images)
        single = loaded.signatures["serving_single_view"](image=images)
        np.testing.assert_array_equal(out["probabilities"].numpy(), single["probabilities"].numpy())
        np.testing.assert_array_equal(out["labels"].numpy(),
                                      (out["probabilities"].numpy() >= loaded.thresholds[0].numpy()).astype("int32"))
        heatmaps = loaded.signatures["gradcam"](image=images)
        assert heatmaps["heatmaps"].shape == (4, 32, 32, 28), heatmaps["heatmaps"].shape
        np.testing.assert_allclose(heatmaps["probabilities"].numpy(), out["probabilities"].numpy(), atol=1e-5)
        np.save({str(cv_run["work"] / "served.npy")!r}, out["probabilities"].numpy())
        assert not any(name.startswith(("protein_location", "data_prep")) for name in sys.modules)
        print("ensemble-ok")
    """)
    assert "ensemble-ok" in run_cli("-c", script, cwd=cv_run["work"]).stdout
    from protein_location.core import stains

    resized = stains.resize_rgby(images, 32).numpy()  # the signatures' resize
    members = [keras.models.load_model(_fold_dir(cv_run, fold) / "model.keras", compile=False) for fold in range(FOLDS)]
    mean = np.mean([member.predict(resized, verbose=0) for member in members], axis=0)
    np.testing.assert_allclose(np.load(cv_run["work"] / "served.npy"), mean, atol=1e-5)


def test_report_holds_the_out_of_fold_figures_and_each_fold(cv_run):
    report = json.loads((cv_run["run"] / "report.json").read_text())
    oof = report["out_of_fold"]
    assert oof["images"] == report["val_examples"] == 48
    assert 0.0 <= oof["macro_f1_cross_tuned"] <= 1.0 and 0.0 <= oof["macro_f1_tuned"] <= 1.0
    assert oof["macro_auc"] == report["val_macro_auc"]
    assert [fold["fold"] for fold in report["folds"]] == [0, 1]
    assert sum(fold["val_examples"] for fold in report["folds"]) == 48
    assert report["folds"][1]["best_epoch"] == 1
    assert report["cv_folds"] == 2 and len(report["per_class"]) == 28
    assert (cv_run["run"] / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cv_needs_a_dataset_with_folds(converted_dir, tmp_path):
    result = run_cli(
        "train_keras.py", "--data", converted_dir, "--model-dir", tmp_path / "run", "--cv", *TRAIN_FLAGS, check=False
    )
    assert result.returncode == 1
    assert last_error_line(result) == (
        f"error: {converted_dir}: --cv needs a dataset converted with --folds K (this one has a val split); convert "
        "it again with `python -m data_prep convert ... --folds 5`"
    )


def test_cv_refuses_a_fold_outside_the_dataset(cv_run, tmp_path):
    result = run_cli(
        "train_keras.py",
        "--data",
        cv_run["data"],
        "--model-dir",
        tmp_path / "run",
        "--cv",
        "--fold",
        3,
        *TRAIN_FLAGS,
        check=False,
    )
    assert last_error_line(result) == f"error: --fold 3 is outside 0-1 ({cv_run['data']} has 2 folds)"


def test_a_run_killed_between_folds_resumes_at_the_fold_it_reached(synthetic_dir, tmp_path):
    """Under MirroredStrategy on 2 logical CPU devices: the folds share the strategy of their process."""
    data, run = _convert_folds(synthetic_dir, tmp_path / "folds", 2), tmp_path / "run"
    args = ["train_keras.py", "--data", data, "--model-dir", run, "--cv", *TRAIN_FLAGS, "--replicas", 2]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=str(ROOT))
    process = subprocess.Popen(
        [sys.executable, *map(str, args)], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 300
    while not (run / "fold-1" / "run.json").exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    finished = (run / "fold-0" / "model.keras").stat().st_mtime_ns
    assert not (run / "thresholds.json").exists()

    again = run_cli(*args).stdout
    assert f"run: {run / 'fold-0'} is complete (run.json); nothing to do" in again
    assert again.count("\nmodel: ") == 1  # fold 1 alone
    assert "strategy: MirroredStrategy with 2 replica(s)" in again
    assert (run / "fold-0" / "model.keras").stat().st_mtime_ns == finished
    assert json.loads((run / "run.json").read_text())["status"] == "evaluated"
    assert json.loads((run / "report.json").read_text())["out_of_fold"]["images"] == 48
