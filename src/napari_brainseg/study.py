"""The study in one command: k-fold cross-validation comparing losses, with tuning and statistics.

Protocol (what the published study did, minus its known defects, see ``shared/STUDY.md``):

1. **Outer folds.** Samples are split into ``k`` folds by group (patient id, or one volume/file),
   so no patient is in two folds; groups are spread so that tumour types are balanced across
   folds when known.
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

import csv
import io as _io
import json
import logging
import math
import os
import threading
import time
from collections.abc import Callable, Generator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .data import Sample, split_indices
from .io import atomic_write
from .losses import LossConfig
from .metrics import SCORES, evaluate
from .model import UNetConfig
from .progress import drain
from .train import EpochReport, TrainConfig, iter_training

log = logging.getLogger(__name__)

#: Published means (percent) of the study, for reference beside our tables.
PUBLISHED = {
    "bce": {"precision": 76.16, "recall": 71.9, "f1": 74.52, "accuracy": 99.03},
    "focal": {"precision": 82.92, "recall": 79.32, "f1": 81.0, "accuracy": 99.44},
}

#: Default candidate alphas per loss (None = the loss has no alpha, or the unweighted form).
DEFAULT_ALPHAS: dict[str, list[float | None]] = {
    "bce": [None],
    "dice": [None],
    "focal": [None, 0.25, 0.75],
    "tversky": [0.3, 0.5, 0.7],
    "dice+bce": [None],
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
        """The LossConfig of one trial (gamma defaults to the config's)."""
        kw = {} if beta is None else {"beta": beta}
        return LossConfig(loss, alpha=alpha, gamma=self.gamma if gamma is None else gamma, **kw)

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


# --------------------------------------------------------------------------- folds


def make_folds(samples: Sequence[Sample], k: int, seed: int = 0) -> list[list[int]]:
    """Assign sample indices to ``k`` folds by group, balancing tumour types and sizes.

    Groups are shuffled (seeded), then placed largest first into the fold that currently holds
    the fewest samples of that group's main tumour type (ties: fewest samples overall).
    """
    groups: dict[str, list[int]] = {}
    for i, s in enumerate(samples):
        groups.setdefault(s.group, []).append(i)
    if len(groups) < k:
        raise ValueError(
            f"{len(groups)} patients/volumes cannot fill {k} folds; use fewer folds or more data"
        )
    rng = np.random.default_rng(seed)
    names = list(groups)
    rng.shuffle(names)
    names.sort(key=lambda g: -len(groups[g]))  # stable: shuffled order within equal sizes

    def main_type(g: str) -> str:
        types = [samples[i].tumour_type or "unknown" for i in groups[g]]
        return max(set(types), key=types.count)

    folds: list[list[int]] = [[] for _ in range(k)]
    by_type = [dict[str, int]() for _ in range(k)]
    for g in names:
        t = main_type(g)
        best = min(range(k), key=lambda f: (by_type[f].get(t, 0), len(folds[f]), f))
        folds[best].extend(groups[g])
        by_type[best][t] = by_type[best].get(t, 0) + len(groups[g])
    return [sorted(f) for f in folds]


@dataclass(frozen=True)
class CellPlan:
    """The data of one (fold, loss) cell: indices for tuning and for the final test."""

    fold: int
    inner_train: list[int]
    inner_val: list[int]
    train: list[int]
    test: list[int]


def plan(samples: Sequence[Sample], config: StudyConfig) -> list[CellPlan]:
    """Outer folds and inner tuning splits (the same for every loss, so losses are paired)."""
    folds = make_folds(samples, config.folds, config.seed)
    plans = []
    for f, test in enumerate(folds):
        test_set = set(test)
        train = [i for i in range(len(samples)) if i not in test_set]
        inner_t, inner_v = split_indices([samples[i].group for i in train],
                                         config.inner_val_fraction, config.seed + f)
        plans.append(CellPlan(f, [train[i] for i in inner_t], [train[i] for i in inner_v],
                              train, sorted(test)))
    return plans


# --------------------------------------------------------------------------- running


@dataclass(frozen=True)
class StudyProgress:
    """Where a study run is: ``stage`` is ``tune``, ``refit``, ``test`` or ``skip``."""

    fold: int
    folds: int
    loss: str
    stage: str
    detail: str
    cells_done: int
    cells: int


@dataclass(frozen=True)
class StudyResult:
    """Paths of the report files and the per-fold rows."""

    out_dir: Path
    rows: list[dict[str, Any]]
    summary: Path
    comparison: Path


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
                  ) -> list[tuple[float, float]]:
    """Train; return ``(validation Dice, validation loss)`` of every epoch run.

    ``stop_after(dice, epoch)`` returning True ends training after that epoch (pruning).
    """
    curve: list[tuple[float, float]] = []
    stop = threading.Event()
    for item in iter_training(train_s, val_s, path, cfg, model_cfg, stop=stop):
        if isinstance(item, EpochReport):
            curve.append((float(item.val_dice), float(item.val_loss)))
            if stop_after is not None and stop_after(float(item.val_dice), item.epoch):
                stop.set()
    return curve


