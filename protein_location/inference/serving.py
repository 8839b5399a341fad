"""A client of this project's SavedModels: load one, check that it carries
what labelling needs (signature, thresholds, class names), and read its
metadata variables. Used by `predict` and `explain`; a TF-only program needs
none of it (docs/inference.md, "Using the model from your own code")."""

import collections
import os

import tensorflow as tf

from protein_location.core.errors import PredictError
from protein_location.export import signatures, versions

# What prediction needs of a loaded SavedModel: the signature chosen, the
# views it averages, and the thresholds its labels use.
ServingModel = collections.namedtuple(
    "ServingModel", ["serve", "image_size", "thresholds", "class_names", "path", "views"]
)


def load_saved_model(path, signature=signatures.SIGNATURE):
    """SavedModel folder or export base -> (the loaded object, its `signature` function)."""
    path = versions.resolve_saved_model(path)
    if not tf.io.gfile.exists(os.path.join(path, "saved_model.pb")):
        raise PredictError(f"{path}: not a SavedModel (no saved_model.pb); export one with train_keras.py --export")
    try:
        loaded = tf.saved_model.load(path)
    except (tf.errors.OpError, OSError, KeyError, ValueError) as error:
        raise PredictError(f"{path}: cannot load the SavedModel ({str(error).splitlines()[0]})") from None
    if signature not in loaded.signatures:
        raise PredictError(
            f"{path}: the SavedModel has no {signature!r} signature (it has "
            f"{', '.join(sorted(loaded.signatures)) or 'none'}); re-export it with "
            "`python -m protein_location export --model-dir RUN --out DIR`"
        )
    return loaded, loaded.signatures[signature]


EXPORT_HINT = "export it with train_keras.py --export or python -m protein_location export"


def saved_model_variable(loaded, name, path):
    """The value of the variable `name` a SavedModel of this project carries
    (`loaded.<name>[0]`, export.py's metadata), as a numpy value; a one-line
    PredictError when it is not there (a SavedModel of another tool)."""
    try:
        return getattr(loaded, name)[0].numpy()
    except (AttributeError, IndexError, KeyError, TypeError, ValueError):
        raise PredictError(f"{path}: the SavedModel has no {name} variable; {EXPORT_HINT}") from None


def check_variables(loaded, names, path):
    """Refuses, in one line naming all of them, a SavedModel without the variables `names`."""
    missing = [name for name in names if not _has_variable(loaded, name)]
    if missing:
        noun = "variable" if len(missing) == 1 else "variables"
        raise PredictError(f"{path}: the SavedModel has no {', '.join(missing)} {noun}; {EXPORT_HINT}")


def _has_variable(loaded, name):
    try:
        return isinstance(getattr(loaded, name)[0], tf.Variable)
    except (AttributeError, IndexError, KeyError, TypeError, ValueError):
        return False


def class_names_of(loaded, path="the SavedModel"):
    """The class names a loaded SavedModel of this project carries (its label set)."""
    names = saved_model_variable(loaded, "class_names", path)
    if names.ndim != 1 or names.dtype != object or not names.size:
        raise PredictError(f"{path}: the SavedModel's class_names variable is not a list of names; {EXPORT_HINT}")
    return [name.decode() for name in names]


def check_serving_signature(serve, signature, num_classes, path):
    """The signature must take `image` uint8 [batch, H, W, 4] and return
    `probabilities` and `labels` [batch, num_classes], as export.py writes it."""
    inputs = serve.structured_input_signature[1]
    outputs = serve.structured_outputs
    image = inputs.get("image")
    takes_image = (
        set(inputs) == {"image"} and image.dtype == tf.uint8 and image.shape.rank == 4 and image.shape[-1] in (None, 4)
    )
    gives = isinstance(outputs, dict) and all(
        key in outputs and outputs[key].shape.rank == 2 and outputs[key].shape[-1] in (None, num_classes)
        for key in ("probabilities", "labels")
    )
    if not (takes_image and gives):

        def describe(specs):
            return (
                ", ".join(f"{key} {spec.dtype.name} {spec.shape}" for key, spec in sorted(specs.items()))
                if isinstance(specs, dict)
                else str(specs)
            )

        raise PredictError(
            f"{path}: its {signature!r} signature takes ({describe(inputs)}) and returns "
            f"({describe(outputs)}), not image uint8 [batch, height, width, 4] -> probabilities and "
            f"labels [batch, {num_classes}]; {EXPORT_HINT}"
        )


def load_serving_model(path, tta=None):
    """SavedModel folder or export base -> ServingModel; a ServingModel is
    returned as it is, so callers load once.

    tta: None for `serving_default` (the views and thresholds the run chose),
    1 for `serving_single_view`, 8 for a SavedModel whose serving_default
    averages the 8 flips/rotations. Labels always come from thresholds tuned
    on probabilities computed as the chosen signature computes them.
    """
    if isinstance(path, ServingModel):
        return path
    if tta not in (None, 1, 8):
        raise PredictError(f"`tta` must be 1 or 8, got {tta}")
    loaded, serve = load_saved_model(path)
    # A SavedModel of another tool has none of what labels need: say so now,
    # not with a traceback from a later step.
    version = versions.resolve_saved_model(path)
    check_variables(loaded, ("image_size", "views", "thresholds", "class_names"), version)
    views = int(saved_model_variable(loaded, "views", version))
    if tta == 8 and views != 8:
        raise PredictError(
            f"{path}: this SavedModel serves one view, with thresholds tuned for one view; for 8 "
            "re-export its run with `python -m protein_location export --model-dir RUN --out DIR "
            "--tta 8`"
        )
    signature, thresholds_name = signatures.SIGNATURE, "thresholds"
    if tta == 1 and views != 1:
        check_variables(loaded, ("single_view_thresholds",), version)
        loaded, serve = load_saved_model(path, signatures.SINGLE_VIEW_SIGNATURE)
        signature, thresholds_name, views = signatures.SINGLE_VIEW_SIGNATURE, "single_view_thresholds", 1
    class_names = class_names_of(loaded, version)
    thresholds = saved_model_variable(loaded, thresholds_name, version)
    if thresholds.shape != (len(class_names),):
        raise PredictError(
            f"{version}: the SavedModel has {thresholds.size} {thresholds_name} for "
            f"{len(class_names)} class names; {EXPORT_HINT}"
        )
    check_serving_signature(serve, signature, len(class_names), version)
    image_size = int(saved_model_variable(loaded, "image_size", version))
    return ServingModel(serve, image_size, thresholds, class_names, path, views)
