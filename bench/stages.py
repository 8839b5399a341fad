"""The benchmark's stages, each measured against its limit (bench/run.py
runs each in its own process): conversion, the input pipeline, training
steps of each model, SavedModel inference."""

import contextlib
import io
import os
import shutil
import time

import keras
import numpy as np
import tensorflow as tf

from bench import convert as convert_bench
from bench.measure import peak_rss_mb, ratio, rss_mb, summary, time_alternating, timed
from protein_location import export, models
from protein_location.core import labels as labels_lib, labels_csv, manifest as manifest_lib, raw_images, records
from protein_location.data import input_reader
from protein_location.inference import predict, serving as serving_lib
from protein_location.training import task
from protein_location.training.config import TrainConfig

STAGES = ("conversion", "input", "training", "inference")
PRESETS = tuple(models.PRESETS)  # the default rows: our SE-ResNets
ARCHITECTURES = tuple(models.ARCHITECTURES)  # what --presets takes: every --arch
PEER = "keras_resnet50"
PAPER = {
    "images_per_s": 75.0,
    "seconds_per_image": 0.0128,
    "batch": 64,
    "image_size": 224,
    "hardware": "one Tesla P100 and 16 CPU cores",
    "source": "Chen (2020)",
}
GOAL_INFERENCE_IMAGES_PER_S = 75.0
GOAL_INPUT_OVER_TRAINING = 5.0
# Issue 16: twice the paper's P100 figure from the images users have (512²),
# and predict from files at 0.85 of decode and inference costs added per image.
GOAL_FROM_SOURCE_IMAGES_PER_S = 150.0
GOAL_FROM_FILES_SHARE = 0.85


def stage_conversion(settings):
    """bench/convert.py as it is: conversion vs the decode limit, peak memory."""
    argv = [
        "--images",
        settings["images"],
        "--size",
        settings["size"],
        "--workers",
        settings["workers"],
        "--repeats",
        settings["repeats"],
        "--work",
        settings["work"],
    ]
    argv += ["--source", settings["source"]] if settings.get("source") else []
    argv += ["--image-format", settings["image_format"]]
    with contextlib.redirect_stdout(io.StringIO()):  # it prints its record; we return it
        record = convert_bench.main([str(a) for a in argv])
    for key in ("decode_limit", "convert", "convert_less_worker_start"):  # the same fields as every other figure here
        part, images = record[key], record["images"]
        # from its seconds, rounded to ms: keep min <= median <= max
        record[key] = {
            **part,
            "images": images,
            "runs": record["repeats"],
            "images_per_s_min": min(round(images / part["max_s"], 1), part["images_per_s"]),
            "images_per_s_max": max(round(images / part["min_s"], 1), part["images_per_s"]),
        }
    for key in ("convert", "convert_less_worker_start"):
        record[f"{key}_share_of_decode_limit"] = ratio(
            record[key]["images_per_s"], record["decode_limit"]["images_per_s"]
        )
    return record


