"""Conversion throughput against its decode limit, and peak memory.

    python bench/convert.py --images 2000 --size 512 --workers 2
    python bench/convert.py --source ../shared/hpa-samples/kaggle2018 --images 1020

Generates a synthetic HPA-layout dataset (cached under --work), or with
--source takes a real raw folder (train.csv + train/, e.g. the HPA sample
files) and replicates its Ids to --images by symbolic links (`replicate_raw`),
then in one run, alternating, `--repeats` times each:
- decode limit: W processes that only read and decode the same channel files
  (cv2.imdecode), nothing else; started once, before the timings;
- the conversion reader's limit: the same with conversion's own reader
  (`data_prep.stain_reader.read_image` at the stored size: header check,
  decode by OpenCV for grayscale PNGs, TensorFlow's ops otherwise, the
  stain rule), W processes;
- conversion: `data_prep.convert.convert` with the same W, timed whole, the
  start of its spawned workers included; and the
  per-image cost without that fixed start: the conversion's time less the
  time W spawned workers take to import the shard writer and run a first
  task (`time_worker_start`, what conversion's pool pays before any image).
Prints a JSON record: median/min/max seconds and images/s of each, the ratio
conversion / decode limit, and the peak resident memory of the largest process
of a separate `python -m data_prep convert` run; with --breakdown N, the
milliseconds per image of each step of a worker, timed one by one in one
process on N images (`breakdown`). A benchmark, not a test.
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


def replicate_raw(source, count, out):
    """A raw folder of `count` Ids, each a symbolic link to the files of an Id
    of `source` in turn (`<Id>-<k>`, labels kept): real files, in the number
    a benchmark needs. Returns `out`."""
    with open(os.path.join(source, "train.csv")) as f:
        header, *rows = [line.split(",", 1) for line in f.read().splitlines() if line]
    names = sorted(os.listdir(os.path.join(source, "train")))
    os.makedirs(os.path.join(out, "train"), exist_ok=True)
    lines = [",".join(header)]
    for k in range(count):
        image_id, target = rows[k % len(rows)]
        copy = f"{image_id}-{k:05d}"
        for name in names:
            if name.startswith(image_id + "_"):
                link = os.path.join(out, "train", copy + name[len(image_id) :])
                if not os.path.lexists(link):
                    os.symlink(os.path.abspath(os.path.join(source, "train", name)), link)
        lines.append(f"{copy},{target}")
    with open(os.path.join(out, "train.csv"), "w") as f:
        f.write("\n".join(lines) + "\n")
    return out


def raw_folder(work, images, size, source=None):
    """The benchmark's raw folder: generated (cached), or `source` replicated."""
    if source:
        return replicate_raw(
            source, images, os.path.join(work, f"source-{os.path.basename(os.path.abspath(source))}-{images}")
        )
    raw = os.path.join(work, f"raw-{images}-{size}")
    if not os.path.exists(os.path.join(raw, "train.csv")):
        synthetic.generate_dataset(raw, images, 0, size, seed=0)
    return raw


def decode_only(task):
    """The decode limit's unit of work: read and decode the four channel files."""
    images_dir, image_id = task
    for channel in labels.CHANNELS:
        name = next(
            n
            for n in (f"{image_id}_{channel}{e}" for e in (".png", ".jpg", ".jpeg"))
            if os.path.exists(os.path.join(images_dir, n))
        )
        with open(os.path.join(images_dir, name), "rb") as f:
            cv2.imdecode(np.frombuffer(f.read(), np.uint8), cv2.IMREAD_UNCHANGED)


def decode_with_reader(task):
    """The same with conversion's reader: what conversion runs per image."""
    from data_prep import stain_reader

    stain_reader.read_image(*task)


def time_decode(pool, images_dir, ids, decode=decode_only):
    start = time.perf_counter()
    for _ in pool.imap(decode, [(images_dir, i) for i in ids], chunksize=4):
        pass
    return time.perf_counter() - start


