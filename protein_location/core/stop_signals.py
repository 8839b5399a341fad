"""SIGTERM (what a preempted cloud VM, GKE or a TPU VM sends) and SIGINT
(Ctrl-C) stop a command at its next safe point, in one line saying how to
go on.

    with stop_signals.handled():        # run_command does this for every CLI
        ...
        stop_signals.raise_if_requested()   # a safe point: between batches, stages, shards
        with stop_signals.interruptible():
            wait_for_workers()          # here a signal raises StopRequested at once

The handler only records the signal; `StopRequested` is raised at the next
safe point: the training callback `StopAtSignal` checks between batches
(fit, evaluate, predict), and each stage of a command checks before the next
(`raise_if_requested`). Raising from the handler wherever the main thread
happens to be is not safe: inside TensorFlow's own context managers the
exception is replaced by another ("Exiting device scope without proper
scope nesting"), and in the soak (bench/soak.py) some never took effect
(an exception raised inside a `__del__` is printed and dropped). Only
`interruptible()` blocks, where the main thread runs this project's own
code or waits on worker processes, raise at once. A second signal, or
GRACE_SECONDS without a safe point, ends the process at once (every file is
written whole or not at all, so that is safe too), in one line.

`StopRequested` derives from BaseException, as KeyboardInterrupt does, so
`except Exception` clean-ups (which remove a failed conversion's shards)
let it through and leave what a resume reuses.
"""

import contextlib
import os
import signal
import sys
import threading

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopRequested(BaseException):
    """A stop signal arrived; `signum` is the signal, `exit_code` the shell's 128 + signum."""

    def __init__(self, signum, message=None):
        self.signum = signum
        self.exit_code = 128 + signum
        super().__init__(message or f"stopped by {signal.Signals(signum).name}")

    def with_message(self, message):
        return StopRequested(self.signum, message)

    @property
    def name(self):
        return signal.Signals(self.signum).name


# How long a command may take from a stop signal to its next safe point before
# it ends at once: a preempted VM gets 30 s (GCE, GKE's default grace period).
GRACE_SECONDS = 20.0

_state = {"requested": None, "interruptible": 0, "watchdog": None}


def _exit_at_once(signum, why):
    name = signal.Signals(signum).name
    print(
        f"error: stopped by {name} {why}; every file is whole or absent: run the same command to go on",
        file=sys.stderr,
        flush=True,
    )
    os._exit(128 + signum)


def _handler(signum, frame):
    if _state["requested"] is not None:  # a second signal: the user insists
        _exit_at_once(signum, "again, at once")
    _state["requested"] = signum
    watchdog = threading.Timer(
        GRACE_SECONDS, _exit_at_once, (signum, f"and no safe point came within {GRACE_SECONDS:g} s: at once")
    )
    watchdog.daemon = True
    watchdog.start()
    _state["watchdog"] = watchdog
    if _state["interruptible"]:
        raise StopRequested(signum)


@contextlib.contextmanager
def handled():
    """Installs the handler for SIGTERM and SIGINT for the block (main thread only;
    elsewhere the block runs with the signals' handlers unchanged)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {signum: signal.signal(signum, _handler) for signum in SIGNALS}
    _state["requested"] = None
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        _state["requested"] = None
        if _state["watchdog"] is not None:
            _state["watchdog"].cancel()
            _state["watchdog"] = None


@contextlib.contextmanager
def interruptible():
    """A block where a signal raises StopRequested at once (one that arrived before raises on entry)."""
    raise_if_requested()
    _state["interruptible"] += 1
    try:
        yield
    finally:
        _state["interruptible"] -= 1


def raise_if_requested():
    """A safe point: raises StopRequested if a stop signal has arrived. The
    request stands until `handled` ends, so every later safe point stops the
    command too."""
    signum = _state["requested"]
    if signum is not None:
        raise StopRequested(signum)
