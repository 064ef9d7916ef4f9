"""Hyper-parameter tuning of the study's cells with Optuna, shareable across processes/machines.

Each (fold, loss) cell of the study is one Optuna study named ``fold{F}-{loss}`` in an RDB
storage: an SQLite file in the study folder by default, or ``postgresql://...`` so that several
machines running ``brainseg study ... --worker`` share the trials.

- **Search space** (per loss, see :func:`suggest`): learning rate (log-uniform, lr/3 .. 3 lr) for
  every loss; focal and Dice+focal: gamma (1-3) and either no class weighting or alpha
  (0.05-0.95); Tversky: alpha (0.1-0.9) with beta = 1 - alpha. The number of epochs is the best
  epoch of each trial's validation curve (at most ``max_epochs``).
- **Fixed first trials.** Trials 0..k-1 take the config's candidate alphas (``--alpha``) with the
  default gamma and learning rate (a sampler wrapper fixes them by trial number), so they are
  always tried and do not depend on timing. When ``trials`` is not larger than their number,
  tuning is exactly that grid.
- **Sampler and pruner for few trials.** TPE (multivariate, conditional groups) proposes the
  trials after the fixed ones; a median pruner stops a trial whose validation Dice is below the
  median of earlier trials at the same epoch, after a warm-up of a third of the epochs and never
  before the fixed trials are done.
- **Run once, never twice.** Trial numbers are handed out by the storage in one transaction; a
  worker that draws a number beyond the budget tells that trial FAIL (user attribute
  ``surplus``) without training. Work that must happen once (refitting a cell, recording the
  config) is claimed by creating a marker study: the storage's unique study name lets exactly one
  process succeed.
- **Order dependence.** The fixed trials and everything computed from them are the same for any
  number of workers. Trials proposed by TPE depend on which trials had finished when they were
  asked, so with several workers they differ from run to run (a single process is reproducible:
  its sampler is seeded by the study seed; a ``--worker`` process adds its process id so that
  concurrent workers do not propose identical values).
"""

from __future__ import annotations

import json
import os
import random
import socket
import time
import warnings
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any

import optuna

from .loss_config import LOSS_PARAMETERS

#: Losses tuned over gamma and an optional alpha (focal, and Dice + focal).
ALPHA_LOSSES = tuple(n for n, used in LOSS_PARAMETERS.items() if "gamma" in used)
#: Losses tuned over alpha with beta = 1 - alpha (Tversky).
BETA_LOSSES = tuple(n for n, used in LOSS_PARAMETERS.items() if "beta" in used)


def storage_for(url: str | None, out_dir: Path) -> Any:
    """An Optuna RDB storage: ``url`` or ``sqlite:///<out_dir>/optuna.db``."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # not a line per study created
    url = url or f"sqlite:///{(Path(out_dir) / 'optuna.db').resolve()}"
    # SQLite: writers wait for each other's lock instead of failing ("database is locked").
    kwargs = {"connect_args": {"timeout": 300}} if url.startswith("sqlite") else \
        {"pool_pre_ping": True}
    # Workers starting together on a new database race to create its schema; the losers fail
    # with an integrity error and simply retry once the schema exists.
    for attempt in range(6):
        try:
            return optuna.storages.RDBStorage(url, engine_kwargs=kwargs)
        except ImportError:
            raise
        except Exception as exc:  # sqlalchemy's IntegrityError / OperationalError
            if attempt == 5:
                raise RuntimeError(f"cannot open the Optuna storage {url}: "
                                   f"{type(exc).__name__}: {str(exc).splitlines()[0]}") from exc
            time.sleep(0.2 * (attempt + 1) + random.random() * 0.3)
    raise AssertionError("unreachable")


def _owner() -> dict[str, Any]:
    return {"host": socket.gethostname(), "pid": os.getpid(), "since": time.time()}


def _alive_here(owner: dict[str, Any]) -> bool:
    """Whether a claim's owner may still be running (unknown hosts are assumed alive)."""
    if owner.get("host") != socket.gethostname():
        return True
    try:
        os.kill(int(owner["pid"]), 0)
    except (OSError, KeyError, ValueError):
        return False
    return True


def claim(storage: Any, name: str) -> bool:
    """Claim the once-only job ``name``; True for exactly one process.

    A claim left unfinished by a dead process on this host (a killed run being resumed) is taken
    over.
    """
    try:
        study = optuna.create_study(study_name=name, storage=storage)
    except optuna.exceptions.DuplicatedStudyError:
        study = optuna.load_study(study_name=name, storage=storage)
        attrs = study.user_attrs
        if attrs.get("done") or _alive_here(attrs.get("owner", {})):
            return False
        optuna.delete_study(study_name=name, storage=storage)
        return claim(storage, name)
    study.set_user_attr("owner", _owner())
    return True


