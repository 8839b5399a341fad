"""The model as a TFLite (LiteRT) flatbuffer: float32, or dynamic-range int8
weights; run with LiteRT (`ai-edge-litert`) to check it."""

import tempfile

import keras
import numpy as np
import tensorflow as tf

from protein_location.export.signatures import SIGNATURE, fixed_size_function

FILE_NAMES = {"tflite": "model.tflite", "tflite_int8": "model_int8.tflite"}
RUNTIME_MODULE = "ai_edge_litert"


def convert_tflite(model, thresholds, quantize=False):
    """The model as TFLite flatbuffer bytes; quantize: dynamic-range int8 weights
    (float activations, about 4x smaller, no calibration data needed)."""
    serve = fixed_size_function(model, thresholds)
    # Through a SavedModel, as Keras' own LiteRT export does: the path the
    # converter supports for Keras 3 models. The endpoint's variables are
    # tracked with it (not the Keras model: see saved_model.write_saved_model).
    with tempfile.TemporaryDirectory() as saved_model_dir:
        archive = keras.export.ExportArchive()
        archive.add_endpoint(SIGNATURE, serve)
        archive.write_out(saved_model_dir, verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(saved_model_dir)
        if quantize:
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        return converter.convert()


def run_tflite(model_content, images):
    """{probabilities, labels} of a TFLite model run with the LiteRT interpreter."""
    from ai_edge_litert.interpreter import Interpreter

    runner = Interpreter(model_content=model_content).get_signature_runner(SIGNATURE)
    return runner(image=np.ascontiguousarray(images, np.uint8))
