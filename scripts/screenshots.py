"""Make the README screenshots in a real napari window (run under Xvfb: `xvfb-run -a python ...`).

Usage: python scripts/screenshots.py [NAME ...]   (default: all). Writes docs/images/NAME.png.
"""

import sys
from pathlib import Path

import napari
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data" / "colin27"
REAL = ROOT.parent / "shared" / "data" / "real"
OUT = ROOT / "docs" / "images"


def shot_reader(viewer: napari.Viewer) -> None:
    viewer.open(str(SHARED / "ch2.nii.gz"), plugin="napari-brainseg")
    viewer.dims.set_current_step(0, 95)


def _dock(viewer: napari.Viewer, widget: object, name: str) -> None:
    viewer.window.add_dock_widget(widget, name=name, area="right")
    widget.reset_choices()


def _run(widget: object, timeout_ms: int) -> None:
    """Press the widget's run button and wait for its worker, as a user would."""
    widget.run_button.clicked.emit()
    widget.wait(timeout_ms)


def shot_train(viewer: napari.Viewer) -> None:
    import tempfile

    from napari_brainseg._widgets import TrainWidget
    from napari_brainseg.synthetic import write_sample_folder

    tmp = Path(tempfile.mkdtemp())
    write_sample_folder(tmp / "phantoms", n=48, shape=(128, 128), seed=0)
    image, labels = viewer.open(str(tmp / "phantoms"), plugin="napari-brainseg")
    widget = TrainWidget(viewer)
    _dock(viewer, widget, "Train U-Net")
    widget.image.value, widget.labels_layer.value = image, labels
    widget.epochs.value = 40
    widget.batch_size.value = 8
    widget.base_filters.value = 8
    widget.patch_size.value = 128
    widget.lr.value = 3e-3
    widget.val_split.value = 0.2
    widget.out.value = str(tmp / "model.pt")
    _run(widget, 600_000)
    labels.contour = 1
    viewer.dims.set_current_step(0, 1)


def shot_segment(viewer: napari.Viewer) -> None:
    from napari_brainseg._widgets import SegmentWidget

    # A real contrast-enhanced T1 scan the model never trained on, segmented with the defaults
    # (learned skull strip first); the view moves to the largest lesion by itself.
    (layer,) = viewer.open(str(REAL / "mrbraintumor1_cet1.nii.gz"), plugin="napari-brainseg")
    widget = SegmentWidget(viewer)
    _dock(viewer, widget, "Segment tumour")
    widget.image.value = layer
    _run(widget, 300_000)
    labels = viewer.layers[f"{layer.name} prediction"]
    labels.contour = 2
    labels.opacity = 0.9


def shot_panel(viewer: napari.Viewer) -> None:
    from napari_brainseg._widgets import BrainSegPanel

    # The one panel on a 1280 x 800 screen: segment the real CE-T1 scan with the defaults, then
    # pick the first lesion of the table as a user would (its frame is drawn, view on it).
    (layer,) = viewer.open(str(REAL / "mrbraintumor1_cet1.nii.gz"), plugin="napari-brainseg")
    panel = BrainSegPanel(viewer)
    _dock(viewer, panel, "Brain tumour segmentation")
    panel.segment.image.value = layer
    _run(panel.segment, 300_000)
    labels = viewer.layers[f"{layer.name} prediction"]
    labels.contour = 2
    labels.opacity = 0.9
    panel.segment.lesions.select(0)
    area = panel.widget(panel.currentIndex())
    area.ensureWidgetVisible(panel.segment.lesions.native)  # scrolled to the table


def shot_review(viewer: napari.Viewer) -> None:
    from napari_brainseg._widgets import BrainSegPanel

    # The correction loop: segment the real CE-T1 scan with uncertainty, show the uncertainty
    # map over the scan and go to the most uncertain slice, as a reviewer would.
    (layer,) = viewer.open(str(REAL / "mrbraintumor1_cet1.nii.gz"), plugin="napari-brainseg")
    panel = BrainSegPanel(viewer)
    _dock(viewer, panel, "Brain tumour segmentation")
    panel.segment.image.value = layer
    panel.segment.uncertain.value = True
    _run(panel.segment, 600_000)
    labels = viewer.layers[f"{layer.name} prediction"]
    labels.contour = 2
    labels.opacity = 0.9
    unc = viewer.layers[f"{layer.name} uncertainty"]
    unc.visible = True
    unc.contrast_limits = (0, 0.6)
    panel.segment.review.next_button.clicked.emit()
    area = panel.widget(panel.currentIndex())
    area.ensureWidgetVisible(panel.segment.review.native)


# --------------------------------------------------------------------------- the panel's tabs
# Each tab of the one panel at 1280 x 800 after real work on real scans (the Segment tab is
# "panel" above).


#: Widgets whose run is still going when their picture is taken (stopped before the next shot).
RUNNING: list = []


def _panel(viewer: napari.Viewer, tab: str) -> object:
    from napari_brainseg._widgets import BrainSegPanel

    panel = BrainSegPanel(viewer)
    _dock(viewer, panel, "Brain tumour segmentation")
    titles = [panel.tabText(i).replace("&&", "&") for i in range(panel.count())]
    panel.setCurrentIndex(titles.index(tab))
    return panel


def _wait_until(condition: object, timeout_ms: int) -> None:
    from qtpy.QtCore import QCoreApplication, QElapsedTimer

    timer = QElapsedTimer()
    timer.start()
    while not condition() and timer.elapsed() < timeout_ms:
        QCoreApplication.processEvents()


