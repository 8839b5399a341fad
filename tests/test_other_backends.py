"""The models on JAX, with TensorFlow absent: what a JAX user (or the GPU
machine, which has no TensorFlow) gets from `protein_location.models`.

One process under KERAS_BACKEND=jax, where `import tensorflow` fails
(tests/backend_probe.py): seresnet18 (basic blocks) and seresnext50
(grouped bottlenecks; seresnet34 and seresnet50 are the same layers at other
depths) and one keras.applications backbone (our four-stain stem and head
around Keras' own network: the other three differ only in Keras' part) build,
predict and round-trip through `.keras`, as every --arch did when run
through the same steps by hand (docs/models.md); seresnet18 and resnet50 also fit a
step on NumPy input; and a
`model.keras` trained here under TensorFlow predicts what it predicts here
(the fused BatchNorm there, Keras' own on JAX)."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from protein_location import models
from tests.helpers import ROOT

pytestmark = pytest.mark.slow  # a second process compiles every architecture under JAX

SIZE = 32
TRAINED = {"seresnet18": 0.125}
PROBED = ("seresnet18", "seresnext50", "resnet50")  # the first and the keras.applications one also fit


def _train_under_tensorflow(arch, width, images, folder):
    keras.utils.set_random_seed(0)
    model = models.build_classifier(
        arch,
        image_size=SIZE,
        num_classes=5,
        width=width,
        channel_mean=(20.0, 30.0, 40.0, 10.0),
        channel_std=(50.0, 60.0, 70.0, 40.0),
    )
    model.compile(keras.optimizers.AdamW(1e-2), "binary_crossentropy")
    labels = (np.random.default_rng(2).random((len(images), 5)) > 0.5).astype("float32")
    # Three steps: the BatchNorm moving statistics move away from 0 and 1, so inference uses them.
    model.fit(images, labels, batch_size=len(images), epochs=3, verbose=0)
    model.save(os.path.join(folder, f"{arch}.keras"))
    return model.predict(images, verbose=0)


@pytest.fixture(scope="module")
def probe(tmp_path_factory):
    work = tmp_path_factory.mktemp("jax")
    (work / "trained").mkdir()
    images = np.random.default_rng(0).integers(0, 256, (6, SIZE, SIZE, 4), dtype=np.uint8)
    np.save(work / "images.npy", images)
    under_tensorflow = {
        f"{arch}.keras": _train_under_tensorflow(arch, width, images, str(work / "trained"))
        for arch, width in TRAINED.items()
    }
    env = dict(os.environ, KERAS_BACKEND="jax", JAX_PLATFORMS="cpu", PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run(
        [sys.executable, str(ROOT / "tests/backend_probe.py"), str(work), *PROBED],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads((work / "probe.json").read_text()), under_tensorflow


def test_the_models_run_under_jax_without_importing_tensorflow(probe):
    report, _ = probe
    assert report["backend"] == "jax"
    assert report["tensorflow_imported"] is False
    assert list(report["archs"]) == list(PROBED)
    for arch, result in report["archs"].items():
        assert result["shape"] == [6, 5] and result["finite"], arch
        assert result["weights"][0] == result["weights"][1] > 0 and result["reloaded_difference"] == 0, arch
    assert [arch for arch, result in report["archs"].items() if result["fit"]] == ["seresnet18", "resnet50"]


def test_a_model_trained_under_tensorflow_predicts_the_same_under_jax(probe):
    report, under_tensorflow = probe
    assert sorted(report["trained"]) == sorted(under_tensorflow)
    for name, probabilities in under_tensorflow.items():
        np.testing.assert_allclose(np.asarray(report["trained"][name]), probabilities, atol=1e-4, err_msg=name)


def test_the_gpu_benchmark_runs_on_keras_and_jax_alone(tmp_path):
    out = tmp_path / "gpu.jsonl"
    script = (
        "import sys; from tests.backend_probe import NoTensorFlow; sys.meta_path.insert(0, NoTensorFlow()); "
        f"from bench import gpu; sys.exit(gpu.main(['--quick', '--out', {str(out)!r}]))"
    )
    env = dict(os.environ, KERAS_BACKEND="jax", JAX_PLATFORMS="cpu", PYTHONPATH=str(ROOT))
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (measured,) = [json.loads(line) for line in out.read_text().splitlines()]
    assert measured["backend"] == "jax" and measured["tensorflow_imported"] is False
    assert (measured["arch"], measured["size"], measured["batch"]) == ("seresnet18", 32, 4)
    assert measured["train_images_per_second"] > 0 and measured["infer_images_per_second"] > 0
    # Counted by XLA: a training step costs more than the forward pass alone.
    assert measured["train_flops_per_image"] > measured["infer_flops_per_image"] > 0
    assert np.isfinite(measured["last_loss"]) and measured["matmul_tflops"] > 0
    assert result.stdout.splitlines()[-3].startswith("| arch | side | batch | training img/s | share of 989")
