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
same stem. figshare ``.mat`` files carry their own mask. This package's predictions
(``NAME_pred.ext``, formerly ``NAME_tumour.ext``) are never ground truth and never images; every
name rule lives in :mod:`napari_brainseg.naming`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np

from .formats.dicom import _looks_like_dicom, is_dicom_file, read_dicom
from .formats.figshare import read_mat, write_mat
from .formats.nifti import read_nifti, write_image, write_nifti
from .formats.raster import read_raster, write_raster
from .naming import ground_truth_names, is_ground_truth, is_labels, is_never_input, layer_name
from .naming import is_prediction as _is_prediction
from .volume import (
    DICOM_SUFFIXES,
    IMAGE_DIRS,
    MASK_DIRS,
    MASK_SUFFIX,
    MAT_SUFFIXES,
    MAX_VOXELS,
    MIN_SIDE,
    NIFTI_SUFFIXES,
    RASTER_SUFFIXES,
    SUPPORTED_SUFFIXES,
    TUMOUR_TYPES,
    ReadError,
    Volume,
    atomic_write,
    is_supported_file,
    list_files,
    natural_key,
    stem,
    suffix_of,
    to_grey,
)

__all__ = [
    "DICOM_SUFFIXES", "IMAGE_DIRS", "MASK_DIRS", "MASK_SUFFIX", "MAT_SUFFIXES", "MAX_VOXELS",
    "MIN_SIDE", "NIFTI_SUFFIXES", "RASTER_SUFFIXES", "SUPPORTED_SUFFIXES", "TUMOUR_TYPES",
    "FolderOfVolumesError", "Pair", "ReadError", "Volume", "atomic_write", "can_read",
    "find_pairs", "is_supported_file",
    "list_files",
    "mask_for", "read", "read_dicom", "read_mat", "read_nifti", "read_raster",
    "stem", "suffix_of", "to_grey", "write_image", "write_labels", "write_mat", "write_nifti",
    "write_raster",
]


def write_labels(path: Path, labels: np.ndarray, like: Volume | Mapping[str, Any] | None = None,
                 spacing: Sequence[float] | None = None,
                 description: str | bytes | None = None) -> Path:
    """Write labels in the format named by ``path``'s suffix (NIfTI keeps the scan's affine).

    ``description`` goes into a NIfTI header's 80-byte ``descrip`` (other formats have none).
    """
    path = Path(path)
    suffix = suffix_of(path)
    if suffix in NIFTI_SUFFIXES:
        return write_nifti(path, labels, like=like, spacing=spacing, description=description)
    if suffix in (".png", ".tif", ".tiff", ".bmp"):
        return write_raster(path, labels)
    raise ValueError(
        f"{path.name}: cannot write labels as '{suffix or path.suffix}'; "
        "use .nii.gz, .nii, .png or .tif."
    )


# --------------------------------------------------------------------------- pairing & dispatch


_MORE_SUFFIXES = (*SUPPORTED_SUFFIXES, *(x.upper() for x in SUPPORTED_SUFFIXES))


def _suffix_variants(path: Path) -> list[str]:
    """Suffixes a mask of ``path`` may have.

    The image's own as written first, then every supported one in lower and upper case.
    """
    written = path.name[len(stem(path)):]
    return list(dict.fromkeys(x for x in (written, *_MORE_SUFFIXES) if x))


#: ``lookup(folder, names)``: the first of ``names`` that is a file in ``folder``, or None.
Lookup = Callable[[Path, Sequence[str]], "str | None"]


