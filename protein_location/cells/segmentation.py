"""Classical cell segmentation of an RGBY field, with no downloaded weights,
as HPA's own 2018 pipeline did it: nuclei by a threshold and a watershed on
the blue stain, cells by a watershed on the microtubule and ER stains seeded
by the nuclei, then size filters.

Nothing is a fixed pixel count. Smoothing follows the image side, and every
length after the nuclei are found follows the typical nucleus measured in
that image (the area-weighted median nucleus), so the same parameters serve a 128 px
synthetic crop with two cells and a 2048 px HPA field with eighty.
`SegmentationParams` documents each one.
"""

import dataclasses

import numpy as np

from protein_location.core.errors import CellsError

try:
    from scipy import ndimage
    from skimage import filters, measure, segmentation
except ImportError:  # pragma: no cover
    ndimage = None


@dataclasses.dataclass(frozen=True)
class SegmentationParams:
    """The segmenter's settings; lengths are relative, so none needs changing with the image size.

    Attributes:
        smoothing: Gaussian sigma of the blue stain in the first, rough pass
            that measures the nuclei, as a share of the image side (2048 px
            -> 2 px; never below 1 px).
        nucleus_smoothing: sigma of the blue stain in the second pass, in
            typical nucleus radii (the area-weighted median nucleus).
        nucleus_threshold_scale: the nucleus threshold is this times Otsu's
            threshold of the smoothed blue stain.
        split_distance: touching nuclei are split at watershed seeds at
            least this many typical nucleus radii apart.
        min_nucleus_area: nuclei smaller than this share of the typical
            nucleus area are debris and dropped (with their cells).
        cell_threshold_scale: a pixel belongs to some cell where the smoothed
            microtubule + ER signal is above this times its Otsu threshold
            (low: the cytoplasm's rim is dim).
        cell_smoothing: sigma of the cytoplasm signal for the cell watershed,
            in typical nucleus radii.
        max_cell_radius: a cell reaches at most this many typical nucleus
            radii from its nucleus (a bound where the cytoplasm stains are flat).
        min_cell_area: cells smaller than this share of the typical cell
            area are dropped.
    """

    smoothing: float = 1 / 1024
    nucleus_smoothing: float = 0.1
    nucleus_threshold_scale: float = 1.0
    split_distance: float = 1.0
    min_nucleus_area: float = 0.15
    cell_threshold_scale: float = 0.7
    cell_smoothing: float = 0.25
    max_cell_radius: float = 6.0
    min_cell_area: float = 0.1


def _require():
    if ndimage is None:
        from protein_location.cells.masks import MISSING

        raise CellsError(MISSING)


def _check(image):
    _require()
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[-1] != 4:
        raise CellsError(f"segmentation takes an RGBY image [H, W, 4], not shape {list(image.shape)}")
    return image.astype(np.float32)


def _smooth(channel, sigma):
    return ndimage.gaussian_filter(channel, max(1.0, sigma))


def segment_nuclei(blue, params=SegmentationParams()):
    """Label image [H, W] int32 of the nuclei in the blue stain (0: background).

    Two passes: a light smoothing finds the nuclei roughly and gives their
    typical radius; the stain is smoothed again at a share of that radius
    (textured nuclei stay whole), thresholded, and touching nuclei are split
    by a watershed from the maxima of the distance to the background.
    """
    _require()
    blue = np.asarray(blue, np.float32)
    if blue.max() <= blue.min():
        return np.zeros(blue.shape, np.int32)
    rough = _foreground(_smooth(blue, params.smoothing * max(blue.shape)), params.nucleus_threshold_scale)
    if not rough.any():
        return np.zeros(blue.shape, np.int32)
    radius = _typical_radius(measure.label(rough))
    mask = _foreground(_smooth(blue, params.nucleus_smoothing * radius), params.nucleus_threshold_scale)
    labels = measure.label(mask)
    radius = _typical_radius(labels)
    distance = _smooth(ndimage.distance_transform_edt(mask), radius / 4)
    window = 2 * max(1, int(round(params.split_distance * radius))) + 1
    peaks = (distance == ndimage.maximum_filter(distance, size=window)) & (distance > 0.25 * radius)
    # One seed per peak plateau; a nucleus with no peak (small, flat) keeps itself as its seed.
    markers = measure.label(peaks)
    unseeded = np.isin(labels, np.unique(labels[peaks]), invert=True) & mask
    markers[unseeded] = markers.max() + labels[unseeded]
    nuclei = segmentation.watershed(-distance, markers, mask=mask)
    return relabel(nuclei, params.min_nucleus_area)


