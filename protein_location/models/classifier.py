"""build_classifier: the multi-label classifier of any `--arch`, from scratch
or from pretrained weights."""

from protein_location.models import application_backbone, presets as seresnet_presets
from protein_location.models.backbone import BACKBONE_PRESETS, Backbone, backbone_class
from protein_location.models.multilabel_classifier import MultiLabelClassifier
from protein_location.models.pretrained import load_three_channel_weights

# Every registered preset (importing a family's module registers its own):
# our SE-ResNet/SE-ResNeXt (from scratch), then the keras.applications
# backbones (from scratch, ImageNet or a weights file).
ARCHITECTURES = (*seresnet_presets.PRESETS, *application_backbone.APPLICATIONS)


def check_arch_request(arch, width=1.0, weights=None):
    """A ValueError in one line, naming the argument, for an `arch` that cannot
    be built as asked: an unknown one, pretrained `weights` for a family that
    takes none, or a `width` other than 1 for a family of one width."""
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown `arch` {arch!r}; choose one of {', '.join(ARCHITECTURES)}")
    family = backbone_class(arch)
    if weights is not None and not family.takes_pretrained_weights:
        pretrainable = [name for name, (cls, _) in BACKBONE_PRESETS.items() if cls.takes_pretrained_weights]
        raise ValueError(
            f"`weights` {weights}: pretrained weights are for the keras.applications backbones "
            f"({', '.join(pretrainable)}); `arch` {arch} trains from scratch"
        )
    if width != 1 and not family.takes_width:
        widened = [name for name, (cls, _) in BACKBONE_PRESETS.items() if cls.takes_width]
        raise ValueError(
            f"`width` {width:g}: `arch` {arch} has one width; `width` is for the presets {', '.join(widened)}"
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
    """A `MultiLabelClassifier` on the backbone of preset `arch` (one of `ARCHITECTURES`).

    Args:
        arch: a backbone preset (`Backbone.from_preset`): an SE-ResNet
            (`SEResNetBackbone`) or a keras.applications network
            (`ApplicationBackbone`).
        weights: `None` (random), "imagenet" or the path of a Keras weights
            file of the three-channel keras.applications backbone without its
            top (`pretrained.load_three_channel_weights`). Only for a family
            that `takes_pretrained_weights`.
        width: multiplier on the filters; only for a family that `takes_width`.
        The others: as `build_seresnet`.

    Example:
        >>> model = build_classifier("resnet50", image_size=64, num_classes=19)
        >>> model.output_shape
        (None, 19)
    """
    check_arch_request(arch, width, weights)
    overrides = {"width": width} if backbone_class(arch).takes_width else {}
    backbone = Backbone.from_preset(arch, image_size=image_size, synchronized_bn=synchronized_bn, **overrides)
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
        name=f"{arch}_x{width:g}" if width != 1 else arch,
    )
