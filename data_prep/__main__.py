"""`python -m data_prep {synth,convert,crops,verify}`: the preprocessing stage."""

import argparse
import os
import sys
import time

from data_prep import workers


def _parser(prog=None):
    parser = argparse.ArgumentParser(prog=prog or "python -m data_prep", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    formatter = argparse.ArgumentDefaultsHelpFormatter

    synth = commands.add_parser(
        "synth", formatter_class=formatter, help="write a synthetic dataset in the Kaggle HPA layout"
    )
    synth.add_argument("--out", required=True, help="output folder (train.csv, train/, test/, ...)")
    synth.add_argument("--train", type=int, default=2000, help="number of labeled training images")
    synth.add_argument("--test", type=int, default=400, help="number of unlabeled test images")
    synth.add_argument("--size", type=int, default=64, help="image side in pixels")
    synth.add_argument("--seed", type=int, default=0, help="random seed; the same seed gives the same files")
    synth.add_argument(
        "--workers",
        type=int,
        default=None,
        help="rendering processes (default: all cores); the files are the same for any count",
    )
    synth.add_argument(
        "--cells",
        action="store_true",
        help="per-cell truth for the test images: each cell shows each of its image's labels or not, "
        "label images in test_cells/<Id>.png and the cells' labels in test_cells.csv "
        "(Id,Cell,Target), what `score --cells` reads",
    )

    convert = commands.add_parser(
        "convert", formatter_class=formatter, help="convert a raw HPA-layout folder into sharded TFRecords"
    )
    convert.add_argument(
        "--images",
        required=True,
        action="append",
        help="folder of <Id>_<red|green|blue|yellow>.<png|jpg|tif|tif.gz> files; repeat it, each with "
        "its --csv in the same order, to join several sources (e.g. Kaggle + HPAv18)",
    )
    convert.add_argument(
        "--csv",
        default=None,
        action="append",
        help="labels CSV: Id,Target (HPA 2018, 28 classes) or ID,Label (HPA 2021, 19 classes); "
        "without it the folder becomes an unlabeled 'test' split",
    )
    convert.add_argument(
        "--label-set",
        choices=["hpa2018", "hpa2021"],
        default=None,
        help="the classes of the labels; default: detected from the CSV header",
    )
    convert.add_argument(
        "--group-column",
        default=None,
        help="CSV column of groups kept on one side of the split and in one fold; default: "
        "the fields of one HPAv18 well (the Id without its _<field>) are a group",
    )
    convert.add_argument("--out", required=True, help="output folder for the shards and dataset.json")
    convert.add_argument(
        "--size", type=int, default=None, help="output side in pixels (area-resized); default: keep the source size"
    )
    convert.add_argument(
        "--val-fraction",
        type=float,
        default=0.1,
        help="share of labeled images held out as the 'val' split (0 for none)",
    )
    convert.add_argument(
        "--folds",
        type=int,
        default=None,
        help="instead of --val-fraction: k stratified folds of train (train with --fold i)",
    )
    convert.add_argument(
        "--shards",
        type=int,
        default=None,
        help="shards per split (per fold); default: sized by content, see --shard-mb",
    )
    convert.add_argument("--shard-mb", type=float, default=150.0, help="target shard size when --shards is not given")
    convert.add_argument(
        "--workers",
        type=int,
        default=None,
        help="decoding processes; the output is the same for any number. Default: one per "
        f"{workers.IMAGES_PER_WORKER} images, up to the {os.cpu_count()} cores (a worker "
        "starts in under a second; one that meets JPEGs loads TensorFlow, seconds)",
    )
    convert.add_argument(
        "--runner",
        choices=("local", "beam"),
        default="local",
        help="local: --workers processes on this machine; beam: the same plan as an Apache Beam "
        "pipeline, one element per shard (pip install 'protein-location[beam]'), with "
        "byte-identical output",
    )
    convert.add_argument(
        "--beam-options",
        default=None,
        help="with --runner beam: Beam's pipeline options as one string, e.g. \"--runner="
        'DataflowRunner --project=P --region=R --temp_location=gs://B/tmp"; default: '
        "DirectRunner on this machine",
    )
    convert.add_argument(
        "--on-error",
        choices=["fail", "skip"],
        default="fail",
        help="fail: stop at the first bad input; skip: leave it out and list it in errors.csv",
    )
    convert.add_argument(
        "--max-pixels",
        type=int,
        default=40_000_000,
        help="refuse images with more pixels (decompression bombs), checked before decoding",
    )
    # records.IMAGE_FORMATS and its default, spelled out: `--help` loads no TensorFlow (a test compares them).
    convert.add_argument(
        "--image-format",
        choices=("png", "raw"),
        default="png",
        help="how records store the image: png (the documented schema, compresses with "
        "--png-compression 1-9) or raw bytes (schema 2: as large as png level 0, faster "
        "to write and 2x faster to decode)",
    )
    convert.add_argument(
        "--png-compression",
        type=int,
        default=0,
        choices=range(10),
        metavar="{0..9}",
        help="with --image-format png, the zlib level: 0 is fastest to write and read, 9 smallest",
    )
    convert.add_argument("--seed", type=int, default=0, help="seed of the split and example order")
    convert.add_argument("--overwrite", action="store_true", help="replace a dataset already in --out")
    convert.add_argument(
        "--resume",
        action="store_true",
        help="finish an interrupted conversion (same arguments), reusing its completed shards; "
        "on a finished one, do nothing",
    )

    crops = commands.add_parser(
        "crops",
        formatter_class=formatter,
        help="write every cell of a labelled raw folder as an image of its own, labelled with "
        "its field's labels (a training set for `cells --crop-model`)",
    )
    crops.add_argument("--images", required=True, help="folder of the fields (any layout convert reads)")
    crops.add_argument("--csv", required=True, help="their labels CSV (Id,Target or ID,Label)")
    crops.add_argument(
        "--out",
        required=True,
        help="output folder: train/<Id>_cell<k>_<stain>.png and train.csv (the field's labels and "
        "its Group: convert it with --group-column Group)",
    )
    # crops.DEFAULT_CROP_SIZE, spelled out: `--help` loads no TensorFlow.
    crops.add_argument("--size", type=int, default=64, help="side of each cell's crop in pixels")
    crops.add_argument(
        "--masks",
        default=None,
        help="folder of label images <Id>.png from another segmenter (16-bit, 0: background) "
        "instead of segmenting the fields",
    )
    crops.add_argument(
        "--workers",
        type=int,
        default=None,
        help="processes (default: one per 50 fields, up to the cores); the files are the same for any count",
    )

    verify = commands.add_parser(
        "verify", formatter_class=formatter, help="re-read every shard and check it against dataset.json"
    )
    verify.add_argument("data", help="dataset folder (holds dataset.json)")
    for command in commands.choices.values():
        command.add_argument(
            "--verbose",
            action="store_true",
            help="also TensorFlow's own start-up and log lines (as TF_CPP_MIN_LOG_LEVEL set does)",
        )
    return parser


def main(argv=None, prog=None):
    """The command line `argv` (default: sys.argv[1:]); `prog` names it in usage lines."""
    parser = _parser(prog)
    args = parser.parse_args(argv)
    # Imported here so `--help` answers without loading TensorFlow.
    from protein_location.core.command_line import flags_of, run_command

    return run_command(lambda: _run(args), verbose=args.verbose, flags=lambda: flags_of(parser))


def _run(args):
    from data_prep import synthetic, verify

    if args.command == "synth":
        summary = synthetic.generate_dataset(
            args.out, args.train, args.test, args.size, args.seed, workers=args.workers, cells=args.cells
        )
        truth = " (per-cell truth: test_cells/, test_cells.csv)" if args.cells else ""
        print(
            f"synth: {summary['num_train']} train and {summary['num_test']} test images "
            f"({args.size}x{args.size}) in {args.out}{truth}"
        )
    elif args.command == "convert":
        _convert(args)
    elif args.command == "crops":
        from data_prep import crops

        done = crops.write_crops(args.images, args.csv, args.out, args.size, args.masks, args.workers)
        empty = f"; no cell found in {len(done['empty'])} (e.g. {done['empty'][0]})" if done["empty"] else ""
        print(
            f"crops: {done['cells']} cells of {done['fields']} fields ({args.size}x{args.size}) in {args.out}"
            f"{empty}; next: python -m data_prep convert --csv {args.out}/train.csv --images {args.out}/train "
            f"--out DATASET --group-column Group"
        )
    else:
        checked = verify.verify_dataset(args.data)
        counts = ", ".join(f"{split} {count}" for split, count in checked.items())
        print(f"verify: {args.data} OK ({counts} examples, sha256 and counts match)")


def _convert(args):
    from data_prep import convert

    start = time.perf_counter()
    result = convert.convert(
        args.images,
        args.out,
        csv_path=args.csv,
        size=args.size,
        val_fraction=args.val_fraction,
        folds=args.folds,
        num_shards=args.shards,
        shard_mb=args.shard_mb,
        seed=args.seed,
        workers=args.workers,
        on_error=args.on_error,
        max_pixels=args.max_pixels,
        image_format=args.image_format,
        png_compression=args.png_compression,
        overwrite=args.overwrite,
        resume=args.resume,
        label_set=args.label_set,
        group_column=args.group_column,
        runner=args.runner,
        beam_options=args.beam_options,
    )
    seconds = time.perf_counter() - start
    if result.get("already_complete"):
        print(f"convert: {args.out}: already complete (dataset.json, every shard's sha256 matches); nothing to do")
        return
    if result.get("repaired"):
        print(
            f"convert: {args.out}: rewrote {len(result['repaired'])} missing or damaged shard(s) "
            f"({', '.join(result['repaired'])}); every shard matches dataset.json again"
        )
        return
    split = result["split"]
    if "worst_class" in split:
        print(
            f"split: {sum(s['num_examples'] for s in result['sources'])} images in {split['num_groups']} "
            f"groups ({split['groups']}); per-class val fractions within "
            f"{split['val_fraction_mean_deviation']:.3f} of {split['val_fraction']:g} on average, worst: "
            f"{split['worst_class']} at {split['worst_class_val_fraction']:.3f}"
        )
    splits = result["splits"].items()
    counts = ", ".join(f"{split} {entry['num_examples']}" for split, entry in splits)
    total = sum(entry["num_examples"] for _, entry in splits)
    shards = sum(len(entry["shards"]) for _, entry in splits)
    skipped = f", {result['num_errors']} skipped (errors.csv)" if args.on_error == "skip" else ""
    print(
        f"convert: {counts} examples{skipped} ({result['label_set']}, {len(result['class_names'])} classes) "
        f"at {result['image_size']}px in {shards} shards, "
        f"{seconds:.1f} s ({total / max(seconds, 1e-9):.0f} img/s, "
        f"{_engine(args, total)}) -> {args.out}"
    )


def _engine(args, total):
    if args.runner == "beam":
        return "Apache Beam"
    return f"{args.workers or workers.default_workers(total)} workers"


if __name__ == "__main__":
    sys.exit(main())
