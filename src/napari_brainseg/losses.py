"""The study's losses for binary segmentation: documented ``torch.nn.Module`` classes.

Every loss is a module called as ``loss(logits, target) -> scalar tensor`` where ``logits`` and
``target`` are ``(N, 1, H, W)`` float tensors (``target`` in {0, 1}); logits, not probabilities,
for numerical stability. Parameters are checked when a loss is built, as in MONAI's ``losses/``
(whose parameter names these follow). Build one by name with :func:`make_loss`; a
:class:`LossConfig` parameter the named loss does not use is logged as a warning, not dropped
silently. Values equal MONAI's implementations of the same losses (``DiceLoss``, ``FocalLoss``,
``TverskyLoss`` with ``sigmoid=True``; checked in tests). The functions ``bce_loss``,
``dice_loss``, ``focal_loss`` and ``tversky_loss`` compute the same values without a module.

Conventions
-----------
- **BCE** (:class:`BCELoss`): mean binary cross-entropy; ``pos_weight`` multiplies the tumour term.
- **Dice** (:class:`DiceLoss`): soft Dice ``1 - (2 sum(p t) + s) / (sum(p) + sum(t) + s)`` with
  ``s = 1e-5``, computed per image and averaged (MONAI's ``batch=False``); an image with no tumour
  and no prediction scores 0 loss.
- **Focal** (:class:`FocalLoss`, Lin et al. 2017): ``BCE * (1 - p_t) ** gamma``, mean over
  pixels. ``alpha=None`` is the unweighted form the study ran (gamma 2); with ``alpha`` the
  balanced form, ``alpha`` on tumour and ``1 - alpha`` on background (the paper's description; the
  later package used 0.25). With ``gamma=0`` and no alpha it equals BCE.
- **Tversky** (:class:`TverskyLoss`, Salehi et al. 2017): ``1 - (TP + s) / (TP + alpha FP + beta
  FN + s)`` per image; ``alpha`` weighs false positives and ``beta`` false negatives; alpha =
  beta = 0.5 is Dice.
- **dice+bce**, **dice+focal** (:class:`DiceBCELoss`, :class:`DiceFocalLoss`): the weighted sum
  of the two (``lambda_dice`` and ``lambda_bce``/``lambda_focal``; ``LossConfig.lambda_other``).
"""

from __future__ import annotations

import logging
import math
import numbers
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F  # noqa: N812

from .loss_config import (  # noqa: F401 (the names are part of this module's API)
    DEFAULT_LOSS,
    LOSS_NAMES,
    LOSS_PARAMETERS,
    LossConfig,
    LossName,
)

log = logging.getLogger(__name__)

#: Smoothing added to the numerator and denominator of Dice and Tversky (MONAI's default).
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


def _number(value: Any, low: float, high: float = math.inf, low_open: bool = False) -> bool:
    """Whether ``value`` is a real number in ``[low, high]`` (``(low, high]``; never NaN/inf)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return False
    v = float(value)
    return math.isfinite(v) and (v > low if low_open else v >= low) and v <= high


def _at_least_zero(what: str, value: float) -> float:
    if not _number(value, 0.0):
        raise ValueError(f"{what} must be a number >= 0, got {value!r}")
    return float(value)


def _check_gamma(gamma: float) -> float:
    if not _number(gamma, 0.0):
        raise ValueError(f"focal gamma must be >= 0, got {gamma}")
    return float(gamma)


def _check_focal_alpha(alpha: float | None) -> float | None:
    if alpha is not None and not _number(alpha, 0.0, 1.0):
        raise ValueError(f"focal alpha must be in [0, 1] or None, got {alpha}")
    return None if alpha is None else float(alpha)


def _check_tversky(alpha: float, beta: float) -> tuple[float, float]:
    if not (_number(alpha, 0.0) and _number(beta, 0.0)):
        raise ValueError(f"Tversky alpha and beta must be >= 0, got {alpha}, {beta}")
    return float(alpha), float(beta)


def _check_pos_weight(pos_weight: float | None) -> float | None:
    if pos_weight is not None and not _number(pos_weight, 0.0, low_open=True):
        raise ValueError(f"BCE pos_weight must be a number > 0 (or None for 1), got "
                         f"{pos_weight!r}")
    return None if pos_weight is None else float(pos_weight)


# --------------------------------------------------------------------------- functions


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


def dice_loss(logits: torch.Tensor, target: torch.Tensor, smooth_nr: float = SMOOTH,
              smooth_dr: float = SMOOTH) -> torch.Tensor:
    """Soft Dice loss per image and channel, averaged (see module docstring)."""
    _check(logits, target)
    tp, fp, fn = _per_image_sums(logits, target)
    return (1 - (2 * tp + smooth_nr) / (2 * tp + fp + fn + smooth_dr)).mean()


def tversky_loss(logits: torch.Tensor, target: torch.Tensor, alpha: float = 0.5,
                 beta: float = 0.5, smooth_nr: float = SMOOTH,
                 smooth_dr: float = SMOOTH) -> torch.Tensor:
    """Tversky loss; ``alpha`` weighs false positives, ``beta`` false negatives."""
    _check(logits, target)
    _check_tversky(alpha, beta)
    tp, fp, fn = _per_image_sums(logits, target)
    return (1 - (tp + smooth_nr) / (tp + alpha * fp + beta * fn + smooth_dr)).mean()


def focal_loss(logits: torch.Tensor, target: torch.Tensor, gamma: float = 2.0,
               alpha: float | None = None) -> torch.Tensor:
    """Sigmoid focal loss, mean over pixels; ``alpha=None`` is the unweighted form."""
    _check(logits, target)
    _check_gamma(gamma)
    _check_focal_alpha(alpha)
    t = target.float()
    bce = F.binary_cross_entropy_with_logits(logits, t, reduction="none")
    # log(1 - p_t) computed stably: p_t = sigmoid(x) for t = 1, sigmoid(-x) for t = 0.
    log_one_minus_pt = F.logsigmoid(-logits * (2 * t - 1))
    loss = torch.exp(gamma * log_one_minus_pt) * bce
    if alpha is not None:
        loss = (alpha * t + (1 - alpha) * (1 - t)) * loss
    return loss.mean()


# --------------------------------------------------------------------------- modules


class BCELoss(nn.Module):
    """Mean binary cross-entropy of sigmoid logits.

    Parameters
    ----------
    pos_weight : float, optional
        Weight of the tumour term (> 0), for class imbalance: e.g. the ratio of background to
        tumour pixels. None weighs both classes 1.

    Raises
    ------
    ValueError
        ``pos_weight`` is not a finite number above 0.
    """

    def __init__(self, pos_weight: float | None = None) -> None:
        super().__init__()
        self.pos_weight = _check_pos_weight(pos_weight)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Loss of ``(N, 1, H, W)`` logits against a same-shape {0, 1} target."""
        return bce_loss(logits, target, self.pos_weight)

    def extra_repr(self) -> str:
        """The parameters, as ``repr`` shows them."""
        return f"pos_weight={self.pos_weight}"


