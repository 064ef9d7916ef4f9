import numpy as np
from qtpy.QtCore import Qt

from napari_brainseg._widgets import SegmentWidget
from napari_brainseg._widgets.segment import HIGHLIGHT
from napari_brainseg.metrics import lesion_table


def _click_row(qtbot, table, row):
    view = table.native
    rect = view.visualRect(view.model().index(row, 1))
    qtbot.mouseClick(view.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())


def test_click_a_lesion_row_moves_to_its_centre_slice_and_frames_it(make_napari_viewer_proxy,
                                                                    qtbot):
    viewer = make_napari_viewer_proxy(show=True)
    image = viewer.add_image(np.zeros((12, 40, 40), np.float32), name="vol",
                             scale=(2.0, 1.0, 1.0))
    mask = np.zeros((12, 40, 40), np.uint8)
    mask[1:4, 5:15, 5:15] = 1     # large lesion, slices 1-3
    mask[8:11, 30:34, 28:32] = 1  # small lesion, slices 8-10
    layer = viewer.add_labels(mask, name="vol prediction", scale=(2.0, 1.0, 1.0))
    w = SegmentWidget(viewer)
    viewer.window.add_dock_widget(w)
    rows = lesion_table(mask, (2.0, 1.0, 1.0), np.where(mask > 0, 0.8, 0.0))
    w.lesions.show(rows, layer)
    viewer.layers.selection.active = image
    viewer.dims.set_current_step(0, 6)
    assert w.lesions.table.shape[0] == 2 and HIGHLIGHT not in viewer.layers  # filling: no click
    cells = w.lesions.table.data.to_list()
    assert cells[0] == ["1", "600.0 mm³", f"{rows[0].diameter_mm:.1f} mm", "0.80", "1-3"]
    assert cells[1][-1] == "8-10"

    _click_row(qtbot, w.lesions.table, 1)
    assert viewer.dims.current_step[0] == rows[1].centre[0] == 9
    boxes = viewer.layers[HIGHLIGHT].data
    assert sorted({int(b[0, 0]) for b in boxes}) == [8, 9, 10]  # a frame on each of its slices
    yx = boxes[0][:, 1:]
    assert yx[:, 0].min() < 30 and yx[:, 0].max() > 33 and yx[:, 1].min() < 28
    assert yx[:, 1].max() > 31 and yx[:, 0].max() < 36  # around this lesion, not the other
    assert viewer.layers.selection.active.name == "vol prediction"  # ready to correct it
    np.testing.assert_array_equal(layer.data, mask)  # binary as it was

    _click_row(qtbot, w.lesions.table, 0)
    assert viewer.dims.current_step[0] == 2
    assert [lyr.name for lyr in viewer.layers].count(HIGHLIGHT) == 1
    assert {int(b[0, 0]) for b in viewer.layers[HIGHLIGHT].data} == {1, 2, 3}


def test_lesion_table_of_a_slice_shows_areas(make_napari_viewer_proxy, qtbot):
    viewer = make_napari_viewer_proxy(show=True)
    mask = np.zeros((50, 50), np.uint8)
    mask[10:20, 10:14] = 1
    layer = viewer.add_labels(mask, name="slice prediction", scale=(0.5, 0.5))
    w = SegmentWidget(viewer)
    viewer.window.add_dock_widget(w)
    w.lesions.show(lesion_table(mask, (0.5, 0.5)), layer)
    assert w.lesions.table.data.to_list() == [["1", "10.0 mm²", f"{np.hypot(4.5, 1.5):.1f} mm",
                                               "-", "-"]]
    _click_row(qtbot, w.lesions.table, 0)
    (box,) = viewer.layers[HIGHLIGHT].data
    assert box.shape == (4, 2) and box[:, 0].min() < 10 and box[:, 0].max() > 19


def test_lesion_table_without_a_pixel_size_counts_pixels(make_napari_viewer_proxy):
    # a PNG's 1 x 1 placeholder pixels: the status line said "pixels", the table "mm²"
    viewer = make_napari_viewer_proxy()
    mask = np.zeros((50, 50), np.uint8)
    mask[10:20, 10:14] = 1
    layer = viewer.add_labels(mask, name="png prediction")
    w = SegmentWidget(viewer)
    w.lesions.show(lesion_table(mask), layer, known=False)
    assert w.lesions.table.data.to_list() == [["1", "40 pixels", f"{np.hypot(9, 3):.1f} pixels",
                                               "-", "-"]]
