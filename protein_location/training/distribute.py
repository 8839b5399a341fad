"""Choosing, checking and creating the tf.distribute strategy of a run.

One training command for every machine (docs/scaling-out.md):

| `--strategy` | where | strategy |
| --- | --- | --- |
| `default` | one CPU or GPU | the default strategy |
| `mirrored` | the GPUs of one machine (`--replicas N`: N of them, or N logical CPUs) | MirroredStrategy |
| `multiworker` | several machines described by TF_CONFIG | MultiWorkerMirroredStrategy |
| `tpu` | a Cloud TPU (`--tpu NAME`), data and run folder on gs:// | TPUStrategy |
| `auto` | `--tpu`: tpu; TF_CONFIG naming several workers: multiworker; GPUs or `--replicas`: mirrored | that one |

Create the strategy before anything else touches the TensorFlow runtime:
logical CPU devices and the multi-worker collectives can only be set up then.
"""

import json
import os
import posixpath

import numpy as np
import tensorflow as tf

from protein_location.core.errors import TrainError

STRATEGIES = ("auto", "default", "mirrored", "multiworker", "tpu")
# --lr is the peak rate at this global batch; the rate used scales linearly
# with the global batch (Goyal et al. 2017; the rule MAE and DeiT use with AdamW).
REFERENCE_BATCH = 256
_TPU_PATH_ARGUMENTS = ("data", "model_dir", "export_dir")


def scaled_learning_rate(reference_rate, global_batch):
    """The peak learning rate at `global_batch`: reference_rate * global_batch / 256."""
    return reference_rate * global_batch / REFERENCE_BATCH


def read_tf_config():
    """This process' TF_CONFIG as TensorFlow's `TFConfigClusterResolver`, or
    None when it is unset or empty.

    The resolver parses it; we check what MultiWorkerMirroredStrategy needs
    and the resolver does not check: a cluster of chief/worker tasks
    ("host:port" lists) and this task's place in it. Raises TrainError otherwise.
    """
    raw = os.environ.get("TF_CONFIG", "").strip()
    if not raw:
        return None
    resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
    expected = (
        'TF_CONFIG must look like {"cluster": {"worker": ["host:port", ...]}, "task": {"type": "worker", "index": 0}}'
    )
    try:
        cluster, task_type, index = resolver.cluster_spec().as_dict(), resolver.task_type, resolver.task_id
    except json.JSONDecodeError as error:
        raise TrainError(f"TF_CONFIG is not valid JSON ({error})") from None
    except (AttributeError, TypeError, ValueError, KeyError):
        raise TrainError(f"{expected}, got {raw}") from None
    if not cluster or task_type is None or not all(isinstance(hosts, list) and hosts for hosts in cluster.values()):
        raise TrainError(f"{expected}, got {raw}")
    other = sorted(set(cluster) - {"chief", "worker"})
    if other:
        raise TrainError(
            f"TF_CONFIG: MultiWorkerMirroredStrategy takes chief and worker tasks only, got {', '.join(other)}"
        )
    if len(cluster.get("chief", [])) > 1:
        raise TrainError(f"TF_CONFIG: a cluster has at most one chief, got {len(cluster['chief'])}")
    if task_type not in cluster or index is None or not 0 <= index < len(cluster[task_type]):
        raise TrainError(
            f"TF_CONFIG: task {task_type!r} index {index!r} is not in the cluster "
            f"({', '.join(f'{t}: {len(h)}' for t, h in cluster.items())})"
        )
    return resolver


def count_workers(resolver):
    """Machines in a TF_CONFIG cluster (a resolver from `read_tf_config`): its chief and workers."""
    if resolver is None:
        return 1
    spec = resolver.cluster_spec()
    return sum(spec.num_tasks(task) for task in ("chief", "worker") if task in spec.jobs)


def choose_strategy(strategy, tpu=None, replicas=None, tf_config=None, num_gpus=0):
    """The strategy kind a run uses ("default", "mirrored", "multiworker",
    "tpu"), from the `strategy` asked for, `tpu`, `replicas`, TF_CONFIG
    (`read_tf_config`'s resolver) and the visible GPUs; raises TrainError
    for a request that cannot run."""
    if strategy not in STRATEGIES:
        raise TrainError(f"`strategy` must be one of {', '.join(STRATEGIES)}, got {strategy!r}")
    if replicas is not None and replicas < 1:
        raise TrainError(f"`replicas` must be at least 1, got {replicas}")
    kind = strategy
    if strategy == "auto":
        if tpu:
            kind = "tpu"
        elif count_workers(tf_config) > 1:
            kind = "multiworker"
        elif num_gpus or replicas:
            kind = "mirrored"
        else:
            kind = "default"
    if kind == "tpu" and not tpu:
        raise TrainError("`strategy` tpu needs `tpu` NAME (the Cloud TPU's name, or local on a TPU VM)")
    if tpu and kind != "tpu":
        raise TrainError(f"`tpu` {tpu} needs `strategy` tpu (or auto), got `strategy` {strategy}")
    if kind == "multiworker" and tf_config is None:
        raise TrainError(
            "`strategy` multiworker needs TF_CONFIG naming the cluster and this task (docs/scaling-out.md)"
        )
    if replicas is not None and kind != "mirrored":
        raise TrainError(f"`replicas` applies to `strategy` mirrored, and this run uses {kind}")
    if kind == "mirrored" and replicas and num_gpus and replicas > num_gpus:
        raise TrainError(f"`replicas` {replicas} is more than the {num_gpus} visible GPUs")
    return kind


