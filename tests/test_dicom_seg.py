"""DICOM SEG export (formats/dicom_seg.py): frames land on the source images they reference.

The expected place of every voxel is computed here from the source headers alone (position,
orientation, spacing) and the volume's affine, never through the reader's own reorientation code,
so a wrong mapping back to the source's images fails these tests.
"""

import csv
from pathlib import Path

import numpy as np
import pytest

highdicom = pytest.importorskip("highdicom")

from napari_brainseg.cli import main  # noqa: E402
from napari_brainseg.formats.dicom import display_to_instances, read_dicom  # noqa: E402
from napari_brainseg.formats.dicom_seg import dicom_seg_path, write_dicom_seg  # noqa: E402

ROWS, COLS = 40, 48  # not square: a row/column swap cannot pass
ROW_MM, COL_MM = 0.8, 0.6  # PixelSpacing = [between rows, between columns]
STEP = 2.0

ORIENTATIONS = {  # (row direction, column direction) in LPS, as ImageOrientationPatient
    "axial": ((1, 0, 0), (0, 1, 0)),
    "axial flipped": ((-1, 0, 0), (0, -1, 0)),
    "sagittal": ((0, 1, 0), (0, 0, -1)),
    "coronal": ((1, 0, 0), (0, 0, -1)),
    "oblique": ((np.cos(0.3), np.sin(0.3), 0), (-np.sin(0.3), np.cos(0.3), 0)),
}


def write_series(folder: Path, orientation="axial", n=6, uid="1.2.826.0.1.3680043.8.498.1",
                 seed=0, images=None):
    """An MR series of ``n`` ROWS x COLS slices with random pixels, files in a shuffled order.

    Instance numbers run against the position order, so no order but the positions' is right.
    Returns ``[(path, SOPInstanceUID, ImagePositionPatient, pixels)]`` in position order.
    """
    from pydicom import dcmread
    from pydicom.data import get_testdata_file

    row_cos, col_cos = (np.asarray(v, float) for v in ORIENTATIONS[orientation])
    normal = np.cross(row_cos, col_cos)
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    order = rng.permutation(n)
    for k in range(n):
        ds = dcmread(get_testdata_file("MR_small.dcm"))
        ds.SeriesInstanceUID = uid
        ds.SOPInstanceUID = f"{uid}.{k + 1}"
        ds.InstanceNumber = n - k
        ds.Rows, ds.Columns = ROWS, COLS
        ds.PixelSpacing = [ROW_MM, COL_MM]
        ds.ImageOrientationPatient = [*row_cos.round(6).tolist(), *col_cos.round(6).tolist()]
        ipp = np.array([-20.0, -30.0, 10.0]) + STEP * k * normal
        ds.ImagePositionPatient = ipp.round(4).tolist()
        pixels = (rng.integers(0, 1000, (ROWS, COLS)) if images is None
                  else images[k]).astype(np.int16)
        ds.PixelData = pixels.tobytes()
        p = folder / f"IM{order[k]:04d}.dcm"
        ds.save_as(p)
        out.append((p, ds.SOPInstanceUID, np.asarray(ds.ImagePositionPatient, float), pixels))
    return out


def display_index(volume, ipp, orientation, row, col):
    """Where source voxel (row, col) of the image at ``ipp`` lies in the display array."""
    row_cos, col_cos = (np.asarray(v, float) for v in ORIENTATIONS[orientation])
    lps = ipp + col * COL_MM * row_cos + row * ROW_MM * col_cos
    ras = np.array([-lps[0], -lps[1], lps[2], 1.0])
    ijk = np.linalg.solve(volume.affine, ras)[:3]
    assert np.allclose(ijk, np.round(ijk), atol=1e-3)
    return tuple(int(i) for i in np.round(ijk))


def frames_by_instance(seg_path):
    """{referenced SOP Instance UID: (frame pixels, ImagePositionPatient)} read with pydicom."""
    import pydicom

    ds = pydicom.dcmread(seg_path)
    pixels = ds.pixel_array.reshape(-1, int(ds.Rows), int(ds.Columns))
    out = {}
    for i, item in enumerate(ds.PerFrameFunctionalGroupsSequence):
        uid = item.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
        assert uid not in out, "two frames reference one image"
        out[str(uid)] = (pixels[i], [float(v) for v in
                                     item.PlanePositionSequence[0].ImagePositionPatient])
    return ds, out


