"""Inputs made to hurt: over-sized images sent to the SavedModel, manifests
pointing outside their dataset, broken submissions, SavedModels of other
tools. Each gets one line naming the cap, file or Id, never a traceback or
gigabytes allocated."""

import io
import json

import numpy as np
import pytest
import tensorflow as tf

from data_prep import tfrecord_lib
from protein_location import export, models
from protein_location.core import labels as labels_lib, manifest as manifest_lib, pixel_cap
from protein_location.core.errors import PredictError
from protein_location.core.raw_images import DEFAULT_MAX_PIXELS
from protein_location.inference import serving
from tests.helpers import last_error_line, run_cli

CAP = f"over the cap of {DEFAULT_MAX_PIXELS} pixels"
EXPORT_HINT = "export it with train_keras.py --export or python -m protein_location export"


# --- The serving signatures refuse an image over the pixel cap, before resizing or decoding ------


@pytest.fixture(scope="module")
def saved_path(tmp_path_factory):
    model = models.build_seresnet("seresnet18", image_size=32, width=0.125)
    return export.export_saved_model(
        model, np.full(labels_lib.NUM_CLASSES, 0.5), str(tmp_path_factory.mktemp("capped")), labels_lib.CLASS_NAMES
    )


@pytest.fixture(scope="module")
def loaded(saved_path):
    return tf.saved_model.load(saved_path)


def png_claiming(height, width):
    """A real 4x4 PNG whose IHDR says height x width, with a valid CRC: a decoder would allocate for it."""
    import zlib

    data = bytearray(tf.io.encode_png(tf.zeros([4, 4, 1], tf.uint8)).numpy())
    data[16:24] = width.to_bytes(4, "big") + height.to_bytes(4, "big")
    data[29:33] = zlib.crc32(data[12:29]).to_bytes(4, "big")  # over the chunk's type and data
    return bytes(data)


def jpeg_claiming(height, width):
    """A real 8x8 JPEG whose frame header (SOF0) says height x width."""
    data = bytearray(tf.io.encode_jpeg(tf.zeros([8, 8, 1], tf.uint8)).numpy())
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = height.to_bytes(2, "big") + width.to_bytes(2, "big")
    return bytes(data)


def call_error(function, **inputs):
    with pytest.raises(tf.errors.InvalidArgumentError) as error:
        function(**inputs)
    return error.value.message


@pytest.mark.slow
def test_image_signatures_refuse_an_image_over_the_pixel_cap(loaded):
    assert int(loaded.max_pixels[0].numpy()) == DEFAULT_MAX_PIXELS
    over = tf.zeros([1, 1, DEFAULT_MAX_PIXELS + 1, 4], tf.uint8)  # 160 MB of uint8; 640 MB once cast to float
    for name in (export.SIGNATURE, export.SINGLE_VIEW_SIGNATURE, export.GRADCAM_SIGNATURE):
        message = call_error(loaded.signatures[name], image=over)
        assert f"assertion failed: [image of 1x{DEFAULT_MAX_PIXELS + 1} pixels is {CAP}]" in message, name
    served = loaded.signatures[export.SIGNATURE](image=tf.zeros([2, 40, 24, 4], tf.uint8))  # any size under it
    assert served["labels"].shape == (2, 28)


def test_predict_channels_refuses_a_file_whose_header_is_over_the_cap_before_decoding(loaded):
    small = tf.io.encode_png(tf.zeros([4, 4, 1], tf.uint8)).numpy()
    files = {c: tf.constant([small]) for c in labels_lib.CHANNELS}
    assert loaded.signatures[export.CHANNELS_SIGNATURE](**files)["labels"].shape == (1, 28)
    for channel, bomb, shape in (
        ("green", png_claiming(10000, 5000), "10000x5000"),
        ("yellow", jpeg_claiming(7000, 6000), "7000x6000"),
    ):
        message = call_error(loaded.signatures[export.CHANNELS_SIGNATURE], **{**files, channel: tf.constant([bomb])})
        assert f"assertion failed: [{channel} file of {shape} pixels is {CAP}]" in message