def time_convert(raw, out, workers, image_format, png_compression, size=None):
    from data_prep import convert

    start = time.perf_counter()
    convert.convert(
        os.path.join(raw, "train"),
        out,
        csv_path=os.path.join(raw, "train.csv"),
        size=size,
        workers=workers,
        image_format=image_format,
        png_compression=png_compression,
        overwrite=True,
    )
    return time.perf_counter() - start


def _task_start(_):
    time.sleep(0.05)  # long enough that every worker takes a task
    return os.getpid(), time.time()


def time_worker_start(workers):
    """Seconds from creating conversion's pool (W spawned workers importing
    `data_prep.shard_writer`, no TensorFlow) to the last worker's first task."""
    start = time.time()
    with workers_lib.process_pool(workers, preload="data_prep.shard_writer") as pool:
        first = {}
        for pid, at in pool.map(_task_start, range(4 * workers), chunksize=1):
            first[pid] = min(at, first.get(pid, at))
    return max(first.values()) - start if workers > 1 else 0.0


def peak_memory_mb(raw, out, workers, image_format, png_compression):
    """Peak RSS of the largest process of a CLI conversion (converter or worker)."""
    command = [
        sys.executable,
        "-m",
        "data_prep",
        "convert",
        "--csv",
        os.path.join(raw, "train.csv"),
        "--images",
        os.path.join(raw, "train"),
        "--out",
        out,
        "--workers",
        str(workers),
        "--image-format",
        image_format,
        "--png-compression",
        str(png_compression),
        "--overwrite",
    ]
    subprocess.run(
        command, check=True, capture_output=True, cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    )
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def breakdown(images_dir, ids, out_dir, image_format, png_compression):
    """Milliseconds per image of each step a conversion worker takes
    (`shard_writer.write_shard`), timed one by one in this process on `ids`:
    where the time beyond decoding goes."""
    import tensorflow as tf

    from data_prep import stain_reader, tfrecord_lib
    from protein_location.core import manifest as manifest_lib

    steps = dict.fromkeys(
        (
            "opencv decode alone (the limit's unit)",
            "read and decode (stain_reader)",
            "channel sums (meanStdDev)",
            f"encode ({image_format})",
            "serialize the Example",
            "TFRecord write",
            "sha256 of the shard",
            "rename into place",
        ),
        0.0,
    )
    names = list(steps)

    def timed(name, function, *args):
        start = time.perf_counter()
        value = function(*args)
        steps[name] += time.perf_counter() - start
        return value

    path = os.path.join(out_dir, "breakdown.tfrecord")
    os.makedirs(out_dir, exist_ok=True)
    with tf.io.TFRecordWriter(path + ".tmp") as writer:
        for image_id in ids:
            timed(names[0], decode_only, (images_dir, image_id))
            image = timed(names[1], stain_reader.read_image, images_dir, image_id)
            timed(names[2], cv2.meanStdDev, image)
            encoded = timed(names[3], tfrecord_lib.encode_rgby, image, image_format, png_compression)
            example = timed(
                names[4], tfrecord_lib.serialize_encoded, encoded, image_format, *image.shape[:2], image_id, [0]
            )
            timed(names[5], writer.write, example)
    timed(names[6], manifest_lib.file_sha256, path + ".tmp")
    timed(names[7], os.replace, path + ".tmp", path)
    os.remove(path)
    per_image = {name: round(seconds / len(ids) * 1000, 2) for name, seconds in steps.items()}
    worker = sum(per_image[name] for name in names[1:])
    return {
        "images": len(ids),
        "ms_per_image": per_image,
        "worker_ms_per_image": round(worker, 2),
        "ratio_worker_to_decode": round(worker / per_image[names[0]], 3),
    }


def emit_record(record, out=None):
    """Prints a benchmark's JSON record, and writes it to `out` when given; returns the record."""
    text = json.dumps(record, indent=2)
    print(text)
    if out:
        with open(out, "w") as f:
            f.write(text + "\n")
    return record


