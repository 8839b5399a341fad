"""How the command-line tools end: every error of bad input, a full disk or a
stop signal as one line on stderr (`error: ...`) and an exit code, never a
traceback. Used by `train_keras.py`, `python -m data_prep` and
`python -m protein_location`."""

import argparse
import sys

from protein_location.core import quiet, stop_signals
from protein_location.core.errors import ProteinLocationError, naming_flags


def run_command(work, verbose=False, flags=None):
    """Runs `work()` with SIGTERM and SIGINT handled (`stop_signals`); returns
    the exit code: 0, 1 for an error (bad input, a full or read-only disk),
    128 + the signal's number for a stop. TensorFlow is imported first,
    without its start-up lines unless `verbose` (`quiet`). An error's
    arguments are printed as the command's flags (`errors.naming_flags`):
    `flags`, a callable giving {argument: flag} (`flags_of` a parser)."""
    with stop_signals.handled():
        try:
            quiet.start_tensorflow_quietly(verbose)
            work()
        except ProteinLocationError as error:
            print(f"error: {naming_flags(error, flags() if flags else {})}", file=sys.stderr)
            return 1
        except stop_signals.StopRequested as stop:
            print(f"error: {stop}", file=sys.stderr)
            return stop.exit_code
        except Exception as error:  # a library's own write (OSError, h5py's RuntimeError, TensorFlow's OpError)
            message = _disk_error_line(error)
            if message is None:
                raise
            print(f"error: {message}", file=sys.stderr)
            return 1
    return 0


def _disk_error_line(error):
    """One line for a write that failed outside the project's own writers
    (a library writing on its own), or None if `error` is not such a failure."""
    from protein_location.core import output_files

    reason = output_files.disk_error_reason(error)
    if reason is None:
        return None
    output_files.release_failed_writer(error)  # h5py's failed files close now, not in a crash at exit
    where = getattr(error, "filename", None)
    detail = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return f"{where + ': ' if where else ''}{reason} ({detail}); {output_files.RETRY_HINT}"


def flags_of(parser):
    """{argument: flag} of an argparse parser and its sub-commands' parsers:
    each option's destination (`crop_model`) and its long flag (--crop-model).
    argparse lists its actions only in `_actions`."""
    flags = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for subparser in action.choices.values():
                flags.update(flags_of(subparser))
        elif any(option.startswith("--") for option in action.option_strings):
            flags[action.dest] = next(option for option in action.option_strings if option.startswith("--"))
    return flags
