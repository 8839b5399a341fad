"""SavedModel export: uint8 RGBY images in, probabilities and labels out.

Uses `keras.export.ExportArchive` (not `tf.saved_model.save` on a Keras 3
model, which names and types the signature wrongly: keras-team/keras#19458).
The signature resizes inside, so callers send images of any size.
"""

import keras
import numpy as np
import tensorflow as tf

from protein_location import labels as labels_lib

SIGNATURE = "serving_default"


def serving_signature():
    return tf.TensorSpec([None, None, None, 4], tf.uint8, name="image")


def export_saved_model(model, thresholds, path):
    """Writes `model` with its per-class thresholds as a SavedModel at `path`.

    Returns the serving function (a tf.function) that was exported.
    """
    image_size = int(model.input_shape[1])
    thresholds = tf.Variable(np.asarray(thresholds, np.float32).reshape([labels_lib.NUM_CLASSES]),
                             trainable=False, name="thresholds")

    @tf.function(input_signature=[serving_signature()])
    def serve(image):
        pixels = tf.cast(image, tf.float32)
        pixels = tf.image.resize(pixels, [image_size, image_size], method="area")
        probabilities = tf.cast(model(pixels, training=False), tf.float32)
        labels = tf.cast(probabilities >= thresholds, tf.int32)
        return {"probabilities": probabilities, "labels": labels}

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(SIGNATURE, serve)
    # What a caller needs without this package, after `loaded =
    # tf.saved_model.load(path)`: loaded.image_size[0], loaded.thresholds[0],
    # loaded.class_names[0], loaded.channels[0].
    metadata = {
        "image_size": tf.Variable(image_size, trainable=False, name="image_size"),
        "thresholds": thresholds,
        "class_names": tf.Variable(list(labels_lib.CLASS_NAMES), trainable=False, name="class_names"),
        "channels": tf.Variable(list(labels_lib.CHANNELS), trainable=False, name="channels"),
    }
    for name, variable in metadata.items():
        archive.add_variable_collection(name, [variable])
    archive.write_out(path, verbose=False)
    return serve
