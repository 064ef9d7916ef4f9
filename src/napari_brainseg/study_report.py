"""The study's report: per-fold and per-image tables, summary, paired tests and box plots.

Everything here reads the finished cells (``DIR/cells/*.json``) that :mod:`.study` writes, so
the report can be rebuilt from a study folder alone.
"""

from __future__ import annotations

import csv
import io as _io
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .io import atomic_write
from .metrics import SCORES

if TYPE_CHECKING:
    from .study import StudyConfig

#: Published means (percent) of the study, for reference beside our tables.
PUBLISHED = {
    "bce": {"precision": 76.16, "recall": 71.9, "f1": 74.52, "accuracy": 99.03},
    "focal": {"precision": 82.92, "recall": 79.32, "f1": 81.0, "accuracy": 99.44},
}


@dataclass(frozen=True)
class StudyResult:
    """Paths of the report files and the per-fold rows."""

    out_dir: Path
    rows: list[dict[str, Any]]
    summary: Path
    comparison: Path


REPORT_SCORES = ["precision", "recall", "f1", "accuracy", "iou", "specificity"]


#: Keys every finished cell file holds (what the report reads).
CELL_KEYS = ("fold", "loss", "alpha", "epochs", "n_test", "pooled", "per_image", "test_indices")


def load_cells(out_dir: str | Path) -> list[dict[str, Any]]:
    """All finished cells of a study folder.

    Raises
    ------
    ValueError
        A cell file that is not a cell (damaged, edited), naming it and how to recompute it.
    """
    return [_load_cell(p) for p in sorted(Path(out_dir, "cells").glob("*.json"))]


