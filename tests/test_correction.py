"""The correction loop's core: corrected slices, versioned models, fine-tuning with replay."""

import numpy as np
import pytest

from napari_brainseg.correction import (
    Correction,
    FinetuneConfig,
    corrected_slices,
    finetune,
    folder_replay,
    iter_finetune,
    next_version_path,
)
from napari_brainseg.data import add_training_pair
from napari_brainseg.model import load_checkpoint
from napari_brainseg.synthetic import make_phantom


def test_corrected_slices_are_those_that_differ():
    pred = np.zeros((5, 8, 8), np.uint8)
    lab = pred.copy()
    lab[1, 2, 2] = 1
    lab[3, 0, 0] = 3  # any non-zero value is tumour
    pred[4, 1, 1] = 1
    lab[4, 1, 1] = 2  # same tumour pixel, another label value: not a correction
    assert corrected_slices(pred, lab) == [1, 3]
    assert corrected_slices(pred, lab, axis=1) == [0, 2]
    assert corrected_slices(pred[0], lab[0]) == [] and corrected_slices(pred[1], lab[1]) == [0]
    with pytest.raises(ValueError, match="shape"):
        corrected_slices(pred, lab[:4])


def test_next_version_never_names_an_existing_file(tmp_path, monkeypatch):
    m = tmp_path / "model.pt"
    m.write_bytes(b"x")
    assert next_version_path(m) == tmp_path / "model.v2.pt"
    (tmp_path / "model.v2.pt").write_bytes(b"x")
    assert next_version_path(m) == tmp_path / "model.v3.pt"
    assert next_version_path(tmp_path / "model.v2.pt") == tmp_path / "model.v3.pt"
    monkeypatch.chdir(tmp_path)
    assert next_version_path("builtin") == tmp_path / "tumour_unet.v2.pt"


@pytest.mark.parametrize("kw", [dict(steps=0), dict(lr=0), dict(replay_fraction=1.0),
                                dict(holdout_fraction=-0.1), dict(patch=8)])
def test_config_is_validated(kw):
    with pytest.raises(ValueError):
        FinetuneConfig(**kw)


def _corrections(n, size=64, seed=0):
    out = []
    for s in range(n):
        ph = make_phantom((size, size), ["glioma", "meningioma"][s % 2], seed=seed + s,
                          skull=False)
        out.append(Correction(ph.image, ph.tumour))
    return out


def test_finetune_learns_the_users_convention_and_never_touches_user_data(tiny_model,
                                                                          tmp_path):
    from scipy import ndimage as ndi

    # The user outlines tumours 3 pixels wider than the model learnt (a margin convention):
    # fine-tuning on such corrections must move the held-out Dice towards it.
    corr = [Correction(c.image, ndi.binary_dilation(c.mask > 0, iterations=3).astype(np.uint8))
            for c in _corrections(10, seed=100)]
    copies = [(c.image.copy(), c.mask.copy()) for c in corr]
    cfg = FinetuneConfig(steps=30, batch_size=4, lr=1e-3, patch=64, holdout_fraction=0.3)
    gen = iter_finetune(tiny_model, corr, tmp_path / "new.pt", None, cfg)
    steps = []
    while True:
        try:
            steps.append(next(gen))
        except StopIteration as stop:
            res = stop.value
            break
    assert [s.step for s in steps] == list(range(1, 31))
    assert res.n_holdout == 3 and res.n_train == 7 and res.replayed == 0
    assert res.dice_before is not None and res.dice_after is not None
    assert res.dice_after > res.dice_before + 0.05  # measured: 0.51 -> 0.64
    for c, (img, msk) in zip(corr, copies, strict=True):  # the user's arrays are untouched
        assert np.array_equal(c.image, img) and np.array_equal(c.mask, msk)
    ck = load_checkpoint(res.path)
    assert ck.training["corrections"]["train"] == 7
    assert len(ck.training["finetuned_from"]["sha256"]) == 64
    assert ck.metrics["holdout_dice_after"] == pytest.approx(res.dice_after)


def test_finetune_refuses_to_overwrite_and_needs_corrections(tiny_model, tmp_path):
    (tmp_path / "taken.pt").write_bytes(b"mine")
    with pytest.raises(FileExistsError):
        finetune(tiny_model, _corrections(2), tmp_path / "taken.pt")
    assert (tmp_path / "taken.pt").read_bytes() == b"mine"
    with pytest.raises(ValueError, match="no corrected"):
        finetune(tiny_model, [], tmp_path / "x.pt")


def test_default_output_is_a_new_version_beside_the_model(tiny_model, tmp_path):
    import shutil

    model = tmp_path / "mine.pt"
    shutil.copy(tiny_model, model)
    before = model.read_bytes()
    res = finetune(model, _corrections(2), None, None, FinetuneConfig(steps=2, patch=64))
    assert res.path == tmp_path / "mine.v2.pt" and res.path.is_file()
    assert model.read_bytes() == before
    assert res.dice_before is None  # too few corrections to hold any out


def test_folder_replay_mixes_training_pairs(tiny_model, tmp_path):
    folder = tmp_path / "train"
    for i, c in enumerate(_corrections(3, seed=7)):
        add_training_pair(folder, c.image, c.mask, f"p{i}")
    draw = folder_replay(tiny_model, folder)
    img, msk = draw(np.random.default_rng(0))
    assert img.shape == msk.shape == (64, 64) and msk.dtype == np.uint8
    res = finetune(tiny_model, _corrections(2), tmp_path / "r.pt", draw,
                   FinetuneConfig(steps=3, batch_size=4, patch=64, replay_fraction=0.5))
    assert res.replayed == 6


def test_spacing_resamples_to_the_model_grid(tiny_model, tmp_path, monkeypatch):
    from napari_brainseg import correction

    ck = load_checkpoint(tiny_model)
    ck.training["pixel_mm"] = 1.0
    img = np.ones((40, 60), np.float32)
    msk = np.zeros((40, 60), np.uint8)
    msk[10:20, 10:30] = 1
    i2, m2 = correction.to_model_grid(ck, Correction(img, msk, (2.0, 0.5)))
    assert i2.shape == m2.shape == (80, 30)
    assert 150 <= m2.sum() <= 250  # 10 x 20 px of 1 mm² = 200 mm² stays 200 mm²
    i3, m3 = correction.to_model_grid(ck, Correction(img, msk))
    assert i3.shape == (40, 60) and m3.sum() == 200


def test_finetune_keeps_and_scores_at_the_models_own_threshold(tiny_model, tmp_path,
                                                               monkeypatch):
    """The built-in model runs at its recorded 0.6: the fine-tuned version keeps it, and its
    held-out Dice before and after is measured at it, as the model will run."""
    from napari_brainseg import correction
    from napari_brainseg.model import save_checkpoint

    ck = load_checkpoint(tiny_model)
    save_checkpoint(tmp_path / "own.pt", ck.model, ck.normalisation,
                    {**ck.training, "threshold": 0.6}, ck.metrics)
    seen = []
    real = correction._dice
    monkeypatch.setattr(correction, "_dice",
                        lambda m, pairs, threshold: seen.append(threshold) or real(m, pairs,
                                                                                   threshold))
    res = finetune(tmp_path / "own.pt", _corrections(6), tmp_path / "new.pt", None,
                   FinetuneConfig(steps=2, batch_size=2, patch=64, holdout_fraction=0.3))
    assert seen == [0.6, 0.6] and res.dice_before is not None
    assert load_checkpoint(res.path).training["threshold"] == 0.6
