"""``brainseg study``: k-fold cross-validation of the losses."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from ._common import UNIT, _err


def _parse_alphas(items: Sequence[str] | None) -> dict[str, list[float | None]]:
    out: dict[str, list[float | None]] = {}
    for item in items or []:
        loss, _, values = item.partition("=")
        if not values:
            raise ValueError(f"--alpha takes LOSS=A,B,... (e.g. focal=none,0.25), got {item!r}")
        out[loss] = [None if v.strip().lower() == "none" else float(v) for v in values.split(",")]
        if any(a is not None and not UNIT.check(a) for a in out[loss]):
            raise ValueError(f"--alpha values must be between 0 and 1 (or none), got {item!r}")
    return out


def _cmd_study(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from napari_brainseg.data import groups_from_csv, regroup, samples_from_folder
    from napari_brainseg.progress import Eta
    from napari_brainseg.study import (
        DEFAULT_ALPHAS,
        StudyConfig,
        folds_from_file,
        iter_study,
        plan,
        split_groups,
    )
    from napari_brainseg.study_report import no_better_than_background

    try:
        overrides: dict = {"seed": args.seed}
        for key, value in (("losses", args.losses), ("folds", args.folds),
                           ("max_epochs", args.epochs), ("batch_size", args.batch_size),
                           ("lr", args.lr), ("patch_size", args.patch_size),
                           ("base_filters", args.base_filters), ("trials", args.trials)):
            if value is not None:
                overrides[key] = value
        alphas = _parse_alphas(args.alpha)
        if args.quick:
            cfg = StudyConfig.quick(**overrides)
        else:
            cfg = StudyConfig(**overrides)
        if alphas:
            cfg = StudyConfig(**{**cfg.to_dict(), "alphas": {**DEFAULT_ALPHAS, **cfg.alphas,
                                                             **alphas}})
        if args.groups and args.group_by:
            raise ValueError("give either --groups FILE.csv or --group-by REGEX, not both")
        samples = samples_from_folder(args.data)
        if args.groups:
            samples = regroup(samples, args.data, table=groups_from_csv(args.groups))
            cfg = StudyConfig(**{**cfg.to_dict(), "grouping": f"csv {Path(args.groups).name}"})
        elif args.group_by:
            samples = regroup(samples, args.data, pattern=args.group_by)
            cfg = StudyConfig(**{**cfg.to_dict(), "grouping": f"regex {args.group_by}"})
        fold_of = None
        if args.folds_file:
            fold_of = folds_from_file(samples, args.folds_file)
            k = max(fold_of) + 1
            if args.folds is not None and args.folds != k:
                raise ValueError(f"--folds {args.folds} differs from the {k} folds of "
                                 f"{Path(args.folds_file).name}; leave out --folds")
            cfg = StudyConfig(**{**cfg.to_dict(), "folds": k,
                                 "folds_file": Path(args.folds_file).name})
        plan(samples, cfg, fold_of)  # fails fast (too few patients for the folds) before work
    except ValueError as exc:
        _err(str(exc))
        return 2
    print(f"{len(samples)} slices of {len({s.group for s in samples})} patients/volumes; "
          f"{cfg.folds} folds x losses {', '.join(cfg.losses)}; results in {args.out}")
    if fold_of is not None:
        split = split_groups(samples, fold_of)
        print(f"folds as given by {Path(args.folds_file).name}"
              + (f" (it puts slices of {split} patients in more than one fold; kept as given)"
                 if split else ""))
    try:
        gen = iter_study(samples, args.out, cfg, storage=args.storage, worker=args.worker,
                         fold_of=fold_of)
        # Progress in training epochs (trials, then the refit), moving within each epoch; the
        # rate and time left count only this process's work, so a resume does not inflate them.
        eta = Eta(1)
        with tqdm(total=1, disable=args.quiet, mininterval=0.5,
                  bar_format="study {percentage:3.0f}%|{bar:20}| {desc}") as bar:
            while True:
                try:
                    p = next(gen)
                except StopIteration as done:
                    result = done.value
                    break
                eta.total = bar.total = max(p.work_total, 1)
                eta.update(p.work_done, p.work_before)
                bar.n = min(p.work_done, bar.total)
                bar.set_description_str(
                    f"fold {p.fold + 1}/{p.folds} {p.loss}: {p.stage} {p.detail} | "
                    f"cells {p.cells_done}/{p.cells} | {eta.describe('epoch')}")
    except KeyboardInterrupt:
        _err(f"interrupted; run the same command again to resume: the finished cells and "
             f"trials are kept in {args.out} (the trial that was running starts over)")
        return 130
    except (ValueError, RuntimeError) as exc:
        _err(str(exc))
        return 1
    except ImportError as exc:  # e.g. a postgresql:// storage without its driver
        _err(f"{exc}; install the database driver (e.g. pip install psycopg2-binary)")
        return 2
    print(result.summary.read_text())
    for note in no_better_than_background(result.rows):
        print(f"brainseg: warning: {note}", file=sys.stderr)
    if len(result.rows) < cfg.folds * len(cfg.losses):
        print(f"{len(result.rows)} of {cfg.folds * len(cfg.losses)} cells are finished; the "
              "others are still running elsewhere: run the same command again to update the "
              "report.")
    print(f"report: {result.summary}, {result.comparison}, {result.out_dir / 'per_fold.csv'}")
    return 0


# --------------------------------------------------------------------------- parser
