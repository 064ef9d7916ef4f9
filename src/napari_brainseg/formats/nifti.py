"""NIfTI: volumes in display orientation, masks written back on the native grid."""

from __future__ import annotations

import errno
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
    atomic_write,
    check_size,
    checked_values,
    from_display,
    label_dtype,
    os_error_message,
    spacing_from_affine,
    stem,
    suffix_of,
    to_display,
    to_grey,
)


def read_nifti(path: Path, kind: Literal["image", "labels"] = "image") -> Volume:
    """Read a NIfTI file as a :class:`Volume` in display orientation.

    A 3D file with one axis of size 1 (an axial, coronal or sagittal slice) is a 2D image.
    Complex values give their magnitude and RGB files their luminance, each with a warning. A
    header whose transform is unusable (NaN, infinite, zero or singular) falls back to the next
    usable one (sform, qform, voxel sizes), else to plain voxels, with a warning.

    Parameters
    ----------
    path : Path
        ``.nii`` or ``.nii.gz`` file.
    kind : {"image", "labels"}
        Read values as float32 intensities or as uint8 labels.

    Raises
    ------
    ReadError
        Truncated, corrupt, not NIfTI, 5D or larger, too big or too small, unreadable.
    """
    import nibabel as nib

    path = Path(path)
    try:
        img = nib.load(str(path))
    except OSError as exc:
        if isinstance(exc, PermissionError) or exc.errno in (errno.EACCES, errno.EPERM):
            raise ReadError(os_error_message(exc, path)) from exc
        raise ReadError(
            f"{path.name}: not a readable NIfTI file ({type(exc).__name__}: {exc}). "
            "Check that it is a complete .nii/.nii.gz file."
        ) from exc
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
    dtype = img.get_data_dtype()
    itemsize = dtype.itemsize
    slope, inter = img.header.get_slope_inter()
    if slope not in (None, 1.0) or inter not in (None, 0.0):
        itemsize = max(itemsize, 8)  # scaled values come back as float64
    if all(s >= 1 for s in shape):
        _check_claim(img, shape, path)
    check_size(shape[:3], path, itemsize)
    try:
        dataobj = img.dataobj
        if len(shape) > 3:
            if shape[3] > 1:
                warnings.append(
                    f"{path.name}: 4D NIfTI with {shape[3]} volumes; showing the first one only."
                )
            arr = np.asarray(dataobj[(slice(None),) * 3 + (0,) * (len(shape) - 3)])
        else:
            arr = np.asarray(dataobj)
    except (EOFError, OSError, zlib.error, ValueError) as exc:
        if isinstance(exc, PermissionError):
            raise ReadError(os_error_message(exc, path)) from exc
        raise ReadError(
            f"{path.name}: the file is truncated or corrupt ({exc}). Copy it again from its source."
        ) from exc
    if dtype.names:  # RGB24/RGBA32: fields R, G, B(, A)
        arr = np.stack([arr[n] for n in dtype.names[:3]], axis=-1)
        if kind == "labels":
            arr = arr.max(axis=-1)
        else:
            warnings.append(f"{path.name}: RGB NIfTI converted to grey by luminance.")
            arr = to_grey(arr)
    affine, geometry, transforms = _geometry(img.header, shape[:3], path, warnings)
    native_meta: dict[str, Any] = {}
    spatial = [i for i in range(arr.ndim) if arr.shape[i] > 1]
    if arr.ndim == 3 and len(spatial) == 2:
        # One slice stored as (x, y, 1), (x, 1, z) or (1, y, z): a 2D image, not a volume one
        # voxel thick (which would be segmented as 1-pixel-wide slices).
        arr = arr.reshape([arr.shape[i] for i in spatial])
    if arr.ndim == 2:
        # A single slice: show it as stored (rows = first NIfTI axis would look transposed).
        a, b = spatial if len(spatial) == 2 else (0, 1)
        other = next(i for i in range(3) if i not in (a, b))
        display = np.ascontiguousarray(arr.T)
        disp_affine = affine[:, [b, a, other, 3]]
        spacing = spacing_from_affine(disp_affine, 2) if geometry else (1.0, 1.0)
        native_meta = {"affine": np.asarray(affine), "shape": tuple(shape[:3]), "axcodes": ""}
        disp_affine_out = None
    else:
        display, disp_affine, native_meta = to_display(arr, affine)
        spacing = spacing_from_affine(disp_affine, 3) if geometry else (1.0, 1.0, 1.0)
        disp_affine_out = disp_affine if geometry else None
    native_meta["transforms"] = transforms
    data = checked_values(display, path, kind, warnings)
    return Volume(
        data=data,
        spacing=spacing,
        affine=disp_affine_out,
        kind=kind,
        name=stem(path),
        source=path,
        # A 2D slice has no 3D display affine, but its pixel size is the header's: real geometry
        # (Volume.has_geometry), so the model and the sizes use it rather than a guess.
        metadata={"native": native_meta, "format": "nifti",
                  **({"pixel_spacing": True} if geometry and arr.ndim == 2 else {})},
        warnings=tuple(warnings),
    )


