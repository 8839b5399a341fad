"""The model family (protein_location.models), keras-hub style: each layer's
checks, then one standard set per preset (build, call, save/load, mixed
precision, the float32 twin, Grad-CAM's view), at tiny sizes."""

import functools
import re

import keras
import numpy as np
import pytest
import tensorflow as tf

from protein_location import models
from protein_location.models import layers
from tests.helpers import ROOT

IMAGE_SIZE, WIDTH, BATCH = 32, 0.125, 2
# Every preset at width 1, 28 classes: what the models page's table (docs/models.md) rounds to millions.
PARAMETER_COUNTS = {
    "seresnet18": 11_293_724,
    "seresnet34": 21_481_940,
    "seresnet50": 26_152_652,
    "seresnext50": 25_639_628,
    "densenet121": 7_069_340,
    "resnet50": 23_648_220,
    "efficientnetv2b0": 5_955_468,
    "convnext_tiny": 27_843_196,
}


def docs_millions():
    """{arch: millions of parameters} as the table of the models in docs/models.md prints them."""
    text = (ROOT / "docs" / "models.md").read_text()
    rows = re.findall(r"^\| (\w+)(?: \(default\))? \| ([0-9.]+) M \|", text, flags=re.MULTILINE)
    return {arch: float(millions) for arch, millions in rows}


def raw_images(size=IMAGE_SIZE, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, (BATCH, size, size, 4)).astype("float32")


def predictions(model, size=IMAGE_SIZE):
    """The model's inference output on `raw_images()`, computed eagerly
    (tracing `predict`'s function would cost more than the tiny model)."""
    return model(raw_images(size), training=False).numpy()


def tiny(preset, **overrides):
    return models.build_seresnet(preset, **{"image_size": IMAGE_SIZE, "width": WIDTH, **overrides})


@functools.lru_cache(maxsize=None)
def shared_tiny(preset):
    """One float32 tiny model per preset, shared by the checks that only read
    it (building is most of their cost): dropout, output bias and channel
    statistics set, so that saving and loading must keep them."""
    assert keras.mixed_precision.global_policy().name == "float32"
    return tiny(preset, dropout=0.2, output_bias=np.linspace(-3, 1, 28), channel_mean=(10, 20, 30, 40))


def all_layers(model):
    """Every layer in `model`, nested ones and `model` included, input layers aside."""
    return [
        layer
        for layer in model._flatten_layers(include_self=True, recursive=True)
        if not isinstance(layer, keras.layers.InputLayer)
    ]


def randomized(layer, seed=0):
    """`layer` with random weights (moving variances positive): an untrained
    block is its shortcut, which would hide a difference in the branch."""
    rng = np.random.default_rng(seed)
    for weight in layer.weights:
        value = rng.normal(0, 0.5, weight.shape)
        weight.assign(np.abs(value) + 0.5 if "moving_variance" in weight.path else value)
    return layer


@pytest.fixture
def mixed_bfloat16():
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy("float32")


# --- Layers ---------------------------------------------------------------------------------------


def test_squeeze_excite_multiplies_each_channel_by_a_gate_in_0_1():
    layer = models.SqueezeExcite(ratio=4)
    x = keras.ops.convert_to_tensor(np.random.default_rng(0).normal(size=(BATCH, 6, 6, 32)).astype("float32"))
    outputs, gate = layer(x), layer.gate(x)
    assert outputs.shape == x.shape and gate.shape == (BATCH, 1, 1, 32)
    assert np.all((gate.numpy() > 0) & (gate.numpy() < 1))
    np.testing.assert_allclose(outputs.numpy(), (x * gate).numpy(), rtol=1e-6)


@pytest.mark.parametrize("channels, ratio, reduced", [(64, 16, 8), (256, 16, 16), (32, 4, 8)])
def test_squeeze_excite_bottleneck_is_channels_over_ratio_and_at_least_8(channels, ratio, reduced):
    layer = models.SqueezeExcite(ratio=ratio)
    layer.build((None, 4, 4, channels))
    assert (layer.reduce.filters, layer.expand.filters) == (reduced, channels)


