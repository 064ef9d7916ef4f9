"""How sure the model is: per-pixel, per-slice and per-file uncertainty of a segmentation.

Two ways to draw several predictions of the same slice (``method``):

- ``"tta"``: the four flips of the slice (identity, left-right, up-down, both), as
  :class:`~napari_brainseg.predict.Predictor` does with ``tta=True``; works for every model.
- ``"mc-dropout"``: ``passes`` forward passes with the U-Net's dropout left on (Monte-Carlo
  dropout, Gal & Ghahramani 2016); batch-norm statistics stay frozen. Needs a model trained with
  dropout (the study's U-Net has it).

The per-pixel uncertainty is the binary entropy, in bits (0 sure, 1 a coin toss), of the mean of
those predictions (the predictive entropy, as MONAI Label's TTA/dropout strategies use). A
slice's score is its *uncertain area*: the sum of the pixel entropies times the pixel area, in
mm²; a file's is the sum over its slices times the slice thickness (mm³ for a volume, mm² for a
single slice). Both grow where the model hesitates over more tissue, which is where its
errors are (measured in ``benchmarks/correction_loop.py``), so they order slices and files for
review. Computing it costs ``passes`` extra forward passes per slice on top of the segmentation.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch.nn import functional as F  # noqa: N812

from .predict import Predictor
from .preprocess import normalise
from .progress import drain

Method = Literal["tta", "mc-dropout"]
METHODS: tuple[str, ...] = ("tta", "mc-dropout")
_FLIPS: tuple[tuple[int, ...], ...] = ((), (-1,), (-2,), (-2, -1))


@dataclass(frozen=True)
class UncertaintyOptions:
    """How to draw the predictions whose disagreement is the uncertainty.

    Attributes
    ----------
    method : {"tta", "mc-dropout"}
        Flip test-time augmentation or Monte-Carlo dropout.
    passes : int
        Predictions per slice: 1-4 flips for TTA, 2-64 dropout samples.
    seed : int
        Seed of the dropout masks (MC dropout is then reproducible on a CPU).
    """

    method: Method = "tta"
    passes: int = 4
    seed: int = 0

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"uncertainty method must be one of {', '.join(METHODS)}, "
                             f"got {self.method!r}")
        hi = 4 if self.method == "tta" else 64
        if not 2 <= int(self.passes) <= hi:
            raise ValueError(f"{self.method} needs 2-{hi} passes, got {self.passes}")


@dataclass(frozen=True)
class UncertaintyResult:
    """Uncertainty of a slice or a volume.

    Attributes
    ----------
    map : np.ndarray
        Per-pixel predictive entropy in bits, the image's shape, float16.
    slice_scores : np.ndarray
        ``(n_slices,)`` uncertain area of each slice in mm² (one value for a 2D image).
    score : float
        The file's uncertain volume (mm³) or area (mm², 2D).
    unit : str
        ``"mm3"`` or ``"mm2"``.
    """

    map: np.ndarray
    slice_scores: np.ndarray
    score: float
    unit: str

    def ranked_slices(self) -> list[int]:
        """Slice indices, most uncertain first (slices with no uncertainty are left out)."""
        order = np.argsort(-self.slice_scores, kind="stable")
        return [int(i) for i in order if self.slice_scores[i] > 0]


def entropy_bits(p: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
    """Binary entropy in bits of probabilities ``p`` (any shape); 0 at 0 and 1, 1 at 0.5."""
    lib = torch if isinstance(p, torch.Tensor) else np
    q = lib.clip(p, 1e-7, 1 - 1e-7)
    return -(q * lib.log2(q) + (1 - q) * lib.log2(1 - q))


class _DropoutOn:
    """Context: dropout layers in training mode (sampling), everything else in eval mode."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.layers = [m for m in model.modules()
                       if isinstance(m, torch.nn.modules.dropout._DropoutNd) and m.p > 0]

    def __enter__(self) -> _DropoutOn:
        for m in self.layers:
            m.train()
        return self

    def __exit__(self, *exc: object) -> None:
        for m in self.layers:
            m.eval()


