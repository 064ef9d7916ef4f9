"""The Batch tab's progress: a file bar, and inside it a bar for the slices of the scan being
segmented (as the CLI's ``segment`` shows)."""

import nibabel as nib
import numpy as np

from napari_brainseg._widgets import RECENT_MODELS, BatchSegmentWidget
from napari_brainseg.synthetic import make_phantom


def test_batch_moves_a_slice_bar_inside_the_file_bar(make_napari_viewer_proxy, qtbot,
                                                     tiny_model, tmp_path):
    (tmp_path / "in").mkdir()
    for name, depth in (("a", 20), ("b", 12)):  # volumes of 20 and 12 axial slices
        vol = np.stack([make_phantom((64, 64), "glioma", seed=s, skull=False).image
                        for s in range(depth)], axis=-1)
        nib.save(nib.Nifti1Image(vol, np.eye(4)), str(tmp_path / "in" / f"{name}.nii.gz"))
    viewer = make_napari_viewer_proxy()
    w = BatchSegmentWidget(viewer)
    viewer.window.add_dock_widget(w)
    RECENT_MODELS.append(str(tiny_model))
    w.reset_choices()
    w.model.choice.value = str(tiny_model)
    w.skull.value = "never"
    w.overlays.value = False
    w.input.value = str(tmp_path / "in")
    w.output.value = str(tmp_path / "out")
    events = []  # in the order the main thread sees them
    # Connected after the widget's own slot, so this sees the bar as the widget left it.
    w._slices.moved.connect(lambda done, total: events.append(
        ("slice", done, total, w.slice_progress.value, w.slice_progress.max, w.status.value)))
    w.progress.changed.connect(lambda value: events.append(("files", value)))
    w.run_button.clicked.emit()
    qtbot.waitUntil(lambda: w._worker is None and len(w._results) == 2, timeout=60_000)
    assert [r.status for r in w._results] == ["ok", "ok"]
    # The model takes 8 slices at a time (SegmentOptions.batch_size): the bar moves per batch.
    slices_a = [("slice", k, 20, k, 20, f"file 1/2: slice {k}/20") for k in (8, 16, 20)]
    slices_b = [("slice", k, 12, k, 12, f"file 2/2: slice {k}/12") for k in (8, 12)]
    # Every slice of a moves the slice bar before a counts as done on the file bar, then b's.
    assert events == [*slices_a, ("files", 1), *slices_b, ("files", 2)]
    assert "2 segmented" in w.status.value
