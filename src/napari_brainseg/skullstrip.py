"""Classical skull stripping for T1 MRI: no trained weights, nothing downloaded.

Deep-learning strippers (HD-BET, SynthStrip) fetch weights at run time, which hospital networks
and offline machines cannot; this one is intensity thresholds and morphology sized in millimetres:

1. robust intensity normalisation over the head (2nd-98th percentiles); volumes are processed at
   about 2 mm (block means) and the smooth mask is interpolated back;
2. a tissue mask: smoothed image above the lower three-class Otsu threshold inside the head (dark
   bone, CSF and air | grey matter | white matter and fat), moved by ``tightness``;
3. erosion by ``erode_mm`` (ellipsoids sized in mm from the spacing, so anisotropic voxels are
   handled) cuts the thin bridges between brain and scalp/skull/eyes;
4. components lying shallow under the head's surface are scalp; of the rest the brain is kept (in
   3D the largest; in 2D the one scoring best on size and closeness to the head's centre, plus
   other lobes as deep under the surface, such as temporal lobes beside the cerebellum);
5. it is grown back by a conditional dilation inside the tissue mask (never into dark bone), then
   closed to fill sulci, holes are filled and the boundary is smoothed.

Enhancing tumours are brighter than brain, so they lie inside the tissue mask and are kept; an
already stripped input (zero outside the brain) is recognised and returned essentially unchanged.
"""

from __future__ import annotations

import logging
from collections.abc import Generator, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
from scipy import ndimage as ndi

from .morphology import dilate, erode, fill_holes, touching

log = logging.getLogger(__name__)

#: Eroded tissue whose median depth under the head's surface is below ``erode_mm`` plus this
#: margin (mm) is scalp: eroded scalp sits just below the erosion depth, eroded brain lies under
#: skull and CSF too.
SCALP_MARGIN_MM = 5.0
#: In 2D, other components join the brain when their median depth is at least this fraction of
#: the chosen component's (temporal lobes beside the cerebellum; not eyes or muscles).
DEPTH_RATIO = 0.6
#: Largest erosion, closing or smoothing radius accepted (mm): a head is about 200 mm across.
MAX_MM = 50.0
#: Intensity spread (interquartile range of the normalised image) at which a 2D component's score
#: halves: grey and white matter spread about 0.05, face and neck tissue (fat and muscle) 0.15+.
IQR_SCALE = 0.08


@dataclass(frozen=True)
class SkullStripParams:
    """Parameters of :func:`skull_strip` (defaults tuned on Colin27 and the phantoms).

    Attributes
    ----------
    tightness : float
        0 to 1. Higher moves the tissue threshold up (a tighter mask, less CSF and dura); 0.5 is
        Otsu's threshold. Like BET's fractional intensity threshold.
    erode_mm : float
        Erosion depth that cuts brain-skull bridges (mm).
    close_mm : float
        Closing radius that fills sulci at the surface (mm).
    smooth_mm : float
        Gaussian sigma of the final boundary smoothing (mm); 0 disables it.
    """

    tightness: float = 0.5
    erode_mm: float = 5.0
    close_mm: float = 4.0
    smooth_mm: float = 1.5


