import json

import numpy as np
import pytest
import tensorflow as tf

from protein_location import export, models
from protein_location.core import labels as labels_lib
from protein_location.export import formats, onnx_format, saved_model, signatures, tflite_format, versions
from protein_location.inference import serving

pytestmark = pytest.mark.slow  # trains or exports


def test_exports_are_numbered_versions_and_the_newest_is_served(tmp_path):
    base = tmp_path / "export"
    model = models.build_seresnet("seresnet18", image_size=16, width=0.125)
    first = export.export_saved_model(model, np.full(28, 0.5), str(base), labels_lib.CLASS_NAMES)
    second = export.export_saved_model(model, np.full(28, 0.9), str(base), labels_lib.CLASS_NAMES)
    assert (first, second) == (str(base / "1"), str(base / "2"))
    assert sorted(p.name for p in base.iterdir()) == ["1", "2"]
    _, image_size, thresholds, *_ = serving.load_serving_model(str(base))
    assert image_size == 16
    np.testing.assert_allclose(thresholds, 0.9)
    _, _, thresholds, *_ = serving.load_serving_model(str(base / "1"))  # a version folder works too
    np.testing.assert_allclose(thresholds, 0.5)
    outputs = tf.saved_model.load(second).signatures["serving_default"](image=tf.zeros([1, 20, 20, 4], tf.uint8))
    assert outputs["labels"].shape == (1, 28)


def test_the_savedmodel_stores_each_weight_once_and_lists_the_models_variables(tmp_path):
    model = models.build_seresnet("seresnet18", image_size=16, width=0.125)
    path = export.export_saved_model(model, np.full(28, 0.5), str(tmp_path / "export"), labels_lib.CLASS_NAMES)
    stored = tf.train.load_checkpoint(f"{path}/variables/variables").get_variable_to_shape_map()
    weights = sum(int(np.prod(shape)) for name, shape in stored.items() if "OBJECT_GRAPH" not in name)
    metadata = 1 + 1 + 28 + 28 + 28 + 4 + 1  # image_size, views, both thresholds, class_names, channels, max_pixels
    assert weights == model.count_params() + metadata
    loaded = tf.saved_model.load(path)
    for collection in ("variables", "trainable_variables", "non_trainable_variables"):
        expected = getattr(model, collection)
        assert len(getattr(loaded, collection)) == len(expected) > 0, collection
        for restored, variable in zip(getattr(loaded, collection), expected):
            np.testing.assert_array_equal(restored.numpy(), variable.numpy())


# --- TFLite and ONNX beside the SavedModel -------------------------------------------------------


def synthetic_test_images(synthetic_dir):
    from protein_location.core import raw_images

    ids = raw_images.list_image_ids(str(synthetic_dir / "test"))
    return np.stack([raw_images.read_image(str(synthetic_dir / "test"), i, 32) for i in ids])


@pytest.fixture(scope="module")
def all_formats(tmp_path_factory):
    """A 32 px SE-ResNet exported with every format, each checked against the SavedModel on export."""
    model = models.build_seresnet(
        "seresnet18", image_size=32, width=0.125, output_bias=np.linspace(-4.0, 1.0, labels_lib.NUM_CLASSES)
    )
    lines = []
    path = export.export_model(
        model,
        np.full(labels_lib.NUM_CLASSES, 0.3),
        str(tmp_path_factory.mktemp("formats")),
        formats=formats.FORMATS,
        log=lines.append,
        class_names=labels_lib.CLASS_NAMES,
    )
    return path, lines


def test_export_writes_tflite_int8_and_onnx_into_the_version_folder(all_formats):
    path, lines = all_formats
    assert lines[0] == f"export: SavedModel in {path} (serving_default: one view, with thresholds tuned for it)"
    for line, kind, name in zip(
        lines[1:],
        ("TFLite float32", "TFLite dynamic-range int8", "ONNX"),
        ("model.tflite", "model_int8.tflite", "model.onnx"),
    ):
        assert line.startswith(f"export: {kind} in {path}/{name} (")
        assert " to the SavedModel on 8 random images)" in line
    sizes = {name: tf.io.gfile.stat(f"{path}/{name}").length for name in formats.FILE_NAMES.values()}
    assert sizes["model_int8.tflite"] < sizes["model.tflite"] / 2.5


