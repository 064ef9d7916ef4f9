"""napari writer adapter: a Labels layer -> NIfTI (scan's own grid and affine), PNG or TIFF.

Saving a prediction (a layer made by the Segment tab, or a ``NAME_pred`` file reopened) also
writes its provenance sidecar ``FILE.json`` with ``"corrected": true`` and the number of
corrected slices when the labels differ from the model's prediction: that is what
``brainseg train --labels-from`` looks for.
"""

from pathlib import Path
from typing import Any

import numpy as np

from .io import ReadError, read, write_labels
from .metrics import corrected_slices
from .naming import is_prediction
from .provenance import record_correction

#: Layer metadata key holding the model's own mask (set by the Segment tab).
PREDICTION_KEY = "brainseg_prediction"


def _geometry_from_viewer(shape: tuple[int, ...],
                          key: str = "native") -> tuple[dict, str] | None:
    """Metadata of the one image layer of ``shape`` that this plugin's reader opened, if any.

    A Labels layer made with napari's "New labels layer" carries no geometry; the scan it was
    painted over does. ``key`` is the metadata entry the image layer must have (``native``:
    its grid; ``dicom_instances``: the DICOM images it was read from).
    """
    import napari

    viewer = napari.current_viewer()
    if viewer is None:
        return None
    found = [lyr for lyr in viewer.layers
             if lyr.__class__.__name__ == "Image" and tuple(np.shape(lyr.data)) == shape
             and isinstance(lyr.metadata, dict) and lyr.metadata.get(key)]
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
    prediction, origin = _prediction_of(attributes.get("metadata") or {}, arr.shape)
    written = write_labels(path, arr, like=meta, spacing=scale)
    if prediction is not None:
        axis = int((attributes.get("metadata") or {}).get("brainseg_axis", 0))
        fixed = corrected_slices(prediction, arr, axis if arr.ndim == 3 else 0)
        try:
            side = record_correction(written, fixed, origin=origin,
                                     model=(attributes.get("metadata") or {}).get(
                                         "brainseg_model"))
        except OSError as exc:
            show_info(f"napari-brainseg: {Path(written).name} saved, but its sidecar was not: "
                      f"{exc.strerror or exc}")
        else:
            if side is None:
                show_info(f"napari-brainseg: {Path(written).name} saved; its sidecar "
                          f"{Path(written).name}.json is someone else's file and was left as "
                          "it is, so the correction is not recorded")
            elif fixed:
                show_info(f"napari-brainseg: saved {Path(written).name}, marked corrected "
                          f"({len(fixed)} slice{'s' if len(fixed) != 1 else ''} changed)")
    return [str(written)]


def _prediction_of(meta: dict, shape: tuple[int, ...]) -> tuple[np.ndarray | None, str | None]:
    """The model's prediction a layer started from, and the file it was opened from, if any.

    The Segment tab keeps the prediction in the layer's metadata; a ``NAME_pred`` file opened
    with this plugin is read again (before it may be overwritten) to compare with.
    """
    if meta.get(PREDICTION_KEY) is not None:
        pred = np.asarray(meta[PREDICTION_KEY])
        return (pred, None) if pred.shape == shape else (None, None)
    source = meta.get("source")
    if not meta.get("prediction") or not source or not is_prediction(source):
        return None, None
    try:
        (vol,) = read(source, with_mask=False)
    except (ReadError, ValueError, OSError):
        return None, None
    return (vol.data, str(source)) if vol.data.shape == shape else (None, None)


def write_dicom_seg_layer(path: str, data: Any, attributes: dict) -> list[str]:
    """Write one Labels layer as a DICOM SEG that references the DICOM series it labels.

    The series is the layer's own (a prediction of the Segment tab carries its scan's metadata),
    or else the one image layer of the same shape that this plugin opened from a DICOM series.
    A layer over anything else is refused: a SEG has to name the images it lies on. napari's
    save dialog has already asked before replacing an existing file.
    """
    from napari.utils.notifications import show_info

    from .formats.dicom_seg import write_dicom_seg
    from .provenance import record
    from .volume import Volume

    arr = np.asarray(data)
    meta = attributes.get("metadata") or {}
    if not meta.get("dicom_instances"):
        borrowed = _geometry_from_viewer(arr.shape, key="dicom_instances")
        if borrowed is None:
            raise ValueError(
                f"'{attributes.get('name', 'labels')}' does not label a DICOM series opened "
                "with napari-brainseg, so there are no images for a DICOM SEG to reference. "
                "Open the series with this plugin (File > Open Folder), label it, and save "
                "again; or save as .nii.gz"
            )
        meta, name = borrowed
        show_info(f"napari-brainseg: '{attributes.get('name', 'labels')}' saved as a DICOM SEG "
                  f"of image layer '{name}'")
    series = Volume(np.zeros(arr.shape, np.uint8), (1.0,) * arr.ndim,
                    name=str(attributes.get("name", "labels")), metadata=meta)
    written = write_dicom_seg(arr, series, path, overwrite=True, provenance=record())
    return [str(written)]
