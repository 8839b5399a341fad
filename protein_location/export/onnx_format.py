"""The model as ONNX (tf2onnx), checked with onnxruntime."""

import tensorflow as tf

from protein_location.core.errors import ExportError
from protein_location.export.signatures import fixed_size_function

FILE_NAME = "model.onnx"
RUNTIME_MODULE = "onnxruntime"
INSTALL_HINT = "pip install 'protein-location[onnx]' (tf2onnx, onnxruntime)"


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
        raise ExportError(f"--onnx needs tf2onnx ({error}); {INSTALL_HINT}") from None
    function = fixed_size_function(model, thresholds).get_concrete_function()
    signature_inputs = len(tf.nest.flatten(function.structured_input_signature))
    input_names = [t.name for t in function.inputs[:signature_inputs]]
    output_names = [t.name for t in function.outputs]
    renames = tf2onnx.convert.tensor_names_from_structed(function, input_names, output_names)
    with tf.device("/cpu:0"):
        graph_def = tf_loader.from_function(function, input_names, output_names)
        model_proto, _ = tf2onnx.convert.from_graph_def(
            graph_def,
            name="protein_location",
            input_names=input_names,
            output_names=output_names,
            tensors_to_rename=renames,
        )
    return model_proto.SerializeToString()


def run_onnx(model_content, images):
    """{probabilities, labels} of an ONNX model run with onnxruntime."""
    import numpy as np
    import onnxruntime

    session = onnxruntime.InferenceSession(model_content, providers=["CPUExecutionProvider"])
    names = [output.name for output in session.get_outputs()]
    return dict(zip(names, session.run(names, {"image": np.ascontiguousarray(images, np.uint8)})))
