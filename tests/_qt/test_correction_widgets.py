"""The correction loop in the viewer: uncertainty review order, corrected slices, fine-tuning."""

import shutil

import numpy as np

from napari_brainseg._widgets import FILE_CHOICE, RECENT_MODELS, FinetuneWidget, SegmentWidget
from napari_brainseg.synthetic import make_phantom


def test_review_by_uncertainty_then_fine_tune_on_the_corrected_slices(
        make_napari_viewer_proxy, qtbot, tiny_model, tmp_path):
    model = tmp_path / "mine.pt"
    shutil.copy(tiny_model, model)
    viewer = make_napari_viewer_proxy()
    vol = np.stack([make_phantom((48, 48), ["glioma", "meningioma"][s % 2], seed=s,
                                 skull=False).image for s in range(6)])
    image = viewer.add_image(vol, name="vol")
    seg = SegmentWidget(viewer)
    viewer.window.add_dock_widget(seg)
    seg.reset_choices()
    seg.image.value = image
    seg.model.choice.reset_choices()
    seg.model.choice.value = FILE_CHOICE
    seg.model.file.value = str(model)
    seg.skull.value = "never"
    seg.uncertain.value = True
    seg.run_button.clicked.emit()
    qtbot.waitUntil(lambda: "vol prediction" in viewer.layers, timeout=120_000)
    qtbot.waitUntil(lambda: seg._worker is None, timeout=10_000)
    assert "vol uncertainty" in viewer.layers
    assert viewer.layers["vol uncertainty"].data.shape == vol.shape
    review = seg.review
    assert review.next_button.enabled and len(review.ranked) >= 2
    # next / previous walk the slices in uncertainty order
    review.next_button.clicked.emit()
    assert viewer.dims.current_step[0] == review.ranked[0]
    review.next_button.clicked.emit()
    assert viewer.dims.current_step[0] == review.ranked[1]
    review.prev_button.clicked.emit()
    assert viewer.dims.current_step[0] == review.ranked[0]
    assert "rank 1/" in review.info.value and "corrected slices: 0" in review.info.value
    # the user corrects this slice with the brush: it is marked as corrected
    lab = viewer.layers["vol prediction"]
    here = review.ranked[0]
    lab.paint((here, 3, 3), 1, refresh=True)
    lab.paint((here, 40, 40), 1, refresh=True)
    qtbot.waitUntil(lambda: "corrected slices: 1" in review.info.value, timeout=5_000)
    assert "corrected)" in review.info.value
    painted = lab.data.copy()

    ft = FinetuneWidget(viewer)
    viewer.window.add_dock_widget(ft)
    ft.reset_choices()
    ft.image.value = image
    ft.labels_layer.value = lab
    ft.steps.value = 10
    ft.run_button.clicked.emit()
    qtbot.waitUntil(lambda: ft._worker is None and "new model" in ft.status.value,
                    timeout=120_000)
    new = tmp_path / "mine.v2.pt"
    assert new.is_file() and str(new) == RECENT_MODELS[-1]
    assert seg.model.path() == str(new)  # the next Segment uses the fine-tuned model
    assert "1 corrected slices" in ft.status.value
    np.testing.assert_array_equal(lab.data, painted)  # nothing the user painted changed
    assert model.read_bytes() == tiny_model.read_bytes()  # the old model is kept


def test_fine_tune_without_corrections_says_what_to_do(make_napari_viewer_proxy, tmp_path):
    from napari_brainseg._widgets.segment import PREDICTION_KEY

    viewer = make_napari_viewer_proxy()
    image = viewer.add_image(np.zeros((3, 32, 32), np.float32), name="vol")
    mask = np.zeros((3, 32, 32), np.uint8)
    lab = viewer.add_labels(mask.copy(), name="vol prediction",
                            metadata={PREDICTION_KEY: mask, "brainseg_model": "demo"})
    ft = FinetuneWidget(viewer)
    ft.reset_choices()
    ft.image.value, ft.labels_layer.value = image, lab
    assert ft._job() is None  # nothing corrected: a notification, no worker
    assert ft._worker is None


def test_corrected_count_follows_polygon_and_undo(make_napari_viewer_proxy, qtbot):
    from napari_brainseg._widgets.segment import PREDICTION_KEY, UncertainSlices

    viewer = make_napari_viewer_proxy()
    pred = np.zeros((4, 32, 32), np.uint8)
    lab = viewer.add_labels(pred.copy(), name="vol prediction", metadata={PREDICTION_KEY: pred})
    review = UncertainSlices(viewer)
    review.show(None, lab, 0)
    assert review.info.value == "corrected slices: 0"
    # The polygon tool (napari emits its paint event before the pixels are written) ...
    viewer.dims.set_current_step(0, 2)
    lab.paint_polygon([(2, 4, 4), (2, 4, 20), (2, 20, 20)], 1)
    qtbot.waitUntil(lambda: "corrected slices: 1" in review.info.value, timeout=5_000)
    assert "(slice 2 corrected)" in review.info.value
    # ... and Ctrl+Z (only set_data is emitted) both update the count.
    lab.undo()
    qtbot.waitUntil(lambda: "corrected slices: 0" in review.info.value, timeout=5_000)
    lab.redo()
    qtbot.waitUntil(lambda: "corrected slices: 1" in review.info.value, timeout=5_000)
