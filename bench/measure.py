"""Measuring a stage: timings (median, min, max), peak memory from /proc,
ratios, and a stage run in a fresh process so its memory is its own."""

import resource
import time
import traceback

import tensorflow as tf

from bench import convert as convert_bench


class BenchError(RuntimeError):
    """A stage that failed (its traceback follows)."""


def summary(seconds, count):
    """convert.py's summary (median/min/max seconds, images/s at the median) plus images/s at min and max."""
    record = convert_bench.summary(seconds, count)
    record.update(
        images=count,
        runs=len(seconds),
        images_per_s_min=round(count / max(seconds), 1),
        images_per_s_max=round(count / min(seconds), 1),
    )
    return record


def timed(function):
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def time_alternating(functions, repeats, warmup=1):
    """{name: [seconds per run]}: each function `warmup` times untimed, then the
    functions in turn, `repeats` rounds, so drift in the machine hits all alike."""
    for function in functions.values():
        for _ in range(warmup):
            function()
    seconds = {name: [] for name in functions}
    for _ in range(repeats):
        for name, function in functions.items():
            seconds[name].append(timed(function))
    return seconds


def _status_mb(field):
    """VmHWM (peak) or VmRSS (now) of this process in MB, from /proc; ru_maxrss elsewhere."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def peak_rss_mb():
    return _status_mb("VmHWM")


def rss_mb():
    return _status_mb("VmRSS")


def ratio(a, b, digits=3):
    """a / b to `digits` significant digits (None when b is 0): a share far
    below 1, as on a loaded machine, must not round to 0."""
    return float(f"{a / b:.{digits}g}") if b else None


def _stage_process(connection, stage, settings):
    tf.get_logger().setLevel("ERROR")  # export's AutoGraph notices are not news here
    try:
        connection.send(("ok", stage(settings)))
    except BaseException:  # noqa: BLE001 - the parent reports it
        connection.send(("error", traceback.format_exc()))
    finally:
        connection.close()


def run_isolated(context, stage, settings):
    """stage(settings) in a fresh Python process; returns its result or raises BenchError."""
    receive, send = context.Pipe(duplex=False)
    process = context.Process(target=_stage_process, args=(send, stage, settings))
    process.start()
    send.close()
    try:
        status, value = receive.recv()
    except EOFError:
        process.join()
        killed = " (killed: out of memory?)" if process.exitcode == -9 else ""
        raise BenchError(f"{stage.__name__}: the process died with exit code {process.exitcode}{killed}") from None
    process.join()
    if status != "ok":
        raise BenchError(f"{stage.__name__} failed:\n{value}")
    return value
