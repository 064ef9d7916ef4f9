"""The Volume type and what every reader shares: checks, atomic writes, orientation.

See :mod:`napari_brainseg.io` for reading and writing files.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

# What a file is called (suffixes, masks, predictions) is decided in one place, naming.py; these
# names stay importable from here and from io.
from .naming import DICOM_SUFFIXES as DICOM_SUFFIXES
from .naming import IMAGE_DIRS as IMAGE_DIRS
from .naming import MASK_DIRS as MASK_DIRS
from .naming import MASK_SUFFIX as MASK_SUFFIX
from .naming import MAT_SUFFIXES as MAT_SUFFIXES
from .naming import NIFTI_SUFFIXES as NIFTI_SUFFIXES
from .naming import PREDICTION_SUFFIX as PREDICTION_SUFFIX
from .naming import RASTER_SUFFIXES as RASTER_SUFFIXES
from .naming import SUPPORTED_SUFFIXES as SUPPORTED_SUFFIXES
from .naming import stem as stem
from .naming import suffix_of as suffix_of

log = logging.getLogger(__name__)

#: Largest number of voxels read at once (4 GiB as float32): beyond that, ask the user to crop.
MAX_VOXELS = 2**30
#: Most memory one read may need at its peak (the file's array, its float32 copy, the display
#: copy): a header is checked against it before anything is allocated. The memory free on the
#: machine, when lower, is the limit instead.
MAX_READ_BYTES = 8 * 2**30
#: Memory ``segment`` needs per voxel at its peak (normalised copies, the model's input and
#: probabilities, the mask and its clean-up), measured on 2D and 3D inputs (issue 15).
SEGMENT_BYTES_PER_VOXEL = 34
#: Smallest side length of an image we accept: U-Net training and skull stripping need some room.
MIN_SIDE = 8
#: Display orientation of volumes, as nibabel axis codes of the (x, y, z) array before it is
#: transposed to (Z, Y, X): columns run to the patient's Left (radiological convention), rows to
#: Posterior (anterior at the top of an axial slice), slices to Inferior (so coronal and sagittal
#: views, made by rolling napari's axes, show the head upright).
DISPLAY_AXCODES = ("L", "P", "I")

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

    @property
    def has_geometry(self) -> bool:
        """True when ``spacing`` came from the file (NIfTI, DICOM).

        False for a placeholder 1 mm (PNG, JPEG, TIFF, figshare .mat).
        """
        return self.affine is not None or bool(self.metadata.get("pixel_spacing"))


# --------------------------------------------------------------------------- helpers


#: Integer types a label file may be written as, smallest first.
LABEL_DTYPES = (np.uint8, np.uint16, np.int16, np.int32, np.uint32)


def label_dtype(labels: np.ndarray, allowed: Sequence[type], where: str) -> type:
    """The smallest of ``allowed`` integer types that holds every value of ``labels`` exactly.

    Casting blindly wraps values (70000 -> 4464 in 16 bits, -3 -> 65533): a written mask must
    read back as the same labels, or not be written at all.

    Raises
    ------
    ValueError
        Non-integer values, or values no allowed type holds; the message says what to do.
    """
    labels = np.asarray(labels)
    if labels.size == 0:
        return allowed[0]
    if labels.dtype.kind == "b":
        return allowed[0]
    if labels.dtype.kind == "f" and not (np.isfinite(labels).all()
                                         and np.array_equal(labels, np.round(labels))):
        raise ValueError(f"{where}: labels must be whole numbers; round or threshold them first")
    if labels.dtype.kind not in "biuf":
        raise ValueError(f"{where}: labels must be integers, got dtype {labels.dtype}")
    lo, hi = int(labels.min()), int(labels.max())
    for dt in allowed:
        info = np.iinfo(dt)
        if info.min <= lo and hi <= info.max:
            return dt
    kinds = ", ".join(np.dtype(d).name for d in allowed)
    raise ValueError(f"{where}: label values {lo}..{hi} do not fit this format ({kinds}); "
                     "save as .nii.gz or .tif, or renumber the labels")


def is_supported_file(path: Path) -> bool:
    """Whether ``path`` has a suffix one of the readers handles."""
    return suffix_of(Path(path)) != ""


def list_files(folder: Path, recursive: bool = True) -> list[Path]:
    """The files in ``folder`` (and its sub-folders when ``recursive``), in a stable order.

    Symlinked folders are not followed (no loops). A sub-folder that cannot be listed is skipped
    with a logged warning; ``folder`` itself raises.

    Raises
    ------
    ReadError
        ``folder`` cannot be listed (no permission, not a folder, ...).
    """
    folder = Path(folder)
    out: list[Path] = []
    stack = [folder]
    while stack:
        d = stack.pop()
        try:
            with os.scandir(d) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            if d == folder:
                what = ("no permission to read this folder; ask its owner for access"
                        if isinstance(exc, PermissionError) else
                        f"cannot list this folder ({exc.strerror or exc})")
                raise ReadError(f"{folder.name or folder}: {what}.") from exc
            log.warning("%s: cannot list this folder (%s); its files are left out", d,
                        exc.strerror or exc)
            continue
        subdirs = []
        for e in entries:
            try:
                if e.is_dir(follow_symlinks=False):
                    subdirs.append(Path(e.path))
                elif e.is_file():
                    out.append(Path(e.path))
            except OSError:
                continue
        if recursive:
            stack.extend(reversed(subdirs))
    return out


def natural_key(path: Path) -> list[Any]:
    """Sort key of a file name with its numbers compared as numbers (``slice2`` < ``slice10``)."""
    # Users number slices without zero padding.
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", path.name)]


def available_memory() -> int | None:
    """Bytes of memory the system can still give this process (Linux MemAvailable), or None."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def read_bytes_per_voxel(itemsize: int) -> int:
    """Peak bytes per voxel of reading an array stored with ``itemsize`` bytes per voxel.

    The decoded array and its reoriented copy in the file's type, the float32 image and the
    finite-value mask: ``2 * itemsize + 4 + 4 + 1``.
    """
    return 2 * int(itemsize) + 9


