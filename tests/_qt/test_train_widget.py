import numpy as np

from napari_brainseg._widgets import RECENT_MODELS, TrainWidget
from napari_brainseg.model import load_checkpoint
from napari_brainseg.synthetic import make_phantom


def _stack(n=4, size=64):
    phs = [make_phantom((size, size), ["meningioma", "glioma", "pituitary"][i % 3], seed=i,
                        skull=False) for i in range(n)]
    return np.stack([p.image for p in phs]), np.stack([p.tumour for p in phs])


def _widget(viewer, tmp_path):
    w = TrainWidget(viewer)
    viewer.window.add_dock_widget(w)
    w.reset_choices()
    w.epochs.value = 2
    w.batch_size.value = 2
    w.base_filters.value = 4
    w.patch_size.value = 64
    w.out.value = str(tmp_path / "model.pt")
    w.folder.value = str(tmp_path / "training")
    return w


def test_two_epochs_on_layers_update_plot_and_progress(make_napari_viewer_proxy, qtbot,
                                                       tmp_path):
    viewer = make_napari_viewer_proxy()
    img, lab = _stack()
    il = viewer.add_image(img, name="scan")
    ll = viewer.add_labels(lab, name="scan tumour")
    w = _widget(viewer, tmp_path)
    w.image.value, w.labels.value = il, ll
    w.val_split.value = 0.25
    w.run_button.clicked.emit()
    qtbot.waitUntil(lambda: w.run_button.enabled and w._worker is None, timeout=60_000)
    assert w.plot.epochs == [1, 2]
    assert len(w.plot.ax_loss.lines) == 2 and len(w.plot.ax_dice.lines[0].get_xdata()) == 2
    assert w.progress.value == w.progress.max > 0
    assert (tmp_path / "model.pt").exists() and RECENT_MODELS[-1] == str(tmp_path / "model.pt")
    assert load_checkpoint(tmp_path / "model.pt").training["epochs"] == 2
    assert w.out.value != tmp_path / "model.pt"  # the next run writes a new file
    np.testing.assert_array_equal(ll.data, lab)  # training never touches the user's labels


def test_cancel_and_correct_then_retrain(make_napari_viewer_proxy, qtbot, tmp_path):
    viewer = make_napari_viewer_proxy()
    img, lab = _stack(3)
    il = viewer.add_image(img, name="scan")
    ll = viewer.add_labels(lab, name="scan tumour")
    w = _widget(viewer, tmp_path)
    w.image.value, w.labels.value = il, ll
    # Correct-then-retrain: save the pair twice -> two pairs, nothing overwritten.
    w.add_to_folder()
    w.add_to_folder()
    names = sorted(p.name for p in (tmp_path / "training" / "images").iterdir())
    assert names == ["scan.nii.gz", "scan_2.nii.gz"]
    w.source.value = "training folder"
    w.epochs.value = 200
    w.run_button.clicked.emit()
    qtbot.waitUntil(lambda: len(w.plot.epochs) >= 1, timeout=60_000)
    w.cancel_button.clicked.emit()
    qtbot.waitUntil(lambda: w._worker is None, timeout=60_000)
    assert "cancelled" in w.status.value and len(w.plot.epochs) < 200
    load_checkpoint(tmp_path / "model.last.pt")


def test_closing_the_widget_mid_run_stops_training_cleanly(make_napari_viewer_proxy, qtbot,
                                                           tmp_path):
    viewer = make_napari_viewer_proxy()
    img, lab = _stack(3)
    w = _widget(viewer, tmp_path)
    w.image.value = viewer.add_image(img, name="scan")
    w.labels.value = viewer.add_labels(lab, name="scan tumour")
    w.epochs.value = 500
    w.run_button.clicked.emit()
    qtbot.waitUntil(lambda: len(w.plot.epochs) >= 1, timeout=60_000)
    viewer.window.remove_dock_widget(w.native)  # the dock's "x" button does this
    qtbot.waitUntil(lambda: w._worker is None, timeout=30_000)
    assert "cancelled" in w.status.value
    assert not [p for p in tmp_path.iterdir() if ".tmp" in p.name or p.name.startswith(".")]
    # Stopped long before its 500 epochs, with the last finished epoch saved. Counted from what
    # the worker wrote, not from plot updates still queued when the dock closed (no race with a
    # busy machine's event loop).
    done = load_checkpoint(tmp_path / "model.last.pt").resume["epoch"]
    assert 1 <= done < 500 and len(w.plot.epochs) <= done + 1


def test_labels_default_to_tumour_labels_not_a_brain_mask(make_napari_viewer_proxy, tmp_path):
    viewer = make_napari_viewer_proxy()
    img, lab = _stack(2)
    viewer.add_image(img, name="ch2")
    viewer.add_labels(np.ones_like(lab), name="ch2 brain mask")
    tumour = viewer.add_labels(lab, name="ch2 tumour")
    viewer.add_labels(np.ones_like(lab), name="ch2 brain mask 2")
    w = _widget(viewer, tmp_path)
    assert w.labels.value.name == tumour.name
    assert [c for c in w.labels.choices][-1].name.startswith("ch2 brain mask")
