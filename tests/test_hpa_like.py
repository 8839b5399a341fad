"""Tests for bench/hpa_like.py, the second (benchmark-only) HPA-like generator."""

import csv
import json
import re

import cv2
import numpy as np
import pytest

from bench import hpa_like
from protein_location.core.labels import CHANNELS, NUM_CLASSES, parse_target
from tests.helpers import run_cli

SIZE = 48
NUM_TRAIN, NUM_TEST = 12, 4  # 12 >= 8: with workers=2 the train split goes through the process pool
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def read_csv(path):
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    return rows[0], rows[1:]


def tree_bytes(root):
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("hpa_like")
    summary = hpa_like.generate_dataset(out, NUM_TRAIN, NUM_TEST, size=SIZE, seed=7, workers=1)
    return out, summary


def test_kaggle_layout_and_csvs(dataset):
    out, summary = dataset
    header, train = read_csv(out / "train.csv")
    assert header == ["Id", "Target"] and len(train) == NUM_TRAIN
    header, submission = read_csv(out / "sample_submission.csv")
    assert header == ["Id", "Predicted"] and [p for _, p in submission] == ["0"] * NUM_TEST
    header, truth = read_csv(out / "test_labels.csv")
    assert header == ["Id", "Target"] and [i for i, _ in truth] == [i for i, _ in submission]
    # The CSVs hold what draw_labels predicts, Targets sorted and space-separated.
    drawn = hpa_like.draw_labels(NUM_TRAIN, seed=7)
    assert [tuple(row) for row in train] == [(i, " ".join(map(str, t))) for i, t in drawn]
    expected_files = {"train.csv", "test_labels.csv", "sample_submission.csv"}
    for split, rows in (("train", train), ("test", truth)):
        for image_id, target in rows:
            assert UUID.fullmatch(image_id)
            labels = parse_target(target, NUM_CLASSES)
            assert " ".join(map(str, labels)) == target and 1 <= len(labels) <= 4
            for channel in CHANNELS:
                image = cv2.imread(str(out / split / f"{image_id}_{channel}.png"), cv2.IMREAD_UNCHANGED)
                assert image.shape == (SIZE, SIZE) and image.dtype == np.uint8
                assert image.max() > image.min()  # something was drawn, not a flat frame
                expected_files.add(f"{split}/{image_id}_{channel}.png")
    assert set(tree_bytes(out)) == expected_files
    counts = np.zeros(NUM_CLASSES, int)
    for _, target in train:
        counts[parse_target(target, NUM_CLASSES)] += 1
    assert summary["train_label_counts"] == counts.tolist() and summary["size"] == SIZE


def test_same_seed_same_bytes_whatever_the_workers(dataset, tmp_path):
    out, _ = dataset
    hpa_like.generate_dataset(tmp_path / "again", NUM_TRAIN, NUM_TEST, size=SIZE, seed=7, workers=2)
    assert tree_bytes(tmp_path / "again") == tree_bytes(out)
    other = hpa_like.draw_labels(NUM_TRAIN, seed=8)
    assert not {i for i, _ in other} & {i for i, _ in hpa_like.draw_labels(NUM_TRAIN, seed=7)}


def test_label_distribution_has_every_class_a_long_tail_and_co_occurrence():
    drawn = [labels for _, labels in hpa_like.draw_labels(1200, seed=0)]
    hot = np.zeros((len(drawn), NUM_CLASSES), bool)
    for row, labels in enumerate(drawn):
        assert labels == sorted(set(labels)) and 1 <= len(labels) <= 4
        hot[row, labels] = True
    share = hot.mean(axis=0)
    assert share.min() >= 0.005  # every class present, about 1% of the images or more
    assert share.argmax() == 0 and share[0] > 0.4 and share[25] > 0.25  # Nucleoplasm, then Cytosol
    assert np.count_nonzero(share < 0.03) >= 10  # a long tail of rare classes
    for a, b in ((18, 19), (12, 13), (21, 22)):  # MTOC-centrosome, actin-focal adhesions, PM-junctions
        assert (hot[:, a] & hot[:, b]).mean() > 3 * share[a] * share[b]  # co-occur well above chance
    assert (hot[:, 0] & hot[:, 25]).mean() > 0.1  # Nucleoplasm with Cytosol: the commonest pair, as in HPA
    assert hot.sum(axis=1).mean() > 1.2  # multi-label, as HPA


def test_green_follows_the_nucleus_for_nuclear_classes_only():
    """A cheap learnability check: the green/blue correlation alone separates
    nuclear patterns from cytoplasmic ones."""

    def green_blue_corr(label, index):
        image = hpa_like.render_image(np.random.default_rng([3, label, index]), [label], SIZE).astype(float)
        return np.corrcoef(image[..., 1].ravel(), image[..., 2].ravel())[0, 1]

    nuclear = [green_blue_corr(label, i) for label in (0, 1, 2) for i in range(4)]  # Nucleoplasm, membrane, nucleoli
    cytoplasmic = [green_blue_corr(label, i) for label in (8, 21, 25) for i in range(4)]  # Peroxisomes, PM, Cytosol
    assert min(nuclear) > 0.1 > max(cytoplasmic)
    nucleoplasm = [green_blue_corr(0, i) for i in range(4)]
    assert min(nucleoplasm) > 0.5  # the protein fills the DAPI-stained nucleus


def test_convert_accepts_the_dataset(dataset, tmp_path):
    from data_prep import convert  # imports TensorFlow: only here

    out, _ = dataset
    convert.convert(
        str(out / "train"),
        str(tmp_path / "tf"),
        csv_path=str(out / "train.csv"),
        val_fraction=0.2,
        num_shards=2,
        seed=0,
        workers=1,
    )
    manifest = json.loads((tmp_path / "tf" / "dataset.json").read_text())
    splits = manifest["splits"]
    assert splits["train"]["num_examples"] + splits["val"]["num_examples"] == NUM_TRAIN
    assert manifest["image_size"] == SIZE and len(manifest["class_names"]) == NUM_CLASSES
    assert len(list((tmp_path / "tf").glob("*.tfrecord"))) == 4


def test_cli_help_and_small_size_refused():
    result = run_cli("-m", "bench.hpa_like", "--help")
    assert "--seed" in result.stdout and "(default: 128)" in result.stdout
    with pytest.raises(ValueError, match="too small"):
        hpa_like.render_image(np.random.default_rng(0), [0], 16)
