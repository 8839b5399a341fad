"""Label sets and groups as they flow through the pipeline: the 2021 release's
19 classes from its CSV to the SavedModel, submissions and score; HPAv18
wells kept whole by the split."""

import csv
import json

import numpy as np
import pytest
import tensorflow as tf

from data_prep import convert
from protein_location.core import labels as labels_lib
from tests.helpers import last_error_line, run_cli, write_image_set

pytestmark = pytest.mark.slow  # trains or exports


def _as_2021_csv(csv_2018, csv_2021):
    """The synthetic labels rewritten in the 2021 layout (`ID,Label`, `|`), indices folded into the 19 classes."""
    rows = list(csv.DictReader(open(csv_2018)))
    lines = ["ID,Label"] + [
        f"{r['Id']},{'|'.join(sorted({str(int(t) % 19) for t in r['Target'].split()}))}" for r in rows
    ]
    csv_2021.write_text("\n".join(lines) + "\n")
    return csv_2021


@pytest.fixture(scope="module")
def run_2021(synthetic_dir, tmp_path_factory):
    work = tmp_path_factory.mktemp("hpa2021")
    labels_csv = _as_2021_csv(synthetic_dir / "train.csv", work / "train.csv")
    data, run, export = work / "data", work / "run", work / "export"
    converted = run_cli(
        "-m",
        "data_prep",
        "convert",
        "--csv",
        labels_csv,
        "--images",
        synthetic_dir / "train",
        "--out",
        data,
        "--val-fraction",
        0.25,
        "--shards",
        2,
    )
    run_cli("-m", "data_prep", "verify", data)  # labels checked against the 19 classes
    run_cli(
        "train_keras.py",
        "--data",
        data,
        "--model-dir",
        run,
        "--epochs",
        1,
        "--batch-size",
        8,
        "--width",
        0.125,
        "--export",
        export,
    )
    return {"work": work, "csv": labels_csv, "data": data, "run": run, "export": export, "converted": converted}


def test_2021_classes_flow_from_the_csv_to_the_savedmodel(run_2021):
    names = list(labels_lib.HPA2021_CLASS_NAMES)
    assert "(hpa2021, 19 classes)" in run_2021["converted"].stdout
    manifest = json.loads((run_2021["data"] / "dataset.json").read_text())
    assert manifest["label_set"] == "hpa2021" and manifest["class_names"] == names
    thresholds = json.loads((run_2021["run"] / "thresholds.json").read_text())
    assert thresholds["class_names"] == names and len(thresholds["thresholds"]) == 19
    report = json.loads((run_2021["run"] / "report.json").read_text())
    assert report["class_names"] == names and [c["name"] for c in report["per_class"]] == names
    loaded = tf.saved_model.load(str(run_2021["export"] / "1"))
    assert [n.decode() for n in loaded.class_names[0].numpy()] == names
    outputs = loaded.signatures["serving_default"](image=tf.zeros([2, 40, 40, 4], tf.uint8))
    assert outputs["probabilities"].shape == outputs["labels"].shape == (2, 19)


def test_2021_submission_and_score(run_2021, synthetic_dir):
    work = run_2021["work"]
    out, probabilities = work / "submission.csv", work / "probabilities.csv"
    run_cli(
        "-m",
        "protein_location",
        "predict",
        "--model",
        run_2021["export"],
        "--records",
        run_2021["data"],
        "--split",
        "val",
        "--out",
        out,
        "--probabilities",
        probabilities,
    )
    rows = list(csv.DictReader(out.open()))
    assert rows and all(int(i) < 19 for r in rows for i in r["Predicted"].split())
    assert next(csv.reader(probabilities.open())) == ["Id", *labels_lib.HPA2021_CLASS_NAMES]
    scored = run_cli("-m", "protein_location", "score", "--submission", out, "--truth", run_2021["csv"], check=False)
    # The truth covers train and val; the submission only val: scored against the Ids it has.
    assert last_error_line(scored).startswith(f"error: {out}: no prediction for ")
    truth = work / "val_truth.csv"
    wanted = {r["Id"] for r in rows}
    truth.write_text(
        "\n".join(
            line
            for line in run_2021["csv"].read_text().splitlines()
            if line.startswith("ID,") or line.split(",")[0] in wanted
        )
        + "\n"
    )
    scored = run_cli("-m", "protein_location", "score", "--submission", out, "--truth", truth)
    assert f"against {truth}, hpa2021)" in scored.stdout


def test_a_model_of_one_label_set_refuses_data_of_the_other(run_2021, converted_dir):
    result = run_cli(
        "-m",
        "protein_location",
        "predict",
        "--model",
        run_2021["export"],
        "--records",
        converted_dir,
        "--split",
        "val",
        "--out",
        run_2021["work"] / "x.csv",
        check=False,
    )
    assert result.returncode == 1
    assert last_error_line(result) == (
        f"error: {converted_dir}: the dataset's classes (hpa2018, 28) are not the model's "
        f"(hpa2021, 19, {run_2021['export']}); use a model trained on this label set"
    )


