import numpy as np
from napari.layers import Labels

from napari_brainseg._widgets import (
    FILE_CHOICE,
    RECENT_MODELS,
    BatchSegmentWidget,
    SegmentWidget,
)
from napari_brainseg.synthetic import make_phantom, write_sample_folder


def _use_model(widget, path):
    widget.model.choice.reset_choices()
    widget.model.choice.value = FILE_CHOICE
    widget.model.file.value = str(path)


def test_segment_adds_editable_labels_and_never_overwrites(make_napari_viewer_proxy, qtbot,
                                                           tiny_model):
    viewer = make_napari_viewer_proxy()
    ph = make_phantom((64, 64), "glioma", seed=1, skull=False)
    layer = viewer.add_image(ph.image, name="scan", scale=(0.5, 0.5), metadata={"id": 3})
    w = SegmentWidget(viewer)
    viewer.window.add_dock_widget(w)
    w.reset_choices()
    w.image.value = layer
    _use_model(w, tiny_model)
    w.show_prob.value = True
    w.run_button.clicked.emit()
    qtbot.waitUntil(lambda: "scan prediction" in viewer.layers, timeout=60_000)
    qtbot.waitUntil(lambda: w._worker is None, timeout=10_000)
    lab = viewer.layers["scan prediction"]
    assert isinstance(lab, Labels) and lab.editable
    np.testing.assert_allclose(lab.scale, (0.5, 0.5))
    assert lab.metadata["id"] == 3 and "mm²" in w.status.value
    assert "scan tumour probability" in viewer.layers
    # The user corrects the prediction with the brush...
    lab.paint((2, 2), 1)
    edited = lab.data.copy()
    # ...and segments again: a new layer appears, the corrected one is untouched.
    w.show_prob.value = False
    w.run_button.clicked.emit()
    qtbot.waitUntil(lambda: len([x for x in viewer.layers if x.name.startswith("scan prediction")
                                 and "probability" not in x.name]) == 2, timeout=60_000)
    np.testing.assert_array_equal(viewer.layers["scan prediction"].data, edited)


def test_segment_volume_with_brain_mask(make_napari_viewer_proxy, qtbot, tiny_model):
    viewer = make_napari_viewer_proxy()
    vol = np.stack([make_phantom((64, 64), "meningioma", seed=s, skull=False).image
                    for s in range(3)])
    layer = viewer.add_image(vol, name="vol", scale=(3.0, 1.0, 1.0))
    brain = viewer.add_labels(np.zeros(vol.shape, np.uint8), name="brain")
    w = SegmentWidget(viewer)
    viewer.window.add_dock_widget(w)
    w.reset_choices()
    w.image.value, w.brain.value = layer, brain
    _use_model(w, tiny_model)
    w.run_button.clicked.emit()
    qtbot.waitUntil(lambda: "vol prediction" in viewer.layers, timeout=60_000)
    assert viewer.layers["vol prediction"].data.sum() == 0  # empty brain mask: nothing is tumour
    assert "mm³" in w.status.value and w.progress.value == 3


def test_batch_widget_table_and_failures(make_napari_viewer_proxy, qtbot, tiny_model, tmp_path,
                                         monkeypatch):
    errors = []
    monkeypatch.setattr("napari_brainseg._widgets.segment.show_error", errors.append)
    write_sample_folder(tmp_path / "in", n=2, shape=(64, 64))
    (tmp_path / "in" / "images" / "bad.png").write_bytes(b"nope")
    viewer = make_napari_viewer_proxy()
    w = BatchSegmentWidget(viewer)
    viewer.window.add_dock_widget(w)
    RECENT_MODELS.append(str(tiny_model))  # a model "trained in this session"
    w.reset_choices()
    w.model.choice.value = str(tiny_model)
    w.input.value = str(tmp_path / "in")
    w.output.value = str(tmp_path / "out")
    w.run_button.clicked.emit()
    qtbot.waitUntil(lambda: w._worker is None and len(w._results) == 3, timeout=60_000)
    statuses = sorted(r.status for r in w._results)
    assert statuses == ["failed", "ok", "ok"]
    assert len(w._rows) == 3 and w.table.shape[0] == 3 and "1 failed" in w.status.value
    assert errors and "failed" in errors[-1]
    assert (tmp_path / "out" / "results.csv").exists()
    ok_row = next(i for i, r in enumerate(w._results) if r.status == "ok")
    w._open_row(ok_row)
    assert len(viewer.layers) == 3  # image + its ground truth + the saved mask
    scan, truth, pred = viewer.layers
    stem = w._results[ok_row].source.name.rsplit(".", 1)[0]
    assert [type(x).__name__ for x in viewer.layers] == ["Image", "Labels", "Labels"]
    assert (truth.name, pred.name) == (f"{stem} ground truth", f"{stem} prediction")
    assert not np.allclose(pred.get_color(1), truth.get_color(1))  # never the same colour


