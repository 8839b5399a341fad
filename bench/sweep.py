"""The sweep that chose train_keras.py's defaults (docs/training.md, "Defaults").

    python -m bench.sweep --raw A=/data/synthA --raw B=/data/hpa_like --out sweep/ \
        --config current="--lr 4e-3" --config lr2e-3="--lr 1.6e-2" --seeds 0 1 2

Each `--raw NAME=DIR` is a Kaggle-layout folder with held-out test images
(train.csv, train/, test/, test_labels.csv: `data_prep synth` and
`bench.hpa_like` write them). Its train images are converted with convert's
defaults, its test images into a second dataset. Every config is trained as a
user runs train_keras.py (a fresh process, its flags on top of the defaults
of the code under test), then its best checkpoint (model.keras) predicts the
val and test images under all 8 flips/rotations. From those probabilities
`summarize` scores held-out macro F1 for one view and for the 8-view mean,
with thresholds tuned on val by `thresholds.tune_thresholds`, so threshold
rules and TTA are compared on the same runs. Results: OUT/results.jsonl, one
line per run, and OUT/<dataset>/<config>/seed<k>/probabilities.npz.
"""

import argparse
import functools
import json
import os
import shlex
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(args, log):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=ROOT)
    with open(log, "a") as out:
        subprocess.run([sys.executable, *args], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, check=True)


def convert_raw(raw, out):
    """(train dataset, test dataset) of a raw folder, converted once."""
    train, test = os.path.join(out, "tfrecords"), os.path.join(out, "test_tfrecords")
    log = os.path.join(out, "convert.log")
    os.makedirs(out, exist_ok=True)
    if not os.path.exists(os.path.join(train, "dataset.json")):
        _run(
            [
                "-m",
                "data_prep",
                "convert",
                "--csv",
                f"{raw}/train.csv",
                "--images",
                f"{raw}/train",
                "--out",
                train,
                "--overwrite",
            ],
            log,
        )
    if not os.path.exists(os.path.join(test, "dataset.json")):
        _run(
            [
                "-m",
                "data_prep",
                "convert",
                "--csv",
                f"{raw}/test_labels.csv",
                "--images",
                f"{raw}/test",
                "--out",
                test,
                "--val-fraction",
                "0",
                "--overwrite",
            ],
            log,
        )
    return train, test


def evaluate_run(run_dir, train_data, test_data, batch_size, image_size):
    import keras

    from protein_location.training import evaluator

    model = keras.models.load_model(os.path.join(run_dir, "model.keras"), safe_mode=True, compile=False)
    y_val, p_val = evaluator.predict_views(model, train_data, "val", batch_size, image_size)
    y_test, p_test = evaluator.predict_views(model, test_data, "train", batch_size, image_size)
    np.savez_compressed(
        os.path.join(run_dir, "probabilities.npz"), y_val=y_val, p_val=p_val, y_test=y_test, p_test=p_test
    )
    return scores(y_val, p_val, y_test, p_test, train_rates(train_data))


def scores(y_val, p_val, y_test, p_test, train_rates):
    """Held-out macro F1 with thresholds tuned on val by today's rule, one view
    and 8, and val AUC."""
    from protein_location.evaluation import report, thresholds

    result = {}
    for name, val, test in (("1view", p_val[0], p_test[0]), ("8view", p_val.mean(0), p_test.mean(0))):
        cuts = thresholds.tune_thresholds(y_val, val, train_rates).thresholds
        result[f"test_f1_{name}"] = thresholds.macro_f1(y_test, test >= cuts)
        result[f"test_f1_{name}_at_0.5"] = thresholds.macro_f1(y_test, test >= 0.5)
        result[f"test_f1_{name}_at_0.3"] = thresholds.macro_f1(y_test, test >= 0.3)
        result[f"val_auc_{name}"] = report.macro_auc(y_val.astype(int), val)
    return result


def train_rates(data_dir):
    """Each class's share of a converted dataset's training images."""
    from protein_location.core import manifest as manifest_lib

    _, count, label_counts = manifest_lib.DatasetManifest.read(data_dir).summary("train")
    return np.asarray(label_counts) / count


def exact_cuts(y_val, p_val):
    """The rule before this sweep: each class's own F1-optimal cut at a val
    example's score; 0.5 for a class without val positives."""
    from sklearn.metrics import precision_recall_curve

    cuts = np.full(y_val.shape[1], 0.5)
    for c in np.flatnonzero(y_val.sum(0)):
        precision, recall, values = precision_recall_curve(y_val[:, c], p_val[:, c])
        f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
        cuts[c] = values[int(np.argmax(f1[:-1]))]
    return cuts


