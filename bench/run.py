"""Every stage of the pipeline measured against its limit, in one run (issue #7).

    python -m bench                    # 2,000 generated 512² images; train and infer at 224²
    python -m bench --quick            # CI smoke run: tiny images and models, one repeat

On a generated dataset (`data_prep.synthetic`, cached under --work), each
stage beside the reference that tells how close it is to its limit:

- conversion: `bench/convert.py` (data_prep.convert vs W processes that only
  decode the same PNGs), reused as it is;
- input pipeline: `protein_location.input.make_dataset(training=True)` (parse,
  decode, resize to --train-size, augment, batch) vs a raw TFRecordDataset
  read of the same shards, and vs the training throughput of every model;
- training: `train_on_batch` steps of each SE-ResNet preset (compiled by
  `protein_location.train.build_and_compile`, as training does) and of
  `keras.applications.ResNet50` (the peer in the same framework, compiled
  alike), all on the same cached batches of the training pipeline; the first
  preset also once fed by the live pipeline, which shows whether training
  is input-bound on this machine, and (with --precision float32) once more
  in mixed_bfloat16, the precision `train_keras.py` picks by default on CPUs
  with native bfloat16 (distribute.default_precision);
- inference: the SavedModel written by `protein_location.export` (untrained
  weights: speed does not depend on them) on batches of --infer-batch at the
  model size through `serving_single_view`, and with 8x TTA through
  `serving_default` (the 8 views in one call of the model), and
  from the PNG files through `protein_location.predict.predict_images`,
  against the paper's 75 images/s (Chen 2020: 0.0128 s per image, batch 64,
  224 px, one Tesla P100); then the same SavedModel again with TensorFlow's
  oneDNN bfloat16 graph rewrite switched on at run time
  (`auto_mixed_precision_onednn_bfloat16`: bf16 convolutions on CPUs with
  AVX512_BF16 or AMX, a no-op elsewhere).

Each figure is the median of --repeats runs after a warm-up, with min and max.
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
import platform
import resource
import shutil
import sys
import time
import traceback

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from bench import convert as convert_bench  # noqa: E402
from data_prep import convert as convert_lib, synthetic, workers as workers_lib  # noqa: E402
from protein_location import distribute, export, input as input_lib, labels as labels_lib, labels_csv, raw_images  # noqa: E402
from protein_location import manifest as manifest_lib, model as model_lib, predict, train as train_lib  # noqa: E402

STAGES = ("conversion", "input", "training", "inference")
PRESETS = tuple(model_lib.PRESETS)
PEER = "keras_resnet50"
PAPER = {"images_per_s": 75.0, "seconds_per_image": 0.0128, "batch": 64, "image_size": 224,
         "hardware": "one Tesla P100 and 16 CPU cores", "source": "Chen (2020)"}
GOAL_INFERENCE_IMAGES_PER_S = 75.0
GOAL_INPUT_OVER_TRAINING = 5.0

FULL = {"images": 2000, "size": 512, "train_size": 224, "batch": 32, "infer_batch": 64, "repeats": 3,
        "warmup_steps": 2, "train_steps": 3, "infer_batches": 2, "predict_images": 256,
        "presets": ",".join(PRESETS), "width": 1.0}
# --quick: a smoke run of about a minute on 2 idle cores (most of it tracing the
# train steps); one SE-ResNet, and width-0.125 SE-ResNets only here.
QUICK = {"images": 32, "size": 64, "train_size": 32, "batch": 8, "infer_batch": 8, "repeats": 1,
         "warmup_steps": 1, "train_steps": 1, "infer_batches": 1, "predict_images": 8,
         "presets": PRESETS[0], "width": 0.125}


class BenchError(RuntimeError):
    """A stage that failed (its traceback follows)."""


# --- measuring ----------------------------------------------------------------------------------

def summary(seconds, count):
    """convert.py's summary (median/min/max seconds, images/s at the median) plus images/s at min and max."""
    record = convert_bench.summary(seconds, count)
    record.update(images=count, runs=len(seconds), images_per_s_min=round(count / max(seconds), 1),
                  images_per_s_max=round(count / min(seconds), 1))
    return record


def timed(function):
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def time_alternating(functions, repeats, warmup=1):
    """{name: [seconds per run]}: each function `warmup` times untimed, then the
    functions in turn, `repeats` rounds, so drift in the machine hits all alike."""
    for function in functions.values():
        for _ in range(warmup):
            function()
    seconds = {name: [] for name in functions}
    for _ in range(repeats):
        for name, function in functions.items():
            seconds[name].append(timed(function))
    return seconds


