"""The whole pipeline as a user runs it: CLIs in fresh processes on a tiny dataset."""

import csv
import json
import textwrap

import pytest

from protein_location.core.errors import PredictError
from protein_location.inference import serving, submission
from tests.helpers import last_error_line, run_cli

pytestmark = pytest.mark.slow  # trains or exports


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    """synth -> convert -> verify -> train -> export, each a CLI call."""
    work = tmp_path_factory.mktemp("e2e")
    raw, data, run, export = work / "raw", work / "tfrecords" / "tiny", work / "runs" / "tiny", work / "export" / "tiny"
    run_cli("-m", "data_prep", "synth", "--out", raw, "--train", 64, "--test", 10, "--size", 32, "--seed", 3)
    converted = run_cli(
        "-m",
        "data_prep",
        "convert",
        "--csv",
        raw / "train.csv",
        "--images",
        raw / "train",
        "--out",
        data,
        "--val-fraction",
        0.25,
        "--shards",
        2,
        "--seed",
        3,
    )
    verified = run_cli("-m", "data_prep", "verify", data)
    # --tta 8: the export whose serving_default averages 8 views (the default, 1, is a plain single-view export).
    trained = run_cli(
        "train_keras.py",
        "--data",
        data,
        "--model-dir",
        run,
        "--epochs",
        2,
        "--batch-size",
        8,
        "--width",
        0.125,
        "--tta",
        8,
        "--export",
        export,
        "--tflite",
    )
    return {
        "raw": raw,
        "data": data,
        "run": run,
        "export": export,
        "work": work,
        "converted": converted,
        "verified": verified,
        "trained": trained,
    }


def test_cli_steps_say_what_they_did(pipeline):
    assert "convert: train " in pipeline["converted"].stdout
    assert "verify: " in pipeline["verified"].stdout and " OK " in pipeline["verified"].stdout
    out = pipeline["trained"].stdout
    assert "strategy: _DefaultDistributionStrategy with 1 replica(s)" in out
    assert "(8 per replica)" in out
    assert "val macro F1 (8 views): " in out
    assert (
        f"export: SavedModel in {pipeline['export'] / '1'} (serving_default: 8 flips/rotations, with "
        "thresholds tuned for it)"
    ) in out
    assert f"export: TFLite float32 in {pipeline['export'] / '1' / 'model.tflite'} (" in out


def test_training_leaves_a_complete_run_folder(pipeline):
    run = pipeline["run"]
    for name in ("best.weights.h5", "model.keras", "history.csv", "thresholds.json", "report.json"):
        assert (run / name).is_file(), name
    assert any((run / "logs").rglob("events.out.tfevents.*")), "no TensorBoard event files"
    history = list(csv.DictReader((run / "history.csv").open()))
    assert [row["epoch"] for row in history] == ["0", "1"]
    assert "val_macro_f1" in history[0]
    report = json.loads((run / "report.json").read_text())
    thresholds = json.loads((run / "thresholds.json").read_text())["thresholds"]
    assert len(report["per_class"]) == len(thresholds) == 28
    assert 0.0 <= report["val_macro_f1_at_0.5"] <= report["val_macro_f1_tuned"] <= 1.0


def test_savedmodel_loads_in_a_process_that_imports_only_tensorflow(pipeline):
    script = textwrap.dedent(f"""
        import sys
        import numpy as np, tensorflow as tf
        loaded = tf.saved_model.load({str(pipeline["export"] / "1")!r})
        serve = loaded.signatures["serving_default"]
        inputs = serve.structured_input_signature[1]
        assert list(inputs) == ["image"] and inputs["image"].dtype == tf.uint8, inputs
        for side in (32, 50):
            images = np.random.default_rng(0).integers(0, 255, (3, side, side, 4)).astype("uint8")
            out = serve(image=tf.constant(images))
            assert sorted(out) == ["labels", "probabilities"], sorted(out)
            assert out["probabilities"].dtype == tf.float32 and out["probabilities"].shape == (3, 28)
            assert out["labels"].dtype == tf.int32 and out["labels"].shape == (3, 28)
            assert set(np.unique(out["labels"].numpy())) <= {{0, 1}}
            expected = (out["probabilities"].numpy() >= loaded.thresholds[0].numpy()).astype("int32")
            assert (out["labels"].numpy() == expected).all()
        assert int(loaded.image_size[0].numpy()) == 32
        assert loaded.class_names[0].numpy()[27] == b"Rods & rings"
        assert not any(name.startswith(("protein_location", "data_prep")) for name in sys.modules)
        print("loaded-ok")
    """)
    result = run_cli("-c", script, cwd=pipeline["work"])
    assert "loaded-ok" in result.stdout