def test_hostile_checkpoint_is_a_notification_not_a_layer(make_napari_viewer_proxy, tmp_path,
                                                          monkeypatch):
    import pickle

    class Evil:
        def __reduce__(self):
            return (exec, ("open('PWNED', 'w').write('x')",))

    monkeypatch.chdir(tmp_path)
    evil = tmp_path / "evil.pt"
    evil.write_bytes(pickle.dumps({"format": "napari-brainseg-unet", "x": Evil()}))
    errors = []
    monkeypatch.setattr("napari_brainseg._widgets.segment.show_error", errors.append)
    viewer = make_napari_viewer_proxy()
    viewer.add_image(make_phantom((64, 64), "glioma", seed=1, skull=False).image, name="scan")
    w = SegmentWidget(viewer)
    w.reset_choices()
    w.image.value = viewer.layers["scan"]
    _use_model(w, evil)
    w.run_button.clicked.emit()
    assert len(errors) == 1 and "refused" in errors[0]
    assert len(viewer.layers) == 1 and w._worker is None
    assert not (tmp_path / "PWNED").exists()


def test_segment_volume_moves_to_the_largest_lesion(make_napari_viewer_proxy, qtbot, tiny_model):
    from napari_brainseg.predict import largest_lesion_centre

    viewer = make_napari_viewer_proxy()
    # Blank slices around the tumour: what is under test is where the view goes, not how few
    # false lesions the few-second tiny model makes on tumour-free phantoms (it makes some, and
    # which of them wins changed with the trainer's memory layout).
    slices = [np.zeros((64, 64), np.float32) for _ in range(12)]
    for z in (7, 8, 9):
        slices[z] = make_phantom((64, 64), "glioma", seed=40, skull=False).image
    layer = viewer.add_image(np.stack(slices), name="vol", scale=(2.0, 1.0, 1.0))
    viewer.dims.set_point(0, 0)
    w = SegmentWidget(viewer)
    viewer.window.add_dock_widget(w)
    w.reset_choices()
    w.image.value = layer
    w.skull.value = "never"
    _use_model(w, tiny_model)
    w.run_button.clicked.emit()
    qtbot.waitUntil(lambda: "vol prediction" in viewer.layers, timeout=60_000)
    mask = viewer.layers["vol prediction"].data
    centre = largest_lesion_centre(mask)
    assert centre is not None and 7 <= centre[0] <= 9
    assert viewer.dims.current_step[0] == centre[0]  # the view moved there
    assert viewer.layers.selection.active.name == "vol prediction"
    # ...and lists every lesion, the largest first (the one the view moved to).
    assert w.lesions.rows and w.lesions.rows[0].centre == centre
    assert w.lesions.table.shape[0] == len(w.lesions.rows)
    assert "vol prediction" in w.lesions.title.tooltip


def test_batch_widget_sorts_by_uncertainty(make_napari_viewer_proxy, qtbot, tiny_model,
                                           tmp_path):
    write_sample_folder(tmp_path / "in", n=3, shape=(64, 64))
    viewer = make_napari_viewer_proxy()
    w = BatchSegmentWidget(viewer)
    viewer.window.add_dock_widget(w)
    RECENT_MODELS.append(str(tiny_model))
    w.reset_choices()
    w.model.choice.value = str(tiny_model)
    w.input.value = str(tmp_path / "in")
    w.output.value = str(tmp_path / "out")
    w.uncertain.value = True
    w.run_button.clicked.emit()
    qtbot.waitUntil(lambda: w._worker is None and len(w._results) == 3, timeout=60_000)
    scores = [r.uncertainty for r in w._results]
    assert all(s is not None for s in scores) and scores == sorted(scores, reverse=True)
    names = [r.source.name for r in w._results]
    assert [row[0] for row in w.table.value["data"]] == names  # the table shows that order
    # sample PNGs hold no pixel size: uncertain areas are pixel counts, and say so
    assert all(row[4].endswith("pixels") for row in w.table.value["data"])


def test_threshold_is_the_models_own_until_the_user_takes_it(make_napari_viewer_proxy):
    from napari_brainseg._widgets.segment import _segment_options

    viewer = make_napari_viewer_proxy()
    for w in (SegmentWidget(viewer), BatchSegmentWidget(viewer)):
        viewer.window.add_dock_widget(w)
        assert w.own_threshold.value and w.threshold.native.isHidden()
        assert _segment_options(w).threshold is None  # the model's: 0.6 for the built-in one
        w.own_threshold.value = False
        w.threshold.value = 0.35
        assert not w.threshold.native.isHidden() and _segment_options(w).threshold == 0.35


def test_a_one_slice_nifti_at_1_mm_keeps_its_pixel_size_in_the_widget(tmp_path):
    # The widget took only an affine or a scale other than 1 for real geometry: a one-slice
    # NIfTI (or DICOM) at 1 x 1 mm, whose reader marks its pixel size real, was measured in
    # pixels with a guessed pixel size, while the CLI (Volume.has_geometry) used 1 mm.
    import imageio.v3 as iio
    import nibabel as nib

    from napari_brainseg._reader import read_layers
    from napari_brainseg._widgets.segment import _geometry_known

    img = make_phantom((64, 64), "glioma", seed=1, skull=False).image
    nib.save(nib.Nifti1Image(img.astype(np.float32), np.eye(4)), str(tmp_path / "s.nii.gz"))
    iio.imwrite(tmp_path / "s.png", np.clip(img, 0, 255).astype(np.uint8))
    for name, known in (("s.nii.gz", True), ("s.png", False)):
        (data, kw, _), = read_layers(str(tmp_path / name))
        assert data.ndim == 2 and kw["scale"] == (1.0, 1.0)
        assert _geometry_known(kw["metadata"], kw["scale"]) is known, name
    assert _geometry_known({}, (0.5, 0.5))  # a scale someone set
