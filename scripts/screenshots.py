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


def shot_skullstrip(viewer: napari.Viewer) -> None:
    from napari_brainseg._widgets import SkullStripWidget

    # A real contrast-enhanced clinical scan the stripper never trained on, with its tumour.
    scan = REAL / "mrbraintumor2_cet1.nii.gz"
    (layer,) = viewer.open(str(scan), plugin="napari-brainseg")
    widget = SkullStripWidget(viewer)
    _dock(viewer, widget, "Skull strip")
    widget.image.value = layer
    _run(widget, 120_000)
    mask = viewer.layers["mrbraintumor2_cet1 brain mask"]
    mask.contour = 2
    mask.opacity = 0.9
    viewer.dims.set_current_step(0, 40)


def shot_train(viewer: napari.Viewer) -> None:
    import tempfile

    from napari_brainseg._widgets import TrainWidget
    from napari_brainseg.synthetic import write_sample_folder

    tmp = Path(tempfile.mkdtemp())
    write_sample_folder(tmp / "phantoms", n=48, shape=(128, 128), seed=0)
    image, labels = viewer.open(str(tmp / "phantoms"), plugin="napari-brainseg")
    widget = TrainWidget(viewer)
    _dock(viewer, widget, "Train U-Net")
    widget.image.value, widget.labels.value = image, labels
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
    labels = viewer.layers[f"{layer.name} tumour"]
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
    labels = viewer.layers[f"{layer.name} tumour"]
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
    labels = viewer.layers[f"{layer.name} tumour"]
    labels.contour = 2
    labels.opacity = 0.9
    unc = viewer.layers[f"{layer.name} uncertainty"]
    unc.visible = True
    unc.contrast_limits = (0, 0.6)
    panel.segment.review.next_button.clicked.emit()
    area = panel.widget(panel.currentIndex())
    area.ensureWidgetVisible(panel.segment.review.native)


SHOTS = {"reader": shot_reader, "skullstrip": shot_skullstrip, "train": shot_train,
         "segment": shot_segment, "panel": shot_panel, "review": shot_review}
SIZES = {"train": (1500, 900), "panel": (1280, 800), "review": (1280, 800)}


def main(names: list[str]) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for name in names or list(SHOTS):
        viewer = napari.Viewer(show=True)
        viewer.window._qt_window.resize(*SIZES.get(name, (1200, 900)))
        SHOTS[name](viewer)
        viewer.reset_view()
        napari.qt.get_qapp().processEvents()
        img = viewer.screenshot(canvas_only=False, flash=False)
        import imageio.v3 as iio

        iio.imwrite(OUT / f"{name}.png", np.asarray(img))
        print("wrote", OUT / f"{name}.png")
        viewer.close()


if __name__ == "__main__":
    main(sys.argv[1:])