def iter_study(samples: Sequence[Sample], out_dir: str | Path,
               config: StudyConfig | None = None, storage: str | None = None,
               worker: bool = False) -> Generator[StudyProgress, None, StudyResult]:
    """Run (or resume, or join) the study; see the module docstring.

    ``storage`` is an Optuna RDB URL (default: ``sqlite:///<out_dir>/optuna.db``); processes
    given the same storage share the work (``worker`` marks such a process: its sampler seed is
    made distinct). The report covers the cells finished so far, wherever they ran.
    """
    from . import tuning

    cfg = config or StudyConfig()
    out = Path(out_dir)
    (out / "cells").mkdir(parents=True, exist_ok=True)
    (out / "work").mkdir(parents=True, exist_ok=True)
    cfg_dict = json.loads(json.dumps(cfg.to_dict()))
    cfg_json = json.dumps(cfg_dict, indent=2, sort_keys=True)
    old = out / "config.json"
    if old.exists() and json.loads(old.read_text()) != cfg_dict:
        raise ValueError(f"{out} holds a study with another configuration; use a new folder")
    store = tuning.storage_for(storage, out)
    if tuning.claim(store, "config"):
        tuning.mark_done(store, "config", cfg_dict)
    elif tuning.wait_for(lambda: tuning.done_payload(store, "config")) != cfg_dict:
        raise ValueError("the Optuna storage holds a study with another configuration; use "
                         "another storage (or database)")
    atomic_write(old, lambda t: Path(t).write_text(cfg_json))
    plans = plan(samples, cfg)
    model_cfg = UNetConfig(base_filters=cfg.base_filters)
    cells = len(plans) * len(cfg.losses)
    done = 0
    tag = f"{os.getpid()}"
    for p in plans:
        for li, loss in enumerate(cfg.losses):
            name = f"fold{p.fold}-{_slug(loss)}"
            cell_file = out / "cells" / f"fold{p.fold}_{_slug(loss)}.json"
            if _fetch_cell(store, name, cell_file):
                done += 1
                yield StudyProgress(p.fold, cfg.folds, loss, "skip", "done earlier", done, cells)
                continue
            t0 = time.perf_counter()
            inner_t = [samples[i] for i in p.inner_train]
            inner_v = [samples[i] for i in p.inner_val]

            def run_trial(params: dict[str, Any], report: Callable[[float, int], bool],
                          loss: str = loss, inner_t: list = inner_t,
                          inner_v: list = inner_v) -> Generator[Any, None, Any]:
                curve = _run_training(inner_t, inner_v, out / "work" / f"tune-{tag}.pt",
                                      cfg.train_config(loss, params, cfg.max_epochs), model_cfg,
                                      stop_after=report)
                yield from ()
                return curve

            fixed = tuning.fixed_params(loss, cfg.candidates(loss), cfg.gamma, cfg.lr)
            n_trials = max(cfg.trials, len(fixed))
            for item in tuning.tune_cell(store, name, n_trials, fixed, loss, cfg.lr,
                                         cfg.max_epochs, cfg.seed * 1000 + 10 * p.fold + li,
                                         worker, run_trial):
                if item[0] == "trial":
                    yield StudyProgress(p.fold, cfg.folds, loss, "tune",
                                        f"trial {item[1] + 1}/{n_trials}", done, cells)
            if not tuning.claim(store, f"{name}:refit"):
                continue  # another process refits this cell; its result is collected below
            best = tuning.best_of(store, name, n_trials)
            params, epochs = best["params"], best["epochs"]
            yield StudyProgress(p.fold, cfg.folds, loss, "refit",
                                f"{_describe(params)}, {epochs} epochs", done, cells)
            model_path = out / "work" / f"fold{p.fold}_{_slug(loss)}.pt"
            _run_training([samples[i] for i in p.train], [], model_path,
                          cfg.train_config(loss, params, epochs), model_cfg)
            yield StudyProgress(p.fold, cfg.folds, loss, "test", "", done, cells)
            preds = _predict_masks(model_path, [samples[i] for i in p.test], cfg.threshold)
            ev = evaluate([(m, t) for _, m, t in preds])
            cell = {
                "fold": p.fold, "loss": loss, "alpha": params.get("alpha"),
                "gamma": params.get("gamma"), "beta": params.get("beta"),
                "lr": params.get("lr"), "epochs": epochs, "tuning": best["trials"],
                "n_test": len(p.test), "test_groups": sorted({samples[i].group for i in p.test}),
                "pooled": ev.pooled, "per_image": ev.per_image,
                "test_indices": p.test, "seconds": time.perf_counter() - t0,
            }
            _overlay_examples(out / "overlays", p.fold, loss, preds[:2])
            text = json.dumps(cell, indent=1)
            atomic_write(cell_file, lambda t, x=text: Path(t).write_text(x))
            tuning.mark_done(store, f"{name}:refit", json.loads(text))
            done += 1
            yield StudyProgress(p.fold, cfg.folds, loss, "done",
                                f"test Dice {ev.pooled['f1']:.3f}", done, cells)
    for p in plans:  # cells other processes finished while this one worked
        for loss in cfg.losses:
            _fetch_cell(store, f"fold{p.fold}-{_slug(loss)}",
                        out / "cells" / f"fold{p.fold}_{_slug(loss)}.json")
    return write_report(out, cfg)


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
    from .predict import GREEN, RED, write_overlay

    for k, (img, pred, truth) in enumerate(preds):
        write_overlay(folder / f"fold{fold}_{_slug(loss)}_{k}.png", img,
                      [(truth, GREEN), (pred, RED)])


