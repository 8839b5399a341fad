"""The exported model in other runtimes' formats: TFLite (LiteRT) and ONNX.

Written inside a SavedModel version folder by `export.export_model` (while
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
import tempfile

import keras
import numpy as np
import tensorflow as tf

from protein_location import export

FORMATS = ("tflite", "tflite_int8", "onnx")
FILE_NAMES = {"tflite": "model.tflite", "tflite_int8": "model_int8.tflite", "onnx": "model.onnx"}
FLOAT_TOLERANCE = 1e-3
CHECK_IMAGES = 8
ONNX_INSTALL_HINT = "pip install 'protein-location[onnx]' (tf2onnx, onnxruntime)"


def check_available(formats):
    """Fails early, before any training or writing, when a converter is missing."""
    unknown = sorted(set(formats) - set(FORMATS))
    if unknown:
        raise export.ExportError(f"unknown export format(s) {', '.join(unknown)}; choose from {', '.join(FORMATS)}")
    if "onnx" in formats:
        try:
            import tf2onnx  # noqa: F401
        except ImportError as error:
            raise export.ExportError(f"--onnx needs tf2onnx ({error}); {ONNX_INSTALL_HINT}") from None


def fixed_size_function(model, thresholds):
    """serving_single_view at the model's own input side: uint8 [batch, S, S, 4] -> probabilities, labels."""
    side = int(model.input_shape[1])
    thresholds = tf.constant(np.asarray(thresholds, np.float32).reshape([int(model.output_shape[-1])]))

    @tf.function(input_signature=[tf.TensorSpec([None, side, side, 4], tf.uint8, name="image")])
    def serve(image):
        probabilities = tf.cast(model(tf.cast(image, tf.float32), training=False), tf.float32)
        return {"probabilities": probabilities, "labels": tf.cast(probabilities >= thresholds, tf.int32)}

    return serve


def convert_tflite(model, thresholds, quantize=False):
    """The model as TFLite flatbuffer bytes; quantize: dynamic-range int8 weights
    (float activations, about 4x smaller, no calibration data needed)."""
    serve = fixed_size_function(model, thresholds)
    # Through a SavedModel, as Keras' own LiteRT export does: the path the
    # converter supports for Keras 3 models.
    with tempfile.TemporaryDirectory() as saved_model_dir:
        archive = keras.export.ExportArchive()
        archive.track(model)
        archive.add_endpoint(export.SIGNATURE, serve)
        archive.write_out(saved_model_dir, verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(saved_model_dir)
        if quantize:
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        return converter.convert()


def convert_onnx(model, thresholds):
    """The model as ONNX bytes (tf2onnx, default opset).

    tf2onnx 1.17's `from_function` (and so Keras' `model.export(format="onnx")`)
    turns every tensor a TF 2.21 function captures (here the normalization
    statistics and the thresholds) into an extra graph input, and onnxruntime
    then refuses to run ("Required inputs ([...normalize/Sub/y:0, ...]) are
    missing from input feed (['image'])"). Freezing the function ourselves
    with only the signature's input as graph input avoids that.
    """
    try:
        import tf2onnx
        from tf2onnx import tf_loader
    except ImportError as error:
        raise export.ExportError(f"--onnx needs tf2onnx ({error}); {ONNX_INSTALL_HINT}") from None
    function = fixed_size_function(model, thresholds).get_concrete_function()
    signature_inputs = len(tf.nest.flatten(function.structured_input_signature))
    input_names = [t.name for t in function.inputs[:signature_inputs]]
    output_names = [t.name for t in function.outputs]
    renames = tf2onnx.convert.tensor_names_from_structed(function, input_names, output_names)
    with tf.device("/cpu:0"):
        graph_def = tf_loader.from_function(function, input_names, output_names)
        model_proto, _ = tf2onnx.convert.from_graph_def(graph_def, name="protein_location", input_names=input_names,
                                                        output_names=output_names, tensors_to_rename=renames)
    return model_proto.SerializeToString()


def run_tflite(model_content, images):
    """{probabilities, labels} of a TFLite model run with the LiteRT interpreter."""
    from ai_edge_litert.interpreter import Interpreter

    runner = Interpreter(model_content=model_content).get_signature_runner(export.SIGNATURE)
    return runner(image=np.ascontiguousarray(images, np.uint8))


def run_onnx(model_content, images):
    """{probabilities, labels} of an ONNX model run with onnxruntime."""
    import onnxruntime

    session = onnxruntime.InferenceSession(model_content, providers=["CPUExecutionProvider"])
    names = [output.name for output in session.get_outputs()]
    return dict(zip(names, session.run(names, {"image": np.ascontiguousarray(images, np.uint8)})))


RUNNERS = {"tflite": run_tflite, "tflite_int8": run_tflite, "onnx": run_onnx}
RUNTIME_MODULES = {"tflite": "ai_edge_litert", "tflite_int8": "ai_edge_litert", "onnx": "onnxruntime"}


def check_images(side, count=CHECK_IMAGES, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (count, side, side, 4), dtype=np.uint8)


def saved_model_probabilities(saved_model_path, images):
    """serving_single_view's probabilities for `images`, from the written SavedModel."""
    serve = tf.saved_model.load(saved_model_path).signatures[export.SINGLE_VIEW_SIGNATURE]
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

    `model` computes in float32 (export.export_model passes its float32
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
                content = convert_onnx(model, thresholds)
            else:
                content = convert_tflite(model, thresholds, quantize=name == "tflite_int8")
    except export.ExportError:
        raise
    except Exception as error:  # converters raise their own types, with long messages
        first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise export.ExportError(f"{shown}: the {kind} conversion failed ({first_line})") from None
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
            raise export.ExportError(f"{shown}: probabilities differ from the SavedModel by {difference:.2g} "
                                     f"(more than {FLOAT_TOLERANCE:g}); not written")
        check = f"max |probability difference| {difference:.1e} to the SavedModel on {len(images)} random images"
    with tf.io.gfile.GFile(path, "wb") as f:
        f.write(content)
    return Written(kind, FILE_NAMES[name], f"{len(content) / 2**20:.2f} MB; {check}")
