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
  side S (Selvaraju et al., 2017), for `python -m protein_location explain`.

`export_model` adds, on request, the same model as TFLite (float32 and
dynamic-range int8) and ONNX files inside the version folder
(`export_formats.py`).

Uses `keras.export.ExportArchive` (not `tf.saved_model.save` on a Keras 3
model, which names and types the signature wrongly: keras-team/keras#19458).
Every signature resizes inside, so callers send images of any size up to
the pixel cap of conversion (`raw_images.DEFAULT_MAX_PIXELS`, 40 million
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
(`export_versions`): TF Serving polling the base never loads a partial one.
"""

import collections
import json
import posixpath

import keras
import numpy as np
import tensorflow as tf

from protein_location import augment, labels as labels_lib, model as model_lib, records, stains
from protein_location.errors import ExportError
from protein_location.export_versions import (make_staging_dir, publish, remove_dir, remove_interrupted_exports,
                                              version_dirs)
from protein_location.pixel_cap import assert_pixel_cap, encoded_image_shape
from protein_location.raw_images import DEFAULT_MAX_PIXELS

SIGNATURE = "serving_default"
SINGLE_VIEW_SIGNATURE = "serving_single_view"
CHANNELS_SIGNATURE = "predict_channels"
EXAMPLES_SIGNATURE = "serve_examples"
GRADCAM_SIGNATURE = "gradcam"
# Grad-CAM differentiates the head's logits w.r.t. the input of the global
# pooling layer: the last residual stage's feature map (input side / 32).
POOL_LAYER = "pool"
HEAD_LAYER = "probabilities"


def serving_signature():
    return tf.TensorSpec([None, None, None, 4], tf.uint8, name="image")


def gradcam_model(model):
    """The model's view for Grad-CAM: image -> (last feature map, input of the head).

    Needs the layout of `model.build_seresnet`: a global pooling layer named
    "pool" and a sigmoid Dense head named "probabilities".
    """
    try:
        pool, head = model.get_layer(POOL_LAYER), model.get_layer(HEAD_LAYER)
    except ValueError:
        raise ExportError(f"model {model.name!r} has no {POOL_LAYER!r} and {HEAD_LAYER!r} layers; "
                          "Grad-CAM needs the layout of protein_location.model.build_seresnet") from None
    return keras.Model(model.inputs, [pool.input, head.input], name=f"{model.name}_gradcam"), head


# A run's thresholds.json: single-view thresholds, those tuned on the mean of
# the 8 flips/rotations (None in a file written before they were), and the
# views serving_default applies (the run's --tta).
RunThresholds = collections.namedtuple("RunThresholds", ["single_view", "tta", "views"])


def load_run(model_dir):
    """A training run folder -> (its model.keras, its thresholds.json as
    RunThresholds, their class names)."""
    model_path = posixpath.join(model_dir, "model.keras")
    thresholds_path = posixpath.join(model_dir, "thresholds.json")
    for path in (model_path, thresholds_path):
        if not tf.io.gfile.exists(path):
            raise ExportError(f"{model_dir}: no {posixpath.basename(path)} here; "
                              "train a run with `train_keras.py --model-dir` first")
    try:
        model = keras.models.load_model(model_path, safe_mode=True, compile=False)
    except Exception as error:  # Keras raises many types for a bad archive
        raise ExportError(f"{model_path}: cannot load the Keras model ({str(error).splitlines()[0]})") from None
    try:
        with tf.io.gfile.GFile(thresholds_path, "r") as f:
            content = json.load(f)
        single_view = np.asarray(content.get("single_view_thresholds", content["thresholds"]), np.float32)
        tta = content.get("tta_thresholds")
        tta = None if tta is None else np.asarray(tta, np.float32)
        views = int(content.get("views", 1))
        class_names = [str(name) for name in content["class_names"]]
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as error:
        raise ExportError(f"{thresholds_path}: not a thresholds file ({error})") from None
    width = int(model.output_shape[-1])
    if single_view.shape != (width,) or len(class_names) != width or (tta is not None and tta.shape != (width,)):
        raise ExportError(f"{thresholds_path}: expected {width} thresholds and class names (the model's outputs), "
                          f"found {single_view.size} and {len(class_names)}")
    return model, RunThresholds(single_view, tta, views), class_names


def export_formats_of(tflite=False, tflite_quantize=False, onnx=False, export_dir="", out_flag="--export"):
    """The --tflite/--tflite-quantize/--onnx flags -> the formats tuple of
    `export_model`, checked (converter installed, an export folder given)."""
    from protein_location import export_formats

    formats = tuple(name for name, wanted in zip(export_formats.FORMATS, (tflite, tflite_quantize, onnx)) if wanted)
    if formats and not export_dir:
        flags = {"tflite": "--tflite", "tflite_int8": "--tflite-quantize", "onnx": "--onnx"}
        raise ExportError(f"{' '.join(flags[f] for f in formats)} needs {out_flag} DIR")
    export_formats.check_available(formats)
    return formats


def export_model(model, thresholds, export_base, formats=(), log=print, *, class_names, tta_thresholds=None):
    """Writes a new SavedModel version under `export_base` (arguments as
    `export_saved_model`) and, for each of
    `formats` ("tflite", "tflite_int8", "onnx"), the same model in that format
    inside the version folder, each checked against the SavedModel.

    A mixed-precision model is exported as its float32 twin: the export
    computes in float32 on any device (README, "3. Train").
    Everything is written and checked in a temporary folder that is renamed
    to the version number only at the end (the module docstring): a TF
    Serving instance polling the base never sees a partial or failed
    version. On any failure the temporary folder is removed.
    Returns the SavedModel folder written.
    """
    from protein_location import export_formats

    export_formats.check_available(formats)
    model = model_lib.float32_twin(model)
    _check_sizes(model, thresholds, class_names, tta_thresholds)
    for stale in remove_interrupted_exports(export_base):
        log(f"export: removed {stale}, left by an export that was killed")
    intended = posixpath.join(export_base, str(max(version_dirs(export_base), default=0) + 1))
    staging = make_staging_dir(export_base, posixpath.basename(intended))
    try:
        _write_saved_model(model, thresholds, staging, class_names, tta_thresholds)
        checks = {}  # the SavedModel's outputs on the check images, computed once
        written = [export_formats.write_format(name, model, thresholds, staging, checks, shown_path=intended)
                   for name in formats]
        path = publish(staging, export_base)
    except ExportError as error:
        remove_dir(staging)
        raise ExportError(f"{error}; no version written to {export_base}") from None
    except BaseException:
        remove_dir(staging)
        raise
    views = "8 flips/rotations" if tta_thresholds is not None else "one view"
    log(f"export: SavedModel in {path} (serving_default: {views}, with thresholds tuned for it)")
    for entry in written:
        log(f"export: {export_formats.describe(entry, path)}")
    return path


def export_saved_model(model, thresholds, export_base, class_names, tta_thresholds=None):
    """Writes `model` with its per-class thresholds and class names (one per
    output) as a new version under `export_base`.

    `thresholds` are tuned on single-view probabilities; `tta_thresholds`, if
    given, on the mean over the 8 flips/rotations, and then serving_default
    averages the 8 views (else it computes one).

    The layout TF Serving reads: `export_base/1/`, then `2/`, ..., each
    appearing only when complete (`export_model`, without other formats).
    Returns the SavedModel folder written.
    """
    return export_model(model, thresholds, export_base, (), log=lambda _: None, class_names=class_names,
                        tta_thresholds=tta_thresholds)


def _check_sizes(model, thresholds, class_names, tta_thresholds):
    width = int(model.output_shape[-1])
    if len(class_names) != width or np.size(thresholds) != width or \
            (tta_thresholds is not None and np.size(tta_thresholds) != width):
        raise ExportError(f"the model has {width} outputs but {len(class_names)} class names and "
                          f"{np.size(thresholds)} thresholds")


def _write_saved_model(model, thresholds, path, class_names, tta_thresholds=None, max_pixels=DEFAULT_MAX_PIXELS):
    image_size, num_classes = int(model.input_shape[1]), len(class_names)
    features_model, head = gradcam_model(model)
    views = 1 if tta_thresholds is None else augment.DIHEDRAL_VIEWS

    def variable(values, name):
        return tf.Variable(np.asarray(values, np.float32).reshape([num_classes]), trainable=False, name=name)

    single_view_thresholds = variable(thresholds, "single_view_thresholds")
    # serving_default's: tuned on probabilities computed as it computes them.
    default_thresholds = variable(thresholds if views == 1 else tta_thresholds, "thresholds")
    pixel_cap = tf.Variable(int(max_pixels), dtype=tf.int64, trainable=False, name="max_pixels")

    def within_cap(image):
        """`image` [batch, H, W, 4], once H x W is checked against the cap (before any resize)."""
        shape = tf.shape(image, out_type=tf.int64)
        with tf.control_dependencies([assert_pixel_cap(shape[1], shape[2], pixel_cap)]):
            return tf.identity(image)

    def decoded_within_cap(encoded, what, decode):
        """decode(encoded), once the header's H x W is checked against the cap."""
        height, width = tf.unstack(encoded_image_shape(encoded))
        with tf.control_dependencies([assert_pixel_cap(height, width, pixel_cap, what)]):
            return decode(tf.identity(encoded))

    def resize(pixels):
        # Rounded to whole grey levels, as conversion stores them: files sent
        # to the model give the pixels it was trained on (within a level at ties).
        return tf.round(tf.image.resize(tf.cast(pixels, tf.float32), [image_size, image_size], method="area"))

    def single_view(pixels):
        probabilities = tf.cast(model(pixels, training=False), tf.float32)
        return {"probabilities": probabilities, "labels": tf.cast(probabilities >= single_view_thresholds, tf.int32)}

    def outputs(pixels):
        if views == 1:
            return single_view(pixels)
        # The 8 views in one batch: one call of the model.
        stacked = tf.reshape(augment.dihedral_views(pixels), [-1, image_size, image_size, 4])
        probabilities = tf.cast(model(stacked, training=False), tf.float32)
        probabilities = tf.reduce_mean(tf.reshape(probabilities, [views, -1, num_classes]), axis=0)
        return {"probabilities": probabilities, "labels": tf.cast(probabilities >= default_thresholds, tf.int32)}

    @tf.function(input_signature=[serving_signature()])
    def serve(image):
        return outputs(resize(within_cap(image)))

    @tf.function(input_signature=[serving_signature()])
    def serve_single_view(image):
        return single_view(resize(within_cap(image)))

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=c) for c in labels_lib.CHANNELS])
    def predict_channels(red, green, blue, yellow):
        def one_image(files):
            # The conversion's rule (colour -> the stain's colour, 16-bit -> 8), then one resize of all four.
            planes = [decoded_within_cap(f, f"{c} file", lambda f, c=c: stains.decode_stain_tf(f, c))
                      for f, c in zip(files, labels_lib.CHANNELS)]
            return resize(tf.stack(planes, axis=-1))

        pixels = tf.map_fn(one_image, (red, green, blue, yellow),
                           fn_output_signature=tf.TensorSpec([image_size, image_size, 4], tf.float32))
        return outputs(pixels)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def serve_examples(examples):
        def one_image(example):
            # records.parse_example's decoding, with the PNG's header checked first.
            encoded = tf.io.parse_single_example(example, {records.KEY_ENCODED: records.FEATURE_SPEC[
                records.KEY_ENCODED]})[records.KEY_ENCODED]
            image = decoded_within_cap(encoded, "image", lambda e: tf.io.decode_png(e, channels=4, dtype=tf.uint8))
            return resize(image)

        pixels = tf.map_fn(one_image, examples,
                           fn_output_signature=tf.TensorSpec([image_size, image_size, 4], tf.float32))
        return outputs(pixels)

    @tf.function(input_signature=[serving_signature()])
    def gradcam(image):
        pixels = resize(within_cap(image))
        with tf.GradientTape() as tape:
            features, pooled = features_model(pixels, training=False)
            # The head's logits, before its sigmoid: a saturated probability
            # would otherwise give vanishing gradients and a blank map.
            logits = tf.matmul(tf.cast(pooled, tf.float32), tf.convert_to_tensor(head.kernel)) + \
                tf.convert_to_tensor(head.bias)
        gradients = tf.cast(tape.batch_jacobian(logits, features), tf.float32)  # [B, classes, h, w, C]
        weights = tf.reduce_mean(gradients, axis=[2, 3])  # [B, classes, C]: each channel's importance per class
        maps = tf.nn.relu(tf.einsum("bhwc,bkc->bhwk", tf.cast(features, tf.float32), weights))
        probabilities = tf.sigmoid(logits)
        return {"heatmaps": tf.image.resize(maps, [image_size, image_size], method="bilinear"),
                "probabilities": probabilities, "labels": tf.cast(probabilities >= single_view_thresholds, tf.int32)}

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(SIGNATURE, serve)
    archive.add_endpoint(SINGLE_VIEW_SIGNATURE, serve_single_view)
    archive.add_endpoint(CHANNELS_SIGNATURE, predict_channels)
    archive.add_endpoint(EXAMPLES_SIGNATURE, serve_examples)
    archive.add_endpoint(GRADCAM_SIGNATURE, gradcam)
    # What a caller needs without this package, after `loaded =
    # tf.saved_model.load(path)`: loaded.image_size[0], loaded.views[0] (of
    # serving_default), loaded.thresholds[0] (serving_default's),
    # loaded.single_view_thresholds[0], loaded.class_names[0], loaded.channels[0],
    # loaded.max_pixels[0] (the largest height x width the signatures take).
    metadata = {
        "image_size": tf.Variable(image_size, trainable=False, name="image_size"),
        "views": tf.Variable(views, trainable=False, name="views"),
        "thresholds": default_thresholds,
        "single_view_thresholds": single_view_thresholds,
        "class_names": tf.Variable(list(class_names), trainable=False, name="class_names"),
        "channels": tf.Variable(list(labels_lib.CHANNELS), trainable=False, name="channels"),
        "max_pixels": pixel_cap,
    }
    for name, variable in metadata.items():
        archive.add_variable_collection(name, [variable])
    archive.write_out(path, verbose=False)
