"""The Kaggle 2018 sizes end to end: 31,072 training and 11,702 test images
of 512 px, converted, verified, read and predicted. A benchmark, not a test.

    python -m bench.full_size --work /path/with/80GB --out full_size.json

Images: `--distinct` synthetic images are rendered (data_prep.synthetic, 512
px, cached under --work) and each Id of the full sets is a symbolic link to
the files of one of them in turn, labels kept (`bench.convert.replicate_raw`):
real PNG files in the number of the Kaggle set, without hours of rendering.
The distinct files fit in the page cache, so reads are from memory; a real
set of 31,072 x 4 files is read from disk.

Steps, each a fresh process, its wall time and the peak resident memory of
each of its processes taken from /proc (`ProcessMemory`):
1. the decode limit: W processes that only read and decode the stain files
   (cv2.imdecode) of a sample of Ids;
2. planning alone (reading the CSV, the split, the shard plan) at several
   sizes, to show what grows faster than the images;
3. convert the training set locally (W workers), verify it, and read one
   epoch of the training input pipeline (`input.make_dataset`, training);
4. convert the test set and `predict --records` over it with a small
   exported model (the pipeline's cost, not a model's);
5. convert the training set again on Beam's DirectRunner (W workers) and
   compare every shard's sha256 and dataset.json with the local conversion.
Disk: the local training shards are removed before the Beam conversion, so
the peak is one training set and one test set of shards (about 45 GB).
"""

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from bench import convert as convert_bench  # noqa: E402
from data_prep import workers as workers_lib  # noqa: E402

KAGGLE_TRAIN, KAGGLE_TEST = 31_072, 11_702


class ProcessMemory:
    """Samples the peak resident memory (VmHWM) of a process and all its
    descendants every `interval` seconds while it runs."""

    def __init__(self, pid, interval=0.5):
        self.pid, self.interval, self.peaks, self._stop = pid, interval, {}, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _children(self):
        parents = {}
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    with open(f"/proc/{entry}/stat") as f:
                        parents[int(entry)] = int(f.read().rsplit(")", 1)[1].split()[1])
                except (OSError, IndexError, ValueError):
                    continue
        family, frontier = {self.pid}, [self.pid]
        while frontier:
            parent = frontier.pop()
            for pid, ppid in parents.items():
                if ppid == parent and pid not in family:
                    family.add(pid)
                    frontier.append(pid)
        return family

    def _run(self):
        while not self._stop.is_set():
            for pid in self._children():
                try:
                    with open(f"/proc/{pid}/status") as f:
                        peak = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
                except (OSError, StopIteration):
                    continue
                self.peaks[pid] = max(self.peaks.get(pid, 0), peak)
            self._stop.wait(self.interval)

    def stop(self):
        self._stop.set()
        self._thread.join()
        driver = self.peaks.pop(self.pid, 0)
        others = sorted(self.peaks.values(), reverse=True)
        return {
            "peak_rss_mb_main": round(driver / 1024),
            "peak_rss_mb_other_largest": round(others[0] / 1024) if others else None,
            "other_processes": len(others),
        }


def run_step(name, command, log):
    """Runs `command` (a list) in a fresh process; its seconds and memory."""
    print(f"[full_size] {name}: {' '.join(command)}", flush=True)
    start = time.perf_counter()
    process = subprocess.Popen(
        command,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=dict(os.environ, PYTHONPATH=ROOT),
    )
    memory = ProcessMemory(process.pid)
    output, _ = process.communicate()
    seconds = time.perf_counter() - start
    record = {"seconds": round(seconds, 1), **memory.stop()}
    log.write(f"== {name} ({seconds:.1f} s)\n{output}\n")
    log.flush()
    if process.returncode != 0:
        raise RuntimeError(f"{name} failed ({process.returncode}):\n{output[-3000:]}")
    record["last_line"] = [line for line in output.splitlines() if line.strip()][-1]
    return record


def disk_gb(folder):
    return round(
        sum(
            os.path.getsize(os.path.join(folder, n))
            for n in os.listdir(folder)
            if os.path.isfile(os.path.join(folder, n))
        )
        / 1e9,
        2,
    )


