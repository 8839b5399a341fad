"""Pretrained keras.applications backbones on four stains: the stem's
kernels from a weights file as a user has it, the head-only warm-up and
the one-line errors of --weights. No test downloads anything."""

import csv
import json

import h5py
import keras
import numpy as np
import pytest
from keras.src.legacy.saving import legacy_h5_format

from protein_location import models
from protein_location.core.errors import WeightsError, naming_flags
from protein_location.models import application_backbone, pretrained
from tests.helpers import last_error_line, run_cli

TINY = ["--batch-size", 8, "--size", 32]


def write_weights_file(arch, path, seed=1):
    """A Keras weights file of `arch`'s three-channel network without its top,
    random but repeatable: `.h5` in the legacy format keras.applications
    downloads, `.weights.h5` as Keras 3 saves. Returns (path, its weights)."""
    builder, _, options = application_backbone.application_spec(arch)
    keras.utils.set_random_seed(seed)
    network = builder(include_top=False, weights=None, input_shape=(32, 32, 3), **options)
    if str(path).endswith(".weights.h5"):
        network.save_weights(str(path))
    else:
        with h5py.File(path, "w") as file:
            legacy_h5_format.save_weights_to_hdf5_group(file, network)
    return path, network.get_weights()


@pytest.fixture(scope="module")
def resnet50_file(tmp_path_factory):
    return write_weights_file("resnet50", tmp_path_factory.mktemp("weights") / "resnet50_notop.h5")


@pytest.mark.parametrize(
    "arch, suffix",
    [
        ("resnet50", ".h5"),
        ("densenet121", ".h5"),
        ("efficientnetv2b0", ".weights.h5"),
        ("convnext_tiny", ".weights.h5"),
    ],
)
def test_rgb_kernels_are_the_files_and_yellow_is_the_mean_of_red_and_green(arch, suffix, tmp_path):
    path, file_weights = write_weights_file(arch, tmp_path / f"{arch}{suffix}")
    model = models.build_classifier(arch, image_size=32, num_classes=19, weights=str(path))
    loaded = model.backbone.application.get_weights()
    assert len(loaded) == len(file_weights)
    stems = [index for index, value in enumerate(loaded) if value.shape != file_weights[index].shape]
    assert len(stems) == 1
    stem, kernel = loaded[stems[0]], file_weights[stems[0]]
    assert stem.shape == kernel.shape[:-2] + (4, kernel.shape[-1])
    # The caffe-mode ResNet50 was trained on BGR: its kernel's channel 0 is blue.
    red, green, blue = (kernel[..., index, :] for index in ((2, 1, 0) if arch == "resnet50" else (0, 1, 2)))
    np.testing.assert_array_equal(stem[..., 0, :], red)
    np.testing.assert_array_equal(stem[..., 1, :], green)
    np.testing.assert_array_equal(stem[..., 2, :], blue)
    np.testing.assert_allclose(stem[..., 3, :], (red + green) / 2, rtol=0, atol=1e-7)
    for index, value in enumerate(loaded):
        if index != stems[0]:
            np.testing.assert_array_equal(value, file_weights[index])


def test_input_scale_takes_z_scores_into_the_backbones_input_space():
    # torch mode: z-scores are what ImageNet's networks saw; x 3/4 for the fourth channel.
    assert application_backbone.input_scale("densenet121") == (0.75, 0.75, 0.75, 0.75)
    red, green, blue = application_backbone.IMAGENET_STD_255
    np.testing.assert_allclose(
        application_backbone.input_scale("resnet50"), np.array([red, green, blue, (red + green) / 2]) * 0.75
    )
    backbone = models.ApplicationBackbone("convnext_tiny", image_size=32)
    assert backbone.get_layer("input_scale").get_config()["scale"] == [0.75] * 4


def test_a_stem_kernel_of_another_shape_is_refused():
    with pytest.raises(
        ValueError, match=r"^a three-channel stem kernel has 3 input channels, not shape \(7, 7, 4, 64\)$"
    ):
        pretrained.rgby_stem_kernel(np.zeros((7, 7, 4, 64)))


