"""Clinical acquisition of a synthesised slab, and the 2D background no 3D step adds.

Slice thickness, field of view, resolution, bias, noise and contrast; vessels, mucosa and fat.

The output is what the tumour model sees: a slice on a ``size`` x ``size`` grid of
``pixel_mm`` pixels (the grid :class:`napari_brainseg.predict.Predictor` resamples every slice to
when a checkpoint names ``pixel_mm``). numpy/scipy only.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi


def thick_slice(image: np.ndarray, label: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Average the planes of a slab (last axis): partial volume of a thick slice.

    A pixel is tumour when at least half of its slab is (what an annotator sees on that slice).
    """
    return image.mean(axis=-1), (label.mean(axis=-1) >= 0.5)


def smooth_field(shape: tuple[int, int], rng: np.random.Generator, cells: int = 5) -> np.ndarray:
    """Smooth 2D noise with sd about 1 (bias fields, blob placement)."""
    g = rng.normal(size=(cells, cells))
    f = ndi.zoom(g, (shape[0] / cells, shape[1] / cells), order=3)[: shape[0], : shape[1]]
    f = np.pad(f, ((0, shape[0] - f.shape[0]), (0, shape[1] - f.shape[1])), mode="edge")
    return (f / max(float(f.std()), 1e-6)).astype(np.float32)


def add_vessels(image: np.ndarray, region: np.ndarray, wm: float,
                rng: np.random.Generator) -> None:
    """Bright tubes (in-plane vessels) and dots (through-plane vessels) in ``region``, in place."""
    pts = np.argwhere(region)
    if len(pts) == 0:
        return
    canvas = np.zeros(image.shape, np.float32)
    for _ in range(int(rng.integers(1, 8))):
        p = pts[rng.integers(len(pts))].astype(float)
        ang = rng.uniform(0, 2 * np.pi)
        for _ in range(int(rng.integers(6, 40))):
            ang += rng.normal(0, 0.25)
            p += (np.sin(ang), np.cos(ang))
            y, x = int(p[0]), int(p[1])
            if 0 <= y < image.shape[0] and 0 <= x < image.shape[1]:
                canvas[y, x] = 1
    for _ in range(int(rng.integers(0, 25))):
        y, x = pts[rng.integers(len(pts))]
        canvas[y, x] = 1
    if canvas.any():
        canvas = ndi.gaussian_filter(canvas, rng.uniform(0.5, 1.1))
        canvas = np.clip(canvas / max(float(canvas.max()), 1e-6) * 1.6, 0, 1)
        target = wm * rng.uniform(1.1, 1.9)
        image += canvas * np.maximum(target - image, 0)


def add_blobs(image: np.ndarray, region: np.ndarray, wm: float, rng: np.random.Generator,
              n: int) -> None:
    """Smooth bright blobs (nasal mucosa, fat, eyes' surroundings) in ``region``, in place."""
    pts = np.argwhere(region)
    for _ in range(n if len(pts) else 0):
        cy, cx = pts[rng.integers(len(pts))]
        r = rng.uniform(3, 12)
        yy, xx = np.ogrid[: image.shape[0], : image.shape[1]]
        w = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r)) * region
        image += w * np.maximum(wm * rng.uniform(1.0, 1.7) - image, 0)


def resample_to_grid(image: np.ndarray, label: np.ndarray, size: int, scale: float,
                     angle: float, shift: tuple[float, float], k90: int, flip: bool,
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Rotate, zoom and place a 1 mm slice on a ``size`` x ``size`` grid (pixels of 1/scale mm).

    ``scale`` > 1 makes the head larger on the grid. The slice's centre goes to the grid's
    centre plus ``shift`` pixels.
    """
    image = np.rot90(image, k90)
    label = np.rot90(label, k90)
    if flip:
        image, label = image[:, ::-1], label[:, ::-1]
    c, s = np.cos(angle), np.sin(angle)
    m = np.array([[c, -s], [s, c]]) / scale
    centre_in = (np.array(image.shape) - 1) / 2
    centre_out = (size - 1) / 2 + np.asarray(shift)
    offset = centre_in - m @ centre_out
    img = ndi.affine_transform(np.ascontiguousarray(image, np.float32), m, offset,
                               output_shape=(size, size), order=1)
    lab = ndi.affine_transform(np.ascontiguousarray(label, np.float32), m, offset,
                               output_shape=(size, size), order=1) >= 0.5
    return img, lab


def degrade(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """In-plane blur, bias field, contrast curve and Rician noise (the order of a real scan)."""
    if rng.random() < 0.7:
        image = ndi.gaussian_filter(image, rng.uniform(0.2, 1.2))
    if rng.random() < 0.8:
        image = image * np.exp(rng.uniform(0.05, 0.45) * smooth_field(image.shape, rng, 4))
    top = float(np.percentile(image, 99.5)) or 1.0
    x = np.clip(image / top, 0, None)
    x = x ** rng.uniform(0.6, 1.6)
    sigma = rng.uniform(0.0, 0.05)
    if sigma > 0:
        x = np.sqrt((x + rng.normal(0, sigma, x.shape)) ** 2 + rng.normal(0, sigma, x.shape) ** 2)
    return x.astype(np.float32)
