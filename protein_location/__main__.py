"""`python -m protein_location {predict,score,explain,export,cells}`: use a trained model."""

import argparse
import dataclasses
import sys

from protein_location.core import cli_flags, device_precision  # no TensorFlow at import
from protein_location.core.cli_flags import flag

IMAGES_HELP = "folder of <Id>_<red|green|blue|yellow>.<png|jpg|tif|tif.gz> files"
MODEL_HELP = "SavedModel folder (export base or version)"


# Each command's flags, one dataclass each (core.cli_flags: a field is a flag).
@dataclasses.dataclass(frozen=True, kw_only=True)
class PredictFlags:
    model: str = flag("--model", "SavedModel folder from train_keras.py --export", required=True)
    images: str | None = flag("--images", IMAGES_HELP, None, one_of="source")
    records: str | None = flag(
        "--records",
        "a dataset folder from `python -m data_prep convert` (dataset.json + shards)",
        None,
        one_of="source",
        metavar="DATA_DIR",
    )
    split: str = flag("--split", "with --records: the split to predict", "test")
    csv: str | None = flag(
        "--csv",
        "sample_submission.csv: predict its Ids in its order; without it every Id in --images, "
        "sorted, or every record of --split in the manifest's order",
        None,
    )
    out: str = flag("--out", "submission CSV to write (Id,Predicted)", required=True)
    probabilities: str | None = flag(
        "--probabilities",
        "also write a CSV of every class's probability per Id (columns: Id, the model's class names)",
        None,
    )
    batch_size: int = flag("--batch-size", "images per inference call", 64)
    precision: str = flag(
        "--precision",
        "float32, or bfloat16 through oneDNN's rewrite of the float32 SavedModel (faster on "
        "AMD EPYC with AVX512_BF16, slower on an Intel Xeon without AMX: docs/inference.md); auto: "
        "bfloat16 where it pays (device_precision.bfloat16_pays), else float32",
        "auto",
        choices=device_precision.INFERENCE_PRECISIONS,
    )
    runner: str = flag(
        "--runner",
        "local: this process; beam: Apache Beam's RunInference over the images or shards "
        "(pip install 'protein-location[beam]'), the same outputs",
        "local",
        choices=("local", "beam"),
    )
    beam_options: str | None = flag("--beam-options", cli_flags.BEAM_OPTIONS_HELP, None)
    tta: int | None = flag(
        "--tta",
        "views averaged per image, each with thresholds tuned for it; default: the "
        "SavedModel's own (serving_default); 1: serving_single_view, the fast path; 8: the 8 "
        "flips/rotations (a SavedModel exported with --tta 8)",
        None,
        type=int,
        choices=[1, 8],
    )


@dataclasses.dataclass(frozen=True, kw_only=True)
class ScoreFlags:
    submission: str = flag("--submission", "submission CSV (Id,Predicted)", required=True)
    truth: str = flag(
        "--truth",
        "labels CSV, Id,Target (hpa2018) or ID,Label (hpa2021), e.g. the synthetic test_labels.csv",
        required=True,
    )
    label_set: str | None = flag(
        "--label-set",
        "the classes of the labels (with --cells too); default: detected from the --truth header",
        None,
        choices=["hpa2018", "hpa2021"],
    )
    cells: bool = flag(
        "--cells",
        "score a `cells` submission (ID,ImageWidth,ImageHeight,PredictionString): mAP at IoU >= "
        "0.6, the HPA 2021 metric, against per-cell truth: --truth Id,Cell,Target (or "
        "ID,Cell,Label) and --masks",
        False,
    )
    masks: str | None = flag(
        "--masks", "with --cells: folder of the truth's label images <Id>.png (16-bit, 0: background)", None
    )


