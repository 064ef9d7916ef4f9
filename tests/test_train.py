import threading

import numpy as np
import pytest
import torch

from napari_brainseg.data import Sample
from napari_brainseg.losses import LossConfig
from napari_brainseg.model import UNetConfig, load_checkpoint
from napari_brainseg.synthetic import make_phantom
from napari_brainseg.train import (
    BatchProgress,
    EpochReport,
    TrainConfig,
    iter_training,
    last_path_for,
    train,
)

KINDS = ["meningioma", "glioma", "pituitary"]
TINY = UNetConfig(base_filters=8, dropout=(0.0,) * 5)


def phantom_samples(n, size=64, start=0):
    out = []
    for s in range(start, start + n):
        ph = make_phantom((size, size), KINDS[s % 3], seed=s, skull=False)
        out.append(Sample(f"p{s}", image=ph.image, mask=ph.tumour))
    return out


def test_overfits_small_phantom_set(tmp_path):
    samples = phantom_samples(16)
    cfg = TrainConfig(loss=LossConfig("dice+bce"), epochs=50, batch_size=4, lr=3e-3,
                      patch_size=64, augment=False, schedule="none", patience=None, seed=0)
    result = train(samples, samples, tmp_path / "m.pt", cfg, TINY)
    assert result.best_score > 0.9, result.history[-1]
    ck = load_checkpoint(result.best_path)
    assert ck.metrics["val_dice"] == pytest.approx(result.best_score)
    assert ck.training["loss"]["name"] == "dice+bce"
    assert ck.normalisation["method"] == "percentile"


def _weights(path):
    return load_checkpoint(path).model.state_dict()


def test_resume_gives_same_weights_as_uninterrupted(tmp_path):
    samples = phantom_samples(6)
    cfg = TrainConfig(epochs=4, batch_size=2, patch_size=48, augment=True, seed=7,
                      schedule="plateau", patience=None)
    model_cfg = UNetConfig(base_filters=4)  # default dropout: tests the RNG handling too
    full = train(samples[:4], samples[4:], tmp_path / "full.pt", cfg, model_cfg)

    stop = threading.Event()
    gen = iter_training(samples[:4], samples[4:], tmp_path / "part.pt", cfg, model_cfg,
                        stop=stop)
    epochs_seen = 0
    for item in gen:
        if isinstance(item, EpochReport):
            epochs_seen += 1
        if epochs_seen == 2 and isinstance(item, BatchProgress) and item.step == 1:
            stop.set()  # cancel in the middle of epoch 3
    last = last_path_for(tmp_path / "part.pt")
    assert load_checkpoint(last).resume["epoch"] == 2  # loadable, from the last whole epoch
    resumed = train(samples[:4], samples[4:], tmp_path / "part.pt", cfg, resume=last)
    assert resumed.epochs_run == 4 and len(resumed.history) == 4
    a, b = _weights(full.last_path), _weights(resumed.last_path)
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_cancel_returns_cancelled_and_keeps_files_loadable(tmp_path):
    stop = threading.Event()
    gen = iter_training(phantom_samples(4), [], tmp_path / "m.pt",
                        TrainConfig(epochs=5, batch_size=2, patch_size=32), TINY, stop=stop)
    result = None
    try:
        while True:
            item = next(gen)
            if isinstance(item, EpochReport):
                stop.set()
    except StopIteration as done:
        result = done.value
    assert result.cancelled and result.epochs_run == 1
    load_checkpoint(tmp_path / "m.pt")
    load_checkpoint(last_path_for(tmp_path / "m.pt"))


def test_fine_tune_from_checkpoint_and_early_stopping(tmp_path):
    samples = phantom_samples(4)
    first = train(samples, samples[:2], tmp_path / "a.pt",
                  TrainConfig(epochs=1, batch_size=2, patch_size=32), TINY)
    cfg = TrainConfig(epochs=20, batch_size=2, patch_size=32, lr=1e-9, patience=2)
    tuned = train(samples, samples[:2], tmp_path / "b.pt", cfg, init=first.best_path)
    assert tuned.stopped_early and tuned.epochs_run < 20
    assert load_checkpoint(tuned.best_path).training["init"].endswith("a.pt")


def test_fine_tuning_keeps_the_checkpoint_normalisation(tmp_path):
    samples = phantom_samples(4)
    norm = {"method": "percentile", "low": 0.5, "high": 99.5}
    first = train(samples, samples[:2], tmp_path / "a.pt",
                  TrainConfig(epochs=1, batch_size=2, patch_size=32, normalisation=norm), TINY)
    tuned = train(samples, samples[:2], tmp_path / "b.pt",
                  TrainConfig(epochs=1, batch_size=2, patch_size=32), init=first.best_path)
    assert load_checkpoint(tuned.best_path).normalisation == norm


def test_without_validation_the_model_is_the_last_epoch(tmp_path):
    samples = phantom_samples(4)
    # A learning rate this high makes the training loss jump about: the lowest-loss epoch is
    # not the last one, and that must not matter.
    res = train(samples, [], tmp_path / "refit.pt",
                TrainConfig(epochs=6, batch_size=2, patch_size=32, lr=0.02, schedule="none",
                            patience=None), TINY)
    losses = [h.train_loss for h in res.history]
    assert min(losses) < losses[-1]  # the case this test is about
    assert load_checkpoint(res.best_path).metrics["epoch"] == 6 == res.best_epoch


def test_bad_config_raises():
    with pytest.raises(ValueError, match="learning rate"):
        TrainConfig(lr=0)
    with pytest.raises(ValueError, match="schedule"):
        TrainConfig(schedule="step")
    with pytest.raises(ValueError, match="unknown loss"):
        TrainConfig(loss=LossConfig("l2"))


def test_resume_needs_last_checkpoint(tmp_path):
    samples = phantom_samples(2)
    res = train(samples, [], tmp_path / "m.pt", TrainConfig(epochs=1, batch_size=2, patch_size=32),
                TINY)
    with pytest.raises(ValueError, match="last.pt"):
        train(samples, [], tmp_path / "n.pt", resume=res.best_path)
    assert np.isnan(res.history[0].val_dice)


def test_validation_batches_are_reported_before_the_epoch(tmp_path):
    from napari_brainseg.train import ValidationProgress

    samples = phantom_samples(5)
    gen = iter_training(samples[:3], samples[3:], tmp_path / "m.pt",
                        TrainConfig(epochs=2, batch_size=2, patch_size=32), TINY)
    kinds = []
    for item in gen:
        if isinstance(item, BatchProgress):
            kinds.append(("train", item.epoch, item.step, item.steps, item.val_steps))
        elif isinstance(item, ValidationProgress):
            kinds.append(("val", item.epoch, item.step, item.steps))
        else:
            kinds.append(("epoch", item.epoch))
    one = [("train", 1, 1, 2, 2), ("train", 1, 2, 2, 2), ("val", 1, 1, 2), ("val", 1, 2, 2),
           ("epoch", 1)]
    assert kinds == one + [(k[0], 2, *k[2:]) for k in one]
