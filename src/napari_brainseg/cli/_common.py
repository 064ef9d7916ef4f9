"""What every command shares: error output, the logger and the ranges of numeric options."""

from __future__ import annotations

import argparse
import logging
import math
import sys
from dataclasses import dataclass

log = logging.getLogger("napari_brainseg")


def _err(message: str) -> None:
    print(f"brainseg: error: {message}", file=sys.stderr)


# --------------------------------------------------------------------------- option ranges


@dataclass(frozen=True)
class Bounds:
    """The allowed range of a numeric option (NaN and infinities are always refused)."""

    low: float
    high: float
    unit: str = ""
    open_low: bool = False  # ``low`` itself is not allowed
    open_high: bool = False  # ``high`` itself is not allowed

    def check(self, value: float) -> bool:
        """Whether ``value`` is finite and within the bounds."""
        return (math.isfinite(value) and (value > self.low if self.open_low else value >= self.low)
                and (value < self.high if self.open_high else value <= self.high))

    def describe(self) -> str:
        """E.g. ``between 0 and 50 mm`` or ``above 0 and at most 1``."""
        unit = f" {self.unit}" if self.unit else ""
        lo, hi = (f"{int(v)}" if float(v).is_integer() else f"{v:g}" for v in (self.low, self.high))
        if not (self.open_low or self.open_high):
            return f"between {lo} and {hi}{unit}"
        low = f"above {lo}" if self.open_low else f"at least {lo}"
        high = f"below {hi}" if self.open_high else f"at most {hi}"
        return f"{low} and {high}{unit}"


SEED = Bounds(0, 2**32 - 1)
EPOCHS = Bounds(1, 10_000)
BATCH = Bounds(1, 512)
LR = Bounds(0, 1, open_low=True)
#: The Train widget's spin boxes and ``train.MIN_PATCH``/``MAX_PATCH`` use the same bounds.
PATCH = Bounds(16, 2048, "pixels")
WIDTH = Bounds(1, 128)
UNIT = Bounds(0, 1)

#: Every numeric option of every command and its range, by argparse ``dest``.
RANGES: dict[str, dict[str, Bounds]] = {
    "sample-data": {"n": Bounds(1, 10_000), "seed": SEED},
    # skullstrip.MAX_MM bounds the classical method's millimetre parameters
    "skull-strip": {"tightness": UNIT, "erode_mm": Bounds(0, 50, "mm")},
    "train": {"alpha": UNIT, "gamma": Bounds(0, 10), "beta": UNIT,
              "pos_weight": Bounds(0, 1000, open_low=True), "epochs": EPOCHS,
              "batch_size": BATCH, "lr": LR, "val_split": Bounds(0, 0.9),
              "patch_size": PATCH, "patience": Bounds(0, 10_000), "base_filters": WIDTH,
              "seed": SEED},
    "segment": {"threshold": Bounds(0, 1, open_low=True, open_high=True),
                "min_area": Bounds(0, 10_000, "mm²"), "batch_size": BATCH,
                "uncertainty_passes": Bounds(2, 64)},  # tta allows 4 at most: uncertainty.py
    "study": {"folds": Bounds(2, 50), "epochs": EPOCHS, "trials": Bounds(1, 1000),
              "batch_size": BATCH, "lr": LR, "patch_size": PATCH, "base_filters": WIDTH,
              "seed": SEED},
}


def check_ranges(command: str, args: argparse.Namespace) -> str | None:
    """The first numeric option of ``command`` outside its range, as a message; else None."""
    for dest, bounds in RANGES.get(command, {}).items():
        value = getattr(args, dest, None)
        if value is not None and not bounds.check(value):
            return f"--{dest.replace('_', '-')} must be {bounds.describe()}, got {value}"
    return None


# --------------------------------------------------------------------------- info
