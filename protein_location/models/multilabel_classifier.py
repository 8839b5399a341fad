"""MultiLabelClassifier: raw RGBY pixels -> one sigmoid probability per class."""

import keras
import numpy as np


@keras.saving.register_keras_serializable(package="protein_location")
class MultiLabelClassifier(keras.Model):
    """A multi-label image classifier on any backbone.

    Raw 0-255 RGBY pixels [batch, S, S, 4] are normalized per channel inside
    the model (so the model, and its SavedModel export, take raw pixels),
    passed through `backbone`, global-average pooled, optionally dropped out,
    and mapped by a float32 sigmoid `Dense` head to one independent
    probability per class. The head computes in float32 under mixed
    precision too: probabilities stay exact.

    The backbone is any `keras.Model` that maps a normalized image to a
    feature map [batch, h, w, channels]: an `SEResNetBackbone`, or a
    `keras.applications` model built with `include_top=False`.

    Args:
        backbone: `keras.Model`. Normalized image -> feature map.
        num_classes: int. Sigmoid outputs, one per class of the label set.
        image_size: int or `None`. Input side in pixels; `None` takes the
            backbone's (which may be `None`: any side).
        channel_mean: four floats. Per-channel mean of the training images on
            the 0-255 scale.
        channel_std: four floats. Per-channel standard deviation, likewise
            (at least 1e-3 is used).
        output_bias: `None` or `num_classes` floats: the head's initial
            logits, e.g. each class's log-odds. `None` starts at zeros.
        dropout: float. Dropout rate before the head; 0 for none.
        dtype: `None`, a dtype policy or its name: the policy of the
            normalization, pooling and dropout layers. `None` takes the
            backbone's. The head is always float32.
        **kwargs: `keras.Model` arguments (`name`, `trainable`).

    Example:
        >>> from protein_location.models import Backbone
        >>> backbone = Backbone.from_preset("seresnet18", width=0.25)
        >>> model = MultiLabelClassifier(backbone, num_classes=28, image_size=64)
        >>> model.output_shape
        (None, 28)
    """

    def __init__(
        self,
        backbone,
        num_classes,
        image_size=None,
        channel_mean=(0.0, 0.0, 0.0, 0.0),
        channel_std=(255.0, 255.0, 255.0, 255.0),
        output_bias=None,
        dropout=0.0,
        dtype=None,
        **kwargs,
    ):
        policy = backbone.dtype_policy if dtype is None else keras.dtype_policies.get(dtype)
        if image_size is None:
            image_size = backbone.input_shape[1]
        channel_mean = tuple(float(value) for value in channel_mean)
        channel_std = tuple(float(value) for value in channel_std)
        output_bias = None if output_bias is None else tuple(float(value) for value in np.ravel(output_bias))
        if output_bias is not None and len(output_bias) != num_classes:
            raise ValueError(f"output_bias must have num_classes={num_classes} values, not {len(output_bias)}")

        # === Layers ===
        self.backbone = backbone
        std = np.asarray(channel_std, np.float32)
        self.normalizer = keras.layers.Normalization(
            mean=np.asarray(channel_mean, np.float32),
            variance=np.square(np.maximum(std, 1e-3)),
            dtype=policy,
            name="normalize",
        )
        self.pooler = keras.layers.GlobalAveragePooling2D(dtype=policy, name="pool")
        self.output_dropout = keras.layers.Dropout(dropout, dtype=policy, name="dropout") if dropout else None
        bias = "zeros" if output_bias is None else keras.initializers.Constant(np.asarray(output_bias, np.float32))
        self.head = keras.layers.Dense(
            num_classes, activation="sigmoid", bias_initializer=bias, dtype="float32", name="probabilities"
        )

        # === Functional model ===
        inputs = keras.Input((image_size, image_size, 4), name="image")
        x = self.pooler(self.backbone(self.normalizer(inputs)))
        if self.output_dropout is not None:
            x = self.output_dropout(x)
        outputs = self.head(x)
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)
        # A functional model does not take its policy from `dtype`: set it.
        self.dtype_policy = policy

        # === Config ===
        self.num_classes = num_classes
        self.image_size = image_size
        self.channel_mean = channel_mean
        self.channel_std = channel_std
        self.output_bias = output_bias
        self.dropout = dropout

    def features_and_logits(self, images, training=False):
        """(The backbone's feature map [batch, h, w, C], the head's logits
        [batch, num_classes] float32) of raw pixels `images`.

        sigmoid(logits) is the model's output. Grad-CAM differentiates the
        logits (not the probabilities, whose saturation gives vanishing
        gradients) with respect to the feature map.
        """
        features = self.backbone(self.normalizer(images), training=training)
        pooled = self.pooler(features)
        if self.output_dropout is not None:
            pooled = self.output_dropout(pooled, training=training)
        logits = keras.ops.matmul(keras.ops.cast(pooled, "float32"), self.head.kernel) + self.head.bias
        return features, logits

    def class_maps_and_logits(self, images):
        """(Grad-CAM maps [batch, h, w, num_classes] float32 on the feature
        map's grid, logits [batch, num_classes] float32) of raw pixels
        `images`, in inference mode.

        Grad-CAM (Selvaraju et al., 2017) weighs each feature channel c by the
        spatial mean of d logit_k / d feature(i, j, c), then takes
        relu(sum_c weight * feature). This head is a global average pool and
        one dense layer, so that derivative is kernel[c, k] / (h * w) at every
        position and the map is computed in closed form, one matrix product
        for all classes (their section 3.1: Grad-CAM is CAM for such a head),
        with no backward pass per class.
        """
        features, logits = self.features_and_logits(images, training=False)
        features = keras.ops.cast(features, "float32")
        shape = keras.ops.shape(features)
        positions = keras.ops.cast(shape[1] * shape[2], "float32")
        maps = keras.ops.einsum("bhwc,ck->bhwk", features, self.head.kernel) / positions
        return keras.ops.relu(maps), logits

    def get_config(self):
        # Not chained to super: a functional model's config is its layer
        # graph, which this constructor does not take (keras-hub's Task).
        return {
            "name": self.name,
            "trainable": self.trainable,
            "backbone": keras.saving.serialize_keras_object(self.backbone),
            "num_classes": self.num_classes,
            "image_size": self.image_size,
            "channel_mean": list(self.channel_mean),
            "channel_std": list(self.channel_std),
            "output_bias": None if self.output_bias is None else list(self.output_bias),
            "dropout": self.dropout,
            "dtype": keras.dtype_policies.serialize(self.dtype_policy),
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["backbone"] = keras.saving.deserialize_keras_object(config["backbone"])
        return cls(**config)
