"""The study in one command: k-fold cross-validation comparing losses, with tuning and statistics.

Protocol (what the published study did, minus its known defects, see ``shared/STUDY.md``):

1. **Outer folds** (:mod:`.folds`). Samples are split into ``k`` folds by group (patient id, or
   one volume/file), so no patient is in two folds; groups are spread so that tumour types are
   balanced across folds when known.
2. **Tuning on the training folds only.** For each fold and loss, the training part is split again
   by group into inner-train and inner-validation. Optuna trials (see :mod:`.tuning`: the
   candidate alphas first, then TPE over learning rate, alpha, gamma/beta, median pruning) train
   for up to ``max_epochs`` on inner-train; the trial and epoch with the best inner-validation
   Dice are chosen. The test fold is never seen while tuning. Trials live in an Optuna storage
   (SQLite in the study folder, or PostgreSQL shared by several ``--worker`` machines).
3. **Refit and test.** A fresh model (same seed) is trained on the whole training part with the
   chosen settings for the chosen number of epochs and evaluated once on the test fold: pooled
   precision / recall / F1 (Dice) / accuracy / IoU as the study reported, per-image values and
   HD95.
4. **Report.** ``summary.md`` (mean ± sd over folds per loss, published numbers beside them),
   ``per_fold.csv``, ``per_image.csv``, ``comparison.md`` (paired Wilcoxon signed-rank and paired
   t-tests between losses across folds and across images, with effect sizes), box plots and
   example overlays, and ``config.json`` to repeat the run. Finished (fold, loss) cells are saved
   as JSON and skipped when the command is run again (resume).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Generator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__
from .data import Sample, single_slice_groups
from .folds import (  # noqa: F401 (the partition's names are part of this module's API)
    CellPlan,
    folds_from_file,
    make_folds,
    patient_numbers,
    plan,
    read_fold_file,
    split_groups,
)
from .io import atomic_write
from .losses import LOSS_NAMES, LOSS_PARAMETERS, LossConfig
from .metrics import evaluate
from .model import UNetConfig
from .progress import drain
from .study_report import (  # noqa: F401 (the report's names are part of this module's API)
    PUBLISHED,
    StudyResult,
    load_cells,
    paired_tests,
    per_fold_rows,
    summary_table,
    write_report,
)
from .train import BatchProgress, EpochReport, TrainConfig, ValidationProgress, iter_training

log = logging.getLogger(__name__)

#: Default candidate alphas per loss (None = the loss has no alpha, or the unweighted form).
DEFAULT_ALPHAS: dict[str, list[float | None]] = {
    **{name: [None] for name in LOSS_NAMES},
    "focal": [None, 0.25, 0.75],
    "tversky": [0.3, 0.5, 0.7],
    "dice+focal": [None, 0.25],
}


@dataclass(frozen=True)
class StudyConfig:
    """Everything that defines a study run (saved as ``config.json``).

    Attributes
    ----------
    losses : list of str
        Losses to compare (``bce``, ``focal``, ``dice``, ``tversky``, ``dice+bce``, ...).
    folds : int
        Outer cross-validation folds.
    max_epochs : int
        Epochs of each tuning run; the tuned epoch count is at most this.
    alphas : dict
        Candidate alphas per loss, tried first (see :data:`DEFAULT_ALPHAS`).
    trials : int
        Optuna trials per (fold, loss) cell (at least one per candidate alpha).
    gamma : float
        Focal gamma (the study: 2).
    inner_val_fraction : float
        Share of the training groups held out for tuning.
    seed : int
        Seed of folds, splits, initialisation and augmentation.
    batch_size, lr, patch_size, base_filters, augment :
        Training settings (the study: batch 16-20, Adam 1e-3, no augmentation in the CV).
    threshold : float
        Probability threshold for the metrics.
    grouping : str
        How slices were grouped into patients, for the record: ``auto`` (figshare ``PID``, else
        one file or volume per patient), ``csv NAME`` (``--groups``) or ``regex PATTERN``
        (``--group-by``). The groups themselves are the samples'.
    folds_file : str or None
        Name of the fold file (figshare ``cvind.mat``) whose split replaced
        :func:`make_folds`, for the record; see :func:`folds_from_file`.
    """

    losses: list[str] = field(default_factory=lambda: ["bce", "focal", "dice", "tversky"])
    folds: int = 5
    max_epochs: int = 30
    alphas: dict[str, list[float | None]] = field(default_factory=lambda: dict(DEFAULT_ALPHAS))
    trials: int = 6
    gamma: float = 2.0
    inner_val_fraction: float = 0.2
    seed: int = 0
    batch_size: int = 8
    lr: float = 1e-3
    patch_size: int = 256
    base_filters: int = 16
    augment: bool = False
    threshold: float = 0.5
    grouping: str = "auto"
    folds_file: str | None = None

    def __post_init__(self) -> None:
        if self.folds < 2:
            raise ValueError(f"cross-validation needs at least 2 folds, got {self.folds}")
        for name in self.losses:
            LossConfig(name)  # raises on unknown names
        if not self.losses:
            raise ValueError("give at least one loss to evaluate")
        if self.trials < 1:
            raise ValueError(f"trials must be at least 1, got {self.trials}")

    def candidates(self, loss: str) -> list[float | None]:
        """Alphas tried for ``loss``."""
        return list(self.alphas.get(loss, DEFAULT_ALPHAS.get(loss, [None])))

    def loss_config(self, loss: str, alpha: float | None, gamma: float | None = None,
                    beta: float | None = None) -> LossConfig:
        """The LossConfig of one trial (a loss that takes gamma gets the config's by default)."""
        kw: dict[str, Any] = {} if beta is None else {"beta": beta}
        if "gamma" in LOSS_PARAMETERS[loss]:  # others would log it as ignored on every trial
            kw["gamma"] = self.gamma if gamma is None else gamma
        return LossConfig(loss, alpha=alpha, **kw)

    def ignored_alphas(self) -> list[str]:
        """Candidate alphas given for a compared loss that has no alpha (never tried)."""
        return [f"{loss}={','.join('none' if a is None else f'{a:g}' for a in alphas)}"
                for loss, alphas in self.alphas.items()
                if loss in self.losses and "alpha" not in LOSS_PARAMETERS.get(loss, ())
                and any(a is not None for a in alphas)]

    def train_config(self, loss: str, params: dict[str, Any], epochs: int) -> TrainConfig:
        """Training settings of one run (no early stopping: epochs are tuned explicitly)."""
        return TrainConfig(loss=self.loss_config(loss, params.get("alpha"), params.get("gamma"),
                                                 params.get("beta")),
                           epochs=epochs, batch_size=self.batch_size,
                           lr=float(params.get("lr") or self.lr), patch_size=self.patch_size,
                           augment=self.augment, schedule="none", patience=None, seed=self.seed,
                           threshold=self.threshold, device="auto")

    @classmethod
    def quick(cls, **overrides: Any) -> StudyConfig:
        """A preset that runs on a CPU in minutes (tiny U-Net, few epochs, small patches)."""
        base = {"losses": ["bce", "focal"], "folds": 5, "max_epochs": 30, "batch_size": 4,
                "trials": 2,
                "lr": 3e-3, "patch_size": 128, "base_filters": 8,
                "alphas": {"bce": [None], "focal": [None, 0.75], "dice": [None],
                           "tversky": [0.3, 0.7], "dice+bce": [None], "dice+focal": [None]}}
        base.update(overrides)
        return cls(**base)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)


