"""Real HPA files of the three releases (tests/data/hpa, README there): every
reader, the converter and the serving signatures on the files users have."""

import json
import pathlib
import shutil

import cv2
import numpy as np
import pytest
import tensorflow as tf

from data_prep import convert, stain_reader
from protein_location import export, models
from protein_location.core import labels as labels_lib, raw_images, records, stains
from protein_location.core.errors import SourceError

SAMPLES = pathlib.Path(__file__).parent / "data" / "hpa"
HPAV18_ID = "10008_57_F11_1"
KAGGLE_ID = "027a702a-bbca-11e8-b2bc-ac1f6b6435d0"
HPA2021_ID = "5c27f04c-bb99-11e8-b2b9-ac1f6b6435d0"
TWIN_CROP = slice(608, 1120)  # the grayscale twin is this 512x512 crop of the 1728x1728 field
SIZE = 32


def _convert(release, out, size=SIZE, **kwargs):
    return convert.convert(
        str(SAMPLES / release / "train"),
        str(out),
        csv_path=str(SAMPLES / release / "train.csv"),
        size=size,
        val_fraction=0,
        num_shards=1,
        workers=1,
        **kwargs,
    )


def _stored_images(out, num_classes):
    """{Id: uint8 RGBY image} of a converted one-shard train split."""
    path = out / "train-00000-of-00001.tfrecord"
    parsed = [records.parse_example(s, num_classes) for s in tf.data.TFRecordDataset(str(path))]
    return {e["source_id"].numpy().decode(): e["image"].numpy() for e in parsed}


def _stain_bytes(folder, image_id):
    return {c: next(folder.glob(f"{image_id}_{c}.*")).read_bytes() for c in labels_lib.CHANNELS}


def test_hpav18_colour_jpegs_reduce_to_the_grayscale_twin():
    colour = raw_images.read_image(str(SAMPLES / "hpav18" / "train"), HPAV18_ID)
    assert colour.shape == (1728, 1728, 4) and colour.dtype == np.uint8
    twin = raw_images.read_image(str(SAMPLES / "hpav18-grayscale" / "train"), HPAV18_ID)
    difference = np.abs(colour[TWIN_CROP, TWIN_CROP].astype(float) - twin).mean(axis=(0, 1))
    assert (difference < 1.5).all(), difference  # JPEG loss only: 1.35, 0.68, 0.76, 0.18 levels
    # The rule matters: a luminance conversion of the same files is several levels off.
    luminance = cv2.imread(str(SAMPLES / "hpav18" / "train" / f"{HPAV18_ID}_red.jpg"), cv2.IMREAD_GRAYSCALE)
    assert np.abs(luminance[TWIN_CROP, TWIN_CROP].astype(float) - twin[..., 0]).mean() > 10


def test_readers_trust_content_not_extension(tmp_path):
    """One original HPAv18 file was published as JPEG under a .png name."""
    for channel in labels_lib.CHANNELS:
        source = SAMPLES / "hpav18" / "train" / f"{HPAV18_ID}_{channel}.jpg"
        shutil.copy(source, tmp_path / f"{HPAV18_ID}_{channel}.png")
    renamed = raw_images.read_image(str(tmp_path), HPAV18_ID, 64)
    np.testing.assert_array_equal(renamed, raw_images.read_image(str(SAMPLES / "hpav18" / "train"), HPAV18_ID, 64))
    encoded = tf.constant((tmp_path / f"{HPAV18_ID}_green.png").read_bytes())
    np.testing.assert_array_equal(
        stains.decode_stain(encoded, "green").numpy(), raw_images.read_image(str(tmp_path), HPAV18_ID)[..., 1]
    )