def _status_mb(field):
    """VmHWM (peak) or VmRSS (now) of this process in MB, from /proc; ru_maxrss elsewhere."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def peak_rss_mb():
    return _status_mb("VmHWM")


def rss_mb():
    return _status_mb("VmRSS")


def ratio(a, b, digits=2):
    return round(a / b, digits) if b else None


# --- the stages (each runs in its own process) ----------------------------------------------------

def stage_conversion(settings):
    """bench/convert.py as it is: conversion vs the decode limit, peak memory."""
    argv = ["--images", settings["images"], "--size", settings["size"], "--workers", settings["workers"],
            "--repeats", settings["repeats"], "--work", settings["work"]]
    with contextlib.redirect_stdout(io.StringIO()):  # it prints its record; we return it
        record = convert_bench.main([str(a) for a in argv])
    for key in ("decode_limit", "convert"):  # the same fields as every other figure here
        part, images = record[key], record["images"]
        # from its seconds, rounded to ms: keep min <= median <= max
        record[key] = {**part, "images": images, "runs": record["repeats"],
                       "images_per_s_min": min(round(images / part["max_s"], 1), part["images_per_s"]),
                       "images_per_s_max": max(round(images / part["min_s"], 1), part["images_per_s"])}
    record["convert_share_of_decode_limit"] = ratio(record["convert"]["images_per_s"],
                                                    record["decode_limit"]["images_per_s"])
    return record


def stage_input(settings):
    """The training tf.data pipeline vs a raw read of the same shards (one epoch per run)."""
    data, batch = settings["data"], settings["batch"]
    manifest = manifest_lib.load_manifest(data)
    files, count, _ = manifest_lib.split_summary(data, manifest, "train")
    read = (tf.data.Dataset.from_tensor_slices(files)
            .interleave(tf.data.TFRecordDataset, cycle_length=min(len(files), 16),
                        num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
            .batch(batch).prefetch(tf.data.AUTOTUNE))
    # One epoch of the endless training stream.
    pipeline = input_lib.make_dataset(data, "train", batch, image_size=settings["train_size"],
                                      training=True).take(count // batch)

    def drain(dataset):
        for _ in dataset:
            pass

    baseline = rss_mb()
    seconds = time_alternating({"read_limit": lambda: drain(read), "pipeline": lambda: drain(pipeline)},
                               settings["repeats"])
    read_limit = summary(seconds["read_limit"], count)
    delivered = summary(seconds["pipeline"], count // batch * batch)
    return {
        "split": "train", "shards": len(files), "stored_size": manifest["image_size"],
        "image_size": settings["train_size"], "batch": batch, "augment": "default (flips/rotations)",
        "read_limit": read_limit, "pipeline": delivered,
        "pipeline_share_of_read_limit": ratio(delivered["images_per_s"], read_limit["images_per_s"], 3),
        "baseline_rss_mb": baseline, "peak_rss_mb": peak_rss_mb(),
    }


def _compile_like_training(model, config):
    """The peer compiled as `train.build_and_compile` compiles an SE-ResNet:
    AdamW, the configured loss, macro F1 and AUC."""
    model.compile(
        optimizer=keras.optimizers.AdamW(config.learning_rate, weight_decay=config.weight_decay),
        loss=train_lib.build_loss(config), jit_compile=config.jit_compile,
        metrics=[keras.metrics.F1Score(average="macro", threshold=0.5, name="macro_f1"),
                 keras.metrics.AUC(multi_label=True, num_labels=model.output_shape[-1], name="auc")])
    return model


def stage_training(settings):
    """Training steps of one model on cached batches of the training pipeline;
    with settings["live_input"], also fed by the live pipeline."""
    keras.utils.set_random_seed(0)
    keras.mixed_precision.set_global_policy(settings["precision"])
    data, batch, size, name = settings["data"], settings["batch"], settings["train_size"], settings["model"]
    steps, warmup = settings["train_steps"], settings["warmup_steps"]
    manifest = manifest_lib.load_manifest(data)
    _, count, label_counts = manifest_lib.split_summary(data, manifest, "train")
    # The same batches for every model (seed 0); a small shuffle buffer keeps
    # the raw records out of this process's peak memory.
    cached = list(input_lib.make_dataset(data, "train", batch, size, training=True, seed=0, shuffle_buffer=batch)
                  .take(max(steps, warmup)))
    config = train_lib.TrainConfig(data=data, model_dir="", batch_size=batch, image_size=size, arch=name,
                                   width=settings["width"], precision=settings["precision"],
                                   jit_compile=settings["jit_compile"])
    baseline = rss_mb()
    if name == PEER:
        model = _compile_like_training(keras.applications.ResNet50(
            weights=None, input_shape=(size, size, 4), classes=len(manifest_lib.class_names(manifest)),
            classifier_activation="sigmoid"), config)
    else:
        model = train_lib.build_and_compile(config, manifest, label_counts, count, max(count // batch, 1))

    def run_steps(next_batch, count):
        for step in range(count):
            model.train_on_batch(*next_batch(step))

    start = time.perf_counter()
    run_steps(lambda step: cached[step % len(cached)], warmup)  # tracing, oneDNN primitive creation
    warmup_s = time.perf_counter() - start
    seconds = [timed(lambda: run_steps(lambda step: cached[step % len(cached)], steps))
               for _ in range(settings["repeats"])]
    result = {
        "model": model.name, "parameters": model.count_params(), "image_size": size, "batch": batch,
        "precision": settings["precision"], "jit_compile": settings["jit_compile"],
        "steps_per_run": steps, "warmup_steps": warmup, "warmup_s": round(warmup_s, 1),
        "training": summary(seconds, steps * batch),
        "baseline_rss_mb": baseline, "peak_rss_mb": peak_rss_mb(),
    }
    if settings.get("live_input"):
        # As model.fit is fed: the real pipeline (default shuffle buffer), sharing the cores.
        iterator = iter(input_lib.make_dataset(data, "train", batch, size, training=True, seed=1))
        run_steps(lambda step: next(iterator), warmup)
        live = [timed(lambda: run_steps(lambda step: next(iterator), steps)) for _ in range(settings["repeats"])]
        result["training_live_input"] = summary(live, steps * batch)
        result["live_share_of_cached"] = ratio(result["training_live_input"]["images_per_s"],
                                               result["training"]["images_per_s"])
        result["peak_rss_mb_with_live_input"] = peak_rss_mb()
    return result


def stage_inference(settings):
    """The exported SavedModel: in-memory batches with and without 8x TTA, and
    from files via predict. With settings["onednn_bf16"], the SavedModel
    already written, run with TF's oneDNN bfloat16 graph rewrite (a runtime
    option: the SavedModel stays float32) and without the from-files figure."""
    bf16 = settings.get("onednn_bf16", False)
    if bf16:
        tf.config.optimizer.set_experimental_options({"auto_mixed_precision_onednn_bfloat16": True})
    keras.utils.set_random_seed(0)
    keras.mixed_precision.set_global_policy(settings["precision"])
    size, batch, preset = settings["train_size"], settings["infer_batch"], settings["presets"][0]
    images_dir = os.path.join(settings["raw"], "train")
    ids = [image_id for image_id, _ in labels_csv.read_labels_csv(os.path.join(settings["raw"], "train.csv"))[0]]
    baseline = rss_mb()
    result = {"preset": preset, "width": settings["width"], "image_size": size, "batch": batch,
              "source_size": settings["size"], "precision": settings["precision"], "onednn_bf16_rewrite": bf16,
              "signature": export.SINGLE_VIEW_SIGNATURE, "tta8_signature": export.SIGNATURE}
    path = settings.get("saved_model")
    if path is None:
        base = os.path.join(settings["work"], "export")
        shutil.rmtree(base, ignore_errors=True)
        model = model_lib.build_seresnet(preset, image_size=size, width=settings["width"])
        start = time.perf_counter()
        # The bench's data is synthetic, in the HPA 2018 label set.
        class_names = labels_lib.HPA2018.class_names
        cuts = np.full(len(class_names), 0.5, np.float32)
        path = export.export_saved_model(model, cuts, base, class_names, tta_thresholds=cuts)
        result["export_s"] = round(time.perf_counter() - start, 1)
        del model
    result["saved_model"] = path
    start = time.perf_counter()
    serve = predict.load_serving_model(path, tta=1).serve  # serving_single_view
    result["load_s"] = round(time.perf_counter() - start, 1)
    serve_tta8 = predict.load_serving_model(path, tta=8).serve  # serving_default, the 8 views in one call
    # Real images at the model size: the serving signature's resize is then the identity.
    images = tf.constant(np.stack([raw_images.read_image(images_dir, ids[i % len(ids)], size) for i in range(batch)]))
    file_ids = [ids[i % len(ids)] for i in range(settings["predict_images"])]

    def serving():
        for _ in range(settings["infer_batches"]):
            serve(image=images)["probabilities"].numpy()

    def serving_tta8():
        serve_tta8(image=images)["probabilities"].numpy()

    def from_files():  # the CLI's path: load the SavedModel, read and resize the PNGs (threads), infer
        predict.predict_images(path, images_dir, file_ids, batch_size=batch, tta=1)

    functions = {"serving": serving, "serving_tta8": serving_tta8}
    counts = {"serving": settings["infer_batches"] * batch, "serving_tta8": batch}
    if not bf16:
        functions["from_files"], counts["from_files"] = from_files, len(file_ids)
    seconds = time_alternating(functions, settings["repeats"])
    for key in functions:
        result[key] = summary(seconds[key], counts[key])
        result[f"{key}_share_of_paper"] = ratio(result[key]["images_per_s"], PAPER["images_per_s"])
    result.update(baseline_rss_mb=baseline, peak_rss_mb=peak_rss_mb())
    return result


# --- running stages in fresh processes ------------------------------------------------------------

def _stage_process(connection, stage, settings):
    tf.get_logger().setLevel("ERROR")  # export's AutoGraph notices are not news here
    try:
        connection.send(("ok", stage(settings)))
    except BaseException:  # noqa: BLE001 - the parent reports it
        connection.send(("error", traceback.format_exc()))
    finally:
        connection.close()


def run_isolated(context, stage, settings):
    """stage(settings) in a fresh Python process; returns its result or raises BenchError."""
    receive, send = context.Pipe(duplex=False)
    process = context.Process(target=_stage_process, args=(send, stage, settings))
    process.start()
    send.close()
    try:
        status, value = receive.recv()
    except EOFError:
        process.join()
        killed = " (killed: out of memory?)" if process.exitcode == -9 else ""
        raise BenchError(f"{stage.__name__}: the process died with exit code {process.exitcode}{killed}") from None
    process.join()
    if status != "ok":
        raise BenchError(f"{stage.__name__} failed:\n{value}")
    return value


# --- the run ----------------------------------------------------------------------------------------

def machine():
    def first(path, prefix):
        try:
            with open(path) as f:
                return next((line.split(":", 1)[1].strip() for line in f if line.startswith(prefix)), None)
        except OSError:
            return None

    flags = distribute.cpu_flags()
    memory_kb = first("/proc/meminfo", "MemTotal")
    return {
        "cpu": first("/proc/cpuinfo", "model name") or platform.processor() or platform.machine(),
        "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "cpu_features": [f for f in ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile") if f in flags],
        "memory_gib": round(int(memory_kb.split()[0]) / 2**20, 1) if memory_kb else None,
        "gpus": [d.name for d in tf.config.list_physical_devices("GPU")],
        "os": platform.platform(), "python": platform.python_version(),
        "tensorflow": tf.__version__, "keras": keras.__version__,
        "onednn": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "default (on for x86 Linux)"),
    }


def goals(record):
    """Each goal of issue #7 with its measured value (None where its stages did not run)."""
    inference = record.get("inference", {}).get("serving", {}).get("images_per_s")
    bf16 = record.get("inference_onednn_bf16", {}).get("serving", {}).get("images_per_s")
    first = record.get("training", {}).get(record["settings"]["presets"][0], {})
    input_over = first.get("input_over_training")
    return [
        {"goal": "SavedModel inference, default preset and size, batch 64, images/s",
         "target": GOAL_INFERENCE_IMAGES_PER_S, "measured": inference,
         "met": None if inference is None else inference >= GOAL_INFERENCE_IMAGES_PER_S},
        {"goal": "the same with TF's oneDNN bfloat16 rewrite at run time (SavedModel unchanged), images/s",
         "target": GOAL_INFERENCE_IMAGES_PER_S, "measured": bf16,
         "met": None if bf16 is None else bf16 >= GOAL_INFERENCE_IMAGES_PER_S},
        {"goal": f"input pipeline / training throughput ({record['settings']['presets'][0]})",
         "target": GOAL_INPUT_OVER_TRAINING, "measured": input_over,
         "met": None if input_over is None else input_over >= GOAL_INPUT_OVER_TRAINING},
    ]


