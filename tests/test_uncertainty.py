"""Uncertainty maps and scores (TTA and MC dropout) on small models."""

import numpy as np
import pytest
import torch

from napari_brainseg.model import UNet, UNetConfig
from napari_brainseg.predict import Predictor
from napari_brainseg.synthetic import make_phantom
from napari_brainseg.uncertainty import (
    UncertaintyOptions,
    UncertaintyResult,
    encoder_features,
    entropy_bits,
    iter_uncertainty,
    probability_passes,
    select_slices,
    uncertainty,
)


def _dropout_predictor(seed: int = 0) -> Predictor:
    torch.manual_seed(seed)
    model = UNet(UNetConfig(base_filters=4, dropout=(0.3,) * 5))
    return Predictor(model, device="cpu")


def test_entropy_bits_bounds():
    p = np.array([0.0, 0.5, 1.0, 0.1, 0.9])
    h = entropy_bits(p)
    assert h[1] == pytest.approx(1.0)
    assert h[0] < 1e-5 and h[2] < 1e-5
    assert h[3] == pytest.approx(h[4]) and 0.4 < h[3] < 0.5
    assert torch.allclose(entropy_bits(torch.tensor(p)), torch.tensor(h))


@pytest.mark.parametrize("kw", [dict(method="bayes"), dict(passes=1), dict(passes=5),
                                dict(method="mc-dropout", passes=65)])
def test_options_are_validated(kw):
    with pytest.raises(ValueError):
        UncertaintyOptions(**kw)


def test_a_coin_toss_model_is_one_bit_everywhere(tiny_model, monkeypatch):
    pred = Predictor.from_checkpoint(tiny_model, device="cpu")
    monkeypatch.setattr(pred, "_forward", lambda x: torch.full_like(x, 0.5))
    img = make_phantom((40, 48), "glioma", seed=1).image
    res = uncertainty(pred, img, (0.5, 2.0))
    assert res.map.shape == img.shape and res.unit == "mm2"
    assert np.allclose(res.map, 1.0, atol=1e-3)
    assert res.score == pytest.approx(40 * 48 * 0.5 * 2.0, rel=1e-3)
    assert res.slice_scores.shape == (1,)


def test_volume_scores_are_per_slice_and_zero_outside_the_brain(tiny_model):
    pred = Predictor.from_checkpoint(tiny_model, device="cpu")
    vol = np.stack([make_phantom((48, 48), "meningioma", seed=s, skull=False).image
                    for s in range(5)])
    brain = np.zeros(vol.shape, bool)
    brain[1:4, 8:40, 8:40] = True
    res = uncertainty(pred, vol, (3.0, 1.0, 1.0), brain_mask=brain)
    assert res.map.shape == vol.shape and res.map.dtype == np.float16
    assert not res.map[~brain].any()
    assert res.slice_scores[0] == 0 and res.slice_scores[4] == 0
    expected = res.map.astype(np.float64).sum(axis=(1, 2))  # 1 x 1 mm pixels
    assert np.allclose(res.slice_scores, expected, rtol=1e-3)
    assert res.score == pytest.approx(3.0 * res.slice_scores.sum(), rel=1e-6)
    assert res.unit == "mm3"
    assert set(res.ranked_slices()) <= {1, 2, 3}


def test_axis_other_than_zero_gives_the_same_map(tiny_model):
    pred = Predictor.from_checkpoint(tiny_model, device="cpu")
    vol = np.stack([make_phantom((40, 40), "glioma", seed=s).image for s in range(3)])
    a = uncertainty(pred, vol, None)
    b = uncertainty(pred, np.moveaxis(vol, 0, 2), None, axis=2)
    assert np.allclose(np.moveaxis(b.map, 2, 0), a.map, atol=1e-3)


def test_progress_is_per_batch_of_slices(tiny_model):
    pred = Predictor.from_checkpoint(tiny_model, device="cpu")
    vol = np.zeros((10, 32, 32), np.float32)
    steps = list(iter_uncertainty(pred, vol, None))
    assert steps[0] == (0, 10) and steps[-1] == (10, 10)


