"""Grad-CAM explanations: where in the image the model saw each location.

`python -m protein_location explain` runs the SavedModel's `gradcam`
signature (export/saved_model.py) on raw HPA images and writes, per Id, a PNG: the RGB
composite of the four stains, then one panel per predicted location with its
Grad-CAM heat map over the composite, titled with the location and its
probability; and `explain.json` listing what each PNG shows.

Grad-CAM (Selvaraju et al., 2017) weighs each channel of the last residual
stage's feature map by the mean gradient of a location's logit, sums them
and keeps the positive part: its resolution is the model's input side / 32
(2x2 at 64 px, 16x16 at 512 px), upsampled bilinearly.
"""

import io
import posixpath

import matplotlib
import numpy as np
import tensorflow as tf
from tqdm import tqdm

from protein_location.core import json_files, output_files, raw_images, stop_signals
from protein_location.export import signatures, versions
from protein_location.inference import serving

matplotlib.use("Agg")  # files only; no display needed
import matplotlib.pyplot as plt  # noqa: E402

YELLOW_WEIGHT = 0.5  # the ER stain's share added to red and to green


def rgb_composite(image):
    """uint8 RGBY [H, W, 4] -> float RGB [H, W, 3] on 0-1, the HPA convention:
    red microtubules, green protein, blue nucleus, yellow ER added to red and green."""
    red, green, blue, yellow = (image[..., c].astype(np.float32) for c in range(4))
    rgb = np.stack([red + YELLOW_WEIGHT * yellow, green + YELLOW_WEIGHT * yellow, blue], axis=-1)
    return np.clip(rgb / 255.0, 0.0, 1.0)


def chosen_locations(probabilities, labels, max_locations):
    """Indices to explain: the predicted locations, most probable first, at
    most `max_locations`; the most probable one when none is predicted."""
    order = np.argsort(-probabilities, kind="stable")
    predicted = [int(c) for c in order if labels[c]]
    return predicted[:max_locations] if predicted else [int(order[0])]


def plot_explanation(image, heatmaps, probabilities, labels, image_id, class_names, max_locations=4):
    """The figure of one image: composite, then a heat map per chosen location.

    heatmaps: [S, S, C] Grad-CAM maps at the model's input side; each is
    scaled to its own maximum and upsampled to the image's size.
    """
    composite = rgb_composite(image)
    height, width = image.shape[:2]
    chosen = chosen_locations(probabilities, labels, max_locations)
    figure, axes = plt.subplots(
        1, 1 + len(chosen), figsize=(3.2 * (1 + len(chosen)), 3.9), squeeze=False, layout="constrained"
    )
    axes = axes[0]
    figure.suptitle(image_id, fontsize=9)
    axes[0].imshow(composite, interpolation="nearest")
    axes[0].set_title("red microtubules, green protein,\nblue nucleus, yellow ER", fontsize=8)
    gray = composite.mean(axis=-1)
    for axis, c in zip(axes[1:], chosen):
        heat = tf.image.resize(np.asarray(heatmaps[..., c : c + 1], np.float32), [height, width], method="bilinear")
        heat = heat.numpy()[..., 0]
        peak = float(heat.max())
        axis.imshow(gray, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        axis.imshow(heat / peak if peak > 0 else heat, cmap="jet", vmin=0, vmax=1, alpha=0.45, interpolation="nearest")
        note = "" if labels[c] else " (below threshold)"
        if peak <= 0:
            note += "\nno positive evidence"
        axis.set_title(f"{class_names[c]}\np = {probabilities[c]:.2f}{note}", fontsize=9)
    for axis in axes:
        axis.set_xticks([])
        axis.set_yticks([])
    return figure, chosen


def save_figure(figure, path):
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    plt.close(figure)
    output_files.write_atomic(path, buffer.getvalue())


def explain_images(model_path, images_dir, ids, out_dir, max_locations=4):
    """Writes `out_dir/<Id>.png` for each Id and `out_dir/explain.json`; returns the JSON record."""
    loaded, gradcam = serving.load_saved_model(model_path, signatures.GRADCAM_SIGNATURE)
    class_names = serving.class_names_of(loaded)
    raw_images.check_images_dir(images_dir)
    images = {image_id: raw_images.read_image(images_dir, image_id) for image_id in ids}  # bad input fails first
    tf.io.gfile.makedirs(out_dir)
    entries = []
    for image_id in tqdm(ids, unit="img", desc="explain", disable=None):
        stop_signals.raise_if_requested()
        image = images[image_id]
        outputs = gradcam(image=tf.constant(image[np.newaxis]))  # any size: the signature resizes
        probabilities = outputs["probabilities"].numpy()[0]
        labels = outputs["labels"].numpy()[0]
        figure, chosen = plot_explanation(
            image, outputs["heatmaps"].numpy()[0], probabilities, labels, image_id, class_names, max_locations
        )
        png = posixpath.join(out_dir, f"{image_id}.png")
        save_figure(figure, png)
        entries.append(
            {
                "id": image_id,
                "png": png,
                "predicted": [class_names[c] for c in np.flatnonzero(labels)],
                "shown": [
                    {
                        "index": c,
                        "location": class_names[c],
                        "probability": round(float(probabilities[c]), 4),
                        "predicted": bool(labels[c]),
                    }
                    for c in chosen
                ],
            }
        )
    record = {"model": versions.resolve_saved_model(model_path), "images": entries}
    json_files.write_json_atomic(posixpath.join(out_dir, "explain.json"), record)
    return record