# --------------------------------------------------------------------------- running


@dataclass(frozen=True)
class StudyProgress:
    """Where a study run is: ``stage`` is ``tune``, ``refit``, ``test``, ``done`` or ``skip``.

    Work is counted in training epochs: each cell budgets ``trials x max_epochs`` for tuning
    and ``max_epochs`` for its refit; a trial pruned early or a shorter refit counts its whole
    budget when it ends. ``work_before`` is the part of ``work_done`` this process did not do
    (cells and trials finished by an earlier run or another process): a rate computed from
    ``work_done - work_before`` stays true after a resume.
    """

    fold: int
    folds: int
    loss: str
    stage: str
    detail: str
    cells_done: int
    cells: int
    work_done: float = 0.0
    work_before: float = 0.0
    work_total: float = 0.0


class _Work:
    """The epoch accounting behind :class:`StudyProgress` (see there)."""

    def __init__(self, total: float) -> None:
        self.total, self.done, self.before = float(total), 0.0, 0.0
        self.cell_start = self.cell_budget = 0.0

    def start_cell(self, budget: float) -> None:
        self.cell_start, self.cell_budget = self.done, float(budget)

    def at(self, in_cell: float, before: float = 0.0) -> None:
        """Mark ``in_cell`` epochs of this cell's budget done (``before`` of them earlier)."""
        self.before += before
        self.done = max(self.done, self.cell_start + min(in_cell, self.cell_budget))

    def end_cell(self, mine: bool) -> None:
        """The cell is finished (by this process when ``mine``): its whole budget is done."""
        rest = self.cell_start + self.cell_budget - self.done
        self.done += rest
        if not mine:
            self.before += rest


