"""The commands' one flag convention: a dataclass field is a flag (`flag`),
and argparse flags are generated from such fields (`add_field_flag`,
`add_dataclass_flags`) and read back (`values_of`), so a command and the
library call behind it cannot drift (`TrainConfig`, data_prep's
`ConvertRequest`); and flags that more than one command takes, defined once.
No TensorFlow at import: parsers are built before TensorFlow is imported.
"""

import argparse
import dataclasses


def flag(name, help, default=dataclasses.MISSING, one_of=None, **argparse_kwargs):
    """A dataclass field that is also the command-line flag `name` (a name
    without dashes: a positional argument), argparse's options in
    `argparse_kwargs` (a bool default makes a switch). Fields with the same
    `one_of` name are mutually exclusive flags, exactly one of them required."""
    metadata = {"flag": name, "help": help, "argparse": argparse_kwargs, "one_of": one_of}
    return dataclasses.field(default=default, metadata=metadata)


def add_field_flag(parser, dest, name, help, default, kwargs):
    """Adds flag `name` (stored in `dest`) to an argparse parser or group: a
    bool default is a switch (--x/--no-x when on by default), another default
    gives the type, and the metavar is the flag's name (--size SIZE)."""
    kwargs = dict(kwargs)
    if isinstance(default, bool):
        kwargs.setdefault("action", argparse.BooleanOptionalAction if default else "store_true")
    else:
        kwargs.setdefault("metavar", None if "choices" in kwargs else name.lstrip("-").replace("-", "_").upper())
        if default is not None and default is not dataclasses.MISSING and "type" not in kwargs:
            kwargs["type"] = type(default)
    if default is not dataclasses.MISSING:
        kwargs["default"] = default
    if not name.startswith("-"):  # a positional argument: argparse takes its dest from its name
        kwargs.pop("metavar", None)
        parser.add_argument(dest, metavar=name, help=help, **kwargs)
        return
    parser.add_argument(name, dest=dest, help=help, **kwargs)


def add_dataclass_flags(parser, cls, names=None):
    """Adds the flag of each flag field of dataclass `cls` (of `names`, in their
    order, when given) to an argparse parser or group."""
    fields = {field.name: field for field in dataclasses.fields(cls) if "flag" in field.metadata}
    exclusive = {}
    for name in fields if names is None else names:
        meta = fields[name].metadata
        target = parser
        if meta.get("one_of"):
            if meta["one_of"] not in exclusive:
                exclusive[meta["one_of"]] = parser.add_mutually_exclusive_group(required=True)
            target = exclusive[meta["one_of"]]
        add_field_flag(target, name, meta["flag"], meta["help"], fields[name].default, meta["argparse"])
    return parser


def values_of(args, cls):
    """{field: parsed value} of the flag fields of dataclass `cls` in parsed `args`."""
    return {field.name: getattr(args, field.name) for field in dataclasses.fields(cls) if "flag" in field.metadata}


def flag_names(cls):
    """{field: its flag} of dataclass `cls`'s flag fields, for `errors.naming_flags`."""
    return {field.name: field.metadata["flag"] for field in dataclasses.fields(cls) if "flag" in field.metadata}


def add_verbose_flag(parser):
    """--verbose, which every command takes (`command_line.run_command` reads it)."""
    parser.add_argument(
        "--verbose",
        action="store_true",
        help="also TensorFlow's own start-up and log lines (as TF_CPP_MIN_LOG_LEVEL set does)",
    )


def add_command_parsers(parser, commands, extra_flags=None):
    """A subcommand of `parser` for each of `commands` ({name: (its flags
    dataclass, its one-line help)}, in `--help`'s order), its flags generated
    from the dataclass, then `extra_flags` ({name: a function adding more to
    that subcommand}) and --verbose."""
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name, (flags_class, help) in commands.items():
        command = subparsers.add_parser(name, formatter_class=argparse.ArgumentDefaultsHelpFormatter, help=help)
        add_dataclass_flags(command, flags_class)
        if extra_flags and name in extra_flags:
            extra_flags[name](command)
        add_verbose_flag(command)
    return parser


# --beam-options of every command that runs on Beam (convert, predict).
BEAM_OPTIONS_HELP = (
    "with --runner beam: Beam's pipeline options as one string, e.g. \"--runner="
    'DataflowRunner --project=P --region=R --temp_location=gs://B/tmp"; default: '
    "DirectRunner on this machine"
)


# The export formats beside a SavedModel (`export.formats`): each one's flag and
# what it writes; `train_keras.py --export` and `python -m protein_location export` take them.
EXPORT_FORMAT_FLAGS = {
    "tflite": ("--tflite", "also model.tflite (float32) in the SavedModel's version folder"),
    "tflite_int8": ("--tflite-quantize", "also model_int8.tflite (dynamic-range int8 weights)"),
    "onnx": ("--onnx", "also model.onnx (needs tf2onnx)"),
}


def add_export_format_flags(parser, condition=""):
    """Adds --tflite, --tflite-quantize and --onnx to an argparse parser, each
    help after `condition` (train_keras.py: "with --export: ")."""
    for flag, help in EXPORT_FORMAT_FLAGS.values():
        parser.add_argument(flag, action="store_true", help=condition + help)
