"""Choosing the tf.distribute strategy for this machine."""

import tensorflow as tf


def select_strategy():
    """MirroredStrategy over all visible GPUs, else the default strategy."""
    gpus = tf.config.list_logical_devices("GPU")
    if gpus:
        return tf.distribute.MirroredStrategy([gpu.name for gpu in gpus])
    return tf.distribute.get_strategy()


def describe(strategy):
    if isinstance(strategy, tf.distribute.MirroredStrategy):
        devices = list(strategy.extended.worker_devices)
    else:  # the default strategy places ops itself and lists no devices
        devices = [device.name for device in tf.config.list_logical_devices()[:1]]
    return f"{type(strategy).__name__} with {strategy.num_replicas_in_sync} replica(s) on {', '.join(devices)}"
