"""End-to-end: open files through the plugin in a real viewer, save labels with the writer."""

import nibabel as nib
import numpy as np
from pydicom.data import get_testdata_file

from napari_brainseg.io import write_mat


def test_colin27_opens_through_plugin(make_napari_viewer_proxy, colin_path, tmp_path):
    viewer = make_napari_viewer_proxy()
    layers = viewer.open(str(colin_path), plugin="napari-brainseg")
    assert len(layers) == 1
    layer = layers[0]
    assert layer.data.shape == (181, 217, 181)
    np.testing.assert_allclose(layer.scale, (1, 1, 1))
    assert "affine" in layer.metadata and "native" in layer.metadata

    # A labels layer made on the scan and saved through the plugin's writer lands on the scan grid.
    labels = viewer.add_labels(np.zeros(layer.data.shape, np.uint8), name="mask",
                               scale=layer.scale, metadata=layer.metadata)
    labels.data[90, 100:110, 80:90] = 1
    out = tmp_path / "mask.nii.gz"
    written = labels.save(str(out), plugin="napari-brainseg")
    assert written
    back = nib.load(str(out))
    native = nib.load(str(colin_path))
    assert back.shape == native.shape
    np.testing.assert_allclose(back.affine, native.affine)
    assert int(np.asarray(back.dataobj).sum()) == 100


def test_dicom_and_mat_open(make_napari_viewer_proxy, tmp_path):
    viewer = make_napari_viewer_proxy()
    (mr,) = viewer.open(get_testdata_file("MR_small.dcm"), plugin="napari-brainseg")
    assert mr.data.shape == (64, 64)
    img = np.random.default_rng(0).integers(0, 500, (32, 40)).astype(np.int16)
    mask = np.zeros((32, 40), np.uint8)
    mask[4:8, 4:8] = 1
    write_mat(tmp_path / "7.mat", img, mask, label=3)
    image, labels = viewer.open(str(tmp_path / "7.mat"), plugin="napari-brainseg")
    assert labels.__class__.__name__ == "Labels" and labels.data.sum() == 16
    assert image.metadata["tumour_type"] == "pituitary"


def test_broken_file_notifies_and_adds_nothing(make_napari_viewer_proxy, tmp_path, monkeypatch):
    import napari_brainseg._reader as reader

    shown = []
    monkeypatch.setattr("napari.utils.notifications.show_error", shown.append)
    viewer = make_napari_viewer_proxy()
    bad = tmp_path / "broken.nii.gz"
    bad.write_bytes(b"\x1f\x8b\x08\x00" + b"\x00" * 30)
    assert reader.get_reader(str(bad)) is not None
    layers = viewer.open(str(bad), plugin="napari-brainseg")
    assert layers == []
    assert len(viewer.layers) == 0
    assert shown and "broken.nii.gz" in shown[0]


def test_reader_declines_foreign_files(tmp_path):
    from napari_brainseg._reader import get_reader

    (tmp_path / "a.csv").write_text("1,2")
    assert get_reader(str(tmp_path / "a.csv")) is None


def test_sample_data_loads(make_napari_viewer_proxy):
    viewer = make_napari_viewer_proxy()
    viewer.open_sample("napari-brainseg", "glioma")
    assert [type(layer).__name__ for layer in viewer.layers] == ["Image", "Labels"]
    assert viewer.layers[1].data.max() == 1


def test_opening_a_file_again_never_touches_edited_labels(make_napari_viewer_proxy, tmp_path):
    import imageio.v3 as iio

    iio.imwrite(tmp_path / "scan.png", np.random.default_rng(0).integers(0, 255, (32, 32),
                                                                         np.uint8))
    mask = np.zeros((32, 32), np.uint8)
    mask[5:9, 5:9] = 1
    iio.imwrite(tmp_path / "scan_mask.png", mask)
    on_disk = (tmp_path / "scan_mask.png").read_bytes()
    viewer = make_napari_viewer_proxy()
    _, labels = viewer.open(str(tmp_path / "scan.png"), plugin="napari-brainseg")
    labels.paint((20, 20), 1)  # the user's correction
    edited = labels.data.copy()
    assert edited[20, 20] == 1 and not np.array_equal(edited > 0, mask > 0)  # a real edit
    _, again = viewer.open(str(tmp_path / "scan.png"), plugin="napari-brainseg")  # opened again
    assert len(viewer.layers) == 4 and again is not labels
    # the new layer shows the file, not the edit, and shares no memory with the edited layer
    np.testing.assert_array_equal(np.asarray(again.data) > 0, mask > 0)
    assert not np.shares_memory(np.asarray(again.data), np.asarray(labels.data))
    again.paint((28, 28), 1)
    np.testing.assert_array_equal(labels.data, edited)  # painting the copy left the edit alone
    assert (tmp_path / "scan_mask.png").read_bytes() == on_disk  # reading never writes


