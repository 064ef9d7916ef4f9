"""Where a model runs: the device choices, in one place for the CLI, the widgets and the core.

Importing this module loads no torch (the CLI builds its ``--device`` choices from
:data:`DEVICES` before anything heavy is imported); :func:`pick_device` imports it when called.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal, get_args

if TYPE_CHECKING:
    import torch

#: ``auto`` picks CUDA, then Apple MPS, then the CPU.
Device = Literal["auto", "cpu", "cuda", "mps"]
#: The device choices, in the order the CLI lists them.
DEVICES: tuple[str, ...] = get_args(Device)


def check_device(device: str) -> None:
    """Refuse a device name that is not one of :data:`DEVICES`.

    Raises
    ------
    ValueError
        ``device`` is not ``auto``, ``cpu``, ``cuda`` or ``mps``.
    """
    if device not in DEVICES:
        raise ValueError(f"device must be {', '.join(DEVICES[:-1])} or {DEVICES[-1]}, "
                         f"got {device!r}")


def pick_device(device: Device = "auto") -> torch.device:
    """Resolve ``auto`` to CUDA, then MPS, then CPU; refuse an unavailable explicit choice.

    Parameters
    ----------
    device : {"auto", "cpu", "cuda", "mps"}
        The choice (see :data:`DEVICES`).

    Returns
    -------
    torch.device

    Raises
    ------
    ValueError
        An unknown name, or ``cuda`` on a machine without a CUDA GPU.
    """
    import torch

    check_device(device)
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' requested but no CUDA GPU is available; use auto or cpu")
    return torch.device(device)
