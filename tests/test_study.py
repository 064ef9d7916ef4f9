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


# --------------------------------------------------------------------------- patients and folds


def _png_folder(folder, names, size=32):
    """images/NAME.png + masks/NAME.png phantoms (2D files: patient = file stem by default)."""
    import imageio.v3 as iio

    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir()
    for k, name in enumerate(names):
        ph = make_phantom((size, size), KINDS[k % 3], seed=k, skull=False)
        iio.imwrite(folder / "images" / name, np.clip(ph.image / 4, 0, 255).astype(np.uint8))
        iio.imwrite(folder / "masks" / name, (ph.tumour * 255).astype(np.uint8))
    return folder


def _figshare_folder(folder, pids, size=32, version="7.3"):
    """Numbered figshare files 1.mat ... N.mat; ``pids[i]`` is the patient of (i+1).mat."""
    from napari_brainseg.io import write_mat

    folder.mkdir(parents=True)
    for i, pid in enumerate(pids):
        ph = make_phantom((size, size), KINDS[i % 3], seed=i, skull=False)
        write_mat(folder / f"{i + 1}.mat", ph.image, ph.tumour, label=i % 3 + 1, pid=pid,
                  version=version)
    return folder


def _cvind(path, folds, version="5", column=False):
    """A figshare-style cvind.mat (variable ``cvind``) as a row or column vector."""
    v = np.asarray(folds, float).reshape((-1, 1) if column else (1, -1))
    if version == "5":
        import scipy.io

        scipy.io.savemat(path, {"cvind": v})
    else:
        import h5py

        with h5py.File(path, "w") as f:  # MATLAB v7.3 stores the transpose
            f["cvind"] = v.T
    return path


def test_group_by_regex_and_groups_csv_keep_a_patients_slices_in_one_fold(tmp_path, caplog):
    from napari_brainseg.data import groups_from_csv, regroup, samples_from_folder

    names = [f"P{p}_s{k}.png" for p in range(6) for k in range(3)]
    data = _png_folder(tmp_path / "d", names)
    samples = samples_from_folder(data)
    assert len({s.group for s in samples}) == 18  # the leak: one "patient" per slice
    by_regex = regroup(samples, data, pattern=r"^(P\d+)_")
    assert sorted({s.group for s in by_regex}) == [f"P{p}" for p in range(6)]
    (tmp_path / "groups.csv").write_text(
        "file,patient,note\n" + "".join(f"images/{n},patient {n[1]},x\n" for n in names[:9])
        + "".join(f"{n},patient {n[1]},\n" for n in names[9:]))
    by_csv = regroup(samples, data, table=groups_from_csv(tmp_path / "groups.csv"))
    assert [s.group[-1] for s in by_csv] == [s.group[-1] for s in by_regex]
    for grouped in (by_regex, by_csv):
        for p in plan(grouped, StudyConfig(**{**TINY, "folds": 3})):
            test = {grouped[i].group for i in p.test}
            assert not test & {grouped[i].group for i in p.train}
            assert not ({grouped[i].group for i in p.inner_train}
                        & {grouped[i].group for i in p.inner_val})
    with pytest.raises(ValueError, match=r"does not match .* 3 file\(s\): images/Q0_s0.png"):
        regroup(samples_from_folder(_png_folder(tmp_path / "e", ["Q0_s0.png", "Q0_s1.png",
                                                                 "Q0_s2.png", "P1_s0.png"])),
                tmp_path / "e", pattern=r"^(P\d+)_")
    with pytest.raises(ValueError, match="not a valid regular expression"):
        regroup(samples, data, pattern="(P")
    (tmp_path / "short.csv").write_text("file,patient\nP0_s0.png,A\n")
    with pytest.raises(ValueError, match=r"does not list 17 file\(s\)"):
        regroup(samples, data, table=groups_from_csv(tmp_path / "short.csv"))
    (tmp_path / "nohead.csv").write_text("P0_s0.png,A\n")
    with pytest.raises(ValueError, match="header row with the columns 'file' and 'patient'"):
        groups_from_csv(tmp_path / "nohead.csv")


def test_cli_study_group_options_fail_fast(tmp_path, capsys):
    data = _png_folder(tmp_path / "d", [f"P{p}_s{k}.png" for p in range(2) for k in range(2)])
    # 2 patients cannot fill 3 folds once slices are grouped (4 files could)
    assert main(["study", str(data), "--out", str(tmp_path / "s"), "--folds", "3",
                 "--group-by", r"^(P\d+)_"]) == 2
    assert "2 patients/volumes cannot fill 3 folds" in capsys.readouterr().err
    assert main(["study", str(data), "--out", str(tmp_path / "s"), "--group-by", "x",
                 "--groups", "g.csv"]) == 2
    assert "not both" in capsys.readouterr().err


