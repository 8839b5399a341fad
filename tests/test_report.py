import numpy as np
import pytest

from protein_location.core import labels
from protein_location.core.errors import TrainError
from protein_location.evaluation import report, thresholds
from protein_location.evaluation.report_file import ReportFile


def test_paper_table_matches_hand_computed_values():
    y_true = np.array([[1, 0, 1], [0, 1, 0]])
    y_pred = np.array([[1, 1, 0], [0, 1, 0]])
    table = report.paper_table(y_true, y_pred)
    assert table["binary_accuracy"] == 4 / 6
    # class 0: F1 1; class 1: P 0.5 R 1 F1 2/3; class 2: F1 0
    assert abs(table["macro_f1"] - (1 + 2 / 3 + 0) / 3) < 1e-12
    assert abs(table["macro_precision"] - (1 + 0.5 + 0) / 3) < 1e-12
    assert abs(table["macro_recall"] - (1 + 1 + 0) / 3) < 1e-12
    # sample IoU: |{0}| / |{0,1,2}| = 1/3, then 1
    assert abs(table["sample_iou"] - (1 / 3 + 1) / 2) < 1e-12


def test_report_and_picture(tmp_path):
    rng = np.random.default_rng(0)
    y_true = (rng.random((60, 28)) < 0.2).astype(int)
    y_true[:, 27] = 0
    y_prob = np.clip(y_true * 0.6 + rng.random((60, 28)) * 0.5, 0, 1)
    tuned = thresholds.Tuned(np.full(28, 0.55), y_true.sum(axis=0), [27])
    result = report.build_report({"arch": "seresnet18"}, y_true, y_prob, tuned, labels.CLASS_NAMES)
    assert result["arch"] == "seresnet18" and len(result["per_class"]) == 28
    assert result["classes_without_val_examples"] == ["Rods & rings"]
    assert result["classes_with_rate_matched_thresholds"] == ["Rods & rings"]
    assert 0.5 < result["val_macro_auc"] <= 1.0
    assert set(result["paper_table_tuned"]) == {
        "binary_accuracy",
        "macro_f1",
        "macro_precision",
        "macro_recall",
        "sample_iou",
    }
    history = [
        {"epoch": e, "loss": 1 / (e + 1), "val_loss": 1.2 / (e + 1), "macro_f1": 0.1 * e, "val_macro_f1": 0.08 * e}
        for e in range(4)
    ]
    report.plot_report(history, result, str(tmp_path / "report.png"))
    data = (tmp_path / "report.png").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000


def test_supported_macro_f1_leaves_out_classes_with_few_val_examples():
    y_true = np.zeros((10, 28), int)
    y_true[:6, 0] = 1  # class 0: 6 val examples, predicted perfectly
    y_true[:2, 1] = 1  # class 1: 2 val examples, always missed
    y_prob = y_true[:, :].astype(float) * np.r_[1.0, 0.0, np.ones(26)]
    result = report.build_report(
        {}, y_true, y_prob, thresholds.Tuned(np.full(28, 0.5), y_true.sum(axis=0), []), labels.CLASS_NAMES
    )
    assert result["classes_with_min5_val_examples"] == 1
    assert result["val_macro_f1_tuned_min5"] == 1.0
    assert result["val_macro_f1_tuned"] == 1 / 28


def test_report_file_round_trip_and_one_line_errors(tmp_path):
    content = {
        "arch": "seresnet18",
        "val_examples": 12,
        "val_macro_auc": 0.75,
        "val_macro_f1_tuned": 0.5,
        "val_macro_f1_at_0.5": 0.25,
        "train_seconds": 3.5,
    }
    ReportFile(content).write(str(tmp_path))
    read = ReportFile.read(str(tmp_path))
    assert read.content == content and list(read.content) == list(content)
    assert read.fold_summary(2, best_epoch=4) == {
        "fold": 2,
        "val_examples": 12,
        "val_macro_auc": 0.75,
        "val_macro_f1_tuned": 0.5,
        "val_macro_f1_at_0.5": 0.25,
        "best_epoch": 4,
        "train_seconds": 3.5,
    }
    assert read.run_settings()["arch"] == "seresnet18" and read.run_settings()["seed"] is None

    path = tmp_path / "report.json"
    for text, problem in (
        ("{", "not valid JSON (Expecting property name enclosed in double quotes: line 1 column 2 (char 1))"),
        ("[1]", "not a run's report (no val_macro_f1_tuned)"),
    ):
        path.write_text(text)
        with pytest.raises(TrainError) as error:
            ReportFile.read(str(tmp_path))
        assert str(error.value) == f"{path}: {problem}"
    path.unlink()
    with pytest.raises(TrainError) as error:
        ReportFile.read(str(tmp_path))
    assert str(error.value) == f"{path}: missing; the run was not evaluated (train it again with the same command)"
