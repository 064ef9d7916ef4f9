"""Learned skull stripping: deepbet for 3D volumes, the package's own 2D U-Net for single slices.

Why two networks:

- **Volumes** go to `deepbet <https://github.com/wwu-mmll/deepbet>`_ (Fisch et al., 2024; MIT,
  pinned in ``pyproject.toml``). It measured Dice 0.966-0.968 on real heads this project never
  tuned on, in a few seconds on a laptop CPU (``benchmarks/skullstrip_real.py``). Its two
  TorchScript networks ship inside its wheel and are loaded by deepbet itself with
  ``torch.jit.load`` from ``site-packages/data/models/``; nothing is downloaded. This module hands
  it the voxels in RAS orientation (what it was trained on) and applies deepbet's own
  post-processing (largest component, void filling).
- **Single 2D slices** (the study's data are 512x512 clinical slices, in any plane) have no 3D
  context, and no 3D tool serves them. ``models/skullstrip_unet2d.pt`` is the study's U-Net
  (:class:`napari_brainseg.model.UNet`, loaded with ``weights_only=True``) trained by
  ``scripts/train_skullstrip_model.py`` on slices of real heads in all three planes, with
  SynthStrip-style randomised contrast, bias, noise, thick-slice partial volume and synthetic
  contrast-enhanced structures (vessels, dura, enhancing lesions at the brain's edge, which are
  labelled brain so that tumours stay inside the mask).

A slice is put on a fixed square *canvas* before the network sees it: the head's bounding box
(any field of view, any matrix) is centred, padded to a square in millimetres (so anisotropic
pixels are handled) and resampled to ``CANVAS`` pixels. Training and inference share
:func:`to_canvas` / :func:`from_canvas`, so they cannot drift apart.

This module imports torch at import time; :mod:`napari_brainseg.skullstrip` imports it only when
the learned method is asked for, so the classical method and file reading stay torch-free.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage as ndi

from .model import Checkpoint, load_checkpoint

log = logging.getLogger(__name__)

#: Side of the square canvas (pixels) the 2D network works on.
CANVAS = 160
#: Margin added around the head's bounding box on each side, as a fraction of its larger side.
MARGIN = 0.06
#: The shipped 2D model.
DEFAULT_2D_MODEL = Path(__file__).parent / "models" / "skullstrip_unet2d.pt"
#: Components of a 2D mask smaller than this fraction of the largest are dropped (eyes, specks);
#: larger ones stay (temporal lobes and cerebellum are separate pieces on low axial slices).
MIN_PIECE = 0.04


@dataclass(frozen=True)
class CanvasGeometry:
    """Where a canvas lies in its source slice (pixel units of the source).

    Attributes
    ----------
    shape : tuple of int
        Source slice shape ``(Y, X)``.
    centre : tuple of float
        Canvas centre in source pixel coordinates ``(y, x)``.
    step : tuple of float
        Size of one canvas pixel in source pixels ``(y, x)``.
    """

    shape: tuple[int, int]
    centre: tuple[float, float]
    step: tuple[float, float]


def normalise_slice(image: np.ndarray) -> np.ndarray:
    """Scale a slice so that background is about 0 and bright head tissue about 1.

    Parameters
    ----------
    image : np.ndarray
        ``(Y, X)`` float, any units (finite).

    Returns
    -------
    np.ndarray
        float32 ``(Y, X)``, clipped to ``[0, 1.5]``.
    """
    img = np.asarray(image, np.float32)
    lo = float(np.percentile(img, 0.5))
    head = img > lo + 0.1 * (float(np.percentile(img, 99.5)) - lo)
    hi = float(np.percentile(img[head], 99)) if head.sum() > 32 else float(img.max())
    return np.clip((img - lo) / max(hi - lo, 1e-6), 0.0, 1.5).astype(np.float32)


def head_box(norm: np.ndarray) -> tuple[int, int, int, int]:
    """Bounding box ``(y0, y1, x0, x1)`` of the head (the non-background pieces) in a slice.

    Parameters
    ----------
    norm : np.ndarray
        ``(Y, X)`` output of :func:`normalise_slice`.
    """
    smooth = ndi.gaussian_filter(norm, 1.0)
    fg = smooth > 0.12
    labels, n = ndi.label(fg)
    if n:
        sizes = np.bincount(labels.ravel())[1:]
        keep = np.flatnonzero(sizes >= max(0.005 * fg.size, 0.05 * sizes.max())) + 1
        fg = np.isin(labels, keep)
    if fg.sum() < 16:
        return 0, norm.shape[0], 0, norm.shape[1]
    ys, xs = np.nonzero(fg)
    return int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1


def canvas_geometry(norm: np.ndarray, spacing: Sequence[float] | None = None,
                    margin: float = MARGIN, size: int = CANVAS) -> CanvasGeometry:
    """Square (in mm) canvas around the head's bounding box; see :class:`CanvasGeometry`."""
    sy, sx = (1.0, 1.0) if spacing is None else (float(spacing[0]), float(spacing[1]))
    y0, y1, x0, x1 = head_box(norm)
    side_mm = max((y1 - y0) * sy, (x1 - x0) * sx) * (1.0 + 2.0 * margin)
    return CanvasGeometry(norm.shape, ((y0 + y1) / 2.0, (x0 + x1) / 2.0),
                          (side_mm / size / sy, side_mm / size / sx))


