"""DICOM: single files and series folders."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from napari_brainseg.volume import (
    DICOM_SUFFIXES,
    ReadError,
    Volume,
    _check_size,
    _finite_image,
    _natural_key,
    _spacing_from_affine,
    _to_display,
    stem,
    suffix_of,
    to_grey,
)

log = logging.getLogger(__name__)


def _dicom_files(folder: Path) -> list[Path]:
    return sorted(
        (p for p in folder.rglob("*") if p.is_file() and p.name.upper() != "DICOMDIR"),
        key=_natural_key,
    )


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
    if "PixelData" not in ds:
        raise ReadError(
            f"{path.name}: DICOM file has no pixel data (a report or structure set?). "
            "Open the image series instead."
        )
    try:
        arr = ds.pixel_array
    except Exception as exc:
        raise ReadError(
            f"{path.name}: cannot decode the DICOM pixel data ({exc}). Compressed transfer "
            "syntaxes need pylibjpeg or gdcm installed; or export the series uncompressed."
        ) from exc
    arr = np.asarray(arr, dtype=np.float32)
    slope = float(getattr(ds, "RescaleSlope", 1) or 1)
    intercept = float(getattr(ds, "RescaleIntercept", 0) or 0)
    arr = arr * slope + intercept
    photometric = str(getattr(ds, "PhotometricInterpretation", "MONOCHROME2"))
    if int(getattr(ds, "SamplesPerPixel", 1)) > 1:
        arr = to_grey(arr)
    elif photometric == "MONOCHROME1":  # inverted display convention
        arr = arr.max() - arr
    return arr


def _dicom_series_volume(files: list[Path], name: str) -> Volume:
    import pydicom

    datasets = []
    for f in files:
        try:
            datasets.append((f, pydicom.dcmread(str(f))))
        except Exception as exc:
            raise ReadError(f"{f.name}: unreadable DICOM file ({exc}).") from exc
    f0, ds0 = datasets[0]
    warnings: list[str] = []
    if len(datasets) == 1:
        arr = _pixels(ds0, f0)
        spacing2 = [float(v) for v in getattr(ds0, "PixelSpacing", [1.0, 1.0])]
        if arr.ndim == 2:
            _check_size(arr.shape, f0)
            data, extra = _finite_image(arr, f0)
            return Volume(
                data=data, spacing=(spacing2[0], spacing2[1]), name=name, source=f0,
                metadata=_dicom_meta(ds0), warnings=extra,
            )
        # multi-frame: frames are slices
        thickness = float(
            getattr(ds0, "SpacingBetweenSlices", None) or getattr(ds0, "SliceThickness", 1) or 1
        )
        _check_size(arr.shape, f0)
        data, extra = _finite_image(arr, f0)
        return Volume(
            data=data, spacing=(thickness, spacing2[0], spacing2[1]), name=name, source=f0,
            metadata=_dicom_meta(ds0), warnings=extra,
        )
    shapes = {(int(ds.Rows), int(ds.Columns)) for _, ds in datasets if "Rows" in ds}
    if len(shapes) != 1:
        raise ReadError(
            f"{name}: the series mixes slice sizes {sorted(shapes)}; cannot stack it. "
            "Export each size as its own series."
        )
    iop = getattr(ds0, "ImageOrientationPatient", None)
    if iop is not None and all("ImagePositionPatient" in ds for _, ds in datasets):
        row_cos = np.array([float(v) for v in iop[:3]])
        col_cos = np.array([float(v) for v in iop[3:6]])
        normal = np.cross(row_cos, col_cos)
        pos = {id(ds): np.array([float(v) for v in ds.ImagePositionPatient]) for _, ds in datasets}
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
        datasets.sort(key=lambda fd: int(getattr(fd[1], "InstanceNumber", 0) or 0))
        row_cos, col_cos = np.array([1.0, 0, 0]), np.array([0, 1.0, 0])
        normal = np.array([0, 0, 1.0])
        slice_step = float(getattr(ds0, "SliceThickness", 1) or 1)
        origin = np.zeros(3)
        warnings.append(f"{name}: no slice positions in the headers; sorted by instance number.")
    dr, dc = (float(v) for v in getattr(ds0, "PixelSpacing", [1.0, 1.0]))
    n_rows, n_cols = shapes.pop()
    _check_size((len(datasets), n_rows, n_cols), f0)
    vol = np.stack([_pixels(ds, f) for f, ds in datasets])  # (k, row, col)
    lps = np.eye(4)
    lps[:3, 0] = row_cos * dc  # along a row = increasing column index
    lps[:3, 1] = col_cos * dr
    lps[:3, 2] = normal * slice_step
    lps[:3, 3] = origin
    ras = np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps
    display, disp_affine, native = _to_display(vol.transpose(2, 1, 0), ras)
    data, extra = _finite_image(display, f0)
    meta = _dicom_meta(ds0)
    meta.update({"native": native, "format": "dicom"})
    return Volume(
        data=data, spacing=_spacing_from_affine(disp_affine, 3), affine=disp_affine, name=name,
        source=f0.parent, metadata=meta, warnings=tuple(warnings) + extra,
    )


def _dicom_meta(ds: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {"format": "dicom"}
    for key, attr in (("patient_id", "PatientID"), ("modality", "Modality"),
                      ("series_description", "SeriesDescription")):
        value = getattr(ds, attr, None)
        if value not in (None, ""):
            meta[key] = str(value)
    if getattr(ds, "PixelSpacing", None):
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
        uid = str(getattr(ds, "SeriesInstanceUID", "") or f.parent)
        series.setdefault(uid, []).append(f)
    if not series:
        extra = f" ({skipped_no_pixels} DICOM files without images)" if skipped_no_pixels else ""
        raise ReadError(
            f"{path.name}: no DICOM image files found in this folder{extra}. Choose the folder "
            "that holds the series' slice files."
        )
    volumes = []
    for i, (_uid, files) in enumerate(sorted(series.items(), key=lambda kv: str(kv[1][0]))):
        name = path.name if len(series) == 1 else f"{path.name} series {i + 1}"
        volumes.append(_dicom_series_volume(files, name))
    return volumes