def memory_cap(limit: int | None = None) -> tuple[int, str]:
    """The most memory one read or segmentation may use, and why: ``(bytes, reason)``.

    ``limit`` (default :data:`MAX_READ_BYTES`, "allowed for one image") or the memory free now
    ("free on this machine"), whichever is lower.
    """
    cap = MAX_READ_BYTES if limit is None else int(limit)
    free = available_memory()
    if free is not None and free < cap:
        return int(free), "free on this machine"
    return cap, "allowed for one image"


def check_memory(n_voxels: int, bytes_per_voxel: float, path: Path, what: str = "reading",
                 limit: int | None = None) -> None:
    """Refuse early when ``n_voxels * bytes_per_voxel`` exceeds what this machine can give.

    The limit is ``limit`` (default :data:`MAX_READ_BYTES`) or the memory free now, whichever is
    lower.

    Raises
    ------
    ReadError
        With the estimate, the limit and what to do.
    """
    need = float(n_voxels) * float(bytes_per_voxel)
    cap, where = memory_cap(limit)
    if need > cap:
        raise ReadError(
            f"{path.name}: {what} this image ({n_voxels:,} voxels) needs about "
            f"{memory_text(need)} of memory, more than the {memory_text(cap)} {where}. "
            "Crop or downsample it first, or use a machine with more memory."
        )


#: What the scan being read is for, and its peak bytes per voxel: set by :func:`reading_for`.
_PURPOSE: ContextVar[tuple[str, float] | None] = ContextVar("brainseg_read_purpose",
                                                            default=None)


@contextmanager
def reading_for(what: str, bytes_per_voxel: float) -> Iterator[None]:
    """Within this block, every reader also checks the job the scan is read for.

    ``with reading_for("segmenting", SEGMENT_BYTES_PER_VOXEL): vols = read(path)`` makes each
    reader's header check (:func:`check_size`, before any pixel is read) also refuse a scan
    whose ``what`` would need more memory than is free, so a scan too large to segment is
    refused without being read first. The setting is local to the thread (a widget's worker
    sets its own).
    """
    token = _PURPOSE.set((what, float(bytes_per_voxel)))
    try:
        yield
    finally:
        _PURPOSE.reset(token)


def memory_text(n: float) -> str:
    """A byte count for a message: ``1.5 GiB``, or ``300 MiB`` below 1 GiB."""
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"


def check_size(shape: Sequence[int], path: Path, itemsize: int = 1,
               bytes_per_voxel: int | None = None) -> None:
    """Refuse a shape too large or too small before anything is read.

    Too large: more than :data:`MAX_VOXELS`, or a peak memory of reading ``itemsize``-byte
    voxels (or ``bytes_per_voxel`` when given) beyond what :func:`check_memory` allows, or
    (inside :func:`reading_for`) of the job the scan is read for beyond the memory free.
    """
    if any(int(s) < 1 for s in shape):
        raise ReadError(
            f"{path.name}: the header gives the image the shape {tuple(int(s) for s in shape)}, "
            "with a side of 0 or less; the header is damaged. Export the file again."
        )
    n = int(np.prod(shape, dtype=np.int64))
    if n > MAX_VOXELS:
        raise ReadError(
            f"{path.name}: image of shape {tuple(shape)} has {n:,} voxels, more than the "
            f"{MAX_VOXELS:,} this tool loads at once. Crop or downsample it first."
        )
    check_memory(n, bytes_per_voxel or read_bytes_per_voxel(itemsize), path)
    purpose = _PURPOSE.get()
    if purpose is not None:  # the job after the read: only the memory free limits it
        check_memory(n, purpose[1], path, what=purpose[0], limit=2**62)
    spatial = sorted(int(s) for s in shape if s > 1)
    if len(spatial) < 2 or spatial[-2] < MIN_SIDE:
        raise ReadError(
            f"{path.name}: image of shape {tuple(shape)} is too small; each side of a slice must "
            f"be at least {MIN_SIDE} pixels."
        )


