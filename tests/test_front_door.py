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


def test_every_commands_flags_are_generated_from_its_dataclass():
    """One convention behind the front door: each command's options are its
    flags dataclass's fields (core.cli_flags), plus --verbose (and the export
    formats' shared flags), nothing written by hand beside them."""
    import train_keras
    from protein_location.core import cli_flags
    from protein_location.training import config as config_lib

    def options(parser):
        return {action.dest for action in parser._actions if action.dest not in ("help", "verbose")}

    shared = {"tflite", "tflite_quantize", "onnx"}
    for main in (data_prep_main, model_main):
        commands = main._parser()._subparsers._group_actions[0].choices
        assert list(commands) == list(main.COMMANDS)
        for name, (flags_class, _) in main.COMMANDS.items():
            assert options(commands[name]) - shared == set(cli_flags.flag_names(flags_class)), name
    augment = {f"augment_{name}" for name in config_lib.AUGMENT_FLAGS}
    assert options(train_keras.build_parser()) == set(config_lib.flag_names()) | augment | shared


def test_flag_defaults_spelled_out_for_a_quick_help_are_the_librarys():
    """`--help` imports no TensorFlow, so a few defaults are written out in the flags; they are the library's."""
    import dataclasses

    from protein_location.cells import crops

    size = next(field for field in dataclasses.fields(data_prep_main.CropsFlags) if field.name == "size")
    assert size.default == crops.DEFAULT_CROP_SIZE