def probability_passes(predictor: Predictor, images: Sequence[np.ndarray],
                       spacing: Sequence[float] | None = None,
                       options: UncertaintyOptions | None = None) -> np.ndarray:
    """Several predictions of same-shape 2D slices: ``(passes, N, Y, X)`` float32 probabilities.

    Slices go through the predictor's own normalisation, pixel-size resampling and tiling
    (see :meth:`Predictor.probability`); ``spacing`` is their pixel size in mm (None: unknown).
    """
    opts = options or UncertaintyOptions()
    arr = np.stack([normalise(im, predictor.normalisation) for im in images])[:, None]
    x = torch.from_numpy(arr).to(predictor.device)
    grid = predictor._grid_size(images, spacing)  # noqa: SLF001 (same package)
    shape = tuple(x.shape[-2:])
    if grid is not None:
        x = F.interpolate(x, size=grid, mode="bilinear", align_corners=False,
                          antialias=grid[0] < shape[0])
    outs = []
    with torch.inference_mode():
        if opts.method == "tta":
            for dims in _FLIPS[: opts.passes]:
                p = predictor._forward(x.flip(dims) if dims else x)  # noqa: SLF001
                outs.append(p.flip(dims) if dims else p)
        else:
            sampling = _DropoutOn(predictor.model)
            if not sampling.layers:
                raise ValueError("this model has no dropout layers: use method='tta'")
            state = torch.random.get_rng_state()
            torch.manual_seed(opts.seed)
            try:
                with sampling:
                    outs = [predictor._forward(x) for _ in range(opts.passes)]  # noqa: SLF001
            finally:
                torch.random.set_rng_state(state)
    prob = torch.stack(outs)  # (P, N, 1, H, W)
    if grid is not None:
        p, n = prob.shape[:2]
        prob = F.interpolate(prob.flatten(0, 1), size=shape, mode="bilinear",
                             align_corners=False).unflatten(0, (p, n))
    return prob[:, :, 0].float().cpu().numpy()


def iter_uncertainty(
    predictor: Predictor,
    image: np.ndarray,
    spacing: Sequence[float] | None = None,
    *,
    brain_mask: np.ndarray | None = None,
    axis: int = 0,
    options: UncertaintyOptions | None = None,
    geometry_known: bool = True,
) -> Generator[tuple[int, int], None, UncertaintyResult]:
    """Uncertainty of a ``(Y, X)`` slice or a ``(Z, Y, X)`` volume, slice by slice along ``axis``.

    Outside ``brain_mask`` (where the segmentation reports no tumour) the uncertainty is 0.
    Yields ``(slices_done, total)`` and returns an :class:`UncertaintyResult`.
    """
    opts = options or UncertaintyOptions()
    image = np.asarray(image)
    if image.ndim not in (2, 3):
        raise ValueError(f"expected a 2D slice or 3D volume, got shape {image.shape}")
    vol = image[None] if image.ndim == 2 else np.moveaxis(image, axis, 0)
    brain = None
    if brain_mask is not None:
        brain = np.asarray(brain_mask, bool)
        if brain.shape != image.shape:
            raise ValueError(f"brain mask {brain.shape} does not match the image {image.shape}")
        brain = brain[None] if image.ndim == 2 else np.moveaxis(brain, axis, 0)
    if spacing is None:
        sp = [1.0] * image.ndim
    else:
        sp = [float(s) for s in spacing]
    sp2 = sp if image.ndim == 2 else [s for k, s in enumerate(sp) if k != axis]
    thick = 1.0 if image.ndim == 2 else sp[axis]
    out = np.zeros(vol.shape, np.float16)
    scores = np.zeros(vol.shape[0], np.float64)
    bs = predictor.options.batch_size
    total = vol.shape[0]
    yield 0, total
    for start in range(0, total, bs):
        idx = range(start, min(start + bs, total))
        probs = probability_passes(predictor, [vol[i] for i in idx],
                                   sp2 if geometry_known and spacing is not None else None, opts)
        ent = entropy_bits(probs.mean(axis=0))
        for j, i in enumerate(idx):
            e = ent[j] if brain is None else ent[j] * brain[i]
            out[i] = e
            scores[i] = float(e.sum(dtype=np.float64)) * sp2[0] * sp2[1]
        yield idx[-1] + 1, total
    umap = out[0] if image.ndim == 2 else np.moveaxis(out, 0, axis)
    score = float(scores.sum()) * thick
    return UncertaintyResult(umap, scores, score, "mm2" if image.ndim == 2 else "mm3")


def uncertainty(predictor: Predictor, image: np.ndarray, spacing: Sequence[float] | None = None,
                **kwargs: object) -> UncertaintyResult:
    """Run :func:`iter_uncertainty` to the end."""
    return drain(iter_uncertainty(predictor, image, spacing, **kwargs))  # type: ignore[arg-type]