def _check_claim(img: Any, shape: tuple[int, ...], path: Path) -> None:
    """Compare what the header says the pixels take with the file's size (uncompressed files).

    A 456-byte file whose header claims 16 GiB is refused here, before anything is read.
    """
    if path.name.lower().endswith(".gz"):
        return  # the size is known only by decompressing; the memory estimate guards these
    first = int(np.prod(shape[:3], dtype=np.int64)) * img.get_data_dtype().itemsize
    need = int(img.header.get("vox_offset", 0) or 0) + first
    size = path.stat().st_size
    if size < need:
        raise ReadError(
            f"{path.name}: the header describes {_bytes(need)} of image of shape {shape}, but "
            f"the file holds {_bytes(size)}; it is truncated or its header is wrong. Copy it "
            "again from its source."
        )


def _bytes(n: int) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} bytes"


def _usable(affine: Any, shape: Sequence[int]) -> bool:
    """Whether ``affine`` maps the voxels of ``shape`` to a real grid.

    It must be finite, and the axes that have more than one voxel non-zero and independent.
    """
    if affine is None:
        return False
    a = np.asarray(affine, dtype=np.float64)
    if a.shape != (4, 4) or not np.isfinite(a).all():
        return False
    axes = [i for i in range(3) if i >= len(shape) or shape[i] > 1] or [0, 1, 2]
    cols = a[:3, axes]
    norms = np.linalg.norm(cols, axis=0)
    if np.any(norms <= 1e-12):
        return False
    unit = cols / norms
    # independent axes: the volume (or area) they span is not vanishing
    return bool(np.sqrt(abs(np.linalg.det(unit.T @ unit))) > 1e-3)


def _geometry(header: Any, shape: Sequence[int], path: Path,
              warnings: list[str]) -> tuple[np.ndarray, bool, dict[str, Any]]:
    """The header's voxel-to-mm transform, or a fallback when it is unusable.

    Returns the affine to use, whether it is real geometry, and the header's own qform and sform
    (with their codes) for writing a mask back with the same header.
    """
    def get(which: str) -> tuple[np.ndarray | None, int]:
        try:
            aff, code = getattr(header, f"get_{which}")(coded=True)
        except Exception:  # a NaN quaternion, a broken header
            return None, 0
        return aff, int(code or 0)

    sform, s_code = get("sform")
    qform, q_code = get("qform")
    try:
        base = header.get_base_affine()
    except Exception:
        base = None
    candidates = [(n, a) for n, a, c in (("sform", sform, s_code), ("qform", qform, q_code))
                  if c > 0] + [("voxel sizes (pixdim)", base)]
    transforms = {
        "sform": np.asarray(sform, float) if s_code > 0 and _usable(sform, shape) else None,
        "sform_code": s_code, "qform_code": q_code,
        "qform": np.asarray(qform, float) if q_code > 0 and _usable(qform, shape) else None,
    }
    for k, (name, aff) in enumerate(candidates):
        if _usable(aff, shape):
            if k:
                bad = ", ".join(n for n, _ in candidates[:k])
                warnings.append(f"{path.name}: the header's {bad} is not usable (NaN, infinite, "
                                f"zero or singular); using its {name} instead.")
            return np.asarray(aff, dtype=np.float64), True, transforms
    warnings.append(f"{path.name}: the header's geometry (sform, qform and voxel sizes) is not "
                    "usable (NaN, infinite, zero or singular); showing the voxels as stored, "
                    "1 mm each, so sizes are in voxels. Fix the header (e.g. fslorient) for mm.")
    return np.diag([1.0, 1.0, 1.0, 1.0]), False, transforms


def write_nifti(path: Path, labels: np.ndarray, like: Volume | Mapping[str, Any] | None = None,
                spacing: Sequence[float] | None = None,
                description: str | bytes | None = None) -> Path:
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
    description : str or bytes, optional
        The header's ``descrip`` (ASCII, cut to its 80 bytes), e.g. where the mask came from
        (:func:`napari_brainseg.provenance.nifti_description`).
    """
    labels = np.asarray(labels)
    out_dtype = label_dtype(labels, LABEL_DTYPES, Path(path).name)
    return _write_nifti_array(path, labels, out_dtype, like, spacing, description)


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
                       spacing: Sequence[float] | None,
                       description: str | bytes | None = None) -> Path:
    import nibabel as nib

    meta = like.metadata if isinstance(like, Volume) else (like or {})
    native = meta.get("native") if isinstance(meta, Mapping) else None
    if native and labels.ndim == 3 and native.get("axcodes"):
        arr = from_display(labels, native).astype(out_dtype)
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
    if description:
        text = description.encode("ascii", "replace") if isinstance(description, str) \
            else bytes(description)
        img.header["descrip"] = text[:80]
    transforms = native.get("transforms") if native else None
    if transforms:
        # The scan's own qform and sform, codes included: when they disagree, a viewer that reads
        # either one must still find the mask on the scan.
        for which in ("qform", "sform"):
            aff = transforms.get(which)
            code = int(transforms.get(f"{which}_code", 0)) if aff is not None else 0
            getattr(img, f"set_{which}")(aff if aff is not None else affine, code=code)
        if transforms.get("qform") is None and transforms.get("sform") is None:
            img.set_sform(affine, code=1)  # no usable transform in the scan: say what we used
    else:
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