def test_a_failed_download_is_one_line_naming_the_offline_way(monkeypatch):
    def no_internet(*args, **kwargs):
        raise Exception("URL fetch failure on https://storage.googleapis.com/x.h5: None -- [Errno -3] no network")

    monkeypatch.setattr("keras.src.utils.file_utils.get_file", no_internet)
    with pytest.raises(WeightsError) as error:
        models.build_classifier("densenet121", image_size=32, weights="imagenet")
    assert str(error.value) == (  # from Python the argument is named; the command line names the flag
        "`weights` imagenet: Keras could not download the ImageNet weights of densenet121 (URL fetch failure on "
        "https://storage.googleapis.com/x.h5: None -- [Errno -3] no network); download them where there is internet "
        "and pass `weights` PATH, or train from scratch with `weights` none"
    )
    assert naming_flags(error.value, {"weights": "--weights"}).endswith(
        "and pass --weights PATH, or train from scratch with --weights none"
    )


def test_a_weights_file_of_another_network_is_one_line(tmp_path, resnet50_file):
    with pytest.raises(
        WeightsError,
        match=r"^`weights` .*resnet50_notop.h5: not a Keras weights file of densenet121 "
        r"without its top \(",
    ):
        models.build_classifier("densenet121", image_size=32, weights=str(resnet50_file[0]))


@pytest.mark.parametrize(
    "flags, message",
    [
        (
            ["--arch", "resnet50", "--weights", "/no/such.h5"],
            "error: --weights /no/such.h5: no such file; give a Keras weights file of resnet50 without its top (what "
            "keras.applications downloads), imagenet or none",
        ),
        (
            ["--arch", "seresnet18", "--weights", "imagenet"],
            "error: --weights imagenet: pretrained weights are for the keras.applications backbones (densenet121, "
            "resnet50, efficientnetv2b0, convnext_tiny); --arch seresnet18 trains from scratch",
        ),
        (
            ["--arch", "resnet50", "--weights", "none", "--freeze-epochs", "1"],
            "error: --freeze-epochs 1: a head-only warm-up needs a pretrained backbone (--weights imagenet or PATH "
            "with a keras.applications --arch)",
        ),
        (
            ["--arch", "resnet50", "--width", "0.5", "--weights", "none"],
            "error: --width 0.5: --arch resnet50 has one width; --width is for the presets seresnet18, seresnet34, "
            "seresnet50, seresnext50",
        ),
    ],
)
def test_a_fine_tuning_request_that_cannot_run_is_one_line(converted_dir, tmp_path, flags, message):
    result = run_cli(
        "train_keras.py",
        "--data",
        converted_dir,
        "--model-dir",
        tmp_path / "run",
        "--epochs",
        2,
        *TINY,
        *flags,
        check=False,
    )
    assert result.returncode == 1
    assert last_error_line(result) == message


@pytest.mark.slow
def test_a_frozen_run_changes_only_the_head_and_exports_a_model_that_predicts(
    converted_dir, synthetic_dir, tmp_path, resnet50_file
):
    path, _ = resnet50_file
    run, export = tmp_path / "run", tmp_path / "export"
    result = run_cli(
        "train_keras.py",
        "--data",
        converted_dir,
        "--model-dir",
        run,
        "--epochs",
        1,
        *TINY,
        "--arch",
        "resnet50",
        "--weights",
        path,
        "--freeze-epochs",
        1,
        "--no-bias-init",
        "--export",
        export,
    )
    assert (
        f"weights: resnet50 from {path}; head only for 1 epoch(s), then the backbone at 0.1x the head's rate"
        in result.stdout
    )
    assert "fine-tuning: epochs 1-1 train the head only (2 variables), the backbone frozen" in result.stdout
    report = json.loads((run / "report.json").read_text())
    assert (report["weights"], report["freeze_epochs"], report["backbone_lr_scale"]) == (str(path), 1, 0.1)

    trained = keras.saving.load_model(run / "model.keras")
    start = models.build_classifier("resnet50", image_size=32, num_classes=trained.num_classes, weights=str(path))
    # Every backbone weight, BatchNorm's moving statistics included (frozen: inference mode), is the file's.
    for before, after in zip(start.backbone.get_weights(), trained.backbone.get_weights()):
        np.testing.assert_array_equal(before, after)
    assert np.abs(trained.head.bias.numpy()).max() > 0  # the head learned (it started at zeros)

    submission = tmp_path / "submission.csv"
    run_cli(
        "-m",
        "protein_location",
        "predict",
        "--model",
        export,
        "--images",
        synthetic_dir / "test",
        "--csv",
        synthetic_dir / "sample_submission.csv",
        "--out",
        submission,
    )
    rows = list(csv.DictReader(submission.open()))
    assert [row["Id"] for row in rows] == [
        row["Id"] for row in csv.DictReader((synthetic_dir / "sample_submission.csv").open())
    ]
