"""What writing an epoch's backup costs (issue #27): Keras' own
`BackupAndRestore(double_checkpoint=True)` against ours
(`training.checkpoints.AtomicBackupAndRestore`: renamed rather than copied,
written under a temporary name, flushed to the disk, bound to its metadata
by sha256), on the demo's model, in one run, alternating.

    python -m bench.checkpoint_cost                      # seresnet18 at 128 px (the demo's), 5 repeats
    python -m bench.checkpoint_cost --arch seresnet50 --size 224 --work /data/scratch
"""

import argparse
import json
import os
import pathlib
import shutil
import statistics
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", default="seresnet18")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--work", default="/tmp/protein-location-checkpoint-cost")
    parser.add_argument("--out", default=None, help="JSON record")
    args = parser.parse_args(argv)

    import keras

    from protein_location import models
    from protein_location.core import output_files
    from protein_location.training import checkpoints

    model = models.build_classifier(args.arch, image_size=args.size, num_classes=28)
    model.compile(keras.optimizers.AdamW(), "binary_crossentropy")
    model.optimizer.build(model.trainable_variables)
    work = pathlib.Path(args.work)
    shutil.rmtree(work, ignore_errors=True)
    callbacks = {
        "keras BackupAndRestore(double_checkpoint=True)": keras.callbacks.BackupAndRestore(
            str(work / "keras"), double_checkpoint=True, delete_checkpoint=False
        ),
        "AtomicBackupAndRestore": checkpoints.AtomicBackupAndRestore(str(work / "ours")),
    }
    seconds = {name: [] for name in callbacks}
    for callback in callbacks.values():
        callback.set_model(model)
        callback.on_epoch_end(0)  # the first save has nothing to keep as the previous one
    for repeat in range(args.repeats):
        for name, callback in callbacks.items():
            start = time.perf_counter()
            callback.on_epoch_end(repeat + 1)
            seconds[name].append(time.perf_counter() - start)
    size_mb = (work / "ours" / "latest.weights.h5").stat().st_size / 2**20
    record = {
        "arch": args.arch,
        "size": args.size,
        "weights_file_mb": round(size_mb, 1),
        "estimated_mb": round(output_files.weights_bytes(model) / 2**20, 1),
        "repeats": args.repeats,
        "median_s": {name: round(statistics.median(values), 3) for name, values in seconds.items()},
    }
    ours, theirs = (
        record["median_s"]["AtomicBackupAndRestore"],
        record["median_s"]["keras BackupAndRestore(double_checkpoint=True)"],
    )
    record["ratio_ours_to_keras"] = round(ours / theirs, 2)
    print(json.dumps(record, indent=2))
    if args.out:
        pathlib.Path(args.out).write_text(json.dumps(record, indent=2))
    return record


if __name__ == "__main__":
    main()