@pytest.mark.parametrize("orientation", list(ORIENTATIONS))
def test_a_painted_voxel_comes_out_on_its_instance_row_and_column(tmp_path, orientation):
    series = write_series(tmp_path / "exam", orientation)
    (volume,) = read_dicom(tmp_path / "exam")
    _, uid, ipp, pixels = series[2]
    row, col = 5, 40
    where = display_index(volume, ipp, orientation, row, col)
    assert volume.data[where] == pixels[row, col]  # the reader put that voxel there
    mask = np.zeros(volume.data.shape, np.uint8)
    mask[where] = 1
    out = write_dicom_seg(mask, volume, tmp_path / "exam_pred.dcm")
    ds, frames = frames_by_instance(out)
    assert list(frames) == [uid]  # empty frames are left out: only the painted image
    frame, position = frames[uid]
    assert np.argwhere(frame).tolist() == [[row, col]]
    np.testing.assert_allclose(position, ipp, atol=1e-3)
    assert ds.Modality == "SEG" and ds.SegmentationType == "BINARY"
    assert ds.ReferencedSeriesSequence[0].SeriesInstanceUID == "1.2.826.0.1.3680043.8.498.1"


def test_a_whole_mask_matches_the_source_geometry_voxel_by_voxel(tmp_path):
    series = write_series(tmp_path / "exam", "sagittal", n=5)
    (volume,) = read_dicom(tmp_path / "exam")
    rng = np.random.default_rng(1)
    mask = (rng.random(volume.data.shape) < 0.05).astype(np.uint8)
    mask[mask > 0] = rng.integers(1, 3, int(mask.sum()))  # every label counts as tumour
    expected = np.zeros((len(series), ROWS, COLS), bool)
    for k, (_, _, ipp, _) in enumerate(series):
        for r in range(ROWS):
            for c in range(COLS):
                expected[k, r, c] = mask[display_index(volume, ipp, "sagittal", r, c)] > 0
    assert expected.sum() == (mask > 0).sum()
    out = write_dicom_seg(mask, tmp_path / "exam", tmp_path / "seg.dcm")  # a folder as source
    seg = highdicom.seg.segread(out)
    uids = [u for _, u, _, _ in series]
    got = seg.get_pixels_by_source_instance(uids, segment_numbers=[1],
                                            combine_segments=True)
    np.testing.assert_array_equal(got > 0, expected)
    np.testing.assert_array_equal(display_to_instances(mask, volume) > 0, expected)


def test_the_segment_is_a_tumour_found_automatically_by_this_package(tmp_path):
    from napari_brainseg import __version__
    from napari_brainseg.provenance import record

    write_series(tmp_path / "exam", n=3)
    (volume,) = read_dicom(tmp_path / "exam")
    model = tmp_path / "model.pt"
    model.write_bytes(b"weights")
    rec = record(model, {"threshold": 0.4})
    mask = np.zeros(volume.data.shape, np.uint8)
    mask[1, 10:14, 10:14] = 1
    seg = highdicom.seg.segread(write_dicom_seg(mask, volume, tmp_path / "s.dcm", provenance=rec))
    (segment,) = seg.SegmentSequence
    assert segment.SegmentLabel == "Tumour"
    assert segment.SegmentAlgorithmType == "AUTOMATIC"
    assert segment.SegmentedPropertyTypeCodeSequence[0].CodeValue == "108369006"  # neoplasm
    assert segment.SegmentedPropertyCategoryCodeSequence[0].CodeValue == "49755003"
    algo = segment.SegmentationAlgorithmIdentificationSequence[0]
    assert algo.AlgorithmName == "napari-brainseg" and algo.AlgorithmVersion == __version__
    assert rec["model"]["sha256"] in algo.AlgorithmParameters
    assert "threshold=0.4" in algo.AlgorithmParameters
    assert seg.SoftwareVersions == __version__
    assert seg.StudyInstanceUID == read_header(tmp_path / "exam").StudyInstanceUID
    assert seg.FrameOfReferenceUID == read_header(tmp_path / "exam").FrameOfReferenceUID


def read_header(folder):
    import pydicom

    return pydicom.dcmread(next(folder.glob("*.dcm")), stop_before_pixels=True)


