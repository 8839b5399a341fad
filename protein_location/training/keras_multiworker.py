"""A compatibility shim: Keras 3 `model.fit` under MultiWorkerMirroredStrategy.

Upstream bug keras-team/keras#20585 (open as of Keras 3.15): with more than
one worker, `fit` fails twice on the TensorFlow backend.

1. `TensorFlowTrainer._maybe_symbolic_build` reduces the first distributed
   batch with `strategy.reduce("MEAN", batch, axis=None)`, a cross-worker
   collective on the input: "Attempt to convert a value (PerReplica ...)".
   It only needs the batch's shapes, so we take this worker's first replica
   batch (`strategy.experimental_local_results`), as upstream does for "first".
2. `reduce_per_replica(..., "mean")` reduces every value with
   `strategy.reduce("MEAN", v, axis=0)`: a scalar loss or metric has no axis
   0, "Invalid reduction dimension 0". We reduce scalars with `axis=None` (the
   mean over replicas, hence the same on every worker), anything else as before.

`apply()` patches both, and the patched functions defer to the originals
unless the strategy is a MultiWorkerMirroredStrategy with more than one worker,
so nothing changes for the other strategies. tests/test_distribute.py runs
two workers without the shim and expects the failure: when it stops failing,
upstream is fixed and this module can go.
"""

import tensorflow as tf
from keras.src import tree
from keras.src.backend.tensorflow import trainer as tf_trainer

_original_symbolic_build = tf_trainer.TensorFlowTrainer._maybe_symbolic_build
_original_reduce_per_replica = tf_trainer.reduce_per_replica


def _multi_worker(strategy):
    return strategy is not None and tf_trainer._collective_all_reduce_multi_worker(strategy)


def _maybe_symbolic_build(self, iterator=None, data_batch=None):
    strategy = self._distribute_strategy
    if not _multi_worker(strategy):
        return _original_symbolic_build(self, iterator=iterator, data_batch=data_batch)
    if iterator is not None:
        for _, _, it in iterator:
            data_batch = tree.map_structure(
                lambda x: (
                    strategy.experimental_local_results(x)[0] if isinstance(x, tf.distribute.DistributedValues) else x
                ),
                next(it),
            )
            break
    with strategy.scope():
        self._symbolic_build(data_batch=data_batch)


def _reduce_per_replica(values, strategy, reduction):
    if not _multi_worker(strategy) or reduction not in ("auto", "mean"):
        return _original_reduce_per_replica(values, strategy, reduction)

    def reduce(value):
        # One local replica (a CPU worker) gives a plain tensor, several a PerReplica.
        if strategy.experimental_local_results(value)[0].shape.rank == 0:
            return strategy.reduce("MEAN", value, axis=None)
        return _original_reduce_per_replica(value, strategy, reduction)

    return tree.map_structure(reduce, values)


def apply():
    """Installs the shim (idempotent)."""
    tf_trainer.TensorFlowTrainer._maybe_symbolic_build = _maybe_symbolic_build
    tf_trainer.reduce_per_replica = _reduce_per_replica


def applied():
    return tf_trainer.reduce_per_replica is _reduce_per_replica
