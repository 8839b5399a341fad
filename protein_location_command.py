"""`protein-location <command>`: one front door to every stage.

    protein-location synth|convert|crops|verify ...      the data (python -m data_prep)
    protein-location train ...                           training (train_keras.py)
    protein-location export|predict|score|explain|cells  using a model (python -m protein_location)

Each command is the same code, flags and output as the stage's own entry
point, which stays: this module only hands the rest of the command line to
it. It lives above both `protein_location` and `data_prep` because the
library never imports the data creation stage.
"""

import sys

# Which entry point owns each command, in the order the stages run.
DATA_COMMANDS = ("synth", "convert", "crops", "verify")
TRAIN_COMMAND = "train"
MODEL_COMMANDS = ("export", "predict", "score", "explain", "cells")
PROG = "protein-location"


def usage():
    return "\n".join(
        [
            f"usage: {PROG} <command> [flags]   ({PROG} <command> --help: the command's flags and their defaults)",
            "",
            f"data:         {', '.join(DATA_COMMANDS):38s} (also python -m data_prep <command>)",
            f"training:     {TRAIN_COMMAND:38s} (also python train_keras.py)",
            f"using models: {', '.join(MODEL_COMMANDS):38s} (also python -m protein_location <command>)",
            "",
            "Any command takes --verbose: TensorFlow's own start-up and log lines too.",
        ]
    )


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0
    command = argv[0]
    if command in DATA_COMMANDS:
        from data_prep import __main__ as data_prep_main

        return data_prep_main.main(argv, prog=PROG)
    if command == TRAIN_COMMAND:
        import train_keras

        return train_keras.main(argv[1:], prog=f"{PROG} {TRAIN_COMMAND}")
    if command in MODEL_COMMANDS:
        from protein_location import __main__ as model_main

        return model_main.main(argv, prog=PROG)
    print(usage(), file=sys.stderr)
    print(f"{PROG}: error: unknown command {command!r}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
