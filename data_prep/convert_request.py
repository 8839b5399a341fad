"""What a conversion is asked to do: `ConvertRequest`, whose fields are
`convert.convert`'s arguments and whose flags are `data_prep convert`'s,
generated from it (`core.cli_flags`), so the two cannot drift (a test compares
the fields with `convert`'s signature, defaults included).

No TensorFlow at import (`--help` answers without it): the library's values
the flags show are spelled out here, and the test compares them too.
"""

import dataclasses
import os

from data_prep import workers
from protein_location.core.cli_flags import BEAM_OPTIONS_HELP, flag


@dataclasses.dataclass(frozen=True)
class ConvertRequest:
    images_dir: list = flag(
        "--images",
        "folder of <Id>_<red|green|blue|yellow>.<png|jpg|tif|tif.gz> files; repeat it, each with "
        "its --csv in the same order, to join several sources (e.g. Kaggle + HPAv18)",
        required=True,
        action="append",
    )
    out_dir: str = flag("--out", "output folder for the shards and dataset.json", required=True)
    csv_path: list | None = flag(
        "--csv",
        "labels CSV: Id,Target (HPA 2018, 28 classes) or ID,Label (HPA 2021, 19 classes); "
        "without it the folder becomes an unlabeled 'test' split",
        None,
        action="append",
    )
    label_set: str | None = flag(
        "--label-set",
        "the classes of the labels; default: detected from the CSV header",
        None,
        choices=["hpa2018", "hpa2021"],
    )
    group_column: str | None = flag(
        "--group-column",
        "CSV column of groups kept on one side of the split and in one fold; default: "
        "the fields of one HPAv18 well (the Id without its _<field>) are a group",
        None,
    )
    size: int | None = flag(
        "--size", "output side in pixels (area-resized); default: keep the source size", None, type=int
    )
    val_fraction: float = flag(
        "--val-fraction", "share of labeled images held out as the 'val' split (0 for none)", 0.1
    )
    folds: int | None = flag(
        "--folds", "instead of --val-fraction: k stratified folds of train (train with --fold i)", None, type=int
    )
    num_shards: int | None = flag(
        "--shards", "shards per split (per fold); default: sized by content, see --shard-mb", None, type=int
    )
    shard_mb: float = flag("--shard-mb", "target shard size when --shards is not given", 150.0)
    workers: int | None = flag(
        "--workers",
        "decoding processes; the output is the same for any number. Default: one per "
        f"{workers.IMAGES_PER_WORKER} images, up to the {os.cpu_count()} cores (a worker "
        "starts in under a second; one that meets JPEGs loads TensorFlow, seconds)",
        None,
        type=int,
    )
    runner: str = flag(
        "--runner",
        "local: --workers processes on this machine; beam: the same plan as an Apache Beam "
        "pipeline, one element per shard (pip install 'protein-location[beam]'), with "
        "byte-identical output",
        "local",
        choices=("local", "beam"),
    )
    beam_options: str | None = flag("--beam-options", BEAM_OPTIONS_HELP, None)
    on_error: str = flag(
        "--on-error",
        "fail: stop at the first bad input; skip: leave it out and list it in errors.csv",
        "fail",
        choices=["fail", "skip"],
    )
    # raw_images.DEFAULT_MAX_PIXELS
    max_pixels: int = flag(
        "--max-pixels", "refuse images with more pixels (decompression bombs), checked before decoding", 40_000_000
    )
    # records.IMAGE_FORMATS and records.DEFAULT_IMAGE_FORMAT
    image_format: str = flag(
        "--image-format",
        "how records store the image: png (the documented schema, compresses with "
        "--png-compression 1-9) or raw bytes (schema 2: as large as png level 0, faster "
        "to write and 2x faster to decode)",
        "png",
        choices=("png", "raw"),
    )
    png_compression: int = flag(
        "--png-compression",
        "with --image-format png, the zlib level: 0 is fastest to write and read, 9 smallest",
        0,
        choices=range(10),
        metavar="{0..9}",
    )
    seed: int = flag("--seed", "seed of the split and example order", 0)
    overwrite: bool = flag("--overwrite", "replace a dataset already in --out", False)
    resume: bool = flag(
        "--resume",
        "finish an interrupted conversion (same arguments), reusing its completed shards; "
        "on a finished one, do nothing",
        False,
    )