def test_mc_dropout_is_seeded_and_leaves_the_model_in_eval_mode():
    pred = _dropout_predictor()
    img = make_phantom((32, 32), "glioma", seed=2).image
    opts = UncertaintyOptions("mc-dropout", passes=3, seed=5)
    a = probability_passes(pred, [img], None, opts)
    b = probability_passes(pred, [img], None, opts)
    c = probability_passes(pred, [img], None, UncertaintyOptions("mc-dropout", 3, seed=6))
    assert a.shape == (3, 1, 32, 32)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert not np.allclose(a[0], a[1])  # dropout really samples
    assert not any(m.training for m in pred.model.modules())


def test_mc_dropout_needs_dropout(tiny_model):
    pred = Predictor.from_checkpoint(tiny_model, device="cpu")  # trained with dropout 0
    with pytest.raises(ValueError, match="no dropout"):
        probability_passes(pred, [np.zeros((32, 32), np.float32)], None,
                           UncertaintyOptions("mc-dropout", 4))


def test_tta_first_pass_is_the_plain_prediction(tiny_model):
    pred = Predictor.from_checkpoint(tiny_model, device="cpu")
    img = make_phantom((48, 64), "pituitary", seed=3).image
    passes = probability_passes(pred, [img], None, UncertaintyOptions("tta", 4))
    assert np.allclose(passes[0, 0], pred.probability([img])[0], atol=1e-5)


def test_segment_cli_scores_files_and_lists_the_least_certain_first(tiny_model, tmp_path,
                                                                     capsys):
    import csv

    import nibabel as nib

    from napari_brainseg.cli import main
    from napari_brainseg.synthetic import write_sample_folder

    write_sample_folder(tmp_path / "in", n=2, shape=(48, 48))
    vol = np.stack([make_phantom((48, 48), "glioma", seed=s).image for s in range(4)])
    nib.save(nib.Nifti1Image(np.moveaxis(vol, 0, 2), np.eye(4)), str(tmp_path / "in" / "v.nii"))
    code = main(["segment", str(tmp_path / "in"), str(tmp_path / "out"), "--model",
                 str(tiny_model), "-q", "--no-skull-strip", "--uncertainty"])
    assert code == 0
    rows = list(csv.DictReader(open(tmp_path / "out" / "results.csv")))
    assert len(rows) == 3 and all(float(r["uncertainty"]) >= 0 for r in rows)
    vol_row = next(r for r in rows if r["file"].endswith("v.nii"))
    assert vol_row["most_uncertain_slice"] != ""
    assert all(r["most_uncertain_slice"] == "" for r in rows if r is not vol_row)
    out = capsys.readouterr().out
    assert "uncertainty" in out
    printed = [ln.split()[0] for ln in out.splitlines()[1:4]]
    expected = [r["file"] for r in sorted(rows, key=lambda r: -float(r["uncertainty"]))]
    assert printed == expected
    # without the option the column is empty and no extra pass runs
    code = main(["segment", str(tmp_path / "in"), str(tmp_path / "out2"), "--model",
                 str(tiny_model), "-q", "--no-skull-strip"])
    assert code == 0
    rows = list(csv.DictReader(open(tmp_path / "out2" / "results.csv")))
    assert all(r["uncertainty"] == "" for r in rows)


def test_bad_uncertainty_passes_is_a_usage_error(tiny_model, tmp_path, capsys):
    from napari_brainseg.cli import main

    img = tmp_path / "a.png"
    import imageio.v3 as iio

    iio.imwrite(img, (make_phantom((48, 48), "glioma", seed=1).image * 200).astype(np.uint8))
    code = main(["segment", str(img), str(tmp_path / "o"), "--model", str(tiny_model), "-q",
                 "--uncertainty", "tta", "--uncertainty-passes", "8"])
    assert code == 2
    assert "tta needs 2-4 passes" in capsys.readouterr().err  # there are only 4 flips
    code = main(["segment", str(img), str(tmp_path / "o"), "--model", str(tiny_model), "-q",
                 "--uncertainty", "mc-dropout", "--uncertainty-passes", "100"])
    assert code == 2
    assert "--uncertainty-passes must be between 2 and 64" in capsys.readouterr().err


