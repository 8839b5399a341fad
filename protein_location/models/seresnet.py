"""build_seresnet: an SE-ResNet multi-label classifier of a preset."""

from protein_location.models.multilabel_classifier import MultiLabelClassifier
from protein_location.models.seresnet_backbone import SEResNetBackbone


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
    """Builds an SE-ResNet `MultiLabelClassifier` with a sigmoid multi-label head.

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
    backbone = SEResNetBackbone.from_preset(
        preset, width=width, se_ratio=se_ratio, synchronized_bn=synchronized_bn, image_size=image_size
    )
    return MultiLabelClassifier(
        backbone,
        num_classes=num_classes,
        image_size=image_size,
        channel_mean=channel_mean,
        channel_std=channel_std,
        output_bias=output_bias,
        dropout=dropout,
        name=f"{preset}_x{width:g}" if width != 1 else preset,
    )
