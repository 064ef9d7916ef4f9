import csv

import imageio.v3 as iio
import nibabel as nib
import numpy as np
import pytest

from napari_brainseg.batch import iter_segment_folder, summarise
from napari_brainseg.cli import main
from napari_brainseg.metrics import confusion, scores
from napari_brainseg.predict import (
    BUILTIN_MODEL,
    Predictor,
    SegmentOptions,
    tumour_size,
)
from napari_brainseg.synthetic import make_phantom, write_sample_folder


def dice(a, b):
    return scores(confusion(a, b))["f1"]


def test_tiling_matches_whole_image(tiny_model):
    ph = make_phantom((160, 224), "glioma", seed=3, skull=False)
    whole = Predictor.from_checkpoint(tiny_model, SegmentOptions(tile=None))
    tiled = Predictor.from_checkpoint(tiny_model, SegmentOptions(tile=128, overlap=0.5))
    pw = whole.probability([ph.image])[0]
    pt = tiled.probability([ph.image])[0]
    assert pw.shape == pt.shape == ph.image.shape
    assert np.abs(pw - pt).mean() < 0.005
    assert dice(pw > 0.5, pt > 0.5) > 0.9
    # Windows smaller than the model's context drift more, but stay close.
    small = Predictor.from_checkpoint(tiny_model, SegmentOptions(tile=96, overlap=0.5))
    assert np.abs(pw - small.probability([ph.image])[0]).mean() < 0.01


def test_model_finds_phantom_tumours(tiny_model):
    pred = Predictor.from_checkpoint(tiny_model)
    pairs = []
    for s in range(3):
        ph = make_phantom((64, 64), ["meningioma", "glioma", "pituitary"][s], seed=s, skull=False)
        pairs.append((pred.segment_slice(ph.image).mask, ph.tumour))
    assert np.mean([dice(p, t) for p, t in pairs]) > 0.7


def test_tta_is_mean_of_flips(tiny_model):
    ph = make_phantom((64, 64), "meningioma", seed=9, skull=False)
    plain = Predictor.from_checkpoint(tiny_model)
    tta = Predictor.from_checkpoint(tiny_model, SegmentOptions(tta=True))
    flips = [ph.image, ph.image[:, ::-1], ph.image[::-1], ph.image[::-1, ::-1]]
    probs = [plain.probability([np.ascontiguousarray(f)])[0] for f in flips]
    unflipped = [probs[0], probs[1][:, ::-1], probs[2][::-1], probs[3][::-1, ::-1]]
    np.testing.assert_allclose(tta.probability([ph.image])[0], np.mean(unflipped, 0), atol=1e-5)


def _predictor_with(opts):
    from napari_brainseg.model import UNet, UNetConfig

    return Predictor(UNet(UNetConfig(base_filters=2)), None, opts, device="cpu")


def test_postprocessing_crafted_cases():
    prob = np.zeros((40, 40), np.float32)
    prob[5:15, 5:15] = 0.9  # big blob (100 px)
    prob[8:11, 8:11] = 0.1  # hole in it
    prob[30:32, 30:32] = 0.9  # small blob (4 px)
    prob[25:29, 2:6] = 0.9  # medium blob (16 px)
    p = _predictor_with(SegmentOptions(min_area_mm2=10))
    m = p.postprocess(prob)
    assert m[9, 9] == 1  # hole filled
    assert m[30, 30] == 0 and m[26, 3] == 1  # 4 mm² removed, 16 mm² kept
    assert p.postprocess(prob, spacing=(0.5, 0.5))[26, 3] == 0  # 16 px = 4 mm² at 0.5 mm
    largest = _predictor_with(SegmentOptions(min_area_mm2=0, keep="largest")).postprocess(prob)
    assert largest[26, 3] == 0 and largest[6, 6] == 1
    no_fill = _predictor_with(SegmentOptions(min_area_mm2=0, fill_holes=False)).postprocess(prob)
    assert no_fill[9, 9] == 0
    brain = np.zeros((40, 40), bool)
    brain[:20] = True
    inside = _predictor_with(SegmentOptions(min_area_mm2=0)).postprocess(prob, brain_mask=brain)
    assert inside[26, 3] == 0 and inside[6, 6] == 1


