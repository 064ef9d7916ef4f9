"""One naming table for every output (issue 16, bug 3): predictions are NAME_pred, never truth."""

import json
from pathlib import Path

import imageio.v3 as iio
import nibabel as nib
import numpy as np
import pytest

from napari_brainseg import naming
from napari_brainseg.io import find_pairs, mask_for, read

# ----------------------------------------------------------------------------- the table


@pytest.mark.parametrize(("source", "expected"), [
    ("in/sub/scan.nii.gz", "out/sub/scan_pred.nii.gz"),
    ("in/scan.dcm", "out/scan_pred.nii.gz"),
    ("in/scan.png", "out/scan_pred.png"),
    ("in/scan.jpg", "out/scan_pred.png"),
    ("in/scan.tiff", "out/scan_pred.tif"),
])
def test_a_prediction_is_named_name_pred_in_the_inputs_format(tmp_path, source, expected):
    (tmp_path / "in" / "sub").mkdir(parents=True)
    src = tmp_path / source
    assert naming.prediction_path(src, tmp_path / "in", tmp_path / "out") == tmp_path / expected


def test_colliding_inputs_series_overlays_and_sidecars(tmp_path):
    (tmp_path / "in").mkdir()
    png, jpg = tmp_path / "in" / "scan.png", tmp_path / "in" / "scan.jpg"
    dests = naming.prediction_paths([png, jpg], tmp_path / "in", tmp_path / "out")
    assert [dests[png].name, dests[jpg].name] == ["scan_png_pred.png", "scan_jpg_pred.png"]
    dest = tmp_path / "out" / "sub" / "exam_pred.nii.gz"
    assert naming.series_prediction_path(dest, 2).name == "exam_series2_pred.nii.gz"
    assert naming.overlay_path(dest, tmp_path / "out") == \
        tmp_path / "out" / "overlays" / "sub" / "exam_pred_overlay.png"
    assert naming.sidecar_path(dest).name == "exam_pred.nii.gz.json"
    assert naming.legacy_prediction_paths(dest) == [dest.with_name("exam_tumour.nii.gz")]


@pytest.mark.parametrize(("path", "kind", "layer"), [
    ("scan_pred.nii.gz", "prediction", "scan prediction"),
    ("scan_tumour.png", "prediction", "scan prediction"),       # before 0.2: still a prediction
    ("masks/scan_pred.png", "prediction", "scan prediction"),   # never truth, in any folder
    ("labels/scan_tumour.png", "prediction", "scan prediction"),
    ("scan_mask.nii.gz", "truth", "scan ground truth"),
    ("masks/scan.png", "truth", "scan"),
    ("scan_brain_mask.nii.gz", "brain", "scan brain mask"),
    ("overlays/scan_pred_overlay.png", "overlay", "scan_pred_overlay"),
    ("overlays/sub/scan_tumour.png", "overlay", "scan_tumour"),  # an old run's overlay
    ("scan.nii.gz", "scan", "scan"),
    ("_pred.png", "scan", "_pred"),                              # no NAME: not a prediction
])
def test_what_a_file_is_follows_its_name(path, kind, layer):
    p = Path("/data") / path
    assert naming.is_prediction(p) == (kind == "prediction")
    assert naming.is_ground_truth(p) == (kind == "truth")
    assert naming.is_brain_mask(p) == (kind == "brain")
    assert naming.is_overlay(p) == (kind == "overlay")
    assert naming.is_never_input(p) == (kind != "scan")
    assert naming.layer_name(p) == layer


@pytest.mark.parametrize(("mask", "stripped"), [
    ("ch2_brain_mask.nii.gz", "ch2_brain_stripped.nii.gz"),
    ("brain_mask.nii.gz", "brain_stripped.nii.gz"),
    ("head_mask.tif", "head_stripped.tif"),
    ("b_mask.png", "b_stripped.tif"),   # intensities need TIFF, not PNG
    ("mask.nii", "stripped.nii.gz"),
    ("brain.nii.gz", "brain_stripped.nii.gz"),
    ("unmask.png", "unmask_stripped.tif"),  # "mask" only as a word of its own
    ("ch2-MASK.nii.gz", "ch2-stripped.nii.gz"),
])
def test_stripped_image_name_follows_one_rule(tmp_path, mask, stripped):
    assert naming.stripped_path(tmp_path / "out" / mask) == tmp_path / "out" / stripped


