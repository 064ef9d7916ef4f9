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
    import napari_brainseg.batch  # noqa: F401  (bound to the real writer before the patch)

    def fail(path, write):
        raise OSError(err, text, str(path))

    c.monkeypatch.setattr("napari_brainseg.io.atomic_write", fail)
    c.monkeypatch.setattr("napari_brainseg.formats.raster.atomic_write", fail)
    c.monkeypatch.setattr("napari_brainseg.formats.nifti.atomic_write", fail)


def _old_result(c: Ctx) -> Path:
    out = c.out()
    (out / "scan_pred.png").write_bytes(b"old result")
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
    assert (c.d / "out" / "scan_pred.png").read_bytes() == b"old result"
    assert (c.d / "out" / "keep.txt").read_text() == "user file"


def _unicode_written(c: Ctx) -> None:
    assert (c.d / "out" / "scan ü 脑 (1)_pred.png").exists()


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


def _results_folder(d: Path) -> Path:
    """A results folder as 'brainseg segment scans results --overlays' leaves it (2 scans)."""
    from napari_brainseg.provenance import record, write_sidecar

    res = d / "results"
    (res / "overlays").mkdir(parents=True)
    for name in ("a", "b"):
        _png(d / f"{name}.png")
        _png(res / f"{name}_pred.png", np.eye(48, dtype=np.uint8))
        write_sidecar(res / f"{name}_pred.png", record())
    _png(res / "old_tumour.png", np.eye(48, dtype=np.uint8))  # an earlier version's result
    _png(res / "overlays" / "a_pred_overlay.png", np.zeros((48, 48, 3), np.uint8))
    return res


def _results_as_input(c: Ctx) -> list[str]:
    return [str(_results_folder(c.d)), str(c.d / "again"), "--model", str(c.model), "-q"]


def _labels_from_uncorrected(c: Ctx) -> list[str]:
    res = _results_folder(c.d)
    scans = c.d / "scans"
    scans.mkdir()
    for name in ("a", "b"):
        (c.d / f"{name}.png").rename(scans / f"{name}.png")
    return [str(scans), "--labels-from", str(res), "--out", str(c.d / "model.pt"), "-q"]


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
    assert (out / "scan_png_pred.png").exists() and (out / "scan_jpg_pred.png").exists()
    assert not (out / "scan_pred.png").exists()
    assert (out / "overlays" / "scan_png_pred_overlay.png").exists()
    assert (out / "overlays" / "scan_jpg_pred_overlay.png").exists()


def _garbage_ground_truth(c: Ctx) -> list[str]:
    folder = _pairs(c.d)
    first = sorted((folder / "masks").iterdir())[0]
    first.write_bytes(b"not an image at all")
    return [str(folder), str(c.out()), "--model", str(c.model), "-q"]


def _all_segmented(c: Ctx) -> None:
    rows = list(csv.DictReader((c.d / "out" / "results.csv").open(encoding="utf-8")))
    assert [r["status"] for r in rows] == ["ok"] * 3
    assert "ground-truth mask not used" in rows[0]["error"]
    assert len(list((c.d / "out" / "images").glob("*_pred.png"))) == 3


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
         "scan_pred.png)", "segment", _same_stem_two_formats, 0, "2 segmented",
         check=_both_kept),
    Case("segment-garbage-ground-truth", "a paired ground-truth mask that is not an image",
         "segment", _garbage_ground_truth, 0, r"ground-truth mask not used \(.*\); no Dice",
         check=_all_segmented),
    Case("segment-stopped-before-overlay", "re-run after a run stopped between a mask and its "
         "overlay", "segment", _overlay_lost, 0, "2 skipped", check=_overlay_completed),
    Case("segment-pred-as-input", "a *_pred.png (a saved prediction) given as the scan",
         "segment", lambda c: [str(_png(c.d / "scan_pred.png", np.eye(48, dtype=np.uint8))),
                               str(c.out()), "--model", str(c.model), "-q"], 1,
         "scan_pred.png: this is a prediction of this package \\(labels\\), not a scan"),
    Case("segment-results-as-input", "a results folder (NAME_pred, old NAME_tumour outputs, "
         "overlays) given as the input", "segment", _results_as_input, 2,
         "no scans found \\(4 file\\(s\\) there.*never segmented again"),
    Case("train-labels-from-uncorrected", "train --labels-from a results folder where no "
         "prediction was corrected", "train", _labels_from_uncorrected, 2,
         "no corrected predictions to train on", check=_no_model),
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
    Case("sample-data-out-is-a-file", "sample-data OUT where OUT is an existing file",
         "sample-data", lambda c: [str(_user_file(c.d / "notes.txt")), "--n", "1"], 2,
         "notes.txt: is a file; OUT must be a folder",
         check=lambda c: _user_file_kept(c.d / "notes.txt")),
    Case("skull-strip-folder-to-a-file-name", "skull-strip FOLDER brain.png (a folder of scans, "
         "a file name as OUTPUT)", "skull-strip",
         lambda c: [str(_pairs(c.d, n=2)), str(c.d / "brain.png"), "--method", "classical",
                    "-q"], 2, "brain.png: looks like a file name, but .* holds 2 scans",
         check=lambda c: _no_path(c.d / "brain.png")),
]


