"""Segmenting slices and volumes with a U-Net checkpoint (model inference and its postprocessing).

- The checkpoint's own intensity normalisation is applied to every slice.
- Any image size: the U-Net is fully convolutional, and images with a side larger than
  ``tile`` are processed in overlapping ``tile`` x ``tile`` windows blended with a Gaussian weight
  (so memory stays bounded for 1024 x 1024 and larger).
- Optional flip test-time augmentation (mean of 4 flips), a threshold, postprocessing (components
  smaller than ``min_area_mm2`` removed, the largest kept or all, holes filled) and an optional
  brain mask outside which nothing is tumour.
- Volumes are processed in batches of slices along an axis; only the uint8 mask (and, when asked,
  the float32 probability) of the whole volume is held, never a float copy per step.
- :func:`segment_scan` is the whole default pipeline for one scan (skull strip, model,
  enhancement check, contrast warning); folders are :mod:`napari_brainseg.batch`'s.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Generator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from scipy import ndimage as ndi
from torch.nn import functional as F  # noqa: N812

from .devices import Device, pick_device
from .inference import Backend, OnnxBackend, backend_choice, onnx_available
from .lesions import (  # noqa: F401 (tumour_size, largest_lesion_centre: this module's API)
    largest_component,
    largest_lesion_centre,
    tumour_size,
)
from .model import Checkpoint, UNet, load_checkpoint
from .preprocess import contrast_warning, estimate_pixel_mm, foreground, normalise
from .progress import drain
from .segment_options import (  # noqa: F401 (SegmentOptions, DEFAULT_THRESHOLD: this module's API)
    DEFAULT_THRESHOLD,
    SegmentOptions,
    model_options,
)

log = logging.getLogger(__name__)

#: The built-in tumour model (synthetic CE-T1 tumours on real heads, scripts/train_tumour_model.py).
BUILTIN_MODEL = Path(__file__).resolve().parent / "models" / "tumour_unet.pt"
#: Names that select it wherever a checkpoint path is expected.
BUILTIN_NAMES = ("demo", "builtin")
@dataclass(frozen=True)
class SliceResult:
    """A segmented slice: uint8 mask (1 = tumour) and float32 tumour probability."""

    mask: np.ndarray
    probability: np.ndarray


@dataclass(frozen=True)
class VolumeResult:
    """A segmented volume; ``probability`` is None unless asked for."""

    mask: np.ndarray
    probability: np.ndarray | None
    voxels: int
    size_mm: float
    unit: str


def _gaussian_weight(tile: int) -> torch.Tensor:
    ax = torch.arange(tile, dtype=torch.float32) - (tile - 1) / 2
    g = torch.exp(-(ax**2) / (2 * (tile / 8) ** 2))
    w = g[:, None] * g[None, :]
    return (w / w.max()).clamp(min=1e-3)


def _starts(n: int, tile: int, stride: int) -> list[int]:
    if n <= tile:
        return [0]
    s = list(range(0, n - tile, stride)) + [n - tile]
    return sorted(set(s))


class Predictor:
    """A loaded model plus its normalisation and the segmentation options.

    Parameters
    ----------
    model : UNet
        The network (moved to ``device``, eval mode, channels-last).
    normalisation : dict
        The intensity normalisation the model was trained with.
    options : SegmentOptions, optional
    device : str
        ``auto`` (CUDA, MPS, CPU), ``cpu``, ``cuda`` or ``mps``.
    backend : {"auto", "torch", "onnx"}
        How the network runs on a CPU (:mod:`napari_brainseg.inference`). ``auto`` (default):
        ONNX Runtime once the model's export is ready (built in the background on first use,
        PyTorch until then); ``torch``: eager PyTorch always; ``onnx``: wait for the export.
        The environment variable ``BRAINSEG_BACKEND=torch`` overrides ``auto``. GPUs, and
        dropout sampling (MC dropout), always run PyTorch.
    precision : {"auto", "fp32", "bf16", "fp16"}
        ``auto``: on CUDA, mixed precision (autocast to fp16, the sigmoid in float32; a batch
        whose logits overflow fp16 is run again in fp32); elsewhere fp32.
        ``BRAINSEG_PRECISION=fp32`` overrides ``auto``. fp16 keeps 3 more mantissa bits than
        bf16: with the built-in model on 256 x 256 phantoms fp16 masks equal fp32's and bf16
        ones differ in 1 pixel in 1,877 (Dice 0.9997); a briefly trained model is less sure
        at its edges (Dice 0.9987 fp16, 0.989 bf16): choose fp32 where that matters.
    """

    def __init__(self, model: UNet, normalisation: dict[str, Any] | None = None,
                 options: SegmentOptions | None = None, device: Device = "auto",
                 backend: Backend = "auto",
                 precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto") -> None:
        if precision not in ("auto", "fp32", "bf16", "fp16"):
            raise ValueError(f"precision must be 'auto', 'fp32', 'bf16' or 'fp16', got "
                             f"{precision!r}")
        self.device = pick_device(device)
        self.backend = backend_choice(backend)
        if precision == "auto":
            env = os.environ.get("BRAINSEG_PRECISION", "").strip().lower()
            if env in ("fp32", "bf16", "fp16"):
                precision = env
            else:
                precision = "fp16" if self.device.type == "cuda" else "fp32"
        #: Autocast dtype of the forward pass (None: fp32).
        self.autocast: torch.dtype | None = {"fp32": None, "bf16": torch.bfloat16,
                                             "fp16": torch.float16}[precision]
        self._onnx: OnnxBackend | None = None
        self.model = model.eval().to(self.device).to(memory_format=torch.channels_last)
        self.normalisation = normalisation
        self.options = model_options(options, None)
        self.checkpoint: Checkpoint | None = None
        #: Pixel size (mm) the model works on, or None to feed slices at their own pixel size
        #: (models trained by ``brainseg train`` on the user's own slices).
        self.pixel_mm: float | None = None
        #: For contrast-enhanced T1 models: a tumour component whose 90th-percentile intensity
        #: is below this multiple of the white matter's (the brain's 80th percentile) does not
        #: enhance and is dropped (needs a brain mask). None: no such check.
        self.min_enhancement: float | None = None
        #: The checkpoint file loaded (None for a model built in memory), and how the user named
        #: it (``demo`` for the built-in model): recorded with every output (see :meth:`record`).
        self.model_path: Path | None = None
        self.model_label: str | None = None

    def record(self, **options: Any) -> dict[str, Any]:
        """The provenance record of this predictor's outputs (see :mod:`.provenance`).

        Package version, the model file's name and SHA-256, the :class:`SegmentOptions` and any
        further ``options`` of the run (e.g. skull strip, axis); never input paths.
        """
        from .provenance import record

        return record(self.model_path, {**asdict(self.options), **options},
                      model_label=self.model_label)

    @classmethod
    def from_checkpoint(cls, path: str | Path = "demo", options: SegmentOptions | None = None,
                        device: Device = "auto", backend: Backend = "auto") -> Predictor:
        """Load a checkpoint file, or ``"demo"`` / ``"builtin"`` for the built-in model."""
        builtin = str(path) in BUILTIN_NAMES
        p = BUILTIN_MODEL if builtin else Path(path)
        if builtin and not p.is_file():
            raise FileNotFoundError(
                f"the built-in model is missing ({p}); reinstall napari-brainseg or run "
                "scripts/train_tumour_model.py"
            )
        ck = load_checkpoint(p)
        if ck.training.get("task") == "skull-strip":
            from .model import CheckpointError

            raise CheckpointError(f"{p.name} is the skull-strip model, not a tumour model; "
                                  "use --model demo or a checkpoint from brainseg train")
        pred = cls(ck.model, ck.normalisation, model_options(options, ck), device, backend)
        pred.checkpoint = ck
        pred.model_path = p
        pred.model_label = "demo" if builtin else None
        pixel_mm = ck.training.get("pixel_mm")
        pred.pixel_mm = float(pixel_mm) if isinstance(pixel_mm, (int, float)) else None
        ratio = ck.training.get("min_enhancement")
        pred.min_enhancement = float(ratio) if isinstance(ratio, (int, float)) else None
        return pred

    # -- probabilities
    def prepare(self, wait: bool = False) -> None:
        """Start building the ONNX Runtime session (CPU, backend not ``torch``) in the background.

        Called by the first forward pass anyway; a caller may call it early (e.g. when a model
        is picked) so that the first segmentation already runs ONNX Runtime. ``wait`` blocks
        until the session is ready or has failed (then PyTorch is used).
        """
        if self.device.type != "cpu" or self.backend == "torch" or self.autocast is not None:
            return
        if self._onnx is None:
            if not onnx_available():
                if self.backend == "onnx":
                    log.warning("onnxruntime is not installed; segmenting with PyTorch")
                self.backend = "torch"
                return
            self._onnx = OnnxBackend(self.model, wait=wait)
        elif wait:
            self._onnx.start(wait=True)  # joins the running export

    def _onnx_run(self, x: torch.Tensor) -> torch.Tensor | None:
        """ONNX Runtime's probabilities, or None where PyTorch must run."""
        if self.device.type != "cpu" or self.backend == "torch" or self.autocast is not None:
            return None
        if any(m.training for m in self.model.modules()):  # dropout sampling: PyTorch only
            return None
        if self._onnx is None:
            self.prepare(wait=self.backend == "onnx")
            if self._onnx is None:
                return None
        return self._onnx.run(x)

    def _run(self, x: torch.Tensor) -> torch.Tensor:
        """Sigmoid of the model on ``(N, 1, H, W)``.

        On a CPU, ONNX Runtime once ready (see ``backend``), else PyTorch in channels-last
        with one slice per forward pass: with glibc's allocator a batch of 8 large activations
        is mapped and unmapped on every call and runs 1.5x slower per slice than batch 1
        (benchmarks/segment.py). A GPU gets the whole batch, in mixed precision (``precision``);
        the probabilities are float32 whatever ran.
        """
        prob = self._onnx_run(x)
        if prob is not None:
            return prob
        x = x.contiguous(memory_format=torch.channels_last)
        if self.autocast is not None:
            with torch.autocast(self.device.type, dtype=self.autocast):
                logits = self.model(x)
            if bool(torch.isfinite(logits).all()):
                return torch.sigmoid(logits.float())
            log.info("logits overflowed in %s; this batch runs again in fp32", self.autocast)
            return torch.sigmoid(self.model(x))
        if self.device.type != "cpu" or x.shape[0] == 1:
            return torch.sigmoid(self.model(x))
        return torch.cat([torch.sigmoid(self.model(x[i:i + 1])) for i in range(x.shape[0])])

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        """Sigmoid probabilities of ``(N, 1, H, W)``, tiled when large."""
        opts = self.options
        h, w = x.shape[-2:]
        tile = opts.tile
        if tile is None or (h <= tile and w <= tile):
            return self._run(x)
        th, tw = min(tile, h), min(tile, w)
        stride = max(1, int(tile * (1 - opts.overlap)))
        weight = _gaussian_weight(tile)[:th, :tw].to(x.device)
        out = torch.zeros_like(x)
        norm = torch.zeros((1, 1, h, w), device=x.device)
        windows = [(y, xx) for y in _starts(h, th, stride) for xx in _starts(w, tw, stride)]
        for n in range(x.shape[0]):
            for k in range(0, len(windows), opts.batch_size):
                chunk = windows[k:k + opts.batch_size]
                batch = torch.cat([x[n:n + 1, :, y:y + th, xx:xx + tw] for y, xx in chunk])
                prob = self._run(batch)
                for (y, xx), p in zip(chunk, prob, strict=True):
                    out[n, :, y:y + th, xx:xx + tw] += p * weight
                    if n == 0:
                        norm[0, :, y:y + th, xx:xx + tw] += weight
        return out / norm

    def _grid_size(self, images: Sequence[np.ndarray], spacing: Sequence[float] | None,
                   ) -> tuple[int, int] | None:
        """The slices' shape on the model's pixel grid, or None when no resampling is needed.

        Without a known pixel size (``spacing`` None: PNG, JPEG, TIFF, .mat) the pixel size is
        guessed from the head's extent in the middle slice (:func:`estimate_pixel_mm`).
        """
        if self.pixel_mm is None:
            return None
        h, w = images[0].shape
        if spacing is None:
            sy = sx = estimate_pixel_mm(images[len(images) // 2])
        else:
            sy, sx = (float(v) for v in spacing)
        size = (max(16, round(h * sy / self.pixel_mm)), max(16, round(w * sx / self.pixel_mm)))
        return None if size == (h, w) else size

    def probability(self, images: Sequence[np.ndarray],
                    spacing: Sequence[float] | None = None) -> np.ndarray:
        """Tumour probability of same-shape 2D slices: ``(N, Y, X)`` float32.

        ``spacing`` is the slices' pixel size in mm (None: unknown); it matters only for a
        model that works on a fixed pixel size (``pixel_mm``, e.g. the built-in model), which
        gets every slice resampled to its grid and the probabilities resampled back.
        """
        arr = np.stack([normalise(im, self.normalisation) for im in images])[:, None]
        x = torch.from_numpy(arr).to(self.device)
        grid = self._grid_size(images, spacing)
        shape = tuple(x.shape[-2:])
        with torch.inference_mode():
            if grid is not None:
                x = F.interpolate(x, size=grid, mode="bilinear", align_corners=False,
                                  antialias=grid[0] < shape[0])
            prob = self._probability_tta(x)
            if grid is not None:
                prob = F.interpolate(prob, size=shape, mode="bilinear", align_corners=False)
        out = prob[:, 0].float().cpu().numpy()
        if not np.isfinite(out).all():  # else every pixel compares False: an empty, "ok" mask
            raise ValueError("the model gave NaN/Inf probabilities for this image (finite "
                             "weights, so its activations overflowed): check the image's "
                             "intensities, or use another model")
        return out

    def _probability_tta(self, x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            if not self.options.tta:
                prob = self._forward(x)
            else:
                prob = torch.zeros_like(x)
                for dims in ((), (-1,), (-2,), (-2, -1)):
                    xf = x.flip(dims) if dims else x
                    p = self._forward(xf)
                    prob += p.flip(dims) if dims else p
                prob /= 4
        return prob

    # -- masks
    def postprocess(self, prob: np.ndarray, spacing: Sequence[float] | None = None,
                    brain_mask: np.ndarray | None = None, largest: bool | None = None,
                    ) -> np.ndarray:
        """Threshold and clean one 2D probability map (see :class:`SegmentOptions`).

        ``largest`` (default: ``options.keep == "largest"``) keeps the slice's largest component;
        a volume passes False and keeps the largest *3D* component instead, since a 3D tumour's
        cross-section can fall into several pieces on one slice.
        """
        opts = self.options
        mask = prob > opts.threshold
        if brain_mask is not None:
            mask &= np.asarray(brain_mask, bool)
        sp = np.ones(2) if spacing is None else np.asarray(spacing, float)
        if opts.fill_holes and mask.any():
            # Holes lie inside the bounding box, so filling a crop padded by one background
            # pixel equals filling the whole slice (and is ~10x cheaper for small tumours).
            box = ndi.find_objects(mask.astype(np.uint8))[0]
            box = tuple(slice(max(b.start - 1, 0), b.stop + 1) for b in box)
            mask[box] = ndi.binary_fill_holes(np.pad(mask[box], 1))[1:-1, 1:-1]
        if opts.min_area_mm2 > 0 and mask.any():
            labels, n = ndi.label(mask)
            areas = np.bincount(labels.ravel())[1:] * float(np.prod(sp))
            mask = np.isin(labels, np.flatnonzero(areas >= opts.min_area_mm2) + 1)
        if opts.keep == "largest" if largest is None else largest:
            mask = largest_component(mask)
        return mask.astype(np.uint8)

    def segment_slice(self, image: np.ndarray, spacing: Sequence[float] | None = None,
                      brain_mask: np.ndarray | None = None,
                      geometry_known: bool = True) -> SliceResult:
        """Segment one ``(Y, X)`` slice.

        ``geometry_known=False`` says ``spacing`` is a placeholder (a PNG's 1 x 1): a model with
        a fixed pixel size then guesses the pixel size from the head (see :meth:`probability`).
        """
        image = np.asarray(image)
        if image.ndim != 2:
            raise ValueError(f"segment_slice needs a (Y, X) slice, got shape {image.shape}")
        prob = self.probability([image], spacing if geometry_known else None)[0]
        if brain_mask is not None:
            prob = prob * np.asarray(brain_mask, bool)
        return SliceResult(self.postprocess(prob, spacing, brain_mask), prob)

    def iter_segment_volume(
        self,
        volume: np.ndarray,
        spacing: Sequence[float] | None = None,
        axis: int = 0,
        brain_mask: np.ndarray | None = None,
        keep_probability: bool = False,
        geometry_known: bool = True,
    ) -> Generator[tuple[int, int], None, VolumeResult]:
        """Segment a ``(Z, Y, X)`` volume slice by slice along ``axis`` in batches.

        Yields ``(slices_done, total)`` and returns a :class:`VolumeResult`.
        """
        volume = np.asarray(volume)
        if volume.ndim == 2:
            yield 0, 1
            res = self.segment_slice(volume, spacing, brain_mask, geometry_known)
            yield 1, 1
            n, size, unit = tumour_size(res.mask, spacing, known=geometry_known)
            return VolumeResult(res.mask, res.probability if keep_probability else None, n,
                                size, unit)
        if volume.ndim != 3:
            raise ValueError(f"expected a 2D slice or 3D volume, got shape {volume.shape}")
        if brain_mask is not None and np.shape(brain_mask) != volume.shape:
            raise ValueError(
                f"brain mask {np.shape(brain_mask)} does not match the volume {volume.shape}"
            )
        sp3 = [1.0, 1.0, 1.0] if spacing is None else [float(s) for s in spacing]
        sp2 = [s for k, s in enumerate(sp3) if k != axis]
        mask = np.zeros(volume.shape, np.uint8)
        prob_out = np.zeros(volume.shape, np.float32) if keep_probability else None
        total = volume.shape[axis]
        bs = self.options.batch_size
        for start in range(0, total, bs):
            idx = range(start, min(start + bs, total))
            slices = [np.take(volume, i, axis) for i in idx]
            probs = self.probability(slices, sp2 if geometry_known and spacing is not None
                                     else None)
            for i, p in zip(idx, probs, strict=True):
                bm = None if brain_mask is None else np.take(brain_mask, i, axis)
                if bm is not None:
                    p = p * bm
                sl = [slice(None)] * 3
                sl[axis] = i
                mask[tuple(sl)] = self.postprocess(p, sp2, bm, largest=False)
                if prob_out is not None:
                    prob_out[tuple(sl)] = p
            yield idx[-1] + 1, total
        if self.options.keep == "largest":
            mask = largest_component(mask).astype(np.uint8)
        n, size, unit = tumour_size(mask, sp3, known=geometry_known)
        return VolumeResult(mask, prob_out, n, size, unit)

    def segment_volume(self, volume: np.ndarray, spacing: Sequence[float] | None = None,
                       **kwargs: Any) -> VolumeResult:
        """Run :meth:`iter_segment_volume` to the end."""
        return drain(self.iter_segment_volume(volume, spacing, **kwargs))

    def drop_unenhanced(self, mask: np.ndarray, image: np.ndarray,
                        brain: np.ndarray | None) -> tuple[np.ndarray, int]:
        """Remove components that do not enhance (see :attr:`min_enhancement`).

        Returns the new mask and the number of components removed. Without a brain mask, or
        for a model without the check, the mask is returned unchanged.
        """
        if self.min_enhancement is None or brain is None or not mask.any():
            return mask, 0
        inside = np.asarray(image, np.float32)[np.asarray(brain, bool)]
        if inside.size < 100:
            return mask, 0
        wm = float(np.percentile(inside, 80))
        labels, n = ndi.label(mask)
        keep = np.zeros(n + 1, bool)
        img = np.asarray(image, np.float32)
        for i, sl in enumerate(ndi.find_objects(labels), start=1):
            vals = img[sl][labels[sl] == i]
            keep[i] = float(np.percentile(vals, 90)) >= self.min_enhancement * wm
        out = keep[labels].astype(np.uint8)
        return out, int(n - keep[1:].sum())


@dataclass(frozen=True)
class ScanResult(VolumeResult):
    """A :class:`VolumeResult` plus what the pipeline found on the way.

    The brain mask it made (None when one was given or none was made), the number of
    non-enhancing components dropped, and a warning when the scan does not look like the
    contrast the model was trained for.
    """

    brain: np.ndarray | None = None
    dropped: int = 0
    warning: str | None = None


def iter_segment_scan(
    predictor: Predictor,
    image: np.ndarray,
    spacing: Sequence[float] | None = None,
    *,
    affine: np.ndarray | None = None,
    geometry_known: bool = True,
    brain_mask: np.ndarray | None = None,
    skull_strip: bool | None = None,
    axis: int = 0,
    keep_probability: bool = False,
) -> Generator[tuple[int, int], None, ScanResult]:
    """The whole default pipeline for one scan: brain mask, tumour model, enhancement check.

    Without a ``brain_mask`` the learned skull strip runs first when ``skull_strip`` is True,
    or when it is None (auto, the default) and the image is a volume: deepbet then keeps the
    eyes, scalp, fat and vessels outside the brain from being called tumour (measured in
    ``benchmarks/real_scans.py``). Single 2D slices are not stripped unless asked: the 2D
    strip is less reliable than the 3D one and fails on already-stripped slices. Yields
    ``(done, total)`` steps (the skull strip counts as a tenth of the work) and returns a
    :class:`ScanResult`.
    """
    image = np.asarray(image)
    if skull_strip is None:
        skull_strip = image.ndim == 3
    n_slices = image.shape[axis] if image.ndim == 3 else 1
    strip_steps = max(1, n_slices // 10)
    total = n_slices + (strip_steps if brain_mask is None and skull_strip else 0)
    brain = None if brain_mask is None else np.asarray(brain_mask, bool)
    stripped = False
    if brain is None and skull_strip:
        from .skullstrip import iter_skull_strip

        yield 0, total
        steps = iter_skull_strip(image, spacing, affine=affine)
        while True:  # its stages, scaled to the tenth of the bar the strip takes
            try:
                d, t = next(steps)
            except StopIteration as stop:
                brain = stop.value
                break
            yield d * strip_steps // max(t, 1), total
        stripped = True
    done0 = total - n_slices
    gen = predictor.iter_segment_volume(image, spacing, axis=axis, brain_mask=brain,
                                        keep_probability=keep_probability,
                                        geometry_known=geometry_known)
    while True:
        try:
            d, _ = next(gen)
        except StopIteration as stop:
            result: VolumeResult = stop.value
            break
        yield done0 + d, total
    check = brain
    if check is None and image.ndim == 3 and predictor.min_enhancement is not None:
        # A volume not stripped here is one the user says is stripped already: its own
        # foreground is the brain, so the enhancement check still runs (without it a stripped
        # healthy Colin27 got 25.6 cm³ of false tumour; the tumour scans kept their Dice).
        # Only a model with that check (a CE-T1 one) needs it: filling a volume's holes costs.
        check = foreground(image)
    mask, dropped = predictor.drop_unenhanced(result.mask, image, check)
    n, size, unit = tumour_size(mask, spacing, known=geometry_known)
    warning = None
    if predictor.min_enhancement is not None and check is not None:  # a CE-T1 model
        warning = contrast_warning(image, check, tuple(spacing) if spacing else None)
    return ScanResult(mask, result.probability, n, size, unit, brain if stripped else None,
                      dropped, warning)


def segment_scan(predictor: Predictor, image: np.ndarray,
                 spacing: Sequence[float] | None = None, **kwargs: Any) -> ScanResult:
    """Run :func:`iter_segment_scan` to the end."""
    return drain(iter_segment_scan(predictor, image, spacing, **kwargs))
