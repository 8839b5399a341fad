"""The synthetic cells' geometry and optics: a scene of 1-4 cells with their
nuclei, microtubules and ER, drawn supersampled, and the camera that turns a
drawn channel into an 8-bit image (`data_prep.synthetic` composes them)."""

import cv2
import numpy as np

_SUPERSAMPLE = 2  # draw at 2x and average down: sub-pixel shapes at 64 px
_SUPERSAMPLE_UNTIL = 256  # from this size shapes span pixels enough; 4x faster
_SHIFT = 4  # cv2 fixed-point bits, so positions are not snapped to the grid
_DRAW = {"lineType": cv2.LINE_8, "shift": _SHIFT}


def unit(theta):
    return np.stack([np.cos(theta), np.sin(theta)], axis=-1)


class Scene:
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

    def polygon(self, layer, pts, value):
        """A filled convex polygon through the points `pts`."""
        cv2.fillConvexPoly(layer, self._fix(pts), float(value), **_DRAW)


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


class Cell:
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
        dirs = unit(np.asarray(theta, float))
        s_n, s_c = self._rim_lengths(dirs)
        return self.ncenter + dirs * (s_n + np.asarray(frac) * (s_c - s_n))[..., None]

    def npoint(self, theta, r):
        """Nucleus coordinates (angle, fraction of the nuclear radius) -> xy."""
        dirs = unit(np.asarray(theta, float))
        return self.ncenter + dirs * (np.asarray(r) * self._rim_lengths(dirs)[0])[..., None]

    def sample(self, rng, n, lo=0.08, hi=0.92, perinuclear=False):
        """n points spread over the cytoplasm by area (or crowded near the nucleus)."""
        dirs = unit(rng.uniform(0, 2 * np.pi, n))
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


def place_cells(scene):
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
        scene.cells.append(Cell(scene, best, (a, b), rng.uniform(0, np.pi)))
    scene.nuclei = np.any([c.rn <= 1 for c in scene.cells], axis=0)
    er_net = np.exp(-((scene.noise(size / 45) / 0.45) ** 2))  # zero crossings: a reticulum
    for c in scene.cells:
        c.cyto = ((c.frac >= 0) & (c.frac <= 1) & ~scene.nuclei).astype(np.float32)
        c.er = c.cyto * (0.25 + 0.75 * er_net) * (1 - 0.7 * np.clip(c.frac, 0, 1))


def reference_stains(scene):
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


def finish(scene, channel):
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
