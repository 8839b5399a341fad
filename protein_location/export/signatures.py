"""The names and inputs of the SavedModel's signatures, and the fixed-size
function every other format is converted from: what the exporters and the
clients (`predict`, `explain`, `formats`) agree on, importing nothing else of `export`."""

import numpy as np
import tensorflow as tf

SIGNATURE = "serving_default"
SINGLE_VIEW_SIGNATURE = "serving_single_view"
CHANNELS_SIGNATURE = "predict_channels"
EXAMPLES_SIGNATURE = "serve_examples"
GRADCAM_SIGNATURE = "gradcam"


def serving_signature():
    return tf.TensorSpec([None, None, None, 4], tf.uint8, name="image")


def fixed_size_function(model, thresholds):
    """serving_single_view at the model's own input side: uint8 [batch, S, S, 4] -> probabilities, labels."""
    side = int(model.input_shape[1])
    thresholds = tf.constant(np.asarray(thresholds, np.float32).reshape([int(model.output_shape[-1])]))

    @tf.function(input_signature=[tf.TensorSpec([None, side, side, 4], tf.uint8, name="image")])
    def serve(image):
        probabilities = tf.cast(model(tf.cast(image, tf.float32), training=False), tf.float32)
        return {"probabilities": probabilities, "labels": tf.cast(probabilities >= thresholds, tf.int32)}

    return serve
