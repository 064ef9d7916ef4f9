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
