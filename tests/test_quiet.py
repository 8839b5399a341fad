"""What a command prints: its own lines only, `--verbose` (or
TF_CPP_MIN_LOG_LEVEL) bringing TensorFlow's start-up lines back
(core/quiet.py), and a library error's arguments as its flags (core/errors.py)."""

import os
import subprocess
import sys

import pytest

from protein_location.core import quiet
from tests.helpers import ROOT


def run_as_a_user(*args):
    """`python <args>` in a fresh process with the user's environment: no TF_CPP_MIN_LOG_LEVEL."""
    env = {key: value for key, value in os.environ.items() if key != "TF_CPP_MIN_LOG_LEVEL"}
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run(
        [sys.executable, *map(str, args)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )


def test_a_command_prints_only_its_own_error_line_and_verbose_brings_tensorflows_lines_back(tmp_path):
    quiet_run = run_as_a_user("-m", "data_prep", "verify", tmp_path / "nothing")
    assert quiet_run.returncode == 1
    expected = (
        f"error: {tmp_path / 'nothing'}: no dataset.json here; convert a dataset first with "
        "`python -m data_prep convert`\n"
    )
    assert quiet_run.stderr == expected and quiet_run.stdout == ""
    loud = run_as_a_user("-m", "data_prep", "verify", tmp_path / "nothing", "--verbose")
    assert loud.returncode == 1 and loud.stderr.endswith(expected)
    assert "absl::InitializeLog" in loud.stderr  # TensorFlow's own start-up lines, as without us


def test_what_a_failing_block_printed_below_python_is_replayed_and_a_quiet_one_is_kept_off(capfd):
    with quiet.silenced_stderr():
        os.write(2, b"start-up line\n")
    with pytest.raises(ImportError, match="^no such library$"):
        with quiet.silenced_stderr():
            os.write(2, b"why it failed\n")
            raise ImportError("no such library")
    assert capfd.readouterr().err == "why it failed\n"


def test_the_command_line_names_the_flag_of_an_argument_a_library_error_names():
    from protein_location import __main__ as model_main
    from protein_location.core.command_line import flags_of
    from protein_location.core.errors import naming_flags

    flags = flags_of(model_main._parser())  # every sub-command's options
    assert flags["crop_model"] == "--crop-model" and flags["cell_scores"] == "--cell-scores"
    message = (
        "`cell_scores` crop needs `crop_model`; Keras says: a Lambda layer whose `function` is Python code; "
        "see `python -m data_prep convert`"
    )
    assert naming_flags(message, flags) == (
        "--cell-scores crop needs --crop-model; Keras says: a Lambda layer whose "
        "`function` is Python code; see `python -m data_prep convert`"
    )
