"""The bad-input corpus: every case a user could feed the CLI, built on the fly in a temp folder.

Each ``Case`` makes its input (no binaries are committed), names the ``brainseg`` command that
meets it, the exit code and a regular expression for the one line the user sees. The tests in
this folder run every case; ``test_table_is_current`` also renders them as docs/bad-inputs.md
(the README links it), so the table always says what the tests saw.
"""

from __future__ import annotations

import csv
import errno
import gzip
import os
import pickle
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import imageio.v3 as iio
import nibabel as nib
import numpy as np
import tifffile

RNG_BYTES = np.random.default_rng(8).integers(0, 256, 600, np.uint8).tobytes()


@dataclass
class Ctx:
    """Where a case builds its files, plus what some cases need (a model, monkeypatch)."""

    d: Path
    model: Path
    monkeypatch: Any

    def out(self) -> Path:
        """An output folder that already holds one of the user's files."""
        out = self.d / "out"
        out.mkdir(exist_ok=True)
        (out / "keep.txt").write_text("user file")
        return out


@dataclass
class Case:
    name: str
    what: str
    command: str
    make: Callable[[Ctx], list[str]]  # builds the input, returns the arguments after the command
    code: int
    expect: str  # regex the user-visible line must match
    check: Callable[[Ctx], None] | None = None


def _nifti(path: Path, data: np.ndarray) -> Path:
    nib.save(nib.Nifti1Image(data, np.eye(4)), str(path))
    return path


def _noise(shape, dtype=np.uint8, seed=0) -> np.ndarray:
    hi = 65535 if dtype == np.uint16 else 255
    return np.random.default_rng(seed).integers(0, hi, shape).astype(dtype)


def _png(path: Path, data: np.ndarray | None = None) -> Path:
    iio.imwrite(path, _noise((48, 48)) if data is None else data)
    return path


def _info(builder: Callable[[Path], Path]) -> Callable[[Ctx], list[str]]:
    return lambda c: [str(builder(c.d))]


def _segment(builder: Callable[[Path], Path], *extra: str) -> Callable[[Ctx], list[str]]:
    return lambda c: [str(builder(c.d)), str(c.out()), "--model", str(c.model), "-q", *extra]


def _skull(builder: Callable[[Path], Path]) -> Callable[[Ctx], list[str]]:
    return lambda c: [str(builder(c.d)), str(c.out() / "mask.nii.gz"), "-q"]


def _kept(c: Ctx) -> None:
    assert (c.d / "out" / "keep.txt").read_text() == "user file"
    assert not (c.d / "out" / "mask.nii.gz").exists()


# --------------------------------------------------------------------------- builders


def zero_nifti(d):
    (d / "zero.nii.gz").write_bytes(b"")
    return d / "zero.nii.gz"