def test_tflite_and_onnx_agree_with_the_savedmodel_on_test_images(all_formats, synthetic_dir):
    path, _ = all_formats
    images = synthetic_test_images(synthetic_dir)
    served = tf.saved_model.load(path).signatures["serving_default"](image=tf.constant(images))
    expected = served["probabilities"].numpy()
    for name, run in (("model.tflite", tflite_format.run_tflite), ("model.onnx", onnx_format.run_onnx)):
        outputs = run(tf.io.gfile.GFile(f"{path}/{name}", "rb").read(), images)
        assert outputs["probabilities"].shape == outputs["labels"].shape == (len(images), 28)
        np.testing.assert_allclose(outputs["probabilities"], expected, atol=1e-3, err_msg=name)
        assert outputs["labels"].dtype == np.int32
        agree = (outputs["labels"] == served["labels"].numpy()) | (np.abs(expected - 0.3) < 1e-3)
        assert agree.all(), name
    quantized = tflite_format.run_tflite(tf.io.gfile.GFile(f"{path}/model_int8.tflite", "rb").read(), images)
    assert quantized["probabilities"].shape == (len(images), 28)
    assert np.all((quantized["probabilities"] >= 0) & (quantized["probabilities"] <= 1))
    assert np.abs(quantized["probabilities"] - expected).max() < 0.1


def test_a_failed_conversion_leaves_no_version_folder(tmp_path, monkeypatch):
    def fail(*args, **kwargs):
        raise RuntimeError("converter broke\n  at a long traceback")

    # The real writer is tested above; this is about cleanup.
    def fake_saved_model(model, thresholds, path, class_names, tta_thresholds=None):
        tf.io.gfile.makedirs(f"{path}/variables")
        tf.io.gfile.GFile(f"{path}/saved_model.pb", "wb").write(b"pb")

    monkeypatch.setattr(saved_model, "write_saved_model", fake_saved_model)
    monkeypatch.setattr(tflite_format, "convert_tflite", fail)
    model = models.build_seresnet("seresnet18", image_size=16, width=0.125)
    base = tmp_path / "export"
    with pytest.raises(export.ExportError) as error:
        export.export_model(
            model,
            np.full(28, 0.5),
            str(base),
            formats=("tflite",),
            log=lambda _: None,
            class_names=labels_lib.CLASS_NAMES,
        )
    assert str(error.value) == (
        f"{base / '1' / 'model.tflite'}: the TFLite float32 conversion failed (converter "
        f"broke); no version written to {base}"
    )
    assert versions.version_dirs(str(base)) == {}
    assert list(base.iterdir()) == []  # nor its temporary folder


# --- Atomic versions: a version folder appears only when complete ------------------------------

KILLED_EXPORT = """
import sys
import numpy as np
from protein_location import export, models
from protein_location.core import labels as labels_lib
model = models.build_seresnet("seresnet18", image_size=16, width=0.125)
export.export_saved_model(model, np.full(28, 0.5), sys.argv[1], labels_lib.CLASS_NAMES)
print("export finished", flush=True)
"""


