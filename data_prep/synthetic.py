"""Synthetic Human Protein Atlas images in the Kaggle competition layout.

No real HPA images live on this machine, so the demo trains on this stand-in:
cells drawn with the three reference stains (red microtubules, blue nucleus,
yellow ER) and a green protein channel that carries one pattern per label,
drawn relative to the cell geometry so that a small CNN can learn them.

Layout written by `generate_dataset` (Kaggle's, plus one file):

    train.csv                  Id,Target   ("16 0": space-separated indices)
    train/<Id>_<channel>.png   8-bit grayscale, channel in red/green/blue/yellow
    test/<Id>_<channel>.png
    sample_submission.csv      Id,Predicted ("0" on every row)
    test_labels.csv            Id,Target of the test images. Synthetic only:
                               Kaggle keeps these hidden; here they let the
                               demo score its submission honestly.
"""

import functools
import os
import pathlib
import uuid

import cv2
import numpy as np
import pandas as pd
from tqdm import tqdm

from data_prep import workers as workers_lib
from protein_location.labels import CHANNELS, HPA_TRAIN_COUNTS, NUM_CLASSES, format_target

_SPLIT_CODES = {"train": 0, "test": 1}
_SUPERSAMPLE = 2  # draw at 2x and average down: sub-pixel shapes at 64 px
_SUPERSAMPLE_UNTIL = 256  # from this size shapes span pixels enough; 4x faster
_SHIFT = 4  # cv2 fixed-point bits, so positions are not snapped to the grid
_DRAW = {"lineType": cv2.LINE_8, "shift": _SHIFT}

# The real HPA label shape mixed with a uniform floor (30% of the draws): rare
# classes stay the rarest but still reach ~1.8% of the images.
_COUNTS = np.asarray(HPA_TRAIN_COUNTS, float)
_LABEL_PROBS = 0.7 * _COUNTS / _COUNTS.sum() + 0.3 / NUM_CLASSES
_NUM_LABELS_PROBS = (0.55, 0.35, 0.10)  # 1, 2 or 3 labels per image


def sample_labels(rng):
    """Draw 1-3 distinct label indices for one image, sorted.

    Args:
        rng: numpy Generator.
    """
    k = rng.choice(len(_NUM_LABELS_PROBS), p=_NUM_LABELS_PROBS) + 1
    labels = rng.choice(NUM_CLASSES, size=k, replace=False, p=_LABEL_PROBS)
    return sorted(int(i) for i in labels)


def _unit(theta):
    return np.stack([np.cos(theta), np.sin(theta)], axis=-1)


class _Scene:
    """The supersampled canvas of one image; all coordinates are output pixels."""

    def __init__(self, rng, size):
        self.rng, self.size = rng, size
        self.k = _SUPERSAMPLE if size < _SUPERSAMPLE_UNTIL else 1
        coords = (np.arange(size * self.k, dtype=np.float32) + 0.5) / self.k - 0.5
        self.x, self.y = np.meshgrid(coords, coords)
        self.fine = self.noise(0.6)  # texture for nuclei and fills
        self.cells = []

    def layer(self):
        return np.zeros(self.x.shape, np.float32)

    def noise(self, sigma):
        """Smooth zero-mean, unit-std noise; sigma in output pixels."""
        field = self.rng.standard_normal(self.x.shape).astype(np.float32)
        field = cv2.GaussianBlur(field, (0, 0), sigma * self.k)
        return field / (field.std() + 1e-6)

    def _fix(self, pts):  # output px -> fixed-point canvas px
        canvas = (np.asarray(pts, float) + 0.5) * self.k - 0.5
        return np.round(canvas * (1 << _SHIFT)).astype(np.int32)

    def _pt(self, p):
        return tuple(int(v) for v in self._fix(p))

    def _width(self, width):  # at least one output pixel wide, or thin lines vanish
        return max(self.k, int(round(width * self.k)))

    def _radius(self, radius):
        return max(1 << _SHIFT, int(round(radius * self.k * (1 << _SHIFT))))

    def circle(self, layer, center, radius, value=1.0, width=None):
        thickness = -1 if width is None else self._width(width)
        cv2.circle(layer, self._pt(center), self._radius(radius), float(value), thickness, **_DRAW)

    def dots(self, layer, centers, radius, lo=0.6, hi=1.0, width=None):
        for center in centers:
            self.circle(layer, center, radius, self.rng.uniform(lo, hi), width)

    def line(self, layer, p0, p1, value, width):
        cv2.line(layer, self._pt(p0), self._pt(p1), float(value), self._width(width), **_DRAW)

    def polyline(self, layer, pts, value, width):
        pts = [self._fix(pts).reshape(-1, 1, 2)]
        cv2.polylines(layer, pts, False, float(value), self._width(width), **_DRAW)

    def ellipse(self, layer, center, axes, angle, value):
        axes = tuple(self._radius(a) for a in axes)
        angle = float(np.degrees(angle))
        cv2.ellipse(layer, self._pt(center), axes, angle, 0, 360, float(value), -1, **_DRAW)


