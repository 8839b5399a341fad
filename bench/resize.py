"""The batch resize of the serving signatures: one call of TensorFlow's area
kernel on the whole batch against `stains.resize_rgby` (image by image,
several at once), same values, timed alternately in one run.

    python bench/resize.py [--batch 64 --source 512 --size 224 --repeats 7]
"""

import argparse
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from protein_location.core import stains  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--source", type=int, default=512, help="side of the uint8 RGBY images sent")
    parser.add_argument("--size", type=int, default=224, help="side they are resized to")
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    images = tf.constant(rng.integers(0, 256, (args.batch, args.source, args.source, 4), dtype=np.uint8))
    spec = [tf.TensorSpec([None, None, None, 4], tf.uint8)]  # as the serving signatures see it
    functions = {
        "one_call": tf.function(
            lambda x: tf.round(tf.image.resize(tf.cast(x, tf.float32), [args.size] * 2, method="area")),
            input_signature=spec,
        ),
        "resize_rgby": tf.function(lambda x: stains.resize_rgby(x, args.size), input_signature=spec),
    }
    outputs = {name: f(images).numpy() for name, f in functions.items()}
    assert np.array_equal(outputs["one_call"], outputs["resize_rgby"]), "the two resizes differ"
    seconds = {name: [] for name in functions}
    for _ in range(args.repeats):
        for name, f in functions.items():
            start = time.perf_counter()
            tf.reduce_sum(f(images)).numpy()
            seconds[name].append(time.perf_counter() - start)
    record = {
        **vars(args),
        "cores": os.cpu_count(),
        **{name: {"ms_per_image": round(1000 * statistics.median(s) / args.batch, 3)} for name, s in seconds.items()},
    }
    record["speedup"] = round(statistics.median(seconds["one_call"]) / statistics.median(seconds["resize_rgby"]), 2)
    print(json.dumps(record))
    return record


if __name__ == "__main__":
    main()
