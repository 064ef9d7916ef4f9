"""The study's 2D U-Net and its checkpoint format.

The default :class:`UNetConfig` is the classic small U-Net of the study (see ``shared/STUDY.md``):
4 down / 4 up levels, filters 16-32-64-128-256, two 3x3 same-padded convolutions with ReLU per
block (He-normal initialisation), dropout between the two convolutions (0.1, 0.1, 0.2, 0.2, 0.3 at
the bottleneck, mirrored upwards), 2x2 max-pooling, 2x2 stride-2 transposed convolutions and skip
concatenation, then a 1x1 convolution. With the study's 3-channel input (its PNGs were read as
RGB) it has exactly the Keras model's 1,941,105 parameters; with one grey channel (our default)
1,940,817.
The network returns logits; apply a sigmoid for probabilities (the losses take logits, which is
numerically safer).

Checkpoints are one dict saved with :func:`torch.save` and read back with
``torch.load(..., weights_only=True)``, so a checkpoint can never run code:

``{"format": "napari-brainseg-unet", "schema": 1, "package_version": ..., "config": {...},
"state_dict": {...}, "normalisation": {...}, "training": {...}, "metrics": {...},
"optimizer": {...} | None, "resume": {...} | None}``
"""

from __future__ import annotations

import io as _io
import logging
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F  # noqa: N812

from . import __version__

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "napari-brainseg-unet"
SCHEMA_VERSION = 1


@dataclass(frozen=True)
class UNetConfig:
    """Architecture of :class:`UNet`.

    Attributes
    ----------
    in_channels : int
        Input channels (1 for a grey MRI slice).
    out_classes : int
        Output channels: 1 for tumour vs background (sigmoid), more for several labels.
    depth : int
        Number of 2x down-samplings (the study: 4). Inputs are padded to a multiple of
        ``2 ** depth`` internally and cropped back.
    base_filters : int
        Filters of the first level; doubled at each level (the study: 16 -> 256).
    batch_norm : bool
        Batch normalisation after each convolution (the study: none).
    dropout : tuple of float
        Dropout per level from the top down to the bottleneck (``depth + 1`` values), mirrored in
        the decoder. The study: (0.1, 0.1, 0.2, 0.2, 0.3).
    """

    in_channels: int = 1
    out_classes: int = 1
    depth: int = 4
    base_filters: int = 16
    batch_norm: bool = False
    dropout: tuple[float, ...] = (0.1, 0.1, 0.2, 0.2, 0.3)

    def __post_init__(self) -> None:
        if self.in_channels < 1 or self.out_classes < 1:
            raise ValueError("in_channels and out_classes must be >= 1")
        if not 1 <= self.depth <= 7:
            raise ValueError(f"depth must be between 1 and 7, got {self.depth}")
        if self.base_filters < 1:
            raise ValueError("base_filters must be >= 1")
        if len(self.dropout) != self.depth + 1:
            raise ValueError(
                f"dropout needs depth + 1 = {self.depth + 1} values (top level to bottleneck), "
                f"got {len(self.dropout)}"
            )
        if any(not 0 <= p < 1 for p in self.dropout):
            raise ValueError("dropout values must be in [0, 1)")

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> UNetConfig:
        """Rebuild from :func:`dataclasses.asdict` output (unknown keys are an error)."""
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown U-Net config keys {sorted(unknown)}")
        kwargs = dict(d)
        if "dropout" in kwargs:
            kwargs["dropout"] = tuple(float(p) for p in kwargs["dropout"])
        return cls(**kwargs)

    @property
    def multiple(self) -> int:
        """Input sides are padded to a multiple of this."""
        return 2**self.depth


class DoubleConv(nn.Module):
    """Two 3x3 same-padded convolutions with ReLU, dropout between them (the study's block)."""

    def __init__(self, cin: int, cout: int, dropout: float, batch_norm: bool) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(cin, cout, 3, padding=1, bias=not batch_norm)]
        if batch_norm:
            layers.append(nn.BatchNorm2d(cout))
        layers.append(nn.ReLU(inplace=True))
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        layers.append(nn.Conv2d(cout, cout, 3, padding=1, bias=not batch_norm))
        if batch_norm:
            layers.append(nn.BatchNorm2d(cout))
        layers.append(nn.ReLU(inplace=True))
        self.block = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return self.block(x)


class Up(nn.Module):
    """2x2 stride-2 transposed convolution, concatenation with the skip, then a DoubleConv."""

    def __init__(self, cin: int, cout: int, dropout: float, batch_norm: bool) -> None:
        super().__init__()
        self.up = nn.ConvTranspose2d(cin, cout, 2, stride=2)
        self.conv = DoubleConv(2 * cout, cout, dropout, batch_norm)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return self.conv(torch.cat([self.up(x), skip], dim=1))