def test_serve_examples_refuses_a_record_whose_png_is_over_the_cap(loaded):
    from protein_location.core import records

    example = tf.train.Example.FromString(
        tfrecord_lib.serialize_example(np.zeros([4, 4, 4], np.uint8), "x", [1], "png")
    )
    example.features.feature[records.KEY_ENCODED].bytes_list.value[0] = png_claiming(2**31 - 1, 2**31 - 1)
    message = call_error(
        loaded.signatures[export.EXAMPLES_SIGNATURE], examples=tf.constant([example.SerializeToString()])
    )
    assert f"assertion failed: [image of {2**31 - 1}x{2**31 - 1} pixels is {CAP}]" in message


def test_serve_examples_refuses_a_raw_record_whose_shape_is_over_the_cap(loaded):
    from protein_location.core import records

    example = tf.train.Example.FromString(
        tfrecord_lib.serialize_example(np.zeros([4, 4, 4], np.uint8), "x", [1], "raw")
    )
    example.features.feature[records.KEY_HEIGHT].int64_list.value[0] = 70000
    example.features.feature[records.KEY_WIDTH].int64_list.value[0] = 60000
    message = call_error(
        loaded.signatures[export.EXAMPLES_SIGNATURE], examples=tf.constant([example.SerializeToString()])
    )
    assert f"assertion failed: [image of 70000x60000 pixels is {CAP}]" in message


@pytest.mark.parametrize("image_format", ["raw", "png"])
def test_serve_examples_decodes_a_record_as_records_parse_example_does(loaded, image_format):
    """serve_examples reads the image itself (to check its shape first): the same pixels as the schema's parser."""
    from protein_location.core import records

    image = np.random.default_rng(1).integers(0, 256, (20, 36, 4)).astype(np.uint8)
    serialized = tfrecord_lib.serialize_example(image, "x1", [3], image_format)
    parsed = records.parse_example(tf.constant(serialized), 28)["image"]
    from_record = loaded.signatures[export.EXAMPLES_SIGNATURE](examples=tf.constant([serialized]))
    from_pixels = loaded.signatures[export.SIGNATURE](image=parsed[tf.newaxis])
    np.testing.assert_array_equal(from_record["probabilities"], from_pixels["probabilities"])


def test_pixel_cap_holds_at_its_edge_and_without_overflow():
    def passes(height, width, cap):
        try:
            pixel_cap.assert_pixel_cap(tf.constant(height, tf.int64), tf.constant(width, tf.int64), cap)
        except tf.errors.InvalidArgumentError as error:
            assert f"image of {height}x{width} pixels is over the cap of {cap} pixels" in error.message
            return False
        return True

    assert passes(100, 100, 10_000) and not passes(100, 101, 10_000)
    assert not passes(2**32, 2**32, 10_000)  # the product overflows int64 to 0
    assert not passes(0, 2**40, 10_000)


def test_encoded_image_shape_reads_the_header_of_every_format_decode_image_takes():
    import PIL.Image

    pixels = np.random.default_rng(0).integers(0, 255, (5, 7, 4)).astype(np.uint8)
    encodings = {"png 16-bit": tf.io.encode_png(tf.constant(pixels[..., :1].astype(np.uint16) * 257)).numpy()}
    for name, mode, fmt, options in (
        ("png", "L", "PNG", {}),
        ("jpeg", "RGB", "JPEG", {}),
        ("progressive jpeg", "RGB", "JPEG", {"progressive": True}),
        ("gif", "L", "GIF", {}),
        ("bmp", "RGB", "BMP", {}),
        ("webp VP8", "RGB", "WEBP", {"lossless": False}),
        ("webp VP8L", "RGBA", "WEBP", {"lossless": True}),
        ("webp VP8X", "RGBA", "WEBP", {"lossless": False}),
    ):
        buffer = io.BytesIO()
        PIL.Image.fromarray(pixels[..., : len(mode)] if len(mode) > 1 else pixels[..., 0], mode).save(
            buffer, fmt, **options
        )
        encodings[name] = buffer.getvalue()
    assert encodings["webp VP8X"][12:16] == b"VP8X" and encodings["webp VP8"][12:16] == b"VP8 "
    for name, data in encodings.items():
        assert pixel_cap.encoded_image_shape(tf.constant(data)).numpy().tolist() == [5, 7], name
        assert tf.io.decode_image(data, expand_animations=False).shape[:2] == (5, 7), name
    for junk in (b"", b"\x89PNG", b"not an image at all"):  # the decoder refuses these itself
        assert pixel_cap.encoded_image_shape(tf.constant(junk)).numpy().tolist() == [0, 0]