def _predict_masks(model_path: Path, samples: Sequence[Sample],
                   threshold: float) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    from .predict import Predictor, SegmentOptions

    pred = Predictor.from_checkpoint(model_path, SegmentOptions(
        threshold=threshold, min_area_mm2=0.0, fill_holes=False, tile=None), device="auto")
    out = []
    for s in samples:
        img, msk = s.load()
        out.append((img, pred.segment_slice(img).mask, msk))
    return out


def _run_training(train_s: Sequence[Sample], val_s: Sequence[Sample], path: Path,
                  cfg: TrainConfig, model_cfg: UNetConfig,
                  stop_after: Callable[[float, int], bool] | None = None,
                  ) -> Generator[tuple[str, float], None, list[tuple[float, float]]]:
    """Train; return ``(validation Dice, validation loss)`` of every epoch run.

    Yields ``("epochs", e)``: the epochs done, fractional within an epoch (its training, then
    validation batches). ``stop_after(dice, epoch)`` returning True ends training after that
    epoch (pruning).
    """
    curve: list[tuple[float, float]] = []
    stop = threading.Event()
    train_steps = 0
    for item in iter_training(train_s, val_s, path, cfg, model_cfg, stop=stop):
        if isinstance(item, EpochReport):
            curve.append((float(item.val_dice), float(item.val_loss)))
            yield "epochs", float(item.epoch)
            if stop_after is not None and stop_after(float(item.val_dice), item.epoch):
                stop.set()
        elif isinstance(item, BatchProgress):
            train_steps = item.steps
            yield "epochs", item.epoch - 1 + item.step / (item.steps + item.val_steps)
        elif isinstance(item, ValidationProgress):  # after the epoch's training batches
            yield "epochs", item.epoch - 1 + (train_steps + item.step) / (train_steps
                                                                          + item.steps)
    return curve