def _fast_study(monkeypatch, empty=False):
    """Replace training and prediction with instant stand-ins (the protocol is what's tested)."""
    def fake_training(train_s, val_s, path, cfg, model_cfg, stop_after=None):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"stand-in model " + repr(cfg.loss).encode())
        yield from ()  # a generator like the real one (it yields epoch progress)
        return [(0.5, 0.1)] * cfg.epochs

    def fake_predict(model_path, samples, threshold):
        out = []
        for s in samples:
            img, msk = s.load()
            out.append((img, np.zeros_like(msk) if empty else msk.copy(), msk))
        return out

    monkeypatch.setattr(study_mod, "_run_training", fake_training)
    monkeypatch.setattr(study_mod, "_predict_masks", fake_predict)


@pytest.mark.parametrize(("version", "column"), [("5", False), ("5", True), ("7.3", False),
                                                 ("7.3", True)])
def test_folds_file_reproduces_cvind_split(tmp_path, version, column):
    from napari_brainseg.data import samples_from_folder

    pids = [f"{100 + i // 2}" for i in range(20)]  # 10 patients, 2 slices each
    data = _figshare_folder(tmp_path / "fig", pids)
    cvind = [(i // 2) % 4 + 1 for i in range(20)]
    samples = samples_from_folder(data)  # listed in natural order, not 1, 10, 11, ...
    fold_of = study_mod.folds_from_file(
        samples, _cvind(tmp_path / "cvind.mat", cvind, version, column))
    assert study_mod.split_groups(samples, fold_of) == 0
    plans = plan(samples, StudyConfig(**{**TINY, "folds": 4}), fold_of)
    for p in plans:
        numbers = sorted(int(samples[i].image_path.stem) for i in p.test)
        assert numbers == [n for n in range(1, 21) if cvind[n - 1] == p.fold + 1]


def test_folds_file_refuses_a_mismatch(tmp_path):
    from napari_brainseg.data import samples_from_folder

    data = _figshare_folder(tmp_path / "fig", [str(i // 2) for i in range(10)])
    samples = samples_from_folder(data)
    with pytest.raises(ValueError, match=r"holds 12 fold numbers but the data hold 10 .* "
                                         r"2 numbered file\(s\) it lists are missing .*11.mat"):
        study_mod.folds_from_file(samples, _cvind(tmp_path / "long.mat", [1, 2] * 6))
    with pytest.raises(ValueError, match=r"holds 8 fold numbers .* beyond its numbering "
                                         r"\(9.mat, 10.mat\)"):
        study_mod.folds_from_file(samples, _cvind(tmp_path / "short.mat", [1, 2] * 4))
    (data / "7.mat").rename(data / "seven.mat")
    with pytest.raises(ValueError, match=r"other slice\(s\), e.g. seven.mat"):
        study_mod.folds_from_file(samples_from_folder(data),
                                  _cvind(tmp_path / "c.mat", [1, 2] * 5))
    import scipy.io

    scipy.io.savemat(tmp_path / "other.mat", {"folds": np.ones((10, 1))})
    with pytest.raises(ValueError, match="no variable 'cvind'"):
        study_mod.read_fold_file(tmp_path / "other.mat")
    scipy.io.savemat(tmp_path / "matrix.mat", {"cvind": np.ones((5, 2))})
    with pytest.raises(ValueError, match="row or column vector"):
        study_mod.read_fold_file(tmp_path / "matrix.mat")
    (data / "seven.mat").rename(data / "7.mat")
    with pytest.raises(ValueError, match="fold numbers must be 1 .. K"):
        study_mod.folds_from_file(samples_from_folder(data),
                                  _cvind(tmp_path / "gap.mat", [1, 3] * 5))


def test_cli_study_with_folds_file_writes_that_split(tmp_path, monkeypatch, capsys):
    import json

    _fast_study(monkeypatch, empty=True)
    data = _figshare_folder(tmp_path / "fig", [f"{i // 2}" for i in range(12)])
    cvind = [1, 1, 2, 2, 3, 3, 1, 1, 2, 2, 3, 3]
    fold_file = _cvind(tmp_path / "cvind.mat", cvind, "7.3", column=True)
    def study_args(folds_file):
        return ["study", str(data), "--out", str(tmp_path / "s"), "--losses", "bce", "focal",
                "--folds-file", str(folds_file), "--epochs", "1", "--trials", "1", "--alpha",
                "focal=none", "-q"]

    args = study_args(fold_file)
    assert main([*args, "--folds", "5"]) == 2
    assert "differs from the 3 folds of cvind.mat" in capsys.readouterr().err
    assert main(args) == 0
    captured = capsys.readouterr()
    assert "folds as given by cvind.mat" in captured.out
    # every prediction was empty: the summary and the CLI say so in words
    assert "bce: pixel accuracy" in captured.err and "predicted (almost) nothing" in captured.err
    summary = (tmp_path / "s" / "summary.md").read_text()
    assert "predicted (almost) nothing" in summary and "as given by cvind.mat" in summary
    from napari_brainseg.study_report import load_cells

    for c in load_cells(tmp_path / "s"):
        want = [n - 1 for n in range(1, 13) if cvind[n - 1] == c["fold"] + 1]
        assert sorted(c["test_indices"]) == sorted(want)  # samples listed as 1.mat, 2.mat, ...
        assert len(c["model_sha256"]) == 64
    config = json.loads((tmp_path / "s" / "config.json").read_text())
    assert config["folds"] == 3 and config["folds_file"] == "cvind.mat"
    assert config["data"]["samples"] == 12 and config["data"]["patients"] == 6
    assert config["provenance"]["version"] and config["provenance"]["software"] == \
        "napari-brainseg"
    assert str(data) not in (tmp_path / "s" / "config.json").read_text()
    # the same command resumes; another split in the same folder is refused
    assert main(args) == 0
    (tmp_path / "other").mkdir()
    other = _cvind(tmp_path / "other" / "cvind.mat", [1, 2, 3] * 4)
    assert main(study_args(other)) == 1
    assert "another configuration or data" in capsys.readouterr().err


def test_single_slice_groups_warn_and_p_bound_follows_the_pairs(tmp_path, monkeypatch, caplog):
    import logging

    _fast_study(monkeypatch)
    samples = patients(4, per=1)
    with caplog.at_level(logging.WARNING, logger="napari_brainseg"):
        result = run_study(samples, tmp_path / "s", StudyConfig(**{**TINY, "folds": 2}))
    assert "every patient/volume holds a single slice" in caplog.text
    text = result.comparison.read_text()
    assert "0.0625" not in text
    assert "its smallest two-sided p is 0.5 with 2 pairs" in text
    assert "predicted (almost) nothing" not in result.summary.read_text()


def test_image_level_test_pairs_patients_not_slices(tmp_path):
    """40 slices of 5 patients: the per-image comparison has n = 5 patients, not 40 images."""
    import json

    from napari_brainseg.study_report import patient_means, write_report

    (tmp_path / "cells").mkdir()
    rng = np.random.default_rng(0)
    for loss, shift in (("bce", 0.0), ("focal", 0.1)):
        for fold in range(2):
            idx = list(range(fold * 20, fold * 20 + 20))
            per_image = [{"precision": 0.5, "recall": 0.5, "f1": 0.5 + shift + 0.01 * rng.random(),
                          "accuracy": 0.99, "iou": 0.4, "specificity": 0.99, "hd95": 1.0}
                         for _ in idx]
            pooled = {"precision": 0.5, "recall": 0.5, "f1": 0.5 + shift, "accuracy": 0.99,
                      "iou": 0.4, "specificity": 0.99, "background_accuracy": 0.98}
            cell = {"fold": fold, "loss": loss, "alpha": None, "epochs": 1, "n_test": 20,
                    "pooled": pooled, "per_image": per_image, "test_indices": idx,
                    "test_patients": [i // 8 for i in idx]}
            (tmp_path / "cells" / f"fold{fold}_{loss}.json").write_text(json.dumps(cell))
    result = write_report(tmp_path, StudyConfig(**TINY))
    text = result.comparison.read_text()
    row = next(line for line in text.splitlines() if "patients (mean per-image Dice)" in line)
    assert row.split("|")[3].strip() == "5"
    assert "0.0625 with 5 pairs" in text  # 5 patients cannot reach p < 0.05 either
    with open(tmp_path / "per_image.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 80 and {r["patient"] for r in rows} == {"0", "1", "2", "3", "4"}
    means = patient_means([{**r, "patient": r["patient"]} for r in rows], "focal")
    assert len(means) == 5


def test_folds_file_is_size_checked_before_scipy_reads_it(tmp_path, monkeypatch):
    import scipy.io

    from napari_brainseg.formats import mat5

    scipy.io.savemat(tmp_path / "cvind.mat", {"cvind": np.ones((1000, 1))})
    monkeypatch.setattr(mat5, "memory_cap", lambda: (1000, "a test limit"))
    monkeypatch.setattr(scipy.io, "loadmat", lambda *a, **k: pytest.fail("loadmat ran"))
    with pytest.raises(ValueError, match="cvind"):
        study_mod.read_fold_file(tmp_path / "cvind.mat")
