"""SIGTERM (what a preempted cloud VM, GKE or a TPU VM sends) and SIGINT
(Ctrl-C) stop a command at a safe point, in one line saying how to go on.

    with stop_signals.handled():
        ...                      # a signal raises StopRequested here at once
        with stop_signals.deferred():
            model.fit(...)       # here it only sets a flag; StopAtSignal raises at the next batch

Outside `deferred()` the handler raises `StopRequested` at once: every file
a command writes is written whole or not at all (`output_files`), so any
instant is safe; the stages of a command also check between them
(`raise_if_requested`), for a raise that was lost. Inside, where a step or the end-of-epoch backup must not
be cut, the signal waits for `raise_if_requested()` (the training callback
`StopAtSignal` calls it between batches); a second signal does not wait.

`StopRequested` derives from BaseException, as KeyboardInterrupt does, so
`except Exception` clean-ups (which remove a failed conversion's shards)
let it through and leave what a resume reuses.
"""

import contextlib
import signal
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


_state = {"requested": None, "deferred": 0}


def _handler(signum, frame):
    # A second signal while one is held stops at once: every write is atomic, so that is safe too.
    at_once = not _state["deferred"] or _state["requested"] is not None
    _state["requested"] = signum
    if at_once:
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


@contextlib.contextmanager
def deferred():
    """A block a signal must not cut: it is held until `raise_if_requested`, or the block's end."""
    _state["deferred"] += 1
    try:
        yield
    finally:
        _state["deferred"] -= 1
    if not _state["deferred"]:
        raise_if_requested()


def raise_if_requested():
    """Raises StopRequested if a signal has arrived (held while deferred, or
    raised at once but lost: Python runs a handler between any two bytecodes,
    and an exception it raises inside a `__del__`, which TensorFlow's objects
    run often, is printed and dropped). The request stands until `handled`
    ends, so every later check stops the command."""
    signum = _state["requested"]
    if signum is not None:
        raise StopRequested(signum)


def requested():
    return _state["requested"] is not None
