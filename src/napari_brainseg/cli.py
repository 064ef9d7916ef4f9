"""The ``brainseg`` command line: an adapter over the core (torch is imported lazily).

Exit codes: 0 success, 1 some inputs failed (each reported on stderr), 2 bad usage.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import __version__
from .devices import DEVICES
from .loss_config import LOSS_NAMES
from .progress import drain

log = logging.getLogger("napari_brainseg")


def _err(message: str) -> None:
    print(f"brainseg: error: {message}", file=sys.stderr)


# --------------------------------------------------------------------------- option ranges


@dataclass(frozen=True)
class Bounds:
    """The allowed range of a numeric option (NaN and infinities are always refused)."""

    low: float
    high: float
    unit: str = ""
    open_low: bool = False  # ``low`` itself is not allowed
    open_high: bool = False  # ``high`` itself is not allowed

    def check(self, value: float) -> bool:
        """Whether ``value`` is finite and within the bounds."""
        return (math.isfinite(value) and (value > self.low if self.open_low else value >= self.low)
                and (value < self.high if self.open_high else value <= self.high))

    def describe(self) -> str:
        """E.g. ``between 0 and 50 mm`` or ``above 0 and at most 1``."""
        unit = f" {self.unit}" if self.unit else ""
        lo, hi = (f"{int(v)}" if float(v).is_integer() else f"{v:g}" for v in (self.low, self.high))
        if not (self.open_low or self.open_high):
            return f"between {lo} and {hi}{unit}"
        low = f"above {lo}" if self.open_low else f"at least {lo}"
        high = f"below {hi}" if self.open_high else f"at most {hi}"
        return f"{low} and {high}{unit}"


SEED = Bounds(0, 2**32 - 1)
EPOCHS = Bounds(1, 10_000)
BATCH = Bounds(1, 512)
LR = Bounds(0, 1, open_low=True)
#: The Train widget's spin boxes and ``train.MIN_PATCH``/``MAX_PATCH`` use the same bounds.
PATCH = Bounds(16, 2048, "pixels")
WIDTH = Bounds(1, 128)
UNIT = Bounds(0, 1)

#: Every numeric option of every command and its range, by argparse ``dest``.
RANGES: dict[str, dict[str, Bounds]] = {
    "sample-data": {"n": Bounds(1, 10_000), "seed": SEED},
    # skullstrip.MAX_MM bounds the classical method's millimetre parameters
    "skull-strip": {"tightness": UNIT, "erode_mm": Bounds(0, 50, "mm")},
    "train": {"alpha": UNIT, "gamma": Bounds(0, 10), "beta": UNIT,
              "pos_weight": Bounds(0, 1000, open_low=True), "epochs": EPOCHS,
              "batch_size": BATCH, "lr": LR, "val_split": Bounds(0, 0.9),
              "patch_size": PATCH, "patience": Bounds(0, 10_000), "base_filters": WIDTH,
              "seed": SEED},
    "segment": {"threshold": Bounds(0, 1, open_low=True, open_high=True),
                "min_area": Bounds(0, 10_000, "mm²"), "batch_size": BATCH,
                "uncertainty_passes": Bounds(2, 64)},  # tta allows 4 at most: uncertainty.py
    "study": {"folds": Bounds(2, 50), "epochs": EPOCHS, "trials": Bounds(1, 1000),
              "batch_size": BATCH, "lr": LR, "patch_size": PATCH, "base_filters": WIDTH,
              "seed": SEED},
}


def check_ranges(command: str, args: argparse.Namespace) -> str | None:
    """The first numeric option of ``command`` outside its range, as a message; else None."""
    for dest, bounds in RANGES.get(command, {}).items():
        value = getattr(args, dest, None)
        if value is not None and not bounds.check(value):
            return f"--{dest.replace('_', '-')} must be {bounds.describe()}, got {value}"
    return None


# --------------------------------------------------------------------------- info


def _cmd_info(args: argparse.Namespace) -> int:
    from .io import ReadError, read

    failed = 0
    for path in args.paths:
        try:
            volumes = read(path)
        except ReadError as exc:
            _err(str(exc))
            failed += 1
            continue
        for vol in volumes:
            extra = ", ".join(f"{k}={vol.metadata[k]}" for k in ("tumour_type", "patient_id",
                                                                 "modality") if k in vol.metadata)
            data = vol.data
            spacing = " x ".join(f"{s:.3g}" for s in vol.spacing)
            print(f"{path}: {vol.kind} '{vol.name}' shape={data.shape} dtype={data.dtype} "
                  f"spacing={spacing} mm range=[{data.min():.4g}, {data.max():.4g}]"
                  + (f" {extra}" if extra else ""))
            for w in vol.warnings:
                print(f"  warning: {w}")
    return 1 if failed else 0


# --------------------------------------------------------------------------- sample-data


def _cmd_sample_data(args: argparse.Namespace) -> int:
    from .synthetic import write_sample_folder

    try:
        shape = tuple(int(s) for s in args.size.lower().split("x"))
    except ValueError:
        shape = ()
    if len(shape) != 2 or min(shape) < 32 or max(shape) > 4096:
        _err(f"--size must look like 256x256 (each side 32 to 4096), got {args.size!r}")
        return 2
    paths = write_sample_folder(Path(args.out), n=args.n, seed=args.seed, shape=shape,
                                skull=args.skull)
    print(f"wrote {len(paths)} phantom images and masks to {args.out}/images and "
          f"{args.out}/masks (seed {args.seed}, {shape[0]}x{shape[1]})")
    return 0


# --------------------------------------------------------------------------- skull-strip


def _cmd_skull_strip(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from .io import ReadError, find_pairs, read, write_image, write_labels
    from .naming import brain_mask_path, stripped_path
    from .skullstrip import apply_mask, iter_skull_strip

    src = Path(args.input)
    if not src.exists():
        _err(f"{src}: no such file or folder")
        return 2
    pairs = [] if src.is_file() else find_pairs(src)
    # a file, or a folder that is one DICOM series, else every image of the folder
    inputs = [p.image for p in pairs] or [src]
    single = len(inputs) == 1 and not Path(args.output).is_dir() and Path(args.output).suffix
    failed = 0
    params = ({"tightness": args.tightness, "erode_mm": args.erode_mm}
              if args.method == "classical" else {})
    if args.method == "learned" and (args.tightness is not None or args.erode_mm is not None):
        _err("--tightness and --erode-mm tune the classical method; add --method classical")
        return 2
    params = {k: v for k, v in params.items() if v is not None}
    bar = tqdm(inputs, desc="skull strip", unit="file", disable=args.quiet or len(inputs) < 2)
    for path in bar:
        try:
            vol = next(v for v in read(path) if v.kind == "image")
            if single:
                out = Path(args.output)
            else:
                out = brain_mask_path(args.output, vol.name, path, vol.ndim)
            outs = [out]
            if args.masked:
                outs.append(stripped_path(out))
            # Never write over the input, whatever --overwrite says; other files only with it.
            clash = [o for o in outs if o.resolve() == Path(path).resolve()]
            if clash:
                raise ValueError(f"output {clash[0]} would replace the input; choose another "
                                 "output name or folder")
            # Existing outputs are kept without --overwrite; a run stopped between the mask and
            # the stripped image is completed (from the mask on disk) on the next run.
            keep = set() if args.overwrite else {o for o in outs if o.exists()}
            if len(keep) == len(outs):
                print(f"{path}: skipped, {out} exists (use --overwrite)")
                continue
            if out in keep:
                mask = next(iter(read(out, with_mask=False))).data > 0
                if mask.shape != vol.data.shape:
                    raise ValueError(f"existing mask {out.name} has shape {mask.shape}, not the "
                                     f"scan's {vol.data.shape}; use --overwrite to redo it")
            else:
                steps = iter_skull_strip(vol.data, vol.spacing, mode=args.mode,
                                         method=args.method, affine=vol.affine, **params)
                with tqdm(desc=f"{path.name}", unit="step", leave=False,
                          disable=args.quiet) as stage_bar:  # inside the file bar

                    def show(step: tuple[int, int], bar: Any = stage_bar) -> None:
                        bar.n, bar.total = step
                        bar.refresh()

                    mask = drain(steps, show)
                write_labels(out, mask.astype("uint8"), like=vol, spacing=vol.spacing)
            written = [o for o in outs if o not in keep]
            if args.masked and outs[1] not in keep:
                write_image(outs[1], apply_mask(vol.data, mask), like=vol, spacing=vol.spacing)
            line = f"{path}: brain {int(mask.sum()):,} voxels -> {', '.join(map(str, written))}"
            if keep:
                line += f" (kept existing {', '.join(o.name for o in sorted(keep))})"
            print(line)
        except ReadError as exc:  # its message names the file
            failed += 1
            _err(str(exc))
        except (ValueError, TypeError, OSError) as exc:
            failed += 1
            _err(f"{path.name}: {exc}")
    if failed and len(inputs) > 1:
        _err(f"{failed} of {len(inputs)} input(s) failed")
    return 1 if failed else 0


# --------------------------------------------------------------------------- train


def _cmd_train(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from .data import samples_from_folder, split_samples
    from .losses import LossConfig
    from .model import CheckpointError, UNetConfig
    from .train import (
        BatchProgress,
        EpochReport,
        TrainConfig,
        ValidationProgress,
        distributed_from_env,
        iter_training,
    )

    try:
        loss = LossConfig(args.loss, alpha=args.alpha, gamma=args.gamma, beta=args.beta,
                          pos_weight=args.pos_weight)
        cfg = TrainConfig(loss=loss, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                          patch_size=args.patch_size, augment=not args.no_augment,
                          patience=args.patience or None, seed=args.seed, device=args.device,
                          deterministic=args.deterministic)
        samples = (_corrected_samples(args.data, args.labels_from) if args.labels_from
                   else samples_from_folder(args.data))
        train_s, val_s = split_samples(samples, args.val_split, args.seed)
    except ValueError as exc:
        _err(str(exc))
        return 2
    from .train import check_output_path, last_path_for

    out = Path(args.out)
    try:
        check_output_path(out)  # a folder or an unwritable place would lose the first epoch
    except ValueError as exc:
        _err(f"--out {exc}")
        return 2
    existing = [p for p in (out, last_path_for(out)) if p.exists()]
    if existing and not args.overwrite and not args.resume:
        _err(f"{existing[0]} exists: a trained model is never replaced silently; choose another "
             "--out, add --overwrite, or continue it with --resume")
        return 2
    ddp = distributed_from_env()  # under torchrun: rank 0 prints, every rank trains
    say = print if ddp is None or ddp.is_main else (lambda *a, **k: None)
    where = "" if ddp is None else f" across {ddp.world} processes (DistributedDataParallel)"
    say(f"training on {len(train_s)} slices, validating on {len(val_s)} "
        f"({len({s.group for s in samples})} patients/volumes); loss {loss.name}{where}")
    model_cfg = UNetConfig(base_filters=args.base_filters)
    bar = None
    epochs_saved = 0  # by this process: before the first, no .last.pt of this run exists
    try:
        gen = iter_training(train_s, val_s, args.out, cfg, model_cfg, init=args.init,
                            resume=args.resume)
        while True:
            try:
                item = next(gen)
            except StopIteration as done:
                result = done.value
                break
            if isinstance(item, BatchProgress):
                if bar is None:  # the epoch's batches, then its validation batches
                    bar = tqdm(total=item.steps + item.val_steps, desc=f"epoch {item.epoch}",
                               leave=False, disable=args.quiet or say is not print)
                bar.set_postfix_str(f"{item.samples_per_s:.1f} samples/s", refresh=False)
                bar.update(1)
            elif isinstance(item, ValidationProgress) and bar is not None:
                bar.set_description_str(f"epoch {item.epoch} validation")
                bar.update(1)
            elif isinstance(item, EpochReport):
                epochs_saved += 1
                if bar is not None:
                    bar.close()
                    bar = None
                star = " *" if item.is_best else ""
                say(f"epoch {item.epoch:3d}/{item.epochs}  loss {item.train_loss:.4f}  "
                      f"val loss {item.val_loss:.4f}  val Dice {item.val_dice:.4f}  "
                      f"P {item.val_precision:.3f} R {item.val_recall:.3f}  lr {item.lr:.2g}  "
                      f"{item.seconds:.1f}s  {item.samples_per_s:.1f} samples/s{star}",
                      flush=True)
    except CheckpointError as exc:
        _err(str(exc))
        return 2
    except (ValueError, FloatingPointError) as exc:
        _err(str(exc))
        return 1
    except OSError as exc:  # e.g. the disk filled up while saving a checkpoint
        _err(f"could not save the checkpoint ({exc.strerror or exc}: "
             f"{exc.filename or args.out}); free space or choose another --out, then resume "
             "from the last saved epoch")
        return 1
    except KeyboardInterrupt:
        if epochs_saved or args.resume:
            again = "" if epochs_saved else " (no new epoch was finished)"
            _err(f"interrupted{again}; continue with --resume {last_path_for(out)}")
        else:
            _err("interrupted before the first epoch finished; nothing was saved, run the "
                 "same command again to start over")
        return 130
    finally:
        if ddp is not None:
            import torch.distributed as dist

            dist.destroy_process_group()
    how = " (stopped early)" if result.stopped_early else ""
    say(f"best epoch {result.best_epoch} (validation Dice {result.best_score:.4f}){how}: "
        f"{result.best_path}; last epoch with optimizer state: {result.last_path}")
    if ddp is not None:
        print(f"rank {ddp.rank}/{ddp.world}: final weights sha256 {result.weights_sha256}",
              flush=True)
    return 0


def _corrected_samples(scans: str, results: str) -> list[Any]:
    """Training samples of ``train SCANS --labels-from RESULTS``: corrected predictions only.

    Says how many predictions were taken and how many skipped (not marked corrected, or no scan
    of that name in SCANS).
    """
    from .batch import corrected_pairs
    from .data import samples_from_pairs
    from .io import Pair, ReadError

    if not Path(scans).exists():
        raise ValueError(f"{scans}: no such file or folder (with --labels-from, DATA is the "
                         "folder of scans that was segmented)")
    try:
        found = corrected_pairs(scans, results)
    except ReadError as exc:
        raise ValueError(str(exc)) from exc
    line = (f"--labels-from {results}: {len(found.pairs)} corrected prediction(s) paired with "
            f"their scans; {len(found.not_corrected)} not marked corrected, skipped")
    if found.no_scan:
        names = ", ".join(p.name for p in found.no_scan[:3])
        more = f" and {len(found.no_scan) - 3} more" if len(found.no_scan) > 3 else ""
        line += (f"; {len(found.no_scan)} corrected without a scan of that name in {scans}, "
                 f"skipped ({names}{more})")
    print(line)
    if not found.pairs:
        raise ValueError(
            f"{results}: no corrected predictions to train on. Open a NAME_pred file in napari "
            "(with this plugin), correct it, and save it over itself (File > Save Selected "
            "Layers): the plugin marks it corrected in NAME_pred.ext.json. DATA must be the "
            "folder that was segmented into RESULTS.")
    samples = samples_from_pairs([Pair(scan, pred) for scan, pred in found.pairs])
    if not samples:
        raise ValueError(f"{results}: the corrected predictions could not be read with their "
                         "scans (see the warnings above)")
    return samples


# --------------------------------------------------------------------------- segment


def _cmd_segment(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from .batch import (
        check_output_folder,
        iter_segment_folder,
        list_inputs,
        parse_part,
        part_tables,
        results_csv_name,
        select_part,
        summarise,
        write_results_csv,
    )
    from .io import ReadError
    from .model import CheckpointError
    from .naming import PREDICTION_SUFFIX, suffix_of
    from .predict import Predictor, SegmentOptions

    out = Path(args.output)
    try:
        part = parse_part(args.part) if args.part is not None else None
    except ValueError as exc:
        _err(str(exc))
        return 2
    if part is not None and args.merge:
        _err("--merge combines the parts' tables after all --part runs: give one or the other")
        return 2
    if args.merge or (part is None and part_tables(out)):
        return _merge_parts(args)
    if out.exists() and not out.is_dir():
        _err(f"{out}: is a file; OUTPUT must be a folder (masks and results.csv go inside it)")
        return 2
    if not out.exists() and suffix_of(out):
        _err(f"{out}: looks like a file name; OUTPUT must be a folder (masks are named "
             f"NAME{PREDICTION_SUFFIX} inside it). Give a folder, e.g. results/")
        return 2
    try:
        if args.dicom_seg:  # say it once, before the model loads, not once per series
            from .formats.dicom_seg import require_highdicom

            require_highdicom()
        opts = SegmentOptions(threshold=args.threshold, tta=args.tta,
                              min_area_mm2=args.min_area, keep=args.keep,
                              batch_size=args.batch_size)
        predictor = Predictor.from_checkpoint(args.model, opts, device=args.device)
        # ONNX Runtime from the first slice, so a run's masks never depend on when a first
        # export finished (a few seconds, once per model and machine; cached after).
        predictor.prepare(wait=True)
        u_opts = None
        if args.uncertainty:
            from .uncertainty import UncertaintyOptions

            u_opts = UncertaintyOptions(args.uncertainty, args.uncertainty_passes or
                                        (4 if args.uncertainty == "tta" else 8))
        items = list_inputs(args.input, exclude=args.output)  # paired once, used by the run
        n_inputs = len(items)
        if part is not None:  # the bar counts this part's files
            n_part = len(select_part(items, Path(args.input), part))
    except (CheckpointError, ValueError, ReadError, FileNotFoundError, ImportError) as exc:
        _err(str(exc))
        return 2
    if n_inputs == 0:
        _err(f"{args.input}: no scans found{_only_outputs(Path(args.input))}")
        return 2
    try:
        check_output_folder(out)  # read-only or unwritable: say so once, not once per scan
    except ValueError as exc:
        _err(str(exc))
        return 2
    results = []
    if part is not None:
        n_inputs = n_part
    with tqdm(total=n_inputs, desc="segment", unit="file", disable=args.quiet) as bar, \
            tqdm(desc="slices", unit="slice", leave=False, disable=args.quiet) as slice_bar:

        def on_slices(done: int, total: int) -> None:  # the scan being segmented
            if total != slice_bar.total or done < slice_bar.n:  # the next scan
                slice_bar.reset(total=total)
            slice_bar.n = done
            slice_bar.refresh()

        gen = iter_segment_folder(args.input, args.output, predictor,
                                  skull_strip=args.skull_strip, overwrite=args.overwrite,
                                  overlays=args.overlays, axis=args.axis, items=items,
                                  on_slices=on_slices, uncertainty=u_opts, part=part,
                                  dicom_seg=args.dicom_seg)
        for r in gen:
            results.append(r)
            bar.update(1)
            if r.status == "failed":
                tqdm.write(f"brainseg: error: {r.error}", file=sys.stderr)
            elif r.status == "ok" and r.error:
                name = r.source.name
                note = r.error if r.error.startswith(f"{name}:") else f"{name}: {r.error}"
                tqdm.write(f"brainseg: warning: {note}", file=sys.stderr)
    if part is not None and not results:  # more parts than scans: its empty table is written
        print(f"part {part[0]}/{part[1]}: no inputs fall in this part; table: "
              f"{out / results_csv_name(part)}")
        return 0
    width = max(len(str(r.source)) for r in results)
    rows = results
    if u_opts is not None:  # review order: the least certain first
        rows = sorted(results, key=lambda r: -1.0 if r.uncertainty is None else r.uncertainty,
                      reverse=True)
    u_head = "  uncertainty (slice)" if u_opts is not None else ""
    print(f"{'file':{width}s}  status   tumour          Dice   seconds{u_head}")
    for r in rows:
        size = f"{r.size_mm:9.1f} {r.unit}" if r.status != "failed" else " " * 13
        dice = f"{r.dice:.3f}" if r.dice is not None else "  -  "
        u = ""
        if r.uncertainty is not None:
            where = "" if r.uncertain_slice is None else f" ({r.uncertain_slice})"
            u = f"  {r.uncertainty:9.1f} {r.unit}{where}"
        print(f"{str(r.source):{width}s}  {r.status:7s}  {size}  {dice}  {r.seconds:7.2f}{u}")
    s = summarise(results)
    table = out / results_csv_name(part)
    try:  # the batch updates it as it goes; this final write also says if that failed
        write_results_csv(table, results)
    except OSError as exc:
        state = "not updated" if table.exists() else "not written"
        table_error = f"{table}: {state} ({exc.strerror or exc}); the table is printed above"
    else:
        table_error = ""
    print(f"\n{s['ok']} segmented, {s['skipped']} skipped (already done), {s['failed']} failed; "
          f"table: {table if not table_error else 'not written'}")
    if "pooled" in s:
        p = s["pooled"]
        print(f"pooled over {s['n_with_truth']} files with a ground-truth mask: Dice (F1) "
              f"{p['f1']:.4f}, precision {p['precision']:.4f}, recall {p['recall']:.4f}, pixel "
              f"accuracy {p['accuracy']:.4f} (all-background baseline "
              f"{s['background_accuracy']:.4f})")
    if table_error:
        _err(table_error)
    return 1 if s["failed"] or table_error else 0


def _only_outputs(folder: Path) -> str:
    """Why a folder gave no scans when it holds only predictions, masks or overlays."""
    from .naming import is_never_input
    from .volume import ReadError, is_supported_file, list_files

    try:
        files = list_files(folder) if folder.is_dir() else []
    except ReadError:
        return ""
    outputs = [f for f in files if is_supported_file(f) and is_never_input(f)]
    if not outputs:
        return ""
    return (f" ({len(outputs)} file(s) there, e.g. {outputs[0].name}, are predictions, masks or "
            "overlays, which are never segmented again); give the folder of scans")


def _merge_parts(args: argparse.Namespace) -> int:
    """``segment --merge`` (or a plain run finding part tables): one results.csv from the parts."""
    from .batch import merge_parts, part_tables
    from .io import ReadError

    out = Path(args.output)
    n_parts = len(part_tables(out))
    try:
        rows = merge_parts(args.input, out)
    except (ValueError, ReadError, OSError) as exc:
        found = "" if args.merge else (f"{out} holds the tables of a split run (--part), so this "
                                       "run merges them first: ")
        _err(f"{found}{exc}")
        return 2
    counts = {s: sum(r.get("status") == s for r in rows) for s in ("ok", "skipped", "failed")}
    print(f"merged {n_parts} part tables into {out / 'results.csv'}: {counts['ok']} segmented, "
          f"{counts['skipped']} skipped, {counts['failed']} failed (no scan segmented by this "
          "command; run it again to segment, e.g. with --overwrite)")
    return 1 if counts["failed"] else 0


# --------------------------------------------------------------------------- study


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

    from .data import groups_from_csv, regroup, samples_from_folder
    from .progress import Eta
    from .study import (
        DEFAULT_ALPHAS,
        StudyConfig,
        folds_from_file,
        iter_study,
        plan,
        split_groups,
    )
    from .study_report import no_better_than_background

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


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser (kept importable for documentation and tests)."""
    parser = argparse.ArgumentParser(
        prog="brainseg",
        description="Brain MRI skull stripping and tumour segmentation (napari-brainseg).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log more detail")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("info", help="read files or folders and print what was found")
    p.add_argument("paths", nargs="+", help="NIfTI, DICOM, .mat, PNG/TIFF files or folders")
    p.set_defaults(func=_cmd_info)

    p = sub.add_parser("sample-data", help="write a folder of synthetic phantoms with masks")
    p.add_argument("out", help="output folder (images/ and masks/ are created in it)")
    p.add_argument("--n", type=int, default=12, help="number of phantoms (default 12)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--size", default="256x256", help="HEIGHTxWIDTH in pixels (default 256x256)")
    p.add_argument("--skull", action="store_true",
                   help="keep scalp and skull (default: skull-stripped, like the study's images)")
    p.set_defaults(func=_cmd_sample_data)

    p = sub.add_parser("skull-strip", help="write brain masks (and optionally stripped images)",
                       description="Skull stripping, offline. The default learned method runs "
                       "deepbet on volumes and the built-in 2D U-Net on single slices; "
                       "--method classical is thresholds and morphology. INPUT is a file or a "
                       "folder; OUTPUT a mask file (one input) or a folder.")
    p.add_argument("input", help="scan file, DICOM series folder, or a folder of scans")
    p.add_argument("output", help="mask file (e.g. brain.nii.gz) or output folder")
    p.add_argument("--masked", action="store_true", help="also write the skull-stripped image")
    p.add_argument("--mode", choices=["auto", "3d", "slices"], default="auto",
                   help="auto: 3D for volumes, 2D for slices; slices: each slice on its own "
                   "(default auto)")
    p.add_argument("--method", choices=["learned", "classical"], default="learned",
                   help="learned: deepbet for volumes, the built-in 2D U-Net for slices; "
                   "classical: thresholds and morphology (default learned)")
    p.add_argument("--tightness", type=float, default=None,
                   help="classical method: 0-1, higher gives a tighter mask (default 0.5)")
    p.add_argument("--erode-mm", type=float, default=None,
                   help="classical method: erosion depth that cuts brain-skull bridges, mm "
                   "(default 5)")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_skull_strip)

    p = sub.add_parser("train", help="train (or fine-tune) a U-Net on image/mask pairs",
                       description="DATA is a folder in the README's pairing convention "
                       "(NAME + NAME_mask, images/ + masks/, or figshare .mat files). With "
                       "--labels-from RESULTS, DATA is the folder of scans that 'brainseg "
                       "segment DATA RESULTS' segmented, and the labels are the predictions in "
                       "RESULTS that were corrected in napari and saved (marked corrected in "
                       "their NAME_pred.ext.json); DATA's own masks are not used.")
    p.add_argument("data", help="training folder (with --labels-from: the scans folder)")
    p.add_argument("--labels-from", default=None, metavar="RESULTS_DIR",
                   help="train on the corrected predictions of this results folder, each paired "
                        "by name with its scan in DATA; predictions not marked corrected are "
                        "skipped and counted")
    p.add_argument("--out", required=True, help="best-model checkpoint (e.g. model.pt)")
    p.add_argument("--loss", default="dice+bce",
                   choices=LOSS_NAMES, help="training loss (default dice+bce)")
    p.add_argument("--alpha", type=float, default=None,
                   help="focal: tumour weight (none = unweighted); tversky: FP weight (0.3)")
    p.add_argument("--gamma", type=float, default=2.0, help="focal gamma (default 2)")
    p.add_argument("--beta", type=float, default=None, help="tversky FN weight (1 - alpha)")
    p.add_argument("--pos-weight", type=float, default=None, help="BCE tumour weight")
    p.add_argument("--epochs", type=int, default=30, help="maximum epochs (default 30)")
    p.add_argument("--batch-size", type=int, default=8, help="slices per batch (default 8)")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (default 1e-3)")
    p.add_argument("--val-split", type=float, default=0.2,
                   help="fraction of patients/volumes held out for validation (default 0.2)")
    p.add_argument("--patch-size", type=int, default=256,
                   help="square training crops, pixels (default 256)")
    p.add_argument("--no-augment", action="store_true", help="no flips, rotations or intensity "
                   "changes during training")
    p.add_argument("--patience", type=int, default=10, help="early stopping (0: never)")
    p.add_argument("--base-filters", type=int, default=16, help="U-Net width (study: 16)")
    p.add_argument("--init", default=None, help="fine-tune from this checkpoint")
    p.add_argument("--resume", default=None, help="continue from a .last.pt checkpoint")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing --out model and its .last.pt")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--deterministic", action="store_true",
                   help="deterministic algorithms only (slower; same weights on every run)")
    p.add_argument("--device", default="auto", choices=DEVICES,
                   help="where to train (default auto: CUDA, then MPS, then CPU)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("segment", help="segment tumours in a scan or a folder of scans",
                       description="Writes OUTPUT/NAME_pred masks in the input's format "
                       "(NIfTI keeps the scan's affine) and OUTPUT/results.csv.")
    p.add_argument("input", help="scan file, DICOM series folder, or a folder (recursive)")
    p.add_argument("output", help="output folder")
    p.add_argument("--model", default="demo",
                   help="checkpoint file, or 'demo' for the built-in model (default; trained on "
                        "synthetic tumours in contrast-enhanced T1, see the README's model card)")
    p.add_argument("--skull-strip", action=argparse.BooleanOptionalAction, default=None,
                   help="strip the skull first (learned skull strip), so that no tumour is "
                        "reported in the eyes, scalp or vessels outside the brain (default: "
                        "volumes yes, single 2D slices no; --no-skull-strip for volumes that "
                        "are already stripped)")
    p.add_argument("--tta", action="store_true", help="flip test-time augmentation (4x slower)")
    p.add_argument("--uncertainty", nargs="?", const="tta", choices=["tta", "mc-dropout"],
                   help="also score each file's uncertainty (uncertain mm³/mm² and the most "
                        "uncertain slice, in results.csv) to review the least certain first: "
                        "tta = 4 flips (default when given), mc-dropout = dropout samples; "
                        "costs that many extra model passes (default off)")
    p.add_argument("--uncertainty-passes", type=int, default=None,
                   help="passes for --uncertainty (tta 2-4, default 4; mc-dropout 2-64, "
                        "default 8)")
    p.add_argument("--threshold", type=float, default=0.5,
                   help="tumour probability above which a pixel is tumour (default 0.5)")
    p.add_argument("--min-area", type=float, default=10.0,
                   help="remove components smaller than this many mm² per slice (default 10)")
    p.add_argument("--keep", choices=["all", "largest"], default="all",
                   help="all tumour components, or only the largest (3D for volumes; default all)")
    p.add_argument("--axis", type=int, default=0, choices=[0, 1, 2],
                   help="slice volumes along this axis (0: axial in display orientation)")
    p.add_argument("--batch-size", type=int, default=8,
                   help="slices per forward pass (default 8; a CPU runs one at a time)")
    p.add_argument("--overlays", action="store_true", help="also write OUTPUT/overlays/*.png")
    p.add_argument("--dicom-seg", action="store_true",
                   help="also write each DICOM series' mask as a DICOM SEG referencing the "
                        "series (NAME_pred.dcm beside the mask; opens in 3D Slicer and PACS "
                        "viewers; needs highdicom: pip install \"napari-brainseg[dicom]\"); "
                        "other inputs get a note")
    p.add_argument("--overwrite", action="store_true", help="redo files already segmented")
    p.add_argument("--part", default=None, metavar="I/N",
                   help="segment only part I of N of the inputs (a fixed split by path, the "
                        "same in every process: run I = 1..N as N jobs, e.g. a SLURM array), "
                        "writing OUTPUT/results.partI.csv; combine with --merge")
    p.add_argument("--merge", action="store_true",
                   help="combine the parts' results.partI.csv into OUTPUT/results.csv (a plain "
                        "run that finds part tables does the same); refuses when a part is "
                        "missing or two overlap")
    p.add_argument("--device", default="auto", choices=DEVICES,
                   help="where to run the model (default auto: CUDA, then MPS, then CPU)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_segment)

    p = sub.add_parser("study", help="k-fold cross-validation comparing losses (the study)",
                       description="Repeats the published BCE-vs-Focal comparison on your data: "
                       "patient-grouped folds, tuning on inner splits, a report with statistics. "
                       "Run the same command again to resume.")
    p.add_argument("data", help="training folder (pairing convention)")
    p.add_argument("--out", required=True, help="study folder (report, per-fold files)")
    p.add_argument("--losses", nargs="+", default=None,
                   help="losses to compare (default: bce focal dice tversky)")
    p.add_argument("--folds", type=int, default=None, help="outer folds (default 5)")
    p.add_argument("--epochs", type=int, default=None,
                   help="maximum epochs per tuning run (default 30; tuned per fold)")
    p.add_argument("--alpha", action="append", metavar="LOSS=A,B",
                   help="alphas of a loss tried first, e.g. focal=none,0.25,0.75 (repeatable)")
    p.add_argument("--trials", type=int, default=None,
                   help="Optuna trials per fold and loss (default 6; quick preset 2)")
    p.add_argument("--storage", default=None, metavar="URL",
                   help="Optuna storage shared by workers, e.g. postgresql://user@host/db "
                   "(default: sqlite in the study folder)")
    p.add_argument("--worker", action="store_true",
                   help="join a study other processes or machines run on the same --storage")
    p.add_argument("--batch-size", type=int, default=None, help="slices per batch (default 8)")
    p.add_argument("--lr", type=float, default=None,
                   help="centre of the tuned learning-rate range lr/3..3 lr (default 1e-3)")
    p.add_argument("--patch-size", type=int, default=None,
                   help="square training crops, pixels (default 256; quick preset 128)")
    p.add_argument("--base-filters", type=int, default=None,
                   help="U-Net width (default 16 as in the study; quick preset 8)")
    p.add_argument("--groups", default=None, metavar="FILE.csv",
                   help="which patient each file belongs to: a CSV with the header "
                   "'file,patient' (file name or path relative to DATA); every file must be "
                   "listed (default: figshare PID, else one patient per file or volume)")
    p.add_argument("--group-by", default=None, metavar="REGEX",
                   help="the patient is the first group of REGEX searched in each file name, "
                   "e.g. '^(P\\d+)_' for P01_s3.png")
    p.add_argument("--folds-file", default=None, metavar="cvind.mat",
                   help="take the outer folds from the figshare set's cvind.mat (one fold "
                   "number per numbered file 1.mat ... N.mat) instead of making them")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--quick", action="store_true",
                   help="CPU preset for trying it out: bce vs focal, width 8, 30 epochs, 128 px")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_study)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``brainseg`` command line and return its exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    problem = check_ranges(args.command, args)
    if problem:
        _err(problem)
        return 2
    for stream in (sys.stdout, sys.stderr):  # a file name that is not UTF-8 prints as \xe9
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    # The package's warnings go to this command's stderr (not through the root logger, which
    # an embedding program or pytest may already have configured).
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
    old_level, old_propagate = log.level, log.propagate
    log.addHandler(handler)
    log.setLevel(logging.INFO if args.verbose else logging.WARNING)
    log.propagate = False
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        _err("interrupted")
        return 130
    finally:
        log.removeHandler(handler)
        log.setLevel(old_level)
        log.propagate = old_propagate


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
