"""TensorFlow's start-up lines kept off a command's output.

Importing TensorFlow prints lines of its own on stderr (oneDNN, CUDA drivers,
CPU features, "All log messages before absl::InitializeLog()"), twice, and
its first look for a GPU one more ("failed call to cuInit" on a machine
without one). They are written by C++ before any log level applies, so the
only way to keep them out is to point file descriptor 2 elsewhere while
they are printed. A command (`command_line.run_command`) therefore imports
TensorFlow first, quietly, unless the user asked for them: `--verbose`, or
`TF_CPP_MIN_LOG_LEVEL` set in the environment (TensorFlow's own switch).
"""

import contextlib
import importlib
import os
import sys
import tempfile

# TensorFlow's C++ log threshold for a quiet command: errors only reach the
# user as the Python exceptions that carry them.
QUIET_LOG_LEVEL = "3"


@contextlib.contextmanager
def silenced_stderr():
    """File descriptor 2 (what C++ writes to, below Python's sys.stderr) goes
    to a temporary file for the block; if the block raises, what was written
    there is replayed on stderr first, so a failed import still explains itself."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        except BaseException:
            os.dup2(saved, 2)
            captured.seek(0)
            os.write(2, captured.read())
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def start_tensorflow_quietly(verbose=False):
    """Imports TensorFlow and lets it look for accelerators with its start-up
    lines kept off stderr, and sets its later C++ and Python logs to errors
    only; nothing when `verbose`, when the user set TF_CPP_MIN_LOG_LEVEL, or
    when TensorFlow is already imported. Listing the devices does not
    initialize them: a strategy can still configure logical devices after."""
    if verbose or "TF_CPP_MIN_LOG_LEVEL" in os.environ or "tensorflow" in sys.modules:
        return
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = QUIET_LOG_LEVEL
    with silenced_stderr():
        tf = importlib.import_module("tensorflow")
        tf.config.list_physical_devices()
    tf.get_logger().setLevel("ERROR")
