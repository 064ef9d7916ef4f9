import gzip
import shutil

import imageio.v3 as iio
import nibabel as nib
import numpy as np
import pytest

from conftest import make_dicom_series
from napari_brainseg import io
from napari_brainseg.io import ReadError, read

# ----------------------------------------------------------------------------- NIfTI, real head


def test_colin27_reads_in_display_orientation(colin_path):
    (vol,) = read(colin_path)
    assert vol.data.shape == (181, 217, 181)
    assert vol.data.dtype == np.float32
    assert vol.spacing == (1.0, 1.0, 1.0)
    native = nib.load(str(colin_path))
    # Display index (0, 0, 0) is the most superior, anterior, right voxel (axcodes L, P, I):
    # the patient's right on the left of the screen, as radiologists read.
    expected_world = native.affine @ [180, 216, 180, 1]
    np.testing.assert_allclose(vol.affine @ [0, 0, 0, 1], expected_world)
    raw = np.asarray(native.dataobj)
    assert vol.data[10, 20, 30] == raw[180 - 30, 216 - 20, 180 - 10]


def test_mask_written_back_matches_scan_grid(colin_path, tmp_path):
    (vol,) = read(colin_path)
    mask = np.zeros(vol.data.shape, np.uint8)
    mask[10, 20, 30] = 1
    mask[100:110, 50:60, 70:75] = 2
    out = io.write_labels(tmp_path / "mask.nii.gz", mask, like=vol)
    back = nib.load(str(out))
    native = nib.load(str(colin_path))
    assert back.shape == native.shape
    np.testing.assert_allclose(back.affine, native.affine)
    arr = np.asarray(back.dataobj)
    assert arr[180 - 30, 216 - 20, 180 - 10] == 1
    assert arr.sum() == 1 + 2 * 10 * 10 * 5
    # ...and our reader reads it back onto the display grid.
    (again,) = read(out)
    np.testing.assert_array_equal(again.data.astype(np.uint8), mask)


def test_oblique_lps_nifti_round_trip(tmp_path):
    # An LPS-stored, anisotropic volume (as DICOM converters write): display is still L, P, I.
    data = np.arange(10 * 11 * 12, dtype=np.float32).reshape(10, 11, 12)
    affine = np.diag([-0.5, -0.7, 3.0, 1.0])
    nib.save(nib.Nifti1Image(data, affine), str(tmp_path / "lps.nii.gz"))
    (vol,) = read(tmp_path / "lps.nii.gz")
    assert vol.data.shape == (12, 11, 10)
    assert vol.spacing == pytest.approx((3.0, 0.7, 0.5))
    labels = (vol.data > 500).astype(np.uint8)
    out = io.write_labels(tmp_path / "m.nii.gz", labels, like=vol)
    np.testing.assert_array_equal(np.asarray(nib.load(str(out)).dataobj), (data > 500))


def test_4d_nifti_keeps_first_volume_with_warning(tmp_path):
    data = np.random.default_rng(0).random((16, 16, 10, 3)).astype(np.float32)
    nib.save(nib.Nifti1Image(data, np.eye(4)), str(tmp_path / "f.nii.gz"))
    (vol,) = read(tmp_path / "f.nii.gz")
    assert vol.data.shape == (10, 16, 16)
    assert any("first" in w for w in vol.warnings)


def test_2d_nifti_opens_as_slice(tmp_path):
    data = np.random.default_rng(0).random((20, 30, 1)).astype(np.float32)
    nib.save(nib.Nifti1Image(data, np.diag([0.5, 0.8, 1, 1])), str(tmp_path / "s.nii"))
    (vol,) = read(tmp_path / "s.nii")
    assert vol.data.shape == (30, 20)
    assert vol.spacing == pytest.approx((0.8, 0.5))
    assert vol.has_geometry  # the header's pixel size is real: the model uses it, not a guess
    img = nib.Nifti1Image(data, None)  # no sform, no qform
    img.header["pixdim"][1] = np.nan  # and no usable voxel size: 1 x 1 placeholder pixels
    nib.save(img, str(tmp_path / "nogeo.nii"))
    assert not read(tmp_path / "nogeo.nii")[0].has_geometry


