"""Tuning's bookkeeping in an Optuna storage, without training (see test_study_workers.py)."""

import ast
import os
import socket
import subprocess
import sys
from pathlib import Path

import optuna

from napari_brainseg import tuning


def _dead_pid() -> int:
    return int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                              capture_output=True, text=True, check=True).stdout)


def test_a_trial_of_a_dead_process_is_failed_and_marked_stale(tmp_path):
    storage = tuning.storage_for(None, tmp_path)
    study = optuna.create_study(study_name="fold0-bce", storage=storage, direction="maximize")
    dead, alive = study.ask(), study.ask()
    dead.set_user_attr("worker", {"host": socket.gethostname(), "pid": _dead_pid()})
    alive.set_user_attr("worker", {"host": socket.gethostname(), "pid": os.getpid()})
    done = study.ask()
    done.set_user_attr("worker", {"host": socket.gethostname(), "pid": _dead_pid()})
    study.tell(done, 0.5)

    assert [t.number for t in tuning.trials_of(storage, "fold0-bce")] == [1, 2]
    trials = optuna.load_study(study_name="fold0-bce", storage=storage).get_trials()
    assert trials[0].state.name == "FAIL" and trials[0].user_attrs["stale"] is True
    assert trials[1].state.name == "RUNNING" and "stale" not in trials[1].user_attrs
    assert trials[2].state.name == "COMPLETE" and "stale" not in trials[2].user_attrs
    tuning.fail_stale(study, storage)  # again: nothing left to do, nothing raised
    assert [t.state.name for t in study.get_trials()] == ["FAIL", "RUNNING", "COMPLETE"]


def test_tuning_uses_no_private_attributes_of_optuna_objects():
    tree = ast.parse(Path(tuning.__file__).read_text(encoding="utf-8"))
    private = sorted({f"{ast.unparse(node)} (line {node.lineno})" for node in ast.walk(tree)
                      if isinstance(node, ast.Attribute) and node.attr.startswith("_")
                      and not node.attr.startswith("__")
                      and not (isinstance(node.value, ast.Name) and node.value.id == "self")})
    assert private == []
