"""Flags that more than one command takes, defined once (no TensorFlow at import:
`python -m protein_location`'s parser is built before TensorFlow is imported)."""

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