def _fallback_below(y_val, p_val, rates, min_support, fallback):
    """Own cuts (halfway) for classes with >= min_support val positives; the
    others: the pooled cut, the rate-matched cut, or 0.5 (fallback None)."""
    from protein_location.evaluation import thresholds

    positives = y_val.sum(0)
    cuts = np.array(
        [
            thresholds.best_f1_cut(y_val[:, c], p_val[:, c]) if positives[c] >= min_support else np.nan
            for c in range(y_val.shape[1])
        ]
    )
    if fallback == "pooled":
        other = np.full(len(cuts), thresholds.best_f1_cut(y_val.ravel(), p_val.ravel()))
    elif fallback == "rate":
        other = np.array([thresholds.rate_matched_cut(p_val[:, c], rates[c]) for c in range(len(cuts))])
    else:
        other = np.full(len(cuts), 0.5)
    return np.where(np.isnan(cuts), other, cuts)


def summarize(out_dir):
    """docs/training.md's tables from OUT/results.jsonl and the saved probabilities:
    held-out macro F1 (mean ± sample std over seeds) per dataset and config,
    with today's threshold rule; and the threshold rules compared on every run."""
    from protein_location.evaluation import thresholds

    rows = [json.loads(line) for line in open(os.path.join(out_dir, "results.jsonl"))]
    runs = {}

    def today(min_support):
        return " (today)" if min_support == thresholds.MIN_SUPPORT else ""

    # Threshold rules on the same probabilities: name -> cuts of (y_val, p_val, training rates).
    rules = {
        "exact cut at a val score, 0.5 without positives (before)": lambda y, p, rates: exact_cuts(y, p),
        "own cut halfway (0.5 without positives)": functools.partial(_fallback_below, min_support=1, fallback=None),
        **{
            f"own cut halfway, pooled cut below {k} positives": functools.partial(
                _fallback_below, min_support=k, fallback="pooled"
            )
            for k in (3, 5)
        },
        **{
            f"own cut halfway, rate-matched below {k} positives{today(k)}": functools.partial(
                _fallback_below, min_support=k, fallback="rate"
            )
            for k in (3, 5, 10)
        },
    }
    rule_scores = {name: [] for name in rules}
    seen = set()
    for row in rows:
        data = np.load(os.path.join(out_dir, row["dataset"], row["config"], f"seed{row['seed']}", "probabilities.npz"))
        y_val, p_val, y_test, p_test = data["y_val"], data["p_val"], data["y_test"], data["p_test"]
        rates = train_rates(os.path.join(out_dir, row["dataset"], "tfrecords"))
        result = scores(y_val, p_val, y_test, p_test, rates)
        result.update({key: row[key] for key in ("served_f1", "predict_f1") if key in row})
        runs.setdefault((row["dataset"], row["config"], row["flags"]), []).append(result)
        if p_test.tobytes() in seen:  # the same run under two config names (same flags, same seed)
            continue
        seen.add(p_test.tobytes())
        for val, test in (p_val[0], p_test[0]), (p_val.mean(0), p_test.mean(0)):
            for name, rule in rules.items():
                rule_scores[name].append(thresholds.macro_f1(y_test, test >= rule(y_val, val, rates)))

    def spread(values):
        values = np.asarray(values)
        return f"{values.mean():.3f}" + (f" ± {values.std(ddof=1):.3f}" if len(values) > 1 else "")

    lines = [
        "| dataset | config | flags | seeds | held-out macro F1, 1 view | 8 views | 1 view at a fixed 0.3 "
        "| val AUC (1 view) | serving_default labels | predict submission |",
        "| --- " * 10 + "|",
    ]
    for (dataset, config, flags), results in runs.items():
        served = [[r[key] for r in results if key in r] for key in ("served_f1", "predict_f1")]
        lines.append(
            f"| {dataset} | {config} | `{flags}` | {len(results)} | "
            f"{spread([r['test_f1_1view'] for r in results])} | "
            f"{spread([r['test_f1_8view'] for r in results])} | "
            f"{spread([r['test_f1_1view_at_0.3'] for r in results])} | "
            f"{spread([r['val_auc_1view'] for r in results])} | "
            + " | ".join(spread(values) if values else "" for values in served)
            + " |"
        )
    today = next(values for rule, values in rule_scores.items() if rule.endswith("(today)"))
    lines += [
        "",
        f"| threshold rule | held-out macro F1, mean over {len(seen)} runs x (1 view, 8 views) "
        "| today's rule minus this one, per run: mean ± std (runs where today's is higher) |",
        "| --- | --- | --- |",
    ]
    for rule, values in rule_scores.items():
        gain = np.asarray(today) - np.asarray(values)
        lines.append(
            f"| {rule} | {np.mean(values):.4f} | {gain.mean():+.4f} ± {gain.std(ddof=1):.4f} "
            f"({int((gain > 0).sum())} of {len(gain)}) |"
        )
    return "\n".join(lines)


