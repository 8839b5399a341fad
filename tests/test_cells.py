"""Single cells: masks in the HPA 2021 encoding, the competition's metric,
and the classical segmentation on synthetic truth and on real HPA fields."""

import base64
import zlib

import cv2
import numpy as np
import pandas as pd
import pytest
from pycocotools import mask as coco_mask

from bench import hpa_like
from data_prep import synthetic
from protein_location.cells import masks, overlays, scoring, segmentation
from protein_location.core import raw_images
from protein_location.core.errors import CellsError
from tests.helpers import ROOT, last_error_line, run_cli

SAMPLES = ROOT / "tests" / "data" / "hpa"  # the real files of ../shared/hpa-samples, copied with their attribution


def disk(shape, center, radius):
    y, x = np.mgrid[: shape[0], : shape[1]]
    return (y - center[0]) ** 2 + (x - center[1]) ** 2 <= radius**2


# --- Masks --------------------------------------------------------------------------------------------------


def test_a_mask_round_trips_and_is_what_pycocotools_encodes():
    mask = disk((37, 52), (20, 30), 9) | disk((37, 52), (5, 5), 3)  # not square, two parts
    text = masks.encode_mask(mask)
    assert text.isascii() and " " not in text
    np.testing.assert_array_equal(masks.decode_mask(text, 37, 52), mask)
    # The competition's decoding, written out: base64 -> zlib -> COCO compressed RLE.
    rle = {"size": [37, 52], "counts": zlib.decompress(base64.b64decode(text))}
    np.testing.assert_array_equal(coco_mask.decode(rle).astype(bool), mask)
    assert rle["counts"] == coco_mask.encode(np.asfortranarray(mask[:, :, None].astype(np.uint8)))[0]["counts"]


def test_a_mask_that_is_not_the_encoding_is_a_one_line_error():
    with pytest.raises(CellsError) as error:
        masks.decode_mask("not base64!", 4, 4)
    assert str(error.value).startswith("a mask is not base64 of zlib-compressed COCO RLE (")
    with pytest.raises(CellsError) as error:
        masks.decode_mask(base64.b64encode(b"no zlib").decode(), 4, 4)
    assert str(error.value).startswith("a mask is not base64 of zlib-compressed COCO RLE (")


# --- The metric ---------------------------------------------------------------------------------------------


def truth_of(label_image, classes):
    return masks.cell_rles(label_image), classes


def test_average_precision_of_a_ranking_computed_by_hand():
    # Ranked: hit, miss, hit over 2 truth cells: precision 1 at recall 0.5, 2/3 at recall 1.
    assert scoring.average_precision([0.9, 0.8, 0.7], [True, False, True], 2) == pytest.approx(0.5 + 0.5 * 2 / 3)
    assert scoring.average_precision([], [], 3) == 0.0 and np.isnan(scoring.average_precision([0.5], [False], 0))


def test_a_perfect_submission_scores_1_and_a_shuffled_one_less():
    shape = (64, 64)
    field = np.zeros(shape, np.int32)
    for value, center in enumerate([(16, 16), (16, 48), (48, 16), (48, 48)], start=1):
        field[disk(shape, center, 12)] = value
    classes = {1: {0}, 2: {0, 3}, 3: {3}, 4: {5}}
    truth = {"a": truth_of(field, classes)}
    rles = masks.cell_rles(field)
    perfect = {"a": [(k, 0.9, rles[cell]) for cell, ks in classes.items() for k in ks]}
    mean, per_class = scoring.cell_map(perfect, truth, 6)
    assert mean == 1.0 and [np.isnan(ap) for ap in per_class] == [False, True, True, False, True, False]
    # Each cell's labels on its neighbour's mask, ranked above the right ones: every class loses.
    shifted = {"a": perfect["a"] + [(k, 0.95, rles[cell % 4 + 1]) for cell, ks in classes.items() for k in ks]}
    mean, per_class = scoring.cell_map(shifted, truth, 6)
    assert mean < 1.0 and all(ap < 1.0 for ap in per_class if not np.isnan(ap))
    # A detection twice: the second is a duplicate (false positive) once ranked above the rest.
    twice = {"a": [(5, 0.9, rles[4]), (5, 0.8, rles[4]), (5, 0.7, rles[1])]}
    assert scoring.cell_map(twice, truth, 6)[1][5] == 1.0
    truth_two = {"a": truth_of(field, {**classes, 1: {5}})}
    assert scoring.cell_map(twice, truth_two, 6)[1][5] == pytest.approx(0.5 + 0.5 * 2 / 3)