def test_5d_nifti_is_refused(tmp_path):
    data = np.zeros((10, 10, 10, 2, 2), np.float32)
    nib.save(nib.Nifti1Image(data, np.eye(4)), str(tmp_path / "five.nii.gz"))
    with pytest.raises(ReadError, match="5D"):
        read(tmp_path / "five.nii.gz")


def test_nan_inf_replaced_with_warning(tmp_path):
    data = np.ones((12, 12, 12), np.float32)
    data[0, 0, 0] = np.nan
    data[1, 1, 1] = np.inf
    nib.save(nib.Nifti1Image(data, np.eye(4)), str(tmp_path / "nan.nii.gz"))
    (vol,) = read(tmp_path / "nan.nii.gz")
    assert np.isfinite(vol.data).all()
    assert any("NaN" in w for w in vol.warnings)


def test_all_nan_is_refused(tmp_path):
    nib.save(nib.Nifti1Image(np.full((12, 12, 12), np.nan, np.float32), np.eye(4)),
             str(tmp_path / "nan.nii.gz"))
    with pytest.raises(ReadError, match="NaN"):
        read(tmp_path / "nan.nii.gz")


def test_truncated_nifti_gives_clear_error(colin_path, tmp_path):
    raw = colin_path.read_bytes()
    bad = tmp_path / "truncated.nii.gz"
    bad.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ReadError, match="truncated.nii.gz.*(truncated|corrupt|readable)"):
        read(bad)


def test_text_file_named_nii(tmp_path):
    bad = tmp_path / "notes.nii"
    bad.write_text("this is not an image\n" * 50)
    with pytest.raises(ReadError, match="notes.nii"):
        read(bad)


def test_zero_byte_file(tmp_path):
    (tmp_path / "empty.nii.gz").write_bytes(b"")
    with pytest.raises(ReadError, match="empty"):
        read(tmp_path / "empty.nii.gz")


def test_gzip_of_garbage(tmp_path):
    with gzip.open(tmp_path / "junk.nii.gz", "wb") as f:
        f.write(b"\x00" * 400)
    with pytest.raises(ReadError, match="junk.nii.gz"):
        read(tmp_path / "junk.nii.gz")


# ----------------------------------------------------------------------------- DICOM


def test_pydicom_bundled_mr_file_opens():
    from pydicom.data import get_testdata_file

    (vol,) = read(get_testdata_file("MR_small.dcm"))
    assert vol.data.shape == (64, 64)
    assert vol.spacing == pytest.approx((0.3125, 0.3125))
    assert vol.metadata["modality"] == "MR"


def test_dicom_series_sorted_by_position_with_rescale(tmp_path):
    make_dicom_series(tmp_path / "series", n=6, slope=2.0, intercept=-5.0, step=2.5)
    (vol,) = read(tmp_path / "series")
    assert vol.data.shape == (6, 64, 64)
    # Display runs superior -> inferior: slice k (position 2.5 k, value 2 * 10k - 5) is at 5 - k.
    values = vol.data[:, 32, 32]
    np.testing.assert_allclose(values, [2 * 10 * k - 5 for k in range(5, -1, -1)])
    assert vol.spacing == pytest.approx((2.5, 0.3125, 0.3125))
    assert vol.affine is not None


def test_dicom_missing_slice_warns(tmp_path):
    make_dicom_series(tmp_path / "gappy", n=6, skip=(3,))
    (vol,) = read(tmp_path / "gappy")
    assert vol.data.shape[0] == 5
    assert any("gap" in w for w in vol.warnings)


