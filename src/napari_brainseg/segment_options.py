"""How a scan becomes a tumour mask: :class:`SegmentOptions`, and the model's own threshold.

Kept apart from :mod:`napari_brainseg.predict` (which runs the network) so that options can be
built, validated and recorded without torch.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from .model import Checkpoint

#: The threshold of a model whose checkpoint records none (:func:`model_options`).
DEFAULT_THRESHOLD = 0.5


@dataclass(frozen=True)
class SegmentOptions:
    """How to turn a scan into a tumour mask.

    Attributes
    ----------
    threshold : float or None
        Probability above which a pixel is tumour. None (the default): the model's own, the
        ``threshold`` its checkpoint records (the built-in model's, calibrated on held-out
        synthetic tumours; see the README's model card), else 0.5.
    tta : bool
        Average the probabilities of the 4 flips (about 4x slower).
    tile : int or None
        Sliding-window size for images with a larger side; None always runs whole images.
        Whole images are fastest (an 800 x 512 slice in one pass instead of two overlapping
        512 windows), so only images with a side over 1024 are tiled.
    overlap : float
        Window overlap fraction (0-0.9).
    min_area_mm2 : float
        Remove tumour components smaller than this in each slice (0 keeps everything).
    keep : {"all", "largest"}
        Keep every component, or only the largest (in 3D for volumes).
    fill_holes : bool
        Fill holes inside tumour components (necrotic cores are tumour too).
    batch_size : int
        Slices (or windows) handed to the model together. On a CPU they are run one per forward
        pass (see ``Predictor._run``), on a GPU as one batch.
    """

    threshold: float | None = None
    tta: bool = False
    tile: int | None = 1024
    overlap: float = 0.25
    min_area_mm2: float = 10.0
    keep: Literal["all", "largest"] = "all"
    fill_holes: bool = True
    batch_size: int = 8

    def __post_init__(self) -> None:
        if self.threshold is not None and not 0 < self.threshold < 1:
            raise ValueError(f"threshold must be between 0 and 1, got {self.threshold}")
        if self.tile is not None and self.tile < 32:
            raise ValueError(f"tile must be at least 32 pixels, got {self.tile}")
        if not 0 <= self.overlap < 0.95:
            raise ValueError(f"overlap must be in [0, 0.95), got {self.overlap}")
        if self.keep not in ("all", "largest"):
            raise ValueError(f"keep must be 'all' or 'largest', got {self.keep!r}")
        if self.min_area_mm2 < 0 or self.batch_size < 1:
            raise ValueError("min_area_mm2 must be >= 0 and batch_size >= 1")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SegmentOptions:
        """Build from a dict, ignoring unknown keys."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


def model_options(options: SegmentOptions | None, ck: Checkpoint | None) -> SegmentOptions:
    """``options`` with a threshold left to the model (None) set: the one ``ck`` records, or 0.5.

    A checkpoint records its threshold in its training record (``threshold``); the built-in
    model's was calibrated so that its tumour area matches on held-out synthetic tumours.
    """
    opts = options or SegmentOptions()
    if opts.threshold is not None:
        return opts
    own = None if ck is None else ck.training.get("threshold")
    ok = isinstance(own, (int, float)) and 0 < float(own) < 1
    return replace(opts, threshold=float(own) if ok else DEFAULT_THRESHOLD)
