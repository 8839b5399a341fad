"""Every stage of the pipeline measured against its limit, in one run (issue #7).

    python -m bench                    # 2,000 generated 512² images; train and infer at 224²
    python -m bench --quick            # CI smoke run: tiny images and models, one repeat
    python -m bench --source ../shared/hpa-samples/kaggle2018 --images 1020   # real files

On a generated dataset (`data_prep.synthetic`, cached under --work), or on
real files (--source: a raw folder's Ids replicated to --images), each
stage beside the reference that tells how close it is to its limit:

- conversion: `bench/convert.py` (data_prep.convert vs W processes that only
  decode the same PNGs), reused as it is;
- input pipeline: `protein_location.data.input_reader.make_dataset(training=True)` (parse,
  decode, resize to --train-size, augment, batch) vs a raw TFRecordDataset
  read of the same shards, and vs the training throughput of every model;
- training: `train_on_batch` steps of each SE-ResNet preset (compiled by
  `protein_location.training.task.build_and_compile`, as training does) and of
  `keras.applications.ResNet50` (the peer in the same framework, compiled
  alike), all on the same cached batches of the training pipeline; the first
  preset also once fed by the live pipeline, which shows whether training
  is input-bound on this machine, and (with --precision float32) once more
  in mixed_bfloat16, the precision `train_keras.py` picks by default on CPUs
  with native bfloat16 (device_precision.default_precision);
- inference: the SavedModel written by `protein_location.export` (untrained
  weights: speed does not depend on them) on batches of --infer-batch at the
  model size through `serving_single_view`, and with 8x TTA through
  `serving_default` (the 8 views in one call of the model), and
  from the PNG files through `protein_location.inference.predict.predict_images`,
  against the paper's 75 images/s (Chen 2020: 0.0128 s per image, batch 64,
  224 px, one Tesla P100); then the same SavedModel again with TensorFlow's
  oneDNN bfloat16 graph rewrite switched on at run time
  (`auto_mixed_precision_onednn_bfloat16`: bf16 convolutions on CPUs with
  AVX512_BF16 or AMX, a no-op elsewhere).

Each figure is the median of --repeats runs after a warm-up, with min and max
(`bench/measure.py`); the stages are `bench/stages.py`, the table `bench/report.py`.
Every stage (every model) runs in a fresh Python process (multiprocessing
"spawn"), so its peak memory (VmHWM) is what the stage alone costs, the
TensorFlow runtime included (about 0.8 GB after import); a forked process
would under-count the library pages it shares with its parent. Prints
a markdown table, writes the JSON record to --out. A benchmark, not a test:
nothing is asserted about speed.
"""

import argparse
import contextlib
import io
import json
import multiprocessing
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from bench import convert as convert_bench, stages  # noqa: E402
from bench.measure import ratio, run_isolated  # noqa: E402
from bench.report import goals, machine, table  # noqa: E402
from bench.stages import ARCHITECTURES, PAPER, PEER, PRESETS, STAGES  # noqa: E402
from data_prep import convert as convert_lib, workers as workers_lib  # noqa: E402
from protein_location.core import labels_csv, raw_images  # noqa: E402

