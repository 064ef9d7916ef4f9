"""DICOM: single files and series folders."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from napari_brainseg.volume import (
    DICOM_SUFFIXES,
    ReadError,
    Volume,
    check_size,
    finite_image,
    list_files,
    natural_key,
    os_error_message,
    spacing_from_affine,
    stem,
    suffix_of,
    to_display,
    to_grey,
)

log = logging.getLogger(__name__)


def _dicom_files(folder: Path) -> list[Path]:
    return sorted((p for p in list_files(folder) if p.name.upper() != "DICOMDIR"),
                  key=natural_key)


def is_dicom_file(f: Path) -> bool:
    """A DICOM file by suffix, or an extension-less file with the DICM marker (scanner exports).

    Files with another known suffix (``.png``) or hidden files are never opened to look.
    """
    suffix = suffix_of(f)
    if suffix in DICOM_SUFFIXES:
        return True
    return suffix == "" and not f.name.startswith(".") and _looks_like_dicom(f)


def _looks_like_dicom(path: Path) -> bool:
    if suffix_of(path) in DICOM_SUFFIXES:
        return True
    try:
        with open(path, "rb") as fh:
            fh.seek(128)
            return fh.read(4) == b"DICM"
    except OSError:
        return False


def _pixels(ds: Any, path: Path) -> np.ndarray:
    """Decoded pixels with rescale applied, colour to grey.

    MONOCHROME1 is inverted by the caller: one rule for the whole series, never slice by slice.
    """
    if "PixelData" not in ds:
        raise ReadError(
            f"{path.name}: DICOM file has no pixel data (a report or structure set?). "
            "Open the image series instead."
        )
    try:
        arr = ds.pixel_array
    except Exception as exc:
        ts = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
        if ts is not None and not getattr(ts, "is_compressed", True):
            raise ReadError(
                f"{path.name}: the DICOM pixel data is truncated or damaged ({exc}). Copy the "
                "file again from its source or export the series again."
            ) from exc
        raise ReadError(
            f"{path.name}: cannot decode the DICOM pixel data ({exc}). Compressed transfer "
            "syntaxes need pylibjpeg or gdcm installed; or export the series uncompressed."
        ) from exc
    arr = np.asarray(arr, dtype=np.float32)
    slope = _number(ds, "RescaleSlope", 1.0, positive=False) or 1.0
    intercept = _number(ds, "RescaleIntercept", 0.0, positive=False)
    arr = arr * slope + intercept
    if int(getattr(ds, "SamplesPerPixel", 1) or 1) > 1 and arr.shape[-1] in (3, 4):
        arr = to_grey(arr)
    return arr


def _is_monochrome1(ds: Any) -> bool:
    return str(getattr(ds, "PhotometricInterpretation", "")).strip() == "MONOCHROME1"


def _invert(arr: np.ndarray, which: np.ndarray | None = None) -> np.ndarray:
    """MONOCHROME1 (low values bright) to MONOCHROME2, mirrored within the whole array's range.

    Every slice of a series gets the same mapping (``which``: the slices to invert).
    """
    lo, hi = float(np.nanmin(arr)), float(np.nanmax(arr))
    if which is None:
        return (lo + hi) - arr
    arr = arr.copy()
    arr[which] = (lo + hi) - arr[which]
    return arr


def _floats(ds: Any, attr: str, n: int) -> np.ndarray | None:
    """``n`` finite numbers from a multi-valued attribute, or None (missing, text, NaN, ...)."""
    value = getattr(ds, attr, None)
    if value is None:
        return None
    try:
        values = [float(v) for v in (value if _is_multi(value) else [value])]
    except (TypeError, ValueError):
        return None
    out = np.array(values, dtype=np.float64)
    if out.shape != (n,) or not np.isfinite(out).all():
        return None
    return out


def _is_multi(value: Any) -> bool:
    return isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue"


def _number(ds: Any, attr: str, default: float, positive: bool = True) -> float:
    """One finite number (positive when asked) from the header, else ``default``."""
    try:
        value = float(getattr(ds, attr, default))
    except (TypeError, ValueError):
        return default
    if not np.isfinite(value) or (positive and value <= 0):
        return default
    return value


def _pixel_spacing(ds: Any, name: str, warnings: list[str]) -> tuple[float, float]:
    """(row, column) spacing in mm; 1 mm with a warning when the header's is unusable."""
    spacing = _floats(ds, "PixelSpacing", 2)
    if spacing is not None and np.all(spacing > 0):
        return float(spacing[0]), float(spacing[1])
    raw = getattr(ds, "PixelSpacing", None)
    if raw is not None:
        shown = "\\".join(str(v) for v in raw) if _is_multi(raw) else str(raw)
        warnings.append(f"{name}: PixelSpacing '{shown}' is not two positive numbers; using "
                        "1 mm pixels, so sizes are in pixels.")
    return 1.0, 1.0


