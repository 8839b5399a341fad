"""float32_twin: the float32 computation of a mixed-precision model."""

import keras

from protein_location.models.multilabel_classifier import MultiLabelClassifier


def computes_in_float32(model):
    """Whether `model` and every layer in it, nested ones included, have the
    float32 dtype policy (input layers, which compute nothing, aside)."""
    return all(
        layer.dtype_policy.name == "float32"
        for layer in model._flatten_layers(include_self=True, recursive=True)
        if not isinstance(layer, keras.layers.InputLayer)
    )


def _rebuilt_in_float32(layer):
    """A new, unbuilt `layer` with its config and the float32 policy."""
    return layer.__class__.from_config({**layer.get_config(), "dtype": "float32"})


def _cloned_in_float32(model):
    """A float32 clone of the functional `model` (fresh weights), by
    `keras.models.clone_model`: a plain `keras.Model` with the same graph.

    `recursive=True` clones nested functional models layer by layer too: a
    functional model rebuilt from its config with a float32 `dtype` keeps
    its layers' own policies."""
    clone = keras.models.clone_model(model, clone_function=_rebuilt_in_float32, recursive=True)
    # A functional model's own policy is the global one when it is created.
    clone.dtype_policy = "float32"
    return clone


def _backbone_in_float32(backbone):
    """A float32 copy of `backbone` (fresh weights): rebuilt from its config
    when its class hands `dtype` to every layer (`SEResNetBackbone`, which
    stays one), else (a plain functional model, e.g. `keras.applications`)
    cloned layer by layer."""
    rebuilt = _rebuilt_in_float32(backbone)
    return rebuilt if computes_in_float32(rebuilt) else _cloned_in_float32(backbone)


def float32_twin(model):
    """`model` itself when it computes in float32, else a float32 copy with its
    weights (Keras keeps the variables of a mixed-precision model in float32).

    Mixed precision is a training speed-up: after training, thresholds are
    tuned on, and the export serves, the float32 computation, which runs on
    any device and which TFLite and ONNX can represent.

    The copy of a `MultiLabelClassifier` is a `MultiLabelClassifier` (its
    `features_and_logits` included) on a float32 copy of its backbone: an
    `SEResNetBackbone` rebuilt from its config in float32, or for another
    backbone its `keras.models.clone_model` clone with every layer rebuilt
    from its config in float32. The copy of any other functional model is
    its clone likewise. The weights are then copied over.
    """
    if computes_in_float32(model):
        return model
    if isinstance(model, MultiLabelClassifier):
        twin = MultiLabelClassifier(
            _backbone_in_float32(model.backbone),
            num_classes=model.num_classes,
            image_size=model.image_size,
            channel_mean=model.channel_mean,
            channel_std=model.channel_std,
            output_bias=model.output_bias,
            dropout=model.dropout,
            dtype="float32",
            name=model.name,
            trainable=model.trainable,
        )
    else:
        twin = _cloned_in_float32(model)
    twin.set_weights(model.get_weights())
    return twin