def test_datasets_as_source_give_the_same_frames(tmp_path):
    import pydicom

    series = write_series(tmp_path / "exam", "axial flipped", n=4)
    (volume,) = read_dicom(tmp_path / "exam")
    mask = np.zeros(volume.data.shape, np.uint8)
    mask[0, :5, :7] = 1
    mask[3, 20, 30] = 1
    a = write_dicom_seg(mask, volume, tmp_path / "a.dcm")
    datasets = [pydicom.dcmread(p) for p, *_ in reversed(series)]
    b = write_dicom_seg(mask, datasets, tmp_path / "b.dcm")
    fa, fb = frames_by_instance(a)[1], frames_by_instance(b)[1]
    assert sorted(fa) == sorted(fb) and len(fa) == 2
    for uid in fa:
        np.testing.assert_array_equal(fa[uid][0], fb[uid][0])


def test_an_existing_file_is_never_replaced_without_overwrite(tmp_path):
    write_series(tmp_path / "exam", n=3)
    (volume,) = read_dicom(tmp_path / "exam")
    target = tmp_path / "exam_pred.dcm"
    target.write_bytes(b"the user's file")
    mask = np.ones(volume.data.shape, np.uint8)
    with pytest.raises(FileExistsError, match="overwrite"):
        write_dicom_seg(mask, volume, target)
    assert target.read_bytes() == b"the user's file"
    write_dicom_seg(mask, volume, target, overwrite=True)
    assert len(frames_by_instance(target)[1]) == 3


