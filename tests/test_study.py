import csv
import math

import numpy as np
import pytest

import napari_brainseg.study as study_mod
from napari_brainseg.cli import main
from napari_brainseg.data import Sample
from napari_brainseg.study import (
    StudyConfig,
    make_folds,
    paired_tests,
    plan,
    run_study,
    summary_table,
)
from napari_brainseg.synthetic import make_phantom, write_sample_folder

KINDS = ["meningioma", "glioma", "pituitary"]


def patients(n_patients=9, per=2, size=48):
    out = []
    for p in range(n_patients):
        for k in range(per):
            ph = make_phantom((size, size), KINDS[p % 3], seed=100 * p + k, skull=False)
            out.append(Sample(f"P{p}", image=ph.image, mask=ph.tumour, tumour_type=KINDS[p % 3]))
    return out


TINY = dict(losses=["bce", "focal"], folds=3, max_epochs=2, batch_size=4, lr=3e-3,
            patch_size=48, base_filters=4, alphas={"bce": [None], "focal": [None, 0.75]},
            trials=1)


def test_folds_never_split_a_patient_and_balance_types():
    samples = patients(12, per=3)
    folds = make_folds(samples, 4, seed=1)
    assert sorted(i for f in folds for i in f) == list(range(len(samples)))
    for f in folds:
        assert len({samples[i].tumour_type for i in f}) == 3  # every type in every fold
    owner = {}
    for k, f in enumerate(folds):
        for i in f:
            assert owner.setdefault(samples[i].group, k) == k
    with pytest.raises(ValueError, match="cannot fill"):
        make_folds(samples[:3], 5)


def test_plan_keeps_tuning_off_the_test_fold():
    samples = patients(10)
    for p in plan(samples, StudyConfig(**TINY)):
        tune = set(p.inner_train) | set(p.inner_val)
        assert tune == set(p.train) and not tune & set(p.test)
        groups = lambda idx: {samples[i].group for i in idx}  # noqa: E731
        assert not groups(p.inner_train) & groups(p.inner_val)
        assert not groups(p.train) & groups(p.test)


def test_study_runs_resumes_and_never_tunes_on_test(tmp_path, monkeypatch):
    samples = patients(9)
    seen = []
    real = study_mod._run_training

    def spy(train_s, val_s, path, cfg, model_cfg, **kw):
        seen.append(({id(s) for s in train_s} | {id(s) for s in val_s}, bool(val_s)))
        return real(train_s, val_s, path, cfg, model_cfg, **kw)

    monkeypatch.setattr(study_mod, "_run_training", spy)
    cfg = StudyConfig(**TINY)
    result = run_study(samples, tmp_path / "s", cfg)
    plans = plan(samples, cfg)
    # 3 folds x (bce: 1 tuning + refit, focal: 2 tunings + refit) = 15 trainings in order
    assert len(seen) == 15
    calls = iter(seen)
    for p in plans:
        test_ids = {id(samples[i]) for i in p.test}
        for n_tune in (1, 2):
            for _ in range(n_tune):
                ids, has_val = next(calls)
                assert has_val and not ids & test_ids  # tuning: inner split of training folds
            ids, has_val = next(calls)
            assert not has_val and not ids & test_ids  # refit on the training folds
    assert len(result.rows) == 6
    for name in ("summary.md", "comparison.md", "per_fold.csv", "per_image.csv",
                 "boxplots.png", "config.json"):
        assert (tmp_path / "s" / name).exists(), name
    assert list((tmp_path / "s" / "overlays").glob("*.png"))
    # Re-running skips every finished cell.
    seen.clear()
    run_study(samples, tmp_path / "s", cfg)
    assert seen == []
    with pytest.raises(ValueError, match="another configuration"):
        run_study(samples, tmp_path / "s", StudyConfig(**{**TINY, "seed": 5}))


def test_table_equals_recomputation_from_csv_and_is_reproducible(tmp_path):
    samples = patients(9)
    cfg = StudyConfig(**TINY)
    a = run_study(samples, tmp_path / "a", cfg)
    with open(tmp_path / "a" / "per_fold.csv") as f:
        rows = list(csv.DictReader(f))
    for loss in ("bce", "focal"):
        f1 = np.array([float(r["f1"]) for r in rows if r["loss"] == loss])
        mean, sd = summary_table(a.rows)[loss]["f1"]
        assert mean == pytest.approx(f1.mean()) and sd == pytest.approx(f1.std(ddof=1))
        assert f"{100 * mean:.2f} ± {100 * sd:.2f}" in a.summary.read_text()
    b = run_study(samples, tmp_path / "b", cfg)
    assert a.summary.read_text() == b.summary.read_text()  # same seed, same table (CPU)


def test_paired_tests_known_values():
    t = paired_tests([0.8, 0.7, 0.9, 0.85, 0.75], [0.7, 0.6, 0.8, 0.8, 0.7])
    assert t["mean_diff"] == pytest.approx(0.08)
    assert t["wilcoxon_p"] == pytest.approx(0.0625)  # the smallest possible with 5 pairs
    assert t["rank_biserial"] == 1.0 and t["ttest_p"] < 0.01
    same = paired_tests([0.5, 0.5], [0.5, 0.5])
    assert same["wilcoxon_p"] == 1.0 and math.isnan(same["cohen_dz"])


def test_cli_quick_study_on_sample_folder(tmp_path, capsys):
    write_sample_folder(tmp_path / "data", n=6, shape=(48, 48))
    code = main(["study", str(tmp_path / "data"), "--out", str(tmp_path / "s"), "--quick",
                 "--folds", "2", "--epochs", "1", "--patch-size", "48", "--base-filters", "4",
                 "--alpha", "focal=none", "-q"])
    assert code == 0
    out = capsys.readouterr().out
    assert "| bce |" in out and "| focal |" in out and "Published" in out
    assert main(["study", str(tmp_path / "data"), "--out", str(tmp_path / "t"),
                 "--losses", "hinge"]) == 2
