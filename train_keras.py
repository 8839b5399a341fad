"""Train an SE-ResNet on converted HPA TFRecords, tune thresholds, export a SavedModel.

python train_keras.py --data tfrecords/demo --model-dir runs/demo --epochs 10 --export export/demo
"""

import argparse
import sys


def parse_args(argv=None, prog=None):
    """The flags: one per TrainConfig field (training/config.py), and the export formats."""
    return build_parser(prog).parse_args(argv)


def build_parser(prog=None):
    """train_keras.py's argparse parser (imports TensorFlow: the flags come from TrainConfig)."""
    from protein_location.core.cli_flags import add_verbose_flag
    from protein_location.training import config as config_lib

    parser = argparse.ArgumentParser(
        prog=prog, description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    config_lib.add_flags(parser)
    add_verbose_flag(parser)
    return parser


def main(argv=None, prog=None):
    # First: a SIGTERM while TensorFlow is imported (seconds) ends in one line too.
    from protein_location.core.command_line import run_command

    def work():
        args = parse_args(argv, prog)
        from protein_location.export import export_formats_of
        from protein_location.training import config as config_lib, train

        # Checked before training: a missing converter must not cost a run.
        formats = export_formats_of(args.tflite, args.tflite_quantize, args.onnx, args.export_dir)
        train(config_lib.config_from_args(args, export_formats=formats))

    # Known before the flags are parsed: parsing them imports TensorFlow.
    def flags():
        from protein_location.core.command_line import flags_of

        return flags_of(build_parser(prog))

    return run_command(work, verbose="--verbose" in (sys.argv[1:] if argv is None else argv), flags=flags)


if __name__ == "__main__":
    sys.exit(main())