def test_predict_writes_a_submission_in_sample_order(pipeline):
    raw, submission = pipeline["raw"], pipeline["work"] / "submission.csv"
    sample = list(csv.DictReader((raw / "sample_submission.csv").open()))
    sample.reverse()  # the sample's order, whatever it is, is kept
    with (pipeline["work"] / "sample.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, ["Id", "Predicted"])
        writer.writeheader()
        writer.writerows(sample)
    probabilities = pipeline["work"] / "probabilities.csv"
    result = run_cli(
        "-m",
        "protein_location",
        "predict",
        "--model",
        pipeline["export"],
        "--images",
        raw / "test",
        "--csv",
        pipeline["work"] / "sample.csv",
        "--out",
        submission,
        "--probabilities",
        probabilities,
    )
    assert f"predict: 10 images, the mean of 8 flips/rotations each -> {submission}" in result.stdout
    rows = list(csv.DictReader(submission.open()))
    assert [row["Id"] for row in rows] == [row["Id"] for row in sample]
    for row in rows:
        indices = [int(i) for i in row["Predicted"].split()]
        assert indices == sorted(set(indices)) and all(0 <= i < 28 for i in indices)
    table = list(csv.DictReader(probabilities.open()))
    assert [row["Id"] for row in table] == [row["Id"] for row in sample]
    assert list(table[0])[:2] == ["Id", "Nucleoplasm"] and list(table[0])[-1] == "Rods & rings"
    assert all(0.0 <= float(v) <= 1.0 for row in table for k, v in row.items() if k != "Id")
    scored = run_cli("-m", "protein_location", "score", "--submission", submission, "--truth", raw / "test_labels.csv")
    assert scored.stdout.startswith("score: macro F1 ")


def test_train_on_a_folder_without_dataset_json_is_a_one_line_error(tmp_path):
    result = run_cli("train_keras.py", "--data", tmp_path, "--model-dir", tmp_path / "run", check=False)
    assert result.returncode == 1
    assert last_error_line(result) == (
        f"error: {tmp_path}: no dataset.json here; convert a dataset first with `python -m data_prep convert`"
    )


def test_batch_larger_than_the_train_split_is_a_one_line_error(pipeline, tmp_path):
    result = run_cli(
        "train_keras.py", "--data", pipeline["data"], "--model-dir", tmp_path / "run", "--batch-size", 4096, check=False
    )
    assert result.returncode == 1
    assert last_error_line(result).startswith(f"error: {pipeline['data']}: the train split has ")
    assert last_error_line(result).endswith(" examples, fewer than one batch of 4096; lower --batch-size")


def test_convert_cli_errors_are_one_line_with_nonzero_exit(pipeline, tmp_path):
    missing = run_cli("-m", "data_prep", "convert", "--images", tmp_path / "nope", "--out", tmp_path / "o", check=False)
    assert missing.returncode == 1
    assert last_error_line(missing) == f"error: {tmp_path / 'nope'}: images folder not found"
    bad_csv = tmp_path / "bad.csv"
    bad_csv.write_text("Id,Target\nabc,31\n")
    bad = run_cli(
        "-m",
        "data_prep",
        "convert",
        "--csv",
        bad_csv,
        "--images",
        pipeline["raw"] / "train",
        "--out",
        tmp_path / "o2",
        check=False,
    )
    assert bad.returncode == 1
    assert last_error_line(bad) == f"error: Id abc: {bad_csv} line 2: label 31 is outside 0-27 (hpa2018)"


def test_predict_with_a_missing_or_corrupt_savedmodel_is_a_clear_error(pipeline, tmp_path):
    result = run_cli(
        "-m",
        "protein_location",
        "predict",
        "--model",
        tmp_path / "none",
        "--images",
        pipeline["raw"] / "test",
        "--out",
        tmp_path / "s.csv",
        check=False,
    )
    assert result.returncode == 1
    assert last_error_line(result) == (
        f"error: {tmp_path / 'none'}: not a SavedModel (no saved_model.pb); export one with train_keras.py --export"
    )
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "saved_model.pb").write_bytes(b"not a protobuf")
    result = run_cli(
        "-m",
        "protein_location",
        "predict",
        "--model",
        corrupt,
        "--images",
        pipeline["raw"] / "test",
        "--out",
        tmp_path / "s.csv",
        check=False,
    )
    assert result.returncode == 1
    assert last_error_line(result).startswith(f"error: {corrupt}: cannot load the SavedModel (")
    assert not (tmp_path / "s.csv").exists()