FULL = {
    "images": 2000,
    "size": 512,
    "train_size": 224,
    "batch": 32,
    "infer_batch": 64,
    "repeats": 3,
    "warmup_steps": 2,
    "train_steps": 3,
    "infer_batches": 2,
    "predict_images": 256,
    "presets": ",".join(PRESETS),
    "width": 1.0,
}
# --quick: a smoke run of every stage (about 3 minutes on 2 idle cores, most of
# it starting TensorFlow in each stage's process and tracing): one width-0.125
# SE-ResNet, without the rows that only repeat a stage with other settings
# (the ResNet50 peer, 100 s of tracing alone, and the mixed_bfloat16 training row).
QUICK = {
    "images": 32,
    "size": 64,
    "train_size": 32,
    "batch": 8,
    "infer_batch": 8,
    "repeats": 1,
    "warmup_steps": 1,
    "train_steps": 1,
    "infer_batches": 1,
    "predict_images": 8,
    "presets": PRESETS[0],
    "width": 0.125,
}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: " + ", ".join(f"{k}={v}" for k, v in QUICK.items())
    )
    parser.add_argument("--images", type=int, help=f"training images to generate (default {FULL['images']})")
    parser.add_argument("--size", type=int, help=f"side of the generated source images (default {FULL['size']})")
    parser.add_argument(
        "--source",
        help="real files instead: a raw folder (train.csv + train/, e.g. "
        "../shared/hpa-samples/kaggle2018) whose Ids are replicated to --images "
        "by symbolic links (bench/convert.py replicate_raw); --size is then theirs",
    )
    parser.add_argument(
        "--train-size", type=int, help=f"side the models train and infer at (default {FULL['train_size']}, the paper's)"
    )
    parser.add_argument("--batch", type=int, help=f"input pipeline and training batch (default {FULL['batch']})")
    parser.add_argument("--infer-batch", type=int, help=f"inference batch (default {FULL['infer_batch']}, the paper's)")
    parser.add_argument("--repeats", type=int, help=f"timed runs of each figure (default {FULL['repeats']})")
    parser.add_argument("--train-steps", type=int, help=f"training steps per timed run (default {FULL['train_steps']})")
    parser.add_argument(
        "--warmup-steps", type=int, help=f"untimed training steps first (default {FULL['warmup_steps']})"
    )
    parser.add_argument(
        "--infer-batches", type=int, help=f"inference batches per timed run (default {FULL['infer_batches']})"
    )
    parser.add_argument(
        "--predict-images",
        type=int,
        help=f"images predicted from files per timed run (default {FULL['predict_images']})",
    )
    parser.add_argument(
        "--presets",
        help=f"architectures (--arch names: {', '.join(ARCHITECTURES)}) to train, "
        f"comma-separated, from scratch; the first is also exported "
        f"(default {FULL['presets']}; --quick: {QUICK['presets']})",
    )
    parser.add_argument(
        "--precision",
        default="float32",
        choices=["float32", "mixed_float16", "mixed_bfloat16"],
        help="Keras dtype policy of the trained and exported models",
    )
    parser.add_argument("--jit-compile", action="store_true", help="compile the training step with XLA")
    parser.add_argument(
        "--image-format",
        default="png",
        choices=("png", "raw"),
        help="convert's --image-format for the conversion and input stages",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="conversion processes; default: what convert picks for --images (data_prep.workers)",
    )
    parser.add_argument("--stages", default=",".join(STAGES), help="the stages to run, comma-separated")
    parser.add_argument("--work", default="/tmp/protein-location-bench", help="generated data (cached) and scratch")
    parser.add_argument("--out", help="JSON record (default WORK/bench.json)")
    args = parser.parse_args(argv)
    defaults = QUICK if args.quick else FULL
    for key, value in defaults.items():
        if getattr(args, key, None) is None:
            setattr(args, key, value)
    args.presets = [p.strip() for p in args.presets.split(",") if p.strip()]
    args.stages = [s.strip() for s in args.stages.split(",") if s.strip()]
    for preset in args.presets:
        if preset not in ARCHITECTURES:
            parser.error(f"--presets: unknown preset {preset!r}; choose from {', '.join(ARCHITECTURES)}")
    for stage in args.stages:
        if stage not in STAGES:
            parser.error(f"--stages: unknown stage {stage!r}; choose from {', '.join(STAGES)}")
    if not args.presets:
        parser.error("--presets: name at least one preset")
    if args.train_size < 32:
        parser.error(f"--train-size must be at least 32 (keras ResNet50's minimum), got {args.train_size}")
    args.workers = args.workers or workers_lib.default_workers(args.images)
    args.out = args.out or os.path.join(args.work, "bench.json")
    return args


def log(message):
    print(f"bench: {message}", file=sys.stderr, flush=True)


