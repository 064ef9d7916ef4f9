"""Progress of long work: the rate and time left count this process's work only (a resumed
study must not look finished), and the study reports trials and epochs, not only cells."""

import itertools

import pytest

import napari_brainseg.progress as progress_mod
from napari_brainseg.cli import main
from napari_brainseg.progress import Eta, drain
from napari_brainseg.study import StudyConfig, StudyProgress, iter_study
from napari_brainseg.synthetic import make_phantom


class Clock:
    """A scripted clock: tests set ``t``; nothing depends on how fast the machine is."""

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_eta_rate_leaves_out_work_done_before_this_process():
    clock = Clock()
    eta = Eta(600, clock=clock)
    eta.update(300, before=300)  # a resumed study: half was finished by the first run
    assert eta.rate() is None and eta.seconds_left() is None
    assert eta.describe("epoch") == "300/600 epochs, time left unknown"
    clock.t += 100
    eta.update(310, before=300)  # this process trained 10 epochs in 100 s
    assert eta.rate() == pytest.approx(0.1)  # not 310 / 100 = 3.1, as a resume looked before
    assert eta.seconds_left() == pytest.approx(2900)
    assert eta.describe("epoch") == "310/600 epochs, 6.00 epoch/min, 48:20 left"
    clock.t += 2 * 3600
    eta.update(600, before=300)
    assert eta.describe("epoch") == "600/600 epochs, 2.47 epoch/min, 00:00 left"
    fast = Eta(10, clock=clock)
    clock.t += 4
    fast.update(8)
    assert fast.describe("epoch") == "8/10 epochs, 2.00 epoch/s, 00:01 left"


def _samples(n_patients=9, per=2, size=48):
    from napari_brainseg.data import Sample

    kinds = ["meningioma", "glioma", "pituitary"]
    return [Sample(f"P{p}", image=(ph := make_phantom((size, size), kinds[p % 3],
                                                      seed=100 * p + k, skull=False)).image,
                   mask=ph.tumour, tumour_type=kinds[p % 3])
            for p in range(n_patients) for k in range(per)]


def test_study_reports_epochs_and_a_resume_counts_as_work_done_before(tmp_path):
    cfg = StudyConfig(losses=["bce"], folds=2, max_epochs=2, batch_size=4, lr=3e-3,
                      patch_size=48, base_filters=4, alphas={"bce": [None]}, trials=1)
    samples = _samples()
    events: list[StudyProgress] = []
    drain(iter_study(samples, tmp_path / "s", cfg), events.append)
    budget = 2 * (1 + 1) * 2  # 2 cells x (1 trial + the refit) x 2 epochs
    assert {e.work_total for e in events} == {budget}
    done = [e.work_done for e in events]
    assert done == sorted(done) and done[-1] == budget
    assert all(e.work_before == 0 for e in events)  # all of it done by this run
    tune = [e.detail for e in events if e.stage == "tune"]
    assert "trial 1/1 epoch 1/2" in tune and "trial 1/1 epoch 2/2" in tune
    assert any(e.stage == "refit" and e.detail.startswith("epoch") for e in events)
    assert any(d != int(d) for d in done)  # it moves within an epoch, batch by batch
    again: list[StudyProgress] = []
    drain(iter_study(samples, tmp_path / "s", cfg), again.append)
    assert [e.stage for e in again] == ["skip", "skip"]
    assert again[-1].work_done == again[-1].work_before == budget


def test_study_cli_shows_epochs_a_true_eta_after_a_resume_and_how_to_resume(
        tmp_path, monkeypatch, capsys):
    """Fake study events and a scripted clock: the line the user sees, then Ctrl-C."""
    clock = Clock()
    monkeypatch.setattr(progress_mod, "_now", clock)

    def fake_study(samples, out, cfg, **kw):
        # A resumed study of 2 cells x 330 epochs: the first cell was finished by an earlier run.
        yield StudyProgress(0, 2, "dice", "skip", "done earlier", 1, 2, 330.0, 330.0, 660.0)
        clock.t += 60
        yield StudyProgress(1, 2, "dice", "tune", "trial 1/10 epoch 2/30", 1, 2, 331.0, 330.0,
                            660.0)
        raise KeyboardInterrupt

    class FakeSample:
        def __init__(self, k):
            self.group = f"P{k}"

    monkeypatch.setattr("napari_brainseg.study.iter_study", fake_study)
    monkeypatch.setattr("napari_brainseg.study.plan", lambda *a, **k: [])
    monkeypatch.setattr("napari_brainseg.data.samples_from_folder",
                        lambda folder: [FakeSample(k) for k in range(4)])
    code = main(["study", str(tmp_path / "data"), "--out", str(tmp_path / "s"), "--quick"])
    err = capsys.readouterr().err
    assert code == 130
    lines = [ln.strip() for ln in itertools.chain(*(x.split("\r") for x in err.splitlines()))]
    assert any(ln.endswith("fold 1/2 dice: skip done earlier | cells 1/2 | 330/660 epochs, "
                           "time left unknown") for ln in lines), err
    # 1 epoch in 60 s by this process: 329 left take 5:29:00, not 00:00 at "5.5 epoch/s"
    assert any(ln.endswith("fold 2/2 dice: tune trial 1/10 epoch 2/30 | cells 1/2 | 331/660 "
                           "epochs, 1.00 epoch/min, 5:29:00 left") for ln in lines), err
    assert "interrupted; run the same command again to resume" in err
    assert str(tmp_path / "s") in err


def test_a_study_stopped_between_tuning_and_refit_counts_the_tuning_as_done_before(
        tmp_path, monkeypatch):
    from napari_brainseg import tuning

    cfg = StudyConfig(losses=["bce"], folds=2, max_epochs=2, batch_size=4, lr=3e-3,
                      patch_size=48, base_filters=4, alphas={"bce": [None]}, trials=1)
    samples = _samples()
    real_claim = tuning.claim

    def stop_at_refit(store, name):
        if name.endswith(":refit"):
            raise KeyboardInterrupt  # Ctrl-C after the first cell's trial, before its refit
        return real_claim(store, name)

    monkeypatch.setattr(tuning, "claim", stop_at_refit)
    with pytest.raises(KeyboardInterrupt):
        drain(iter_study(samples, tmp_path / "s", cfg))
    monkeypatch.setattr(tuning, "claim", real_claim)
    events: list[StudyProgress] = []
    drain(iter_study(samples, tmp_path / "s", cfg), events.append)
    refit = next(e for e in events if e.stage == "refit")
    assert refit.fold == 0 and refit.work_done == refit.work_before == 2  # 1 trial x 2 epochs
    assert events[-1].work_done == 8 and events[-1].work_before == 2
