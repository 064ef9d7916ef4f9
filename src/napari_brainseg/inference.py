"""How the Predictor's network runs on a CPU: eager PyTorch, or the same weights in ONNX Runtime.

ONNX Runtime runs the U-Net faster than eager PyTorch on a CPU, most of all when other programs
share the cores (README, Performance; ``benchmarks/cpu_backends.py``). The network is exported
once per model with ``torch.onnx.export`` (the TorchScript exporter, which needs ``onnx``) to a
user cache folder, named by the SHA-256 of its weights and configuration, so the export is reused
by every later session and never written beside a checkpoint in a read-only install. The export
runs in a background thread: the first segmentation with a new model uses PyTorch meanwhile, so
it waits no longer than before. Probabilities agree with eager PyTorch within 1e-4.

``BRAINSEG_BACKEND=torch`` (or ``Predictor(backend="torch")``) keeps PyTorch; any failure to
export, load or run ONNX falls back to PyTorch with one logged warning. ``BRAINSEG_CACHE_DIR``
moves the cache (default: the platform's user cache folder, e.g. ``~/.cache/napari-brainseg``).
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn
from torch.nn import functional as F  # noqa: N812

from .model import UNet

log = logging.getLogger(__name__)

Backend = Literal["auto", "torch", "onnx"]
#: Bumped when the exported graph changes, so old cache files are not reused.
EXPORT_VERSION = 1
OPSET = 17


def backend_choice(backend: Backend = "auto") -> Backend:
    """The backend asked for: ``BRAINSEG_BACKEND`` (``torch``/``onnx``/``auto``) overrides auto."""
    if backend not in ("auto", "torch", "onnx"):
        raise ValueError(f"backend must be 'auto', 'torch' or 'onnx', got {backend!r}")
    env = os.environ.get("BRAINSEG_BACKEND", "").strip().lower()
    if backend == "auto" and env:
        if env not in ("auto", "torch", "onnx"):
            log.warning("BRAINSEG_BACKEND=%s is not one of auto, torch, onnx; using auto", env)
            return "auto"
        return env  # type: ignore[return-value]
    return backend


def cache_dir() -> Path:
    """Where exported models are kept (``BRAINSEG_CACHE_DIR``, else the user cache folder)."""
    env = os.environ.get("BRAINSEG_CACHE_DIR")
    if env:
        return Path(env)
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("napari-brainseg"))


def model_key(model: UNet) -> str:
    """SHA-256 of the network's configuration and weights (what the exported graph depends on).

    Equal checkpoints give equal keys wherever they are stored, and a model changed in memory
    (fine-tuned in the session) gets a new one, so a stale export is never used.
    """
    h = hashlib.sha256(f"v{EXPORT_VERSION} opset{OPSET} {model.config!r}".encode())
    for name, value in model.state_dict().items():
        # a plain C-order copy: channels-last weights have other strides, not other values
        t = value.detach().to("cpu").clone(memory_format=torch.contiguous_format).reshape(-1)
        h.update(f"{name} {t.dtype} {tuple(value.shape)}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


class ProbabilityNet(nn.Module):
    """``sigmoid(unet(x))`` for inputs whose sides are multiples of ``2 ** depth``.

    The U-Net's own padding and cropping depend on the input's size in Python; an exported graph
    would freeze them to the example's size, so :func:`pad_to_multiple` does them outside.
    """

    def __init__(self, unet: UNet) -> None:
        super().__init__()
        self.unet = unet

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        net = self.unet
        skips = []
        for i, block in enumerate(net.down):
            x = block(x)
            if i < net.config.depth:
                skips.append(x)
                x = F.max_pool2d(x, 2)
        for up, skip in zip(net.up, reversed(skips), strict=True):
            x = up(x, skip)
        return torch.sigmoid(net.head(x))


def pad_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Zero-pad ``(N, C, H, W)`` at the bottom and right to sides that are multiples (as UNet)."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    return F.pad(x, (0, pw, 0, ph)) if ph or pw else x


def export_onnx(model: UNet, path: str | Path) -> Path:
    """Write the network (with its sigmoid) as ONNX: input ``image`` ``(N, C, H, W)`` float32.

    Height and width must be multiples of ``2 ** depth`` (see :func:`pad_to_multiple`). Written
    to a temporary file and renamed, so a crash or a second process never leaves half a file.
    """
    import copy
    import tempfile
    import warnings

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # A copy: the export traces the network while the caller may be running the original.
    net = ProbabilityNet(copy.deepcopy(model).float().eval().to("cpu"))
    side = 2 * model.config.multiple
    example = torch.zeros(1, model.config.in_channels, side, side)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(net, (example,), tmp, input_names=["image"],
                              output_names=["probability"], opset_version=OPSET,
                              dynamic_axes={"image": {0: "n", 2: "h", 3: "w"},
                                            "probability": {0: "n", 2: "h", 3: "w"}},
                              dynamo=False)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def make_session(path: str | Path, threads: int | None = None) -> Any:
    """An ONNX Runtime CPU session for an exported model.

    ``threads`` defaults to PyTorch's thread count. The pool's threads do not spin while
    waiting for work: spinning threads take the cores from the GUI and other programs (and slow
    this one down when the machine is busy).
    """
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads or torch.get_num_threads()
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), sess_options=opts,
                                providers=["CPUExecutionProvider"])


# Sessions by model key, shared by every Predictor of the process (a widget makes a new
# Predictor per click); exports in progress, so a model is exported once.
_SESSIONS: dict[str, Any] = {}
_EXPORTS: dict[str, threading.Thread] = {}
_FAILED: set[str] = set()
_LOCK = threading.Lock()


class OnnxBackend:
    """ONNX Runtime for one model, prepared in the background.

    :meth:`session` returns the ready session, or None while it is being exported or loaded
    (the caller then runs PyTorch) or when it failed (logged once per model).
    """

    def __init__(self, model: UNet, wait: bool = False) -> None:
        self.key = model_key(model)
        self.multiple = model.config.multiple
        self.path = cache_dir() / f"unet-{self.key[:32]}.onnx"
        self._model = model
        self.start(wait)

    def start(self, wait: bool) -> None:
        """Start the export (once per model and process); ``wait`` joins it."""
        with _LOCK:
            if self.key in _SESSIONS or self.key in _FAILED:
                return
            thread = _EXPORTS.get(self.key)
            if thread is None:
                # Not a daemon: a short run that ends before the export lets it finish, so
                # the next run finds it in the cache.
                thread = threading.Thread(target=self._prepare, name="brainseg-onnx-export")
                _EXPORTS[self.key] = thread
                thread.start()
        if wait:
            thread.join()

    def _prepare(self) -> None:
        try:
            if not self.path.is_file():
                log.info("exporting the model to ONNX for ONNX Runtime: %s", self.path)
                export_onnx(self._model, self.path)
            session = make_session(self.path)
        except Exception as exc:  # noqa: BLE001 - any failure means: keep PyTorch
            with _LOCK:
                _FAILED.add(self.key)
            log.warning("ONNX Runtime not used (%s: %s); segmenting with PyTorch",
                        type(exc).__name__, exc)
        else:
            with _LOCK:
                _SESSIONS[self.key] = session
        finally:
            self._model = None  # type: ignore[assignment]

    def session(self) -> Any:
        """The ONNX Runtime session, or None (not ready yet, or failed)."""
        return _SESSIONS.get(self.key)

    def run(self, x: torch.Tensor) -> torch.Tensor | None:
        """Probabilities of a CPU float32 ``(N, C, H, W)`` batch, or None to use PyTorch."""
        session = self.session()
        if session is None:
            return None
        h, w = x.shape[-2:]
        xp = pad_to_multiple(x.float(), self.multiple).contiguous().numpy()
        try:
            # One slice per run: ONNX Runtime's memory arena keeps the largest batch's
            # activations for the session's life. For 512 x 512 at width 16, a batch of 8 added
            # 1,649 MB to the peak RSS and one slice at a time 197 MB, at 0.93-1.05x the time
            # per slice in two runs under load (benchmarks/memory.py: the whole pipeline).
            out = torch.cat([torch.from_numpy(session.run(None, {"image": xp[i:i + 1]})[0])
                             for i in range(xp.shape[0])])
        except Exception as exc:  # noqa: BLE001
            with _LOCK:
                _SESSIONS.pop(self.key, None)
                _FAILED.add(self.key)
            log.warning("ONNX Runtime failed (%s: %s); segmenting with PyTorch from now on",
                        type(exc).__name__, exc)
            return None
        return out[..., :h, :w]


def onnx_available() -> bool:
    """Whether ONNX Runtime and ``onnx`` (for the export) are installed (without importing them)."""
    from importlib.util import find_spec

    return find_spec("onnxruntime") is not None and find_spec("onnx") is not None