def test_folder_with_two_series_opens_two_volumes(tmp_path):
    make_dicom_series(tmp_path / "study" / "a", n=3, uid="1.2.3.1")
    make_dicom_series(tmp_path / "study" / "b", n=4, uid="1.2.3.2")
    vols = read(tmp_path / "study")
    assert sorted(v.data.shape[0] for v in vols) == [3, 4]


def test_empty_folder(tmp_path):
    (tmp_path / "nothing").mkdir()
    with pytest.raises(ReadError, match="empty"):
        read(tmp_path / "nothing")


def test_folder_without_images(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "readme.txt").write_text("hello")
    with pytest.raises(ReadError, match="no supported images"):
        read(tmp_path / "docs")


def test_dicom_without_pixels(tmp_path):
    from pydicom import dcmread
    from pydicom.data import get_testdata_file

    ds = dcmread(get_testdata_file("MR_small.dcm"))
    del ds.PixelData
    ds.save_as(tmp_path / "nopix.dcm")
    with pytest.raises(ReadError, match="no pixel data"):
        read(tmp_path / "nopix.dcm")


# ----------------------------------------------------------------------------- figshare .mat


@pytest.mark.parametrize("version", ["7.3", "5"])
def test_figshare_mat_opens_image_mask_and_type(tmp_path, version):
    image = (np.arange(40 * 50).reshape(40, 50) % 300).astype(np.int16)
    mask = np.zeros((40, 50), np.uint8)
    mask[5:15, 10:30] = 1
    path = io.write_mat(tmp_path / "1.mat", image, mask, label=2, pid="100360", version=version)
    img, lab = read(path)
    np.testing.assert_array_equal(img.data, image.astype(np.float32))
    np.testing.assert_array_equal(lab.data, mask)
    assert lab.kind == "labels"
    assert img.metadata["tumour_type"] == "glioma"
    assert img.metadata["patient_id"] == "100360"


def test_mat_without_cjdata(tmp_path):
    import scipy.io

    scipy.io.savemat(tmp_path / "other.mat", {"x": np.zeros((20, 20))})
    with pytest.raises(ReadError, match="cjdata"):
        read(tmp_path / "other.mat")


@pytest.mark.parametrize("compressed", [False, True])
def test_mat5_claims_walk_every_kind_of_variable(tmp_path, monkeypatch, compressed):
    """Cells, struct arrays, sparse, complex, text and empty arrays are walked to the end; the
    sum counts the figshare image and grows with it; a file past the limit is refused."""
    import scipy.io
    import scipy.sparse

    from napari_brainseg.formats import mat5

    def claimed(side: int) -> int:
        path = tmp_path / f"{side}.mat"
        scipy.io.savemat(path, {
            "cjdata": {"image": np.ones((side, side), np.int16), "label": 2.0, "PID": "12"},
            "cells": np.array([[1.0, "ab"]], dtype=object), "z": np.ones((3, 3), complex),
            "sp": scipy.sparse.eye(6).tocsc(), "empty": np.zeros((0, 3)),
            "s": np.array([(1, "a"), (2, "bb")], dtype=[("x", "O"), ("y", "O")])},
            do_compression=compressed)
        return mat5.check_mat5_claims(path)

    small, large = claimed(64), claimed(128)
    # int16 pixels: the stored array, its copy, the float32 image and the finite mask
    assert large - small == (128**2 - 64**2) * (2 * 2 + 9)
    assert small > 64**2 * 13
    monkeypatch.setattr(mat5, "memory_cap", lambda: (small + 1000, "free on this machine"))
    mat5.check_mat5_claims(tmp_path / "64.mat")
    with pytest.raises(ReadError, match=r"128\.mat: loading this MATLAB file needs about .* "
                       r"\('cjdata.image' is int16 of shape 128 x 128\), more than the .* free "
                       "on this machine. Save a smaller"):
        mat5.check_mat5_claims(tmp_path / "128.mat")


