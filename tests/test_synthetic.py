"""Tests for the synthetic HPA dataset: layout, determinism, labels, geometry."""

import csv
import multiprocessing

import cv2
import numpy as np
import pytest

from data_prep.synthetic import generate_dataset, render_cells, sample_labels
from protein_location.core.labels import CHANNELS, CLASS_NAMES, NUM_CLASSES, is_valid_id, parse_target

SIZE = 64


def read_csv(path):
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    return rows[0], rows[1:]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("synthetic")
    summary = generate_dataset(out, num_train=12, num_test=5, size=SIZE, seed=3)
    return out, summary


def test_csv_headers_and_rows(dataset):
    out, summary = dataset
    header, train = read_csv(out / "train.csv")
    assert header == ["Id", "Target"] and len(train) == 12
    header, submission = read_csv(out / "sample_submission.csv")
    assert header == ["Id", "Predicted"] and len(submission) == 5
    assert all(predicted == "0" for _, predicted in submission)
    header, truth = read_csv(out / "test_labels.csv")
    assert header == ["Id", "Target"]
    assert [row[0] for row in truth] == [row[0] for row in submission]
    assert summary["num_train"] == 12 and summary["num_test"] == 5


def test_ids_valid_unique_and_targets_parse(dataset):
    out, summary = dataset
    _, train = read_csv(out / "train.csv")
    _, truth = read_csv(out / "test_labels.csv")
    ids = [row[0] for row in train + truth]
    assert len(set(ids)) == len(ids)
    for image_id in ids:
        assert is_valid_id(image_id) and len(image_id) == 36  # UUID shaped
    counts = np.zeros(NUM_CLASSES, int)
    for _, target in train:
        labels = parse_target(target, NUM_CLASSES)
        assert 1 <= len(labels) <= 3
        counts[labels] += 1
    assert summary["train_label_counts"] == counts.tolist()


@pytest.mark.parametrize("split, csv_name", [("train", "train.csv"), ("test", "sample_submission.csv")])
def test_four_channel_pngs_per_id(dataset, split, csv_name):
    out, _ = dataset
    _, rows = read_csv(out / csv_name)
    ids = {row[0] for row in rows}
    files = sorted(p.name for p in (out / split).iterdir())
    assert files == sorted(f"{i}_{c}.png" for i in ids for c in CHANNELS)
    for image_id in list(ids)[:3]:
        for channel in CHANNELS:
            image = cv2.imread(str(out / split / f"{image_id}_{channel}.png"), cv2.IMREAD_UNCHANGED)
            assert image.dtype == np.uint8 and image.shape == (SIZE, SIZE)


def all_bytes(folder):
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_same_seed_is_byte_identical_for_any_worker_count_other_seed_differs(tmp_path):
    generate_dataset(tmp_path / "a", 4, 2, size=SIZE, seed=11, workers=1)
    generate_dataset(tmp_path / "b", 4, 2, size=SIZE, seed=11, workers=3)
    generate_dataset(tmp_path / "c", 4, 2, size=SIZE, seed=12)
    a, b, c = (all_bytes(tmp_path / name) for name in "abc")
    assert a == b
    assert read_csv(tmp_path / "a" / "train.csv") != read_csv(tmp_path / "c" / "train.csv")
    pngs_a = [v for k, v in a.items() if k.suffix == ".png"]
    pngs_c = [v for k, v in c.items() if k.suffix == ".png"]
    assert not set(pngs_a) & set(pngs_c)  # no image repeats under another seed


def test_workers_are_spawned_not_forked(tmp_path, monkeypatch):
    """The caller may have TensorFlow loaded (the data_prep CLI has), and its threads do not survive a fork."""
    methods, get_context = [], multiprocessing.get_context

    def recording_get_context(method=None):
        methods.append(method)
        return get_context(method)

    monkeypatch.setattr(multiprocessing, "get_context", recording_get_context)
    generate_dataset(tmp_path / "a", 4, 0, size=SIZE, seed=11, workers=2)
    generate_dataset(tmp_path / "b", 4, 0, size=SIZE, seed=11, workers=1)
    assert methods == ["spawn"]
    assert all_bytes(tmp_path / "a") == all_bytes(tmp_path / "b")


