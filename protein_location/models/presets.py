"""SE-ResNet and SE-ResNeXt presets: the `SEResNetBackbone` arguments of each `--arch`."""

from protein_location.models.backbone import register_presets
from protein_location.models.seresnet_backbone import SEResNetBackbone

# Blocks per stage; "basic" = two 3x3 convs, "bottleneck" = 1x1-3x3-1x1 (x4);
# cardinality 32: ResNeXt's grouped bottleneck (32x4d), the seed paper's family.
PRESETS = {
    "seresnet18": {"block_type": "basic", "stackwise_depths": (2, 2, 2, 2)},
    "seresnet34": {"block_type": "basic", "stackwise_depths": (3, 4, 6, 3)},
    "seresnet50": {"block_type": "bottleneck", "stackwise_depths": (3, 4, 6, 3)},
    "seresnext50": {"block_type": "bottleneck", "stackwise_depths": (3, 4, 6, 3), "cardinality": 32},
}


register_presets(PRESETS, SEResNetBackbone)
