"""A corpus of bad inputs run through the CLI: each gives one clear line on stderr, a non-zero exit
and no traceback, and leaves existing files untouched. (Issue 8 grows this corpus.)"""

import gzip
import os
import struct

import imageio.v3 as iio
import nibabel as nib
import numpy as np
import pytest
import tifffile

from napari_brainseg.cli import main
from napari_brainseg.io import write_mat


def _nifti(path, data, affine=None):
    nib.save(nib.Nifti1Image(data, np.eye(4) if affine is None else affine), str(path))


def make_case(name, d):
    """Create the bad input called ``name`` in folder ``d``; return its path and a message regex."""
    p = d / name
    if name == "zero.nii.gz":
        p.write_bytes(b"")
        return p, "empty"
    if name == "truncated.nii.gz":
        _nifti(d / "full.nii.gz", np.ones((30, 30, 30), np.float32))
        raw = (d / "full.nii.gz").read_bytes()
        (d / "full.nii.gz").unlink()
        p.write_bytes(raw[: len(raw) // 3])
        return p, "truncated|corrupt|readable"
    if name == "text.nii":
        p.write_text("hello\n" * 100)
        return p, "not a readable NIfTI"
    if name == "gzip-garbage.nii.gz":
        with gzip.open(p, "wb") as f:
            f.write(os.urandom(500))
        return p, "not a readable NIfTI|truncated|corrupt"
    if name == "allnan.nii.gz":
        _nifti(p, np.full((10, 10, 10), np.nan, np.float32))
        return p, "NaN"
    if name == "five-d.nii.gz":
        _nifti(p, np.zeros((10, 10, 10, 2, 2), np.float32))
        return p, "5D"
    if name == "tiny.nii.gz":
        _nifti(p, np.zeros((2, 2, 2), np.float32))
        return p, "too small"
    if name == "one-pixel.png":
        iio.imwrite(p, np.zeros((1, 1), np.uint8))
        return p, "too small"
    if name == "not-a-png.png":
        p.write_bytes(b"\x89PNG\r\n\x1a\nthis is not a png")
        return p, "not a readable PNG"
    if name == "text.jpg":
        p.write_text("plain text")
        return p, "not a readable JPG"
    if name == "empty.tif":
        p.write_bytes(b"")
        return p, "empty"
    if name == "bad.tif":
        p.write_bytes(b"II*\x00" + struct.pack("<I", 99999) + b"\x00" * 20)
        return p, "not a readable TIF"
    if name == "constant.png":
        iio.imwrite(p, np.full((64, 64), 7, np.uint8))
        return p, "constant"
    if name == "no-cjdata.mat":
        import scipy.io

        scipy.io.savemat(p, {"other": np.zeros((4, 4))})
        return p, "cjdata"
    if name == "mat-no-image.mat":
        import h5py

        with h5py.File(p, "w") as f:
            f.create_group("cjdata")["label"] = np.array([[1.0]])
        return p, "no 'image'"
    if name == "mat-string-image.mat":
        import scipy.io

        scipy.io.savemat(p, {"cjdata": {"image": "not pixels", "tumorMask": np.zeros((4, 4))}})
        return p, "2D numeric"
    if name == "mat-mask-shape.mat":
        write_mat(d / "tmp.mat", np.zeros((20, 20)), np.zeros((20, 20)))
        import h5py

        with h5py.File(d / "tmp.mat", "a") as f:
            del f["cjdata/tumorMask"]
            f["cjdata/tumorMask"] = np.zeros((10, 10), np.uint8)
        (d / "tmp.mat").rename(p)
        return p, "does not match"
    if name == "garbage.mat":
        p.write_bytes(os.urandom(300))
        return p, "not a readable MATLAB|cannot read"
    if name == "empty-folder":
        p.mkdir()
        return p, "empty"
    if name == "text-folder":
        p.mkdir()
        (p / "notes.txt").write_text("x")
        return p, "no supported images"
    if name == "dicom-no-pixels":
        from pydicom import dcmread
        from pydicom.data import get_testdata_file

        p.mkdir()
        ds = dcmread(get_testdata_file("MR_small.dcm"))
        del ds.PixelData
        ds.save_as(p / "a.dcm")
        return p, "no DICOM image files|no pixel data"
    if name == "dicom-garbage.dcm":
        p.write_bytes(b"\x00" * 128 + b"DICM" + os.urandom(64))
        return p, "unreadable DICOM|not|DICOM"
    if name == "mask-wrong-shape":
        p.mkdir()
        iio.imwrite(p / "a.png", np.random.default_rng(0).integers(0, 255, (32, 32), np.uint8))
        iio.imwrite(p / "a_mask.png", np.zeros((16, 16), np.uint8))
        return p / "a.png", "does not match"
    if name == "mask-soft-values.png":
        iio.imwrite(d / "soft.png", np.random.default_rng(0).integers(0, 255, (32, 32), np.uint8))
        tifffile.imwrite(d / "soft_mask.tif", np.full((32, 32), 0.5, np.float32))
        return d / "soft.png", "not labels"
    if name == "unsupported.xyz":
        p.write_text("x")
        return p, "unsupported"
    if name == "missing.nii.gz":
        return p, "no such"
    if name == "four-d-2d.nii.gz":  # 4D of tiny slices: still too small after taking volume 0
        _nifti(p, np.zeros((4, 4, 4, 3), np.float32))
        return p, "too small"
    if name == "rgba-huge-claims.png":
        # a PNG whose header claims 60000 x 60000 pixels (a decompression bomb)
        import zlib

        def chunk(t, data):
            return struct.pack(">I", len(data)) + t + data + struct.pack(">I", zlib.crc32(t + data))

        ihdr = struct.pack(">IIBBBBB", 60000, 60000, 8, 6, 0, 0, 0)
        p.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", b"") +
                      chunk(b"IEND", b""))
        return p, "not a readable PNG|Crop or downsample|too"
    if name == "symlink-loop.nii.gz":
        os.symlink(p, p)
        return p, "no such|not a readable|loop|Too many"
    raise KeyError(name)


CASES = ["zero.nii.gz", "truncated.nii.gz", "text.nii", "gzip-garbage.nii.gz", "allnan.nii.gz",
         "five-d.nii.gz", "tiny.nii.gz", "one-pixel.png", "not-a-png.png", "text.jpg",
         "empty.tif", "bad.tif", "no-cjdata.mat", "mat-no-image.mat", "mat-string-image.mat",
         "mat-mask-shape.mat", "garbage.mat", "empty-folder", "text-folder", "dicom-no-pixels",
         "dicom-garbage.dcm", "mask-wrong-shape", "mask-soft-values.png", "unsupported.xyz",
         "missing.nii.gz", "four-d-2d.nii.gz", "rgba-huge-claims.png", "symlink-loop.nii.gz"]


@pytest.mark.parametrize("name", CASES)
def test_info_gives_one_clear_line(name, tmp_path, capsys):
    path, message = make_case(name, tmp_path)
    assert main(["info", str(path)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert "Traceback" not in err[0]
    import re

    assert re.search(message, err[0]), err[0]


@pytest.mark.parametrize("name", ["truncated.nii.gz", "not-a-png.png", "allnan.nii.gz",
                                  "constant.png", "no-cjdata.mat"])
def test_skull_strip_reports_and_exits_1(name, tmp_path, capsys):
    path, _ = make_case(name, tmp_path)
    code = main(["skull-strip", str(path), str(tmp_path / "out.nii.gz")])
    assert code == 1
    err = capsys.readouterr().err
    assert path.name in err and "Traceback" not in err
    assert not (tmp_path / "out.nii.gz").exists()


@pytest.mark.parametrize("name", ["truncated.nii.gz", "not-a-png.png", "five-d.nii.gz",
                                  "garbage.mat", "empty.tif"])
def test_segment_reports_and_keeps_existing_outputs(name, tmp_path, capsys, tiny_model):
    path, _ = make_case(name, tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("user file")
    assert main(["segment", str(path), str(out), "--model", str(tiny_model), "-q"]) == 1
    err = capsys.readouterr().err
    assert path.name in err and "Traceback" not in err
    assert (out / "keep.txt").read_text() == "user file"
    assert "failed" in (out / "results.csv").read_text()


def test_full_disk_is_reported_and_loses_nothing(tmp_path, capsys, tiny_model, monkeypatch):
    import errno

    import napari_brainseg.io as io_mod

    iio.imwrite(tmp_path / "a.png", np.random.default_rng(0).integers(0, 255, (64, 64), np.uint8))
    out = tmp_path / "out"
    out.mkdir()
    (out / "a_tumour.png").write_bytes(b"old result")

    def full(path, write):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(io_mod, "atomic_write", full)
    monkeypatch.setattr("napari_brainseg.formats.raster.atomic_write", full)
    code = main(["segment", str(tmp_path / "a.png"), str(out), "--model", str(tiny_model), "-q",
                 "--overwrite"])
    assert code == 1
    err = capsys.readouterr().err
    assert "No space left" in err and "Traceback" not in err
    assert (out / "a_tumour.png").read_bytes() == b"old result"
