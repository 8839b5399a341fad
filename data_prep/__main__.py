"""`python -m data_prep {synth,convert,crops,verify}`: the preprocessing stage."""

import argparse
import dataclasses
import sys
import time

from data_prep import workers
from data_prep.convert_request import ConvertRequest
from protein_location.core.cli_flags import add_command_parsers, flag, values_of


# Each command's flags, one dataclass each (core.cli_flags: a field is a flag);
# convert's are ConvertRequest, the arguments of convert.convert.
@dataclasses.dataclass(frozen=True, kw_only=True)
class SynthFlags:
    out: str = flag("--out", "output folder (train.csv, train/, test/, ...)", required=True)
    train: int = flag("--train", "number of labeled training images", 2000)
    test: int = flag("--test", "number of unlabeled test images", 400)
    size: int = flag("--size", "image side in pixels", 64)
    seed: int = flag("--seed", "random seed; the same seed gives the same files", 0)
    workers: int | None = flag(
        "--workers", "rendering processes (default: all cores); the files are the same for any count", None, type=int
    )
    cells: bool = flag(
        "--cells",
        "per-cell truth for the test images: each cell shows each of its image's labels or not, "
        "label images in test_cells/<Id>.png and the cells' labels in test_cells.csv "
        "(Id,Cell,Target), what `score --cells` reads",
        False,
    )


@dataclasses.dataclass(frozen=True, kw_only=True)
class CropsFlags:
    images: str = flag("--images", "folder of the fields (any layout convert reads)", required=True)
    csv: str = flag("--csv", "their labels CSV (Id,Target or ID,Label)", required=True)
    out: str = flag(
        "--out",
        "output folder: train/<Id>_cell<k>_<stain>.png and train.csv (the field's labels and "
        "its Group: convert it with --group-column Group)",
        required=True,
    )
    # cells.crops.DEFAULT_CROP_SIZE, spelled out: `--help` loads no TensorFlow (a test compares them).
    size: int = flag("--size", "side of each cell's crop in pixels", 64)
    masks: str | None = flag(
        "--masks",
        "folder of label images <Id>.png from another segmenter (16-bit, 0: background) "
        "instead of segmenting the fields",
        None,
    )
    workers: int | None = flag(
        "--workers",
        "processes (default: one per 50 fields, up to the cores); the files are the same for any count",
        None,
        type=int,
    )


@dataclasses.dataclass(frozen=True, kw_only=True)
class VerifyFlags:
    data: str = flag("data", "dataset folder (holds dataset.json)")


# {command: (its flags, its one-line help)}, in `--help`'s order.
COMMANDS = {
    "synth": (SynthFlags, "write a synthetic dataset in the Kaggle HPA layout"),
    "convert": (ConvertRequest, "convert a raw HPA-layout folder into sharded TFRecords"),
    "crops": (
        CropsFlags,
        "write every cell of a labelled raw folder as an image of its own, labelled with "
        "its field's labels (a training set for `cells --crop-model`)",
    ),
    "verify": (VerifyFlags, "re-read every shard and check it against dataset.json"),
}


def _parser(prog=None):
    parser = argparse.ArgumentParser(prog=prog or "python -m data_prep", description=__doc__)
    return add_command_parsers(parser, COMMANDS)


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
    result = convert.convert(**values_of(args, ConvertRequest))
    seconds = time.perf_counter() - start
    if result.get("already_complete"):
        print(f"convert: {args.out_dir}: already complete (dataset.json, every shard's sha256 matches); nothing to do")
        return
    if result.get("repaired"):
        print(
            f"convert: {args.out_dir}: rewrote {len(result['repaired'])} missing or damaged shard(s) "
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
        f"{_engine(args, total)}) -> {args.out_dir}"
    )


def _engine(args, total):
    if args.runner == "beam":
        return "Apache Beam"
    return f"{args.workers or workers.default_workers(total)} workers"


if __name__ == "__main__":
    sys.exit(main())