def test_a_detection_below_iou_0_6_is_a_false_positive():
    shape = (40, 40)
    field = disk(shape, (20, 20), 10).astype(np.int32)
    truth = {"a": truth_of(field, {1: {2}})}
    for shift, expected in ((3, 1.0), (9, 0.0)):  # IoU about 0.68 and about 0.27
        moved = masks.cell_rles(np.roll(field, shift, axis=1))[1]
        assert scoring.cell_map({"a": [(2, 0.5, moved)]}, truth, 3)[0] == expected


# --- Segmentation -------------------------------------------------------------------------------------------


def found_share(truth, cells, min_share=0.0):
    """Share of the truth cells (at least min_share of the median cell area) matched at IoU >= 0.6, and their count."""
    found, counted = scoring.cells_found(list(masks.cell_rles(cells).values()), masks.cell_rles(truth), min_share)
    return found / counted, counted


@pytest.mark.parametrize("size", [128, 512])
def test_segmentation_finds_the_synthetic_cells(size):
    shares = []
    for index in range(8):
        rng = np.random.default_rng([31, size, index])
        image, drawn = synthetic.render_cells(rng, [int(rng.integers(28))], size)
        cells, nuclei = segmentation.segment_cells(image)
        assert cells.shape == image.shape[:2] and cells.dtype == np.int32
        assert set(np.unique(nuclei)) <= set(np.unique(cells)) and np.all(cells[nuclei > 0] == nuclei[nuclei > 0])
        shares.append(found_share(drawn["cells"], cells)[0])
    assert np.mean(shares) >= 0.9


def test_segmentation_splits_a_confluent_sheet_of_touching_cells():
    """bench.hpa_like draws cells that touch on every side, at another scale than data_prep's."""
    found, total = [], 0
    for index in range(6):
        image, truth, _ = hpa_like.render_field(np.random.default_rng([5, index]), [0], 256)
        share, count = found_share(truth, segmentation.segment_cells(image)[0], min_share=0.5)
        found.append(share * count)
        total += count
    assert total >= 30 and sum(found) / total >= 0.8