def _user_file(path: Path) -> Path:
    path.write_text("user file")
    return path


def _user_file_kept(path: Path) -> None:
    assert path.read_text() == "user file"


# --------------------------------------------------------------------------- crafted checkpoints,
# options out of range, unwritable outputs, resumes (issue 15)


def _crafted(name: str, edit: Callable[[dict], Any], legacy: bool = False) -> Callable[[Ctx], Path]:
    """A checkpoint built from the real one with ``edit(payload)`` applied."""
    def build(c: Ctx) -> Path:
        import torch

        payload = _payload(c.model)
        edit(payload)
        kw = {"_use_new_zipfile_serialization": False} if legacy else {}
        torch.save(payload, c.d / name, **kw)
        return c.d / name
    return build


def _nan_weights(payload: dict) -> None:
    next(iter(payload["state_dict"].values()))[:] = float("nan")


def _legacy_pickle(payload: dict) -> None:
    payload["x"] = _Evil()


def _folder_with_model(builder: Callable[[Ctx], Path]) -> Callable[[Ctx], list[str]]:
    """Segment a folder of 3 scans: a model problem must be said once, not once per scan."""
    return lambda c: [str(_pairs(c.d)), str(c.out()), "--model", str(builder(c)), "-q"]


TINY_TRAIN = ("--epochs", "1", "--batch-size", "2", "--patch-size", "32", "--base-filters", "2",
              "--val-split", "0.34")


def _trained(c: Ctx, name: str = "run.pt") -> Path:
    """A real one-epoch run (``name`` and its ``.last.pt``) on a tiny pairs folder."""
    from napari_brainseg.cli import main

    out = c.d / name
    assert main(["train", str(_pairs(c.d)), "--out", str(out), "-q", *TINY_TRAIN]) == 0
    return out


def _resume_with(edit: Callable[[dict], Any]) -> Callable[[Ctx], list[str]]:
    """Resume a real run whose ``.last.pt`` was edited with ``edit(payload)``."""
    def make(c: Ctx) -> list[str]:
        import torch

        out = _trained(c)
        last = c.d / "run.last.pt"
        payload = torch.load(last, weights_only=True)
        edit(payload)
        torch.save(payload, last)
        return [str(c.d / "pairs"), "--out", str(out), "--resume", str(last), "-q",
                *TINY_TRAIN[:1], "3", *TINY_TRAIN[2:]]
    return make


def _drop_resume_keys(payload: dict) -> None:
    payload["resume"] = {"epoch": 1}


def _bad_history(payload: dict) -> None:
    payload["resume"]["history"] = [{"epoch": "one"}]


def _string_loss(payload: dict) -> None:
    payload["training"]["loss"] = "dice"


def _huge_patch(payload: dict) -> None:
    payload["training"]["patch_size"] = 10**6


def _resume_finished_new_out(c: Ctx) -> list[str]:
    _trained(c)
    return [str(c.d / "pairs"), "--out", str(c.d / "other.pt"), "--resume",
            str(c.d / "run.last.pt"), "-q", *TINY_TRAIN]


def _resume_finished(c: Ctx) -> list[str]:
    out = _trained(c)
    return [str(c.d / "pairs"), "--out", str(out), "--resume", str(c.d / "run.last.pt"), "-q",
            *TINY_TRAIN]


def _no_other_model(c: Ctx) -> None:
    assert not (c.d / "other.pt").exists() and not (c.d / "other.last.pt").exists()


def _out_is_folder(c: Ctx) -> list[str]:
    (c.d / "models").mkdir()
    (c.d / "models" / "keep.txt").write_text("user file")
    return [str(_pairs(c.d)), "--out", str(c.d / "models"), "-q", "--overwrite", *TINY_TRAIN]


def _folder_kept(c: Ctx) -> None:
    assert [p.name for p in (c.d / "models").iterdir()] == ["keep.txt"]


def _empty_masks(c: Ctx) -> list[str]:
    folder = _pairs(c.d)
    for m in (folder / "masks").iterdir():
        iio.imwrite(m, np.zeros((64, 64), np.uint8))
    return [str(folder), "--out", str(c.d / "model.pt"), "-q", *TINY_TRAIN]


def _csv_full_disk(c: Ctx) -> list[str]:
    from napari_brainseg import results_table

    real = results_table.atomic_write

    def write(path, fn):
        if Path(path).name == "results.csv":
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real(path, fn)

    c.monkeypatch.setattr(results_table, "atomic_write", write)
    return [str(_pairs(c.d)), str(c.out()), "--model", str(c.model), "-q"]


def _masks_written(c: Ctx) -> None:
    assert len(list((c.d / "out" / "images").glob("*_pred.png"))) == 3
    assert not (c.d / "out" / "results.csv").exists()


def _unwritable_output(c: Ctx) -> list[str]:
    # Simulated (tests may run as root, for whom chmod does not stop writes); tests/test_faults.py
    # runs the real thing as an unprivileged user where it can.
    import types

    from napari_brainseg import batch

    def refuse(*a, **k):
        raise PermissionError(errno.EACCES, "Permission denied")

    c.monkeypatch.setattr(batch, "tempfile", types.SimpleNamespace(mkstemp=refuse))
    return [str(_pairs(c.d)), str(c.out()), "--model", str(c.model), "-q"]