class UNet(nn.Module):
    """2D U-Net returning logits of shape ``(N, out_classes, H, W)`` for input ``(N, C, H, W)``.

    Any height and width are accepted: the input is zero-padded to a multiple of
    ``2 ** depth`` and the output cropped back.
    """

    def __init__(self, config: UNetConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or UNetConfig()
        widths = [config.base_filters * 2**i for i in range(config.depth + 1)]
        self.down = nn.ModuleList()
        cin = config.in_channels
        for w, p in zip(widths, config.dropout, strict=True):
            self.down.append(DoubleConv(cin, w, p, config.batch_norm))
            cin = w
        self.up = nn.ModuleList(
            Up(widths[i + 1], widths[i], config.dropout[i], config.batch_norm)
            for i in reversed(range(config.depth))
        )
        self.head = nn.Conv2d(widths[0], config.out_classes, 1)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """He-normal weights and zero biases, as the study's Keras model."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d | nn.ConvTranspose2d):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return logits; see the class docstring for shapes."""
        if x.ndim != 4 or x.shape[1] != self.config.in_channels:
            raise ValueError(
                f"UNet expects input of shape (N, {self.config.in_channels}, H, W), got "
                f"{tuple(x.shape)}; add batch/channel axes with x[None, None] for one slice."
            )
        h, w = x.shape[-2:]
        m = self.config.multiple
        ph, pw = (-h) % m, (-w) % m
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph))
        skips = []
        for i, block in enumerate(self.down):
            x = block(x)
            if i < self.config.depth:
                skips.append(x)
                x = F.max_pool2d(x, 2)
        for up, skip in zip(self.up, reversed(skips), strict=True):
            x = up(x, skip)
        out = self.head(x)
        return out[..., :h, :w]


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


