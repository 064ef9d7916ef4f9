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

The most uncertain slices are often redundant: neighbouring slices of one lesion, or several
slices of the same large tumour whose whole rim is uncertain. :func:`select_slices` therefore
picks a batch the way *suggestive annotation* does (Yang et al., MICCAI 2017, for U-Net
segmentation): among the most uncertain slices it greedily takes those that best *represent*
all the slices, measured by the cosine similarity of the U-Net's bottleneck features
(:func:`encoder_features`, computed with ``features=True`` at the cost of one encoder pass).
``UncertaintyResult.ranked_slices(diverse=True)`` orders a whole volume batch by batch that way.
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
        ``"mm3"`` or ``"mm2"``; ``"vox"`` or ``"px"`` when the pixel size is unknown (the
        scores are then counts).
    features : np.ndarray or None
        ``(n_slices, C)`` float32 bottleneck features of each slice (:func:`encoder_features`)
        when asked for with ``features=True``, else None.
    """

    map: np.ndarray
    slice_scores: np.ndarray
    score: float
    unit: str
    features: np.ndarray | None = None

    def ranked_slices(self, diverse: bool = False, batch: int = 8) -> list[int]:
        """Slice indices in review order (slices with no uncertainty are left out).

        Plain: most uncertain first. ``diverse=True`` (needs ``features``): batches of
        ``batch`` slices chosen by :func:`select_slices`, each batch covering what the slices
        already ranked do not.
        """
        if not diverse:
            order = np.argsort(-self.slice_scores, kind="stable")
            return [int(i) for i in order if self.slice_scores[i] > 0]
        if self.features is None:
            raise ValueError("a diverse order needs the slices' features: compute the "
                             "uncertainty with features=True")
        n_scored = int((self.slice_scores > 0).sum())
        ranked: list[int] = []
        while len(ranked) < n_scored:
            ranked += select_slices(self.slice_scores, self.features, batch, labelled=ranked)
        return ranked


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
    features: bool = False,
) -> Generator[tuple[int, int], None, UncertaintyResult]:
    """Uncertainty of a ``(Y, X)`` slice or a ``(Z, Y, X)`` volume, slice by slice along ``axis``.

    Outside ``brain_mask`` (where the segmentation reports no tumour) the uncertainty is 0.
    With ``features`` the result also holds each slice's :func:`encoder_features` (for
    ``ranked_slices(diverse=True)``). Yields ``(slices_done, total)`` and returns an
    :class:`UncertaintyResult`.
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
    feats: list[np.ndarray] = []
    bs = predictor.options.batch_size
    total = vol.shape[0]
    yield 0, total
    for start in range(0, total, bs):
        idx = range(start, min(start + bs, total))
        sp_known = sp2 if geometry_known and spacing is not None else None
        probs = probability_passes(predictor, [vol[i] for i in idx], sp_known, opts)
        if features:
            feats.append(encoder_features(predictor, [vol[i] for i in idx], sp_known))
        ent = entropy_bits(probs.mean(axis=0))
        for j, i in enumerate(idx):
            e = ent[j] if brain is None else ent[j] * brain[i]
            out[i] = e
            scores[i] = float(e.sum(dtype=np.float64)) * sp2[0] * sp2[1]
        yield idx[-1] + 1, total
    umap = out[0] if image.ndim == 2 else np.moveaxis(out, 0, axis)
    score = float(scores.sum()) * thick
    unit = ("mm2" if image.ndim == 2 else "mm3") if geometry_known else (
        "px" if image.ndim == 2 else "vox")  # placeholder 1 mm pixels: a count, not mm
    return UncertaintyResult(umap, scores, score, unit,
                             np.concatenate(feats) if features else None)