def iter_study(samples: Sequence[Sample], out_dir: str | Path,
               config: StudyConfig | None = None, storage: str | None = None,
               worker: bool = False, fold_of: Sequence[int] | None = None,
               ) -> Generator[StudyProgress, None, StudyResult]:
    """Run (or resume, or join) the study; see the module docstring.

    ``storage`` is an Optuna RDB URL (default: ``sqlite:///<out_dir>/optuna.db``); processes
    given the same storage share the work (``worker`` marks such a process: its sampler seed is
    made distinct). The report covers the cells finished so far, wherever they ran.
    ``fold_of`` fixes each sample's test fold (see :func:`plan`).

    ``config.json`` holds the configuration, a fingerprint of the data's partition into
    patients and folds (``data``: counts and a hash, no identifiers) and ``provenance``
    (package version, when started); a re-run with other settings or another partition is
    refused.
    """
    from . import provenance, tuning

    cfg = config or StudyConfig()
    out = Path(out_dir)
    (out / "cells").mkdir(parents=True, exist_ok=True)
    (out / "work").mkdir(parents=True, exist_ok=True)
    old = out / "config.json"
    saved = _saved_config(old) if old.exists() else None
    plans = plan(samples, cfg, fold_of)
    if single_slice_groups(samples):
        log.warning(
            "every patient/volume holds a single slice (%d slices, patient = file name): if "
            "several files come from one patient, give --groups FILE.csv or --group-by REGEX, "
            "or slices of one patient can land in different folds", len(samples))
    if ignored := cfg.ignored_alphas():
        log.warning("alphas %s are ignored: those losses have no alpha (alpha applies to %s)",
                    " ".join(ignored),
                    ", ".join(n for n, used in LOSS_PARAMETERS.items() if "alpha" in used))
    cfg_dict = json.loads(json.dumps(cfg.to_dict()))
    cfg_dict["data"] = _data_fingerprint(samples, plans)
    if saved is not None and not _same_study(saved, cfg_dict):
        raise ValueError(f"{out} holds a study with another configuration or data; use a new "
                         "folder")
    store = tuning.storage_for(storage, out)
    if tuning.claim(store, "config"):
        tuning.mark_done(store, "config", cfg_dict)
    elif not _same_study(tuning.wait_for(lambda: tuning.done_payload(store, "config")),
                         cfg_dict):
        raise ValueError("the Optuna storage holds a study with another configuration; use "
                         "another storage (or database)")
    prov = provenance.record()
    if isinstance(saved, dict) and isinstance(saved.get("provenance"), dict):
        prov = saved["provenance"]  # the run that started the study; later versions are added
        if prov.get("version") != __version__ and __version__ not in prov.get("resumed_with", []):
            prov = {**prov, "resumed_with": [*prov.get("resumed_with", []), __version__]}
    cfg_json = json.dumps({**cfg_dict, "provenance": prov}, indent=2, sort_keys=True)
    atomic_write(old, lambda t: Path(t).write_text(cfg_json))
    patient_of = patient_numbers(samples)
    model_cfg = UNetConfig(base_filters=cfg.base_filters)
    cells = len(plans) * len(cfg.losses)
    done = 0
    tag = f"{os.getpid()}"
    trials_of_loss = {loss: max(cfg.trials, len(tuning.fixed_params(
        loss, cfg.candidates(loss), cfg.gamma, cfg.lr))) for loss in cfg.losses}
    work = _Work(len(plans) * sum((n + 1) * cfg.max_epochs for n in trials_of_loss.values()))

    def progress(stage: str, detail: str) -> StudyProgress:
        return StudyProgress(p.fold, cfg.folds, loss, stage, detail, done, cells, work.done,
                             work.before, work.total)

    for p in plans:
        for li, loss in enumerate(cfg.losses):
            name = f"fold{p.fold}-{_slug(loss)}"
            cell_file = out / "cells" / f"fold{p.fold}_{_slug(loss)}.json"
            n_trials = trials_of_loss[loss]
            work.start_cell((n_trials + 1) * cfg.max_epochs)
            if _fetch_cell(store, name, cell_file):
                done += 1
                work.end_cell(mine=False)
                yield progress("skip", "done earlier")
                continue
            t0 = time.perf_counter()
            inner_t = [samples[i] for i in p.inner_train]
            inner_v = [samples[i] for i in p.inner_val]

            def run_trial(params: dict[str, Any], report: Callable[[float, int], bool],
                          loss: str = loss, inner_t: list = inner_t,
                          inner_v: list = inner_v) -> Generator[Any, None, Any]:
                return (yield from _run_training(
                    inner_t, inner_v, out / "work" / f"tune-{tag}.pt",
                    cfg.train_config(loss, params, cfg.max_epochs), model_cfg,
                    stop_after=report))

            fixed = tuning.fixed_params(loss, cfg.candidates(loss), cfg.gamma, cfg.lr)
            trial, first = 0, True
            for item in tuning.tune_cell(store, name, n_trials, fixed, loss, cfg.lr,
                                         cfg.max_epochs, cfg.seed * 1000 + 10 * p.fold + li,
                                         worker, run_trial):
                if item[0] == "trial":  # numbered over every run: earlier ones were resumed
                    trial = min(item[1], n_trials - 1)
                    work.at(trial * cfg.max_epochs, before=trial * cfg.max_epochs if first
                            else 0.0)
                    first = False
                    yield progress("tune", f"trial {item[1] + 1}/{n_trials}")
                elif item[0] == "epochs":
                    work.at(trial * cfg.max_epochs + item[1])
                    yield progress("tune", f"trial {trial + 1}/{n_trials} epoch "
                                   f"{min(int(item[1]) + 1, cfg.max_epochs)}/{cfg.max_epochs}")
            if not tuning.claim(store, f"{name}:refit"):
                work.end_cell(mine=False)
                continue  # another process refits this cell; its result is collected below
            best = tuning.best_of(store, name)
            params, epochs = best["params"], best["epochs"]
            # Every trial finished in an earlier run (a resume between tuning and refit): the
            # tuning was not this process's work.
            work.at(n_trials * cfg.max_epochs, before=n_trials * cfg.max_epochs if first
                    else 0.0)
            yield progress("refit", f"{_describe(params)}, {epochs} epochs")
            model_path = out / "work" / f"fold{p.fold}_{_slug(loss)}.pt"
            for _, e in _run_training([samples[i] for i in p.train], [], model_path,
                                      cfg.train_config(loss, params, epochs), model_cfg):
                work.at(n_trials * cfg.max_epochs + e)
                yield progress("refit", f"epoch {min(int(e) + 1, epochs)}/{epochs}")
            yield progress("test", "")
            preds = _predict_masks(model_path, [samples[i] for i in p.test], cfg.threshold)
            ev = evaluate([(m, t) for _, m, t in preds])
            cell = {
                "fold": p.fold, "loss": loss, "alpha": params.get("alpha"),
                "gamma": params.get("gamma"), "beta": params.get("beta"),
                "lr": params.get("lr"), "epochs": epochs, "tuning": best["trials"],
                "n_test": len(p.test), "test_groups": sorted({samples[i].group for i in p.test}),
                "pooled": ev.pooled, "per_image": ev.per_image,
                "test_indices": p.test, "test_patients": [patient_of[i] for i in p.test],
                "model_sha256": provenance.file_sha256(model_path),
                "seconds": time.perf_counter() - t0,
            }
            _overlay_examples(out / "overlays", p.fold, loss, preds[:2])
            text = json.dumps(cell, indent=1)
            atomic_write(cell_file, lambda t, x=text: Path(t).write_text(x))
            tuning.mark_done(store, f"{name}:refit", json.loads(text))
            done += 1
            work.end_cell(mine=True)
            yield progress("done", f"test Dice {ev.pooled['f1']:.3f}")
    for p in plans:  # cells other processes finished while this one worked
        for loss in cfg.losses:
            _fetch_cell(store, f"fold{p.fold}-{_slug(loss)}",
                        out / "cells" / f"fold{p.fold}_{_slug(loss)}.json")
    return write_report(out, cfg)


