"""Runs `protein_location.models` under another Keras backend with TensorFlow
made unimportable, as on a machine that has no TensorFlow at all
(tests/test_other_backends.py).

    KERAS_BACKEND=jax python tests/backend_probe.py WORK ARCH [ARCH ...]

Each ARCH is built at 32 px, predicts, and is saved to and loaded from
`.keras` (the same weights back); the first ARCH and every keras.applications
one also fit a step on NumPy input first. Each
WORK/trained/<name>.keras (saved under TensorFlow) is loaded and predicts
WORK/images.npy. Writes WORK/probe.json: the backend, whether TensorFlow
was imported, and what each model did.
"""

import importlib.abc
import json
import os
import sys


class NoTensorFlow(importlib.abc.MetaPathFinder):
    """`import tensorflow` fails, as where it is not installed."""

    def find_spec(self, name, path, target=None):
        if name == "tensorflow" or name.startswith("tensorflow."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


def main(work, archs_to_run):
    sys.meta_path.insert(0, NoTensorFlow())
    import keras
    import numpy as np

    from protein_location import models

    images = np.load(os.path.join(work, "images.npy"))
    labels = (np.random.default_rng(1).random((len(images), 5)) > 0.5).astype("float32")
    archs = {}
    fit_archs = {archs_to_run[0], *(arch for arch in archs_to_run if arch in models.APPLICATIONS)}
    for arch in archs_to_run:
        model = models.build_classifier(
            arch, image_size=images.shape[1], num_classes=5, width=0.125 if arch in models.PRESETS else 1.0
        )
        if arch in fit_archs:
            model.compile(keras.optimizers.AdamW(1e-3), "binary_crossentropy")
            model.fit(images, labels, batch_size=len(images), epochs=1, verbose=0)
        probabilities = model.predict(images, verbose=0)
        path = os.path.join(work, f"{arch}.keras")
        model.save(path)
        loaded = keras.models.load_model(path, compile=False)
        # The weights, not a second prediction: each jitted predict compiles again (the trained models below
        # are loaded and predict).
        differences = [
            float(np.abs(np.asarray(a) - np.asarray(b)).max()) if np.size(a) else 0.0
            for a, b in zip(model.weights, loaded.weights)
        ]
        archs[arch] = {
            "fit": arch in fit_archs,
            "shape": list(probabilities.shape),
            "finite": bool(np.isfinite(probabilities).all()),
            "weights": [len(model.weights), len(loaded.weights)],
            "reloaded_difference": max(differences),
        }
    trained = {}
    folder = os.path.join(work, "trained")
    for name in sorted(os.listdir(folder)):
        model = keras.models.load_model(os.path.join(folder, name), compile=False)
        trained[name] = model.predict(images, verbose=0).tolist()
    with open(os.path.join(work, "probe.json"), "w") as f:
        json.dump(
            {
                "backend": keras.backend.backend(),
                "tensorflow_imported": "tensorflow" in sys.modules,
                "archs": archs,
                "trained": trained,
            },
            f,
        )


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
