"""The training flags are generated from TrainConfig, so they cannot drift."""

import dataclasses

import pytest

import train_keras
from protein_location.data import augment
from protein_location.training import config as config_lib

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