def test_brain_mask_names(tmp_path):
    (tmp_path / "dicom").mkdir()
    assert naming.brain_mask_path(tmp_path, "h", tmp_path / "h.nii", 3).name == \
        "h_brain_mask.nii.gz"
    assert naming.brain_mask_path(tmp_path, "h", tmp_path / "dicom", 3).name == \
        "h_brain_mask.nii.gz"
    assert naming.brain_mask_path(tmp_path, "h", tmp_path / "h.png", 2).name == "h_brain_mask.png"
    assert naming.brain_mask_path(tmp_path, "h", tmp_path / "h.tif", 3).name == "h_brain_mask.tif"
    # a folder run mirrors the input's sub-folders; a DICOM series given itself has none
    mask = naming.brain_mask_path(tmp_path / "o", "t1", tmp_path / "in" / "p1" / "t1.nii", 3,
                                  root=tmp_path / "in")
    assert mask == tmp_path / "o" / "p1" / "t1_brain_mask.nii.gz"
    assert naming.brain_mask_path(tmp_path / "o", "h", tmp_path / "dicom", 3,
                                  root=tmp_path / "dicom") == tmp_path / "o" / "h_brain_mask.nii.gz"


@pytest.mark.parametrize(("path", "scan", "expected"), [
    ("in/t1_brain_stripped.nii.gz", "in/t1.nii.gz", True),
    ("in/t1_brain_stripped.tif", "in/t1.png", True),
    ("other/t1_brain_stripped.nii.gz", "in/t1.nii.gz", False),  # another folder
    ("in/t1_stripped.nii.gz", "in/t1.nii.gz", False),
    ("in/scan_jpg_brain_stripped.tif", "in/scan.jpg", True),  # names qualified on a collision
    ("in/scan_jpg_brain_stripped.tif", "in/scan.png", False),
    ("in/t1.nii.gz", "in/t1.nii.gz", False),
])
def test_a_stripped_image_beside_its_scan_is_recognised(tmp_path, path, scan, expected):
    assert naming.is_stripped_image_of(tmp_path / path, tmp_path / scan) is expected


def test_stripped_images_of_a_folder_in_one_pass(tmp_path, monkeypatch):
    # skull-strip compared every input with every other (is_stripped_image_of per pair):
    # quadratic, millions of name computations (with a stat each) for a few thousand scans
    scans = [tmp_path / "in" / f"s{k}.nii.gz" for k in range(50)]
    stripped = [tmp_path / "in" / f"s{k}_brain_stripped.nii.gz" for k in range(0, 50, 7)]
    others = [tmp_path / "in" / "s1.png", tmp_path / "in" / "s1_png_brain_stripped.tif",
              tmp_path / "other" / "s2_brain_stripped.nii.gz"]
    inputs = scans + stripped + others
    pairwise = {p: q for p in inputs for q in inputs if naming.is_stripped_image_of(p, q)}
    assert set(pairwise) == {*stripped, tmp_path / "in" / "s1_png_brain_stripped.tif"}
    calls = []
    real = naming._stripped_stems
    monkeypatch.setattr(naming, "_stripped_stems", lambda scan: calls.append(scan) or real(scan))
    found = naming.stripped_images(inputs)
    assert set(found) == set(pairwise) and all(found[p].parent == p.parent for p in found)
    assert found[tmp_path / "in" / "s1_png_brain_stripped.tif"].name == "s1.png"
    assert len(calls) == len(inputs)  # once per input, not once per pair


