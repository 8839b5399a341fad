"""The models, keras-hub style: one `Backbone` base class whose presets
(`register_presets`, `Backbone.from_preset`) are every `--arch`: the SE-ResNet
family (layers, a backbone, presets) and keras.applications backbones adapted
to four stains; and a multi-label classifier that takes any backbone.

    >>> from protein_location import models
    >>> model = models.build_seresnet("seresnet18", image_size=64, width=0.25)
    >>> model.output_shape
    (None, 28)
"""

from protein_location.models.application_backbone import APPLICATIONS, ApplicationBackbone
from protein_location.models.backbone import BACKBONE_PRESETS, Backbone, backbone_class, register_presets
from protein_location.models.classifier import ARCHITECTURES, build_classifier, check_arch_request
from protein_location.models.ensemble import EnsembleClassifier
from protein_location.models.layers import ResidualBlock, SqueezeExcite
from protein_location.models.multilabel_classifier import MultiLabelClassifier
from protein_location.models.precision import computes_in_float32, float32_twin
from protein_location.models.presets import PRESETS
from protein_location.models.pretrained import load_three_channel_weights, rgby_stem_kernel
from protein_location.models.seresnet import build_seresnet
from protein_location.models.seresnet_backbone import SEResNetBackbone

__all__ = [
    "APPLICATIONS",
    "ARCHITECTURES",
    "ApplicationBackbone",
    "BACKBONE_PRESETS",
    "Backbone",
    "EnsembleClassifier",
    "MultiLabelClassifier",
    "PRESETS",
    "ResidualBlock",
    "SEResNetBackbone",
    "SqueezeExcite",
    "backbone_class",
    "build_classifier",
    "build_seresnet",
    "check_arch_request",
    "computes_in_float32",
    "float32_twin",
    "load_three_channel_weights",
    "register_presets",
    "rgby_stem_kernel",
]