def test_image_does_not_depend_on_dataset_size(tmp_path):
    generate_dataset(tmp_path / "small", 2, 1, size=SIZE, seed=5)
    generate_dataset(tmp_path / "large", 4, 3, size=SIZE, seed=5)
    small, large = all_bytes(tmp_path / "small"), all_bytes(tmp_path / "large")
    for path, content in small.items():
        if path.suffix == ".png":
            assert large[path] == content


def test_label_frequencies_follow_hpa_shape():
    rng = np.random.default_rng(0)
    counts = np.zeros(NUM_CLASSES, int)
    for _ in range(3000):
        labels = sample_labels(rng)
        assert 1 <= len(labels) <= 3 and len(set(labels)) == len(labels)
        counts[labels] += 1
    assert set(np.argsort(counts)[-2:]) == {0, 25}  # Nucleoplasm, Cytosol
    assert 27 in np.argsort(counts)[:6]  # Rods & rings among the rarest
    assert counts.min() >= 0.01 * 3000  # the floor: every class ~1% or more


def green_mass(image, masks):
    """Green above the dim background, and the background level."""
    green = image[..., 1].astype(float)
    near_cells = cv2.dilate(masks["cell"].astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    background = np.median(green[~near_cells]) if (~near_cells).any() else np.percentile(green, 5)
    return np.clip(green - background - 4, 0, None), background


def render(labels, seed):
    return render_cells(np.random.default_rng([seed, 42]), labels, SIZE)


@pytest.mark.parametrize("seed", range(4))
def test_nucleoplasm_green_lies_in_nucleus(seed):
    image, masks = render([0], seed)
    mass, _ = green_mass(image, masks)
    assert mass[masks["nucleus"]].sum() > 0.75 * mass.sum()


@pytest.mark.parametrize("seed", range(4))
def test_cytosol_green_lies_in_cytoplasm(seed):
    image, masks = render([25], seed)
    mass, _ = green_mass(image, masks)
    assert mass[masks["cell"] & ~masks["nucleus"]].sum() > 0.75 * mass.sum()


@pytest.mark.parametrize("seed", range(4))
def test_plasma_membrane_green_is_at_the_cell_rim(seed):
    image, masks = render([21], seed)
    mass, _ = green_mass(image, masks)
    cell = masks["cell"].astype(np.uint8)
    kernel = np.ones((3, 3), np.uint8)
    rim = (cv2.dilate(cell, kernel) - cv2.erode(cell, kernel)).astype(bool)
    interior = cv2.erode(cell, kernel, iterations=3).astype(bool)
    assert mass[rim].sum() > 0.6 * mass.sum()
    assert mass[rim].mean() > 3 * mass[interior].mean()


def green_peak(labels, seed):
    """Brightest green (lightly smoothed against pixel noise) above background."""
    image, masks = render(labels, seed)
    _, background = green_mass(image, masks)
    return cv2.GaussianBlur(image[..., 1].astype(np.float32), (3, 3), 0).max() - background


@pytest.mark.parametrize("label", range(NUM_CLASSES), ids=CLASS_NAMES)
def test_every_class_gives_green_signal(label):
    for seed in range(3):
        assert green_peak([label], seed) > 30


def test_no_labels_means_no_green_pattern():
    for seed in range(3):
        assert green_peak([], seed) < 25


def test_render_shapes_and_masks():
    image, masks = render([0, 16], 0)
    assert image.shape == (SIZE, SIZE, 4) and image.dtype == np.uint8
    assert masks["nucleus"].any() and not (masks["nucleus"] & ~masks["cell"]).any()
    assert 0.05 < masks["cell"].mean() < 0.95