def test_tumour_size_units():
    m = np.zeros((4, 10, 10), np.uint8)
    m[1, 2:4, 2:4] = 1
    assert tumour_size(m, (2.0, 0.5, 0.5)) == (4, 2.0, "mm3")
    assert tumour_size(m[1], (0.5, 0.5)) == (4, 1.0, "mm2")
    # No pixel size in the file (PNG, TIFF, .mat): a count, never pixels passed off as mm²
    assert tumour_size(m[1], (1.0, 1.0), known=False) == (4, 4.0, "px")
    assert tumour_size(m, (1.0, 1.0, 1.0), known=False) == (4, 4.0, "vox")


def test_a_png_without_pixel_size_reports_pixels_not_mm2(tiny_model, tmp_path):
    """A PNG has no pixel size: results.csv leaves the mm² column empty and counts pixels."""
    img = make_phantom((64, 64), "glioma", seed=3, skull=False).image
    iio.imwrite(tmp_path / "slice.png", (255 * img / img.max()).astype(np.uint8))
    pred = Predictor.from_checkpoint(tiny_model)
    (res,) = list(iter_segment_folder(tmp_path / "slice.png", tmp_path / "out", pred))
    assert res.status == "ok" and res.unit == "px" and res.size_mm == res.voxels
    (row,) = csv.DictReader((tmp_path / "out" / "results.csv").open(encoding="utf-8"))
    assert row["tumour_area_mm2"] == "" and row["tumour_volume_mm3"] == ""
    assert row["tumour_voxels"] == str(res.voxels)


def test_options_validation():
    with pytest.raises(ValueError, match="threshold"):
        SegmentOptions(threshold=1.5)
    with pytest.raises(ValueError, match="keep"):
        SegmentOptions(keep="biggest")


def test_volume_mask_keeps_scan_shape_and_affine(tiny_model, tmp_path):
    vol = np.stack([make_phantom((64, 64), "glioma", seed=s, skull=False).image
                    for s in range(6)], axis=-1)  # NIfTI (x, y, z)
    affine = np.array([[-0.9, 0, 0, 10], [0, 0.9, 0, -20], [0, 0, 3.0, 5], [0, 0, 0, 1]])
    nib.save(nib.Nifti1Image(vol, affine), str(tmp_path / "scan.nii.gz"))
    pred = Predictor.from_checkpoint(tiny_model)
    results = list(iter_segment_folder(tmp_path / "scan.nii.gz", tmp_path / "out", pred))
    assert results[0].status == "ok" and results[0].unit == "mm3"
    out = nib.load(str(results[0].output))
    assert out.shape == vol.shape
    np.testing.assert_allclose(out.affine, affine)
    assert results[0].voxels == int(np.asarray(out.dataobj).sum())
    assert results[0].size_mm == pytest.approx(results[0].voxels * 0.9 * 0.9 * 3.0)


