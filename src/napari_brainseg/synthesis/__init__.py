"""Realistic training data for the built-in tumour model: synthetic CE-T1 tumours on real heads.

- :mod:`.anatomy`: real heads at 1 mm in RAS order, with the masks and landmarks that place
  tumours by anatomy;
- :mod:`.tumours`: glioma, meningioma, metastases, pituitary adenoma, mass effect, and the normal
  CE-T1 enhancement a model must leave alone;
- :mod:`.acquisition`: thick slices, field of view, resolution, bias, noise and contrast.

:func:`training_slice` puts the three together: one random 2D training pair, in any plane, on the
model's grid. numpy/scipy only (no torch); ``synthetic.py`` stays the small phantom generator.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from napari_brainseg.preprocess import estimate_pixel_mm
from napari_brainseg.synthetic import make_phantom

from .acquisition import add_blobs, add_vessels, degrade, resample_to_grid, thick_slice
from .anatomy import Head, load_head, load_heads, save_heads
from .tumours import TUMOUR_KINDS, plan_lesions, synth_slab

__all__ = ["Head", "TUMOUR_KINDS", "TrainingSlice", "load_head", "load_heads", "save_heads",
           "training_slice"]

#: How often each kind is drawn for a slice that has a tumour.
KIND_WEIGHTS = {"glioma": 0.3, "meningioma": 0.35, "metastases": 0.2, "pituitary": 0.15}


@dataclass(frozen=True)
class TrainingSlice:
    """One synthetic training pair on the model's grid."""

    image: np.ndarray   # (size, size) float32
    tumour: np.ndarray  # (size, size) uint8
    kind: str           # tumour kind, "none" or "phantom-..."
    plane: int          # axis of the head the slice was cut across (0 x, 1 y, 2 z)
    thickness: int      # mm


def training_slice(heads: list[Head], rng: np.random.Generator, size: int = 256,
                   tumour_fraction: float = 0.55, phantom_fraction: float = 0.06,
                   ) -> TrainingSlice:
    """Draw one random training slice (1 mm pixels on a ``size`` grid)."""
    if rng.random() < phantom_fraction:
        return _phantom_slice(rng, size)
    head = heads[int(rng.integers(len(heads)))]
    axis = int(rng.integers(3))
    thickness = int(rng.choice([1, 1, 1, 2, 3, 4, 5, 6, 7]))
    lesions = []
    kind = "none"
    if rng.random() < tumour_fraction:
        kind = str(rng.choice(list(KIND_WEIGHTS), p=list(KIND_WEIGHTS.values())))
        lesions = plan_lesions(head, kind, rng)
        first = lesions[0]
        centre = first.centre[axis] + rng.uniform(-0.75, 0.75) * first.radius * \
            first.axes.max()
    else:
        idx = np.nonzero(np.moveaxis(head.brain, axis, -1).any(axis=(0, 1)))[0]
        lo, hi = idx.min() - 10, idx.max() + 5
        centre = rng.uniform(lo, hi)
    n = head.image.shape[axis]
    start = int(np.clip(round(centre - thickness / 2), 0, n - thickness))
    slab = synth_slab(head, axis, start, thickness, lesions, rng)
    image, label = thick_slice(slab.image, slab.tumour)
    brain = slab.brain.any(axis=-1)
    intracranial = slab.intracranial.any(axis=-1)
    head2d = image > 0.15 * head.wm
    if rng.random() < 0.8:
        add_vessels(image, ndi.binary_dilation(brain, iterations=2) & ~label &
                    (rng.random(image.shape) < 0.3), head.wm, rng)
    if rng.random() < 0.5:
        add_blobs(image, head2d & ~intracranial, head.wm, rng, int(rng.integers(1, 4)))
    if rng.random() < 0.12:  # already skull-stripped input
        keep = ndi.binary_dilation(brain | label, iterations=1)
        image = np.where(keep, image, 0)
    scale = rng.uniform(0.85, 1.2)
    img, lab = resample_to_grid(image, label.astype(np.float32), size, scale,
                                rng.normal(0, 0.2), tuple(rng.normal(0, 12, 2)),
                                int(rng.integers(4)), bool(rng.random() < 0.5))
    img = degrade(img, rng)
    if rng.random() < 0.1:  # partial field of view
        cut = int(rng.integers(size // 6, size // 3))
        side = int(rng.integers(4))
        sl = [slice(None), slice(None)]
        sl[side % 2] = slice(0, cut) if side < 2 else slice(size - cut, size)
        img[tuple(sl)] = 0
        lab[tuple(sl)] = False
    return TrainingSlice(img, lab.astype(np.uint8), kind, axis, thickness)


def _phantom_slice(rng: np.random.Generator, size: int) -> TrainingSlice:
    """A synthetic phantom (the demo data), put on the grid the way unknown-size slices are."""
    shape = (int(rng.choice([256, 512])), int(rng.choice([256, 512, 800])))
    ph = make_phantom(shape, "random", seed=int(rng.integers(1 << 30)),
                      skull=bool(rng.random() < 0.5))
    scale = estimate_pixel_mm(ph.image)  # grid pixels (1 mm) per phantom pixel
    img, lab = resample_to_grid(ph.image, ph.tumour.astype(np.float32), size, scale,
                                0.0, (0.0, 0.0), 0, False)
    return TrainingSlice(img.astype(np.float32), lab.astype(np.uint8),
                         f"phantom-{ph.tumour_type}", 2, 1)
