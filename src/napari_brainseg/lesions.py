"""Tumour masks measured: size (mm², mm³ or pixels), the largest lesion and its centre (numpy).

Used by inference (:mod:`napari_brainseg.predict`), folder runs and the widgets, which can
measure a mask without loading torch.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage as ndi


def tumour_size(mask: np.ndarray, spacing: Sequence[float] | None = None,
                known: bool = True) -> tuple[int, float, str]:
    """Return ``(voxels, size, unit)``: area in mm² for a 2D mask, volume in mm³ for 3D.

    ``known=False`` says ``spacing`` is a placeholder (a PNG, JPEG, TIFF or .mat has no pixel
    size): the size is then the count itself, in ``"px"`` (2D) or ``"vox"`` (3D), rather than
    a count of pixels passed off as mm².
    """
    n = int(np.count_nonzero(mask))
    if not known:
        return n, float(n), "px" if mask.ndim == 2 else "vox"
    sp = [1.0] * mask.ndim if spacing is None else [float(s) for s in spacing]
    return n, n * float(np.prod(sp)), "mm2" if mask.ndim == 2 else "mm3"


#: How each unit of :func:`tumour_size` reads on screen.
UNIT_TEXT = {"mm2": "mm²", "mm3": "mm³", "px": "pixels", "vox": "voxels", "": ""}


def largest_lesion_centre(mask: np.ndarray) -> tuple[int, ...] | None:
    """Voxel index of the centre of the largest connected lesion (None if the mask is empty)."""
    if not np.any(mask):
        return None
    big = largest_component(np.asarray(mask) > 0)
    return tuple(int(round(c)) for c in ndi.center_of_mass(big))


def largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest connected component of a mask, as bool (the mask itself when it has one)."""
    labels, n = ndi.label(mask)
    if n <= 1:
        return mask.astype(bool)
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    return labels == int(np.argmax(sizes))
