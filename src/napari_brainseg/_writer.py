"""napari writer adapter: a Labels layer -> NIfTI (scan's own grid and affine), PNG or TIFF."""

from typing import Any

import numpy as np

from .io import write_labels


def _geometry_from_viewer(shape: tuple[int, ...]) -> tuple[dict, str] | None:
    """Metadata of the one image layer of ``shape`` that this plugin's reader opened, if any.

    A Labels layer made with napari's "New labels layer" carries no geometry; the scan it was
    painted over does.
    """
    import napari

    viewer = napari.current_viewer()
    if viewer is None:
        return None
    found = [lyr for lyr in viewer.layers
             if lyr.__class__.__name__ == "Image" and tuple(np.shape(lyr.data)) == shape
             and isinstance(lyr.metadata, dict) and lyr.metadata.get("native")]
    if len(found) != 1:  # none, or several scans of that shape: do not guess
        return None
    return dict(found[0].metadata), found[0].name


def write_labels_layer(path: str, data: Any, attributes: dict) -> list[str]:
    """Write one Labels layer atomically; NIfTI output keeps the source scan's affine.

    The layer's ``metadata`` (filled by this plugin's reader) carries the scan's native grid. A
    layer without it takes the geometry of the one image layer of the same shape opened by this
    plugin (and says so); failing that, the layer's ``scale`` gives the voxel size and the axes are
    written in display order (Left, Posterior, Inferior), so the mask reads back as painted.
    """
    from napari.utils.notifications import show_info

    arr = np.asarray(data)
    meta = attributes.get("metadata") or {}
    scale = attributes.get("scale")
    if not meta.get("native"):
        borrowed = _geometry_from_viewer(arr.shape)
        if borrowed is not None:
            meta, name = borrowed
            show_info(f"napari-brainseg: '{attributes.get('name', 'labels')}' has no scan "
                      f"geometry; saved on the grid and affine of image layer '{name}'")
    written = write_labels(path, arr, like=meta, spacing=scale)
    return [str(written)]
