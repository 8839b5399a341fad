"""`protein-location <command>`: one front door to every stage's entry point."""

import re
import subprocess
import sys
from pathlib import Path

import protein_location_command as front_door
from data_prep import __main__ as data_prep_main
from protein_location import __main__ as model_main


def subcommands(parser):
    """The {a,b,...} choices an argparse parser's usage line lists."""
    return tuple(re.search(r"\{([a-z,]+)\}", parser.format_usage()).group(1).split(","))


def test_the_front_door_lists_every_command_of_every_entry_point():
    assert sorted(front_door.DATA_COMMANDS) == sorted(subcommands(data_prep_main._parser()))
    assert sorted(front_door.MODEL_COMMANDS) == sorted(subcommands(model_main._parser()))
    script = Path(sys.executable).parent / "protein-location"  # the console script setup.py installs
    shown = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=60, check=True).stdout
    assert shown == front_door.usage() + "\n"
    for command in (*front_door.DATA_COMMANDS, "train", *front_door.MODEL_COMMANDS):
        assert command in shown


def test_a_command_through_the_front_door_is_the_stages_own(tmp_path, capsys):
    code = front_door.main(
        ["synth", "--out", str(tmp_path / "raw"), "--train", "3", "--test", "1", "--size", "32", "--workers", "1"]
    )
    assert code == 0
    assert capsys.readouterr().out.splitlines()[-1] == f"synth: 3 train and 1 test images (32x32) in {tmp_path / 'raw'}"
    assert len(list((tmp_path / "raw" / "train").glob("*_green.png"))) == 3


def test_an_unknown_command_is_named_with_the_usage(capsys):
    assert front_door.main(["fit"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: protein-location <command>")
    assert err.splitlines()[-1] == "protein-location: error: unknown command 'fit'"