def _ray_length(origin, dirs, center, axes, angle):
    """Distance from `origin` (inside the ellipse) to its rim along unit `dirs`."""
    c, s = np.cos(angle), np.sin(angle)
    ox, oy = origin[0] - center[0], origin[1] - center[1]
    px, py = c * ox + s * oy, -s * ox + c * oy
    ux, uy = c * dirs[..., 0] + s * dirs[..., 1], -s * dirs[..., 0] + c * dirs[..., 1]
    a, b = axes
    qa = (ux / a) ** 2 + (uy / b) ** 2
    qb = 2 * (px * ux / a**2 + py * uy / b**2)
    qc = (px / a) ** 2 + (py / b) ** 2 - 1  # < 0 inside, so exactly one positive root
    return (-qb + np.sqrt(qb * qb - 4 * qa * qc)) / (2 * qa)


class _Cell:
    """An ellipse cell with an ellipse nucleus, and per-pixel maps measured along
    rays from the nucleus centre, so a pattern can say "near the nucleus", "at
    the rim" or "on one side" without caring about the ellipse shapes."""

    def __init__(self, scene, center, axes, angle):
        rng = scene.rng
        self.center, self.axes, self.angle = np.asarray(center), axes, angle
        self.radius = float(np.sqrt(axes[0] * axes[1]))
        rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        self.ncenter = self.center + rot @ (rng.uniform(-0.15, 0.15, 2) * axes)  # off-centre
        self.naxes = (axes[0] * rng.uniform(0.40, 0.50), axes[1] * rng.uniform(0.45, 0.56))
        self.nangle = angle + rng.uniform(-0.25, 0.25)
        self.nradius = float(np.sqrt(self.naxes[0] * self.naxes[1]))
        d = np.stack([scene.x - self.ncenter[0], scene.y - self.ncenter[1]], axis=-1)
        dist = np.hypot(d[..., 0], d[..., 1])
        s_n, s_c = self._rim_lengths(d / np.maximum(dist, 1e-6)[..., None])
        self.rn = (dist / s_n).astype(np.float32)  # < 1 inside the nucleus
        self.frac = ((dist - s_n) / (s_c - s_n)).astype(np.float32)  # 0 nuclear .. 1 cell rim
        self.dn = (dist - s_n).astype(np.float32)  # signed px from the nuclear rim
        self.dc = (dist - s_c).astype(np.float32)  # signed px from the cell rim
        self.theta = np.arctan2(d[..., 1], d[..., 0]).astype(np.float32)
        self.nucleolus_r = 0.25 * self.nradius
        n = rng.integers(1, 4)
        self.nucleoli = self.npoint(rng.uniform(0, 2 * np.pi, n), rng.uniform(0, 0.5, n))
        self.fibres = self._fibres(rng)

    def _rim_lengths(self, dirs):
        s_n = _ray_length(self.ncenter, dirs, self.ncenter, self.naxes, self.nangle)
        return s_n, _ray_length(self.ncenter, dirs, self.center, self.axes, self.angle)

    def point(self, theta, frac):
        """Cytoplasm coordinates (angle, 0 = nuclear rim .. 1 = cell rim) -> xy."""
        dirs = _unit(np.asarray(theta, float))
        s_n, s_c = self._rim_lengths(dirs)
        return self.ncenter + dirs * (s_n + np.asarray(frac) * (s_c - s_n))[..., None]

    def npoint(self, theta, r):
        """Nucleus coordinates (angle, fraction of the nuclear radius) -> xy."""
        dirs = _unit(np.asarray(theta, float))
        return self.ncenter + dirs * (np.asarray(r) * self._rim_lengths(dirs)[0])[..., None]

    def sample(self, rng, n, lo=0.08, hi=0.92, perinuclear=False):
        """n points spread over the cytoplasm by area (or crowded near the nucleus)."""
        dirs = _unit(rng.uniform(0, 2 * np.pi, n))
        u = rng.beta(1.2, 3.0, n) if perinuclear else rng.random(n)
        s_n, s_c = self._rim_lengths(dirs)
        r_lo, r_hi = s_n + lo * (s_c - s_n), s_n + hi * (s_c - s_n)
        return self.ncenter + dirs * np.sqrt(r_lo**2 + u * (r_hi**2 - r_lo**2))[:, None]

    def _fibres(self, rng):
        """Microtubules: slightly curved polylines from the nucleus to near the rim."""
        n = int(rng.integers(10, 17))
        starts = np.linspace(0, 2 * np.pi, n, endpoint=False) + rng.uniform(0, 2 * np.pi)
        fibres = []
        for theta0 in starts + rng.uniform(-0.2, 0.2, n):
            frac = np.linspace(rng.uniform(-0.15, 0.0), rng.uniform(0.82, 0.97), 8)
            fibres.append(self.point(theta0 + rng.uniform(-0.6, 0.6) * frac, frac))
        return fibres

    def size(self, fraction, minimum=0.5):
        """A length that scales with the cell, but not below `minimum` output px."""
        return max(minimum, fraction * self.radius)


