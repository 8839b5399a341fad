"""Grad-CAM: the `gradcam` signature of the export and `python -m protein_location explain`.

A constructed model makes the expected heat map known exactly: its only
evidence for Mitochondria is the green (protein) stain, pixel by pixel, so
the map must light up where the green signal is and nowhere else.
"""

import json

import cv2
import keras
import numpy as np
import pytest
import tensorflow as tf

from protein_location import __main__ as cli, export, models
from protein_location.core import labels as labels_lib
from protein_location.inference import explain

SIDE = 64
MITOCHONDRIA = labels_lib.CLASS_NAMES.index("Mitochondria")


def green_detector_model():
    """A MultiLabelClassifier whose backbone is one 1x1 conv (feature 0: green,
    feature 1: red, on the 0-1 scale the normalizer gives).

    Only Mitochondria weighs a feature (green, +40); every logit starts at -4.
    Grad-CAM reaches the backbone and the head by reference, whatever the backbone.
    """
    inputs = keras.Input((SIDE, SIDE, 4), name="images")
    features = keras.layers.Conv2D(2, 1, use_bias=False, activation="relu", name="features")(inputs)
    backbone = keras.Model(inputs, features, name="green_backbone")
    model = models.MultiLabelClassifier(backbone, labels_lib.NUM_CLASSES, image_size=SIDE, name="green_detector")
    kernel = np.zeros((1, 1, 4, 2), np.float32)
    kernel[0, 0, 1, 0] = kernel[0, 0, 0, 1] = 1.0
    head = np.zeros((2, labels_lib.NUM_CLASSES), np.float32)
    head[0, MITOCHONDRIA] = 40.0
    backbone.get_layer("features").set_weights([kernel])
    model.head.set_weights([head, np.full(labels_lib.NUM_CLASSES, -4.0, np.float32)])
    return model


def cell_image(green_rows, green_cols):
    """uint8 RGBY: uniform red (microtubules) everywhere, green (the protein) in one region."""
    image = np.zeros((SIDE, SIDE, 4), np.uint8)
    image[..., 0] = 100
    image[green_rows, green_cols, 1] = 255
    return image


def write_channels(folder, image_id, image):
    folder.mkdir(parents=True, exist_ok=True)
    for index, channel in enumerate(labels_lib.CHANNELS):
        cv2.imwrite(str(folder / f"{image_id}_{channel}.png"), image[..., index])


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    base = tmp_path_factory.mktemp("gradcam") / "export"
    return export.export_saved_model(
        green_detector_model(), np.full(labels_lib.NUM_CLASSES, 0.5), str(base), labels_lib.CLASS_NAMES
    )


@pytest.mark.parametrize("region", [(slice(0, 32), slice(0, 32)), (slice(40, 64), slice(20, 60))])
def test_gradcam_is_bright_where_the_green_protein_is_and_dark_elsewhere(exported, region):
    image = cell_image(*region)
    outputs = tf.saved_model.load(exported).signatures["gradcam"](image=tf.constant(image[np.newaxis]))
    assert outputs["heatmaps"].shape == (1, SIDE, SIDE, labels_lib.NUM_CLASSES)
    assert outputs["labels"].numpy()[0, MITOCHONDRIA] == 1
    heat = outputs["heatmaps"].numpy()[0, ..., MITOCHONDRIA]
    inside = np.zeros((SIDE, SIDE), bool)
    inside[region] = True
    core = cv2.erode(inside.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)  # away from the border
    assert heat.max() > 0, "blank heat map"
    assert heat[core].min() > 0.9 * heat.max()
    outside = cv2.dilate(inside.astype(np.uint8), np.ones((5, 5), np.uint8)) == 0
    assert heat[outside].max() < 0.01 * heat.max()
    # A location without evidence in the image has no heat at all.
    assert outputs["heatmaps"].numpy()[0, ..., 0].max() == 0