class DiceLoss(nn.Module):
    """Soft Dice loss of sigmoid logits, per image, averaged over the batch.

    ``1 - (2 sum(p t) + smooth_nr) / (sum(p) + sum(t) + smooth_dr)``; MONAI's
    ``DiceLoss(sigmoid=True, batch=False)``.

    Parameters
    ----------
    smooth_nr, smooth_dr : float
        Added to the numerator and the denominator (>= 0; default 1e-5): an image with no tumour
        and none predicted then scores 0.

    Raises
    ------
    ValueError
        A smoothing term is negative or not finite.
    """

    def __init__(self, smooth_nr: float = SMOOTH, smooth_dr: float = SMOOTH) -> None:
        super().__init__()
        self.smooth_nr = _at_least_zero("Dice smooth_nr", smooth_nr)
        self.smooth_dr = _at_least_zero("Dice smooth_dr", smooth_dr)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Loss of ``(N, 1, H, W)`` logits against a same-shape {0, 1} target."""
        return dice_loss(logits, target, self.smooth_nr, self.smooth_dr)

    def extra_repr(self) -> str:
        """The parameters, as ``repr`` shows them."""
        return f"smooth_nr={self.smooth_nr:g}, smooth_dr={self.smooth_dr:g}"


class FocalLoss(nn.Module):
    """Sigmoid focal loss (Lin et al. 2017), mean over pixels.

    ``BCE * (1 - p_t) ** gamma``, times ``alpha`` on tumour and ``1 - alpha`` on background when
    ``alpha`` is given; MONAI's ``FocalLoss(use_softmax=False)``.

    Parameters
    ----------
    gamma : float
        Focusing parameter (>= 0; default 2). 0 without ``alpha`` is BCE.
    alpha : float, optional
        Tumour weight in [0, 1]; None (default) is the unweighted form the study ran.

    Raises
    ------
    ValueError
        ``gamma`` negative or not finite, or ``alpha`` outside [0, 1].
    """

    def __init__(self, gamma: float = 2.0, alpha: float | None = None) -> None:
        super().__init__()
        self.gamma = _check_gamma(gamma)
        self.alpha = _check_focal_alpha(alpha)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Loss of ``(N, 1, H, W)`` logits against a same-shape {0, 1} target."""
        return focal_loss(logits, target, self.gamma, self.alpha)

    def extra_repr(self) -> str:
        """The parameters, as ``repr`` shows them."""
        return f"gamma={self.gamma:g}, alpha={self.alpha}"


