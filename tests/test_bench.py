"""Smoke run of the benchmarks: they run and report; no speed is asserted."""

import json
import pathlib

import pytest

from tests.helpers import run_cli

pytestmark = pytest.mark.slow  # trains or exports


SAMPLES = pathlib.Path(__file__).parent / "data" / "hpa"
FIGURE_FIELDS = {"median_s", "min_s", "max_s", "images_per_s", "images_per_s_min", "images_per_s_max", "images", "runs"}


def assert_figure(part):
    assert FIGURE_FIELDS <= set(part), sorted(FIGURE_FIELDS - set(part))
    assert 0 < part["min_s"] <= part["median_s"] <= part["max_s"]
    assert 0 < part["images_per_s_min"] <= part["images_per_s"] <= part["images_per_s_max"]


def test_quick_benchmark_measures_every_stage_against_its_reference(tmp_path):
    out = tmp_path / "bench.json"
    result = run_cli("-m", "bench", "--quick", "--work", tmp_path / "work", "--out", out)
    record = json.loads(out.read_text())
    assert record["settings"]["quick"] and record["machine"]["cores"] >= 1

    conversion = record["conversion"]
    assert_figure(conversion["decode_limit"]), assert_figure(conversion["convert"])
    # The conversion stage is bench/convert.py's main, as `python bench/convert.py` runs it.
    assert conversion["images"] == 32 and conversion["decode_limit_reader"]["images_per_s"] > 0
    assert conversion["ratio_convert_to_decode"] > 0 and conversion["convert_share_of_decode_limit"] > 0
    assert conversion["ratio_convert_to_reader_decode"] > 0 and conversion["peak_rss_mb_largest_process"] > 0
    assert_figure(conversion["convert_less_worker_start"])
    assert conversion["ratio_per_image_convert_to_decode"] > 0
    assert conversion["source"] == "synthetic (data_prep.synthetic)"

    pipeline = record["input"]
    assert_figure(pipeline["read_limit"]), assert_figure(pipeline["pipeline"]), assert_figure(pipeline["decode"])
    assert pipeline["pipeline_share_of_read_limit"] > 0 and pipeline["peak_rss_mb"] > 0

    training = record["training"]
    assert set(training) == {"seresnet18"}  # --quick: no peer, no mixed_bfloat16 row (same stage, other settings)
    assert_figure(training["seresnet18"]["training"])
    assert training["seresnet18"]["parameters"] > 0 and training["seresnet18"]["peak_rss_mb"] > 0
    assert training["seresnet18"]["input_over_training"] > 0 and training["seresnet18"]["precision"] == "float32"
    assert_figure(training["seresnet18"]["inference"])  # graph-mode inference of every trained architecture
    assert training["seresnet18"]["infer_batch"] == 8
    assert_figure(training["seresnet18"]["training_live_input"])
    assert training["seresnet18"]["live_share_of_cached"] > 0

    inference = record["inference"]
    for key in ("serving", "serving_from_source", "serving_tta8", "from_files"):
        assert_figure(inference[key])
        assert inference[f"{key}_share_of_paper"] > 0
    assert_figure(inference["decode_files"])
    assert inference["from_files_share_of_added_limit"] > 0 and inference["from_files_added_limit_images_per_s"] > 0
    assert inference["peak_rss_mb"] > 0
    bf16 = record["inference_onednn_bf16"]
    assert bf16["onednn_bf16_rewrite"] and bf16["saved_model"] == inference["saved_model"]
    for key in ("serving", "serving_from_source", "serving_tta8", "from_files", "decode_files"):
        assert_figure(bf16[key])
    assert bf16["from_files_share_of_added_limit"] > 0

    assert [goal["target"] for goal in record["goals"]] == [75.0, 75.0, 150.0, 0.85, 5.0]
    assert all(goal["measured"] > 0 for goal in record["goals"])
    assert "| conversion" in result.stdout and "| inference: SavedModel + 8× TTA" in result.stdout