# --- dataset.json's shard names are checked before anything is opened --------------------------


def write_hostile_manifest(data_dir, bad_file, schema_version=1):
    entry = {
        "num_examples": 1,
        "label_counts": [0] * 28,
        "shards": [{"file": bad_file, "num_examples": 1, "sha256": "0" * 64, "label_counts": [0] * 28}],
    }
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / "dataset.json").write_text(
        json.dumps(
            {
                "schema_version": schema_version,
                "class_names": list(labels_lib.CLASS_NAMES),
                "label_set": "hpa2018",
                "channels": list(labels_lib.CHANNELS),
                "image_format": "png",
                "image_size": 32,
                "splits": {"train": entry, "val": entry},
            }
        )
    )
    return data_dir


def bad_shard_message(data_dir, bad_file):
    return (
        f"{data_dir / 'dataset.json'}: the 'train' split lists shard file {bad_file!r}, not a shard name like "
        "train-00000-of-00001.tfrecord"
    )


def test_verify_refuses_a_shard_name_outside_the_dataset(tmp_path, capsys):
    from data_prep import __main__ as data_prep_cli

    data = write_hostile_manifest(tmp_path / "traversal", "../../etc/passwd")
    result = run_cli("-m", "data_prep", "verify", data, check=False)
    assert result.returncode == 1
    assert last_error_line(result) == f"error: {bad_shard_message(data, '../../etc/passwd')}"
    for bad in ("/etc/passwd", "train-00000-of-00001.tfrecord/../../x", "sub/train-00000-of-00001.tfrecord", 7):
        data = write_hostile_manifest(tmp_path / "absolute", bad)
        assert data_prep_cli.main(["verify", str(data)]) == 1
        assert capsys.readouterr().err.strip().splitlines()[-1] == f"error: {bad_shard_message(data, bad)}"


def test_a_dataset_of_a_newer_schema_is_refused_with_what_to_do(tmp_path):
    data = write_hostile_manifest(tmp_path / "data", "train-00000-of-00001.tfrecord", schema_version=3)
    result = run_cli("-m", "data_prep", "verify", data, check=False)
    assert result.returncode == 1
    assert last_error_line(result) == (
        f"error: {data / 'dataset.json'}: records of schema version 3; this "
        "protein-location reads 1 and 2 (upgrade it, or convert the raw images again)"
    )


def test_training_and_make_dataset_refuse_it_before_opening_a_shard(tmp_path, capsys, monkeypatch):
    import train_keras
    from protein_location.data import input_reader

    data = write_hostile_manifest(tmp_path / "data", "/etc/passwd")
    opened = []
    real_gfile, real_records = tf.io.gfile.GFile, tf.data.TFRecordDataset
    monkeypatch.setattr(
        tf.io.gfile,
        "GFile",
        lambda path, *args, **kwargs: opened.append(str(path)) or real_gfile(path, *args, **kwargs),
    )
    monkeypatch.setattr(
        tf.data,
        "TFRecordDataset",
        lambda files, *args, **kwargs: opened.append(files) or real_records(files, *args, **kwargs),
    )
    with pytest.raises(manifest_lib.ManifestError) as error:
        input_reader.make_dataset(str(data), "train", 4)
    assert str(error.value) == bad_shard_message(data, "/etc/passwd")
    assert train_keras.main(["--data", str(data), "--model-dir", str(tmp_path / "run")]) == 1
    assert capsys.readouterr().err.strip().splitlines()[-1] == f"error: {bad_shard_message(data, '/etc/passwd')}"
    # Besides the write test of --model-dir's folder (output_files.check_output_dir), only dataset.json is opened.
    assert [path for path in opened if not path.endswith("-write-test")] == [str(data / "dataset.json")] * 2
    assert not (tmp_path / "run").exists()
    # A manifest built in code is checked as it is made, before its names become paths, too.
    with pytest.raises(manifest_lib.ManifestError) as error:
        content = {"splits": {"val": {"shards": [{"file": "../val.tfrecord"}]}}}
        manifest_lib.DatasetManifest.from_json(str(data), content)
    assert str(error.value) == (
        f"{data / 'dataset.json'}: the 'val' split lists shard file '../val.tfrecord', not a "
        "shard name like val-00000-of-00001.tfrecord"
    )


