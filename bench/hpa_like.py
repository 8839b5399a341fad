"""A second, independently designed generator of HPA-layout images.

`data_prep/synthetic.py` draws the demo's training data. A benchmark asking
"do the training defaults transfer?" needs data that generator did not draw,
so this one shares none of its models:

- Geometry: a confluent monolayer. Cells are the regions of an additively
  weighted Voronoi tessellation of a jittered hexagonal lattice, seen through a
  smooth random warp (wavy borders) and capped at a per-cell reach (gaps where
  the sheet is sparse): 4-20 (median 10) cells of varying size in view,
  touching each other and cut by the frame.
  Nuclei are lumpy blobs (a radius with random 2nd and 3rd harmonics).
- Drawing: every stain is a fluorophore density. Structures are point
  emitters (puncta, persistent random-walk filaments, rings) splatted at
  sub-pixel positions and blurred by the structure's width, or smooth density
  fields (nucleoplasm, cytosol, ER). Labels add up, as light does.
- Reference stains: red microtubules are random walks out of each cell's MTOC;
  blue DNA content varies per cell (G1/G2) with dark nucleoli; yellow ER is
  the edge network of a fine Voronoi tessellation, densest at the nucleus.
- Biology: only a random subset of cells expresses a label, at lognormal
  levels; some fields hold a mitotic cell or a cytokinetic pair whatever the
  labels, so only the green channel tells classes 16 and 17.
- Camera: per-channel auto-exposure, vignetting, per-image defocus, Poisson
  shot noise at a random photon budget, black-level offset and read noise.
- Labels: a primary class from the HPA counts raised to a power > 1 (a steeper
  tail than HPA's) with a floor, plus partners that co-occur in HPA.

Layout written by `generate_dataset`: the same as data_prep/synthetic.py's
(train.csv `Id,Target`, train/<Id>_<channel>.png, test/, sample_submission.csv,
test_labels.csv), with other Ids for the same seed.
"""

import argparse
import multiprocessing
import os
import pathlib
import time
import uuid

import cv2
import numpy as np

from data_prep import synthetic
from protein_location.core.labels import CHANNELS, HPA_TRAIN_COUNTS, NUM_CLASSES

_TAG = 0x48504C4B  # in every seed, so Ids and images differ from synthetic.py's for one --seed
_SPLITS = {"train": 0, "test": 1}
_STEP = 0.5  # emitter spacing along filaments (px): close enough to look continuous

# Primary label: HPA counts ** 1.3 (Nucleoplasm dominates more than in HPA),
# floored so the rarest classes, partners and extras included, reach ~1.2%.
_PRIMARY = np.asarray(HPA_TRAIN_COUNTS, float) ** 1.3
_PRIMARY = np.maximum(_PRIMARY / _PRIMARY.sum(), 0.013)
_PRIMARY /= _PRIMARY.sum()
# label -> ((partner, probability), ...): pairs that co-occur in HPA.
_PARTNERS = {
    0: ((25, 0.3),), 25: ((0, 0.4),), 1: ((0, 0.3),), 2: ((0, 0.3),), 3: ((2, 0.2), (0, 0.2)),
    4: ((0, 0.35),), 5: ((0, 0.35),), 6: ((25, 0.2),), 7: ((25, 0.2), (0, 0.2)), 8: ((25, 0.2),),
    9: ((25, 0.2),), 10: ((25, 0.2),), 11: ((25, 0.2),), 12: ((13, 0.3), (21, 0.15)), 13: ((12, 0.3),),
    14: ((25, 0.25),), 15: ((14, 0.3),), 16: ((25, 0.3), (0, 0.2)), 17: ((14, 0.2), (0, 0.2)),
    18: ((19, 0.25), (0, 0.2)), 19: ((18, 0.2), (0, 0.2)), 20: ((25, 0.15),), 21: ((22, 0.25), (25, 0.25)),
    22: ((21, 0.3),), 23: ((25, 0.2), (0, 0.15)), 24: ((25, 0.3),), 26: ((0, 0.2),), 27: ((0, 0.3),),
}  # fmt: skip


def sample_labels(rng):
    """Draw the sorted label indices (1-4) of one image from numpy Generator `rng`."""
    primary = int(rng.choice(NUM_CLASSES, p=_PRIMARY))
    labels = {primary}
    for partner, p in _PARTNERS.get(primary, ()):
        if rng.random() < p:
            labels.add(partner)
    if rng.random() < 0.15:  # an unrelated second location
        labels.add(int(rng.choice(NUM_CLASSES, p=_PRIMARY)))
    return sorted(labels)


def _unit(theta):
    return np.stack([np.cos(theta), np.sin(theta)], axis=-1)


def _wrap(angle):
    return np.angle(np.exp(1j * angle))


def _dist_to(mask):
    """Euclidean px distance of every pixel to the nearest True pixel of `mask`."""
    return cv2.distanceTransform((~mask).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)