@pytest.mark.parametrize("compressed", [False, True])
def test_truncated_mat5_is_refused_before_loadmat(tmp_path, compressed):
    import scipy.io

    path = tmp_path / "cut.mat"
    scipy.io.savemat(path, {"cjdata": {"image": np.arange(4096.0).reshape(64, 64)}},
                     do_compression=compressed)
    path.write_bytes(path.read_bytes()[:-200])
    with pytest.raises(ReadError, match="cut.mat: not a readable MATLAB file: .*truncated or "
                       "damaged. Copy it again"):
        read(path)


# ----------------------------------------------------------------------------- raster images


def test_rgba_png_to_grey_with_warning(tmp_path):
    rgba = np.zeros((20, 30, 4), np.uint8)
    rgba[..., 0] = 100
    rgba[..., 1] = 200
    rgba[..., 3] = 255
    iio.imwrite(tmp_path / "c.png", rgba)
    (vol,) = read(tmp_path / "c.png")
    assert vol.data.shape == (20, 30)
    assert vol.data[0, 0] == pytest.approx(0.299 * 100 + 0.587 * 200)
    assert any("grey" in w and "alpha" in w for w in vol.warnings)


@pytest.mark.parametrize("planar", [False, True])
def test_colour_tiff_memory_is_counted_per_pixel_not_per_sample(tmp_path, monkeypatch, planar):
    import tifffile

    from napari_brainseg import volume

    rgb = np.full((3, 40, 50) if planar else (40, 50, 3), 90, np.uint8)
    tifffile.imwrite(tmp_path / "c.tif", rgb, photometric="rgb",
                     planarconfig="separate" if planar else "contig")
    asked = []
    real = volume.check_memory
    monkeypatch.setattr(volume, "check_memory",
                        lambda n, per, *a, **k: (asked.append((n, per)), real(n, per, *a, **k)))
    with volume.reading_for("segmenting", 34):
        (vol,) = read(tmp_path / "c.tif")
    assert vol.data.shape == (40, 50)
    # the read (3 uint8 samples, a copy, the grey sum and its temporary, the mask) and the
    # segmentation, both for 2,000 pixels: 3 colour samples are not 6,000 voxels
    assert asked[0] == (2000, 2 * 3 + 8 + 1)
    assert all(n == 2000 for n, _ in asked) and len(asked) == 2


def test_16bit_png_keeps_range(tmp_path):
    img = np.linspace(0, 60000, 32 * 32).reshape(32, 32).astype(np.uint16)
    iio.imwrite(tmp_path / "h.png", img)
    (vol,) = read(tmp_path / "h.png")
    assert vol.data.max() == pytest.approx(img.max())


def test_1x1_image_is_refused(tmp_path):
    iio.imwrite(tmp_path / "dot.png", np.zeros((1, 1), np.uint8))
    with pytest.raises(ReadError, match="too small"):
        read(tmp_path / "dot.png")


def test_image_with_mask_beside_it(tmp_path):
    iio.imwrite(tmp_path / "a.png", np.full((20, 20), 7, np.uint8))
    m = np.zeros((20, 20), np.uint8)
    m[2:5, 2:5] = 255
    iio.imwrite(tmp_path / "a_mask.png", m)
    img, lab = read(tmp_path / "a.png")
    assert lab.kind == "labels" and lab.data.max() == 1 and lab.data.sum() == 9


def test_mask_of_wrong_shape(tmp_path):
    iio.imwrite(tmp_path / "a.png", np.zeros((20, 20), np.uint8))
    iio.imwrite(tmp_path / "a_mask.png", np.zeros((21, 20), np.uint8))
    with pytest.raises(ReadError, match="does not match"):
        read(tmp_path / "a.png")


def test_images_masks_folder_opens_as_stack(tmp_path):
    from napari_brainseg.synthetic import write_sample_folder

    write_sample_folder(tmp_path / "set", n=3, shape=(64, 64))
    img, lab = read(tmp_path / "set")
    assert img.data.shape == (3, 64, 64) and lab.data.shape == (3, 64, 64)
    assert lab.data.max() == 1
    pairs = io.find_pairs(tmp_path / "set")
    assert len(pairs) == 3 and all(p.mask is not None for p in pairs)