# --- score: one line for every broken submission or truth ---------------------------------------


@pytest.mark.parametrize(
    "case, submission, truth, message",
    [
        (
            "duplicate Id in the submission",
            "Id,Predicted\na,0\nb,1\na,2\n",
            None,
            "Id a: {submission} line 4: duplicate Id (first on line 2)",
        ),
        (
            "duplicate Id in the truth",
            "Id,Predicted\na,0\nb,1\n",
            "Id,Target\na,0\nb,1\na,2\n",
            "Id a: {truth} line 4: duplicate Id",
        ),
        (
            "an Id the truth lacks",
            "Id,Predicted\na,0\nb,1\nc,2\n",
            None,
            "{submission}: 1 Ids are not in {truth}, e.g. c",
        ),
        ("an Id the submission lacks", "Id,Predicted\na,0\n", None, "{submission}: no prediction for 1 Ids, e.g. b"),
        (
            "a label out of range",
            "Id,Predicted\na,0\nb,1 28\n",
            None,
            "{submission}: Id b: label 28 is outside 0-27 (hpa2018)",
        ),
        (
            "an unparseable label",
            "Id,Predicted\na,0\nb,one\n",
            None,
            "{submission}: Id b: label 'one' is not an integer in 0-27 (hpa2018)",
        ),
        (
            "a negative label",
            "Id,Predicted\na,-1\nb,1\n",
            None,
            "{submission}: Id a: label '-1' is not an integer in 0-27 (hpa2018)",
        ),
        (
            "a truth label out of range",
            "Id,Predicted\na,0\nb,1\n",
            "Id,Target\na,0\nb,99\n",
            "Id b: {truth} line 3: label 99 is outside 0-27 (hpa2018)",
        ),
        (
            "an Id with a path in it",
            "Id,Predicted\na,0\n../b,1\n",
            None,
            "{submission} line 3: Id '../b' has characters outside [A-Za-z0-9_-]",
        ),
        ("an empty submission", "", None, "{submission}: empty CSV, expected columns Id,Predicted"),
        ("a binary file", b"\x89PNG\r\n\x1a\n\x00\xff", None, "{submission}: not a text CSV (not UTF-8)"),
        (
            "no Predicted column",
            "Id,Target\na,0\nb,1\n",
            None,
            "{submission}: expected columns Id,Predicted, found 'Id,Target'",
        ),
    ],
)
def test_score_refuses_a_broken_submission_or_truth_in_one_line(tmp_path, capsys, case, submission, truth, message):
    from protein_location import __main__ as cli

    submission_path, truth_path = tmp_path / "submission.csv", tmp_path / "truth.csv"
    (submission_path.write_bytes if isinstance(submission, bytes) else submission_path.write_text)(submission)
    truth_path.write_text(truth or "Id,Target\na,0\nb,1 2\n")
    assert cli.main(["score", "--submission", str(submission_path), "--truth", str(truth_path)]) == 1, case
    expected = "error: " + message.format(submission=submission_path, truth=truth_path)
    assert capsys.readouterr().err.strip().splitlines() == [expected], case


def test_score_cli_exits_1_with_the_message_as_its_last_line(tmp_path):
    submission, truth = tmp_path / "submission.csv", tmp_path / "truth.csv"
    submission.write_text("Id,Predicted\na,0\nb,1\na,2\n")
    truth.write_text("Id,Target\na,0\nb,1 2\n")
    result = run_cli("-m", "protein_location", "score", "--submission", submission, "--truth", truth, check=False)
    assert result.returncode == 1
    assert last_error_line(result) == f"error: Id a: {submission} line 4: duplicate Id (first on line 2)"
    assert "Traceback" not in result.stderr


