"""Intensity normalisation and slicing of volumes into 2D (numpy only, no torch).

The same normalisation runs at training and at prediction time; its settings are stored in every
checkpoint so that a model is always fed what it was trained on.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import numpy as np

NormMethod = Literal["percentile", "zscore", "divide255"]

#: Default normalisation: 1st-99th percentile of the non-zero pixels to [0, 1] (clipped at 1.5).
#: Robust to 8-bit PNG, 16-bit DICOM and float NIfTI alike, and to a zero background.
DEFAULT_NORMALISATION: dict[str, Any] = {"method": "percentile", "low": 1.0, "high": 99.0}


#: Methods a checkpoint may name: :func:`normalise`'s three, and the 2D skull-strip model's
#: own (``skullstrip_learned.normalise_slice``, applied by that module, never by ``normalise``).
NORMALISATION_METHODS = ("percentile", "zscore", "divide255",
                         "skullstrip_learned.normalise_slice")


def check_normalisation(settings: Any) -> dict[str, Any]:
    """Validate normalisation settings (as stored in a checkpoint) and return them as a dict.

    Parameters
    ----------
    settings : Any
        Expected: a mapping like :data:`DEFAULT_NORMALISATION`; ``None`` or ``{}`` mean the
        default.

    Raises
    ------
    ValueError
        Not a mapping, an unknown method, or percentiles that are not ``0 <= low < high <= 100``.
    """
    if settings is None:
        return {}
    if not isinstance(settings, Mapping):
        raise ValueError(f"normalisation must be a dict like {DEFAULT_NORMALISATION}, got "
                         f"{type(settings).__name__} {settings!r:.60}")
    s = dict(settings)
    if not s:
        return s
    method = s.get("method", "percentile")
    if method not in NORMALISATION_METHODS:
        raise ValueError(f"unknown normalisation method {method!r:.40}; use percentile, zscore "
                         "or divide255")
    if method == "percentile":
        low, high = s.get("low", 1.0), s.get("high", 99.0)
        if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in (low, high)) \
                or not 0.0 <= low < high <= 100.0:  # also refuses NaN
            raise ValueError(f"normalisation percentiles must satisfy 0 <= low < high <= 100, "
                             f"got low={low!r:.20}, high={high!r:.20}")
    return s


def normalise(image: np.ndarray, settings: Mapping[str, Any] | None = None) -> np.ndarray:
    """Normalise one slice's intensities for the network.

    Parameters
    ----------
    image : np.ndarray
        ``(Y, X)`` slice, any real dtype.
    settings : mapping, optional
        ``{"method": "percentile", "low": 1, "high": 99}`` (default), ``{"method": "zscore"}``
        (mean 0, sd 1 over non-zero pixels) or ``{"method": "divide255"}`` (the study's 1/255).

    Returns
    -------
    np.ndarray
        float32 array of the same shape.
    """
    s = dict(DEFAULT_NORMALISATION if settings is None else settings)
    img = np.asarray(image, dtype=np.float32)
    method = s.get("method", "percentile")
    if method == "divide255":
        return img / 255.0
    fg = img[img != 0]
    if fg.size < 16:
        fg = img.ravel()
    if method == "percentile":
        lo, hi = np.percentile(fg, [float(s.get("low", 1.0)), float(s.get("high", 99.0))])
        if hi <= lo:
            return np.zeros_like(img)
        return np.clip((img - lo) / (hi - lo), 0.0, 1.5).astype(np.float32)
    if method == "zscore":
        sd = float(fg.std())
        return ((img - float(fg.mean())) / (sd if sd > 0 else 1.0)).astype(np.float32)
    raise ValueError(
        f"unknown normalisation method {method!r}; use percentile, zscore or divide255")


def slices_of(volume: np.ndarray, axis: int = 0) -> list[np.ndarray]:
    """Return the 2D slices of a ``(Z, Y, X)`` volume along ``axis`` (views, no copies)."""
    if volume.ndim == 2:
        return [volume]
    if volume.ndim != 3:
        raise ValueError(f"expected a 2D slice or 3D volume, got shape {volume.shape}")
    return [np.take(volume, i, axis=axis) for i in range(volume.shape[axis])]


def annotated_indices(labels: np.ndarray, axis: int = 0) -> list[int]:
    """Indices of the slices along ``axis`` that hold any non-zero label (the annotated ones)."""
    if labels.ndim == 2:
        return [0] if labels.any() else []
    other = tuple(a for a in range(3) if a != axis)
    return [int(i) for i in np.flatnonzero(labels.any(axis=other))]


#: Typical largest extent of an adult head on a slice (mm): front-back on axial and sagittal
#: slices. Used only to guess the pixel size of images that carry none (PNG, JPEG, figshare .mat).
HEAD_EXTENT_MM = 190.0


def estimate_pixel_mm(image: np.ndarray) -> float:
    """Guess the pixel size (mm) of a head slice without geometry from the head's extent.

    The head is the largest connected region above 10 % of the 99th percentile; its bounding
    box's longer side is taken to be :data:`HEAD_EXTENT_MM`. Clipped to 0.2-3 mm; 1 mm when no
    head is found. Adult heads differ by about +-15 %, which the model's training covers.
    """
    from scipy import ndimage as ndi

    img = np.asarray(image, np.float32)
    if img.ndim != 2 or img.size == 0:
        raise ValueError(f"estimate_pixel_mm needs a 2D slice, got shape {img.shape}")
    top = float(np.percentile(img, 99))
    if not np.isfinite(top) or top <= 0:
        return 1.0
    fg = ndi.binary_opening(img > 0.1 * top, iterations=2)
    labels, n = ndi.label(fg)
    if n == 0:
        return 1.0
    sizes = np.bincount(labels.ravel())[1:]
    box = ndi.find_objects((labels == int(np.argmax(sizes)) + 1).astype(np.uint8))[0]
    side = max(b.stop - b.start for b in box)
    if side < 16:
        return 1.0
    return float(np.clip(HEAD_EXTENT_MM / side, 0.2, 3.0))


def t1_contrast_ratio(image: np.ndarray, brain: np.ndarray,
                      spacing: tuple[float, ...] | None = None) -> float | None:
    """Median intensity of the deep brain over that of the cortical rim.

    Deep: 12 mm or more inside the brain; rim: 1-3 mm inside its surface. None when the brain
    is too small to tell.

    On T1 (with or without contrast) white matter is brighter than grey matter, so the ratio is
    above 1; on T2, FLAIR and PD grey matter is the brighter one and the ratio is below 1.
    """
    from scipy import ndimage as ndi

    brain = np.asarray(brain, bool)
    if brain.sum() < 1000:
        return None
    depth = ndi.distance_transform_edt(brain, sampling=spacing)
    img = np.asarray(image, np.float32)
    rim, deep = img[(depth >= 1) & (depth <= 3)], img[depth >= 12]
    if rim.size < 100 or deep.size < 100:
        return None
    rim_median = float(np.median(rim))
    return float(np.median(deep)) / rim_median if rim_median > 0 else None


#: Below this :func:`t1_contrast_ratio` a scan does not look like a T1. Measured: 1.70-2.47 on
#: the four T1 heads in ../shared/data, 1.11-1.21 on the two contrast-enhanced T1 scans (enhancing
#: dura and vessels brighten the rim); with grey and white matter swapped, 0.34-0.46.
T1_MIN_RATIO = 0.95


def contrast_warning(image: np.ndarray, brain: np.ndarray,
                     spacing: tuple[float, ...] | None = None) -> str | None:
    """A one-line warning when a scan does not look like a T1 (None when it does)."""
    ratio = t1_contrast_ratio(image, brain, spacing)
    if ratio is None or ratio >= T1_MIN_RATIO:
        return None
    return (f"this scan does not look like a T1 (deep brain / cortex intensity {ratio:.2f}, "
            "T1 is above 1): grey matter is brighter than white matter, as on T2, FLAIR or PD. "
            "The built-in model was trained for contrast-enhanced T1; its result is unreliable.")


def foreground(volume: np.ndarray) -> np.ndarray | None:
    """The voxels of a skull-stripped volume above its background, holes filled: bool.

    None when nothing is background (every voxel above the minimum, or none): the volume is
    then not a stripped one and has no brain to find this way.
    """
    from scipy import ndimage as ndi

    vol = np.asarray(volume)
    fg = vol > vol.min()
    if fg.all() or not fg.any():
        return None
    return ndi.binary_fill_holes(fg)