def test_new_labels_layer_without_metadata_saves_where_it_was_painted(
        make_napari_viewer_proxy, tmp_path):
    """A Labels layer with no plugin metadata (napari's "New labels layer") is not mirrored."""
    from napari_brainseg.io import read

    src = tmp_path / "scan.nii.gz"
    rng = np.random.default_rng(0)
    nib.save(nib.Nifti1Image(rng.random((14, 12, 10)).astype(np.float32),
                             np.diag([1.5, 1.0, 2.0, 1.0])), str(src))
    viewer = make_napari_viewer_proxy()
    (scan,) = viewer.open(str(src), plugin="napari-brainseg")
    labels = viewer.add_labels(np.zeros(scan.data.shape, np.uint8), name="painted")
    labels.data[1, 2, 3] = 1
    out = tmp_path / "painted.nii.gz"
    assert labels.save(str(out), plugin="napari-brainseg")
    (back,) = read(out, with_mask=False)
    assert [tuple(p) for p in np.argwhere(back.data > 0)] == [(1, 2, 3)]
    # It took the scan's own grid: the file overlays the scan in any other viewer.
    np.testing.assert_allclose(nib.load(str(out)).affine, nib.load(str(src)).affine)

    # With no scan of that shape in the viewer it still reads back where it was painted.
    viewer.layers.remove(scan)
    labels.save(str(tmp_path / "alone.nii.gz"), plugin="napari-brainseg")
    (alone,) = read(tmp_path / "alone.nii.gz", with_mask=False)
    assert [tuple(p) for p in np.argwhere(alone.data > 0)] == [(1, 2, 3)]


def test_a_prediction_reopens_is_corrected_on_save_and_becomes_a_training_pair(
        make_napari_viewer_proxy, tmp_path):
    """Batch output -> viewer -> correction -> saved and marked -> training pair (issue 16)."""
    import imageio.v3 as iio

    from napari_brainseg._widgets import TrainWidget
    from napari_brainseg.batch_inputs import corrected_pairs
    from napari_brainseg.io import find_pairs
    from napari_brainseg.provenance import is_corrected, record, write_sidecar

    img = np.random.default_rng(0).integers(0, 255, (32, 32), np.uint8)
    pred = np.zeros((32, 32), np.uint8)
    pred[5:9, 5:9] = 1
    (tmp_path / "scans").mkdir()
    (tmp_path / "results").mkdir()
    iio.imwrite(tmp_path / "scans" / "scan.png", img)
    saved = tmp_path / "results" / "scan_pred.png"
    iio.imwrite(saved, pred)
    write_sidecar(saved, record(options={"threshold": 0.5}))  # as brainseg segment leaves it
    viewer = make_napari_viewer_proxy()
    (scan,) = viewer.open(str(tmp_path / "scans" / "scan.png"), plugin="napari-brainseg")
    (layer,) = viewer.open(str(saved), plugin="napari-brainseg")
    assert type(layer).__name__ == "Labels" and layer.name == "scan prediction"
    np.testing.assert_allclose(layer.get_color(1)[:3], (0, 1, 1))  # predictions are cyan
    assert not is_corrected(saved)
    layer.paint((20, 20), 1)  # the user's correction
    assert layer.save(str(saved), plugin="napari-brainseg")
    assert is_corrected(saved)
    np.testing.assert_array_equal(iio.imread(saved) > 0, layer.data > 0)
    assert [(s.name, p.name) for s, p in corrected_pairs(tmp_path / "scans",
                                                         tmp_path / "results").pairs] == \
        [("scan.png", "scan_pred.png")]
    # The Train tab's "Add to training folder" takes the reopened prediction as it is.
    w = TrainWidget(viewer)
    viewer.window.add_dock_widget(w)
    w.reset_choices()
    w.folder.value = str(tmp_path / "training")
    w.image.value = scan
    assert w.labels_layer.value is layer  # the prediction is the default labels
    w.add_to_folder()
    pairs = find_pairs(tmp_path / "training")
    assert [(p.image.name, p.mask.name) for p in pairs] == [("scan.tif", "scan.png")]
    np.testing.assert_array_equal(iio.imread(pairs[0].mask) > 0, layer.data > 0)
