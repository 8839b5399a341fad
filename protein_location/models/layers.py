"""The building blocks of SE-ResNet (Hu et al., 2018): a squeeze-and-excitation
gate, a residual block that carries one, and the BatchNormalization they use
(Keras's, with TensorFlow's fused kernel at inference on the TensorFlow
backend; Keras's own on JAX and PyTorch, where TensorFlow is not imported).

Both are `keras.layers.Layer` subclasses that build their sub-layers
themselves (so they track, save and load their weights) and give every
sub-layer their own dtype policy (so a mixed-precision block computes in
bfloat16 throughout and a float32 one in float32).
"""

import math

import keras

BLOCK_TYPES = ("basic", "bottleneck")
BOTTLENECK_EXPANSION = 4


def _conv(filters, kernel_size, strides, dtype, name, groups=1):
    return keras.layers.Conv2D(
        filters,
        kernel_size,
        strides=strides,
        padding="same",
        groups=groups,
        use_bias=False,
        kernel_initializer="he_normal",
        dtype=dtype,
        name=name,
    )


@keras.saving.register_keras_serializable(package="protein_location")
class FusedInferenceBatchNorm(keras.layers.BatchNormalization):
    """`keras.layers.BatchNormalization` whose inference on NHWC images runs
    TensorFlow's fused kernel (FusedBatchNormV3).

    Keras computes inference as separate multiply and add ops, in float32
    even under a bfloat16 policy; TensorFlow's graph optimizer (grappler's
    remapper) folds the fused op into the convolution before it, with the
    ReLU after, as one oneDNN primitive: the SavedModel's inference is
    faster so, in bfloat16 and in float32 (docs/benchmarks.md has the figures).
    The same arithmetic (moving statistics, gamma, beta, epsilon, float32
    inside the kernel); training, any other input, and every other Keras
    backend is Keras's own path (no figure of ours compares them there).
    """

    def call(self, inputs, training=None, mask=None):
        if (
            (training and self.trainable)
            or mask is not None
            or len(inputs.shape) != 4
            or self.axis not in (3, -1)
            or not (self.scale and self.center)
            or keras.backend.backend() != "tensorflow"
        ):
            return super().call(inputs, training=training, mask=mask)
        import tensorflow as tf  # the TensorFlow backend's own: already imported, and never on JAX or PyTorch

        outputs = tf.raw_ops.FusedBatchNormV3(
            x=inputs,
            scale=self.gamma,
            offset=self.beta,
            mean=self.moving_mean,
            variance=self.moving_variance,
            epsilon=self.epsilon,
            data_format="NHWC",
            is_training=False,
        )[0]
        return keras.ops.cast(outputs, self.compute_dtype)


def _batch_norm(synchronized, dtype, name, gamma_zero=False):
    # momentum 0.9 (PyTorch's 0.1): moving statistics keep up in short runs.
    return FusedInferenceBatchNorm(
        momentum=0.9,
        epsilon=1e-5,
        synchronized=synchronized,
        gamma_initializer="zeros" if gamma_zero else "ones",
        dtype=dtype,
        name=name,
    )