def main(argv=None):
    args = parse_args(argv)
    started = time.perf_counter()
    settings = {
        key: getattr(args, key)
        for key in (
            "quick",
            "source",
            "images",
            "size",
            "train_size",
            "batch",
            "infer_batch",
            "repeats",
            "warmup_steps",
            "train_steps",
            "infer_batches",
            "predict_images",
            "width",
            "presets",
            "precision",
            "jit_compile",
            "image_format",
            "workers",
            "stages",
            "work",
        )
    }
    log(", ".join(f"{k} {v}" for k, v in settings.items()))
    # The same folders as bench/convert.py: generated once (cached), or the real files replicated.
    if not args.source and not os.path.exists(os.path.join(args.work, f"raw-{args.images}-{args.size}", "train.csv")):
        log(f"generating {args.images} synthetic {args.size}² images (cached for later runs)")
    raw = settings["raw"] = convert_bench.raw_folder(args.work, args.images, args.size, args.source)
    if args.source:
        first = labels_csv.read_labels_csv(os.path.join(raw, "train.csv"))[0][0][0]
        settings["size"] = int(raw_images.read_image(os.path.join(raw, "train"), first).shape[0])
        log(f"{args.images} Ids of {args.source} ({settings['size']}²) in {raw}")
    if {"input", "training"} & set(args.stages):
        settings["data"] = os.path.join(args.work, f"tfrecords-{args.images}-{args.size}")
        log(f"converting them to {settings['data']} (untimed; the conversion stage times its own)")
        with contextlib.redirect_stderr(io.StringIO()):
            convert_lib.convert(
                os.path.join(raw, "train"),
                settings["data"],
                csv_path=os.path.join(raw, "train.csv"),
                workers=args.workers,
                image_format=args.image_format,
                overwrite=True,
            )

    context = multiprocessing.get_context("spawn")
    record = {
        "benchmark": "protein-location: every stage against its limit (issue #7)",
        "settings": settings,
        "paper": PAPER,
    }

    def stage(name, function, stage_settings):
        log(f"{name} ...")
        start = time.perf_counter()
        result = run_isolated(context, function, stage_settings)
        log(f"{name} done in {time.perf_counter() - start:.0f} s")
        return result

    if "conversion" in args.stages:
        record["conversion"] = stage("conversion", stages.stage_conversion, settings)
    if "input" in args.stages:
        record["input"] = stage("input pipeline", stages.stage_input, settings)
    if "training" in args.stages:
        record["training"] = {}
        for name in args.presets + ([] if args.quick else [PEER]):
            record["training"][name] = stage(
                f"training {name}",
                stages.stage_training,
                {**settings, "model": name, "live_input": name == args.presets[0]},
            )
            if "input" in record:
                record["training"][name]["input_over_training"] = ratio(
                    record["input"]["pipeline"]["images_per_s"], record["training"][name]["training"]["images_per_s"]
                )
        if args.precision == "float32" and not args.quick:
            first = args.presets[0]
            bf16 = record["training"][f"{first}_mixed_bfloat16"] = stage(
                f"training {first}, mixed_bfloat16",
                stages.stage_training,
                {**settings, "model": first, "precision": "mixed_bfloat16", "live_input": False},
            )
            bf16["over_float32"] = ratio(
                bf16["training"]["images_per_s"], record["training"][first]["training"]["images_per_s"]
            )
    if "inference" in args.stages:
        record["inference"] = stage("inference", stages.stage_inference, settings)
        record["inference_onednn_bf16"] = stage(
            "inference, oneDNN bfloat16 rewrite",
            stages.stage_inference,
            {**settings, "onednn_bf16": True, "saved_model": record["inference"]["saved_model"]},
        )
    record["machine"] = machine()
    record["goals"] = goals(record)
    record["seconds"] = round(time.perf_counter() - started, 1)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        f.write(json.dumps(record, indent=2) + "\n")
    print(table(record))
    for goal in record["goals"]:
        print(f"goal: {goal['goal']}: target {goal['target']:g}, measured {goal['measured']}, met {goal['met']}")
    log(f"JSON record: {args.out}; {record['seconds']:.0f} s in all")
    return record


if __name__ == "__main__":
    main()