def test_a_qualified_name_never_meets_a_plain_one(tmp_path):
    # scan.png and scan.jpg are qualified to scan_png / scan_jpg: a scan_png.png beside them
    # got scan_png_pred.png too (skipped as done, or replaced with --overwrite)
    srcs = [tmp_path / "in" / n for n in ("scan.png", "scan.jpg", "scan_png.png", "other.png")]
    dests = naming.prediction_paths(srcs, tmp_path / "in", tmp_path / "out")
    assert [d.name for d in dests.values()] == ["scan_png_pred.png", "scan_jpg_pred.png",
                                                "scan_png_png_pred.png", "other_pred.png"]
    collide = naming.colliding_names(srcs)
    assert collide == set(srcs[:3])
    masks = [naming.brain_mask_path(tmp_path, naming.stem(s), s, 2, qualify=s in collide).name
             for s in srcs]
    assert len(set(masks)) == 4 and masks[2] == "scan_png_png_brain_mask.png"


def test_colliding_names_are_one_name_in_one_folder(tmp_path):
    a, b, c, d = (tmp_path / "x" / "scan.png", tmp_path / "x" / "SCAN.jpg",
                  tmp_path / "y" / "scan.png", tmp_path / "x" / "other.png")
    assert naming.colliding_names([a, b, c, d]) == {a, b}
    assert naming.brain_mask_path(tmp_path, "scan", b, 2, qualify=True).name == \
        "scan_jpg_brain_mask.png"