def replicate_test(source, count, out):
    """`count` unlabeled test Ids, each linked to the files of a source Id in turn, and sample_submission.csv."""
    names = sorted(os.listdir(os.path.join(source, "train")))
    stems = sorted({n.rsplit("_", 1)[0] for n in names})
    folder = os.path.join(out, "test")
    os.makedirs(folder, exist_ok=True)
    ids = []
    for k in range(count):
        stem = stems[k % len(stems)]
        image_id = f"{stem}-t{k:05d}"
        for channel in ("red", "green", "blue", "yellow"):
            link = os.path.join(folder, f"{image_id}_{channel}.png")
            if not os.path.lexists(link):
                os.symlink(os.path.abspath(os.path.join(source, "train", f"{stem}_{channel}.png")), link)
        ids.append(image_id)
    with open(os.path.join(out, "sample_submission.csv"), "w") as f:
        f.write("Id,Predicted\n" + "".join(f"{i},0\n" for i in ids))
    return folder


def planning_seconds(raw, sizes):
    """Seconds of reading the sources and planning (no image written) at each size: a fresh process each."""
    code = r"""
import os, sys, time, json
from data_prep import convert
from protein_location.core import labels
raw, n = sys.argv[1], int(sys.argv[2])
with open(os.path.join(raw, "train.csv")) as f:
    lines = f.read().splitlines()[: n + 1]
subset = os.path.join(raw, f"train-{n}.csv")
with open(subset, "w") as f:
    f.write("\n".join(lines) + "\n")
start = time.perf_counter()
entries, errors, label_set = convert.read_sources((os.path.join(raw, "train"),), (subset,), "fail")
read = time.perf_counter() - start
options = convert.ConvertOptions((os.path.join(raw, "train"),), (subset,), label_set.name, size=512)
start = time.perf_counter()
options, shards, split_info, fingerprint = convert._plan(entries, options, label_set)
plan = time.perf_counter() - start
print(json.dumps({"images": n, "read_sources_s": round(read, 3), "plan_s": round(plan, 3), "shards": len(shards)}))
"""
    rows = []
    for n in sizes:
        result = subprocess.run(
            [sys.executable, "-c", code, raw, str(n)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
            env=dict(os.environ, PYTHONPATH=ROOT),
        )
        row = json.loads(result.stdout.strip().splitlines()[-1])
        row["us_per_image"] = round((row["read_sources_s"] + row["plan_s"]) / n * 1e6, 1)
        rows.append(row)
    return rows


def decode_limit(images_dir, ids, workers):
    with workers_lib.process_pool(workers) as pool:
        convert_bench.time_decode(pool, images_dir, ids[:64])
        seconds = convert_bench.time_decode(pool, images_dir, ids)
    return {"images": len(ids), "seconds": round(seconds, 2), "ms_per_image": round(seconds / len(ids) * 1e3, 3)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--work", required=True, help="folder for the images and shards (about 50 GB)")
    parser.add_argument("--train", type=int, default=KAGGLE_TRAIN, help="training Ids")
    parser.add_argument("--test", type=int, default=KAGGLE_TEST, help="test Ids")
    parser.add_argument("--size", type=int, default=512, help="side of the rendered images")
    parser.add_argument("--distinct", type=int, default=1500, help="distinct rendered images the Ids link to")
    parser.add_argument("--workers", type=int, default=os.cpu_count(), help="conversion workers, local and Beam")
    parser.add_argument("--decode-sample", type=int, default=4000, help="Ids the decode limit is timed on")
    parser.add_argument("--batch", type=int, default=32, help="input pipeline batch (train_keras.py's default)")
    parser.add_argument("--out", default=None, help="also write the JSON record here")
    args = parser.parse_args(argv)

    python = sys.executable
    work = os.path.abspath(args.work)
    distinct = os.path.join(work, f"distinct-{args.distinct}-{args.size}")
    if not os.path.exists(os.path.join(distinct, "train.csv")):
        from data_prep import synthetic

        synthetic.generate_dataset(distinct, args.distinct, 0, args.size, seed=0)
    raw = convert_bench.replicate_raw(distinct, args.train, os.path.join(work, f"raw-{args.train}"))
    test_raw = os.path.join(work, f"raw-test-{args.test}")
    test_images = replicate_test(distinct, args.test, test_raw)
    out = {name: os.path.join(work, name) for name in ("train-local", "train-beam", "test-local", "model")}
    for folder in out.values():
        shutil.rmtree(folder, ignore_errors=True)
    log = open(os.path.join(work, "full_size.log"), "w")
    ids = [line.split(",")[0] for line in open(os.path.join(raw, "train.csv")).read().splitlines()[1:]]
    record = {
        "benchmark": "full_size",
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "train_images": args.train,
        "test_images": args.test,
        "size": args.size,
        "distinct_images": args.distinct,
        "workers": args.workers,
    }

    record["decode_limit"] = decode_limit(os.path.join(raw, "train"), ids[: args.decode_sample], args.workers)
    limit_ms = record["decode_limit"]["ms_per_image"]
    record["planning"] = planning_seconds(raw, [n for n in (1000, 4000, 16000, args.train) if n <= args.train])

    convert = [
        python,
        "-m",
        "data_prep",
        "convert",
        "--csv",
        os.path.join(raw, "train.csv"),
        "--images",
        os.path.join(raw, "train"),
        "--seed",
        "0",
    ]
    local = run_step(
        "convert train (local)", convert + ["--out", out["train-local"], "--workers", str(args.workers)], log
    )
    local.update(disk_gb=disk_gb(out["train-local"]), ms_per_image=round(local["seconds"] / args.train * 1e3, 3))
    local["ratio_to_decode_limit"] = round(local["ms_per_image"] / limit_ms, 3)
    record["convert_local"] = local
    record["verify"] = run_step("verify train", [python, "-m", "data_prep", "verify", out["train-local"]], log)

    manifest = json.load(open(os.path.join(out["train-local"], "dataset.json")))
    steps = manifest["splits"]["train"]["num_examples"] // args.batch
    epoch = f"""
import time
from protein_location.data import input_reader
dataset = input_reader.make_dataset({out["train-local"]!r}, "train", {args.batch}, training=True, seed=0)
start = time.perf_counter()
for images, labels in dataset.take({steps}):
    pass
print(f"epoch: {steps} batches of {args.batch} in {{time.perf_counter() - start:.1f}} s")
"""
    read = run_step("read one training epoch", [python, "-c", epoch], log)
    read.update(
        batches=steps, images=steps * args.batch, ms_per_image=round(read["seconds"] / (steps * args.batch) * 1e3, 3)
    )
    read["ratio_to_decode_limit"] = round(read["ms_per_image"] / limit_ms, 3)
    record["read_epoch"] = read

    test = run_step(
        "convert test (local)",
        [
            python,
            "-m",
            "data_prep",
            "convert",
            "--images",
            test_images,
            "--out",
            out["test-local"],
            "--workers",
            str(args.workers),
        ],
        log,
    )
    test.update(disk_gb=disk_gb(out["test-local"]), ms_per_image=round(test["seconds"] / args.test * 1e3, 3))
    record["convert_test_local"] = test
    export = f"""
import numpy as np
from protein_location import export, models
from protein_location.core import labels
model = models.build_seresnet("seresnet18", image_size=128, width=0.25)
export.export_saved_model(model, np.full(labels.NUM_CLASSES, 0.5), {out["model"]!r}, labels.CLASS_NAMES)
"""
    run_step("export a small model", [python, "-c", export], log)
    predict = run_step(
        "predict --records test",
        [
            python,
            "-m",
            "protein_location",
            "predict",
            "--model",
            out["model"],
            "--records",
            out["test-local"],
            "--csv",
            os.path.join(test_raw, "sample_submission.csv"),
            "--out",
            os.path.join(work, "submission.csv"),
        ],
        log,
    )
    predict.update(
        model="seresnet18, width 0.25, 128 px, untrained (the pipeline's cost, not a model's)",
        ms_per_image=round(predict["seconds"] / args.test * 1e3, 3),
    )
    record["predict_records"] = predict

    local_manifest = open(os.path.join(out["train-local"], "dataset.json"), "rb").read()
    shutil.rmtree(out["train-local"])
    beam = run_step(
        "convert train (Beam DirectRunner)",
        convert
        + [
            "--out",
            out["train-beam"],
            "--runner",
            "beam",
            f"--beam-options=--direct_running_mode=multi_processing --direct_num_workers={args.workers}",
        ],
        log,
    )
    beam.update(disk_gb=disk_gb(out["train-beam"]), ms_per_image=round(beam["seconds"] / args.train * 1e3, 3))
    beam["ratio_to_decode_limit"] = round(beam["ms_per_image"] / limit_ms, 3)
    beam["dataset_json_identical_to_local"] = (
        open(os.path.join(out["train-beam"], "dataset.json"), "rb").read() == local_manifest
    )
    record["convert_beam"] = beam
    shutil.rmtree(out["train-beam"])

    return convert_bench.emit_record(record, args.out)


if __name__ == "__main__":
    main()