def _segment(p0, p1):
    n = max(2, int(np.hypot(*(np.subtract(p1, p0))) / _STEP))
    return np.asarray(p0) + np.linspace(0, 1, n)[:, None] * np.subtract(p1, p0)


class _Scene:
    """One field of view: the cell sheet, its per-pixel maps and reference stains.

    Per-cell arrays are indexed by cell label (0 = background), so a per-pixel
    map of any cell property is one fancy-index, `prop[self.L]`, not a loop.
    """

    def __init__(self, rng, size, labels):
        self.rng, self.s = rng, size
        self.d = rng.uniform(0.27, 0.45) * size  # mean cell diameter (px)
        self.y, self.x = np.mgrid[0:size, 0:size].astype(np.float32)
        self.grain = self.noise(0.7)
        self.w = max(0.6, 0.02 * self.d)  # width of membranes and rims (px)
        self._tessellate()
        self._nuclei()
        self._events(labels)
        self._stains()
        r2 = (self.x - rng.uniform(0.3, 0.7) * size) ** 2 + (self.y - rng.uniform(0.3, 0.7) * size) ** 2
        self.illum = 1 - rng.uniform(0, 0.35) * r2 / (0.5 * size * size)  # vignetting
        self.defocus = max(0.3, rng.uniform(0.3, 1.0) * size / 128)

    def noise(self, sigma):
        """Smooth zero-mean unit-std noise of correlation length `sigma` px."""
        field = cv2.GaussianBlur(self.rng.standard_normal((self.s, self.s)).astype(np.float32), (0, 0), sigma)
        return field / (field.std() + 1e-6)

    def _tessellate(self):
        rng, s, d = self.rng, self.s, self.d
        rows = np.arange(-0.7 * d, s + 0.7 * d, 0.87 * d)  # a hexagonal lattice, beyond the frame too
        cols = [np.arange(-0.7 * d + (i % 2) * d / 2, s + 0.7 * d, d) for i in range(len(rows))]
        seeds = np.concatenate([np.stack(np.broadcast_arrays(x, y), 1) for x, y in zip(cols, rows)])
        seeds = seeds + rng.uniform(-0.3, 0.3, seeds.shape) * d
        seeds = seeds[rng.random(len(seeds)) > rng.uniform(0, 0.25)]  # missing cells: neighbours grow
        warp = 0.07 * d  # wavy borders: tessellate warped coordinates
        xw, yw = self.x + warp * self.noise(d / 5), self.y + warp * self.noise(d / 5)
        dist = np.hypot(xw - seeds[:, 0, None, None], yw - seeds[:, 1, None, None])
        owner = np.argmin(dist - rng.uniform(-0.12, 0.12, len(seeds))[:, None, None] * d, axis=0)
        own = np.take_along_axis(dist, owner[None], 0)[0]
        reach = 0.5 * d * rng.uniform(0.9, 1.45) * rng.uniform(0.85, 1.15, len(seeds))
        inside = own < reach[owner] * (1 + 0.08 * self.noise(d / 6))
        used = np.unique(owner[inside])
        lut = np.zeros(len(seeds), np.int32)
        lut[used] = np.arange(1, len(used) + 1)
        self.L, self.n = np.where(inside, lut[owner], 0), len(used)
        self.seeds = np.vstack([[0.0, 0.0], seeds[used]])
        padded = np.pad(self.L, 1, mode="edge")
        nbrs = (padded[:-2, 1:-1], padded[2:, 1:-1], padded[1:-1, :-2], padded[1:-1, 2:])
        self.de = _dist_to((self.L == 0) | np.any([nb != self.L for nb in nbrs], 0))  # to own edge
        self.dj = _dist_to((self.L > 0) & np.any([(nb != self.L) & (nb > 0) for nb in nbrs], 0))  # to a contact
        area = np.bincount(self.L.ravel(), minlength=self.n + 1)
        self.visible = np.flatnonzero(area >= 0.25 * np.pi * (d / 2) ** 2)
        self.visible = self.visible[self.visible > 0]
        if not len(self.visible):
            self.visible = np.array([int(np.argmax(area[1:])) + 1])
        a = np.concatenate([self.L[:, :-1].ravel(), self.L[:-1, :].ravel()])
        b = np.concatenate([self.L[:, 1:].ravel(), self.L[1:, :].ravel()])
        touch = (a > 0) & (b > 0) & (a != b)
        self.pairs, self.contact = np.unique(np.sort(np.stack([a[touch], b[touch]], 1), 1), axis=0, return_counts=True)

    def _nuclei(self):
        rng, d, k, L = self.rng, self.d, self.n + 1, self.L
        self.c = self.seeds + rng.uniform(-0.05, 0.05, (k, 2)) * d  # nucleus centres
        self.rn = rng.uniform(0.17, 0.23, k) * d
        harm, phase = rng.uniform(0, 0.12, (k, 2)), rng.uniform(0, 2 * np.pi, (k, 2))
        dx, dy = self.x - self.c[L, 0], self.y - self.c[L, 1]
        self.theta = np.arctan2(dy, dx)  # angle around the own nucleus
        rim = self.rn[L] * (
            1
            + harm[L, 0] * np.cos(2 * (self.theta - phase[L, 0]))
            + harm[L, 1] * np.cos(3 * (self.theta - phase[L, 1]))
        )
        self.sdn = np.hypot(dx, dy) - rim  # signed px from the nuclear rim
        self.nucleus = (L > 0) & (self.sdn < 0) & (self.de > 1)
        owner = np.repeat(np.arange(1, k), rng.integers(1, 4, k - 1))
        radius = rng.uniform(0, 0.5, len(owner)) * self.rn[owner]
        self.nuc_pts = self.c[owner] + radius[:, None] * _unit(rng.uniform(0, 2 * np.pi, len(owner)))
        self.nuc_owner, self.nuc_sigma = owner, max(0.6, 0.04 * d)
        self.nucleoli = np.clip(self.dots(self.nuc_pts, self.nuc_sigma), 0, 1) * self.nucleus
        self.mtoc_ang = rng.uniform(-np.pi, np.pi, k)  # the MTOC sits on this side; the Golgi around it
        self.mtoc = self.c + (1.1 * self.rn + 0.03 * d)[:, None] * _unit(self.mtoc_ang)
        inner = np.all((self.c > 0.15 * d) & (self.c < self.s - 0.15 * d), axis=1)  # nucleus well inside
        centred = self.visible[(self.label_at(self.c[self.visible]) == self.visible) & inner[self.visible]]
        self.shown = centred if len(centred) else self.visible  # well in view, nucleus and MTOC too

    def _events(self, labels):
        """A mitotic cell and a cytokinetic pair, present in some fields whatever the labels."""
        rng, d = self.rng, self.d
        self.mitotic, self.bridge, self.spindle, self.poles, self.bridge_pts = 0, (), np.zeros((0, 2)), [], None
        if 17 in labels or rng.random() < 0.12:
            m = self.mitotic = int(rng.choice(self.shown))
            u = _unit(rng.uniform(0, np.pi))  # spindle axis; v: the metaphase plate
            v = np.array([-u[1], u[0]])
            dx, dy = self.x - self.c[m, 0], self.y - self.c[m, 1]
            plate = ((dx * u[0] + dy * u[1]) / (0.05 * d)) ** 2 + ((dx * v[0] + dy * v[1]) / (0.2 * d)) ** 2 < 1
            self.nucleus = (self.nucleus & (self.L != m)) | (plate & (self.L == m))  # chromosomes condensed
            self.poles = [self.c[m] - 0.27 * d * u, self.c[m] + 0.27 * d * u]
            ends = [self.c[m] + t * d * v for t in np.linspace(-0.18, 0.18, 7)]
            self.spindle = np.concatenate([_segment(p, e) for p in self.poles for e in ends])
        ok = [
            (int(a), int(b), (a in self.shown) + (b in self.shown))
            for (a, b), n in zip(self.pairs, self.contact)
            if n >= 3 and self.mitotic not in (a, b)
        ]
        pairs = [(a, b) for a, b, n in ok if n == 2] or [(a, b) for a, b, n in ok if n == 1]
        if 16 in labels or (pairs and rng.random() < 0.12):
            if pairs:  # two daughter cells, bridged from nucleus to nucleus
                a, b = self.bridge = pairs[rng.integers(len(pairs))]
                end = self.c[b]
            else:  # no touching pair in view: the sister cell is out of the sheet
                free = self.shown[self.shown != self.mitotic]
                a = int(rng.choice(free if len(free) else self.shown))
                self.bridge, end = (a,), self.c[a] + 1.2 * d * _unit(rng.uniform(0, 2 * np.pi))
            path = _segment(self.c[a], end)
            cross = np.flatnonzero(self.label_at(path) != a)
            mid = path[cross[0]] if len(cross) else path[len(path) // 2]
            self.bridge_pts = (path[len(path) // 4 : 3 * len(path) // 4], mid)
        self.dn = _dist_to(self.nucleus)
        self.cyto = (self.L > 0) & ~self.nucleus
        self.frac = np.clip(self.dn / (self.dn + self.de + 1e-3), 0, 1)  # 0 at the nucleus .. 1 at the edge

    def _stains(self):
        rng, d, s, cells = self.rng, self.d, self.s, np.arange(1, self.n + 1)
        cells = cells[cells != self.mitotic]
        owner = np.repeat(cells, 22)  # microtubules: bent walks out of the MTOC
        start = self.mtoc[owner] + rng.normal(0, 0.01 * d, (len(owner), 2))
        pts, own, self.tips, self.tip_dir, self.tip_owner = self.walk(
            start, rng.uniform(0, 2 * np.pi, len(owner)), int(1.1 * d / _STEP), 0.1, owner=owner
        )
        self.mt, self.mt_owner = pts, own
        red = 0.2 * (self.L > 0) + self.lines(pts, 0.55, 0.7) + self.dots(self.mtoc[cells], 0.8, 0.5)
        red += self.lines(self.spindle, 0.55, 0.8) + 0.25 * (self.L == self.mitotic) * (self.mitotic > 0)
        if self.bridge:
            red += self.lines(self.bridge_pts[0], 0.7, 1.2)
        self.red = red
        dna = rng.uniform(0.7, 1.3, self.n + 1)
        if self.mitotic:
            dna[self.mitotic] = 1.5  # condensed chromosomes
        self.blue = self.nucleus * (0.75 + 0.2 * self.grain) * dna[self.L] * (1 - 0.55 * self.nucleoli)
        # ER tubules: the edges of a fine Voronoi tessellation of random points.
        spacing = max(3.0, 0.085 * d)
        seeds = np.ones((s, s), np.uint8)
        seeds[rng.integers(0, s, int(s * s / spacing**2)), rng.integers(0, s, int(s * s / spacing**2))] = 0
        _, lab = cv2.distanceTransformWithLabels(seeds, cv2.DIST_L2, 5, labelType=cv2.DIST_LABEL_PIXEL)
        net = np.zeros((s, s), np.float32)
        net[1:, :] += lab[1:, :] != lab[:-1, :]
        net[:, 1:] += lab[:, 1:] != lab[:, :-1]
        net = cv2.GaussianBlur(np.minimum(net, 1), (0, 0), 0.5)
        envelope = np.exp(-((self.sdn / self.w) ** 2)) * (self.L > 0) * (self.L != self.mitotic)
        self.er = self.cyto * (0.2 + 0.8 * net) * (0.3 + 0.7 * np.exp(-self.dn / (0.2 * d))) + 0.5 * envelope
        self.yellow = self.er

    # ---- emitters ----

    def at(self, field, pts, outside=0):
        """Values of a per-pixel map at points (`outside` beyond the frame)."""
        xi, yi = np.round(pts[:, 0]).astype(int), np.round(pts[:, 1]).astype(int)
        ok = (xi >= 0) & (xi < self.s) & (yi >= 0) & (yi < self.s)
        return np.where(ok, field[yi.clip(0, self.s - 1), xi.clip(0, self.s - 1)], outside)

    def label_at(self, pts):
        return self.at(self.L, np.asarray(pts, float).reshape(-1, 2), -1)

    def splat(self, pts, weights, sigma):
        """Bilinear sub-pixel splat of weighted emitters, then the structure's blur."""
        s, out = self.s, np.zeros(self.s * self.s)
        pts = np.asarray(pts, float).reshape(-1, 2)
        weights = np.broadcast_to(weights, len(pts))
        x0, y0 = np.floor(pts[:, 0]), np.floor(pts[:, 1])
        fx, fy = pts[:, 0] - x0, pts[:, 1] - y0
        for dx, dy, w in ((0, 0, (1 - fx) * (1 - fy)), (1, 0, fx * (1 - fy)), (0, 1, (1 - fx) * fy), (1, 1, fx * fy)):
            xi, yi = (x0 + dx).astype(int), (y0 + dy).astype(int)
            ok = (xi >= 0) & (xi < s) & (yi >= 0) & (yi < s)
            out += np.bincount(yi[ok] * s + xi[ok], (w * weights)[ok], s * s)
        return cv2.GaussianBlur(out.reshape(s, s).astype(np.float32), (0, 0), sigma)

    def dots(self, pts, sigma, amp=1.0):  # weights so a lone dot peaks at `amp`
        return self.splat(pts, amp * 2 * np.pi * sigma**2, sigma)

    def lines(self, pts, sigma, amp=1.0):  # ... and a line of emitters _STEP apart at `amp`
        return self.splat(pts, amp * _STEP * np.sqrt(2 * np.pi) * sigma, sigma)

    def sample(self, weight, n):
        """`n` sub-pixel points with density proportional to the map `weight`."""
        flat = weight.ravel().astype(float)
        if n <= 0 or flat.sum() <= 0:
            return np.zeros((0, 2))
        y, x = np.divmod(self.rng.choice(flat.size, int(n), p=flat / flat.sum()), self.s)
        return np.stack([x, y], 1) + self.rng.uniform(-0.5, 0.5, (int(n), 2))

    def walk(self, pos, ang, steps, turn, tangential=0.0, avoid_nucleus=False, lengths=None, owner=None):
        """Persistent random walks that die on leaving their cell (`owner`, by
        default the cell under the start; outside the frame they live on);
        returns the emitters (pts, owner) and each walker's tip, heading, owner."""
        pos, ang = np.array(pos, float).reshape(-1, 2), np.array(ang, float)
        owner = self.label_at(pos) if owner is None else np.asarray(owner)
        alive, tip, heading = owner > 0, pos.copy(), ang.copy()
        pts, own = [], []
        for t in range(steps):
            if not alive.any():
                break
            if tangential:  # steer to the nearer tangent: filaments wrap round the nucleus
                c = self.c[np.maximum(owner, 0)]
                radial = np.arctan2(pos[:, 1] - c[:, 1], pos[:, 0] - c[:, 0])
                target = radial + np.sign(_wrap(ang - radial)) * np.pi / 2
                ang = ang + tangential * _wrap(target - ang)
            ang = ang + self.rng.normal(0, turn, len(ang))
            pos = pos + _STEP * _unit(ang)
            here = self.label_at(pos)
            alive &= (here == owner) | (here < 0)
            if avoid_nucleus:
                alive &= ~self.at(self.nucleus, pos).astype(bool)
            if lengths is not None:
                alive &= t < lengths
            tip[alive], heading[alive] = pos[alive], ang[alive]
            pts.append(pos[alive])
            own.append(owner[alive])
        if not pts:
            return np.zeros((0, 2)), np.zeros(0, int), tip, heading, owner
        return np.concatenate(pts), np.concatenate(own), tip, heading, owner

    def positive(self, label):
        """The cells that show `label`: a random share; at least one well in view."""
        rng = self.rng
        if label == 17 and self.mitotic:
            return np.array([self.mitotic])
        if label == 16 and self.bridge:
            return np.array(self.bridge)
        pool = np.arange(1, self.n + 1)
        pool = pool[pool != self.mitotic] if label not in (14, 25) else pool
        share = rng.uniform(0.2, 0.7) if label in (24, 26, 27) else rng.uniform(0.6, 1.0)
        cells = pool[rng.random(len(pool)) < share]
        shown = np.setdiff1d(self.shown, [self.mitotic]) if len(self.shown) > 1 else self.shown
        if not np.isin(cells, shown).any():
            cells = np.append(cells, rng.choice(shown))
        return cells


# ---- Green patterns: f(scene, positive cells, per-pixel expression e) -> layer. ----


def _vesicles(per_cell, size, decay, amp):
    """Puncta: `per_cell` per cell, sigma `size` cell diameters, density
    falling as exp(-frac / decay) from the nucleus, amplitudes in `amp`."""

    def pattern(sc, cells, e):
        pts = sc.sample(e * sc.cyto * np.exp(-sc.frac / decay), per_cell * len(cells))
        return sc.dots(pts, max(0.5, size * sc.d), sc.rng.uniform(*amp, len(pts)) * sc.at(e, pts))

    return pattern


def _walkers(per_cell, length, turn, tangential=0.0, start_decay=10.0, avoid_nucleus=False):
    """Filaments: `per_cell` random walks of up to `length` cell diameters."""

    def pattern(sc, cells, e):
        pts = sc.sample(
            e * (sc.cyto if avoid_nucleus else sc.L > 0) * np.exp(-sc.frac / start_decay), per_cell * len(cells)
        )
        ang = sc.rng.uniform(0, 2 * np.pi, len(pts))
        steps = int(length * sc.d / _STEP)
        lengths = sc.rng.integers(steps // 3, steps + 1, len(pts))
        fil, _, _, _, _ = sc.walk(pts, ang, steps, turn, tangential, avoid_nucleus, lengths)
        return sc.lines(fil, 0.55, 0.85 * sc.at(e, fil))

    return pattern


def _actin(sc, cells, e):
    """Parallel straight stress fibres across the cell, both ways from a start,
    plus a dim cortical rim."""
    orient = sc.rng.uniform(0, np.pi, sc.n + 1)
    pts = sc.sample(e * (sc.L > 0), 6 * len(cells))
    ang = orient[sc.label_at(pts).clip(0)] + sc.rng.normal(0, 0.12, len(pts))
    steps = int(1.5 * sc.d / _STEP)
    fil = [sc.walk(pts, ang + flip, steps, 0.01)[0] for flip in (0, np.pi)]
    return sc.lines(np.concatenate(fil), 0.55, 0.7) + 0.3 * e * np.exp(-((sc.de / sc.w) ** 2))


def _focal_adhesions(sc, cells, e):  # short radial streaks just inside the edge
    pts = sc.sample(e * (sc.L > 0) * (sc.de < 0.07 * sc.d) * (sc.de > 0.5), 12 * len(cells))
    fil = sc.walk(pts, sc.at(sc.theta, pts), int(0.07 * sc.d / _STEP) + 2, 0.0)[0]
    return sc.lines(np.concatenate([pts, fil]), 0.6, 1.0)


def _of_cells(pts, owner, cells):
    return pts[np.isin(owner, cells)]


def _nucleoli(sc, cells, e):
    pts = _of_cells(sc.nuc_pts, sc.nuc_owner, cells)
    lumps = pts + sc.rng.normal(0, 0.5 * sc.nuc_sigma, pts.shape)  # irregular blobs
    pts = np.concatenate([pts, lumps])
    return sc.dots(pts, sc.nuc_sigma, 0.7 * sc.at(e, pts))


def _fibrillar_center(sc, cells, e):  # tight clusters of tiny dots on each nucleolus
    pts = np.repeat(_of_cells(sc.nuc_pts, sc.nuc_owner, cells), 4, axis=0)
    pts = pts + sc.rng.normal(0, 0.6 * sc.nuc_sigma, pts.shape)
    return sc.dots(pts, max(0.5, 0.012 * sc.d), sc.rng.uniform(0.7, 1.0, len(pts)) * sc.at(e, pts))


def _speckles(sc, cells, e):
    pts = sc.sample(e * sc.nucleus * (sc.noise(0.04 * sc.d + 0.5) > 0.3), 25 * len(cells))
    return (
        sc.dots(pts, max(0.55, 0.02 * sc.d), sc.rng.uniform(0.6, 1.0, len(pts)) * sc.at(e, pts)) + 0.15 * e * sc.nucleus
    )


def _nuclear_bodies(sc, cells, e):
    pts = sc.sample(e * sc.nucleus * (1 - sc.nucleoli), int(sc.rng.integers(2, 7)) * len(cells))
    return sc.dots(pts, max(0.6, 0.018 * sc.d), sc.rng.uniform(0.8, 1.2, len(pts)) * sc.at(e, pts))


def _golgi(sc, cells, e):  # a fragmented ribbon cupping the nucleus on the MTOC side
    side = np.exp(-((_wrap(sc.theta - sc.mtoc_ang[sc.L]) / 0.8) ** 2))
    ribbon = np.clip(0.6 + 0.5 * sc.noise(0.6), 0, 1)
    return 1.5 * e * sc.cyto * side * np.exp(-((sc.dn / (0.14 * sc.d)) ** 2)) * ribbon


def _mt_ends(sc, cells, e):  # comets: a bright tip and a dimmer trailing dot
    tips, heading = _of_cells(sc.tips, sc.tip_owner, cells), _of_cells(sc.tip_dir, sc.tip_owner, cells)
    keep = sc.rng.random(len(tips)) < 0.75
    tips, tails = tips[keep], tips[keep] - 1.2 * _unit(heading[keep])
    return sc.dots(tips, 0.6, sc.at(e, tips)) + sc.dots(tails, 0.6, 0.5 * sc.at(e, tips))


def _microtubules(sc, cells, e):  # the red channel's filaments (and spindle) of the positive cells
    pts = _of_cells(sc.mt, sc.mt_owner, cells)
    return sc.lines(pts, 0.55, 0.9 * sc.at(e, pts)) + sc.lines(sc.spindle, 0.55, 0.6) * (sc.mitotic in cells)


def _mtoc(sc, cells, e):  # one bright dot by the nucleus, in a faint aster
    pts = sc.mtoc[cells]
    return sc.dots(pts, max(0.7, 0.025 * sc.d), 1.2 * sc.at(e, pts)) + sc.dots(pts, 0.08 * sc.d, 0.25 * sc.at(e, pts))


def _centrosome(sc, cells, e):  # a close pair of small dots where the MTOC is
    pair = 0.035 * sc.d * _unit(sc.mtoc_ang[cells] + 1.2)
    pts = np.concatenate([sc.mtoc[cells] - pair, sc.mtoc[cells] + pair])
    return sc.dots(pts, max(0.5, 0.012 * sc.d), sc.at(e, pts))


def _aggresome(sc, cells, e):  # one big perinuclear blob, at the MTOC as real aggresomes
    pts = sc.mtoc[cells] + 0.05 * sc.d * _unit(sc.mtoc_ang[cells])
    return sc.dots(pts, 0.065 * sc.d, 1.3 * sc.at(e, pts))


def _rings(sc, weight, n, radius):
    centres = sc.sample(weight, n)
    theta = np.linspace(0, 2 * np.pi, 20, endpoint=False)
    return (centres[:, None] + radius * _unit(theta)[None]).reshape(-1, 2)


def _lipid_droplets(sc, cells, e):
    band = e * sc.cyto * (sc.frac > 0.15) * (sc.frac < 0.85)
    return sc.lines(_rings(sc, band, 4 * len(cells), max(1.2, 0.045 * sc.d)), 0.5, 0.9)


def _rods_rings(sc, cells, e):
    rods = sc.sample(e * sc.cyto, int(sc.rng.integers(1, 3)) * len(cells))
    fil = sc.walk(rods, sc.rng.uniform(0, 2 * np.pi, len(rods)), int(0.16 * sc.d / _STEP), 0.02)[0]
    rings = _rings(sc, e * sc.cyto, int(sc.rng.integers(0, 2)) * len(cells), max(1.0, 0.025 * sc.d))
    return sc.lines(np.concatenate([rods, fil, rings]), 0.6, 1.1)


_PATTERNS = (  # CLASS_NAMES order
    lambda sc, c, e: e * sc.nucleus * (0.8 + 0.2 * sc.grain) * (1 - 0.8 * sc.nucleoli),  # Nucleoplasm
    lambda sc, c, e: e * np.exp(-((sc.sdn / sc.w) ** 2)) * (sc.L > 0),  # Nuclear membrane
    _nucleoli, _fibrillar_center, _speckles, _nuclear_bodies,
    lambda sc, c, e: e * sc.er,  # Endoplasmic reticulum
    _golgi,
    _vesicles(45, 0.012, 10.0, (0.5, 0.9)),  # Peroxisomes: many tiny, everywhere
    _vesicles(22, 0.02, 0.5, (0.4, 1.0)),  # Endosomes: medium, loosely perinuclear
    _vesicles(14, 0.027, 0.22, (0.6, 1.0)),  # Lysosomes: larger, clustered at the nucleus
    _walkers(8, 1.2, 0.06, tangential=0.08, start_decay=0.4, avoid_nucleus=True),  # Intermediate filaments
    _actin, _focal_adhesions,
    _microtubules,
    _mt_ends,
    lambda sc, c, e: sc.lines(sc.bridge_pts[0], 0.6, 1.0) + sc.dots([sc.bridge_pts[1]], max(0.8, 0.025 * sc.d), 1.6)
    if sc.bridge else np.zeros_like(e),  # Cytokinetic bridge
    lambda sc, c, e: sc.lines(sc.spindle, 0.55, 0.8) + sc.dots(sc.poles, max(0.7, 0.02 * sc.d), 1.3)
    if sc.mitotic else np.zeros_like(e),  # Mitotic spindle
    _mtoc, _centrosome,
    _lipid_droplets,
    lambda sc, c, e: e * np.exp(-((sc.de / sc.w) ** 2)),  # Plasma membrane: the whole outline
    lambda sc, c, e: e * np.exp(-((sc.dj / sc.w) ** 2)) * np.clip(1 + 0.6 * sc.noise(0.8), 0, 2),  # Cell junctions
    _walkers(35, 0.16, 0.35, start_decay=1.5, avoid_nucleus=True),  # Mitochondria: short bent threads
    _aggresome,
    lambda sc, c, e: e * sc.cyto * (0.7 + 0.1 * sc.grain) * (1 - 0.3 * sc.frac),  # Cytosol
    _vesicles(2, 0.045, 1.0, (0.9, 1.2)),  # Cytoplasmic bodies: few, large
    _rods_rings,
)  # fmt: skip
assert len(_PATTERNS) == NUM_CLASSES


def _camera(sc, signal):
    """Auto-exposure, vignetting, defocus, Poisson shot noise, offset, read noise -> uint8."""
    rng, s = sc.rng, sc.s
    signal = cv2.GaussianBlur((signal * sc.illum).astype(np.float32), (0, 0), sc.defocus * rng.uniform(0.85, 1.2))
    signal = signal / max(float(signal.max()), 1e-3) * rng.uniform(0.75, 1.05)  # auto-exposure
    photons = rng.uniform(30, 250)  # photons at full scale: dim channels come out grainy
    light = np.clip(signal, 0, None) + rng.uniform(0.01, 0.04) * sc.illum  # autofluorescence
    counts = rng.poisson(light * photons)
    out = rng.uniform(2, 12) + counts * (235.0 / photons) + rng.normal(0, rng.uniform(0.5, 2.0), (s, s))
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def render_image(rng, labels, size):
    """One uint8 (size, size, 4) RGBY image whose green channel shows `labels`."""
    return render_field(rng, labels, size)[0]


def render_field(rng, labels, size):
    """(image, cells, expressing): the uint8 (size, size, 4) RGBY image of
    `render_image` (the same for the same generator state), the int32 label
    image of its cells (0: background), and {label: the cell values that
    express it} (only part of the cells express a label)."""
    if size < 32:
        raise ValueError(f"size {size} is too small to draw cells; use >= 32")
    sc = _Scene(rng, size, labels)
    green = 0.04 * (sc.L > 0) * (1 + 0.3 * sc.grain)  # unspecific antibody background
    expressing = {}
    for label in labels:
        cells = sc.positive(label)
        expressing[label] = sorted(int(c) for c in cells)
        expression = np.zeros(sc.n + 1, np.float32)
        expression[cells] = rng.lognormal(0, 0.35, len(cells))
        green = green + rng.uniform(0.6, 1.0) * _PATTERNS[label](sc, cells, expression[sc.L])
    image = np.stack([_camera(sc, ch) for ch in (sc.red, green, sc.blue, sc.yellow)], axis=-1)
    return image, sc.L.astype(np.int32), expressing


def _start(seed, split, index):
    """Image `index`'s own stream (it depends on nothing else), its Id and labels."""
    rng = np.random.default_rng([seed, _SPLITS[split], index, _TAG])
    image_id = str(uuid.UUID(bytes=rng.bytes(16), version=4))  # shaped like Kaggle's Ids
    return rng, image_id, sample_labels(rng)


def draw_labels(count, seed=0, split="train"):
    """[(Id, labels)] of the first `count` images of a split, as generate_dataset
    writes them, without drawing any image."""
    return [_start(seed, split, i)[1:] for i in range(count)]


def _write_image(job):
    """Render and write image `index` of a split; returns (Id, labels), and
    with a cells folder (Id, labels, {cell: its labels}) after writing the
    cell label image `<cells folder>/<Id>.png` (16-bit)."""
    index, folder, split, size, seed, cells_folder = job
    rng, image_id, labels = _start(seed, split, index)
    image, cells, expressing = render_field(rng, labels, size)
    for c, name in enumerate(CHANNELS):
        path = os.path.join(folder, f"{image_id}_{name}.png")
        if not cv2.imwrite(path, np.ascontiguousarray(image[:, :, c])):
            raise OSError(f"could not write {path}")
    if cells_folder is None:
        return image_id, labels
    return image_id, labels, synthetic.write_cell_image(cells_folder, image_id, cells, expressing)


def _init_worker():
    cv2.setNumThreads(1)  # one process per core already; threads would only contend


def _write_split(out, split, count, size, seed, workers, cells=False):
    folder = out / split
    folder.mkdir(parents=True, exist_ok=True)
    cells_folder = out / f"{split}_cells" if cells else None
    if cells:
        cells_folder.mkdir(parents=True, exist_ok=True)
    jobs = [(i, str(folder), split, size, seed, cells_folder and str(cells_folder)) for i in range(count)]
    if workers <= 1 or count < 8:
        return [_write_image(job) for job in jobs]
    # spawn: no forked copy of the caller's (perhaps TensorFlow) threads and locks.
    with multiprocessing.get_context("spawn").Pool(min(workers, count), _init_worker) as pool:
        return pool.map(_write_image, jobs, chunksize=max(1, count // (8 * workers)))


def generate_dataset(out_dir, num_train, num_test, size=128, seed=0, workers=None, cells=False):
    """Write an HPA-like dataset in the Kaggle layout (see the module docstring).

    Args:
        out_dir: folder to write into (created; same-named files overwritten).
        num_train, num_test: image counts; test labels go to test_labels.csv.
        size: image side in px (>= 32).
        seed: non-negative int; the same seed gives byte-identical files.
        workers: rendering processes (default: all cores); never changes the output.
        cells: also the test images' per-cell truth, as `data_prep synth
            --cells` writes it (test_cells/<Id>.png, test_cells.csv); the
            images are the same with or without it.

    Returns:
        dict with out_dir, num_train, num_test, size, seed and
        train_label_counts (images per class in train, 28 ints).
    """
    if num_train < 0 or num_test < 0:
        raise ValueError("num_train and num_test must be >= 0")
    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    workers = workers or os.cpu_count() or 1
    train = _write_split(out, "train", num_train, size, seed, workers)
    test = _write_split(out, "test", num_test, size, seed, workers, cells=cells)
    if cells:
        synthetic.write_cell_truth(out, test)
        test = [(image_id, labels) for image_id, labels, _ in test]
    counts = synthetic.write_label_csvs(out, train, test)  # the same layout as the demo's generator
    summary = dict(out_dir=str(out), num_train=num_train, num_test=num_test, size=size, seed=seed)
    return {**summary, "train_label_counts": counts.tolist()}


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m bench.hpa_like",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--out", required=True, help="output folder (Kaggle layout)")
    parser.add_argument("--train", type=int, default=1500, help="number of training images")
    parser.add_argument("--test", type=int, default=300, help="number of test images")
    parser.add_argument("--size", type=int, default=128, help="image side in pixels (>= 32)")
    parser.add_argument("--seed", type=int, default=0, help="seed; the same seed gives identical files")
    parser.add_argument("--workers", type=int, default=os.cpu_count(), help="rendering processes")
    parser.add_argument(
        "--cells",
        action="store_true",
        help="also the test images' per-cell truth (test_cells/<Id>.png, test_cells.csv)",
    )
    args = parser.parse_args(argv)
    start = time.perf_counter()
    summary = generate_dataset(args.out, args.train, args.test, args.size, args.seed, args.workers, args.cells)
    print(
        f"wrote {args.train} train + {args.test} test images of {args.size} px to {summary['out_dir']} "
        f"in {time.perf_counter() - start:.1f} s"
    )


if __name__ == "__main__":
    # Run the importable module's main, so spawned workers pickle bench.hpa_like functions.
    from bench.hpa_like import main as _main

    _main()
