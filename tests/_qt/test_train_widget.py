import numpy as np

from napari_brainseg._widgets import RECENT_MODELS, SegmentWidget, TrainWidget
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
    ll = viewer.add_labels(lab, name="scan prediction")
    w = _widget(viewer, tmp_path)
    seg = SegmentWidget(viewer)  # open before training: the new model becomes its choice
    w.image.value, w.labels_layer.value = il, ll
    w.val_split.value = 0.25
    w.run_button.clicked.emit()
    qtbot.waitUntil(lambda: w.run_button.enabled and w._worker is None, timeout=60_000)
    assert seg.model.choice.value == str(tmp_path / "model.pt")
    assert "val Dice" in w.status.value and "model.pt" in w.status.value
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
    ll = viewer.add_labels(lab, name="scan prediction")
    w = _widget(viewer, tmp_path)
    w.image.value, w.labels_layer.value = il, ll
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
    w.labels_layer.value = viewer.add_labels(lab, name="scan prediction")
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
    tumour = viewer.add_labels(lab, name="ch2 prediction")
    viewer.add_labels(np.ones_like(lab), name="ch2 brain mask 2")
    w = _widget(viewer, tmp_path)
    assert w.labels_layer.value.name == tumour.name
    assert [c for c in w.labels_layer.choices][-1].name.startswith("ch2 brain mask")


def _integer_ticks(ax):
    lo, hi = ax.get_xlim()
    ticks = [t for t in ax.get_xticks() if lo <= t <= hi]
    return bool(ticks) and all(float(t).is_integer() for t in ticks)


def test_loss_plot_axes_empty_and_with_epochs(qapp):
    from napari_brainseg._widgets import LossPlot
    from napari_brainseg.train import EpochReport

    plot = LossPlot()
    for ax in (plot.ax_loss, plot.ax_dice):  # empty: 0-1, not matplotlib's -0.04..0.04
        assert ax.get_ylim() == (0.0, 1.0) and _integer_ticks(ax)
    plot.clear(30)
    plot.add(EpochReport(1, 30, 1.6, 1.4, 0.2, 0.3, 0.4, 1e-3, 1.0, True))
    for ax in (plot.ax_loss, plot.ax_dice):
        assert ax.get_xlim() == (0.5, 30.5) and _integer_ticks(ax)  # whole epochs, 1 to 30
    lo, hi = plot.ax_loss.get_ylim()
    assert lo == 0 and hi >= 1.6


def test_progress_bar_counts_validation_batches(make_napari_viewer_proxy, tmp_path):
    from napari_brainseg.train import BatchProgress, EpochReport, ValidationProgress

    viewer = make_napari_viewer_proxy()
    img, lab = _stack()
    w = _widget(viewer, tmp_path)
    w.image.value = viewer.add_image(img, name="scan")
    w.labels_layer.value = viewer.add_labels(lab, name="scan prediction")
    gen, _done, on_yield = w._train_job()
    gen.close()  # only the progress wiring is exercised here
    seen = []
    for item in [BatchProgress(1, 1, 3, 0.9, val_steps=2), BatchProgress(1, 3, 3, 0.8, 2),
                 ValidationProgress(1, 1, 2), ValidationProgress(1, 2, 2),
                 EpochReport(1, 2, 0.8, 0.7, 0.1, 0.1, 0.1, 1e-3, 1.0, True),
                 BatchProgress(2, 3, 3, 0.7, 2), ValidationProgress(2, 1, 2),
                 ValidationProgress(2, 2, 2)]:
        on_yield(item)
        seen.append((w.progress.value, w.progress.max))
    assert [v for v, _ in seen] == [1, 3, 4, 5, 5, 8, 9, 10]
    assert {m for _, m in seen} == {10}
    # Validating the last epoch: the bar is not full until its last validation batch.
    assert seen[-2][0] < seen[-2][1] and seen[-1][0] == seen[-1][1]


def test_one_volume_warning_is_a_notification(make_napari_viewer_proxy, qtbot, tmp_path,
                                              monkeypatch):
    shown = []
    monkeypatch.setattr("napari_brainseg._widgets._base.show_warning", shown.append)
    viewer = make_napari_viewer_proxy()
    img, lab = _stack(4)
    w = _widget(viewer, tmp_path)
    w.image.value = viewer.add_image(img, name="scan")
    w.labels_layer.value = viewer.add_labels(lab, name="scan prediction")
    w.epochs.value = 1
    w.run_button.clicked.emit()
    assert any("one patient/volume only" in m for m in shown)
    qtbot.waitUntil(lambda: w._worker is None, timeout=60_000)


def test_an_existing_model_file_is_never_replaced(make_napari_viewer_proxy, tmp_path):
    viewer = make_napari_viewer_proxy()
    img, lab = _stack(2)
    w = _widget(viewer, tmp_path)
    w.image.value = viewer.add_image(img, name="scan")
    w.labels_layer.value = viewer.add_labels(lab, name="scan prediction")
    for existing in ("model.pt", "model.last.pt"):  # the best model or its resumable state
        (tmp_path / existing).write_bytes(b"a model")
        assert w._train_job() is None  # refused with a notification, nothing started
        assert (tmp_path / existing).read_bytes() == b"a model"
        (tmp_path / existing).unlink()


def test_status_without_validation_slices_says_so(make_napari_viewer_proxy, tmp_path):
    import math

    from napari_brainseg.train import EpochReport, TrainResult

    viewer = make_napari_viewer_proxy()
    img, lab = _stack(2)
    w = _widget(viewer, tmp_path)
    w.image.value = viewer.add_image(img, name="scan")
    w.labels_layer.value = viewer.add_labels(lab, name="scan prediction")
    gen, done, on_yield = w._train_job()
    gen.close()
    # No slice held out: the model is the last epoch's and its score is minus the train loss.
    report = EpochReport(2, 2, 1.669, math.nan, math.nan, math.nan, math.nan, 1e-3, 1.0, True)
    on_yield(report)
    assert "nan" not in w.status.value and "no validation" in w.status.value
    done(TrainResult(tmp_path / "model.pt", tmp_path / "model.last.pt", 2, -1.669, 2, False,
                     False, [report]))
    assert "Dice" not in w.status.value and "-1.669" not in w.status.value
    assert "train loss 1.669" in w.status.value
    done(TrainResult(tmp_path / "m2.pt", tmp_path / "m2.last.pt", 0, -math.inf, 0, True,
                     False, []))  # cancelled in the first epoch: no file was written
    assert "no model saved" in w.status.value and RECENT_MODELS[-1] != str(tmp_path / "m2.pt")


def test_a_refused_start_replaces_the_last_runs_status(make_napari_viewer_proxy, tmp_path):
    viewer = make_napari_viewer_proxy()
    img, lab = _stack(2)
    w = _widget(viewer, tmp_path)
    w.image.value = viewer.add_image(img, name="scan")
    w.labels_layer.value = viewer.add_labels(lab[:1], name="other")  # another shape
    w.status.value = "done: best epoch 2, val Dice 0.900 -> model.pt"  # the last run's
    w.progress.max, w.progress.value = 10, 10
    w.run_button.clicked.emit()
    assert w._worker is None  # refused before any work
    assert "differ in shape" in w.status.value and w.progress.value == 0
