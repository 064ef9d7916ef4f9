"""Segmentation metrics: confusion counts first, scores second (numpy only, no torch).

Two ways to summarise a set of images, both reported (the study used the first):

- **pooled**: add up the confusion counts of all pixels of all images, then score once;
- **per image**: score each image, then mean and standard deviation.

Empty-mask conventions (written down because they change the numbers):

- nothing predicted and nothing true: precision = recall = F1 = IoU = 1 (perfect agreement),
  HD95 = 0;
- nothing predicted, tumour present: precision = 0, recall = 0, F1 = 0;
- something predicted, no tumour: precision = 0, recall = 1 (nothing was missed), F1 = 0;
- HD95 is undefined (NaN) when exactly one of the two masks is empty; per-image means skip NaN
  and say how many images were skipped.

F1 equals Dice. Accuracy is always reported next to the all-background baseline (tumour covers
~1.5 % of a slice, so predicting nothing already scores ~98.5 %).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

SCORES = ("precision", "recall", "f1", "iou", "accuracy", "specificity")


@dataclass(frozen=True)
class Counts:
    """Pixel confusion counts (tumour = positive)."""

    tp: int = 0
    fp: int = 0
    fn: int = 0
    tn: int = 0

    def __add__(self, other: Counts) -> Counts:
        return Counts(self.tp + other.tp, self.fp + other.fp, self.fn + other.fn,
                      self.tn + other.tn)

    @property
    def total(self) -> int:
        """All pixels counted."""
        return self.tp + self.fp + self.fn + self.tn


def confusion(pred: np.ndarray, target: np.ndarray) -> Counts:
    """Count TP/FP/FN/TN of two same-shape masks (non-zero = tumour)."""
    pred = np.asarray(pred)
    target = np.asarray(target)
    if pred.shape != target.shape:
        raise ValueError(f"prediction {pred.shape} and target {target.shape} differ in shape")
    p = pred.astype(bool)
    t = target.astype(bool)
    tp = int(np.count_nonzero(p & t))
    fp = int(np.count_nonzero(p)) - tp
    fn = int(np.count_nonzero(t)) - tp
    return Counts(tp, fp, fn, p.size - tp - fp - fn)


def scores(c: Counts) -> dict[str, float]:
    """Precision, recall, F1 (= Dice), IoU, accuracy and specificity from counts."""
    both_empty = c.tp + c.fp + c.fn == 0
    return {
        "precision": c.tp / (c.tp + c.fp) if c.tp + c.fp else (1.0 if c.fn == 0 else 0.0),
        "recall": c.tp / (c.tp + c.fn) if c.tp + c.fn else 1.0,
        "f1": 1.0 if both_empty else 2 * c.tp / (2 * c.tp + c.fp + c.fn),
        "iou": 1.0 if both_empty else c.tp / (c.tp + c.fp + c.fn),
        "accuracy": (c.tp + c.tn) / c.total if c.total else 1.0,
        "specificity": c.tn / (c.tn + c.fp) if c.tn + c.fp else 1.0,
    }


def _surface(mask: np.ndarray) -> np.ndarray:
    return mask & ~ndi.binary_erosion(mask, border_value=0)


def hd95(pred: np.ndarray, target: np.ndarray,
         spacing: Sequence[float] | None = None) -> float:
    """95 % Hausdorff distance between the surfaces of two masks, in mm (pixel units default).

    The 95th percentile of the distances from each surface to the other, the larger of the two
    (MONAI's convention). 0 when both are empty, NaN when exactly one is.
    """
    p = np.asarray(pred).astype(bool)
    t = np.asarray(target).astype(bool)
    if p.shape != t.shape:
        raise ValueError(f"prediction {p.shape} and target {t.shape} differ in shape")
    if not p.any() and not t.any():
        return 0.0
    if not p.any() or not t.any():
        return float("nan")
    sp = np.ones(p.ndim) if spacing is None else np.asarray(spacing, float)
    sp_ = _surface(p)
    st = _surface(t)
    d_to_t = ndi.distance_transform_edt(~st, sampling=sp)[sp_]
    d_to_p = ndi.distance_transform_edt(~sp_, sampling=sp)[st]
    return float(max(np.percentile(d_to_t, 95), np.percentile(d_to_p, 95)))


@dataclass(frozen=True)
class Evaluation:
    """Metrics of a set of images.

    Attributes
    ----------
    pooled : dict
        Scores of the summed confusion counts (the study's way), plus ``background_accuracy``:
        the accuracy of predicting no tumour at all.
    per_image_mean, per_image_sd : dict
        Mean and standard deviation over images of each score and ``hd95``.
    per_image : list of dict
        Each image's scores.
    hd95_undefined : int
        Images skipped in the HD95 mean (exactly one mask empty).
    counts : Counts
        The summed counts.
    """

    pooled: dict[str, float]
    per_image_mean: dict[str, float]
    per_image_sd: dict[str, float]
    per_image: list[dict[str, float]]
    hd95_undefined: int
    counts: Counts

    @property
    def n(self) -> int:
        """Number of images."""
        return len(self.per_image)


def evaluate(pairs: Iterable[tuple[np.ndarray, np.ndarray]],
             spacing: Sequence[float] | None = None, with_hd95: bool = True) -> Evaluation:
    """Evaluate ``(prediction, target)`` mask pairs pooled and per image.

    Parameters
    ----------
    pairs : iterable of (np.ndarray, np.ndarray)
        Same-shape masks (non-zero = tumour), 2D or 3D.
    spacing : sequence of float, optional
        Pixel size in mm for HD95.
    with_hd95 : bool
        Skip the (slower) surface distance when False.
    """
    total = Counts()
    rows: list[dict[str, float]] = []
    for pred, target in pairs:
        c = confusion(pred, target)
        total = total + c
        row = scores(c)
        if with_hd95:
            row["hd95"] = hd95(pred, target, spacing)
        rows.append(row)
    if not rows:
        raise ValueError("no images to evaluate")
    pooled = scores(total)
    pooled["background_accuracy"] = (total.tn + total.fp) / total.total if total.total else 1.0
    keys = [*SCORES, "hd95"] if with_hd95 else list(SCORES)
    mean, sd = {}, {}
    undefined = 0
    for k in keys:
        v = np.array([r[k] for r in rows], dtype=float)
        if k == "hd95":
            undefined = int(np.isnan(v).sum())
            v = v[~np.isnan(v)]
        mean[k] = float(v.mean()) if v.size else float("nan")
        sd[k] = float(v.std(ddof=1)) if v.size > 1 else 0.0
    return Evaluation(pooled, mean, sd, rows, undefined, total)


# --------------------------------------------------------------------------- lesions


@dataclass(frozen=True)
class Lesion:
    """One connected component of a tumour mask: a row of the lesion table.

    Attributes
    ----------
    number : int
        1 for the largest lesion, 2 for the next, ... (ties keep scan order).
    voxels : int
        Voxels (pixels for a 2D mask) in the component.
    size_mm : float
        Volume in mm³ for a ``(Z, Y, X)`` mask, area in mm² for a ``(Y, X)`` mask.
    unit : str
        ``"mm3"`` or ``"mm2"``.
    diameter_mm : float
        Longest diameter: the largest distance between two voxel centres of the component, in
        mm (0 for a single voxel; in 3D for a volume, so it can exceed any in-plane diameter).
    mean_probability : float
        Mean tumour probability over the component's voxels; NaN without a probability map.
    centre : tuple of int
        Voxel index of the component's centre of mass, rounded. Along each axis it lies within
        ``bbox``; along the first axis of a volume that slice holds part of the lesion.
    bbox : tuple of (int, int)
        ``(first, last)`` voxel index per axis, inclusive.
    """

    number: int
    voxels: int
    size_mm: float
    unit: str
    diameter_mm: float
    mean_probability: float
    centre: tuple[int, ...]
    bbox: tuple[tuple[int, int], ...]

    def slices(self, axis: int = 0) -> tuple[int, int]:
        """``(first, last)`` slice index of the lesion along ``axis`` (inclusive)."""
        return self.bbox[axis]


def _longest_diameter(points: np.ndarray) -> float:
    """Largest distance between two of ``points`` ``(N, D)`` in mm."""
    from scipy.spatial import ConvexHull
    from scipy.spatial.distance import pdist

    if len(points) < 2:
        return 0.0
    if len(points) > 1000 and len(points) > points.shape[1] + 1:
        # The farthest pair lies on the convex hull; "QJ" (joggle) also handles flat lesions
        # (one slice of a volume), whose hull is degenerate.
        points = points[ConvexHull(points, qhull_options="QJ").vertices]
    return float(pdist(points).max())


def lesion_table(mask: np.ndarray, spacing: Sequence[float] | None = None,
                 probability: np.ndarray | None = None) -> list[Lesion]:
    """Describe each connected lesion of a tumour mask, largest first.

    Components are face-connected (6-connectivity in 3D, 4 in 2D), the same as the rest of the
    package (``largest_lesion_centre``, ``keep="largest"``); the mask itself is never relabelled.

    Parameters
    ----------
    mask : np.ndarray
        ``(Y, X)`` slice or ``(Z, Y, X)`` volume; non-zero = tumour.
    spacing : sequence of float, optional
        Voxel size in mm per axis (default 1 mm).
    probability : np.ndarray, optional
        float tumour probability (0-1) of ``mask``'s shape, for the mean probability column.

    Returns
    -------
    list of Lesion
        Empty for an empty mask.

    Raises
    ------
    ValueError
        A mask that is not 2D/3D, a spacing of the wrong length or not positive, or a probability
        map of another shape.
    """
    m = np.asarray(mask) > 0
    if m.ndim not in (2, 3):
        raise ValueError(f"expected a (Y, X) or (Z, Y, X) mask, got shape {m.shape}")
    sp = np.ones(m.ndim) if spacing is None else np.asarray(spacing, float)
    if sp.shape != (m.ndim,) or not np.all(sp > 0):
        raise ValueError(f"spacing must be {m.ndim} positive numbers (mm per axis), got "
                         f"{tuple(np.atleast_1d(sp))}")
    if probability is not None and np.shape(probability) != m.shape:
        raise ValueError(f"probability map {np.shape(probability)} does not match the mask "
                         f"{m.shape}")
    labels, n = ndi.label(m)
    if n == 0:
        return []
    voxel_mm = float(np.prod(sp))
    unit = "mm3" if m.ndim == 3 else "mm2"
    found = []
    for i, box in enumerate(ndi.find_objects(labels), start=1):
        comp = labels[box] == i
        offset = np.array([s.start for s in box])
        edge = comp & ~ndi.binary_erosion(comp)  # the farthest pair lies on the surface
        points = (np.argwhere(edge) + offset) * sp
        centre = np.array(ndi.center_of_mass(comp)) + offset
        lo = offset
        hi = np.array([s.stop - 1 for s in box])
        centre = np.clip(np.round(centre).astype(int), lo, hi)
        mean_p = (float(np.asarray(probability)[box][comp].mean()) if probability is not None
                  else float("nan"))
        voxels = int(comp.sum())
        found.append((voxels, i, _longest_diameter(points), mean_p, tuple(int(c) for c in centre),
                      tuple((int(a), int(b)) for a, b in zip(lo, hi, strict=True))))
    found.sort(key=lambda f: (-f[0], f[1]))
    return [Lesion(k, v, v * voxel_mm, unit, d, p, c, b)
            for k, (v, _i, d, p, c, b) in enumerate(found, start=1)]


def corrected_slices(prediction: np.ndarray, labels: np.ndarray, axis: int = 0) -> list[int]:
    """Indices along ``axis`` of the slices where ``labels`` differ from ``prediction``.

    Both are label arrays of one shape (``(Y, X)`` gives ``[0]`` or ``[]``); any non-zero
    value is tumour.
    """
    pred, lab = np.asarray(prediction) != 0, np.asarray(labels) != 0
    if pred.shape != lab.shape:
        raise ValueError(f"labels {lab.shape} and prediction {pred.shape} differ in shape")
    if pred.ndim == 2:
        return [0] if (pred != lab).any() else []
    diff = np.moveaxis(pred != lab, axis, 0).reshape(pred.shape[axis], -1).any(axis=1)
    return [int(i) for i in np.flatnonzero(diff)]