@pytest.mark.parametrize(
    "release, image_id, label_set, labels, side",
    [
        ("kaggle2018", KAGGLE_ID, "hpa2018", [2, 22], 512),
        ("hpav18", HPAV18_ID, "hpa2018", [21], 1728),
        ("hpa2021", HPA2021_ID, "hpa2021", [0, 5, 8], 2048),
    ],
)
def test_each_release_converts_with_its_label_set(tmp_path, release, image_id, label_set, labels, side):
    manifest = _convert(release, tmp_path / "out")
    chosen = labels_lib.label_set_named(label_set)
    assert manifest["label_set"] == label_set and manifest["class_names"] == list(chosen.class_names)
    assert len(manifest["splits"]["train"]["label_counts"]) == chosen.num_classes
    assert manifest["sources"][0]["csv"] == str(SAMPLES / release / "train.csv")
    path = tmp_path / "out" / "train-00000-of-00001.tfrecord"
    parsed = {
        e["source_id"].numpy().decode(): e
        for e in (records.parse_example(s, chosen.num_classes) for s in tf.data.TFRecordDataset(str(path)))
    }
    assert sorted(parsed[image_id]["label_indices"].numpy().tolist()) == labels
    assert parsed[image_id]["labels"].shape == (chosen.num_classes,)
    full = raw_images.read_image(str(SAMPLES / release / "train"), image_id)
    assert full.shape == (side, side, 4)
    stored = parsed[image_id]["image"].numpy()
    np.testing.assert_array_equal(stored, stains.resize_rgby(full, SIZE).numpy().astype(np.uint8))
    # The one resize is area resampling, as OpenCV's INTER_AREA: within a grey level of it.
    opencv = np.stack([cv2.resize(full[..., c], (SIZE, SIZE), interpolation=cv2.INTER_AREA) for c in range(4)], -1)
    assert np.abs(stored.astype(int) - opencv).max() <= 1


def test_label_set_flag_overrides_the_header(tmp_path):
    """An `Id,Target` CSV whose indices are of the 2021 classes."""
    csv_path = tmp_path / "labels.csv"
    csv_path.write_text(f"Id,Target\n{HPAV18_ID},18\n11088_89_B5_1,6 8\n")
    manifest = convert.convert(
        str(SAMPLES / "hpav18" / "train"),
        str(tmp_path / "out"),
        csv_path=str(csv_path),
        size=SIZE,
        val_fraction=0,
        num_shards=1,
        workers=1,
        label_set="hpa2021",
    )
    assert manifest["label_set"] == "hpa2021" and len(manifest["class_names"]) == 19
    assert manifest["splits"]["train"]["label_counts"][18] == 1 == manifest["splits"]["train"]["label_counts"][8]


def test_16_bit_stains_scale_by_one_rule_in_conversion_and_serving(tmp_path):
    """16-bit files made from the real 8-bit Kaggle stains (v * 257) give back
    the 8-bit pixels, by round(v / 257), in the reader and in the serving graph's decoder."""
    folder = tmp_path / "train"
    folder.mkdir()
    for channel in labels_lib.CHANNELS:
        plane = cv2.imread(str(SAMPLES / "kaggle2018" / "train" / f"{KAGGLE_ID}_{channel}.png"), cv2.IMREAD_UNCHANGED)
        cv2.imwrite(str(folder / f"{KAGGLE_ID}_{channel}.png"), plane.astype(np.uint16) * 257)
    np.testing.assert_array_equal(
        raw_images.read_image(str(folder), KAGGLE_ID),
        raw_images.read_image(str(SAMPLES / "kaggle2018" / "train"), KAGGLE_ID),
    )
    # Values that are not multiples of 257: rounded, not truncated.
    values = np.random.default_rng(0).integers(0, 65536, (40, 50), dtype=np.uint16)
    values[0, :6] = [0, 128, 129, 385, 386, 65535]
    encoded = cv2.imencode(".png", values)[1].tobytes()
    expected = np.round(values / 257).astype(np.uint8)
    assert expected[0, :6].tolist() == [0, 0, 1, 1, 2, 255]
    np.testing.assert_array_equal(raw_images.decode_channel(encoded, "red", "x", "x.png"), expected)
    np.testing.assert_array_equal(stains.decode_stain(tf.constant(encoded), "red").numpy(), expected)
    for channel in labels_lib.CHANNELS:  # conversion decodes grayscale PNGs with OpenCV: the same rule
        (folder / f"odd_{channel}.png").write_bytes(encoded)
    np.testing.assert_array_equal(stain_reader.read_image(str(folder), "odd"), np.stack([expected] * 4, -1))


