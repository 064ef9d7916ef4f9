"""Where a head's dural sinuses and choroid plexus are: CE-T1 structures often called tumour.

On a contrast-enhanced T1 scan the superior sagittal sinus, the torcular, the transverse and
straight sinuses and the glomus of the choroid plexus (in the atria of the lateral ventricles)
are as bright as an enhancing tumour. The first built-in model, trained with a sagittal sinus
only above the brain's centre and scattered choroid specks, marked exactly these on the real
CE-T1 scans (the posterior sagittal sinus, the torcular, both transverse sinuses and both
glomera: ``benchmarks/real_scans.py``). This module derives their course from a head's brain
mask, once per head, as centreline points with a radius, so that every synthesised slab in any
plane can draw them (label 0) by a distance query.

The anatomy is approximate by design (rays cast from the brain's centre to its outline in the
midsagittal and in one axial plane); each sample then varies calibre, brightness and presence.
numpy/scipy only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi
from scipy.spatial import cKDTree

from .anatomy import Head


@dataclass
class Vessel:
    """One venous structure: centreline points (N, 3) in head voxels and its radius range (mm)."""

    name: str
    points: np.ndarray
    radius: tuple[float, float]
    tree: cKDTree | None = None

    def __post_init__(self) -> None:
        self.tree = cKDTree(self.points)


def _outline_point(mask2d: np.ndarray, origin: np.ndarray, direction: np.ndarray,
                   offset: float) -> np.ndarray | None:
    """The last mask pixel along a ray from ``origin``, pushed ``offset`` mm further out."""
    steps = np.arange(0, max(mask2d.shape) * 1.5, 0.5)
    pts = origin[None] + steps[:, None] * direction[None]
    idx = np.round(pts).astype(int)
    ok = ((idx >= 0) & (idx < np.array(mask2d.shape))).all(axis=1)
    idx, steps = idx[ok], steps[ok]
    inside = mask2d[idx[:, 0], idx[:, 1]]
    if not inside.any():
        return None
    last = steps[np.nonzero(inside)[0].max()]
    return origin + (last + offset) * direction


def _densify(points: list[np.ndarray], step: float = 1.0) -> np.ndarray:
    """Sample a polyline every ``step`` mm."""
    out = []
    for a, b in zip(points[:-1], points[1:], strict=False):
        n = max(1, int(np.ceil(np.linalg.norm(b - a) / step)))
        out.extend(a + (b - a) * t for t in np.linspace(0, 1, n, endpoint=False))
    out.append(points[-1])
    return np.asarray(out, np.float32)


def venous_structures(head: Head) -> list[Vessel]:
    """The sinuses and choroid glomera of ``head`` (cached on the head object)."""
    cached = getattr(head, "_venous", None)
    if cached is not None:
        return cached
    brain = head.brain
    cx, cy, cz = (float(v) for v in head.centroid)
    mid = int(round(head.midline_x))
    out: list[Vessel] = []
    # Superior sagittal sinus: along the midsagittal outline from the frontal pole over the
    # vertex to the occipital pole and down to the torcular, 1-3 mm outside the brain.
    sag = brain[max(mid - 2, 0):mid + 3].any(axis=0)  # (Y, Z)
    origin = np.array([cy, cz])
    sss = []
    for deg in np.arange(15, 216, 3.0):  # 0 deg = anterior, 90 = up, 180 = posterior
        t = np.deg2rad(deg)
        p = _outline_point(sag, origin, np.array([np.cos(t), np.sin(t)]), 2.0)
        if p is not None:
            sss.append(np.array([mid, p[0], p[1]], np.float32))
    if len(sss) > 5:
        out.append(Vessel("superior sagittal sinus", _densify(sss), (2.0, 4.5)))
        torcular = sss[-1]
        # Transverse sinuses: from the torcular around the brain's back, both sides, in the
        # axial plane of the torcular, then (sigmoid) down and forwards.
        z = int(np.clip(round(float(torcular[2])) + 4, 0, brain.shape[2] - 1))
        axial = brain[:, :, max(z - 1, 0):z + 2].any(axis=2)  # (X, Y)
        if axial.any():
            o = np.array([cx, cy])
            for side in (-1, 1):
                arc = [torcular]
                for deg in np.arange(0, 91, 4.0):  # 0 = straight back, 90 = lateral
                    t = np.deg2rad(deg)
                    p = _outline_point(axial, o, np.array([side * np.sin(t), -np.cos(t)]), 2.0)
                    if p is not None:
                        arc.append(np.array([p[0], p[1], z - deg / 90 * 6], np.float32))
                if len(arc) > 4:
                    end = arc[-1]
                    arc.append(end + np.array([0.0, 12.0, -18.0], np.float32))  # sigmoid
                    out.append(Vessel(f"transverse sinus {'LR'[side > 0]}", _densify(arc),
                                      (2.0, 4.0)))
        # Straight sinus: from behind the splenium (vein of Galen) down to the torcular.
        galen = np.array([mid, cy - 12, cz + 6], np.float32)
        out.append(Vessel("straight sinus", _densify([galen, torcular]), (1.5, 3.0)))
    # Choroid plexus glomus: the atrium of each lateral ventricle (dark CSF deep in the brain,
    # behind the centre, off the midline).
    x, y, _ = np.indices(brain.shape, sparse=True)
    csf = brain & (head.depth > 10) & (head.image < 0.55 * head.wm) & (y < cy + 5)
    for side in (-1, 1):
        part = csf & ((x - mid) * side > 6)
        lab, n = ndi.label(part)
        if n == 0:
            continue
        sizes = np.bincount(lab.ravel())[1:]
        pts = np.argwhere(lab == 1 + int(sizes.argmax())).astype(np.float32)
        if len(pts) < 30:
            continue
        back = pts[pts[:, 1] <= np.percentile(pts[:, 1], 35)]  # its posterior part: the atrium
        # the glomus is a tuft about 1 cm across, not a cast of the whole atrium
        glomus = back[np.linalg.norm(back - back.mean(axis=0), axis=1) <= 4.0]
        if len(glomus) >= 5:
            out.append(Vessel(f"choroid glomus {'LR'[side > 0]}",
                              glomus[:: max(1, len(glomus) // 200)], (1.5, 3.5)))
    head._venous = out  # type: ignore[attr-defined]
    return out


def paint_venous(image: np.ndarray, grid: np.ndarray, head: Head, exclude: np.ndarray,
                 rng: np.random.Generator, p: float = 0.75) -> np.ndarray:
    """Brighten each structure (with probability ``p``) in a slab, in place; label stays 0.

    ``grid`` is the slab's (3, ...) voxel coordinates in the head, ``exclude`` (slab-shaped)
    where nothing is painted (the tumour). Returns the painted mask.
    """
    pts = grid.reshape(3, -1).T
    painted = np.zeros(pts.shape[0], bool)
    for v in venous_structures(head):
        if rng.random() >= p:
            continue
        r = rng.uniform(*v.radius)
        lo, hi = pts.min(axis=0) - r - 1, pts.max(axis=0) + r + 1
        near = ((v.points >= lo) & (v.points <= hi)).all(axis=1)
        if not near.any():
            continue
        d, _ = v.tree.query(pts, distance_upper_bound=r + 1.0)
        sel = (d < r + 1.0) & ~exclude.reshape(-1)
        if not sel.any():
            continue
        # partial-volume edge: full brightness inside r, fading over the last mm
        w = np.clip(r + 0.5 - d[sel], 0, 1)
        flat = image.reshape(-1)
        target = head.wm * rng.uniform(1.2, 2.0)
        flat[sel] = flat[sel] + w * np.maximum(target - flat[sel], 0)
        painted[np.nonzero(sel)[0][w > 0.5]] = True
    return painted.reshape(image.shape)