def _nothing_written(c: Ctx) -> None:
    assert [p.name for p in (c.d / "out").iterdir()] == ["keep.txt"]


def _corrupt_study(c: Ctx) -> list[str]:
    (c.d / "study").mkdir()
    (c.d / "study" / "config.json").write_text('{"losses": ["bce"')
    folder = _pairs(c.d, n=8)
    images = sorted(p.name for p in (folder / "images").iterdir())
    groups = c.d / "groups.csv"  # 4 patients of 2 slices: no warning about the grouping
    groups.write_text("file,patient\n" + "".join(f"{n},P{k // 2}\n" for k, n in enumerate(images)))
    return [str(folder), "--out", str(c.d / "study"), "--quick", "--folds", "2", "--groups",
            str(groups), "-q"]


def _study_config_kept(c: Ctx) -> None:
    assert (c.d / "study" / "config.json").read_text() == '{"losses": ["bce"'


def _skull_option(*option: str) -> Callable[[Ctx], list[str]]:
    return lambda c: [str(_png(c.d / "head.png")), str(c.out() / "mask.nii.gz"), "--method",
                      "classical", *option, "-q"]


CASES += [
    Case("checkpoint-wide-config", "checkpoint: config says base_filters=384 beside small "
         "weights (would build a 4.6 GB model)", "segment",
         _with_model(_crafted("wide.pt", lambda p: p["config"].update(base_filters=384))), 2,
         "wide.pt: the weights do not fit .*needs shape", check=_no_pwned),
    Case("checkpoint-normalisation-not-dict", "checkpoint: normalisation is a string",
         "segment", _with_model(_crafted("norm.pt", lambda p: p.update(normalisation="zscore"))),
         2, "norm.pt: the checkpoint's 'normalisation' is not a dict", check=_no_pwned),
    Case("checkpoint-bad-normalisation", "checkpoint: unknown normalisation, on a folder of 3 "
         "scans (said once, about the model)", "segment",
         _folder_with_model(_crafted("norm.pt", lambda p: p.update(
             normalisation={"method": "magic"}))), 2,
         "norm.pt: the checkpoint's intensity normalisation is unusable", check=_no_pwned),
    Case("checkpoint-metrics-not-dict", "checkpoint: metrics is a number", "segment",
         _with_model(_crafted("metrics.pt", lambda p: p.update(metrics=5))), 2,
         "metrics.pt: the checkpoint's 'metrics' is not a dict", check=_no_pwned),
    Case("checkpoint-schema-string", "checkpoint: schema \"1\" (a string)", "segment",
         _with_model(_crafted("schema.pt", lambda p: p.update(schema="1"))), 2,
         "schema '1' is not a schema version", check=_no_pwned),
    Case("checkpoint-legacy-pickle", "checkpoint: torch's legacy (non-zip) format holding code",
         "segment", _with_model(_crafted("legacy.pt", _legacy_pickle, legacy=True)), 2,
         "legacy.pt: refused: the file holds Python objects", check=_no_pwned),
    Case("checkpoint-nan-weights", "checkpoint: NaN weights (would report every scan ok, 0 mm²)",
         "segment", _with_model(_crafted("nan.pt", _nan_weights)), 2,
         "nan.pt: the weights hold NaN or infinite values", check=_no_pwned),
    Case("train-resume-missing-keys", "train --resume: resume state without its keys", "train",
         _resume_with(_drop_resume_keys), 2, "run.last.pt: the resume state is unusable"),
    Case("train-resume-bad-history", "train --resume: a history of the wrong shape", "train",
         _resume_with(_bad_history), 2, "run.last.pt: the resume state is unusable .*history"),
    Case("train-resume-string-loss", "train --resume: the loss stored as a string", "train",
         _resume_with(_string_loss), 2, "run.last.pt: the resume state is unusable .*training"),
    Case("train-resume-huge-patch", "train --resume: patch size 1,000,000 stored", "train",
         _resume_with(_huge_patch), 2, "patch_size must be between 16 and 2048"),
    Case("train-resume-finished-new-out", "train --resume of a finished run with a new --out",
         "train", _resume_finished_new_out, 2, "continues the run whose model is run.pt",
         check=_no_other_model),
    Case("train-resume-finished", "train --resume of a run that finished its --epochs", "train",
         _resume_finished, 2, "already finished 1 epoch .* --epochs 11"),
    Case("train-out-is-folder", "train --out naming an existing folder (even with --overwrite)",
         "train", _out_is_folder, 2, "models: is a folder; the model path names a file",
         check=_folder_kept),
    Case("train-all-empty-masks", "training masks that are all empty", "train", _empty_masks, 0,
         "every training mask is empty"),
    Case("segment-results-csv-full-disk", "disk full while writing results.csv (simulated)",
         "segment", _csv_full_disk, 1, "results.csv: not written \\(No space left on device",
         check=_masks_written),
    Case("segment-unwritable-output-folder", "output folder not writable (simulated EACCES), "
         "3 scans: said once, up front", "segment", _unwritable_output, 2,
         "out: cannot write there \\(Permission denied\\)", check=_nothing_written),
    Case("study-corrupt-config-json", "study folder whose config.json is damaged", "study",
         _corrupt_study, 1, "study/config.json: not readable JSON", check=_study_config_kept),
    Case("skull-strip-erode-nan", "skull-strip --erode-mm nan", "skull-strip",
         _skull_option("--erode-mm", "nan"), 2, "--erode-mm must be between 0 and 50 mm",
         check=_kept),
    Case("skull-strip-erode-huge", "skull-strip --erode-mm 1e9", "skull-strip",
         _skull_option("--erode-mm", "1e9"), 2, "--erode-mm must be between 0 and 50 mm",
         check=_kept),
    Case("segment-min-area-inf", "segment --min-area inf", "segment",
         _segment(lambda d: _png(d / "scan.png"), "--min-area", "inf"), 2,
         "--min-area must be between 0 and 10000 mm²",
         check=_no_pwned),
    Case("train-lr-nan", "train --lr nan", "train", _train_args(_pairs, "--lr", "nan"), 2,
         "--lr must be above 0 and at most 1", check=_no_model),
    Case("study-patch-size-huge", "study --patch-size 100000", "study",
         lambda c: [str(_pairs(c.d)), "--out", str(c.d / "study"), "--patch-size", "100000",
                    "-q"], 2, "--patch-size must be between 16 and 2048 pixels",
         check=_no_study),
]


