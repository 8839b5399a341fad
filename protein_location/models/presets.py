"""SE-ResNet and SE-ResNeXt presets: the `SEResNetBackbone` arguments of each `--arch`."""

from protein_location.models.seresnet_backbone import SEResNetBackbone

# Blocks per stage; "basic" = two 3x3 convs, "bottleneck" = 1x1-3x3-1x1 (x4);
# cardinality 32: ResNeXt's grouped bottleneck (32x4d), the seed paper's family.
PRESETS = {
    "seresnet18": {"block_type": "basic", "stackwise_depths": (2, 2, 2, 2)},
    "seresnet34": {"block_type": "basic", "stackwise_depths": (3, 4, 6, 3)},
    "seresnet50": {"block_type": "bottleneck", "stackwise_depths": (3, 4, 6, 3)},
    "seresnext50": {"block_type": "bottleneck", "stackwise_depths": (3, 4, 6, 3), "cardinality": 32},
}


def preset_arguments(name):
    """The `SEResNetBackbone` arguments of preset `name`; a ValueError naming
    the presets for an unknown one."""
    if name not in PRESETS:
        raise ValueError(f"unknown `arch` {name!r}; choose one of {', '.join(PRESETS)}")
    return dict(PRESETS[name])


def backbone_from_preset(name, **overrides):
    """An `SEResNetBackbone` of preset `name` (one of `PRESETS`), any of its arguments overridden (`width`,
    `image_size`, `se_ratio`, `synchronized_bn`, `dtype`, `name`, ...).

    Example:
        >>> backbone = backbone_from_preset("seresnet18", width=0.25, image_size=64)
        >>> backbone.output_shape
        (None, 2, 2, 128)
    """
    arguments = preset_arguments(name)
    arguments.setdefault("name", f"{name}_backbone")
    arguments.update(overrides)
    return SEResNetBackbone(**arguments)