def test_gradcam_probabilities_and_labels_match_serving_default(exported):
    loaded = tf.saved_model.load(exported)
    images = tf.constant(np.stack([cell_image(slice(0, 32), slice(0, 32)), cell_image(slice(0, 0), slice(0, 0))]))
    from_gradcam = loaded.signatures["gradcam"](image=images)
    served = loaded.signatures["serving_default"](image=images)
    np.testing.assert_allclose(from_gradcam["probabilities"], served["probabilities"], atol=1e-6)
    np.testing.assert_array_equal(from_gradcam["labels"], served["labels"])
    assert served["labels"].numpy()[:, MITOCHONDRIA].tolist() == [1, 0]


def test_rgb_composite_adds_yellow_to_red_and_green():
    image = np.zeros((1, 1, 4), np.uint8)
    image[0, 0] = [100, 20, 30, 200]
    np.testing.assert_allclose(explain.rgb_composite(image)[0, 0], [200 / 255, 120 / 255, 30 / 255], atol=1e-6)


def test_without_a_predicted_location_the_most_probable_one_is_shown():
    probabilities = np.linspace(0.1, 0.3, labels_lib.NUM_CLASSES)
    assert explain.chosen_locations(probabilities, np.zeros(labels_lib.NUM_CLASSES, int), 4) == [27]
    labels = (np.arange(labels_lib.NUM_CLASSES) % 5 == 0).astype(int)
    assert explain.chosen_locations(probabilities, labels, 3) == [25, 20, 15]


def test_explain_writes_a_png_per_image_and_a_json_record(exported, tmp_path, capsys):
    images = tmp_path / "images"
    write_channels(images, "cell-a", cell_image(slice(0, 32), slice(0, 32)))
    write_channels(images, "cell_b", cell_image(slice(0, 0), slice(0, 0)))  # no protein: nothing predicted
    out = tmp_path / "explained"
    assert cli.main(["explain", "--model", str(exported), "--images", str(images), "--out", str(out)]) == 0
    assert f"explain: 2 images -> {out} (<Id>.png, explain.json)" in capsys.readouterr().out
    for image_id in ("cell-a", "cell_b"):
        picture = cv2.imread(str(out / f"{image_id}.png"))
        assert picture is not None and picture.shape[0] > 200 and picture.shape[1] > 400
    record = json.loads((out / "explain.json").read_text())
    assert record["model"] == str(exported)
    first, second = record["images"]
    assert (first["id"], first["predicted"]) == ("cell-a", ["Mitochondria"])
    assert first["shown"][0]["location"] == "Mitochondria" and first["shown"][0]["predicted"] is True
    assert first["shown"][0]["probability"] > 0.5
    assert second["predicted"] == [] and second["shown"][0]["predicted"] is False


def test_explain_without_a_gradcam_signature_is_a_clear_error(tmp_path, capsys):
    archive = keras.export.ExportArchive()
    model = green_detector_model()
    archive.track(model)
    archive.add_endpoint(
        "serving_default", model.call, input_signature=[tf.TensorSpec([None, SIDE, SIDE, 4], tf.float32)]
    )
    archive.write_out(str(tmp_path / "old" / "1"), verbose=False)
    write_channels(tmp_path / "images", "cell", cell_image(slice(0, 8), slice(0, 8)))
    assert (
        cli.main(
            [
                "explain",
                "--model",
                str(tmp_path / "old"),
                "--images",
                str(tmp_path / "images"),
                "--out",
                str(tmp_path / "out"),
            ]
        )
        == 1
    )
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"error: {tmp_path / 'old' / '1'}: the SavedModel has no 'gradcam' signature (it has serving_default); "
        "re-export it with `python -m protein_location export --model-dir RUN --out DIR`"
    )
    assert not (tmp_path / "out").exists()


def test_explain_a_missing_id_fails_before_writing_anything(exported, tmp_path, capsys):
    write_channels(tmp_path / "images", "cell", cell_image(slice(0, 8), slice(0, 8)))
    assert (
        cli.main(
            [
                "explain",
                "--model",
                str(exported),
                "--images",
                str(tmp_path / "images"),
                "--ids",
                "cell",
                "nope",
                "--out",
                str(tmp_path / "out"),
            ]
        )
        == 1
    )
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"error: Id nope: {tmp_path / 'images' / 'nope_red.png'}: missing channel file"
    )
    assert not (tmp_path / "out").exists()