@pytest.mark.parametrize(
    "block_type, filters, strides, channels_in, expected, projects",
    [
        ("basic", 16, 1, 16, (BATCH, 8, 8, 16), False),
        ("basic", 32, 2, 16, (BATCH, 4, 4, 32), True),
        ("bottleneck", 8, 1, 32, (BATCH, 8, 8, 32), False),
        ("bottleneck", 8, 2, 16, (BATCH, 4, 4, 32), True),
    ],
)
def test_residual_block_output_shape_and_projection(block_type, filters, strides, channels_in, expected, projects):
    block = models.ResidualBlock(filters, block_type=block_type, strides=strides)
    outputs = block(keras.ops.ones((BATCH, 8, 8, channels_in)))
    assert tuple(outputs.shape) == expected == block.compute_output_shape((BATCH, 8, 8, channels_in))
    assert (block.projection_conv is not None) == projects
    assert len(block.branch_convs) == (3 if block_type == "bottleneck" else 2)
    assert np.all(block.branch_norms[-1].gamma.numpy() == 0)


@pytest.mark.parametrize("block_type, filters", [("basic", 16), ("bottleneck", 4)])
def test_residual_block_starts_as_relu_of_its_identity_shortcut(block_type, filters):
    # Zero gamma on the branch's last BatchNorm: the branch adds 0 at init.
    block = models.ResidualBlock(filters, block_type=block_type)
    x = np.random.default_rng(0).normal(size=(BATCH, 8, 8, 16)).astype("float32")
    for training in (False, True):
        np.testing.assert_allclose(block(x, training=training).numpy(), np.maximum(x, 0), atol=1e-6)


@pytest.mark.parametrize(
    "make, input_shape",
    [
        (lambda: models.SqueezeExcite(ratio=4, min_filters=4, name="se"), (BATCH, 4, 4, 24)),
        (lambda: models.ResidualBlock(8, block_type="basic", strides=2, se_ratio=4, name="b"), (BATCH, 8, 8, 16)),
        (
            lambda: models.ResidualBlock(
                4, block_type="bottleneck", strides=1, se_ratio=2, synchronized_bn=True, name="c"
            ),
            (BATCH, 8, 8, 8),
        ),
    ],
)
def test_layer_config_round_trip_gives_the_same_output_with_the_same_weights(make, input_shape):
    layer = make()
    x = np.random.default_rng(1).normal(size=input_shape).astype("float32")
    layer.build(input_shape)
    randomized(layer)
    config = layer.get_config()
    twin = layer.__class__.from_config(config)
    twin.build(input_shape)
    twin.set_weights(layer.get_weights())
    assert twin.get_config() == config
    np.testing.assert_array_equal(twin(x).numpy(), layer(x).numpy())


@pytest.mark.parametrize("policy, tolerance", [("float32", 1e-5), ("mixed_bfloat16", 0.0)])
def test_fused_inference_batch_norm_computes_what_keras_does(policy, tolerance):
    """TensorFlow's fused kernel at inference, Keras's own path in training:
    the outputs of keras.layers.BatchNormalization with the same weights."""
    x = np.random.default_rng(1).normal(3, 2, (BATCH, 5, 6, 8)).astype("float32")
    fused = layers.FusedInferenceBatchNorm(epsilon=1e-5, dtype=policy)
    plain = keras.layers.BatchNormalization(epsilon=1e-5, dtype=policy)
    for layer in (fused, plain):
        layer.build(x.shape)
    randomized(plain)
    fused.set_weights(plain.get_weights())
    for training in (False, True):
        expected = plain(x, training=training)
        outputs = fused(x, training=training)
        assert outputs.dtype == expected.dtype == keras.mixed_precision.Policy(policy).compute_dtype
        np.testing.assert_allclose(
            keras.ops.convert_to_numpy(keras.ops.cast(outputs, "float32")),
            keras.ops.convert_to_numpy(keras.ops.cast(expected, "float32")),
            atol=tolerance,
        )
    fused_in_graph = tf.function(lambda images: fused(images, training=False))
    assert "FusedBatchNormV3" in {op.type for op in fused_in_graph.get_concrete_function(x).graph.get_operations()}


def test_residual_block_rejects_an_unknown_block_type():
    with pytest.raises(ValueError, match="block_type must be one of basic, bottleneck, not 'wide'"):
        models.ResidualBlock(8, block_type="wide")


def test_layers_compute_in_their_policy_and_keep_float32_variables():
    block = models.ResidualBlock(8, strides=2, dtype="mixed_bfloat16")
    outputs = block(keras.ops.ones((BATCH, 8, 8, 4)))
    assert outputs.dtype == "bfloat16"
    assert {layer.dtype_policy.name for layer in all_layers(block)} == {"mixed_bfloat16"}
    assert {weight.dtype for weight in block.weights} == {"float32"}