def _load_cell(path: Path) -> dict[str, Any]:
    try:
        cell = json.loads(path.read_text(encoding="utf-8"))
        missing = [k for k in CELL_KEYS if k not in cell] if isinstance(cell, dict) else ["all"]
        if missing:
            raise ValueError(f"missing {', '.join(missing)}")
    except (ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError is a ValueError
        raise ValueError(f"{path}: not a finished study cell ({exc}); delete it and run the "
                         "study again to recompute that cell") from exc
    return cell


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


def min_wilcoxon_p(n: int) -> float:
    """The smallest two-sided p of an exact Wilcoxon signed-rank test with ``n`` pairs.

    All ``n`` differences of one sign, no ties or zeros: ``2 / 2**n`` (5 pairs: 0.0625; it
    first drops below 0.05 at 6 pairs). NaN for no pairs.
    """
    return math.nan if n < 1 else 2.0 ** (1 - n)


def patient_means(image_rows: Sequence[dict[str, Any]], loss: str,
                  key: str = "f1") -> dict[Any, float]:
    """Mean per-image score of each patient for one loss (one value per patient).

    Images of one patient are not independent, so paired tests between losses use these.
    """
    values: dict[Any, list[float]] = {}
    for r in image_rows:
        if r["loss"] == loss:
            values.setdefault(r["patient"], []).append(float(r[key]))
    return {p: float(np.mean(v)) for p, v in values.items()}


def no_better_than_background(rows: Sequence[dict[str, Any]]) -> list[str]:
    """One sentence per loss whose mean pixel accuracy is at or below the all-background one.

    Predicting no tumour at all already scores the all-background accuracy (about 98-99 % on
    tumour slices), so a loss at or below it found (almost) no tumour, or marked more false
    tumour than it found.
    """
    notes = []
    for loss, t in summary_table(rows).items():
        acc, base = t["accuracy"][0], t["background_accuracy"][0]
        recall, precision = t["recall"][0], t["precision"][0]
        if math.isnan(acc) or math.isnan(base) or acc > base:
            continue
        folds = sum(1 for r in rows if r["loss"] == loss
                    and float(r["accuracy"]) <= float(r["background_accuracy"]))
        n = sum(1 for r in rows if r["loss"] == loss)
        where = f"in {folds} of {n} folds" if folds < n else "in every fold"
        if recall < 0.1:
            what = (f"it predicted (almost) nothing (recall {100 * recall:.2f} %): this run did "
                    "not learn to mark tumour; more epochs, a Dice-based loss or another alpha "
                    "may help")
        else:
            what = (f"it predicted (almost) nothing right: it marks more false tumour than it "
                    f"finds (precision {100 * precision:.2f} %, recall {100 * recall:.2f} %)")
        notes.append(f"{loss}: pixel accuracy {100 * acc:.2f} % is at or below the "
                     f"all-background baseline {100 * base:.2f} % ({where}); {what}.")
    return notes


def write_report(out_dir: str | Path, config: StudyConfig) -> StudyResult:
    """Write per_fold.csv, per_image.csv, summary.md, comparison.md and box plots."""
    out = Path(out_dir)
    cells = load_cells(out)
    rows = per_fold_rows(cells)
    _write_csv(out / "per_fold.csv", rows)
    image_rows = []
    for c in cells:
        # Older cells did not record patients: each image then counts as its own patient.
        patients = c.get("test_patients") or [f"image {i}" for i in c["test_indices"]]
        for idx, patient, r in zip(c["test_indices"], patients, c["per_image"], strict=True):
            image_rows.append({"loss": c["loss"], "fold": c["fold"], "sample": idx,
                               "patient": patient, **{k: r[k] for k in [*SCORES, "hd95"]}})
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
    notes = no_better_than_background(rows)
    if notes:
        lines += ["", "**No better than predicting nothing.** Predicting no tumour at all scores "
                  "the all-background accuracy; these losses did not beat it:", ""]
        lines += [f"- {n}" for n in notes]
    lines += ["", "Pixel accuracy is dominated by background (see the all-background column).", ""]
    lines += [f"Patients: {_grouping_words(cfg)}. Folds: "
              + (f"as given by {cfg.folds_file} (the dataset's own split)." if cfg.folds_file
                 else "by patient, balanced by tumour type."), ""]
    return "\n".join(lines)


def _grouping_words(cfg: StudyConfig) -> str:
    g = getattr(cfg, "grouping", "auto")
    if g.startswith("csv "):
        return f"from the table {g[4:]} (--groups)"
    if g.startswith("regex "):
        return f"the first group of {g[6:]!r} in each file name (--group-by)"
    return "figshare PID when present, else one file or volume each"


def _comparison_md(rows: Sequence[dict[str, Any]], image_rows: Sequence[dict[str, Any]],
                   cfg: StudyConfig) -> str:
    losses = sorted({r["loss"] for r in rows})
    lines = ["# Paired comparison between losses", "",
             "Wilcoxon signed-rank (two-sided) and paired t-test on Dice; effect sizes: "
             "matched-pairs rank-biserial r and Cohen's d_z.", ""]
    table = []
    for i, a in enumerate(losses):
        for b in losses[i + 1:]:
            fa = {r["fold"]: r["f1"] for r in rows if r["loss"] == a}
            fb = {r["fold"]: r["f1"] for r in rows if r["loss"] == b}
            common = sorted(set(fa) & set(fb))
            table.append((a, b, "folds (pooled Dice)",
                          paired_tests([fa[f] for f in common], [fb[f] for f in common])))
            pa, pb = patient_means(image_rows, a), patient_means(image_rows, b)
            keys = sorted(set(pa) & set(pb), key=str)
            table.append((a, b, "patients (mean per-image Dice)",
                          paired_tests([pa[k] for k in keys], [pb[k] for k in keys])))
    for level, words in (("folds (pooled Dice)", "fold"), ("patients (mean per-image Dice)",
                                                           "patient")):
        ns = sorted({int(t["n"]) for _, _, lv, t in table if lv == level})
        small = [n for n in ns if 0 < n and min_wilcoxon_p(n) >= 0.05]
        if small:
            bounds = ", ".join(f"{min_wilcoxon_p(n):.4g} with {n} pair{'s' * (n != 1)}"
                               for n in small)
            lines += [f"**With so few {words}s the {words}-level Wilcoxon test cannot reach "
                      f"p < 0.05: its smallest two-sided p is {bounds}.** Treat those p-values "
                      "as descriptive.", ""]
    lines += ["Images of one patient are not independent: the image-level comparison averages "
              "each patient's per-image Dice first and pairs patients (one value per patient), "
              "so its p-values are not overstated by counting slices.", ""]
    lines += ["| A vs B | level | n | mean Dice A - B | Wilcoxon p | r | t-test p | d_z |",
              "|---|---|---|---|---|---|---|---|"]
    lines += [_test_row(a, b, level, t) for a, b, level, t in table]
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