def check_image(image: np.ndarray,
                spacing: Sequence[float] | None) -> tuple[np.ndarray, np.ndarray]:
    """Check a slice or volume for stripping; return it as float32 and its spacing array.

    Raises
    ------
    ValueError
        Not 2D/3D, too small, constant, NaN/Inf or bad spacing; the message says what to do.
    TypeError
        Non-numeric data.
    """
    image = np.asarray(image)
    if image.ndim not in (2, 3):
        raise ValueError(
            f"skull_strip needs a 2D (Y, X) slice or a 3D (Z, Y, X) volume, got shape {image.shape}"
            "; for 4D data pick one volume first."
        )
    if min(image.shape[-2:]) < 8 or (image.ndim == 3 and image.shape[0] < 1):
        raise ValueError(f"image of shape {image.shape} is too small to skull strip (need 8x8+)")
    if not np.issubdtype(image.dtype, np.number) or np.iscomplexobj(image):
        raise TypeError(f"image must be real-valued numbers, got dtype {image.dtype}")
    if not np.isfinite(image).all():
        raise ValueError("image contains NaN or infinite values; replace them first (the reader "
                         "does this when it opens a file)")
    if float(image.max()) == float(image.min()):
        raise ValueError("image is constant; there is no brain to find")
    if spacing is None:
        sp = np.ones(image.ndim)
    else:
        sp = np.asarray(spacing, dtype=float)
        if sp.shape != (image.ndim,) or np.any(sp <= 0) or not np.isfinite(sp).all():
            raise ValueError(f"spacing must be {image.ndim} positive numbers (mm), got {spacing}")
    return image.astype(np.float32, copy=False), sp


