"""SavedModel export: five signatures, probabilities and labels out.

- `serving_default`: `image` uint8 [batch, H, W, 4] RGBY, any H and W. With
  test-time augmentation (the run's `--tta 8`) it averages the probabilities
  of the 8 flips/rotations of each image; its `labels` always come from
  thresholds tuned on val probabilities computed the same way. The
  SavedModel's `views` (1 or 8) says which.
- `serving_single_view`: as `serving_default` for one view (fast, 8x fewer
  FLOPs than 8 views), with its own thresholds tuned on single-view
  probabilities.
- `predict_channels`: `red`, `green`, `blue`, `yellow` string [batch], the
  encoded PNG/JPEG files of each stain (8- or 16-bit, grayscale or the
  RGB-tinted HPAv18 JPEGs), any size, reduced by `stains`' rule as in
  conversion; views and thresholds as `serving_default`.
- `serve_examples`: `examples` string [batch], serialized tf.train.Examples
  in this project's TFRecord schema (the TF Model Garden `tf_example` input);
  views and thresholds as `serving_default`.
- `gradcam`: `image` as `serving_default`, one view (single-view
  thresholds); also returns `heatmaps` float32
  [batch, S, S, C], the Grad-CAM map of every class at the model's input
  side S (Selvaraju et al., 2017), for `python -m protein_location explain`;
  for an ensemble (`--cv`), the mean of its members' maps.

`exporter.export_model` writes it, and on request the same model as
TFLite (float32 and dynamic-range int8) and ONNX files inside the version
folder (`formats`).

Uses `keras.export.ExportArchive` (not `tf.saved_model.save` on a Keras 3
model, which names and types the signature wrongly: keras-team/keras#19458).
Every signature resizes inside, so callers send images of any size up to
the pixel cap of conversion (`core.raw_images.DEFAULT_MAX_PIXELS`, 40 million
pixels per image, height x width), baked into the export as the variable
`max_pixels`: an image over it is refused before anything is resized or
decoded (the image's shape for `serving_default`, `serving_single_view` and
`gradcam`; each file's header for `predict_channels` and `serve_examples`)
with an InvalidArgumentError whose message reads "image of HxW pixels is
over the cap of 40000000 pixels" (for `predict_channels` "<stain> file of
HxW pixels ...").

Variables, read as `loaded.<name>[0]` after `tf.saved_model.load`:
`image_size`, `views`, `thresholds`, `single_view_thresholds`,
`class_names`, `channels`, `max_pixels`.

A version folder appears under the export base only when complete
(`versions`): TF Serving polling the base never loads a partial one.
"""

import keras
import numpy as np
import tensorflow as tf

from protein_location.core import labels as labels_lib, records, stains
from protein_location.core.pixel_cap import assert_pixel_cap, encoded_image_shape
from protein_location.core.raw_images import DEFAULT_MAX_PIXELS
from protein_location.data import augment
from protein_location.export.signatures import (
    CHANNELS_SIGNATURE,
    EXAMPLES_SIGNATURE,
    GRADCAM_SIGNATURE,
    SIGNATURE,
    SINGLE_VIEW_SIGNATURE,
    serving_signature,
)


def write_saved_model(model, thresholds, path, class_names, tta_thresholds=None, max_pixels=DEFAULT_MAX_PIXELS):
    """Writes the SavedModel of `model` (a `models.MultiLabelClassifier`) with
    its five signatures and metadata variables to the folder `path`."""
    signatures = Signatures(model, thresholds, class_names, tta_thresholds, max_pixels)
    archive = keras.export.ExportArchive()
    # The collections `archive.track(model)` would give (loaded.variables,
    # .trainable_variables, .non_trainable_variables), of the tf.Variables the
    # signatures capture. Tracking the Keras model instead stores every weight
    # a second time (through its Keras Variable wrappers) and traces the whole
    # model once more for each Keras default serving function it finds.
    for name in ("variables", "trainable_variables", "non_trainable_variables"):
        archive.add_variable_collection(name, [variable.value for variable in getattr(model, name)])
    for name, function in signatures.endpoints().items():
        archive.add_endpoint(name, function)
    for name, variable in signatures.metadata().items():
        archive.add_variable_collection(name, [variable])
    archive.write_out(path, verbose=False)


