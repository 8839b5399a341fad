"""SavedModel export: three signatures, probabilities and labels out.

- `serving_default`: `image` uint8 [batch, H, W, 4] RGBY, any H and W.
- `predict_channels`: `red`, `green`, `blue`, `yellow` string [batch], the
  encoded PNG/JPEG files of each stain (8- or 16-bit), any size.
- `serve_examples`: `examples` string [batch], serialized tf.train.Examples
  in this project's TFRecord schema (the TF Model Garden `tf_example` input).

Uses `keras.export.ExportArchive` (not `tf.saved_model.save` on a Keras 3
model, which names and types the signature wrongly: keras-team/keras#19458).
Every signature resizes inside, so callers send images of any size.
"""

import posixpath

import keras
import numpy as np
import tensorflow as tf

from protein_location import labels as labels_lib, records

SIGNATURE = "serving_default"
CHANNELS_SIGNATURE = "predict_channels"
EXAMPLES_SIGNATURE = "serve_examples"


def serving_signature():
    return tf.TensorSpec([None, None, None, 4], tf.uint8, name="image")


def version_dirs(export_base):
    """{version number: path} of the SavedModels under an export base."""
    if not tf.io.gfile.isdir(export_base):
        return {}
    names = [n.rstrip("/") for n in tf.io.gfile.listdir(export_base)]
    return {int(n): posixpath.join(export_base, n) for n in names if n.isdigit()}


def resolve_saved_model(path):
    """An export base (highest version wins, as TF Serving does) or a version folder -> the SavedModel folder."""
    versions = version_dirs(path)
    return versions[max(versions)] if versions else path


def export_saved_model(model, thresholds, export_base):
    """Writes `model` with its per-class thresholds as a new version under `export_base`.

    The layout TF Serving reads: `export_base/1/`, then `2/`, ... Returns the
    SavedModel folder written.
    """
    versions = version_dirs(export_base)
    path = posixpath.join(export_base, str(max(versions, default=0) + 1))
    image_size = int(model.input_shape[1])
    thresholds = tf.Variable(np.asarray(thresholds, np.float32).reshape([labels_lib.NUM_CLASSES]),
                             trainable=False, name="thresholds")

    def resize(pixels):
        return tf.image.resize(tf.cast(pixels, tf.float32), [image_size, image_size], method="area")

    def outputs(pixels):
        probabilities = tf.cast(model(pixels, training=False), tf.float32)
        return {"probabilities": probabilities, "labels": tf.cast(probabilities >= thresholds, tf.int32)}

    @tf.function(input_signature=[serving_signature()])
    def serve(image):
        return outputs(resize(image))

    def decode_stain(encoded):
        # decode_image scales 8- and 16-bit alike into [0, 1].
        stain = tf.io.decode_image(encoded, channels=1, dtype=tf.float32, expand_animations=False)
        return resize(stain * 255.0)[..., 0]

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=c) for c in labels_lib.CHANNELS])
    def predict_channels(red, green, blue, yellow):
        def one_image(files):
            return tf.stack([decode_stain(f) for f in files], axis=-1)

        pixels = tf.map_fn(one_image, (red, green, blue, yellow),
                           fn_output_signature=tf.TensorSpec([image_size, image_size, 4], tf.float32))
        return outputs(pixels)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def serve_examples(examples):
        pixels = tf.map_fn(lambda e: resize(records.parse_example(e)["image"]), examples,
                           fn_output_signature=tf.TensorSpec([image_size, image_size, 4], tf.float32))
        return outputs(pixels)

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(SIGNATURE, serve)
    archive.add_endpoint(CHANNELS_SIGNATURE, predict_channels)
    archive.add_endpoint(EXAMPLES_SIGNATURE, serve_examples)
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
    return path