def shot_tab_skullstrip(viewer: napari.Viewer) -> None:
    # Colin27 (real T1 with skull and scalp), stripped with the default learned method.
    (layer,) = viewer.open(str(SHARED / "ch2.nii.gz"), plugin="napari-brainseg")
    panel = _panel(viewer, "Skull strip")
    panel.skull_strip.image.value = layer
    _run(panel.skull_strip, 300_000)
    mask = viewer.layers[f"{layer.name} brain mask"]
    mask.contour = 2
    mask.opacity = 0.9
    viewer.dims.set_current_step(0, 70)


def shot_tab_correct(viewer: napari.Viewer) -> None:
    import os
    import tempfile

    from napari_brainseg.io import read

    # Segment the real CE-T1 scan, correct the 8 slices where the prediction is furthest from
    # the scan's reference tumour mask (as a reviewer painting would), then fine-tune on them.
    os.environ["HOME"] = tempfile.mkdtemp()  # the new model version goes under ~/napari-brainseg
    (layer,) = viewer.open(str(REAL / "mrbraintumor1_cet1.nii.gz"), plugin="napari-brainseg")
    panel = _panel(viewer, "Segment")
    panel.segment.image.value = layer
    _run(panel.segment, 300_000)
    labels = viewer.layers[f"{layer.name} prediction"]
    labels.contour = 2
    labels.opacity = 0.9
    truth = read(REAL / "mrbraintumor1_cet1_tumour.nii.gz")[0].data > 0
    data = np.array(labels.data)
    wrong = [(int((data[z] != truth[z]).sum()), z) for z in range(data.shape[0])]
    fixed = sorted(z for n, z in sorted(wrong, reverse=True)[:8] if n)
    data[fixed] = truth[fixed]
    labels.data = data
    panel.setCurrentIndex(2)
    panel.reset_choices()
    panel.finetune.image.value = layer
    panel.finetune.labels_layer.value = labels
    panel.finetune.steps.value = 60  # half the default: the picture, not the best model
    _run(panel.finetune, 600_000)
    viewer.dims.set_current_step(0, fixed[len(fixed) // 2])


def shot_tab_batch(viewer: napari.Viewer) -> None:
    import shutil
    import tempfile

    # Three real scans (two with their reference masks as NAME_mask, so Dice is filled in):
    # the picture is taken while the third is being segmented, its slice bar half way.
    src = Path(tempfile.mkdtemp()) / "scans"
    src.mkdir()
    shutil.copy(REAL / "itk_t1_head.nii.gz", src)
    for name in ("mrbraintumor1_cet1", "mrbraintumor2_cet1"):
        shutil.copy(REAL / f"{name}.nii.gz", src)
        shutil.copy(REAL / f"{name}_tumour.nii.gz", src / f"{name}_mask.nii.gz")
    panel = _panel(viewer, "Batch")
    batch = panel.batch
    batch.input.value = str(src)
    batch.output.value = str(src.parent / "results")
    batch.run_button.clicked.emit()
    RUNNING.append(batch)
    _wait_until(lambda: batch._worker is None or (
        len(batch._results) >= 2 and batch.status.value.startswith("file 3/3")
        and batch.slice_progress.value >= batch.slice_progress.max // 2), 900_000)
    batch._open_row(1)  # as a double-click on the row: the scan, its reference, the prediction
    pred = viewer.layers["mrbraintumor1_cet1 prediction"]
    pred.contour = 2
    pred.opacity = 0.9
    viewer.layers["mrbraintumor1_cet1 ground truth"].visible = False
    viewer.dims.set_current_step(0, 36)


SHOTS = {"reader": shot_reader, "train": shot_train,
         "segment": shot_segment, "panel": shot_panel, "review": shot_review,
         "tab_skullstrip": shot_tab_skullstrip, "tab_correct": shot_tab_correct,
         "tab_batch": shot_tab_batch}
SIZES = {"train": (1500, 900), "panel": (1280, 800), "review": (1280, 800),
         "tab_skullstrip": (1280, 800), "tab_correct": (1280, 800), "tab_batch": (1280, 800)}


def main(names: list[str]) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for name in names or list(SHOTS):
        viewer = napari.Viewer(show=True)
        viewer.window._qt_window.resize(*SIZES.get(name, (1200, 900)))
        SHOTS[name](viewer)
        viewer.reset_view()
        for _ in range(3):  # let layouts settle (a wrapped status asks for a second pass)
            napari.qt.get_qapp().sendPostedEvents()
            napari.qt.get_qapp().processEvents()
        img = viewer.screenshot(canvas_only=False, flash=False)
        _write_small_png(OUT / f"{name}.png", np.asarray(img))
        print("wrote", OUT / f"{name}.png", f"{(OUT / f'{name}.png').stat().st_size // 1024} KB")
        while RUNNING:  # a run still going (the batch shot): stop it after its current step
            widget = RUNNING.pop()
            widget.cancel()
            widget.wait(600_000)
        viewer.close()


def _write_small_png(path: Path, rgba: np.ndarray) -> None:
    """A screenshot as a 256-colour PNG: a third of the size, the same to the eye for a UI
    over grey scans (Pillow's median cut, no dithering, so flat widgets stay flat)."""
    from PIL import Image

    image = Image.fromarray(rgba[..., :3])
    image.quantize(colors=256, method=Image.Quantize.MEDIANCUT,
                   dither=Image.Dither.NONE).save(path, optimize=True)


if __name__ == "__main__":
    main(sys.argv[1:])