def _figure(part):
    return f"{part['images_per_s']:,} img/s ({part['images_per_s_min']:,}–{part['images_per_s_max']:,})"


def table(record):
    """The markdown table README's Benchmarks section holds."""
    s = record["settings"]
    rows = ["| stage | measured: median (min–max) | reference | ratio | peak RSS |",
            "| --- | --- | --- | --- | --- |"]
    if "conversion" in record:
        c = record["conversion"]
        rows.append(f"| conversion, {c['images']} images {c['size']}², {c['workers']} processes | {_figure(c['convert'])} "
                    f"| decode limit {_figure(c['decode_limit'])} | {c['convert_share_of_decode_limit']} of the limit "
                    f"(takes {c['ratio_convert_to_decode']}× its time) | {c['peak_rss_mb_largest_process']:,.0f} MB (largest process) |")
    if "input" in record:
        i = record["input"]
        rows.append(f"| input pipeline, {i['stored_size']}² shards → {i['image_size']}², augment, batch {i['batch']} "
                    f"| {_figure(i['pipeline'])} | raw TFRecord read {_figure(i['read_limit'])} "
                    f"| {i['pipeline_share_of_read_limit']} of the limit | {i['peak_rss_mb']:,.0f} MB |")
    for name, t in record.get("training", {}).items():
        extra = f"; input pipeline = {t['input_over_training']}× this" if "input_over_training" in t else ""
        extra += f"; {t['over_float32']}× float32" if "over_float32" in t else ""
        peer = record["training"].get(PEER)
        reference = f"ResNet50 {_figure(peer['training'])}" if peer and name != PEER else "—"
        label = "keras.applications.ResNet50" if name == PEER else t["model"]
        rows.append(f"| training {label} ({t['parameters'] / 1e6:.2f} M), {t['image_size']}², batch {t['batch']}, "
                    f"{t['precision']} | {_figure(t['training'])} | {reference} "
                    f"| {ratio(t['training']['images_per_s'], peer['training']['images_per_s']) if peer else '—'}× the peer"
                    f"{extra} | {t['peak_rss_mb']:,.0f} MB |")
        if "training_live_input" in t:
            rows.append(f"| training {t['model']} fed by the live pipeline | {_figure(t['training_live_input'])} "
                        f"| cached batches {_figure(t['training'])} | {t['live_share_of_cached']} of cached "
                        f"| {t['peak_rss_mb_with_live_input']:,.0f} MB |")
    for stage_key, how in (("inference", ""), ("inference_onednn_bf16", ", oneDNN bf16 rewrite")):
        if stage_key not in record:
            continue
        n = record[stage_key]
        width = "" if n["width"] == 1 else f" ×{n['width']:g}"
        where = f"{n['preset']}{width}, {n['image_size']}², batch {n['batch']}{how}"
        for key, label in (("serving", "SavedModel"), ("serving_tta8", "SavedModel + 8× TTA"),
                           ("from_files", f"predict from {n['source_size']}² PNG files")):
            if key in n:
                rows.append(f"| inference: {label}, {where} | {_figure(n[key])} | paper {PAPER['images_per_s']:g} "
                            f"img/s | {n[f'{key}_share_of_paper']}× the paper | {n['peak_rss_mb']:,.0f} MB |")
    m = record["machine"]
    rows.append("")
    rows.append(f"Machine: {m['cpu']}, {m['cores']} cores ({', '.join(m['cpu_features']) or 'no AVX2'}), "
                f"{m['memory_gib']} GiB, GPUs: {', '.join(m['gpus']) or 'none'}; TensorFlow {m['tensorflow']}, "
                f"Keras {m['keras']}, Python {m['python']}. {'--quick run. ' if s['quick'] else ''}"
                f"Median of {s['repeats']} timed run{'s' if s['repeats'] > 1 else ''} after a warm-up (min–max).")
    return "\n".join(rows)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: " + ", ".join(f"{k}={v}" for k, v in QUICK.items()))
    parser.add_argument("--images", type=int, help=f"training images to generate (default {FULL['images']})")
    parser.add_argument("--size", type=int, help=f"side of the generated source images (default {FULL['size']})")
    parser.add_argument("--train-size", type=int,
                        help=f"side the models train and infer at (default {FULL['train_size']}, the paper's)")
    parser.add_argument("--batch", type=int, help=f"input pipeline and training batch (default {FULL['batch']})")
    parser.add_argument("--infer-batch", type=int, help=f"inference batch (default {FULL['infer_batch']}, the paper's)")
    parser.add_argument("--repeats", type=int, help=f"timed runs of each figure (default {FULL['repeats']})")
    parser.add_argument("--train-steps", type=int, help=f"training steps per timed run (default {FULL['train_steps']})")
    parser.add_argument("--warmup-steps", type=int, help=f"untimed training steps first (default {FULL['warmup_steps']})")
    parser.add_argument("--infer-batches", type=int, help=f"inference batches per timed run (default {FULL['infer_batches']})")
    parser.add_argument("--predict-images", type=int,
                        help=f"images predicted from files per timed run (default {FULL['predict_images']})")
    parser.add_argument("--presets", help=f"SE-ResNet presets to train, comma-separated; the first is also "
                                          f"exported (default {FULL['presets']}; --quick: {QUICK['presets']})")
    parser.add_argument("--precision", default="float32", choices=["float32", "mixed_float16", "mixed_bfloat16"],
                        help="Keras dtype policy of the trained and exported models")
    parser.add_argument("--jit-compile", action="store_true", help="compile the training step with XLA")
    parser.add_argument("--workers", type=int, default=None,
                        help="conversion processes; default: what convert picks for --images (data_prep.workers)")
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
        if preset not in PRESETS:
            parser.error(f"--presets: unknown preset {preset!r}; choose from {', '.join(PRESETS)}")
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
    settings = {key: getattr(args, key) for key in
                ("quick", "images", "size", "train_size", "batch", "infer_batch", "repeats", "warmup_steps",
                 "train_steps", "infer_batches", "predict_images", "width", "presets", "precision", "jit_compile", "workers",
                 "stages", "work")}
    log(", ".join(f"{k} {v}" for k, v in settings.items()))
    # The same cache as bench/convert.py: the source images are generated once.
    raw = os.path.join(args.work, f"raw-{args.images}-{args.size}")
    settings["raw"] = raw
    if not os.path.exists(os.path.join(raw, "train.csv")):
        log(f"generating {args.images} synthetic {args.size}² images in {raw} (cached for later runs)")
        synthetic.generate_dataset(raw, args.images, 0, args.size, seed=0)
    if {"input", "training"} & set(args.stages):
        settings["data"] = os.path.join(args.work, f"tfrecords-{args.images}-{args.size}")
        log(f"converting them to {settings['data']} (untimed; the conversion stage times its own)")
        with contextlib.redirect_stderr(io.StringIO()):
            convert_lib.convert(os.path.join(raw, "train"), settings["data"], csv_path=os.path.join(raw, "train.csv"),
                                workers=args.workers, overwrite=True)

    context = multiprocessing.get_context("spawn")
    record = {"benchmark": "protein-location: every stage against its limit (issue #7)", "settings": settings,
              "paper": PAPER}

    def stage(name, function, stage_settings):
        log(f"{name} ...")
        start = time.perf_counter()
        result = run_isolated(context, function, stage_settings)
        log(f"{name} done in {time.perf_counter() - start:.0f} s")
        return result

    if "conversion" in args.stages:
        record["conversion"] = stage("conversion", stage_conversion, settings)
    if "input" in args.stages:
        record["input"] = stage("input pipeline", stage_input, settings)
    if "training" in args.stages:
        record["training"] = {}
        for name in [*args.presets, PEER]:
            record["training"][name] = stage(f"training {name}", stage_training,
                                             {**settings, "model": name, "live_input": name == args.presets[0]})
            if "input" in record:
                record["training"][name]["input_over_training"] = ratio(
                    record["input"]["pipeline"]["images_per_s"], record["training"][name]["training"]["images_per_s"], 1)
        if args.precision == "float32":
            first = args.presets[0]
            bf16 = record["training"][f"{first}_mixed_bfloat16"] = stage(
                f"training {first}, mixed_bfloat16", stage_training,
                {**settings, "model": first, "precision": "mixed_bfloat16", "live_input": False})
            bf16["over_float32"] = ratio(bf16["training"]["images_per_s"],
                                         record["training"][first]["training"]["images_per_s"])
    if "inference" in args.stages:
        record["inference"] = stage("inference", stage_inference, settings)
        record["inference_onednn_bf16"] = stage(
            "inference, oneDNN bfloat16 rewrite", stage_inference,
            {**settings, "onednn_bf16": True, "saved_model": record["inference"]["saved_model"]})
    record["goals"] = goals(record)
    record["machine"] = machine()
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
    from bench.run import main as _main  # as bench.run, so the stage processes can import its functions

    _main()