def mark_done(storage: Any, name: str, payload: Any = None) -> None:
    """Record that the claimed job ``name`` finished (with an optional JSON payload)."""
    study = optuna.load_study(study_name=name, storage=storage)
    if payload is not None:
        study.set_user_attr("payload", json.dumps(payload))
    study.set_user_attr("done", True)


def done_payload(storage: Any, name: str) -> Any | None:
    """The payload of a finished job, or None when it is not finished (or not started)."""
    try:
        attrs = optuna.load_study(study_name=name, storage=storage).user_attrs
    except KeyError:
        return None
    if not attrs.get("done"):
        return None
    return json.loads(attrs["payload"]) if "payload" in attrs else True


def wait_for(check: Callable[[], Any], poll: float = 1.0) -> Any:
    """Poll ``check()`` until it returns something other than None."""
    while (value := check()) is None:
        time.sleep(poll)
    return value


def fixed_params(loss: str, alphas: list[float | None], gamma: float,
                 lr: float) -> list[dict[str, Any]]:
    """The enqueued first trials: each candidate alpha with the default gamma and lr."""
    out = []
    for a in alphas:
        p: dict[str, Any] = {"lr": lr}
        if loss in ALPHA_LOSSES:
            p["gamma"] = gamma
            p["weighted"] = a is not None
            if a is not None:
                p["alpha"] = float(a)
        elif loss in BETA_LOSSES:
            p["alpha"] = 0.5 if a is None else float(a)
        if p not in out:
            out.append(p)
    return out


def suggest(trial: Any, loss: str, lr: float) -> dict[str, Any]:
    """Draw (or read back, for enqueued trials) one trial's loss and optimiser settings."""
    p: dict[str, Any] = {"lr": trial.suggest_float("lr", lr / 3, lr * 3, log=True),
                         "alpha": None, "gamma": None, "beta": None}
    if loss in ALPHA_LOSSES:
        p["gamma"] = trial.suggest_float("gamma", 1.0, 3.0)
        if trial.suggest_categorical("weighted", [False, True]):
            p["alpha"] = trial.suggest_float("alpha", 0.05, 0.95)
    elif loss in BETA_LOSSES:
        p["alpha"] = trial.suggest_float("alpha", 0.1, 0.9)
        p["beta"] = 1.0 - p["alpha"]
    return p


class _FirstTrialsFixed(optuna.samplers.BaseSampler):
    """A sampler giving trial number k < len(fixed) the values ``fixed[k]``, then ``base``.

    Written instead of Optuna's ``enqueue_trial`` queue: on SQLite (no row locks) two processes
    can pop the same waiting trial and both train it, which the two-worker test caught. Trial
    numbers themselves are unique in every storage, so fixing values by number is safe.
    """

    def __init__(self, fixed: list[dict[str, Any]], base: optuna.samplers.BaseSampler) -> None:
        self.fixed, self.base = fixed, base

    def infer_relative_search_space(self, study: Any, trial: Any) -> dict[str, Any]:
        if trial.number < len(self.fixed):
            return {}
        return self.base.infer_relative_search_space(study, trial)

    def sample_relative(self, study: Any, trial: Any, space: dict[str, Any]) -> dict[str, Any]:
        if trial.number < len(self.fixed):
            return {}
        return self.base.sample_relative(study, trial, space)

    def sample_independent(self, study: Any, trial: Any, name: str, distribution: Any) -> Any:
        if trial.number < len(self.fixed) and name in self.fixed[trial.number]:
            return self.fixed[trial.number][name]
        return self.base.sample_independent(study, trial, name, distribution)

    def before_trial(self, study: Any, trial: Any) -> None:
        self.base.before_trial(study, trial)

    def after_trial(self, study: Any, trial: Any, state: Any, values: Any) -> None:
        self.base.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        self.base.reseed_rng()


