"""The napari writer marks a saved, edited prediction corrected (issue 16, bug 3)."""

import json

import imageio.v3 as iio
import nibabel as nib
import numpy as np
import pytest

pytest.importorskip("napari")

from napari_brainseg._reader import volume_to_layer_data  # noqa: E402
from napari_brainseg._writer import PREDICTION_KEY, write_labels_layer  # noqa: E402
from napari_brainseg.io import read  # noqa: E402
from napari_brainseg.provenance import is_corrected, record, sidecar_path, write_sidecar  # noqa: E402,E501


def _attributes(vol_tuple):
    data, kwargs, kind = vol_tuple
    assert kind == "labels"
    return np.array(data), {"metadata": kwargs["metadata"], "scale": kwargs["scale"],
                            "name": kwargs["name"]}


def test_an_edited_prediction_saved_over_itself_is_marked_corrected(tmp_path):
    vol = np.zeros((12, 10, 6), np.uint8)  # NIfTI (x, y, z): 6 slices
    vol[2:5, 2:5, 1:3] = 1
    path = tmp_path / "scan_pred.nii.gz"
    nib.save(nib.Nifti1Image(vol, np.diag([1.0, 1.0, 3.0, 1.0])), str(path))
    write_sidecar(path, record(options={"threshold": 0.5}))  # as brainseg segment leaves it
    (pred,) = read(path)
    data, attrs = _attributes(volume_to_layer_data(pred))
    assert attrs["name"] == "scan prediction"
    write_labels_layer(str(path), data, attrs)  # saved unchanged
    assert not is_corrected(path)
    full = [z for z in range(len(data)) if data[z].any()]
    empty = [z for z in range(len(data)) if not data[z].any()]
    data[full[0]] = 0   # the user erases one slice and paints another (axis 0: display slices)
    data[empty[0], 0, 0] = 1
    write_labels_layer(str(path), data, attrs)
    rec = json.loads(sidecar_path(path).read_text())
    assert is_corrected(path) and rec["corrected_slices"] == 2
    assert rec["corrected_slice_indices"] == sorted([full[0], empty[0]])
    assert rec["options"] == {"threshold": 0.5}  # the run's record is kept
    (back,) = read(path)
    np.testing.assert_array_equal(back.data, data)


def test_a_segment_tab_layer_saved_elsewhere_gets_a_new_corrected_sidecar(tmp_path, tiny_model):
    pred = np.zeros((20, 20), np.uint8)
    pred[5:10, 5:10] = 1
    labels = pred.copy()
    labels[12:15, 12:15] = 1
    meta = {PREDICTION_KEY: pred, "brainseg_axis": 0, "brainseg_model": str(tiny_model)}
    out = tmp_path / "case7_pred.png"
    write_labels_layer(str(out), labels, {"metadata": meta, "scale": (1.0, 1.0)})
    rec = json.loads(sidecar_path(out).read_text())
    assert rec["corrected"] is True and rec["corrected_slices"] == 1
    assert rec["model"]["file"] == tiny_model.name and len(rec["model"]["sha256"]) == 64
    assert str(tmp_path) not in sidecar_path(out).read_text()  # no paths in a record


def test_labels_that_are_not_a_prediction_get_no_sidecar(tmp_path):
    iio.imwrite(tmp_path / "scan_mask.png", np.eye(16, dtype=np.uint8))
    (truth,) = read(tmp_path / "scan_mask.png")
    data, attrs = _attributes(volume_to_layer_data(truth))
    data[0, 5] = 1
    write_labels_layer(str(tmp_path / "scan_mask.png"), data, attrs)
    assert not sidecar_path(tmp_path / "scan_mask.png").exists()


def test_predictions_reopen_in_their_own_colour_and_truth_in_the_default_one(tmp_path):
    iio.imwrite(tmp_path / "scan_pred.png", np.eye(16, dtype=np.uint8))
    iio.imwrite(tmp_path / "scan_mask.png", np.eye(16, dtype=np.uint8))
    _, pk, pkind = volume_to_layer_data(read(tmp_path / "scan_pred.png")[0])
    _, tk, tkind = volume_to_layer_data(read(tmp_path / "scan_mask.png")[0])
    assert pkind == tkind == "labels"
    assert pk["name"] == "scan prediction" and tk["name"] == "scan ground truth"
    assert "colormap" in pk and "colormap" not in tk