def test_a_failed_write_leaves_no_file(tmp_path, monkeypatch):
    write_series(tmp_path / "exam", n=3)
    (volume,) = read_dicom(tmp_path / "exam")

    def half_then_full_disk(self, filename, *a, **k):
        Path(filename).write_bytes(b"DICM half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(highdicom.seg.Segmentation, "save_as", half_then_full_disk)
    with pytest.raises(OSError, match="No space"):
        write_dicom_seg(np.ones(volume.data.shape), volume, tmp_path / "out" / "s.dcm")
    assert list((tmp_path / "out").iterdir()) == []


def test_an_empty_mask_gives_a_seg_that_says_no_tumour(tmp_path):
    write_series(tmp_path / "exam", n=4)
    (volume,) = read_dicom(tmp_path / "exam")
    _, frames = frames_by_instance(write_dicom_seg(np.zeros(volume.data.shape, np.uint8),
                                                   volume, tmp_path / "s.dcm"))
    assert len(frames) == 4 and not any(f.any() for f, _ in frames.values())


def test_a_localizer_left_out_by_the_reader_is_not_referenced(tmp_path):
    from pydicom import dcmread

    series = write_series(tmp_path / "exam", n=4)
    scout = dcmread(series[0][0])
    scout.SOPInstanceUID = "1.2.826.0.1.3680043.8.498.99"
    scout.ImageOrientationPatient = [0, 1, 0, 0, 0, -1]
    scout.save_as(tmp_path / "exam" / "scout.dcm")
    (volume,) = read_dicom(tmp_path / "exam")
    assert volume.data.shape[0] == 4 and any("localizer" in w for w in volume.warnings)
    _, frames = frames_by_instance(write_dicom_seg(np.ones(volume.data.shape), volume,
                                                   tmp_path / "s.dcm"))
    assert sorted(frames) == sorted(u for _, u, _, _ in series)


def test_one_dicom_file_is_its_own_single_frame(tmp_path):
    from pydicom.data import get_testdata_file

    src = get_testdata_file("MR_small.dcm")
    (volume,) = read_dicom(Path(src))
    mask = np.zeros(volume.data.shape, np.uint8)
    mask[7, 50] = 1
    _, frames = frames_by_instance(write_dicom_seg(mask, src, tmp_path / "s.dcm"))
    ((frame, _),) = frames.values()
    assert np.argwhere(frame).tolist() == [[7, 50]]


def test_bad_sources_and_masks_are_refused_with_what_to_do(tmp_path):
    from napari_brainseg.volume import Volume

    write_series(tmp_path / "study" / "a", n=3, uid="1.2.826.0.1.3680043.8.498.10")
    write_series(tmp_path / "study" / "b", n=4, uid="1.2.826.0.1.3680043.8.498.20")
    with pytest.raises(ValueError, match="holds 2 DICOM series"):
        write_dicom_seg(np.zeros((3, ROWS, COLS)), tmp_path / "study", tmp_path / "s.dcm")
    a, b = read_dicom(tmp_path / "study")
    with pytest.raises(ValueError, match="does not fit the DICOM series"):
        write_dicom_seg(np.zeros(b.data.shape), a, tmp_path / "s.dcm")
    assert write_dicom_seg(np.ones(b.data.shape), b, tmp_path / "s.dcm").is_file()
    png = Volume(np.zeros((64, 64), np.float32), (1.0, 1.0), name="slice")
    with pytest.raises(ValueError, match="can only label a DICOM series"):
        write_dicom_seg(np.zeros((64, 64)), png, tmp_path / "t.dcm")
    assert not (tmp_path / "t.dcm").exists()


def test_the_reader_skips_a_seg_in_a_series_folder_and_refuses_one_alone(tmp_path):
    from napari_brainseg.io import ReadError

    write_series(tmp_path / "exam", n=3)
    (volume,) = read_dicom(tmp_path / "exam")
    seg = write_dicom_seg(np.ones(volume.data.shape), volume, tmp_path / "exam" / "seg.dcm")
    (again,) = read_dicom(tmp_path / "exam")
    np.testing.assert_array_equal(again.data, volume.data)
    with pytest.raises(ReadError, match="DICOM SEG"):
        read_dicom(seg)


def test_seg_name_follows_the_mask_name():
    assert dicom_seg_path(Path("out/sub/exam_pred.nii.gz")) == Path("out/sub/exam_pred.dcm")
    assert dicom_seg_path(Path("o/exam_series2_pred.nii.gz")) == Path("o/exam_series2_pred.dcm")


# --------------------------------------------------------------------------- the CLI


def phantom_series(folder: Path, n=4):
    from napari_brainseg.synthetic import make_phantom

    images = [make_phantom((ROWS, COLS), "glioma", seed=3, skull=False).image
              for _ in range(n)]
    return write_series(folder, n=n, images=[np.round(im).astype(np.int16) for im in images])


def test_segment_dicom_seg_writes_a_seg_beside_the_mask(tmp_path, tiny_model):
    from napari_brainseg.io import read

    series = phantom_series(tmp_path / "in" / "exam")
    args = ["segment", str(tmp_path / "in"), str(tmp_path / "out"), "--model", str(tiny_model),
            "--no-skull-strip", "--dicom-seg", "-q"]
    assert main(args) == 0
    (row,) = list(csv.DictReader(open(tmp_path / "out" / "results.csv")))
    mask_path = Path(row["output"])
    seg_path = dicom_seg_path(mask_path)
    assert seg_path.is_file() and seg_path.parent == mask_path.parent
    assert seg_path.name.endswith(".dcm") and seg_path.name.startswith("exam_")
    (volume,) = read_dicom(tmp_path / "in" / "exam")
    mask = read(mask_path)[0].data
    assert mask.shape == volume.data.shape and mask.any()  # the model found the tumour
    expected = display_to_instances(mask, volume) > 0
    seg = highdicom.seg.segread(seg_path)
    uids = [u for _, u, _, _ in series]
    got = seg.get_pixels_by_source_instance(uids, segment_numbers=[1], combine_segments=True,
                                            ignore_spatial_locations=False)
    np.testing.assert_array_equal(got > 0, expected)
    # A re-run keeps it; a re-run after it was deleted writes it again from the mask.
    mtime = seg_path.stat().st_mtime_ns
    assert main(args) == 0 and seg_path.stat().st_mtime_ns == mtime
    seg_path.unlink()
    assert main(args) == 0
    (row,) = list(csv.DictReader(open(tmp_path / "out" / "results.csv")))
    assert row["status"] == "skipped" and "missing DICOM SEG was written" in row["error"]
    np.testing.assert_array_equal(
        highdicom.seg.segread(seg_path).get_pixels_by_source_instance(
            uids, segment_numbers=[1], combine_segments=True) > 0, expected)


def test_segment_dicom_seg_on_png_files_notes_it_and_goes_on(tmp_path, tiny_model, capsys):
    from napari_brainseg.synthetic import write_sample_folder

    write_sample_folder(tmp_path / "in", n=2, shape=(64, 64))
    assert main(["segment", str(tmp_path / "in"), str(tmp_path / "out"), "--model",
                 str(tiny_model), "--dicom-seg", "-q"]) == 0
    rows = list(csv.DictReader(open(tmp_path / "out" / "results.csv")))
    assert [r["status"] for r in rows] == ["ok", "ok"]
    assert all("not a DICOM series" in r["error"] for r in rows)
    assert all(Path(r["output"]).is_file() for r in rows)
    assert not list((tmp_path / "out").rglob("*.dcm"))
    assert capsys.readouterr().err.count("no DICOM SEG") == 2


# --------------------------------------------------------------------------- the napari writer


def test_napari_writer_saves_a_labels_layer_over_a_dicom_series_as_seg(tmp_path):
    from napari_brainseg._reader import get_reader
    from napari_brainseg._writer import write_dicom_seg_layer

    series = write_series(tmp_path / "exam", "coronal", n=4)
    ((data, kwargs, kind),) = get_reader(str(tmp_path / "exam"))(str(tmp_path / "exam"))
    assert kind == "image"
    _, uid, ipp, _ = series[1]
    (volume,) = read_dicom(tmp_path / "exam")
    labels = np.zeros(np.shape(data), np.uint8)
    labels[display_index(volume, ipp, "coronal", 7, 9)] = 1
    # A prediction layer carries its scan's metadata (the Segment tab copies it).
    attrs = {"name": "exam prediction", "metadata": kwargs["metadata"], "scale": kwargs["scale"]}
    (written,) = write_dicom_seg_layer(str(tmp_path / "exam_pred.dcm"), labels, attrs)
    _, frames = frames_by_instance(written)
    assert list(frames) == [uid] and np.argwhere(frames[uid][0]).tolist() == [[7, 9]]


def test_napari_writer_refuses_a_layer_without_a_dicom_series(tmp_path):
    from napari_brainseg._writer import write_dicom_seg_layer

    with pytest.raises(ValueError, match="does not label a DICOM series"):
        write_dicom_seg_layer(str(tmp_path / "x.dcm"), np.ones((8, 64, 64), np.uint8),
                              {"name": "painted", "metadata": {"format": "nifti"}})
    assert not (tmp_path / "x.dcm").exists()


def test_a_series_read_by_a_relative_path_still_exports_after_a_change_of_folder(
        tmp_path, monkeypatch):
    series = write_series(tmp_path / "exam", n=3)
    monkeypatch.chdir(tmp_path)
    (volume,) = read_dicom(Path("exam"))
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")  # napari's working folder is anyone's guess
    _, frames = frames_by_instance(write_dicom_seg(np.ones(volume.data.shape), volume,
                                                   tmp_path / "s.dcm"))
    assert sorted(frames) == sorted(u for _, u, _, _ in series)


def test_each_series_of_a_multi_series_folder_gets_its_own_seg(tmp_path, tiny_model):
    import pydicom

    from napari_brainseg.batch import iter_segment_folder
    from napari_brainseg.predict import Predictor
    from napari_brainseg.progress import drain

    folder = tmp_path / "in" / "exam"  # two series in one folder
    folder.mkdir(parents=True)
    uids = {}
    for name, uid, n in (("a", "1.2.826.0.1.3680043.8.498.31", 3),
                         ("b", "1.2.826.0.1.3680043.8.498.32", 4)):
        series = write_series(tmp_path / name, n=n, uid=uid)
        uids[uid] = {u for _, u, _, _ in series}
        for p, *_ in series:
            p.rename(folder / f"{name}_{p.name}")
    results = drain(iter_segment_folder(tmp_path / "in", tmp_path / "out",
                                        Predictor.from_checkpoint(tiny_model),
                                        skull_strip=False, dicom_seg=True))
    assert [r.status for r in results] == ["ok", "ok"]
    segs = [dicom_seg_path(r.output) for r in results]
    assert len(set(segs)) == 2
    for seg in segs:
        ds = pydicom.dcmread(seg)
        series_uid = ds.ReferencedSeriesSequence[0].SeriesInstanceUID
        referenced = {i.ReferencedSOPInstanceUID
                      for i in ds.ReferencedSeriesSequence[0].ReferencedInstanceSequence}
        assert referenced == uids[series_uid]
    assert {pydicom.dcmread(s).ReferencedSeriesSequence[0].SeriesInstanceUID
            for s in segs} == set(uids)


def test_without_highdicom_dicom_seg_is_refused_once_with_the_install_command(
        tmp_path, monkeypatch, capsys):
    import sys

    write_series(tmp_path / "in" / "exam", n=3)
    monkeypatch.setitem(sys.modules, "highdicom", None)  # import highdicom -> ImportError
    assert main(["segment", str(tmp_path / "in"), str(tmp_path / "out"), "--dicom-seg",
                 "--no-skull-strip", "-q"]) == 2
    assert 'pip install "napari-brainseg[dicom]"' in capsys.readouterr().err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("*.nii.gz"))
