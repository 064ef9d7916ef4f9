"""NIfTI: volumes in display orientation, masks written back on the native grid."""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from napari_brainseg.volume import (
    LABEL_DTYPES,
    NIFTI_SUFFIXES,
    ReadError,
    Volume,
    _check_size,
    _from_display,
    _spacing_from_affine,
    _to_display,
    _values,
    atomic_write,
    label_dtype,
    stem,
    suffix_of,
)


def read_nifti(path: Path, kind: Literal["image", "labels"] = "image") -> Volume:
    """Read a NIfTI file as a :class:`Volume` in display orientation.

    Parameters
    ----------
    path : Path
        ``.nii`` or ``.nii.gz`` file.
    kind : {"image", "labels"}
        Read values as float32 intensities or as uint8 labels.

    Raises
    ------
    ReadError
        Truncated, corrupt, not NIfTI, 5D or larger, too big or too small.
    """
    import nibabel as nib

    path = Path(path)
    try:
        img = nib.load(str(path))
    except Exception as exc:  # nibabel raises several types for non-NIfTI content
        raise ReadError(
            f"{path.name}: not a readable NIfTI file ({type(exc).__name__}: {exc}). "
            "Check that it is a complete .nii/.nii.gz file."
        ) from exc
    shape = tuple(int(s) for s in img.shape)
    warnings: list[str] = []
    if len(shape) > 4 and any(s > 1 for s in shape[4:]):
        raise ReadError(
            f"{path.name}: {len(shape)}D NIfTI of shape {shape}; only 2D, 3D and 4D (first volume "
            "used) scans are supported. Extract one 3D volume first (e.g. fslroi)."
        )
    _check_size(shape[:3], path)
    try:
        dataobj = img.dataobj
        if len(shape) >= 4:
            if shape[3] > 1:
                warnings.append(
                    f"{path.name}: 4D NIfTI with {shape[3]} volumes; showing the first one only."
                )
            arr = np.asarray(dataobj[..., 0] if len(shape) == 4 else dataobj[..., 0, 0])
        else:
            arr = np.asarray(dataobj)
    except (EOFError, OSError, zlib.error, ValueError) as exc:
        raise ReadError(
            f"{path.name}: the file is truncated or corrupt ({exc}). Copy it again from its source."
        ) from exc
    affine = img.affine if img.affine is not None else np.eye(4)
    native_meta: dict[str, Any] = {}
    if arr.ndim == 3 and arr.shape[2] == 1:  # a 2D image stored as (x, y, 1)
        arr = arr[:, :, 0]
    if arr.ndim == 2:
        # A single slice: show it as stored (rows = first NIfTI axis would look transposed).
        display = np.ascontiguousarray(arr.T)
        disp_affine = affine[:, [1, 0, 2, 3]]
        spacing = _spacing_from_affine(disp_affine, 2)
        native_meta = {"affine": np.asarray(affine), "shape": tuple(img.shape[:3]), "axcodes": ""}
        disp_affine_out = None
    else:
        display, disp_affine, native_meta = _to_display(arr, affine)
        spacing = _spacing_from_affine(disp_affine, 3)
        disp_affine_out = disp_affine
    data = _values(display, path, kind, warnings)
    return Volume(
        data=data,
        spacing=spacing,
        affine=disp_affine_out,
        kind=kind,
        name=stem(path),
        source=path,
        metadata={"native": native_meta, "format": "nifti"},
        warnings=tuple(warnings),
    )


def write_nifti(path: Path, labels: np.ndarray, like: Volume | Mapping[str, Any] | None = None,
                spacing: Sequence[float] | None = None) -> Path:
    """Write a label array as NIfTI on the source scan's own voxel grid, atomically.

    Parameters
    ----------
    path : Path
        Output ``.nii`` or ``.nii.gz``.
    labels : np.ndarray
        ``(Z, Y, X)`` or ``(Y, X)`` integer labels in display layout (as read).
    like : Volume or metadata mapping, optional
        The scan the labels belong to. Its ``native`` metadata restores the file's orientation and
        affine, so the mask overlays the scan in any other viewer.
    spacing : sequence of float, optional
        Voxel size used when ``like`` carries no geometry.
    """
    labels = np.asarray(labels)
    out_dtype = label_dtype(labels, LABEL_DTYPES, Path(path).name)
    return _write_nifti_array(path, labels, out_dtype, like, spacing)


def write_image(path: Path, image: np.ndarray, like: Volume | Mapping[str, Any] | None = None,
                spacing: Sequence[float] | None = None) -> Path:
    """Write a float image (e.g. a skull-stripped scan) as NIfTI (scan's grid) or float TIFF."""
    path = Path(path)
    if suffix_of(path) in NIFTI_SUFFIXES:
        return _write_nifti_array(path, np.asarray(image), np.float32, like, spacing)
    if suffix_of(path) in (".tif", ".tiff"):
        import tifffile

        return atomic_write(path, lambda tmp: tifffile.imwrite(
            str(tmp), np.asarray(image, np.float32), photometric="minisblack"))
    raise ValueError(f"{path.name}: write images as .nii.gz or .tif")


def _write_nifti_array(path: Path, labels: np.ndarray, out_dtype: type,
                       like: Volume | Mapping[str, Any] | None,
                       spacing: Sequence[float] | None) -> Path:
    import nibabel as nib

    meta = like.metadata if isinstance(like, Volume) else (like or {})
    native = meta.get("native") if isinstance(meta, Mapping) else None
    if native and labels.ndim == 3 and native.get("axcodes"):
        arr = _from_display(labels, native).astype(out_dtype)
        affine = np.asarray(native["affine"], dtype=np.float64)
    elif native and labels.ndim == 2:
        arr = labels.T.astype(out_dtype).reshape(tuple(native["shape"]))
        affine = np.asarray(native["affine"], dtype=np.float64)
    else:
        sp = list(spacing) if spacing is not None else [1.0] * labels.ndim
        arr = labels.transpose(*reversed(range(labels.ndim))).astype(out_dtype)
        if labels.ndim == 3:
            # No source geometry: the array is in this package's display order (x to the
            # patient's Left, y Posterior, z Inferior), so say so; a positive diagonal would make
            # the mask come back mirrored on all three axes.
            affine = np.diag([-s for s in reversed(sp)] + [1.0])
        else:
            affine = np.diag([*reversed(sp), *([1.0] * (4 - labels.ndim))])
    img = nib.Nifti1Image(arr, affine)
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    return atomic_write(Path(path), lambda tmp: _save(img, Path(tmp)))


def _save(img: Any, path: Path) -> None:
    """Write ``img`` to ``path`` in one piece.

    nibabel streams .nii.gz through gzip in thousands of small writes, which cost 2x more than
    compressing the finished bytes at once.
    """
    if path.name.lower().endswith(".gz"):
        import gzip

        path.write_bytes(gzip.compress(img.to_bytes(), compresslevel=1 if
                                       np.issubdtype(img.get_data_dtype(), np.integer) else 6,
                                       mtime=0))
    else:
        path.write_bytes(img.to_bytes())