@pytest.mark.parametrize(
    "release, image_id", [("kaggle2018", KAGGLE_ID), ("hpa2021", HPA2021_ID), ("hpav18-grayscale", HPAV18_ID)]
)
def test_grayscale_pngs_read_as_the_serving_decoder_reads_them(release, image_id):
    """Conversion decodes grayscale PNGs with OpenCV (faster): on the real
    files its pixels are those of the TensorFlow decoder inside the
    SavedModel, at the source size and resized."""
    stain_bytes = _stain_bytes(SAMPLES / release / "train", image_id)
    served = tf.stack([stains.decode_stain(tf.constant(stain_bytes[c]), c) for c in labels_lib.CHANNELS], -1)
    images_dir = str(SAMPLES / release / "train")
    np.testing.assert_array_equal(stain_reader.read_image(images_dir, image_id), served.numpy())
    np.testing.assert_array_equal(
        stain_reader.read_image(images_dir, image_id, 64), tf.cast(stains.resize_rgby(served, 64), tf.uint8).numpy()
    )
    np.testing.assert_array_equal(raw_images.read_image(images_dir, image_id), served.numpy())


def test_large_16_bit_image_converts(tmp_path):
    """A 3072x3072 16-bit field (HPA 2021's largest), made from the real 2048 px one."""
    folder = tmp_path / "train"
    folder.mkdir()
    for channel in labels_lib.CHANNELS:
        plane = cv2.imread(str(SAMPLES / "hpa2021" / "train" / f"{HPA2021_ID}_{channel}.png"), cv2.IMREAD_UNCHANGED)
        large = cv2.resize(plane, (3072, 3072), interpolation=cv2.INTER_LINEAR).astype(np.uint16) * 257
        cv2.imwrite(str(folder / f"{HPA2021_ID}_{channel}.png"), large, [cv2.IMWRITE_PNG_COMPRESSION, 1])
    shutil.copy(SAMPLES / "hpa2021" / "train.csv", tmp_path / "train.csv")
    manifest = convert.convert(
        str(folder),
        str(tmp_path / "out"),
        csv_path=str(tmp_path / "train.csv"),
        size=64,
        val_fraction=0,
        num_shards=1,
        workers=1,
    )
    assert manifest["image_size"] == 64 and manifest["splits"]["train"]["num_examples"] == 1
    image = _stored_images(tmp_path / "out", 19)[HPA2021_ID]
    reference = raw_images.read_image(str(SAMPLES / "hpa2021" / "train"), HPA2021_ID, 64)
    assert np.abs(image.astype(int) - reference).max() <= 2  # only the upsampling differs


@pytest.fixture(scope="module")
def tiny_export(tmp_path_factory):
    """An untrained 32 px SE-ResNet exported with the 2018 classes (its weights don't matter here)."""
    model = models.build_seresnet(
        "seresnet18",
        image_size=SIZE,
        width=0.125,
        channel_mean=(20, 20, 20, 20),
        channel_std=(30, 30, 30, 30),
        output_bias=np.linspace(-3, 1, 28),
    )
    base = tmp_path_factory.mktemp("export")
    path = export.export_saved_model(model, np.full(28, 0.5), str(base), labels_lib.CLASS_NAMES)
    loaded = tf.saved_model.load(path)
    loaded.path = path
    return loaded