def summary(seconds, count):
    return {
        "median_s": round(statistics.median(seconds), 3),
        "min_s": round(min(seconds), 3),
        "max_s": round(max(seconds), 3),
        "images_per_s": round(count / statistics.median(seconds), 1),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--images", type=int, default=2000, help="training images to generate (or replicate)")
    parser.add_argument("--size", type=int, default=512, help="side of the generated images")
    parser.add_argument(
        "--source", default=None, help="a real raw folder (train.csv + train/) to replicate to --images instead"
    )
    parser.add_argument("--workers", type=int, default=os.cpu_count(), help="processes for both measurements")
    parser.add_argument("--out-size", type=int, default=None, help="convert's --size (default: the source size)")
    parser.add_argument("--image-format", default="png", choices=("png", "raw"), help="convert's --image-format")
    parser.add_argument("--png-compression", type=int, default=0, help="convert's --png-compression")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each measurement (after a warm-up)")
    parser.add_argument("--work", default="/tmp/protein-location-bench", help="cache of generated data and output")
    parser.add_argument(
        "--breakdown",
        type=int,
        default=0,
        help="also time each step of a worker, one by one, on this many images in one process",
    )
    parser.add_argument("--out", default=None, help="also write the JSON record here")
    args = parser.parse_args(argv)

    raw = raw_folder(args.work, args.images, args.size, args.source)
    ids = [line.split(",")[0] for line in open(os.path.join(raw, "train.csv")).read().splitlines()[1:]]
    out = os.path.join(args.work, "tfrecords")

    decode, decode_reader, conversion, start_up = [], [], [], []
    images = os.path.join(raw, "train")
    with (
        workers_lib.process_pool(args.workers) as pool,
        workers_lib.process_pool(args.workers, preload="data_prep.stain_reader") as tf_pool,
    ):
        time_decode(pool, images, ids[:64])  # warm-up: page cache, workers' imports
        time_decode(tf_pool, images, ids[:64], decode_with_reader)
        for _ in range(args.repeats):
            decode.append(time_decode(pool, images, ids))
            decode_reader.append(time_decode(tf_pool, images, ids, decode_with_reader))
            conversion.append(
                time_convert(raw, out, args.workers, args.image_format, args.png_compression, args.out_size)
            )
            start_up.append(time_worker_start(args.workers))
    size = int(json.load(open(os.path.join(out, "dataset.json")))["image_size"])
    conversion_per_image = [max(c - s, 1e-3) for c, s in zip(conversion, start_up)]
    source_mb = sum(os.path.getsize(os.path.join(raw, "train", n)) for n in os.listdir(os.path.join(raw, "train")))
    shards_mb = sum(os.path.getsize(os.path.join(out, n)) for n in os.listdir(out) if n.endswith(".tfrecord"))
    record = {
        "benchmark": "convert",
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "source": os.path.abspath(args.source) if args.source else "synthetic (data_prep.synthetic)",
        "images": len(ids),
        "size": size,
        "workers": args.workers,
        "repeats": args.repeats,
        "image_format": args.image_format,
        "png_compression": args.png_compression,
        "source_mb": round(source_mb / 2**20, 1),
        "shards_mb": round(shards_mb / 2**20, 1),
        "decode_limit": summary(decode, len(ids)),
        "decode_limit_reader": summary(decode_reader, len(ids)),
        "convert": summary(conversion, len(ids)),
        "worker_start_s": round(statistics.median(start_up), 2),
        "convert_less_worker_start": summary(conversion_per_image, len(ids)),
        "ratio_convert_to_decode": round(statistics.median(conversion) / statistics.median(decode), 3),
        "ratio_per_image_convert_to_decode": round(
            statistics.median(conversion_per_image) / statistics.median(decode), 3
        ),
        "ratio_reader_to_opencv_decode": round(statistics.median(decode_reader) / statistics.median(decode), 3),
        "ratio_convert_to_reader_decode": round(statistics.median(conversion) / statistics.median(decode_reader), 3),
        "peak_rss_mb_largest_process": round(
            peak_memory_mb(raw, out, args.workers, args.image_format, args.png_compression), 1
        ),
    }
    shutil.rmtree(out, ignore_errors=True)
    if args.breakdown:
        record["breakdown"] = breakdown(
            images, ids[: args.breakdown], os.path.join(args.work, "breakdown"), args.image_format, args.png_compression
        )
    return emit_record(record, args.out)


if __name__ == "__main__":
    main()