def _find_mask(image_path: Path, lookup: Lookup) -> Path | None:
    """The mask of ``image_path`` by the pairing convention.

    ``lookup`` answers for a folder and candidate names (a probe of the disk, or a folder
    listing made once), so pairing a folder costs one listing per folder, never one per image.
    """
    s = stem(image_path)
    if is_never_input(image_path):  # a mask, a prediction or an overlay has no mask
        return None
    variants = _suffix_variants(image_path)
    found = lookup(image_path.parent, ground_truth_names(image_path, variants))
    if found is not None:
        return image_path.parent / found
    if image_path.parent.name.lower() in IMAGE_DIRS:
        # Only image formats: a sidecar (a.json, a.txt) is not a mask.
        names = [n for x in variants for n in (f"{s}{x}", f"{s}{MASK_SUFFIX}{x}")]
        for mask_dir in MASK_DIRS:
            folder = image_path.parent.parent / mask_dir
            found = lookup(folder, names)
            if found is not None and is_ground_truth(folder / found):
                return folder / found
    return None


def _probe(folder: Path, names: Sequence[str]) -> str | None:
    for name in names:
        try:
            if (folder / name).is_file():
                return name
        except OSError:  # a name too long for the file system, a folder we may not read, ...
            continue
    return None


def mask_for(image_path: Path) -> Path | None:
    """Return the mask file paired with ``image_path`` by the README's convention, or None."""
    return _find_mask(Path(image_path), _probe)


@dataclass(frozen=True)
class Pair:
    """An image file and its mask file (None when it has none; ``.mat`` files carry both)."""

    image: Path
    mask: Path | None


