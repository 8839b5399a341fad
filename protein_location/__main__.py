"""`python -m protein_location {predict,score,explain,export,cells}`: use a trained model."""

import argparse
import sys

from protein_location.core import cli_flags, device_precision  # no TensorFlow at import


def _parser(prog=None):
    parser = argparse.ArgumentParser(prog=prog or "python -m protein_location", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    formatter = argparse.ArgumentDefaultsHelpFormatter

    predict = commands.add_parser(
        "predict", formatter_class=formatter, help="predict locations of raw images or TFRecords -> submission CSV"
    )
    predict.add_argument("--model", required=True, help="SavedModel folder from train_keras.py --export")
    source = predict.add_mutually_exclusive_group(required=True)
    source.add_argument("--images", help="folder of <Id>_<red|green|blue|yellow>.<png|jpg|tif|tif.gz> files")
    source.add_argument(
        "--records",
        metavar="DATA_DIR",
        help="a dataset folder from `python -m data_prep convert` (dataset.json + shards)",
    )
    predict.add_argument("--split", default="test", help="with --records: the split to predict")
    predict.add_argument(
        "--csv",
        default=None,
        help="sample_submission.csv: predict its Ids in its order; without it every Id in --images, "
        "sorted, or every record of --split in the manifest's order",
    )
    predict.add_argument("--out", required=True, help="submission CSV to write (Id,Predicted)")
    predict.add_argument(
        "--probabilities",
        default=None,
        help="also write a CSV of every class's probability per Id (columns: Id, the model's class names)",
    )
    predict.add_argument("--batch-size", type=int, default=64, help="images per inference call")
    predict.add_argument(
        "--precision",
        choices=device_precision.INFERENCE_PRECISIONS,
        default="auto",
        help="float32, or bfloat16 through oneDNN's rewrite of the float32 SavedModel (faster on "
        "AMD EPYC with AVX512_BF16, slower on an Intel Xeon without AMX: docs/inference.md); auto: "
        "bfloat16 where it pays (device_precision.bfloat16_pays), else float32",
    )
    predict.add_argument(
        "--runner",
        choices=("local", "beam"),
        default="local",
        help="local: this process; beam: Apache Beam's RunInference over the images or shards "
        "(pip install 'protein-location[beam]'), the same outputs",
    )
    predict.add_argument(
        "--beam-options",
        default=None,
        help="with --runner beam: Beam's pipeline options as one string, e.g. \"--runner="
        'DataflowRunner --project=P --region=R --temp_location=gs://B/tmp"; default: '
        "DirectRunner on this machine",
    )
    predict.add_argument(
        "--tta",
        type=int,
        choices=[1, 8],
        default=None,
        help="views averaged per image, each with thresholds tuned for it; default: the "
        "SavedModel's own (serving_default); 1: serving_single_view, the fast path; 8: the 8 "
        "flips/rotations (a SavedModel exported with --tta 8)",
    )

    score = commands.add_parser(
        "score", formatter_class=formatter, help="macro F1 of a submission against known labels (Id,Target)"
    )
    score.add_argument("--submission", required=True, help="submission CSV (Id,Predicted)")
    score.add_argument(
        "--truth",
        required=True,
        help="labels CSV, Id,Target (hpa2018) or ID,Label (hpa2021), e.g. the synthetic test_labels.csv",
    )
    score.add_argument(
        "--label-set",
        choices=["hpa2018", "hpa2021"],
        default=None,
        help="the classes of the labels (with --cells too); default: detected from the --truth header",
    )
    score.add_argument(
        "--cells",
        action="store_true",
        help="score a `cells` submission (ID,ImageWidth,ImageHeight,PredictionString): mAP at IoU >= "
        "0.6, the HPA 2021 metric, against per-cell truth: --truth Id,Cell,Target (or "
        "ID,Cell,Label) and --masks",
    )
    score.add_argument(
        "--masks",
        default=None,
        help="with --cells: folder of the truth's label images <Id>.png (16-bit, 0: background)",
    )

    cells = commands.add_parser(
        "cells",
        formatter_class=formatter,
        help="segment each field into cells and give every cell its locations -> the HPA "
        "2021 submission CSV (needs the cells extra)",
    )
    cells.add_argument("--model", required=True, help="SavedModel folder (export base or version)")
    cells.add_argument(
        "--images",
        required=True,
        help="folder of <Id>_<red|green|blue|yellow>.<png|jpg|tif|tif.gz> files, at full size",
    )
    cells.add_argument(
        "--csv", default=None, help="sample_submission.csv: its Ids in its order; default: every Id in --images, sorted"
    )
    cells.add_argument(
        "--out", required=True, help="submission CSV to write (ID,ImageWidth,ImageHeight,PredictionString)"
    )
    cells.add_argument(
        "--table",
        default=None,
        help="per-cell table to write (ID, Cell, bounding box, area, every class's confidence); "
        "default: beside OUT, cells.csv -> cells_per_cell.csv",
    )
    cells.add_argument(
        "--masks",
        default=None,
        help="folder of label images <Id>.png from another segmenter (e.g. HPA-Cell-Segmentation; "
        "16-bit, 0: background) instead of the built-in segmentation",
    )
    cells.add_argument(
        "--overlays",
        default=None,
        help="also write DIR/<Id>.png: the composite, each cell's outline and its top labels",
    )
    cells.add_argument(
        "--crop-model",
        default=None,
        help="SavedModel of a crop-level model (trained on `data_prep crops`, the same label set): "
        "each cell's own crop through it as well",
    )
    cells.add_argument(
        "--cell-scores",
        choices=["blend", "cam", "image", "crop"],
        default=None,
        help="a cell's confidence: cam, the image's probability times the cell's mean class activation "
        "over the field's most active cell's; image, the image's probability for every cell; "
        "blend, the mean of the two; crop, the geometric mean of the image's probability and "
        "the cell's own from --crop-model. Default: crop with --crop-model, else blend "
        "(docs/single-cells.md)",
    )
    cells.add_argument(
        "--min-confidence",
        type=float,
        default=0.0,
        help="leave out of the submission a cell's classes below this confidence (mAP counts every "
        "one, so 0 keeps them all)",
    )

    explain = commands.add_parser(
        "explain", formatter_class=formatter, help="Grad-CAM heat maps of the predicted locations -> one PNG per image"
    )
    explain.add_argument("--model", required=True, help="SavedModel folder (export base or version)")
    explain.add_argument(
        "--images", required=True, help="folder of <Id>_<red|green|blue|yellow>.<png|jpg|tif|tif.gz> files"
    )
    explain.add_argument("--ids", nargs="+", default=None, help="Ids to explain (default: every Id in --images)")
    explain.add_argument("--out", required=True, help="folder for <Id>.png and explain.json")
    explain.add_argument(
        "--max-locations", type=int, default=4, help="heat maps per image: the most probable predicted locations"
    )

    export = commands.add_parser(
        "export",
        formatter_class=formatter,
        help="export a training run (model.keras + thresholds.json) as a new SavedModel "
        "version, optionally with TFLite and ONNX files",
    )
    export.add_argument("--model-dir", required=True, help="run folder of train_keras.py --model-dir")
    export.add_argument("--out", required=True, help="export base: writes OUT/<next version>/")
    cli_flags.add_export_format_flags(export)
    export.add_argument(
        "--tta",
        type=int,
        choices=[1, 8],
        default=None,
        help="views serving_default averages (thresholds tuned for them); default: the run's",
    )
    for command in commands.choices.values():
        command.add_argument(
            "--verbose",
            action="store_true",
            help="also TensorFlow's own start-up and log lines (as TF_CPP_MIN_LOG_LEVEL set does)",
        )
    return parser


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