def test_conversion_benchmark_runs_on_real_files_replicated(tmp_path):
    """--source: the real Kaggle files, their Ids replicated by links to --images;
    two workers, so the per-image figure has a worker start to take off."""
    out = tmp_path / "convert.json"
    run_cli(
        "bench/convert.py",
        "--source",
        SAMPLES / "kaggle2018",
        "--images",
        6,
        "--workers",
        2,
        "--repeats",
        1,
        "--breakdown",
        2,
        "--work",
        tmp_path / "work",
        "--out",
        out,
    )
    record = json.loads(out.read_text())
    assert record["source"] == str(SAMPLES / "kaggle2018") and record["images"] == 6 and record["size"] == 512
    replicated = sorted((tmp_path / "work" / "source-kaggle2018-6" / "train").iterdir())
    assert len(replicated) == 24 and all(path.is_symlink() for path in replicated)
    assert replicated[0].name == "027a702a-bbca-11e8-b2bc-ac1f6b6435d0-00000_blue.png"
    # Times measured apart: on a busy machine the start can exceed the whole conversion, so no order is asserted.
    assert record["worker_start_s"] > 0 and record["convert_less_worker_start"]["images_per_s"] > 0
    steps = record["breakdown"]["ms_per_image"]
    assert len(steps) == 8 and all(ms >= 0 for ms in steps.values()) and steps["encode (png)"] > 0
    assert record["breakdown"]["worker_ms_per_image"] == pytest.approx(sum(list(steps.values())[1:]), abs=0.05)


def test_presets_take_every_architecture_and_name_the_choices_for_an_unknown_one(capsys):
    from bench import run

    assert run.parse_args(["--presets", "densenet121,seresnet18"]).presets == ["densenet121", "seresnet18"]
    with pytest.raises(SystemExit):
        run.parse_args(["--presets", "vgg16"])
    assert (
        capsys.readouterr()
        .err.strip()
        .splitlines()[-1]
        .endswith(
            "--presets: unknown preset 'vgg16'; choose from seresnet18, seresnet34, seresnet50, seresnext50, "
            "densenet121, resnet50, efficientnetv2b0, convnext_tiny"
        )
    )


def test_shard_check_benchmark_compares_the_check_with_a_full_sha256(tmp_path):
    from bench import shard_check

    record = shard_check.main(["--shards", "3", "--shard-mb", "1", "--work", str(tmp_path / "shards")])
    assert record["shards"] == 3 and record["total_gb"] == pytest.approx(3 * 2**20 / 1e9, abs=0.01)
    assert set(record["seconds"]) == {
        "size_only",
        "size_and_ends (training, predict)",
        "full_sha256 (data_prep verify)",
    }


def test_checkpoint_cost_benchmark_times_both_backups(tmp_path):
    from bench import checkpoint_cost

    record = checkpoint_cost.main(["--size", "32", "--repeats", "1", "--work", str(tmp_path / "cost")])
    assert set(record["median_s"]) == {"keras BackupAndRestore(double_checkpoint=True)", "AtomicBackupAndRestore"}
    assert record["weights_file_mb"] <= record["estimated_mb"]  # the free-space check never asks for less


def test_export_size_benchmark_finds_each_weight_stored_once():
    from bench import export_size

    record = export_size.main(["--width", "0.125", "--size", "16"])
    assert record["stored_values"] == record["parameters"] + 91  # the metadata: image_size, views, thresholds, ...
    assert record["variables_mb"] > 0 and record["export_s"] > 0 and record["load_and_first_call_s"] > 0


def test_the_plain_reference_trains_on_train_and_val_and_scores_the_held_out_images(converted_dir, tmp_path):
    from bench import reference

    out = tmp_path / "reference.jsonl"
    result = reference.main(
        [
            "--data",
            str(converted_dir),
            "--test",
            str(converted_dir),
            "--epochs",
            "1",
            "--batch-size",
            "8",
            "--out",
            str(out),
        ]
    )
    assert json.loads(out.read_text()) == result
    assert result["train_images"] == 48 and result["train_splits"] == ["train", "val"]  # convert's 36 + 12
    assert 0 <= result["test_f1_at_0.3"] <= 1 and result["train_seconds"] > 0


def test_the_plain_reference_flips_each_way_on_its_own():
    import keras
    import tensorflow as tf

    from bench import reference

    keras.utils.set_random_seed(0)
    image = tf.reshape(tf.range(4.0), [2, 2, 1])
    views = {
        tuple(view.numpy().ravel())
        for view in tf.data.Dataset.from_tensors(image).repeat(64).map(reference.random_flips)
    }
    assert views == {(0, 1, 2, 3), (1, 0, 3, 2), (2, 3, 0, 1), (3, 2, 1, 0)}  # identity, both mirrors, a half turn