def _place_cells(scene):
    """1-3 cells at 64 px (1-4 from 96 px), spread out, allowed to overlap a little."""
    rng, size = scene.rng, scene.size
    n = int(rng.integers(1, (3 if size < 96 else 4) + 1))
    lo, hi = {1: (0.5, 0.66), 2: (0.45, 0.6), 3: (0.4, 0.52), 4: (0.36, 0.46)}[n]
    for _ in range(n):
        a = size * rng.uniform(lo, hi) / 2
        b = a * rng.uniform(0.68, 1.0)
        candidates = rng.uniform(0.8 * b, size - 0.8 * b, (16, 2))
        best = candidates[0]
        if scene.cells:  # the candidate farthest (relative to radii) from the others
            gaps = [np.hypot(*(candidates - c.center).T) / (a + c.radius) for c in scene.cells]
            best = candidates[np.argmax(np.min(gaps, axis=0))]
        scene.cells.append(_Cell(scene, best, (a, b), rng.uniform(0, np.pi)))
    scene.nuclei = np.any([c.rn <= 1 for c in scene.cells], axis=0)
    er_net = np.exp(-((scene.noise(size / 45) / 0.45) ** 2))  # zero crossings: a reticulum
    for c in scene.cells:
        c.cyto = ((c.frac >= 0) & (c.frac <= 1) & ~scene.nuclei).astype(np.float32)
        c.er = c.cyto * (0.25 + 0.75 * er_net) * (1 - 0.7 * np.clip(c.frac, 0, 1))


def _reference_stains(scene):
    """Red microtubules, blue nuclei, yellow ER for every cell."""
    rng = scene.rng
    red, blue, yellow = scene.layer(), scene.layer(), scene.layer()
    for c in scene.cells:
        nucleus = (c.rn <= 1) * (0.8 + 0.1 * scene.fine)
        scene.dots(nucleus, c.nucleoli, c.nucleolus_r, 0.5, 0.6)  # nucleoli are dark in DAPI
        np.maximum(blue, nucleus, out=blue)
        tubulin = c.cyto * 0.15  # free tubulin: a dim fill
        for fibre in c.fibres:
            scene.polyline(tubulin, fibre, rng.uniform(0.6, 1.0), c.size(0.05))
        np.maximum(red, tubulin * (c.frac <= 1.02), out=red)
        np.maximum(yellow, c.er, out=yellow)
    gains = rng.uniform((0.5, 0.6, 0.5), (0.9, 1.0, 0.9))
    return red * gains[0], blue * gains[1], yellow * gains[2]


# ---- Green patterns. Each is f(scene, cell, empty layer) -> layer in [0, 1]. ----


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
        s.dots(layer, p + ring * _unit(theta), c.size(0.05, 0.6), 0.8)
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
        pts = c.center + np.outer(t, _unit(phi)) + np.outer(across, _unit(phi + np.pi / 2))
        s.polyline(layer, pts, s.rng.uniform(0.6, 1.0), c.size(0.05))
    return layer * (c.frac <= 1) * np.where(c.rn <= 1, 0.6, 1.0)


