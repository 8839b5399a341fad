"""The benchmark's record as people read it: the machine, the goals and the
markdown table docs/benchmarks.md holds."""

import os
import platform

import keras
import tensorflow as tf

from bench.measure import ratio
from bench.stages import (
    GOAL_FROM_FILES_SHARE,
    GOAL_FROM_SOURCE_IMAGES_PER_S,
    GOAL_INFERENCE_IMAGES_PER_S,
    GOAL_INPUT_OVER_TRAINING,
    PAPER,
    PEER,
)
from protein_location.core import device_precision


def machine():
    def first(path, prefix):
        try:
            with open(path) as f:
                return next((line.split(":", 1)[1].strip() for line in f if line.startswith(prefix)), None)
        except OSError:
            return None

    flags = device_precision.cpu_flags()
    memory_kb = first("/proc/meminfo", "MemTotal")
    return {
        "cpu": first("/proc/cpuinfo", "model name") or platform.processor() or platform.machine(),
        "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "cpu_features": [f for f in ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile") if f in flags],
        "memory_gib": round(int(memory_kb.split()[0]) / 2**20, 1) if memory_kb else None,
        "gpus": [d.name for d in tf.config.list_physical_devices("GPU")],
        "os": platform.platform(),
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "onednn": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "default (on for x86 Linux)"),
        "predict_auto_precision": device_precision.inference_precision(
            "auto", len(tf.config.list_physical_devices("GPU"))
        )[0],
    }


def goals(record):
    """Each goal of issue #7 with its measured value (None where its stages did not run)."""
    inference = record.get("inference", {}).get("serving", {}).get("images_per_s")
    bf16 = record.get("inference_onednn_bf16", {}).get("serving", {}).get("images_per_s")
    first = record.get("training", {}).get(record["settings"]["presets"][0], {})
    input_over = first.get("input_over_training")
    # The issue-16 goals are held at the precision predict's auto picks on this CPU.
    auto = record.get(
        "inference_onednn_bf16" if record["machine"].get("predict_auto_precision") == "bfloat16" else "inference", {}
    )
    from_source = auto.get("serving_from_source", {}).get("images_per_s")
    share = auto.get("from_files_share_of_added_limit")
    return [
        {
            "goal": "SavedModel inference, default preset and size, batch 64, images/s",
            "target": GOAL_INFERENCE_IMAGES_PER_S,
            "measured": inference,
            "met": None if inference is None else inference >= GOAL_INFERENCE_IMAGES_PER_S,
        },
        {
            "goal": "the same with TF's oneDNN bfloat16 rewrite at run time (SavedModel unchanged), images/s",
            "target": GOAL_INFERENCE_IMAGES_PER_S,
            "measured": bf16,
            "met": None if bf16 is None else bf16 >= GOAL_INFERENCE_IMAGES_PER_S,
        },
        {
            "goal": "SavedModel from the source size (512²), batch 64, at predict's auto precision, images/s",
            "target": GOAL_FROM_SOURCE_IMAGES_PER_S,
            "measured": from_source,
            "met": None if from_source is None else from_source >= GOAL_FROM_SOURCE_IMAGES_PER_S,
        },
        {
            "goal": "predict from PNG files at predict's auto precision, share of the added-cost limit",
            "target": GOAL_FROM_FILES_SHARE,
            "measured": share,
            "met": None if share is None else share >= GOAL_FROM_FILES_SHARE,
        },
        {
            "goal": f"input pipeline / training throughput ({record['settings']['presets'][0]})",
            "target": GOAL_INPUT_OVER_TRAINING,
            "measured": input_over,
            "met": None if input_over is None else input_over >= GOAL_INPUT_OVER_TRAINING,
        },
    ]


def _figure(part):
    return f"{part['images_per_s']:,} img/s ({part['images_per_s_min']:,}–{part['images_per_s_max']:,})"