def test_score_refuses_labels_outside_the_label_set(tmp_path):
    (tmp_path / "truth.csv").write_text("ID,Label\na,1|18\n")
    (tmp_path / "sub.csv").write_text("Id,Predicted\na,19\n")
    result = run_cli(
        "-m",
        "protein_location",
        "score",
        "--submission",
        tmp_path / "sub.csv",
        "--truth",
        tmp_path / "truth.csv",
        check=False,
    )
    assert last_error_line(result) == f"error: {tmp_path / 'sub.csv'}: Id a: label 19 is outside 0-18 (hpa2021)"


def _wells_dataset(root, wells=14, seed=0):
    """HPAv18-style Ids, 1-4 fields per well, random labels; returns (csv path, {well: [Ids]})."""
    rng = np.random.default_rng(seed)
    rows, members = ["Id,Target,Plate"], {}
    for well in range(wells):
        for field in range(1, rng.integers(1, 5) + 1):
            image_id = f"{1000 + well}_{7 + well % 3}_B{well}_{field}"
            write_image_set(root / "train", image_id, size=8, seed=well * 10 + field)
            rows.append(
                f"{image_id},{' '.join(map(str, sorted(rng.choice(4, rng.integers(1, 3), replace=False))))},p{well % 5}"
            )
            members.setdefault(f"{1000 + well}_{7 + well % 3}_B{well}", []).append(image_id)
    (root / "train.csv").write_text("\n".join(rows) + "\n")
    return root / "train.csv", members


def _split_of_ids(manifest, out):
    """{Id: (split, fold)} read back from the shards."""
    where = {}
    for split, entry in manifest["splits"].items():
        for shard in entry["shards"]:
            for serialized in tf.data.TFRecordDataset(str(out / shard["file"])):
                example = tf.io.parse_single_example(
                    serialized, {"image/source_id": tf.io.FixedLenFeature([], tf.string)}
                )
                where[example["image/source_id"].numpy().decode()] = (split, shard.get("fold"))
    return where


@pytest.mark.parametrize("how", [{"val_fraction": 0.3}, {"folds": 3}])
def test_fields_of_one_well_never_straddle_a_split(tmp_path, how):
    csv_path, members = _wells_dataset(tmp_path)
    manifest = convert.convert(
        str(tmp_path / "train"), str(tmp_path / "out"), csv_path=str(csv_path), num_shards=1, workers=1, **how
    )
    where = _split_of_ids(manifest, tmp_path / "out")
    assert all(len({where[i] for i in ids}) == 1 for ids in members.values())
    assert len(set(where.values())) == (2 if "val_fraction" in how else 3)
    assert manifest["split"]["num_groups"] == len(members)


def test_group_column_takes_groups_from_the_csv(tmp_path):
    csv_path, _ = _wells_dataset(tmp_path)
    manifest = convert.convert(
        str(tmp_path / "train"),
        str(tmp_path / "out"),
        csv_path=str(csv_path),
        val_fraction=0.3,
        num_shards=1,
        workers=1,
        group_column="Plate",
    )
    where = _split_of_ids(manifest, tmp_path / "out")
    plates = {}
    for row in csv.DictReader(csv_path.open()):
        plates.setdefault(row["Plate"], set()).add(where[row["Id"]])
    assert all(len(sides) == 1 for sides in plates.values()) and manifest["split"]["num_groups"] == 5
    assert manifest["split"]["groups"] == "column Plate"


def test_cli_joins_sources_in_order_and_prints_the_split(tmp_path):
    csv_path, members = _wells_dataset(tmp_path / "a")
    other = tmp_path / "b"
    write_image_set(other / "train", "00aa-kaggle", size=8)
    (other / "train.csv").write_text("Id,Target\n00aa-kaggle,0\n")
    result = run_cli(
        "-m",
        "data_prep",
        "convert",
        "--csv",
        csv_path,
        "--images",
        tmp_path / "a" / "train",
        "--csv",
        other / "train.csv",
        "--images",
        other / "train",
        "--out",
        tmp_path / "out",
        "--val-fraction",
        0.3,
    )
    count = sum(map(len, members.values()))
    assert (
        f"split: {count + 1} images in {len(members) + 1} groups (HPAv18 well (Id without _<field>)); "
        "per-class val fractions within " in result.stdout
    )
    manifest = json.loads((tmp_path / "out" / "dataset.json").read_text())
    assert [s["num_examples"] for s in manifest["sources"]] == [count, 1]
    unpaired = run_cli(
        "-m",
        "data_prep",
        "convert",
        "--csv",
        csv_path,
        "--images",
        tmp_path / "a" / "train",
        "--images",
        other / "train",
        "--out",
        tmp_path / "out2",
        check=False,
    )
    assert last_error_line(unpaired) == "error: --csv and --images pair up in order: got 1 --csv and 2 --images"
