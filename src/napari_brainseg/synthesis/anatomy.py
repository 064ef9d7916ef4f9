"""Real heads prepared for tumour synthesis: RAS voxel order, 1 mm voxels, derived masks.

A :class:`Head` holds one real T1 head and its brain mask, resampled once to 1 mm isotropic
voxels in RAS order (x = left->right, y = posterior->anterior, z = inferior->superior), plus what
the tumour generators need to place lesions by anatomy: the depth of every brain voxel below the
brain's surface, the intracranial space (brain + the CSF/dura shell around it), the brain's
surface voxels, the midline and the sella. numpy/scipy only (no torch).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

#: Thickness (mm) of the shell around the brain mask counted as intracranial (CSF, dura).
SHELL_MM = 3.0


@dataclass
class Head:
    """One real head at 1 mm in RAS order.

    Attributes
    ----------
    name : str
    image : np.ndarray
        ``(X, Y, Z)`` float32 T1 intensities.
    brain : np.ndarray
        ``(X, Y, Z)`` bool brain mask.
    wm : float
        White-matter intensity (the brain's 80th percentile: white matter is the brightest
        tissue of a T1 brain); every synthetic intensity is set relative to it.
    """

    name: str
    image: np.ndarray
    brain: np.ndarray
    wm: float = 0.0
    depth: np.ndarray = field(default=None, repr=False)  # type: ignore[assignment]
    intracranial: np.ndarray = field(default=None, repr=False)  # type: ignore[assignment]
    surface: np.ndarray = field(default=None, repr=False)  # type: ignore[assignment]
    sella: np.ndarray = field(default=None, repr=False)  # type: ignore[assignment]
    deep: np.ndarray = field(default=None, repr=False)  # type: ignore[assignment]
    cortex: np.ndarray = field(default=None, repr=False)  # type: ignore[assignment]
    midline_x: float = 0.0
    centroid: np.ndarray = field(default=None, repr=False)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        self.image = np.asarray(self.image, np.float32)
        self.brain = np.asarray(self.brain, bool)
        if self.image.shape != self.brain.shape or self.image.ndim != 3:
            raise ValueError(f"head {self.name}: image {self.image.shape} and brain mask "
                             f"{self.brain.shape} must be the same 3D shape")
        if self.brain.sum() < 10_000:
            raise ValueError(f"head {self.name}: brain mask has under 10 cm3")
        self.wm = float(np.percentile(self.image[self.brain], 80))
        if self.depth is None:
            self.depth = ndi.distance_transform_edt(self.brain).astype(np.float32)
        if self.intracranial is None:
            outside = ndi.distance_transform_edt(~self.brain)
            self.intracranial = outside <= SHELL_MM
        if self.surface is None:
            self.surface = np.argwhere(self.brain & (self.depth <= 1.5)).astype(np.int16)
        rng = np.random.default_rng(0)
        if self.deep is None:  # candidate glioma centres, 12 mm or more below the surface
            self.deep = _subsample(np.argwhere(self.depth >= 12), 20_000, rng)
        if self.cortex is None:  # metastases: near the grey-white junction, 4-20 mm deep
            self.cortex = _subsample(np.argwhere((self.depth >= 4) & (self.depth <= 20)),
                                     20_000, rng)
        self.centroid = np.array(ndi.center_of_mass(self.brain), np.float32)
        self.midline_x = float(self.centroid[0])
        if self.sella is None:
            self.sella = _sella(self.brain, self.midline_x)


def _subsample(points: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    if len(points) > n:
        points = points[rng.choice(len(points), n, replace=False)]
    return points.astype(np.int16)


def _sella(brain: np.ndarray, midline_x: float) -> np.ndarray:
    """A rough sella turcica: under the brain's midline base, a little in front of its centre.

    In the midline column the brain's lowest point in the middle third of its front-back extent
    is the floor of the third ventricle / optic chiasm; the pituitary sits just below it.
    """
    x = int(round(midline_x))
    sag = brain[max(x - 2, 0):x + 3].any(axis=0)  # (Y, Z)
    ys = np.nonzero(sag.any(axis=1))[0]
    y0, y1 = ys.min(), ys.max()
    lo_y, hi_y = int(y0 + 0.45 * (y1 - y0)), int(y0 + 0.65 * (y1 - y0))
    best = None
    for y in range(lo_y, hi_y + 1):
        zs = np.nonzero(sag[y])[0]
        if zs.size and (best is None or zs.min() > best[1]):
            # highest "lowest point": the notch of the suprasellar cistern
            best = (y, int(zs.min()))
    if best is None:
        best = ((y0 + y1) // 2, int(np.nonzero(sag.any(axis=0))[0].min()))
    return np.array([x, best[0], best[1]], np.float32)


def to_ras_1mm(data: np.ndarray, affine: np.ndarray, order: int = 1) -> np.ndarray:
    """Reorder voxels of a NIfTI array to RAS and resample to 1 mm isotropic."""
    import nibabel as nib

    ornt = nib.orientations.io_orientation(affine)
    ras = nib.orientations.apply_orientation(np.asarray(data), ornt)
    zooms = np.sqrt((np.asarray(affine)[:3, :3] ** 2).sum(axis=0))
    zooms = _permuted_zooms(zooms, ornt)
    if order == 0:
        return ndi.zoom(ras.astype(np.uint8), zooms, order=0) > 0
    return ndi.zoom(ras.astype(np.float32), zooms, order=order)


def _permuted_zooms(zooms: np.ndarray, ornt: np.ndarray) -> np.ndarray:
    out = np.zeros(3)
    for src, (dst, _flip) in enumerate(ornt):
        out[int(dst)] = zooms[src]
    return out


def load_head(name: str, image_path: Path, mask_path: Path | np.ndarray) -> Head:
    """Read a NIfTI head and its brain mask (a file, or an array on the image's grid)."""
    import nibabel as nib

    img = nib.load(str(image_path))
    data = np.asarray(img.dataobj, np.float32)
    if isinstance(mask_path, np.ndarray):
        mask = mask_path
    else:
        mask = np.asarray(nib.load(str(mask_path)).dataobj) > 0
    return Head(name, to_ras_1mm(data, img.affine), to_ras_1mm(mask, img.affine, order=0))


def save_heads(path: Path, heads: list[Head]) -> None:
    """Store heads compactly (int16 image, packed mask) for training elsewhere."""
    arrays: dict[str, np.ndarray] = {}
    for h in heads:
        scale = 1000.0 / max(h.wm, 1e-6)
        arrays[f"{h.name}__image"] = np.clip(h.image * scale, -32000, 32000).astype(np.int16)
        arrays[f"{h.name}__brain"] = np.packbits(h.brain)
        arrays[f"{h.name}__shape"] = np.array(h.brain.shape)
    np.savez_compressed(path, **arrays)


def load_heads(path: Path) -> list[Head]:
    """Read heads written by :func:`save_heads`."""
    with np.load(path) as z:
        names = sorted({k.split("__")[0] for k in z.files})
        out = []
        for n in names:
            shape = tuple(int(s) for s in z[f"{n}__shape"])
            brain = np.unpackbits(z[f"{n}__brain"])[: int(np.prod(shape))].reshape(shape) > 0
            out.append(Head(n, z[f"{n}__image"].astype(np.float32), brain))
    return out
