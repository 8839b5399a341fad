"""Worker processes of the preprocessing stage: started fresh, never forked.

TensorFlow starts threads as soon as it is imported, and a forked copy of a
process with threads can hang on a lock that one of them held at the fork.
So every pool here starts its workers with the "spawn" method, as new
interpreters that import what they need; the price is their start-up: a
conversion worker imports no TensorFlow (`data_prep.shard_writer`) and
starts in about 0.4 s, against 6 s for one that imports TensorFlow. This
module imports nothing heavy, so that a worker starts clean.
"""

import importlib
import multiprocessing
import os
import sys

START_METHOD = "spawn"
# A spawned conversion worker starts in about 0.4 s (no TensorFlow), what the
# parent takes for a few dozen 512 px images; one that meets JPEGs loads
# TensorFlow (6 s). By default a conversion starts one worker per this many
# images, up to the cores.
IMAGES_PER_WORKER = 200


def default_workers(num_images):
    """The worker count of a conversion of `num_images` without --workers."""
    return max(1, min(os.cpu_count() or 1, num_images // IMAGES_PER_WORKER))


def process_pool(processes, preload=None):
    """A multiprocessing.Pool of `processes` spawned workers.

    Args:
        processes: number of workers.
        preload: name of a module each worker imports before its first task,
            with its stderr silenced (see `import_quietly`); None imports
            only what the tasks need, as they arrive.
    """
    context = multiprocessing.get_context(START_METHOD)
    return context.Pool(processes, start_worker, (os.getpid(), preload))


def start_worker(parent, preload=None):
    """A worker's first step: it dies with its parent (PID `parent`), then imports `preload` quietly."""
    die_with_parent(parent)
    if preload is not None:
        import_quietly(preload)


def die_with_parent(parent):
    """Asks Linux to send this process SIGKILL when the process that started it
    dies, however it dies (kill -9 included): a conversion's workers must not
    go on writing shards into a folder whose lock their parent no longer
    holds. Elsewhere (macOS, Windows) a no-op: the pool's own clean-up on
    SIGTERM is all there is."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes
    import signal

    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the parent died before the request was made
        os._exit(1)


def import_quietly(module):
    """Imports `module`, and starts TensorFlow's runtime on one thread if it
    loaded it, with file descriptor 2 silenced (`quiet.silenced_stderr`).

    TensorFlow prints its C++ start-up lines on import (oneDNN, CUDA) and on
    its first op (the device probe: "failed call to cuInit" on a machine
    without a GPU), before any log level applies; the parent has shown them
    once, W workers would repeat them W times. An import error still raises,
    with what it printed replayed.
    """
    from protein_location.core import quiet

    with quiet.silenced_stderr():
        importlib.import_module(module)
        if "tensorflow" in sys.modules:
            tf = sys.modules["tensorflow"]
            # One core each: the pool is the parallelism; W workers with a
            # thread per core each would contend for the same cores.
            tf.config.threading.set_intra_op_parallelism_threads(1)
            tf.config.threading.set_inter_op_parallelism_threads(1)
            tf.constant(0).numpy()  # the runtime starts with the first op