def _actin(s, c, layer):
    phi, n = s.rng.uniform(0, np.pi), int(s.rng.integers(5, 10))
    shifts = (np.linspace(-0.8, 0.8, n) + s.rng.uniform(-0.05, 0.05, n)) * c.radius
    along, across = 1.3 * c.radius * _unit(phi), _unit(phi + np.pi / 2)
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
    ends = c.point(theta, 1.0) + 0.5 * c.radius * _unit(theta)
    best = np.argmin(np.abs(ends - s.size / 2).max(axis=1))
    p0, p1 = c.point(theta[best], 0.6), ends[best]
    s.line(layer, p0, p1, 0.8, c.size(0.1, 0.8))
    s.circle(layer, (p0 + p1) / 2, c.size(0.09), 1.0)  # the midbody
    return layer


def _mitotic_spindle(s, c, layer):
    phi = s.rng.uniform(0, np.pi)
    axis, across = 0.9 * c.nradius * _unit(phi), 0.6 * c.nradius * _unit(phi + np.pi / 2)
    poles = (c.ncenter - axis, c.ncenter + axis)
    diamond = [poles[0], c.ncenter - across, poles[1], c.ncenter + across]
    cv2.fillConvexPoly(layer, s._fix(diamond), 0.4, **_DRAW)
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
    pair = (p, p + c.size(0.2, 1.6) * _unit(theta + s.rng.uniform(-2, 2)))
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
        half = _unit(s.rng.uniform(0, 2 * np.pi)) * c.size(s.rng.uniform(0.06, 0.14))
        bend = _unit(s.rng.uniform(0, 2 * np.pi)) * 0.3 * np.linalg.norm(half)
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
        half = 0.5 * c.size(s.rng.uniform(0.25, 0.4)) * _unit(s.rng.uniform(0, np.pi))
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

_PATTERNS = (  # CLASS_NAMES order
    _nucleoplasm, _nuclear_membrane, _nucleoli, _fibrillar_center, _speckles,
    _nuclear_bodies, _er, _golgi, _peroxisomes, _endosomes, _lysosomes,
    _intermediate_filaments, _actin, _focal_adhesions, _microtubules,
    _microtubule_ends, _cytokinetic_bridge, _mitotic_spindle, _mtoc, _centrosome,
    _lipid_droplets, _plasma_membrane, _cell_junctions, _mitochondria,
    _aggresome, _cytosol, _cytoplasmic_bodies, _rods_rings,
)  # fmt: skip
assert len(_PATTERNS) == NUM_CLASSES
_ONE_CELL = (16, 17)  # a cytokinetic bridge or a spindle: one dividing cell per image


def _finish(scene, channel):
    """Optics and camera: blur, average down, dim uneven background, noise, 8 bit."""
    rng, size = scene.rng, scene.size
    sigma = 0.5 * max(1, size / 128)  # output px: the optics blur is a fixed part of the cell
    channel = cv2.GaussianBlur(channel, (0, 0), sigma * scene.k)
    channel = cv2.resize(channel, (size, size), interpolation=cv2.INTER_AREA)
    shading = rng.standard_normal((size, size)).astype(np.float32)
    shading = cv2.GaussianBlur(shading, (0, 0), size / 8)
    background = rng.uniform(0.015, 0.05) * (1 + 0.3 * shading / (shading.std() + 1e-6))
    noise = rng.standard_normal((size, size)).astype(np.float32)
    noise *= rng.uniform(0.005, 0.02) + 0.04 * np.sqrt(np.clip(channel, 0, None))  # read + shot
    return np.clip((channel + background + noise) * 255 + 0.5, 0, 255).astype(np.uint8)