def test_folder_with_mixed_sizes_explains(tmp_path):
    iio.imwrite(tmp_path / "a.png", np.zeros((20, 20), np.uint8))
    iio.imwrite(tmp_path / "b.png", np.zeros((30, 20), np.uint8))
    with pytest.raises(ReadError, match="differ in size"):
        read(tmp_path)


def test_multipage_tiff_is_a_volume(tmp_path):
    import tifffile

    tifffile.imwrite(tmp_path / "v.tif", np.zeros((4, 16, 16), np.uint16), photometric="minisblack")
    (vol,) = read(tmp_path / "v.tif")
    assert vol.data.shape == (4, 16, 16)


def test_unsupported_and_missing(tmp_path):
    (tmp_path / "x.xyz").write_text("x")
    with pytest.raises(ReadError, match="unsupported"):
        read(tmp_path / "x.xyz")
    with pytest.raises(ReadError, match="no such"):
        read(tmp_path / "missing.nii")


def test_huge_image_refused_before_loading(tmp_path, monkeypatch):
    monkeypatch.setattr("napari_brainseg.volume.MAX_VOXELS", 1000)
    nib.save(nib.Nifti1Image(np.zeros((20, 20, 20), np.uint8), np.eye(4)), str(tmp_path / "b.nii"))
    with pytest.raises(ReadError, match="Crop or downsample"):
        read(tmp_path / "b.nii")


# ----------------------------------------------------------------------------- writing