def test_batch_folder_with_broken_files_then_rerun(tiny_model, tmp_path, capsys):
    write_sample_folder(tmp_path / "in", n=3, shape=(64, 64))
    (tmp_path / "in" / "images" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    (tmp_path / "in" / "images" / "truncated.nii.gz").write_bytes(b"\x1f\x8b\x08\x00garbage")
    code = main(["segment", str(tmp_path / "in"), str(tmp_path / "out"), "--model",
                 str(tiny_model), "-q"])
    assert code == 1
    masks = sorted(p.name for p in (tmp_path / "out" / "images").glob("*_pred.*")
                   if p.suffix != ".json")  # not the provenance sidecars
    assert len(masks) == 3
    rows = list(csv.DictReader(open(tmp_path / "out" / "results.csv")))
    failed = [r for r in rows if r["status"] == "failed"]
    assert len(rows) == 5 and len(failed) == 2
    assert all(r["error"] for r in failed)
    assert {r["file"].split("/")[-1] for r in failed} == {"broken.png", "truncated.nii.gz"}
    assert all(r["dice_vs_mask"] for r in rows if r["status"] == "ok")
    out = capsys.readouterr().out
    assert "pooled over 3 files" in out and "baseline" in out
    # Re-run: finished files are skipped, the broken ones fail again.
    first = {p: p.stat().st_mtime_ns for p in (tmp_path / "out" / "images").glob("*_pred.*")
             if p.suffix != ".json"}
    assert main(["segment", str(tmp_path / "in"), str(tmp_path / "out"), "--model",
                 str(tiny_model), "-q"]) == 1
    rows = list(csv.DictReader(open(tmp_path / "out" / "results.csv")))
    assert sum(r["status"] == "skipped" for r in rows) == 3
    assert all(p.stat().st_mtime_ns == t for p, t in first.items())


def test_overlays_and_png_mask(tiny_model, tmp_path):
    write_sample_folder(tmp_path / "in", n=1, shape=(64, 64))
    pred = Predictor.from_checkpoint(tiny_model)
    (r,) = list(iter_segment_folder(tmp_path / "in", tmp_path / "out", pred, overlays=True))
    assert r.output.suffix == ".png" and iio.imread(r.output).shape == (64, 64)
    overlays = list((tmp_path / "out" / "overlays").rglob("*.png"))
    assert len(overlays) == 1 and iio.imread(overlays[0]).shape == (64, 64, 3)
    # mirrors the mask's sub-folder and keeps its name, marked as a picture (never an input)
    assert overlays[0] == tmp_path / "out" / "overlays" / "images" / \
        r.output.name.replace("_pred.png", "_pred_overlay.png")
    assert summarise([r])["ok"] == 1


def test_bad_model_path_exits_2(tmp_path, capsys):
    (tmp_path / "x.png").write_bytes(b"")
    assert main(["segment", str(tmp_path), str(tmp_path / "o"), "--model",
                 str(tmp_path / "nope.pt")]) == 2
    assert "no such checkpoint" in capsys.readouterr().err


def test_builtin_model_ships_with_its_card_and_segments_held_out_phantoms():
    assert BUILTIN_MODEL.is_file() and BUILTIN_MODEL.stat().st_size < 10_000_000
    pred = Predictor.from_checkpoint("demo")
    training = pred.checkpoint.training
    assert training["task"] == "tumour" and training["contrast"] == "contrast-enhanced T1"
    assert "synthetic" in training["model_card"] and "not a clinical" in training["model_card"]
    assert pred.pixel_mm == 1.0 and pred.min_enhancement == 1.5
    assert "mrhead" not in training["heads"]  # MRHead stays held out
    pairs = []
    for s in range(3):  # seeds far from the training seeds, with and without skull
        ph = make_phantom((256, 256), ["meningioma", "glioma", "pituitary"][s], seed=77_000 + s,
                          skull=bool(s % 2))
        pairs.append((pred.segment_slice(ph.image).mask, ph.tumour))
    total = sum((confusion(p, t) for p, t in pairs), confusion(pairs[0][0] * 0, pairs[0][1] * 0))
    assert scores(total)["f1"] > 0.8


def test_batch_notes_a_ground_truth_of_another_size(tmp_path, tiny_model):
    from napari_brainseg.batch import iter_segment_folder
    from napari_brainseg.predict import Predictor
    from napari_brainseg.progress import drain

    (tmp_path / "in").mkdir()
    iio.imwrite(tmp_path / "in" / "a.png", np.random.default_rng(0).integers(0, 255, (64, 64),
                                                                             np.uint8))
    iio.imwrite(tmp_path / "in" / "a_mask.png", np.zeros((32, 32), np.uint8))
    (res,) = drain(iter_segment_folder(tmp_path / "in", tmp_path / "out",
                                       Predictor.from_checkpoint(tiny_model)))
    assert res.status == "ok" and res.dice is None and "does not match" in res.error


def test_keep_largest_on_a_volume_keeps_the_whole_3d_tumour():
    # A U-shaped tumour: two arms on slices 0-4 joined on slice 5. Each arm alone is the slice's
    # "largest" piece on some slices, but in 3D they are one tumour and must both stay.
    prob = np.zeros((6, 20, 20), np.float32)
    prob[:5, 2:6, 5:10] = 0.9
    prob[:5, 12:15, 5:10] = 0.9
    prob[5, 2:15, 5:10] = 0.9
    prob[2, 17:19, 17:19] = 0.9  # a separate speck: not the largest in 3D
    p = _predictor_with(SegmentOptions(min_area_mm2=0, keep="largest", batch_size=2))
    p.probability = lambda slices, spacing=None: [prob[k] for k in _slice_ids(slices, prob)]
    res = p.segment_volume(np.zeros_like(prob) + np.arange(6)[:, None, None])
    expected = prob > 0.5
    expected[2, 17:19, 17:19] = False
    np.testing.assert_array_equal(res.mask.astype(bool), expected)


def _slice_ids(slices, prob):
    # the fake volume's slice k is filled with the value k
    return [int(s[0, 0]) for s in slices]


def test_output_folder_inside_the_input_is_never_segmented_again(tiny_model, tmp_path):
    write_sample_folder(tmp_path / "in", n=2, shape=(64, 64))
    args = ["segment", str(tmp_path / "in"), str(tmp_path / "in" / "results"), "--model",
            str(tiny_model), "-q"]
    assert main(args) == 0
    assert main(args) == 0  # the re-run sees the same two scans, not its own outputs
    rows = list(csv.DictReader(open(tmp_path / "in" / "results" / "results.csv")))
    assert len(rows) == 2 and all(r["status"] == "skipped" for r in rows)
    assert not list((tmp_path / "in").rglob("*_pred_pred*"))


@pytest.mark.parametrize("output", [".", ".."], ids=["output-is-input", "output-holds-input"])
def test_masks_can_go_beside_the_scans(tiny_model, tmp_path, output):
    # OUTPUT = INPUT (or a folder holding it) used to exclude every scan: "no scans found"
    write_sample_folder(tmp_path / "in", n=2, shape=(64, 64))
    src = tmp_path / "in" / "images"
    out = (src / output).resolve()
    args = ["segment", str(src), str(out), "--model", str(tiny_model), "-q", "--overlays"]
    assert main(args) == 0
    rows = list(csv.DictReader(open(out / "results.csv")))
    assert [r["status"] for r in rows] == ["ok", "ok"]
    assert main(args) == 0  # the re-run skips both and segments no prediction or overlay
    rows = list(csv.DictReader(open(out / "results.csv")))
    assert [r["status"] for r in rows] == ["skipped", "skipped"]
    assert len(list(out.rglob("*_pred.png"))) == 2
    assert not list(tmp_path.rglob("*_pred_pred*")) and not list(tmp_path.rglob("*overlay_pred*"))


def test_a_fixed_pixel_size_model_gets_slices_resampled_and_answers_on_their_grid(tiny_model):
    pred = Predictor.from_checkpoint(tiny_model)
    assert pred.pixel_mm is None  # a user's model sees slices as they are
    img = make_phantom((64, 96), "glioma", seed=3, skull=False).image
    assert pred._grid_size([img], (0.5, 0.5)) is None
    pred.pixel_mm = 1.0
    assert pred._grid_size([img], (0.5, 0.5)) == (32, 48)
    assert pred._grid_size([img], (2.0, 1.0)) == (128, 96)
    assert pred._grid_size([img], (1.0, 1.0)) is None
    prob = pred.probability([img], (0.5, 0.5))
    assert prob.shape == (1, 64, 96) and np.isfinite(prob).all()
    # unknown pixel size: guessed from the head's extent (190 mm across its longer side)
    head = np.zeros((200, 200), np.float32)
    head[50:150, 20:180] = 100
    assert _approx(pred._grid_size([head], None), (238, 238))


def _approx(a, b, tol=2):
    return a is not None and all(abs(x - y) <= tol for x, y in zip(a, b, strict=True))


def test_components_that_do_not_enhance_are_dropped(tiny_model):
    pred = Predictor.from_checkpoint(tiny_model)
    img = np.full((60, 60), 100.0, np.float32)  # white matter at 100
    brain = np.zeros_like(img, bool)
    brain[5:55, 5:55] = True
    mask = np.zeros(img.shape, np.uint8)
    mask[10:20, 10:20] = 1
    img[10:20, 10:20] = 120  # 1.2 x white matter: not enhancing
    mask[30:40, 30:40] = 1
    img[30:40, 30:40] = 180  # 1.8 x: enhancing
    assert pred.drop_unenhanced(mask, img, brain) == (mask, 0)  # check off for user models
    pred.min_enhancement = 1.5
    out, dropped = pred.drop_unenhanced(mask, img, brain)
    assert dropped == 1 and out[15, 15] == 0 and out[35, 35] == 1
    assert pred.drop_unenhanced(mask, img, None)[1] == 0  # no brain mask: nothing to compare


def test_an_already_stripped_volume_still_gets_the_enhancement_check(tiny_model, monkeypatch):
    # segment stripped/ --no-skull-strip ran no enhancement check at all (no brain mask): a
    # stripped healthy Colin27 got 25.6 cm³ of false tumour. Its foreground is the brain.
    from napari_brainseg.predict import VolumeResult, segment_scan
    from napari_brainseg.preprocess import foreground

    vol = np.zeros((6, 60, 60), np.float32)  # background 0 around a stripped brain
    vol[:, 5:55, 5:55] = 100.0  # white matter at 100
    vol[:, 10:20, 10:20] = 120.0  # 1.2 x: not enhancing
    vol[:, 30:40, 30:40] = 180.0  # 1.8 x: enhancing
    marked = np.zeros(vol.shape, np.uint8)
    marked[:, 10:20, 10:20] = marked[:, 30:40, 30:40] = 1

    def fixed(*args, **kwargs):  # the model marks both blocks
        yield 1, 1
        return VolumeResult(marked.copy(), None, int(marked.sum()), float(marked.sum()), "mm3")

    pred = Predictor.from_checkpoint(tiny_model)
    pred.min_enhancement = 1.5  # as the built-in CE-T1 model
    monkeypatch.setattr(pred, "iter_segment_volume", fixed)
    res = segment_scan(pred, vol, (1.0, 1.0, 1.0), skull_strip=False)
    assert res.dropped == 1 and res.mask[0, 15, 15] == 0 and res.mask[0, 35, 35] == 1
    assert res.brain is None  # nothing was stripped here
    assert foreground(np.ones((4, 4, 4))) is None  # no background: no brain to find this way
    assert foreground(vol)[0, 5, 5] and not foreground(vol)[0, 0, 0]
    # a model without the check (a user's): the volume's holes are not filled for nothing
    import napari_brainseg.predict as predict_module

    def unwanted(volume):
        raise AssertionError("foreground computed for a model without an enhancement check")

    monkeypatch.setattr(predict_module, "foreground", unwanted)
    pred.min_enhancement = None
    res = segment_scan(pred, vol, (1.0, 1.0, 1.0), skull_strip=False)
    assert res.dropped == 0 and res.voxels == int(marked.sum())


def test_segment_scan_strips_volumes_by_default_but_not_single_slices(tiny_model, monkeypatch):
    import napari_brainseg.skullstrip as ss
    from napari_brainseg.predict import iter_segment_scan, segment_scan

    calls = []

    def fake_strip(image, spacing, **kw):
        calls.append(np.ndim(image))
        yield 1, 1
        return np.ones(np.shape(image), bool)

    monkeypatch.setattr(ss, "iter_skull_strip", fake_strip)
    pred = Predictor.from_checkpoint(tiny_model)
    img = make_phantom((64, 64), "glioma", seed=4, skull=False).image
    assert segment_scan(pred, img, (1.0, 1.0)).brain is None and calls == []
    assert segment_scan(pred, img, (1.0, 1.0), skull_strip=True).brain is not None
    vol = np.stack([img] * 10)
    steps = list(iter_segment_scan(pred, vol, (1.0, 1.0, 1.0)))
    assert calls == [2, 3] and steps[-1] == (11, 11) and steps[0] == (0, 11)
    given = np.zeros(vol.shape, bool)
    res = segment_scan(pred, vol, (1.0, 1.0, 1.0), brain_mask=given)
    assert calls == [2, 3] and res.voxels == 0 and res.brain is None  # a given mask is used


def test_largest_lesion_centre():
    from napari_brainseg.predict import largest_lesion_centre

    m = np.zeros((20, 30, 30), np.uint8)
    assert largest_lesion_centre(m) is None
    m[2:4, 2:4, 2:4] = 1
    m[10:17, 5:9, 20:26] = 1
    assert largest_lesion_centre(m) == (13, 6, 22)


def test_every_series_of_a_multi_series_dicom_folder_is_segmented(tmp_path, tiny_model):
    from conftest import make_dicom_series
    from napari_brainseg.batch import iter_segment_folder
    from napari_brainseg.progress import drain

    folder = tmp_path / "in" / "exam"
    folder.mkdir(parents=True)
    for name, uid, n in (("a", "1.2.3.1", 3), ("b", "1.2.3.2", 4)):
        for p in make_dicom_series(tmp_path / name, n=n, uid=uid):
            p.rename(folder / f"{name}_{p.name}.dcm")
    pred = Predictor.from_checkpoint(tiny_model)
    results = drain(iter_segment_folder(tmp_path / "in", tmp_path / "out", pred,
                                        skull_strip=False))
    assert [r.status for r in results] == ["ok", "ok"]
    assert [r.output.name for r in results] == ["exam_series1_pred.nii.gz",
                                                "exam_series2_pred.nii.gz"]
    assert results[0].error.startswith("series 1 of 2") and "series 2 of 2" in results[1].error
    assert sorted(nib.load(r.output).shape for r in results) == [(64, 64, 3), (64, 64, 4)]
    again = drain(iter_segment_folder(tmp_path / "in", tmp_path / "out", pred,
                                      skull_strip=False))
    assert [r.status for r in again] == ["skipped", "skipped"]  # a re-run keeps both


def test_a_folder_of_extension_less_dicom_files_is_found(tmp_path, tiny_model):
    from conftest import make_dicom_series
    from napari_brainseg.batch import iter_segment_folder
    from napari_brainseg.batch_inputs import list_inputs
    from napari_brainseg.progress import drain

    make_dicom_series(tmp_path / "in" / "exam", n=3)  # IM0000, IM0001, ... as scanners export
    (tmp_path / "in" / "exam" / "README").write_text("not an image")
    assert list_inputs(tmp_path / "in") == [(tmp_path / "in" / "exam", None)]
    (r,) = drain(iter_segment_folder(tmp_path / "in", tmp_path / "out",
                                     Predictor.from_checkpoint(tiny_model), skull_strip=False))
    assert r.status == "ok" and r.output.name == "exam_pred.nii.gz"


def test_batch_reports_the_slices_of_each_scan(tmp_path, tiny_model):
    from conftest import make_dicom_series
    from napari_brainseg.batch import iter_segment_folder
    from napari_brainseg.progress import drain

    make_dicom_series(tmp_path / "in" / "a", n=5, uid="1.2.3.1")
    make_dicom_series(tmp_path / "in" / "b", n=3, uid="1.2.3.2")
    pred = Predictor.from_checkpoint(tiny_model, SegmentOptions(batch_size=2))
    calls = []
    results = drain(iter_segment_folder(tmp_path / "in", tmp_path / "out", pred,
                                        skull_strip=False, on_slices=lambda d, t: calls.append(
                                            (d, t))))
    assert [r.status for r in results] == ["ok", "ok"]
    assert calls == [(2, 5), (4, 5), (5, 5), (2, 3), (3, 3)]  # per batch of 2 slices, per scan


def test_nan_probabilities_are_an_error_not_an_empty_mask(tiny_model, monkeypatch, tmp_path):
    import torch

    pred = Predictor.from_checkpoint(tiny_model, device="cpu")
    monkeypatch.setattr(pred, "_forward", lambda x: torch.full_like(x, float("nan")))
    img = make_phantom((64, 64), "glioma", seed=2).image
    with pytest.raises(ValueError, match="NaN/Inf probabilities"):
        pred.segment_slice(img)
    iio.imwrite(tmp_path / "a.png", (img / img.max() * 255).astype(np.uint8))
    results = list(iter_segment_folder(tmp_path / "a.png", tmp_path / "out", pred))
    assert results[0].status == "failed" and "NaN/Inf" in results[0].error
    assert not list((tmp_path / "out").glob("a_pred*"))


def test_threshold_left_to_the_model(tiny_model, tmp_path):
    """No threshold given: the checkpoint's recorded one (the built-in model's 0.6), else 0.5."""
    from napari_brainseg.model import load_checkpoint, save_checkpoint

    assert Predictor.from_checkpoint("demo").options.threshold == 0.6
    assert Predictor.from_checkpoint("demo", SegmentOptions(threshold=0.5)).options.threshold \
        == 0.5  # the user's choice wins
    # brainseg train records the threshold of its validation Dice (TrainConfig: 0.5) as its own
    assert Predictor.from_checkpoint(tiny_model).options.threshold == 0.5
    ck = load_checkpoint(tiny_model)
    assert ck.training["threshold"] == 0.5
    none = {k: v for k, v in ck.training.items() if k != "threshold"}
    for own, expected in ((0.7, 0.7), ("0.7", 0.5), (1.5, 0.5), (None, 0.5)):  # bad: ignored
        save_checkpoint(tmp_path / "m.pt", ck.model, ck.normalisation,
                        none if own is None else {**none, "threshold": own}, ck.metrics)
        opts = Predictor.from_checkpoint(tmp_path / "m.pt", SegmentOptions(tta=True)).options
        assert opts.threshold == expected and opts.tta