def test_the_naming_table_needs_no_numpy_torch_or_napari():
    import subprocess
    import sys

    code = ("import sys, napari_brainseg.naming; "
            "print(sorted(m for m in ('numpy', 'torch', 'napari') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# ----------------------------------------------------------------------------- reading, pairing


def _png(path, arr):
    path.parent.mkdir(parents=True, exist_ok=True)
    iio.imwrite(path, arr)


def test_predictions_reopen_as_prediction_labels_new_and_old_names(tmp_path):
    img = (np.random.default_rng(0).random((32, 32)) * 200).astype(np.uint8)
    mask = (img > 100).astype(np.uint8)
    _png(tmp_path / "scan_pred.png", mask)
    _png(tmp_path / "old_tumour.png", mask)
    aff = np.diag([1.0, 1.0, 2.0, 1.0])
    nib.save(nib.Nifti1Image(np.stack([mask] * 3, -1), aff), str(tmp_path / "vol_pred.nii.gz"))
    nib.save(nib.Nifti1Image(np.stack([mask] * 3, -1), aff), str(tmp_path / "vol_mask.nii.gz"))
    for name, layer in [("scan_pred.png", "scan prediction"), ("old_tumour.png", "old prediction"),
                        ("vol_pred.nii.gz", "vol prediction")]:
        (pred,) = read(tmp_path / name)
        assert pred.kind == "labels" and pred.name == layer and pred.metadata["prediction"]
    (truth,) = read(tmp_path / "vol_mask.nii.gz")
    assert truth.kind == "labels" and truth.name == "vol ground truth"
    assert not truth.metadata.get("prediction")


def test_a_prediction_is_never_ground_truth_nor_an_image_to_pair(tmp_path):
    img = (np.random.default_rng(0).random((32, 32)) * 200).astype(np.uint8)
    _png(tmp_path / "a" / "images" / "scan.png", img)
    _png(tmp_path / "a" / "masks" / "scan_pred.png", (img > 100).astype(np.uint8))
    _png(tmp_path / "a" / "images" / "scan_pred.png", (img > 100).astype(np.uint8))
    _png(tmp_path / "a" / "images" / "old_tumour.png", (img > 100).astype(np.uint8))
    _png(tmp_path / "a" / "overlays" / "scan_pred_overlay.png", np.stack([img] * 3, -1))
    assert [(p.image.name, p.mask) for p in find_pairs(tmp_path / "a")] == [("scan.png", None)]
    # NAME_pred_mask would be the truth of an image NAME_pred, which is a prediction: none
    _png(tmp_path / "b" / "x_pred.png", img)
    _png(tmp_path / "b" / "x_pred_mask.png", (img > 100).astype(np.uint8))
    assert mask_for(tmp_path / "b" / "x_pred.png") is None
    assert find_pairs(tmp_path / "b") == []


# ----------------------------------------------------------------------------- batch runs


def test_batch_writes_name_pred_and_never_segments_predictions_again(tiny_model, tmp_path):
    from napari_brainseg.batch import iter_segment_folder
    from napari_brainseg.batch_inputs import list_inputs
    from napari_brainseg.predict import Predictor
    from napari_brainseg.progress import drain
    from napari_brainseg.synthetic import write_sample_folder

    write_sample_folder(tmp_path / "in", n=2, shape=(64, 64))
    pred = Predictor.from_checkpoint(tiny_model)
    results = drain(iter_segment_folder(tmp_path / "in", tmp_path / "out", pred,
                                        skull_strip=False, overlays=True))
    names = sorted(r.output.name for r in results)
    assert all(n.endswith("_pred.png") for n in names) and len(names) == 2
    assert all(r.dice is not None for r in results)  # masks/ holds the truth
    overlays = sorted(p.name for p in (tmp_path / "out" / "overlays").rglob("*.png"))
    assert overlays == [n.replace("_pred.png", "_pred_overlay.png") for n in names]
    # The results copied into the input folder, beside an old run's NAME_tumour outputs:
    # a re-run lists the same two scans, never a prediction, an overlay or an old output.
    for p in (tmp_path / "out").rglob("*.png"):
        dest = tmp_path / "in" / "images" / p.name
        dest.write_bytes(p.read_bytes())
        dest.with_name(p.name.replace("_pred", "_tumour")).write_bytes(p.read_bytes())
    items = list_inputs(tmp_path / "in", exclude=tmp_path / "out2")
    assert sorted(s.name for s, _ in items) == sorted(r.source.name for r in results)
    assert all(gt is not None and gt.parent.name == "masks" and "_pred" not in gt.name
               for _, gt in items)


def test_a_rerun_into_an_old_results_folder_skips_its_tumour_outputs(tiny_model, tmp_path):
    from napari_brainseg.batch import iter_segment_folder
    from napari_brainseg.predict import Predictor
    from napari_brainseg.progress import drain

    img = (np.random.default_rng(0).random((64, 64)) * 200).astype(np.uint8)
    _png(tmp_path / "in" / "scan.png", img)
    _png(tmp_path / "out" / "scan_tumour.png", (img > 150).astype(np.uint8))  # an old result
    (res,) = drain(iter_segment_folder(tmp_path / "in", tmp_path / "out",
                                       Predictor.from_checkpoint(tiny_model), skull_strip=False))
    assert res.status == "skipped" and res.output.name == "scan_tumour.png"
    assert not (tmp_path / "out" / "scan_pred.png").exists()
    (res,) = drain(iter_segment_folder(tmp_path / "in", tmp_path / "out",
                                       Predictor.from_checkpoint(tiny_model), skull_strip=False,
                                       overwrite=True))
    assert res.status == "ok" and res.output.name == "scan_pred.png"


# ----------------------------------------------------------------------------- corrections


def _results(tmp_path, names=("a", "b", "c")):
    """A scans folder and a results folder as 'brainseg segment' leaves them (with sidecars)."""
    from napari_brainseg.provenance import record, write_sidecar

    rng = np.random.default_rng(1)
    for k, name in enumerate(names):
        img = (rng.random((48, 48)) * 200).astype(np.uint8)
        _png(tmp_path / "scans" / "sub" / f"{name}.png", img)
        pred = np.zeros((48, 48), np.uint8)
        pred[10 + k:20 + k, 10:20] = 1
        _png(tmp_path / "results" / "sub" / f"{name}_pred.png", pred)
        write_sidecar(tmp_path / "results" / "sub" / f"{name}_pred.png",
                      record(options={"threshold": 0.5}))
    return tmp_path / "scans", tmp_path / "results"


def test_record_correction_marks_a_sidecar_and_adds_up(tmp_path):
    from napari_brainseg.provenance import is_corrected, record_correction, sidecar_path

    _, results = _results(tmp_path)
    a = results / "sub" / "a_pred.png"
    assert not is_corrected(a)
    record_correction(a, [])
    assert not is_corrected(a)
    rec = json.loads(sidecar_path(a).read_text())
    assert rec["corrected"] is False and rec["options"] == {"threshold": 0.5}  # record kept
    record_correction(a, [3, 5])
    record_correction(a, [5, 7])  # opened again, another slice corrected
    rec = json.loads(sidecar_path(a).read_text())
    assert is_corrected(a) and rec["corrected_slices"] == 3
    assert rec["corrected_slice_indices"] == [3, 5, 7]
    # never over a user's file of that name
    user = results / "sub" / "b_pred.png.json"
    user.write_text('{"mine": true}')
    assert record_correction(results / "sub" / "b_pred.png", [0]) is None
    assert json.loads(user.read_text()) == {"mine": True} and not is_corrected(user.parent /
                                                                             "b_pred.png")


def test_corrected_pairs_takes_only_predictions_marked_corrected(tmp_path):
    from napari_brainseg.batch_inputs import corrected_pairs
    from napari_brainseg.provenance import record_correction

    scans, results = _results(tmp_path, names=("a", "b", "c", "d"))
    record_correction(results / "sub" / "a_pred.png", [0])
    old = results / "sub" / "b_tumour.png"  # an old output, corrected: still a prediction
    (results / "sub" / "b_pred.png").rename(old)
    (results / "sub" / "b_pred.png.json").unlink()
    record_correction(old, [0])
    (scans / "sub" / "d.png").unlink()  # corrected, but its scan is gone
    record_correction(results / "sub" / "d_pred.png", [0])
    found = corrected_pairs(scans, results)
    assert sorted((s.name, p.name) for s, p in found.pairs) == [("a.png", "a_pred.png"),
                                                               ("b.png", "b_tumour.png")]
    assert [p.name for p in found.not_corrected] == ["c_pred.png"]
    assert [p.name for p in found.no_scan] == ["d_pred.png"]


def test_train_labels_from_trains_on_corrected_predictions_only(tmp_path, capsys, monkeypatch):
    import napari_brainseg.train as train_mod
    from napari_brainseg.cli import main
    from napari_brainseg.provenance import record_correction

    scans, results = _results(tmp_path)
    record_correction(results / "sub" / "a_pred.png", [0])
    record_correction(results / "sub" / "b_pred.png", [0])
    seen = {}

    def fake_training(train_s, val_s, out, *a, **k):  # what the loop would be given
        seen["pairs"] = sorted((s.image_path.name, s.mask_path.name) for s in [*train_s, *val_s])
        seen["masks"] = [int(s.load()[1].sum()) for s in [*train_s, *val_s]]
        raise KeyboardInterrupt

    monkeypatch.setattr(train_mod, "iter_training", fake_training)
    code = main(["train", str(scans), "--labels-from", str(results), "--out",
                 str(tmp_path / "m.pt"), "-q"])
    out = capsys.readouterr().out
    assert code == 130  # the fake loop's Ctrl-C
    assert seen["pairs"] == [("a.png", "a_pred.png"), ("b.png", "b_pred.png")]
    assert seen["masks"] == [100, 100]
    assert "2 corrected prediction(s) paired" in out and "1 not marked corrected" in out


def test_train_labels_from_without_corrections_says_how_to_mark_them(tmp_path, capsys):
    from napari_brainseg.cli import main

    scans, results = _results(tmp_path)
    code = main(["train", str(scans), "--labels-from", str(results), "--out",
                 str(tmp_path / "m.pt"), "-q"])
    assert code == 2
    captured = capsys.readouterr()
    assert "3 not marked corrected" in captured.out
    assert "no corrected predictions" in captured.err and "save it over itself" in captured.err
    assert not (tmp_path / "m.pt").exists()