# --- Backbone -------------------------------------------------------------------------------------


@pytest.mark.parametrize("preset, channels", [("seresnet18", 64), ("seresnet50", 256)])
def test_backbone_of_any_side_outputs_the_last_stage_at_a_32nd_of_the_side(preset, channels):
    backbone = models.SEResNetBackbone.from_preset(preset, width=WIDTH)
    assert backbone.input_shape == (None, None, None, 4)
    for side in (32, 64):
        assert tuple(backbone(keras.ops.zeros((1, side, side, 4))).shape) == (1, side // 32, side // 32, channels)
    blocks = [layer for layer in backbone.layers if isinstance(layer, models.ResidualBlock)]
    assert len(blocks) == sum(models.PRESETS[preset]["stackwise_depths"])
    assert backbone.get_layer("stem_conv").filters == 8  # max(int(64 * 0.125), 8)


def test_backbone_config_round_trips():
    backbone = models.SEResNetBackbone.from_preset("seresnet34", width=WIDTH, image_size=IMAGE_SIZE, se_ratio=8)
    rebuilt = models.SEResNetBackbone.from_config(backbone.get_config())
    assert isinstance(rebuilt, models.SEResNetBackbone)
    assert rebuilt.get_config() == backbone.get_config()
    assert rebuilt.count_params() == backbone.count_params()
    assert rebuilt.input_shape == (None, IMAGE_SIZE, IMAGE_SIZE, 4)


def test_backbone_rejects_other_than_four_stages():
    with pytest.raises(ValueError, match=r"stackwise_depths must give 4 stages' depths, not \(2, 2, 2\)"):
        models.SEResNetBackbone((2, 2, 2))


# --- One standard set per preset ------------------------------------------------------------------


@pytest.mark.parametrize("preset", list(models.PRESETS))
def test_preset_builds_and_outputs_one_probability_per_class(preset):
    model = shared_tiny(preset)
    assert isinstance(model, models.MultiLabelClassifier)
    assert isinstance(model.backbone, models.SEResNetBackbone)
    assert model.name == f"{preset}_x0.125"
    assert model.input_shape == (None, IMAGE_SIZE, IMAGE_SIZE, 4) and model.input.name == "image"
    assert model.output_shape == (None, 28)
    probabilities = model(raw_images()).numpy()
    assert probabilities.shape == (BATCH, 28)
    assert np.all((probabilities > 0) & (probabilities < 1))
    assert model.head.activation is keras.activations.sigmoid
    blocks = [layer for layer in model.backbone.layers if isinstance(layer, models.ResidualBlock)]
    assert len(blocks) == sum(models.PRESETS[preset]["stackwise_depths"])
    assert all(isinstance(block.squeeze_excite, models.SqueezeExcite) for block in blocks)
    assert {block.block_type for block in blocks} == {models.PRESETS[preset]["block_type"]}


@pytest.mark.parametrize("preset", list(models.PRESETS))
def test_preset_saves_and_loads_with_safe_mode_to_identical_predictions(preset, tmp_path):
    model = shared_tiny(preset)
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras", safe_mode=True)
    assert isinstance(loaded, models.MultiLabelClassifier)
    assert isinstance(loaded.backbone, models.SEResNetBackbone)
    assert loaded.get_config() == model.get_config()
    np.testing.assert_array_equal(predictions(loaded), predictions(model))


@pytest.mark.parametrize("preset", list(models.PRESETS))
def test_preset_in_mixed_precision_has_a_float32_twin(preset, mixed_bfloat16):
    model = tiny(preset)
    assert model.backbone.get_layer("stem_conv").compute_dtype == "bfloat16"
    assert model.head.dtype_policy.name == "float32"
    mixed = model(raw_images(), training=False)
    assert mixed.dtype == "float32"
    twin = models.float32_twin(model)
    assert twin is not model and isinstance(twin, models.MultiLabelClassifier)
    assert isinstance(twin.backbone, models.SEResNetBackbone)
    assert {layer.dtype_policy.name for layer in all_layers(twin)} == {"float32"}
    assert models.float32_twin(twin) is twin
    np.testing.assert_allclose(predictions(twin), mixed.numpy(), atol=2e-2)  # bfloat16 keeps 8 bits of mantissa

    keras.mixed_precision.set_global_policy("float32")
    built = tiny(preset)
    built.set_weights(model.get_weights())
    np.testing.assert_array_equal(predictions(twin), predictions(built))


def test_a_mixed_precision_model_loads_as_saved_under_any_global_policy(mixed_bfloat16, tmp_path):
    model = tiny("seresnet18")
    model.save(tmp_path / "m.keras")
    keras.mixed_precision.set_global_policy("float32")
    loaded = keras.models.load_model(tmp_path / "m.keras", safe_mode=True)
    assert loaded.backbone.get_layer("stage1_block1").compute_dtype == "bfloat16"
    np.testing.assert_array_equal(predictions(loaded), predictions(model))


def test_float32_twin_of_a_float32_model_is_the_model_itself():
    model = tiny("seresnet18")
    assert models.computes_in_float32(model)
    assert models.float32_twin(model) is model


@pytest.mark.parametrize("preset", ["seresnet18", "seresnet50"])  # basic and bottleneck blocks
def test_features_and_logits_give_the_feature_map_and_the_logits_of_the_output(preset):
    model = tiny(preset, image_size=64, dropout=0.3, output_bias=np.linspace(-2, 2, 28))
    images = tf.constant(raw_images(64))
    with tf.GradientTape() as tape:
        features, logits = model.features_and_logits(images)
        top = tf.reduce_sum(logits[:, 0])
    channels = model.backbone.output_shape[-1]
    assert features.shape == (BATCH, 2, 2, channels) and logits.shape == (BATCH, 28) and logits.dtype == "float32"
    np.testing.assert_allclose(keras.ops.sigmoid(logits).numpy(), model(images).numpy(), atol=1e-6)
    np.testing.assert_allclose(features.numpy(), model.backbone(model.normalizer(images)).numpy(), atol=1e-6)
    gradients = tape.gradient(top, features)  # what Grad-CAM differentiates
    assert gradients.shape == features.shape and np.any(gradients.numpy() != 0)


def differentiated_gradcam(model, images):
    """Grad-CAM as Selvaraju et al. (2017) compute it: each class's logit differentiated by the feature map."""
    with tf.GradientTape() as tape:
        features, logits = model.features_and_logits(images)
    gradients = tape.batch_jacobian(logits, features)  # [B, classes, h, w, C]
    weights = tf.reduce_mean(gradients, axis=[2, 3])
    return tf.nn.relu(tf.einsum("bhwc,bkc->bhwk", features, weights)).numpy()


@pytest.mark.parametrize("backbone", ["seresnet18", "functional"])
def test_class_maps_are_grad_cam_computed_in_closed_form(backbone):
    if backbone == "functional":
        model = models.MultiLabelClassifier(
            small_functional_backbone(stride=2), num_classes=5, image_size=IMAGE_SIZE, dropout=0.5
        )
    else:
        model = tiny(backbone, image_size=64, dropout=0.3, output_bias=np.linspace(-2, 2, 28))
    images = tf.constant(raw_images(model.image_size))
    maps, logits = model.class_maps_and_logits(images)
    expected = differentiated_gradcam(model, images)
    assert maps.shape == expected.shape and maps.dtype == "float32" and expected.max() > 0
    np.testing.assert_allclose(maps.numpy(), expected, rtol=1e-4, atol=1e-6 * expected.max())
    np.testing.assert_allclose(logits.numpy(), model.features_and_logits(images)[1].numpy(), atol=1e-6)


@pytest.mark.parametrize("arch", list(models.ARCHITECTURES))
def test_parameter_counts_match_the_models_page(arch):
    count = models.build_classifier(arch, image_size=64, num_classes=28).count_params()
    assert round(count / 1e6, 2) == docs_millions()[arch]
    assert count == PARAMETER_COUNTS[arch]


def test_every_arch_is_a_registered_backbone_preset_of_one_base_class():
    """keras-hub's layout: one Backbone base, each family registering its presets."""
    assert set(models.BACKBONE_PRESETS) == set(models.ARCHITECTURES)
    for arch, (family, _) in models.BACKBONE_PRESETS.items():
        assert issubclass(family, models.Backbone) and models.backbone_class(arch) is family
        assert family is (models.SEResNetBackbone if arch in models.PRESETS else models.ApplicationBackbone)
    assert models.SEResNetBackbone.takes_width and not models.SEResNetBackbone.takes_pretrained_weights
    assert models.ApplicationBackbone.takes_pretrained_weights and not models.ApplicationBackbone.takes_width
    backbone = models.Backbone.from_preset("densenet121", image_size=32)
    assert isinstance(backbone, models.ApplicationBackbone) and backbone.name == "densenet121_backbone"
    rebuilt = models.ApplicationBackbone.from_config(backbone.get_config())
    assert rebuilt.get_config() == backbone.get_config()
    with pytest.raises(ValueError) as error:
        models.register_presets({"seresnet18": {}}, models.SEResNetBackbone)
    assert str(error.value) == "preset 'seresnet18' is registered twice"


def test_unknown_preset_is_named_in_the_error_by_its_argument():
    expected = "unknown `arch` 'resnet9'; choose one of seresnet18, seresnet34, seresnet50, seresnext50"
    for build in (models.build_seresnet, models.SEResNetBackbone.from_preset):
        with pytest.raises(ValueError) as error:
            build("resnet9")
        assert str(error.value) == expected
    with pytest.raises(ValueError) as error:
        models.build_classifier("resnet9")
    assert str(error.value) == (expected + ", densenet121, resnet50, efficientnetv2b0, convnext_tiny")


def test_seresnext_splits_its_bottleneck_into_32_groups_and_trains():
    model = tiny("seresnext50", width=0.25)
    block = model.backbone.get_layer("stage1_block1")
    inner = block.branch_convs[1]
    assert (inner.filters, inner.groups) == (32, 32)  # 2 x 16 filters inside, 32 groups of 1 at width 0.25
    assert block.output_filters == 64
    # One block trains (the whole model's first train step costs 30 s of set-up on 2 CPU cores).
    block = layers.ResidualBlock(16, block_type="bottleneck", cardinality=32)
    net = keras.Sequential(
        [keras.Input((8, 8, 32)), block, keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(1)]
    )
    block.branch_norms[-1].gamma.assign(np.ones(64))  # zero at first: no gradient would reach the branch
    net.compile(keras.optimizers.Adam(1e-2), "mse")  # no weight decay: only a gradient moves the kernel
    before = block.branch_convs[1].kernel.numpy().copy()
    net.train_on_batch(np.random.default_rng(0).normal(size=(2, 8, 8, 32)).astype("float32"), np.ones((2, 1)))
    assert not np.array_equal(before, block.branch_convs[1].kernel.numpy())


# --- The classifier's head and normalization, and other backbones ---------------------------------


def test_normalization_inside_the_model_uses_channel_statistics():
    model = tiny("seresnet18", channel_mean=(10, 20, 30, 40), channel_std=(2, 4, 6, 8))
    pixels = np.broadcast_to(np.array([12, 24, 36, 48], "float32"), (1, IMAGE_SIZE, IMAGE_SIZE, 4))
    np.testing.assert_allclose(model.normalizer(pixels).numpy()[0, 0, 0], [1, 1, 1, 1], rtol=1e-5)


def test_output_bias_sets_the_initial_logits():
    bias = np.linspace(-4, 2, 28)
    model = tiny("seresnet18", output_bias=bias)
    np.testing.assert_allclose(model.head.bias.numpy(), bias, rtol=1e-6)
    with pytest.raises(ValueError, match="output_bias must have num_classes=5 values, not 28"):
        tiny("seresnet18", num_classes=5, output_bias=bias)


def small_functional_backbone(stride=8):
    """A backbone that is a plain functional keras.Model (as keras.applications' are)."""
    inputs = keras.Input((None, None, 4))
    x = keras.layers.Conv2D(8, 3, strides=4, padding="same", activation="relu")(inputs)
    x = keras.layers.Conv2D(16, 3, strides=stride, padding="same", activation="relu")(x)
    return keras.Model(inputs, x, name="small")


def test_classifier_on_another_backbone_saves_loads_and_has_a_float32_twin(mixed_bfloat16, tmp_path):
    model = models.MultiLabelClassifier(small_functional_backbone(), num_classes=5, image_size=IMAGE_SIZE)
    assert model.input_shape == (None, IMAGE_SIZE, IMAGE_SIZE, 4) and model.output_shape == (None, 5)
    features, logits = model.features_and_logits(raw_images())
    assert features.shape == (BATCH, 1, 1, 16)
    np.testing.assert_allclose(keras.ops.sigmoid(logits).numpy(), model(raw_images()).numpy(), atol=1e-6)
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras", safe_mode=True)
    np.testing.assert_array_equal(predictions(loaded), predictions(model))
    twin = models.float32_twin(model)
    assert isinstance(twin, models.MultiLabelClassifier)
    assert {layer.dtype_policy.name for layer in all_layers(twin)} == {"float32"}
    np.testing.assert_allclose(predictions(twin), predictions(model), atol=2e-2)
