"""The exported model in other runtimes' formats: TFLite (LiteRT) and ONNX.

Written inside a SavedModel version folder by `exporter.export_model` (while
that folder still has its temporary name, so a failed check leaves no version):

| format | file | converter | checked with |
| --- | --- | --- | --- |
| `tflite` | `model.tflite` | `tf.lite.TFLiteConverter`, float32 | LiteRT (`ai-edge-litert`) |
| `tflite_int8` | `model_int8.tflite` | the same, dynamic-range int8 weights | LiteRT |
| `onnx` | `model.onnx` | tf2onnx | onnxruntime |

Every file has one signature: input `image` uint8 [batch, S, S, 4] RGBY at
the model's input side S (resize before calling: TFLite has no area resize
among its builtin ops), outputs `probabilities` float32 [batch, C] and
`labels` int32 [batch, C] under the single-view thresholds, as
`serving_single_view` (no test-time augmentation: a caller averages views).

After writing, each file is run on CHECK_IMAGES seeded random images and
compared with the SavedModel's `serving_single_view`; a float file that differs
by more than FLOAT_TOLERANCE in any probability fails the export.
"""

import collections
import contextlib
import posixpath

import numpy as np
import tensorflow as tf

from protein_location.core import cli_flags
from protein_location.core.errors import ExportError
from protein_location.export import onnx_format, tflite_format
from protein_location.export.signatures import SINGLE_VIEW_SIGNATURE

FORMATS = tuple(cli_flags.EXPORT_FORMAT_FLAGS)  # "tflite", "tflite_int8", "onnx"
FILE_NAMES = {**tflite_format.FILE_NAMES, "onnx": onnx_format.FILE_NAME}
FLOAT_TOLERANCE = 1e-3
CHECK_IMAGES = 8
RUNNERS = {"tflite": tflite_format.run_tflite, "tflite_int8": tflite_format.run_tflite, "onnx": onnx_format.run_onnx}
RUNTIME_MODULES = {
    "tflite": tflite_format.RUNTIME_MODULE,
    "tflite_int8": tflite_format.RUNTIME_MODULE,
    "onnx": onnx_format.RUNTIME_MODULE,
}


def check_available(formats):
    """Fails early, before any training or writing, when a converter is missing."""
    unknown = sorted(set(formats) - set(FORMATS))
    if unknown:
        raise ExportError(f"unknown export format(s) {', '.join(unknown)}; choose from {', '.join(FORMATS)}")
    if "onnx" in formats:
        try:
            import tf2onnx  # noqa: F401
        except ImportError as error:
            raise ExportError(f"--onnx needs tf2onnx ({error}); {onnx_format.INSTALL_HINT}") from None


def check_images(side, count=CHECK_IMAGES, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (count, side, side, 4), dtype=np.uint8)


def saved_model_probabilities(saved_model_path, images):
    """serving_single_view's probabilities for `images`, from the written SavedModel."""
    serve = tf.saved_model.load(saved_model_path).signatures[SINGLE_VIEW_SIGNATURE]
    return serve(image=tf.constant(images))["probabilities"].numpy()


def max_difference(name, model_content, images, reference):
    """Largest |probability difference| between a converted file and `reference` on `images`."""
    return float(np.max(np.abs(RUNNERS[name](model_content, images)["probabilities"] - reference)))


@contextlib.contextmanager
def _quiet_tensorflow_logs():
    """tf2onnx freezes graphs with TF1 APIs that log deprecation warnings."""
    logger = tf.get_logger()
    level = logger.level
    logger.setLevel("ERROR")
    try:
        yield
    finally:
        logger.setLevel(level)


# What write_format wrote: the format's description, the file's name in the
# version folder, and its size and check (`describe` words it).
Written = collections.namedtuple("Written", ["kind", "file_name", "details"])


def describe(written, version_path):
    """One line saying what was written where, e.g. "ONNX in export/x/1/model.onnx (10.8 MB; ...)"."""
    return f"{written.kind} in {posixpath.join(version_path, written.file_name)} ({written.details})"


def write_format(name, model, thresholds, saved_model_path, checks=None, shown_path=None):
    """Converts, checks and writes one format into `saved_model_path`; returns
    what it wrote (a Written, see `describe`).

    `model` computes in float32 (exporter.export_model passes its float32
    twin): TFLite's builtin ops and tf2onnx take no bfloat16/float16 graphs.
    checks: a dict shared between calls, caching the SavedModel's outputs.
    shown_path: the folder errors name (export_model writes in a temporary
    folder that becomes this version folder); default `saved_model_path`.
    """
    checks = {} if checks is None else checks
    path = posixpath.join(saved_model_path, FILE_NAMES[name])
    shown = posixpath.join(shown_path or saved_model_path, FILE_NAMES[name])
    kind = {"tflite": "TFLite float32", "tflite_int8": "TFLite dynamic-range int8", "onnx": "ONNX"}[name]
    try:
        with _quiet_tensorflow_logs():
            if name == "onnx":
                content = onnx_format.convert_onnx(model, thresholds)
            else:
                content = tflite_format.convert_tflite(model, thresholds, quantize=name == "tflite_int8")
    except ExportError:
        raise
    except Exception as error:  # converters raise their own types, with long messages
        first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise ExportError(f"{shown}: the {kind} conversion failed ({first_line})") from None
    try:
        __import__(RUNTIME_MODULES[name])
    except ImportError:
        check = f"not checked: {RUNTIME_MODULES[name]} is not installed"
    else:
        if "images" not in checks:
            images = checks["images"] = check_images(int(model.input_shape[1]))
            checks["reference"] = saved_model_probabilities(saved_model_path, images)
        images = checks["images"]
        difference = max_difference(name, content, images, checks["reference"])
        if name != "tflite_int8" and not difference <= FLOAT_TOLERANCE:
            raise ExportError(
                f"{shown}: probabilities differ from the SavedModel by {difference:.2g} "
                f"(more than {FLOAT_TOLERANCE:g}); not written"
            )
        check = f"max |probability difference| {difference:.1e} to the SavedModel on {len(images)} random images"
    with tf.io.gfile.GFile(path, "wb") as f:
        f.write(content)
    return Written(kind, FILE_NAMES[name], f"{len(content) / 2**20:.2f} MB; {check}")
