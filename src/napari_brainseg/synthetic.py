"""Seeded 2D brain MRI phantoms with ground truth, for tests, the demo and napari sample data.

A phantom looks like a contrast-enhanced T1 slice: scalp (bright fat), skull (dark bone with a
brighter marrow layer), CSF, folded grey matter over brighter white matter, ventricles, a smooth
bias field and Rician noise. Tumours follow the look of the three types in the figshare set:

- meningioma: extra-axial, based on the dura (broad base against the inner table of the skull),
  homogeneous strong enhancement, pushing the brain in;
- glioma: intra-axial, irregular ring enhancement around a darker necrotic core, with darker
  (oedematous) brain around it;
- pituitary: midline, in the sellar region below the brain's centre, homogeneous enhancement.

The tumour mask covers the enhancing tumour and its core (not the oedema), as in the figshare set.
Everything is deterministic given ``seed``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from scipy import ndimage as ndi

TumourType = Literal["meningioma", "glioma", "pituitary", "none"]
TUMOUR_CHOICES: tuple[TumourType, ...] = ("meningioma", "glioma", "pituitary", "none")


@dataclass(frozen=True)
class Phantom:
    """A synthetic slice and its ground truth.

    Attributes
    ----------
    image : np.ndarray
        ``(Y, X)`` float32 intensities, arbitrary MRI-like units in about [0, 1000].
    brain : np.ndarray
        ``(Y, X)`` bool intracranial mask inside the skull's inner table (what skull stripping
        should return; tumour and surface CSF included).
    tumour : np.ndarray
        ``(Y, X)`` uint8 tumour labels, 1 = tumour.
    tumour_type : str
        One of ``meningioma``, ``glioma``, ``pituitary`` or ``none``.
    """

    image: np.ndarray
    brain: np.ndarray
    tumour: np.ndarray
    tumour_type: str


def _smooth_noise(shape: tuple[int, int], cells: int, rng: np.random.Generator) -> np.ndarray:
    """Zero-mean, unit-range smooth noise: a coarse random grid upsampled with cubic splines."""
    coarse = rng.standard_normal((cells + 3, max(3, int(cells * shape[1] / shape[0]) + 3)))
    out = ndi.zoom(coarse, (shape[0] / (coarse.shape[0] - 2), shape[1] / (coarse.shape[1] - 2)),
                   order=3)
    out = out[: shape[0], : shape[1]]
    if out.shape != shape:  # zoom rounding
        out = np.pad(out, [(0, shape[0] - out.shape[0]), (0, shape[1] - out.shape[1])], "edge")
    return (out / (np.abs(out).max() + 1e-6)).astype(np.float32)


def _angular(theta: np.ndarray, rng: np.random.Generator, amp: float, kmin: int, kmax: int,
             terms: int = 4) -> np.ndarray:
    out = np.zeros_like(theta)
    for _ in range(terms):
        k = rng.integers(kmin, kmax + 1)
        out += rng.uniform(0.3, 1.0) * np.sin(k * theta + rng.uniform(0, 2 * np.pi))
    return amp * out / terms


def make_phantom(
    shape: tuple[int, int] = (256, 256),
    tumour_type: TumourType | Literal["random"] = "random",
    seed: int = 0,
    skull: bool = True,
    noise: float = 0.03,
) -> Phantom:
    """Make one seeded phantom slice.

    Parameters
    ----------
    shape : tuple of int
        ``(Y, X)`` in pixels, at least 32 each (the study used 512 x 800).
    tumour_type : {"random", "meningioma", "glioma", "pituitary", "none"}
        ``random`` picks one of the three tumour types or, one time in eight, none.
    seed : int
        Random seed; the same seed gives the same phantom.
    skull : bool
        False returns an already skull-stripped slice (zero outside the brain), as the study used.
    noise : float
        Rician noise level as a fraction of white-matter intensity.

    Returns
    -------
    Phantom
    """
    h, w = (int(s) for s in shape)
    if h < 32 or w < 32:
        raise ValueError(f"phantom shape {shape} is too small; use at least 32 x 32 pixels")
    rng = np.random.default_rng(seed)
    if tumour_type == "random":
        tumour_type = "none" if rng.random() < 0.125 else rng.choice(TUMOUR_CHOICES[:3]).item()
    if tumour_type not in TUMOUR_CHOICES:
        raise ValueError(f"tumour_type must be one of {TUMOUR_CHOICES} or 'random'")

    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    cy, cx = h / 2 + rng.uniform(-0.03, 0.03) * h, w / 2 + rng.uniform(-0.03, 0.03) * w
    # Head semi-axes in pixels: fill most of the field of view in both directions.
    ay = rng.uniform(0.40, 0.46) * h
    ax = min(rng.uniform(0.78, 0.95) * ay, 0.46 * w)
    rot = rng.uniform(-0.2, 0.2)
    dy, dx = yy - cy, xx - cx
    u = (dx * np.cos(rot) + dy * np.sin(rot)) / ax
    v = (-dx * np.sin(rot) + dy * np.cos(rot)) / ay
    theta = np.arctan2(v, u)
    r = np.sqrt(u**2 + v**2) * (1 + _angular(theta, rng, 0.03, 2, 4))

    scale = min(ax, ay)  # pixels per unit radius
    px = 1.0 / scale  # one pixel in radius units
    t_scalp = rng.uniform(0.05, 0.08) + 2 * px
    t_skull = rng.uniform(0.05, 0.08) + 2 * px
    t_csf = rng.uniform(0.015, 0.03) + px
    r_inner = 1 - t_scalp - t_skull  # inner table of the skull
    r_brain = r_inner - t_csf
    # Cortex boundary with gyri: fast angular ripples make sulci.
    gyri = _angular(theta, rng, 0.035, 12, 28, terms=6)
    r_gm = r_brain + 0.25 * gyri
    r_wm = r_brain - rng.uniform(0.10, 0.16) + gyri

    texture = _smooth_noise((h, w), max(6, h // 24), rng)
    fine = _smooth_noise((h, w), max(12, h // 8), rng)
    wm_i, gm_i, csf_i = 700.0, 480.0, 120.0
    img = np.zeros((h, w), np.float32)
    scalp = (r < 1) & (r >= 1 - t_scalp)
    skull_m = (r < 1 - t_scalp) & (r >= r_inner)
    csf = (r < r_inner) & (r >= r_gm)
    gm = (r < r_gm) & (r >= r_wm)
    wm = r < r_wm
    img[scalp] = 820 + 120 * fine[scalp]
    marrow = skull_m & (np.abs(r - (r_inner + t_skull / 2)) < t_skull * 0.18)
    img[skull_m] = 60 + 30 * fine[skull_m]
    img[marrow] = 380 + 80 * fine[marrow]
    img[csf] = csf_i
    img[gm] = gm_i + 40 * texture[gm]
    img[wm] = wm_i + 30 * texture[wm]
    # Ventricles: two mirrored ellipses near the centre, dark like CSF.
    vent_sep = rng.uniform(0.08, 0.14)
    vent_a, vent_b = rng.uniform(0.06, 0.10), rng.uniform(0.20, 0.30)
    for side in (-1, 1):
        vu = (u - side * vent_sep) / vent_a
        vv = (v + rng.uniform(-0.05, 0.05)) / vent_b
        img[(vu**2 + vv**2) < 1] = csf_i + 20
    # Brain mask = the intracranial region inside the skull's inner table (cortex and the CSF over
    # it), as BET-style skull stripping returns and as the study's stripped images show.
    brain = r < r_inner

    tumour = np.zeros((h, w), bool)
    if tumour_type == "meningioma":
        ang = rng.uniform(0, 2 * np.pi)
        rad = rng.uniform(0.12, 0.24)
        # Centre just inside the inner table: a dome with a broad dural base.
        c_u, c_v = (r_inner - 0.35 * rad) * np.cos(ang), (r_inner - 0.35 * rad) * np.sin(ang)
        d = np.sqrt((u - c_u) ** 2 + (v - c_v) ** 2) * (1 + _angular(theta, rng, 0.04, 2, 5))
        tumour = (d < rad) & (r < r_inner)
        img[tumour] = 1000 + 50 * fine[tumour]
        # Dural tail: a thin enhancing strip along the inner table next to the tumour (unlabelled).
        tail = (np.abs(r - r_inner + 0.6 * t_csf) < t_csf * 0.6) & (d < rad * 1.6) & ~tumour
        img[tail] = 800
        brain = (brain | tumour) & (r < r_inner)
    elif tumour_type == "glioma":
        rho = rng.uniform(0.15, 0.50)
        ang = rng.uniform(0, 2 * np.pi)
        c_u, c_v = rho * np.cos(ang), rho * np.sin(ang)
        # Intra-axial: keep the tumour within the white matter's reach.
        rad = rng.uniform(0.07, max(0.08, min(0.22, r_brain - 0.12 - rho)))
        local = np.arctan2(v - c_v, u - c_u)
        d = np.sqrt((u - c_u) ** 2 + (v - c_v) ** 2) / rad * (1 + _angular(local, rng, 0.25, 2, 6))
        parenchyma = r < r_gm
        oedema = (d < rng.uniform(1.5, 2.1)) & parenchyma
        img[oedema] = 0.72 * img[oedema]
        tumour = (d < 1) & parenchyma
        rim_in = rng.uniform(0.45, 0.7) + 0.12 * fine
        core = tumour & (d < rim_in)
        img[tumour] = 920 + 80 * fine[tumour]
        img[core] = 260 + 60 * texture[core]
    elif tumour_type == "pituitary":
        # Midline, below the centre (sellar region), homogeneous enhancement.
        c_u = rng.uniform(-0.03, 0.03)
        c_v = rng.uniform(0.30, 0.48)
        rad_u, rad_v = rng.uniform(0.06, 0.13), rng.uniform(0.06, 0.15)
        d = np.sqrt(((u - c_u) / rad_u) ** 2 + ((v - c_v) / rad_v) ** 2)
        d = d * (1 + _angular(theta, rng, 0.03, 2, 4))
        tumour = (d < 1) & (r < r_inner)
        img[tumour] = 950 + 50 * fine[tumour]
        brain = brain | tumour

    # Bias field (smooth, +-12 %) and Rician noise.
    bias = 1 + 0.12 * _smooth_noise((h, w), 3, rng)
    img = img * bias
    sigma = noise * wm_i
    img = np.sqrt((img + sigma * rng.standard_normal((h, w))) ** 2
                  + (sigma * rng.standard_normal((h, w))) ** 2).astype(np.float32)
    # Partial-volume blur of about half a pixel, as a scanner's point spread would give.
    img = ndi.gaussian_filter(img, 0.6).astype(np.float32)
    brain = ndi.binary_fill_holes(brain)
    if not skull:
        img = np.where(brain, img, 0).astype(np.float32)
    return Phantom(image=img, brain=brain, tumour=tumour.astype(np.uint8),
                   tumour_type=str(tumour_type))


def iter_phantoms(n: int, seed: int = 0, shape: tuple[int, int] = (256, 256),
                  skull: bool = True) -> Iterator[Phantom]:
    """Yield ``n`` phantoms with seeds ``seed, seed + 1, ...`` and cycling tumour types."""
    for i in range(n):
        kind: TumourType = "none" if i % 8 == 7 else TUMOUR_CHOICES[i % 3]
        yield make_phantom(shape, tumour_type=kind, seed=seed + i, skull=skull)


def write_sample_folder(folder: Path, n: int = 12, seed: int = 0,
                        shape: tuple[int, int] = (256, 256), skull: bool = False) -> list[Path]:
    """Write ``n`` phantoms as ``images/NAME.png`` + ``masks/NAME.png`` (8-bit, mask 0/255).

    This is the README's pairing convention, so the folder can be opened, segmented and trained on.
    Phantoms are skull-stripped by default, like the study's images. Returns the image paths.
    """
    import imageio.v3 as iio

    from .io import atomic_write

    folder = Path(folder)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "masks").mkdir(parents=True, exist_ok=True)
    written = []
    for i, ph in enumerate(iter_phantoms(n, seed=seed, shape=shape, skull=skull)):
        name = f"phantom_{seed + i:04d}_{ph.tumour_type}.png"
        img8 = np.clip(ph.image / 1100 * 255, 0, 255).astype(np.uint8)
        atomic_write(folder / "images" / name, lambda t, a=img8: iio.imwrite(str(t), a))
        atomic_write(folder / "masks" / name,
                     lambda t, m=ph.tumour: iio.imwrite(str(t), (m * 255).astype(np.uint8)))
        written.append(folder / "images" / name)
    return written
