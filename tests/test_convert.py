import json

import cv2
import numpy as np
import pytest
import tensorflow as tf

from data_prep import convert, sources, verify
from protein_location import manifest as manifest_lib, records
from tests.conftest import write_image_set, write_raw_dataset

KAGGLE_IDS = ["00070df0-bbc3-11e8-b2bc-ac1f6b6435d0", "000a6c98-bb9b-11e8-b2b9-ac1f6b6435d0",
              "000a9596-bbc4-11e8-b2bc-ac1f6b6435d0", "000c99ba-bba4-11e8-b2b9-ac1f6b6435d0",
              "001838f8-bbca-11e8-b2bc-ac1f6b6435d0", "001bcdd2-bbb2-11e8-b2ba-ac1f6b6435d0"]


def _kaggle_like(tmp_path):
    targets = dict(zip(KAGGLE_IDS, ["16 0", "7 1 2 0", "5", "1", "18", "0"]))
    return write_raw_dataset(tmp_path / "raw", targets, size=20)


def _records(path):
    return [records.parse_example(s) for s in tf.data.TFRecordDataset(str(path))]


def test_convert_writes_named_shards_and_manifest(converted_dir):
    manifest = json.loads((converted_dir / "dataset.json").read_text())
    assert sorted(p.name for p in converted_dir.iterdir()) == [
        "dataset.json", "train-00000-of-00002.tfrecord", "train-00001-of-00002.tfrecord",
        "val-00000-of-00002.tfrecord", "val-00001-of-00002.tfrecord"]
    assert manifest["schema_version"] == 1 and manifest["image_size"] == 32
    assert manifest["channels"] == ["red", "green", "blue", "yellow"]
    assert len(manifest["class_names"]) == 28
    train, val = manifest["splits"]["train"]["num_examples"], manifest["splits"]["val"]["num_examples"]
    # Iterative stratification sizes the val split near, not exactly at, 25%.
    assert train + val == 48 and 6 <= val <= 18
    shard = manifest["splits"]["train"]["shards"][0]
    assert shard["sha256"] == manifest_lib.file_sha256(str(converted_dir / shard["file"]))
    assert shard["num_examples"] == len(_records(converted_dir / shard["file"]))
    assert len(manifest["channel_mean"]) == len(manifest["channel_std"]) == 4


def test_convert_reads_kaggle_ids_and_targets(tmp_path):
    raw = _kaggle_like(tmp_path)
    convert.convert(str(raw / "train"), str(tmp_path / "out"), csv_path=str(raw / "train.csv"),
                    val_fraction=0, num_shards=1)
    examples = {e["source_id"].numpy().decode(): e for e in _records(tmp_path / "out/train-00000-of-00001.tfrecord")}
    assert sorted(examples) == sorted(KAGGLE_IDS)
    assert examples[KAGGLE_IDS[1]]["label_indices"].numpy().tolist() == [0, 1, 2, 7]
    # Pixels arrive unchanged, in RGBY order.
    red = cv2.imread(str(raw / "train" / f"{KAGGLE_IDS[0]}_red.png"), cv2.IMREAD_UNCHANGED)
    yellow = cv2.imread(str(raw / "train" / f"{KAGGLE_IDS[0]}_yellow.png"), cv2.IMREAD_UNCHANGED)
    image = examples[KAGGLE_IDS[0]]["image"].numpy()
    np.testing.assert_array_equal(image[..., 0], red)
    np.testing.assert_array_equal(image[..., 3], yellow)


def test_same_input_and_seed_give_byte_identical_shards(synthetic_dir, tmp_path):
    def shards(out, seed):
        convert.convert(str(synthetic_dir / "train"), str(out), csv_path=str(synthetic_dir / "train.csv"),
                        val_fraction=0.25, num_shards=2, seed=seed)
        return {p.name: p.read_bytes() for p in sorted(out.glob("*.tfrecord"))}

    assert shards(tmp_path / "a", 0) == shards(tmp_path / "b", 0)
    assert shards(tmp_path / "a2", 0) != shards(tmp_path / "c", 1)


def test_folder_without_csv_becomes_an_unlabeled_test_split(synthetic_dir, tmp_path):
    manifest = convert.convert(str(synthetic_dir / "test"), str(tmp_path / "test"), num_shards=1)
    assert list(manifest["splits"]) == ["test"]
    examples = _records(tmp_path / "test" / "test-00000-of-00001.tfrecord")
    assert len(examples) == 8
    assert all(e["label_indices"].numpy().size == 0 for e in examples)