class TverskyLoss(nn.Module):
    """Tversky loss (Salehi et al. 2017) of sigmoid logits, per image, averaged.

    ``1 - (TP + smooth_nr) / (TP + alpha FP + beta FN + smooth_dr)``; MONAI's
    ``TverskyLoss(sigmoid=True, batch=False)``.

    Parameters
    ----------
    alpha : float
        Weight of false positives (>= 0; default 0.5).
    beta : float
        Weight of false negatives (>= 0; default 0.5). alpha = beta = 0.5 is Dice.
    smooth_nr, smooth_dr : float
        Added to the numerator and the denominator (>= 0; default 1e-5).

    Raises
    ------
    ValueError
        A parameter negative or not finite.
    """

    def __init__(self, alpha: float = 0.5, beta: float = 0.5, smooth_nr: float = SMOOTH,
                 smooth_dr: float = SMOOTH) -> None:
        super().__init__()
        self.alpha, self.beta = _check_tversky(alpha, beta)
        self.smooth_nr = _at_least_zero("Tversky smooth_nr", smooth_nr)
        self.smooth_dr = _at_least_zero("Tversky smooth_dr", smooth_dr)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Loss of ``(N, 1, H, W)`` logits against a same-shape {0, 1} target."""
        return tversky_loss(logits, target, self.alpha, self.beta, self.smooth_nr,
                            self.smooth_dr)

    def extra_repr(self) -> str:
        """The parameters, as ``repr`` shows them."""
        return f"alpha={self.alpha:g}, beta={self.beta:g}"


class DiceBCELoss(nn.Module):
    """``lambda_dice * Dice + lambda_bce * BCE`` (like MONAI's ``DiceCELoss``).

    Parameters
    ----------
    pos_weight : float, optional
        BCE tumour weight (see :class:`BCELoss`).
    lambda_dice, lambda_bce : float
        Weights of the two terms (>= 0; default 1 each).

    Raises
    ------
    ValueError
        A weight negative or not finite, or ``pos_weight`` not above 0.
    """

    def __init__(self, pos_weight: float | None = None, lambda_dice: float = 1.0,
                 lambda_bce: float = 1.0) -> None:
        super().__init__()
        self.lambda_dice = _at_least_zero("lambda_dice", lambda_dice)
        self.lambda_bce = _at_least_zero("lambda_bce", lambda_bce)
        self.dice = DiceLoss()
        self.bce = BCELoss(pos_weight)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Loss of ``(N, 1, H, W)`` logits against a same-shape {0, 1} target."""
        return self.lambda_dice * self.dice(logits, target) + \
            self.lambda_bce * self.bce(logits, target)

    def extra_repr(self) -> str:
        """The parameters, as ``repr`` shows them."""
        return f"lambda_dice={self.lambda_dice:g}, lambda_bce={self.lambda_bce:g}"


class DiceFocalLoss(nn.Module):
    """``lambda_dice * Dice + lambda_focal * Focal`` (like MONAI's ``DiceFocalLoss``).

    Parameters
    ----------
    gamma, alpha : float
        Focal parameters (see :class:`FocalLoss`).
    lambda_dice, lambda_focal : float
        Weights of the two terms (>= 0; default 1 each).

    Raises
    ------
    ValueError
        A weight negative or not finite, or a focal parameter out of range.
    """

    def __init__(self, gamma: float = 2.0, alpha: float | None = None, lambda_dice: float = 1.0,
                 lambda_focal: float = 1.0) -> None:
        super().__init__()
        self.lambda_dice = _at_least_zero("lambda_dice", lambda_dice)
        self.lambda_focal = _at_least_zero("lambda_focal", lambda_focal)
        self.dice = DiceLoss()
        self.focal = FocalLoss(gamma, alpha)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Loss of ``(N, 1, H, W)`` logits against a same-shape {0, 1} target."""
        return self.lambda_dice * self.dice(logits, target) + \
            self.lambda_focal * self.focal(logits, target)

    def extra_repr(self) -> str:
        """The parameters, as ``repr`` shows them."""
        return f"lambda_dice={self.lambda_dice:g}, lambda_focal={self.lambda_focal:g}"


def make_loss(config: LossConfig | str, **kwargs: Any) -> nn.Module:
    """Build the loss module of a :class:`LossConfig`, or of a loss name plus parameters.

    Tversky without ``alpha`` weighs false positives 0.3 and, without ``beta``, false negatives
    ``1 - alpha``. A parameter the named loss does not use (``alpha`` with ``bce``, say) is
    logged as a warning (:meth:`LossConfig.ignored_message`).

    Raises
    ------
    ValueError
        Unknown name or out-of-range parameters.
    """
    cfg = LossConfig(config, **kwargs) if isinstance(config, str) else config
    note = cfg.ignored_message()
    if note is not None:
        log.warning(note)
    if cfg.name == "bce":
        return BCELoss(cfg.pos_weight)
    if cfg.name == "dice":
        return DiceLoss()
    if cfg.name == "focal":
        return FocalLoss(cfg.gamma, cfg.alpha)
    if cfg.name == "tversky":
        a = 0.3 if cfg.alpha is None else cfg.alpha
        return TverskyLoss(a, (1 - a) if cfg.beta is None else cfg.beta)
    if cfg.name == "dice+bce":
        return DiceBCELoss(cfg.pos_weight, cfg.lambda_dice, cfg.lambda_other)
    return DiceFocalLoss(cfg.gamma, cfg.alpha, cfg.lambda_dice, cfg.lambda_other)