# --------------------------------------------------------------------------- checkpoints


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used; the message says why and what to do."""


@dataclass(frozen=True)
class Checkpoint:
    """A loaded checkpoint: the model (eval mode, CPU) and everything saved with it."""

    model: UNet
    config: UNetConfig
    normalisation: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    optimizer: dict[str, Any] | None = None
    resume: dict[str, Any] | None = None
    package_version: str = ""
    path: Path | None = None


def save_checkpoint(
    path: str | os.PathLike[str],
    model: UNet,
    normalisation: Mapping[str, Any] | None = None,
    training: Mapping[str, Any] | None = None,
    metrics: Mapping[str, Any] | None = None,
    optimizer: Mapping[str, Any] | None = None,
    resume: Mapping[str, Any] | None = None,
) -> Path:
    """Save a checkpoint atomically (temp file + rename). Values must be builtins or tensors."""
    from .io import atomic_write

    payload = {
        "format": CHECKPOINT_FORMAT,
        "schema": SCHEMA_VERSION,
        "package_version": __version__,
        "config": asdict(model.config),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "normalisation": dict(normalisation or {}),
        "training": dict(training or {}),
        "metrics": dict(metrics or {}),
        "optimizer": dict(optimizer) if optimizer is not None else None,
        "resume": dict(resume) if resume is not None else None,
    }
    payload["config"]["dropout"] = list(payload["config"]["dropout"])
    buf = _io.BytesIO()
    torch.save(payload, buf)
    data = buf.getvalue()
    return atomic_write(Path(path), lambda tmp: Path(tmp).write_bytes(data))


def _references_code(path: Any) -> bool:
    """Whether a file torch refused is a pickle naming classes or functions (code it would run).

    Only inspects the opcodes with ``pickletools`` (nothing is executed). A zip (torch's own
    format) that ``weights_only`` refused always holds such a reference; torch's legacy format
    is several pickles in a row (magic number, protocol, system info, then the payload), so every
    pickle up to the raw tensor bytes is read.
    """
    import pickletools
    import zipfile

    try:
        if isinstance(path, _io.BytesIO):
            raw = path.getvalue()
        else:
            raw = Path(path).read_bytes()
        if zipfile.is_zipfile(_io.BytesIO(raw)):
            return True
    except OSError:
        return False
    code = {"GLOBAL", "STACK_GLOBAL", "INST", "OBJ", "REDUCE", "BUILD"}
    stream = _io.BytesIO(raw)
    while stream.tell() < len(raw):
        try:
            ops = {op.name for op, _arg, _pos in pickletools.genops(stream)}
        except Exception:  # the end of the pickles (tensor bytes), or not a pickle at all
            return False
        if ops & code:
            return True
    return False


def _expected_shapes(config: UNetConfig) -> dict[str, tuple[int, ...]]:
    """The state_dict shapes of ``UNet(config)``, built on the meta device (no memory used)."""
    with torch.device("meta"):
        skeleton = UNet(config)
    return {k: tuple(v.shape) for k, v in skeleton.state_dict().items()}


def _check_weights(state: Any, config: UNetConfig) -> str | None:
    """What is wrong with ``state`` as the weights of ``UNet(config)``, or None.

    Checked before the model is built, so an edited config (``base_filters=384`` beside 2 MB of
    weights) costs nothing instead of gigabytes.
    """
    if not isinstance(state, Mapping) or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        return "state_dict is not a dict of tensors"
    expected = _expected_shapes(config)
    missing = [k for k in expected if k not in state]
    extra = [k for k in state if k not in expected]
    if missing or extra:
        which = f"missing {missing[0]}" if missing else f"unexpected {extra[0]}"
        return f"{len(missing)} missing and {len(extra)} unexpected weights, e.g. {which}"
    for k, shape in expected.items():
        if tuple(state[k].shape) != shape:
            return (f"{k}: the configuration (base_filters={config.base_filters}, depth="
                    f"{config.depth}) needs shape {shape} but the file holds "
                    f"{tuple(state[k].shape)} weights")
    return None


def _non_finite(state: Mapping[str, torch.Tensor]) -> str | None:
    """The first weight holding NaN or infinite values, or None."""
    for k, v in state.items():
        if v.is_floating_point() and not bool(torch.isfinite(v).all()):
            return k
    return None


def _dict_or_none(payload: Mapping[str, Any], key: str, name: str) -> dict[str, Any] | None:
    value = payload.get(key)
    if value is not None and not isinstance(value, Mapping):
        raise CheckpointError(
            f"{name}: the checkpoint's {key!r} is not a dict ({type(value).__name__} "
            f"{value!r:.40}); the file was edited or written by another program. Train again."
        )
    return None if value is None else dict(value)


def load_checkpoint(path: str | os.PathLike[str] | _io.BytesIO) -> Checkpoint:
    """Rebuild the model from a checkpoint file alone, refusing anything that is not ours.

    Uses ``torch.load(..., weights_only=True)``: a file holding arbitrary Python objects (a
    pickle that could run code) is refused, never executed. The stored configuration is checked
    against the weights' shapes before the model is built, and the weights must be finite.

    Raises
    ------
    CheckpointError
        Missing, truncated, foreign, newer-schema, mismatched or edited files (non-finite
        weights, a normalisation or metrics that are not dicts), with a message that names the
        file and says what to do.
    """
    name = getattr(path, "name", None) or str(path)
    name = Path(name).name
    if not isinstance(path, _io.BytesIO) and not Path(path).is_file():
        raise CheckpointError(f"{name}: no such checkpoint file")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        if _references_code(path):
            raise CheckpointError(
                f"{name}: refused: the file holds Python objects that could run code, not a "
                "napari-brainseg checkpoint. Only load checkpoints you trained with this tool."
            ) from exc
        raise CheckpointError(
            f"{name}: not a readable checkpoint (truncated or not a PyTorch file: "
            f"{type(exc).__name__}). Train again or copy the file again."
        ) from exc
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"{name}: not a napari-brainseg U-Net checkpoint (a bare state_dict or another "
            "tool's model?). Train one with the Train widget or `brainseg train`."
        )
    schema = payload.get("schema")
    if not isinstance(schema, int) or isinstance(schema, bool) or schema < 1:
        raise CheckpointError(
            f"{name}: checkpoint schema {schema!r:.20} is not a schema version this tool writes "
            f"(a whole number; this napari-brainseg writes {SCHEMA_VERSION}); the file was "
            "edited or written by another program. Train again."
        )
    if schema > SCHEMA_VERSION:
        raise CheckpointError(
            f"{name}: checkpoint schema {schema} is newer than this napari-brainseg "
            f"({__version__}, schema {SCHEMA_VERSION}); upgrade napari-brainseg."
        )
    sections = {key: _dict_or_none(payload, key, name)
                for key in ("normalisation", "training", "metrics", "optimizer", "resume")}
    try:
        from .preprocess import check_normalisation

        normalisation = check_normalisation(sections["normalisation"])
    except ValueError as exc:
        raise CheckpointError(
            f"{name}: the checkpoint's intensity normalisation is unusable ({exc}); the file was "
            "edited or written by another program. Train again."
        ) from exc
    try:
        raw_config = payload["config"]
        if not isinstance(raw_config, Mapping):
            raise TypeError(f"config is a {type(raw_config).__name__}, not a dict")
        config = UNetConfig.from_dict(raw_config)
        problem = _check_weights(payload.get("state_dict"), config)
        if problem:
            raise ValueError(problem)
        model = UNet(config)
        model.load_state_dict(payload["state_dict"])
    except (KeyError, TypeError, ValueError, RuntimeError, OverflowError) as exc:
        detail = next((ln.strip() for ln in str(exc).splitlines()[1:] if ln.strip()),
                      str(exc)).rstrip(".)")
        raise CheckpointError(
            f"{name}: the weights do not fit the stored U-Net configuration ({detail}); the "
            "file was edited or written by another program. Train again."
        ) from exc
    bad = _non_finite(payload["state_dict"])
    if bad:
        raise CheckpointError(
            f"{name}: the weights hold NaN or infinite values ({bad}), so every prediction "
            "would be meaningless; training diverged or the file is damaged. Use an earlier "
            "checkpoint or train again with a lower learning rate."
        )
    model.eval()
    return Checkpoint(
        model=model,
        config=config,
        normalisation=normalisation,
        training=sections["training"] or {},
        metrics=sections["metrics"] or {},
        optimizer=sections["optimizer"],
        resume=sections["resume"],
        package_version=str(payload.get("package_version", "")),
        path=None if isinstance(path, _io.BytesIO) else Path(path),
    )