@pytest.mark.parametrize("release", ["kaggle2018", "hpav18", "hpa2021"])
def test_serving_computes_from_the_files_the_pixels_conversion_stored(tmp_path, tiny_export, release):
    """One decoder and one resize: the record `convert` writes from a
    release's real files holds, pixel for pixel, what the SavedModel's
    predict_channels computes from the same files (Kaggle 512 px PNGs, HPAv18
    colour JPEGs of 1728 px, HPA 2021 PNGs of 2048 px), and the model gives the same
    probabilities from the files as from the records."""
    folder = SAMPLES / release / "train"
    num_classes = 19 if release == "hpa2021" else 28
    _convert(release, tmp_path / "out")
    stored = _stored_images(tmp_path / "out", num_classes)
    for image_id, image in stored.items():
        files = _stain_bytes(folder, image_id)
        decoded = tf.stack([stains.decode_stain(tf.constant(files[c]), c) for c in labels_lib.CHANNELS], axis=-1)
        np.testing.assert_array_equal(stains.resize_rgby(decoded, SIZE).numpy(), image)
    if num_classes != 28:
        return  # tiny_export has the 2018 classes; the pixels above are what matters for 2021
    serialized = list(tf.data.TFRecordDataset(str(tmp_path / "out" / "train-00000-of-00001.tfrecord")))
    ids = [records.parse_example(s, 28)["source_id"].numpy().decode() for s in serialized]
    from_records = tiny_export.signatures["serve_examples"](examples=tf.stack(serialized))["probabilities"].numpy()
    files = [_stain_bytes(folder, image_id) for image_id in ids]
    from_files = tiny_export.signatures["predict_channels"](
        **{c: tf.constant([f[c] for f in files]) for c in labels_lib.CHANNELS}
    )["probabilities"].numpy()
    np.testing.assert_allclose(from_files, from_records, rtol=0, atol=1e-6)


def test_predict_images_and_explain_read_hpav18_jpegs(tmp_path, tiny_export):
    """The CLI paths that read raw files apply the same rule as predict_channels."""
    from protein_location.inference import explain, predict

    folder = SAMPLES / "hpav18" / "train"
    ids = raw_images.list_image_ids(str(folder))
    probabilities, _ = predict.predict_images(tiny_export.path, str(folder), ids)
    files = [_stain_bytes(folder, image_id) for image_id in ids]
    from_files = tiny_export.signatures["predict_channels"](
        **{c: tf.constant([f[c] for f in files]) for c in labels_lib.CHANNELS}
    )["probabilities"].numpy()
    np.testing.assert_allclose(probabilities, from_files, rtol=0, atol=1e-6)
    record = explain.explain_images(tiny_export.path, str(folder), ids[:1], str(tmp_path / "explain"), 2)
    assert record["images"][0]["id"] == ids[0] and (tmp_path / "explain" / f"{ids[0]}.png").stat().st_size > 0


def test_sources_of_two_releases_join_into_one_dataset(tmp_path):
    manifest = convert.convert(
        [str(SAMPLES / "kaggle2018" / "train"), str(SAMPLES / "hpav18" / "train")],
        str(tmp_path / "out"),
        csv_path=[str(SAMPLES / "kaggle2018" / "train.csv"), str(SAMPLES / "hpav18" / "train.csv")],
        size=SIZE,
        val_fraction=0,
        num_shards=1,
        workers=1,
    )
    assert [(s["images"].split("/")[-2], s["num_examples"]) for s in manifest["sources"]] == [
        ("kaggle2018", 1),
        ("hpav18", 2),
    ]
    assert sorted(_stored_images(tmp_path / "out", 28)) == sorted([KAGGLE_ID, HPAV18_ID, "11088_89_B5_1"])
    assert json.loads((tmp_path / "out" / "dataset.json").read_text())["sources"] == manifest["sources"]


def test_sources_of_different_label_sets_are_refused(tmp_path):
    csvs = [str(SAMPLES / "kaggle2018" / "train.csv"), str(SAMPLES / "hpa2021" / "train.csv")]
    with pytest.raises(SourceError) as error:
        convert.convert(
            [str(SAMPLES / "kaggle2018" / "train"), str(SAMPLES / "hpa2021" / "train")],
            str(tmp_path / "out"),
            csv_path=csvs,
            size=SIZE,
            val_fraction=0,
        )
    assert str(error.value) == (
        f"sources of different label sets: {csvs[0]} is hpa2018 (28 classes), {csvs[1]} is "
        "hpa2021 (19); convert them into separate datasets or name one with --label-set"
    )
    assert not (tmp_path / "out").exists()


def test_an_id_in_two_sources_is_refused(tmp_path):
    csv_path = str(SAMPLES / "hpav18" / "train.csv")
    images = str(SAMPLES / "hpav18" / "train")
    with pytest.raises(SourceError) as error:
        convert.convert([images, images], str(tmp_path / "out"), csv_path=[csv_path, csv_path], size=SIZE)
    assert str(error.value) == f"Id 11088_89_B5_1: the Id is in two sources: {csv_path} and {csv_path}"
