"""The study's losses for binary segmentation, one signature for all.

Every loss is ``loss(logits, target) -> scalar tensor`` where ``logits`` and ``target`` are
``(N, 1, H, W)`` float tensors (``target`` in {0, 1}); logits, not probabilities, for numerical
stability. Build one by name with :func:`make_loss`. Values equal MONAI's implementations of the
same losses (``DiceLoss``, ``FocalLoss``, ``TverskyLoss`` with ``sigmoid=True``; checked in tests).

Conventions
-----------
- **BCE**: mean binary cross-entropy; ``pos_weight`` multiplies the tumour term.
- **Dice**: soft Dice ``1 - (2 sum(p t) + s) / (sum(p) + sum(t) + s)`` with ``s = 1e-5``,
  computed per image and averaged (MONAI's ``batch=False``); an image with no tumour and no
  prediction scores 0 loss.
- **Focal** (Lin et al. 2017): ``BCE * (1 - p_t) ** gamma``, mean over pixels. ``alpha=None`` is
  the unweighted form the study ran (gamma 2); with ``alpha`` the balanced form, ``alpha`` on tumour
  and ``1 - alpha`` on background (the paper's description; the later package used 0.25). With
  ``gamma=0`` and no alpha it equals BCE.
- **Tversky** (Salehi et al. 2017): ``1 - (TP + s) / (TP + alpha FP + beta FN + s)`` per image;
  ``alpha`` weighs false positives and ``beta`` false negatives; alpha = beta = 0.5 is Dice.
- **dice+bce**, **dice+focal**: the sum of the two (weights ``lambda_dice`` and ``lambda_other``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch.nn import functional as F  # noqa: N812

from .loss_config import (  # noqa: F401 (the names are part of this module's API)
    DEFAULT_LOSS,
    LOSS_NAMES,
    LOSS_PARAMETERS,
    LossConfig,
    LossName,
)

SMOOTH = 1e-5

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _check(logits: torch.Tensor, target: torch.Tensor) -> None:
    if logits.shape != target.shape:
        raise ValueError(
            f"logits {tuple(logits.shape)} and target {tuple(target.shape)} must have the same "
            "shape (N, 1, H, W)"
        )
    if logits.ndim < 3:
        raise ValueError(f"expected (N, C, H, W) tensors, got shape {tuple(logits.shape)}")


def bce_loss(logits: torch.Tensor, target: torch.Tensor,
             pos_weight: float | None = None) -> torch.Tensor:
    """Mean binary cross-entropy; ``pos_weight`` weighs the tumour term (class imbalance)."""
    _check(logits, target)
    pw = None if pos_weight is None else torch.tensor(float(pos_weight), device=logits.device)
    return F.binary_cross_entropy_with_logits(logits, target.float(), pos_weight=pw)


def _per_image_sums(logits: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, ...]:
    p = torch.sigmoid(logits)
    t = target.float()
    dims = tuple(range(2, logits.ndim))
    tp = (p * t).sum(dims)
    fp = (p * (1 - t)).sum(dims)
    fn = ((1 - p) * t).sum(dims)
    return tp, fp, fn


def dice_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Soft Dice loss per image and channel, averaged (see module docstring)."""
    _check(logits, target)
    tp, fp, fn = _per_image_sums(logits, target)
    return (1 - (2 * tp + SMOOTH) / (2 * tp + fp + fn + SMOOTH)).mean()


def tversky_loss(logits: torch.Tensor, target: torch.Tensor, alpha: float = 0.5,
                 beta: float = 0.5) -> torch.Tensor:
    """Tversky loss; ``alpha`` weighs false positives, ``beta`` false negatives."""
    _check(logits, target)
    if alpha < 0 or beta < 0:
        raise ValueError(f"Tversky alpha and beta must be >= 0, got {alpha}, {beta}")
    tp, fp, fn = _per_image_sums(logits, target)
    return (1 - (tp + SMOOTH) / (tp + alpha * fp + beta * fn + SMOOTH)).mean()


def focal_loss(logits: torch.Tensor, target: torch.Tensor, gamma: float = 2.0,
               alpha: float | None = None) -> torch.Tensor:
    """Sigmoid focal loss, mean over pixels; ``alpha=None`` is the unweighted form."""
    _check(logits, target)
    if gamma < 0:
        raise ValueError(f"focal gamma must be >= 0, got {gamma}")
    if alpha is not None and not 0 <= alpha <= 1:
        raise ValueError(f"focal alpha must be in [0, 1] or None, got {alpha}")
    t = target.float()
    bce = F.binary_cross_entropy_with_logits(logits, t, reduction="none")
    # log(1 - p_t) computed stably: p_t = sigmoid(x) for t = 1, sigmoid(-x) for t = 0.
    log_one_minus_pt = F.logsigmoid(-logits * (2 * t - 1))
    loss = torch.exp(gamma * log_one_minus_pt) * bce
    if alpha is not None:
        loss = (alpha * t + (1 - alpha) * (1 - t)) * loss
    return loss.mean()


def make_loss(config: LossConfig | str, **kwargs: Any) -> LossFn:
    """Return ``loss(logits, target)`` for a :class:`LossConfig` or a loss name plus parameters.

    Raises
    ------
    ValueError
        Unknown name or out-of-range parameters.
    """
    cfg = LossConfig(config, **kwargs) if isinstance(config, str) else config
    if cfg.name == "bce":
        return lambda x, t: bce_loss(x, t, cfg.pos_weight)
    if cfg.name == "dice":
        return dice_loss
    if cfg.name == "focal":
        focal_loss(torch.zeros(1, 1, 1, 1), torch.zeros(1, 1, 1, 1), cfg.gamma, cfg.alpha)  # check
        return lambda x, t: focal_loss(x, t, cfg.gamma, cfg.alpha)
    if cfg.name == "tversky":
        a = 0.3 if cfg.alpha is None else cfg.alpha
        b = (1 - a) if cfg.beta is None else cfg.beta
        tversky_loss(torch.zeros(1, 1, 1, 1), torch.zeros(1, 1, 1, 1), a, b)  # validates
        return lambda x, t: tversky_loss(x, t, a, b)
    other = (lambda x, t: bce_loss(x, t, cfg.pos_weight)) if cfg.name == "dice+bce" else (
        make_loss(LossConfig("focal", alpha=cfg.alpha, gamma=cfg.gamma)))
    return lambda x, t: cfg.lambda_dice * dice_loss(x, t) + cfg.lambda_other * other(x, t)