def check_tpu_paths(data, model_dir, export_dir=None):
    """A Cloud TPU reads and writes through Cloud Storage only: every path must be gs://."""
    for argument, path in zip(_TPU_PATH_ARGUMENTS, (data, model_dir, export_dir)):
        if path is not None and not str(path).startswith("gs://"):
            raise TrainError(
                f"`{argument}` must be a gs:// path with `strategy` tpu (the TPU reads and writes "
                f"Cloud Storage only), got {path}"
            )


def create_strategy(kind, replicas=None, tpu=None):
    """The tf.distribute strategy of a kind chosen by `choose_strategy`."""
    if kind == "default":
        return tf.distribute.get_strategy()
    if kind == "mirrored":
        return tf.distribute.MirroredStrategy(_mirrored_devices(replicas))
    if kind == "multiworker":
        from protein_location.training import keras_multiworker  # keras-team/keras#20585, see that module

        keras_multiworker.apply()
        return tf.distribute.MultiWorkerMirroredStrategy()
    if kind == "tpu":
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu)
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver)
    raise TrainError(f"`strategy` must be one of {', '.join(STRATEGIES)}, got {kind!r}")


def _mirrored_devices(replicas):
    """The first `replicas` GPUs (all without it); without GPUs, the CPU split
    into `replicas` logical devices, so the multi-replica path runs anywhere."""
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        return [f"/gpu:{index}" for index in range(replicas or len(gpus))]
    cpu = tf.config.list_physical_devices("CPU")[0]
    try:
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * (replicas or 1))
    except RuntimeError:  # the runtime is already up (a second run in one process): keep its devices
        pass
    devices = [device.name for device in tf.config.list_logical_devices("CPU")]
    if replicas and len(devices) < replicas:
        raise TrainError(
            f"`replicas` {replicas}: this process already has {len(devices)} CPU device(s); start a fresh process"
        )
    return devices[: replicas or 1]


def num_input_pipelines(strategy):
    """How many input pipelines feed the replicas: one per worker machine (TPU host)."""
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return count_workers(read_tf_config())
    return getattr(strategy.extended, "num_hosts", 1) if isinstance(strategy, tf.distribute.TPUStrategy) else 1


def local_replicas(strategy):
    """Replicas on this machine (this TPU host)."""
    return strategy.num_replicas_in_sync // num_input_pipelines(strategy)


def is_multi_worker(strategy):
    return num_input_pipelines(strategy) > 1 and isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)


def task(strategy):
    """(task type, task index) of this process; (None, None) outside a cluster."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not is_multi_worker(strategy):
        return None, None
    return resolver.task_type, resolver.task_id


def is_chief(strategy):
    """The one process that writes the run's outputs: the chief task, or worker
    0 of a cluster without one; every process outside a cluster."""
    task_type, index = task(strategy)
    if task_type is None:
        return True
    return task_type == "chief" or (
        task_type == "worker" and index == 0 and "chief" not in read_tf_config().cluster_spec().jobs
    )


def write_dir(model_dir, strategy):
    """Where this process writes: the run folder for the chief, a temporary
    folder `workertemp_<index>` inside it for the other workers (the
    TensorFlow multi-worker convention); remove it with `remove_write_dir`."""
    if is_chief(strategy):
        return model_dir
    return posixpath.join(model_dir, f"workertemp_{task(strategy)[1]}")


def remove_write_dir(model_dir, path):
    if path != model_dir and tf.io.gfile.exists(path):
        tf.io.gfile.rmtree(path)


def replica_disagreement(model):
    """The largest absolute difference between the local replicas' copies of
    any model variable (0.0 with one replica): the export takes the first copy."""
    worst = 0.0
    for variable in model.variables:
        copies = _local_copies(variable)
        worst = max([worst] + [float(np.max(np.abs(copy - copies[0]))) for copy in copies[1:]])
    return worst


def _local_copies(variable):
    tf_variable = variable._value  # the tf.Variable under a Keras variable: mirrored, one copy per replica
    values = getattr(tf_variable, "values", None)
    return [np.asarray(v) for v in values] if values else [np.asarray(tf_variable)]


def describe(strategy):
    if isinstance(
        strategy, (tf.distribute.MirroredStrategy, tf.distribute.MultiWorkerMirroredStrategy, tf.distribute.TPUStrategy)
    ):
        devices = list(strategy.extended.worker_devices)
    else:  # the default strategy places ops itself and lists no devices
        devices = [device.name for device in tf.config.list_logical_devices()[:1]]
    where = ""
    task_type, index = task(strategy)
    if task_type is not None:
        where = f", {num_input_pipelines(strategy)} workers, this is {task_type} {index}"
        where += " (chief)" if is_chief(strategy) else ""
    name = type(strategy).__name__
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        name = "MultiWorkerMirroredStrategy"  # its class is CollectiveAllReduceStrategy
    return f"{name} with {strategy.num_replicas_in_sync} replica(s) on {', '.join(devices)}{where}"
