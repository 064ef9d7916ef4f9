"""Reading and writing brain MRI in the formats this field uses.

Every reader returns :class:`Volume` objects: the pixel array plus its voxel spacing (mm), the
affine of the array as held, where it came from, and what else the file said (tumour type, patient
id). Nothing here imports napari, Qt or torch.

Formats
-------
- NIfTI ``.nii``/``.nii.gz``: 3D (4D: first volume, with a warning; 2D files give a 2D image).
  Volumes are turned to the closest canonical display orientation (see :data:`DISPLAY_AXCODES`) and
  the transform is kept so that a mask can be written back on the file's own voxel grid.
- DICOM: a folder holding one or more series, or one ``.dcm`` file.
- figshare brain-tumour ``.mat`` (MATLAB v7.3 = HDF5, or MATLAB v5): struct ``cjdata``.
- PNG / JPEG / BMP / TIFF (8- and 16-bit; colour converted to grey by luminance).
- A folder of same-size 2D slices opens as a stack.

Pairing convention (used by the reader and by training)
-------------------------------------------------------
An image ``NAME.ext`` has a mask when ``NAME_mask.ext`` (any supported extension) lies beside it,
or when the folder holds ``images/`` and ``masks/`` (or ``labels/``) sub-folders with files of the
same stem. figshare ``.mat`` files carry their own mask.
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
import zlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np

log = logging.getLogger(__name__)

#: Largest number of voxels read at once (4 GiB as float32): beyond that, ask the user to crop.
MAX_VOXELS = 2**30
#: Smallest side length of an image we accept: U-Net training and skull stripping need some room.
MIN_SIDE = 8
#: Display orientation of volumes, as nibabel axis codes of the (x, y, z) array before it is
#: transposed to (Z, Y, X): columns run to the patient's Left (radiological convention), rows to
#: Posterior (anterior at the top of an axial slice), slices to Inferior (so coronal and sagittal
#: views, made by rolling napari's axes, show the head upright).
DISPLAY_AXCODES = ("L", "P", "I")

NIFTI_SUFFIXES = (".nii", ".nii.gz")
MAT_SUFFIXES = (".mat",)
DICOM_SUFFIXES = (".dcm", ".dicom", ".ima")
RASTER_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
SUPPORTED_SUFFIXES = NIFTI_SUFFIXES + MAT_SUFFIXES + DICOM_SUFFIXES + RASTER_SUFFIXES
MASK_SUFFIX = "_mask"
MASK_DIRS = ("masks", "labels")
IMAGE_DIRS = ("images",)

TUMOUR_TYPES = {1: "meningioma", 2: "glioma", 3: "pituitary"}


class ReadError(ValueError):
    """A file that this package accepts turned out to be unreadable or unusable.

    The message names the file, what is wrong, and what to do.
    """


@dataclass(frozen=True)
class Volume:
    """An image or a label map with its geometry.

    Attributes
    ----------
    data : np.ndarray
        ``(Y, X)`` for a 2D image or ``(Z, Y, X)`` for a volume. Images are float32 in the
        file's own intensity units (DICOM rescale applied); labels are uint8 with 0 = background.
    spacing : tuple of float
        Voxel size in mm per axis of ``data`` (1.0 where the file does not say).
    affine : np.ndarray or None
        4x4 matrix mapping indices of ``data`` (in axis order, then 1) to patient RAS+ mm, or None
        when the format has no geometry (PNG, JPEG, .mat).
    kind : {"image", "labels"}
        What the array holds.
    name : str
        A short layer name (file stem).
    source : Path or None
        The file or folder read.
    metadata : Mapping
        Anything else: ``tumour_type``, ``patient_id``, ``native`` (what is needed to write a mask
        back on the source's own voxel grid), ...
    warnings : tuple of str
        Things the user should know (values replaced, volumes dropped, ...).
    """

    data: np.ndarray
    spacing: tuple[float, ...]
    affine: np.ndarray | None = None
    kind: Literal["image", "labels"] = "image"
    name: str = "image"
    source: Path | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.data.ndim not in (2, 3):
            raise ValueError(f"Volume data must be 2D or 3D, got shape {self.data.shape}")
        if len(self.spacing) != self.data.ndim:
            raise ValueError(
                f"spacing {self.spacing} must have one value per axis of data {self.data.shape}"
            )

    @property
    def ndim(self) -> int:
        """Number of spatial axes (2 or 3)."""
        return self.data.ndim


# --------------------------------------------------------------------------- helpers


def stem(path: Path) -> str:
    """Return the file name without its (possibly double) suffix: ``a.nii.gz`` -> ``a``."""
    name = path.name
    for suffix in sorted(SUPPORTED_SUFFIXES, key=len, reverse=True):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def suffix_of(path: Path) -> str:
    """Return the lower-case suffix this package knows, ``.nii.gz`` included, or ``''``."""
    name = path.name.lower()
    for suffix in sorted(SUPPORTED_SUFFIXES, key=len, reverse=True):
        if name.endswith(suffix):
            return suffix
    return ""


def is_supported_file(path: Path) -> bool:
    """Whether ``path`` has a suffix one of the readers handles."""
    return suffix_of(Path(path)) != ""


def _natural_key(path: Path) -> list[Any]:
    # "slice2" before "slice10": users number slices without zero padding.
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", path.name)]


def _check_size(shape: Sequence[int], path: Path) -> None:
    n = int(np.prod(shape, dtype=np.int64))
    if n > MAX_VOXELS:
        raise ReadError(
            f"{path.name}: image of shape {tuple(shape)} has {n:,} voxels, more than the "
            f"{MAX_VOXELS:,} this tool loads at once. Crop or downsample it first."
        )
    spatial = sorted(int(s) for s in shape if s > 1)
    if len(spatial) < 2 or spatial[-2] < MIN_SIDE:
        raise ReadError(
            f"{path.name}: image of shape {tuple(shape)} is too small; each side of a slice must "
            f"be at least {MIN_SIDE} pixels."
        )


def _finite_image(data: np.ndarray, path: Path) -> tuple[np.ndarray, tuple[str, ...]]:
    """Return float32 data with NaN/Inf replaced by the minimum finite value, plus a warning."""
    data = np.asarray(data, dtype=np.float32)
    finite = np.isfinite(data)
    if finite.all():
        return data, ()
    if not finite.any():
        raise ReadError(
            f"{path.name}: every value is NaN or infinite; there is no image to show. "
            "Check the file was exported correctly."
        )
    bad = int((~finite).sum())
    fill = float(data[finite].min())
    data = np.where(finite, data, fill).astype(np.float32)
    msg = f"{path.name}: {bad:,} NaN/infinite values replaced by the image minimum ({fill:g})."
    log.warning(msg)
    return data, (msg,)


def _labels_from(data: np.ndarray, path: Path) -> np.ndarray:
    """Turn a mask array into uint8 labels (0 background); reject non-integer soft masks."""
    data = np.asarray(data)
    if data.ndim == 3 and data.shape[-1] in (3, 4):  # a colour-saved mask: any channel set
        data = data[..., :3].max(axis=-1)
    if not np.isfinite(data).all():
        raise ReadError(f"{path.name}: mask contains NaN or infinite values.")
    values = np.unique(data)
    if len(values) <= 2 and values.max(initial=0) > 1:
        # Binary masks saved as 0/255 (PNG) or 0/65535: make them 0/1.
        return (data > 0).astype(np.uint8)
    if not np.all(np.equal(np.mod(values, 1), 0)) or values.min(initial=0) < 0 or values.max(
        initial=0
    ) > 255:
        raise ReadError(
            f"{path.name}: mask values {values[:6].tolist()}... are not labels (integers 0-255). "
            "Save masks as integer images with 0 = background."
        )
    return data.astype(np.uint8)


def _values(arr: np.ndarray, path: Path, kind: Literal["image", "labels"],
            warnings: list[str]) -> np.ndarray:
    """Labels as uint8, images as finite float32 (appending any warning)."""
    if kind == "labels":
        return _labels_from(arr, path)
    data, extra = _finite_image(arr, path)
    warnings.extend(extra)
    return data


def atomic_write(path: Path, write: Any) -> Path:
    """Call ``write(tmp_path)`` then move the file onto ``path`` in one step.

    The temporary file sits in the same folder with the same suffix (writers choose the format
    from it), so a crash or a full disk never leaves a half-written ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = suffix_of(path) or path.suffix
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{suffix}",
                                    dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600 files; give the usual permissions
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


# --------------------------------------------------------------------------- orientation


def _to_display(arr_xyz: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict]:
    """Reorient an (x, y, z) array with RAS affine to the (Z, Y, X) display layout.

    Returns the display array, its affine (display indices -> RAS mm) and what is needed to undo
    the transform (:func:`_from_display`).
    """
    import nibabel.orientations as nio

    src = nio.io_orientation(affine)
    dst = nio.axcodes2ornt(DISPLAY_AXCODES)
    transform = nio.ornt_transform(src, dst)
    out = nio.apply_orientation(arr_xyz, transform)
    out_affine = affine @ nio.inv_ornt_aff(transform, arr_xyz.shape)
    display = np.ascontiguousarray(out.transpose(2, 1, 0))
    display_affine = out_affine[:, [2, 1, 0, 3]]
    native = {
        "affine": np.asarray(affine, dtype=np.float64),
        "shape": tuple(int(s) for s in arr_xyz.shape),
        "axcodes": "".join(nio.aff2axcodes(affine)),
    }
    return display, display_affine, native


def _from_display(display: np.ndarray, native: Mapping[str, Any]) -> np.ndarray:
    """Undo :func:`_to_display`: a (Z, Y, X) display array back on the native (x, y, z) grid."""
    import nibabel.orientations as nio

    affine = np.asarray(native["affine"], dtype=np.float64)
    src = nio.io_orientation(affine)
    dst = nio.axcodes2ornt(DISPLAY_AXCODES)
    back = nio.ornt_transform(dst, src)
    out = nio.apply_orientation(display.transpose(2, 1, 0), back)
    if tuple(out.shape) != tuple(native["shape"]):
        raise ValueError(
            f"mask of display shape {display.shape} does not fit the scan's grid "
            f"{tuple(native['shape'])}; it must have the shape of the image layer it labels."
        )
    return out


def _spacing_from_affine(affine: np.ndarray, ndim: int) -> tuple[float, ...]:
    zooms = np.sqrt((np.asarray(affine)[:3, :ndim] ** 2).sum(axis=0))
    return tuple(float(z) if z > 0 else 1.0 for z in zooms)


# --------------------------------------------------------------------------- NIfTI


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
    if labels.max(initial=0) > 255 or labels.min(initial=0) < 0:
        out_dtype: type = np.int32
    else:
        out_dtype = np.uint8
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
        affine = np.diag([*reversed(sp), *([1.0] * (4 - labels.ndim))])
    img = nib.Nifti1Image(arr, affine)
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    return atomic_write(Path(path), lambda tmp: nib.save(img, str(tmp)))


# --------------------------------------------------------------------------- DICOM


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


# --------------------------------------------------------------------------- figshare .mat


def read_mat(path: Path) -> list[Volume]:
    """Read a figshare brain-tumour ``.mat`` file: image + tumour mask + tumour type.

    Both MATLAB v7.3 (HDF5; arrays stored transposed) and v5 files with struct ``cjdata``
    (fields ``image``, ``tumorMask``, optional ``label``, ``PID``, ``tumorBorder``) are read.

    Returns
    -------
    list of Volume
        ``[image, labels]`` (2D), both with ``tumour_type`` and ``patient_id`` in metadata.
    """
    import h5py

    path = Path(path)
    fields: dict[str, Any] = {}
    try:
        if h5py.is_hdf5(str(path)):
            with h5py.File(str(path), "r") as f:
                if "cjdata" not in f:
                    raise ReadError(
                        f"{path.name}: MATLAB file without the 'cjdata' struct of the figshare "
                        f"brain-tumour set (it holds {sorted(f.keys())}). "
                        "Only that layout is supported for .mat files."
                    )
                cj = f["cjdata"]
                for key in ("image", "tumorMask", "label", "PID"):
                    if key in cj:
                        fields[key] = np.array(cj[key])
            for key in ("image", "tumorMask"):
                if key in fields and fields[key].ndim == 2:
                    fields[key] = fields[key].T  # HDF5 stores MATLAB arrays transposed
            if "PID" in fields:
                fields["PID"] = "".join(chr(int(c)) for c in np.ravel(fields["PID"]) if int(c))
        else:
            import scipy.io

            try:
                mat = scipy.io.loadmat(str(path), squeeze_me=True, struct_as_record=False)
            except Exception as exc:
                raise ReadError(
                    f"{path.name}: not a readable MATLAB file ({exc})."
                ) from exc
            if "cjdata" not in mat:
                keys = sorted(k for k in mat if not k.startswith("__"))
                raise ReadError(
                    f"{path.name}: MATLAB file without the 'cjdata' struct of the figshare "
                    f"brain-tumour set (it holds {keys}). Only that layout is supported."
                )
            cj = mat["cjdata"]
            for key in ("image", "tumorMask", "label", "PID"):
                if hasattr(cj, key):
                    fields[key] = getattr(cj, key)
            if "PID" in fields:
                fields["PID"] = str(fields["PID"])
    except ReadError:
        raise
    except Exception as exc:
        raise ReadError(f"{path.name}: cannot read this .mat file ({exc}).") from exc
    if "image" not in fields:
        raise ReadError(f"{path.name}: struct 'cjdata' has no 'image' field.")
    image = np.asarray(fields["image"])
    if image.ndim != 2 or not np.issubdtype(image.dtype, np.number):
        raise ReadError(
            f"{path.name}: cjdata.image must be a 2D numeric array, got "
            f"{image.dtype} of shape {image.shape}."
        )
    _check_size(image.shape, path)
    data, warnings = _finite_image(image, path)
    meta: dict[str, Any] = {"format": "figshare-mat"}
    if "label" in fields:
        try:
            code = int(np.ravel(fields["label"])[0])
            meta["tumour_type"] = TUMOUR_TYPES.get(code, f"label {code}")
        except (TypeError, ValueError, IndexError):
            warnings += (f"{path.name}: cjdata.label is not a number; tumour type unknown.",)
    if fields.get("PID"):
        meta["patient_id"] = str(fields["PID"])
    name = stem(path)
    out = [Volume(data=data, spacing=(1.0, 1.0), name=name, source=path, metadata=meta,
                  warnings=warnings)]
    if "tumorMask" in fields:
        mask = np.asarray(fields["tumorMask"])
        if mask.shape != image.shape:
            raise ReadError(
                f"{path.name}: tumorMask of shape {mask.shape} does not match image "
                f"{image.shape}."
            )
        out.append(Volume(data=_labels_from(mask, path), spacing=(1.0, 1.0), kind="labels",
                          name=f"{name} tumour", source=path, metadata=meta))
    return out


def write_mat(path: Path, image: np.ndarray, mask: np.ndarray, label: int = 1,
              pid: str = "0", version: Literal["7.3", "5"] = "7.3") -> Path:
    """Write a figshare-style ``.mat`` file (used for tests and for exporting training pairs)."""
    path = Path(path)

    def _write(tmp: Path) -> None:
        if version == "5":
            import scipy.io

            scipy.io.savemat(str(tmp), {"cjdata": {
                "image": np.asarray(image, np.int16), "tumorMask": np.asarray(mask, np.uint8),
                "label": float(label), "PID": pid}})
        else:
            import h5py

            with h5py.File(str(tmp), "w") as f:
                g = f.create_group("cjdata")
                g["image"] = np.asarray(image, np.int16).T
                g["tumorMask"] = np.asarray(mask, np.uint8).T
                g["label"] = np.array([[float(label)]])
                g["PID"] = np.array([[ord(c)] for c in pid], dtype=np.uint16)

    return atomic_write(path, _write)


# --------------------------------------------------------------------------- raster images


def to_grey(rgb: np.ndarray) -> np.ndarray:
    """Convert ``(..., 3|4)`` colour to grey with ITU-R BT.601 luminance weights (alpha dropped)."""
    rgb = np.asarray(rgb, dtype=np.float32)
    return rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114


def read_raster(path: Path, kind: Literal["image", "labels"] = "image") -> Volume:
    """Read a PNG / JPEG / BMP / TIFF image (multi-page TIFF -> volume).

    Colour images are converted to grey by luminance, with a warning that says so.
    """
    path = Path(path)
    warnings: list[str] = []
    try:
        if suffix_of(path) in (".tif", ".tiff"):
            import tifffile

            with tifffile.TiffFile(str(path)) as tif:
                series = tif.series[0]
                axes = series.axes
                _check_size(series.shape, path)
                arr = series.asarray()
            colour = axes.endswith("S")
        else:
            import imageio.v3 as iio

            props = iio.improps(str(path))
            _check_size(props.shape[:2], path)
            arr = iio.imread(str(path))
            colour = arr.ndim == 3 and arr.shape[-1] in (3, 4)
    except ReadError:
        raise
    except Exception as exc:
        raise ReadError(
            f"{path.name}: not a readable {suffix_of(path)[1:].upper()} image (the file is "
            "damaged, truncated or of another type). Export it again from its source."
        ) from exc
    if colour:
        if kind == "image":
            extra = " (alpha channel dropped)" if arr.shape[-1] == 4 else ""
            warnings.append(f"{path.name}: colour image converted to grey by luminance{extra}.")
            arr = to_grey(arr)
    if arr.ndim not in (2, 3) or (kind == "image" and arr.ndim == 3 and colour):
        raise ReadError(f"{path.name}: unsupported image shape {arr.shape}.")
    data = _values(arr, path, kind, warnings)
    return Volume(
        data=data, spacing=(1.0,) * data.ndim, kind=kind,
        name=stem(path) if kind == "image" else f"{stem(path)[: -len(MASK_SUFFIX)]} tumour"
        if stem(path).endswith(MASK_SUFFIX) else stem(path),
        source=path, metadata={"format": suffix_of(path)[1:]}, warnings=tuple(warnings),
    )


def write_raster(path: Path, labels: np.ndarray) -> Path:
    """Write 2D labels as PNG/TIFF, or a 3D label stack as multi-page TIFF, atomically."""
    path = Path(path)
    labels = np.asarray(labels)
    dtype = np.uint8 if labels.max(initial=0) <= 255 and labels.min(initial=0) >= 0 else np.uint16
    suffix = suffix_of(path)
    if suffix in (".tif", ".tiff"):
        import tifffile

        return atomic_write(path, lambda tmp: tifffile.imwrite(
            str(tmp), labels.astype(dtype), photometric="minisblack"))
    if labels.ndim != 2:
        raise ValueError(
            f"{path.name}: a {labels.ndim}D label stack cannot be saved as {suffix}; "
            "save it as .tif or .nii.gz."
        )
    import imageio.v3 as iio

    return atomic_write(path, lambda tmp: iio.imwrite(str(tmp), labels.astype(dtype)))


def write_labels(path: Path, labels: np.ndarray, like: Volume | Mapping[str, Any] | None = None,
                 spacing: Sequence[float] | None = None) -> Path:
    """Write labels in the format named by ``path``'s suffix (NIfTI keeps the scan's affine)."""
    path = Path(path)
    suffix = suffix_of(path)
    if suffix in NIFTI_SUFFIXES:
        return write_nifti(path, labels, like=like, spacing=spacing)
    if suffix in (".png", ".tif", ".tiff", ".bmp"):
        return write_raster(path, labels)
    raise ValueError(
        f"{path.name}: cannot write labels as '{suffix or path.suffix}'; "
        "use .nii.gz, .nii, .png or .tif."
    )


# --------------------------------------------------------------------------- pairing & dispatch


def mask_for(image_path: Path) -> Path | None:
    """Return the mask file paired with ``image_path`` by the README's convention, or None."""
    image_path = Path(image_path)
    s = stem(image_path)
    if s.endswith(MASK_SUFFIX):
        return None
    for suffix in (suffix_of(image_path), *SUPPORTED_SUFFIXES):
        candidate = image_path.with_name(f"{s}{MASK_SUFFIX}{suffix}")
        if candidate.is_file():
            return candidate
    parent = image_path.parent
    if parent.name.lower() in IMAGE_DIRS:
        for mask_dir in MASK_DIRS:
            folder = parent.parent / mask_dir
            if folder.is_dir():
                for candidate in sorted(folder.iterdir()):
                    if candidate.is_file() and stem(candidate) in (s, f"{s}{MASK_SUFFIX}"):
                        return candidate
    return None


@dataclass(frozen=True)
class Pair:
    """An image file and its mask file (None when it has none; ``.mat`` files carry both)."""

    image: Path
    mask: Path | None


def find_pairs(folder: Path, recursive: bool = True) -> list[Pair]:
    """List the image files of a folder with their masks, by the README's pairing convention.

    Masks themselves (``*_mask.*`` and files under ``masks/``/``labels/``) are not listed as
    images. DICOM series are not listed (use :func:`read_dicom`).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ReadError(f"{folder}: not a folder.")
    files = folder.rglob("*") if recursive else folder.iterdir()
    pairs = []
    for f in sorted(files, key=_natural_key):
        if not f.is_file() or suffix_of(f) in DICOM_SUFFIXES or suffix_of(f) == "":
            continue
        if f.name.startswith("."):
            continue
        if stem(f).endswith(MASK_SUFFIX) or f.parent.name.lower() in MASK_DIRS:
            continue
        if suffix_of(f) in MAT_SUFFIXES:
            pairs.append(Pair(f, f))
        else:
            pairs.append(Pair(f, mask_for(f)))
    return pairs


def _read_with_mask(path: Path) -> list[Volume]:
    """Read one image file (and its paired mask, if any)."""
    suffix = suffix_of(path)
    if suffix in MAT_SUFFIXES:
        return read_mat(path)
    if suffix in DICOM_SUFFIXES:
        return read_dicom(path)
    is_mask = stem(path).endswith(MASK_SUFFIX) or path.parent.name.lower() in MASK_DIRS
    kind: Literal["image", "labels"] = "labels" if is_mask else "image"
    reader = read_nifti if suffix in NIFTI_SUFFIXES else read_raster
    image = reader(path, kind=kind)
    out = [image]
    if kind == "image":
        mask_path = mask_for(path)
        if mask_path is not None:
            mreader = read_nifti if suffix_of(mask_path) in NIFTI_SUFFIXES else read_raster
            mask = mreader(mask_path, kind="labels")
            if mask.data.shape != image.data.shape:
                raise ReadError(
                    f"{mask_path.name}: mask of shape {mask.data.shape} does not match its image "
                    f"{path.name} of shape {image.data.shape}. Masks must have the image's size."
                )
            out.append(replace(mask, name=f"{image.name} tumour", spacing=image.spacing,
                               affine=image.affine, metadata=image.metadata))
    return out


def _read_folder(folder: Path) -> list[Volume]:
    entries = [p for p in folder.iterdir() if not p.name.startswith(".")]
    if not entries:
        raise ReadError(f"{folder.name}: the folder is empty. Choose a folder with images.")
    files = [p for p in folder.rglob("*") if p.is_file()]
    if any(_looks_like_dicom(p) for p in files):
        return read_dicom(folder)
    pairs = find_pairs(folder, recursive=True)
    if not pairs:
        raise ReadError(
            f"{folder.name}: no supported images in this folder (looked for "
            f"{', '.join(SUPPORTED_SUFFIXES)} and DICOM series)."
        )
    if len(pairs) == 1:
        return _read_with_mask(pairs[0].image)
    images, masks = [], []
    for pair in pairs:
        vols = _read_with_mask(pair.image)
        if vols[0].ndim != 2:
            raise ReadError(
                f"{folder.name}: {pair.image.name} is a volume; only folders of 2D slices open as "
                "a stack. Open the volumes one by one."
            )
        images.append(vols[0])
        masks.append(vols[1] if len(vols) > 1 else None)
    shapes = {v.data.shape for v in images}
    if len(shapes) > 1:
        first = images[0]
        odd = next(v for v in images if v.data.shape != first.data.shape)
        raise ReadError(
            f"{folder.name}: slices differ in size ({first.source.name}: {first.data.shape}, "
            f"{odd.source.name}: {odd.data.shape}); a stack needs one size. Open the files one by "
            "one, or use the folder for training, which accepts mixed sizes."
        )
    stack = np.stack([v.data for v in images])
    warnings = tuple(w for v in images for w in v.warnings)
    meta = {"format": "stack", "files": [str(v.source) for v in images],
            "tumour_types": [v.metadata.get("tumour_type") for v in images]}
    out = [Volume(data=stack, spacing=(1.0, *images[0].spacing), name=folder.name, source=folder,
                  metadata=meta, warnings=warnings)]
    if any(m is not None for m in masks):
        mstack = np.stack([m.data if m is not None else np.zeros(stack.shape[1:], np.uint8)
                           for m in masks])
        out.append(Volume(data=mstack, spacing=out[0].spacing, kind="labels",
                          name=f"{folder.name} tumour", source=folder, metadata=meta))
    return out


def can_read(path: Path) -> bool:
    """Cheap check whether :func:`read` would try ``path`` (a supported file or any folder)."""
    path = Path(path)
    if path.is_dir():
        return True
    return is_supported_file(path) or (path.is_file() and _looks_like_dicom(path))


def read(path: str | os.PathLike[str]) -> list[Volume]:
    """Read any supported file or folder into image (and label) volumes.

    Parameters
    ----------
    path : str or PathLike
        A file (NIfTI, DICOM, figshare .mat, PNG/JPEG/BMP/TIFF) or a folder (a DICOM series, or
        2D slices that open as a stack, with masks by the pairing convention).

    Returns
    -------
    list of Volume
        Images first, each followed by its labels when the file or pairing provides them.

    Raises
    ------
    ReadError
        With a message naming the file, the problem and what to do.
    """
    p = Path(path)
    if not p.exists():
        raise ReadError(f"{p}: no such file or folder.")
    if p.is_dir():
        return _read_folder(p)
    if p.stat().st_size == 0:
        raise ReadError(f"{p.name}: the file is empty (0 bytes). Copy it again from its source.")
    if not os.access(p, os.R_OK):
        raise ReadError(f"{p.name}: no permission to read this file.")
    if suffix_of(p) == "" and _looks_like_dicom(p):
        return read_dicom(p)
    if not is_supported_file(p):
        raise ReadError(
            f"{p.name}: unsupported file type; supported are {', '.join(SUPPORTED_SUFFIXES)} "
            "and DICOM."
        )
    return _read_with_mask(p)


def iter_images(path: Path) -> Iterator[Path]:
    """Yield the image files under ``path`` (itself when it is a file), masks excluded."""
    path = Path(path)
    if path.is_file():
        yield path
        return
    for pair in find_pairs(path):
        yield pair.image
