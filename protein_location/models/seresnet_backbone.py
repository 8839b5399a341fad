"""SEResNetBackbone: the SE-ResNet feature extractor for 4-channel images."""

import keras

from protein_location.models.backbone import Backbone
from protein_location.models.layers import BLOCK_TYPES, FusedInferenceBatchNorm, ResidualBlock

STAGE_FILTERS = (64, 128, 256, 512)
MIN_FILTERS = 8


@keras.saving.register_keras_serializable(package="protein_location")
class SEResNetBackbone(Backbone):
    """SE-ResNet (Hu et al., 2018) without its head: normalized images in, the
    last stage's feature map out.

    A 7x7/2 convolution, BatchNormalization and ReLU, a 3x3/2 max-pool, then
    four stages of `ResidualBlock`s with 64, 128, 256 and 512 filters (times
    `width`, at least 8); every stage but the first halves the side in its
    first block. The feature map is 1/32 of the input side, with 512
    ("basic") or 2048 ("bottleneck") channels at width 1.

    The backbone takes images that are already normalized (the
    `MultiLabelClassifier` normalizes raw pixels before it).

    Args:
        stackwise_depths: four ints, the residual blocks of each stage.
        block_type: `"basic"` (two 3x3 convolutions) or `"bottleneck"`
            (1x1-3x3-1x1, 4x expansion).
        width: float. Multiplier on every stage's filters (tiny models for
            tests).
        se_ratio: int. Reduction ratio of the squeeze-and-excitation gates.
        synchronized_bn: bool. Synchronize BatchNormalization statistics
            across replicas (needed under a multi-replica strategy).
        cardinality: int. Groups of each bottleneck's 3x3 convolution: 1
            for SE-ResNet, 32 for SE-ResNeXt (`ResidualBlock`).
        image_size: int or `None`. Input side in pixels; `None` takes any side.
        dtype: `None`, a dtype policy or its name: the policy of every layer.
            `None` takes the global policy
            (`keras.mixed_precision.set_global_policy`).
        **kwargs: `keras.Model` arguments (`name`, `trainable`).

    Example:
        >>> backbone = SEResNetBackbone((2, 2, 2, 2), block_type="basic", width=0.25)
        >>> tuple(backbone(keras.ops.zeros((1, 64, 64, 4))).shape)
        (1, 2, 2, 128)
    """

    takes_width = True

    def __init__(
        self,
        stackwise_depths,
        block_type="basic",
        width=1.0,
        se_ratio=16,
        synchronized_bn=False,
        cardinality=1,
        image_size=None,
        dtype=None,
        **kwargs,
    ):
        if block_type not in BLOCK_TYPES:
            raise ValueError(f"block_type must be one of {', '.join(BLOCK_TYPES)}, not {block_type!r}")
        if len(stackwise_depths) != len(STAGE_FILTERS):
            raise ValueError(
                f"stackwise_depths must give {len(STAGE_FILTERS)} stages' depths, not {tuple(stackwise_depths)}"
            )
        policy = Backbone.policy_of(dtype)

        # === Functional model ===
        inputs = keras.Input((image_size, image_size, 4), name="images")
        x = keras.layers.Conv2D(
            max(int(64 * width), MIN_FILTERS),
            7,
            strides=2,
            padding="same",
            use_bias=False,
            kernel_initializer="he_normal",
            dtype=policy,
            name="stem_conv",
        )(inputs)
        x = FusedInferenceBatchNorm(
            momentum=0.9, epsilon=1e-5, synchronized=synchronized_bn, dtype=policy, name="stem_bn"
        )(x)
        x = keras.layers.ReLU(dtype=policy, name="stem_relu")(x)
        x = keras.layers.MaxPooling2D(3, strides=2, padding="same", dtype=policy, name="stem_pool")(x)
        for stage, (filters, depth) in enumerate(zip(STAGE_FILTERS, stackwise_depths), start=1):
            for index in range(depth):
                x = ResidualBlock(
                    max(int(filters * width), MIN_FILTERS),
                    block_type=block_type,
                    strides=2 if stage > 1 and index == 0 else 1,
                    se_ratio=se_ratio,
                    synchronized_bn=synchronized_bn,
                    cardinality=cardinality,
                    dtype=policy,
                    name=f"stage{stage}_block{index + 1}",
                )(x)
        super().__init__(inputs, x, policy, **kwargs)

        # === Config ===
        self.stackwise_depths = tuple(stackwise_depths)
        self.block_type = block_type
        self.width = width
        self.se_ratio = se_ratio
        self.synchronized_bn = synchronized_bn
        self.cardinality = cardinality
        self.image_size = image_size

    def argument_config(self):
        return {
            "stackwise_depths": list(self.stackwise_depths),
            "block_type": self.block_type,
            "width": self.width,
            "se_ratio": self.se_ratio,
            "synchronized_bn": self.synchronized_bn,
            "cardinality": self.cardinality,
            "image_size": self.image_size,
        }
