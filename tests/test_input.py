import json

import numpy as np
import pytest

from protein_location import input as input_lib
from protein_location.manifest import ManifestError


def test_training_batches_have_model_shapes_and_dtypes(converted_dir):
    dataset = input_lib.make_dataset(str(converted_dir), "train", batch_size=8, training=True)
    images, labels = next(iter(dataset))
    assert images.shape == (8, 32, 32, 4) and images.dtype.name == "float32"
    assert labels.shape == (8, 28) and labels.dtype.name == "float32"
    assert 0 <= images.numpy().min() and images.numpy().max() <= 255
    assert set(np.unique(labels.numpy())) <= {0.0, 1.0}
    assert labels.numpy().sum(axis=1).min() >= 1  # every training image has a label


def test_training_drops_the_partial_batch_evaluation_keeps_it(converted_dir):
    train_count = sum(1 for _ in input_lib.make_dataset(str(converted_dir), "train", 5, training=True).unbatch())
    val_batches = list(input_lib.make_dataset(str(converted_dir), "val", 5))
    assert train_count % 5 == 0 and train_count > 0
    manifest = json.loads((converted_dir / "dataset.json").read_text())
    assert sum(len(labels) for _, labels in val_batches) == manifest["splits"]["val"]["num_examples"]


def test_evaluation_order_is_fixed_and_training_repeats_for_a_seed(converted_dir):
    def ids(**kwargs):
        dataset = input_lib.make_dataset(str(converted_dir), "train", 4, with_ids=True, **kwargs)
        return [i for _, _, batch in dataset for i in batch.numpy().tolist()]

    assert ids() == ids()
    assert ids(training=True, seed=1) == ids(training=True, seed=1)
    assert ids(training=True, seed=1) != ids(training=True, seed=2)


def test_images_are_resized_to_the_requested_size(converted_dir):
    images, _ = next(iter(input_lib.make_dataset(str(converted_dir), "val", 2, image_size=24)))
    assert images.shape == (2, 24, 24, 4)


def test_folder_without_manifest_is_a_clear_error(tmp_path):
    with pytest.raises(ManifestError) as error:
        input_lib.make_dataset(str(tmp_path), "train", 4)
    assert str(error.value) == (f"{tmp_path}: no dataset.json here; convert a dataset first with "
                                "`python -m data_prep convert`")


def test_fold_selects_held_out_and_training_shards(synthetic_dir, tmp_path):
    from data_prep import convert

    out = tmp_path / "folds"
    manifest = convert.convert(str(synthetic_dir / "train"), str(out), csv_path=str(synthetic_dir / "train.csv"),
                               folds=3, num_shards=1)

    def ids(split, fold):
        dataset = input_lib.make_dataset(str(out), split, 4, with_ids=True, fold=fold)
        return {i for _, _, batch in dataset for i in batch.numpy().tolist()}

    held_out = next(s for s in manifest["splits"]["train"]["shards"] if s["fold"] == 1)
    assert len(ids("val", 1)) == held_out["num_examples"]
    assert ids("val", 1).isdisjoint(ids("train", 1))
    assert len(ids("val", 1) | ids("train", 1)) == 48
    with pytest.raises(ManifestError) as error:
        input_lib.make_dataset(str(out), "val", 4)
    assert str(error.value) == f"{out}: the dataset has no 'val' split (splits: train); pick one with --fold"
    with pytest.raises(ManifestError) as error:
        input_lib.make_dataset(str(out), "val", 4, fold=3)
    assert str(error.value) == f"{out}: --fold 3 is outside 0-2"


def test_fold_on_a_dataset_without_folds_is_an_error(converted_dir):
    with pytest.raises(ManifestError) as error:
        input_lib.make_dataset(str(converted_dir), "train", 4, fold=0)
    assert str(error.value) == f"{converted_dir}: --fold needs a dataset converted with --folds"


def test_repeat_factors_raise_only_classes_rarer_than_the_threshold():
    factors = input_lib.repeat_factors([50, 10, 1, 0], num_examples=100, threshold=0.1)
    np.testing.assert_allclose(factors, [1.0, 1.0, np.sqrt(10.0), 1.0])


def test_oversampling_keeps_the_epoch_length_and_favours_rare_labels(converted_dir):
    manifest = json.loads((converted_dir / "dataset.json").read_text())
    train = manifest["splits"]["train"]
    counts = np.sum([shard["label_counts"] for shard in train["shards"]], axis=0)
    factors = input_lib.repeat_factors(counts, train["num_examples"], threshold=0.1)
    rare = factors > 1.0

    def epochs(**kwargs):
        dataset = input_lib.make_dataset(str(converted_dir), "train", 4, training=True, seed=3, **kwargs)
        return [np.concatenate([labels.numpy() for _, labels in dataset]) for _ in range(4)]

    plain, oversampled = epochs(), epochs(oversample_factors=factors)
    assert [len(epoch) for epoch in oversampled] == [len(epoch) for epoch in plain]
    rare_per_image = [np.concatenate(run)[:, rare].sum(axis=1).mean() for run in (plain, oversampled)]
    assert rare_per_image[1] > 1.25 * rare_per_image[0]
    again = epochs(oversample_factors=factors)
    assert all(np.array_equal(a, b) for a, b in zip(oversampled, again))
