"""Pictures of a segmented field: the stains' composite, each cell's outline,
and each cell's top labels written at its centre (`cells --overlays`)."""

import numpy as np

from protein_location.core import output_files

try:
    from skimage import measure, segmentation
except ImportError:  # pragma: no cover
    segmentation = None

# Microtubules red, protein green, nucleus blue; the ER (yellow) adds to red and green.
OUTLINE_RGB = (1.0, 1.0, 1.0)


def composite(image):
    """uint8 RGBY [H, W, 4] -> float RGB [H, W, 3] in 0..1 (HPA's colours)."""
    image = np.asarray(image, np.float32) / 255.0
    red, green, blue, yellow = (image[..., c] for c in range(4))
    return np.clip(np.stack([red + 0.5 * yellow, green + 0.5 * yellow, blue], axis=-1), 0, 1)


def draw(image, cells, texts=None, title=None, max_side=1024):
    """A matplotlib Figure: the composite with the cells' outlines and, per
    cell value, the lines of `texts` at its centre."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    picture = composite(image)
    picture[segmentation.find_boundaries(cells, mode="inner")] = OUTLINE_RGB
    side = max(cells.shape)
    figure = Figure(figsize=(8, 8 * cells.shape[0] / cells.shape[1]), dpi=min(max_side, side) / 8)
    axes = figure.add_axes([0, 0, 1, 1])
    axes.imshow(picture, interpolation="nearest")
    axes.set_axis_off()
    for region in measure.regionprops(cells):
        y, x = region.centroid
        lines = [str(region.label)] + list((texts or {}).get(region.label, []))
        axes.text(
            x,
            y,
            "\n".join(lines),
            color="white",
            fontsize=7,
            ha="center",
            va="center",
            bbox={"facecolor": "black", "alpha": 0.45, "pad": 1, "linewidth": 0},
        )
    if title:
        axes.text(0.01, 0.99, title, color="white", fontsize=8, ha="left", va="top", transform=axes.transAxes)
    return figure


def write(path, image, cells, texts=None, title=None):
    """Writes `draw`'s picture as a PNG at `path` (atomically)."""
    figure = draw(image, cells, texts, title)
    with output_files.atomic_path(path) as temporary:
        figure.savefig(temporary, format="png")