def _spacing_ok(ds: Any) -> bool:
    spacing = _floats(ds, "PixelSpacing", 2)
    return spacing is not None and bool(np.all(spacing > 0))


def _orientation(ds: Any) -> tuple[np.ndarray, np.ndarray] | None:
    """Unit row and column direction cosines, or None when the header's are unusable."""
    iop = _floats(ds, "ImageOrientationPatient", 6)
    if iop is None:
        return None
    row, col = iop[:3], iop[3:]
    if np.linalg.norm(row) < 1e-6 or np.linalg.norm(col) < 1e-6:
        return None
    row, col = row / np.linalg.norm(row), col / np.linalg.norm(col)
    if np.linalg.norm(np.cross(row, col)) < 1e-3:  # parallel: no plane
        return None
    return row, col


def _dicom_series_volume(files: list[Path], name: str) -> Volume:
    import pydicom

    datasets = []
    for f in files:
        try:
            datasets.append((f, pydicom.dcmread(str(f))))
        except OSError as exc:
            raise ReadError(os_error_message(exc, f)) from exc
        except Exception as exc:
            raise ReadError(f"{f.name}: unreadable DICOM file ({exc}).") from exc
    return volume_from_datasets(datasets, name)


def volume_from_datasets(datasets: list[tuple[Path, Any]], name: str) -> Volume:
    """One series' ``(file, pydicom dataset)`` pairs as a :class:`Volume` in display orientation.

    The volume's ``metadata["dicom_instances"]`` lists the SOP Instance UIDs of the images
    stacked, in stacking order: index ``k`` of the native ``(k, row, column)`` stack (see
    :func:`display_to_instances`), and ``metadata["dicom_files"]`` their files. Images left out
    (a localizer) are in neither.
    """
    f0, ds0 = datasets[0]
    warnings: list[str] = []
    if len(datasets) == 1:
        arr = _pixels(ds0, f0)
        if _is_monochrome1(ds0):
            arr = _invert(arr)
        spacing2 = _pixel_spacing(ds0, f0.name, warnings)
        meta = _dicom_meta(ds0, geometry=_spacing_ok(ds0))
        meta.update(_instances([(f0, ds0)]))
        if arr.ndim == 2:
            check_size(arr.shape, f0, 4)
            data, extra = finite_image(arr, f0)
            return Volume(
                data=data, spacing=spacing2, name=name, source=f0,
                metadata=meta, warnings=tuple(warnings) + extra,
            )
        # multi-frame: frames are slices
        thickness = _number(ds0, "SpacingBetweenSlices", 0.0) or \
            _number(ds0, "SliceThickness", 1.0)
        check_size(arr.shape, f0, 4)
        data, extra = finite_image(arr, f0)
        return Volume(
            data=data, spacing=(thickness, *spacing2), name=name, source=f0,
            metadata=meta, warnings=tuple(warnings) + extra,
        )
    datasets = _majority_orientation(datasets, name, warnings)
    f0, ds0 = datasets[0]
    shapes = {(int(ds.Rows), int(ds.Columns)) for _, ds in datasets if "Rows" in ds}
    if len(shapes) != 1:
        raise ReadError(
            f"{name}: the series mixes slice sizes {sorted(shapes)}; cannot stack it. "
            "Export each size as its own series."
        )
    orient = _orientation(ds0)
    positions = [_floats(ds, "ImagePositionPatient", 3) for _, ds in datasets]
    if orient is not None and all(p is not None for p in positions):
        row_cos, col_cos = orient
        normal = np.cross(row_cos, col_cos)
        pos = {id(ds): p for (_, ds), p in zip(datasets, positions, strict=True)}
        datasets.sort(key=lambda fd: float(pos[id(fd[1])] @ normal))
        depths = np.array([float(pos[id(ds)] @ normal) for _, ds in datasets])
        steps = np.diff(depths)
        if np.any(steps < 1e-6):
            raise ReadError(
                f"{name}: several slices share one position (two series or duplicates in one "
                "folder?). Put each series in its own folder."
            )
        slice_step = float(np.median(steps))
        if steps.max() > 1.5 * slice_step:
            gaps = int(np.sum(steps > 1.5 * slice_step))
            warnings.append(
                f"{name}: {gaps} gap(s) in slice positions (missing slices?); spacing uses the "
                f"median step {slice_step:.3g} mm, so the volume is distorted near the gaps."
            )
        origin = pos[id(datasets[0][1])]
    else:
        datasets.sort(key=lambda fd: _number(fd[1], "InstanceNumber", 0.0, positive=False))
        row_cos, col_cos = np.array([1.0, 0, 0]), np.array([0, 1.0, 0])
        normal = np.array([0, 0, 1.0])
        slice_step = _number(ds0, "SpacingBetweenSlices", 0.0) or \
            _number(ds0, "SliceThickness", 1.0)
        origin = np.zeros(3)
        if any("ImagePositionPatient" in ds or "ImageOrientationPatient" in ds
               for _, ds in datasets):
            bad = next((f.name for (f, ds), p in zip(datasets, positions, strict=True)
                        if p is None), f0.name)
            warnings.append(f"{name}: slice positions or orientation unreadable (e.g. in {bad}: "
                            "missing, text or NaN); slices sorted by instance number.")
        else:
            warnings.append(f"{name}: no slice positions in the headers; sorted by instance "
                            "number.")
    dr, dc = _pixel_spacing(ds0, name, warnings)
    n_rows, n_cols = shapes.pop()
    check_size((len(datasets), n_rows, n_cols), f0, 4)
    vol = np.stack([_pixels(ds, f) for f, ds in datasets])  # (k, row, col)
    mono1 = np.array([_is_monochrome1(ds) for _, ds in datasets])
    if mono1.any():
        vol = _invert(vol, None if mono1.all() else mono1)
    lps = np.eye(4)
    lps[:3, 0] = row_cos * dc  # along a row = increasing column index
    lps[:3, 1] = col_cos * dr
    lps[:3, 2] = normal * slice_step
    lps[:3, 3] = origin
    ras = np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps
    display, disp_affine, native = to_display(vol.transpose(2, 1, 0), ras)
    data, extra = finite_image(display, f0)
    geometry = _spacing_ok(ds0)
    meta = _dicom_meta(ds0, geometry=geometry)
    meta.update({"native": native, "format": "dicom", **_instances(datasets)})
    return Volume(  # without real pixel spacing there is no geometry: sizes are in voxels
        data=data, spacing=spacing_from_affine(disp_affine, 3),
        affine=disp_affine if geometry else None, name=name,
        source=f0.parent, metadata=meta, warnings=tuple(warnings) + extra,
    )


