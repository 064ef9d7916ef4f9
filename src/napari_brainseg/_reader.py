"""napari reader adapter: turns :func:`napari_brainseg.io.read` volumes into layer data.

A path this plugin does not handle gets ``None``. A file it accepts that turns out broken shows
one clear notification (no traceback) and opens nothing.
"""

from collections.abc import Callable
from pathlib import Path
from typing import Any

from .io import ReadError, Volume, can_read, read


def get_reader(path: str | list[str]) -> Callable[[Any], list[tuple]] | None:
    """Return a reader function for ``path`` when this plugin can open it, else None."""
    paths = [path] if isinstance(path, str) else list(path)
    if not paths or not all(can_read(Path(p)) for p in paths):
        return None
    return read_layers


def volume_to_layer_data(vol: Volume) -> tuple:
    """Return the LayerDataTuple for one volume (scale from spacing, geometry in metadata)."""
    meta: dict[str, Any] = dict(vol.metadata)
    meta["spacing"] = tuple(vol.spacing)
    if vol.affine is not None:
        meta["affine"] = vol.affine
    if vol.source is not None:
        meta["source"] = str(vol.source)
    kwargs: dict[str, Any] = {"name": vol.name, "scale": tuple(vol.spacing), "metadata": meta}
    if vol.kind == "labels":
        if meta.get("prediction"):
            kwargs["colormap"] = prediction_colormap()
        return (vol.data, kwargs, "labels")
    kwargs["colormap"] = "gray"
    return (vol.data, kwargs, "image")


def prediction_colormap() -> Any:
    """Predictions in cyan (label 1), so they never look like ground truth (napari's default)."""
    from napari.utils.colormaps import DirectLabelColormap

    return DirectLabelColormap(color_dict={None: "orange", 0: "transparent", 1: "cyan"})


def read_layers(path: str | list[str]) -> list[tuple]:
    """Read one or several paths into LayerDataTuples, notifying instead of raising on bad files."""
    from napari.utils.notifications import show_error, show_warning

    paths = [path] if isinstance(path, str) else list(path)
    layers: list[tuple] = []
    for p in paths:
        try:
            volumes = read(p)
        except ReadError as exc:
            show_error(f"napari-brainseg could not open {exc}")
            continue
        except MemoryError:
            show_error(f"napari-brainseg: not enough memory to open {Path(p).name}.")
            continue
        for vol in volumes:
            for message in vol.warnings:
                show_warning(message)
            layers.append(volume_to_layer_data(vol))
    return layers or [(None,)]  # napari's sentinel for "nothing to add"