# --- predict on a SavedModel of another tool: say what is missing, no traceback later -----------


class ForeignModule(tf.Module):
    """A SavedModel another tool could write: the signature's shape, some or none of our variables."""

    def __init__(self, variables, input_dtype=tf.uint8):
        super().__init__()
        for name, value in variables.items():
            setattr(self, name, [tf.Variable(value, trainable=False, name=name)])
        self.serve = tf.function(
            self._serve, input_signature=[tf.TensorSpec([None, None, None, 4], input_dtype, name="image")]
        )

    def _serve(self, image):
        batch = tf.shape(image)[0]
        return {"probabilities": tf.zeros([batch, 28]), "labels": tf.zeros([batch, 28], tf.int32)}


def save_foreign(path, variables, input_dtype=tf.uint8):
    module = ForeignModule(variables, input_dtype)
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.serve})
    return path


OUR_VARIABLES = {
    "image_size": 32,
    "views": 1,
    "thresholds": np.full(28, 0.5, np.float32),
    "class_names": list(labels_lib.CLASS_NAMES),
}


def test_predict_on_a_savedmodel_without_our_variables_names_what_is_missing(tmp_path, capsys):
    from protein_location import __main__ as cli

    cases = [
        (save_foreign(tmp_path / "plain", {}), "has no image_size, views, thresholds, class_names variables"),
        (
            save_foreign(tmp_path / "no_thresholds", {k: v for k, v in OUR_VARIABLES.items() if k != "thresholds"}),
            "has no thresholds variable",
        ),
    ]
    for path, problem in cases:
        assert (
            cli.main(
                ["predict", "--model", str(path), "--images", str(tmp_path / "none"), "--out", str(tmp_path / "s.csv")]
            )
            == 1
        )
        err = capsys.readouterr().err.strip().splitlines()
        assert err == [f"error: {path}: the SavedModel {problem}; {EXPORT_HINT}"]
    assert not (tmp_path / "s.csv").exists()

    # All variables there, but a signature of another shape (a plain Keras export takes float32).
    floats = save_foreign(tmp_path / "floats", OUR_VARIABLES, tf.float32)
    with pytest.raises(PredictError) as error:
        serving.load_serving_model(str(floats))
    assert str(error.value) == (
        f"{floats}: its 'serving_default' signature takes (image float32 (None, None, None, 4)) and returns "
        "(labels int32 (None, 28), probabilities float32 (None, 28)), not image uint8 [batch, height, width, 4] -> "
        f"probabilities and labels [batch, 28]; {EXPORT_HINT}"
    )
    # Thresholds that do not match the class names.
    short = save_foreign(tmp_path / "short", {**OUR_VARIABLES, "thresholds": np.full(27, 0.5, np.float32)})
    with pytest.raises(PredictError) as error:
        serving.load_serving_model(str(short))
    assert str(error.value) == f"{short}: the SavedModel has 27 thresholds for 28 class names; {EXPORT_HINT}"
    # The explain path reads class names alone.
    with pytest.raises(PredictError) as error:
        serving.class_names_of(tf.saved_model.load(str(tmp_path / "plain")), str(tmp_path / "plain"))
    assert str(error.value) == f"{tmp_path / 'plain'}: the SavedModel has no class_names variable; {EXPORT_HINT}"
    # Our own layout passes (an export base resolves to its version).
    save_foreign(tmp_path / "ours" / "1", OUR_VARIABLES)
    served = serving.load_serving_model(str(tmp_path / "ours"))
    assert served.image_size == 32 and served.class_names == list(labels_lib.CLASS_NAMES)


def test_tta_1_on_an_8_view_savedmodel_without_single_view_thresholds_says_so(tmp_path):
    path = save_foreign(tmp_path / "eight", {**OUR_VARIABLES, "views": 8})
    with pytest.raises(PredictError) as error:
        serving.load_serving_model(str(path), tta=1)
    assert str(error.value) == f"{path}: the SavedModel has no single_view_thresholds variable; {EXPORT_HINT}"


