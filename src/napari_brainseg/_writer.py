"""napari writer adapter: a Labels layer -> NIfTI (scan's own grid and affine), PNG or TIFF."""

from typing import Any

import numpy as np

from .io import write_labels


def write_labels_layer(path: str, data: Any, attributes: dict) -> list[str]:
    """Write one Labels layer atomically; NIfTI output keeps the source scan's affine.

    The layer's ``metadata`` (filled by this plugin's reader) carries the scan's native grid; for
    a layer without it, the layer's ``scale`` gives the voxel size.
    """
    meta = attributes.get("metadata") or {}
    scale = attributes.get("scale")
    written = write_labels(path, np.asarray(data), like=meta, spacing=scale)
    return [str(written)]
