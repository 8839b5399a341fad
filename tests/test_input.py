import collections
import json

import numpy as np
import pytest
import tensorflow as tf

from protein_location.core.errors import naming_flags
from protein_location.core.manifest import ManifestError
from protein_location.data import input_reader
from tests.helpers import write_raw_dataset


def test_training_batches_have_model_shapes_and_dtypes(converted_dir):
    dataset = input_reader.make_dataset(str(converted_dir), "train", batch_size=8, training=True)
    images, labels = next(iter(dataset))
    assert images.shape == (8, 32, 32, 4) and images.dtype.name == "float32"
    assert labels.shape == (8, 28) and labels.dtype.name == "float32"
    assert 0 <= images.numpy().min() and images.numpy().max() <= 255
    assert set(np.unique(labels.numpy())) <= {0.0, 1.0}
    assert labels.numpy().sum(axis=1).min() >= 1  # every training image has a label


def test_training_streams_whole_batches_evaluation_is_one_pass(converted_dir):
    manifest = json.loads((converted_dir / "dataset.json").read_text())
    train_count = manifest["splits"]["train"]["num_examples"]
    # Endless: more batches than one pass holds, every one whole.
    batches = input_reader.make_dataset(str(converted_dir), "train", 5, training=True).take(3 * train_count // 5)
    assert {len(labels) for _, labels in batches} == {5}
    val_batches = list(input_reader.make_dataset(str(converted_dir), "val", 5))
    assert sum(len(labels) for _, labels in val_batches) == manifest["splits"]["val"]["num_examples"]


def test_evaluation_order_is_fixed_and_training_repeats_for_a_seed(converted_dir):
    def ids(steps=None, **kwargs):
        dataset = input_reader.make_dataset(str(converted_dir), "train", 4, with_ids=True, **kwargs)
        return [i for _, _, batch in dataset.take(steps or -1) for i in batch.numpy().tolist()]

    assert ids() == ids()
    assert ids(20, training=True, seed=1) == ids(20, training=True, seed=1)
    assert ids(20, training=True, seed=1) != ids(20, training=True, seed=2)


def test_images_are_resized_to_the_requested_size(converted_dir):
    images, _ = next(iter(input_reader.make_dataset(str(converted_dir), "val", 2, image_size=24)))
    assert images.shape == (2, 24, 24, 4)


def test_folder_without_manifest_is_a_clear_error(tmp_path):
    with pytest.raises(ManifestError) as error:
        input_reader.make_dataset(str(tmp_path), "train", 4)
    assert str(error.value) == (
        f"{tmp_path}: no dataset.json here; convert a dataset first with `python -m data_prep convert`"
    )


def test_fold_selects_held_out_and_training_shards(synthetic_dir, tmp_path):
    from data_prep import convert

    out = tmp_path / "folds"
    manifest = convert.convert(
        str(synthetic_dir / "train"), str(out), csv_path=str(synthetic_dir / "train.csv"), folds=3, num_shards=1
    )

    def ids(split, fold):
        dataset = input_reader.make_dataset(str(out), split, 4, with_ids=True, fold=fold)
        return {i for _, _, batch in dataset for i in batch.numpy().tolist()}

    held_out = next(s for s in manifest["splits"]["train"]["shards"] if s["fold"] == 1)
    assert len(ids("val", 1)) == held_out["num_examples"]
    assert ids("val", 1).isdisjoint(ids("train", 1))
    assert len(ids("val", 1) | ids("train", 1)) == 48
    with pytest.raises(ManifestError) as error:
        input_reader.make_dataset(str(out), "val", 4)
    assert str(error.value) == f"{out}: the dataset has no 'val' split (splits: train); pick one with --fold"
    with pytest.raises(ManifestError) as error:
        input_reader.make_dataset(str(out), "val", 4, fold=3)
    assert str(error.value) == f"{out}: `fold` 3 is outside 0-2"
    assert naming_flags(error.value, {"fold": "--fold"}) == f"{out}: --fold 3 is outside 0-2"


def test_fold_on_a_dataset_without_folds_is_an_error(converted_dir):
    with pytest.raises(ManifestError) as error:
        input_reader.make_dataset(str(converted_dir), "train", 4, fold=0)
    assert str(error.value) == f"{converted_dir}: `fold` needs a dataset converted with --folds"


def test_repeat_factors_raise_only_classes_rarer_than_the_threshold():
    factors = input_reader.repeat_factors([50, 10, 1, 0], num_examples=100, threshold=0.1)
    np.testing.assert_allclose(factors, [1.0, 1.0, np.sqrt(10.0), 1.0])


def _exposures(data_dir, steps, batch, **kwargs):
    """How often each training Id arrives in the first `steps` batches of the stream."""
    dataset = input_reader.make_dataset(
        str(data_dir),
        "train",
        batch,
        training=True,
        seed=3,
        with_ids=True,
        augment_config=input_reader.augment.AugmentConfig(False, 1.0, 0.0),
        **kwargs,
    )
    return collections.Counter(i for _, _, ids in dataset.take(steps) for i in ids.numpy().tolist())


@pytest.fixture(scope="module")
def few_shards_dir(tmp_path_factory):
    """120 training images at 16 px (random pixels) in 2 shards: few shards, as in the demo."""
    from data_prep import convert, synthetic

    rng = np.random.default_rng(5)
    targets = {f"img{index:03d}": " ".join(map(str, synthetic.sample_labels(rng))) for index in range(150)}
    raw = write_raw_dataset(tmp_path_factory.mktemp("raw150"), targets, size=16)
    out = tmp_path_factory.mktemp("few_shards") / "data"
    convert.convert(
        str(raw / "train"), str(out), csv_path=str(raw / "train.csv"), val_fraction=0.2, num_shards=2, seed=0
    )
    return out


def test_every_example_is_seen_as_often_as_its_repeat_factor_says_over_epochs(few_shards_dir):
    """One stream across epochs: over 12 epochs each example arrives about
    12 r / mean(r) times, the tail of each shard as often as its head (an
    epoch that restarted the oversampled stream would starve the tail)."""
    manifest = json.loads((few_shards_dir / "dataset.json").read_text())
    train = manifest["splits"]["train"]
    counts = np.sum([shard["label_counts"] for shard in train["shards"]], axis=0)
    factors = input_reader.repeat_factors(counts, train["num_examples"], threshold=0.3)
    batch, epochs = 8, 12
    steps = epochs * (train["num_examples"] // batch)
    seen = _exposures(few_shards_dir, steps, batch, oversample_factors=factors)
    ids, labels = [], []
    for image_id, label_matrix in _records(few_shards_dir):
        ids.append(image_id)
        labels.append(label_matrix)
    wanted = np.array([factors[row > 0].max() for row in np.array(labels)])
    expected = wanted / wanted.mean() * steps * batch / len(ids)
    observed = np.array([seen[i] for i in ids])
    assert wanted.max() > 1.5  # the test exercises oversampling
    assert observed.min() > 0
    assert np.abs(observed.sum() - steps * batch) == 0
    # Per example: within what stochastic rounding and the stream's cut allow.
    assert np.abs(observed - expected).max() < 0.35 * expected.max() + 3
    # Head and tail of every shard alike (in the order the shards store them).
    for shard_ids in _shard_ids(few_shards_dir):
        quarter = len(shard_ids) // 4
        rows = [ids.index(i) for i in shard_ids]
        ratio = observed[rows] / expected[rows]
        assert abs(ratio[-quarter:].mean() - ratio[:quarter].mean()) < 0.15


def test_without_oversampling_every_example_is_seen_once_per_pass(few_shards_dir):
    manifest = json.loads((few_shards_dir / "dataset.json").read_text())
    count = manifest["splits"]["train"]["num_examples"]
    seen = _exposures(few_shards_dir, 6 * count // 8, 8)  # 6 passes, cut at a whole batch
    assert len(seen) == count
    assert 5 <= min(seen.values()) and max(seen.values()) <= 6


def _records(data_dir):
    """(Id, multi-hot labels) of every training record, in shard order."""
    dataset = input_reader.make_dataset(str(data_dir), "train", 16, with_ids=True)
    return [(i, row) for _, labels, ids in dataset for i, row in zip(ids.numpy().tolist(), labels.numpy())]


def _shard_ids(data_dir):
    import tensorflow as tf

    manifest = json.loads((data_dir / "dataset.json").read_text())
    for shard in manifest["splits"]["train"]["shards"]:
        yield [
            input_reader.records.parse_example(r, 28)["source_id"].numpy()
            for r in tf.data.TFRecordDataset(str(data_dir / shard["file"]))
        ]


@pytest.mark.parametrize("pipelines", [1, 2])
def test_padded_evaluation_gives_whole_batches_and_every_example_once(converted_dir, pipelines):
    """14 val examples (2 shards of 7), global batch 8 over 2 replicas per
    pipeline: the last batches are filled up with blanks of weight 0."""
    data = str(converted_dir)
    expected = collections.Counter(
        image.tobytes() for images, _ in input_reader.make_dataset(data, "val", 8) for image in images.numpy()
    )
    padding = input_reader.split_padding(data, "val", 8, pipelines)
    per_pipeline = []
    for index in range(pipelines):
        context = tf.distribute.InputContext(
            num_input_pipelines=pipelines, input_pipeline_id=index, num_replicas_in_sync=2 * pipelines
        )
        per_pipeline.append(list(input_reader.make_dataset(data, "val", 8, input_context=context, pad_batches=True)))
    seen = collections.Counter()
    for batches in per_pipeline:
        # Whole batches of the per-replica size, as many on every pipeline: `steps` for each of its 2 replicas.
        assert [int(labels.shape[0]) for _, labels, _ in batches] == [4 // pipelines] * 2 * padding.steps
        for images, labels, weights in batches:
            for image, label, weight in zip(images.numpy(), labels.numpy(), weights.numpy()):
                if weight == 0:
                    assert not image.any() and not label.any()
                else:
                    assert weight == pytest.approx(padding.weight)
                    seen[image.tobytes()] += 1
    assert seen == expected  # every val example exactly once
    assert padding.weight == pytest.approx(padding.steps * 8 / 14)


def test_eval_padding_fills_the_largest_share_to_whole_steps():
    assert input_reader.eval_padding([17], 8) == (24, 3, 24 / 17)
    assert input_reader.eval_padding([7, 7], 8) == (8, 2, 16 / 14)  # 4 per pipeline
    assert input_reader.eval_padding([9, 3], 4) == (10, 5, 20 / 12)
    assert input_reader.eval_padding([16], 8) == (16, 2, 1.0)  # nothing to pad