def test_16_bit_jpeg_and_other_sizes_are_scaled_to_8_bit_and_size(tmp_path):
    write_image_set(tmp_path / "img", "a16", size=40, dtype=np.uint16)
    write_image_set(tmp_path / "img", "b_jpg", size=24, ext=".jpg")
    (tmp_path / "labels.csv").write_text("Id,Target\na16,1\nb_jpg,2 3\n")
    manifest = convert.convert(str(tmp_path / "img"), str(tmp_path / "out"), csv_path=str(tmp_path / "labels.csv"),
                               size=16, val_fraction=0, num_shards=1)
    assert manifest["image_size"] == 16
    images = [e["image"].numpy() for e in _records(tmp_path / "out/train-00000-of-00001.tfrecord")]
    assert all(image.shape == (16, 16, 4) and image.dtype == np.uint8 for image in images)
    assert max(image.max() for image in images) > 128  # 16-bit range mapped onto 0-255


def test_convert_and_verify_work_on_gfile_paths(synthetic_dir):
    out = "ram://datasets/tiny"
    convert.convert(str(synthetic_dir / "train"), out, csv_path=str(synthetic_dir / "train.csv"),
                    val_fraction=0.25, num_shards=2)
    checked = verify.verify_dataset(out)
    assert sorted(checked) == ["train", "val"] and sum(checked.values()) == 48


def test_verify_detects_a_corrupted_shard(synthetic_dir, tmp_path):
    out = tmp_path / "data"
    convert.convert(str(synthetic_dir / "train"), str(out), csv_path=str(synthetic_dir / "train.csv"),
                    val_fraction=0.25, num_shards=2)
    shard = out / "val-00001-of-00002.tfrecord"
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    with pytest.raises(verify.VerifyError) as error:
        verify.verify_dataset(str(out))
    assert str(error.value) == f"{shard}: sha256 differs from dataset.json"


@pytest.mark.parametrize("csv_text, message", [
    ("Image,Label\na,1\n", "{csv}: expected columns Id,Target, found 'Image,Label'"),
    ("", "{csv}: empty CSV, expected columns Id,Target"),
    ("Id,Target\n", "{csv}: no rows below the Id,Target header"),
    ("Id,Target\nok1,1\nok2,28\n", "{csv} line 3: Id ok2: label 28 is outside 0-27"),
    ("Id,Target\nok1,1\nok1,2\n", "{csv} line 3: duplicate Id 'ok1'"),
    ("Id,Target\n../../x,1\n", "{csv} line 2: Id '../../x' has characters outside [A-Za-z0-9_-]"),
    ("Id,Target\nok1,\n", "{csv} line 2: Id ok1: empty Target ''"),
])
def test_bad_csv_gets_one_line_naming_file_and_row(tmp_path, csv_text, message):
    write_image_set(tmp_path / "img", "ok1")
    write_image_set(tmp_path / "img", "ok2")
    csv = tmp_path / "labels.csv"
    csv.write_text(csv_text)
    with pytest.raises(sources.SourceError) as error:
        convert.convert(str(tmp_path / "img"), str(tmp_path / "out"), csv_path=str(csv), val_fraction=0)
    assert str(error.value) == message.format(csv=csv)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_missing_channel_file_stops_and_leaves_no_dataset(tmp_path):
    raw = _kaggle_like(tmp_path)
    (raw / "train" / f"{KAGGLE_IDS[3]}_yellow.png").unlink()
    with pytest.raises(sources.SourceError) as error:
        convert.convert(str(raw / "train"), str(tmp_path / "out"), csv_path=str(raw / "train.csv"),
                        val_fraction=0, num_shards=2)
    assert str(error.value) == f"Id {KAGGLE_IDS[3]}: missing channel file {raw / 'train'}/{KAGGLE_IDS[3]}_yellow.png"
    assert list((tmp_path / "out").iterdir()) == []


def test_unreadable_image_is_named(tmp_path):
    raw = _kaggle_like(tmp_path)
    bad = raw / "train" / f"{KAGGLE_IDS[0]}_green.png"
    bad.write_bytes(b"")
    with pytest.raises(sources.SourceError) as error:
        convert.convert(str(raw / "train"), str(tmp_path / "out"), csv_path=str(raw / "train.csv"), val_fraction=0)
    assert str(error.value) == f"{bad}: not a readable image (0 bytes)"


def test_existing_dataset_is_kept_unless_overwrite(converted_dir, synthetic_dir):
    with pytest.raises(sources.SourceError) as error:
        convert.convert(str(synthetic_dir / "train"), str(converted_dir), csv_path=str(synthetic_dir / "train.csv"))
    assert str(error.value).startswith(f"{converted_dir}: already holds a dataset (")
    assert str(error.value).endswith("); pass --overwrite to replace it")


def test_missing_images_folder(tmp_path):
    with pytest.raises(sources.SourceError) as error:
        convert.convert(str(tmp_path / "nowhere"), str(tmp_path / "out"))
    assert str(error.value) == f"{tmp_path / 'nowhere'}: images folder not found"
