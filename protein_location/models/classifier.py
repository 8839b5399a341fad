"""build_classifier: the multi-label classifier of any `--arch`, from scratch
or from pretrained weights."""

from protein_location.models.application_backbone import APPLICATIONS, ApplicationBackbone
from protein_location.models.multilabel_classifier import MultiLabelClassifier
from protein_location.models.presets import PRESETS
from protein_location.models.pretrained import load_three_channel_weights
from protein_location.models.seresnet import build_seresnet

# Our SE-ResNet/SE-ResNeXt presets (from scratch), then the keras.applications
# backbones (from scratch, ImageNet or a weights file).
ARCHITECTURES = (*PRESETS, *APPLICATIONS)


def check_arch_request(arch, width=1.0, weights=None):
    """A ValueError in one line, naming the argument, for an `arch` that cannot
    be built as asked: an unknown one, pretrained `weights` for a preset, or
    a `width` other than 1 for a keras.applications backbone."""
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown `arch` {arch!r}; choose one of {', '.join(ARCHITECTURES)}")
    if arch in PRESETS and weights is not None:
        raise ValueError(
            f"`weights` {weights}: pretrained weights are for the keras.applications backbones "
            f"({', '.join(APPLICATIONS)}); `arch` {arch} trains from scratch"
        )
    if arch in APPLICATIONS and width != 1:
        raise ValueError(
            f"`width` {width:g}: `arch` {arch} has one width; `width` is for the presets {', '.join(PRESETS)}"
        )


def build_classifier(
    arch="seresnet18",
    image_size=224,
    num_classes=28,
    width=1.0,
    channel_mean=(0.0, 0.0, 0.0, 0.0),
    channel_std=(255.0, 255.0, 255.0, 255.0),
    output_bias=None,
    dropout=0.0,
    synchronized_bn=False,
    weights=None,
):
    """A `MultiLabelClassifier` of `arch` (one of `ARCHITECTURES`).

    Args:
        arch: an SE-ResNet preset (`build_seresnet`) or a keras.applications
            backbone (`ApplicationBackbone`).
        weights: `None` (random), "imagenet" or the path of a Keras weights
            file of the three-channel keras.applications backbone without its
            top (`pretrained.load_three_channel_weights`). Only for
            keras.applications backbones.
        width: multiplier on the filters; only for the SE-ResNet presets.
        The others: as `build_seresnet`.

    Example:
        >>> model = build_classifier("resnet50", image_size=64, num_classes=19)
        >>> model.output_shape
        (None, 19)
    """
    check_arch_request(arch, width, weights)
    if arch in PRESETS:
        return build_seresnet(
            arch,
            image_size=image_size,
            num_classes=num_classes,
            width=width,
            channel_mean=channel_mean,
            channel_std=channel_std,
            output_bias=output_bias,
            dropout=dropout,
            synchronized_bn=synchronized_bn,
        )
    backbone = ApplicationBackbone(
        arch, image_size=image_size, synchronized_bn=synchronized_bn, name=f"{arch}_backbone"
    )
    if weights is not None:
        load_three_channel_weights(backbone, weights)
    return MultiLabelClassifier(
        backbone,
        num_classes=num_classes,
        image_size=image_size,
        channel_mean=channel_mean,
        channel_std=channel_std,
        output_bias=output_bias,
        dropout=dropout,
        name=arch,
    )