def _otsu(values: np.ndarray, classes: int = 2) -> float:
    """Otsu's threshold; with ``classes=3`` the lower of the two (dark tissue vs grey matter)."""
    from skimage.filters import threshold_multiotsu, threshold_otsu

    if values.size > 2_000_000:  # a regular subsample gives the same histogram, much faster
        values = values[:: values.size // 1_000_000]
    if values.size == 0 or values.min() == values.max():
        return float(values.mean()) if values.size else 0.0
    if classes == 2 or np.unique(values[:10_000]).size < 3 * classes:
        return float(threshold_otsu(values))
    return float(threshold_multiotsu(values, classes=classes)[0])


def _pick_brain(seed: np.ndarray, head: np.ndarray, sp: np.ndarray, erode_mm: float,
                smooth: np.ndarray) -> np.ndarray | None:
    """Choose the brain among the eroded tissue components.

    Scalp components reach the head's outer surface (the brain sits under at least skull and CSF),
    so components near it are set aside. In 3D the largest of the rest is the brain. In 2D, score
    by size, closeness to the head's centre (eyes, muscles and fat pads of low slices are
    off-centre) and homogeneity (brain is grey and white matter; the face mixes fat and muscle),
    then add components lying as deep and as homogeneous (temporal lobes beside the cerebellum).
    """
    labels, n = ndi.label(seed)
    if n == 0:
        return None
    idx = np.arange(1, n + 1)
    # Depth under the head's surface; where the field of view cuts the head (neck, face) counts as
    # surface too, so neck muscles running off the image do not pass for deep tissue.
    depth = ndi.distance_transform_edt(np.pad(head, 1), sampling=sp)[
        tuple(slice(1, -1) for _ in head.shape)]
    area = np.bincount(labels.ravel(), minlength=n + 1)[1:] * float(np.prod(sp))
    # Median, not minimum: the brain may touch the surface where the field of view cuts the neck.
    # Only components of at least 1 % of the largest can be the brain (specks are skipped: fast).
    med_depth = np.zeros(n)
    for j in np.flatnonzero(area >= 0.01 * area.max()):
        med_depth[j] = np.median(depth[labels == idx[j]])
    inner = med_depth > erode_mm + SCALP_MARGIN_MM
    if not inner.any():
        return None  # only scalp survived the erosion
    if seed.ndim == 3:
        return labels == idx[int(np.argmax(np.where(inner, area, -1)))]
    # Mean distance of a component's pixels from the head's centre, in head radii: a ring of scalp
    # has its centroid at the centre but its pixels far out.
    head_c = np.array(ndi.center_of_mass(head)) * sp
    grids = np.ogrid[tuple(slice(0, s) for s in head.shape)]
    radial = np.sqrt(sum(((g * d) - c) ** 2 for g, d, c in zip(grids, sp, head_c, strict=True)))
    head_r = np.sqrt(head.sum() * np.prod(sp) / np.pi)
    mean_r = np.asarray(ndi.mean(radial, labels, idx)) / max(head_r, 1e-6)
    # Interquartile range of (normalised, smoothed) intensity: robust to a tumour inside the brain.
    iqr = np.full(n, np.inf)
    for j in np.flatnonzero(inner):
        q25, q75 = np.percentile(smooth[labels == idx[j]], [25, 75])
        iqr[j] = q75 - q25
    score = np.where(inner, area * np.exp(-4.0 * mean_r**2) / (1 + (iqr / IQR_SCALE) ** 2), -1)
    best = int(np.argmax(score))
    keep = labels == idx[best]
    for j in range(n):
        # Other lobes of the same slice lie as deep under the surface as the chosen one.
        if (j != best and inner[j] and area[j] > 0.03 * area[best]
                and med_depth[j] >= DEPTH_RATIO * med_depth[best]
                and iqr[j] <= 2 * iqr[best] + 0.02):
            keep |= labels == idx[j]
    return keep


def _stripped_region(image: np.ndarray, brain: np.ndarray, sp: np.ndarray) -> np.ndarray | None:
    """Return the non-background region when ``image`` was skull stripped already, else None.

    A stripped scan has a constant background (its minimum) right against the brain: the brain
    found by thresholds reaches the edge of the non-background region along most of it. In a head,
    scalp and skull (5 mm or more) always lie between the brain and that edge.
    """
    fg = image > image.min()
    if fg.mean() > 0.9 or not brain.any():
        return None
    # Cheap early exit for a head: on some side the brain's bounding box stops well inside the
    # non-background's (scalp and skull lie between), where the field of view does not cut.
    for axis in range(image.ndim):
        other = tuple(a for a in range(image.ndim) if a != axis)
        f_idx = np.flatnonzero(fg.any(axis=other))
        b_idx = np.flatnonzero(brain.any(axis=other))
        gap_lo = (b_idx[0] - f_idx[0]) * sp[axis] if f_idx[0] > 0 else 0.0
        gap_hi = (f_idx[-1] - b_idx[-1]) * sp[axis] if f_idx[-1] < image.shape[axis] - 1 else 0.0
        if max(gap_lo, gap_hi) > 8.0:
            return None
    fg = touching(ndi.binary_fill_holes(fg), brain)
    rim = fg & ~erode(fg, 2.0, sp)
    inside = np.zeros(fg.shape, bool)  # where the field of view cuts the head is no real edge
    inside[tuple(slice(3, -3) for _ in fg.shape)] = True
    rim &= inside
    if not rim.any():
        return None
    # 5 mm: the CSF a stripped brain keeps at its edge is thinner; scalp + skull are thicker.
    reached = (rim & dilate(brain, 5.0, sp)).sum() / rim.sum()
    return fg if reached >= 0.6 else None


def skull_strip(
    image: np.ndarray,
    spacing: Sequence[float] | None = None,
    tightness: float = SkullStripParams.tightness,
    erode_mm: float = SkullStripParams.erode_mm,
    close_mm: float = SkullStripParams.close_mm,
    smooth_mm: float = SkullStripParams.smooth_mm,
    work_mm: float | None = None,
) -> np.ndarray:
    """Return a brain mask of a T1 slice or volume.

    Parameters
    ----------
    image : np.ndarray
        ``(Y, X)`` slice or ``(Z, Y, X)`` volume, any real dtype, finite values.
    spacing : sequence of float, optional
        Voxel size in mm per axis (default 1 mm). Morphology is sized in mm from it.
    tightness : float
        0 to 1, default 0.5 (Otsu). Higher gives a tighter mask.
    erode_mm, close_mm, smooth_mm : float
        See :class:`SkullStripParams`.
    work_mm : float, optional
        Resolution the morphology runs at: finer voxels are averaged in blocks to about this size
        and the smooth mask is interpolated back. Default 2 mm for volumes (8x fewer voxels for a
        1 mm scan, with the final smoothing the loss is small) and full resolution for slices.

    Returns
    -------
    np.ndarray
        bool mask of ``image``'s shape, True inside the brain.

    Raises
    ------
    ValueError
        Not 2D/3D, too small, constant, NaN/Inf, bad spacing or parameters.
    TypeError
        Non-numeric image.
    """
    from .progress import drain

    return drain(_iter_classical(image, spacing, tightness, erode_mm, close_mm, smooth_mm,
                                 work_mm))


#: Progress steps of the classical method: normalise, head and tissue, cut bridges, grow back,
#: smooth, back to full resolution.
CLASSICAL_STAGES = 6


def _iter_classical(image: np.ndarray, spacing: Sequence[float] | None, tightness: float,
                    erode_mm: float, close_mm: float, smooth_mm: float,
                    work_mm: float | None) -> Generator[tuple[int, int], None, np.ndarray]:
    """:func:`skull_strip`, yielding ``(stage, CLASSICAL_STAGES)`` as each stage ends."""
    img, sp = check_image(image, spacing)
    if not 0.0 <= tightness <= 1.0:  # also refuses NaN
        raise ValueError(f"tightness must be between 0 and 1, got {tightness}")
    for name, mm in (("erode_mm", erode_mm), ("close_mm", close_mm), ("smooth_mm", smooth_mm)):
        if not 0.0 <= mm <= MAX_MM:
            raise ValueError(f"{name} must be between 0 and {MAX_MM:g} mm, got {mm}")
    if work_mm is None:
        work_mm = 2.0 if img.ndim == 3 else 0.0
    factors = tuple(max(1, int(work_mm // s)) for s in sp) if work_mm > 0 else (1,) * img.ndim
    params = SkullStripParams(tightness, erode_mm, close_mm, smooth_mm)
    if max(factors) == 1:
        soft, stripped = yield from _strip_soft(img, sp, params)
        brain = soft > 0.5
    else:
        from skimage.transform import downscale_local_mean

        # Block means keep a stripped scan's background at exactly its minimum.
        small = downscale_local_mean(img, factors, cval=float(img.min())).astype(np.float32)
        soft, stripped = yield from _strip_soft(small, sp * np.array(factors), params)
        brain = _upsample_linear(soft, factors, img.shape) > 0.5
    if stripped:
        log.info("input looks skull stripped already; returning its non-background region")
        brain = touching(ndi.binary_fill_holes(img > img.min()), brain)
    yield CLASSICAL_STAGES, CLASSICAL_STAGES
    return brain


def _upsample_linear(small: np.ndarray, factors: Sequence[int],
                     shape: Sequence[int]) -> np.ndarray:
    """Linear interpolation of block means back to ``shape``, one axis at a time.

    Written out (two gathers and a blend per axis) because it is 3-4x faster than
    ``scipy.ndimage.zoom``/``skimage.transform.resize`` for integer factors, and the mask is
    thresholded straight after.
    """
    out = small
    for axis, (f, n) in enumerate(zip(factors, shape, strict=True)):
        if f == 1 and out.shape[axis] == n:
            continue
        x = (np.arange(n) + 0.5) / f - 0.5  # block centres in source index units
        x = np.clip(x, 0, out.shape[axis] - 1)
        i0 = np.floor(x).astype(int)
        i1 = np.minimum(i0 + 1, out.shape[axis] - 1)
        w = (x - i0).astype(np.float32)
        wshape = [1] * out.ndim
        wshape[axis] = n
        w = w.reshape(wshape)
        out = np.take(out, i0, axis=axis) * (1 - w) + np.take(out, i1, axis=axis) * w
    return out


def _strip_soft(img: np.ndarray, sp: np.ndarray, p: SkullStripParams,
                ) -> Generator[tuple[int, int], None, tuple[np.ndarray, bool]]:
    """Run the pipeline; return the smoothed (float, 0-1) brain mask and "was already stripped".

    Yields ``(stage, CLASSICAL_STAGES)`` after stages 1-5 (an early return skips the rest).
    """
    n = CLASSICAL_STAGES
    # 1. Robust normalisation over the non-background part of the field of view.
    body = img > np.percentile(img, 1)
    lo, hi = np.percentile(img[body], [2, 98]) if body.any() else (img.min(), img.max())
    norm = np.clip((img - lo) / max(hi - lo, 1e-6), 0, 1.2)
    smooth = ndi.gaussian_filter(norm, sigma=np.maximum(1.0 / sp, 0.5))
    yield 1, n

    # 2. Head and tissue masks.
    head_t = 0.5 * _otsu(smooth)
    head = ndi.binary_fill_holes(smooth > head_t)
    if head.sum() < 64:  # a speck, not a head
        return np.zeros(img.shape, np.float32), False
    # Three classes in a T1 head: dark (bone, CSF, air), grey matter, white matter and fat.
    tissue_t = _otsu(smooth[head], classes=3)
    tissue_t = tissue_t * (0.6 + 0.8 * p.tightness)  # 0.5 -> Otsu; 0 -> 0.6x; 1 -> 1.4x
    tissue = (smooth > tissue_t) & head
    yield 2, n

    # 3-4. Cut bridges, keep the brain.
    # A small or thin brain section (top of the head, a lateral sagittal slice) may not survive
    # the erosion: retry gentler before concluding that the slice holds no brain.
    for depth_mm in (p.erode_mm, p.erode_mm / 2):
        seed = _pick_brain(erode(tissue, depth_mm, sp), head, sp, depth_mm, smooth)
        if seed is not None:
            break
    else:
        return np.zeros(img.shape, np.float32), False
    yield 3, n

    # 5. Grow back inside tissue, close sulci, fill holes, smooth.
    brain = touching(dilate(seed, p.erode_mm + 1.0, sp) & tissue, seed)
    if p.close_mm > 0:
        brain = erode(dilate(brain, p.close_mm, sp), p.close_mm, sp)
    brain = fill_holes(brain) & head
    yield 4, n
    if _stripped_region(img, brain, sp) is not None:
        return brain.astype(np.float32), True
    soft = brain.astype(np.float32)
    if p.smooth_mm > 0:
        soft = ndi.gaussian_filter(soft, sigma=p.smooth_mm / sp)
    yield 5, n
    return soft * head, False


StripMode = Literal["auto", "3d", "slices"]
#: ``learned``: deepbet for volumes, the package's 2D U-Net for slices
#: (:mod:`napari_brainseg.skullstrip_learned`, imports torch); ``classical``: :func:`skull_strip`.
StripMethod = Literal["learned", "classical"]
DEFAULT_METHOD: StripMethod = "learned"


def iter_skull_strip(
    image: np.ndarray,
    spacing: Sequence[float] | None = None,
    mode: StripMode = "auto",
    method: StripMethod = DEFAULT_METHOD,
    affine: np.ndarray | None = None,
    keep_enhancing: bool = True,
    **params: float,
) -> Generator[tuple[int, int], None, np.ndarray]:
    """Skull strip with progress: yields ``(done, total)`` steps and returns the bool mask.

    Parameters
    ----------
    image : np.ndarray
        ``(Y, X)`` or ``(Z, Y, X)``.
    spacing : sequence of float, optional
        Voxel size in mm per axis.
    mode : {"auto", "3d", "slices"}
        ``auto`` strips a slice in 2D and a volume in 3D; ``slices`` strips each ``(Y, X)`` slice of
        a volume on its own (for stacks of unrelated slices).
    method : {"learned", "classical"}
        ``learned`` (default): deepbet on volumes, the 2D U-Net on slices; ``classical``:
        thresholds and morphology (:func:`skull_strip`, tuned on Colin27).
    affine : np.ndarray, optional
        4x4 index-to-RAS matrix of a volume: the learned 3D method uses it to see the head in
        its training orientation (display order assumed without it).
    keep_enhancing : bool
        Add the outside part of an enhancing lesion mostly inside the mask
        (:func:`include_enhancing`), so that tumours at the brain's edge stay in.
    **params
        :class:`SkullStripParams` fields (classical method only).
    """
    image = np.asarray(image)
    if mode not in ("auto", "3d", "slices"):
        raise ValueError(f"mode must be 'auto', '3d' or 'slices', got {mode!r}")
    if method not in ("learned", "classical"):
        raise ValueError(f"method must be 'learned' or 'classical', got {method!r}")
    if mode == "3d" and image.ndim != 3:
        raise ValueError(f"mode '3d' needs a (Z, Y, X) volume, got shape {image.shape}")
    img, sp = check_image(image, spacing)
    if method == "learned" and params:
        raise ValueError(f"{sorted(params)} apply to the classical method only")
    extra = 1 if keep_enhancing else 0  # the last step: enhancing lesions at the edge
    if method == "learned":
        from . import skullstrip_learned as learned  # torch: only when asked for

        if img.ndim == 3 and mode != "slices":
            steps, total = learned.iter_strip_volume(img, affine), learned.VOLUME_STAGES
        elif img.ndim == 3:
            steps, total = learned.iter_strip_slices(img, sp), img.shape[0]
        else:
            steps, total = _one_step(learned.strip_slice, img, sp), 1
    elif mode == "slices" and img.ndim == 3:
        steps, total = _iter_classical_slices(img, sp, params), img.shape[0]
    else:
        p = {**asdict(SkullStripParams()), **params}
        steps = _iter_classical(img, sp, p["tightness"], p["erode_mm"], p["close_mm"],
                                p["smooth_mm"], None)
        total = CLASSICAL_STAGES
    yield 0, total + extra
    while True:
        try:
            done, total = next(steps)
        except StopIteration as stop:
            mask = stop.value
            break
        yield done, total + extra
    if img.ndim == 2 and mask.ndim == 3:
        mask = mask[0]
    if keep_enhancing:
        mask = include_enhancing(mask, img, sp)
        yield total + extra, total + extra
    return mask


def _one_step(fn: Any, *args: Any) -> Generator[tuple[int, int], None, np.ndarray]:
    """``fn(*args)`` as a one-step progress generator."""
    mask = fn(*args)
    yield 1, 1
    return mask


def _iter_classical_slices(img: np.ndarray, sp: np.ndarray, params: dict[str, float],
                           ) -> Generator[tuple[int, int], None, np.ndarray]:
    """Classical strip of each ``(Y, X)`` slice of a volume on its own; yields slices done."""
    mask = np.zeros(img.shape, bool)
    for z in range(img.shape[0]):
        if img[z].max() > img[z].min():
            mask[z] = skull_strip(img[z], sp[1:], **params)
        yield z + 1, img.shape[0]
    return mask


def run_skull_strip(image: np.ndarray, spacing: Sequence[float] | None = None,
                    mode: StripMode = "auto", method: StripMethod = DEFAULT_METHOD,
                    affine: np.ndarray | None = None, keep_enhancing: bool = True,
                    **params: float) -> np.ndarray:
    """Drive :func:`iter_skull_strip` to the end and return the mask."""
    from .progress import drain

    return drain(iter_skull_strip(image, spacing, mode, method, affine, keep_enhancing,
                                  **params))


#: Voxels brighter than the brain's median plus this many times its (p90 - median) spread are
#: "enhancing" for :func:`include_enhancing` (white matter in a plain or contrast T1 stays below).
ENHANCING_SPREAD = 2.5
#: Radius (mm) of the opening that separates a lesion from thin bright vessels and dura.
OPEN_MM = 2.0
#: Bright voxels outside the brain mask up to this far (mm) from such a lesion's core are added.
LESION_REACH_MM = 10.0


def include_enhancing(mask: np.ndarray, image: np.ndarray,
                      spacing: Sequence[float] | None = None, reach_mm: float = 6.0,
                      min_volume_mm3: float = 500.0) -> np.ndarray:
    """Add the outside part of an enhancing lesion that is mostly inside the brain mask.

    A meningioma's dural tail or a glioma at the cortex can cross the edge a stripper draws; for
    tumour segmentation such a lesion is brain. A bright component (see
    :data:`ENHANCING_SPREAD`) of at least ``min_volume_mm3`` that lies at least half inside
    ``mask`` gets its voxels within ``reach_mm`` outside the mask added. Vessels, sinuses and
    scalp fat lie mostly outside the brain and are left alone.

    Parameters
    ----------
    mask : np.ndarray
        bool ``(Y, X)`` or ``(Z, Y, X)`` brain mask.
    image : np.ndarray
        The scan, same shape, any units.
    spacing : sequence of float, optional
        Voxel size in mm per axis (default 1 mm).
    reach_mm : float
        How far outside the mask (mm) lesion voxels are added.
    min_volume_mm3 : float
        Smallest lesion considered (mm³; mm² for a slice).

    Returns
    -------
    np.ndarray
        bool mask, a superset of ``mask``.
    """
    mask = np.asarray(mask, bool)
    img = np.asarray(image, np.float32)
    if img.shape != mask.shape:
        raise ValueError(f"mask shape {mask.shape} differs from image shape {img.shape}")
    if mask.sum() < 100:
        return mask
    sp = np.ones(img.ndim) if spacing is None else np.asarray(spacing, float)
    p50, p90 = np.percentile(img[mask], [50, 90])
    # Work inside the mask's bounding box plus the reach (distance transforms of a whole head
    # cost seconds).
    pad = np.ceil(reach_mm / sp).astype(int) + 1
    lo = np.maximum(np.min(np.nonzero(mask), axis=1) - pad, 0)
    hi = np.minimum(np.max(np.nonzero(mask), axis=1) + pad + 1, mask.shape)
    box = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
    full, mask, img = mask, mask[box], img[box]
    near = ndi.distance_transform_edt(~mask, sampling=sp) <= reach_mm
    # Only the shell within reach: scalp fat and marrow further out would join everything up.
    bright = (img > p50 + ENHANCING_SPREAD * max(p90 - p50, 1e-6)) & near
    # An opening cuts the thin vessels and dura that join a lesion to everything else bright.
    blobs = dilate(erode(bright, OPEN_MM, sp), OPEN_MM, sp) & bright
    labels, n = ndi.label(blobs)
    if n == 0:
        return full
    voxel = float(np.prod(sp))
    total = np.bincount(labels.ravel(), minlength=n + 1)
    inside = np.bincount(labels[mask], minlength=n + 1)
    keep = np.flatnonzero((total * voxel >= min_volume_mm3) & (inside >= 0.5 * total))
    keep = keep[keep > 0]
    if len(keep) == 0:
        return full
    # The lesion's bright surroundings across the edge (a dural tail, a partial-volume rim), but
    # not the whole bright shell it may touch through the falx or a sinus.
    lesion = np.isin(labels, keep)
    zone = ndi.distance_transform_edt(~lesion, sampling=sp) <= LESION_REACH_MM
    added = touching(bright & zone, lesion) & ~mask
    if added.any():
        log.info("kept %d voxels of enhancing lesion outside the brain mask", int(added.sum()))
    out = full.copy()
    out[box] |= added
    return out


def apply_mask(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Return ``image`` with everything outside ``mask`` set to the image minimum."""
    if image.shape != mask.shape:
        raise ValueError(f"mask shape {mask.shape} differs from image shape {image.shape}")
    return np.where(mask, image, image.min()).astype(image.dtype, copy=False)
