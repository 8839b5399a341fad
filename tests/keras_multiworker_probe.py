"""One worker of a two-worker `model.fit` under MultiWorkerMirroredStrategy,
with a tiny model and in-memory data (run by tests/test_distribute.py with
TF_CONFIG set). `python keras_multiworker_probe.py upstream` runs Keras as
released; `shim` first applies protein_location.training.keras_multiworker. Prints
`history: {...}` on success.
"""

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import numpy as np
import tensorflow as tf


def main(mode):
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    if mode == "shim":
        from protein_location.training import keras_multiworker

        keras_multiworker.apply()
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 4)).astype("float32")
    y = (x[:, :1] > 0).astype("float32")
    data = tf.data.Dataset.from_tensor_slices((x, y)).batch(16)
    with strategy.scope():
        model = keras.Sequential(
            [keras.Input((4,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(1, activation="sigmoid")]
        )
        model.compile("adam", "binary_crossentropy")
    history = model.fit(data, epochs=2, verbose=0)
    print("history:", json.dumps(history.history))


if __name__ == "__main__":
    main(sys.argv[1])
