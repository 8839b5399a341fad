"""Architectures beyond the SE-ResNets, from scratch: SE-ResNeXt-50 and
DenseNet121 train on real TFRecords at the machine's default precision,
export a SavedModel and predict from PNG files through it. ResNet50 does so
pretrained (tests/test_pretrained.py)."""

import keras
import numpy as np
import pytest

from protein_location import models
from protein_location.core import device_precision, manifest as manifest_lib
from protein_location.data import input_reader
from protein_location.export import exporter
from protein_location.inference import predict
from protein_location.training import config as config_lib, task


@pytest.fixture
def default_policy():
    """The precision a run on this machine trains in, set for the test only."""
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(device_precision.default_precision("default")[0])
    yield keras.mixed_precision.global_policy().name
    keras.mixed_precision.set_global_policy(previous)


@pytest.mark.slow
# Two networks: the grouped-convolution preset and the keras.applications backbone the 2018 winners used.
# Every other architecture builds, calls, saves, reloads and gives its float32 twin in tests/test_models.py;
# training them here too cost the suite a minute of its 15 (EfficientNetV2-B0, ConvNeXt-Tiny).
@pytest.mark.parametrize("arch, width", [("seresnext50", 0.125), ("densenet121", 1.0)])
def test_architecture_trains_exports_and_predicts(arch, width, converted_dir, synthetic_dir, tmp_path, default_policy):
    manifest = manifest_lib.DatasetManifest.read(str(converted_dir))
    names = manifest.class_names
    config, _ = config_lib.resolve(
        config_lib.TrainConfig(
            data=str(converted_dir),
            model_dir=str(tmp_path),
            arch=arch,
            width=width,
            epochs=1,
            batch_size=8,
            weights="none",
        ),
        "default",
        manifest.image_size,
    )
    model = models.build_classifier(
        arch,
        image_size=32,
        num_classes=len(names),
        width=width,
        channel_mean=manifest.channel_mean,
        channel_std=manifest.channel_std,
    )
    assert model.dtype_policy.name == default_policy
    task.compile_model(model, config, steps_per_epoch=2)
    before = [variable.numpy().copy() for variable in model.trainable_variables]
    data = input_reader.make_dataset(str(converted_dir), "train", 8, 32, training=True, seed=0)
    history = model.fit(data, epochs=1, steps_per_epoch=2, shuffle=False, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    moved = [not np.array_equal(b, v.numpy()) for b, v in zip(before, model.trainable_variables)]
    # The stem (the first variable) and most of the backbone train, not only the head; what a
    # zero-gamma residual branch feeds (its SE gate) has no gradient in the first step.
    assert moved[0] and moved[-1] and np.mean(moved) > 0.5

    path = exporter.export_saved_model(
        models.float32_twin(model), [0.5] * len(names), str(tmp_path / "export"), class_names=names
    )
    ids = [row.split(",")[0] for row in (synthetic_dir / "sample_submission.csv").read_text().splitlines()[1:4]]
    probabilities, labels = predict.predict_images(path, str(synthetic_dir / "test"), ids, batch_size=2)
    assert probabilities.shape == labels.shape == (3, len(names))
    assert np.isfinite(probabilities).all() and set(np.unique(labels)) <= {0, 1}
