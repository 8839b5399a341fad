"""ApplicationBackbone: a `keras.applications` network as the backbone of
four-stain images."""

import warnings

import keras

from protein_location.models.backbone import Backbone, register_presets

# Each backbone Keras ships that `--arch` takes: its builder, how its ImageNet
# weights expect their input ("torch": per-channel z-scores in RGB order;
# "caffe": 0-255 pixels less the ImageNet mean, BGR order) and the builder's
# options. The preprocessing Keras would build in is left out: it is for
# three-channel 0-255 RGB, and the classifier normalizes the stains itself.
APPLICATIONS = {
    "densenet121": (keras.applications.DenseNet121, "torch", {}),
    "resnet50": (keras.applications.ResNet50, "caffe", {}),
    "efficientnetv2b0": (keras.applications.EfficientNetV2B0, "torch", {"include_preprocessing": False}),
    "convnext_tiny": (keras.applications.ConvNeXtTiny, "torch", {"include_preprocessing": False}),
}

# ImageNet's per-channel pixel standard deviation on the 0-255 scale (RGB):
# the spread of what the caffe-mode networks were trained on.
IMAGENET_STD_255 = (58.395, 57.12, 57.375)


def application_spec(arch):
    """(builder, input mode, builder options) of `arch`; a ValueError naming
    the choices for an unknown one."""
    if arch not in APPLICATIONS:
        raise ValueError(f"unknown keras.applications backbone {arch!r}; choose one of {', '.join(APPLICATIONS)}")
    return APPLICATIONS[arch]


def input_scale(arch):
    """The four factors (RGBY) that take z-scored stains into `arch`'s input space.

    A z-scored stain (our per-channel normalization, with the dataset's own
    statistics) is what a "torch"-mode network saw on ImageNet: zero mean,
    unit spread per channel. A "caffe"-mode network saw mean-subtracted
    0-255 pixels, so the z-scores are spread by ImageNet's standard
    deviation; yellow, made of red and green, by the mean of theirs.

    Every factor is then 3/4: four input channels where the stem was trained
    on three. For correlated stains and a stem whose colour kernels are
    alike, the stem's first activations then keep their pretrained scale,
    the rule timm applies to the kernels (x 3 / channels), applied to the
    input here so the RGB kernels stay exactly the pretrained ones.
    """
    _, mode, _ = application_spec(arch)
    spread = (1.0, 1.0, 1.0, 1.0)
    if mode == "caffe":
        red, green, blue = IMAGENET_STD_255
        spread = (red, green, blue, (red + green) / 2)
    return tuple(value * 3.0 / 4.0 for value in spread)


def build_network(arch, channels, image_size=None, weights=None):
    """`arch`'s keras.applications network without its top on `channels`
    input channels, with `weights` (`None`, "imagenet" or a file) as Keras
    loads them; under the global dtype policy."""
    builder, _, options = application_spec(arch)
    with warnings.catch_warnings():
        # "This model usually expects 1 or 3 input channels": four is the point here.
        warnings.filterwarnings("ignore", message=".*input channels.*")
        return builder(include_top=False, weights=weights, input_shape=(image_size, image_size, channels), **options)


@keras.saving.register_keras_serializable(package="protein_location")
class ApplicationBackbone(Backbone):
    """A `keras.applications` network without its top, on four stains.

    Takes z-scored RGBY images (the `MultiLabelClassifier` normalizes raw
    pixels before it), scales them into the network's input space
    (`input_scale`) and returns its last feature map. It is built with
    random weights; `pretrained.load_three_channel_weights` copies ImageNet's
    (or a weights file's) into it, the stem adapted to four channels.

    Args:
        arch: str. One of `APPLICATIONS`.
        image_size: int or `None`. Input side in pixels; `None` takes any side.
        synchronized_bn: bool. Synchronize BatchNormalization statistics
            across replicas (needed under a multi-replica strategy).
        dtype: `None`, a dtype policy or its name: the policy of every layer.
            `None` takes the global policy.
        **kwargs: `keras.Model` arguments (`name`, `trainable`).

    Example:
        >>> backbone = ApplicationBackbone("resnet50", image_size=64)
        >>> backbone.output_shape
        (None, 2, 2, 2048)
    """

    takes_pretrained_weights = True

    def __init__(self, arch, image_size=None, synchronized_bn=False, dtype=None, **kwargs):
        application_spec(arch)  # an unknown arch fails here, before anything is built
        policy = Backbone.policy_of(dtype)

        # === Layers ===
        # keras.applications builders take the global policy: set it for the build only.
        previous = keras.config.dtype_policy()
        keras.config.set_dtype_policy(policy)
        try:
            self.application = build_network(arch, 4, image_size)
        finally:
            keras.config.set_dtype_policy(previous)
        for layer in self.application._flatten_layers(include_self=False, recursive=True):
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.synchronized = synchronized_bn
        self.scale = keras.layers.Rescaling(list(input_scale(arch)), dtype=policy, name="input_scale")

        # === Functional model ===
        inputs = keras.Input((image_size, image_size, 4), name="images")
        outputs = self.application(self.scale(inputs))
        super().__init__(inputs, outputs, policy, **kwargs)

        # === Config ===
        self.arch = arch
        self.image_size = image_size
        self.synchronized_bn = synchronized_bn

    def argument_config(self):
        return {"arch": self.arch, "image_size": self.image_size, "synchronized_bn": self.synchronized_bn}


# Every keras.applications network above is a preset of its own name.
register_presets({arch: {"arch": arch} for arch in APPLICATIONS}, ApplicationBackbone)