# --------------------------------------------------------------------------- report


REPORT_SCORES = ["precision", "recall", "f1", "accuracy", "iou", "specificity"]


def load_cells(out_dir: str | Path) -> list[dict[str, Any]]:
    """All finished cells of a study folder."""
    return [json.loads(p.read_text()) for p in sorted(Path(out_dir, "cells").glob("*.json"))]


def per_fold_rows(cells: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (fold, loss): pooled scores of its test fold plus per-image means."""
    rows = []
    for c in sorted(cells, key=lambda c: (c["loss"], c["fold"])):
        row = {"loss": c["loss"], "fold": c["fold"], "alpha": c["alpha"],
               "gamma": c.get("gamma"), "lr": c.get("lr"), "epochs": c["epochs"],
               "n_test": c["n_test"]}
        for k in REPORT_SCORES:
            row[k] = c["pooled"][k]
        row["background_accuracy"] = c["pooled"]["background_accuracy"]
        row["per_image_f1"] = float(np.mean([r["f1"] for r in c["per_image"]]))
        hd = [r["hd95"] for r in c["per_image"] if r.get("hd95") is not None
              and not math.isnan(r["hd95"])]
        row["per_image_hd95"] = float(np.mean(hd)) if hd else math.nan
        rows.append(row)
    return rows


def summary_table(rows: Sequence[dict[str, Any]]) -> dict[str, dict[str, tuple[float, float]]]:
    """Mean and sd over folds of each score, per loss (recomputable from per_fold.csv)."""
    out: dict[str, dict[str, tuple[float, float]]] = {}
    for loss in sorted({r["loss"] for r in rows}):
        sub = [r for r in rows if r["loss"] == loss]
        out[loss] = {}
        for k in [*REPORT_SCORES, "background_accuracy", "per_image_f1", "per_image_hd95"]:
            v = np.array([float(r[k]) for r in sub], dtype=float)
            v = v[~np.isnan(v)]
            out[loss][k] = (float(v.mean()) if v.size else math.nan,
                            float(v.std(ddof=1)) if v.size > 1 else 0.0)
    return out


def paired_tests(a: Sequence[float], b: Sequence[float]) -> dict[str, float]:
    """Paired Wilcoxon signed-rank and t-test of ``a - b``, with effect sizes.

    Returns mean difference, Wilcoxon p and matched-pairs rank-biserial correlation, paired t p
    and Cohen's d_z (mean difference / sd of differences).
    """
    from scipy import stats

    a, b = np.asarray(a, float), np.asarray(b, float)
    d = a - b
    out = {"n": float(len(d)), "mean_diff": float(d.mean()) if len(d) else math.nan}
    nz = d[d != 0]
    if len(nz) >= 1:
        w = stats.wilcoxon(a, b, zero_method="wilcox")
        ranks = stats.rankdata(np.abs(nz))
        r_plus, r_minus = ranks[nz > 0].sum(), ranks[nz < 0].sum()
        out.update({"wilcoxon_p": float(w.pvalue),
                    "rank_biserial": float((r_plus - r_minus) / (r_plus + r_minus))})
    else:
        out.update({"wilcoxon_p": 1.0, "rank_biserial": 0.0})
    sd = d.std(ddof=1) if len(d) > 1 else 0.0
    if len(d) > 1 and sd > 0:
        out.update({"ttest_p": float(stats.ttest_rel(a, b).pvalue),
                    "cohen_dz": float(d.mean() / sd)})
    else:
        out.update({"ttest_p": math.nan, "cohen_dz": math.nan})
    return out


def write_report(out_dir: str | Path, config: StudyConfig) -> StudyResult:
    """Write per_fold.csv, per_image.csv, summary.md, comparison.md and box plots."""
    out = Path(out_dir)
    cells = load_cells(out)
    rows = per_fold_rows(cells)
    _write_csv(out / "per_fold.csv", rows)
    image_rows = []
    for c in cells:
        for idx, r in zip(c["test_indices"], c["per_image"], strict=True):
            image_rows.append({"loss": c["loss"], "fold": c["fold"], "sample": idx,
                               **{k: r[k] for k in [*SCORES, "hd95"]}})
    _write_csv(out / "per_image.csv", image_rows)
    table = summary_table(rows)
    summary = out / "summary.md"
    atomic_write(summary, lambda t: Path(t).write_text(_summary_md(table, rows, config)))
    comparison = out / "comparison.md"
    atomic_write(comparison, lambda t: Path(t).write_text(_comparison_md(rows, image_rows,
                                                                         config)))
    _box_plots(out / "boxplots.png", rows)
    return StudyResult(out, rows, summary, comparison)


def _write_csv(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    buf = _io.StringIO()
    if rows:
        w = csv.DictWriter(buf, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    text = buf.getvalue()
    atomic_write(path, lambda t: Path(t).write_text(text))


def _g(x: Any) -> str:
    return "-" if x is None else f"{x:.3g}" if isinstance(x, float) else str(x)


def _pct(m: float, s: float) -> str:
    return "n/a" if math.isnan(m) else f"{100 * m:.2f} ± {100 * s:.2f}"


def _summary_md(table: dict[str, dict[str, tuple[float, float]]],
                rows: Sequence[dict[str, Any]], cfg: StudyConfig) -> str:
    n_folds = len({r["fold"] for r in rows})
    lines = [
        "# Loss comparison: k-fold cross-validation",
        "",
        f"{n_folds} of {cfg.folds} folds done; metrics pooled over all pixels of each test fold "
        "(as the study reported), then mean ± sd over folds, in %. Threshold "
        f"{cfg.threshold}. Learning rate, alpha, gamma/beta and epochs tuned with Optuna "
        f"({cfg.trials} trials per cell) on an inner validation split of the training folds "
        "only.",
        "",
        "| loss | precision | recall | F1 (Dice) | pixel accuracy | all-background accuracy "
        "| IoU | per-image Dice | HD95 (px/mm) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for loss, t in table.items():
        hd = t["per_image_hd95"]
        lines.append(
            f"| {loss} | {_pct(*t['precision'])} | {_pct(*t['recall'])} | {_pct(*t['f1'])} | "
            f"{_pct(*t['accuracy'])} | {_pct(*t['background_accuracy'])} | {_pct(*t['iou'])} | "
            f"{_pct(*t['per_image_f1'])} | "
            f"{'n/a' if math.isnan(hd[0]) else f'{hd[0]:.2f} ± {hd[1]:.2f}'} |")
    lines += ["", "Tuned per fold:", "",
              "| loss | fold | alpha | gamma | lr | epochs |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['loss']} | {r['fold']} | {_g(r['alpha'])} | {_g(r.get('gamma'))} | "
              f"{_g(r.get('lr'))} | {r['epochs']} |" for r in rows]
    lines += ["", "## Published (314 real slices, for reference only)", "",
              "| loss | precision | recall | F1 | pixel accuracy |", "|---|---|---|---|---|"]
    for loss, p in PUBLISHED.items():
        lines.append(f"| {loss} | {p['precision']} | {p['recall']} | {p['f1']} | "
                     f"{p['accuracy']} |")
    lines += ["", "Pixel accuracy is dominated by background (see the all-background column).", ""]
    return "\n".join(lines)


def _comparison_md(rows: Sequence[dict[str, Any]], image_rows: Sequence[dict[str, Any]],
                   cfg: StudyConfig) -> str:
    losses = sorted({r["loss"] for r in rows})
    lines = ["# Paired comparison between losses", "",
             "Wilcoxon signed-rank (two-sided) and paired t-test on Dice; effect sizes: "
             "matched-pairs rank-biserial r and Cohen's d_z.", ""]
    folds_n = len({r["fold"] for r in rows})
    if folds_n < 6:
        lines += [f"**With {folds_n} folds the fold-level Wilcoxon test cannot reach p < 0.05 "
                  "(its smallest two-sided p with 5 pairs is 0.0625): treat fold-level p-values "
                  "as descriptive, and prefer the per-image comparison, which has many more "
                  "pairs (but images of one patient are not independent).**", ""]
    lines += ["| A vs B | level | n | mean Dice A - B | Wilcoxon p | r | t-test p | d_z |",
              "|---|---|---|---|---|---|---|---|"]
    for i, a in enumerate(losses):
        for b in losses[i + 1:]:
            fa = {r["fold"]: r["f1"] for r in rows if r["loss"] == a}
            fb = {r["fold"]: r["f1"] for r in rows if r["loss"] == b}
            common = sorted(set(fa) & set(fb))
            t = paired_tests([fa[f] for f in common], [fb[f] for f in common])
            lines.append(_test_row(a, b, "folds (pooled Dice)", t))
            ia = {(r["fold"], r["sample"]): r["f1"] for r in image_rows if r["loss"] == a}
            ib = {(r["fold"], r["sample"]): r["f1"] for r in image_rows if r["loss"] == b}
            keys = sorted(set(ia) & set(ib))
            t = paired_tests([ia[k] for k in keys], [ib[k] for k in keys])
            lines.append(_test_row(a, b, "images (Dice)", t))
    lines.append("")
    return "\n".join(lines)


def _test_row(a: str, b: str, level: str, t: dict[str, float]) -> str:
    def f(x: float) -> str:
        return "n/a" if x is None or math.isnan(x) else f"{x:.3g}"

    return (f"| {a} vs {b} | {level} | {int(t['n'])} | {f(t['mean_diff'])} | "
            f"{f(t['wilcoxon_p'])} | {f(t['rank_biserial'])} | {f(t['ttest_p'])} | "
            f"{f(t['cohen_dz'])} |")


def _box_plots(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    losses = sorted({r["loss"] for r in rows})
    metrics = ["precision", "recall", "f1", "iou"]
    fig = Figure(figsize=(3 * len(metrics), 3.2), tight_layout=True)
    for k, m in enumerate(metrics):
        ax = fig.add_subplot(1, len(metrics), k + 1)
        data = [[100 * r[m] for r in rows if r["loss"] == loss] for loss in losses]
        ax.boxplot(data)
        ax.set_xticks(range(1, len(losses) + 1), losses)
        ax.set_title(f"{'F1 (Dice)' if m == 'f1' else m} per fold (%)", fontsize=9)
        ax.tick_params(labelsize=8)
    buf = _io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    data_bytes = buf.getvalue()
    atomic_write(path, lambda t: Path(t).write_bytes(data_bytes))
