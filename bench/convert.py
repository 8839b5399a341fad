"""Conversion throughput against its decode limit, and peak memory.

    python bench/convert.py --images 2000 --size 512 --workers 2

Generates a synthetic HPA-layout dataset (cached under --work), then in one
run, alternating, `--repeats` times each:
- decode limit: W processes that only read and decode the same channel files
  (cv2.imdecode), nothing else; started once, before the timings;
- TF decode limit: the same with the project's own decoder, the TensorFlow
  ops conversion and serving share (`core.raw_images.read_image` at the
  stored size: header check, decode, the stain rule), W processes;
- conversion: `data_prep.convert.convert` with the same W, timed whole, the
  start of its spawned workers (each imports TensorFlow) included.
Prints a JSON record: median/min/max seconds and images/s of each, the ratio
conversion / decode limit, and the peak resident memory of the largest process
of a separate `python -m data_prep convert` run. A benchmark, not a test.
"""

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import cv2  # noqa: E402
import numpy as np  # noqa: E402

# Not data_prep.convert here: the decode workers import this module, and need no TensorFlow.
from data_prep import synthetic, workers as workers_lib  # noqa: E402
from protein_location.core import labels  # noqa: E402


def decode_only(task):
    """The decode limit's unit of work: read and decode the four channel files."""
    images_dir, image_id = task
    for channel in labels.CHANNELS:
        with open(os.path.join(images_dir, f"{image_id}_{channel}.png"), "rb") as f:
            cv2.imdecode(np.frombuffer(f.read(), np.uint8), cv2.IMREAD_UNCHANGED)


def decode_only_tf(task):
    """The same with the project's decoder (TensorFlow ops): what conversion runs per image."""
    from protein_location.core import raw_images

    raw_images.read_image(*task)


def time_decode(pool, images_dir, ids, decode=decode_only):
    start = time.perf_counter()
    for _ in pool.imap(decode, [(images_dir, i) for i in ids], chunksize=4):
        pass
    return time.perf_counter() - start


def time_convert(raw, out, workers, png_compression):
    from data_prep import convert

    start = time.perf_counter()
    convert.convert(os.path.join(raw, "train"), out, csv_path=os.path.join(raw, "train.csv"),
                    workers=workers, png_compression=png_compression, overwrite=True)
    return time.perf_counter() - start


def peak_memory_mb(raw, out, workers, png_compression):
    """Peak RSS of the largest process of a CLI conversion (converter or worker)."""
    command = [sys.executable, "-m", "data_prep", "convert", "--csv", os.path.join(raw, "train.csv"),
               "--images", os.path.join(raw, "train"), "--out", out, "--workers", str(workers), "--png-compression", str(png_compression), "--overwrite"]
    subprocess.run(command, check=True, capture_output=True,
                   cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def summary(seconds, count):
    return {"median_s": round(statistics.median(seconds), 3), "min_s": round(min(seconds), 3),
            "max_s": round(max(seconds), 3), "images_per_s": round(count / statistics.median(seconds), 1)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--images", type=int, default=2000, help="training images to generate")
    parser.add_argument("--size", type=int, default=512, help="side of the generated images")
    parser.add_argument("--workers", type=int, default=os.cpu_count(), help="processes for both measurements")
    parser.add_argument("--png-compression", type=int, default=0, help="convert's --png-compression")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each measurement (after a warm-up)")
    parser.add_argument("--work", default="/tmp/protein-location-bench", help="cache of generated data and output")
    parser.add_argument("--out", default=None, help="also write the JSON record here")
    args = parser.parse_args(argv)

    raw = os.path.join(args.work, f"raw-{args.images}-{args.size}")
    if not os.path.exists(os.path.join(raw, "train.csv")):
        synthetic.generate_dataset(raw, args.images, 0, args.size, seed=0)
    ids = [line.split(",")[0] for line in open(os.path.join(raw, "train.csv")).read().splitlines()[1:]]
    out = os.path.join(args.work, "tfrecords")

    decode, decode_tf, conversion = [], [], []
    images = os.path.join(raw, "train")
    with workers_lib.process_pool(args.workers) as pool, \
            workers_lib.process_pool(args.workers, preload="protein_location.core.raw_images") as tf_pool:
        time_decode(pool, images, ids[:64])  # warm-up: page cache, workers' imports
        time_decode(tf_pool, images, ids[:64], decode_only_tf)
        for _ in range(args.repeats):
            decode.append(time_decode(pool, images, ids))
            decode_tf.append(time_decode(tf_pool, images, ids, decode_only_tf))
            conversion.append(time_convert(raw, out, args.workers, args.png_compression))
    source_mb = sum(os.path.getsize(os.path.join(raw, "train", n)) for n in os.listdir(os.path.join(raw, "train")))
    shards_mb = sum(os.path.getsize(os.path.join(out, n)) for n in os.listdir(out) if n.endswith(".tfrecord"))
    record = {
        "benchmark": "convert",
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "images": len(ids), "size": args.size, "workers": args.workers, "repeats": args.repeats,
        "png_compression": args.png_compression,
        "source_mb": round(source_mb / 2**20, 1), "shards_mb": round(shards_mb / 2**20, 1),
        "decode_limit": summary(decode, len(ids)),
        "decode_limit_tf": summary(decode_tf, len(ids)),
        "convert": summary(conversion, len(ids)),
        "ratio_convert_to_decode": round(statistics.median(conversion) / statistics.median(decode), 3),
        "ratio_tf_decode_to_opencv_decode": round(statistics.median(decode_tf) / statistics.median(decode), 3),
        "ratio_convert_to_tf_decode": round(statistics.median(conversion) / statistics.median(decode_tf), 3),
        "peak_rss_mb_largest_process": round(peak_memory_mb(raw, out, args.workers, args.png_compression), 1),
    }
    shutil.rmtree(out, ignore_errors=True)
    text = json.dumps(record, indent=2)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    return record


if __name__ == "__main__":
    main()
