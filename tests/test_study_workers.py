"""Several processes share one study through an Optuna storage (SQLite here; see README for
PostgreSQL): every trial runs once, and with the fixed (enqueued) trials only, the report equals
a single process's."""

import csv
import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest

from napari_brainseg.synthetic import write_sample_folder

ARGS = ["--quick", "--folds", "3", "--epochs", "2", "--patch-size", "48", "--base-filters", "4",
        "-q"]


def _cmd(data, out, *extra):
    return [sys.executable, "-m", "napari_brainseg.cli", "study", str(data), "--out", str(out),
            *ARGS, *extra]


def _env():
    return {**os.environ, "OMP_NUM_THREADS": "1"}  # same arithmetic in every process


def _run(cmd):
    r = subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=900)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


def _two_workers(data, out, *extra):
    procs = [subprocess.Popen(_cmd(data, out, "--worker", *extra), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=_env()) for _ in range(2)]
    for p in procs:
        o, e = p.communicate(timeout=900)
        assert p.returncode == 0, o + e
    return _run(_cmd(data, out, *extra))  # nothing left to do: collects and writes the report


def _trials(out):
    storage = f"sqlite:///{Path(out, 'optuna.db').resolve()}"
    cells = {}
    for s in optuna.get_all_study_summaries(storage):
        if ":" not in s.study_name and s.study_name != "config":
            study = optuna.load_study(study_name=s.study_name, storage=storage)
            cells[s.study_name] = study.get_trials()
    return cells


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("data")
    write_sample_folder(d, n=9, seed=0, shape=(48, 48), skull=False)
    return d


def test_two_workers_equal_one_process_with_fixed_trials(data, tmp_path):
    one = _run(_cmd(data, tmp_path / "one", "--trials", "1"))
    _two_workers(data, tmp_path / "two", "--trials", "1")
    assert "| bce |" in one
    for name in ("summary.md", "per_fold.csv"):
        assert (tmp_path / "two" / name).read_text() == (tmp_path / "one" / name).read_text()
    with open(tmp_path / "two" / "per_fold.csv") as f:
        assert len(list(csv.DictReader(f))) == 6  # 3 folds x 2 losses, each refit once


def test_two_workers_run_every_trial_once_with_tpe(data, tmp_path):
    _two_workers(data, tmp_path / "two", "--trials", "3")
    cells = _trials(tmp_path / "two")
    assert len(cells) == 6
    for name, trials in cells.items():
        budget = [t for t in trials if not t.user_attrs.get("surplus")]
        surplus = [t for t in trials if t.user_attrs.get("surplus")]
        assert sorted(t.number for t in budget) == [0, 1, 2], name
        assert all(t.state.name in ("COMPLETE", "PRUNED") for t in budget), name
        assert all("worker" in t.user_attrs and "params" in t.user_attrs for t in budget)
        assert len(surplus) <= 2 and all(t.state.name == "FAIL" and "params" not in
                                         t.user_attrs for t in surplus)
    # each cell refit exactly once, and the report has all of them
    with open(tmp_path / "two" / "per_fold.csv") as f:
        assert len(list(csv.DictReader(f))) == 6


def test_a_different_config_on_the_same_storage_is_refused(data, tmp_path):
    _run(_cmd(data, tmp_path / "s", "--trials", "1"))
    storage = f"sqlite:///{(tmp_path / 's' / 'optuna.db').resolve()}"
    r = subprocess.run(_cmd(data, tmp_path / "other", "--trials", "1", "--seed", "4",
                            "--storage", storage), capture_output=True, text=True, env=_env())
    assert r.returncode == 1 and "another configuration" in r.stderr


def test_two_workers_through_postgresql(data, tmp_path):
    url = os.environ.get("BRAINSEG_TEST_POSTGRES_URL")
    if not url:
        pytest.skip("BRAINSEG_TEST_POSTGRES_URL not set: .ci/run starts a local PostgreSQL "
                    "(scripts/ci-postgres.sh); elsewhere run it yourself to include this test")
    for s in optuna.get_all_study_summaries(url):  # a clean database
        optuna.delete_study(study_name=s.study_name, storage=url)
    _run(_cmd(data, tmp_path / "one", "--trials", "1"))
    _two_workers(data, tmp_path / "two", "--trials", "1", "--storage", url)
    assert not (tmp_path / "two" / "optuna.db").exists()  # the trials went to PostgreSQL
    names = {s.study_name for s in optuna.get_all_study_summaries(url)}
    assert {"config", "fold0-bce", "fold2-focal:refit"} <= names
    for name in ("summary.md", "per_fold.csv"):
        assert (tmp_path / "two" / name).read_text() == (tmp_path / "one" / name).read_text()


def test_unreachable_storage_is_one_clear_line(data, tmp_path):
    r = subprocess.run(_cmd(data, tmp_path / "s", "--storage",
                            "sqlite:////nonexistent-dir/x/optuna.db"),
                       capture_output=True, text=True, env=_env(), timeout=300)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith("brainseg: error: cannot open the Optuna")


def test_a_trial_left_running_by_a_killed_run_does_not_block_the_resume(data, tmp_path):
    import socket

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    out = tmp_path / "s"
    out.mkdir()
    storage = f"sqlite:///{(out / 'optuna.db').resolve()}"
    study = optuna.create_study(study_name="fold0-bce", storage=storage, direction="maximize")
    trial = study.ask()  # what a run killed mid-trial leaves behind
    trial.set_user_attr("worker", {"host": socket.gethostname(), "pid": int(gone)})
    _run(_cmd(data, out, "--trials", "1"))  # would wait forever for that trial
    trials = optuna.load_study(study_name="fold0-bce", storage=storage).get_trials()
    assert trials[0].state.name == "FAIL" and trials[0].user_attrs["stale"]
    assert [t.state.name for t in trials[1:] if not t.user_attrs.get("surplus")] == ["COMPLETE"]
    with open(out / "per_fold.csv") as f:
        assert len(list(csv.DictReader(f))) == 6