# --------------------------------------------------------------------------- issue 15: file reading


def _nii_bytes(path: Path, data: np.ndarray, edit: Callable[[Any], None] | None = None,
               affine: np.ndarray | None = None) -> Path:
    """Save ``data`` as NIfTI after ``edit(header)`` (raw fields, as a broken writer would)."""
    img = nib.Nifti1Image(data, np.eye(4) if affine is None else affine)
    img.set_qform(img.affine, code=1)
    img.header["vox_offset"] = 352
    if edit is not None:
        edit(img.header)
    raw = img.header.binaryblock + b"\x00" * 4 + np.asarray(data).tobytes(order="F")
    path.write_bytes(gzip.compress(raw) if path.name.endswith(".gz") else raw)
    return path


def complex_header(d):
    """456 bytes whose header claims complex128 1024 x 1024 x 1000 (16 GiB)."""
    hdr = nib.Nifti1Header()
    hdr.set_data_dtype(np.complex128)
    hdr.set_data_shape((1024, 1024, 1000))
    hdr["vox_offset"] = 352
    (d / "claims-16gib.nii").write_bytes(hdr.binaryblock + b"\x00" * 108)
    return d / "claims-16gib.nii"


def complex_header_gz(d):
    p = complex_header(d)
    (d / "claims-16gib.nii.gz").write_bytes(gzip.compress(p.read_bytes()))
    p.unlink()
    return d / "claims-16gib.nii.gz"


def mat73_huge(d):
    """A few KB of HDF5 whose never-written 'image' would be 11.9 GiB of float64."""
    import h5py

    with h5py.File(d / "huge.mat", "w") as f:
        f.create_group("cjdata").create_dataset("image", shape=(40000, 40000), dtype="f8")
    return d / "huge.mat"


def _mat5_element(kind: int, data: bytes, claimed: int | None = None) -> bytes:
    """One little-endian v5 data element: tag, data, padding to 8 bytes."""
    n = len(data) if claimed is None else claimed
    return struct.pack("<II", kind, n) + data + b"\0" * (-len(data) % 8)


def _mat5_cjdata_image(dims: tuple[int, int], claimed: int, written: int) -> bytes:
    """The headers of a v5 ``cjdata`` struct whose one field ``image`` is a double array of
    ``dims`` stored as ``claimed`` bytes of uint8 (MATLAB stores whole numbers in smaller
    types); the struct's and field's lengths count ``written`` bytes of data after them."""
    def matrix(cls: int, shape: tuple[int, ...], name: bytes, body: bytes, more: int) -> bytes:
        inner = (_mat5_element(6, struct.pack("<II", cls, 0))
                 + _mat5_element(5, struct.pack(f"<{len(shape)}i", *shape))
                 + _mat5_element(1, name) + body)
        return struct.pack("<II", 14, len(inner) + more) + inner

    data = written + (-written % 8)
    image = matrix(6, dims, b"", struct.pack("<II", 2, claimed), data)
    fields = _mat5_element(5, struct.pack("<i", 8)) + _mat5_element(1, b"image\0\0\0")
    return matrix(2, (1, 1), b"cjdata", fields + image, data)


def _mat5_header() -> bytes:
    return b"MATLAB 5.0 MAT-file, crafted".ljust(116) + b"\0" * 8 + struct.pack("<H", 0x0100) \
        + b"IM"


def mat5_huge(d):
    """312 bytes of uncompressed v5 whose cjdata.image claims 40000 x 40000 doubles (1.6 GB of
    uint8 data that the file does not hold)."""
    body = _mat5_cjdata_image((40000, 40000), 40000 * 40000, 0)
    (d / "claims-huge.mat").write_bytes(_mat5_header() + body)
    return d / "claims-huge.mat"


