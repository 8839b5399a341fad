"""SE-ResNet (Hu et al., 2018) as a Keras functional model for 4-channel HPA images.

Residual blocks with squeeze-and-excitation, the backbone family of the seed
paper (Chen, 2020). Per-channel normalization is the model's first layer, so
the model (and its SavedModel export) takes raw 0-255 RGBY pixels.
"""

import copy

import keras
import numpy as np


# depths per stage; "basic" = two 3x3 convs, "bottleneck" = 1x1-3x3-1x1 (x4).
PRESETS = {
    "seresnet18": {"block": "basic", "depths": (2, 2, 2, 2)},
    "seresnet34": {"block": "basic", "depths": (3, 4, 6, 3)},
    "seresnet50": {"block": "bottleneck", "depths": (3, 4, 6, 3)},
}
STAGE_FILTERS = (64, 128, 256, 512)
BOTTLENECK_EXPANSION = 4


def _batch_norm(x, name, synchronized, gamma_zero=False):
    # momentum 0.9 (PyTorch's 0.1): moving statistics keep up in short runs.
    return keras.layers.BatchNormalization(
        momentum=0.9,
        epsilon=1e-5,
        synchronized=synchronized,
        gamma_initializer="zeros" if gamma_zero else "ones",
        name=name,
    )(x)


def _conv(x, filters, kernel_size, strides, name):
    return keras.layers.Conv2D(
        filters, kernel_size, strides=strides, padding="same", use_bias=False,
        kernel_initializer="he_normal", name=name,
    )(x)


def squeeze_excite(x, ratio, name):
    """Channel attention: global pool -> bottleneck MLP -> sigmoid gate."""
    channels = x.shape[-1]
    s = keras.layers.GlobalAveragePooling2D(keepdims=True, name=f"{name}_squeeze")(x)
    s = keras.layers.Conv2D(max(channels // ratio, 8), 1, activation="relu", name=f"{name}_reduce")(s)
    s = keras.layers.Conv2D(channels, 1, activation="sigmoid", name=f"{name}_expand")(s)
    return keras.layers.Multiply(name=f"{name}_excite")([x, s])


def _residual_block(x, block, filters, strides, se_ratio, synchronized, name):
    out_filters = filters * BOTTLENECK_EXPANSION if block == "bottleneck" else filters
    shortcut = x
    if strides != 1 or x.shape[-1] != out_filters:
        shortcut = _conv(x, out_filters, 1, strides, f"{name}_proj_conv")
        shortcut = _batch_norm(shortcut, f"{name}_proj_bn", synchronized)
    if block == "bottleneck":
        y = _conv(x, filters, 1, 1, f"{name}_conv1")
        y = keras.layers.ReLU(name=f"{name}_relu1")(_batch_norm(y, f"{name}_bn1", synchronized))
        y = _conv(y, filters, 3, strides, f"{name}_conv2")
        y = keras.layers.ReLU(name=f"{name}_relu2")(_batch_norm(y, f"{name}_bn2", synchronized))
        y = _conv(y, out_filters, 1, 1, f"{name}_conv3")
    else:
        y = _conv(x, filters, 3, strides, f"{name}_conv1")
        y = keras.layers.ReLU(name=f"{name}_relu1")(_batch_norm(y, f"{name}_bn1", synchronized))
        y = _conv(y, out_filters, 3, 1, f"{name}_conv2")
    # Zero-init the last BN of each block: every block starts as identity,
    # which makes early training of deep presets stable (Goyal et al., 2017).
    y = _batch_norm(y, f"{name}_bn_out", synchronized, gamma_zero=True)
    y = squeeze_excite(y, se_ratio, f"{name}_se")
    y = keras.layers.Add(name=f"{name}_add")([shortcut, y])
    return keras.layers.ReLU(name=f"{name}_out")(y)


def build_seresnet(
    preset="seresnet18",
    image_size=224,
    num_classes=28,
    width=1.0,
    channel_mean=(0.0, 0.0, 0.0, 0.0),
    channel_std=(255.0, 255.0, 255.0, 255.0),
    output_bias=None,
    se_ratio=16,
    dropout=0.0,
    synchronized_bn=False,
):
    """Builds a functional SE-ResNet with a sigmoid multi-label head.

    Args:
        preset: one of PRESETS.
        image_size: input side in pixels; input is (image_size, image_size, 4).
        num_classes: sigmoid outputs, one per class of the dataset's label
            set (dataset.json `class_names`: 28 for HPA 2018, 19 for 2021).
        width: multiplier on every stage's filters (tiny models for tests).
        channel_mean, channel_std: per-channel statistics of the training
            images on the 0-255 scale (dataset.json), applied inside the model.
        output_bias: initial logits of the head, e.g. each class's log-odds.
        se_ratio: squeeze-excitation reduction ratio.
        dropout: dropout rate before the head.
        synchronized_bn: synchronize BatchNorm statistics across replicas
            (needed when training under a multi-replica strategy).

    Example:
        >>> model = build_seresnet("seresnet18", image_size=64, width=0.25)
        >>> model.output_shape
        (None, 28)
    """
    if preset not in PRESETS:
        raise ValueError(f"unknown --arch {preset!r}; choose one of {', '.join(PRESETS)}")
    block, depths = PRESETS[preset]["block"], PRESETS[preset]["depths"]
    inputs = keras.Input((image_size, image_size, 4), name="image")
    std = np.asarray(channel_std, np.float32)
    x = keras.layers.Normalization(
        mean=np.asarray(channel_mean, np.float32), variance=np.square(np.maximum(std, 1e-3)), name="normalize"
    )(inputs)
    stem_filters = max(int(64 * width), 8)
    x = _conv(x, stem_filters, 7, 2, "stem_conv")
    x = keras.layers.ReLU(name="stem_relu")(_batch_norm(x, "stem_bn", synchronized_bn))
    x = keras.layers.MaxPooling2D(3, strides=2, padding="same", name="stem_pool")(x)
    for stage, (filters, depth) in enumerate(zip(STAGE_FILTERS, depths), start=1):
        for index in range(depth):
            strides = 2 if stage > 1 and index == 0 else 1
            x = _residual_block(x, block, max(int(filters * width), 8), strides, se_ratio,
                                synchronized_bn, f"stage{stage}_block{index + 1}")
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    if dropout:
        x = keras.layers.Dropout(dropout, name="dropout")(x)
    bias = "zeros" if output_bias is None else keras.initializers.Constant(np.asarray(output_bias, np.float32))
    # float32 head: sigmoid probabilities stay exact under mixed precision.
    outputs = keras.layers.Dense(num_classes, activation="sigmoid", bias_initializer=bias,
                                 dtype="float32", name="probabilities")(x)
    return keras.Model(inputs, outputs, name=f"{preset}_x{width:g}" if width != 1 else preset)


def float32_twin(model):
    """`model` itself when it computes in float32, else a float32 copy with its
    weights (Keras keeps the variables of a mixed-precision model in float32).

    Mixed precision is a training speed-up: after training, thresholds are
    tuned on, and the export serves, the float32 computation, which runs on
    any device and which TFLite and ONNX can represent.
    """
    if all(layer.dtype_policy.name == "float32" for layer in model.layers):
        return model

    def to_float32(node):
        if isinstance(node, dict):
            if node.get("class_name") == "DTypePolicy":
                node["config"]["name"] = "float32"
            for value in node.values():
                to_float32(value)
        elif isinstance(node, list):
            for value in node:
                to_float32(value)

    config = copy.deepcopy(model.get_config())
    to_float32(config)
    twin = model.__class__.from_config(config)
    twin.set_weights(model.get_weights())
    return twin
