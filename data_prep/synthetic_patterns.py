"""The green channel's 28 location patterns of the synthetic generator, one
per class in CLASS_NAMES order, each drawn relative to a cell's geometry
(`synthetic_scene.Cell`): f(scene, cell, empty layer) -> layer in [0, 1]."""

import numpy as np

from data_prep.synthetic_scene import unit
from protein_location.core.labels import NUM_CLASSES


def _spots(count, radius, where, ring=None, dim=0.6):
    """Pattern of `count` (lo, hi) spots, `radius` in cell radii, placed by
    `where(scene, cell, n)`; `ring` is a line width (cell radii) for hollow spots."""

    def pattern(s, c, layer):
        pts = where(s, c, int(s.rng.integers(*count)))
        width = None if ring is None else c.size(ring)
        s.dots(layer, pts, c.size(radius * s.rng.uniform(0.85, 1.2)), dim, width=width)
        return layer

    return pattern


def _in_cytoplasm(lo=0.08, hi=0.92, perinuclear=False):
    return lambda s, c, n: c.sample(s.rng, n, lo, hi, perinuclear)


def _in_nucleus(s, c, n):  # spread around the centre so the spots stay distinct
    theta = np.linspace(0, 2 * np.pi, n, endpoint=False) + s.rng.uniform(0, 2 * np.pi)
    return c.npoint(theta, s.rng.uniform(0.2, 0.75, n))


def _rim(distance):
    """Pattern: a thin bright outline where the cell's `distance` map crosses 0."""
    return lambda s, c, layer: np.exp(-((getattr(c, distance) / c.size(0.05, 0.6)) ** 2))


def _nucleoplasm(s, c, layer):
    layer = (c.rn <= 1) * (0.8 + 0.15 * s.fine)
    s.dots(layer, c.nucleoli, c.nucleolus_r * 1.1, 0.05, 0.1)  # nucleoli left out
    return layer


def _nucleoli(s, c, layer):
    for p in c.nucleoli:  # two overlapping discs: irregular blobs
        s.circle(layer, p, c.nucleolus_r * s.rng.uniform(0.9, 1.2), s.rng.uniform(0.8, 1.0))
        s.circle(layer, p + s.rng.normal(0, 0.3 * c.nucleolus_r, 2), 0.8 * c.nucleolus_r, 0.9)
    return layer


def _fibrillar_center(s, c, layer):
    for p in c.nucleoli:  # tight dots on a small ring where each nucleolus sits
        n = int(s.rng.integers(4, 8))
        theta = s.rng.uniform(0, 2 * np.pi) + np.linspace(0, 2 * np.pi, n, endpoint=False)
        ring = c.nucleolus_r * s.rng.uniform(0.8, 1.1, n)[:, None]
        s.dots(layer, p + ring * unit(theta), c.size(0.05, 0.6), 0.8)
    return layer


def _speckles(s, c, layer):
    layer += (c.rn <= 1) * np.float32(0.15)  # speckle proteins also fill the nucleoplasm dimly
    n = int(s.rng.integers(12, 25))
    for p in c.npoint(s.rng.uniform(0, 2 * np.pi, n), 0.85 * np.sqrt(s.rng.random(n))):
        axes = s.rng.uniform(0.5, 1.0, 2) * c.size(0.05)
        s.ellipse(layer, p, axes, s.rng.uniform(0, np.pi), s.rng.uniform(0.6, 1.0))
    return layer


def _er(s, c, layer):
    return c.er * (1.1 + 0.1 * s.fine)


def _golgi(s, c, layer):
    side, half_width = s.rng.uniform(-np.pi, np.pi), s.rng.uniform(0.6, 1.1)
    off = np.angle(np.exp(1j * (c.theta - side)))  # angle from that side, wrapped
    crescent = np.exp(-((off / half_width) ** 4) - ((c.frac - 0.18) / 0.2) ** 2)
    return crescent * (c.frac >= -0.05) * np.clip(0.7 + 0.4 * s.fine, 0, 1) * 1.3


