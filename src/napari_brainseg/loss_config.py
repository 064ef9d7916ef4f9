"""The losses by name and the parameters each one takes (no torch: the CLI reads it for --help).

:mod:`napari_brainseg.losses` holds the losses themselves (``torch.nn.Module`` classes) and
re-exports these names; the CLI, the Train widget, the study and the tuning read the one list
here.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Literal, get_args

LossName = Literal["bce", "dice", "focal", "tversky", "dice+bce", "dice+focal"]
#: Every loss, in the order the CLI lists them.
LOSS_NAMES: tuple[str, ...] = get_args(LossName)
#: The loss a new model trains with.
DEFAULT_LOSS: LossName = "dice+bce"
#: The :class:`LossConfig` parameters each loss uses; a loss ignores the others.
LOSS_PARAMETERS: dict[str, tuple[str, ...]] = {
    "bce": ("pos_weight",),
    "dice": (),
    "focal": ("alpha", "gamma"),
    "tversky": ("alpha", "beta"),
    "dice+bce": ("pos_weight", "lambda_dice", "lambda_other"),
    "dice+focal": ("alpha", "gamma", "lambda_dice", "lambda_other"),
}


@dataclass(frozen=True)
class LossConfig:
    """A loss by name with its parameters (stored in checkpoints and study configurations).

    Attributes
    ----------
    name : {"bce", "dice", "focal", "tversky", "dice+bce", "dice+focal"}
    alpha : float or None
        Focal: tumour weight (None = unweighted, the study's run). Tversky: false-positive
        weight (default 0.3).
    gamma : float
        Focal focusing parameter (default 2).
    beta : float or None
        Tversky false-negative weight (default ``1 - alpha``).
    pos_weight : float or None
        BCE tumour weight.
    lambda_dice, lambda_other : float
        Weights of the two terms of a combined loss.

    Only the parameters :data:`LOSS_PARAMETERS` lists for ``name`` take effect; see
    :meth:`ignored`. Their ranges are checked when the loss is built
    (:func:`napari_brainseg.losses.make_loss`).
    """

    name: str = DEFAULT_LOSS
    alpha: float | None = None
    gamma: float = 2.0
    beta: float | None = None
    pos_weight: float | None = None
    lambda_dice: float = 1.0
    lambda_other: float = 1.0

    def __post_init__(self) -> None:
        if self.name not in LOSS_NAMES:
            raise ValueError(f"unknown loss {self.name!r}; choose one of {', '.join(LOSS_NAMES)}")

    def ignored(self) -> list[str]:
        """The parameters set away from their defaults that this loss does not use.

        E.g. ``["alpha=0.3"]`` for ``LossConfig("bce", alpha=0.3)``.
        """
        defaults = {f.name: f.default for f in fields(self)}
        used = LOSS_PARAMETERS[self.name]
        out = []
        for key, value in asdict(self).items():
            if key == "name" or key in used:
                continue
            if value != defaults[key]:
                out.append(f"{key}={value:g}" if isinstance(value, int | float) else
                           f"{key}={value!r}")
        return out

    def ignored_message(self) -> str | None:
        """One line naming the ignored parameters and the losses that use them, or None."""
        ignored = self.ignored()
        if not ignored:
            return None
        uses = []
        for item in ignored:
            key = item.split("=")[0]
            takers = [n for n, ps in LOSS_PARAMETERS.items() if key in ps]
            uses.append(f"{key} applies to {', '.join(takers)}")
        return (f"the {self.name} loss ignores {', '.join(ignored)} ({'; '.join(uses)}); "
                "it trains as if they were not given")

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for checkpoints and JSON."""
        return asdict(self)
