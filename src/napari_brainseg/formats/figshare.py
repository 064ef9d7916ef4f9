"""The figshare brain-tumour .mat format (MATLAB v7.3/HDF5 and v5)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np

from napari_brainseg.formats.mat5 import check_mat5_claims, mat4_header
from napari_brainseg.volume import (
    TUMOUR_TYPES,
    ReadError,
    Volume,
    atomic_write,
    check_size,
    finite_image,
    labels_from,
    os_error_message,
    stem,
)


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
                        fields[key] = _h5_array(cj[key], key, path)
            for key in ("image", "tumorMask"):
                if key in fields and fields[key].ndim == 2:
                    fields[key] = fields[key].T  # HDF5 stores MATLAB arrays transposed
            if "PID" in fields:
                fields["PID"] = _pid_text(fields["PID"])
        else:
            import scipy.io

            with open(path, "rb") as fh:
                if mat4_header(fh.read(20)):
                    raise ReadError(
                        f"{path.name}: a MATLAB v4 file, which can hold only plain matrices, "
                        "not the 'cjdata' struct of the figshare brain-tumour set. Save it "
                        "again in MATLAB with save(..., '-v7.3') or '-v7'."
                    )
            check_mat5_claims(path)  # sizes from the headers before scipy allocates anything
            try:
                mat = scipy.io.loadmat(str(path), squeeze_me=True, struct_as_record=False)
            except Exception as exc:
                why = str(exc).split(";")[0]  # scipy's advice after ';' is for programmers
                raise ReadError(
                    f"{path.name}: not a readable MATLAB file ({why}); it is truncated or "
                    "damaged. Copy it again from its source, or save it again in MATLAB."
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
                pid = fields["PID"]
                fields["PID"] = pid if isinstance(pid, str) else (
                    _pid_text(pid) if np.asarray(pid).dtype.kind in "iuf" else None)
    except ReadError:
        raise
    except PermissionError as exc:
        raise ReadError(os_error_message(exc, path)) from exc
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
    check_size(image.shape, path)
    data, warnings = finite_image(image, path)
    meta: dict[str, Any] = {"format": "figshare-mat"}
    if "label" in fields:
        try:
            code = int(np.ravel(fields["label"])[0])
            meta["tumour_type"] = TUMOUR_TYPES.get(code, f"label {code}")
        except (TypeError, ValueError, IndexError, OverflowError):
            warnings += (f"{path.name}: cjdata.label is not a whole number; tumour type "
                         "unknown.",)
    if fields.get("PID") is None and "PID" in fields:
        warnings += (f"{path.name}: cjdata.PID is not text; patient id unknown (slices of this "
                     "file are not grouped with their patient's).",)
    elif fields.get("PID"):
        meta["patient_id"] = str(fields["PID"])
    name = stem(path)
    out = [Volume(data=data, spacing=(1.0, 1.0), name=name, source=path, metadata=meta,
                  warnings=warnings)]
    if "tumorMask" in fields:
        mask = np.asarray(fields["tumorMask"])
        if mask.dtype.kind not in "biuf":
            raise ReadError(f"{path.name}: cjdata.tumorMask must be a numeric array, got "
                            f"{mask.dtype} ({mask.dtype.kind!r} kind). Export the mask again.")
        if mask.shape != image.shape:
            raise ReadError(
                f"{path.name}: tumorMask of shape {mask.shape} does not match image "
                f"{image.shape}."
            )
        out.append(Volume(data=labels_from(mask, path), spacing=(1.0, 1.0), kind="labels",
                          name=f"{name} ground truth", source=path, metadata=meta))
    return out


#: More values than a label or a patient id ever has: such a field is not read.
_SMALL_FIELD = 4096


def _h5_array(dataset: Any, key: str, path: Path) -> np.ndarray:
    """Read one field of ``cjdata``, checking its size from the header first.

    An HDF5 dataset can claim gigabytes that were never written (a few KB on disk), so the
    shape is checked before anything is allocated.
    """
    shape = tuple(int(s) for s in getattr(dataset, "shape", ()) or ())
    if key in ("image", "tumorMask"):
        if len(shape) == 2:
            check_size(shape, path, dataset.dtype.itemsize)
        elif int(np.prod(shape, dtype=np.int64)) > _SMALL_FIELD:
            raise ReadError(f"{path.name}: cjdata.{key} must be a 2D numeric array, got shape "
                            f"{shape}.")
    elif int(np.prod(shape, dtype=np.int64)) > _SMALL_FIELD:
        return np.array([])  # not a label or a patient id: treated as missing
    return np.array(dataset)


def _pid_text(values: Any) -> str | None:
    """The patient id MATLAB stored as character codes, or None when the codes are no text."""
    try:
        codes = [int(c) for c in np.ravel(values)]
        return "".join(chr(c) for c in codes if c)
    except (TypeError, ValueError, OverflowError):
        return None


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