def _intermediate_filaments(s, c, layer):
    t = np.linspace(-1.2, 1.2, 40) * c.radius
    for _ in range(int(s.rng.integers(4, 8))):  # long sine-wavy curves across the cell
        phi, shift = s.rng.uniform(0, np.pi), s.rng.uniform(-0.6, 0.6) * c.radius
        amp, wave = s.rng.uniform(0.08, 0.18) * c.radius, s.rng.uniform(0.6, 1.2) * c.radius
        across = shift + amp * np.sin(2 * np.pi * t / wave + s.rng.uniform(0, 2 * np.pi))
        pts = c.center + np.outer(t, unit(phi)) + np.outer(across, unit(phi + np.pi / 2))
        s.polyline(layer, pts, s.rng.uniform(0.6, 1.0), c.size(0.05))
    return layer * (c.frac <= 1) * np.where(c.rn <= 1, 0.6, 1.0)


def _actin(s, c, layer):
    phi, n = s.rng.uniform(0, np.pi), int(s.rng.integers(5, 10))
    shifts = (np.linspace(-0.8, 0.8, n) + s.rng.uniform(-0.05, 0.05, n)) * c.radius
    along, across = 1.3 * c.radius * unit(phi), unit(phi + np.pi / 2)
    for shift in shifts:  # straight, parallel stress fibres
        mid = c.center + shift * across
        s.line(layer, mid - along, mid + along, s.rng.uniform(0.5, 1.0), c.size(0.05))
    return layer * (c.frac <= 1)


def _focal_adhesions(s, c, layer):
    theta = s.rng.uniform(0, 2 * np.pi, int(s.rng.integers(8, 16)))
    outer = c.point(theta, 0.97)
    inner = c.point(theta, 0.97 - s.rng.uniform(0.12, 0.22, len(theta)))
    for p0, p1 in zip(inner, outer):  # short radial dashes at the cell edge
        s.line(layer, p0, p1, s.rng.uniform(0.7, 1.0), c.size(0.06))
    return layer


def _microtubules(s, c, layer):
    for fibre in c.fibres:  # the very fibres of the red stain
        s.polyline(layer, fibre, s.rng.uniform(0.6, 1.0), c.size(0.05))
    return layer


def _microtubule_ends(s, c, layer):
    for fibre in c.fibres:
        if s.rng.random() < 0.8:  # a comet: bright tip and a short tail
            s.circle(layer, fibre[-1], c.size(0.07, 0.6), s.rng.uniform(0.8, 1.0))
            s.line(layer, fibre[-2], fibre[-1], 0.4, c.size(0.04))
    return layer


def _cytokinetic_bridge(s, c, layer):
    theta = s.rng.uniform(0, 2 * np.pi, 8)  # of 8 directions, the bar that stays in view
    ends = c.point(theta, 1.0) + 0.5 * c.radius * unit(theta)
    best = np.argmin(np.abs(ends - s.size / 2).max(axis=1))
    p0, p1 = c.point(theta[best], 0.6), ends[best]
    s.line(layer, p0, p1, 0.8, c.size(0.1, 0.8))
    s.circle(layer, (p0 + p1) / 2, c.size(0.09), 1.0)  # the midbody
    return layer


def _mitotic_spindle(s, c, layer):
    phi = s.rng.uniform(0, np.pi)
    axis, across = 0.9 * c.nradius * unit(phi), 0.6 * c.nradius * unit(phi + np.pi / 2)
    poles = (c.ncenter - axis, c.ncenter + axis)
    diamond = [poles[0], c.ncenter - across, poles[1], c.ncenter + across]
    s.polygon(layer, diamond, 0.4)
    for pole in poles:  # fibres fanning from each pole to the metaphase plate
        for t in np.linspace(-1, 1, 6):
            s.line(layer, pole, c.ncenter + t * across, 0.9, c.size(0.04))
        s.circle(layer, pole, c.size(0.06), 1.0)
    return layer


def _mtoc(s, c, layer):
    p = c.point(s.rng.uniform(0, 2 * np.pi), s.rng.uniform(0.0, 0.15))
    s.circle(layer, p, c.size(0.2), 0.2)  # faint aster around it
    s.circle(layer, p, c.size(0.09, 0.8), 1.0)
    return layer


def _centrosome(s, c, layer):
    theta = s.rng.uniform(0, 2 * np.pi)
    p = c.point(theta, s.rng.uniform(0.05, 0.2))
    pair = (p, p + c.size(0.2, 1.6) * unit(theta + s.rng.uniform(-2, 2)))
    s.dots(layer, pair, c.size(0.065), 0.85)
    return layer