class Signatures:
    """The five serving functions of one model and the variables they read.

    Every signature checks the pixel cap before anything is resized or
    decoded, resizes with conversion's resize (`stains.resize_rgby`), and
    runs the model through one shared `forward` function.
    """

    def __init__(self, model, thresholds, class_names, tta_thresholds=None, max_pixels=DEFAULT_MAX_PIXELS):
        self.model = model
        self.image_size, self.num_classes = int(model.input_shape[1]), len(class_names)
        self.class_names = list(class_names)
        self.views = 1 if tta_thresholds is None else augment.DIHEDRAL_VIEWS
        self.single_view_thresholds = self._thresholds(thresholds, "single_view_thresholds")
        # serving_default's: tuned on probabilities computed as it computes them.
        self.default_thresholds = self._thresholds(thresholds if self.views == 1 else tta_thresholds, "thresholds")
        self.pixel_cap = tf.Variable(int(max_pixels), dtype=tf.int64, trainable=False, name="max_pixels")
        # The model's forward pass, traced once and called by every signature:
        # one function in the SavedModel, not one copy per signature.
        side = self.image_size
        self.forward = tf.function(
            lambda pixels: tf.cast(model(pixels, training=False), tf.float32),
            input_signature=[tf.TensorSpec([None, side, side, 4], tf.float32)],
            autograph=False,
        )

    def _thresholds(self, values, name):
        return tf.Variable(np.asarray(values, np.float32).reshape([self.num_classes]), trainable=False, name=name)

    def endpoints(self):
        """{signature name: tf.function with its input signature}."""
        image = [serving_signature()]
        return {
            SIGNATURE: tf.function(self.serve, input_signature=image),
            SINGLE_VIEW_SIGNATURE: tf.function(self.serve_single_view, input_signature=image),
            CHANNELS_SIGNATURE: tf.function(
                self.predict_channels,
                input_signature=[tf.TensorSpec([None], tf.string, name=c) for c in labels_lib.CHANNELS],
            ),
            EXAMPLES_SIGNATURE: tf.function(
                self.serve_examples, input_signature=[tf.TensorSpec([None], tf.string, name="examples")]
            ),
            GRADCAM_SIGNATURE: tf.function(self.gradcam, input_signature=image),
        }

    def metadata(self):
        """What a caller needs without this package, after `loaded =
        tf.saved_model.load(path)`: loaded.image_size[0], loaded.views[0] (of
        serving_default), loaded.thresholds[0] (serving_default's),
        loaded.single_view_thresholds[0], loaded.class_names[0],
        loaded.channels[0], loaded.max_pixels[0] (the largest height x width
        the signatures take)."""
        return {
            "image_size": tf.Variable(self.image_size, trainable=False, name="image_size"),
            "views": tf.Variable(self.views, trainable=False, name="views"),
            "thresholds": self.default_thresholds,
            "single_view_thresholds": self.single_view_thresholds,
            "class_names": tf.Variable(self.class_names, trainable=False, name="class_names"),
            "channels": tf.Variable(list(labels_lib.CHANNELS), trainable=False, name="channels"),
            "max_pixels": self.pixel_cap,
        }

    # --- the signatures ---------------------------------------------------------------------------

    def serve(self, image):
        return self.outputs(self.resize(self.within_cap(image)))

    def serve_single_view(self, image):
        return self.single_view(self.resize(self.within_cap(image)))

    def predict_channels(self, red, green, blue, yellow):
        def one_image(files):
            # The conversion's rule (colour -> the stain's colour, 16-bit -> 8), then one resize of all four.
            planes = [
                self.decoded_within_cap(f, f"{c} file", lambda f, c=c: stains.decode_stain(f, c))
                for f, c in zip(files, labels_lib.CHANNELS)
            ]
            return self.resize(tf.stack(planes, axis=-1))

        return self.outputs(tf.map_fn(one_image, (red, green, blue, yellow), fn_output_signature=self._pixels_spec()))

    def serve_examples(self, examples):
        # ParseExample's error on bytes that are no Example quotes them, and TensorFlow's Python error then fails
        # to decode its own message (UnicodeDecodeError); decode_proto refuses them first, as a DataLossError
        # naming what was expected. A data dependency (a control one does not order them) and no call on an
        # empty batch (which decode_proto refuses).
        def wire_checked():
            sizes = tf.io.decode_proto(
                examples,
                "tensorflow.Example",
                ["features"],
                [tf.string],
                name="examples_must_be_serialized_tf_train_Example_protos",
            ).sizes
            return tf.gather(examples, tf.range(tf.shape(sizes)[0]))

        examples = tf.cond(tf.size(examples) > 0, wire_checked, lambda: examples)

        def one_image(example):
            # records.parse_example's decoding, with the cap checked first: on
            # the shape a raw record states, or on a PNG's header.
            keys = (records.KEY_ENCODED, records.KEY_FORMAT, records.KEY_HEIGHT, records.KEY_WIDTH)
            parsed = tf.io.parse_single_example(example, {k: records.FEATURE_SPEC[k] for k in keys})
            encoded, image_format, height, width = (parsed[k] for k in keys)
            shape = tf.cond(
                image_format == "raw", lambda: tf.stack([height, width]), lambda: encoded_image_shape(encoded)
            )
            with tf.control_dependencies([assert_pixel_cap(shape[0], shape[1], self.pixel_cap)]):
                return self.resize(records.decode_image(tf.identity(encoded), image_format, height, width))

        return self.outputs(tf.map_fn(one_image, examples, fn_output_signature=self._pixels_spec()))

    def gradcam(self, image):
        """Grad-CAM (Selvaraju et al., 2017) of every class, one view."""
        pixels = self.resize(self.within_cap(image))
        side, classes = self.image_size, self.num_classes
        empty = {
            "heatmaps": tf.zeros([0, side, side, classes]),
            "probabilities": tf.zeros([0, classes]),
            "labels": tf.zeros([0, classes], tf.int32),
        }
        return tf.cond(tf.shape(pixels)[0] > 0, lambda: self._gradcam(pixels), lambda: empty)

    def _gradcam(self, pixels):
        # An ensemble (cross-validation's export) gives the mean of its members' maps and probabilities.
        members = getattr(self.model, "members", None) or [self.model]
        maps, probabilities = zip(*(self._member_gradcam(member, pixels) for member in members))
        probabilities = tf.add_n(probabilities) / len(members)
        return {
            "heatmaps": tf.add_n(maps) / len(members),
            "probabilities": probabilities,
            "labels": tf.cast(probabilities >= self.single_view_thresholds, tf.int32),
        }

    def _member_gradcam(self, member, pixels):
        """(Grad-CAM maps [B, S, S, classes], probabilities) of one `MultiLabelClassifier`."""
        maps, logits = member.class_maps_and_logits(pixels)
        return (tf.image.resize(maps, [self.image_size, self.image_size], method="bilinear"), tf.sigmoid(logits))

    # --- their parts ------------------------------------------------------------------------------

    def _pixels_spec(self):
        return tf.TensorSpec([self.image_size, self.image_size, 4], tf.float32)

    def within_cap(self, image):
        """`image` [batch, H, W, 4], once H x W is checked against the cap (before any resize)."""
        shape = tf.shape(image, out_type=tf.int64)
        with tf.control_dependencies([assert_pixel_cap(shape[1], shape[2], self.pixel_cap)]):
            return tf.identity(image)

    def decoded_within_cap(self, encoded, what, decode):
        """decode(encoded), once the header's H x W is checked against the cap."""
        height, width = tf.unstack(encoded_image_shape(encoded))
        with tf.control_dependencies([assert_pixel_cap(height, width, self.pixel_cap, what)]):
            return decode(tf.identity(encoded))

    def resize(self, pixels):
        # Conversion's own resize: files sent to the model give the pixels it was trained on.
        return stains.resize_rgby(pixels, self.image_size)

    def probabilities_of(self, pixels):
        """The model's probabilities; an empty batch gives an empty batch (oneDNN's conv2d mishandles
        one: docs/fault-tolerance.md)."""
        return tf.cond(tf.shape(pixels)[0] > 0, lambda: self.forward(pixels), lambda: tf.zeros([0, self.num_classes]))

    def single_view(self, pixels):
        probabilities = self.probabilities_of(pixels)
        return {
            "probabilities": probabilities,
            "labels": tf.cast(probabilities >= self.single_view_thresholds, tf.int32),
        }

    def outputs(self, pixels):
        """serving_default's outputs: one view, or the mean of the 8 views in one call of the model."""
        if self.views == 1:
            return self.single_view(pixels)
        stacked = tf.reshape(augment.dihedral_views(pixels), [-1, self.image_size, self.image_size, 4])
        probabilities = tf.reduce_mean(
            tf.reshape(self.probabilities_of(stacked), [self.views, -1, self.num_classes]), axis=0
        )
        return {"probabilities": probabilities, "labels": tf.cast(probabilities >= self.default_thresholds, tf.int32)}