def truncated_nifti(d):
    raw = _nifti(d / "full.nii.gz", np.ones((30, 30, 30), np.float32)).read_bytes()
    (d / "full.nii.gz").unlink()
    (d / "truncated.nii.gz").write_bytes(raw[: len(raw) // 3])
    return d / "truncated.nii.gz"


def text_nifti(d):
    (d / "text.nii").write_text("hello\n" * 100)
    return d / "text.nii"


def gzip_garbage(d):
    with gzip.open(d / "garbage.nii.gz", "wb") as f:
        f.write(RNG_BYTES)
    return d / "garbage.nii.gz"


def all_nan(d):
    return _nifti(d / "allnan.nii.gz", np.full((10, 10, 10), np.nan, np.float32))


def some_inf(d):
    data = np.ones((12, 12, 12), np.float32)
    data[::3, ::3, ::3] = np.inf
    data[1, 1, 1] = np.nan
    return _nifti(d / "inf.nii.gz", data)


def five_d(d):
    return _nifti(d / "five-d.nii.gz", np.zeros((10, 10, 10, 2, 2), np.float32))


def two_d_nifti(d):
    return _nifti(d / "slice.nii.gz", _noise((30, 40)).astype(np.float32))


def four_d_tiny(d):
    return _nifti(d / "four-d.nii.gz", np.zeros((4, 4, 4, 3), np.float32))


def tiny_nifti(d):
    return _nifti(d / "tiny.nii.gz", np.zeros((2, 2, 2), np.float32))


def one_pixel(d):
    return _png(d / "one-pixel.png", np.zeros((1, 1), np.uint8))


def huge_png(d):
    return _png(d / "huge.png", np.zeros((10000, 10000), np.uint8))


def bomb_png(d):
    """A PNG whose header claims 60000 x 60000 RGBA pixels (a decompression bomb)."""
    def chunk(t, data):
        return struct.pack(">I", len(data)) + t + data + struct.pack(">I", zlib.crc32(t + data))

    ihdr = struct.pack(">IIBBBBB", 60000, 60000, 8, 6, 0, 0, 0)
    p = d / "bomb.png"
    p.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", b"")
                  + chunk(b"IEND", b""))
    return p


def not_png(d):
    (d / "not-a-png.png").write_bytes(b"\x89PNG\r\n\x1a\nthis is not a png")
    return d / "not-a-png.png"


def text_jpg(d):
    (d / "text.jpg").write_text("plain text")
    return d / "text.jpg"


def png16(d):
    return _png(d / "sixteen.png", _noise((48, 48), np.uint16))


def rgba_png(d):
    return _png(d / "rgba.png", _noise((48, 48, 4)))


def palette_png(d):
    from PIL import Image

    Image.fromarray(_noise((48, 48, 3))).convert("P").save(d / "palette.png")
    return d / "palette.png"


def constant_png(d):
    return _png(d / "constant.png", np.full((64, 64), 7, np.uint8))


def empty_tif(d):
    (d / "empty.tif").write_bytes(b"")
    return d / "empty.tif"


def bad_tif(d):
    (d / "bad.tif").write_bytes(b"II*\x00" + struct.pack("<I", 99999) + b"\x00" * 20)
    return d / "bad.tif"


def multipage_tif(d):
    tifffile.imwrite(d / "stack.tif", _noise((5, 32, 32)))
    return d / "stack.tif"


def multipage_mask(d):
    _png(d / "scan.png", _noise((32, 32)))
    tifffile.imwrite(d / "scan_mask.tif", np.zeros((3, 32, 32), np.uint8), photometric="minisblack")
    return d / "scan.png"


def mask_wrong_shape(d):
    _png(d / "a.png", _noise((32, 32)))
    _png(d / "a_mask.png", np.zeros((16, 16), np.uint8))
    return d / "a.png"


def mask_soft(d):
    _png(d / "soft.png", _noise((32, 32)))
    tifffile.imwrite(d / "soft_mask.tif", np.full((32, 32), 0.5, np.float32))
    return d / "soft.png"


def mask_multilabel(d):
    _png(d / "multi.png", _noise((32, 32)))
    _png(d / "multi_mask.png", (np.arange(32 * 32).reshape(32, 32) % 3).astype(np.uint8))
    return d / "multi.png"


def mask_255(d):
    _png(d / "white.png", _noise((32, 32)))
    _png(d / "white_mask.png", (np.arange(32 * 32).reshape(32, 32) % 2 * 255).astype(np.uint8))
    return d / "white.png"


def _mat5(d, name, cjdata):
    import scipy.io

    scipy.io.savemat(d / name, cjdata)
    return d / name


def mat5_no_cjdata(d):
    return _mat5(d, "no-cjdata.mat", {"other": np.zeros((4, 4))})


def mat5_string_image(d):
    return _mat5(d, "string-image.mat",
                 {"cjdata": {"image": "not pixels", "tumorMask": np.zeros((4, 4))}})


def mat5_string_mask(d):
    return _mat5(d, "string-mask.mat", {"cjdata": {"image": _noise((20, 20)) * 1.0,
                                                   "tumorMask": "yes"}})


def mat5_text_label(d):
    return _mat5(d, "text-label.mat", {"cjdata": {"image": _noise((20, 20)) * 1.0,
                                                  "label": "glioma",
                                                  "tumorMask": np.zeros((20, 20))}})


def mat73_no_image(d):
    import h5py

    with h5py.File(d / "no-image.mat", "w") as f:
        f.create_group("cjdata")["label"] = np.array([[1.0]])
    return d / "no-image.mat"


def _mat73(d, name, field, value):
    import h5py

    from napari_brainseg.io import write_mat

    write_mat(d / name, _noise((20, 20)) * 1.0, np.zeros((20, 20)))
    with h5py.File(d / name, "a") as f:
        del f[f"cjdata/{field}"]
        f[f"cjdata/{field}"] = value
    return d / name


def mat73_mask_shape(d):
    return _mat73(d, "mask-shape.mat", "tumorMask", np.zeros((10, 10), np.uint8))


def mat73_3d_image(d):
    return _mat73(d, "three-d.mat", "image", np.zeros((3, 20, 20)))


def garbage_mat(d):
    (d / "garbage.mat").write_bytes(RNG_BYTES[:300])
    return d / "garbage.mat"


def empty_folder(d):
    (d / "empty-folder").mkdir()
    return d / "empty-folder"


def text_folder(d):
    (d / "notes").mkdir()
    (d / "notes" / "notes.txt").write_text("x")
    return d / "notes"


def _series(d, name, **kw):
    from conftest import make_dicom_series

    return make_dicom_series(d / name, **kw)


def dicom_no_pixels(d):
    from pydicom import dcmread

    p = _series(d, "no-pixels", n=1)[0]
    ds = dcmread(p)
    del ds.PixelData
    ds.save_as(p)
    return d / "no-pixels"


def dicom_garbage(d):
    (d / "garbage.dcm").write_bytes(b"\x00" * 128 + b"DICM" + RNG_BYTES[:64])
    return d / "garbage.dcm"


def dicom_gap(d):
    _series(d, "gap", n=6, skip=(2,))
    return d / "gap"


def dicom_mixed_sizes(d):
    from pydicom import dcmread

    p = _series(d, "sizes", n=4)[0]
    ds = dcmread(p)
    ds.Rows = ds.Columns = 32
    ds.PixelData = np.zeros((32, 32), np.int16).tobytes()
    ds.save_as(p)
    return d / "sizes"


def dicom_two_series(d):
    out = d / "two-series"
    out.mkdir()
    for i, uid in enumerate(("1.2.3.1", "1.2.3.2")):
        for p in _series(d, f"series{i}", n=3 + i, uid=uid):
            p.rename(out / f"s{i}_{p.name}")
    return out


def unsupported(d):
    (d / "scan.xyz").write_text("x")
    return d / "scan.xyz"


def missing(d):
    return d / "missing.nii.gz"


def unicode_name(d):
    return _png(d / "scan ü 脑 (1).png")


def good_symlink(d):
    os.symlink(_png(d / "real.png"), d / "link.png")
    return d / "link.png"


def dangling_symlink(d):
    os.symlink(d / "gone.png", d / "dangling.png")
    return d / "dangling.png"


def symlink_loop(d):
    os.symlink(d / "loop.nii.gz", d / "loop.nii.gz")
    return d / "loop.nii.gz"


# --------------------------------------------------------------------------- checkpoints


def _payload(model: Path) -> dict:
    import torch

    return torch.load(model, weights_only=True)


class _Evil:
    def __reduce__(self):
        return (exec, ("open('PWNED', 'w').write('x')",))


def ckpt_pickle(c: Ctx) -> Path:
    p = c.d / "evil.pt"
    with open(p, "wb") as f:
        pickle.dump({"format": "napari-brainseg-unet", "x": _Evil()}, f)
    c.monkeypatch.chdir(c.d)
    return p


def ckpt_truncated(c: Ctx) -> Path:
    raw = c.model.read_bytes()
    (c.d / "half.pt").write_bytes(raw[: len(raw) // 2])
    return c.d / "half.pt"


def ckpt_other_arch(c: Ctx) -> Path:
    import torch

    payload = _payload(c.model)
    payload["config"] = {**payload["config"], "base_filters": 16}
    torch.save(payload, c.d / "other.pt")
    return c.d / "other.pt"


def ckpt_future(c: Ctx) -> Path:
    import torch

    payload = _payload(c.model)
    payload["schema"] = 99
    torch.save(payload, c.d / "future.pt")
    return c.d / "future.pt"


def ckpt_bare_state_dict(c: Ctx) -> Path:
    import torch

    torch.save(_payload(c.model)["state_dict"], c.d / "weights.pt")
    return c.d / "weights.pt"


def ckpt_text(c: Ctx) -> Path:
    (c.d / "notes.pt").write_text("not a model")
    return c.d / "notes.pt"


def _with_model(builder: Callable[[Ctx], Path]) -> Callable[[Ctx], list[str]]:
    def make(c: Ctx) -> list[str]:
        return [str(_png(c.d / "scan.png")), str(c.out()), "--model", str(builder(c)), "-q"]
    return make


def _no_pwned(c: Ctx) -> None:
    assert not (c.d / "PWNED").exists()
    assert (c.d / "out" / "keep.txt").read_text() == "user file"


# --------------------------------------------------------------------------- faults


def _fail_writes(c: Ctx, err: int, text: str) -> None:
    def fail(path, write):
        raise OSError(err, text, str(path))

    c.monkeypatch.setattr("napari_brainseg.io.atomic_write", fail)
    c.monkeypatch.setattr("napari_brainseg.formats.raster.atomic_write", fail)
    c.monkeypatch.setattr("napari_brainseg.formats.nifti.atomic_write", fail)


def _old_result(c: Ctx) -> Path:
    out = c.out()
    (out / "scan_tumour.png").write_bytes(b"old result")
    return out


def full_disk(c: Ctx) -> list[str]:
    out = _old_result(c)
    _fail_writes(c, errno.ENOSPC, "No space left on device")
    return [str(_png(c.d / "scan.png")), str(out), "--model", str(c.model), "-q", "--overwrite"]


def read_only(c: Ctx) -> list[str]:
    # Simulated: tests may run as root, for whom chmod does not stop writes.
    out = _old_result(c)
    _fail_writes(c, errno.EACCES, "Permission denied")
    return [str(_png(c.d / "scan.png")), str(out), "--model", str(c.model), "-q", "--overwrite"]


def existing_output(c: Ctx) -> list[str]:
    out = _old_result(c)
    return [str(_png(c.d / "scan.png")), str(out), "--model", str(c.model), "-q"]


def _old_result_kept(c: Ctx) -> None:
    assert (c.d / "out" / "scan_tumour.png").read_bytes() == b"old result"
    assert (c.d / "out" / "keep.txt").read_text() == "user file"


def _unicode_written(c: Ctx) -> None:
    assert (c.d / "out" / "scan ü 脑 (1)_tumour.png").exists()


def _train_args(folder: Callable[[Path], Path], *extra: str) -> Callable[[Ctx], list[str]]:
    return lambda c: [str(folder(c.d)), "--out", str(c.d / "model.pt"), "-q", *extra]


def _pairs(d: Path, n: int = 3, size: int = 64) -> Path:
    from napari_brainseg.synthetic import write_sample_folder

    write_sample_folder(d / "pairs", n=n, seed=0, shape=(size, size), skull=False)
    return d / "pairs"


def _pairs_bad_mask(d: Path) -> Path:
    folder = _pairs(d)
    first = sorted((folder / "masks").iterdir())[0]
    first.unlink()
    _png(first, np.zeros((10, 10), np.uint8))
    return folder


def _no_model(c: Ctx) -> None:
    assert not (c.d / "model.pt").exists()


def _existing_model(c: Ctx) -> Ctx:
    (c.d / "model.pt").write_bytes(b"the user's model")
    return c


def _model_kept(c: Ctx) -> None:
    assert (c.d / "model.pt").read_bytes() == b"the user's model"


def _masked_onto_input(c: Ctx) -> list[str]:
    from napari_brainseg.synthetic import make_phantom

    img = c.d / "head_stripped.tif"
    tifffile.imwrite(img, make_phantom((96, 96), "none", seed=0, skull=True).image)
    (c.d / "original.bytes").write_bytes(img.read_bytes())
    return [str(img), str(c.d / "head_mask.tif"), "--masked", "--overwrite", "-q"]


def _input_kept(c: Ctx) -> None:
    assert (c.d / "head_stripped.tif").read_bytes() == (c.d / "original.bytes").read_bytes()
    assert not (c.d / "head_mask.tif").exists()


def _no_model_no_pwned(c: Ctx) -> None:
    _no_model(c)
    assert not (c.d / "PWNED").exists()


def _same_stem_two_formats(c: Ctx) -> list[str]:
    from napari_brainseg.synthetic import make_phantom

    folder = c.d / "scans"
    folder.mkdir()
    for k, ext in enumerate(("png", "jpg")):
        img = make_phantom((64, 64), "glioma", seed=k, skull=False).image
        iio.imwrite(folder / f"scan.{ext}", np.clip(img / 4, 0, 255).astype(np.uint8))
    return [str(folder), str(c.out()), "--model", str(c.model), "--overlays", "-q"]


def _both_kept(c: Ctx) -> None:
    out = c.d / "out"
    assert (out / "scan_png_tumour.png").exists() and (out / "scan_jpg_tumour.png").exists()
    assert not (out / "scan_tumour.png").exists()
    assert (out / "overlays" / "scan_png_tumour.png").exists()
    assert (out / "overlays" / "scan_jpg_tumour.png").exists()


def _garbage_ground_truth(c: Ctx) -> list[str]:
    folder = _pairs(c.d)
    first = sorted((folder / "masks").iterdir())[0]
    first.write_bytes(b"not an image at all")
    return [str(folder), str(c.out()), "--model", str(c.model), "-q"]


def _all_segmented(c: Ctx) -> None:
    rows = list(csv.DictReader((c.d / "out" / "results.csv").open(encoding="utf-8")))
    assert [r["status"] for r in rows] == ["ok"] * 3
    assert "ground-truth mask not used" in rows[0]["error"]
    assert len(list((c.d / "out" / "images").glob("*_tumour.png"))) == 3


def _overlay_lost(c: Ctx) -> list[str]:
    from napari_brainseg.cli import main

    folder = _pairs(c.d, n=2)
    args = [str(folder), str(c.out()), "--model", str(c.model), "--overlays", "-q"]
    assert main(["segment", *args]) == 0
    overlays = sorted((c.d / "out" / "overlays").rglob("*.png"))
    assert len(overlays) == 2
    overlays[0].unlink()  # the run stopped between the mask and its overlay
    (c.d / "lost.txt").write_text(str(overlays[0]))
    return args


def _overlay_completed(c: Ctx) -> None:
    assert Path((c.d / "lost.txt").read_text()).exists()
    rows = list(csv.DictReader((c.d / "out" / "results.csv").open(encoding="utf-8")))
    assert [r["status"] for r in rows] == ["skipped"] * 2
    assert any("overlay was written" in r["error"] for r in rows)


def _no_path(p: Path) -> None:
    assert not p.exists()


def _no_study(c: Ctx) -> None:
    assert not (c.d / "study").exists()


# --------------------------------------------------------------------------- the corpus

INFO = [
    ("zero-byte NIfTI", zero_nifti, 1, "empty"),
    ("truncated NIfTI (a third of a .nii.gz)", truncated_nifti, 1, "truncated|corrupt"),
    ("text file named .nii", text_nifti, 1, "not a readable NIfTI"),
    ("gzip of random bytes named .nii.gz", gzip_garbage, 1, "not a readable NIfTI"),
    ("NIfTI of only NaN", all_nan, 1, "NaN"),
    ("NIfTI with some NaN/Inf", some_inf, 0, "NaN/infinite values replaced"),
    ("5D NIfTI", five_d, 1, "5D"),
    ("2D NIfTI", two_d_nifti, 0, r"shape=\(40, 30\)"),
    ("4D NIfTI of 4x4x4 volumes", four_d_tiny, 1, "too small"),
    ("2x2x2 NIfTI", tiny_nifti, 1, "too small"),
    ("1x1 PNG", one_pixel, 1, "too small"),
    ("10000x10000 PNG", huge_png, 0, r"shape=\(10000, 10000\)"),
    ("PNG header claiming 60000x60000", bomb_png, 1, "Crop or downsample"),
    ("PNG signature then text", not_png, 1, "not a readable PNG"),
    ("text file named .jpg", text_jpg, 1, "not a readable JPG"),
    ("16-bit PNG", png16, 0, r"range=\[\d+, 6\.5\d*e\+04\]"),
    ("RGBA PNG", rgba_png, 0, "alpha channel dropped"),
    ("palette PNG", palette_png, 0, "converted to grey"),
    ("constant image", constant_png, 0, "range=\\[7, 7\\]"),
    ("zero-byte TIFF", empty_tif, 1, "empty"),
    ("TIFF with a bad IFD offset", bad_tif, 1, "not a readable TIF"),
    ("multi-page TIFF", multipage_tif, 0, r"shape=\(5, 32, 32\)"),
    ("multi-page TIFF mask for a 2D image", multipage_mask, 1, "does not match"),
    ("mask of the wrong size", mask_wrong_shape, 1, "does not match"),
    ("mask with values 0.5", mask_soft, 1, "not labels"),
    ("mask with labels 0/1/2", mask_multilabel, 0, "count every non-zero label as tumour"),
    ("mask saved as 0/255", mask_255, 0, r"labels 'white ground truth'.*range=\[0, 1\]"),
    (".mat v5 without cjdata", mat5_no_cjdata, 1, "cjdata"),
    (".mat v5, image is a string", mat5_string_image, 1, "2D numeric"),
    (".mat v5, tumorMask is a string", mat5_string_mask, 1, "must be a numeric array"),
    (".mat v5, label is text", mat5_text_label, 0, "tumour type unknown"),
    (".mat v7.3 without image", mat73_no_image, 1, "no 'image'"),
    (".mat v7.3, mask of another size", mat73_mask_shape, 1, "does not match"),
    (".mat v7.3, 3D image", mat73_3d_image, 1, "2D numeric"),
    ("random bytes named .mat", garbage_mat, 1, "not a readable MATLAB|cannot read"),
    ("empty folder", empty_folder, 1, "empty"),
    ("folder of text files", text_folder, 1, "no supported images"),
    ("DICOM without pixel data", dicom_no_pixels, 1, "no DICOM image files|no pixel data"),
    ("random bytes after a DICM preamble", dicom_garbage, 1, "DICOM"),
    ("DICOM series with a missing slice", dicom_gap, 0, "gap.*missing slices"),
    ("DICOM series mixing slice sizes", dicom_mixed_sizes, 1, "mixes slice sizes"),
    ("folder with two DICOM series", dicom_two_series, 0, "series 2"),
    ("unknown extension", unsupported, 1, "unsupported"),
    ("path that does not exist", missing, 1, "no such"),
    ("file name with spaces and unicode", unicode_name, 0, "scan ü 脑 \\(1\\)"),
    ("symlink to an image", good_symlink, 0, "image 'link'"),
    ("dangling symlink", dangling_symlink, 1, "no such"),
    ("symlink loop", symlink_loop, 1, "no such|loop|Too many"),
]

CASES: list[Case] = [Case(name=b.__name__.replace("_", "-"), what=w, command="info",
                          make=_info(b), code=code, expect=e) for w, b, code, e in INFO]

CASES += [
    Case(f"skull-strip-{b.__name__.replace('_', '-')}", w, "skull-strip", _skull(b), 1, e,
         check=_kept)
    for w, b, e in [("truncated NIfTI", truncated_nifti, "truncated|corrupt"),
                    ("PNG signature then text", not_png, "not a readable PNG"),
                    ("NIfTI of only NaN", all_nan, "NaN"),
                    ("constant image", constant_png, "constant"),
                    (".mat v5 without cjdata", mat5_no_cjdata, "cjdata")]
]

CASES += [
    Case(f"segment-{b.__name__.replace('_', '-')}", w, "segment", _segment(b), 1, e,
         check=_kept)
    for w, b, e in [("truncated NIfTI", truncated_nifti, "truncated|corrupt"),
                    ("PNG signature then text", not_png, "not a readable PNG"),
                    ("5D NIfTI", five_d, "5D"),
                    ("random bytes named .mat", garbage_mat, "not a readable MATLAB|cannot read"),
                    ("zero-byte TIFF", empty_tif, "empty")]
]

CASES += [
    Case("segment-unicode-name", "image named with spaces and unicode", "segment",
         _segment(unicode_name), 0, "1 segmented, 0 skipped", check=_unicode_written),
    Case("segment-existing-output", "output exists, no --overwrite", "segment", existing_output,
         0, "0 segmented, 1 skipped", check=_old_result_kept),
    Case("segment-full-disk", "disk full while writing (simulated ENOSPC)", "segment", full_disk,
         1, "No space left on device", check=_old_result_kept),
    Case("segment-read-only-output", "output folder not writable (simulated EACCES)", "segment",
         read_only, 1, "Permission denied", check=_old_result_kept),
    Case("checkpoint-pickle", "checkpoint: a pickle that would run code", "segment",
         _with_model(ckpt_pickle), 2, "refused", check=_no_pwned),
    Case("checkpoint-truncated", "checkpoint: first half of a real one", "segment",
         _with_model(ckpt_truncated), 2, "not a readable checkpoint", check=_no_pwned),
    Case("checkpoint-other-architecture", "checkpoint: weights of another width", "segment",
         _with_model(ckpt_other_arch), 2, "do not fit", check=_no_pwned),
    Case("checkpoint-newer-schema", "checkpoint: from a newer napari-brainseg", "segment",
         _with_model(ckpt_future), 2, "upgrade", check=_no_pwned),
    Case("checkpoint-bare-state-dict", "checkpoint: a bare state_dict", "segment",
         _with_model(ckpt_bare_state_dict), 2, "state_dict|not a napari-brainseg",
         check=_no_pwned),
    Case("checkpoint-text", "checkpoint: a text file named .pt", "segment",
         _with_model(ckpt_text), 2, "not a readable checkpoint", check=_no_pwned),
    Case("checkpoint-missing", "checkpoint: path that does not exist", "segment",
         lambda c: [str(_png(c.d / "scan.png")), str(c.out()), "--model",
                    str(c.d / "nowhere.pt"), "-q"], 2, "no such checkpoint", check=_no_pwned),
    Case("train-missing-folder", "training folder that does not exist", "train",
         _train_args(lambda d: d / "nowhere"), 2, "not a folder", check=_no_model),
    Case("train-no-pairs", "training folder without masks", "train",
         _train_args(text_folder), 2, "no image/mask pairs", check=_no_model),
    Case("train-bad-mask", "training folder with one mask of the wrong size", "train",
         _train_args(_pairs_bad_mask, "--epochs", "1"), 0, "skipping.*does not match"),
    Case("train-init-pickle", "fine-tuning from a pickle that would run code", "train",
         lambda c: _train_args(_pairs, "--init", str(ckpt_pickle(c)))(c), 2, "refused",
         check=_no_model_no_pwned),
    Case("train-over-existing-model", "train --out naming a model that exists", "train",
         lambda c: _train_args(_pairs)(_existing_model(c)), 2, "exists.*--overwrite",
         check=_model_kept),
    Case("skull-strip-masked-onto-input", "skull-strip --masked whose stripped image would be "
         "the input (head_stripped.tif + head_mask.tif)", "skull-strip", _masked_onto_input, 1,
         "would replace the input", check=_input_kept),
    Case("study-too-few-patients", "study with 3 patients for 5 folds", "study",
         lambda c: [str(_pairs(c.d)), "--out", str(c.d / "study"), "-q"], 2, "cannot fill 5 folds",
         check=_no_study),
    Case("segment-same-name-two-formats", "scan.png and scan.jpg in one folder (both would be "
         "scan_tumour.png)", "segment", _same_stem_two_formats, 0, "2 segmented",
         check=_both_kept),
    Case("segment-garbage-ground-truth", "a paired ground-truth mask that is not an image",
         "segment", _garbage_ground_truth, 0, r"ground-truth mask not used \(.*\); no Dice",
         check=_all_segmented),
    Case("segment-stopped-before-overlay", "re-run after a run stopped between a mask and its "
         "overlay", "segment", _overlay_lost, 0, "2 skipped", check=_overlay_completed),
    Case("segment-mask-as-input", "a *_mask.png given as the scan", "segment",
         lambda c: [str(_png(c.d / "scan_mask.png", np.eye(48, dtype=np.uint8) * 255)),
                    str(c.out()), "--model", str(c.model), "-q"], 1,
         "scan_mask.png: this is a mask \\(labels\\), not a scan"),
    Case("segment-output-is-a-file", "OUTPUT is an existing file", "segment",
         lambda c: [str(_png(c.d / "scan.png")), str(_png(c.d / "existing.png")), "--model",
                    str(c.model), "-q"], 2, "existing.png: is a file; OUTPUT must be a folder"),
    Case("segment-output-looks-like-a-file", "segment IMG tumour.png (a file name as OUTPUT)",
         "segment", lambda c: [str(_png(c.d / "scan.png")), str(c.d / "tumour.png"), "--model",
                               str(c.model), "-q"], 2, "tumour.png: looks like a file name",
         check=lambda c: _no_path(c.d / "tumour.png")),
    Case("sample-data-bad-size", "--size 12x", "sample-data",
         lambda c: [str(c.d / "sd"), "--size", "12x"], 2, "--size must look like"),
]


def run_case(case: Case, ctx: Ctx, capsys: Any) -> tuple[int, str]:
    """Run ``case`` through ``brainseg``; return the exit code and the line the user sees."""
    from napari_brainseg.cli import main

    args = case.make(ctx)
    capsys.readouterr()
    code = main([case.command, *args])
    out, err = capsys.readouterr()
    errs = [line for line in err.splitlines() if line.strip()]
    if code != 0:
        assert len(errs) == 1, errs
        seen = errs[0]
    else:  # the first warning, else the last line printed
        lines = errs + out.splitlines()
        warn = [line for line in lines if "warning" in line.lower() or "skipping" in line]
        seen = (warn or [line for line in lines if line.strip()][-1:] or [""])[0].strip()
    return code, seen.replace(str(ctx.d) + os.sep, "").replace(str(ctx.d), "")