@dataclasses.dataclass(frozen=True, kw_only=True)
class CellsFlags:
    model: str = flag("--model", MODEL_HELP, required=True)
    images: str = flag("--images", IMAGES_HELP + ", at full size", required=True)
    csv: str | None = flag(
        "--csv", "sample_submission.csv: its Ids in its order; default: every Id in --images, sorted", None
    )
    out: str = flag("--out", "submission CSV to write (ID,ImageWidth,ImageHeight,PredictionString)", required=True)
    table: str | None = flag(
        "--table",
        "per-cell table to write (ID, Cell, bounding box, area, every class's confidence); "
        "default: beside OUT, cells.csv -> cells_per_cell.csv",
        None,
    )
    masks: str | None = flag(
        "--masks",
        "folder of label images <Id>.png from another segmenter (e.g. HPA-Cell-Segmentation; "
        "16-bit, 0: background) instead of the built-in segmentation",
        None,
    )
    overlays: str | None = flag(
        "--overlays", "also write DIR/<Id>.png: the composite, each cell's outline and its top labels", None
    )
    crop_model: str | None = flag(
        "--crop-model",
        "SavedModel of a crop-level model (trained on `data_prep crops`, the same label set): "
        "each cell's own crop through it as well",
        None,
    )
    cell_scores: str | None = flag(
        "--cell-scores",
        "a cell's confidence: cam, the image's probability times the cell's mean class activation "
        "over the field's most active cell's; image, the image's probability for every cell; "
        "blend, the mean of the two; crop, the geometric mean of the image's probability and "
        "the cell's own from --crop-model. Default: crop with --crop-model, else blend "
        "(docs/single-cells.md)",
        None,
        choices=["blend", "cam", "image", "crop"],
    )
    min_confidence: float = flag(
        "--min-confidence",
        "leave out of the submission a cell's classes below this confidence (mAP counts every "
        "one, so 0 keeps them all)",
        0.0,
    )


@dataclasses.dataclass(frozen=True, kw_only=True)
class ExplainFlags:
    model: str = flag("--model", MODEL_HELP, required=True)
    images: str = flag("--images", IMAGES_HELP, required=True)
    ids: list | None = flag("--ids", "Ids to explain (default: every Id in --images)", None, nargs="+")
    out: str = flag("--out", "folder for <Id>.png and explain.json", required=True)
    max_locations: int = flag("--max-locations", "heat maps per image: the most probable predicted locations", 4)


@dataclasses.dataclass(frozen=True, kw_only=True)
class ExportFlags:
    model_dir: str = flag("--model-dir", "run folder of train_keras.py --model-dir", required=True)
    out: str = flag("--out", "export base: writes OUT/<next version>/", required=True)
    tta: int | None = flag(
        "--tta",
        "views serving_default averages (thresholds tuned for them); default: the run's",
        None,
        type=int,
        choices=[1, 8],
    )


# {command: (its flags, its one-line help)}, in `--help`'s order.
COMMANDS = {
    "predict": (PredictFlags, "predict locations of raw images or TFRecords -> submission CSV"),
    "score": (ScoreFlags, "macro F1 of a submission against known labels (Id,Target)"),
    "cells": (
        CellsFlags,
        "segment each field into cells and give every cell its locations -> the HPA "
        "2021 submission CSV (needs the cells extra)",
    ),
    "explain": (ExplainFlags, "Grad-CAM heat maps of the predicted locations -> one PNG per image"),
    "export": (
        ExportFlags,
        "export a training run (model.keras + thresholds.json) as a new SavedModel "
        "version, optionally with TFLite and ONNX files",
    ),
}


def _parser(prog=None):
    parser = argparse.ArgumentParser(prog=prog or "python -m protein_location", description=__doc__)
    return cli_flags.add_command_parsers(parser, COMMANDS, {"export": cli_flags.add_export_format_flags})


def _predict(args):
    import tensorflow as tf

    from protein_location.core import beam_jobs
    from protein_location.core.errors import PredictError

    beam_jobs.check_runner(args.runner, args.beam_options, PredictError)
    precision, reason = device_precision.inference_precision(
        args.precision, len(tf.config.list_physical_devices("GPU"))
    )
    print(f"precision: {precision} ({reason})")
    with device_precision.inference_precision_scope(precision):
        _predict_in_precision(args)


def _predict_in_precision(args):
    from protein_location.core import output_files
    from protein_location.core.raw_images import list_image_ids
    from protein_location.inference import predict, serving, submission

    # Checked before any inference: a missing output folder must not cost the run.
    output_files.check_output_file(args.out, "--out")
    if args.probabilities:
        output_files.check_output_file(args.probabilities, "--probabilities")
    wanted = submission.read_ids(args.csv) if args.csv else None
    model = serving.load_serving_model(args.model, args.tta)
    if args.runner == "beam":
        from protein_location.inference import beam_predict as predict  # the same two functions, as a Beam pipeline

        beam = {"precision": args.precision, "beam_options": args.beam_options}
    else:
        beam = {}
    if args.records:
        ids, probabilities, label_matrix = predict.predict_records(
            model, args.records, args.split, args.batch_size, **beam
        )
        if wanted is not None:
            ids, probabilities, label_matrix = submission.select_ids(ids, probabilities, label_matrix, wanted, args.csv)
        source = f"{args.split} records of {args.records}"
    else:
        ids = wanted if wanted is not None else list_image_ids(args.images)
        probabilities, label_matrix = predict.predict_images(model, args.images, ids, args.batch_size, **beam)
        source = "images"
    submission.write_submission(args.out, ids, label_matrix)
    if args.probabilities:
        submission.write_probabilities(args.probabilities, ids, probabilities, model.class_names)
    views = "the mean of 8 flips/rotations" if model.views == 8 else "one view"
    engine = " on Apache Beam" if args.runner == "beam" else ""
    print(f"predict: {len(ids)} {source}, {views} each{engine} -> {args.out}")