def stage_input(settings):
    """The training tf.data pipeline vs a raw read of the same shards, and
    the records' parse and decode alone between them (one epoch per run)."""
    data, batch = settings["data"], settings["batch"]
    manifest = manifest_lib.DatasetManifest.read(data)
    files, count, _ = manifest.summary("train")
    serialized = tf.data.Dataset.from_tensor_slices(files).interleave(
        tf.data.TFRecordDataset,
        cycle_length=min(len(files), 16),
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True,
    )
    read = serialized.batch(batch).prefetch(tf.data.AUTOTUNE)
    num_classes = manifest.num_classes
    decode = (
        serialized.map(
            lambda example: records.parse_example(example, num_classes)["image"], num_parallel_calls=tf.data.AUTOTUNE
        )
        .batch(batch)
        .prefetch(tf.data.AUTOTUNE)
    )
    # One epoch of the endless training stream.
    pipeline = input_reader.make_dataset(data, "train", batch, image_size=settings["train_size"], training=True).take(
        count // batch
    )

    def drain(dataset):
        for _ in dataset:
            pass

    baseline = rss_mb()
    seconds = time_alternating(
        {"read_limit": lambda: drain(read), "decode": lambda: drain(decode), "pipeline": lambda: drain(pipeline)},
        settings["repeats"],
    )
    read_limit = summary(seconds["read_limit"], count)
    decoded = summary(seconds["decode"], count)
    delivered = summary(seconds["pipeline"], count // batch * batch)
    return {
        "split": "train",
        "shards": len(files),
        "stored_size": manifest.image_size,
        "image_format": manifest.image_format,
        "image_size": settings["train_size"],
        "batch": batch,
        "augment": "default (flips/rotations)",
        "read_limit": read_limit,
        "decode": decoded,
        "pipeline": delivered,
        "pipeline_share_of_read_limit": ratio(delivered["images_per_s"], read_limit["images_per_s"]),
        "baseline_rss_mb": baseline,
        "peak_rss_mb": peak_rss_mb(),
    }


def model_width(arch, width):
    """--width applies to the SE-ResNet presets; a keras.applications backbone has one."""
    return width if arch in models.PRESETS else 1.0


def stage_training(settings):
    """Training steps of one model on cached batches of the training pipeline;
    with settings["live_input"], also fed by the live pipeline."""
    keras.utils.set_random_seed(0)
    keras.mixed_precision.set_global_policy(settings["precision"])
    data, batch, size, name = settings["data"], settings["batch"], settings["train_size"], settings["model"]
    steps, warmup = settings["train_steps"], settings["warmup_steps"]
    manifest = manifest_lib.DatasetManifest.read(data)
    _, count, label_counts = manifest.summary("train")
    # The same batches for every model (seed 0); a small shuffle buffer keeps
    # the raw records out of this process's peak memory.
    cached = list(
        input_reader.make_dataset(data, "train", batch, size, training=True, seed=0, shuffle_buffer=batch).take(
            max(steps, warmup)
        )
    )
    config = TrainConfig(
        data=data,
        model_dir="",
        batch_size=batch,
        image_size=size,
        arch=name,
        width=model_width(name, settings["width"]),
        precision=settings["precision"],
        jit_compile=settings["jit_compile"],
    )
    baseline = rss_mb()
    steps_per_epoch = max(count // batch, 1)
    if name == PEER:
        # Compiled as a run compiles an SE-ResNet (training.task): AdamW, the loss, macro F1 and AUC.
        model = task.compile_model(
            keras.applications.ResNet50(
                weights=None, input_shape=(size, size, 4), classes=manifest.num_classes, classifier_activation="sigmoid"
            ),
            config,
            steps_per_epoch,
        )
    else:
        model = task.build_and_compile(config, manifest, label_counts, count, steps_per_epoch)

    def run_steps(next_batch, count):
        for step in range(count):
            model.train_on_batch(*next_batch(step))

    start = time.perf_counter()
    run_steps(lambda step: cached[step % len(cached)], warmup)  # tracing, oneDNN primitive creation
    warmup_s = time.perf_counter() - start
    seconds = [
        timed(lambda: run_steps(lambda step: cached[step % len(cached)], steps)) for _ in range(settings["repeats"])
    ]
    # Inference in graph mode on a batch of the inference size: the SavedModel's
    # computation less its resize, for every architecture in one run.
    infer = tf.function(lambda images: model(images, training=False))
    images = tf.concat([cached[0][0]] * -(-settings["infer_batch"] // batch), axis=0)[: settings["infer_batch"]]
    infer(images)
    inference = [timed(lambda: infer(images).numpy()) for _ in range(settings["repeats"])]
    result = {
        "model": model.name,
        "parameters": model.count_params(),
        "image_size": size,
        "batch": batch,
        "inference": summary(inference, int(images.shape[0])),
        "infer_batch": int(images.shape[0]),
        "precision": settings["precision"],
        "jit_compile": settings["jit_compile"],
        "steps_per_run": steps,
        "warmup_steps": warmup,
        "warmup_s": round(warmup_s, 1),
        "training": summary(seconds, steps * batch),
        "baseline_rss_mb": baseline,
        "peak_rss_mb": peak_rss_mb(),
    }
    if settings.get("live_input"):
        # As model.fit is fed: the real pipeline (default shuffle buffer), sharing the cores.
        iterator = iter(input_reader.make_dataset(data, "train", batch, size, training=True, seed=1))
        run_steps(lambda step: next(iterator), warmup)
        live = [timed(lambda: run_steps(lambda step: next(iterator), steps)) for _ in range(settings["repeats"])]
        result["training_live_input"] = summary(live, steps * batch)
        result["live_share_of_cached"] = ratio(
            result["training_live_input"]["images_per_s"], result["training"]["images_per_s"]
        )
        result["peak_rss_mb_with_live_input"] = peak_rss_mb()
    return result


def stage_inference(settings):
    """The exported SavedModel: in-memory batches with and without 8x TTA, and
    from files via predict. With settings["onednn_bf16"], the SavedModel
    already written, run with TF's oneDNN bfloat16 graph rewrite (a runtime
    option: the SavedModel stays float32, as `predict --precision bfloat16`)."""
    bf16 = settings.get("onednn_bf16", False)
    if bf16:
        tf.config.optimizer.set_experimental_options({"auto_mixed_precision_onednn_bfloat16": True})
    keras.utils.set_random_seed(0)
    keras.mixed_precision.set_global_policy(settings["precision"])
    size, batch, preset = settings["train_size"], settings["infer_batch"], settings["presets"][0]
    images_dir = os.path.join(settings["raw"], "train")
    ids = [image_id for image_id, _ in labels_csv.read_labels_csv(os.path.join(settings["raw"], "train.csv"))[0]]
    baseline = rss_mb()
    result = {
        "preset": preset,
        "width": settings["width"],
        "image_size": size,
        "batch": batch,
        "source_size": settings["size"],
        "precision": settings["precision"],
        "onednn_bf16_rewrite": bf16,
        "signature": export.SINGLE_VIEW_SIGNATURE,
        "tta8_signature": export.SIGNATURE,
    }
    path = settings.get("saved_model")
    if path is None:
        base = os.path.join(settings["work"], "export")
        shutil.rmtree(base, ignore_errors=True)
        model = models.build_classifier(preset, image_size=size, width=model_width(preset, settings["width"]))
        start = time.perf_counter()
        # The bench's data is synthetic, in the HPA 2018 label set.
        class_names = labels_lib.HPA2018.class_names
        cuts = np.full(len(class_names), 0.5, np.float32)
        path = export.export_saved_model(model, cuts, base, class_names, tta_thresholds=cuts)
        result["export_s"] = round(time.perf_counter() - start, 1)
        del model
    result["saved_model"] = path
    start = time.perf_counter()
    single_view = serving_lib.load_serving_model(path, tta=1)  # serving_single_view
    serve = single_view.serve
    result["load_s"] = round(time.perf_counter() - start, 1)
    serve_tta8 = serving_lib.load_serving_model(path, tta=8).serve  # serving_default, the 8 views in one call
    # Real images at the model size: the serving signature's resize is then the identity.
    images = tf.constant(np.stack([raw_images.read_image(images_dir, ids[i % len(ids)], size) for i in range(batch)]))
    # The images users have, at the source size (the Kaggle 512²): the signature resizes them.
    source_images = tf.constant(np.stack([raw_images.read_image(images_dir, ids[i % len(ids)]) for i in range(batch)]))
    file_ids = [ids[i % len(ids)] for i in range(settings["predict_images"])]

    def serving():
        for _ in range(settings["infer_batches"]):
            serve(image=images)["probabilities"].numpy()

    def serving_from_source():
        serve(image=source_images)["probabilities"].numpy()

    def serving_tta8():
        serve_tta8(image=images)["probabilities"].numpy()

    def from_files():  # predict's path, the SavedModel loaded once: read, decode, resize the PNGs in tf.data, infer
        predict.predict_images(single_view, images_dir, file_ids, batch_size=batch, tta=1)

    def decode_files():  # predict's input pipeline alone: its limit when nothing else runs
        for _ in raw_images.image_dataset(images_dir, file_ids, size).batch(batch).prefetch(2):
            pass

    functions = {
        "serving": serving,
        "serving_from_source": serving_from_source,
        "serving_tta8": serving_tta8,
        "from_files": from_files,
        "decode_files": decode_files,
    }
    counts = {
        "serving": settings["infer_batches"] * batch,
        "serving_from_source": batch,
        "serving_tta8": batch,
        "from_files": len(file_ids),
        "decode_files": len(file_ids),
    }
    seconds = time_alternating(functions, settings["repeats"])
    for key in functions:
        result[key] = summary(seconds[key], counts[key])
        result[f"{key}_share_of_paper"] = ratio(result[key]["images_per_s"], PAPER["images_per_s"])
    # Decoding and inference overlapped on the same cores: the limit is their costs added per image.
    added = 1 / (1 / result["decode_files"]["images_per_s"] + 1 / result["serving"]["images_per_s"])
    result["from_files_added_limit_images_per_s"] = round(added, 1)
    result["from_files_share_of_added_limit"] = ratio(result["from_files"]["images_per_s"], added)
    result.update(baseline_rss_mb=baseline, peak_rss_mb=peak_rss_mb())
    return result
