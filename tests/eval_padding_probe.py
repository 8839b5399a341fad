"""The val evaluation of `train_keras.py --strategy mirrored --replicas 2`
against one replica, with the same weights (run by tests/test_distribute.py
in a fresh process: logical CPUs must be set up before TensorFlow starts).

`python eval_padding_probe.py DATA` evaluates an untrained tiny model at the
machine's default precision through `task.make_datasets` (2 replicas) and
through a plain one-replica pipeline, predicts val under both with
`evaluator.predict_views`, and prints `result: {...}`.
"""

import json
import os
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np

from protein_location.data import input_reader
from protein_location.training import config as config_lib, evaluator, task, trainer


def main(data):
    # No bias init: probabilities near 0.5, so blanks counted as examples would
    # add false positives to F1 (and change AUC).
    config = config_lib.TrainConfig(
        data=data,
        model_dir=tempfile.mkdtemp(),
        batch_size=8,
        width=0.125,
        bias_init=False,
        strategy="mirrored",
        replicas=2,
    )
    config, plan = trainer.plan_run(config)
    _, val_data, val_steps = task.make_datasets(config, plan)
    build = (config, plan.manifest, plan.train_label_counts, plan.train_count, plan.steps_per_epoch)
    with plan.strategy.scope():
        mirrored = task.build_and_compile(*build)
    single = task.build_and_compile(*build)
    single.set_weights(mirrored.get_weights())
    results = {
        "precision": config.precision,
        "val_steps": val_steps,
        "mirrored": mirrored.evaluate(val_data, steps=val_steps, return_dict=True, verbose=0),
        "single": single.evaluate(
            input_reader.make_dataset(data, "val", 8, config.image_size), return_dict=True, verbose=0
        ),
    }
    views = {
        name: evaluator.predict_views(model, data, "val", 8, config.image_size)
        for name, model in (("mirrored", mirrored), ("single", single))
    }
    results["predicted"] = {name: int(len(y)) for name, (y, _) in views.items()}
    results["same_labels"] = bool(np.array_equal(views["mirrored"][0], views["single"][0]))
    results["views_max_difference"] = float(np.abs(views["mirrored"][1] - views["single"][1]).max())
    print("result:", json.dumps(results))


if __name__ == "__main__":
    main(sys.argv[1])