def encoder_features(predictor: Predictor, images: Sequence[np.ndarray],
                     spacing: Sequence[float] | None = None) -> np.ndarray:
    """Bottleneck features of same-shape 2D slices: ``(N, C)`` float32.

    The mean over the slice of the U-Net's deepest encoder block (C = ``base_filters * 2 **
    depth`` channels), from the input the predictor would segment (same normalisation and
    resampling). It summarises what the model sees in a slice (anatomy, plane, lesion), the
    descriptor suggestive annotation (Yang et al. 2017) uses; it costs one encoder pass in
    PyTorch (about half a forward pass).
    """
    model = predictor.model
    down, cfg = getattr(model, "down", None), getattr(model, "config", None)
    if down is None or cfg is None:
        raise ValueError("slice features need a napari-brainseg U-Net model")
    arr = np.stack([normalise(im, predictor.normalisation) for im in images])[:, None]
    x = torch.from_numpy(arr).to(predictor.device)
    grid = predictor._grid_size(images, spacing)  # noqa: SLF001 (same package)
    if grid is not None:
        x = F.interpolate(x, size=grid, mode="bilinear", align_corners=False,
                          antialias=grid[0] < x.shape[-2])
    m = cfg.multiple
    x = F.pad(x, (0, (-x.shape[-1]) % m, 0, (-x.shape[-2]) % m))
    with torch.inference_mode():
        for i, block in enumerate(down):
            x = block(x)
            if i < cfg.depth:
                x = F.max_pool2d(x, 2)
    return x.mean(dim=(-2, -1)).float().cpu().numpy()


def select_slices(scores: Sequence[float] | np.ndarray, features: np.ndarray, k: int, *,
                  labelled: Sequence[int] = (), candidates: int = 2) -> list[int]:
    """Choose ``k`` slices to correct next: uncertain, and unlike each other.

    Suggestive annotation (Yang et al., "Suggestive Annotation: A Deep Active Learning
    Framework for Biomedical Image Segmentation", MICCAI 2017): take the ``candidates * k``
    most uncertain slices not yet corrected (the paper's K = 16 for k = 8), then greedily add
    the candidate that most raises the *coverage* of the uncorrected slices, sum over each
    slice of its greatest similarity to a chosen or already corrected slice (a facility-location
    objective; greedy is within 1 - 1/e of the best). Similarity is the cosine of the
    features centred on their mean, mapped to [0, 1]. Pure "most uncertain first" spends a
    batch on near-copies (neighbouring slices of one lesion); this spends it on different ones.

    Parameters
    ----------
    scores : array of float
        ``(n,)`` uncertainty of each slice (e.g. ``UncertaintyResult.slice_scores``); slices
        scoring 0 are never chosen.
    features : np.ndarray
        ``(n, C)`` description of each slice (:func:`encoder_features`).
    k : int
        Slices to choose (fewer when fewer uncertain slices are left).
    labelled : sequence of int
        Slices already corrected: never chosen again, and what they cover counts as covered.
    candidates : int
        The candidate pool is this many times ``k`` (1 is plain "most uncertain first").

    Returns
    -------
    list of int
        Chosen slice indices, most uncertain first (deterministic: ties go to the more
        uncertain slice).
    """
    s = np.asarray(scores, np.float64).ravel()
    f = np.asarray(features, np.float64)
    if f.ndim != 2 or f.shape[0] != s.size:
        raise ValueError(f"features must be (n_slices, C) with n_slices = {s.size}, "
                         f"got shape {f.shape}")
    if k < 1 or candidates < 1:
        raise ValueError(f"k and candidates must be at least 1, got k={k}, "
                         f"candidates={candidates}")
    done = np.zeros(s.size, bool)
    done[[int(i) for i in labelled]] = True
    order = [int(i) for i in np.argsort(-s, kind="stable") if s[i] > 0 and not done[i]]
    pool = order[: candidates * k]
    if len(pool) <= 1:
        return pool[:k]
    c = f - f.mean(axis=0)
    norm = np.linalg.norm(c, axis=1)
    c = c / np.where(norm > 1e-12, norm, 1.0)[:, None]
    sim = (1.0 + c @ c.T) / 2.0
    np.fill_diagonal(sim, 1.0)
    target = ~done  # the uncorrected slices, which the choice should represent
    cover = sim[done][:, target].max(axis=0) if done.any() else np.zeros(int(target.sum()))
    chosen: list[int] = []
    for _ in range(min(k, len(pool))):
        gains = [np.maximum(sim[i, target] - cover, 0.0).sum() if i not in chosen else -1.0
                 for i in pool]
        best = pool[int(np.argmax(gains))]  # first maximum: the more uncertain on a tie
        chosen.append(best)
        cover = np.maximum(cover, sim[best, target])
    return [i for i in pool if i in chosen]  # review the batch most uncertain first


def uncertainty(predictor: Predictor, image: np.ndarray, spacing: Sequence[float] | None = None,
                **kwargs: object) -> UncertaintyResult:
    """Run :func:`iter_uncertainty` to the end."""
    return drain(iter_uncertainty(predictor, image, spacing, **kwargs))  # type: ignore[arg-type]
