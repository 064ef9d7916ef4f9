"""Binary morphology sized in millimetres, for anisotropic voxels (numpy and scipy only).

A radius in mm becomes an ellipsoid in voxels from the spacing, so a 5 mm erosion of a scan with
1 x 1 x 3 mm voxels reaches 5 mm along every axis. Small radii run as binary erosion/dilation
with that ellipsoid; large ones as a Euclidean distance transform (same result, much faster).
Used by the classical skull strip (:mod:`napari_brainseg.skullstrip`).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi


def ball(mm: float, sp: np.ndarray) -> np.ndarray | None:
    """Ellipsoid structuring element of radius ``mm``, or None when it would be large.

    Parameters
    ----------
    mm : float
        Radius in mm.
    sp : np.ndarray
        Voxel size in mm per axis.

    Returns
    -------
    np.ndarray or None
        bool ellipsoid of ``2 * floor(mm / sp) + 1`` voxels per axis; None above 400 voxels,
        where a distance transform is faster.
    """
    half = np.floor(mm / sp).astype(int)
    if np.prod(2 * half + 1) > 400:
        return None
    grids = np.ogrid[tuple(slice(-h, h + 1) for h in half)]
    return sum((g * d) ** 2 for g, d in zip(grids, sp, strict=True)) <= mm**2 + 1e-9


def erode(mask: np.ndarray, mm: float, sp: np.ndarray) -> np.ndarray:
    """Erode a bool mask by ``mm`` (voxel size ``sp`` mm per axis); the border counts as inside."""
    element = ball(mm, sp)
    if element is not None:
        return ndi.binary_erosion(mask, element, border_value=1)
    return ndi.distance_transform_edt(mask, sampling=sp) > mm


def dilate(mask: np.ndarray, mm: float, sp: np.ndarray) -> np.ndarray:
    """Dilate a bool mask by ``mm`` (voxel size ``sp`` mm per axis)."""
    element = ball(mm, sp)
    if element is not None:
        return ndi.binary_dilation(mask, element)
    return ndi.distance_transform_edt(~mask, sampling=sp) <= mm


def touching(mask: np.ndarray, seed: np.ndarray) -> np.ndarray:
    """Keep the connected components of ``mask`` that overlap ``seed``."""
    labels, _ = ndi.label(mask)
    keep = np.unique(labels[seed & mask])
    return np.isin(labels, keep[keep > 0])


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """Fill the holes of a bool mask; a volume's also slice by slice.

    Ventricles open to the surface in 3D are closed in 2D.
    """
    out = ndi.binary_fill_holes(mask)
    if mask.ndim == 3:
        for z in range(out.shape[0]):
            out[z] = ndi.binary_fill_holes(out[z])
    return out