def tune_cell(storage: Any, name: str, n_trials: int, fixed: list[dict[str, Any]],
              loss: str, lr: float, max_epochs: int, seed: int, worker: bool,
              run_trial: Callable[[dict[str, Any], Callable[[float, int], bool]],
                                  Generator[Any, None, list[tuple[float, float]]]],
              ) -> Generator[Any, None, None]:
    """Run this process's share of one cell's trials (others may run the rest).

    ``run_trial(params, report)`` trains one model and returns its per-epoch
    ``(validation Dice, validation loss)``; it calls ``report(dice, epoch)``, which says whether
    to stop (pruned). Yields what ``run_trial`` yields, plus ``("trial", number, params)``.
    """
    with warnings.catch_warnings():  # "group" is marked experimental; it handles alpha's
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # condition
        tpe = optuna.samplers.TPESampler(
            seed=seed + (os.getpid() if worker else 0), multivariate=True, group=True,
            n_startup_trials=len(fixed))
    pruner = optuna.pruners.MedianPruner(n_startup_trials=len(fixed),
                                         n_warmup_steps=max(1, max_epochs // 3))
    study = optuna.create_study(study_name=name, storage=storage, direction="maximize",
                                load_if_exists=True, sampler=_FirstTrialsFixed(fixed, tpe),
                                pruner=pruner)
    while True:
        fail_stale(study, storage)
        trial = study.ask()
        trial.set_user_attr("worker", _owner())  # first, so a killed run's trial is found stale
        if _real_before(study, trial.number) >= n_trials:  # the budget is spent: give the
            # number back untrained
            trial.set_user_attr("surplus", True)
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            return
        params = suggest(trial, loss, lr)
        yield ("trial", trial.number, params)

        def report(dice: float, epoch: int, trial: Any = trial) -> bool:
            trial.report(dice, epoch)
            return trial.should_prune()

        curve = yield from run_trial(params, report)
        k = max(range(len(curve)), key=lambda e: (curve[e][0], -curve[e][1]))
        trial.set_user_attr("params", params)
        trial.set_user_attr("best_epoch", k + 1)
        trial.set_user_attr("best_val_loss", curve[k][1])
        trial.set_user_attr("curve", [c[0] for c in curve])
        if len(curve) < max_epochs:
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        else:
            study.tell(trial, curve[k][0])


def _real(t: Any) -> bool:
    return not (t.user_attrs.get("surplus") or t.user_attrs.get("stale"))


def _real_before(study: Any, number: int) -> int:
    """How many budget-counting trials precede trial ``number`` (numbers are ordered)."""
    return sum(1 for t in study.get_trials(deepcopy=False) if t.number < number and _real(t))


def fail_stale(study: Any, storage: Any) -> None:
    """Mark trials left RUNNING by a process of this host that is gone (a killed run) as FAIL.

    They stop counting towards the budget, so a resumed run trains replacements instead of
    waiting for them forever; each gets the user attribute ``stale``. ``storage`` is the
    study's (from :func:`storage_for`).
    """
    from optuna.trial import TrialState

    study_id = None
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        owner = t.user_attrs.get("worker")
        if owner and not _alive_here(owner):
            try:
                # Study and Trial have no public way to set an attribute of a trial that another
                # (here: dead) process asked for; the storage's own documented methods find it
                # by number (Optuna >= 3.6, see pyproject; tests/test_tuning.py).
                if study_id is None:
                    study_id = storage.get_study_id_from_name(study.study_name)
                trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, t.number)
                storage.set_trial_user_attr(trial_id, "stale", True)
                study.tell(t.number, state=TrialState.FAIL)
            except (optuna.exceptions.UpdateFinishedTrialError, ValueError, RuntimeError):
                pass  # another process got there first


def trials_of(storage: Any, name: str) -> list[Any]:
    """The trials of a cell that count towards its budget (no surplus or stale ones)."""
    study = optuna.load_study(study_name=name, storage=storage)
    fail_stale(study, storage)
    return [t for t in study.get_trials(deepcopy=False) if _real(t)]


def best_of(storage: Any, name: str) -> dict[str, Any]:
    """Wait until the cell's trials finished (possibly elsewhere), then pick the best.

    Called after this process drew a surplus number, so every budgeted trial has been asked.

    Best = highest inner-validation Dice, ties by lower validation loss, then lower number.
    """
    from optuna.trial import TrialState

    def finished() -> list[Any] | None:
        ts = trials_of(storage, name)
        if any(t.state in (TrialState.RUNNING, TrialState.WAITING) for t in ts):
            return None
        return ts

    ts = wait_for(finished)
    complete = [t for t in ts if t.state == TrialState.COMPLETE]
    if not complete:
        raise RuntimeError(f"{name}: every tuning trial failed or was pruned")
    best = max(complete, key=lambda t: (t.value, -t.user_attrs["best_val_loss"], -t.number))
    table = [{"number": t.number, "state": t.state.name, "value": t.value,
              "params": t.user_attrs.get("params"), "best_epoch": t.user_attrs.get("best_epoch"),
              "curve": t.user_attrs.get("curve")} for t in sorted(ts, key=lambda t: t.number)]
    return {"params": best.user_attrs["params"], "epochs": int(best.user_attrs["best_epoch"]),
            "score": float(best.value), "trial": best.number, "trials": table}