# --- Batches and bytes no image makes ----------------------------------------------------------------


@pytest.mark.slow
def test_every_signature_returns_an_empty_batch_for_no_images(loaded):
    """oneDNN's conv2d mishandles an empty batch (docs/fault-tolerance.md): the signatures never run the
    model on one."""
    empty = tf.zeros([0, 32, 32, 4], tf.uint8)
    for name in ("serving_default", "serving_single_view", "gradcam"):
        outputs = loaded.signatures[name](image=empty)
        assert outputs["probabilities"].shape == (0, 28) and outputs["labels"].shape == (0, 28), name
    assert loaded.signatures["gradcam"](image=empty)["heatmaps"].shape == (0, 32, 32, 28)
    no_files = {channel: tf.constant([], tf.string) for channel in labels_lib.CHANNELS}
    assert loaded.signatures["predict_channels"](**no_files)["labels"].shape == (0, 28)
    assert loaded.signatures["serve_examples"](examples=tf.constant([], tf.string))["labels"].shape == (0, 28)


@pytest.mark.slow
def test_serve_examples_refuses_bytes_that_are_no_example_with_a_tensorflow_error(loaded):
    garbage = bytes(np.random.default_rng(0).integers(0, 256, 100, dtype=np.uint8))
    with pytest.raises(tf.errors.DataLossError) as error:
        loaded.signatures["serve_examples"](examples=tf.constant([garbage]))
    assert "examples_must_be_serialized_tf_train_Example_protos" in error.value.message


# --- predict's own inputs ------------------------------------------------------------------------------


def _raw_images(folder, ids, extension=".png"):
    import cv2

    folder.mkdir(parents=True, exist_ok=True)
    for index, image_id in enumerate(ids):
        for channel in labels_lib.CHANNELS:
            cv2.imwrite(str(folder / f"{image_id}_{channel}{extension}"), np.full((16, 16), 40 * index + 10, np.uint8))
    return folder


@pytest.mark.slow
@pytest.mark.parametrize(
    "csv, message",
    [
        ("Id,Predicted\n", "{csv}: no Ids (a header and no rows); nothing to predict"),
        (
            "Id,Predicted\na,\nb,\na,\n",
            "{csv} line 4: duplicate Id a (first on line 2); a submission has one row per Id",
        ),
    ],
)
def test_predict_refuses_a_sample_submission_without_ids_or_with_duplicates(tmp_path, saved_path, csv, message):
    images = _raw_images(tmp_path / "images", ["a", "b"])
    (tmp_path / "sample.csv").write_text(csv)
    result = run_cli(
        "-m",
        "protein_location",
        "predict",
        "--model",
        saved_path,
        "--images",
        images,
        "--csv",
        tmp_path / "sample.csv",
        "--out",
        tmp_path / "submission.csv",
        check=False,
    )
    assert (result.returncode, last_error_line(result)) == (1, "error: " + message.format(csv=tmp_path / "sample.csv"))
    assert not (tmp_path / "submission.csv").exists()


@pytest.mark.slow
def test_predict_checks_its_output_folder_before_any_inference(tmp_path, saved_path):
    images = _raw_images(tmp_path / "images", ["a"])
    result = run_cli(
        "-m",
        "protein_location",
        "predict",
        "--model",
        saved_path,
        "--images",
        images,
        "--out",
        tmp_path / "missing/submission.csv",
        check=False,
    )
    assert last_error_line(result) == (
        f"error: {tmp_path}/missing/submission.csv: the folder {tmp_path}/missing does "
        "not exist; create it or pick another --out"
    )
    assert "predict:" not in result.stdout and not (tmp_path / "missing").exists()


@pytest.mark.slow
def test_a_stain_file_with_an_upper_case_extension_is_read(tmp_path, saved_path):
    images = _raw_images(tmp_path / "images", ["a"], extension=".PNG")
    run_cli(
        "-m",
        "protein_location",
        "predict",
        "--model",
        saved_path,
        "--images",
        images,
        "--out",
        tmp_path / "submission.csv",
    )
    assert (tmp_path / "submission.csv").read_text().splitlines()[1].startswith("a,")