def _instances(datasets: list[tuple[Path, Any]]) -> dict[str, tuple[str, ...]]:
    """The stacked images' SOP Instance UIDs and files, in stacking order (DICOM SEG needs them)."""
    return {"dicom_instances": tuple(str(getattr(ds, "SOPInstanceUID", "") or "")
                                     for _, ds in datasets),
            "dicom_files": tuple(os.path.abspath(f) for f, _ in datasets)}


def display_to_instances(labels: np.ndarray, volume: Volume) -> np.ndarray:
    """A mask in ``volume``'s display layout back in the source's ``(instance, row, column)`` order.

    Undoes what :func:`read_dicom` did to the series: slices sorted along their normal (or by
    instance number), stacked as ``(k, row, column)``, transposed to ``(column, row, k)`` and
    reoriented to the display axes. For a series of images, index ``k`` of the result is the
    image whose SOP Instance UID is ``volume.metadata["dicom_instances"][k]``. One file is not
    reoriented: a 2D image comes back as ``(1, row, column)``, a multi-frame one as
    ``(frame, row, column)``, frames in the file's order.

    Parameters
    ----------
    labels : np.ndarray
        ``volume.data.shape``, any dtype.
    volume : Volume
        A DICOM volume as :func:`read_dicom` returned it.

    Raises
    ------
    ValueError
        ``volume`` is not from :func:`read_dicom`, or ``labels`` is not of its shape.
    """
    from napari_brainseg.volume import from_display

    labels = np.asarray(labels)
    instances = volume.metadata.get("dicom_instances")
    if volume.metadata.get("format") != "dicom" or not instances:
        raise ValueError(f"{volume.name}: not a DICOM series read by this package; read the "
                         "series with napari_brainseg.io.read first")
    if labels.shape != volume.data.shape:
        raise ValueError(f"mask of shape {labels.shape} does not fit the DICOM series "
                         f"{volume.name!r} of shape {volume.data.shape}; it must have the shape of "
                         "the image it labels")
    native = volume.metadata.get("native")
    if native is None:  # one file: stored as displayed
        return labels if labels.ndim == 3 else labels[np.newaxis]
    return np.ascontiguousarray(from_display(labels, native).transpose(2, 1, 0))