def _canvas_coords(geo: CanvasGeometry, size: int) -> tuple[np.ndarray, np.ndarray]:
    i = np.arange(size, dtype=np.float64) + 0.5 - size / 2.0
    return geo.centre[0] + i * geo.step[0] - 0.5, geo.centre[1] + i * geo.step[1] - 0.5


def to_canvas(image: np.ndarray, geo: CanvasGeometry, size: int = CANVAS,
              order: int = 1) -> np.ndarray:
    """Resample a ``(Y, X)`` slice onto the ``(size, size)`` canvas (zero outside the slice).

    Downsampling is anti-aliased with a Gaussian of half the step, like ``skimage``'s resize.
    """
    img = np.asarray(image, np.float32)
    sigma = [max(0.0, (s - 1.0) / 2.0) for s in geo.step]
    if order > 0 and max(sigma) > 0:
        img = ndi.gaussian_filter(img, sigma)
    yy, xx = _canvas_coords(geo, size)
    grid = np.meshgrid(yy, xx, indexing="ij")
    return ndi.map_coordinates(img, grid, order=order, mode="constant", cval=0.0).astype(
        np.float32)


def from_canvas(canvas: np.ndarray, geo: CanvasGeometry) -> np.ndarray:
    """Resample a ``(size, size)`` canvas (e.g. probabilities) back onto the source slice grid."""
    size = canvas.shape[0]
    ys = (np.arange(geo.shape[0]) + 0.5 - geo.centre[0]) / geo.step[0] + size / 2.0 - 0.5
    xs = (np.arange(geo.shape[1]) + 0.5 - geo.centre[1]) / geo.step[1] + size / 2.0 - 0.5
    grid = np.meshgrid(ys, xs, indexing="ij")
    return ndi.map_coordinates(canvas.astype(np.float32), grid, order=1, mode="constant",
                               cval=0.0)


def clean_mask_2d(mask: np.ndarray) -> np.ndarray:
    """Drop small pieces (see :data:`MIN_PIECE`) and fill holes of a 2D bool mask."""
    labels, n = ndi.label(mask)
    if n > 1:
        sizes = np.bincount(labels.ravel())[1:]
        mask = np.isin(labels, np.flatnonzero(sizes >= MIN_PIECE * sizes.max()) + 1)
    return ndi.binary_fill_holes(mask)


@functools.lru_cache(maxsize=4)
def load_strip_model(path: str | None = None) -> Checkpoint:
    """Load (once) the 2D skull-strip checkpoint; the shipped one by default."""
    p = Path(path) if path else DEFAULT_2D_MODEL
    ckpt = load_checkpoint(p)
    if ckpt.training.get("task") != "skull-strip":
        from .model import CheckpointError

        raise CheckpointError(f"{p.name}: not a skull-strip model (task "
                              f"{ckpt.training.get('task')!r}); pass a model trained by "
                              "scripts/train_skullstrip_model.py")
    return ckpt


def brain_probability_2d(images: Sequence[np.ndarray], spacing: Sequence[float] | None = None,
                         model_path: str | None = None, flip_tta: bool = False) -> list[np.ndarray]:
    """Brain probability of each ``(Y, X)`` slice with the 2D network.

    Parameters
    ----------
    images : sequence of np.ndarray
        ``(Y, X)`` slices, any real dtype and units (finite values).
    spacing : sequence of float, optional
        In-plane pixel size ``(dy, dx)`` in mm, shared by all slices (default square pixels).
    model_path : str, optional
        A skull-strip checkpoint; the shipped model by default.
    flip_tta : bool
        Also run the left-right mirrored slice and average (about 2x slower).

    Returns
    -------
    list of np.ndarray
        float32 ``(Y, X)`` probabilities in ``[0, 1]``.
    """
    from .skullstrip import check_image

    model = load_strip_model(model_path).model
    out = []
    for image in images:
        image, _ = check_image(image, spacing)
        if image.ndim != 2:
            raise ValueError(f"the 2D skull strip takes (Y, X) slices, got shape {image.shape}")
        norm = normalise_slice(image)
        geo = canvas_geometry(norm, spacing)
        x = torch.from_numpy(to_canvas(norm, geo))[None, None]
        with torch.inference_mode():
            p = torch.sigmoid(model(x))
            if flip_tta:
                p = 0.5 * (p + torch.sigmoid(model(x.flip(-1))).flip(-1))
        out.append(np.clip(from_canvas(p[0, 0].numpy(), geo), 0.0, 1.0))
    return out