def finite_image(data: np.ndarray, path: Path) -> tuple[np.ndarray, tuple[str, ...]]:
    """Return float32 data with NaN/Inf replaced by the minimum finite value, plus a warning.

    Complex values (raw MR data) become their magnitude, with a warning: casting would silently
    drop the imaginary part.
    """
    notes: tuple[str, ...] = ()
    if np.iscomplexobj(data):
        data = np.abs(data)
        notes = (f"{path.name}: complex values; showing their magnitude |re + i im| "
                 "(the phase is not used).",)
    elif np.asarray(data).dtype.kind not in "biuf":
        raise ReadError(f"{path.name}: pixel values of type {np.asarray(data).dtype} are not "
                        "numbers this tool reads. Export the image as grey values.")
    data = np.asarray(data, dtype=np.float32)
    finite = np.isfinite(data)
    if finite.all():
        return data, notes
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
    return data, (*notes, msg)


def labels_from(data: np.ndarray, path: Path) -> np.ndarray:
    """Turn a mask array into uint8 labels (0 background); reject non-integer soft masks."""
    data = np.asarray(data)
    if data.ndim == 3 and data.shape[-1] in (3, 4):  # a colour-saved mask: any channel set
        data = data[..., :3].max(axis=-1)
    if data.dtype.kind not in "biuf":
        raise ReadError(f"{path.name}: mask values of type {data.dtype} are not labels. Save "
                        "masks as integer images with 0 = background.")
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


def checked_values(arr: np.ndarray, path: Path, kind: Literal["image", "labels"],
                   warnings: list[str]) -> np.ndarray:
    """Labels as uint8, images as finite float32 (appending any warning)."""
    if kind == "labels":
        labels = labels_from(arr, path)
        if labels.max(initial=0) > 1:
            found = np.unique(labels[labels > 0])
            warnings.append(f"{path.name}: mask has labels {found[:6].tolist()}; training and "
                            "metrics count every non-zero label as tumour.")
        return labels
    data, extra = finite_image(arr, path)
    warnings.extend(extra)
    return data


def os_error_message(exc: OSError, path: Path) -> str:
    """One line for an OS error met while reading ``path``: permission is not damage."""
    if isinstance(exc, PermissionError):
        return (f"{path.name}: no permission to read it. Ask its owner for read access, or copy "
                "it somewhere you can read.")
    if exc.errno == errno.ENAMETOOLONG:
        return f"{path.name[:40]}...: the file name is too long for this system. Rename it."
    reason = exc.strerror or str(exc)
    return f"{path.name}: cannot read it ({reason}). Check the disk, or copy the file again."


def atomic_write(path: Path, write: Any) -> Path:
    """Call ``write(tmp_path)`` then move the file onto ``path`` in one step.

    The temporary file sits in the same folder with the same suffix (writers choose the format
    from it), so a crash or a full disk never leaves a half-written ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = suffix_of(path) or path.suffix
    # The temporary name is bounded: a long (but valid) target name must not fail on it.
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name[:80]}.", suffix=f".tmp{suffix}",
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


def to_display(arr_xyz: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict]:
    """Reorient an (x, y, z) array with RAS affine to the (Z, Y, X) display layout.

    Returns the display array, its affine (display indices -> RAS mm) and what is needed to undo
    the transform (:func:`from_display`).
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


def from_display(display: np.ndarray, native: Mapping[str, Any]) -> np.ndarray:
    """Undo :func:`to_display`: a (Z, Y, X) display array back on the native (x, y, z) grid."""
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


def spacing_from_affine(affine: np.ndarray, ndim: int) -> tuple[float, ...]:
    """Voxel sizes (mm) of the first ``ndim`` axes of an index-to-world affine (1 where 0)."""
    zooms = np.sqrt((np.asarray(affine)[:3, :ndim] ** 2).sum(axis=0))
    return tuple(float(z) if z > 0 else 1.0 for z in zooms)



# --------------------------------------------------------------------------- colour


def to_grey(rgb: np.ndarray) -> np.ndarray:
    """Convert ``(..., 3|4)`` colour to grey with ITU-R BT.601 luminance weights (alpha dropped)."""
    # One channel at a time: a float32 copy of all channels would cost 12-16 bytes per pixel.
    out = np.multiply(rgb[..., 0], 0.299, dtype=np.float32)
    out += np.multiply(rgb[..., 1], 0.587, dtype=np.float32)
    out += np.multiply(rgb[..., 2], 0.114, dtype=np.float32)
    return out