@keras.saving.register_keras_serializable(package="protein_location")
class SqueezeExcite(keras.layers.Layer):
    """Channel attention: global average pool -> bottleneck MLP -> sigmoid gate.

    Each channel of the input is multiplied by a gate in (0, 1) computed from
    the global average of all channels: two 1x1 convolutions, the first to
    `max(channels // ratio, min_filters)` channels with a ReLU, the second
    back to `channels` with a sigmoid.

    Args:
        ratio: int. Reduction ratio of the bottleneck.
        min_filters: int. Fewest channels of the bottleneck.
        **kwargs: `keras.layers.Layer` arguments (`name`, `dtype`, ...).

    Example:
        >>> layer = SqueezeExcite(ratio=16)
        >>> tuple(layer(keras.ops.ones((2, 8, 8, 64))).shape)
        (2, 8, 8, 64)
    """

    def __init__(self, ratio=16, min_filters=8, **kwargs):
        super().__init__(**kwargs)
        self.ratio = ratio
        self.min_filters = min_filters
        self.reduce = None
        self.expand = None

    def build(self, input_shape):
        channels = input_shape[-1]
        self.reduce = keras.layers.Conv2D(
            max(channels // self.ratio, self.min_filters),
            1,
            activation="relu",
            dtype=self.dtype_policy,
            name="reduce",
        )
        self.expand = keras.layers.Conv2D(channels, 1, activation="sigmoid", dtype=self.dtype_policy, name="expand")
        pooled_shape = (input_shape[0], 1, 1, channels)
        self.reduce.build(pooled_shape)
        self.expand.build(self.reduce.compute_output_shape(pooled_shape))

    def gate(self, inputs):
        """The per-channel gate [batch, 1, 1, channels], each in (0, 1)."""
        squeezed = keras.ops.mean(inputs, axis=(1, 2), keepdims=True)
        return self.expand(self.reduce(squeezed))

    def call(self, inputs):
        return keras.ops.multiply(inputs, self.gate(inputs))

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update({"ratio": self.ratio, "min_filters": self.min_filters})
        return config


@keras.saving.register_keras_serializable(package="protein_location")
class ResidualBlock(keras.layers.Layer):
    """A residual block with a squeeze-and-excitation gate on its branch.

    The branch is two 3x3 convolutions ("basic") or 1x1-3x3-1x1 with the last
    one expanding to `4 * filters` channels ("bottleneck"), each followed by
    BatchNormalization and (but the last) a ReLU; the stride is on the first
    3x3. The last BatchNormalization starts with zero gamma, so every block
    starts as its shortcut (Goyal et al., 2017), which keeps early training of
    the deep presets stable. The branch's output is gated by `SqueezeExcite`,
    added to the shortcut (a 1x1 convolution and BatchNormalization when the
    stride is not 1 or the channels change, else the input itself), and
    passed through a ReLU.

    With `cardinality` above 1 the bottleneck is ResNeXt's (Xie et al.,
    2017; the seed paper's SE-ResNeXt): its 3x3 convolution is split into
    `cardinality` groups and the branch is twice as wide inside
    (`2 * filters` channels, 32 groups of 4 at 64 filters: "32x4d"), the
    output still `4 * filters`.

    Args:
        filters: int. Channels of the branch's convolutions; the block
            outputs `filters` ("basic") or `4 * filters` ("bottleneck").
        block_type: `"basic"` or `"bottleneck"`.
        strides: int. Stride of the block (2 halves the side).
        se_ratio: int. Reduction ratio of the squeeze-and-excitation gate.
        synchronized_bn: bool. Synchronize BatchNormalization statistics
            across replicas (needed under a multi-replica strategy).
        cardinality: int. Groups of the bottleneck's 3x3 convolution (1:
            ResNet; 32: ResNeXt 32x4d). At most the inner channels, and a
            divisor of them (their greatest common divisor is taken).
        **kwargs: `keras.layers.Layer` arguments (`name`, `dtype`, ...).

    Example:
        >>> block = ResidualBlock(16, block_type="bottleneck", strides=2)
        >>> tuple(block(keras.ops.ones((2, 8, 8, 32))).shape)
        (2, 4, 4, 64)
    """

    def __init__(
        self, filters, block_type="basic", strides=1, se_ratio=16, synchronized_bn=False, cardinality=1, **kwargs
    ):
        if block_type not in BLOCK_TYPES:
            raise ValueError(f"block_type must be one of {', '.join(BLOCK_TYPES)}, not {block_type!r}")
        if cardinality != 1 and block_type != "bottleneck":
            raise ValueError(f"cardinality {cardinality} needs block_type='bottleneck', not {block_type!r}")
        super().__init__(**kwargs)
        self.filters = filters
        self.block_type = block_type
        self.strides = strides
        self.se_ratio = se_ratio
        self.synchronized_bn = synchronized_bn
        self.cardinality = cardinality
        self.output_filters = filters * BOTTLENECK_EXPANSION if block_type == "bottleneck" else filters

        dtype = self.dtype_policy
        if block_type == "bottleneck":
            inner = filters if cardinality == 1 else 2 * filters
            self.branch_convs = [
                _conv(inner, 1, 1, dtype, "conv1"),
                _conv(inner, 3, strides, dtype, "conv2", groups=math.gcd(cardinality, inner)),
                _conv(self.output_filters, 1, 1, dtype, "conv3"),
            ]
        else:
            self.branch_convs = [
                _conv(filters, 3, strides, dtype, "conv1"),
                _conv(self.output_filters, 3, 1, dtype, "conv2"),
            ]
        count = len(self.branch_convs)
        self.branch_norms = [_batch_norm(synchronized_bn, dtype, f"bn{index}") for index in range(1, count)]
        self.branch_norms.append(_batch_norm(synchronized_bn, dtype, "bn_out", gamma_zero=True))
        self.squeeze_excite = SqueezeExcite(se_ratio, dtype=dtype, name="se")
        self.projection_conv = None
        self.projection_norm = None

    def build(self, input_shape):
        if self.strides != 1 or input_shape[-1] != self.output_filters:
            self.projection_conv = _conv(self.output_filters, 1, self.strides, self.dtype_policy, "proj_conv")
            self.projection_norm = _batch_norm(self.synchronized_bn, self.dtype_policy, "proj_bn")
            self.projection_conv.build(input_shape)
            self.projection_norm.build(self.projection_conv.compute_output_shape(input_shape))
        shape = input_shape
        for conv, norm in zip(self.branch_convs, self.branch_norms):
            conv.build(shape)
            shape = conv.compute_output_shape(shape)
            norm.build(shape)
        self.squeeze_excite.build(shape)

    def call(self, inputs, training=None):
        shortcut = inputs
        if self.projection_conv is not None:
            shortcut = self.projection_norm(self.projection_conv(inputs), training=training)
        x = inputs
        last = len(self.branch_convs) - 1
        for index, (conv, norm) in enumerate(zip(self.branch_convs, self.branch_norms)):
            x = norm(conv(x), training=training)
            if index < last:
                x = keras.ops.relu(x)
        x = self.squeeze_excite(x)
        return keras.ops.relu(keras.ops.add(shortcut, x))

    def compute_output_shape(self, input_shape):
        # "same" padding: each side is ceil(side / strides).
        sides = [None if side is None else -(-side // self.strides) for side in input_shape[1:-1]]
        return (input_shape[0], *sides, self.output_filters)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "filters": self.filters,
                "block_type": self.block_type,
                "strides": self.strides,
                "se_ratio": self.se_ratio,
                "synchronized_bn": self.synchronized_bn,
                "cardinality": self.cardinality,
            }
        )
        return config