def _data_fingerprint(samples: Sequence[Sample], plans: Sequence[CellPlan]) -> dict[str, Any]:
    """Counts and a hash of the partition into patients and test folds (no identifiers)."""
    import hashlib

    patients = patient_numbers(samples)
    fold = [0] * len(samples)
    for p in plans:
        for i in p.test:
            fold[i] = p.fold
    digest = hashlib.sha256(json.dumps([patients, fold]).encode()).hexdigest()
    return {"samples": len(samples), "patients": len(set(patients)),
            "partition_sha256": digest[:16]}


def _same_study(saved: Any, current: dict[str, Any]) -> bool:
    """Whether a saved configuration is the current one (provenance aside).

    Keys added in later versions count at their defaults, and an older study folder that did
    not record its data partition is compared on its settings only.
    """
    if not isinstance(saved, dict):
        return False
    defaults = StudyConfig().to_dict()
    old = {k: v for k, v in saved.items() if k != "provenance"}
    for key in ("grouping", "folds_file"):
        old.setdefault(key, defaults[key])
    new = {k: v for k, v in current.items() if k != "provenance"}
    if "data" not in old:
        new.pop("data", None)
    return old == new


def _saved_config(path: Path) -> Any:
    """The configuration a study folder was started with (its ``config.json``)."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError is a ValueError
        raise ValueError(
            f"{path}: not readable JSON ({exc}); it records the settings this study folder was "
            "run with. Restore it, or start the study in a new --out folder"
        ) from exc


def _fetch_cell(store: Any, name: str, cell_file: Path) -> bool:
    """Whether the cell is finished; copies a result finished elsewhere into ``cell_file``."""
    from . import tuning

    if cell_file.exists():
        return True
    payload = tuning.done_payload(store, f"{name}:refit")
    if payload is None:
        return False
    text = json.dumps(payload, indent=1)
    atomic_write(cell_file, lambda t: Path(t).write_text(text))
    return True


def _describe(params: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                     for k, v in params.items() if v is not None)


def run_study(samples: Sequence[Sample], out_dir: str | Path,
              config: StudyConfig | None = None, **kwargs: Any) -> StudyResult:
    """Run :func:`iter_study` to the end."""
    return drain(iter_study(samples, out_dir, config, **kwargs))


def _slug(loss: str) -> str:
    return loss.replace("+", "_plus_")


def _overlay_examples(folder: Path, fold: int, loss: str,
                      preds: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> None:
    from .batch import GREEN, RED, write_overlay

    for k, (img, pred, truth) in enumerate(preds):
        write_overlay(folder / f"fold{fold}_{_slug(loss)}_{k}.png", img,
                      [(truth, GREEN), (pred, RED)])