def test_an_export_killed_while_writing_leaves_the_last_complete_version_served(tmp_path):
    """kill -9 an export while it writes version 2: a TensorFlow-only client
    (the highest all-digit folder, as TF Serving picks it) still gets version
    1, which loads and serves; the next export is version 2 and removes what
    the killed one left."""
    import os
    import subprocess
    import sys
    import time

    from tests.helpers import ROOT

    base = tmp_path / "export"
    model = models.build_seresnet("seresnet18", image_size=16, width=0.125)
    first = export.export_saved_model(model, np.full(28, 0.3), str(base), labels_lib.CLASS_NAMES)
    other_machine = base / ".tmp-7-another-host-4242-0123abcd"  # a live export elsewhere: left alone
    other_machine.mkdir()
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=str(ROOT))
    process = subprocess.Popen(
        [sys.executable, "-c", KILLED_EXPORT, str(base)],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while True:  # until the new version's files start to appear, whatever the folder is called
            writing = [
                p for p in base.iterdir() if p.is_dir() and p.name not in ("1", other_machine.name) and any(p.iterdir())
            ]
            if writing:
                break
            assert process.poll() is None, f"the export ended before it was killed: {process.stdout.read()}"
            assert time.monotonic() < deadline, "the export wrote nothing in 120 s"
            time.sleep(0.002)
    finally:
        process.kill()  # SIGKILL: no cleanup runs
        process.wait()
    assert "export finished" not in process.stdout.read()

    digits = [int(p.name) for p in base.iterdir() if p.name.isdigit()]
    assert max(digits) == 1, sorted(p.name for p in base.iterdir())
    assert versions.resolve_saved_model(str(base)) == first
    served = tf.saved_model.load(first).signatures["serving_default"](image=tf.zeros([2, 24, 24, 4], tf.uint8))
    assert served["labels"].shape == (2, 28)
    [left] = writing
    assert left.name.startswith(".tmp-2-")

    lines = []
    second = export.export_model(
        model, np.full(28, 0.6), str(base), log=lines.append, class_names=labels_lib.CLASS_NAMES
    )
    assert second == str(base / "2")
    assert lines[0] == f"export: removed {left}, left by an export that was killed"
    assert sorted(p.name for p in base.iterdir()) == sorted(["1", "2", other_machine.name])
    np.testing.assert_allclose(tf.saved_model.load(versions.resolve_saved_model(str(base))).thresholds[0].numpy(), 0.6)


def test_a_version_is_copied_into_place_where_folders_cannot_be_renamed():
    """ram:// (like gs://) has no atomic folder rename: the files are copied,
    saved_model.pb last, and the temporary folder removed."""
    base = "ram://exports/copied"
    staging = versions.make_staging_dir(base, "1")
    for name, content in (
        ("variables/variables.index", b"i"),
        ("variables/variables.data-00000-of-00001", b"d"),
        ("saved_model.pb", b"pb"),
        ("assets/a", b"a"),
    ):
        tf.io.gfile.makedirs(f"{staging}/{name}".rsplit("/", 1)[0])
        tf.io.gfile.GFile(f"{staging}/{name}", "wb").write(content)
    assert versions.version_dirs(base) == {}  # the temporary folder is no version
    assert versions.publish(staging, base) == f"{base}/1"
    assert tf.io.gfile.GFile(f"{base}/1/variables/variables.data-00000-of-00001", "rb").read() == b"d"
    assert tf.io.gfile.GFile(f"{base}/1/saved_model.pb", "rb").read() == b"pb"
    assert [n.rstrip("/") for n in tf.io.gfile.listdir(base)] == ["1"]


def test_format_flags_need_an_export_folder_and_an_installed_converter(monkeypatch):
    with pytest.raises(export.ExportError) as error:
        export.export_formats_of(tflite=True, onnx=True)
    assert str(error.value) == "--tflite --onnx needs --export DIR"
    monkeypatch.setitem(__import__("sys").modules, "tf2onnx", None)
    with pytest.raises(export.ExportError) as error:
        export.export_formats_of(onnx=True, export_dir="export/x")
    assert str(error.value) == (
        "--onnx needs tf2onnx (import of tf2onnx halted; None in sys.modules); "
        "pip install 'protein-location[onnx]' (tf2onnx, onnxruntime)"
    )
    assert export.export_formats_of(tflite=True, export_dir="export/x") == ("tflite",)


def test_load_run_names_what_is_missing_or_wrong(tmp_path):
    with pytest.raises(export.ExportError) as error:
        export.load_run(str(tmp_path))
    assert str(error.value) == f"{tmp_path}: no model.keras here; train a run with `train_keras.py --model-dir` first"
    models.build_seresnet("seresnet18", image_size=16, width=0.125).save(str(tmp_path / "model.keras"))
    with pytest.raises(export.ExportError) as error:
        export.load_run(str(tmp_path))
    assert str(error.value) == (
        f"{tmp_path}: no thresholds.json here; train a run with `train_keras.py --model-dir` first"
    )
    (tmp_path / "thresholds.json").write_text(
        json.dumps({"thresholds": [0.5] * 27, "class_names": list(labels_lib.CLASS_NAMES)})
    )
    with pytest.raises(export.ExportError) as error:
        export.load_run(str(tmp_path))
    assert str(error.value) == (
        f"{tmp_path / 'thresholds.json'}: expected 28 thresholds and class names (the model's outputs), found 27 and 28"
    )
    (tmp_path / "model.keras").write_bytes(b"not a zip")
    with pytest.raises(export.ExportError) as error:
        export.load_run(str(tmp_path))
    assert str(error.value).startswith(f"{tmp_path / 'model.keras'}: cannot load the Keras model (")


def test_train_keras_format_flags_are_checked_before_training(tmp_path, capsys):
    import train_keras

    assert train_keras.main(["--data", str(tmp_path), "--model-dir", str(tmp_path / "run"), "--tflite"]) == 1
    assert capsys.readouterr().err.strip().splitlines()[-1] == "error: --tflite needs --export DIR"
    assert not (tmp_path / "run").exists()


def test_a_mixed_precision_model_exports_and_converts_as_its_float32_twin(tmp_path):
    """TFLite has no bfloat16 builtins, and a bfloat16 SavedModel would run
    emulated on most CPUs: export_model writes a float32 copy with the same
    weights, and the TFLite file is converted from that copy."""
    import keras

    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        model = models.build_seresnet("seresnet18", image_size=16, width=0.125)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    twin = models.float32_twin(model)
    assert {layer.dtype_policy.name for layer in twin.layers} == {"float32"}
    assert models.float32_twin(twin) is twin
    images = formats.check_images(16)
    thresholds = np.full(28, 0.5)
    expected = signatures.fixed_size_function(twin, thresholds)(tf.constant(images))["probabilities"].numpy()
    mixed = signatures.fixed_size_function(model, thresholds)(tf.constant(images))["probabilities"].numpy()
    np.testing.assert_allclose(mixed, expected, atol=2e-2)  # the same weights, bfloat16 rounding apart
    outputs = tflite_format.run_tflite(tflite_format.convert_tflite(twin, thresholds), images)
    np.testing.assert_allclose(outputs["probabilities"], expected, atol=1e-3)
    assert np.abs(mixed - expected).max() > 1e-5  # so the SavedModel check below tells float32 from bfloat16
    path = export.export_model(
        model,
        thresholds,
        str(tmp_path / "export"),
        formats=("tflite",),
        log=lambda _: None,
        class_names=labels_lib.CLASS_NAMES,
    )
    np.testing.assert_allclose(formats.saved_model_probabilities(path, images), expected, atol=1e-6)


def test_thresholds_json_is_read_back_as_written_and_a_file_of_an_earlier_version_too(tmp_path):
    from protein_location.evaluation.thresholds_file import ThresholdsFile

    names = tuple(labels_lib.CLASS_NAMES)
    written = ThresholdsFile(
        names,
        np.full(28, 0.25, np.float32),
        np.full(28, 0.75, np.float32),
        views=8,
        rule="a rule",
        folds=5,
        tuned_on="all of them",
    )
    written.write(str(tmp_path))
    content = json.loads((tmp_path / "thresholds.json").read_text())
    assert content["label_set"] == "hpa2018" and content["thresholds"] == [0.75] * 28  # serving_default's: 8 views
    read = ThresholdsFile.read(str(tmp_path))
    assert (read.class_names, read.views, read.rule, read.folds, read.tuned_on) == (
        names,
        8,
        "a rule",
        5,
        "all of them",
    )
    np.testing.assert_array_equal(read.single_view, written.single_view)
    np.testing.assert_array_equal(read.serving, written.tta)
    # Before single_view_thresholds, tta_thresholds and views were written: one view's thresholds only.
    (tmp_path / "thresholds.json").write_text(json.dumps({"thresholds": [0.5] * 28, "class_names": list(names)}))
    early = ThresholdsFile.read(str(tmp_path))
    assert (early.views, early.tta, early.folds, early.rule) == (1, None, 0, None)
    np.testing.assert_array_equal(early.serving, np.full(28, 0.5, np.float32))
    (tmp_path / "thresholds.json").write_text(json.dumps({"class_names": list(names)}))
    with pytest.raises(ValueError, match=r"^not a thresholds file \('thresholds'\)$"):
        ThresholdsFile.read(str(tmp_path))


def test_a_views_count_other_than_1_or_8_is_refused_by_its_argument_before_loading(tmp_path):
    from protein_location.core.errors import PredictError, naming_flags

    with pytest.raises(PredictError) as error:
        serving.load_serving_model(str(tmp_path / "not-even-there"), tta=3)
    assert str(error.value) == "`tta` must be 1 or 8, got 3"
    assert naming_flags(error.value, {"tta": "--tta"}) == "--tta must be 1 or 8, got 3"