# ----------------------------------------------------------------- choosing slices to correct


def _clusters():
    """Three tight clusters of slices: A (0-2), B (3-4), C (5), then two sure slices (6-7)."""
    centres = np.eye(4)[:3] * 10.0
    members = [0, 0, 0, 1, 1, 2, 0, 1]
    jitter = np.random.default_rng(0).normal(0, 0.1, (8, 4))
    features = centres[members] + jitter
    scores = np.array([10.0, 9.0, 8.0, 7.0, 6.0, 5.0, 0.0, 0.0])
    return scores, features, members


def test_select_slices_spends_a_batch_on_different_slices_not_near_copies():
    scores, features, members = _clusters()
    chosen = select_slices(scores, features, 3)
    assert len(chosen) == 3 and len(set(chosen)) == 3
    assert {members[i] for i in chosen} == {0, 1, 2}  # one per cluster
    # with one candidate per slot it is the plain "most uncertain first"
    assert select_slices(scores, features, 3, candidates=1) == [0, 1, 2]
    assert select_slices(scores, features, 3) == select_slices(scores, features, 3)


def test_select_slices_skips_corrected_slices_and_what_they_cover():
    scores, features, members = _clusters()
    chosen = select_slices(scores, features, 2, labelled=[0], candidates=3)
    assert 0 not in chosen
    assert {members[i] for i in chosen} == {1, 2}  # cluster A is covered by slice 0


def test_select_slices_never_picks_a_sure_slice():
    scores, features, _ = _clusters()
    chosen = select_slices(scores, features, 8, candidates=4)
    assert sorted(chosen) == [0, 1, 2, 3, 4, 5]
    assert select_slices(np.zeros(3), np.ones((3, 2)), 2) == []


@pytest.mark.parametrize("kw", [dict(features=np.zeros((7, 4))), dict(k=0),
                                dict(candidates=0)])
def test_select_slices_checks_its_input(kw):
    scores, features, _ = _clusters()
    args = dict(scores=scores, features=features, k=2) | kw
    with pytest.raises(ValueError, match="must be"):
        select_slices(args.pop("scores"), args.pop("features"), **args)


def test_diverse_ranking_orders_every_uncertain_slice_batch_by_batch():
    scores, features, members = _clusters()
    res = UncertaintyResult(np.zeros((8, 4, 4), np.float16), scores, 1.0, "mm3", features)
    assert res.ranked_slices() == [0, 1, 2, 3, 4, 5]
    ranked = res.ranked_slices(diverse=True, batch=3)
    assert sorted(ranked) == [0, 1, 2, 3, 4, 5]
    assert {members[i] for i in ranked[:3]} == {0, 1, 2}
    plain = UncertaintyResult(res.map, scores, 1.0, "mm3")
    with pytest.raises(ValueError, match="features=True"):
        plain.ranked_slices(diverse=True)


def test_features_are_the_bottleneck_mean_of_each_slice():
    torch.manual_seed(0)
    pred = Predictor(UNet(UNetConfig(base_filters=4)), device="cpu")
    vol = np.stack([make_phantom((40, 44), "glioma", seed=s).image for s in range(3)])
    f = encoder_features(pred, list(vol))
    assert f.shape == (3, 4 * 2 ** pred.model.config.depth) and f.dtype == np.float32
    assert not np.allclose(f[0], f[1])
    res = uncertainty(pred, vol, None, features=True)
    assert np.allclose(res.features, f, atol=1e-5)
    assert uncertainty(pred, vol, None).features is None