# A TF Serving-like client: TensorFlow only, one serving_default call per batch
# of 32, the SavedModel's own labels; prints the held-out macro F1.
SERVED_CLIENT = """
import csv, sys
import numpy as np, tensorflow as tf
export, images, truth_csv, signature = sys.argv[1:5]
loaded = tf.saved_model.load(export)
serve = loaded.signatures[signature]
rows = list(csv.DictReader(open(truth_csv)))
classes = len(loaded.class_names[0].numpy())
truth = np.zeros((len(rows), classes), int)
labels = []
for start in range(0, len(rows), 32):
    batch = [tf.concat([tf.io.decode_png(tf.io.read_file(f"{images}/{row['Id']}_{c}.png"), channels=1)
                        for c in ("red", "green", "blue", "yellow")], -1) for row in rows[start:start + 32]]
    labels.append(serve(image=tf.stack(batch))["labels"].numpy())
for i, row in enumerate(rows):
    truth[i, [int(t) for t in row["Target"].split()]] = 1
predicted = np.concatenate(labels)
tp = (truth & predicted).sum(0); fp = ((1 - truth) & predicted).sum(0); fn = (truth & (1 - predicted)).sum(0)
print(np.mean(np.where(2 * tp + fp + fn > 0, 2 * tp / np.maximum(2 * tp + fp + fn, 1), 0.0)))
"""


def served_f1(export_dir, raw_dir, signature="serving_default"):
    """Held-out macro F1 of a signature's own labels, from a TensorFlow-only client."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=ROOT)
    version = os.path.join(export_dir, max(os.listdir(export_dir), key=int))
    served = subprocess.run(
        [sys.executable, "-c", SERVED_CLIENT, version, f"{raw_dir}/test", f"{raw_dir}/test_labels.csv", signature],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return float(served.stdout.strip().splitlines()[-1])


def served_scores(export_dir, raw_dir, run_dir):
    """Held-out macro F1 of serving_default's own labels (TF-only client) and of
    `protein_location predict`'s submission."""
    submission = os.path.join(run_dir, "submission.csv")
    log = os.path.join(run_dir, "predict.log")
    _run(
        [
            "-m",
            "protein_location",
            "predict",
            "--model",
            export_dir,
            "--images",
            f"{raw_dir}/test",
            "--csv",
            f"{raw_dir}/sample_submission.csv",
            "--out",
            submission,
        ],
        log,
    )
    _run(["-m", "protein_location", "score", "--submission", submission, "--truth", f"{raw_dir}/test_labels.csv"], log)
    predicted = float(open(log).read().split("score: macro F1 ")[-1].split()[0])
    return {
        "served_f1": served_f1(export_dir, raw_dir),
        "predict_f1": predicted,
        "single_view_served_f1": served_f1(export_dir, raw_dir, "serving_single_view"),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--raw", action="append", default=[], metavar="NAME=DIR", help="a raw dataset")
    parser.add_argument(
        "--config",
        action="append",
        default=[],
        metavar='NAME="FLAGS"',
        help="train_keras.py flags on top of the defaults",
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--out", required=True)
    parser.add_argument("--summarize", action="store_true", help="only print the tables of OUT's runs")
    parser.add_argument(
        "--export",
        action="store_true",
        help="also export each run and score serving_default's own labels (a TensorFlow-only "
        "client) and predict's submission on the held-out images",
    )
    args = parser.parse_args(argv)
    if args.summarize:
        print(summarize(args.out))
        return
    results = os.path.join(args.out, "results.jsonl")
    for raw in args.raw:
        dataset, raw_dir = raw.split("=", 1)
        train_data, test_data = convert_raw(raw_dir, os.path.join(args.out, dataset))
        for config in args.config:
            name, flags = config.split("=", 1)
            for seed in args.seeds:
                run_dir = os.path.join(args.out, dataset, name, f"seed{seed}")
                if os.path.exists(os.path.join(run_dir, "probabilities.npz")):
                    continue
                os.makedirs(run_dir, exist_ok=True)
                start = time.perf_counter()
                export = ["--export", os.path.join(run_dir, "export")] if args.export else []
                _run(
                    [
                        "train_keras.py",
                        "--data",
                        train_data,
                        "--model-dir",
                        run_dir,
                        "--epochs",
                        str(args.epochs),
                        "--batch-size",
                        str(args.batch_size),
                        "--size",
                        str(args.size),
                        "--seed",
                        str(seed),
                        *shlex.split(flags),
                        *export,
                    ],
                    os.path.join(run_dir, "train.log"),
                )
                train_seconds = time.perf_counter() - start
                line = {
                    "dataset": dataset,
                    "config": name,
                    "flags": flags,
                    "seed": seed,
                    "train_seconds": round(train_seconds, 1),
                    **evaluate_run(run_dir, train_data, test_data, args.batch_size, args.size),
                }
                if args.export:
                    line.update(served_scores(os.path.join(run_dir, "export"), raw_dir, run_dir))
                with open(results, "a") as f:
                    f.write(json.dumps(line) + "\n")
                print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