def test_atomic_write_leaves_target_untouched_on_failure(tmp_path):
    target = tmp_path / "keep.png"
    target.write_bytes(b"original")

    def failing(tmp):
        tmp.write_bytes(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        io.atomic_write(target, failing)
    assert target.read_bytes() == b"original"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.png"]


def test_write_png_and_tif_labels(tmp_path):
    lab = np.zeros((10, 12), np.uint8)
    lab[2:4, 3:5] = 1
    io.write_labels(tmp_path / "l.png", lab)
    np.testing.assert_array_equal(iio.imread(tmp_path / "l.png"), lab)
    io.write_labels(tmp_path / "l3.tif", np.stack([lab, lab]))
    with pytest.raises(ValueError, match="tif"):
        io.write_labels(tmp_path / "l3.png", np.stack([lab, lab]))


def test_copy_is_independent_of_source_name(tmp_path, colin_path):
    # A scan with spaces and unicode in its name opens like any other.
    dst = tmp_path / "scan with spaces é.nii.gz"
    shutil.copy(colin_path, dst)
    (vol,) = read(dst)
    assert vol.name == "scan with spaces é"


@pytest.mark.parametrize(("name", "values"), [("m.png", [0, 70000]), ("m.png", [-3, 1]),
                                              ("m.bmp", [0, 300]), ("m.nii.gz", [0, 5e9]),
                                              ("m.tif", [0, 0.5])])
def test_label_values_a_format_cannot_hold_are_refused_not_wrapped(tmp_path, name, values):
    from napari_brainseg.io import write_labels

    labels = np.zeros((16, 16), np.float64 if isinstance(values[1], float) else np.int64)
    labels[0, :2] = values
    with pytest.raises(ValueError, match="labels|label values"):
        write_labels(tmp_path / name, labels)
    assert not (tmp_path / name).exists()


@pytest.mark.parametrize(("name", "values"), [("m.png", [0, 70]), ("m.png", [0, 65535]),
                                              ("m.tif", [-3, 70000]), ("m.nii.gz", [-3, 70000]),
                                              ("m.nii.gz", [0, 3_000_000_000])])
def test_label_values_round_trip_exactly(tmp_path, name, values):
    from napari_brainseg.io import read, write_labels

    labels = np.zeros((16, 16), np.int64)
    labels[0, :2] = values
    write_labels(tmp_path / name, labels)
    (back,) = read(tmp_path / name, with_mask=False)
    got = np.asarray(back.data)
    assert sorted({int(v) for v in got.ravel()}) == sorted({0, *values})


def test_a_sidecar_file_in_masks_is_not_taken_for_the_mask(tmp_path):
    from napari_brainseg.io import mask_for

    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    img = tmp_path / "images" / "a.png"
    iio.imwrite(img, np.zeros((16, 16), np.uint8))
    (tmp_path / "masks" / "a.json").write_text("{}")
    assert mask_for(img) is None
    iio.imwrite(tmp_path / "masks" / "a.png", np.zeros((16, 16), np.uint8))
    assert mask_for(img) == tmp_path / "masks" / "a.png"


def test_a_saved_prediction_reopens_as_labels_and_is_never_a_scan_or_ground_truth(tmp_path):
    from napari_brainseg.io import find_pairs, read

    img = (np.random.default_rng(0).random((32, 32)) * 200).astype(np.uint8)
    iio.imwrite(tmp_path / "scan.png", img)
    iio.imwrite(tmp_path / "scan_mask.png", (img > 150).astype(np.uint8) * 255)
    iio.imwrite(tmp_path / "scan_pred.png", (img > 100).astype(np.uint8))
    iio.imwrite(tmp_path / "scan_tumour.png", (img > 90).astype(np.uint8))  # an old output
    for name in ("scan_pred.png", "scan_tumour.png"):
        (pred,) = read(tmp_path / name)
        assert pred.kind == "labels" and pred.name == "scan prediction"
        assert pred.metadata["prediction"]
    pairs = find_pairs(tmp_path)
    assert [(p.image.name, p.mask.name) for p in pairs] == [("scan.png", "scan_mask.png")]
    scan, truth = read(tmp_path / "scan.png")
    assert truth.kind == "labels" and truth.name == "scan ground truth"


# ----------------------------------------------------------------------------- issue 15: scale


def _count_scandir(monkeypatch) -> list:
    import os

    calls = []
    real = os.scandir

    def scandir(path="."):
        calls.append(str(path))
        return real(path)
    monkeypatch.setattr(os, "scandir", scandir)
    return calls


def test_pairing_lists_each_folder_once_not_once_per_image(tmp_path, monkeypatch):
    from napari_brainseg.io import find_pairs

    n = 3000
    for sub in ("images", "masks"):
        (tmp_path / sub).mkdir()
    for k in range(n):  # empty files: pairing goes by names only
        (tmp_path / "images" / f"s{k}.png").touch()
        if k % 3:
            (tmp_path / "masks" / f"s{k}.png").touch()
    (tmp_path / "images" / "x.png").touch()
    (tmp_path / "images" / "x_mask.tif").touch()

    def no_probe(folder, names):
        raise AssertionError(f"pairing probed the disk in {folder}; it must use the listing")
    monkeypatch.setattr(io, "_probe", no_probe)
    calls = _count_scandir(monkeypatch)
    pairs = find_pairs(tmp_path)
    # the folder, images/, masks/ (and a look for labels/): once each, whatever n is
    assert len(calls) == len(set(calls)) <= 4
    assert len(pairs) == n + 1
    got = {p.image.name: p.mask for p in pairs}
    assert got["s1.png"] == tmp_path / "masks" / "s1.png" and got["s3.png"] is None
    assert got["x.png"] == tmp_path / "images" / "x_mask.tif"
    calls.clear()
    pairs = find_pairs(tmp_path / "images", recursive=False)  # masks/ lies outside: listed once
    assert len(calls) == len(set(calls)) <= 3 and len(pairs) == n + 1


def test_a_segment_run_pairs_the_folder_once(tmp_path, monkeypatch):
    from napari_brainseg import batch

    (tmp_path / "in").mkdir()
    iio.imwrite(tmp_path / "in" / "a.png", np.zeros((16, 16), np.uint8))
    items = batch.list_inputs(tmp_path / "in", exclude=tmp_path / "out")

    def again(*a, **k):
        raise AssertionError("the inputs were listed and paired a second time")
    monkeypatch.setattr(batch, "list_inputs", again)
    gen = batch.iter_segment_folder(tmp_path / "in", tmp_path / "out", predictor=None,
                                    items=items[:0])
    assert list(gen) == []
    assert (tmp_path / "out" / "results.csv").exists()


def test_a_scan_too_large_to_segment_is_refused_before_it_is_read(tmp_path, monkeypatch):
    """Segmenting needs 34 bytes a voxel, reading float32 17: with room for the read only, the
    segment run refuses from the header. The pixel data is cut short, so a read that went
    ahead would fail with 'truncated' instead."""
    from napari_brainseg import batch
    from napari_brainseg.volume import SEGMENT_BYTES_PER_VOXEL, reading_for

    path = tmp_path / "scan.nii.gz"
    nib.save(nib.Nifti1Image(np.random.default_rng(0).random((48, 48, 40), np.float32),
                             np.eye(4)), str(path))
    path.write_bytes(path.read_bytes()[:20000])
    n = 48 * 48 * 40
    monkeypatch.setattr("napari_brainseg.volume.available_memory", lambda: n * 25)
    with pytest.raises(ReadError, match="truncated or corrupt"):
        read(path)  # the read alone fits: it goes ahead and meets the cut data
    with pytest.raises(ReadError, match=r"scan.nii.gz: segmenting this image \(92,160 voxels\) "
                       r"needs about 3 MiB of memory, more than the 2 MiB free on this machine"):
        with reading_for("segmenting", SEGMENT_BYTES_PER_VOXEL):
            read(path)
    (res,) = list(batch.iter_segment_folder(path, tmp_path / "out", predictor=None))
    assert res.status == "failed" and "segmenting this image" in res.error
    monkeypatch.setattr("napari_brainseg.volume.available_memory", lambda: n * 40)
    with pytest.raises(ReadError, match="truncated or corrupt"), \
            reading_for("segmenting", SEGMENT_BYTES_PER_VOXEL):
        read(path)  # room for both: the header check passes


def test_mask_lookup_survives_a_name_too_long_to_probe(tmp_path):
    from napari_brainseg.io import find_pairs, mask_for

    long = tmp_path / ("x" * 250 + ".png")
    iio.imwrite(long, np.zeros((16, 16), np.uint8))
    assert mask_for(long) is None  # "<250 x>_mask.png" exceeds NAME_MAX: no mask, no OSError
    assert [p.image for p in find_pairs(tmp_path)] == [long]


def test_napari_declines_a_big_foreign_folder_after_a_bounded_look(tmp_path, monkeypatch):
    from napari_brainseg._reader import get_reader

    junk = tmp_path / "junk"
    (junk / "deep" / "deeper").mkdir(parents=True)
    for k in range(3000):
        (junk / f"note{k}.txt").touch()
        (junk / f"blob{k}").touch()  # suffix-less: each could be DICOM, but few are opened
    (junk / "deep" / "deeper" / "late.png").touch()  # beyond the look: not found, declined
    probes = []
    monkeypatch.setattr(io, "_looks_like_dicom", lambda p: probes.append(p) or False)
    calls = _count_scandir(monkeypatch)
    assert get_reader(str(junk)) is None
    assert len(probes) <= io.CAN_READ_PROBES and len(calls) == 1

    monkeypatch.undo()
    dicom = tmp_path / "export" / "PA0" / "ST0" / "SE0"
    make_dicom_series(dicom, n=2)
    assert get_reader(str(tmp_path / "export")) is not None  # nested DICOM, few entries
    (tmp_path / "set" / "images").mkdir(parents=True)
    assert get_reader(str(tmp_path / "set")) is not None
    (tmp_path / "empty").mkdir()
    assert get_reader(str(tmp_path / "empty")) is None
