import numpy as np
import tensorflow as tf

from protein_location import export, model as model_lib, predict


def test_exports_are_numbered_versions_and_the_newest_is_served(tmp_path):
    base = tmp_path / "export"
    model = model_lib.build_seresnet("seresnet18", image_size=16, width=0.125)
    first = export.export_saved_model(model, np.full(28, 0.5), str(base))
    second = export.export_saved_model(model, np.full(28, 0.9), str(base))
    assert (first, second) == (str(base / "1"), str(base / "2"))
    assert sorted(p.name for p in base.iterdir()) == ["1", "2"]
    _, image_size, thresholds = predict.load_serving_model(str(base))
    assert image_size == 16
    np.testing.assert_allclose(thresholds, 0.9)
    _, _, thresholds = predict.load_serving_model(str(base / "1"))  # a version folder works too
    np.testing.assert_allclose(thresholds, 0.5)
    outputs = tf.saved_model.load(second).signatures["serving_default"](image=tf.zeros([1, 20, 20, 4], tf.uint8))
    assert outputs["labels"].shape == (1, 28)
