"""Make the README screenshots in a real napari window (run under Xvfb: `xvfb-run -a python ...`).

Usage: python scripts/screenshots.py [NAME ...]   (default: all). Writes docs/images/NAME.png.
"""

import sys
from pathlib import Path

import napari
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data" / "colin27"
OUT = ROOT / "docs" / "images"


def shot_reader(viewer: napari.Viewer) -> None:
    viewer.open(str(SHARED / "ch2.nii.gz"), plugin="napari-brainseg")
    viewer.dims.set_current_step(0, 95)


def shot_skullstrip(viewer: napari.Viewer) -> None:
    from napari_brainseg._widgets import SkullStripWidget

    (layer,) = viewer.open(str(SHARED / "ch2.nii.gz"), plugin="napari-brainseg")
    widget = SkullStripWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Skull strip", area="right")
    widget.reset_choices()
    widget.image.value = layer
    widget.run_button.clicked.emit()
    widget.wait(120_000)
    mask = viewer.layers["ch2 brain mask"]
    mask.contour = 2
    mask.opacity = 0.9
    viewer.dims.set_current_step(0, 95)


SHOTS = {"reader": shot_reader, "skullstrip": shot_skullstrip}


def main(names: list[str]) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for name in names or list(SHOTS):
        viewer = napari.Viewer(show=True)
        viewer.window._qt_window.resize(1200, 800)
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