def _cell_junctions(s, c, layer):
    rim = np.exp(-((c.dc / c.size(0.07, 0.7)) ** 2))
    touching = np.zeros(rim.shape, bool)
    for other in s.cells:
        if other is not c:
            touching |= other.dc < 0.1 * other.radius
    if np.count_nonzero(touching & (rim > 0.5)) < 4 * s.k**2:  # no contact in view:
        ys, xs = np.nonzero(rim > 0.5)  # light a stretch of rim around a visible point
        side = c.theta[ys, xs][s.rng.integers(len(ys))]
        touching = np.abs(np.angle(np.exp(1j * (c.theta - side)))) < s.rng.uniform(0.4, 0.8)
    return rim * touching


def _mitochondria(s, c, layer):
    n, perinuclear = int(s.rng.integers(15, 30)), s.rng.random() < 0.5
    for p in c.sample(s.rng, n, 0.05, 0.9, perinuclear):  # short, slightly bent threads
        half = unit(s.rng.uniform(0, 2 * np.pi)) * c.size(s.rng.uniform(0.06, 0.14))
        bend = unit(s.rng.uniform(0, 2 * np.pi)) * 0.3 * np.linalg.norm(half)
        s.polyline(layer, [p - half, p + bend, p + half], s.rng.uniform(0.5, 1.0), c.size(0.045))
    return layer


def _aggresome(s, c, layer):
    p = c.point(s.rng.uniform(0, 2 * np.pi), s.rng.uniform(0.1, 0.3))
    axes = (c.size(s.rng.uniform(0.2, 0.28)), c.size(s.rng.uniform(0.15, 0.22)))
    s.ellipse(layer, p, axes, s.rng.uniform(0, np.pi), 1.0)
    return layer * (0.85 + 0.15 * s.fine)


def _cytosol(s, c, layer):
    return c.cyto * (0.75 + 0.1 * s.fine) * np.clip((1 - c.frac) * 6, 0.4, 1)


def _rods_rings(s, c, layer):
    n_rods, n_rings = int(s.rng.integers(1, 4)), int(s.rng.integers(1, 3))
    pts = c.sample(s.rng, n_rods + n_rings, 0.15, 0.85)
    for p in pts[:n_rods]:
        half = 0.5 * c.size(s.rng.uniform(0.25, 0.4)) * unit(s.rng.uniform(0, np.pi))
        s.line(layer, p - half, p + half, 1.0, c.size(0.07))
    for p in pts[n_rods:]:
        s.circle(layer, p, c.size(0.09), 1.0, c.size(0.045))
    return layer


# Spots differ in number, size, hollowness and where in the cell they sit.
_nuclear_bodies = _spots((2, 7), 0.075, _in_nucleus, dim=0.8)
_peroxisomes = _spots((30, 50), 0.045, _in_cytoplasm(), dim=0.7)
_endosomes = _spots((10, 18), 0.07, _in_cytoplasm(perinuclear=True), dim=0.5)
_lysosomes = _spots((5, 10), 0.1, _in_cytoplasm(0.1, 0.8, True), ring=0.05, dim=0.7)
_lipid_droplets = _spots((2, 6), 0.145, _in_cytoplasm(0.2, 0.8), ring=0.05, dim=0.8)
_cytoplasmic_bodies = _spots((1, 5), 0.11, _in_cytoplasm(0.2, 0.8), dim=0.85)
_nuclear_membrane, _plasma_membrane = _rim("dn"), _rim("dc")

PATTERNS = (  # CLASS_NAMES order
    _nucleoplasm, _nuclear_membrane, _nucleoli, _fibrillar_center, _speckles,
    _nuclear_bodies, _er, _golgi, _peroxisomes, _endosomes, _lysosomes,
    _intermediate_filaments, _actin, _focal_adhesions, _microtubules,
    _microtubule_ends, _cytokinetic_bridge, _mitotic_spindle, _mtoc, _centrosome,
    _lipid_droplets, _plasma_membrane, _cell_junctions, _mitochondria,
    _aggresome, _cytosol, _cytoplasmic_bodies, _rods_rings,
)  # fmt: skip
assert len(PATTERNS) == NUM_CLASSES
ONE_CELL = (16, 17)  # a cytokinetic bridge or a spindle: one dividing cell per image
