"""The training flags are generated from TrainConfig, so they cannot drift."""

import dataclasses

import pytest

import train_keras
from protein_location.core import device_precision
from protein_location.data import augment
from protein_location.training import config as config_lib, distribute

NOT_FLAGS = {"augmentation", "export_formats"}  # from --augment-* and --tflite/--tflite-quantize/--onnx


def test_every_config_field_is_a_flag_with_the_fields_default():
    config = config_lib.config_from_args(train_keras.parse_args(["--data", "D", "--model-dir", "R"]))
    defaults = config_lib.TrainConfig(data="D", model_dir="R")
    assert config == defaults
    flagged = {f.name for f in dataclasses.fields(config_lib.TrainConfig) if "flag" in f.metadata}
    assert flagged | NOT_FLAGS == {f.name for f in dataclasses.fields(config_lib.TrainConfig)}
    assert set(config_lib.AUGMENT_FLAGS) == {f.name for f in dataclasses.fields(augment.AugmentConfig)}


def test_flags_set_their_fields():
    args = train_keras.parse_args(
        [
            "--data",
            "D",
            "--model-dir",
            "R",
            "--lr",
            "0.01",
            "--size",
            "64",
            "--no-bias-init",
            "--oversample",
            "--augment-crop",
            "0.7",
            "--no-augment-flips",
            "--tta",
            "8",
            "--precision",
            "mixed_bfloat16",
            "--jit-compile",
            "--export",
            "E",
            "--onnx",
        ]
    )
    config = config_lib.config_from_args(args, export_formats=("onnx",))
    assert (config.learning_rate, config.image_size, config.bias_init, config.oversample, config.tta) == (
        0.01,
        64,
        False,
        0.1,
        8,
    )
    assert config.augmentation == augment.AugmentConfig(flips=False, crop_min_area=0.7, jitter=0.0)
    assert (config.precision, config.jit_compile, config.export_dir, config.export_formats) == (
        "mixed_bfloat16",
        True,
        "E",
        ("onnx",),
    )


def test_help_shows_every_default(capsys):
    with pytest.raises(SystemExit):
        train_keras.parse_args(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    for flag in (
        "--lr LR peak learning rate",
        "(default: 0.016)",
        "--batch-size BATCH_SIZE global batch size (default: 32)",
        "--augment-flips, --no-augment-flips",
        "--tflite",
    ):
        assert flag in text, flag


def test_a_fold_of_cv_records_the_settings_of_a_plain_fold_run():
    """So a fold trained by hand (`--fold 1 --model-dir R/fold-1`) is the fold
    `--cv` gathers, and a run folder of a version before --cv resumes."""
    from protein_location.training import cross_validation

    def settings(*flags):
        return config_lib.config_from_args(train_keras.parse_args(["--data", "D", "--model-dir", "R", *flags]))

    cv = settings("--cv", "--epochs", "3")
    fold = cross_validation.fold_config(cv, 1)
    plain = settings("--fold", "1", "--epochs", "3")
    assert fold.model_dir == "R/fold-1" and fold.fold == 1 and not fold.cv and fold.export_dir is None
    assert config_lib.run_settings(fold) == config_lib.run_settings(plain)
    assert "--cv" not in config_lib.run_settings(plain)
    assert config_lib.run_settings(cv)["--cv"] is True
    without_fold = {flag: value for flag, value in config_lib.run_settings(cv).items() if flag != "--fold"}
    assert cross_validation.cv_settings(cv) == without_fold


def test_resolve_decides_every_default_once_and_leaves_the_request_as_given():
    request = config_lib.TrainConfig(data="d", model_dir="m", arch="resnet50", epochs=3)
    resolved, why = config_lib.resolve(request, "default", 64, cpu_flags=[], vendor="GenuineIntel")
    assert (resolved.weights, resolved.freeze_epochs, resolved.backbone_lr_scale) == ("imagenet", 1, 0.1)
    assert (resolved.precision, why) == device_precision.default_precision("default", 0, [], "GenuineIntel")
    assert resolved.image_size == 64 and resolved.precision == "float32"
    assert all(getattr(request, field) is None for field in config_lib.RESOLVED_FIELDS)
    assert resolved.peak_learning_rate == distribute.scaled_learning_rate(request.learning_rate, request.batch_size)
    with pytest.raises(dataclasses.FrozenInstanceError):
        request.epochs = 5

    given = config_lib.TrainConfig(data="d", model_dir="m", epochs=1, image_size=48, precision="mixed_bfloat16")
    scratch, why = config_lib.resolve(given, "default", 64)
    assert (scratch.weights, scratch.freeze_epochs, scratch.backbone_lr_scale) == ("none", 0, 1.0)
    assert (scratch.image_size, scratch.precision, why) == (48, "mixed_bfloat16", "--precision")
    assert config_lib.resolve(config_lib.TrainConfig(data="d", model_dir="m"), "tpu", 64)[0].precision == (
        "mixed_bfloat16"
    )


def test_every_flag_is_in_one_group_of_the_help():
    grouped = [name for names in config_lib.FLAG_GROUPS.values() for name in names]
    flagged = [f.name for f in dataclasses.fields(config_lib.TrainConfig) if "flag" in f.metadata]
    assert sorted(grouped) == sorted(flagged)
    help_text = train_keras.build_parser().format_help()
    sections = [line.rstrip(":") for line in help_text.splitlines() if line and not line.startswith(" ")]
    assert [s for s in sections if s in config_lib.FLAG_GROUPS] == list(config_lib.FLAG_GROUPS)
    export_section = help_text.split("\nexport:\n")[1]
    assert all(flag in export_section for flag in ("--export", "--tta", "--tflite", "--tflite-quantize", "--onnx"))