def test_every_signature_labels_with_thresholds_tuned_for_the_probabilities_it_computes(pipeline):
    """With --tta 8 serving_default averages the 8 flips/rotations and labels
    with the thresholds tuned on 8-view val probabilities; serving_single_view
    computes one view and labels with single-view thresholds."""
    import numpy as np
    import tensorflow as tf

    from protein_location.core import raw_images
    from protein_location.inference import predict

    raw = pipeline["raw"]
    tuned = json.loads((pipeline["run"] / "thresholds.json").read_text())
    assert tuned["views"] == 8 and tuned["thresholds"] == tuned["tta_thresholds"]
    assert tuned["tta_thresholds"] != tuned["single_view_thresholds"]
    loaded = tf.saved_model.load(str(pipeline["export"] / "1"))
    assert int(loaded.views[0]) == 8
    np.testing.assert_allclose(loaded.thresholds[0].numpy(), tuned["tta_thresholds"], rtol=1e-6)
    np.testing.assert_allclose(loaded.single_view_thresholds[0].numpy(), tuned["single_view_thresholds"], rtol=1e-6)

    ids = [line.split(",")[0] for line in (raw / "sample_submission.csv").read_text().splitlines()[1:4]]
    batch = np.stack([raw_images.read_image(str(raw / "test"), i, 32) for i in ids])
    single = loaded.signatures["serving_single_view"]
    views = [np.rot90(m, k, axes=(1, 2)) for m in (batch, batch[:, :, ::-1]) for k in range(4)]
    expected = np.mean(
        [single(image=tf.constant(np.ascontiguousarray(v)))["probabilities"].numpy() for v in views], axis=0
    )
    served = loaded.signatures["serving_default"](image=tf.constant(batch))
    np.testing.assert_allclose(served["probabilities"], expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(served["labels"], (expected >= tuned["tta_thresholds"]).astype(np.int32))
    one_view = single(image=tf.constant(batch))
    np.testing.assert_array_equal(
        one_view["labels"], (one_view["probabilities"].numpy() >= tuned["single_view_thresholds"]).astype(np.int32)
    )

    # predict takes the SavedModel's own views by default, --tta 1 the single view.
    import train_keras

    assert train_keras.parse_args(["--data", "d", "--model-dir", "m"]).tta == 1  # the default export: one view
    probabilities, labels = predict.predict_images(str(pipeline["export"]), str(raw / "test"), ids)
    np.testing.assert_allclose(probabilities, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(labels, served["labels"])
    probabilities, labels = predict.predict_images(str(pipeline["export"]), str(raw / "test"), ids, tta=1)
    np.testing.assert_allclose(probabilities, one_view["probabilities"], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(labels, one_view["labels"])


def test_a_single_view_export_refuses_tta_8_and_the_export_command_can_switch(pipeline):
    import numpy as np
    import tensorflow as tf

    base = pipeline["work"] / "export" / "single"
    run_cli("-m", "protein_location", "export", "--model-dir", pipeline["run"], "--out", base, "--tta", 1)
    loaded = tf.saved_model.load(str(base / "1"))
    tuned = json.loads((pipeline["run"] / "thresholds.json").read_text())
    assert int(loaded.views[0]) == 1
    np.testing.assert_allclose(loaded.thresholds[0].numpy(), tuned["single_view_thresholds"], rtol=1e-6)
    with pytest.raises(PredictError) as error:
        serving.load_serving_model(str(base), tta=8)
    assert str(error.value) == (
        f"{base}: this SavedModel serves one view, with thresholds tuned for one view; for 8 "
        "re-export its run with `python -m protein_location export --model-dir RUN --out "
        "DIR --tta 8`"
    )


def test_raw_files_and_tfrecords_score_the_same_through_their_signatures(pipeline):
    """predict_channels (encoded stain files) and serve_examples (our records)
    agree with serving_default, in a process that imports only TensorFlow."""
    script = textwrap.dedent(f"""
        import glob, sys
        import numpy as np, tensorflow as tf
        loaded = tf.saved_model.load({str(pipeline["export"] / "1")!r})
        serve = loaded.signatures["serving_default"]
        channels = ["red", "green", "blue", "yellow"]
        ids = sorted({{p.split("/")[-1].rsplit("_", 1)[0]
                       for p in glob.glob({str(pipeline["raw"] / "test")!r} + "/*.png")}})[:3]
        files = {{c: [tf.io.read_file(f"{str(pipeline["raw"] / "test")}/{{i}}_{{c}}.png") for i in ids]
                  for c in channels}}
        from_files = loaded.signatures["predict_channels"](**{{c: tf.stack(v) for c, v in files.items()}})
        pixels = tf.stack([tf.concat([tf.io.decode_png(files[c][n]) for c in channels], -1) for n in range(len(ids))])
        np.testing.assert_allclose(from_files["probabilities"], serve(image=pixels)["probabilities"], atol=1e-5)
        # 16-bit stains at another size: the same image up to 8-bit rounding.
        wide = {{c: tf.stack([tf.io.encode_png(tf.image.resize(tf.cast(tf.io.decode_png(f), tf.float32) * 257,
                 [48, 48], "nearest")[..., :1].numpy().astype(np.uint16)) for f in files[c]]) for c in channels}}
        from_16bit = loaded.signatures["predict_channels"](**wide)["probabilities"].numpy()
        assert from_16bit.shape == (3, 28)
        records = glob.glob({str(pipeline["data"])!r} + "/val-*.tfrecord")
        examples = tf.stack(list(tf.data.TFRecordDataset(records).take(4)))
        from_records = loaded.signatures["serve_examples"](examples=examples)
        assert from_records["probabilities"].shape == (4, 28) and from_records["labels"].dtype == tf.int32
        assert not any(name.startswith(("protein_location", "data_prep")) for name in sys.modules)
        print("signatures-ok")
    """)
    assert "signatures-ok" in run_cli("-c", script, cwd=pipeline["work"]).stdout


def test_saved_model_cli_lists_the_five_signatures(pipeline):
    import pathlib
    import subprocess
    import sys

    cli = pathlib.Path(sys.executable).parent / "saved_model_cli"  # installed with tensorflow
    shown = subprocess.run(
        [str(cli), "show", "--dir", str(pipeline["export"] / "1"), "--all"], capture_output=True, text=True, check=True
    ).stdout
    for name in (
        "serving_default",
        "serving_single_view",
        "predict_channels",
        "serve_examples",
        "gradcam",
        "heatmaps",
        "probabilities",
        "labels",
    ):
        assert name in shown


def test_tflite_from_training_agrees_with_the_savedmodel_through_litert(pipeline):
    """The --tflite file of train_keras.py, run by the LiteRT interpreter in a
    process that does not import this project, on the raw test images."""
    script = textwrap.dedent(f"""
        import glob, sys
        import numpy as np, tensorflow as tf
        from ai_edge_litert.interpreter import Interpreter
        version = {str(pipeline["export"] / "1")!r}
        test = {str(pipeline["raw"] / "test")!r}
        ids = sorted({{p.split("/")[-1].rsplit("_", 1)[0] for p in glob.glob(test + "/*.png")}})
        images = np.stack([np.concatenate([tf.io.decode_png(tf.io.read_file(f"{{test}}/{{i}}_{{c}}.png")).numpy()
                           for c in ("red", "green", "blue", "yellow")], -1) for i in ids])
        served = tf.saved_model.load(version).signatures["serving_single_view"](image=tf.constant(images))
        runner = Interpreter(model_path=version + "/model.tflite").get_signature_runner("serving_default")
        out = runner(image=images)
        difference = np.abs(out["probabilities"] - served["probabilities"].numpy()).max()
        assert difference <= 1e-3, difference
        assert out["labels"].shape == (len(ids), 28) and out["labels"].dtype == np.int32
        assert not any(name.startswith(("protein_location", "data_prep")) for name in sys.modules)
        print(f"tflite-ok {{len(ids)}} {{difference:.1e}}")
    """)
    assert "tflite-ok 10 " in run_cli("-c", script, cwd=pipeline["work"]).stdout


def test_export_command_reexports_a_run_as_a_new_version_with_onnx(pipeline):
    import numpy as np
    import tensorflow as tf

    base = pipeline["work"] / "export" / "reexported"
    result = run_cli(
        "-m", "protein_location", "export", "--model-dir", pipeline["run"], "--out", base, "--onnx"
    )  # TFLite: the training export above; int8: tests/test_export.py
    lines = result.stdout.strip().splitlines()
    assert lines[0].startswith(f"export: {pipeline['run']}/model.keras (")
    assert lines[1] == (
        f"export: SavedModel in {base / '1'} (serving_default: 8 flips/rotations, with thresholds tuned for it)"
    )
    assert lines[2].startswith(f"export: ONNX in {base / '1' / 'model.onnx'} (")
    assert lines[2].endswith(" to the SavedModel on 8 random images)")
    images = tf.constant(np.random.default_rng(0).integers(0, 256, (4, 32, 32, 4)).astype(np.uint8))
    again = tf.saved_model.load(str(base / "1")).signatures["serving_default"](image=images)
    trained = tf.saved_model.load(str(pipeline["export"] / "1")).signatures["serving_default"](image=images)
    np.testing.assert_allclose(again["probabilities"], trained["probabilities"], atol=1e-6)
    np.testing.assert_array_equal(again["labels"], trained["labels"])
    missing = run_cli(
        "-m", "protein_location", "export", "--model-dir", pipeline["work"] / "nope", "--out", base, check=False
    )
    assert missing.returncode == 1
    assert last_error_line(missing) == (
        f"error: {pipeline['work'] / 'nope'}: no model.keras here; train a run with `train_keras.py --model-dir` first"
    )
    assert sorted(p.name for p in base.iterdir()) == ["1"]


def test_predict_from_tfrecords_streams_the_split_and_matches_predict_from_images(pipeline, capsys):
    import numpy as np

    from data_prep import convert
    from protein_location import __main__ as cli
    from protein_location.inference import predict

    raw, work = pipeline["raw"], pipeline["work"]
    records = work / "tfrecords" / "test"
    convert.convert(str(raw / "test"), str(records), num_shards=2, seed=0)  # no --csv: an unlabeled test split
    sample = work / "sample_reversed.csv"
    ids = [line.split(",")[0] for line in (raw / "sample_submission.csv").read_text().splitlines()[1:]][::-1]
    sample.write_text("Id,Predicted\n" + "".join(f"{i},\n" for i in ids))
    out, probabilities = work / "from_records.csv", work / "from_records_probabilities.csv"
    # float32: the library's own precision, so the numbers compare exactly (auto may pick bfloat16 here).
    assert (
        cli.main(
            [
                "predict",
                "--model",
                str(pipeline["export"]),
                "--records",
                str(records),
                "--csv",
                str(sample),
                "--out",
                str(out),
                "--probabilities",
                str(probabilities),
                "--batch-size",
                "4",
                "--precision",
                "float32",
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "precision: float32 (--precision)" in printed
    assert f"predict: 10 test records of {records}, the mean of 8 flips/rotations each -> {out}" in printed
    rows = list(csv.DictReader(out.open()))
    assert [row["Id"] for row in rows] == ids
    expected_probabilities, expected_labels = predict.predict_images(str(pipeline["export"]), str(raw / "test"), ids)
    table = list(csv.DictReader(probabilities.open()))
    got = np.array([[float(v) for k, v in row.items() if k != "Id"] for row in table])
    np.testing.assert_allclose(got, expected_probabilities, atol=2e-6)  # the CSV keeps 6 decimals
    predicted = [" ".join(str(i) for i in np.flatnonzero(row)) for row in expected_labels]
    assert [row["Predicted"] for row in rows] == predicted

    # Without --csv: every record of the split, in the manifest's order; a labeled split works too.
    assert (
        cli.main(
            [
                "predict",
                "--model",
                str(pipeline["export"]),
                "--records",
                str(pipeline["data"]),
                "--split",
                "val",
                "--out",
                str(work / "val.csv"),
                "--tta",
                "1",
            ]
        )
        == 0
    )
    val_count = json.loads((pipeline["data"] / "dataset.json").read_text())["splits"]["val"]["num_examples"]
    assert len(list(csv.DictReader((work / "val.csv").open()))) == val_count
    assert (
        cli.main(
            [
                "predict",
                "--model",
                str(pipeline["export"]),
                "--records",
                str(pipeline["data"]),
                "--out",
                str(work / "none.csv"),
            ]
        )
        == 1
    )
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"error: {pipeline['data']}: the dataset has no 'test' split (splits: train, val)"
    )
    assert not (work / "none.csv").exists()
    with pytest.raises(PredictError) as error:
        submission.select_ids(["a", "b"], np.zeros((2, 28)), np.zeros((2, 28)), ["b", "c", "d"], "sample.csv")
    assert str(error.value) == "sample.csv: 2 Ids of the CSV are not in the records, e.g. c"


def test_predict_images_streams_any_batch_size_and_names_a_bad_file_in_its_batch(pipeline, tmp_path):
    """predict's tf.data pipeline: a batch size that leaves a remainder gives
    the same numbers as one image at a time; a truncated file, or stains of
    different sizes, stop it with the SourceError naming the file."""
    import shutil

    import cv2
    import numpy as np

    from protein_location.core import raw_images
    from protein_location.core.errors import SourceError
    from protein_location.inference import predict

    raw, model = pipeline["raw"], serving.load_serving_model(str(pipeline["export"]), tta=1)
    ids = raw_images.list_image_ids(str(raw / "test"))
    together = predict.predict_images(model, str(raw / "test"), ids, batch_size=3)
    alone = [predict.predict_images(model, str(raw / "test"), [i]) for i in ids]
    np.testing.assert_allclose(together[0], np.concatenate([p for p, _ in alone]), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(together[1], np.concatenate([labels for _, labels in alone]))

    images = tmp_path / "images"
    shutil.copytree(raw / "test", images)
    truncated = images / f"{ids[4]}_green.png"
    truncated.write_bytes(truncated.read_bytes()[:200])
    with pytest.raises(SourceError) as error:
        predict.predict_images(model, str(images), ids, batch_size=3)
    assert str(error.value) == f"Id {ids[4]}: {truncated}: truncated or corrupt image (200 bytes)"

    shutil.copy(raw / "test" / truncated.name, truncated)
    smaller = images / f"{ids[7]}_yellow.png"
    cv2.imwrite(str(smaller), np.zeros((16, 16), np.uint8))
    with pytest.raises(SourceError) as error:
        predict.predict_images(model, str(images), ids, batch_size=3)
    assert str(error.value) == f"Id {ids[7]}: {smaller}: 16x16 differs from the red channel's 32x32"