def _foreground(channel, scale):
    """Pixels above `scale` times Otsu's threshold of `channel`, holes filled (nucleoli are dark in DNA stains)."""
    return ndimage.binary_fill_holes(channel > scale * filters.threshold_otsu(channel))


def _typical_area(labels):
    """The area-weighted median region area: half the labelled pixels lie in
    regions at least this big, so a crowd of small fragments does not pull it down."""
    areas = np.bincount(np.asarray(labels).ravel())[1:]
    areas = np.sort(areas[areas > 0])
    if areas.size == 0:
        return 0.0
    return float(areas[np.searchsorted(np.cumsum(areas), areas.sum() / 2)])


def _typical_radius(labels):
    return max(1.0, float(np.sqrt(_typical_area(labels) / np.pi)))


def segment_cells(image, nuclei=None, params=SegmentationParams()):
    """(cells, nuclei): label images [H, W] int32 of one RGBY image, the same
    value for a cell and its nucleus (0: background).

    `nuclei` from another segmenter may be given; else `segment_nuclei`.
    """
    image = _check(image)
    nuclei = segment_nuclei(image[..., 2], params) if nuclei is None else np.asarray(nuclei, np.int32)
    if nuclei.max() == 0:
        return np.zeros(nuclei.shape, np.int32), nuclei
    radius = _typical_radius(nuclei)
    # Microtubules and ER, each scaled to its own range (their gains differ).
    cytoplasm = sum(
        channel / max(float(np.percentile(channel, 99.5)), 1e-6) for channel in (image[..., 0], image[..., 3])
    )
    cytoplasm = _smooth(cytoplasm, params.cell_smoothing * radius)
    foreground = cytoplasm > params.cell_threshold_scale * filters.threshold_otsu(cytoplasm)
    foreground |= nuclei > 0
    # No cell reaches past a bound around its nucleus where the stains give no edge.
    distance = ndimage.distance_transform_edt(nuclei == 0)
    # The flood rises with the distance from the nuclei (in typical radii) and falls with the cytoplasm signal
    # (in its typical level): a cell's own nucleus claims the bright cytoplasm around it across the dark rim
    # that DNA-free stains leave at the nuclear border, and two cells part at the dim valley between them.
    around_nuclei = cytoplasm[foreground & (nuclei == 0)]
    level = max(float(np.median(around_nuclei)) if around_nuclei.size else 1.0, 1e-6)
    landscape = np.minimum(distance, params.max_cell_radius * radius) / radius - cytoplasm / level
    cells = segmentation.watershed(landscape, nuclei, mask=foreground & (distance <= params.max_cell_radius * radius))
    cells = relabel(cells, params.min_cell_area)
    # A nucleus keeps its cell's value; one whose cell was dropped goes too.
    nuclei = np.where(cells == 0, 0, cells) * (nuclei > 0)
    return cells, nuclei.astype(np.int32)


def relabel(labels, min_share=0.0):
    """Drops regions under min_share of the typical area; numbers the rest 1..n in the order of their values."""
    labels = np.asarray(labels)
    areas = np.bincount(labels.ravel())
    present = np.flatnonzero(areas[1:]) + 1
    if present.size == 0:
        return np.zeros(labels.shape, np.int32)
    keep = present[areas[present] >= min_share * _typical_area(labels)]
    lookup = np.zeros(areas.size, np.int32)
    lookup[keep] = np.arange(1, keep.size + 1)
    return lookup[labels]