def _export(args):
    from protein_location import export
    from protein_location.core import folder_lock, output_files
    from protein_location.core.errors import ExportError

    formats = export.export_formats_of(args.tflite, args.tflite_quantize, args.onnx, args.out, "--out")
    output_files.check_output_dir(args.out, "--out")
    # The run folder is locked while it is read: a training cannot start in it meanwhile.
    with folder_lock.FolderLock(args.model_dir, "export", create=False):
        model, thresholds, class_names = export.load_run(args.model_dir)
    views = args.tta or thresholds.views
    if views == 8 and thresholds.tta is None:
        raise ExportError(f"{args.model_dir}/thresholds.json has no thresholds tuned for 8 views; export with --tta 1")
    print(
        f"export: {args.model_dir}/model.keras ({model.name}, input {model.input_shape[1:]}, "
        f"{len(class_names)} classes) with its thresholds.json"
    )
    export.export_model(
        model,
        thresholds.single_view,
        args.out,
        formats,
        class_names=class_names,
        tta_thresholds=thresholds.tta if views == 8 else None,
    )


def main(argv=None, prog=None):
    """The command line `argv` (default: sys.argv[1:]); `prog` names it in usage lines."""
    parser = _parser(prog)
    args = parser.parse_args(argv)
    from protein_location.core.command_line import flags_of, run_command

    return run_command(lambda: _run(args), verbose=args.verbose, flags=lambda: flags_of(parser))


def _run(args):
    from protein_location.core.errors import PredictError
    from protein_location.core.raw_images import list_image_ids

    if args.command == "predict":
        _predict(args)
    elif args.command == "score" and args.cells:
        from protein_location.cells import scoring

        if not args.masks:
            raise PredictError("score --cells needs --masks DIR, the truth's label images <Id>.png")
        score = scoring.score_files(args.submission, args.truth, args.masks, args.label_set)
        scored = sum(1 for ap in score.per_class if ap == ap)
        print(
            f"score: mAP {score.mean_ap:.4f} at IoU >= {scoring.IOU_THRESHOLD} over the {scored} classes with "
            f"truth cells ({args.submission} against {args.truth}, {score.label_set.name})"
        )
        print(
            f"score: truth cells found at IoU >= {scoring.IOU_THRESHOLD} by a mask of the submission: "
            f"{score.found} of {score.truth_cells} ({score.found / max(score.truth_cells, 1):.1%}); of the whole "
            f"ones (at least half the median cell's area): {score.found_whole} of {score.whole_cells} "
            f"({score.found_whole / max(score.whole_cells, 1):.1%})"
        )
    elif args.command == "score":
        from protein_location.inference import submission

        f1, label_set = submission.score_submission(args.submission, args.truth, args.label_set)
        print(f"score: macro F1 {f1:.4f} ({args.submission} against {args.truth}, {label_set})")
    elif args.command == "cells":
        from protein_location.cells import locate
        from protein_location.core import output_files
        from protein_location.inference.submission import read_ids

        table = args.table or locate.default_table_path(args.out)
        output_files.check_output_file(args.out, "--out")
        output_files.check_output_file(table, "--table")
        if args.overlays:
            output_files.check_output_dir(args.overlays, "--overlays")
        ids = read_ids(args.csv) if args.csv else list_image_ids(args.images)
        done = locate.locate_cells(
            args.model,
            args.images,
            ids,
            args.out,
            table,
            args.overlays,
            args.masks,
            args.cell_scores,
            args.min_confidence,
            crop_model=args.crop_model,
        )
        print(f"cells: {done['cells']} cells in {done['images']} images -> {args.out} (per cell: {table})")
    elif args.command == "explain":
        from protein_location.core import output_files
        from protein_location.inference import explain

        if args.max_locations < 1:
            raise PredictError(f"--max-locations must be at least 1, got {args.max_locations}")
        output_files.check_output_dir(args.out, "--out")
        ids = args.ids or list_image_ids(args.images)
        record = explain.explain_images(args.model, args.images, ids, args.out, args.max_locations)
        print(f"explain: {len(record['images'])} images -> {args.out} (<Id>.png, explain.json)")
    else:
        _export(args)


if __name__ == "__main__":
    sys.exit(main())