def mat5_bomb(d):
    """A compressed v5 .mat of 0.9 MB: 30000 x 30000 zeros (900 MB inflated, about 10 GB to read).

    The 16 MB blocks of zeros are compressed once: after a full flush a block does not refer to
    what came before, so the same bytes repeat; the zlib trailer is the checksum of the whole.
    """
    n, step = 30000 * 30000, 16 * 2**20
    head = _mat5_cjdata_image((30000, 30000), n, n)
    z = zlib.compressobj(9)
    parts = [z.compress(head) + z.flush(zlib.Z_FULL_FLUSH)]
    block = z.compress(bytes(step)) + z.flush(zlib.Z_FULL_FLUSH)
    parts += [block] * (n // step)
    rest = bytes(n % step + (-n % 8))
    parts.append(z.compress(rest) + z.flush()[:-4])  # the final block, without its checksum
    check = zlib.adler32(head)
    for _ in range(n // step):
        check = zlib.adler32(bytes(step), check)
    parts.append(struct.pack(">I", zlib.adler32(rest, check)))
    packed = b"".join(parts)
    (d / "bomb.mat").write_bytes(_mat5_header() + struct.pack("<II", 15, len(packed)) + packed)
    return d / "bomb.mat"


def mat4_plain(d):
    """A MATLAB v4 file (scipy's format='4') holding a plain 64 x 64 image and no struct."""
    import scipy.io

    scipy.io.savemat(d / "old.mat", {"image": np.ones((64, 64))}, format="4")
    return d / "old.mat"


def mat4_huge(d):
    """A 90-byte MATLAB v4 file whose one variable claims 40000 x 40000 doubles."""
    name = b"image\0"
    (d / "claims-v4.mat").write_bytes(struct.pack("<5i", 0, 40000, 40000, 0, len(name)) + name
                                       + bytes(64))
    return d / "claims-v4.mat"


def tiff_30000(d):
    """A zlib TIFF of 942 KB holding 30000 x 30000 zeros (about 10 GB to read)."""
    tile = zlib.compress(bytes(1024 * 1024), 9)  # every tile the same: written as encoded bytes
    tifffile.imwrite(d / "wide.tif", (tile for _ in range(30 * 30)), shape=(30000, 30000),
                     dtype=np.uint8, tile=(1024, 1024), compression="zlib")
    return d / "wide.tif"


def _phantom_volume(shape=(24, 24, 12)) -> np.ndarray:
    return np.random.default_rng(1).random(shape).astype(np.float32) * 100


def nan_pixdim(d):
    def edit(h):
        h["qform_code"] = 0
        h["sform_code"] = 0
        h["pixdim"][1] = np.nan
    return _nii_bytes(d / "nan-pixdim.nii", _phantom_volume(), edit)


def nan_quaternion(d):
    def edit(h):
        h["sform_code"] = 0
        h["quatern_b"] = np.nan
    return _nii_bytes(d / "nan-quaternion.nii", _phantom_volume(), edit)


def inf_sform(d):
    def edit(h):
        h["qform_code"] = 0
        h["sform_code"] = 1
        h["srow_x"] = [np.inf, 0, 0, 0]
    return _nii_bytes(d / "inf-sform.nii", _phantom_volume(), edit)


def zero_sform(d):
    def edit(h):
        h["qform_code"] = 0
        h["sform_code"] = 1
        h["srow_x"] = h["srow_y"] = h["srow_z"] = [0, 0, 0, 0]
    return _nii_bytes(d / "zero-sform.nii", _phantom_volume(), edit)


def singular_sform(d):
    def edit(h):
        h["qform_code"] = 0
        h["sform_code"] = 1
        h["srow_x"] = [1, 0, 0, 0]
        h["srow_y"] = [1, 0, 0, 0]  # two axes along x: no volume
        h["srow_z"] = [0, 0, 1, 0]
    return _nii_bytes(d / "singular-sform.nii", _phantom_volume(), edit)


def negative_dim(d):
    def edit(h):
        h["dim"][1] = -24
    return _nii_bytes(d / "negative-dim.nii", _phantom_volume(), edit)


def rgb_nifti(d):
    rgb = np.zeros((24, 24, 12), dtype=[("R", "u1"), ("G", "u1"), ("B", "u1")])
    rgb["R"] = _noise((24, 24, 12))
    nib.save(nib.Nifti1Image(rgb, np.eye(4)), str(d / "rgb.nii.gz"))
    return d / "rgb.nii.gz"


def six_d_ones(d):
    return _nifti(d / "six-d.nii.gz", _phantom_volume().reshape(24, 24, 12, 1, 1, 1))


def sagittal_slice(d):
    """One sagittal slice stored as (1, Y, Z): a 2D image, not 40 slices one pixel wide."""
    return _nifti(d / "sagittal.nii.gz", _phantom_volume((1, 30, 40)))


def brainmask_as_scan(d):
    """A reference brain mask (0/1) named like a scan: itk_t1_head_brainmask.nii.gz."""
    m = np.zeros((24, 24, 12), np.float32)
    m[6:18, 6:18, 3:9] = 1.0
    return _nifti(d / "head_brainmask.nii.gz", m)


def complex_nifti(d):
    data = _phantom_volume() * np.exp(1j * 0.5)
    return _nifti(d / "complex.nii.gz", data.astype(np.complex64))


def qform_sform_differ(c: Ctx) -> list[str]:
    affine = np.diag([2.0, 2.0, 3.0, 1.0])
    img = nib.Nifti1Image(_phantom_volume((32, 32, 4)), affine)
    img.set_sform(affine, code=2)
    qform = affine.copy()
    qform[:3, 3] = [-10.0, 5.0, 7.0]
    img.set_qform(qform, code=1)
    nib.save(img, str(c.d / "two-transforms.nii.gz"))
    return [str(c.d / "two-transforms.nii.gz"), str(c.out()), "--model", str(c.model), "-q"]


def _same_transforms(c: Ctx) -> None:
    scan = nib.load(str(c.d / "two-transforms.nii.gz"))
    mask = nib.load(str(c.d / "out" / "two-transforms_pred.nii.gz"))
    for get in ("get_qform", "get_sform"):
        (a, ca), (b, cb) = getattr(scan, get)(coded=True), getattr(mask, get)(coded=True)
        assert ca == cb and np.allclose(a, b), (get, a, b)


def _dicom_edit(d, name, edit, n=4, **kw):
    from pydicom import dcmread

    paths = _series(d, name, n=n, **kw)
    for k, p in enumerate(sorted(paths)):
        ds = dcmread(p)
        edit(k, ds)
        ds.save_as(p)
    return d / name


def dicom_multiframe_in_series(d):
    from pydicom import dcmread

    folder = _dicom_edit(d, "with-multiframe", lambda k, ds: None)
    p = sorted(folder.iterdir())[0]
    ds = dcmread(p)
    ds.NumberOfFrames = 3
    ds.SOPInstanceUID = "1.2.3.4.5.99"
    ds.PixelData = np.zeros((3, 64, 64), np.int16).tobytes()
    ds.save_as(folder / "MULTIFRAME")
    return folder


def dicom_nan_position(d):
    def edit(k, ds):
        if k == 1:
            ds.ImagePositionPatient = ["nan", "0", "0"]
    return _dicom_edit(d, "nan-position", edit)


def dicom_text_position(d):
    def edit(k, ds):
        if k == 2:
            ds["ImagePositionPatient"].VR = "LO"
            ds.ImagePositionPatient = "left of centre"
    return _dicom_edit(d, "text-position", edit)


def dicom_one_spacing(d):
    def edit(k, ds):
        ds.PixelSpacing = [0.5]
    return _dicom_edit(d, "one-spacing", edit)


def dicom_zero_spacing(d):
    def edit(k, ds):
        ds.PixelSpacing = [0, 0]
    return _dicom_edit(d, "zero-spacing", edit)


def dicom_four_orientation(d):
    def edit(k, ds):
        ds.ImageOrientationPatient = [1, 0, 0, 0]
    return _dicom_edit(d, "four-orientation", edit)


def dicom_truncated(d):
    from pydicom import dcmread

    p = _series(d, "truncated", n=1)[0]
    raw = p.read_bytes()
    ds = dcmread(p)
    p.write_bytes(raw[: len(raw) - len(ds.PixelData) // 2])
    out = d / "truncated.dcm"
    p.rename(out)
    return out


def dicom_localizer(d):
    def edit(k, ds):
        if k == 0:  # a sagittal localizer that shares the series
            ds.ImageOrientationPatient = [0, 1, 0, 0, 0, -1]
            ds.ImagePositionPatient = [0, -100, 100]
    return _dicom_edit(d, "with-localizer", edit, n=6)


def dicom_monochrome1(d):
    def edit(k, ds):
        ds.PhotometricInterpretation = "MONOCHROME1"
    return _dicom_edit(d, "monochrome1", edit, n=5)


def tiff_grey_alpha(d):
    tifffile.imwrite(d / "grey-alpha.tif", _noise((32, 32, 2)), photometric="minisblack",
                     extrasamples=[2], planarconfig="contig")
    return d / "grey-alpha.tif"


def tiff_planar_rgb(d):
    tifffile.imwrite(d / "planar.tif", _noise((3, 32, 40)), photometric="rgb",
                     planarconfig="separate")
    return d / "planar.tif"


def tiff_two_series(d):
    with tifffile.TiffWriter(d / "two-images.tif") as tif:
        tif.write(_noise((32, 32)))
        tif.write(_noise((16, 16)))
    return d / "two-images.tif"


def jpeg_exif_rotated(d):
    from PIL import Image

    im = Image.fromarray(_noise((40, 64)))
    exif = im.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    im.save(d / "rotated.jpg", exif=exif)
    return d / "rotated.jpg"


def mat5_label_inf(d):
    return _mat5(d, "label-inf.mat", {"cjdata": {"image": _noise((20, 20)) * 1.0,
                                                 "label": np.inf,
                                                 "tumorMask": np.zeros((20, 20))}})


def mat73_odd_pid(d):
    return _mat73(d, "odd-pid.mat", "PID", np.array([[0x110000], [-5]], dtype=np.int64))


def long_name_in_folder(c: Ctx) -> list[str]:
    folder = c.d / "long"
    folder.mkdir()
    _png(folder / "a.png")
    _png(folder / ("x" * 250 + ".png"))
    return [str(folder), str(c.out()), "--model", str(c.model), "-q"]


def non_utf8_name(c: Ctx) -> list[str]:
    from napari_brainseg.cli import main

    folder = c.d / "latin1"
    folder.mkdir()
    _png(Path(os.fsdecode(bytes(folder) + b"/scan-\xe9.png")))
    args = [str(folder), str(c.out()), "--model", str(c.model), "-q"]
    assert main(["segment", *args]) == 0  # the first run; the case runs it again
    return args


def unreadable_folder(c: Ctx) -> list[str]:
    folder = c.d / "locked"
    folder.mkdir()
    _png(folder / "a.png")
    real_scandir = os.scandir

    def scandir(p="."):
        if Path(p) == folder:
            raise PermissionError(errno.EACCES, "Permission denied", str(p))
        return real_scandir(p)
    c.monkeypatch.setattr(os, "scandir", scandir)
    return [str(folder)]


def permission_in_folder(c: Ctx) -> list[str]:
    from PIL import Image

    folder = c.d / "slices"
    folder.mkdir()
    _png(folder / "a.png")
    _png(folder / "b.png")
    real_open = Image.open

    def locked(fp, *a, **k):
        if Path(str(fp)).name == "b.png":
            raise PermissionError(errno.EACCES, "Permission denied", str(fp))
        return real_open(fp, *a, **k)
    c.monkeypatch.setattr(Image, "open", locked)
    return [str(folder)]


def _planar_is_2d(c: Ctx) -> None:
    from napari_brainseg.io import read

    assert read(c.d / "planar.tif")[0].data.shape == (32, 40)


def _mono1_global(c: Ctx) -> None:
    from napari_brainseg.io import read

    vol = read(c.d / "monochrome1")[0].data
    # slice k holds 10 k: one rule for the series mirrors it to 40 - 10 k, never 0 everywhere
    assert sorted({float(v) for v in vol.reshape(vol.shape[0], -1).mean(1)}) == \
        [0.0, 10.0, 20.0, 30.0, 40.0]


def _sagittal_segmented_as_2d(c: Ctx) -> None:
    rows = list(csv.DictReader((c.d / "out" / "results.csv").open(encoding="utf-8")))
    assert rows[0]["status"] == "ok" and rows[0]["tumour_area_mm2"] != ""
    mask = nib.load(str(c.d / "out" / "sagittal_pred.nii.gz"))
    assert mask.shape == (1, 30, 40)


def _long_name_batch_went_on(c: Ctx) -> None:
    rows = list(csv.DictReader((c.d / "out" / "results.csv").open(encoding="utf-8")))
    assert [r["status"] for r in rows] == ["ok", "failed"]
    assert (c.d / "out" / "a_pred.png").exists()


def _csv_names_escaped(c: Ctx) -> None:
    text = (c.d / "out" / "results.csv").read_text(encoding="utf-8")
    assert "scan-\\xe9.png,skipped" in text


def _little_memory(c: Ctx) -> list[str]:
    c.monkeypatch.setattr("napari_brainseg.volume.available_memory", lambda: 60 * 2**20)
    scan = _png(c.d / "big.png", np.zeros((1500, 1500), np.uint8))  # 77 MB to segment
    return [str(scan), str(c.out()), "--model", str(c.model), "-q"]


READING = [
    ("NIfTI header claiming complex128 1024x1024x1000 in a 456-byte file", complex_header, 1,
     r"describes 15\.6 GiB .*, but the file holds 456 bytes"),
    ("the same header gzipped (.nii.gz)", complex_header_gz, 1,
     r"needs about \d+\.\d GiB of memory, more than"),
    (".mat v7.3 whose never-written image claims 11.9 GiB", mat73_huge, 1,
     "1,600,000,000 voxels"),
    ("272-byte .mat v5 whose cjdata.image claims 40000 x 40000 (data never written)", mat5_huge,
     1, r"needs about 16\.4 GiB .*'cjdata.image' is double of shape 40000 x 40000.*Save a "
     "smaller"),
    ("0.9 MB compressed .mat v5 inflating to a 30000 x 30000 image (zlib bomb)", mat5_bomb, 1,
     r"needs about 9\.2 GiB .*'cjdata.image'.*more than the 8\.0 GiB allowed"),
    ("MATLAB v4 .mat (plain matrices only)", mat4_plain, 1,
     r"MATLAB v4 file.*not the 'cjdata' struct.*-v7\.3"),
    ("90-byte MATLAB v4 .mat claiming 40000 x 40000 doubles", mat4_huge, 1,
     r"MATLAB v4 file.*Save it again"),
    ("942 KB zlib TIFF of 30000x30000", tiff_30000, 1, r"needs about 9\.2 GiB.*Crop or downsample"),
    ("NIfTI with NaN pixdim and no transform", nan_pixdim, 0, "geometry .* is not usable"),
    ("NIfTI with a NaN quaternion", nan_quaternion, 0, "qform is not usable.*voxel sizes"),
    ("NIfTI with an infinite sform", inf_sform, 0, "sform is not usable"),
    ("NIfTI with an all-zero sform", zero_sform, 0, "sform is not usable"),
    ("NIfTI with a singular sform", singular_sform, 0, "sform is not usable"),
    ("NIfTI with dim[1] < 0", negative_dim, 1, "side of 0 or less"),
    ("RGB NIfTI", rgb_nifti, 0, "RGB NIfTI converted to grey"),
    ("6-D NIfTI with trailing ones", six_d_ones, 0, r"shape=\(12, 24, 24\)"),
    ("one sagittal slice stored as (1, Y, Z)", sagittal_slice, 0, r"shape=\(40, 30\) .*1 x 1 mm"),
    ("complex NIfTI", complex_nifti, 0, "complex values; showing their magnitude"),
    ("DICOM series with a multi-frame file in it", dicom_multiframe_in_series, 0,
     r"series 2' shape=\(3, 64, 64\)"),
    ("DICOM slice with NaN ImagePositionPatient", dicom_nan_position, 0,
     "positions or orientation unreadable"),
    ("DICOM slice with text ImagePositionPatient", dicom_text_position, 0,
     "positions or orientation unreadable"),
    ("DICOM with one-value PixelSpacing", dicom_one_spacing, 0,
     "PixelSpacing '0.5' is not two positive numbers"),
    ("DICOM with zero PixelSpacing", dicom_zero_spacing, 0, "not two positive numbers"),
    ("DICOM with a 4-value ImageOrientationPatient", dicom_four_orientation, 0,
     "positions or orientation unreadable"),
    ("DICOM with truncated pixel data", dicom_truncated, 1,
     "^(?!.*pylibjpeg).*truncated or damaged"),
    ("DICOM series holding a localizer of another orientation", dicom_localizer, 0,
     "left out 1 image.*localizer"),
    ("grey+alpha TIFF", tiff_grey_alpha, 0, "alpha dropped"),
    ("TIFF holding two images", tiff_two_series, 0, "holds 2 images; showing the first"),
    ("JPEG stored sideways with EXIF orientation 6", jpeg_exif_rotated, 0, r"shape=\(64, 40\)"),
    (".mat v5 with label = Inf", mat5_label_inf, 0, "label is not a whole number"),
    (".mat v7.3 with a PID that is not text", mat73_odd_pid, 0, "PID is not text"),
]

def _roomy(builder: Callable[[Path], Path]) -> Callable[[Ctx], list[str]]:
    """As :func:`_info`, on a machine with 64 GiB free: the message (and table) never depends
    on the memory free where the tests run."""
    def make(c: Ctx) -> list[str]:
        c.monkeypatch.setattr("napari_brainseg.volume.available_memory", lambda: 64 * 2**30)
        return [str(builder(c.d))]
    return make


CASES += [Case(name=b.__name__.replace("_", "-"), what=w, command="info", make=_roomy(b),
               code=code, expect=e) for w, b, code, e in READING]

CASES += [
    Case("tiff-planar-rgb", "planar (separate) RGB TIFF", "info", _info(tiff_planar_rgb), 0,
         "converted to grey", check=_planar_is_2d),
    Case("dicom-monochrome1", "MONOCHROME1 DICOM series of constant slices", "info",
         _info(dicom_monochrome1), 0, r"range=\[0, 40\]", check=_mono1_global),
    Case("unreadable-folder", "a folder that cannot be listed (simulated EACCES)", "info",
         unreadable_folder, 1, "locked: no permission to read this folder"),
    Case("permission-in-folder", "a folder with one unreadable image (simulated EACCES)", "info",
         permission_in_folder, 1, "^(?!.*damaged).*b.png: no permission to read it"),
    Case("segment-unreadable-folder", "segment a folder that cannot be listed (simulated)",
         "segment", lambda c: [*unreadable_folder(c), str(c.out()), "--model", str(c.model),
                               "-q"], 2, "locked: no permission to read this folder"),
    Case("segment-long-name-in-folder", "a 250-character file name beside a normal scan",
         "segment", long_name_in_folder, 1, "too long for the file system; give the input a "
         "shorter name", check=_long_name_batch_went_on),
    Case("segment-non-utf8-name-rerun", "re-run on a file whose name is not UTF-8 (Latin-1)",
         "segment", non_utf8_name, 0, "0 segmented, 1 skipped", check=_csv_names_escaped),
    Case("segment-qform-sform-differ", "NIfTI whose qform and sform disagree: the mask keeps both",
         "segment", qform_sform_differ, 0, "1 segmented", check=_same_transforms),
    Case("segment-sagittal-slice", "one sagittal slice (1, Y, Z) is segmented as one 2D image",
         "segment", _segment(sagittal_slice), 0, "1 segmented",
         check=_sagittal_segmented_as_2d),
    Case("segment-binary-scan", "a 0/1 brain mask named like a scan is refused, not segmented",
         "segment", _segment(brainmask_as_scan), 1, r"holds only two values, 0 and 1: a mask"),
    Case("segment-complex", "complex NIfTI: segment says it used the magnitude", "segment",
         _segment(complex_nifti), 0, "warning: complex.nii.gz: complex values"),
    Case("segment-little-memory", "a scan needing more memory than is free (simulated 60 MiB)",
         "segment", _little_memory, 1, r"segmenting this image .* free on this machine"),
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