def strip_slice(image: np.ndarray, spacing: Sequence[float] | None = None,
                model_path: str | None = None, flip_tta: bool = True) -> np.ndarray:
    """Brain mask of one ``(Y, X)`` slice with the 2D network; bool ``(Y, X)``.

    The left-right mirror is averaged in by default (``flip_tta``): on the held-out heads it
    raised the 10th-percentile slice Dice in 6 of 9 head/plane cells (by up to 0.012, Colin27
    axial), lowered it in 3 (by at most 0.006), for about 15 ms more per slice.
    """
    (prob,) = brain_probability_2d([image], spacing, model_path, flip_tta=flip_tta)
    return clean_mask_2d(prob > 0.5)


def iter_strip_slices(
    volume: np.ndarray, spacing: Sequence[float] | None = None, model_path: str | None = None,
) -> Generator[tuple[int, int], None, np.ndarray]:
    """Strip each ``(Y, X)`` slice of a ``(Z, Y, X)`` volume alone; yields ``(done, total)``."""
    sp2 = None if spacing is None else tuple(spacing)[1:]
    out = np.zeros(volume.shape, bool)
    for z in range(volume.shape[0]):
        if volume[z].max() > volume[z].min():
            out[z] = strip_slice(volume[z], sp2, model_path)
        yield z + 1, volume.shape[0]
    return out


# --------------------------------------------------------------------------- 3D: deepbet


def _to_ras(volume: np.ndarray, affine: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Reorder ``(Z, Y, X)`` voxels to RAS (deepbet's training orientation).

    Returns the RAS array and the nibabel orientation transform that takes it back. Without an
    affine the package's display order (L, P, I along x, y, z) is assumed.
    """
    import nibabel as nib

    if affine is None:
        from .volume import DISPLAY_AXCODES

        ornt_src = nib.orientations.axcodes2ornt(tuple(reversed(DISPLAY_AXCODES)))
    else:
        ornt_src = nib.orientations.io_orientation(np.asarray(affine, float))
    ras = nib.orientations.axcodes2ornt("RAS")
    forward = nib.orientations.ornt_transform(ornt_src, ras)
    back = nib.orientations.ornt_transform(ras, ornt_src)
    return nib.orientations.apply_orientation(volume, forward), back


@functools.lru_cache(maxsize=1)
def _deepbet() -> object:
    try:
        from deepbet import BrainExtraction
    except ImportError as exc:  # pragma: no cover - deepbet is a dependency
        raise RuntimeError("the learned 3D skull strip needs the 'deepbet' package: "
                           "pip install deepbet") from exc
    import warnings

    with warnings.catch_warnings():  # deepbet's own torch.jit.load call; nothing to act on
        warnings.filterwarnings("ignore", message=".*torch.jit.load.*", category=DeprecationWarning)
        return BrainExtraction(no_gpu=not torch.cuda.is_available())


#: Progress steps of the 3D strip: load deepbet, reorient, network, clean-up and back.
VOLUME_STAGES = 4


def strip_volume(volume: np.ndarray, affine: np.ndarray | None = None,
                 threshold: float = 0.5) -> np.ndarray:
    """Brain mask of a ``(Z, Y, X)`` head volume with deepbet (see :func:`iter_strip_volume`)."""
    from .progress import drain

    return drain(iter_strip_volume(volume, affine, threshold))


def iter_strip_volume(volume: np.ndarray, affine: np.ndarray | None = None,
                      threshold: float = 0.5) -> Generator[tuple[int, int], None, np.ndarray]:
    """Brain mask of a ``(Z, Y, X)`` head volume with deepbet, yielding ``(stage, 4)``.

    Parameters
    ----------
    volume : np.ndarray
        ``(Z, Y, X)`` float, any units and resolution (finite values).
    affine : np.ndarray, optional
        4x4 index-to-RAS matrix of ``volume`` (from :class:`~napari_brainseg.volume.Volume`); it
        is used only to present the voxels in RAS order. Without it, display order is assumed.
    threshold : float
        Probability above which a voxel is brain (deepbet's default 0.5).

    Returns
    -------
    np.ndarray
        bool ``(Z, Y, X)`` mask.

    Raises
    ------
    ValueError
        A volume with (almost) no foreground, where deepbet cannot find a head.
    """
    from .skullstrip import check_image

    volume, _ = check_image(volume, None)
    if volume.ndim != 3:
        raise ValueError(f"the 3D skull strip takes a (Z, Y, X) volume, got shape {volume.shape}")
    n = VOLUME_STAGES
    bet = _deepbet()
    yield 1, n
    ras, back = _to_ras(volume, affine)
    yield 2, n
    try:
        with torch.inference_mode():
            soft = bet.run_model(np.ascontiguousarray(ras))  # type: ignore[attr-defined]
        yield 3, n
        mask = bet.postprocess(soft > threshold)  # type: ignore[attr-defined]
    except (AssertionError, ValueError) as exc:
        raise ValueError(f"the learned skull strip found no head in this volume ({exc}); "
                         "check that it is a head scan, or use the classical method") from exc
    import nibabel as nib

    out = np.ascontiguousarray(nib.orientations.apply_orientation(mask.astype(bool), back))
    yield n, n
    return out
