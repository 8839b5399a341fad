import keras
import numpy as np
import pytest

from protein_location import model as model_lib


def test_output_is_28_sigmoid_probabilities_for_4_channel_input():
    model = model_lib.build_seresnet("seresnet18", image_size=32, width=0.125)
    assert model.input_shape == (None, 32, 32, 4)
    assert model.input.name == "image"
    probabilities = model(np.random.default_rng(0).uniform(0, 255, (3, 32, 32, 4)).astype("float32"))
    assert probabilities.shape == (3, 28)
    assert np.all((probabilities.numpy() > 0) & (probabilities.numpy() < 1))
    assert model.get_layer("probabilities").activation is keras.activations.sigmoid


@pytest.mark.parametrize("preset, blocks", [("seresnet18", 8), ("seresnet34", 16), ("seresnet50", 16)])
def test_every_residual_block_has_a_squeeze_excitation_gate(preset, blocks):
    model = model_lib.build_seresnet(preset, image_size=32, width=0.125)
    gates = [layer for layer in model.layers if layer.name.endswith("_se_excite")]
    adds = [layer for layer in model.layers if layer.name.endswith("_add")]
    assert len(gates) == len(adds) == blocks
    assert all(isinstance(gate, keras.layers.Multiply) for gate in gates)


@pytest.mark.parametrize("preset, low, high", [
    # Published SE-ResNet sizes less the 1000-class ImageNet head.
    ("seresnet18", 11.0e6, 11.6e6),
    ("seresnet34", 21.2e6, 22.0e6),
    ("seresnet50", 25.5e6, 26.6e6),
])
def test_preset_parameter_counts(preset, low, high):
    assert low <= model_lib.build_seresnet(preset, image_size=64).count_params() <= high


def test_normalization_inside_the_model_uses_channel_statistics():
    model = model_lib.build_seresnet("seresnet18", image_size=16, width=0.125,
                                     channel_mean=(10, 20, 30, 40), channel_std=(2, 4, 6, 8))
    normalize = keras.Model(model.input, model.get_layer("normalize").output)
    pixels = np.broadcast_to(np.array([12, 24, 36, 48], "float32"), (1, 16, 16, 4))
    np.testing.assert_allclose(normalize(pixels).numpy()[0, 0, 0], [1, 1, 1, 1], rtol=1e-5)


def test_output_bias_sets_initial_probabilities():
    bias = np.linspace(-4, 2, 28)
    model = model_lib.build_seresnet("seresnet18", image_size=16, width=0.125, output_bias=bias)
    np.testing.assert_allclose(model.get_layer("probabilities").bias.numpy(), bias, rtol=1e-6)


def test_unknown_preset_is_named_in_the_error():
    with pytest.raises(ValueError) as error:
        model_lib.build_seresnet("resnet9")
    assert str(error.value) == "unknown --arch 'resnet9'; choose one of seresnet18, seresnet34, seresnet50"


def test_model_saves_and_loads_with_safe_mode(tmp_path):
    model = model_lib.build_seresnet("seresnet18", image_size=16, width=0.125)
    model.save(tmp_path / "model.keras")
    loaded = keras.models.load_model(tmp_path / "model.keras", safe_mode=True)
    x = np.random.default_rng(1).uniform(0, 255, (2, 16, 16, 4)).astype("float32")
    np.testing.assert_allclose(loaded(x).numpy(), model(x).numpy(), atol=1e-6)