def table(record):
    """The markdown table docs/benchmarks.md holds."""
    s = record["settings"]
    rows = ["| stage | measured: median (min–max) | reference | ratio | peak RSS |", "| --- | --- | --- | --- | --- |"]
    if "conversion" in record:
        c = record["conversion"]
        real = "" if c["source"].startswith("synthetic") else f" of {os.path.basename(c['source'])} (real files)"
        rows.append(
            f"| conversion, {c['images']} images {c['size']}²{real}, {c['workers']} processes "
            f"| {_figure(c['convert'])} | decode limit {_figure(c['decode_limit'])} "
            f"| {c['convert_share_of_decode_limit']} of the limit "
            f"(takes {c['ratio_convert_to_decode']}× its time) "
            f"| {c['peak_rss_mb_largest_process']:,.0f} MB (largest process) |"
        )
        rows.append(
            f"| conversion per image, less the {c['worker_start_s']} s start of its worker processes "
            f"| {_figure(c['convert_less_worker_start'])} | decode limit | "
            f"{c['convert_less_worker_start_share_of_decode_limit']} of the limit "
            f"(takes {c['ratio_per_image_convert_to_decode']}× its time) | |"
        )
    if "input" in record:
        i = record["input"]
        rows.append(
            f"| input pipeline, {i['stored_size']}² {i['image_format']} shards → {i['image_size']}², augment, "
            f"batch {i['batch']} "
            f"| {_figure(i['pipeline'])} | raw TFRecord read {_figure(i['read_limit'])} "
            f"| {i['pipeline_share_of_read_limit']} of the limit | {i['peak_rss_mb']:,.0f} MB |"
        )
        rows.append(
            f"| input: parse and decode the {i['image_format']} records alone | {_figure(i['decode'])} "
            f"| raw TFRecord read | {ratio(i['decode']['images_per_s'], i['read_limit']['images_per_s'])} "
            f"of the limit | |"
        )
    for name, t in record.get("training", {}).items():
        extra = f"; input pipeline = {t['input_over_training']}× this" if "input_over_training" in t else ""
        extra += f"; {t['over_float32']}× float32" if "over_float32" in t else ""
        peer = record["training"].get(PEER)
        reference = f"ResNet50 {_figure(peer['training'])}" if peer and name != PEER else "—"
        label = "keras.applications.ResNet50" if name == PEER else t["model"]
        rows.append(
            f"| training {label} ({t['parameters'] / 1e6:.2f} M), {t['image_size']}², batch {t['batch']}, "
            f"{t['precision']} | {_figure(t['training'])} | {reference} | "
            f"{ratio(t['training']['images_per_s'], peer['training']['images_per_s']) if peer else '—'}"
            f"× the peer{extra} | {t['peak_rss_mb']:,.0f} MB |"
        )
        if "inference" in t:
            rows.append(
                f"| inference {label}, Keras model in graph mode, {t['image_size']}², "
                f"batch {t['infer_batch']}, {t['precision']} | {_figure(t['inference'])} "
                f"| paper {PAPER['images_per_s']:g} img/s "
                f"| {ratio(t['inference']['images_per_s'], PAPER['images_per_s'])}× the paper "
                f"| {t['peak_rss_mb']:,.0f} MB |"
            )
        if "training_live_input" in t:
            rows.append(
                f"| training {t['model']} fed by the live pipeline | {_figure(t['training_live_input'])} "
                f"| cached batches {_figure(t['training'])} | {t['live_share_of_cached']} of cached "
                f"| {t['peak_rss_mb_with_live_input']:,.0f} MB |"
            )
    for stage_key, how in (("inference", ""), ("inference_onednn_bf16", ", oneDNN bf16 rewrite")):
        if stage_key not in record:
            continue
        n = record[stage_key]
        width = "" if n["width"] == 1 else f" ×{n['width']:g}"
        where = f"{n['preset']}{width}, {n['image_size']}², batch {n['batch']}{how}"
        for key, label in (
            ("serving", "SavedModel"),
            ("serving_from_source", f"SavedModel from {n['source_size']}² uint8 (resized inside)"),
            ("serving_tta8", "SavedModel + 8× TTA"),
            ("from_files", f"predict from {n['source_size']}² PNG files"),
        ):
            if key in n:
                rows.append(
                    f"| inference: {label}, {where} | {_figure(n[key])} | paper {PAPER['images_per_s']:g} "
                    f"img/s | {n[f'{key}_share_of_paper']}× the paper | {n['peak_rss_mb']:,.0f} MB |"
                )
        if "decode_files" in n:
            rows.append(
                f"| predict's input alone: read, decode, resize {n['source_size']}² PNGs → {n['image_size']}² "
                f"| {_figure(n['decode_files'])} | — | predict from files: "
                f"{n['from_files_share_of_added_limit']} of the added-cost limit "
                f"{n['from_files_added_limit_images_per_s']:,} img/s "
                f"(1 / (1/decode + 1/SavedModel)) | {n['peak_rss_mb']:,.0f} MB |"
            )
    m = record["machine"]
    rows.append("")
    rows.append(
        f"Machine: {m['cpu']}, {m['cores']} cores ({', '.join(m['cpu_features']) or 'no AVX2'}), "
        f"{m['memory_gib']} GiB, GPUs: {', '.join(m['gpus']) or 'none'}; TensorFlow {m['tensorflow']}, "
        f"Keras {m['keras']}, Python {m['python']}. {'--quick run. ' if s['quick'] else ''}"
        f"Median of {s['repeats']} timed run{'s' if s['repeats'] > 1 else ''} after a warm-up (min–max)."
    )
    return "\n".join(rows)