def render_cells(rng, labels, size):
    """Render one 4-channel image whose green channel shows `labels`.

    Args:
        rng: numpy Generator; the image is a pure function of its state.
        labels: label indices (0..27), each drawn into every cell (the
            cytokinetic bridge and the mitotic spindle into one cell only).
        size: side of the square image in pixels (>= 32).

    Returns:
        (image, masks): image is uint8 (size, size, 4) in RGBY order; masks
        maps "cell", "nucleus" and "cytoplasm" to boolean (size, size) unions
        over the cells.
    """
    if size < 32:
        raise ValueError(f"size {size} is too small to draw cells; use >= 32")
    scene = _Scene(rng, size)
    _place_cells(scene)
    red, blue, yellow = _reference_stains(scene)
    green = scene.layer()
    for label in labels:  # max, not sum: patterns stay separable where they overlap
        strength = rng.uniform(0.55, 1.0)
        for cell in scene.cells[:1] if label in _ONE_CELL else scene.cells:
            layer = _PATTERNS[label](scene, cell, scene.layer())
            np.maximum(green, strength * rng.uniform(0.8, 1.0) * layer, out=green)
    image = np.stack([_finish(scene, ch) for ch in (red, green, blue, yellow)], axis=-1)

    def shrink(mask):
        mask = cv2.resize(mask.astype(np.float32), (size, size), interpolation=cv2.INTER_AREA)
        return mask >= 0.5

    cell = shrink(np.any([c.frac <= 1 for c in scene.cells], axis=0))
    nucleus = shrink(scene.nuclei)
    return image, {"cell": cell, "nucleus": nucleus, "cytoplasm": cell & ~nucleus}


def _write_image(index, folder, split, size, seed):
    """Render and write image `index` of a split; returns (Id, labels)."""
    # Own stream per image: an image never depends on order, count or process.
    rng = np.random.default_rng([seed, _SPLIT_CODES[split], index])
    image_id = str(uuid.UUID(bytes=rng.bytes(16), version=1))  # shaped like Kaggle's
    labels = sample_labels(rng)
    image, _ = render_cells(rng, labels, size)
    for c, name in enumerate(CHANNELS):
        path = folder / f"{image_id}_{name}.png"
        if not cv2.imwrite(str(path), np.ascontiguousarray(image[:, :, c])):
            raise OSError(f"could not write {path}")
    return image_id, labels


def _write_split(out_dir, split, count, size, seed, workers):
    """Render and write `count` images; returns [(Id, labels)] in index order."""
    folder = out_dir / split
    folder.mkdir(parents=True, exist_ok=True)
    write = functools.partial(_write_image, folder=folder, split=split, size=size, seed=seed)
    progress = functools.partial(tqdm, total=count, desc=f"synthetic {split}", unit="img", disable=None)
    if workers <= 1 or count < 2:
        return list(progress(map(write, range(count))))
    # Spawned, not forked: the caller may have TensorFlow loaded (the data_prep
    # CLI does). This module imports no TensorFlow: a worker starts in 0.6 s.
    with workers_lib.process_pool(min(workers, count)) as pool:
        return list(progress(pool.imap(write, range(count), chunksize=16)))


def generate_dataset(out_dir, num_train, num_test, size=64, seed=0, workers=None):
    """Write a synthetic HPA dataset in the Kaggle layout (see the module docstring).

    Files of the same names are overwritten; nothing else is deleted.

    Args:
        out_dir: folder to write into (created if missing).
        num_train: number of labelled training images.
        num_test: number of test images (their labels go to test_labels.csv).
        size: image side in pixels (>= 32).
        seed: non-negative int; the same seed gives byte-identical files.
        workers: rendering processes (default: all cores); never changes
            the output. More than one are spawned (`data_prep.workers`): a
            script calling this needs the `if __name__ == "__main__":` guard.

    Returns:
        dict with out_dir, num_train, num_test, size, seed and
        train_label_counts (images per class in train, a list of 28 ints).
    """
    if num_train < 0 or num_test < 0:
        raise ValueError("num_train and num_test must be >= 0")
    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    workers = workers or os.cpu_count() or 1
    train = _write_split(out, "train", num_train, size, seed, workers)
    test = _write_split(out, "test", num_test, size, seed, workers)
    counts = write_label_csvs(out, train, test)
    summary = dict(out_dir=str(out), num_train=num_train, num_test=num_test, size=size, seed=seed)
    return {**summary, "train_label_counts": counts.tolist()}


def write_label_csvs(out, train, test):
    """The layout's CSVs from (Id, label indices) rows: train.csv and
    test_labels.csv (Id,Target), sample_submission.csv (Id,Predicted "0").
    Returns the images per class in train."""
    for name, rows in (("train.csv", train), ("test_labels.csv", test)):
        table = [(i, format_target(t)) for i, t in rows]
        pd.DataFrame(table, columns=["Id", "Target"]).to_csv(out / name, index=False)
    submission = pd.DataFrame({"Id": [i for i, _ in test], "Predicted": "0"})
    submission.to_csv(out / "sample_submission.csv", index=False)
    counts = np.zeros(NUM_CLASSES, int)
    for _, labels in train:
        counts[labels] += 1
    return counts