def find_pairs(folder: Path, recursive: bool = True) -> list[Pair]:
    """List the image files of a folder with their masks, by the README's pairing convention.

    Masks themselves (``*_mask.*`` and files under ``masks/``/``labels/``), this package's
    predictions (``*_pred.*``, and the old ``*_tumour.*``), brain masks and overlays are not
    listed as images (:func:`napari_brainseg.naming.is_never_input`). DICOM series are not
    listed (use :func:`read_dicom`). Each folder is listed once: the time grows with the number
    of files, not with its square.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ReadError(f"{folder}: not a folder.")
    files = list_files(folder, recursive)
    listed: dict[Path, set[str]] = {}
    for f in files:
        listed.setdefault(f.parent, set()).add(f.name)

    def lookup(d: Path, names: Sequence[str]) -> str | None:
        if d not in listed:  # a masks/ folder beside a listed images/ folder: listed once
            try:
                listed[d] = {f.name for f in list_files(d, recursive=False)}
            except ReadError:
                listed[d] = set()
        have = listed[d]
        return next((n for n in names if n in have), None)

    pairs = []
    for f in sorted(files, key=natural_key):
        if suffix_of(f) in DICOM_SUFFIXES or suffix_of(f) == "":
            continue
        if f.name.startswith("."):
            continue
        if is_never_input(f):
            continue
        if suffix_of(f) in MAT_SUFFIXES:
            pairs.append(Pair(f, f))
        else:
            pairs.append(Pair(f, _find_mask(f, lookup)))
    return pairs


def _read_with_mask(path: Path, with_mask: bool = True,
                    mask_path: Path | None | Literal[False] = False) -> list[Volume]:
    """Read one image file (and its paired mask, if any and ``with_mask``).

    ``mask_path`` is the mask when the caller paired the files already (None: no mask); by
    default it is looked up.
    """
    suffix = suffix_of(path)
    if suffix in MAT_SUFFIXES:
        return read_mat(path)
    if suffix in DICOM_SUFFIXES:
        return read_dicom(path)
    kind: Literal["image", "labels"] = "labels" if is_labels(path) else "image"
    reader = read_nifti if suffix in NIFTI_SUFFIXES else read_raster
    image = reader(path, kind=kind)
    if kind == "labels":  # "NAME prediction", "NAME ground truth", "NAME brain mask"
        image = replace(image, name=layer_name(path))
    if _is_prediction(path):  # a saved prediction (or an old _tumour one) reopens as such
        image = replace(image, metadata={**image.metadata, "prediction": True})
    out = [image]
    if kind == "image" and with_mask:
        if mask_path is False:
            mask_path = mask_for(path)
        if mask_path is not None:
            mreader = read_nifti if suffix_of(mask_path) in NIFTI_SUFFIXES else read_raster
            mask = mreader(mask_path, kind="labels")
            if mask.data.shape != image.data.shape:
                raise ReadError(
                    f"{mask_path.name}: mask of shape {mask.data.shape} does not match its image "
                    f"{path.name} of shape {image.data.shape}. Masks must have the image's size."
                )
            out.append(replace(mask, name=f"{image.name} ground truth", spacing=image.spacing,
                               affine=image.affine, metadata=image.metadata))
    return out


class FolderOfVolumesError(ReadError):
    """A folder holding several volumes, which opens as no single stack (read them one by one)."""


def _read_folder(folder: Path) -> list[Volume]:
    files = list_files(folder)
    if not any(not p.name.startswith(".") for p in files):
        raise ReadError(f"{folder.name}: the folder is empty. Choose a folder with images.")
    if any(is_dicom_file(p) for p in files):
        return read_dicom(folder)
    pairs = find_pairs(folder, recursive=True)
    if not pairs:
        raise ReadError(
            f"{folder.name}: no supported images in this folder (looked for "
            f"{', '.join(SUPPORTED_SUFFIXES)} and DICOM series)."
        )
    if len(pairs) == 1:
        return _read_with_mask(pairs[0].image, mask_path=pairs[0].mask)
    images, masks = [], []
    for pair in pairs:
        vols = _read_with_mask(pair.image, mask_path=pair.mask)
        if vols[0].ndim != 2:
            raise FolderOfVolumesError(
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
                          name=f"{folder.name} ground truth", source=folder, metadata=meta))
    return out


#: How many folder entries :func:`can_read` looks at, and how many suffix-less files it opens
#: to look for the DICOM marker, before it declines a folder.
CAN_READ_ENTRIES = 2000
CAN_READ_PROBES = 16


def can_read(path: Path) -> bool:
    """Cheap check whether :func:`read` would find something in ``path``.

    A supported file, a DICOM file, or a folder holding one of those (or an ``images/`` folder)
    within its first :data:`CAN_READ_ENTRIES` entries, breadth first. napari asks every plugin
    about every path it opens: a folder of other things is declined after a bounded look, never
    walked in full, and an unreadable one is declined.
    """
    path = Path(path)
    if path.is_dir():
        return _folder_has_images(path)
    return is_supported_file(path) or (path.is_file() and _looks_like_dicom(path))


def _folder_has_images(folder: Path) -> bool:
    queue = [folder]
    seen = probes = 0
    while queue and seen < CAN_READ_ENTRIES:
        d = queue.pop(0)
        try:
            it = os.scandir(d)
        except OSError:
            continue
        with it:
            for e in it:
                seen += 1
                if seen > CAN_READ_ENTRIES:
                    break
                if e.name.startswith("."):
                    continue
                try:
                    if e.is_dir(follow_symlinks=False):
                        if e.name.lower() in IMAGE_DIRS:
                            return True
                        queue.append(Path(e.path))
                        continue
                    if not e.is_file():
                        continue
                except OSError:
                    continue
                if is_supported_file(Path(e.name)):
                    return True
                if suffix_of(Path(e.name)) == "" and probes < CAN_READ_PROBES:
                    probes += 1
                    if _looks_like_dicom(Path(e.path)):
                        return True
    return False


def read(path: str | os.PathLike[str], with_mask: bool = True) -> list[Volume]:
    """Read any supported file or folder into image (and label) volumes.

    Parameters
    ----------
    path : str or PathLike
        A file (NIfTI, DICOM, figshare .mat, PNG/JPEG/BMP/TIFF) or a folder (a DICOM series, or
        2D slices that open as a stack, with masks by the pairing convention).
    with_mask : bool
        Also look for and read an image file's paired mask (``NAME_mask.ext``). Callers that
        paired the files already (batch runs) pass False.

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
    return _read_with_mask(p, with_mask)
