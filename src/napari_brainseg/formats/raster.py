"""PNG / JPEG / BMP / TIFF images."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

import numpy as np

from napari_brainseg.naming import layer_name
from napari_brainseg.volume import (
    LABEL_DTYPES,
    ReadError,
    Volume,
    atomic_write,
    check_size,
    checked_values,
    label_dtype,
    os_error_message,
    read_bytes_per_voxel,
    stem,
    suffix_of,
    to_grey,
)


@contextmanager
def _pillow_size_limit_off() -> Iterator[None]:
    """Let Pillow decode what ``check_size`` already allowed.

    Pillow warns above ~89 M pixels and refuses above ~179 M (its decompression-bomb guard);
    our own limit (``MAX_VOXELS``, checked from the header first) replaces it, so a 10000 x 10000
    scan reads without a warning and a header claiming more than our limit is still refused.
    """
    from PIL import Image

    old = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None
    try:
        yield
    finally:
        Image.MAX_IMAGE_PIXELS = old


def colour_read_bytes(itemsize: int, samples: int) -> int:
    """Peak bytes per pixel of reading ``samples`` values of ``itemsize`` bytes each to grey.

    The decoded samples and one copy (Pillow's buffer and its array, or a reordered TIFF), the
    grey float32 sum and its temporary (:func:`~napari_brainseg.volume.to_grey`) and the
    finite-value mask. Measured for a 6000 x 6000 RGB TIFF: 11 bytes per pixel (this gives 15).
    """
    if samples == 1:
        return read_bytes_per_voxel(itemsize)
    return 2 * itemsize * samples + 8 + 1


def _read_pillow(path: Path) -> np.ndarray:
    """Decode a PNG/JPEG/BMP to a grey, grey 16-bit, RGB or RGBA array.

    Pillow directly, in one open: imageio's wrapper cost 2.5x more per file in a batch run.
    """
    from PIL import Image, ImageOps

    with _pillow_size_limit_off(), Image.open(path) as im:
        depth = 2 if "16" in im.mode else 4 if im.mode in ("I", "F") else 1
        check_size((im.height, im.width), path,
                   bytes_per_voxel=colour_read_bytes(depth, len(im.getbands())))
        # A camera or phone JPEG stored sideways with an EXIF orientation tag: show it upright,
        # as every viewer does (a mask drawn on it then lines up).
        im = ImageOps.exif_transpose(im) or im
        if im.mode == "P":
            im = im.convert("RGBA" if "transparency" in im.info else "RGB")
        elif im.mode == "LA":
            im = im.getchannel("L")
        elif im.mode in ("1", "CMYK", "YCbCr", "LAB", "HSV"):
            im = im.convert("L" if im.mode == "1" else "RGB")
        return np.array(im)


def _read_tiff(path: Path, warnings: list[str]) -> tuple[np.ndarray, bool]:
    """The first image of a TIFF, with samples (colour, alpha) on the last axis.

    Other images in the file are named in a warning, never dropped silently.
    """
    import tifffile

    with tifffile.TiffFile(str(path)) as tif:
        all_series = tif.series
        series = all_series[0]
        axes = series.axes
        shape, samples = list(series.shape), 1
        if "S" in axes:  # colour samples of one pixel, not voxels (a segmentation costs per pixel)
            samples = shape.pop(axes.index("S"))
        check_size(shape, path,
                   bytes_per_voxel=colour_read_bytes(series.dtype.itemsize, samples))
        arr = series.asarray()
        if len(all_series) > 1:
            others = ", ".join(str(tuple(s.shape)) for s in all_series[1:4])
            more = ", ..." if len(all_series) > 4 else ""
            warnings.append(f"{path.name}: the file holds {len(all_series)} images; showing the "
                            f"first, of shape {tuple(series.shape)} (not read: {others}{more}). "
                            "Save each image as its own file to open the others.")
    colour = "S" in axes
    if colour and axes.index("S") != len(axes) - 1:
        # Planar ("separate") RGB stores each colour as a plane: its samples, not 3 slices.
        arr = np.moveaxis(arr, axes.index("S"), -1)
    return arr, colour


def read_raster(path: Path, kind: Literal["image", "labels"] = "image") -> Volume:
    """Read a PNG / JPEG / BMP / TIFF image (multi-page TIFF -> volume).

    Colour images are converted to grey by luminance, with a warning that says so.
    """
    path = Path(path)
    warnings: list[str] = []
    try:
        if suffix_of(path) in (".tif", ".tiff"):
            arr, colour = _read_tiff(path, warnings)
        else:
            arr = _read_pillow(path)
            colour = arr.ndim == 3 and arr.shape[-1] in (2, 3, 4)
    except ReadError:
        raise
    except PermissionError as exc:
        raise ReadError(os_error_message(exc, path)) from exc
    except Exception as exc:
        raise ReadError(
            f"{path.name}: not a readable {suffix_of(path)[1:].upper()} image (the file is "
            "damaged, truncated or of another type). Export it again from its source."
        ) from exc
    if colour:
        channels = arr.shape[-1]
        if channels == 2:  # grey + alpha
            arr = arr[..., 0]
            if kind == "image":
                warnings.append(f"{path.name}: grey image with an alpha channel; alpha dropped.")
        elif channels in (3, 4):
            if kind == "image":
                extra = " (alpha channel dropped)" if channels == 4 else ""
                warnings.append(f"{path.name}: colour image converted to grey by luminance{extra}.")
                arr = to_grey(arr)
        else:
            raise ReadError(f"{path.name}: {channels} samples per pixel; only grey, grey+alpha, "
                            "RGB and RGBA images are read. Export it as a grey image.")
    if arr.ndim not in (2, 3) or (kind == "image" and arr.ndim == 3 and colour):
        raise ReadError(f"{path.name}: unsupported image shape {arr.shape}.")
    data = checked_values(arr, path, kind, warnings)
    return Volume(
        data=data, spacing=(1.0,) * data.ndim, kind=kind,
        name=stem(path) if kind == "image" else layer_name(path),
        source=path, metadata={"format": suffix_of(path)[1:]}, warnings=tuple(warnings),
    )


def write_raster(path: Path, labels: np.ndarray) -> Path:
    """Write 2D labels as PNG/TIFF, or a 3D label stack as multi-page TIFF, atomically."""
    path = Path(path)
    labels = np.asarray(labels)
    suffix = suffix_of(path)
    # PNG holds 8 or 16 unsigned bits, BMP 8; TIFF any of the label types.
    allowed = {".png": (np.uint8, np.uint16), ".bmp": (np.uint8,)}.get(suffix, LABEL_DTYPES)
    dtype = label_dtype(labels, allowed, path.name)
    if suffix in (".tif", ".tiff"):
        import tifffile

        return atomic_write(path, lambda tmp: tifffile.imwrite(
            str(tmp), labels.astype(dtype), photometric="minisblack"))
    if labels.ndim != 2:
        raise ValueError(
            f"{path.name}: a {labels.ndim}D label stack cannot be saved as {suffix}; "
            "save it as .tif or .nii.gz."
        )
    from PIL import Image

    # Label masks are mostly zeros: zlib level 1 is 1.3x faster than the default and the files
    # stay a few hundred bytes.
    image = Image.fromarray(np.ascontiguousarray(labels.astype(dtype)))
    fmt = {".png": "PNG", ".bmp": "BMP", ".jpg": "JPEG", ".jpeg": "JPEG"}.get(suffix, "PNG")
    options = {"compress_level": 1} if fmt == "PNG" else {}
    return atomic_write(path, lambda tmp: image.save(tmp, format=fmt, **options))


