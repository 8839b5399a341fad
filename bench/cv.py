"""Cross-validation (`train_keras.py --cv`) against one model, scored on
held-out images, and the ensemble's inference cost (docs/training.md, "Cross-validation").

    python -m bench.cv --raw B=/data/hpa_like --out cv/ --folds 5 --seeds 0 1 2

Each `--raw NAME=DIR` is a Kaggle-layout folder with held-out test images
(train.csv, train/, test/, test_labels.csv: what `data_prep synth` and
`bench.hpa_like` write). Its training images are converted with `--folds K`,
its test images into a second dataset. For each seed, `train_keras.py --cv
--export` runs as a user runs it (a fresh process, the defaults otherwise);
then on the held-out images, 8 views each:

- `fold_own`: each fold model alone, labelled by the thresholds its own run
  tuned on its held-out fold (what a plain run does with its val split);
- `fold_oof`: each fold model alone, under the out-of-fold thresholds: what
  those thresholds bring;
- `ensemble`: the mean of the K models under the out-of-fold thresholds:
  what averaging brings on top (the export's computation);
- `served`: the exported SavedModel's own serving_default labels, read by a
  TensorFlow-only client (`bench.sweep.served_f1`): the figure a user gets.

`--cost` also times serving_default of a one-fold export against the
ensemble export on the same images in one process, alternating (images/s
and their ratio). Results: OUT/results.jsonl, one line per run.
"""

import argparse
import json
import os
import time

import numpy as np

from bench import sweep


def convert(raw, out, folds):
    """(training dataset with K folds, held-out dataset) of a raw folder, converted once."""
    train, test = os.path.join(out, f"folds{folds}"), os.path.join(out, "test_tfrecords")
    log = os.path.join(out, "convert.log")
    os.makedirs(out, exist_ok=True)
    if not os.path.exists(os.path.join(train, "dataset.json")):
        sweep._run(
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
                "--folds",
                str(folds),
                "--overwrite",
            ],
            log,
        )
    if not os.path.exists(os.path.join(test, "dataset.json")):
        sweep._run(
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


def held_out_scores(run_dir, test_data, folds, batch_size, image_size):
    """Macro F1 on the held-out images: each fold model under its own and the
    out-of-fold thresholds, and their mean under the out-of-fold ones (1 view
    and the 8-view mean)."""
    import keras

    from protein_location.evaluation import thresholds as thresholds_lib
    from protein_location.evaluation.thresholds_file import ThresholdsFile
    from protein_location.training import evaluator

    cv_thresholds = ThresholdsFile.read(run_dir)
    per_fold, probabilities = {"fold_own": [], "fold_oof": []}, []
    y_test = None
    for fold in range(folds):
        fold_dir = os.path.join(run_dir, f"fold-{fold}")
        model = keras.models.load_model(os.path.join(fold_dir, "model.keras"), safe_mode=True, compile=False)
        y_test, views = evaluator.predict_views(model, test_data, "train", batch_size, image_size)
        probabilities.append(views)
        own = ThresholdsFile.read(fold_dir)
        per_fold["fold_own"].append(thresholds_lib.macro_f1(y_test, views[0] >= own.single_view))
        per_fold["fold_oof"].append(thresholds_lib.macro_f1(y_test, views[0] >= cv_thresholds.single_view))
    mean = np.mean(probabilities, axis=0)  # [8, n, C]
    result = {key: float(np.mean(values)) for key, values in per_fold.items()}
    result.update({f"{key}_each": [round(v, 4) for v in values] for key, values in per_fold.items()})
    result["ensemble"] = thresholds_lib.macro_f1(y_test, mean[0] >= cv_thresholds.single_view)
    result["ensemble_8view"] = thresholds_lib.macro_f1(y_test, mean.mean(0) >= cv_thresholds.tta)
    return result


def inference_cost(single_export, ensemble_export, image_size, batch=32, repeats=5):
    """images/s of serving_default of each export on the same random images,
    timed alternately after a warm-up call each."""
    import tensorflow as tf

    images = tf.constant(np.random.default_rng(0).integers(0, 255, (batch, image_size, image_size, 4), np.uint8))
    serves = {
        name: tf.saved_model.load(path).signatures["serving_default"]
        for name, path in (("single", single_export), ("ensemble", ensemble_export))
    }
    seconds = {name: [] for name in serves}
    for serve in serves.values():
        serve(image=images)
    for _ in range(repeats):
        for name, serve in serves.items():
            start = time.perf_counter()
            serve(image=images)["probabilities"].numpy()
            seconds[name].append(time.perf_counter() - start)
    rates = {name: batch / float(np.median(values)) for name, values in seconds.items()}
    return {
        "single_images_per_s": round(rates["single"], 1),
        "ensemble_images_per_s": round(rates["ensemble"], 1),
        "ensemble_time_ratio": round(rates["single"] / rates["ensemble"], 2),
    }


def latest_version(export_base):
    return os.path.join(export_base, max(os.listdir(export_base), key=int))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--raw", action="append", default=[], metavar="NAME=DIR", help="a raw dataset")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--flags", default="", help="more train_keras.py flags")
    parser.add_argument("--cost", action="store_true", help="also time a one-fold export against the ensemble's")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    results = os.path.join(args.out, "results.jsonl")
    for raw in args.raw:
        dataset, raw_dir = raw.split("=", 1)
        train_data, test_data = convert(raw_dir, os.path.join(args.out, dataset), args.folds)
        for seed in args.seeds:
            run_dir = os.path.join(args.out, dataset, f"cv{args.folds}", f"seed{seed}")
            export = os.path.join(run_dir, "export")
            os.makedirs(run_dir, exist_ok=True)
            start = time.perf_counter()
            sweep._run(
                [
                    "train_keras.py",
                    "--data",
                    train_data,
                    "--model-dir",
                    run_dir,
                    "--cv",
                    "--epochs",
                    str(args.epochs),
                    "--batch-size",
                    str(args.batch_size),
                    "--size",
                    str(args.size),
                    "--seed",
                    str(seed),
                    *args.flags.split(),
                    "--export",
                    export,
                ],
                os.path.join(run_dir, "train.log"),
            )
            report = json.load(open(os.path.join(run_dir, "report.json")))
            line = {
                "dataset": dataset,
                "folds": args.folds,
                "seed": seed,
                "flags": args.flags,
                "seconds": round(time.perf_counter() - start, 1),
                "oof_macro_f1_cross_tuned": report["out_of_fold"]["macro_f1_cross_tuned"],
                "oof_macro_f1_tuned": report["out_of_fold"]["macro_f1_tuned"],
                "oof_macro_auc": report["out_of_fold"]["macro_auc"],
                **held_out_scores(run_dir, test_data, args.folds, args.batch_size, args.size),
                "served": sweep.served_f1(export, raw_dir),
            }
            if args.cost:
                single = os.path.join(run_dir, "fold0_export")
                if not os.path.exists(single):
                    sweep._run(
                        [
                            "-m",
                            "protein_location",
                            "export",
                            "--model-dir",
                            os.path.join(run_dir, "fold-0"),
                            "--out",
                            single,
                        ],
                        os.path.join(run_dir, "export.log"),
                    )
                line.update(inference_cost(latest_version(single), latest_version(export), args.size))
            with open(results, "a") as f:
                f.write(json.dumps(line) + "\n")
            print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
