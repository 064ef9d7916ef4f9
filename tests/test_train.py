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


def test_channels_last_training_steps_match_the_default_layout(tmp_path, monkeypatch):
    """Two Adam steps in channels-last (the CPU default) end within rounding of the old layout."""
    import napari_brainseg.model as model_mod
    import napari_brainseg.train as train_mod

    layouts = []
    forward = model_mod.UNet.forward

    def spy(self, x):
        # Kernels of more than one input channel and pixel: in the others both layouts coincide
        w = [p for p in self.parameters()
             if p.dim() == 4 and p.shape[1] > 1 and p[0, 0].numel() > 1]
        layouts.append("channels-last" if all(
            p.is_contiguous(memory_format=torch.channels_last) and not p.is_contiguous()
            for p in w) else "contiguous" if all(p.is_contiguous() for p in w) else "mixed")
        return forward(self, x)

    monkeypatch.setattr(model_mod.UNet, "forward", spy)
    samples = phantom_samples(4, size=48)
    cfg = TrainConfig(epochs=1, batch_size=2, patch_size=48, seed=3, schedule="none")
    cl = train(samples, [], tmp_path / "cl.pt", cfg, TINY).last_path
    with monkeypatch.context() as m:
        m.setattr(train_mod, "training_memory_format",
                  lambda device, config: torch.contiguous_format)
        plain = train(samples, [], tmp_path / "plain.pt", cfg, TINY).last_path
    assert layouts == ["channels-last"] * 2 + ["contiguous"] * 2
    torch.manual_seed(cfg.seed)
    start = model_mod.UNet(TINY).state_dict()
    a, b = _weights(cl), _weights(plain)
    moved = max(float((b[k] - start[k]).abs().max()) for k in b)
    assert moved > 1e-3  # the steps changed the weights: the comparison below means something
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-4, msg=k)
    # Batch norm stays in the default layout (torch's channels-last kernel loses precision)
    layouts.clear()
    train(samples, [], tmp_path / "bn.pt", cfg, UNetConfig(base_filters=8, batch_norm=True))
    assert layouts == ["contiguous"] * 2


def test_progress_reports_samples_per_second_of_the_steps(tmp_path, monkeypatch):
    """A scripted clock: steps of 2 s and 4 s with 10 s outside them (never counted)."""
    import napari_brainseg.train as train_mod

    ticks = iter([0.0, 2.0, 12.0, 16.0,   # epoch 1: steps of 2 s and 4 s
                  30.0, 31.0, 40.0, 41.0])  # epoch 2: 1 s and 1 s
    monkeypatch.setattr(train_mod, "_clock", lambda: next(ticks))
    cfg = TrainConfig(epochs=2, batch_size=2, patch_size=32, patience=None)
    items = list(iter_training(phantom_samples(4), [], tmp_path / "m.pt", cfg, TINY))
    batches = [i.samples_per_s for i in items if isinstance(i, BatchProgress)]
    epochs = [i.samples_per_s for i in items if isinstance(i, EpochReport)]
    assert batches == pytest.approx([1.0, 4 / 6, 2.0, 2.0])  # running over the epoch
    assert epochs == pytest.approx([4 / 6, 2.0])
    history = load_checkpoint(last_path_for(tmp_path / "m.pt")).resume["history"]
    assert [h["samples_per_s"] for h in history] == pytest.approx([4 / 6, 2.0])


def test_resume_accepts_a_history_without_samples_per_second(tmp_path):
    """Runs saved before samples/s was recorded resume; their epochs read NaN."""
    samples = phantom_samples(4)
    cfg = TrainConfig(epochs=1, batch_size=2, patch_size=32, patience=None)
    first = train(samples, [], tmp_path / "m.pt", cfg, TINY)
    ck = torch.load(first.last_path, weights_only=True)
    for h in ck["resume"]["history"]:
        del h["samples_per_s"]
    torch.save(ck, first.last_path)
    resumed = train(samples, [], tmp_path / "m.pt", TrainConfig(epochs=2, batch_size=2,
                    patch_size=32, patience=None), resume=first.last_path)
    assert np.isnan(resumed.history[0].samples_per_s) and resumed.history[1].samples_per_s > 0
