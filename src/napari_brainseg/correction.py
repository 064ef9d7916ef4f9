"""From corrected slices to a better model: find what the user corrected, fine-tune, version.

- :func:`corrected_slices` finds the slices where the user's labels differ from the model's
  prediction (the ones they corrected);
- :func:`iter_finetune` fine-tunes a checkpoint on those slices only, mixed with replayed samples
  so that the model does not forget what it knew (the built-in model's replay is its synthetic
  training distribution, :func:`synthetic_replay`; a user's model replays its training folder,
  :func:`folder_replay`), and reports the Dice before and after on a held-out part of the
  corrections;
- the new model is written beside the old one under a new version name
  (:func:`next_version_path`): no model file is ever overwritten.

The user's arrays are only read (every slice is copied before it is resampled or normalised),
so nothing they painted is modified.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F  # noqa: N812

from .losses import LossConfig, make_loss
from .metrics import corrected_slices as corrected_slices  # numpy only: the writer uses it
from .model import Checkpoint, load_checkpoint, save_checkpoint
from .predict import BUILTIN_MODEL, BUILTIN_NAMES
from .preprocess import normalise
from .progress import drain
from .segment_options import model_options

#: A replay source: draws one ``(image, mask)`` pair already on the model's grid (float32
#: intensities as in the model's training data, uint8 mask).
Replay = Callable[[np.random.Generator], tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class Correction:
    """One corrected slice: ``(Y, X)`` image, its corrected ``(Y, X)`` mask, pixel size in mm."""

    image: np.ndarray
    mask: np.ndarray
    spacing: tuple[float, float] | None = None


@dataclass(frozen=True)
class FinetuneConfig:
    """A short fine-tuning schedule.

    Attributes
    ----------
    steps : int
        Optimiser steps (batches).
    batch_size : int
        Samples per step; about ``replay_fraction`` of them are replayed.
    lr : float
        Adam learning rate (small: the model is already trained).
    replay_fraction : float
        Share of each batch drawn from the replay source (0 without one).
    holdout_fraction : float
        Share of the corrected slices kept out of training to measure before/after Dice
        (only when there are at least 5 corrected slices; at least one is kept).
    patch : int
        Side of the training crops on the model's grid (pixels).
    seed : int
        Seed of the split, the crops, the replay and the batch order.
    """

    steps: int = 120
    batch_size: int = 8
    lr: float = 3e-4
    replay_fraction: float = 0.5
    holdout_fraction: float = 0.25
    patch: int = 128
    seed: int = 0

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_size < 1:
            raise ValueError("steps and batch_size must be at least 1")
        if not 0 < self.lr < 1:
            raise ValueError(f"lr must be in (0, 1), got {self.lr}")
        if not 0 <= self.replay_fraction < 1 or not 0 <= self.holdout_fraction < 1:
            raise ValueError("replay_fraction and holdout_fraction must be in [0, 1)")
        if not 16 <= self.patch <= 1024:
            raise ValueError(f"patch must be 16-1024 pixels, got {self.patch}")


@dataclass(frozen=True)
class FinetuneProgress:
    """After each step: the step, the total and the batch loss."""

    step: int
    total: int
    loss: float


@dataclass(frozen=True)
class FinetuneResult:
    """The new model and what it gained.

    ``dice_before`` / ``dice_after`` are pooled Dice on the held-out corrected slices
    (None when there were too few corrections to hold any out).
    """

    path: Path
    dice_before: float | None
    dice_after: float | None
    n_train: int
    n_holdout: int
    replayed: int
    seconds: float


def next_version_path(path: str | Path) -> Path:
    """A model path that does not exist yet: ``model.pt`` -> ``model.v2.pt`` -> ``model.v3.pt``.

    The built-in model's new versions go to the current folder (the package is not writable
    and must not change): ``tumour_unet.v2.pt``.
    """
    p = BUILTIN_MODEL if str(path) in BUILTIN_NAMES else Path(path)
    if p == BUILTIN_MODEL:
        p = Path.cwd() / p.name
    stem = p.name[: -len(".pt")] if p.name.endswith(".pt") else p.name
    base, _, ver = stem.rpartition(".v")
    n = int(ver) if base and ver.isdigit() else 1
    base = base if base and ver.isdigit() else stem
    while True:
        n += 1
        cand = p.with_name(f"{base}.v{n}.pt")
        if not cand.exists():
            return cand


def to_model_grid(ck: Checkpoint, c: Correction) -> tuple[np.ndarray, np.ndarray]:
    """A corrected slice as the model trains on it: normalised and at the model's pixel size.

    Returns new arrays (float32 image, uint8 mask); ``c``'s arrays are only read.
    """
    spacing = c.spacing
    img = normalise(np.array(c.image, np.float32), ck.normalisation)
    msk = (np.asarray(c.mask) != 0).astype(np.float32)
    pixel_mm = ck.training.get("pixel_mm")
    if not isinstance(pixel_mm, (int, float)) or spacing is None:
        return img, (msk > 0).astype(np.uint8)
    h, w = img.shape
    size = (max(16, round(h * spacing[0] / pixel_mm)), max(16, round(w * spacing[1] / pixel_mm)))
    if size == (h, w):
        return img, (msk > 0).astype(np.uint8)
    t = torch.from_numpy(np.stack([img, msk]))[:, None]
    img_r = F.interpolate(t[:1], size=size, mode="bilinear", align_corners=False,
                          antialias=size[0] < h)[0, 0].numpy()
    msk_r = F.interpolate(t[1:], size=size, mode="bilinear", align_corners=False)[0, 0].numpy()
    return img_r, (msk_r > 0.5).astype(np.uint8)


def _crop(img: np.ndarray, msk: np.ndarray, size: int,
          rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    from .data import _crop_or_pad  # the training crop: half the time centred on tumour

    return _crop_or_pad(img, msk, size, rng)


def _dice(model: torch.nn.Module, pairs: Sequence[tuple[np.ndarray, np.ndarray]],
          threshold: float) -> float:
    """Pooled Dice of ``model`` on ``pairs`` at ``threshold`` (the model's own, as it runs)."""
    inter = total = 0.0
    with torch.inference_mode():
        for img, msk in pairs:
            h, w = img.shape
            ph, pw = (-h) % 16, (-w) % 16  # the U-Net needs sides divisible by 2**depth
            x = F.pad(torch.from_numpy(img)[None, None], (0, pw, 0, ph))
            pred = (torch.sigmoid(model(x))[0, 0, :h, :w] > threshold).numpy()
            inter += float(np.logical_and(pred, msk).sum())
            total += float(pred.sum() + msk.sum())
    return 1.0 if total == 0 else 2 * inter / total


def _freeze_batchnorm(model: torch.nn.Module) -> None:
    """Keep batch-norm statistics as trained: a few corrected slices would skew them."""
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.eval()


def iter_finetune(
    checkpoint: str | Path,
    corrections: Sequence[Correction],
    out: str | Path | None = None,
    replay: Replay | None = None,
    config: FinetuneConfig | None = None,
) -> Generator[FinetuneProgress, None, FinetuneResult]:
    """Fine-tune ``checkpoint`` on corrected slices (plus replay); write a new model version.

    Parameters
    ----------
    checkpoint : str or Path
        The current model (a file, or ``"builtin"``).
    corrections : sequence of Correction
        The corrected slices only (see :func:`corrected_slices`).
    out : str or Path, optional
        Where to write the new model; default :func:`next_version_path` of the checkpoint.
        An existing file is refused.
    replay : callable, optional
        Source of replayed samples (see :data:`Replay`); None trains on corrections only.
    config : FinetuneConfig, optional

    Yields :class:`FinetuneProgress` per step; returns :class:`FinetuneResult`.
    """
    cfg = config or FinetuneConfig()
    if not corrections:
        raise ValueError("no corrected slices: paint corrections on the prediction first")
    t0 = time.perf_counter()
    src = BUILTIN_MODEL if str(checkpoint) in BUILTIN_NAMES else Path(checkpoint)
    out_path = next_version_path(checkpoint) if out is None else Path(out)
    if out_path.exists():
        raise FileExistsError(f"{out_path} exists: choose another name (models are never "
                              "overwritten)")
    ck = load_checkpoint(src)
    rng = np.random.default_rng(cfg.seed)
    pairs = [to_model_grid(ck, c) for c in corrections]
    order = rng.permutation(len(pairs))
    n_hold = max(1, round(cfg.holdout_fraction * len(pairs))) if len(pairs) >= 5 else 0
    n_hold = n_hold if cfg.holdout_fraction > 0 else 0
    holdout = [pairs[i] for i in order[:n_hold]]
    train_pairs = [pairs[i] for i in order[n_hold:]]
    model = ck.model
    threshold = float(model_options(None, ck).threshold)  # the fine-tune keeps it (below)
    before = _dice(model.eval(), holdout, threshold) if holdout else None

    torch.manual_seed(cfg.seed)
    loss_fn = make_loss(LossConfig("dice+bce"))
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    n_replay = round(cfg.batch_size * cfg.replay_fraction) if replay is not None else 0
    replayed = 0
    for step in range(cfg.steps):
        model.train()
        _freeze_batchnorm(model)
        batch = [_crop(*train_pairs[int(rng.integers(len(train_pairs)))], cfg.patch, rng)
                 for _ in range(cfg.batch_size - n_replay)]
        for _ in range(n_replay):
            batch.append(_crop(*replay(rng), cfg.patch, rng))  # type: ignore[misc]
        replayed += n_replay
        x = torch.from_numpy(np.stack([b[0] for b in batch]))[:, None].float()
        y = torch.from_numpy(np.stack([b[1] for b in batch]))[:, None].float()
        flip = rng.random(len(batch)) < 0.5
        x[flip], y[flip] = x[flip].flip(-1), y[flip].flip(-1)
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        yield FinetuneProgress(step + 1, cfg.steps, float(loss.detach()))
    model.eval()
    after = _dice(model, holdout, threshold) if holdout else None
    training = dict(ck.training)
    training["finetuned_from"] = {"file": src.name, "sha256": _sha256(src)}
    training["corrections"] = {"train": len(train_pairs), "holdout": n_hold,
                               "replayed": replayed, "steps": cfg.steps, "lr": cfg.lr}
    metrics = {"holdout_dice_before": before, "holdout_dice_after": after}
    save_checkpoint(out_path, model, ck.normalisation, training, metrics)
    return FinetuneResult(out_path, before, after, len(train_pairs), n_hold, replayed,
                          time.perf_counter() - t0)


def finetune(*args: object, **kwargs: object) -> FinetuneResult:
    """Run :func:`iter_finetune` to the end."""
    return drain(iter_finetune(*args, **kwargs))  # type: ignore[arg-type]


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# --------------------------------------------------------------------------- replay sources


def folder_replay(checkpoint: str | Path, folder: str | Path) -> Replay:
    """Replay the pairs of a training folder (a user's model), normalised as the model was."""
    from .data import samples_from_folder

    ck = load_checkpoint(BUILTIN_MODEL if str(checkpoint) in BUILTIN_NAMES else Path(checkpoint))
    samples = samples_from_folder(folder)
    if not samples:
        raise ValueError(f"{folder}: no image/mask pairs to replay")

    def draw(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        img, msk = samples[int(rng.integers(len(samples)))].load()
        return to_model_grid(ck, Correction(img, msk))

    return draw


def synthetic_replay(checkpoint: str | Path, heads: Sequence[object], size: int = 256,
                     bank: int = 48, seed: int = 0) -> Replay:
    """Replay the built-in model's training distribution: synthetic CE-T1 tumours on ``heads``.

    ``heads`` are :class:`~napari_brainseg.synthesis.Head` objects: the heads the model was
    trained on (``scripts/train_tumour_model.py --prepare``) or the user's own skull-stripped
    scans (:func:`napari_brainseg.synthesis.anatomy.load_head`). Drawing a synthetic slice
    takes about 0.25 s on one core, so ``bank`` slices are drawn once (seeded) and replayed from
    memory: a fine-tune round then spends its time training, not synthesising.
    """
    from .synthesis import training_slice

    ck = load_checkpoint(BUILTIN_MODEL if str(checkpoint) in BUILTIN_NAMES else Path(checkpoint))
    heads = list(heads)
    if not heads:
        raise ValueError("synthetic replay needs at least one head")
    gen = np.random.default_rng(seed)
    pairs = []
    for _ in range(bank):
        s = training_slice(heads, gen, size=size)  # type: ignore[arg-type]
        pairs.append((normalise(s.image, ck.normalisation), s.tumour))

    def draw(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        return pairs[int(rng.integers(len(pairs)))]

    return draw