def _majority_orientation(datasets: list[tuple[Path, Any]], name: str,
                          warnings: list[str]) -> list[tuple[Path, Any]]:
    """Leave out images whose orientation differs from most of the series (a localizer).

    Scanners often store the scout/localizer with the series it planned; stacked in, it would be
    a slice of another plane among axial ones.
    """
    def key(ds: Any) -> tuple[float, ...] | None:
        o = _orientation(ds)
        return None if o is None else tuple(np.round(np.concatenate(o), 2).tolist())

    keys = [key(ds) for _, ds in datasets]
    known = [k for k in keys if k is not None]
    if not known or len(set(known)) == 1:
        return datasets
    counts: dict[tuple[float, ...], int] = {}
    for k in known:
        counts[k] = counts.get(k, 0) + 1
    main = max(counts, key=lambda k: (counts[k], -known.index(k)))
    kept = [fd for fd, k in zip(datasets, keys, strict=True) if k in (main, None)]
    left = [fd[0].name for fd, k in zip(datasets, keys, strict=True) if k not in (main, None)]
    shown = ", ".join(left[:3]) + (", ..." if len(left) > 3 else "")
    warnings.append(f"{name}: left out {len(left)} image(s) whose orientation differs from the "
                    f"other {len(kept)} (a localizer?): {shown}.")
    return kept


def _dicom_meta(ds: Any, geometry: bool = True) -> dict[str, Any]:
    meta: dict[str, Any] = {"format": "dicom"}
    for key, attr in (("patient_id", "PatientID"), ("modality", "Modality"),
                      ("series_description", "SeriesDescription")):
        value = getattr(ds, attr, None)
        if value not in (None, ""):
            meta[key] = str(value)
    if geometry and _spacing_ok(ds):
        meta["pixel_spacing"] = True  # real geometry (Volume.has_geometry)
    return meta


def read_dicom(path: Path) -> list[Volume]:
    """Read one DICOM file or every image series in a folder (searched recursively).

    Slices of a series are sorted by their position along the slice normal, rescale
    slope/intercept is applied, and spacing comes from the headers.

    Raises
    ------
    ReadError
        No DICOM files, no pixel data, mixed slice sizes, duplicate positions, undecodable pixels.
    """
    import pydicom
    from pydicom.errors import InvalidDicomError

    path = Path(path)
    if path.is_file():
        try:
            modality = str(pydicom.dcmread(str(path), stop_before_pixels=True,
                                           specific_tags=["Modality"]).get("Modality", ""))
        except (InvalidDicomError, OSError, EOFError, ValueError):
            modality = ""  # the full read below says what is wrong
        if modality == "SEG":
            raise ReadError(
                f"{path.name}: a DICOM SEG (a segmentation that labels another series), not an "
                "image. Open the series it labels; 3D Slicer shows the two together."
            )
        return [_dicom_series_volume([path], stem(path))]
    series: dict[str, list[Path]] = {}
    skipped_no_pixels = 0
    for f in _dicom_files(path):
        if not _looks_like_dicom(f):
            continue
        try:
            ds = pydicom.dcmread(str(f), stop_before_pixels=True)
        except (InvalidDicomError, OSError, EOFError, ValueError):
            log.info("skipping non-DICOM or unreadable file %s", f)
            continue
        if "Rows" not in ds:  # reports, structure sets, DICOMDIRs
            skipped_no_pixels += 1
            continue
        if str(getattr(ds, "Modality", "")) == "SEG":  # a segmentation (ours?), not a scan
            log.info("skipping DICOM SEG %s: a segmentation, not an image", f)
            skipped_no_pixels += 1
            continue
        uid = str(getattr(ds, "SeriesInstanceUID", "") or f.parent)
        if _number(ds, "NumberOfFrames", 1.0) > 1:
            uid = f"{uid} multi-frame {f.name}"  # a volume of its own: never a slice of a stack
        series.setdefault(uid, []).append(f)
    if not series:
        extra = (f" ({skipped_no_pixels} DICOM files without images, or segmentations)"
                 if skipped_no_pixels else "")
        raise ReadError(
            f"{path.name}: no DICOM image files found in this folder{extra}. Choose the folder "
            "that holds the series' slice files."
        )
    volumes = []
    for i, (_uid, files) in enumerate(sorted(series.items(), key=lambda kv: str(kv[1][0]))):
        name = path.name if len(series) == 1 else f"{path.name} series {i + 1}"
        volumes.append(_dicom_series_volume(files, name))
    return volumes