def test_segmentation_of_real_fields_gives_one_nucleus_per_cell(tmp_path):
    """A 1728 px HPAv18 field and a 512 px Kaggle 2018 one: cell counts around what the eye sees
    (docs/single-cells.md)."""
    for folder, image_id, least, most in (
        ("hpav18", "11088_89_B5_1", 7, 15),
        ("kaggle2018", "027a702a-bbca-11e8-b2bc-ac1f6b6435d0", 8, 25),
    ):
        image = raw_images.read_image(str(SAMPLES / folder / "train"), image_id)
        cells, nuclei = segmentation.segment_cells(image)
        assert least <= cells.max() <= most, (folder, cells.max())
        assert sorted(np.unique(nuclei)) == sorted(np.unique(cells))  # every cell has its nucleus
        blue = image[..., 2].astype(float)
        assert blue[nuclei > 0].mean() > 3 * blue[cells == 0].mean()
        overlays.write(str(tmp_path / f"{folder}.png"), image, cells, {1: ["Nucleoplasm 0.91"]}, title=image_id)
        assert (tmp_path / f"{folder}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_segmentation_names_an_image_that_is_not_rgby():
    with pytest.raises(CellsError) as error:
        segmentation.segment_cells(np.zeros((8, 8, 3), np.uint8))
    assert str(error.value) == "segmentation takes an RGBY image [H, W, 4], not shape [8, 8, 3]"


def test_an_empty_field_has_no_cells():
    cells, nuclei = segmentation.segment_cells(np.zeros((64, 64, 4), np.uint8))
    assert cells.max() == 0 and nuclei.max() == 0


# --- The commands: synth --cells, cells, score --cells -------------------------------------------------------


def write_submission(path, rows):
    """rows: [(Id, width, height, [(class, confidence, boolean mask)])] -> an HPA 2021 submission CSV."""
    lines = ["ID,ImageWidth,ImageHeight,PredictionString"]
    for image_id, width, height, entries in rows:
        text = " ".join(f"{k} {confidence} {masks.encode_mask(mask)}" for k, confidence, mask in entries)
        lines.append(f"{image_id},{width},{height},{text}")
    path.write_text("\n".join(lines) + "\n")


def test_synth_cells_writes_per_cell_truth_that_a_perfect_submission_scores_1_on(tmp_path):
    run_cli(
        "-m",
        "data_prep",
        "synth",
        "--out",
        tmp_path / "plain",
        "--train",
        3,
        "--test",
        6,
        "--size",
        64,
        "--seed",
        4,
        "--workers",
        1,
    )
    run_cli(
        "-m",
        "data_prep",
        "synth",
        "--out",
        tmp_path / "cells",
        "--train",
        3,
        "--test",
        6,
        "--size",
        64,
        "--seed",
        4,
        "--workers",
        1,
        "--cells",
    )
    plain, cells = tmp_path / "plain", tmp_path / "cells"
    # The training images and every label file of the plain layout are as without --cells.
    for path in sorted((plain / "train").iterdir()) + [plain / "train.csv", plain / "test_labels.csv"]:
        assert (cells / path.relative_to(plain)).read_bytes() == path.read_bytes(), path.name
    table = pd.read_csv(cells / "test_cells.csv", dtype=str)
    assert list(table.columns) == ["Id", "Cell", "Target"]
    image_labels = dict(pd.read_csv(cells / "test_labels.csv", dtype=str).values)
    rows, shuffled, all_cells = [], [], 0
    for image_id, group in table.groupby("Id"):
        label_image = cv2.imread(str(cells / "test_cells" / f"{image_id}.png"), cv2.IMREAD_UNCHANGED)
        all_cells += len(np.unique(label_image)) - 1
        assert label_image.dtype == np.uint16 and label_image.shape == (64, 64)
        per_cell = {int(cell): [int(k) for k in target.split()] for cell, target in zip(group.Cell, group.Target)}
        # Every cell's labels are some of its image's; together they are all of them.
        shown = set().union(*map(set, per_cell.values()))
        assert shown == {int(k) for k in image_labels[image_id].split()}
        rows.append((image_id, 64, 64, [(k, 0.9, label_image == cell) for cell, ks in per_cell.items() for k in ks]))
        shuffled.append(
            (
                image_id,
                64,
                64,
                [(k, 0.9, np.roll(label_image == cell, 20, axis=1)) for cell, ks in per_cell.items() for k in ks],
            )
        )
    write_submission(tmp_path / "perfect.csv", rows)
    write_submission(tmp_path / "shifted.csv", shuffled)
    scored = run_cli(
        "-m",
        "protein_location",
        "score",
        "--cells",
        "--submission",
        tmp_path / "perfect.csv",
        "--truth",
        cells / "test_cells.csv",
        "--masks",
        cells / "test_cells",
    )
    mean_line, found_line = scored.stdout.strip().splitlines()[-2:]
    assert mean_line.startswith("score: mAP 1.0000 at IoU >= 0.6 over the ")
    # Every cell of the label images counts; the submission has those that show a label.
    assert found_line.startswith(
        f"score: truth cells found at IoU >= 0.6 by a mask of the submission: {len(table)} "
        f"of {all_cells} ({len(table) / all_cells:.1%}); of the whole ones (at least half "
        "the median cell's area): "
    )
    scored = run_cli(
        "-m",
        "protein_location",
        "score",
        "--cells",
        "--submission",
        tmp_path / "shifted.csv",
        "--truth",
        cells / "test_cells.csv",
        "--masks",
        cells / "test_cells",
    )
    assert float(scored.stdout.split("mAP ")[1].split()[0]) < 0.5
    found = int(scored.stdout.split("by a mask of the submission: ")[1].split()[0])
    assert found < len(table)


def two_cell_field(side, green_in_first=True):
    """uint8 RGBY: two round cells (microtubules and ER around a nucleus), the protein (green) in the first."""
    image = np.zeros((side, side, 4), np.uint8)
    for index, center in enumerate([(side * 0.3, side * 0.3), (side * 0.7, side * 0.7)]):
        cell, nucleus = disk(image.shape[:2], center, side * 0.18), disk(image.shape[:2], center, side * 0.08)
        image[cell, 0], image[cell, 3], image[nucleus, 2] = 120, 90, 200
        if index == 0 and green_in_first:
            image[cell & ~nucleus, 1] = 255
    return image


@pytest.fixture(scope="module")
def green_export(tmp_path_factory):
    from protein_location import export
    from protein_location.core import labels as labels_lib
    from tests.test_explain import green_detector_model

    base = tmp_path_factory.mktemp("cells") / "export"
    return export.export_saved_model(
        green_detector_model(), np.full(labels_lib.NUM_CLASSES, 0.5), str(base), labels_lib.CLASS_NAMES
    )


def test_cells_writes_the_2021_submission_and_the_cell_showing_the_protein_ranks_first(green_export, tmp_path):
    from tests.test_explain import MITOCHONDRIA, write_channels

    write_channels(tmp_path / "images", "field", two_cell_field(128))  # twice the model's side: resized inside
    for how in ("blend", "cam", "image"):
        out, table = tmp_path / f"{how}.csv", tmp_path / f"{how}_table.csv"
        result = run_cli(
            "-m",
            "protein_location",
            "cells",
            "--model",
            green_export,
            "--images",
            tmp_path / "images",
            "--out",
            out,
            "--table",
            table,
            "--cell-scores",
            how,
            "--overlays",
            tmp_path / "overlays",
        )
        assert result.stdout.strip().splitlines()[-1] == f"cells: 2 cells in 1 images -> {out} (per cell: {table})"
        submission = pd.read_csv(out, dtype=str)
        assert list(submission.columns) == ["ID", "ImageWidth", "ImageHeight", "PredictionString"]
        assert submission.values[0, :3].tolist() == ["field", "128", "128"]
        fields = submission.PredictionString[0].split()
        assert len(fields) == 3 * 2 * 28  # every class of every cell at the default --min-confidence 0
        cells = pd.read_csv(table)
        assert cells.Cell.tolist() == [1, 2] and cells.XMin[0] < cells.XMin[1]
        masks_by_cell = {}
        for k, confidence, text in zip(fields[0::3], fields[1::3], fields[2::3]):
            mask = masks.decode_mask(text, 128, 128)
            cell = next(
                c
                for c in (1, 2)
                if (cells.XMin[c - 1], cells.YMin[c - 1]) == (np.nonzero(mask)[1].min(), np.nonzero(mask)[0].min())
            )
            masks_by_cell[cell] = mask
            assert float(confidence) == pytest.approx(cells.iloc[cell - 1, 7 + int(k)], abs=1e-6)
        assert [masks_by_cell[c].sum() for c in (1, 2)] == cells.Area.tolist()
        first, second = cells["Mitochondria"].tolist()
        # The image's probability: sigmoid(40 x the image's mean green - 4), about 0.3 for this field.
        if how == "cam":
            assert first > 0.2 and second < 0.05 * first  # only the first cell shows the protein
        elif how == "blend":  # the mean of the two others
            assert first > 0.2 and second == pytest.approx(first / 2, rel=0.05)
        else:
            assert first == second > 0.2
        assert cells.columns[7 + MITOCHONDRIA] == "Mitochondria"
    assert (tmp_path / "overlays" / "field.png").read_bytes()[:4] == b"\x89PNG"


def test_cells_takes_label_images_from_another_segmenter_and_names_a_wrong_one(green_export, tmp_path):
    from tests.test_explain import write_channels

    write_channels(tmp_path / "images", "field", two_cell_field(64))
    (tmp_path / "masks").mkdir()
    label_image = np.zeros((64, 64), np.uint16)
    label_image[:32, :32], label_image[32:, 32:] = 7, 300  # values that skip, as a segmenter's may
    cv2.imwrite(str(tmp_path / "masks" / "field.png"), label_image)
    run_cli(
        "-m",
        "protein_location",
        "cells",
        "--model",
        green_export,
        "--images",
        tmp_path / "images",
        "--out",
        tmp_path / "cells.csv",
        "--masks",
        tmp_path / "masks",
    )
    cells = pd.read_csv(tmp_path / "cells_per_cell.csv")
    assert cells[["XMin", "YMin", "XMax", "YMax", "Area"]].values.tolist() == [
        [0, 0, 32, 32, 1024],
        [32, 32, 64, 64, 1024],
    ]
    cv2.imwrite(str(tmp_path / "masks" / "field.png"), label_image[:48])
    result = run_cli(
        "-m",
        "protein_location",
        "cells",
        "--model",
        green_export,
        "--images",
        tmp_path / "images",
        "--out",
        tmp_path / "cells.csv",
        "--masks",
        tmp_path / "masks",
        check=False,
    )
    assert last_error_line(result) == (
        f"error: Id field: {tmp_path / 'masks'}/field.png is 64x48 pixels but the image is 64x64"
    )
    (tmp_path / "masks" / "field.png").unlink()
    result = run_cli(
        "-m",
        "protein_location",
        "cells",
        "--model",
        green_export,
        "--images",
        tmp_path / "images",
        "--out",
        tmp_path / "cells.csv",
        "--masks",
        tmp_path / "masks",
        check=False,
    )
    assert last_error_line(result) == f"error: Id field: no mask file {tmp_path / 'masks'}/field.png in --masks"


def test_score_cells_needs_the_truth_label_images(tmp_path):
    result = run_cli(
        "-m",
        "protein_location",
        "score",
        "--cells",
        "--submission",
        tmp_path / "s.csv",
        "--truth",
        tmp_path / "t.csv",
        check=False,
    )
    assert last_error_line(result) == "error: score --cells needs --masks DIR, the truth's label images <Id>.png"


def write_two_cell_truth(folder, truth_csv):
    """Per-cell truth of one 48 px field `f`: two round cells (1 and 2) in masks/f.png, and truth.csv."""
    shape = (48, 48)
    field = np.zeros(shape, np.uint16)
    field[disk(shape, (12, 12), 9)], field[disk(shape, (34, 34), 9)] = 1, 2
    (folder / "masks").mkdir()
    cv2.imwrite(str(folder / "masks" / "f.png"), field)
    (folder / "truth.csv").write_text(truth_csv)
    return field


def test_the_2021_label_set_is_read_from_the_truth_header_with_negative_as_class_18(tmp_path):
    field = write_two_cell_truth(tmp_path, "ID,Cell,Label\nf,1,0|16\nf,2,18\n")
    write_submission(
        tmp_path / "perfect.csv", [("f", 48, 48, [(0, 0.8, field == 1), (16, 0.7, field == 1), (18, 0.9, field == 2)])]
    )
    score = scoring.score_files(str(tmp_path / "perfect.csv"), str(tmp_path / "truth.csv"), str(tmp_path / "masks"))
    label_set = score.label_set
    assert (label_set.name, label_set.num_classes, label_set.class_names[18]) == ("hpa2021", 19, "Negative")
    assert score.mean_ap == 1.0 and [k for k, ap in enumerate(score.per_class) if ap == ap] == [0, 16, 18]
    assert (score.found, score.truth_cells, score.found_whole, score.whole_cells) == (2, 2, 2, 2)
    write_submission(tmp_path / "outside.csv", [("f", 48, 48, [(19, 0.8, field == 1)])])
    with pytest.raises(CellsError) as error:
        scoring.score_files(str(tmp_path / "outside.csv"), str(tmp_path / "truth.csv"), str(tmp_path / "masks"))
    assert str(error.value) == f"{tmp_path / 'outside.csv'} line 2: class 19 is outside 0..18"


def test_score_cells_label_set_overrides_the_classes_the_truth_header_implies(tmp_path):
    field = write_two_cell_truth(tmp_path, "Id,Cell,Target\nf,1,0\nf,2,18\n")
    write_submission(tmp_path / "perfect.csv", [("f", 48, 48, [(0, 0.8, field == 1), (18, 0.9, field == 2)])])
    score = [
        "-m",
        "protein_location",
        "score",
        "--cells",
        "--submission",
        tmp_path / "perfect.csv",
        "--truth",
        tmp_path / "truth.csv",
        "--masks",
        tmp_path / "masks",
    ]
    assert run_cli(*score).stdout.splitlines()[-2].endswith("truth.csv, hpa2018)")
    assert run_cli(*score, "--label-set", "hpa2021").stdout.splitlines()[-2].endswith("truth.csv, hpa2021)")

    (tmp_path / "truth.csv").write_text("Id,Cell,Target\nf,1,0\nf,2,20\n")
    result = run_cli(*score, "--label-set", "hpa2021", check=False)
    assert last_error_line(result) == f"error: {tmp_path / 'truth.csv'} line 3: label 20 is outside 0-18 (hpa2021)"


def test_min_confidence_leaves_out_the_classes_below_it_and_the_table_keeps_them(green_export, tmp_path):
    from tests.test_explain import write_channels

    write_channels(tmp_path / "images", "field", two_cell_field(64))
    run_cli(
        "-m",
        "protein_location",
        "cells",
        "--model",
        green_export,
        "--images",
        tmp_path / "images",
        "--out",
        tmp_path / "cells.csv",
        "--min-confidence",
        0.1,
    )
    fields = pd.read_csv(tmp_path / "cells.csv", dtype=str, keep_default_na=False).PredictionString[0].split()
    table = pd.read_csv(tmp_path / "cells_per_cell.csv")
    confidences = table.iloc[:, 7:].to_numpy()
    assert confidences.shape == (2, 28) and (confidences < 0.1).any()  # the table has every class
    kept = sorted((int(k), round(float(c), 6)) for k, c in zip(fields[0::3], fields[1::3]))
    expected = sorted((k, round(float(c), 6)) for row in confidences for k, c in enumerate(row) if c >= 0.1)
    assert kept == expected and 0 < len(kept) < 2 * 28


def test_each_cell_is_cropped_as_the_square_around_it_with_its_neighbours_black():
    from protein_location.cells import crops

    image = np.zeros((40, 60, 4), np.uint8)
    image[..., 0] = np.arange(60, dtype=np.uint8)[np.newaxis]  # red ramps left to right
    cells = np.zeros((40, 60), np.int32)
    cells[10:20, 5:25] = 1  # 20 wide, 10 high: a 20 px square centred on it
    cells[0:8, 50:60] = 2  # at the frame's corner: its square reaches past it
    cells[12:18, 25:40] = 3  # touches cell 1, whose square covers part of it
    found = crops.cell_crops(image, cells, size=20)
    assert found.shape == (3, 20, 20, 4) and found.dtype == np.uint8
    assert crops.crop_boxes(cells) == [(5, 5, 20), (-1, 50, 10), (7, 25, 15)]
    first = found[0, ..., 0]
    assert (first[:5] == 0).all() and (first[15:] == 0).all()  # above and below cell 1: outside it, black
    assert first[5:15].tolist() == [list(range(5, 25))] * 10  # cell 1's own pixels, cell 3's beside it black
    corner = crops.cell_crops(image, cells, size=10)[1, ..., 0]  # row 0 lies above the frame: black
    assert (corner[0] == 0).all() and (corner[1:9] == np.arange(50, 60)).all() and (corner[9] == 0).all()
    with pytest.raises(ValueError, match="^the image is 60x40 pixels but its label image is 60x39$"):
        crops.cell_crops(image, cells[:39])


def test_data_prep_crops_writes_every_cell_labelled_with_its_field_and_convert_keeps_a_fields_cells_together(tmp_path):
    from tests.test_explain import write_channels

    write_channels(tmp_path / "fields", "fieldA", two_cell_field(64))
    write_channels(tmp_path / "fields", "10580_1610_C1_1", two_cell_field(64, green_in_first=False))
    write_channels(tmp_path / "fields", "10580_1610_C1_2", two_cell_field(64))
    (tmp_path / "train.csv").write_text("Id,Target\nfieldA,23\n10580_1610_C1_1,0 2\n10580_1610_C1_2,5\n")
    result = run_cli(
        "-m",
        "data_prep",
        "crops",
        "--images",
        tmp_path / "fields",
        "--csv",
        tmp_path / "train.csv",
        "--out",
        tmp_path / "crops",
        "--size",
        32,
    )
    assert result.stdout.splitlines()[-1].startswith(f"crops: 6 cells of 3 fields (32x32) in {tmp_path / 'crops'}")
    table = pd.read_csv(tmp_path / "crops" / "train.csv", dtype=str)
    assert table.values.tolist() == [
        ["fieldA_cell1", "23", "fieldA"],
        ["fieldA_cell2", "23", "fieldA"],
        ["10580_1610_C1_1_cell1", "0 2", "10580_1610_C1"],
        ["10580_1610_C1_1_cell2", "0 2", "10580_1610_C1"],
        ["10580_1610_C1_2_cell1", "5", "10580_1610_C1"],
        ["10580_1610_C1_2_cell2", "5", "10580_1610_C1"],
    ]
    first = raw_images.read_image(str(tmp_path / "crops" / "train"), "fieldA_cell1")
    second = raw_images.read_image(str(tmp_path / "crops" / "train"), "fieldA_cell2")
    assert first.shape == (32, 32, 4) and first[..., 1].max() == 255 and second[..., 1].max() == 0  # the protein
    assert first[0, 0].tolist() == [0, 0, 0, 0] and first[16, 16, 2] == 200  # a round cell, its nucleus central
    result = run_cli(
        "-m",
        "data_prep",
        "convert",
        "--csv",
        tmp_path / "crops" / "train.csv",
        "--images",
        tmp_path / "crops" / "train",
        "--out",
        tmp_path / "records",
        "--group-column",
        "Group",
        "--val-fraction",
        0.4,
    )
    assert "6 images in 2 groups (column Group)" in result.stdout


def test_crops_take_the_cells_of_another_segmenters_label_images(tmp_path):
    from tests.test_explain import write_channels

    field = two_cell_field(64)
    write_channels(tmp_path / "fields", "field", field)
    (tmp_path / "train.csv").write_text("ID,Label\nfield,3|18\n")
    (tmp_path / "masks").mkdir()
    label_image = np.zeros((64, 64), np.uint16)
    label_image[:32, :32], label_image[40:, 40:] = 7, 300
    cv2.imwrite(str(tmp_path / "masks" / "field.png"), label_image)
    run_cli(
        "-m",
        "data_prep",
        "crops",
        "--images",
        tmp_path / "fields",
        "--csv",
        tmp_path / "train.csv",
        "--out",
        tmp_path / "crops",
        "--masks",
        tmp_path / "masks",
        "--size",
        32,
    )
    assert (
        tmp_path / "crops" / "train.csv"
    ).read_text() == "ID,Label,Group\nfield_cell1,3|18,field\nfield_cell2,3|18,field\n"
    assert (raw_images.read_image(str(tmp_path / "crops" / "train"), "field_cell1") == field[:32, :32]).all()


def test_cells_with_a_crop_level_model_scores_each_cell_by_its_own_crop(green_export, tmp_path):
    from protein_location import export
    from protein_location.cells import crops, segmentation
    from protein_location.core import labels as labels_lib
    from protein_location.inference import serving
    from tests.test_explain import MITOCHONDRIA, write_channels

    field = two_cell_field(64)
    write_channels(tmp_path / "images", "field", field)
    # The green detector as the crop-level model too: a cell's crop shows the protein or not.
    run_cli(
        "-m",
        "protein_location",
        "cells",
        "--model",
        green_export,
        "--images",
        tmp_path / "images",
        "--out",
        tmp_path / "image.csv",
        "--cell-scores",
        "image",
    )
    run_cli(
        "-m",
        "protein_location",
        "cells",
        "--model",
        green_export,
        "--crop-model",
        green_export,
        "--images",
        tmp_path / "images",
        "--out",
        tmp_path / "crop.csv",
    )
    image_level = pd.read_csv(tmp_path / "image_per_cell.csv").iloc[:, 7:].to_numpy()
    with_crops = pd.read_csv(tmp_path / "crop_per_cell.csv").iloc[:, 7:].to_numpy()
    crop_model = serving.load_serving_model(str(green_export))
    own = crop_model.serve(image=crops.cell_crops(field, segmentation.segment_cells(field)[0], crop_model.image_size))[
        "probabilities"
    ].numpy()
    np.testing.assert_allclose(with_crops, np.sqrt(image_level * own), atol=2e-6)
    first, second = with_crops[:, MITOCHONDRIA]
    assert first > 0.3 and second < 0.3 * first  # only the first cell shows the protein

    result = run_cli(
        "-m",
        "protein_location",
        "cells",
        "--model",
        green_export,
        "--images",
        tmp_path / "images",
        "--out",
        tmp_path / "crop.csv",
        "--cell-scores",
        "crop",
        check=False,
    )
    assert last_error_line(result) == "error: --cell-scores crop needs a crop-level model (--crop-model)"
    from tests.test_explain import green_detector_model

    other = export.export_saved_model(
        green_detector_model(), np.full(28, 0.5), str(tmp_path / "other"), list(reversed(labels_lib.CLASS_NAMES))
    )
    result = run_cli(
        "-m",
        "protein_location",
        "cells",
        "--model",
        green_export,
        "--crop-model",
        other,
        "--images",
        tmp_path / "images",
        "--out",
        tmp_path / "crop.csv",
        check=False,
    )
    assert last_error_line(result) == (
        f"error: {other}: the crop-level model's classes (28: Rods & rings, ...) are "
        "not the image-level model's (28: Nucleoplasm, ...); train both on one "
        "label set"
    )
